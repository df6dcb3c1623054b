//! An LLVM sample profile, text format, from a pprof profile with symbolized call stacks.
//!
//! The format (LLVM's `SampleProfReader` text reader; `llvm-profdata show --sample` reads it):
//!
//! ```text
//! linkage_name:total_samples:head_samples
//!  line_offset[.discriminator]: samples [callee:count ...]
//!  line_offset[.discriminator]: inlined_callee:total_samples
//!   line_offset: samples ...            (one more space per level of inlining)
//! ```
//!
//! Line offsets count from the function's start line (DW_AT_decl_line, pprof's
//! `Function.start_line`), so a profile survives edits above a function. Each sample is placed
//! by its whole stack: the leaf location's inline frames give the nested records its sample
//! lands in; every caller location adds a call target at its call line (what LLVM's indirect
//! call promotion reads) — or, when that call is one we decided to inline, the callee's samples
//! from this stack are nested under the call site instead (a context-sensitive record).
//!
//! Counts are samples (time), not executions: a caller of a callee gets the callee's samples
//! under that call as the call target's count, the same measure for every target of a site.

use crate::names::{NameMap, names_in};
use pgo_profile::proto::{Function, Location, Profile};
use pgo_profile::{KERNEL_ADDRESS_START, ProfileView};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeMap;
use std::fmt::Write;

/// A call to inline in the new build: (caller linkage name, call line offset, callee linkage
/// name). Its samples from stacks through this call are nested under the call site.
pub type InlineContext = (String, u32, String);

#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Calls whose callee samples are nested at the call site (our inline decisions that the
    /// profiled binary did not already inline).
    pub inline_contexts: FxHashSet<InlineContext>,
    /// Which sample value to count (index into `sample_type`); `None`: the profile's default.
    pub sample_index: Option<usize>,
    /// Execution counts from the profiled binary's code ([`crate::block_counts`]): when set,
    /// line counts are executions (block counts inferred from IP samples), not time.
    pub block_counts: Option<crate::block_counts::BlockCounts>,
    /// The new build's names for the profile's functions (see [`crate::names`]).
    pub rename: Option<crate::names::NameMap>,
}

/// What went into a sample profile: figures a person can check.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    /// Top-level function records.
    pub functions: usize,
    /// Nested records (inlined call sites), at any depth.
    pub inlined_records: usize,
    /// Nested records that come from our decisions, not from the profiled binary's inlining.
    pub decided_contexts: usize,
    /// Samples placed in the profile.
    pub samples: u64,
    /// Samples that could not be placed (unsymbolized leaf, no linkage name, line before the
    /// function's start line).
    pub dropped_samples: u64,
    /// Functions whose line counts are execution counts from the binary's blocks.
    pub counted_functions: usize,
    /// Placed samples whose innermost frame has no source line (a binary without debug info):
    /// they count toward their function's total only.
    pub lineless_samples: u64,
}

