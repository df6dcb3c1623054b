//! DWARF discriminators read from real clang-22 builds: with `-fdebug-info-for-profiling` the
//! blocks of one line and the inlined calls on one line are told apart; without it there is
//! nothing to read.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{cc, line_of, write_source};
use object::{Object, ObjectSymbol};
use pgo_symbolize::{Discriminators, Symbolizer};

const PROGRAM: &str = r#"#include <stdio.h>
static inline __attribute__((always_inline)) unsigned step(unsigned x) {
    unsigned r = x;
    for (unsigned i = 0; i < (x & 7); i++) r = r * 31 + i;
    return r;
}
__attribute__((noinline)) unsigned pick(unsigned c, unsigned a, unsigned b) {
    return c & 1 ? step(a) : step(b); // PICK
}
int main(void) {
    unsigned s = 0;
    for (unsigned i = 0; i < 1000; i++) s += pick(i, i, i * 3);
    printf("%u\n", s);
    return 0;
}
"#;

fn clang_available() -> bool {
    Command::new("clang-22").arg("--version").output().is_ok()
}

/// `[start, end)` of the symbol `name`.
fn symbol_range(binary: &Path, name: &str) -> (u64, u64) {
    let data = std::fs::read(binary).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let symbol = file
        .symbols()
        .find(|s| s.name() == Ok(name))
        .unwrap_or_else(|| panic!("no symbol {name} in {}", binary.display()));
    (symbol.address(), symbol.address() + symbol.size())
}

#[test]
fn blocks_and_inlined_calls_of_one_line_are_told_apart() {
    if !clang_available() {
        panic!("clang-22 is needed (cargo xtask test installs it)");
    }
    let dir = tempfile::tempdir().unwrap();
    let source = write_source(dir.path(), "pick.c", PROGRAM);
    let binary = cc(
        "clang-22",
        dir.path(),
        &source,
        "pick",
        &["-O2", "-g", "-fdebug-info-for-profiling"],
    );
    let (start, end) = symbol_range(&binary, "pick");
    let discriminators = Discriminators::load(&binary, &[(start, end)]).unwrap();
    assert!(discriminators.any());

    let pick_line = line_of(PROGRAM, "// PICK");
    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
    let object = symbolizer.load(&binary, "").unwrap();
    let mut line_discriminators = BTreeSet::new();
    let mut call_discriminators = BTreeSet::new();
    for address in start..end {
        let frames = symbolizer.symbolize_loaded(object, address).frames;
        let calls = discriminators.inlined_calls(address);
        // One inlined call per inline frame above `pick`.
        assert_eq!(calls.len() + 1, frames.len(), "at {address:#x}: {frames:?}");
        if let [inner] = &frames[..]
            && inner.line == pick_line
        {
            line_discriminators.insert(discriminators.line(address));
        }
        if let [_, outer] = &frames[..] {
            assert_eq!(outer.line, pick_line);
            call_discriminators.insert(calls[0]);
        }
    }
    // The two arms of the conditional are different blocks of the PICK line, and so are the
    // two inlined calls of `step` on it.
    assert!(
        line_discriminators.iter().any(|d| *d != 0),
        "{line_discriminators:?}"
    );
    assert!(
        call_discriminators.iter().filter(|d| **d != 0).count() >= 2,
        "{call_discriminators:?}"
    );

    // Addresses outside the ranges asked about are not read.
    let (main_start, _) = symbol_range(&binary, "main");
    assert_eq!(discriminators.line(main_start + 4), 0);
}

#[test]
fn a_build_without_discriminators_has_none() {
    if !clang_available() {
        panic!("clang-22 is needed (cargo xtask test installs it)");
    }
    let dir = tempfile::tempdir().unwrap();
    let source = write_source(dir.path(), "pick.c", PROGRAM);
    let binary = cc("clang-22", dir.path(), &source, "pick", &["-O2", "-g"]);
    let range = symbol_range(&binary, "pick");
    let discriminators = Discriminators::load(&binary, &[range]).unwrap();
    assert!(!discriminators.any());
    assert!(
        discriminators
            .inlined_calls(range.0 + 8)
            .iter()
            .all(|d| *d == 0)
    );
}
