//! `pgo top`, `merge`, `flamegraph`, `diff` and `convert` on real profiles, checked against
//! `go tool pprof` where Go is installed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

/// Flat and cumulative percent per function from `pgo top --json`.
fn pgo_shares(path: &Path) -> BTreeMap<String, (f64, f64)> {
    let top = pgo_top_json(&[path]);
    top["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["function"].as_str().unwrap().to_string(),
                (
                    r["flat_percent"].as_f64().unwrap(),
                    r["cum_percent"].as_f64().unwrap(),
                ),
            )
        })
        .collect()
}

fn assert_top_matches_pprof(name: &str) {
    let Some(go) = go() else { return };
    let path = profile(name);
    let theirs = parse_pprof_top(&go_pprof(
        &go,
        &[&"-top", &"-nodefraction=0", &"-nodecount=100000", &path],
    ));
    let ours = pgo_shares(&path);
    assert!(theirs.len() > 5, "pprof listed functions: {theirs:?}");
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "the same functions"
    );
    for (function, row) in &theirs {
        let (flat, cum) = ours[function];
        assert!(
            (flat - row.flat_pct).abs() <= 0.1,
            "{function}: flat {flat} vs pprof {}",
            row.flat_pct
        );
        assert!(
            (cum - row.cum_pct).abs() <= 0.1,
            "{function}: cum {cum} vs pprof {}",
            row.cum_pct
        );
    }
}

#[test]
fn top_matches_go_tool_pprof_on_a_go_runtime_pprof_profile() {
    assert_top_matches_pprof("go-cpu.pb.gz");
}

#[test]
fn top_matches_go_tool_pprof_on_a_pprof_rs_profile() {
    assert_top_matches_pprof("pprof-rs-cpu.pb");
}

