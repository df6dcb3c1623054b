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

use crate::sample_profile::{LineKey, Record};
use pgo_profile::{Profile, ProfileView};
use rustc_hash::{FxHashMap, FxHashSet};
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
    /// Whether the binary has discriminators (blocks of one line told apart).
    pub discriminators: bool,
    /// The calls the binary's compiler inlined into the sampled functions.
    pub inlined: Vec<pgo_symbolize::InlinedCall>,
}

/// A profile's main binary (the mapping with the most samples), opened and checked to be the
/// profiled build, with the profile's leaf samples in it by function.
pub struct ProfiledBinary {
    /// The binary's path, as the profile names it.
    pub file: String,
    /// Its code.
    pub binary: pgo_binary::Binary,
    /// A symbolizer with the binary loaded as `object`.
    pub symbolizer: pgo_symbolize::Symbolizer,
    /// The binary in `symbolizer`.
    pub object: pgo_symbolize::ObjectId,
    /// Leaf samples by function start, at file addresses: `(SVMA, weight)`.
    pub per_function: BTreeMap<u64, Vec<(u64, u64)>>,
    /// Weight of every leaf sample in the binary's mapping, in a function or not.
    pub in_program: u64,
}

impl ProfiledBinary {
    /// The main binary of `profile` (sample value `index`), which must still be on disk with
    /// the build ID the profile recorded.
    pub fn open(profile: &Profile, index: usize) -> Result<ProfiledBinary, String> {
        let view = ProfileView::new(profile);
        let mapping = view
            .main_mapping()
            .ok_or("the profile has no addresses in a mapped file")?;
        let file = view.str(mapping.filename);
        let build_id = view.str(mapping.build_id);
        // The file on disk, or the copy perf's build-ID cache kept of the recorded build.
        let found = pgo_symbolize::binary_with_build_id(Path::new(file), build_id);
        let path = found.as_deref().unwrap_or(Path::new(file));
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
        let mut per_function: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
        let mut in_program = 0u64;
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
        Ok(ProfiledBinary {
            file: file.to_string(),
            binary,
            symbolizer,
            object,
            per_function,
            in_program,
        })
    }
}

impl BlockCounts {
    /// Counts for the samples of `profile` in its main binary (the mapping with the most
    /// samples), which must still be on disk with the build ID the profile recorded.
    pub fn from_profile(profile: &Profile, index: usize) -> Result<BlockCounts, String> {
        let ProfiledBinary {
            file,
            binary,
            mut symbolizer,
            object,
            per_function,
            in_program,
        } = ProfiledBinary::open(profile, index)?;
        let path = Path::new(&file);
        let mut covered = 0u64;

        let mut counts = BlockCounts {
            binary: file.clone(),
            ..BlockCounts::default()
        };
        // Discriminators tell apart the blocks of one line (a `match` on one line, derived
        // code, a loop header): present when the profiled binary was built with
        // `-fdebug-info-for-profiling` (as `pgo apply` builds are), read from the file that
        // has the DWARF.
        let ranges: Vec<(u64, u64)> = per_function
            .keys()
            .filter_map(|start| binary.function_at(*start))
            .map(|f| (f.start, f.start + f.size))
            .collect();
        let dwarf_path = symbolizer
            .object(object)
            .debug_file()
            .unwrap_or(path)
            .to_path_buf();
        let discriminators =
            pgo_symbolize::Discriminators::load(&dwarf_path, &ranges).unwrap_or_default();
        counts.discriminators = discriminators.any();
        counts.inlined = pgo_symbolize::inlined_calls(&dwarf_path, &ranges).unwrap_or_default();
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
            let calls: FxHashSet<u64> = cfg
                .blocks
                .iter()
                .flat_map(|b| b.calls.iter().filter(|c| !c.tail_call).map(|c| c.address))
                .collect();
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
                // One discriminator per inline frame above the physical function, when the
                // DWARF's inlined calls line up with the symbolizer's frames.
                let inlined = discriminators.inlined_calls(addr);
                let aligned = inlined.len() + 1 == frames.len();
                let mut record = counts.templates.entry(name.clone()).or_default();
                let mut ok = true;
                for (i, pair) in frames.windows(2).enumerate().rev() {
                    let (callee, caller) = (&pair[0], &pair[1]);
                    let Some(offset) = offset(caller.line, caller.start_line) else {
                        ok = false;
                        break;
                    };
                    let discriminator = if aligned {
                        base_discriminator(inlined[frames.len() - 2 - i])
                    } else {
                        0
                    };
                    record = record.nested_mut(
                        LineKey {
                            offset,
                            discriminator,
                        },
                        &callee.function_linkage_name,
                    );
                }
                let inner = &frames[0];
                if let (true, Some(offset)) = (ok, offset(inner.line, inner.start_line)) {
                    let raw = discriminators.line(addr);
                    let key = LineKey {
                        offset,
                        discriminator: base_discriminator(raw),
                    };
                    // Code the compiler duplicated (unrolled, vectorized) runs each copy a
                    // fraction of the line's executions: the factor scales it back.
                    let executions = c as u64 * u64::from(duplication_factor(raw));
                    let line = record.body_mut().entry(key).or_default();
                    line.set_samples(line.samples().max(executions));
                    if calls.contains(&addr) {
                        record.note_call(key, executions);
                    }
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
    relocate(record, template);
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
            let nested = record.nested_mut(*off, callee);
            if !nested.is_decided() {
                fill(nested, t, share, calls);
            }
        }
    }
}

