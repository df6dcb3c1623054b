//! Symbolization of binaries built by the system C and C++ compilers (`cc -O2 -g`, PIE by
//! default): DWARF frames with inline frames, C++ demangling, stripped executables and shared
//! libraries, separate debug files, build IDs, and runtime addresses of a running process.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use pgo_symbolize::{Error, FrameSource, ObjectInfo, SpecialMapping, Symbolizer};

/// A helper forced inline into a function kept out of line. `main` prints the runtime address
/// of `hot_loop` and then the process's own memory map.
const PROGRAM: &str = r#"#include <stdio.h>
#include <stdlib.h>

static inline __attribute__((always_inline)) unsigned scale(unsigned x) {
    unsigned y = x * 2654435761u;
    return (y >> 7) ^ x;
}

__attribute__((noinline)) unsigned hot_loop(unsigned n) {
    unsigned acc = 0;
    for (unsigned i = 0; i < n; i++) {
        acc += scale(i ^ acc);
    }
    return acc;
}

int main(int argc, char **argv) {
    unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 1000;
    printf("%p\n", (void *)hot_loop);
    printf("%u\n", hot_loop(n));
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[4096];
    while (maps && fgets(line, sizeof line, maps)) {
        fputs(line, stdout);
    }
    return 0;
}
"#;

struct Built {
    dir: tempfile::TempDir,
    source: PathBuf,
    binary: PathBuf,
}

fn build_c(extra_args: &[&str]) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let source = write_source(dir.path(), "prog.c", PROGRAM);
    let mut args = vec!["-O2", "-g"];
    args.extend_from_slice(extra_args);
    let binary = cc("cc", dir.path(), Path::new("prog.c"), "prog", &args);
    Built {
        dir,
        source,
        binary,
    }
}

fn hot_loop_symbol(binary: &Path) -> SymbolFact {
    function_symbol(binary, |name| name == "hot_loop")
}

/// Checks what every test that finds DWARF for `hot_loop` expects: names, files, lines,
/// declaration lines, and the inline frame of `scale`.
/// `symbol` is `hot_loop` as read from the unstripped binary.
fn assert_hot_loop_frames(
    symbolizer: &mut Symbolizer,
    binary: &Path,
    build_id: &str,
    source: &Path,
    symbol: &SymbolFact,
) {
    let decl_line = line_of(PROGRAM, "unsigned hot_loop(unsigned n)");
    let last_line = line_of(PROGRAM, "return acc;") + 1;
    let answers = symbolize_every_byte(symbolizer, binary, build_id, symbol);
    for answer in &answers {
        assert_eq!(answer.source, FrameSource::Dwarf);
        let outer = answer.frames.last().unwrap();
        // C has no linkage name in DWARF: the linkage name is the plain name.
        assert_eq!(&*outer.function_linkage_name, "hot_loop");
        assert_eq!(&*outer.function_name, "hot_loop");
        assert_eq!(Path::new(&*outer.function_file), source);
        assert_eq!(outer.start_line, decl_line);
        assert!(!outer.inlined);
        if outer.line != 0 {
            assert_eq!(Path::new(&*outer.file), source);
            assert!((decl_line..=last_line).contains(&outer.line), "{outer:?}");
        }
    }
    let frames = find_inlined_call(&answers, "scale", "hot_loop")
        .expect("scale should appear inlined into hot_loop");
    let [helper, outer] = &frames[frames.len() - 2..] else {
        unreachable!()
    };
    assert!(helper.inlined);
    assert_eq!(
        helper.start_line,
        line_of(PROGRAM, "unsigned scale(unsigned x)")
    );
    assert_eq!(Path::new(&*helper.file), source);
    assert!(
        [
            line_of(PROGRAM, "unsigned y = x *"),
            line_of(PROGRAM, "return (y >> 7)")
        ]
        .contains(&helper.line),
        "{helper:?}"
    );
    assert_eq!(outer.line, line_of(PROGRAM, "acc += scale("));
    assert_eq!(outer.start_line, decl_line);
}

