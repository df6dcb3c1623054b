//! Unit tests on hand-built profiles and binaries.

use super::*;
use crate::image::{Function, Segment};
use pgo_profile::{FunctionInfo, LineInfo, MappingInfo, ProfileBuilder};

/// The program's code segment: file offset 0x1000 loaded at 0x401000.
const SEGMENT: Segment = Segment {
    file_offset: 0x1000,
    file_size: 0x1000,
    vaddr: 0x401000,
};
/// Where the profiled process had that segment mapped.
const RUNTIME_BASE: u64 = 0x5555_0000_1000;

fn runtime(vaddr: u64) -> u64 {
    vaddr - SEGMENT.vaddr + RUNTIME_BASE
}

/// An image whose functions are `(name, bolt name, start, code)`.
fn image(path: &str, build_id: &str, functions: &[(&str, &str, u64, Vec<u8>)]) -> Image {
    let mut data = vec![0u8; 0x2000];
    let mut list = Vec::new();
    for (name, bolt_name, start, code) in functions {
        let at = (start - SEGMENT.vaddr + SEGMENT.file_offset) as usize;
        data[at..at + code.len()].copy_from_slice(code);
        list.push((
            Function {
                name: name.to_string(),
                bolt_name: bolt_name.to_string(),
                start: *start,
                size: code.len() as u64,
                code: at..at + code.len(),
            },
            !bolt_name.contains('/'),
        ));
    }
    let mut image = Image {
        path: path.into(),
        build_id: build_id.into(),
        segments: vec![SEGMENT],
        data,
        code_relocations: true,
        ..Image::default()
    };
    image.set_functions(list);
    image
}

fn code(byte: u8, len: usize) -> Vec<u8> {
    vec![byte; len]
}

/// The profiled program: main (global), hot (static), "odd name" (a name with a space).
fn profiled_image(build_id: &str) -> Image {
    image(
        "/work/prog",
        build_id,
        &[
            ("main", "main", 0x401100, code(0x90, 0x40)),
            ("hot", "hot/1", 0x401140, code(0xc3, 0x80)),
            ("odd name", "odd name", 0x4011c0, code(0xcc, 0x20)),
        ],
    )
}

/// Samples: hot+0x10 ×5, main+4 ×2, "odd name"+0 ×1, an address in no function ×1, libc ×3.
fn profile(build_id: &str) -> Profile {
    let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
    b.set_period("cpu", "nanoseconds", 1_000_000);
    b.set_time_nanos(1);
    let prog = b.mapping(MappingInfo {
        memory_start: RUNTIME_BASE,
        memory_limit: RUNTIME_BASE + 0x1000,
        file_offset: SEGMENT.file_offset,
        filename: "/work/prog",
        build_id,
        has_functions: true,
        ..MappingInfo::default()
    });
    let libc = b.mapping(MappingInfo {
        memory_start: 0x7f00_0000_0000,
        memory_limit: 0x7f00_0010_0000,
        file_offset: 0x26000,
        filename: "/usr/lib/x86_64-linux-gnu/libc.so.6",
        build_id: "c0ffee",
        ..MappingInfo::default()
    });
    let mut named = |name: &str| LineInfo {
        function: b.function(FunctionInfo {
            name,
            system_name: name,
            ..FunctionInfo::default()
        }),
        line: 1,
        column: 0,
    };
    let (main, hot, odd) = (named("main"), named("hot"), named("odd name"));
    let main_loc = b.location(Some(prog), runtime(0x401104), &[main]);
    let hot_loc = b.location(Some(prog), runtime(0x401150), &[hot]);
    let odd_loc = b.location(Some(prog), runtime(0x4011c0), &[odd]);
    let nowhere = b.location(Some(prog), runtime(0x401f00), &[]);
    let libc_loc = b.location(Some(libc), 0x7f00_0000_0040, &[]);
    for (stack, n) in [
        (vec![hot_loc, main_loc], 5),
        (vec![main_loc], 2),
        (vec![odd_loc, main_loc], 1),
        (vec![nowhere], 1),
        (vec![libc_loc, main_loc], 3),
    ] {
        b.add_sample(&stack, &[n, n * 1_000_000], &[]).unwrap();
    }
    b.build()
}

fn never(_: &str, _: &str) -> Found {
    Found::Gone("no profiled binary in this test".into())
}

#[test]
fn same_build_id_writes_the_leaf_addresses_as_bolt_names_and_offsets() {
    let target = profiled_image("b1");
    let fdata = convert_with(&profile("b1"), &target, "prog", &never).unwrap();
    assert_eq!(
        fdata.text,
        "no_lbr cycles\n1 hot/1 10 5\n1 main 4 2\n1 odd\\ name 0 1\n"
    );
    // 8 of the program's 9 samples placed (one is in no function); libc is not the program.
    assert!((fdata.placed_percent - 800.0 / 9.0).abs() < 1e-9);
    assert!((fdata.placed_percent_of_profile - 800.0 / 12.0).abs() < 1e-9);
    assert!(
        fdata
            .summary
            .starts_with("8 samples at 3 addresses in 3 functions; 88.9%")
    );
    assert!(fdata.summary.contains("same build ID"), "{}", fdata.summary);
    assert!(
        fdata
            .notes
            .iter()
            .any(|n| n.contains("88.9%") && n.contains("11.1% addresses in no function symbol")),
        "{:?}",
        fdata.notes
    );
}

