//! `pgo analyze` and `pgo explain` on a fixture whose right answers are known from how it is
//! written (fixtures/analyze-rust/src/main.rs), recorded by `pgo collect`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

/// The fixture (a default release build) and one profile of it, made once for all tests.
fn fixture() -> &'static (PathBuf, PathBuf) {
    static FIXTURE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FIXTURE.get_or_init(|| analyze_rust_fixture("analyze-rust"))
}

fn analyze(extra: &[&dyn AsRef<std::ffi::OsStr>], out: &Path) -> Value {
    let (_, profile) = fixture();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"analyze", profile, &"-o", &out];
    args.extend_from_slice(extra);
    ok(pgo(&args));
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

fn with_binary(dir: &Path) -> Value {
    let (binary, _) = fixture();
    analyze(&[&"--binary", binary], &dir.join("d.json"))
}

fn name(f: &Value) -> &str {
    f["name"].as_str().unwrap()
}

fn site_of<'a>(d: &'a Value, caller: &str) -> &'a Value {
    d["devirtualize"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| name(&v["caller"]) == caller)
        .unwrap_or_else(|| {
            panic!(
                "a devirtualization site in {caller}: {:#}",
                d["devirtualize"]
            )
        })
}

fn promoted(site: &Value) -> Vec<&str> {
    site["promote"]
        .as_array()
        .unwrap()
        .iter()
        .map(name)
        .collect()
}

#[test]
fn devirtualizes_skewed_and_even_sites_but_not_a_spread_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = with_binary(dir.path());
    let skewed = site_of(&d, "analyze_rust::skewed_dispatch");
    assert_eq!(
        promoted(skewed)[0],
        "<analyze_rust::Circle as analyze_rust::Shape>::area",
        "{skewed:#}"
    );
    assert_eq!(skewed["evidence"], "binary: indirect call instruction");
    let even = site_of(&d, "analyze_rust::even_dispatch");
    let mut both = promoted(even);
    both.sort();
    assert_eq!(
        both,
        [
            "<analyze_rust::Square as analyze_rust::Shape>::area",
            "<analyze_rust::Triangle as analyze_rust::Shape>::area"
        ]
    );
    let spread = site_of(&d, "analyze_rust::spread_dispatch");
    assert!(promoted(spread).is_empty(), "{spread:#}");
    assert_eq!(spread["targets"].as_array().unwrap().len(), 10);
}

#[test]
fn inlines_the_hot_helper_and_a_cycles_members_into_its_entry_but_never_the_recursion() {
    let dir = tempfile::tempdir().unwrap();
    let d = with_binary(dir.path());
    let inline = d["inline"].as_array().unwrap();
    let decided = |caller: &str, callee: &str| {
        inline.iter().find(|i| {
            name(&i["caller"]) == format!("analyze_rust::{caller}")
                && name(&i["callee"]) == format!("analyze_rust::{callee}")
        })
    };
    let mix = decided("hash_all", "mix")
        .unwrap_or_else(|| panic!("inline mix into hash_all: {inline:#?}"));
    assert_eq!(mix["already_inlined"], false);
    assert!(mix["callee_bytes"].as_u64().unwrap() > 0);
    assert!(mix["reason"].as_str().unwrap().contains("within the"));
    // fib calls itself: nothing goes into or around it.
    assert!(
        !inline
            .iter()
            .any(|i| name(&i["callee"]) == "analyze_rust::fib"),
        "no inline decision into or around the recursive fib"
    );
    // nested_sum <-> element: the member is inlined into the cycle's entry, the calls back
    // into the entry stay calls, and the entry is not inlined into its caller.
    assert!(
        decided("nested_sum", "element").is_some(),
        "element into nested_sum: {inline:#?}"
    );
    for i in inline {
        assert_ne!(
            name(&i["callee"]),
            "analyze_rust::nested_sum",
            "the recursion's entry inlined: {i:#}"
        );
    }
}