/// Moves what the stacks put on a line (pprof lines have no discriminator) to the
/// discriminator the binary's code has there, which is where LLVM looks: call targets and
/// decided contexts to the discriminator of the line's calls, a nested record of a call the
/// profiled binary inlined to where the template has that callee on that line.
fn relocate(record: &mut Record, template: &Record) {
    let plain = |k: &&LineKey| k.discriminator == 0;
    let lines: Vec<LineKey> = record.body().keys().filter(plain).copied().collect();
    for key in lines {
        let Some(discriminator) = template.call_discriminator(key.offset).filter(|d| *d != 0)
        else {
            continue;
        };
        let Some(line) = record.body_mut().get_mut(&key) else {
            continue;
        };
        let targets = std::mem::take(line.targets_mut());
        let to = LineKey {
            offset: key.offset,
            discriminator,
        };
        let line = record.body_mut().entry(to).or_default();
        for (target, weight) in targets {
            *line.targets_mut().entry(target).or_default() += weight;
        }
    }
    let sites: Vec<LineKey> = record.callsites().keys().filter(plain).copied().collect();
    for key in sites {
        let callees: Vec<String> = record.callsites()[&key].keys().cloned().collect();
        for callee in callees {
            let inlined = template
                .callsites()
                .iter()
                .filter(|(k, c)| k.offset == key.offset && c.contains_key(&callee))
                .max_by_key(|(_, c)| c[&callee].body().values().map(|l| l.samples()).sum::<u64>())
                .map(|(k, _)| *k);
            let called = template
                .call_discriminator(key.offset)
                .map(|discriminator| LineKey {
                    offset: key.offset,
                    discriminator,
                });
            let Some(to) = inlined.or(called).filter(|to| *to != key) else {
                continue;
            };
            if record
                .callsites()
                .get(&to)
                .is_some_and(|c| c.contains_key(&callee))
            {
                continue;
            }
            let Some(nested) = record
                .callsites_mut()
                .get_mut(&key)
                .and_then(|c| c.remove(&callee))
            else {
                continue;
            };
            record
                .callsites_mut()
                .entry(to)
                .or_default()
                .insert(callee, nested);
        }
        if record.callsites().get(&key).is_some_and(|c| c.is_empty()) {
            record.callsites_mut().remove(&key);
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

/// The base discriminator LLVM's sample loader looks counts up by (it is not reading a
/// flow-sensitive profile), from the raw DWARF value: LLVM packs the base discriminator, a
/// duplication factor and a copy id into one number, each component in a prefix encoding
/// (`DILocation::getBaseDiscriminatorFromDiscriminator`).
pub(crate) fn base_discriminator(raw: u32) -> u32 {
    component(raw)
}

/// How many copies the compiler made of the code (unrolling, vectorization): each copy runs
/// that fraction of the line's executions; 1 when not encoded.
pub(crate) fn duplication_factor(raw: u32) -> u32 {
    let next = if raw & 1 == 0 {
        raw >> if raw & 0x40 != 0 { 14 } else { 7 }
    } else {
        raw >> 1
    };
    component(next).max(1)
}

/// One component of LLVM's discriminator encoding: empty when the low bit is set, else 5 bits
/// (or 12 when bit 6 is set) starting at bit 1.
fn component(u: u32) -> u32 {
    if u & 1 != 0 {
        return 0;
    }
    let u = u >> 1;
    if u & 0x20 != 0 {
        ((u >> 1) & 0xfe0) | (u & 0x1f)
    } else {
        u & 0x1f
    }
}

fn offset(line: u32, start: u32) -> Option<u32> {
    (line > 0 && start > 0 && line >= start).then(|| line - start)
}

#[cfg(test)]
mod tests {
    use super::{base_discriminator, duplication_factor};

    #[test]
    fn discriminators_decode_as_llvm_encodes_them() {
        // Base discriminators in 5 bits (AddDiscriminators numbers blocks 1, 2, 3, ...).
        assert_eq!(base_discriminator(0), 0);
        assert_eq!(base_discriminator(2), 1);
        assert_eq!(base_discriminator(4), 2);
        assert_eq!(base_discriminator(12), 6);
        // An empty base component (low bit set), then a duplication factor of 4.
        assert_eq!(base_discriminator(17), 0);
        assert_eq!(duplication_factor(17), 4);
        // A 12-bit base discriminator: 100 is encoded 0x1c8.
        assert_eq!(base_discriminator(0x1c8), 100);
        // Base 2 and a duplication factor of 7, as clang wrote it for an unrolled loop.
        assert_eq!(base_discriminator(1796), 2);
        assert_eq!(duplication_factor(1796), 7);
        assert_eq!(duplication_factor(0), 1);
        assert_eq!(duplication_factor(4), 1);
    }
}