#[test]
fn without_a_count_value_the_period_turns_time_into_samples() {
    let mut p = profile("b1");
    // Drop the samples/count value: only cpu/nanoseconds is left.
    p.sample_type.remove(0);
    for s in &mut p.sample {
        s.value.remove(0);
    }
    let w = place::weight(&p).unwrap();
    assert_eq!((w.index, w.per_sample), (0, 1_000_000));
    let fdata = convert_with(&p, &profiled_image("b1"), "prog", &never).unwrap();
    assert!(fdata.text.contains("1 hot/1 10 5\n"), "{}", fdata.text);
}

#[test]
fn a_rebuilt_binary_keeps_only_the_samples_of_identical_functions() {
    // New build: main's code changed, hot moved but is identical, "odd name" is gone.
    let target = image(
        "/work/prog",
        "b2",
        &[
            ("main", "main", 0x401100, code(0x91, 0x40)),
            ("hot", "hot/1", 0x401200, code(0xc3, 0x80)),
        ],
    );
    let find = |filename: &str, build_id: &str| {
        assert_eq!((filename, build_id), ("/work/prog", "b1"));
        Found::Verified(profiled_image("b1"))
    };
    let fdata = convert_with(&profile("b1"), &target, "prog", &find).unwrap();
    assert_eq!(fdata.text, "no_lbr cycles\n1 hot/1 10 5\n");
    assert_eq!(fdata.changed_functions, ["main"]);
    assert_eq!(fdata.missing_functions, ["odd name"]);
    assert!((fdata.placed_percent - 500.0 / 9.0).abs() < 1e-9);
    assert!(
        fdata.summary.contains(
            "of its sampled functions, 1 identical in the new binary, 1 changed, 1 missing"
        ),
        "{}",
        fdata.summary
    );
    assert!(
        fdata
            .notes
            .iter()
            .any(|n| n.contains("changed since the profile") && n.contains("main (22.2%)")),
        "{:?}",
        fdata.notes
    );
    // 55.6% is enough not to warn.
    assert!(
        !fdata
            .notes
            .iter()
            .any(|n| n.contains("little to work with"))
    );
}

#[test]
fn identical_static_functions_of_one_name_are_told_apart_by_rank() {
    let two = |b| {
        image(
            "/work/prog",
            b,
            &[
                ("helper", "helper/1", 0x401100, code(0x90, 0x10)),
                ("helper", "helper/2", 0x401140, code(0x90, 0x10)),
            ],
        )
    };
    let mut b = ProfileBuilder::new(&[("samples", "count")]);
    let m = b.mapping(MappingInfo {
        memory_start: RUNTIME_BASE,
        memory_limit: RUNTIME_BASE + 0x1000,
        file_offset: SEGMENT.file_offset,
        filename: "/work/prog",
        build_id: "b1",
        ..MappingInfo::default()
    });
    let second = b.location(Some(m), runtime(0x401144), &[]);
    b.add_sample(&[second], &[7], &[]).unwrap();
    let find = |_: &str, _: &str| Found::Verified(two("b1"));
    let fdata = convert_with(&b.build(), &two("b2"), "prog", &find).unwrap();
    assert_eq!(fdata.text, "no_lbr cycles\n1 helper/2 4 7\n");
}

#[test]
fn a_lost_profiled_binary_leaves_nothing_to_place_and_says_why() {
    let target = profiled_image("b2");
    let find = |_: &str, _: &str| Found::Gone("the profiled binary /work/prog is gone".into());
    let err = convert_with(&profile("b1"), &target, "prog", &find).unwrap_err();
    assert!(
        err.starts_with("/work/prog: no sample of the profile"),
        "{err}"
    );
    assert!(
        err.contains("the profiled binary /work/prog is gone"),
        "{err}"
    );
}

#[test]
fn a_profile_of_another_program_is_refused_with_its_files() {
    let target = image(
        "/work/other",
        "b9",
        &[("main", "main", 0x401100, code(0x90, 4))],
    );
    let mut p = profile("b1");
    p.mapping.retain(|m| m.id == 2); // only libc left
    let err = convert_with(&p, &target, "other", &never).unwrap_err();
    assert!(
        err.contains("no samples in a file named other or with build ID b9")
            && err.contains("libc.so.6 (c0ffee)"),
        "{err}"
    );
}

