//! `pgo apply` end to end: a real profile of a real program, a real rebuild with rustc, and
//! what the compiler says it did with our files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

/// A plain release build of fixtures/analyze-rust and a profile of it, made once.
fn fixture() -> &'static (PathBuf, PathBuf) {
    static FIXTURE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FIXTURE.get_or_init(|| analyze_rust_fixture("apply-analyze-rust"))
}

/// A copy of the fixture's sources in a temporary directory (a user's checkout).
fn checkout(dir: &Path) -> PathBuf {
    let src = root().join("fixtures/analyze-rust");
    let dst = dir.join("analyze-rust");
    std::fs::create_dir_all(dst.join("src")).unwrap();
    for f in ["Cargo.toml", "Cargo.lock", "src/main.rs"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    dst
}

/// `pgo apply ARGS` in `workdir` with a clean Rust flag environment plus `env`.
fn apply(workdir: &Path, args: &[&dyn AsRef<std::ffi::OsStr>], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgo"));
    cmd.current_dir(workdir)
        .arg("apply")
        .args(args)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_BOOTSTRAP");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn rustc_backend_rebuilds_with_the_profile_and_the_compiler_follows_it() {
    let (plain, profile) = fixture();
    let dir = tempfile::tempdir().unwrap();
    let work = checkout(dir.path());
    // The user's own flags live in .cargo/config.toml: pgo apply must keep them, not replace
    // them. Here they ask rustc for inlining remarks, which is also how we see what LLVM did.
    std::fs::create_dir_all(work.join(".cargo")).unwrap();
    std::fs::write(
        work.join(".cargo/config.toml"),
        "[build]\nrustflags = [\"-Cremark=inline\", \"-Cremark=sample-profile-impl\"]\n",
    )
    .unwrap();
    let target = dir.path().join("target");
    let built = target.join("release/analyze-rust");
    let out = apply(
        &work,
        &[
            &"--profile",
            profile,
            &"--binary",
            plain,
            &"--output-binary",
            &built,
            &"--json",
            &"--",
            &"cargo",
            &"build",
            &"--release",
        ],
        &[("CARGO_TARGET_DIR", &target)],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let summary: Value = serde_json::from_str(&stdout(&out)).unwrap();

    // The three files exist and were handed to the build.
    let kinds: Vec<&str> = summary["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "LLVM sample profile (text)",
        "inline replay",
        "symbol ordering file",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing: {summary}");
    }
    // Line counts are executions from the profiled binary's blocks, not raw samples.
    let sample_profile = summary["artifacts"][0]["summary"].as_str().unwrap();
    let counted: usize = sample_profile
        .split_once(" functions (")
        .and_then(|(_, r)| r.split(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(counted > 0, "{sample_profile}");
    let flags = summary["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "CARGO_ENCODED_RUSTFLAGS")
        .and_then(|e| e["value"].as_str())
        .unwrap()
        .to_string();
    assert!(
        flags.starts_with("-Cremark=inline\u{1f}-Cremark=sample-profile-impl\u{1f}"),
        "{flags:?}"
    );
    assert!(flags.contains("-Zprofile-sample-use="), "{flags:?}");

    // LLVM read the sample profile (remarks from the sample loader), replayed our inline
    // decision of the hot `mix` call site, and the names of the new build are the profile's.
    assert!(
        err.contains("sample-profile-impl (analysis): Applied"),
        "no sample-profile remarks: the profile was not applied\n{err}"
    );
    assert!(
        err.lines().any(|l| l.contains("analyze_rust3mix")
            && l.contains("inlined into")
            && l.contains("analyze_rust8hash_all")
            && l.contains("previously inlined")),
        "the decided inline of mix into hash_all was not replayed\n{err}"
    );
    let matched = summary["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .filter(|n| n.contains("exist by name"))
        .find_map(|n| n.split('%').next()?.parse::<f64>().ok())
        .expect("a name-match note");
    assert!(matched >= 90.0, "{matched}% of samples matched: {summary}");
    // Call sites the samples did not reach are weighed at the normal threshold (225), not the
    // cold one (45): LLVM inlined at least one callee there that the cold threshold refuses
    // (here the `Vec` growth helpers in code outside the sampled loops).
    assert!(
        err.lines().any(|l| l.contains("inline (success)")
            && l.split("(cost=")
                .nth(1)
                .and_then(|r| r.split_once(", threshold=225)"))
                .and_then(|(cost, _)| cost.parse::<i64>().ok())
                .is_some_and(|cost| cost > 45)),
        "no call site without samples was inlined at the normal threshold\n{err}"
    );

    // The optimized program computes what the plain one does.
    assert_eq!(checksum_of(&built, &[]), checksum_of(plain, &[]));
}

#[test]
fn a_build_in_a_workspace_member_finds_the_program_cargo_linked() {
    // The profile is of a plain build elsewhere (legacy names: pgo builds once more to learn
    // the new names, and needs that build's program). Run from a workspace member, Cargo
    // links into the workspace root's target directory, not the member's: pgo must find the
    // program there without --output-binary, for the names build and for the check after.
    let (plain, profile) = fixture();
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let member = checkout(&ws);
    let manifest = std::fs::read_to_string(member.join("Cargo.toml")).unwrap();
    std::fs::write(
        member.join("Cargo.toml"),
        manifest.replace("\n[workspace]\n", "\n"),
    )
    .unwrap();
    std::fs::rename(member.join("Cargo.lock"), ws.join("Cargo.lock")).unwrap();
    std::fs::write(
        ws.join("Cargo.toml"),
        "[workspace]\nmembers = [\"analyze-rust\"]\nresolver = \"3\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgo"))
        .current_dir(&member)
        .args(["apply", "--json", "--profile"])
        .arg(profile)
        .args(["--", "cargo", "build", "--release"])
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_BOOTSTRAP")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("names build"), "{err}");
    let summary: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let built = ws.join("target/release/analyze-rust");
    assert_eq!(
        summary["binary"].as_str(),
        Some(built.to_str().unwrap()),
        "{summary}"
    );
    assert!(
        summary["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.contains("exist by name"))),
        "the built program was not checked against the profile: {summary}"
    );
    assert_eq!(checksum_of(&built, &[]), checksum_of(plain, &[]));
}

#[test]
fn dry_run_prints_the_environment_and_builds_nothing() {
    let (_, profile) = fixture();
    let dir = tempfile::tempdir().unwrap();
    let work = checkout(dir.path());
    // The build's own target directory is elsewhere: the backend's files go beside it, so
    // that builds of one checkout with their own target directories keep their own files.
    let target = dir.path().join("elsewhere");
    let out = apply(
        &work,
        &[
            &"--profile",
            profile,
            &"--dry-run",
            &"--",
            &"cargo",
            &"build",
            &"--release",
        ],
        &[("CARGO_TARGET_DIR", &target)],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("CARGO_ENCODED_RUSTFLAGS=-Zprofile-sample-use="),
        "{err}"
    );
    assert!(err.contains("RUSTC_BOOTSTRAP=1"), "{err}");
    assert!(!target.join("release").exists(), "--dry-run built");
    assert!(
        target.join("pgo/rustc/sample-profile.txt").exists(),
        "{err}"
    );
    assert!(!work.join("target").exists(), "{err}");
}

#[test]
fn a_missing_profile_is_an_error_unless_allowed_and_then_it_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pb.gz");
    let marker = dir.path().join("built");
    let out = apply(
        dir.path(),
        &[&"--profile", &missing, &"--", &"touch", &marker],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nope.pb.gz"), "{err}");
    assert!(!marker.exists());
    // No --profile at all is a usage error too, unless allowed.
    let out = apply(dir.path(), &[&"--", &"touch", &marker], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--profile"), "{}", stderr(&out));
    assert!(!marker.exists());

    // The build runs, and with the flags that make its binary the one to profile next (v0
    // names, discriminators), merged into cargo's flags.
    let build = format!(
        "echo \"$RUSTC_BOOTSTRAP $CARGO_ENCODED_RUSTFLAGS\" > '{}'",
        marker.display()
    );
    let out = apply(
        dir.path(),
        &[
            &"--profile",
            &missing,
            &"--allow-missing",
            &"--backend",
            &"rustc",
            &"--",
            &"sh",
            &"-c",
            &build,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("WITHOUT profile-guided optimization"));
    let env = std::fs::read_to_string(&marker).expect("the build ran");
    assert!(env.starts_with("1 "), "{env}");
    assert!(env.contains("-Zdebug-info-for-profiling"), "{env}");
    assert!(env.contains("-Csymbol-mangling-version=v0"), "{env}");
    assert!(!env.contains("profile-sample-use"), "{env}");
}

/// Section names of an ELF file, from readelf (binutils, which rustc's linker driver needs).
fn section_names(binary: &Path) -> String {
    let out = Command::new("readelf")
        .args(["-S", "-W"])
        .arg(binary)
        .output()
        .expect("readelf runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_default_release_profile_gets_the_debug_info_pgo_needs_a_users_own_is_kept_and_strip_is_off() {
    // `cargo new`'s release profile has no debug info, and Cargo strips what a rustflag adds:
    // pgo raises the profile's own setting, so the first build is one a profile can use.
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("tiny");
    std::fs::create_dir_all(work.join("src")).unwrap();
    std::fs::write(
        work.join("Cargo.toml"),
        "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2024\"\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(
        work.join("src/main.rs"),
        "fn main() { println!(\"{}\", std::env::args().count()); }\n",
    )
    .unwrap();
    let target = dir.path().join("target");
    // No --profile at all: the first build, as `pgo collect`'s hint for a binary without
    // debug info spells it.
    let build = || {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--allow-missing", &"--"];
        let command = ["cargo", "build", "--release", "--quiet"];
        args.extend(command.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
        let out = apply(&work, &args, &[("CARGO_TARGET_DIR", &target)]);
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };
    let err = build();
    assert!(
        err.contains("CARGO_PROFILE_RELEASE_DEBUG=limited") && err.contains("Cargo's default"),
        "{err}"
    );
    let sections = section_names(&target.join("release/tiny"));
    assert!(
        sections.contains(".debug_info") && sections.contains(".debug_line"),
        "{sections}"
    );

    // The same project with a release profile of its own.
    let manifest = std::fs::read_to_string(work.join("Cargo.toml")).unwrap();
    let build_with_release = |setting: &str| {
        let text = format!("{manifest}[profile.release]\n{setting}\n");
        std::fs::write(work.join("Cargo.toml"), text).unwrap();
        build()
    };

    // A user's full debug info is theirs: pgo sets nothing.
    let err = build_with_release("debug = \"full\"");
    assert!(!err.contains("CARGO_PROFILE_RELEASE_DEBUG"), "{err}");

    // A profile that strips symbols (as oxipng's and many release profiles do) would leave a
    // binary no profile can describe: pgo turns stripping off and says so.
    let err = build_with_release("strip = \"symbols\"");
    assert!(
        err.contains("CARGO_PROFILE_RELEASE_STRIP=none") && err.contains("strips debug info"),
        "{err}"
    );
    let sections = section_names(&target.join("release/tiny"));
    assert!(
        sections.contains(".debug_info") && sections.contains(".symtab"),
        "{sections}"
    );
}

#[test]
fn a_stale_profile_fails_ci_with_fail_below() {
    let (_, profile) = fixture();
    let dir = tempfile::tempdir().unwrap();
    let work = checkout(dir.path());
    let fresh = apply(
        &work,
        &[&"--profile", profile, &"--dry-run", &"--fail-below", &"90"],
        &[],
    );
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    assert!(
        stderr(&fresh).contains("profile freshness: 100.0%"),
        "{}",
        stderr(&fresh)
    );

    // Twenty lines added at the top move every function of the program.
    let main = work.join("src/main.rs");
    let text = std::fs::read_to_string(&main).unwrap();
    std::fs::write(&main, "// moved\n".repeat(20) + &text).unwrap();
    let stale = apply(
        &work,
        &[&"--profile", profile, &"--dry-run", &"--fail-below", &"90"],
        &[],
    );
    assert_eq!(stale.status.code(), Some(2), "{}", stderr(&stale));
    let err = stderr(&stale);
    assert!(err.contains("below --fail-below 90"), "{err}");
    assert!(err.contains("WARNING: the profile is stale"), "{err}");
}

/// A Go build compiles the standard library with the profile too, so the check covers it: the
/// runtime's assembly (`TEXT ·memmove(SB)`), the functions another package declares for it
/// (`//go:linkname runtime_mapaccess2 runtime.mapaccess2`) and range-over-func bodies
/// (`F-range1`) are fresh in a profile of the Go it builds with, taken just now. A `-trimpath`
/// build (release tooling's default) records import paths (`pgofixture/gocpu/main.go`,
/// `runtime/proc.go`) instead of file paths: the same check holds, and an edit to the
/// program's source makes it stale.
#[test]
fn a_go_builds_freshness_covers_the_standard_library_it_compiles() {
    let Some(go) = go() else { return };
    for trimpath in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        for f in ["main.go", "go.mod"] {
            std::fs::copy(root().join("fixtures/go-cpu").join(f), src.join(f)).unwrap();
        }
        let flags: &[&str] = if trimpath { &["-trimpath"] } else { &[] };
        let bin = dir.path().join("gocpu");
        let built = Command::new(&go)
            .current_dir(&src)
            .arg("build")
            .args(flags)
            .arg("-o")
            .arg(&bin)
            .arg(".")
            .output()
            .unwrap();
        assert!(built.status.success(), "{}", stderr(&built));
        let profile = dir.path().join("p.pb.gz");
        ok(pgo(&[
            &"collect",
            &"-o",
            &profile,
            &"--",
            &bin,
            &"-seconds",
            &"1",
        ]));

        let check = || {
            let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
                &"--profile",
                &profile,
                &"--dry-run",
                &"--out-dir",
                &"out",
                &"--json",
                &"--",
                &go,
                &"build",
            ];
            args.extend(flags.iter().map(|f| f as &dyn AsRef<std::ffi::OsStr>));
            args.extend([&"-o" as &dyn AsRef<std::ffi::OsStr>, &"next", &"."]);
            let o = apply(&src, &args, &[]);
            let err = stderr(&o);
            assert!(o.status.success(), "{err}");
            let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
            (summary["fresh_percent"].as_f64().unwrap(), err)
        };
        let (fresh, err) = check();
        assert!(
            fresh > 99.9 && !err.contains("stale:"),
            "trimpath {trimpath}: {err}"
        );
        // The runtime's share (the allocator, memmove, maps) was checked against GOROOT.
        let share = err
            .split("% of the weight checked is in the sources of the dependencies")
            .next()
            .and_then(|s| s.rsplit('(').next())
            .and_then(|s| s.parse::<f64>().ok());
        assert!(
            share.is_some_and(|s| s >= 1.0),
            "trimpath {trimpath}: {err}"
        );

        // The program's own functions moved down a line: most of the weight is stale.
        let source = std::fs::read_to_string(src.join("main.go")).unwrap();
        std::fs::write(src.join("main.go"), format!("// moved\n{source}")).unwrap();
        let (fresh, err) = check();
        assert!(
            fresh < 50.0 && err.contains("stale: main."),
            "trimpath {trimpath}: {err}"
        );
    }
}

#[test]
fn freshness_covers_the_dependencies_the_build_compiles() {
    // A thin program over its library: all of the profile is in the dependency's sources,
    // recorded in another checkout of it (a CI clone elsewhere).
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("hotlib");
    let app = dir.path().join("app");
    std::fs::create_dir_all(lib.join("src")).unwrap();
    std::fs::create_dir_all(app.join("src")).unwrap();
    std::fs::write(
        lib.join("Cargo.toml"),
        "[package]\nname = \"hotlib\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    let source = "// The hot part.\n\npub fn hot(x: u64) -> u64 {\n    x * 3\n}\n";
    std::fs::write(lib.join("src/lib.rs"), source).unwrap();
    std::fs::write(
        app.join("Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         [dependencies]\nhotlib = { path = \"../hotlib\" }\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(
        app.join("src/main.rs"),
        "fn main() {\n    println!(\"{}\", hotlib::hot(2));\n}\n",
    )
    .unwrap();

    let mut b = pgo_profile::ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
    let hot = b.function(pgo_profile::FunctionInfo {
        name: "hotlib::hot",
        system_name: "_ZN6hotlib3hot17h0123456789abcdefE",
        filename: "/builds/elsewhere/hotlib/src/lib.rs",
        start_line: 3,
    });
    let main = b.function(pgo_profile::FunctionInfo {
        name: "app::main",
        system_name: "_ZN3app4main17h0123456789abcdefE",
        filename: "/builds/elsewhere/app/src/main.rs",
        start_line: 1,
    });
    let line = |function, line| pgo_profile::LineInfo {
        function,
        line,
        column: 0,
    };
    let leaf = b.location(None, 0x10, &[line(hot, 4)]);
    let caller = b.location(None, 0x20, &[line(main, 2)]);
    b.add_sample(&[leaf, caller], &[1000, 1_000_000_000], &[])
        .unwrap();
    let profile = dir.path().join("p.pb.gz");
    pgo_profile::write_profile(&profile, &b.build()).unwrap();

    let check = || {
        apply(
            &app,
            &[
                &"--profile",
                &profile,
                &"--dry-run",
                &"--fail-below",
                &"90",
                &"--out-dir",
                &dir.path().join("out"),
                &"--",
                &"cargo",
                &"build",
                &"--release",
            ],
            &[],
        )
    };
    let fresh = check();
    let err = stderr(&fresh);
    assert!(fresh.status.success(), "{err}");
    assert!(err.contains("profile freshness: 100.0%"), "{err}");
    assert!(err.contains("sources of the dependencies"), "{err}");

    // The library changed under the profile: CI fails, as for the project's own sources.
    std::fs::write(lib.join("src/lib.rs"), format!("// moved\n{source}")).unwrap();
    let stale = check();
    let err = stderr(&stale);
    assert_eq!(stale.status.code(), Some(2), "{err}");
    assert!(err.contains("below --fail-below 90"), "{err}");
}

#[test]
fn an_unknown_backend_is_a_clear_error() {
    let (_, profile) = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = apply(
        dir.path(),
        &[&"--profile", profile, &"--backend", &"nosuch", &"--dry-run"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("pgo-backend-nosuch"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_external_backend_on_path_serves_backend_name() {
    let (_, profile) = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::join_paths(
        std::iter::once(root().join("fixtures/external-backend"))
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgo"))
        .current_dir(dir.path())
        .args([
            "apply",
            "--backend",
            "example",
            "--dry-run",
            "--json",
            "--profile",
        ])
        .arg(profile)
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let list = summary["artifacts"][0]["path"].as_str().unwrap();
    let text = std::fs::read_to_string(list).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("analyze_rust8hash_all") && l.contains("analyze_rust3mix")),
        "{text}"
    );
    assert_eq!(summary["env"][0]["name"], "PGO_EXAMPLE_INLINE_LIST");
}

/// Runs `BIN ARGS` and returns what it prints without the timing its last line may end with
/// (`NAME: CHECKSUM in S s`): what must not change between builds.
fn checksum_of(binary: &Path, args: &[&str]) -> String {
    let out = Command::new(binary).args(args).output().unwrap();
    assert!(out.status.success(), "{} {args:?} failed", binary.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let (head, last) = text
        .trim_end()
        .rsplit_once('\n')
        .unwrap_or(("", text.trim_end()));
    let last = last.split(" in ").next().unwrap_or(last);
    format!("{head}\n{last}")
}

/// `clang-22 -O2 -g EXTRA main.c -o OUT`, as a shell command line.
fn clang(out: &str, extra: &str) -> String {
    format!("clang-22 -O2 -g {extra} main.c -o {out}")
}

/// The C fixture copied into `work`, built as `work/NAME` with `flags`, and a `pgo collect`
/// profile of its `train` run (`work/c.pb.gz`).
fn c_fixture_profile(work: &Path, name: &str, flags: &str) -> PathBuf {
    c_fixture_profile_at(work, name, flags, &[])
}

/// [`c_fixture_profile`] with more `pgo collect` options (a sampling frequency).
fn c_fixture_profile_at(work: &Path, name: &str, flags: &str, collect_options: &[&str]) -> PathBuf {
    std::fs::copy(
        root().join("fixtures/suite/c-sort/main.c"),
        work.join("main.c"),
    )
    .unwrap();
    let status = Command::new("sh")
        .current_dir(work)
        .args(["-c", &clang(name, flags)])
        .status()
        .expect("clang-22 runs (Debian package clang-22; `cargo xtask test` installs it)");
    assert!(status.success());
    let profile = work.join("c.pb.gz");
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"collect"];
    for o in collect_options {
        args.push(o);
    }
    let binary = work.join(name);
    args.extend([
        &"-o" as &dyn AsRef<std::ffi::OsStr>,
        &profile,
        &"--",
        &binary,
        &"train",
    ]);
    ok(pgo(&args));
    profile
}

#[test]
fn clang_backend_builds_a_c_program_with_the_profile() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let profile = c_fixture_profile(work, "plain", "");

    let build = clang(
        "out",
        "$CFLAGS -Rpass=inline -Rpass-analysis=sample-profile-impl",
    ) + " $LDFLAGS";
    let out = apply(
        work,
        &[
            &"--profile",
            &profile,
            &"--backend",
            &"clang",
            &"--output-binary",
            &"out",
            &"--",
            &"sh",
            &"-c",
            &build,
        ],
        &[],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Applied"), "clang applied no samples:\n{err}");
    assert!(
        err.contains("previously inlined"),
        "no inline decision was replayed:\n{err}"
    );
    // Other notes start with a share too (of samples without a source line, when the profiled
    // binary has no debug info): the name-match note is the one about names.
    let matched: f64 = err
        .lines()
        .filter(|l| l.contains("exist by name"))
        .find_map(|l| {
            l.strip_prefix("pgo: note: ")?
                .split('%')
                .next()?
                .parse()
                .ok()
        })
        .expect("a name-match note");
    assert!(matched >= 90.0, "{err}");
    assert_eq!(
        checksum_of(&work.join("out"), &["measure"]),
        checksum_of(&work.join("plain"), &["measure"])
    );
}

/// A profile of a few hundred samples builds, but the user is told that decisions from so few
/// samples vary from one profile to the next, and what to do about it.
#[test]
fn a_profile_of_few_samples_gets_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let profile = c_fixture_profile_at(work, "plain", "", &["-F", "100"]);
    let out = apply(
        work,
        &[
            &"--profile",
            &profile,
            &"--backend",
            &"clang",
            &"--dry-run",
            &"--",
            &"sh",
            &"-c",
            &clang("out", "$CFLAGS"),
        ],
        &[],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let note = err
        .lines()
        .find(|l| l.contains("the profile holds only"))
        .unwrap_or_else(|| panic!("no note about the sample count:\n{err}"));
    assert!(note.contains("pgo merge") && note.contains("-F"), "{note}");
}

/// GCC ignores the variable the clang backend reaches every clang through: a build with `cc`
/// succeeds without the profile, its functions still match the profile by name, and the user
/// must be told.
#[test]
fn clang_backend_warns_when_gcc_compiled_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let profile = c_fixture_profile(work, "plain", "");
    let out = apply(
        work,
        &[
            &"--profile",
            &profile,
            &"--backend",
            &"clang",
            &"--output-binary",
            &"out",
            &"--",
            &"gcc",
            &"-O2",
            &"-g",
            &"main.c",
            &"-o",
            &"out",
        ],
        &[],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let warning = err
        .lines()
        .find(|l| l.contains("compiled by GCC"))
        .unwrap_or_else(|| panic!("no warning that GCC compiled the program:\n{err}"));
    assert!(
        warning.contains("1 of 1 C/C++ compilation units") && warning.contains("NO profile"),
        "{warning}"
    );
}

/// A Makefile that assigns its own CFLAGS (no -g) ignores the environment's: the clang
/// backend's flags still reach every clang the build runs, for the first build (line tables and
/// discriminators) and for the build with the profile (samples applied), and the program is
/// found where make leaves it.
#[test]
fn a_makefile_that_sets_its_own_cflags_still_gets_pgos_flags() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    std::fs::copy(
        root().join("fixtures/suite/c-sort/main.c"),
        work.join("main.c"),
    )
    .unwrap();
    std::fs::write(
        work.join("Makefile"),
        "CC = clang-22\nCFLAGS = -O2 -Rpass-analysis=sample-profile-impl\n\
         out: main.c\n\t$(CC) $(CFLAGS) main.c -o out\n",
    )
    .unwrap();
    let profile = work.join("c.pb.gz");
    let make = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut all = args.to_vec();
        all.extend([&"--backend" as &dyn AsRef<std::ffi::OsStr>, &"clang", &"--"]);
        all.extend([&"make" as &dyn AsRef<std::ffi::OsStr>, &"-B", &"out"]);
        let out = apply(work, &all, &[("CFLAGS", Path::new("-DIGNORED_BY_MAKE"))]);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        err
    };

    make(&[&"--profile", &profile, &"--allow-missing"]);
    let sections = section_names(&work.join("out"));
    assert!(sections.contains(".debug_line"), "{sections}");
    let first = checksum_of(&work.join("out"), &["measure"]);
    ok(pgo(&[
        &"collect",
        &"-o",
        &profile,
        &"--",
        &work.join("out"),
        &"train",
    ]));

    // The built program is found where make left it, by the profiled program's name.
    let err = make(&[&"--profile", &profile]);
    assert!(err.contains("Applied"), "clang applied no samples:\n{err}");
    assert!(
        err.contains("of the profile's samples are in functions that exist by name in")
            && err.contains("/out"),
        "the built binary was not checked:\n{err}"
    );
    assert!(
        err.contains("told apart by its discriminators"),
        "the first build had no discriminators:\n{err}"
    );
    assert_eq!(checksum_of(&work.join("out"), &["measure"]), first);
}

/// make links Lua's `lua` and `luac` into `src/`: the program the build linked is found there
/// by the profiled program's name, and checked against the profile, without --output-binary.
#[test]
fn a_program_make_links_into_a_subdirectory_is_found_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    std::fs::create_dir(work.join("src")).unwrap();
    std::fs::copy(
        root().join("fixtures/suite/c-sort/main.c"),
        work.join("src/main.c"),
    )
    .unwrap();
    std::fs::write(
        work.join("Makefile"),
        "all:\n\tclang-22 -O2 -g src/main.c -o src/sort\n\
         \tclang-22 -O2 -g -DOTHER src/main.c -o src/sort-tool\n",
    )
    .unwrap();
    let build = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut all = args.to_vec();
        all.extend([&"--backend" as &dyn AsRef<std::ffi::OsStr>, &"clang", &"--"]);
        all.extend([&"make" as &dyn AsRef<std::ffi::OsStr>, &"-B"]);
        let out = apply(work, &all, &[]);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        err
    };
    let profile = work.join("c.pb.gz");
    build(&[&"--profile", &profile, &"--allow-missing"]);
    ok(pgo(&[
        &"collect",
        &"-o",
        &profile,
        &"--",
        &work.join("src/sort"),
        &"train",
    ]));
    let err = build(&[&"--profile", &profile]);
    let sort = work.join("src/sort");
    assert!(
        err.contains(&format!(
            "of the profile's samples are in functions that exist by name in {}",
            sort.display()
        )),
        "the built program was not found in src/:\n{err}"
    );
    assert!(!err.contains("was not checked"), "{err}");
}

/// A binary built as pgo builds (`-fdebug-info-for-profiling`) numbers the blocks of a line;
/// the next build's profile carries those discriminators and clang applies counts by them.
#[test]
fn a_profile_of_a_pgo_built_binary_carries_discriminators_the_compiler_applies() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let profile = c_fixture_profile(work, "profiled", "-fdebug-info-for-profiling");

    let build = clang("out", "$CFLAGS -Rpass-analysis=sample-profile-impl") + " $LDFLAGS";
    let files = work.join("pgo-files");
    let out = apply(
        work,
        &[
            &"--profile",
            &profile,
            &"--backend",
            &"clang",
            &"--out-dir",
            &files,
            &"--output-binary",
            &"out",
            &"--",
            &"sh",
            &"-c",
            &build,
        ],
        &[],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let text = std::fs::read_to_string(files.join("clang/sample-profile.txt")).unwrap();
    let with_discriminator = |l: &str| {
        l.trim_start().split_once(':').is_some_and(|(key, _)| {
            key.split_once('.').is_some_and(|(o, d)| {
                o.parse::<u32>().is_ok() && d.parse::<u32>().is_ok_and(|d| d > 0)
            })
        })
    };
    assert!(
        text.lines().any(with_discriminator),
        "no line with a discriminator in the sample profile:\n{text}"
    );
    // clang's remark names the discriminator it looked the count up by.
    let applied_by_discriminator = err.lines().any(|l| {
        l.contains("samples from profile (offset: ")
            && l.split("(offset: ")
                .nth(1)
                .is_some_and(|rest| rest.split(')').next().is_some_and(|k| k.contains('.')))
    });
    assert!(
        applied_by_discriminator,
        "clang applied no count by discriminator:\n{err}"
    );
    assert_eq!(
        checksum_of(&work.join("out"), &["measure"]),
        checksum_of(&work.join("profiled"), &["measure"])
    );
}