impl Summary {
    pub fn placed_percent(&self) -> f64 {
        let all = self.samples + self.dropped_samples;
        if all == 0 {
            0.0
        } else {
            100.0 * self.samples as f64 / all as f64
        }
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Record {
    total: u64,
    head: u64,
    /// Samples whose innermost physical frame starts at this record (the function's own code
    /// in this context, not what it inlined by decision): each context's share of a
    /// function's execution counts.
    phys: u64,
    /// line (offset, discriminator) → samples at that line and the call targets of the line.
    body: BTreeMap<LineKey, Line>,
    /// call line (offset, discriminator) → callee → nested record.
    callsites: BTreeMap<LineKey, BTreeMap<String, Record>>,
    /// True when this nested record exists because of an inline decision.
    decided: bool,
    /// For records of a binary's code ([`crate::block_counts`]): per line offset, the
    /// discriminator of the call instructions there (the busiest, when there are several),
    /// where the call targets and decided contexts of that line belong.
    call_discriminators: BTreeMap<u32, (u32, u64)>,
}

/// Where a count belongs in a function: the line's offset from the function's start line and
/// the (base) discriminator that tells apart the blocks of one line, 0 when there is none or
/// the profile cannot say (pprof lines have no discriminators; only the binary's DWARF does).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct LineKey {
    pub(crate) offset: u32,
    pub(crate) discriminator: u32,
}

impl LineKey {
    pub(crate) fn line(offset: u32) -> LineKey {
        LineKey {
            offset,
            discriminator: 0,
        }
    }
}

impl std::fmt::Display for LineKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.discriminator {
            0 => write!(f, "{}", self.offset),
            d => write!(f, "{}.{d}", self.offset),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Line {
    samples: u64,
    targets: BTreeMap<String, u64>,
}

/// One source frame: linkage name and line offset from the function's start line.
#[derive(Clone)]
struct Step {
    name: String,
    offset: Option<u32>,
}

/// Builds the text of an LLVM sample profile from `profile`.
pub fn write(profile: &Profile, options: &Options) -> Result<(String, Summary), String> {
    let view = ProfileView::new(profile);
    let index = match options.sample_index {
        Some(i) => i,
        None => sample_count_index(&view)?,
    };
    let mut top: BTreeMap<String, Record> = BTreeMap::new();
    let mut summary = Summary::default();
    let location_steps: FxHashMap<u64, Option<Vec<Step>>> = profile
        .location
        .iter()
        .map(|l| (l.id, steps_of(&view, l)))
        .collect();

    for sample in &profile.sample {
        let weight = sample.value.get(index).copied().unwrap_or(0);
        if weight <= 0 {
            continue;
        }
        let weight = weight as u64;
        // Physical frames root first, each as its inline chain outermost first.
        let mut chains: Vec<&[Step]> = Vec::with_capacity(sample.location_id.len());
        // Kernel frames (a sample taken in a system call or an interrupt) are not code the
        // build compiles: the sample counts where the program was, its innermost user frame.
        let user: Vec<&u64> = sample
            .location_id
            .iter()
            .filter(|id| {
                view.location(**id)
                    .is_none_or(|l| l.address < KERNEL_ADDRESS_START)
            })
            .collect();
        for id in user.iter().rev() {
            match location_steps.get(*id) {
                Some(Some(s)) => chains.push(s.as_slice()),
                // An unsymbolized frame breaks the stack: only what lies below it can be
                // placed, starting afresh at top level.
                _ => chains.clear(),
            }
        }
        let leaf_ok = user
            .first()
            .and_then(|id| location_steps.get(*id))
            .is_some_and(Option::is_some);
        if chains.is_empty() || !leaf_ok {
            summary.dropped_samples += weight;
            continue;
        }
        place(&mut top, &chains, weight, options);
        summary.samples += weight;
        if chains
            .last()
            .and_then(|c| c.last())
            .is_some_and(|s| s.offset.is_none())
        {
            summary.lineless_samples += weight;
        }
    }

    if let Some(counts) = &options.block_counts {
        summary.counted_functions = counts.apply(&mut top);
    }

    let mut text = String::new();
    // The new build's names (several for a generic function whose instance the profiled
    // build's name does not say): a record for each.
    let rename = options.rename.as_ref();
    for (name, record) in &top {
        if record.total == 0 {
            continue;
        }
        for name in names_in(rename, name) {
            summary.functions += 1;
            let _ = writeln!(text, "{name}:{}:{}", record.total, record.head);
            emit_body(&mut text, record, 1, &mut summary, rename);
        }
    }
    Ok((text, summary))
}

/// The index of the `samples/count` value, else the last (pprof's default).
pub(crate) fn sample_count_index(view: &ProfileView<'_>) -> Result<usize, String> {
    if view.profile.sample_type.is_empty() {
        return Err("the profile has no sample types".into());
    }
    Ok(view
        .sample_index(Some("samples/count"))
        .or_else(|_| view.sample_index(None))
        .unwrap_or(0))
}

/// A location's inline chain, outermost (the physical function) first; `None` when it has no
/// symbolized function with a linkage name.
fn steps_of(view: &ProfileView<'_>, loc: &Location) -> Option<Vec<Step>> {
    if loc.line.is_empty() {
        return None;
    }
    let mut steps = Vec::with_capacity(loc.line.len());
    for line in loc.line.iter().rev() {
        let f: &Function = view.function(line.function_id)?;
        let mut name = view.str(f.system_name);
        if name.is_empty() {
            name = view.str(f.name);
        }
        // A name LLVM's text reader would split wrongly (a demangled path), or none: the
        // frame cannot be matched to a function of the new build.
        if name.is_empty() || name.contains([':', ' ', '\t']) {
            return None;
        }
        let offset = if f.start_line > 0 && line.line >= f.start_line {
            u32::try_from(line.line - f.start_line).ok()
        } else {
            None
        };
        steps.push(Step {
            name: name.to_string(),
            offset,
        });
    }
    Some(steps)
}

/// Places one sample: `chains` are the physical frames, root first.
fn place(top: &mut BTreeMap<String, Record>, chains: &[&[Step]], weight: u64, options: &Options) {
    // Walk down the stack, keeping the record the next physical frame's samples go into:
    // top level, unless the previous frame's call into it is one we decided to inline.
    let mut nested_in: Option<Vec<(u32, String)>> = None;
    let mut top_name: Option<String> = None;
    let mut credited: FxHashSet<String> = FxHashSet::default();
    let last = chains.len() - 1;
    for (depth, chain) in chains.iter().enumerate() {
        // Path from the top-level record to this frame's innermost inline record.
        let mut path: Vec<(u32, String)> = match nested_in.take() {
            Some(p) => p,
            None => {
                top_name = Some(chain[0].name.clone());
                Vec::new()
            }
        };
        let base = path.len();
        let root = top_name.as_ref().expect("set on the first frame");
        let mut ok = true;
        for pair in chain.windows(2) {
            match pair[0].offset {
                Some(off) => path.push((off, pair[1].name.clone())),
                None => {
                    ok = false;
                    break;
                }
            }
        }
        let innermost = chain.last().expect("chains are never empty");
        if depth == last {
            // The leaf: the sample's own line, and every enclosing record's total.
            let record = top.entry(root.clone()).or_default();
            if !credited.contains(root) {
                record.total += weight;
            }
            let mut r = record;
            if base == 0 {
                r.phys += weight;
            }
            for (i, (off, callee)) in path.iter().enumerate() {
                r = r.nested_mut(LineKey::line(*off), callee);
                r.total += weight;
                if i + 1 == base {
                    r.phys += weight;
                }
            }
            if ok && let Some(off) = innermost.offset {
                r.body.entry(LineKey::line(off)).or_default().samples += weight;
            }
            return;
        }
        let callee = &chains[depth + 1][0].name;
        let (Some(off), true) = (innermost.offset, ok) else {
            // The call line is unknown: the callee starts afresh at top level.
            continue;
        };
        let context = (innermost.name.clone(), off, callee.clone());
        if options.inline_contexts.contains(&context) {
            path.push((off, callee.clone()));
            record_at(top, root, &path).decided = true;
            nested_in = Some(path);
        } else {
            // The call's samples count toward the caller's total (once per sample, however
            // often it recurs), so a function that mostly calls is not mistaken for a cold
            // one: LLVM skips records whose total is zero.
            if credited.insert(root.clone()) {
                top.entry(root.clone()).or_default().total += weight;
            }
            let r = record_at(top, root, &path);
            *r.body
                .entry(LineKey::line(off))
                .or_default()
                .targets
                .entry(callee.clone())
                .or_default() += weight;
            top.entry(callee.clone()).or_default().head += weight;
        }
    }
}

/// The record at `path` (call line offset, callee) below the top-level record `root`,
/// created as needed.
fn record_at<'t>(
    top: &'t mut BTreeMap<String, Record>,
    root: &str,
    path: &[(u32, String)],
) -> &'t mut Record {
    let mut r = top.entry(root.to_string()).or_default();
    for (off, callee) in path {
        r = r.nested_mut(LineKey::line(*off), callee);
    }
    r
}

