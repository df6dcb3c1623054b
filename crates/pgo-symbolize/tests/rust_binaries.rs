//! Symbolization of binaries built by rustc: DWARF frames with inline frames, both mangling
//! schemes, build IDs, and runtime addresses of a running PIE.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use pgo_symbolize::{FrameSource, ObjectInfo, Symbolizer};

/// A helper forced inline into a function kept out of line, so the outer function's code
/// holds inline frames of the helper. `main` prints the runtime address of `compute_outer` and
/// the process's own memory map, for the runtime-address test.
const PROGRAM: &str = r#"use std::hint::black_box;

#[inline(always)]
fn add_squares(a: u64, b: u64) -> u64 {
    let sum = a * a + b * b;
    sum.rotate_left(7) ^ 0x5555
}

#[inline(never)]
pub fn compute_outer(n: u64) -> u64 {
    let mut total = 0u64;
    for i in 0..n {
        total = total.wrapping_add(add_squares(black_box(i), total));
    }
    total
}

fn main() {
    println!("{:#x}", compute_outer as fn(u64) -> u64 as usize);
    println!("{}", compute_outer(black_box(1000)));
    print!("{}", std::fs::read_to_string("/proc/self/maps").unwrap());
}
"#;

struct Built {
    _dir: tempfile::TempDir,
    source: PathBuf,
    binary: PathBuf,
}

fn build(extra_args: &[&str]) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let source = write_source(dir.path(), "prog.rs", PROGRAM);
    let binary = rustc(dir.path(), Path::new("prog.rs"), "prog", extra_args);
    Built {
        _dir: dir,
        source,
        binary,
    }
}

fn is_compute_outer(name: &str) -> bool {
    name.contains("compute_outer")
}

#[test]
fn legacy_mangled_frames_with_inline_helper() {
    let built = build(&["-C", "link-arg=-Wl,--build-id"]);
    let build_id = ObjectInfo::read(&built.binary).unwrap().build_id;
    let symbol = function_symbol(&built.binary, is_compute_outer);
    assert!(
        symbol.name.starts_with("_ZN4prog13compute_outer17h"),
        "{}",
        symbol.name
    );

    let outer_decl_line = line_of(PROGRAM, "pub fn compute_outer(");
    let outer_last_line = outer_decl_line + 6; // The closing brace of compute_outer.
    assert_eq!(PROGRAM.lines().nth(outer_last_line as usize - 1), Some("}"));
    let helper_decl_line = line_of(PROGRAM, "fn add_squares(");
    let helper_body_lines = [
        line_of(PROGRAM, "let sum = a * a"),
        line_of(PROGRAM, "sum.rotate_left(7)"),
    ];
    let call_line = line_of(PROGRAM, "total.wrapping_add(add_squares(");

    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
    let answers = symbolize_every_byte(&mut symbolizer, &built.binary, &build_id, &symbol);

    // Every byte of the function has frames from DWARF, ending in compute_outer itself.
    let mut lines_in_own_file = 0;
    for answer in &answers {
        assert_eq!(answer.source, FrameSource::Dwarf);
        assert!(!answer.object_is_stripped);
        let outer = answer.frames.last().unwrap();
        assert_eq!(&*outer.function_linkage_name, symbol.name);
        assert_eq!(&*outer.function_name, "prog::compute_outer");
        assert_eq!(Path::new(&*outer.function_file), built.source);
        assert_eq!(outer.start_line, outer_decl_line);
        assert!(!outer.inlined);
        // At -O2 LLVM attributes a few instructions to core's files with no inline frame
        // for them; the lines that are in prog.rs must be compute_outer's.
        if Path::new(&*outer.file) == built.source && outer.line != 0 {
            lines_in_own_file += 1;
            assert!(
                (outer_decl_line..=outer_last_line).contains(&outer.line),
                "line {} outside compute_outer",
                outer.line
            );
        }
        // Innermost first: every frame but the last was inlined into the next.
        for frame in &answer.frames[..answer.frames.len() - 1] {
            assert!(frame.inlined, "{frame:?}");
        }
    }
    assert!(
        lines_in_own_file * 2 > answers.len(),
        "only {lines_in_own_file} of {} addresses have a prog.rs line",
        answers.len()
    );

    // Somewhere the helper sits, inlined, directly inside compute_outer at the call line.
    let frames = find_inlined_call(&answers, "prog::add_squares", "prog::compute_outer")
        .expect("add_squares should appear inlined into compute_outer");
    let helper = &frames[frames.len() - 2];
    let outer = &frames[frames.len() - 1];
    assert!(helper.inlined);
    assert!(
        helper
            .function_linkage_name
            .starts_with("_ZN4prog11add_squares17h")
    );
    assert_eq!(helper.start_line, helper_decl_line);
    assert_eq!(Path::new(&*helper.file), built.source);
    assert_eq!(Path::new(&*helper.function_file), built.source);
    assert!(
        helper_body_lines.contains(&helper.line),
        "helper line {} should be one of {helper_body_lines:?}",
        helper.line
    );
    assert_eq!(outer.line, call_line);
    assert_eq!(outer.column, column_of(PROGRAM, "add_squares(black_box"));
    assert_eq!(outer.start_line, outer_decl_line);

    // Both helper body lines are reached by some address.
    for body_line in helper_body_lines {
        assert!(
            answers.iter().any(
                |answer| answer
                    .frames
                    .iter()
                    .any(|frame| &*frame.function_name == "prog::add_squares"
                        && frame.line == body_line)
            ),
            "no address at add_squares line {body_line}"
        );
    }

    // The symbol lookup agrees with the symbol table.
    let function = symbolizer
        .function_containing(&built.binary, &build_id, symbol.address + symbol.size / 2)
        .unwrap()
        .unwrap();
    assert_eq!(function.start, symbol.address);
    assert_eq!(function.size, symbol.size);
    assert_eq!(function.linkage_name, symbol.name);
    assert_eq!(function.name, "prog::compute_outer");
}

