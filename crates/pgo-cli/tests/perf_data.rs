//! Reading `perf record`'s perf.data: real programs recorded by real perf (software cpu-clock),
//! read by every command through the same collector as `pgo collect`, and checked against
//! what perf itself says of the same file (`perf script`, `perf buildid-list`) and against the
//! programs' sources.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use pgo_profile::{Profile, ProfileView};

/// The recordings measure CPU time: on a 2-core machine they take turns.
static CPU: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cpu_turn() -> std::sync::MutexGuard<'static, ()> {
    CPU.lock().unwrap_or_else(|e| e.into_inner())
}

/// `perf`, or `None` when it is not installed. CI installs it (`cargo xtask test`: Debian's
/// linux-perf), so a missing `perf` there fails the test instead of skipping it.
fn perf() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("perf"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "perf is required in CI: apt-get install linux-perf"
        );
        eprintln!("skipping: perf is not installed (apt-get install linux-perf)");
    }
    found
}

/// `perf record -e cpu-clock -F 999 CALL_GRAPH -o OUT -- PROGRAM...` (no build-ID cache in
/// the home directory; the file still lists the build IDs of the binaries samples hit).
fn perf_record(perf: &Path, out: &Path, call_graph: &[&str], program: &[&dyn AsRef<OsStr>]) {
    let o = Command::new(perf)
        .args(["record", "-e", "cpu-clock", "-F", "999", "-N", "-q"])
        .args(call_graph)
        .arg("-o")
        .arg(out)
        .arg("--")
        .args(program)
        .output()
        .expect("perf runs");
    assert!(o.status.success(), "perf record failed: {}", stderr(&o));
}

/// Reads `path` through `pgo convert` (whatever its format) as the profile pgo makes of it.
fn convert(path: &Path, dir: &Path, extra: &[&str]) -> Profile {
    let out = dir.join(format!(
        "{}.pb.gz",
        path.file_name().unwrap().to_string_lossy()
    ));
    let mut args: Vec<&dyn AsRef<OsStr>> = vec![&"convert", &path, &"-o", &out];
    for a in extra {
        args.push(a);
    }
    ok(pgo(&args));
    pgo_profile::read_profile(&out).expect("pgo convert writes a valid profile")
}

/// Share of the cpu value per function: `leaf`, the sampled function as its symbol names it
/// (the outermost frame of the leaf's inline frames, as `perf script` shows it without
/// `--inline`), or cumulative (every function on the stack, once per sample).
fn shares(p: &Profile, leaf: bool) -> BTreeMap<String, f64> {
    let view = ProfileView::new(p);
    let index = view.sample_index(Some("cpu")).unwrap();
    let total: i64 = p.sample.iter().map(|s| s.value[index]).sum();
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for s in &p.sample {
        let mut names: Vec<String> = Vec::new();
        for f in view.frames(s) {
            let name = view.frame_name(&f).into_owned();
            if leaf {
                if !f.inlined {
                    names.push(name);
                    break;
                }
            } else if !names.contains(&name) {
                names.push(name);
            }
        }
        for n in names {
            *out.entry(n).or_default() += s.value[index] as f64 / total as f64;
        }
    }
    out
}

const WORKERS: [&str; 3] = [
    "collect_rust::sixty",
    "collect_rust::thirty",
    "collect_rust::ten",
];

