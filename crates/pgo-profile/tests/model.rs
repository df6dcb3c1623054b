//! The profile model on real and hand-built profiles: reading, validation, building, merging,
//! filtering and the text importers.

use std::path::PathBuf;

use pgo_profile::proto::{Function, Line, Location, Profile, Sample, ValueType};
use pgo_profile::{
    Format, FunctionInfo, LineInfo, MergeInput, ProfileBuilder, ProfileView, SampleFilter,
};

fn profiles_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../profiles")
}

/// Total of sample value `index` per leaf function name.
fn flat_by_name(p: &Profile, index: usize) -> std::collections::BTreeMap<String, i64> {
    let view = ProfileView::new(p);
    let mut out = std::collections::BTreeMap::new();
    for s in &p.sample {
        if let Some(f) = view.frames(s).next() {
            *out.entry(view.frame_name(&f).into_owned()).or_insert(0) += s.value[index];
        }
    }
    out
}

fn total(p: &Profile, index: usize) -> i64 {
    p.sample.iter().map(|s| s.value[index]).sum()
}

/// A small valid profile: main -> work, with values [count, nanoseconds].
fn tiny() -> Profile {
    let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
    b.set_period("cpu", "nanoseconds", 10_000_000);
    let main = b.function(FunctionInfo {
        name: "main",
        system_name: "main",
        filename: "m.c",
        start_line: 3,
    });
    let work = b.function(FunctionInfo {
        name: "work",
        system_name: "work",
        filename: "m.c",
        start_line: 9,
    });
    let lm = b.location(
        None,
        0x1000,
        &[LineInfo {
            function: main,
            line: 5,
            column: 0,
        }],
    );
    let lw = b.location(
        None,
        0x2000,
        &[LineInfo {
            function: work,
            line: 11,
            column: 2,
        }],
    );
    b.add_sample(&[lw, lm], &[3, 30_000_000], &[]).unwrap();
    b.add_sample(&[lm], &[1, 10_000_000], &[]).unwrap();
    b.add_sample(&[lw, lm], &[2, 20_000_000], &[]).unwrap();
    b.build()
}

#[test]
fn real_go_and_pprof_rs_profiles_read_and_validate() {
    let go = pgo_profile::read_profile(profiles_dir().join("go-cpu.pb.gz")).unwrap();
    assert!(go.sample.len() > 50, "a 3 s Go profile has many samples");
    let view = ProfileView::new(&go);
    assert_eq!(view.sample_types(), ["samples/count", "cpu/nanoseconds"]);
    assert!(flat_by_name(&go, 0).contains_key("main.mix64"));

    // pprof-rs's file is raw protobuf: no gzip header, still read.
    let raw = std::fs::read(profiles_dir().join("pprof-rs-cpu.pb")).unwrap();
    assert!(!pgo_profile::is_gzip(&raw));
    let rs = pgo_profile::read_profile(profiles_dir().join("pprof-rs-cpu.pb")).unwrap();
    assert!(
        flat_by_name(&rs, 0)
            .keys()
            .any(|k| k.contains("pprof_rs_fixture::"))
    );
}

#[test]
fn written_profiles_are_gzipped_and_read_back_identically() {
    let p = tiny();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.pb.gz");
    pgo_profile::write_profile(&path, &p).unwrap();
    assert!(pgo_profile::is_gzip(&std::fs::read(&path).unwrap()));
    assert_eq!(pgo_profile::read_profile(&path).unwrap(), p);
    // Only the file itself is left: the temporary file was renamed into place.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn builder_interns_and_sums_identical_samples() {
    let p = tiny();
    pgo_profile::validate(&p).unwrap();
    assert_eq!(p.string_table[0], "");
    assert_eq!(p.function.len(), 2);
    assert_eq!(p.location.len(), 2);
    assert_eq!(p.sample.len(), 2, "the two main->work samples are one");
    assert_eq!(p.sample[0].value, vec![5, 50_000_000]);
    let mut b = ProfileBuilder::new(&[("samples", "count")]);
    assert!(
        b.add_sample(&[], &[1, 2], &[]).is_err(),
        "value count must match sample types"
    );
    assert!(
        b.add_sample(&[], &[-1], &[]).is_err(),
        "negative values are refused"
    );
}