#[test]
fn cold_error_path_blocks_go_after_the_hot_ones_and_hot_chains_stay_together() {
    let dir = tempfile::tempdir().unwrap();
    let d = with_binary(dir.path());
    let (binary_path, _) = fixture();
    let blocks = d["layout"]["blocks"].as_array().unwrap();
    let checksum = blocks
        .iter()
        .find(|b| name(&b["function"]) == "analyze_rust::checksum")
        .unwrap_or_else(|| panic!("a block layout for checksum: {blocks:#?}"));
    let order: Vec<u64> = checksum["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_u64().unwrap())
        .collect();
    let hot = checksum["hot_blocks"].as_u64().unwrap() as usize;
    // The block that calls report_corrupt, found in the binary independently.
    let binary = pgo_binary::Binary::open(binary_path).unwrap();
    let function = binary
        .functions()
        .iter()
        .find(|f| f.name.contains("8checksum"))
        .unwrap()
        .clone();
    let corrupt = binary
        .functions()
        .iter()
        .find(|f| f.name.contains("14report_corrupt"))
        .unwrap()
        .start;
    let cfg = binary.cfg(&function).unwrap();
    let cold_block = cfg
        .blocks
        .iter()
        .find(|b| {
            b.calls.iter().any(
                |c| matches!(c.kind, pgo_binary::CallKind::Direct { target } if target == corrupt),
            )
        })
        .expect("the block calling report_corrupt");
    let position = order
        .iter()
        .position(|&a| a == cold_block.start)
        .expect("every block is placed");
    assert!(
        position >= hot,
        "the error path (block {position}) comes after the {hot} hot blocks: {checksum:#}"
    );
    assert_eq!(order[0], function.start, "the entry block stays first");

    let functions: Vec<&str> = d["layout"]["function_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(name)
        .collect();
    let at = |f: &str| {
        functions
            .iter()
            .position(|n| *n == f)
            .unwrap_or_else(|| panic!("{f} in {functions:?}"))
    };
    assert_eq!(
        at("analyze_rust::mix"),
        at("analyze_rust::hash_all") + 1,
        "the hot callee follows its caller: {functions:?}"
    );
}

#[test]
fn the_same_inputs_give_a_byte_identical_decisions_file() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, _) = fixture();
    analyze(&[&"--binary", binary], &dir.path().join("a.json"));
    analyze(&[&"--binary", binary], &dir.path().join("b.json"));
    let a = std::fs::read(dir.path().join("a.json")).unwrap();
    assert_eq!(a, std::fs::read(dir.path().join("b.json")).unwrap());
    analyze(&[], &dir.path().join("c.json"));
    analyze(&[], &dir.path().join("d.json"));
    assert_eq!(
        std::fs::read(dir.path().join("c.json")).unwrap(),
        std::fs::read(dir.path().join("d.json")).unwrap()
    );
}

#[test]
fn explain_prints_tables_and_json() {
    let dir = tempfile::tempdir().unwrap();
    with_binary(dir.path());
    let d = dir.path().join("d.json");
    let text = ok(pgo(&[&"explain", &d]));
    assert!(
        text.contains("inline (") && text.contains("devirtualize (") && text.contains("layout:"),
        "{text}"
    );
    assert!(
        text.contains("analyze_rust::hash_all +") && text.contains("-> analyze_rust::mix"),
        "{text}"
    );
    let json: Value = serde_json::from_str(&ok(pgo(&[
        &"explain",
        &d,
        &"--kind",
        &"devirtualize",
        &"--json",
    ])))
    .unwrap();
    assert!(json.get("inline").is_none() && json["devirtualize"].as_array().unwrap().len() >= 3);
}

#[test]
fn without_addresses_or_binary_it_says_what_it_cannot_decide_and_decides_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("folded.json");
    ok(pgo(&[&"analyze", &profile("folded.txt"), &"-o", &out]));
    let d: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let limits = d["limitations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" | ");
    assert!(
        limits.contains("no instruction addresses") && limits.contains("no --binary"),
        "{limits}"
    );
    assert!(!d["layout"]["function_order"].as_array().unwrap().is_empty());
    assert!(d["layout"]["blocks"].as_array().unwrap().is_empty());
}

#[test]
fn a_binary_that_is_not_the_profiled_one_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let (_, profile) = fixture();
    // Another build of another program, renamed to the fixture's name.
    let other = dir.path().join("analyze-rust");
    std::fs::copy(env!("CARGO_BIN_EXE_pgo"), &other).unwrap();
    let out = dir.path().join("d.json");
    let o = pgo(&[&"analyze", profile, &"--binary", &other, &"-o", &out]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!("pgo: error: {}: build ID", other.display()))
            && err.contains("--force"),
        "{err}"
    );
    assert!(!out.exists());
    ok(pgo(&[
        &"analyze",
        profile,
        &"--binary",
        &other,
        &"--force",
        &"-o",
        &out,
    ]));
}

#[test]
fn a_decisions_file_of_another_schema_version_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("v9.json");
    std::fs::write(&bad, r#"{"schema": "pgo-decisions", "version": 9}"#).unwrap();
    let o = pgo(&[&"explain", &bad]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).trim(),
        format!(
            "pgo: error: {}: decisions schema version 9; this pgo reads version 1 (re-run pgo analyze with this pgo)",
            bad.display()
        )
    );
    std::fs::write(&bad, "[1, 2").unwrap();
    let o = pgo(&[&"explain", &bad]);
    assert!(
        stderr(&o).contains("not a decisions file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn flamegraph_marks_the_decided_calls() {
    let dir = tempfile::tempdir().unwrap();
    with_binary(dir.path());
    let (_, profile) = fixture();
    let svg = dir.path().join("decided.svg");
    ok(pgo(&[
        &"flamegraph",
        profile,
        &"--decisions",
        &dir.path().join("d.json"),
        &"-o",
        &svg,
    ]));
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg.contains("<title>analyze_rust::mix [inline] ("),
        "the inlined helper is marked"
    );
    assert!(svg.contains(
        "<title>&lt;analyze_rust::Circle as analyze_rust::Shape&gt;::area [devirtualize] ("
    ));
    // A chain of decided calls marks every link (main -> hash_all -> mix, hash_all being very
    // hot), and a call that was not decided keeps its plain name (recursive fib).
    assert!(svg.contains("<title>analyze_rust::hash_all [inline] ("));
    assert!(svg.contains("<title>analyze_rust::fib ("));
}
