//! External backends through the real protocol: the example backend of
//! `fixtures/external-backend` (Python 3) and two broken ones, found on PATH and run by
//! [`External`] with real decisions (pgo-decide on the committed Go profile).
//!
//! `External::find` reads PATH from the process environment, so this binary has a single test
//! function: it sets PATH once, before any other thread of its own could read it.

use pgo_backend::external::External;
use pgo_backend::{Backend, EnvEdit, Language, Plan, Request, Target};
use pgo_decide::{Decisions, Settings};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn plan(
    backend: &External,
    decisions: &Decisions,
    profile: &pgo_profile::Profile,
    dir: &Path,
) -> Result<Plan, String> {
    let out_dir = dir.join("out").join(backend.name());
    std::fs::create_dir_all(&out_dir).unwrap();
    let profiles = [workspace().join("profiles/go-cpu.pb.gz")];
    let target = Target {
        language: Language::Go,
        build_command: vec!["go".into(), "build".into(), ".".into()],
        workdir: dir.to_path_buf(),
        output_binary: None,
    };
    backend.plan(&Request {
        decisions,
        profile,
        profile_paths: &profiles,
        decisions_path: None,
        target: &target,
        out_dir: &out_dir,
    })
}

#[test]
fn external_backends_through_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(
        workspace().join("fixtures/external-backend/pgo-backend-example"),
        bin.join("pgo-backend-example"),
    )
    .unwrap();
    script(
        &bin,
        "pgo-backend-failing",
        "#!/bin/sh\ncat >/dev/null\necho 'reading the request' >&2\n\
         echo 'decisions.json: no inline decision I can use' >&2\necho >&2\nexit 3\n",
    );
    script(
        &bin,
        "pgo-backend-chatty",
        "#!/bin/sh\ncat >/dev/null\necho 'Hello! Here is your plan:'\n",
    );
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bin.clone()];
    dirs.extend(std::env::split_paths(&path));
    // SAFETY: the only test of this binary, and nothing else runs in it yet.
    unsafe { std::env::set_var("PATH", std::env::join_paths(dirs).unwrap()) };

    // Real decisions from the committed Go profile, as `pgo analyze` makes them.
    let profile = pgo_profile::load(workspace().join("profiles/go-cpu.pb.gz"), None)
        .expect("the committed profile loads");
    let cpu = profile
        .sample_type
        .iter()
        .position(|t| profile.string_table[t.r#type as usize] == "cpu")
        .expect("a cpu sample type");
    let graph = pgo_graph::CallGraph::build(&profile, cpu);
    let decisions = pgo_decide::decide(&graph, None, &Settings::default());
    assert!(decisions.inline.len() > 3, "{}", decisions.inline.len());

    // The example: one line per inline decision, the env edit, a note.
    let example = External::find("example").expect("pgo-backend-example on PATH");
    assert_eq!(example.program(), bin.join("pgo-backend-example"));
    let p = plan(&example, &decisions, &profile, dir.path()).expect("the example plans");
    let list = dir.path().join("out/example/inline-list.txt");
    assert_eq!(p.artifacts.len(), 1);
    assert_eq!(p.artifacts[0].path, list);
    assert_eq!(
        p.artifacts[0].summary,
        format!("{} inline decisions", decisions.inline.len())
    );
    let text = std::fs::read_to_string(&list).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), decisions.inline.len());
    for (line, d) in lines.iter().zip(&decisions.inline) {
        assert_eq!(
            *line,
            format!(
                "{} -> {} at {:+} weight {}",
                d.caller.linkage_name, d.callee.linkage_name, d.site.line_offset, d.weight
            )
        );
    }
    assert_eq!(
        p.env,
        vec![EnvEdit::Set {
            name: "PGO_EXAMPLE_INLINE_LIST".into(),
            value: list.display().to_string(),
        }]
    );
    assert_eq!(p.notes.len(), 1);
    assert!(p.post_build.is_empty());
    // What the backend was handed is on disk in its directory.
    assert!(dir.path().join("out/example/decisions.json").exists());
    assert!(dir.path().join("out/example/merged.pb.gz").exists());

    // A backend that fails: the error names the program and its last stderr line.
    let failing = External::find("failing").expect("pgo-backend-failing on PATH");
    let e = plan(&failing, &decisions, &profile, dir.path()).unwrap_err();
    assert!(
        e.contains(&bin.join("pgo-backend-failing").display().to_string()),
        "{e}"
    );
    assert!(
        e.ends_with(": decisions.json: no inline decision I can use"),
        "{e}"
    );
    assert!(e.contains("exit status: 3"), "{e}");
    assert!(!e.contains('\n'), "{e}");

    // A backend that answers prose: a clear error, not a panic or an empty plan.
    let chatty = External::find("chatty").expect("pgo-backend-chatty on PATH");
    let e = plan(&chatty, &decisions, &profile, dir.path()).unwrap_err();
    assert!(
        e.starts_with(&bin.join("pgo-backend-chatty").display().to_string()),
        "{e}"
    );
    assert!(
        e.contains("its answer is not a pgo-backend/1 plan (JSON on stdout)"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");

    assert!(External::find("no-such-backend-here").is_none());
}