fn broken(edit: impl FnOnce(&mut Profile)) -> String {
    let mut p = tiny();
    edit(&mut p);
    pgo_profile::validate(&p).unwrap_err()
}

#[test]
fn validation_names_the_field_and_index() {
    assert_eq!(
        broken(|p| p.sample[1].location_id.push(99)),
        "sample 1 refers to location 99, which does not exist"
    );
    assert_eq!(
        broken(|p| p.location[0].line[0].function_id = 7),
        "location 1 refers to function 7, which does not exist"
    );
    assert_eq!(
        broken(|p| p.location[1].mapping_id = 4),
        "location 2 refers to mapping 4, which does not exist"
    );
    assert_eq!(
        broken(|p| p.string_table[0] = "x".into()),
        "string table entry 0 is \"x\"; it must be \"\""
    );
    assert_eq!(
        broken(|p| p.function[1].name = 1000),
        format!(
            "function 2's name is string 1000, but the string table has {} entries",
            tiny().string_table.len()
        )
    );
    assert_eq!(
        broken(|p| {
            p.sample[0].value.pop();
        }),
        "sample 0 has 1 values, but the profile has 2 sample types"
    );
    assert_eq!(
        broken(|p| p.sample[1].value[1] = -5),
        "sample 1 has a negative value -5 for cpu/nanoseconds"
    );
    assert_eq!(broken(|p| p.sample.clear()), "profile has no samples");
    assert_eq!(
        broken(|p| p.location[1].id = 1),
        "location id 1 is used twice (entries 0 and 1)"
    );
    assert_eq!(
        broken(|p| p.function[0].id = 0),
        "function entry 0 has id 0; ids must be nonzero"
    );
}

#[test]
fn merge_adds_values_and_applies_weights() {
    let a = tiny();
    let merged = pgo_profile::merge(&[
        MergeInput {
            profile: &a,
            file: "a",
            weight: 1.0,
        },
        MergeInput {
            profile: &a,
            file: "b",
            weight: 2.0,
        },
    ])
    .unwrap();
    pgo_profile::validate(&merged).unwrap();
    assert_eq!(total(&merged, 0), 3 * total(&a, 0));
    assert_eq!(total(&merged, 1), 3 * total(&a, 1));
    assert_eq!(
        merged.function.len(),
        2,
        "functions are shared, not duplicated"
    );
}

#[test]
fn merge_scales_sample_counts_to_the_smallest_period() {
    let slow = tiny(); // 10 ms period
    let mut fast = tiny();
    fast.period = 1_000_000; // 1 ms: the same values now mean ten times the samples per ns
    for s in &mut fast.sample {
        s.value[1] /= 10;
    }
    let merged = pgo_profile::merge(&[
        MergeInput {
            profile: &slow,
            file: "slow",
            weight: 1.0,
        },
        MergeInput {
            profile: &fast,
            file: "fast",
            weight: 1.0,
        },
    ])
    .unwrap();
    assert_eq!(merged.period, 1_000_000);
    // slow's 6 samples of 10 ms count as 60 samples of 1 ms; fast's 6 stay 6.
    assert_eq!(total(&merged, 0), 66);
    // nanoseconds add up unchanged.
    assert_eq!(total(&merged, 1), 60_000_000 + 6_000_000);
}