#[test]
fn c_frames_with_inline_helper_and_build_id() {
    let built = build_c(&[]);
    let info = ObjectInfo::read(&built.binary).unwrap();
    // gcc's linker writes a build ID by default.
    assert_eq!(info.build_id, readelf_build_id(&built.binary));
    assert!(!info.build_id.is_empty());
    assert!(info.has_dwarf && info.has_symtab && !info.is_stripped());

    let symbol = hot_loop_symbol(&built.binary);
    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
    assert_hot_loop_frames(
        &mut symbolizer,
        &built.binary,
        &info.build_id,
        &built.source,
        &symbol,
    );

    let function = symbolizer
        .function_containing(&built.binary, "", symbol.address + 1)
        .unwrap()
        .unwrap();
    assert_eq!(
        (function.start, function.size),
        (symbol.address, symbol.size)
    );
    assert_eq!(function.name, "hot_loop");
}

#[test]
fn cpp_names_are_demangled() {
    const CPP: &str = r#"namespace geometry {
__attribute__((noinline)) int twice(int x) {
    return x * 2 + 1;
}
__attribute__((noinline)) double twice(double x) {
    return x * 2.5;
}
}

int main(int argc, char **) {
    return geometry::twice(argc) + (int)geometry::twice((double)argc);
}
"#;
    let dir = tempfile::tempdir().unwrap();
    write_source(dir.path(), "prog.cpp", CPP);
    let binary = cc(
        "c++",
        dir.path(),
        Path::new("prog.cpp"),
        "prog",
        &["-O2", "-g"],
    );
    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
    for (linkage_name, name, decl_needle) in [
        (
            "_ZN8geometry5twiceEi",
            "geometry::twice(int)",
            "int twice(int x)",
        ),
        (
            "_ZN8geometry5twiceEd",
            "geometry::twice(double)",
            "double twice(double x)",
        ),
    ] {
        let symbol = function_symbol(&binary, |symbol| symbol == linkage_name);
        let answer = symbolizer.symbolize(&binary, "", symbol.address).unwrap();
        let frame = answer.frames.last().unwrap();
        assert_eq!(&*frame.function_linkage_name, linkage_name);
        assert_eq!(&*frame.function_name, name);
        assert_eq!(frame.start_line, line_of(CPP, decl_needle));
        assert_eq!(&*frame.file, dir.path().join("prog.cpp").to_str().unwrap());
    }
}

#[test]
fn stripped_executable_gives_no_frames_and_the_warning() {
    let built = build_c(&[]);
    let symbol = hot_loop_symbol(&built.binary);
    let stripped = stripped_copy(&built.binary, "prog-stripped");
    let info = ObjectInfo::read(&stripped).unwrap();
    assert!(info.is_stripped() && !info.has_symtab && !info.has_dwarf);
    // strip keeps the build ID note.
    assert_eq!(info.build_id, readelf_build_id(&built.binary));

    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
    let answer = symbolizer.symbolize(&stripped, "", symbol.address).unwrap();
    assert!(answer.frames.is_empty());
    assert_eq!(answer.source, FrameSource::NotFound);
    assert!(answer.object_is_stripped);
    assert_eq!(
        symbolizer
            .function_containing(&stripped, "", symbol.address)
            .unwrap(),
        None
    );
}

#[test]
fn stripped_shared_library_keeps_exported_names_from_dynsym() {
    const LIBRARY: &str = r#"static int helper(int x) {
    return x * 7 + 3;
}

int exported_square(int x) {
    return x * x + helper(x);
}
"#;
    let dir = tempfile::tempdir().unwrap();
    write_source(dir.path(), "lib.c", LIBRARY);
    let library = cc(
        "cc",
        dir.path(),
        Path::new("lib.c"),
        "libsquare.so",
        &["-O2", "-g", "-shared", "-fPIC"],
    );
    let symbol = function_symbol(&library, |name| name == "exported_square");
    let stripped = stripped_copy(&library, "libsquare-stripped.so");
    let info = ObjectInfo::read(&stripped).unwrap();
    assert!(info.is_stripped() && info.has_dynsym);

    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
    for svma in [symbol.address, symbol.address + symbol.size - 1] {
        let answer = symbolizer.symbolize(&stripped, "", svma).unwrap();
        assert_eq!(answer.source, FrameSource::Dynsym);
        assert!(answer.object_is_stripped);
        let [frame] = &*answer.frames else {
            panic!("one frame expected: {answer:?}")
        };
        assert_eq!(&*frame.function_name, "exported_square");
        assert_eq!((frame.line, frame.start_line), (0, 0));
    }
    let function = symbolizer
        .function_containing(&stripped, "", symbol.address + 2)
        .unwrap()
        .unwrap();
    assert_eq!(
        (function.start, function.size),
        (symbol.address, symbol.size)
    );

    // The unstripped library gives DWARF lines for the same address.
    let answer = symbolizer.symbolize(&library, "", symbol.address).unwrap();
    assert_eq!(answer.source, FrameSource::Dwarf);
    assert_eq!(
        answer.frames.last().unwrap().start_line,
        line_of(LIBRARY, "int exported_square(int x)")
    );
}