#[test]
fn an_unverifiable_binary_is_used_only_when_the_names_agree() {
    // No build IDs anywhere: the file at the recorded path is checked against the names.
    let target = profiled_image("");
    let same = |_: &str, _: &str| Found::Unverified(profiled_image(""), None);
    let fdata = convert_with(&profile(""), &target, "prog", &same).unwrap();
    assert!(fdata.text.contains("1 hot/1 10 5\n"));

    // The file there was rebuilt with another layout: the names no longer agree.
    let rebuilt = || {
        image(
            "/work/prog",
            "",
            &[
                ("hot", "hot/1", 0x401100, code(0xc3, 0x80)),
                ("main", "main", 0x401180, code(0x90, 0x40)),
            ],
        )
    };
    let moved = |_: &str, _: &str| Found::Unverified(rebuilt(), None);
    let err = convert_with(&profile(""), &rebuilt(), "prog", &moved).unwrap_err();
    assert!(err.contains("is not the profiled binary"), "{err}");

    // ... or it is newer than the profile.
    let newer = |_: &str, _: &str| {
        Found::Unverified(profiled_image(""), Some(std::time::SystemTime::now()))
    };
    let err = convert_with(&profile(""), &target, "prog", &newer).unwrap_err();
    assert!(
        err.contains("modified after the profile was recorded"),
        "{err}"
    );
}

#[test]
fn low_coverage_warns_that_bolt_has_little_to_work_with() {
    let target = image(
        "/work/prog",
        "b2",
        &[("odd name", "odd name", 0x401300, code(0xcc, 0x20))],
    );
    let find = |_: &str, _: &str| Found::Verified(profiled_image("b1"));
    let fdata = convert_with(&profile("b1"), &target, "prog", &find).unwrap();
    assert_eq!(fdata.text, "no_lbr cycles\n1 odd\\ name 0 1\n");
    assert!(
        fdata
            .notes
            .iter()
            .any(|n| n.starts_with("BOLT will have little to work with: only 11.1%")),
        "{:?}",
        fdata.notes
    );
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

fn plan_for(language: Language, out_dir: &Path) -> Result<Plan, String> {
    let decisions = decisions();
    let profile = profile("b1");
    let target = pgo_backend::Target {
        language,
        build_command: vec!["make".into()],
        workdir: out_dir.to_path_buf(),
        output_binary: Some(out_dir.join("prog")),
    };
    let request = Request {
        decisions: &decisions,
        profile: &profile,
        profile_paths: &[],
        decisions_path: None,
        target: &target,
        out_dir,
    };
    Bolt::new().plan(&request)
}

#[test]
fn plan_links_with_emit_relocs_and_refuses_go() {
    let dir = tempfile::tempdir().unwrap();
    let rust = plan_for(Language::Rust, dir.path()).unwrap();
    assert_eq!(
        rust.env,
        [EnvEdit::AppendFlags {
            name: "RUSTFLAGS".into(),
            flags: vec!["-Clink-arg=-Wl,--emit-relocs".into()],
        }]
    );
    assert!(rust.post_build.is_empty());
    let c = plan_for(Language::C, dir.path()).unwrap();
    assert_eq!(
        c.env,
        [EnvEdit::AppendFlags {
            name: "LDFLAGS".into(),
            flags: vec!["-Wl,--emit-relocs".into()],
        }]
    );
    let unknown = plan_for(Language::Unknown, dir.path()).unwrap();
    assert_eq!(unknown.env.len(), 2);
    let err = plan_for(Language::Go, dir.path()).unwrap_err();
    assert!(err.contains("does not support Go"), "{err}");
    // /work/prog does not exist here: nothing to keep, and the plan says so.
    assert!(
        rust.notes
            .iter()
            .any(|n| n.contains("cannot keep the profiled binary")),
        "{:?}",
        rust.notes
    );
}

#[test]
fn after_build_names_the_package_when_llvm_bolt_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let decisions = decisions();
    let profile = profile("b1");
    let target = pgo_backend::Target {
        language: Language::C,
        build_command: Vec::new(),
        workdir: dir.path().to_path_buf(),
        output_binary: None,
    };
    let request = Request {
        decisions: &decisions,
        profile: &profile,
        profile_paths: &[],
        decisions_path: None,
        target: &target,
        out_dir: dir.path(),
    };
    let err = Bolt::with_tool("llvm-bolt-not-installed")
        .after_build(&request, &dir.path().join("prog"))
        .unwrap_err();
    assert!(err.contains("Debian package bolt-22"), "{err}");
}

#[test]
fn a_file_that_is_not_elf_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script");
    std::fs::write(&path, "#!/bin/sh\n").unwrap();
    let err = fdata_for(&profile("b1"), &path, None).unwrap_err();
    assert_eq!(err, format!("{}: not an ELF file", path.display()));
    let err = fdata_for(&profile("b1"), &dir.path().join("none"), None).unwrap_err();
    assert!(
        err.ends_with("none: cannot read: No such file or directory"),
        "{err}"
    );
}
