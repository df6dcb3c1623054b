//! The BOLT backend on a real C program: compiled with clang-22, profiled with `pgo collect`,
//! rewritten by llvm-bolt-22. These tools are required: a missing one fails the test with the
//! Debian package to install.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pgo_backend::{Backend, Language, Plan, Request, Target};
use pgo_backend_bolt::{Bolt, fdata_for};
use pgo_profile::proto::Profile;

/// `checksum` is the cold function the second test changes by one line.
const PROGRAM: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>

__attribute__((noinline)) static uint64_t hot_loop(uint64_t n) {
    uint64_t x = 0x9e3779b97f4a7c15ull, acc = 0;
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        if (x & 1) acc += x % 7; else acc ^= x >> 3;
    }
    return acc;
}

__attribute__((noinline)) uint64_t checksum(uint64_t n) {
    uint64_t v = 1;
    for (uint64_t i = 0; i < n; i++) v = v * 31 + (i ^ (v >> 11));
    return v;
}

int main(int argc, char **argv) {
    uint64_t n = argc > 1 ? strtoull(argv[1], 0, 10) : 80000000ull;
    uint64_t r = hot_loop(n);
    uint64_t c = checksum(n / 2);
    printf("%llu %llu\n", (unsigned long long)r, (unsigned long long)c);
    return 0;
}
"#;

const CHANGED_LINE: (&str, &str) = ("v = v * 31 +", "v = v * 37 +");

/// Iterations for the profiled run (about half a second) and for output checks.
const PROFILED_N: &str = "80000000";
const CHECK_N: &str = "1000000";

fn require(tool: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{tool} is required by this test: install the Debian package {package}")
    })
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `pgo` CLI, built first if it is not there.
fn pgo() -> PathBuf {
    let path = workspace().join("target/debug/pgo");
    if !path.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "pgo-cli"])
            .current_dir(workspace())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build -p pgo-cli failed");
    }
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