#[test]
fn perf_data_with_frame_pointers_agrees_with_perf_script_and_is_symbolized_as_collect_does() {
    let Some(perf) = perf() else { return };
    let dir = tempfile::tempdir().unwrap();
    let binary = rust_fixture(true);
    let data = dir.path().join("perf.data");
    {
        let _turn = cpu_turn();
        perf_record(&perf, &data, &["-g"], &[&binary, &"600"]);
    }
    let script = dir.path().join("out.perf");
    let o = Command::new(&perf)
        .args(["script", "-i"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "perf script: {}", stderr(&o));
    std::fs::write(&script, &o.stdout).unwrap();

    // The same samples, read two ways: the functions' shares agree.
    let ours = convert(&data, dir.path(), &[]);
    let theirs = convert(&script, dir.path(), &["--from", "perf-script"]);
    assert!(ours.sample.iter().map(|s| s.value[0]).sum::<i64>() >= 500);
    for leaf in [true, false] {
        let (a, b) = (shares(&ours, leaf), shares(&theirs, leaf));
        for f in WORKERS.iter().chain(if leaf {
            &[][..]
        } else {
            &["collect_rust::run"]
        }) {
            let (x, y) = (a.get(*f).copied(), b.get(*f).copied());
            let (x, y) = (x.unwrap_or(0.0) * 100.0, y.unwrap_or(0.0) * 100.0);
            assert!(
                (x - y).abs() <= 2.0 && y > 5.0,
                "{f} ({}): {x:.1}% from perf.data, {y:.1}% from perf script",
                if leaf { "flat" } else { "cum" }
            );
        }
    }
    // `pgo top` reads perf.data itself too, with the inline frames `perf script` lacks: the
    // loop body inlined into all three workers is most of the time.
    let top = pgo_top_json(&[&data]);
    let step = top["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["function"] == "collect_rust::step")
        .unwrap_or_else(|| panic!("collect_rust::step in pgo top: {top}"));
    assert!(step["cum_percent"].as_f64().unwrap() > 50.0, "{top}");
    assert!(!shares(&theirs, false).contains_key("collect_rust::step"));

    // What pgo collect's profiles carry: inline frames, start lines, linkage names, lines and
    // columns, the binary's build ID (as perf recorded it) and exact addresses in its mapping.
    assert_collect_rust_symbolized(&ours);
    let view = ProfileView::new(&ours);
    assert!(
        ours.location
            .iter()
            .flat_map(|l| &l.line)
            .any(|l| l.line > 0 && l.column > 0),
        "lines and columns"
    );
    let main = &ours.mapping[0];
    assert_eq!(
        Path::new(view.str(main.filename)),
        binary.canonicalize().unwrap()
    );
    let listed = Command::new(&perf)
        .args(["buildid-list", "-i"])
        .arg(&data)
        .output()
        .unwrap();
    let listed = stdout(&listed);
    let recorded = listed
        .lines()
        .find(|l| l.ends_with(view.str(main.filename)))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("perf buildid-list names the binary: {listed}"));
    assert_eq!(view.str(main.build_id), recorded);
    let in_main: Vec<_> = ours
        .location
        .iter()
        .filter(|l| l.mapping_id == main.id)
        .collect();
    assert!(!in_main.is_empty());
    assert!(
        in_main
            .iter()
            .all(|l| l.address >= main.memory_start && l.address < main.memory_limit)
    );

    // A perf.data and a pprof profile merge.
    let merged = dir.path().join("merged.pb.gz");
    let go = profile("go-cpu.pb.gz");
    ok(pgo(&[&"merge", &data, &go, &"-o", &merged]));
    let merged = pgo_profile::read_profile(&merged).unwrap();
    let names: Vec<&str> = {
        let view = ProfileView::new(&merged);
        merged.function.iter().map(|f| view.str(f.name)).collect()
    };
    assert!(names.contains(&"collect_rust::sixty"), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("main.")), "{names:?}");
}

/// `perf record -g` copies no stack, so when a sample stops in a leaf that sets up no frame
/// (Go's small leaves: the Go fixture's `mix64`), the kernel's walk skips the leaf's caller
/// (`hashBlock`), and `perf report` shows `mix64` called from `hashStage`. pgo puts the
/// caller back from the code (`hashStage` calls `hashBlock`, which calls `mix64` from one
/// place): `hashBlock` is on (nearly) every stack `mix64` is on, as in `pgo collect`'s
/// profile of the same program.
#[test]
fn a_frameless_leafs_caller_is_restored_without_stack_words() {
    let (Some(perf), Some(go)) = (perf(), go()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for f in ["main.go", "go.mod"] {
        std::fs::copy(root().join("fixtures/go-cpu").join(f), src.join(f)).unwrap();
    }
    let bin = dir.path().join("gocpu");
    let built = Command::new(&go)
        .current_dir(&src)
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr(&built));
    let data = dir.path().join("perf.data");
    {
        let _turn = cpu_turn();
        perf_record(&perf, &data, &["-g"], &[&bin, &"-seconds", &"1"]);
    }
    let profile = convert(&data, dir.path(), &[]);
    let view = ProfileView::new(&profile);
    let index = view.sample_index(Some("cpu")).unwrap();
    let (mut leaf, mut under_caller) = (0i64, 0i64);
    for s in &profile.sample {
        let names: Vec<String> = view
            .frames(s)
            .map(|f| view.frame_name(&f).into_owned())
            .collect();
        if names.first().is_some_and(|n| n == "main.mix64") {
            leaf += s.value[index];
            if names.get(1).is_some_and(|n| n == "main.hashBlock") {
                under_caller += s.value[index];
            }
        }
    }
    assert!(leaf > 0, "mix64 is sampled");
    assert!(
        under_caller as f64 >= 0.9 * leaf as f64,
        "hashBlock calls mix64 on {under_caller} of {leaf} ns"
    );
    assert!(
        profile.comment.iter().any(|c| view
            .str(*c)
            .contains("from the code (no stack words were copied)")),
        "the profile says what was repaired"
    );
}

