//! Execution counts for the sample profile, from the profiled binary's own code.
//!
//! An IP sample lands on an instruction with a probability proportional to the time spent
//! there, so raw sample counts per line say "time", and a line with ten instructions looks ten
//! times hotter than a one-instruction line executed as often. LLVM's sample loader wants
//! execution counts (AutoFDO derives them from LBR ranges, which these machines lack). We get
//! them from the binary instead: disassemble each sampled function (pgo-binary), spread the
//! samples over its basic blocks per instruction and repair the counts so flow is conserved
//! (min-cost flow, as LLVM's profi does), then give every instruction its block's count and
//! every source line (through DWARF, inline frames included) the largest count of its
//! instructions — AutoFDO's rule. Calls get the count of their block, split among targets by
//! what the stacks saw; a function's head samples are its entry count.
//!
//! Counts are per function, over all its callers. Where the sample profile has several
//! records of one function (a top-level record and records nested at call sites we decided to
//! inline), each gets the share of the function's samples the stacks put in that context.

use crate::sample_profile::Record;
use pgo_profile::{Profile, ProfileView};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::path::Path;

/// Counts are "samples per instruction"; scaled so rounding to integers keeps precision.
const SCALE: f64 = 100.0;

/// Per physical function (linkage name), a record of its execution counts by line, with its
/// inline frames as nested records.
#[derive(Debug, Clone, Default)]
pub struct BlockCounts {
    templates: FxHashMap<String, Record>,
    /// The binary the counts come from.
    pub binary: String,
    /// Functions disassembled.
    pub functions: usize,
    /// Share of the program's samples in those functions.
    pub covered_percent: f64,
}

impl BlockCounts {
    /// Counts for the samples of `profile` in its main binary (the mapping with the most
    /// samples), which must still be on disk with the build ID the profile recorded.
    pub fn from_profile(profile: &Profile, index: usize) -> Result<BlockCounts, String> {
        let view = ProfileView::new(profile);
        let mapping = view
            .main_mapping()
            .ok_or("the profile has no addresses in a mapped file")?;
        let file = view.str(mapping.filename);
        let build_id = view.str(mapping.build_id);
        let path = Path::new(file);
        let binary = pgo_binary::Binary::open(path).map_err(|e| format!("{file}: {e}"))?;
        if build_id.is_empty() || binary.build_id() != build_id {
            return Err(format!(
                "{file}: not the profiled binary any more (build ID {} instead of {build_id})",
                binary.build_id()
            ));
        }
        let mut symbolizer = pgo_symbolize::Symbolizer::new();
        let object = symbolizer
            .load(path, build_id)
            .map_err(|e| format!("{file}: {e}"))?;
        // The file as loaded for symbolization: its segments map sample addresses.
        let info = symbolizer.object(object).info();

        // Leaf samples by function, at file addresses.
        let mut per_function: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
        let (mut in_program, mut covered) = (0u64, 0u64);
        for s in &profile.sample {
            let Some(l) = view.user_leaf(s) else { continue };
            if l.mapping_id != mapping.id {
                continue;
            }
            let w = s.value.get(index).copied().unwrap_or(0).max(0) as u64;
            in_program += w;
            let Some(svma) =
                info.svma_for_runtime_address(l.address, mapping.memory_start, mapping.file_offset)
            else {
                continue;
            };
            if let Some(f) = binary.function_at(svma) {
                per_function.entry(f.start).or_default().push((svma, w));
            }
        }

        let mut counts = BlockCounts {
            binary: file.to_string(),
            ..BlockCounts::default()
        };
        for (start, samples) in &per_function {
            let Some(f) = binary.function_at(*start) else {
                continue;
            };
            let (Ok(cfg), Ok(instructions)) = (binary.cfg(f), binary.instructions(f)) else {
                continue;
            };
            if cfg.blocks.is_empty() {
                continue;
            }
            let inferred = cfg.infer_counts(samples);
            counts.functions += 1;
            covered += samples.iter().map(|(_, w)| w).sum::<u64>();
            let mut root_name: Option<String> = None;
            for (addr, _) in instructions {
                let Some(b) = cfg.block_of(addr) else {
                    continue;
                };
                let c = (inferred.block[b] * SCALE).round();
                if c < 1.0 {
                    continue;
                }
                let frames = symbolizer.symbolize_loaded(object, addr).frames;
                let Some(outer) = frames.last() else { continue };
                let name = outer.function_linkage_name.to_string();
                if name.is_empty() || name.contains([':', ' ', '\t']) {
                    continue;
                }
                let mut record = counts.templates.entry(name.clone()).or_default();
                let mut ok = true;
                for pair in frames.windows(2).rev() {
                    let (callee, caller) = (&pair[0], &pair[1]);
                    let Some(off) = offset(caller.line, caller.start_line) else {
                        ok = false;
                        break;
                    };
                    record = record
                        .callsites_mut()
                        .entry(off)
                        .or_default()
                        .entry(callee.function_linkage_name.to_string())
                        .or_default();
                }
                let inner = &frames[0];
                if let (true, Some(off)) = (ok, offset(inner.line, inner.start_line)) {
                    let line = record.body_mut().entry(off).or_default();
                    line.set_samples(line.samples().max(c as u64));
                }
                root_name.get_or_insert(name);
            }
            if let Some(name) = root_name
                && let Some(t) = counts.templates.get_mut(&name)
            {
                let entry: f64 = inferred.entry.iter().sum();
                t.set_head((entry * SCALE).round() as u64);
            }
        }
        counts.covered_percent = if in_program == 0 {
            0.0
        } else {
            100.0 * covered as f64 / in_program as f64
        };
        Ok(counts)
    }

