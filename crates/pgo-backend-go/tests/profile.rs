//! What the Go backend writes, read back with pgo's own profile reader (no Go toolchain needed).

use pgo_backend::{Backend, EnvEdit, Language, Request, Target};
use pgo_backend_go::{Go, Source, write_go_profile};
use pgo_decide::Decisions;
use pgo_profile::{Profile, ProfileView};
use std::path::Path;

fn func(name: &str, file: &str, start: i64) -> String {
    format!(
        r#"{{"name": "{name}", "linkage_name": "{name}", "binary": "/bin/app", "file": "{file}",
            "start_line": {start}}}"#
    )
}

fn inline(caller: &str, offset: i64, callee: &str, weight: i64) -> String {
    format!(
        r#"{{"caller": {caller}, "site": {{"line_offset": {offset}, "column": 0}},
            "callee": {callee}, "weight": {weight}, "share_percent": 1.0, "callee_bytes": null,
            "already_inlined": false, "reason": "hot"}}"#
    )
}

/// A devirtualize decision at `caller`'s site (line offset, column) with `targets` (callee,
/// weight; 10% of the profile in all), promoting `promote`.
fn devirtualize(
    caller: &str,
    offset: i64,
    column: i64,
    targets: &[(&str, i64)],
    promote: &str,
) -> String {
    let weight: i64 = targets.iter().map(|(_, w)| w).sum();
    let targets: Vec<String> = targets
        .iter()
        .map(|(callee, w)| {
            let percent = *w as f64 * 100.0 / weight as f64;
            format!(r#"{{"callee": {callee}, "weight": {w}, "site_percent": {percent}}}"#)
        })
        .collect();
    format!(
        r#"{{"caller": {caller}, "site": {{"line_offset": {offset}, "column": {column}}},
            "weight": {weight}, "share_percent": 10.0, "evidence": "several-targets",
            "targets": [{}], "other_targets": 0, "other_targets_site_percent": 0.0,
            "promote": [{promote}], "reason": "r"}}"#,
        targets.join(",")
    )
}

fn decisions(inline: &[String], devirtualize: &[String]) -> Decisions {
    let text = format!(
        r#"{{"schema": "pgo-decisions", "version": 1,
        "profile": {{"sample_type": "cpu/nanoseconds", "total_weight": 1000, "functions": 5,
                     "call_edges": 5, "has_addresses": true, "has_lines": true}},
        "settings": {{"hot_cdf_percent": 99.0, "inline_max_callee_bytes": 512,
                      "inline_max_callee_bytes_very_hot": 2048,
                      "inline_very_hot_share_percent": 5.0, "devirtualize_max_targets": 3,
                      "devirtualize_min_remaining_percent": 30.0,
                      "devirtualize_min_total_percent": 5.0}},
        "coverage": {{"hot_set_percent": 90.0, "binary_matched_percent": null}},
        "limitations": [],
        "inline": [{}],
        "devirtualize": [{}],
        "layout": {{"function_order": [], "cold_functions": [], "reason": "", "blocks": []}}}}"#,
        inline.join(","),
        devirtualize.join(",")
    );
    pgo_decide::schema::parse(&text).expect("test decisions parse")
}

fn go_main() -> (String, String, String) {
    (
        func("main.run", "/src/main.go", 10),
        func("main.work", "/src/main.go", 30),
        func("example.com/lib.(*T).Do", "/src/lib/t.go", 5),
    )
}

