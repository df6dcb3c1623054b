//! Throughput: the same real sample unwound 100k times from warm caches. Prints timings,
//! asserts only correctness (timings depend on the machine and the build profile).

mod common;

use std::hint::black_box;
use std::time::Instant;

use pgo_unwind::Unwinder;

const ITERATIONS: u32 = 100_000;

#[test]
fn unwind_throughput() {
    let sample = common::sample_at_depth(black_box(10));
    let pid = std::process::id();
    let mut unwinder = Unwinder::new();

    let t = Instant::now();
    unwinder.load_proc_maps(pid).unwrap();
    let cold_load = t.elapsed();
    let t = Instant::now();
    unwinder.load_proc_maps(pid).unwrap();
    let warm_load = t.elapsed();

    let t = Instant::now();
    let first = unwinder.unwind(pid, sample.regs, &sample.stack);
    let cold_unwind = t.elapsed();
    assert!(first.complete, "{:?}", first.error);

    // 10 batches: the mean over all, and the best batch (less disturbed by other load).
    let mut frames = Vec::new();
    let mut best_batch = std::time::Duration::MAX;
    let t = Instant::now();
    for _ in 0..10 {
        let batch = Instant::now();
        for _ in 0..ITERATIONS / 10 {
            let (complete, _) = unwinder.unwind_into(
                pid,
                black_box(sample.regs),
                black_box(&sample.stack),
                &mut frames,
            );
            assert!(complete);
        }
        best_batch = best_batch.min(batch.elapsed() * 10);
    }
    let reuse = t.elapsed();
    assert_eq!(frames, first.frames);

    let t = Instant::now();
    for _ in 0..ITERATIONS {
        let result = unwinder.unwind(pid, black_box(sample.regs), black_box(&sample.stack));
        black_box(result);
    }
    let alloc = t.elapsed();

    let per = |d: std::time::Duration| d.as_nanos() as f64 / f64::from(ITERATIONS);
    eprintln!(
        "{} frames per sample; load_proc_maps cold {:?}, warm {:?}; first unwind {:?}",
        first.frames.len(),
        cold_load,
        warm_load,
        cold_unwind
    );
    eprintln!(
        "unwind_into: {:.0} ns/unwind mean, {:.0} best batch ({:.1} ns/frame); unwind: {:.0} ns/unwind",
        per(reuse),
        per(best_batch),
        per(best_batch) / first.frames.len() as f64,
        per(alloc)
    );
}