#[test]
fn perf_data_with_dwarf_stack_copies_is_unwound_to_main() {
    let Some(perf) = perf() else { return };
    let dir = tempfile::tempdir().unwrap();
    // No frame pointers: only the stack copies can say who called whom.
    let binary = rust_fixture(false);
    let data = dir.path().join("perf.data");
    {
        let _turn = cpu_turn();
        perf_record(&perf, &data, &["--call-graph", "dwarf"], &[&binary, &"500"]);
    }
    let p = convert(&data, dir.path(), &[]);
    let cum = shares(&p, false);
    let main = cum.get("collect_rust::main").copied().unwrap_or(0.0);
    assert!(main > 0.9, "main on {:.1}% of the stacks", main * 100.0);
    // The 60/30/10 split the program makes by construction.
    let workers: f64 = WORKERS
        .iter()
        .map(|f| cum.get(*f).copied().unwrap_or(0.0))
        .sum();
    for (f, want) in WORKERS.iter().zip([60.0, 30.0, 10.0]) {
        let got = 100.0 * cum.get(*f).copied().unwrap_or(0.0) / workers;
        assert!(
            (got - want).abs() <= 6.0,
            "{f}: {got:.1}%, built for {want}%"
        );
    }
    let view = ProfileView::new(&p);
    assert!(
        p.comment
            .iter()
            .any(|c| view.str(*c).contains("unwinding: dwarf")),
        "the profile says it was unwound with DWARF"
    );
    assert!(!stderr(&pgo(&[&"top", &data])).contains("frame pointer"));

    // The same program recorded with -g: its stacks are broken, and pgo says why and what to
    // do instead.
    let walked = dir.path().join("fp.data");
    {
        let _turn = cpu_turn();
        perf_record(&perf, &walked, &["-g"], &[&binary, &"100"]);
    }
    let err = stderr(&pgo(&[&"top", &walked]));
    assert!(
        err.contains("set up a frame pointer")
            && err.contains("perf record -g took through it are broken")
            && err.contains("--call-graph dwarf"),
        "{err}"
    );
}

#[test]
fn a_binary_rebuilt_since_the_recording_is_named_and_left_unsymbolized() {
    let Some(perf) = perf() else { return };
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("prog");
    std::fs::copy(rust_fixture(true), &program).unwrap();
    let data = dir.path().join("perf.data");
    {
        let _turn = cpu_turn();
        perf_record(&perf, &data, &["-g"], &[&program, &"100"]);
    }
    // Another build at the same path (the same program without frame pointers).
    std::fs::copy(rust_fixture(false), &program).unwrap();
    // perf's build-ID cache (`~/.debug`) may hold the recorded build from another run.
    let no_cache = dir.path().join("no-cache");
    let o = Command::new(env!("CARGO_BIN_EXE_pgo"))
        .args([
            OsStr::new("top"),
            data.as_os_str(),
            OsStr::new("-n"),
            OsStr::new("0"),
        ])
        .env("PERF_BUILDID_DIR", &no_cache)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let warning = err
        .lines()
        .find(|l| l.contains("is not the build perf recorded"))
        .unwrap_or_else(|| panic!("a warning about the rebuilt binary: {err}"));
    assert!(warning.starts_with("pgo: warning: "), "{warning}");
    assert!(
        warning.contains(&program.display().to_string()),
        "{warning}"
    );
    assert!(!err.contains("no source line"), "{err}");
    // Its symbols would be another build's: none are given.
    assert!(!stdout(&o).contains("collect_rust::"), "{}", stdout(&o));
}

