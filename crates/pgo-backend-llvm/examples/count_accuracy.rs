//! How close the block counts inferred from a profile's IP samples are to exact ones.
//!
//! ```text
//! valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file=exact.cg BIN ARGS
//! pgo collect -o p.pb.gz -- BIN ARGS
//! cargo run --release -p pgo-backend-llvm --example count_accuracy -- p.pb.gz exact.cg [FUNC]
//! ```
//!
//! The exact counts are callgrind's per-instruction costs of the profiled binary (its `Ir` is
//! the number of times each instruction ran; a file of `HEXADDRESS COUNT` lines works too).
//! For every function with at least 0.5% of the samples it prints the block overlap (the sum
//! over blocks of the smaller of the two normalized counts: 1 means the same distribution)
//! and the mean error of branch probabilities, weighted by executions; `FUNC` (a substring
//! of the name) also prints that function's blocks (`PER_INSN=1`: and their instructions).
use pgo_backend_llvm::block_counts::ProfiledBinary;
use std::collections::HashMap;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(profile), Some(exact)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: count_accuracy PROFILE EXACT [FUNC]");
        std::process::exit(2);
    };
    let detail = args.get(3);
    let exact_text = std::fs::read_to_string(exact)?;
    let profile = pgo_profile::read_profile(std::path::Path::new(profile))?;
    let index = profile.sample_type.len() - 1;
    let ProfiledBinary {
        file,
        binary,
        per_function,
        ..
    } = ProfiledBinary::open(&profile, index)?;
    let exact = if exact_text.starts_with("# callgrind format") {
        callgrind_costs(&exact_text, &file)
    } else {
        exact_text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((
                    u64::from_str_radix(it.next()?, 16).ok()?,
                    it.next()?.parse().ok()?,
                ))
            })
            .collect()
    };
    let total: u64 = per_function.values().flatten().map(|s| s.1).sum();
    let (mut sum_w, mut sum_overlap, mut sum_branch) = (0.0, 0.0, 0.0);
    for (start, samples) in &per_function {
        let w: u64 = samples.iter().map(|s| s.1).sum();
        if (w as f64) < 0.005 * total as f64 {
            continue;
        }
        let f = binary.function_at(*start).unwrap().clone();
        let cfg = binary.cfg(&f)?;
        let instructions = binary.instructions(&f)?;
        let inferred = cfg.infer_counts(samples);
        let truth: Vec<f64> = cfg
            .blocks
            .iter()
            .map(|b| {
                instructions
                    .iter()
                    .filter(|(a, _)| *a >= b.start && *a < b.end)
                    .map(|(a, _)| exact.get(a).copied().unwrap_or(0.0))
                    .fold(0.0, f64::max)
            })
            .collect();
        let (ti, tt): (f64, f64) = (inferred.block.iter().sum(), truth.iter().sum());
        if tt == 0.0 || ti == 0.0 {
            continue;
        }
        let overlap: f64 = inferred
            .block
            .iter()
            .zip(&truth)
            .map(|(i, t)| (i / ti).min(t / tt))
            .sum();
        // Branch probabilities: blocks with two successors. The exact share of an edge is
        // its target's count only when the target has no other predecessor.
        let preds = cfg.predecessors();
        let (mut bw, mut be) = (0.0, 0.0);
        for (b, blk) in cfg.blocks.iter().enumerate() {
            if blk.successors.len() != 2 || truth[b] == 0.0 {
                continue;
            }
            let (s0, _) = blk.successors[0];
            if preds[s0].len() != 1 {
                continue;
            }
            let p_true = (truth[s0] / truth[b]).min(1.0);
            let e_inf: f64 = inferred
                .edges
                .iter()
                .filter(|((u, v), _)| *u == b && *v == s0)
                .map(|(_, c)| c)
                .sum();
            let p_inf = if inferred.block[b] > 0.0 {
                e_inf / inferred.block[b]
            } else {
                0.5
            };
            bw += truth[b];
            be += truth[b] * (p_true - p_inf).abs();
        }
        let berr = if bw > 0.0 { be / bw } else { 0.0 };
        println!(
            "{:>6.2}% overlap {:.3} branch-err {:.3} blocks {:>4}  {}",
            100.0 * w as f64 / total as f64,
            overlap,
            berr,
            cfg.blocks.len(),
            rustc_demangle::demangle(&f.name)
                .to_string()
                .chars()
                .take(90)
                .collect::<String>()
        );
        sum_w += w as f64;
        sum_overlap += w as f64 * overlap;
        sum_branch += w as f64 * berr;
        if detail.is_some_and(|d| {
            f.name.contains(d.as_str())
                || rustc_demangle::demangle(&f.name)
                    .to_string()
                    .contains(d.as_str())
        }) {
            for (b, blk) in cfg.blocks.iter().enumerate() {
                if truth[b] == 0.0 && inferred.block[b] == 0.0 && inferred.observed[b] == 0.0 {
                    continue;
                }
                let sw: u64 = samples
                    .iter()
                    .filter(|(a, _)| cfg.block_of(*a) == Some(b))
                    .map(|s| s.1)
                    .sum();
                println!(
                    "   #{b:<4} {:#x} n={:<3} samples {:>6} obs {:>9.2} inf {:>9.2} ({:.4})  exact {:>12} ({:.4})  succ {:?}",
                    blk.start,
                    blk.instructions,
                    sw,
                    inferred.observed[b],
                    inferred.block[b],
                    inferred.block[b] / ti,
                    truth[b],
                    truth[b] / tt,
                    blk.successors.iter().map(|s| s.0).collect::<Vec<_>>()
                );
                if std::env::var_os("PER_INSN").is_some() {
                    for (a, _) in instructions
                        .iter()
                        .filter(|(a, _)| *a >= blk.start && *a < blk.end)
                    {
                        let sw: u64 = samples.iter().filter(|(x, _)| x == a).map(|s| s.1).sum();
                        println!(
                            "        {a:#x} {sw:>10} exact {:>10}",
                            exact.get(a).copied().unwrap_or(0.0)
                        );
                    }
                }
            }
        }
    }
    println!(
        "weighted: overlap {:.4} branch-err {:.4} over {:.1}% of samples",
        sum_overlap / sum_w,
        sum_branch / sum_w,
        100.0 * sum_w / total as f64
    );
    Ok(())
}

