//! Helpers shared by the integration tests: compile real programs with `rustc` and `cc`, read
//! their symbol tables with `object` (independently of the crate under test), and find
//! expected line numbers in the source text.

#![allow(dead_code)] // Each test file uses a different subset.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use object::{Object, ObjectSymbol};
use pgo_symbolize::{MapsEntry, SourceFrame, Symbolized, Symbolizer};

/// Runs a command and returns its output, failing the test with its stderr if it fails.
pub fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Writes `source` to `dir/file_name` and returns the path.
pub fn write_source(dir: &Path, file_name: &str, source: &str) -> PathBuf {
    let path = dir.join(file_name);
    std::fs::write(&path, source).unwrap();
    path
}

/// Compiles `source_path` with rustc at `-C opt-level=2 -C debuginfo=2` plus `extra_args`,
/// from `dir` as working directory, into `dir/output_name`.
pub fn rustc(dir: &Path, source_path: &Path, output_name: &str, extra_args: &[&str]) -> PathBuf {
    let output = dir.join(output_name);
    run(Command::new("rustc")
        .current_dir(dir)
        .args(["--edition=2024", "-C", "opt-level=2", "-C", "debuginfo=2"])
        .args(extra_args)
        .arg(source_path)
        .arg("-o")
        .arg(&output));
    output
}

/// Compiles with the system C (or C++) compiler, from `dir`, into `dir/output_name`.
pub fn cc(
    compiler: &str,
    dir: &Path,
    source_path: &Path,
    output_name: &str,
    args: &[&str],
) -> PathBuf {
    let output = dir.join(output_name);
    run(Command::new(compiler)
        .current_dir(dir)
        .args(args)
        .arg(source_path)
        .arg("-o")
        .arg(&output));
    output
}

/// Copies `binary` to `output_name` next to it and runs `strip` (all symbols, all debug
/// information) on the copy.
pub fn stripped_copy(binary: &Path, output_name: &str) -> PathBuf {
    let copy = binary.with_file_name(output_name);
    std::fs::copy(binary, &copy).unwrap();
    run(Command::new("strip").arg(&copy));
    copy
}

/// The 1-based number of the one line of `source` that contains `needle`.
pub fn line_of(source: &str, needle: &str) -> u32 {
    let lines: Vec<usize> = source
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains(needle))
        .map(|(index, _)| index + 1)
        .collect();
    assert_eq!(lines.len(), 1, "{needle:?} should be on exactly one line");
    lines[0] as u32
}

/// The 1-based column where `needle` starts on its line.
pub fn column_of(source: &str, needle: &str) -> u32 {
    let line = source.lines().find(|line| line.contains(needle)).unwrap();
    line.find(needle).unwrap() as u32 + 1
}

/// A function symbol as `object` reads it from `.symtab` (or `.dynsym`).
#[derive(Debug, Clone)]
pub struct SymbolFact {
    pub name: String,
    pub address: u64,
    pub size: u64,
}

/// The one defined function symbol of `binary` whose name satisfies `matches`.
pub fn function_symbol(binary: &Path, matches: impl Fn(&str) -> bool) -> SymbolFact {
    let data = std::fs::read(binary).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let found: Vec<SymbolFact> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|symbol| symbol.kind() == object::SymbolKind::Text && symbol.is_definition())
        .filter(|symbol| symbol.name().is_ok_and(&matches))
        .map(|symbol| SymbolFact {
            name: symbol.name().unwrap().to_string(),
            address: symbol.address(),
            size: symbol.size(),
        })
        .collect();
    assert!(
        !found.is_empty(),
        "no matching symbol in {}",
        binary.display()
    );
    assert!(
        found
            .iter()
            .all(|symbol| symbol.address == found[0].address),
        "several matching symbols in {}: {found:?}",
        binary.display()
    );
    found[0].clone()
}

/// Symbolizes every byte address of `symbol`.
pub fn symbolize_every_byte(
    symbolizer: &mut Symbolizer,
    binary: &Path,
    build_id: &str,
    symbol: &SymbolFact,
) -> Vec<Symbolized> {
    (symbol.address..symbol.address + symbol.size)
        .map(|svma| symbolizer.symbolize(binary, build_id, svma).unwrap())
        .collect()
}

/// The first address answer whose frames end with `[.., inner, outer]` where `inner` and
/// `outer` are the named functions: an inline frame directly inside its caller.
pub fn find_inlined_call<'a>(
    answers: &'a [Symbolized],
    inner_name: &str,
    outer_name: &str,
) -> Option<&'a [SourceFrame]> {
    answers.iter().map(|answer| &*answer.frames).find(|frames| {
        frames.len() >= 2
            && *frames[frames.len() - 1].function_name == *outer_name
            && *frames[frames.len() - 2].function_name == *inner_name
    })
}

/// The build ID `readelf -n` prints for `binary`, or empty when it prints none.
pub fn readelf_build_id(binary: &Path) -> String {
    let output = run(Command::new("readelf").arg("-n").arg(binary));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.trim().strip_prefix("Build ID: "))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Runs a test program that prints the runtime address of one of its functions (as hex, on
/// the first line) and then its own `/proc/self/maps`. Returns the address and the maps entry
/// that contains it.
pub fn run_and_find_mapping(program: &Path) -> (u64, MapsEntry) {
    let output = run(&mut Command::new(program));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut lines = stdout.lines();
    let first = lines.next().unwrap().trim();
    let address = u64::from_str_radix(first.trim_start_matches("0x"), 16).unwrap();
    let entry = lines
        .filter_map(MapsEntry::parse)
        .find(|entry| entry.contains(address))
        .unwrap_or_else(|| panic!("no mapping contains {address:#x}:\n{stdout}"));
    (address, entry)
}