/// `perf record` without `-N` copies every binary it sampled into its build-ID cache
/// (`~/.debug`, or `perf --buildid-dir DIR`, which pgo is pointed to with the variable perf
/// exports for its own scripts, `PERF_BUILDID_DIR`): a perf.data stays readable after the program is
/// rebuilt, the usual CI order (record, then `pgo apply` rebuilds). pgo reads the recorded
/// build from there for names, lines and code, and `pgo apply` analyzes it.
#[test]
fn a_rebuilt_binary_is_read_from_perfs_build_id_cache() {
    let Some(perf) = perf() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("buildid-cache");
    let program = dir.path().join("prog");
    std::fs::copy(rust_fixture(true), &program).unwrap();
    let data = dir.path().join("perf.data");
    {
        let _turn = cpu_turn();
        let o = Command::new(&perf)
            .arg("--buildid-dir")
            .arg(&cache)
            .args(["record", "-e", "cpu-clock", "-F", "999", "-q", "-g", "-o"])
            .arg(&data)
            .arg("--")
            .arg(&program)
            .arg("100")
            .output()
            .unwrap();
        assert!(o.status.success(), "perf record failed: {}", stderr(&o));
    }
    // A new file, as a linker writes (perf's cache may be a hard link to the recorded one).
    std::fs::remove_file(&program).unwrap();
    std::fs::copy(rust_fixture(false), &program).unwrap();
    let pgo_cached = |args: &[&OsStr]| {
        Command::new(env!("CARGO_BIN_EXE_pgo"))
            .args(args)
            .env("PERF_BUILDID_DIR", &cache)
            .output()
            .unwrap()
    };
    let out = dir.path().join("p.pb.gz");
    let o = pgo_cached(&[
        OsStr::new("convert"),
        data.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("is not the build perf recorded"), "{err}");
    let profile = pgo_profile::read_profile(&out).unwrap();
    assert_collect_rust_symbolized(&profile);
    let cum = shares(&profile, false);
    let main = cum.get("collect_rust::main").copied().unwrap_or(0.0);
    assert!(main > 0.9, "main on {:.1}% of the stacks", main * 100.0);

    // `pgo apply` reads the recorded build's code (its blocks' execution counts) from the
    // cache too.
    let o = pgo_cached(&[
        OsStr::new("apply"),
        OsStr::new("--dry-run"),
        OsStr::new("--profile"),
        data.as_os_str(),
        OsStr::new("--backend"),
        OsStr::new("clang"),
        OsStr::new("--out-dir"),
        dir.path().join("out").as_os_str(),
        OsStr::new("--"),
        OsStr::new("make"),
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("note: execution counts from"), "{err}");
}

#[test]
fn a_truncated_perf_data_is_a_one_line_error_naming_it() {
    let Some(perf) = perf() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("perf.data");
    {
        let _turn = cpu_turn();
        perf_record(&perf, &data, &["-g"], &[&rust_fixture(true), &"50"]);
    }
    let bytes = std::fs::read(&data).unwrap();
    let cut = dir.path().join("cut.data");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let header_only = dir.path().join("header.data");
    std::fs::write(&header_only, &bytes[..40]).unwrap();
    // What perf leaves when it is killed: the header's size of the records is never written.
    let unfinished = dir.path().join("unfinished.data");
    let mut zeroed = bytes.clone();
    zeroed[48..56].fill(0);
    std::fs::write(&unfinished, &zeroed).unwrap();
    let cases: [(&[&dyn AsRef<OsStr>], &Path, &str); 5] = [
        (&[&"top", &cut], &cut, "truncated perf.data"),
        (&[&"top", &header_only], &header_only, "truncated perf.data"),
        (&[&"top", &unfinished], &unfinished, "was perf killed?"),
        (
            &[
                &"merge",
                &cut,
                &profile("go-cpu.pb.gz"),
                &"-o",
                &"/dev/null",
            ],
            &cut,
            "truncated perf.data",
        ),
        // pgo-profile alone cannot symbolize: it says what the file is.
        (
            &[&"top", &"--from", &"pprof", &data],
            &data,
            "a perf.data file",
        ),
    ];
    for (args, file, what) in cases {
        let o = pgo(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("pgo: error: {}: ", file.display())) && err.contains(what),
            "{err}"
        );
        assert!(!err.contains("protobuf"), "{err}");
    }
}

#[test]
fn pgo_apply_builds_from_a_perf_data_profile() {
    let Some(perf) = perf() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A default release build: no frame pointers, so perf copies stacks.
    let binary = analyze_rust_build("apply-analyze-rust");
    let data = dir.path().join("perf.data");
    {
        let _turn = cpu_turn();
        perf_record(&perf, &data, &["--call-graph", "dwarf"], &[&binary]);
    }
    let work = dir.path().join("analyze-rust");
    std::fs::create_dir_all(work.join("src")).unwrap();
    for f in ["Cargo.toml", "Cargo.lock", "src/main.rs"] {
        std::fs::copy(root().join("fixtures/analyze-rust").join(f), work.join(f)).unwrap();
    }
    let o = Command::new(env!("CARGO_BIN_EXE_pgo"))
        .current_dir(&work)
        .args(["apply", "--profile"])
        .arg(&data)
        .args(["--dry-run", "--", "cargo", "build", "--release"])
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("profile freshness: 100.0%"), "{err}");
    assert!(
        err.contains("CARGO_ENCODED_RUSTFLAGS=-Zprofile-sample-use="),
        "{err}"
    );
    // The profiled binary was found by the build ID perf recorded, for its block counts.
    let binary = binary.canonicalize().unwrap();
    assert!(
        err.contains(&format!("execution counts from {}", binary.display())),
        "{err}"
    );
    assert!(work.join("target/pgo/rustc/sample-profile.txt").exists());
}
