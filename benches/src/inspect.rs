//! Inspection speed and memory against `go tool pprof`, in one run, interleaved.
//!
//! Generates a deterministic synthetic CPU profile (many distinct deep stacks over thousands of
//! functions, the shape of a large service's profile), then times `pgo top` against
//! `go tool pprof -top` and `pgo merge` against `go tool pprof -proto`, alternating the two
//! tools each repetition and reporting medians, their ratio and peak RSS.
//!
//! Usage: inspect-bench PGO_BINARY [--samples N] [--functions N] [--reps N] [--dir DIR] [--json]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use pgo_benches::{Rng, arg, median, time};

use pgo_profile::{FunctionInfo, LineInfo, MappingInfo, ProfileBuilder};

/// A profile of `samples` stacks over `functions` functions with four call sites each: stacks
/// 8–40 deep, call structure skewed so a few paths are hot, as real profiles are.
fn synthetic_profile(samples: usize, functions: usize, seed: u64) -> pgo_profile::Profile {
    let mut rng = Rng(seed | 1);
    let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
    b.set_period("cpu", "nanoseconds", 1_001_001);
    let mapping = b.mapping(MappingInfo {
        memory_start: 0x400000,
        memory_limit: 0x400000 + functions as u64 * 0x100,
        filename: "/usr/bin/bench-target",
        build_id: "0123456789abcdef",
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
        ..MappingInfo::default()
    });
    let names: Vec<String> = (0..functions)
        .map(|i| format!("bench::module{}::function_{i}", i % 97))
        .collect();
    let ids: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            b.function(FunctionInfo {
                name: n,
                system_name: n,
                filename: "src/lib.rs",
                start_line: 10 + i as i64 * 20,
            })
        })
        .collect();
    let mut stack = Vec::new();
    for _ in 0..samples {
        stack.clear();
        let depth = 8 + rng.below(33) as usize;
        // Skew: the outer frames come from a small set (hot paths), the inner ones spread out.
        let mut f = rng.below(16) as usize;
        for d in 0..depth {
            let spread = (16 << (d / 4)).min(functions as u64);
            f = (f * 31 + rng.below(spread) as usize) % functions;
            // Each function has a handful of call sites (and so of addresses), as real code does.
            let site = rng.below(4);
            let line = 10 + f as i64 * 20 + site as i64;
            let address = 0x400000 + f as u64 * 0x100 + site * 0x10;
            stack.push(b.location(
                Some(mapping),
                address,
                &[LineInfo {
                    function: ids[f],
                    line,
                    column: 0,
                }],
            ));
        }
        stack.reverse(); // leaf first
        b.add_sample(&stack, &[1, 1_001_001], &[])
            .expect("valid sample");
    }
    b.build()
}

fn bench_pair(
    label: &str,
    reps: usize,
    mut ours: impl FnMut() -> Command,
    mut theirs: impl FnMut() -> Command,
) -> serde_json::Value {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (mut rss_a, mut rss_b) = (0, 0);
    for _ in 0..reps {
        let t = time(&mut ours());
        a.push(t.seconds);
        rss_a = rss_a.max(t.max_rss_kib);
        let t = time(&mut theirs());
        b.push(t.seconds);
        rss_b = rss_b.max(t.max_rss_kib);
    }
    let (ma, mb) = (median(a), median(b));
    eprintln!(
        "{label:<28} pgo {ma:>7.3}s {:>6} MiB | go tool pprof {mb:>7.3}s {:>6} MiB | time ratio pgo/pprof {:.2}",
        rss_a / 1024,
        rss_b / 1024,
        ma / mb
    );
    serde_json::json!({
        "task": label, "pgo_seconds": ma, "pprof_seconds": mb, "ratio": ma / mb,
        "pgo_max_rss_mib": rss_a / 1024, "pprof_max_rss_mib": rss_b / 1024,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(pgo) = args.first().map(PathBuf::from) else {
        eprintln!(
            "usage: inspect-bench PGO_BINARY [--samples N] [--functions N] [--reps N] [--json]"
        );
        std::process::exit(2);
    };
    let samples = arg(&args, "--samples", 200_000usize);
    let functions = arg(&args, "--functions", 10_000usize);
    let reps = arg(&args, "--reps", 5usize);
    // --dir keeps the generated profiles (for profiling pgo itself on them).
    let keep: Option<PathBuf> = arg(&args, "--dir", String::new())
        .parse()
        .ok()
        .filter(|p: &PathBuf| !p.as_os_str().is_empty());
    let dir = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("pgo-inspect-bench-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).expect("temp dir");
    let a = dir.join("a.pb.gz");
    let b = dir.join("b.pb.gz");
    let t = Instant::now();
    pgo_profile::write_profile(&a, &synthetic_profile(samples, functions, 1)).expect("write a");
    pgo_profile::write_profile(&b, &synthetic_profile(samples, functions, 2)).expect("write b");
    eprintln!(
        "synthetic profiles: {samples} samples over {functions} functions each, {} bytes gzipped ({:.1}s to build)",
        std::fs::metadata(&a).map(|m| m.len()).unwrap_or(0),
        t.elapsed().as_secs_f64()
    );
    let go = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut c = Command::new("go");
        c.args(["tool", "pprof", "-symbolize=none"]);
        for a in args {
            c.arg(a);
        }
        c
    };
    let pgo_cmd = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut c = Command::new(&pgo);
        for a in args {
            c.arg(a);
        }
        c
    };
    let out = dir.join("m.pb.gz");
    let results = vec![
        bench_pair(
            "top (1 profile)",
            reps,
            || pgo_cmd(&[&"top", &"-n", &"0", &a]),
            || go(&[&"-top", &"-nodefraction=0", &a]),
        ),
        bench_pair(
            "merge (2 profiles)",
            reps,
            || pgo_cmd(&[&"merge", &a, &b, &"-o", &out]),
            || go(&[&"-proto", &"-output", &out, &a, &b]),
        ),
    ];
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if args.iter().any(|a| a == "--json") {
        println!(
            "{}",
            serde_json::json!({ "samples": samples, "functions": functions, "reps": reps, "results": results })
        );
    }
}