#[test]
fn v0_mangled_names_demangle() {
    let built = build(&["-C", "symbol-mangling-version=v0"]);
    let symbol = function_symbol(&built.binary, is_compute_outer);
    assert!(symbol.name.starts_with("_R"), "{}", symbol.name);

    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
    let answers = symbolize_every_byte(&mut symbolizer, &built.binary, "", &symbol);
    let frames = find_inlined_call(&answers, "prog::add_squares", "prog::compute_outer")
        .expect("add_squares should appear inlined into compute_outer");
    let outer = frames.last().unwrap();
    assert_eq!(&*outer.function_linkage_name, symbol.name);
    assert!(
        frames[frames.len() - 2]
            .function_linkage_name
            .starts_with("_R")
    );
}

#[test]
fn build_id_is_read_when_the_linker_writes_one() {
    let with_id = build(&["-C", "link-arg=-Wl,--build-id"]);
    let info = ObjectInfo::read(&with_id.binary).unwrap();
    assert_eq!(info.build_id, readelf_build_id(&with_id.binary));
    assert_eq!(
        info.build_id.len(),
        40,
        "a SHA-1 build ID: {}",
        info.build_id
    );
    assert!(info.has_dwarf && info.has_symtab);

    // rustc's default linker setup writes none; whatever readelf sees, we see.
    let default = build(&[]);
    assert_eq!(
        ObjectInfo::read(&default.binary).unwrap().build_id,
        readelf_build_id(&default.binary)
    );
}

#[test]
fn runtime_address_of_running_pie_maps_to_the_function() {
    let built = build(&["-C", "link-arg=-Wl,--build-id"]);
    let symbol = function_symbol(&built.binary, is_compute_outer);
    let (address, mapping) = run_and_find_mapping(&built.binary);
    assert!(mapping.executable);
    assert_eq!(Path::new(&mapping.path), built.binary);
    // A PIE under ASLR: the runtime address is not the file's address.
    assert_ne!(address, symbol.address);

    let info = ObjectInfo::read(&built.binary).unwrap();
    assert_eq!(
        info.svma_for_runtime_address(address, mapping.start, mapping.file_offset),
        Some(symbol.address)
    );

    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
    let answer = symbolizer
        .symbolize_runtime_address(
            &mapping.path,
            &info.build_id,
            mapping.start,
            mapping.file_offset,
            address,
        )
        .unwrap();
    let outer = answer.frames.last().unwrap();
    assert_eq!(&*outer.function_name, "prog::compute_outer");
    assert_eq!(outer.start_line, line_of(PROGRAM, "pub fn compute_outer("));
}

#[test]
fn lto_cross_unit_inline_frames_keep_declaration_lines() {
    // With fat LTO, code from std inlined into main refers to its abstract origin in std's
    // compilation unit (DW_FORM_ref_addr), not in main's own unit.
    let built = build(&["-C", "lto=fat"]);
    let symbol = function_symbol(&built.binary, |name| name.contains("4prog4main"));
    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
    let answers = symbolize_every_byte(&mut symbolizer, &built.binary, "", &symbol);
    let std_inline_frames: Vec<_> = answers
        .iter()
        .flat_map(|answer| answer.frames.iter())
        .filter(|frame| frame.inlined && frame.function_name.starts_with("std::io::"))
        .collect();
    assert!(
        !std_inline_frames.is_empty(),
        "std::io code should be inlined into main"
    );
    for frame in std_inline_frames {
        assert!(frame.start_line > 0, "{frame:?}");
        assert!(frame.function_file.ends_with(".rs"), "{frame:?}");
    }
}

#[test]
fn inlined_calls_name_caller_callee_lines_and_size_within_the_ranges_asked() {
    let built = build(&["-C", "symbol-mangling-version=v0"]);
    let symbol = function_symbol(&built.binary, is_compute_outer);
    let range = (symbol.address, symbol.address + symbol.size);
    let calls = pgo_symbolize::inlined_calls(&built.binary, &[range]).unwrap();
    let helper: Vec<_> = calls
        .iter()
        .filter(|c| c.callee.contains("add_squares"))
        .collect();
    assert_eq!(helper.len(), 1, "{calls:#?}");
    let call = helper[0];
    assert_eq!(call.caller, symbol.name, "{call:#?}");
    assert_eq!(call.caller_line, line_of(PROGRAM, "pub fn compute_outer("));
    assert_eq!(
        call.call_line,
        line_of(PROGRAM, "total.wrapping_add(add_squares(")
    );
    assert!(
        call.bytes > 0 && call.bytes < symbol.size,
        "{call:#?} in {} bytes",
        symbol.size
    );
    // Nothing is reported for code outside the ranges asked about.
    let main = function_symbol(&built.binary, |n| n.contains("4prog4main"));
    let elsewhere =
        pgo_symbolize::inlined_calls(&built.binary, &[(main.address, main.address + main.size)])
            .unwrap();
    assert!(
        elsewhere.iter().all(|c| !c.callee.contains("add_squares")),
        "{elsewhere:#?}"
    );
}
