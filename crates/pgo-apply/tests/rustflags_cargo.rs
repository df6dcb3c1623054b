//! The merged environment is what cargo really uses: a tiny project with rustflags in its
//! `.cargo/config.toml` (and in `$CARGO_HOME/config.toml`) is run with real `cargo run` and the
//! environment of `merged_env`; the program prints which cfgs it was compiled with.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use pgo_apply::rustflags::{FlagSource, Host, merged_env, user_rustflags};
use pgo_backend::EnvEdit;

const MAIN_RS: &str = r#"
fn main() {
    let mut on = Vec::new();
    if cfg!(from_home) { on.push("from_home"); }
    if cfg!(from_config) { on.push("from_config"); }
    if cfg!(from_pgo) { on.push("from_pgo"); }
    if cfg!(pgo_note = "two words") { on.push("pgo_note"); }
    println!("cfgs: {}", on.join(","));
}
"#;

/// Variables of the test's own environment that would change which flags cargo uses.
const FLAG_VARS: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
];

fn cargo_run(project: &Path, vars: &[(String, Option<String>)], home: &Path) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.args(["run", "--quiet", "--offline"])
        .current_dir(project)
        .env("CARGO_HOME", home)
        .env("CARGO_TARGET_DIR", project.join("target"));
    for v in FLAG_VARS {
        if *v != "CARGO_TARGET_DIR" {
            cmd.env_remove(v);
        }
    }
    for (k, _) in std::env::vars() {
        if k.starts_with("CARGO_TARGET_") && k.ends_with("_RUSTFLAGS") {
            cmd.env_remove(k);
        }
    }
    for (name, value) in vars {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn cargo_uses_the_config_flags_and_the_added_ones() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("work/project");
    let home = dir.path().join("cargo-home");
    fs::create_dir_all(project.join("src")).unwrap();
    fs::create_dir_all(project.join(".cargo")).unwrap();
    fs::create_dir_all(&home).unwrap();
    fs::write(
        project.join("Cargo.toml"),
        "[package]\nname = \"flags-probe\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
         [lints.rust]\nunexpected_cfgs = \"allow\"\n\n[workspace]\n",
    )
    .unwrap();
    fs::write(project.join("src/main.rs"), MAIN_RS).unwrap();
    fs::write(
        project.join(".cargo/config.toml"),
        "[build]\nrustflags = [\"--cfg\", \"from_config\"]\n",
    )
    .unwrap();
    fs::write(
        home.join("config.toml"),
        "[build]\nrustflags = [\"--cfg\", \"from_home\"]\n",
    )
    .unwrap();

    // The environment as the build will see it: only CARGO_HOME of ours.
    let env_map: HashMap<String, String> =
        [("CARGO_HOME".to_string(), home.to_str().unwrap().to_string())].into();
    let env = |k: &str| env_map.get(k).cloned();
    let host = Host::detect(&project, &|k| std::env::var(k).ok()).unwrap();

    // Without pgo: cargo's own view, and ours agrees.
    assert_eq!(
        cargo_run(&project, &[], &home),
        "cfgs: from_home,from_config"
    );
    let user = user_rustflags(&project, &env, &host).unwrap();
    assert_eq!(user.source, FlagSource::Build);
    assert_eq!(user.flags, ["--cfg", "from_home", "--cfg", "from_config"]);

    // What a plain RUSTFLAGS does to the user (the bug this module exists for).
    let plain = [("RUSTFLAGS".to_string(), Some("--cfg from_pgo".to_string()))];
    assert_eq!(cargo_run(&project, &plain, &home), "cfgs: from_pgo");

    // With the merged environment: the config flags, ours, and a flag with a space.
    let edits = [EnvEdit::AppendFlags {
        name: "RUSTFLAGS".to_string(),
        flags: vec![
            "--cfg".into(),
            "from_pgo".into(),
            "--cfg".into(),
            "pgo_note=\"two words\"".into(),
            "--cfg".into(),
            "from_config".into(),
        ],
    }];
    let merged = merged_env(
        &edits,
        &project,
        &env,
        &host,
        &pgo_apply::cargo_profile::cargo_build(&["cargo", "build"]),
    )
    .unwrap();
    assert!(merged.warnings.is_empty(), "{:?}", merged.warnings);
    assert_eq!(
        cargo_run(&project, &merged.vars, &home),
        "cfgs: from_home,from_config,from_pgo,pgo_note"
    );
}