/// `objcopy --only-keep-debug` the binary into `debug_path`, then strip the binary.
fn split_debug_info(binary: &Path, debug_path: &Path) {
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(binary)
        .arg(debug_path));
    run(Command::new("strip").arg(binary));
}

#[test]
fn debug_file_is_found_by_build_id() {
    let built = build_c(&[]);
    let info = ObjectInfo::read(&built.binary).unwrap();
    let debug_root = built.dir.path().join("debug-root");
    let debug_path = debug_root
        .join(".build-id")
        .join(&info.build_id[..2])
        .join(format!("{}.debug", &info.build_id[2..]));
    std::fs::create_dir_all(debug_path.parent().unwrap()).unwrap();
    let symbol = hot_loop_symbol(&built.binary);
    // The program runs (and is sampled) before its debug information is split off.
    let (runtime_address, mapping) = run_and_find_mapping(&built.binary);
    split_debug_info(&built.binary, &debug_path);
    assert!(ObjectInfo::read(&built.binary).unwrap().is_stripped());

    let mut symbolizer = Symbolizer::with_debug_dirs(vec![debug_root.clone()]);
    assert_hot_loop_frames(&mut symbolizer, &built.binary, "", &built.source, &symbol);
    let id = symbolizer.load(&built.binary, "").unwrap();
    assert_eq!(
        symbolizer.object(id).debug_file(),
        Some(debug_path.as_path())
    );
    assert!(!symbolizer.object(id).is_stripped());
    // The stripped binary lost .symtab; the debug file's one answers.
    assert_eq!(
        symbolizer
            .function_containing(&built.binary, "", symbol.address)
            .unwrap()
            .map(|function| function.size),
        Some(symbol.size)
    );

    // A binary deleted after profiling is still symbolized from its debug file, given the
    // build ID that was recorded.
    let mut symbolizer = Symbolizer::with_debug_dirs(vec![debug_root]);
    std::fs::remove_file(&built.binary).unwrap();
    let answer = symbolizer
        .symbolize(&built.binary, &info.build_id, symbol.address)
        .unwrap();
    assert_eq!(&*answer.frames.last().unwrap().function_name, "hot_loop");

    // The same from a memory map that shows the binary deleted.
    let deleted_path = format!("{} (deleted)", mapping.path);
    for build_id in [info.build_id.as_str(), ""] {
        let answer = symbolizer
            .symbolize_runtime_address(
                &deleted_path,
                build_id,
                mapping.start,
                mapping.file_offset,
                runtime_address,
            )
            .unwrap();
        if build_id.is_empty() {
            // Without the build ID nothing says the file at the path is the one mapped.
            assert!(answer.frames.is_empty());
            assert_eq!(answer.source, FrameSource::Special(SpecialMapping::Deleted));
        } else {
            assert_eq!(&*answer.frames.last().unwrap().function_name, "hot_loop");
        }
    }
}

#[test]
fn debug_file_is_found_by_debuglink_and_its_crc() {
    // Without a build ID the debug file can only be matched by the CRC in .gnu_debuglink.
    let built = build_c(&["-Wl,--build-id=none"]);
    assert_eq!(ObjectInfo::read(&built.binary).unwrap().build_id, "");
    let debug_dir = built.dir.path().join(".debug");
    std::fs::create_dir(&debug_dir).unwrap();
    let debug_path = debug_dir.join("prog.debug");
    let symbol = hot_loop_symbol(&built.binary);
    split_debug_info(&built.binary, &debug_path);
    run(Command::new("objcopy")
        .arg("--add-gnu-debuglink")
        .arg(&debug_path)
        .arg(&built.binary));
    let info = ObjectInfo::read(&built.binary).unwrap();
    assert_eq!(info.debuglink.as_ref().unwrap().file_name, "prog.debug");

    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
    assert_hot_loop_frames(&mut symbolizer, &built.binary, "", &built.source, &symbol);
    let id = symbolizer.load(&built.binary, "").unwrap();
    assert_eq!(
        symbolizer.object(id).debug_file(),
        Some(debug_path.as_path())
    );

    // A debug file that no longer matches (rebuilt with other code) is not used.
    let other = build_c(&["-Wl,--build-id=none", "-O1"]);
    std::fs::copy(&other.binary, &debug_path).unwrap();
    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
    let id = symbolizer.load(&built.binary, "").unwrap();
    assert_eq!(symbolizer.object(id).debug_file(), None);
    assert!(symbolizer.object(id).is_stripped());
}

