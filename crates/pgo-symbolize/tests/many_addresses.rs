//! Symbolizing many addresses of one object must be cheap: the object is loaded once, its
//! DWARF context is kept, and each answer is cached. This symbolizes 100,000 addresses spread
//! over all the code of a real Rust binary (its own functions and the standard library's),
//! then the same addresses again from the cache.

mod common;

use std::path::Path;
use std::time::Instant;

use common::*;
use object::{Object, ObjectSection};
use pgo_symbolize::{FrameSource, ObjectInfo, Symbolizer};

const PROGRAM: &str = r#"use std::collections::HashMap;

fn main() {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for word in std::env::args() {
        *counts.entry(word).or_default() += 1;
    }
    let mut sorted: Vec<_> = counts.into_iter().collect();
    sorted.sort();
    println!("{sorted:?}");
}
"#;

const ADDRESS_COUNT: u64 = 100_000;

#[test]
fn symbolizes_100k_addresses_of_one_object() {
    let dir = tempfile::tempdir().unwrap();
    write_source(dir.path(), "words.rs", PROGRAM);
    let binary = rustc(
        dir.path(),
        Path::new("words.rs"),
        "words",
        &["-C", "link-arg=-Wl,--build-id"],
    );
    let build_id = ObjectInfo::read(&binary).unwrap().build_id;
    let (text_start, text_size) = {
        let data = std::fs::read(&binary).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let text = file.section_by_name(".text").unwrap();
        (text.address(), text.size())
    };
    let step = (text_size / ADDRESS_COUNT).max(1);
    let addresses: Vec<u64> = (0..ADDRESS_COUNT)
        .map(|index| text_start + (index * step) % text_size)
        .collect();

    let mut symbolizer = Symbolizer::with_debug_dirs(Vec::new());
    let started = Instant::now();
    let mut with_dwarf = 0;
    for &svma in &addresses {
        let answer = symbolizer.symbolize(&binary, &build_id, svma).unwrap();
        if answer.source == FrameSource::Dwarf {
            with_dwarf += 1;
        }
    }
    let first_pass = started.elapsed();

    let started = Instant::now();
    for &svma in &addresses {
        symbolizer.symbolize(&binary, &build_id, svma).unwrap();
    }
    let cached_pass = started.elapsed();

    eprintln!(
        "{ADDRESS_COUNT} addresses over {text_size} bytes of code: first pass {first_pass:?} \
         ({with_dwarf} from DWARF), cached pass {cached_pass:?}"
    );
    // Nearly all code of a Rust binary, the standard library's included, has DWARF.
    assert!(
        with_dwarf * 10 > ADDRESS_COUNT * 9,
        "only {with_dwarf} addresses from DWARF"
    );
    assert!(
        cached_pass < first_pass,
        "the cache should be faster than DWARF lookups"
    );
}

#[test]
fn symbolizer_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Symbolizer>();
}