fn compile(source: &str, dir: &Path, output: &Path) {
    let clang = require("clang-22", "clang-22");
    let c = dir.join("prog.c");
    std::fs::write(&c, source).unwrap();
    let out = Command::new(clang)
        .args([
            "-O2",
            "-g",
            "-fno-omit-frame-pointer",
            "-Wl,--emit-relocs",
            "-o",
        ])
        .arg(output)
        .arg(&c)
        .output()
        .expect("clang-22 runs");
    assert!(
        out.status.success(),
        "clang-22 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Records a profile of `program PROFILED_N` with `pgo collect`.
fn collect(dir: &Path, program: &Path) -> Profile {
    let out_file = dir.join("P.pb.gz");
    let out = Command::new(pgo())
        .arg("collect")
        .arg("-o")
        .arg(&out_file)
        .arg("--")
        .arg(program)
        .arg(PROFILED_N)
        .current_dir(dir)
        .output()
        .expect("pgo collect runs");
    assert!(
        out.status.success(),
        "pgo collect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pgo_profile::read_profile(&out_file).unwrap()
}

fn run(program: &Path, n: &str) -> String {
    let out = Command::new(program).arg(n).output().expect("program runs");
    assert!(out.status.success(), "{} failed", program.display());
    String::from_utf8(out.stdout).unwrap()
}

/// Sample counts per function of an fdata text.
fn counts_by_function(fdata: &str) -> BTreeMap<String, u64> {
    let mut lines = fdata.lines();
    assert_eq!(lines.next(), Some("no_lbr cycles"));
    let mut counts = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 4, "{line}");
        assert_eq!(fields[0], "1", "{line}");
        u64::from_str_radix(fields[2], 16).expect("hex offset");
        *counts.entry(fields[1].to_string()).or_default() += fields[3].parse::<u64>().unwrap();
    }
    counts
}

fn decisions() -> pgo_decide::Decisions {
    pgo_decide::Decisions {
        schema: pgo_decide::SCHEMA_NAME.into(),
        version: pgo_decide::SCHEMA_VERSION,
        profile: pgo_decide::ProfileSummary {
            sample_type: "cpu/nanoseconds".into(),
            total_weight: 0,
            functions: 0,
            call_edges: 0,
            has_addresses: true,
            has_lines: true,
        },
        settings: pgo_decide::Settings::default(),
        coverage: pgo_decide::Coverage {
            hot_set_percent: 0.0,
            binary_matched_percent: None,
        },
        limitations: Vec::new(),
        inline: Vec::new(),
        devirtualize: Vec::new(),
        layout: pgo_decide::Layout {
            function_order: Vec::new(),
            cold_functions: Vec::new(),
            reason: String::new(),
            blocks: Vec::new(),
        },
    }
}

enum Step<'a> {
    Plan,
    AfterBuild(&'a Path),
}

fn backend(
    profile: &Profile,
    binary: &Path,
    out_dir: &Path,
    step: Step<'_>,
) -> Result<Plan, String> {
    std::fs::create_dir_all(out_dir).unwrap();
    let decisions = decisions();
    let target = Target {
        language: Language::C,
        build_command: vec!["clang-22".into()],
        workdir: binary.parent().unwrap().to_path_buf(),
        output_binary: Some(binary.to_path_buf()),
    };
    let request = Request {
        decisions: &decisions,
        profile,
        profile_paths: &[],
        decisions_path: None,
        target: &target,
        out_dir,
    };
    match step {
        Step::Plan => Bolt::new().plan(&request),
        Step::AfterBuild(b) => Bolt::new().after_build(&request, b),
    }
}

fn is_bolted(path: &Path) -> bool {
    use object::{Object, ObjectSection};
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    file.sections().any(|s| s.name() == Ok(".note.bolt_info"))
}

/// Checks what after_build did to `binary` and returns the fdata text.
fn check_bolted(
    plan: &Plan,
    binary: &Path,
    original_bytes: &[u8],
    expected_output: &str,
) -> String {
    for a in &plan.artifacts {
        eprintln!("artifact {}: {} ({})", a.path.display(), a.kind, a.summary);
    }
    for n in &plan.notes {
        eprintln!("note: {n}");
    }
    let kinds: Vec<&str> = plan.artifacts.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "BOLT profile (fdata, no LBR)",
            "BOLT-optimized binary",
            "llvm-bolt output"
        ]
    );
    assert!(plan.post_build.is_empty() && plan.env.is_empty());

    // BOLT read the profile: its own report, in the log and the summary.
    let log = std::fs::read_to_string(&plan.artifacts[2].path).unwrap();
    assert!(
        log.contains("BOLT-INFO: operating with basic samples profiling data"),
        "{log}"
    );
    assert!(
        log.contains("BOLT-INFO: normalizing samples by instruction count"),
        "{log}"
    );
    let profiled = log
        .lines()
        .find(|l| l.contains("have non-empty execution profile"))
        .unwrap_or_else(|| panic!("no profile line in {log}"));
    assert!(!profiled.starts_with("BOLT-INFO: 0 out of"), "{profiled}");
    assert!(
        plan.artifacts[1]
            .summary
            .starts_with("BOLT found a profile for"),
        "{}",
        plan.artifacts[1].summary
    );

    // The swap: BIN is the optimized binary, BIN.bolt too, BIN.pre-bolt the one built.
    let bolt = binary.with_file_name(format!(
        "{}.bolt",
        binary.file_name().unwrap().to_string_lossy()
    ));
    let pre = binary.with_file_name(format!(
        "{}.pre-bolt",
        binary.file_name().unwrap().to_string_lossy()
    ));
    assert_eq!(plan.artifacts[1].path, bolt);
    assert_eq!(std::fs::read(&pre).unwrap(), original_bytes);
    assert_eq!(
        std::fs::read(binary).unwrap(),
        std::fs::read(&bolt).unwrap()
    );
    assert!(is_bolted(binary));

    // It still works.
    assert_eq!(run(binary, CHECK_N), expected_output);
    std::fs::read_to_string(&plan.artifacts[0].path).unwrap()
}

#[test]
fn bolt_optimizes_the_profiled_binary_itself() {
    require("llvm-bolt-22", "bolt-22");
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("prog");
    compile(PROGRAM, dir.path(), &prog);
    let profile = collect(dir.path(), &prog);
    let expected = run(&prog, CHECK_N);

    // A copy of the profiled binary: same build ID, so addresses are used as they are.
    std::fs::create_dir(dir.path().join("build")).unwrap();
    let binary = dir.path().join("build/prog");
    std::fs::copy(&prog, &binary).unwrap();
    let original = std::fs::read(&binary).unwrap();

    let fdata = fdata_for(&profile, &binary, None).unwrap();
    assert!(fdata.placed_percent > 95.0, "{}", fdata.summary);
    assert!(fdata.summary.contains("same build ID"), "{}", fdata.summary);

    let out_dir = dir.path().join("out");
    let plan = backend(&profile, &binary, &out_dir, Step::AfterBuild(&binary)).unwrap();
    let text = check_bolted(&plan, &binary, &original, &expected);
    assert_eq!(text, fdata.text, "the fdata written is the one computed");

    let counts = counts_by_function(&text);
    let total: u64 = counts.values().sum();
    let hot = counts.get("hot_loop/1").copied().unwrap_or(0);
    assert!(
        hot * 100 > total * 60,
        "hot_loop has {hot} of {total} samples: {counts:?}"
    );
    assert!(counts.contains_key("checksum"), "{counts:?}");

    // Again, as when the build did not relink BIN: BOLT's output is not rewritten, its
    // original BIN.pre-bolt is optimized again and stays as it was.
    let again = backend(&profile, &binary, &out_dir, Step::AfterBuild(&binary)).unwrap();
    assert!(
        again
            .notes
            .iter()
            .any(|n| n.contains("still the optimized binary of an earlier run")),
        "{:?}",
        again.notes
    );
    check_bolted(&again, &binary, &original, &expected);
}