#[test]
fn top_table_lists_heaviest_first_and_cum_sorts_by_cumulative() {
    let out = ok(pgo(&[&"top", &"-n", &"3", &profile("go-cpu.pb.gz")]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("cpu/nanoseconds: showing 3 of"),
        "{out}"
    );
    assert!(
        lines[2].ends_with("main.mix64"),
        "mix64 does half the work: {out}"
    );
    assert_eq!(lines.len(), 5);
    let out = ok(pgo(&[
        &"top",
        &"--cum",
        &"-n",
        &"1",
        &profile("go-cpu.pb.gz"),
    ]));
    // pprof agrees main.main has the largest cumulative share (runtime work takes the rest).
    assert!(
        out.lines().nth(2).unwrap().ends_with("  main.main"),
        "{out}"
    );
}

#[test]
fn merged_profile_opens_in_pprof_with_the_same_totals_as_pprof_merge() {
    let Some(go) = go() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (profile("go-cpu.pb.gz"), profile("go-cpu-b.pb.gz"));
    let ours = dir.path().join("ours.pb.gz");
    ok(pgo(&[&"merge", &a, &b, &"-o", &ours]));
    let reference = dir.path().join("theirs.pb.gz");
    go_pprof(&go, &[&"-proto", &"-output", &reference, &a, &b]);
    for index in ["samples", "cpu"] {
        let sample_index = format!("-sample_index={index}");
        let top = |p: &Path| {
            parse_pprof_top(&go_pprof(
                &go,
                &[
                    &"-top",
                    &"-nodefraction=0",
                    &"-nodecount=100000",
                    &sample_index,
                    &p,
                ],
            ))
        };
        let (mine, theirs) = (top(&ours), top(&reference));
        assert!(mine.len() > 5);
        let values = |m: &BTreeMap<String, PprofRow>| {
            m.iter()
                .map(|(k, r)| (k.clone(), r.flat.clone(), r.cum.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            values(&mine),
            values(&theirs),
            "per-function totals of {index}"
        );
    }
}

#[test]
fn weighted_merge_scales_each_input() {
    let dir = tempfile::tempdir().unwrap();
    let a = profile("go-cpu.pb.gz");
    let out = dir.path().join("w.pb.gz");
    ok(pgo(&[
        &"merge",
        &a,
        &a,
        &"--weight",
        &"3",
        &"--weight",
        &"1",
        &"-o",
        &out,
    ]));
    let one = pgo_top_json(&[&a])["total"].as_i64().unwrap();
    let four = pgo_top_json(&[&out])["total"].as_i64().unwrap();
    assert_eq!(four, 4 * one);
}

/// The `fill` colour of the first frame whose title starts with `function`.
fn frame_fill(svg: &str, function: &str) -> Option<(u8, u8, u8)> {
    let at = svg.find(&format!("<title>{function} ("))?;
    let rest = &svg[at..];
    let fill = &rest[rest.find("fill=\"rgb(")? + 10..];
    let rgb: Vec<u8> = fill[..fill.find(')')?]
        .split(',')
        .map(|c| c.trim().parse().unwrap())
        .collect();
    Some((rgb[0], rgb[1], rgb[2]))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[test]
fn flamegraph_shows_every_function_with_at_least_a_thousandth_of_the_samples() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["go-cpu.pb.gz", "pprof-rs-cpu.pb", "perf-script.txt"] {
        let path = profile(name);
        let svg_path = dir.path().join(format!("{name}.svg"));
        ok(pgo(&[
            &"flamegraph",
            &path,
            &"-o",
            &svg_path,
            &"--title",
            &"cpu",
        ]));
        let svg = std::fs::read_to_string(&svg_path).unwrap();
        assert!(svg.starts_with("<?xml"), "an SVG document");
        let top = pgo_top_json(&[&path]);
        let mut checked = 0;
        for row in top["rows"].as_array().unwrap() {
            if row["cum_percent"].as_f64().unwrap() >= 0.1 {
                let function = escape(row["function"].as_str().unwrap());
                assert!(
                    svg.contains(&format!("<title>{function} (")),
                    "{name}: {function} missing"
                );
                checked += 1;
            }
        }
        assert!(checked > 5, "{name}: {checked} functions checked");
    }
}

#[test]
fn differential_flamegraph_colours_the_function_that_doubled_as_grown() {
    // Variant b of the Go fixture does twice the sorting work (fixtures/go-cpu/main.go).
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("diff.svg");
    ok(pgo(&[
        &"flamegraph",
        &profile("go-cpu-b.pb.gz"),
        &"--base",
        &profile("go-cpu.pb.gz"),
        &"-o",
        &svg_path,
    ]));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let (r, g, b) = frame_fill(&svg, "main.partition").expect("partition is drawn");
    assert!(
        r == 255 && g < 250 && g == b,
        "partition grew, so it is red: rgb({r},{g},{b})"
    );
    // The hashing work stayed the same while sorting doubled: its share shrank.
    let (r, g, b) = frame_fill(&svg, "main.mix64").expect("mix64 is drawn");
    assert!(
        b == 255 && r < 250 && r == g,
        "mix64's share shrank, so it is blue: rgb({r},{g},{b})"
    );
}

#[test]
fn reverse_flamegraph_puts_leaves_at_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("rev.svg");
    ok(pgo(&[
        &"flamegraph",
        &"--reverse",
        &profile("folded.txt"),
        &"-o",
        &svg_path,
    ]));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    // In folded.txt eval_expr is only ever a leaf; reversed, it sits at the bottom row, which
    // spans 40% of the width, and main is drawn above it.
    let y_of = |f: &str| {
        let at = svg.find(&format!("<title>{f} (")).unwrap();
        let rest = &svg[at..];
        let y = &rest[rest.find(" y=\"").unwrap() + 4..];
        y[..y.find('"').unwrap()].parse::<f64>().unwrap()
    };
    assert!(
        y_of("eval_expr") > y_of("main"),
        "leaf below (larger y) its callers"
    );
}

#[test]
fn diff_lists_what_grew_and_what_shrank() {
    let out = ok(pgo(&[
        &"diff",
        &"--json",
        &profile("go-cpu.pb.gz"),
        &profile("go-cpu-b.pb.gz"),
    ]));
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["gainers"][0]["function"], "main.partition", "{out}");
    assert!(d["gainers"][0]["flat_delta_points"].as_f64().unwrap() > 5.0);
    assert_eq!(d["losers"][0]["function"], "main.mix64", "{out}");
    let text = ok(pgo(&[
        &"diff",
        &profile("go-cpu.pb.gz"),
        &profile("go-cpu-b.pb.gz"),
    ]));
    assert!(text.contains("grew:") && text.contains("shrank:"), "{text}");
}

#[test]
fn convert_imports_folded_and_perf_script_into_pprof_that_pprof_opens() {
    let dir = tempfile::tempdir().unwrap();
    for (name, from) in [("folded.txt", "folded"), ("perf-script.txt", "perf-script")] {
        let out = dir.path().join(format!("{name}.pb.gz"));
        ok(pgo(&[
            &"convert",
            &profile(name),
            &"--from",
            &from,
            &"-o",
            &out,
        ]));
        let direct = pgo_top_json(&[&profile(name)]);
        let converted = pgo_top_json(&[&out]);
        assert_eq!(
            direct["rows"], converted["rows"],
            "{name}: same table before and after"
        );
        if let Some(go) = go() {
            let theirs = parse_pprof_top(&go_pprof(
                &go,
                &[&"-top", &"-nodefraction=0", &"-nodecount=100000", &out],
            ));
            for row in converted["rows"].as_array().unwrap() {
                let f = row["function"].as_str().unwrap();
                let flat = row["flat_percent"].as_f64().unwrap();
                assert!((theirs[f].flat_pct - flat).abs() <= 0.1, "{name}: {f}");
            }
        }
    }
    // And back to folded stacks.
    let folded = dir.path().join("back.folded");
    ok(pgo(&[
        &"convert",
        &profile("go-cpu.pb.gz"),
        &"--to",
        &"folded",
        &"-o",
        &folded,
    ]));
    let back = pgo_top_json(&[&folded]);
    let orig = pgo_top_json(&[&profile("go-cpu.pb.gz")]);
    assert_eq!(back["rows"][0]["function"], orig["rows"][0]["function"]);
    assert_eq!(back["total"], orig["total"]);
}

#[test]
fn focus_and_ignore_filter_what_top_counts() {
    let p = profile("go-cpu.pb.gz");
    let all = pgo_top_json(&[&p]);
    let out = ok(pgo(&[
        &"top",
        &"--json",
        &"-n",
        &"0",
        &"--focus",
        &"^main\\.sortStage$",
        &p,
    ]));
    let focused: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        focused["total"], all["total"],
        "percentages stay of the whole profile"
    );
    let names: Vec<&str> = focused["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["function"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"main.partition") && !names.contains(&"main.mix64"),
        "{names:?}"
    );
    let out = ok(pgo(&[
        &"top",
        &"--json",
        &"-n",
        &"0",
        &"--ignore",
        &"sort|partition",
        &p,
    ]));
    let ignored: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        ignored["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| !r["function"].as_str().unwrap().contains("partition"))
    );
}

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in ["top", "flamegraph", "merge", "diff", "convert"] {
        let out = ok(pgo(&[&cmd, &"--help"]));
        assert!(out.contains("Example"), "{cmd} --help shows an example");
        assert!(
            out.contains(&format!("pgo {cmd} ")),
            "{cmd} example uses the command"
        );
    }
}