/// (callee, caller, caller's call line, value) per sample, by function name.
fn samples(p: &Profile) -> Vec<(String, String, i64, Vec<i64>)> {
    let v = ProfileView::new(p);
    let name = |loc: u64| {
        let l = v.location(loc).unwrap();
        assert_eq!(l.line.len(), 1, "one frame per location");
        let f = v.function(l.line[0].function_id).unwrap();
        assert!(f.start_line > 0, "Go needs Function.start_line");
        (v.str(f.name).to_string(), l.line[0].line)
    };
    let mut out: Vec<_> = p
        .sample
        .iter()
        .map(|s| {
            assert_eq!(s.location_id.len(), 2, "[callee, caller] stacks");
            let (callee, _) = name(s.location_id[0]);
            let (caller, line) = name(s.location_id[1]);
            (callee, caller, line, s.value.clone())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn one_two_frame_sample_per_decided_edge() {
    let (run, work, lib) = go_main();
    let devirt = devirtualize(&work, 7, 3, &[(&lib, 70), (&run, 30)], &lib);
    let d = decisions(&[inline(&run, 4, &work, 500)], &[devirt]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.pprof");
    let s = write_go_profile(&d, &[], &path).unwrap();
    assert_eq!(s.edges.len(), 2);
    assert_eq!((s.inline_decisions, s.devirtualize_targets), (1, 1));
    assert_eq!(s.total_weight, 570);
    assert_eq!(s.edges[0].edge.caller, "main.run");
    assert_eq!(s.edges[0].edge.line_offset, 4);
    assert_eq!(s.edges[1].source, Source::Devirtualize);

    let bytes = std::fs::read(&path).unwrap();
    assert!(pgo_profile::is_gzip(&bytes), "gzipped like runtime/pprof's");
    let p = pgo_profile::load(&path, None).unwrap();
    let v = ProfileView::new(&p);
    let types: Vec<_> = p
        .sample_type
        .iter()
        .map(|t| format!("{}/{}", v.str(t.r#type), v.str(t.unit)))
        .collect();
    assert_eq!(types, ["samples/count", "cpu/nanoseconds"]);
    assert_eq!(
        samples(&p),
        vec![
            (
                "example.com/lib.(*T).Do".into(),
                "main.work".into(),
                37,
                vec![70, 70]
            ),
            ("main.work".into(), "main.run".into(), 14, vec![500, 500]),
        ]
    );
}

#[test]
fn go_cdf_is_predicted_as_the_compiler_computes_it() {
    let (run, work, lib) = go_main();
    // 900 + 95 + 5: the edge whose cumulative share passes the percentage is hot, the rest
    // are not; reaching it exactly is not passing it (Go compares with >).
    let d = decisions(
        &[
            inline(&run, 1, &work, 900),
            inline(&run, 2, &lib, 95),
            inline(&work, 3, &lib, 5),
        ],
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let s = write_go_profile(&d, &[], &dir.path().join("p.pprof")).unwrap();
    assert_eq!(s.go_hot_edges(99.0).len(), 2);
    assert_eq!(s.go_hot_edges(89.0).len(), 1);
    assert_eq!(s.go_hot_edges(90.0).len(), 2);
    assert_eq!(s.go_hot_edges(100.0).len(), 3);
}

#[test]
fn same_edge_from_two_decisions_counts_once_and_recursion_keeps_two_frames() {
    let (run, work, lib) = go_main();
    let devirt = devirtualize(&run, 4, 0, &[(&work, 500)], &work);
    let d = decisions(
        &[inline(&run, 4, &work, 500), inline(&lib, 0, &lib, 40)],
        &[devirt],
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.pprof");
    let s = write_go_profile(&d, &[], &path).unwrap();
    assert_eq!(s.edges.len(), 2);
    assert_eq!(s.edges[0].weight, 500, "not 1000");
    assert_eq!(s.edges[0].source, Source::Both);
    let p = pgo_profile::load(&path, None).unwrap();
    let v = ProfileView::new(&p);
    // The recursive call on the function's first line: two distinct frames.
    let rec = p
        .sample
        .iter()
        .find(|s| s.value[0] == 40)
        .expect("recursive edge");
    let lines: Vec<i64> = rec
        .location_id
        .iter()
        .map(|l| v.location(*l).unwrap().line[0].line)
        .collect();
    assert_eq!(lines, [6, 5]);
}

#[test]
fn decisions_without_go_functions_are_an_error_naming_the_file() {
    let c = func("parse_expr", "/src/parse.c", 10);
    let r = func("_ZN3app4mainE", "/src/main.rs", 3);
    let d = decisions(&[inline(&c, 2, &r, 100)], &[]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.pprof");
    let e = write_go_profile(&d, &[], &path).unwrap_err();
    assert!(e.starts_with(&path.display().to_string()), "{e}");
    assert!(e.contains("between Go functions"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    assert!(!path.exists());

    let e = write_go_profile(&decisions(&[], &[]), &[], &path).unwrap_err();
    assert!(e.contains("no inline or devirtualize decision"), "{e}");
}

#[test]
fn non_go_edges_and_edges_without_start_line_are_skipped_with_a_reason() {
    let (run, work, _) = go_main();
    let c = func("memcpy_fast", "/src/memcpy.c", 1);
    let nostart = func("main.orphan", "/src/main.go", 0);
    let d = decisions(
        &[
            inline(&run, 4, &work, 500),
            inline(&run, 5, &c, 50),
            inline(&nostart, 2, &work, 20),
        ],
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let s = write_go_profile(&d, &[], &dir.path().join("p.pprof")).unwrap();
    assert_eq!(s.edges.len(), 1);
    assert_eq!(s.skipped.len(), 2, "{:?}", s.skipped);
    assert!(s.skipped[0].contains("memcpy_fast"));
    assert!(s.skipped[1].contains("start line"));
}

fn plan(language: Language, out_dir: &Path, d: &Decisions) -> Result<pgo_backend::Plan, String> {
    let profile = Profile::default();
    let target = Target {
        language,
        build_command: vec!["go".into(), "build".into(), "-pgo=old.pprof".into()],
        workdir: out_dir.to_path_buf(),
        output_binary: None,
    };
    Go.plan(&Request {
        decisions: d,
        profile: &profile,
        profile_paths: &[],
        decisions_path: None,
        target: &target,
        out_dir,
    })
}

#[test]
fn plan_appends_pgo_to_goflags_and_refuses_other_languages() {
    let (run, work, _) = go_main();
    let d = decisions(&[inline(&run, 4, &work, 500)], &[]);
    let dir = tempfile::tempdir().unwrap();
    let p = plan(Language::Go, dir.path(), &d).unwrap();
    let file = dir.path().join("profile.pprof");
    assert_eq!(p.artifacts[0].path, file);
    assert!(file.exists());
    assert_eq!(
        p.env,
        vec![EnvEdit::AppendFlags {
            name: "GOFLAGS".into(),
            flags: vec![format!("-pgo={}", file.display())],
        }]
    );
    assert!(p.notes.iter().any(|n| n.contains("CDF")), "{:?}", p.notes);
    assert!(
        p.notes.iter().any(|n| n.contains("own -pgo flag")),
        "{:?}",
        p.notes
    );
    assert_eq!(Go.name(), "go");
    for lang in [Language::Rust, Language::C, Language::Unknown] {
        let e = plan(lang, dir.path(), &d).unwrap_err();
        assert!(e.contains("go backend builds Go"), "{e}");
    }
}

/// A profile being built as our collector writes a Go program's: samples and cpu time, one
/// mapping for the program.
struct GoProfile {
    b: pgo_profile::ProfileBuilder,
    program: pgo_profile::MappingId,
}

impl GoProfile {
    fn new() -> GoProfile {
        let mut b =
            pgo_profile::ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
        let program = b.mapping(pgo_profile::MappingInfo {
            memory_start: 0x40_0000,
            memory_limit: 0x80_0000,
            filename: "/bin/app",
            has_functions: true,
            ..pgo_profile::MappingInfo::default()
        });
        GoProfile { b, program }
    }

    fn function(&mut self, name: &str, file: &str, start_line: i64) -> pgo_profile::FunctionId {
        self.b.function(pgo_profile::FunctionInfo {
            name,
            system_name: name,
            filename: file,
            start_line,
        })
    }

    /// A location of the program (or, with `kernel`, of the kernel) with its frames
    /// (function, line), innermost first.
    fn location(
        &mut self,
        kernel: bool,
        address: u64,
        frames: &[(pgo_profile::FunctionId, i64)],
    ) -> pgo_profile::LocationId {
        let lines: Vec<pgo_profile::LineInfo> = frames
            .iter()
            .map(|&(function, line)| pgo_profile::LineInfo {
                function,
                line,
                column: 0,
            })
            .collect();
        let mapping = (!kernel).then_some(self.program);
        self.b.location(mapping, address, &lines)
    }

    /// One stack, leaf first, with `samples` samples of 1,000 ns each.
    fn sample(&mut self, stack: &[pgo_profile::LocationId], samples: i64) {
        self.b
            .add_sample(stack, &[samples, samples * 1_000], &[])
            .unwrap();
    }
}

/// A Go program's samples: kernel frame first, a leaf location with an inline frame
/// (`bytes.IndexByte` inlined into `main.scan`), the caller `main.work`, and above it
/// `runtime.main`, which Go's reading of a profile never reaches.
fn go_samples() -> Profile {
    let mut p = GoProfile::new();
    let runtime_main = p.function("runtime.main", "/go/src/runtime/proc.go", 140);
    let work = p.function("main.work", "/src/main.go", 30);
    let scan = p.function("main.scan", "/src/main.go", 50);
    let index = p.function("bytes.IndexByte", "/go/src/bytes/bytes.go", 90);
    let kernel_fn = p.function("do_syscall_64", "", 0);
    let kernel = p.location(true, 0xffff_ffff_8100_0000, &[(kernel_fn, 0)]);
    let leaf = p.location(false, 0x40_1000, &[(index, 93), (scan, 55)]);
    let caller = p.location(false, 0x40_2000, &[(work, 34)]);
    let root = p.location(false, 0x40_3000, &[(runtime_main, 283)]);
    p.sample(&[kernel, leaf, caller, root], 2);
    p.sample(&[leaf, caller, root], 3);
    // main.scan's own time, called from the same place.
    let own = p.location(false, 0x40_1100, &[(scan, 52)]);
    p.sample(&[own, caller, root], 1);
    p.b.build()
}

/// Sampled edges as (caller, line offset, callee, weight).
fn by_name(edges: &[pgo_backend_go::SampledEdge]) -> Vec<(&str, i64, &str, i64)> {
    edges
        .iter()
        .map(|e| {
            (
                e.caller.name.as_str(),
                e.line_offset,
                e.callee.name.as_str(),
                e.weight,
            )
        })
        .collect()
}

#[test]
fn sampled_edges_are_the_two_leaf_most_locations_as_go_reads_them() {
    let edges = pgo_backend_go::sampled_edges(&go_samples(), "cpu/nanoseconds").unwrap();
    let got = by_name(&edges);
    // The kernel frame is not the leaf; runtime.main -> main.work (the third location) is no
    // edge; the inline frame is one; main.work's call line reaches main.scan in every sample.
    assert_eq!(
        got,
        [
            ("main.work", 4, "main.scan", 6_000),
            ("main.scan", 5, "bytes.IndexByte", 5_000),
        ]
    );
    // By the other sample type, the counts.
    let counts = pgo_backend_go::sampled_edges(&go_samples(), "samples").unwrap();
    assert_eq!(counts[0].weight, 6);
    assert!(pgo_backend_go::sampled_edges(&go_samples(), "alloc_space").is_err());
}

#[test]
fn with_samples_edges_weigh_what_go_would_read_and_unsampled_decisions_are_left_out() {
    let (run, work, _) = go_main();
    let scan = func("main.scan", "/src/main.go", 50);
    // A decision for main.work -> main.scan at offset 4, the edge the samples also have (it
    // keeps the samples' weight), and main.run -> main.work, which no sample's two leaf-most
    // locations show (left out).
    let d = decisions(
        &[
            inline(&work, 4, &scan, 9_000),
            inline(&run, 2, &work, 10_000),
        ],
        &[],
    );
    let sampled = pgo_backend_go::sampled_edges(&go_samples(), "cpu/nanoseconds").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = write_go_profile(&d, &sampled, &dir.path().join("p.pprof")).unwrap();
    let got: Vec<(&str, &str, i64, Source)> = s
        .edges
        .iter()
        .map(|e| {
            (
                e.edge.caller.as_str(),
                e.edge.callee.as_str(),
                e.weight,
                e.source,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("main.work", "main.scan", 6_000, Source::Inline),
            ("main.scan", "bytes.IndexByte", 5_000, Source::Samples),
        ]
    );
    assert_eq!(
        (s.inline_decisions, s.sampled_edges, s.unsampled_decided),
        (1, 1, 1)
    );
}

#[test]
fn calls_from_the_compilers_method_wrappers_are_kept() {
    // Interface calls reach `main.T.Serve` through the wrapper `main.(*T).Serve`, which DWARF
    // places in `./<autogenerated>` with start line 0 and its call on line 1; Go's compiler
    // matches the edge at offset 1 (and then makes the method hot). A function with no start
    // line elsewhere still cannot be placed.
    let wrapper = func("main.(*T).Serve", "./<autogenerated>", 0);
    let method = func("main.T.Serve", "/src/main.go", 20);
    let unplaced = func("main.helper", "/src/main.go", 0);
    let d = decisions(
        &[
            inline(&wrapper, 1, &method, 700),
            inline(&unplaced, 3, &method, 300),
        ],
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let s = write_go_profile(&d, &[], &dir.path().join("p.pprof")).unwrap();
    let got: Vec<(&str, i64)> = s
        .edges
        .iter()
        .map(|e| (e.edge.caller.as_str(), e.edge.line_offset))
        .collect();
    assert_eq!(got, [("main.(*T).Serve", 1)]);
    assert!(s.skipped[0].contains("main.helper"), "{:?}", s.skipped);
}

/// An interface call as our collector records it: `main.run` calls through the interface the
/// compiler's wrapper `main.(*T).Serve` (`./<autogenerated>`), which calls `main.T.Serve`, the
/// method with a value receiver; another sample is in the wrapper itself.
fn interface_call_samples() -> Profile {
    let mut p = GoProfile::new();
    let run = p.function("main.run", "/src/main.go", 10);
    let wrapper = p.function("main.(*T).Serve", "./<autogenerated>", 0);
    let method = p.function("main.T.Serve", "/src/main.go", 20);
    let in_method = p.location(false, 0x40_1000, &[(method, 22)]);
    let in_wrapper = p.location(false, 0x40_2000, &[(wrapper, 1)]);
    let in_run = p.location(false, 0x40_3000, &[(run, 17)]);
    p.sample(&[in_method, in_wrapper, in_run], 9);
    p.sample(&[in_wrapper, in_run], 1);
    p.b.build()
}

#[test]
fn method_wrappers_are_read_as_go_profiles_show_them_elided() {
    // Go's runtime/pprof never shows the wrappers (its traceback elides them), so Go's compiler
    // reads an interface call as one from the call site to the method, and devirtualizes the
    // site to the method with the most time there. Read with the wrapper, the call site's only
    // edge was to the wrapper, weighted by the wrapper's own few samples.
    let edges =
        pgo_backend_go::sampled_edges(&interface_call_samples(), "cpu/nanoseconds").unwrap();
    let got = by_name(&edges);
    assert_eq!(got, [("main.run", 7, "main.T.Serve", 9_000)]);

    // A decision to devirtualize that site to the wrapper is the same edge.
    let run = func("main.run", "/src/main.go", 10);
    let wrapper = func("main.(*T).Serve", "./<autogenerated>", 0);
    let other = func("main.(*U).Serve", "./<autogenerated>", 0);
    let devirt = devirtualize(&run, 7, 0, &[(&wrapper, 90), (&other, 10)], &wrapper);
    let dir = tempfile::tempdir().unwrap();
    let s = write_go_profile(
        &decisions(&[], &[devirt]),
        &edges,
        &dir.path().join("p.pprof"),
    )
    .unwrap();
    let written: Vec<(&str, &str, i64, i64, Source)> = s
        .edges
        .iter()
        .map(|e| {
            (
                e.edge.caller.as_str(),
                e.edge.callee.as_str(),
                e.edge.line_offset,
                e.weight,
                e.source,
            )
        })
        .collect();
    assert_eq!(
        written,
        [("main.run", "main.T.Serve", 7, 9_000, Source::Devirtualize)]
    );
    assert_eq!((s.devirtualize_targets, s.unsampled_decided), (1, 0));
}