    /// Replaces the time-based line counts of `top` with execution counts where the binary
    /// has them; returns how many functions got them.
    pub(crate) fn apply(&self, top: &mut BTreeMap<String, Record>) -> usize {
        // How a function's samples split between its records (top level, decided contexts).
        let mut phys_total: FxHashMap<String, u64> = FxHashMap::default();
        let mut target_total: FxHashMap<String, u64> = FxHashMap::default();
        for (name, r) in top.iter() {
            collect_phys(name, r, true, &mut phys_total);
            collect_targets(r, &mut target_total);
        }
        let calls = Calls {
            templates: &self.templates,
            target_total: &target_total,
        };
        let mut applied = 0;
        for (name, record) in top.iter_mut() {
            applied += self.fill_tree(name, record, true, &phys_total, &calls);
            record.recompute_totals();
        }
        applied
    }

    /// Fills `record` (a physical start of `name`: top level or a decided context) and the
    /// decided contexts below it.
    fn fill_tree(
        &self,
        name: &str,
        record: &mut Record,
        physical: bool,
        phys_total: &FxHashMap<String, u64>,
        calls: &Calls<'_>,
    ) -> usize {
        let mut applied = 0;
        if physical && let Some(template) = self.templates.get(name) {
            let total = phys_total.get(name).copied().unwrap_or(0);
            let share = if total == 0 {
                0.0
            } else {
                record.phys() as f64 / total as f64
            };
            fill(record, template, share, calls);
            record.set_head((template.head() as f64 * share).round() as u64);
            applied = 1;
        }
        for callees in record.callsites_mut().values_mut() {
            for (callee, nested) in callees.iter_mut() {
                applied += self.fill_tree(callee, nested, nested.is_decided(), phys_total, calls);
            }
        }
        applied
    }
}

fn collect_phys(name: &str, r: &Record, physical: bool, out: &mut FxHashMap<String, u64>) {
    if physical {
        *out.entry(name.to_string()).or_default() += r.phys();
    }
    for callees in r.callsites().values() {
        for (callee, nested) in callees {
            collect_phys(callee, nested, nested.is_decided(), out);
        }
    }
}

/// What call-target counts are made from.
struct Calls<'a> {
    templates: &'a FxHashMap<String, Record>,
    /// Per callee, the samples under all its call sites (what the stacks saw).
    target_total: &'a FxHashMap<String, u64>,
}

impl Calls<'_> {
    /// The calls from a site to `target`, whose stacks under this site weigh `weight`: the
    /// target's entry count, in the share of its callers' weight this site has (in the
    /// target's units; comparable between the targets of one site). `None` when the target's
    /// entry count is unknown.
    fn count(&self, target: &str, weight: u64) -> Option<u64> {
        let entries = self.templates.get(target)?.head();
        let total = *self.target_total.get(target)?;
        (entries > 0 && total > 0)
            .then(|| ((entries as f64 * weight as f64 / total as f64).round() as u64).max(1))
    }
}

fn collect_targets(r: &Record, out: &mut FxHashMap<String, u64>) {
    for line in r.body().values() {
        for (t, w) in line.targets() {
            *out.entry(t.clone()).or_default() += w;
        }
    }
    for callees in r.callsites().values() {
        for nested in callees.values() {
            collect_targets(nested, out);
        }
    }
}

/// Sets `record`'s line counts (and those of its inline-nested records) from `template`
/// scaled by `share`; lines the template does not have executed nothing. A call line's
/// targets share the line's count (its block's executions, so the number of calls) in
/// proportion to their calls from this site (entry counts split between call sites by the
/// stacks), or to the stacks' time when an entry count is unknown.
fn fill(record: &mut Record, template: &Record, share: f64, calls: &Calls<'_>) {
    let scaled = |n: u64| (n as f64 * share).round() as u64;
    zero(record);
    for (off, t) in template.body() {
        record
            .body_mut()
            .entry(*off)
            .or_default()
            .set_samples(scaled(t.samples()));
    }
    for line in record.body_mut().values_mut() {
        let count = line.samples();
        let targets = line.targets_mut();
        if count == 0 || targets.is_empty() {
            continue;
        }
        // The split between targets: by calls when every target's entry count is known (a
        // slow target is not a frequent one), else by the stacks' time.
        let by_calls: Option<Vec<u64>> = targets.iter().map(|(t, v)| calls.count(t, *v)).collect();
        let weights: Vec<u64> = by_calls.unwrap_or_else(|| targets.values().copied().collect());
        let sum: u64 = weights.iter().sum();
        if sum == 0 {
            continue;
        }
        for (v, w) in targets.values_mut().zip(weights) {
            *v = ((w as f64 * count as f64 / sum as f64).round() as u64).max(1);
        }
    }
    for (off, callees) in template.callsites() {
        for (callee, t) in callees {
            let nested = record
                .callsites_mut()
                .entry(*off)
                .or_default()
                .entry(callee.clone())
                .or_default();
            if !nested.is_decided() {
                fill(nested, t, share, calls);
            }
        }
    }
}

/// Clears the time-based line counts of `record` and of its inline-nested records (not of
/// decided contexts, which get their own counts).
fn zero(record: &mut Record) {
    for line in record.body_mut().values_mut() {
        line.set_samples(0);
    }
    for callees in record.callsites_mut().values_mut() {
        for nested in callees.values_mut() {
            if !nested.is_decided() {
                zero(nested);
            }
        }
    }
}

fn offset(line: u32, start: u32) -> Option<u32> {
    (line > 0 && start > 0 && line >= start).then(|| line - start)
}