#[test]
fn a_binary_linked_without_emit_relocs_is_refused() {
    require("llvm-bolt-22", "bolt-22");
    let dir = tempfile::tempdir().unwrap();
    let clang = require("clang-22", "clang-22");
    let c = dir.path().join("prog.c");
    std::fs::write(&c, PROGRAM).unwrap();
    let prog = dir.path().join("prog");
    let status = Command::new(clang)
        .args(["-O2", "-o"])
        .arg(&prog)
        .arg(&c)
        .status()
        .unwrap();
    assert!(status.success());
    let before = std::fs::read(&prog).unwrap();
    let profile = pgo_profile::ProfileBuilder::new(&[("samples", "count")]).build();
    let err = backend(
        &profile,
        &prog,
        &dir.path().join("out"),
        Step::AfterBuild(&prog),
    )
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "{}: its code has no relocations; BOLT needs the binary linked with --emit-relocs \
             (RUSTFLAGS=\"-Clink-arg=-Wl,--emit-relocs\", or -Wl,--emit-relocs in LDFLAGS), \
             which pgo apply --backend bolt adds to the build it runs",
            prog.display()
        )
    );
    assert_eq!(std::fs::read(&prog).unwrap(), before, "left as built");
}

#[test]
fn samples_of_unchanged_functions_survive_a_rebuild() {
    require("llvm-bolt-22", "bolt-22");
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("prog");
    compile(PROGRAM, dir.path(), &prog);
    let profile = collect(dir.path(), &prog);
    let out_dir = dir.path().join("out");

    // pgo apply plans before the build, while the profiled binary is still there.
    let plan = backend(&profile, &prog, &out_dir, Step::Plan).unwrap();
    assert_eq!(
        plan.env,
        [pgo_backend::EnvEdit::AppendFlags {
            name: "LDFLAGS".into(),
            flags: vec!["-Wl,--emit-relocs".into()],
        }]
    );
    assert!(
        plan.artifacts
            .iter()
            .any(|a| a.kind == "copy of the profiled binary" && a.path.is_file()),
        "{plan:?}"
    );

    // The build: one line of the cold function changes, the binary is rebuilt in place.
    let changed = PROGRAM.replace(CHANGED_LINE.0, CHANGED_LINE.1);
    assert_ne!(changed, PROGRAM);
    compile(&changed, dir.path(), &prog);
    let rebuilt = std::fs::read(&prog).unwrap();
    let expected = run(&prog, CHECK_N);

    // Without the copy, the profiled binary is gone and nothing can be placed.
    let err = fdata_for(&profile, &prog, None).unwrap_err();
    assert!(err.contains("is gone"), "{err}");

    let fdata = fdata_for(&profile, &prog, Some(&out_dir)).unwrap();
    assert!(fdata.placed_percent > 50.0, "{}", fdata.summary);
    assert_eq!(
        fdata.changed_functions.first().map(String::as_str),
        Some("checksum"),
        "{fdata:?}"
    );
    let counts = counts_by_function(&fdata.text);
    assert!(counts.contains_key("hot_loop/1"), "{counts:?}");
    assert!(!counts.contains_key("checksum"), "{counts:?}");
    assert!(
        fdata
            .notes
            .iter()
            .any(|n| n.contains("changed since the profile") && n.contains("checksum")),
        "{:?}",
        fdata.notes
    );

    let plan = backend(&profile, &prog, &out_dir, Step::AfterBuild(&prog)).unwrap();
    let text = check_bolted(&plan, &prog, &rebuilt, &expected);
    assert_eq!(text, fdata.text);
    assert!(
        plan.notes.iter().any(|n| n.starts_with("BOLT profile:")),
        "{:?}",
        plan.notes
    );
}
