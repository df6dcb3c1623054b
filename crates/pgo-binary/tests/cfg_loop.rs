//! CFG of a real compiled hot loop with a cold error path, and count inference on it.
mod common;

use common::*;
use pgo_binary::{Binary, Cfg, Terminator};

/// The blocks (function, cfg, block index) that call fprintf/abort: in `sum_checked` itself or
/// in a split-off `sum_checked.cold` reached through an exit jump.
fn error_blocks(bin: &Binary, cfg: &Cfg) -> Vec<(String, usize)> {
    let is_err = |n: &str| n.contains("fprintf") || n.starts_with("abort");
    let mut out = Vec::new();
    for (i, b) in cfg.blocks.iter().enumerate() {
        if b.calls
            .iter()
            .any(|c| !c.tail_call && callee_name(bin, c.kind).is_some_and(is_err))
        {
            out.push((cfg.function.name.clone(), i));
        }
    }
    if out.is_empty() {
        for f in bin
            .functions()
            .iter()
            .filter(|f| f.name.starts_with("sum_checked.cold"))
        {
            let cold = bin.cfg(f).unwrap();
            for (i, b) in cold.blocks.iter().enumerate() {
                if b.calls
                    .iter()
                    .any(|c| callee_name(bin, c.kind).is_some_and(is_err))
                {
                    out.push((f.name.clone(), i));
                }
            }
        }
    }
    out
}

#[test]
fn hot_loop_cold_path_cfg() {
    let dir = tempfile::tempdir().unwrap();
    for opt in ["-O1", "-O2"] {
        let path = cc(dir.path(), &format!("loop{opt}"), LOOP_C, opt, &[]);
        let bin = Binary::open(&path).unwrap();
        assert_eq!(bin.build_id().len(), 40, "sha1 build id");
        assert!(bin.functions().windows(2).all(|w| w[0].start < w[1].start));
        let f = bin.function_by_name("sum_checked").unwrap().clone();
        assert_eq!(bin.function_at(f.start + 1), Some(&f));
        assert_eq!(bin.function_at(f.start + f.size - 1), Some(&f));
        let cfg = bin.cfg(&f).unwrap();
        assert!(cfg.blocks.len() >= 4, "{opt}: {:#?}", cfg.blocks);
        assert_eq!(cfg.blocks[0].start, f.start);

        // Blocks tile the function (apart from padding), sorted, valid successor indices.
        for w in cfg.blocks.windows(2) {
            assert!(w[0].end <= w[1].start);
        }
        for (i, b) in cfg.blocks.iter().enumerate() {
            assert!(b.start < b.end && b.instructions > 0);
            assert!(b.successors.iter().all(|&(s, _)| s < cfg.blocks.len()));
            assert_eq!(cfg.block_of(b.start), Some(i));
            assert_eq!(cfg.block_of(b.end - 1), Some(i));
        }
        assert_eq!(cfg.block_of(f.start + f.size), None);

        // A loop back edge: a successor at or before the block itself.
        let back = cfg
            .blocks
            .iter()
            .enumerate()
            .any(|(i, b)| b.successors.iter().any(|&(s, _)| s <= i));
        assert!(back, "{opt}: no back edge in {:#?}", cfg.blocks);
        let loops = loop_blocks(&cfg);
        assert!(!loops.is_empty());

        // The error path is found, ends the block (abort is noreturn), and is not in the loop.
        let errs = error_blocks(&bin, &cfg);
        assert!(!errs.is_empty(), "{opt}: no fprintf/abort call found");
        for (fname, i) in &errs {
            if fname == "sum_checked" {
                assert!(!loops.contains(i), "{opt}: error block {i} inside loop");
                assert_eq!(cfg.blocks[*i].terminator, Terminator::NoReturnCall);
                assert!(cfg.blocks[*i].successors.is_empty());
            }
        }
        // It returns somewhere.
        assert!(
            cfg.blocks
                .iter()
                .any(|b| b.terminator == Terminator::Return)
        );
    }
}

#[test]
fn infer_counts_on_hot_loop() {
    let dir = tempfile::tempdir().unwrap();
    for opt in ["-O1", "-O2"] {
        let path = cc(dir.path(), &format!("loop{opt}"), LOOP_C, opt, &[]);
        let bin = Binary::open(&path).unwrap();
        let f = bin.function_by_name("sum_checked").unwrap().clone();
        let cfg = bin.cfg(&f).unwrap();
        let insns = bin.instructions(&f).unwrap();
        let loops = loop_blocks(&cfg);
        let errs: Vec<usize> = error_blocks(&bin, &cfg)
            .into_iter()
            .filter(|(n, _)| n == "sum_checked")
            .map(|(_, i)| i)
            .collect();

        // Every instruction of the loop blocks sampled with weight 100, nothing elsewhere.
        let samples: Vec<(u64, u64)> = insns
            .iter()
            .filter(|(a, _)| cfg.block_of(*a).is_some_and(|b| loops.contains(&b)))
            .map(|&(a, _)| (a, 100))
            .collect();
        let c = cfg.infer_counts(&samples);
        assert_conservation(&cfg, &c, 1e-6);
        for &b in &loops {
            assert!(
                (c.block[b] - 100.0).abs() < 1e-6,
                "{opt}: loop block {b}: {c:?}"
            );
        }
        for &e in &errs {
            assert!(c.block[e] < 1e-6, "{opt}: cold block {e} = {}", c.block[e]);
        }
        let back: f64 = c
            .edges
            .iter()
            .filter(|((u, v), _)| v <= u && loops.contains(u))
            .map(|e| e.1)
            .sum();
        assert!(back > 90.0, "{opt}: back edge count {back}");

        // Drop the samples of the smallest loop block: flow repair must keep it hot.
        let &hole = loops
            .iter()
            .min_by_key(|&&b| cfg.blocks[b].instructions)
            .unwrap();
        let partial: Vec<(u64, u64)> = samples
            .iter()
            .copied()
            .filter(|(a, _)| cfg.block_of(*a) != Some(hole))
            .collect();
        let c = cfg.infer_counts(&partial);
        assert_conservation(&cfg, &c, 1e-6);
        assert_eq!(c.observed[hole], 0.0);
        assert!(
            c.block[hole] > 90.0,
            "{opt}: unsampled hot block {hole}: {c:?}"
        );
        for &e in &errs {
            assert!(c.block[e] < 1e-6);
        }

        // Noisy weights (deterministic LCG): still conservative, cold stays cold.
        let mut x: u64 = 12345;
        let noisy: Vec<(u64, u64)> = samples
            .iter()
            .map(|&(a, _)| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (a, 70 + (x >> 33) % 60)
            })
            .collect();
        let c = cfg.infer_counts(&noisy);
        assert_conservation(&cfg, &c, 1e-6);
        for &b in &loops {
            assert!(c.block[b] > 60.0, "{opt}: noisy loop block {b}: {c:?}");
        }
        for &e in &errs {
            assert!(c.block[e] < 1e-6);
        }
    }
}
