//! `pgo analyze` on a large profile: 1,000,000 samples over 10,000 functions, with and without
//! `--binary`: wall time and peak memory (issue target: under 2 s and 1 GB without `--binary`).
//!
//! The profile is synthetic but points into a real binary (by default the `pgo` binary
//! itself): its functions are that binary's function symbols, its addresses lie inside them,
//! its mapping carries the binary's build ID, so `--binary` analysis does real work
//! (disassembly, call-instruction checks, block layout). Stacks are 8–40 deep, each call site
//! of a function calls one fixed function (as direct calls do), and every stack starts in one of
//! a few hot functions.
//!
//! Usage: analyze-bench PGO_BINARY [--samples N] [--functions N] [--reps N] [--dir DIR] [--json]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use pgo_benches::{Rng, arg, median, time};
use pgo_profile::{FunctionInfo, LineInfo, MappingInfo, ProfileBuilder};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(pgo) = args.first().map(PathBuf::from) else {
        eprintln!(
            "usage: analyze-bench PGO_BINARY [--samples N] [--functions N] [--reps N] [--json]"
        );
        std::process::exit(2);
    };
    let samples = arg(&args, "--samples", 1_000_000usize);
    let wanted = arg(&args, "--functions", 10_000usize);
    let reps = arg(&args, "--reps", 3usize);
    let target = pgo.clone();

    let binary = pgo_binary::Binary::open(&target).expect("the target binary opens");
    let info = pgo_symbolize::ObjectInfo::read(&target).expect("the target binary reads");
    let text = *info
        .load_segments
        .iter()
        .find(|s| s.executable)
        .expect("an executable segment");
    let mut functions: Vec<&pgo_binary::FunctionSym> =
        binary.functions().iter().filter(|f| f.size >= 16).collect();
    functions.truncate(wanted);
    let n = functions.len() as u64;

    let started = Instant::now();
    let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
    b.set_period("cpu", "nanoseconds", 1_001_001);
    // Mapped so that runtime addresses equal file addresses: start = the segment's address.
    let mapping = b.mapping(MappingInfo {
        memory_start: text.svma,
        memory_limit: text.svma + text.memory_size,
        file_offset: text.file_offset,
        filename: &target.to_string_lossy(),
        build_id: binary.build_id(),
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
        ..MappingInfo::default()
    });
    let ids: Vec<_> = functions
        .iter()
        .enumerate()
        .map(|(i, f)| {
            b.function(FunctionInfo {
                name: &f.name,
                system_name: &f.name,
                filename: "src/lib.rs",
                start_line: 10 + i as i64 * 50,
            })
        })
        .collect();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut stack = Vec::new();
    for _ in 0..samples {
        stack.clear();
        let depth = 8 + rng.below(33) as usize;
        // Real code calls a fixed function from each call site: the callee of site `k` of `f`
        // is a function of (f, k) alone. Deeper frames spread over more functions.
        let mut f = rng.below(16) as usize;
        let mut site = rng.below(4);
        for d in 0..depth {
            if d > 0 {
                let h = (f as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    ^ site.wrapping_mul(0xbf58_476d_1ce4_e5b9);
                f = ((h >> 7) % n) as usize;
                site = rng.below(4);
            }
            let func = functions[f];
            let address = func.start + (site * func.size / 4).min(func.size - 1);
            let line = LineInfo {
                function: ids[f],
                line: 10 + f as i64 * 50 + site as i64,
                column: 0,
            };
            stack.push(b.location(Some(mapping), address, &[line]));
        }
        stack.reverse();
        b.add_sample(&stack, &[1, 1_001_001], &[])
            .expect("valid sample");
    }
    // --dir keeps the generated profile (for profiling pgo itself on it).
    let keep: Option<PathBuf> = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let dir = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("pgo-analyze-bench-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).expect("temp dir");
    let profile = dir.join("big.pb.gz");
    pgo_profile::write_profile(&profile, &b.build()).expect("write the profile");
    eprintln!(
        "synthetic profile: {samples} samples over {n} functions of {}, {} bytes gzipped ({:.1}s to build)",
        target.display(),
        std::fs::metadata(&profile).map(|m| m.len()).unwrap_or(0),
        started.elapsed().as_secs_f64()
    );

    let out = dir.join("d.json");
    let mut rows = Vec::new();
    for with_binary in [false, true] {
        let (mut secs, mut rss) = (Vec::new(), 0);
        for _ in 0..reps {
            let mut c = Command::new(&pgo);
            c.arg("analyze").arg(&profile).arg("-o").arg(&out);
            if with_binary {
                c.arg("--binary").arg(&target);
            }
            let t = time(&mut c);
            secs.push(t.seconds);
            rss = rss.max(t.max_rss_kib);
        }
        let label = if with_binary {
            "pgo analyze --binary"
        } else {
            "pgo analyze"
        };
        let m = median(secs);
        eprintln!("{label:<24} {m:>7.2}s  peak RSS {:>5} MiB", rss / 1024);
        rows.push(serde_json::json!({ "task": label, "seconds": m, "max_rss_mib": rss / 1024 }));
    }
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if args.iter().any(|a| a == "--json") {
        println!(
            "{}",
            serde_json::json!({ "samples": samples, "functions": n, "results": rows })
        );
    }
}