#[test]
fn merge_refuses_mismatched_sample_types() {
    let a = tiny();
    let mut b = ProfileBuilder::new(&[("alloc_space", "bytes")]);
    let f = b.function(FunctionInfo {
        name: "f",
        ..FunctionInfo::default()
    });
    let l = b.location(
        None,
        0,
        &[LineInfo {
            function: f,
            line: 1,
            column: 0,
        }],
    );
    b.add_sample(&[l], &[4096], &[]).unwrap();
    let heap = b.build();
    let err = pgo_profile::merge(&[
        MergeInput {
            profile: &a,
            file: "cpu.pb.gz",
            weight: 1.0,
        },
        MergeInput {
            profile: &heap,
            file: "heap.pb.gz",
            weight: 1.0,
        },
    ])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "heap.pb.gz: sample types [alloc_space/bytes] do not match [samples/count, cpu/nanoseconds] of cpu.pb.gz; cannot merge"
    );
}

#[test]
fn focus_and_ignore_select_samples_by_function() {
    let p = tiny();
    let focus = SampleFilter {
        focus: Some(regex::Regex::new("^work$").unwrap()),
        ignore: None,
    };
    assert_eq!(total(&focus.apply(&p), 0), 5);
    let ignore = SampleFilter {
        focus: None,
        ignore: Some(regex::Regex::new("wor").unwrap()),
    };
    assert_eq!(total(&ignore.apply(&p), 0), 1);
}

#[test]
fn folded_stacks_import_and_export_round_trip() {
    let text = std::fs::read_to_string(profiles_dir().join("folded.txt")).unwrap();
    let p = pgo_profile::import::folded::parse(&text).unwrap();
    pgo_profile::validate(&p).unwrap();
    let want: i64 = text
        .lines()
        .filter_map(|l| l.trim().rsplit_once(' '))
        .map(|(_, n)| n.parse::<i64>().unwrap())
        .sum();
    assert_eq!(total(&p, 0), want);
    let view = ProfileView::new(&p);
    let again =
        pgo_profile::import::folded::parse(&pgo_profile::import::folded::write(&view, 0)).unwrap();
    assert_eq!(flat_by_name(&again, 0), flat_by_name(&p, 0));
    // The root of "main;parse;lex 120" is main: leaf first in pprof.
    let stack: Vec<String> = view
        .frames(&p.sample[0])
        .map(|f| view.frame_name(&f).into_owned())
        .collect();
    assert_eq!(stack.last().map(String::as_str), Some("main"));
}

#[test]
fn folded_errors_name_the_line() {
    let err = pgo_profile::import::folded::parse("main;a 3\nmain;b three\n").unwrap_err();
    assert!(err.starts_with("line 2: expected"), "{err}");
    let err = pgo_profile::import::folded::parse("main;a 3 4\n").unwrap_err();
    assert!(err.contains("differential"), "{err}");
}

#[test]
fn perf_script_output_imports_with_mappings_and_periods() {
    let path = profiles_dir().join("perf-script.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(Format::detect(text.as_bytes()), Format::PerfScript);
    let p = pgo_profile::load(&path, None).unwrap();
    let view = ProfileView::new(&p);
    assert_eq!(view.sample_types(), ["samples/count", "cpu/nanoseconds"]);
    let headers = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(char::is_whitespace))
        .count();
    assert_eq!(
        total(&p, 0),
        headers as i64,
        "one sample per perf script record"
    );
    assert!(
        p.mapping
            .iter()
            .any(|m| view.str(m.filename).ends_with("/prog"))
    );
    assert!(
        p.location.iter().all(|l| l.address != 0),
        "addresses are kept"
    );
    let flat = flat_by_name(&p, 0);
    assert!(flat.contains_key("mix64"), "{flat:?}");
}