fn emit_body(
    text: &mut String,
    record: &Record,
    depth: usize,
    summary: &mut Summary,
    rename: Option<&NameMap>,
) {
    let indent = " ".repeat(depth);
    // Lines and call sites interleaved by offset, as LLVM writes them.
    let mut offsets: Vec<LineKey> = record
        .body
        .keys()
        .chain(record.callsites.keys())
        .copied()
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    for off in offsets {
        if let Some(line) = record.body.get(&off) {
            let _ = write!(text, "{indent}{off}: {}", line.samples);
            for (target, count) in &line.targets {
                // A call target is one function: the first instance.
                if let Some(target) = names_in(rename, target).first() {
                    let _ = write!(text, " {target}:{count}");
                }
            }
            text.push('\n');
        }
        if let Some(callees) = record.callsites.get(&off) {
            for (callee, nested) in callees {
                if nested.total == 0 {
                    continue;
                }
                for callee in names_in(rename, callee) {
                    summary.inlined_records += 1;
                    if nested.decided {
                        summary.decided_contexts += 1;
                    }
                    let _ = writeln!(text, "{indent}{off}: {callee}:{}", nested.total);
                    emit_body(text, nested, depth + 1, summary, rename);
                }
            }
        }
    }
}

impl Record {
    pub(crate) fn body_mut(&mut self) -> &mut BTreeMap<LineKey, Line> {
        &mut self.body
    }
    pub(crate) fn body(&self) -> &BTreeMap<LineKey, Line> {
        &self.body
    }
    pub(crate) fn callsites(&self) -> &BTreeMap<LineKey, BTreeMap<String, Record>> {
        &self.callsites
    }
    pub(crate) fn callsites_mut(&mut self) -> &mut BTreeMap<LineKey, BTreeMap<String, Record>> {
        &mut self.callsites
    }
    pub(crate) fn phys(&self) -> u64 {
        self.phys
    }
    /// The record of `callee` inlined at call site `key`, created as needed.
    pub(crate) fn nested_mut(&mut self, key: LineKey, callee: &str) -> &mut Record {
        self.callsites
            .entry(key)
            .or_default()
            .entry(callee.to_string())
            .or_default()
    }
    /// Notes a call instruction at `key` that runs `executions` times.
    pub(crate) fn note_call(&mut self, key: LineKey, executions: u64) {
        let entry = self
            .call_discriminators
            .entry(key.offset)
            .or_insert((key.discriminator, executions));
        if executions > entry.1 {
            *entry = (key.discriminator, executions);
        }
    }
    /// The discriminator of the calls at line `offset`, if the binary had any there.
    pub(crate) fn call_discriminator(&self, offset: u32) -> Option<u32> {
        self.call_discriminators.get(&offset).map(|c| c.0)
    }
    pub(crate) fn is_decided(&self) -> bool {
        self.decided
    }
    pub(crate) fn set_head(&mut self, head: u64) {
        self.head = head;
    }
    pub(crate) fn head(&self) -> u64 {
        self.head
    }
    /// Totals from the counts: a record's lines plus its nested records.
    pub(crate) fn recompute_totals(&mut self) -> u64 {
        let mut total: u64 = self.body.values().map(|l| l.samples).sum();
        for callees in self.callsites.values_mut() {
            for nested in callees.values_mut() {
                total += nested.recompute_totals();
            }
        }
        self.total = total;
        total
    }
}

impl Line {
    pub(crate) fn samples(&self) -> u64 {
        self.samples
    }
    pub(crate) fn set_samples(&mut self, samples: u64) {
        self.samples = samples;
    }
    pub(crate) fn targets_mut(&mut self) -> &mut BTreeMap<String, u64> {
        &mut self.targets
    }
    pub(crate) fn targets(&self) -> &BTreeMap<String, u64> {
        &self.targets
    }
}