#[test]
fn objects_are_cached_by_build_id_and_checked_against_it() {
    let built = build_c(&[]);
    let build_id = ObjectInfo::read(&built.binary).unwrap().build_id;
    let copy = built.dir.path().join("prog-copy");
    std::fs::copy(&built.binary, &copy).unwrap();

    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
    let original_id = symbolizer.load(&built.binary, "").unwrap();
    assert_eq!(symbolizer.load(&copy, "").unwrap(), original_id);
    assert_eq!(
        symbolizer.load(&copy, &build_id.to_uppercase()).unwrap(),
        original_id
    );

    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
    let wrong_build_id = "00112233445566778899aabbccddeeff00112233";
    let error = symbolizer.load(&built.binary, wrong_build_id).unwrap_err();
    assert!(matches!(error, Error::BuildIdMismatch { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains(built.binary.to_str().unwrap()) && message.contains(wrong_build_id));
}

#[test]
fn runtime_address_of_running_pie_maps_to_the_function() {
    let built = build_c(&[]);
    let symbol = hot_loop_symbol(&built.binary);
    let (address, mapping) = run_and_find_mapping(&built.binary);
    assert!(mapping.executable);
    assert_eq!(Path::new(&mapping.path), built.binary);
    assert_ne!(address, symbol.address, "a PIE should be loaded at a bias");

    let info = ObjectInfo::read(&built.binary).unwrap();
    assert_eq!(
        info.svma_for_runtime_address(address, mapping.start, mapping.file_offset),
        Some(symbol.address)
    );
    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
    let answer = symbolizer
        .symbolize_runtime_address(
            &mapping.path,
            "",
            mapping.start,
            mapping.file_offset,
            address,
        )
        .unwrap();
    let frame = answer.frames.last().unwrap();
    assert_eq!(&*frame.function_name, "hot_loop");
    assert_eq!(
        frame.start_line,
        line_of(PROGRAM, "unsigned hot_loop(unsigned n)")
    );
}

#[test]
fn special_mappings_give_no_frames_and_no_error() {
    let mut symbolizer = Symbolizer::new();
    for path in [
        "[vdso]",
        "[vsyscall]",
        "[heap]",
        "[stack]",
        "",
        "[anon:jit]",
    ] {
        let answer = symbolizer
            .symbolize_runtime_address(path, "", 0x7fff_0000_0000, 0, 0x7fff_0000_0100)
            .unwrap();
        assert!(answer.frames.is_empty());
        assert!(matches!(answer.source, FrameSource::Special(_)), "{path}");
    }
}

#[test]
fn missing_and_non_elf_files_give_one_line_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());

    let missing = dir.path().join("no-such-binary");
    let error = symbolizer.symbolize(&missing, "", 0x1000).unwrap_err();
    assert!(matches!(error, Error::Io { .. }));
    let script = write_source(dir.path(), "script.sh", "#!/bin/sh\necho not a binary\n");
    let not_elf = symbolizer.symbolize(&script, "", 0x1000).unwrap_err();
    assert!(matches!(not_elf, Error::NotElf { .. }));
    let empty = write_source(dir.path(), "empty", "");
    let empty_error = ObjectInfo::read(&empty).unwrap_err();

    for (error, path) in [
        (&error, &missing),
        (&not_elf, &script),
        (&empty_error, &empty),
    ] {
        let message = error.to_string();
        assert!(message.contains(path.to_str().unwrap()), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
    assert!(not_elf.to_string().ends_with("is not an ELF file"));
}

#[test]
fn damaged_files_give_errors_or_fewer_frames_never_panics() {
    let built = build_c(&[]);
    let symbol = hot_loop_symbol(&built.binary);
    let original = std::fs::read(&built.binary).unwrap();
    let damaged_path = built.dir.path().join("damaged");

    // Truncated to the ELF header alone: the section headers it points to are missing.
    std::fs::write(&damaged_path, &original[..64]).unwrap();
    let error = ObjectInfo::read(&damaged_path).unwrap_err();
    assert!(matches!(error, Error::MalformedElf { .. }), "{error}");
    assert!(error.to_string().contains(damaged_path.to_str().unwrap()));

    // .debug_info overwritten with garbage: names still come from .symtab.
    let debug_info_range = {
        use object::{Object, ObjectSection};
        let file = object::File::parse(&*original).unwrap();
        file.section_by_name(".debug_info")
            .unwrap()
            .file_range()
            .unwrap()
    };
    let mut garbage = original.clone();
    let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
    let (start, size) = (debug_info_range.0 as usize, debug_info_range.1 as usize);
    for byte in &mut garbage[start..start + size] {
        *byte = random.next() as u8;
    }
    std::fs::write(&damaged_path, &garbage).unwrap();
    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
    let answer = symbolizer
        .symbolize(&damaged_path, "", symbol.address)
        .unwrap();
    assert_eq!(&*answer.frames.last().unwrap().function_name, "hot_loop");

    // Random damage anywhere, truncation anywhere: any answer or error, but no panic.
    for round in 0..300 {
        let mut damaged = original.clone();
        if round % 3 == 0 {
            damaged.truncate(random.next() as usize % original.len());
        } else {
            for _ in 0..1 + random.next() % 16 {
                let position = random.next() as usize % damaged.len();
                damaged[position] = random.next() as u8;
            }
        }
        std::fs::write(&damaged_path, &damaged).unwrap();
        // A fresh symbolizer each round: the cache must not hide the damaged file.
        let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
        let _ = ObjectInfo::read(&damaged_path);
        for offset in [0, symbol.size / 2, symbol.size - 1] {
            let _ = symbolizer.symbolize(&damaged_path, "", symbol.address + offset);
            let _ = symbolizer.function_containing(&damaged_path, "", symbol.address + offset);
        }
    }
}

/// A tiny deterministic random number generator, so damage is the same on every run.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn dwz_supplementary_file_supplies_shared_declarations() {
    // dwz (as Debian and Fedora debug packages use it) moves entries shared by several
    // binaries, such as an inline function from a common header, into one supplementary
    // file that each binary points to with .gnu_debugaltlink.
    if Command::new("dwz").arg("--version").output().is_err() {
        // `cargo xtask test` (and so CI) installs dwz; only a bare `cargo test` may skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "dwz is required in CI: apt-get install dwz"
        );
        eprintln!("SKIPPED: dwz is not installed (apt-get install dwz)");
        return;
    }
    const HEADER: &str = r#"struct point { int x; int y; long z; double w; };
struct shape { struct point a, b, c; const char *name; };
static inline __attribute__((always_inline)) int area(struct shape *s) {
    return (s->b.x - s->a.x) * (s->c.y - s->a.y);
}
"#;
    const MAIN: &str = r#"#include "common.h"
__attribute__((noinline)) int use_shape(struct shape *s) {
    return area(s) + 1;
}
int main(void) { struct shape s = {0}; return use_shape(&s); }
"#;
    let dir = tempfile::tempdir().unwrap();
    write_source(dir.path(), "common.h", HEADER);
    write_source(dir.path(), "main.c", MAIN);
    let first = cc(
        "cc",
        dir.path(),
        Path::new("main.c"),
        "first",
        &["-O2", "-g"],
    );
    // dwz shares entries between at least two files; a second copy of the program will do.
    cc(
        "cc",
        dir.path(),
        Path::new("main.c"),
        "second",
        &["-O2", "-g"],
    );
    run(Command::new("dwz").current_dir(dir.path()).args([
        "-m",
        "common.dwz",
        "-M",
        "common.dwz",
        "first",
        "second",
    ]));
    let symbol = function_symbol(&first, |name| name == "use_shape");

    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
    let answers = symbolize_every_byte(&mut symbolizer, &first, "", &symbol);
    let frames = find_inlined_call(&answers, "area", "use_shape")
        .expect("area should appear inlined into use_shape");
    let area = &frames[frames.len() - 2];
    assert_eq!(
        area.start_line,
        line_of(HEADER, "int area(struct shape *s)")
    );
    assert_eq!(Path::new(&*area.function_file), dir.path().join("common.h"));
    assert_eq!(
        frames.last().unwrap().start_line,
        line_of(MAIN, "int use_shape(")
    );
}