#[test]
fn unknown_protobuf_fields_and_inline_lines_are_understood() {
    // A location with two lines: `inner` inlined into `outer`.
    let p = Profile {
        sample_type: vec![ValueType { r#type: 1, unit: 2 }],
        sample: vec![Sample {
            location_id: vec![1],
            value: vec![7],
            label: vec![],
        }],
        location: vec![Location {
            id: 1,
            mapping_id: 0,
            address: 0x10,
            line: vec![
                Line {
                    function_id: 1,
                    line: 4,
                    column: 0,
                },
                Line {
                    function_id: 2,
                    line: 9,
                    column: 0,
                },
            ],
            is_folded: false,
        }],
        function: vec![
            Function {
                id: 1,
                name: 3,
                system_name: 3,
                filename: 0,
                start_line: 2,
            },
            Function {
                id: 2,
                name: 4,
                system_name: 4,
                filename: 0,
                start_line: 8,
            },
        ],
        string_table: ["", "samples", "count", "inner", "outer"]
            .map(String::from)
            .to_vec(),
        ..Profile::default()
    };
    let view = ProfileView::new(&p);
    let frames: Vec<_> = view.frames(&p.sample[0]).collect();
    assert_eq!(frames.len(), 2);
    assert_eq!(view.frame_name(&frames[0]), "inner");
    assert!(frames[0].inlined);
    assert_eq!(view.frame_name(&frames[1]), "outer");
    assert!(!frames[1].inlined);
}

#[test]
fn perf_script_without_callchains_and_with_spaces_in_comm() {
    // `perf record` without -g puts the one frame on the header line.
    let text = "\
Web Content 4242/4243 [001]   100.000100:     250000 task-clock:ppp:      55d4c3a0b18b mix64+0x32 (/opt/prog)
Web Content 4242/4243 [001]   100.000350:     250000 task-clock:ppp:      55d4c3a0b18b mix64+0x32 (/opt/prog)
Web Content 4242/4244 [000]   100.000600:     250000 task-clock:ppp:  ffffffff8100 [unknown] ([kernel.kallsyms])
";
    assert_eq!(Format::detect(text.as_bytes()), Format::PerfScript);
    let p = pgo_profile::import::perf_script::parse(text).unwrap();
    pgo_profile::validate(&p).unwrap();
    let view = ProfileView::new(&p);
    assert_eq!(total(&p, 0), 3);
    assert_eq!(total(&p, 1), 750_000);
    assert_eq!(p.duration_nanos, 500_000);
    let flat = flat_by_name(&p, 0);
    assert_eq!(flat["mix64"], 2);
    // The unsymbolized kernel address keeps its mapping and address.
    assert_eq!(
        flat.iter()
            .filter(|(k, _)| k.starts_with("[kernel.kallsyms]+0x"))
            .count(),
        1,
        "{flat:?}"
    );
    let comm = p.sample[0]
        .label
        .iter()
        .find(|l| view.str(l.key) == "comm")
        .unwrap();
    assert_eq!(view.str(comm.str), "Web Content");
    let tids: std::collections::BTreeSet<i64> = p
        .sample
        .iter()
        .flat_map(|s| {
            s.label
                .iter()
                .filter(|l| view.str(l.key) == "tid")
                .map(|l| l.num)
        })
        .collect();
    assert_eq!(tids.into_iter().collect::<Vec<_>>(), [4243, 4244]);
}

#[test]
fn written_files_get_ordinary_permissions_not_a_temporary_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.txt");
    pgo_profile::write_atomic(&path, b"x").unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    // 0666 less the umask: readable by others under the usual 022 (a temporary file is 0600).
    assert_eq!(mode & 0o644, 0o644, "{mode:o}");
    // Replacing a file keeps its mode.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    pgo_profile::write_atomic(&path, b"y").unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

#[test]
fn the_main_mapping_is_the_program_samples_pass_through_not_the_library_they_end_in() {
    // A search tool started by a shell script: most samples end in libc's read (then the
    // kernel), called from the program; the shell has a few of its own.
    let mut b = ProfileBuilder::new(&[("samples", "count")]);
    let mapping = |b: &mut ProfileBuilder, start: u64, filename: &str| {
        b.mapping(pgo_profile::MappingInfo {
            memory_start: start,
            memory_limit: start + 0x10_0000,
            file_offset: 0,
            filename,
            build_id: "",
            has_functions: true,
            has_filenames: false,
            has_line_numbers: false,
            has_inline_frames: false,
        })
    };
    let shell = mapping(&mut b, 0x1000_0000, "/usr/bin/dash");
    let program = mapping(&mut b, 0x2000_0000, "/tmp/rg");
    let libc = mapping(
        &mut b,
        0x7f00_0000_0000,
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    );
    let vdso = mapping(&mut b, 0x7fff_0000_0000, "[vdso]");
    let kernel = b.location(None, pgo_profile::KERNEL_ADDRESS_START + 0x100, &[]);
    let read = b.location(Some(libc), 0x7f00_0000_1000, &[]);
    let search = b.location(Some(program), 0x2000_1000, &[]);
    let shell_loop = b.location(Some(shell), 0x1000_1000, &[]);
    let clock = b.location(Some(vdso), 0x7fff_0000_1000, &[]);
    for _ in 0..6 {
        b.add_sample(&[kernel, read, search], &[1], &[]).unwrap();
    }
    for _ in 0..2 {
        b.add_sample(&[search], &[1], &[]).unwrap();
        b.add_sample(&[clock, search], &[1], &[]).unwrap();
    }
    for _ in 0..3 {
        b.add_sample(&[shell_loop], &[1], &[]).unwrap();
        b.add_sample(&[read, shell_loop], &[1], &[]).unwrap();
    }
    let p = b.build();
    let view = ProfileView::new(&p);
    let main = view.main_mapping().expect("a main mapping");
    assert_eq!(view.str(main.filename), "/tmp/rg");

    // Only libraries: the one most samples end in.
    let mut b = ProfileBuilder::new(&[("samples", "count")]);
    let a = mapping(&mut b, 0x1000_0000, "/lib/liba.so");
    let c = mapping(&mut b, 0x2000_0000, "/lib/libc.so.6");
    let la = b.location(Some(a), 0x1000_1000, &[]);
    let lc = b.location(Some(c), 0x2000_1000, &[]);
    b.add_sample(&[la, lc], &[1], &[]).unwrap();
    b.add_sample(&[la, lc], &[1], &[]).unwrap();
    b.add_sample(&[lc], &[1], &[]).unwrap();
    let p = b.build();
    let view = ProfileView::new(&p);
    assert_eq!(
        view.str(view.main_mapping().unwrap().filename),
        "/lib/liba.so"
    );
    assert!(!pgo_profile::could_be_program("/usr/lib/libz.so.1.3"));
    assert!(pgo_profile::could_be_program("/usr/bin/python3.11"));
}

#[test]
fn a_perf_data_file_is_said_to_be_one_not_a_broken_pprof() {
    // perf.data's header starts with its magic, in files and pipes alike; the rest is binary.
    let mut file_header = b"PERFILE2".to_vec();
    file_header.extend_from_slice(&104u64.to_le_bytes());
    file_header.extend_from_slice(&[0x88; 96]);
    let mut pipe_header = b"PERFILE2".to_vec();
    pipe_header.extend_from_slice(&16u64.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [("perf.data", file_header), ("pipe.data", pipe_header)] {
        assert_eq!(Format::detect(&bytes), Format::PerfData, "{name}");
        assert!(pgo_profile::is_perf_data(&bytes));
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        for format in [None, Some(Format::PerfData), Some(Format::Pprof)] {
            let e = pgo_profile::load(&path, format).unwrap_err();
            assert_eq!(e.file, path.display().to_string());
            assert!(e.problem.contains("a perf.data file"), "{format:?}: {e}");
            assert!(!e.problem.contains("protobuf"), "{e}");
            assert!(!e.to_string().contains('\n'));
        }
    }
    assert!(!pgo_profile::is_perf_data(b"PERFILE"));
}
