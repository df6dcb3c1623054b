//! Stack frame sizes read from real prologues: what inlining a function into a recursive
//! one adds to every level of the recursion.
mod common;

use common::*;
use pgo_binary::Binary;

const FRAMES_RS: &str = r#"
use std::hint::black_box;

#[inline(never)]
#[no_mangle]
pub fn small(x: u64) -> u64 {
    let a = [x; 4];
    black_box(&a);
    a.iter().sum()
}

// 40 KB: rustc probes a frame this large page by page.
#[inline(never)]
#[no_mangle]
pub fn large(x: u64) -> u64 {
    let a = [x; 5000];
    black_box(&a);
    a.iter().sum()
}

// 2 KB: one `sub rsp` without probes (less the 128-byte red zone).
#[inline(never)]
#[no_mangle]
pub fn medium(x: u64) -> u64 {
    let a = [x; 256];
    black_box(&a);
    a.iter().sum()
}

fn main() {
    let n = std::env::args().count() as u64;
    println!("{}", small(n) + medium(n) + large(n));
}
"#;

#[test]
fn frame_sizes_of_rust_functions_cover_their_locals() {
    let dir = tempfile::tempdir().unwrap();
    let bin = Binary::open(rustc(dir.path(), "frames", FRAMES_RS)).unwrap();
    let frame = |name: &str| {
        let f = bin.function_by_name(name).unwrap().clone();
        bin.frame_size(&f).unwrap().unwrap()
    };
    let (small, medium, large) = (frame("small"), frame("medium"), frame("large"));
    // A leaf keeps 32 bytes in the red zone, below the stack pointer: no frame.
    assert!(small < 1024, "small: {small}");
    assert!((1024..4096).contains(&medium), "medium: {medium}");
    // Probed in pages: 36 KB of them before the loop ends, the rest after it.
    assert!((32_768..48_000).contains(&large), "large: {large}");
}