/// Per-instruction self cost (the first event, `Ir`) of the object `binary` in a callgrind
/// output written with `--dump-instr=yes` (`positions: instr line`): names are compressed as
/// `ob=(N) name` on first use (in `ob=` or `cob=` lines), positions may be relative (`+N`,
/// `-N`) or repeated (`*`), and the line after `calls=` is the call's inclusive cost.
fn callgrind_costs(text: &str, binary: &str) -> HashMap<u64, f64> {
    let mut names: HashMap<String, String> = HashMap::new();
    let mut costs = HashMap::new();
    let (mut in_binary, mut after_calls) = (false, false);
    let mut addr = 0u64;
    let position = |tok: &str, cur: i64| -> i64 {
        if tok == "*" {
            cur
        } else if let Some(d) = tok.strip_prefix('+') {
            cur + parse_int(d)
        } else if let Some(d) = tok.strip_prefix('-') {
            cur - parse_int(d)
        } else {
            parse_int(tok)
        }
    };
    for l in text.lines() {
        for key in ["ob=", "cob="] {
            if let Some(rest) = l.strip_prefix(key) {
                let (id, name) = rest.split_once(' ').unwrap_or((rest, ""));
                if !name.is_empty() {
                    names.insert(id.to_string(), name.to_string());
                }
                if key == "ob=" {
                    in_binary = names.get(id).is_some_and(|n| n == binary);
                }
            }
        }
        if l.starts_with("calls=") {
            after_calls = true;
            continue;
        }
        if !l.starts_with(|c: char| c.is_ascii_digit() || "+-*".contains(c)) {
            continue;
        }
        // The address, then the line (not needed here).
        let mut it = l.split_whitespace();
        let (Some(a), Some(_line)) = (it.next(), it.next()) else {
            continue;
        };
        addr = position(a, addr as i64) as u64;
        if std::mem::take(&mut after_calls) {
            continue;
        }
        if let (true, Some(c)) = (in_binary, it.next().and_then(|c| c.parse::<f64>().ok())) {
            *costs.entry(addr).or_insert(0.0) += c;
        }
    }
    costs
}

fn parse_int(s: &str) -> i64 {
    match s.strip_prefix("0x") {
        Some(h) => i64::from_str_radix(h, 16).unwrap_or(0),
        None => s.parse().unwrap_or(0),
    }
}
