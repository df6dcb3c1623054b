//! Decisions from a call graph: which call sites to inline, which indirect calls to
//! devirtualize and to what, and how to lay out functions and basic blocks. The result is a
//! versioned, deterministic JSON document ([`schema::Decisions`]) that people read
//! (`pgo explain`) and backends consume.
//!
//! Each decision carries its weight, its share of the profile and a one-line reason. Facts about
//! the profiled binary (function sizes, whether a call instruction is indirect, basic blocks)
//! come through the [`BinaryFacts`] trait ([`elf::ElfFacts`] answers it from an ELF file with
//! `pgo-binary`); without them the decisions that need them are left out and `limitations`
//! says so. Layout algorithms (C3, ext-TSP) are `pgo-layout`'s.
//!
//! It does not know compiler flags or file formats of toolchains: that is `pgo-backend`.

pub mod schema;

use petgraph::graph::{EdgeIndex, NodeIndex};
use petgraph::visit::EdgeRef;
use pgo_graph::{CallGraph, MappedFile};
use rustc_hash::{FxHashMap, FxHashSet};

pub use schema::{
    BlockLayout, CallSiteRef, Coverage, Decisions, DevirtualizeDecision, FunctionRef,
    InlineDecision, Layout, ProfileSummary, SCHEMA_NAME, SCHEMA_VERSION, Settings, Target,
};

/// What a call instruction is, as the binary says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Direct,
    Indirect,
}

/// Facts about the profiled binary that decisions use. Implemented over an ELF file by the
/// caller (`pgo analyze --binary`).
pub trait BinaryFacts {
    /// Whether the function (by linkage name, in the profile's `binary`) belongs to this binary.
    fn contains(&self, binary: &str) -> bool;
    /// Size in bytes of the function's code.
    fn function_size(&self, linkage_name: &str) -> Option<u64>;
    /// The share (0 to 1) of the function's sampled addresses (`samples`, as for
    /// [`BinaryFacts::block_layout`]) in blocks on a loop of its code: how much of its own time
    /// it spends iterating. Without samples in it, 1 when it has a loop at all, else 0.
    fn loop_share(&self, linkage_name: &str, samples: &[(u64, &MappedFile, i64)]) -> Option<f64>;
    /// Bytes of the function's blocks that the samples run (inferred counts above zero): the
    /// part of it that matters where it is inlined. `None` without samples in it.
    fn sampled_size(&self, linkage_name: &str, samples: &[(u64, &MappedFile, i64)]) -> Option<u64>;
    /// Bytes of stack the function reserves on entry: what inlining it into a recursive
    /// function adds to every level of the recursion. `None` when unknown.
    fn frame_size(&self, linkage_name: &str) -> Option<u64>;
    /// The call instruction that returns to runtime `address` in `mapping` (a return address
    /// from the profile).
    fn call_at(&self, address: u64, mapping: &MappedFile) -> Option<CallKind>;
    /// The lines of the function's own source (file, first and last line its code has in the
    /// line table, counting the lines of calls inlined into it): where its call sites can be.
    fn source_span(&self, _linkage_name: &str) -> Option<(String, u32, u32)> {
        None
    }
    /// A basic-block order for a function, from the sampled addresses in its code: block start
    /// addresses (of the file), how many of them are hot, and why.
    fn block_layout(
        &self,
        linkage_name: &str,
        samples: &[(u64, &MappedFile, i64)],
    ) -> Option<(Vec<u64>, usize, String)>;
}

fn function_ref(g: &CallGraph, n: NodeIndex) -> FunctionRef {
    let f = &g.graph[n];
    FunctionRef {
        name: f.name.clone(),
        linkage_name: f.linkage_name.clone(),
        binary: f.binary.clone(),
        file: f.file.clone(),
        start_line: f.start_line,
    }
}

/// Whether a compiler can act on a call from `caller` to `callee`: both in one binary (and in
/// the profiled binary, when one is given). A call into a shared library is not the build's.
fn same_build(
    g: &CallGraph,
    binary: Option<&dyn BinaryFacts>,
    caller: NodeIndex,
    callee: NodeIndex,
) -> bool {
    let (a, b) = (&g.graph[caller].binary, &g.graph[callee].binary);
    a == b && binary.is_none_or(|facts| facts.contains(a))
}

/// A callee that spends at least this share of its own samples in loop blocks is one whose
/// time goes to iterating: inlining it saves one call per loop, not per iteration.
const LOOPING_SHARE: f64 = 0.5;

/// The largest stack frame (bytes) of a callee we inline into a recursive function: LLVM's
/// default for a recursive caller (`-recursive-inline-max-stacksize`), as a deeper recursion
/// multiplies every byte.
const RECURSIVE_INLINE_MAX_FRAME: u64 = 1024;

/// The sampled addresses of `n`'s own code, as [`BinaryFacts`] takes them.
fn sampled(g: &CallGraph, n: NodeIndex) -> Vec<(u64, &MappedFile, i64)> {
    g.graph[n]
        .addresses
        .iter()
        .filter_map(|s| Some((s.address, g.mapping(s.mapping)?, s.weight)))
        .collect()
}

/// Whether a node stands for real code we can name (not a bare address).
fn is_named(g: &CallGraph, n: NodeIndex) -> bool {
    let f = &g.graph[n];
    !f.name.is_empty() && !f.name.starts_with("0x") && !f.name.contains("+0x")
}

/// Whether the source line calls `name`: `name(` or `name::<`, with an identifier boundary
/// before it (so `get_idx` does not match `my_get_idx(`); a macro's `name!(` is no call.
fn calls_by_name(line: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    line.match_indices(name).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + name.len()..].trim_start();
        !before.is_some_and(ident) && (after.starts_with('(') || after.starts_with("::<"))
    })
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Indirect call sites: (caller, site) → the edges to each target.
struct IndirectSite {
    caller: NodeIndex,
    site: pgo_graph::Site,
    edges: Vec<EdgeIndex>,
    evidence: &'static str,
}

fn indirect_sites(g: &CallGraph, binary: Option<&dyn BinaryFacts>) -> Vec<IndirectSite> {
    let mut groups: FxHashMap<(NodeIndex, pgo_graph::Site), Vec<EdgeIndex>> = FxHashMap::default();
    for e in g.graph.edge_references() {
        if !e.weight().inlined {
            groups
                .entry((e.source(), e.weight().site))
                .or_default()
                .push(e.id());
        }
    }
    let mut sites = Vec::new();
    for ((caller, site), edges) in groups {
        // The binary's word is best; next, one call instruction (return address) reaching
        // several callees, which only an indirect call can do; last, several callees at one
        // source position, when the profile has no addresses.
        let binary_says = binary.and_then(|b| {
            edges
                .iter()
                .flat_map(|&e| g.graph[e].return_addresses.first())
                .find_map(|ret| b.call_at(ret.address, g.mapping(ret.mapping)?))
        });
        let evidence = match binary_says {
            Some(CallKind::Indirect) => Some("binary: indirect call instruction"),
            Some(CallKind::Direct) => None,
            None => {
                let mut callees_by_address: FxHashMap<u64, FxHashSet<NodeIndex>> =
                    FxHashMap::default();
                for &e in &edges {
                    let callee = g.graph.edge_endpoints(e).expect("edge").1;
                    for r in &g.graph[e].return_addresses {
                        callees_by_address
                            .entry(r.address)
                            .or_default()
                            .insert(callee);
                    }
                }
                if callees_by_address.values().any(|c| c.len() > 1) {
                    Some("one call instruction reached several functions")
                } else if !g.has_addresses && edges.len() > 1 {
                    Some(
                        "several functions called from one source position (no addresses to confirm)",
                    )
                } else {
                    None
                }
            }
        };
        if let Some(evidence) = evidence {
            sites.push(IndirectSite {
                caller,
                site,
                edges,
                evidence,
            });
        }
    }
    sites
}

/// Makes every decision for `g`.
pub fn decide(g: &CallGraph, binary: Option<&dyn BinaryFacts>, settings: &Settings) -> Decisions {
    let mut limitations = Vec::new();
    if !g.has_addresses {
        limitations.push(
            "the profile has no instruction addresses: indirect calls are recognized only by several callees at one source position, and no basic-block layout is possible".to_string(),
        );
    }
    if !g.has_lines {
        limitations.push(
            "the profile has no line numbers: call sites cannot be told apart within a function"
                .to_string(),
        );
    }
    if binary.is_none() {
        limitations.push(
            "no --binary: callee sizes are unknown (inlining admits hot sites without a size budget), call instructions are not checked, and there is no basic-block layout".to_string(),
        );
    }

    let hot: Vec<EdgeIndex> = g.hot_edges(settings.hot_cdf_percent);
    let hot_set: FxHashSet<EdgeIndex> = hot.iter().copied().collect();
    let indirect = indirect_sites(g, binary);
    let indirect_edges: FxHashSet<EdgeIndex> = indirect
        .iter()
        .flat_map(|s| s.edges.iter().copied())
        .collect();

    // Inlining: the hot calls, and the calls the profiled build inlined that carry much of
    // the profile below them (a small function whose callee does the work, as a parser's
    // `bump` around the lexer: little time of its own, so not hot by that measure, but
    // leaving the inlined call to LLVM's defaults under the new profile can outline it).
    let mut candidates = hot.clone();
    for e in g.graph.edge_indices() {
        let call = &g.graph[e];
        if call.inlined
            && !hot_set.contains(&e)
            && g.share(call.weight) >= settings.keep_inlined_min_share_percent
        {
            candidates.push(e);
        }
    }
    let cycle_entries = g.cycle_entries();
    let mut inline = Vec::new();
    // Decided calls through a pointer (caller, callee linkage names): their other sites are
    // other pointers'.
    let mut through_pointer: FxHashSet<(&str, &str)> = FxHashSet::default();
    for &e in &candidates {
        let (caller, callee) = g.graph.edge_endpoints(e).expect("edge");
        let call = &g.graph[e];
        // Recursion: a function inlined into itself, or into a cycle from outside, is a copy
        // that calls itself again; but inside a cycle, the members other than its entry are
        // inlined into it once, like any callee, and the calls back to the entry stay calls.
        // Only where the profiled build had inlined them already: LLVM then judged the
        // recursive function's stack frame small enough to grow (a frame multiplied by the
        // depth of the recursion), which LLVM does not check again for a replayed decision.
        // Or where the profiled build could not inline them: a member called through a
        // pointer (an interpreter's `Block::eval` calling `If::eval` through `dyn Node`),
        // which the sample profile's inline context makes LLVM promote and inline, as
        // instrumentation PGO does; we check its frame as LLVM would have.
        let through_pointer_in_cycle = indirect_edges.contains(&e)
            && g.within_cycle(caller, callee)
            && binary
                .and_then(|b| b.frame_size(&g.graph[callee].linkage_name))
                .is_some_and(|bytes| bytes <= RECURSIVE_INLINE_MAX_FRAME);
        let recursion = caller == callee
            || (g.graph[callee].recursive
                && (!g.within_cycle(caller, callee)
                    || (!call.inlined && !through_pointer_in_cycle)
                    || cycle_entries.get(&g.graph[callee].scc) == Some(&callee)));
        if recursion
            || !is_named(g, caller)
            || !is_named(g, callee)
            || !same_build(g, binary, caller, callee)
        {
            continue;
        }
        if indirect_edges.contains(&e) && !through_pointer_in_cycle {
            continue; // decided by devirtualization
        }
        let share = g.share(call.weight);
        let callee_bytes = binary.and_then(|b| b.function_size(&g.graph[callee].linkage_name));
        let limit = if share >= settings.inline_very_hot_share_percent {
            settings.inline_max_callee_bytes_very_hot
        } else {
            settings.inline_max_callee_bytes
        };
        let reason = if call.inlined {
            format!(
                "hot call ({share:.1}% of samples) the profiled build already inlined; keep it inlined"
            )
        } else {
            // Loops that the samples do not run (a drop glue's loop over a vector variant,
            // when the hot variants need no drop) do not count.
            let callee_samples = sampled(g, callee);
            let loops = binary
                .and_then(|b| b.loop_share(&g.graph[callee].linkage_name, &callee_samples))
                .map(|share| share >= LOOPING_SHARE);
            let very_hot = share >= settings.inline_very_hot_share_percent;
            // A large callee whose sampled part is small (an interpreter's variable lookup:
            // 9 of its 124 blocks run) is inlined for that part, up to the very-hot size.
            let sampled_bytes = match callee_bytes {
                Some(bytes) if bytes > limit => binary
                    .and_then(|b| b.sampled_size(&g.graph[callee].linkage_name, &callee_samples))
                    .filter(|&hot| {
                        hot <= limit && bytes <= settings.inline_max_callee_bytes_very_hot
                    }),
                _ => None,
            };
            match callee_bytes {
                Some(bytes) if bytes > limit && sampled_bytes.is_none() => continue,
                // Its time is spent iterating inside; inlining would save one call per loop.
                // Not so at a very hot site: a callee called that often runs its loops briefly
                // (a lexer's scan of one token), and inlined, the caller's use of its result
                // folds into it (the parser's match on the token the lexer just built).
                _ if loops == Some(true) && !very_hot => continue,
                Some(bytes) => match sampled_bytes {
                    Some(hot) => format!(
                        "hot call ({share:.1}% of samples), callee {bytes} bytes of which the samples run {hot}, within the {limit}-byte budget"
                    ),
                    None => format!(
                        "hot call ({share:.1}% of samples), callee {bytes} bytes within the {limit}-byte budget"
                    ),
                },
                None => format!(
                    "hot call ({share:.1}% of samples); callee size unknown (no binary), admitted by heat alone"
                ),
            }
        };
        let reason = if through_pointer_in_cycle {
            through_pointer.insert((
                g.graph[caller].linkage_name.as_str(),
                g.graph[callee].linkage_name.as_str(),
            ));
            format!(
                "{reason}; called through a pointer inside a recursion, frame within {RECURSIVE_INLINE_MAX_FRAME} bytes"
            )
        } else {
            reason
        };
        inline.push(InlineDecision {
            caller: function_ref(g, caller),
            site: CallSiteRef {
                line_offset: call.site.line_offset,
                column: call.site.column,
            },
            callee: function_ref(g, callee),
            weight: call.weight,
            share_percent: round(share),
            callee_bytes,
            already_inlined: call.inlined,
            reason,
        });
    }
    // The other calls to a callee decided inline at a sampled site of the same caller. An
    // interpreter calls one small helper from many cases of its dispatch (Lua's
    // `luaV_finishset` from four opcodes); training runs some of them, the measured workload
    // others, and to the next build the unsampled ones are cold (LLVM inlines a cold call only
    // under a threshold of 45), while instrumentation PGO counted them running, if rarely. The
    // sites come from the caller's source: the profiled binary may have merged identical
    // calls into one instruction (clang did for two of Lua's). A line that calls something
    // else of that name costs a line of the replay file, which LLVM matches by callee and
    // ignores there. Small callees only: these sites carry no weight to justify more.
    if let Some(b) = binary {
        let mut decided: FxHashSet<(String, i64, String)> = inline
            .iter()
            .map(|d: &InlineDecision| {
                (
                    d.caller.linkage_name.clone(),
                    d.site.line_offset,
                    d.callee.linkage_name.clone(),
                )
            })
            .collect();
        let mut spans: FxHashMap<String, Option<(Vec<String>, u32, u32)>> = FxHashMap::default();
        let mut siblings = Vec::new();
        for d in &inline {
            if d.already_inlined
                || through_pointer.contains(&(
                    d.caller.linkage_name.as_str(),
                    d.callee.linkage_name.as_str(),
                ))
                || d.caller.start_line == 0
                || d.callee_bytes
                    .is_none_or(|bytes| bytes > settings.inline_max_callee_bytes)
            {
                continue;
            }
            let span = spans
                .entry(d.caller.linkage_name.clone())
                .or_insert_with(|| {
                    let (file, first, last) = b.source_span(&d.caller.linkage_name)?;
                    let text = std::fs::read_to_string(&file).ok()?;
                    Some((text.lines().map(str::to_owned).collect(), first, last))
                });
            let Some((lines, first, last)) = span else {
                continue;
            };
            let name = pgo_profile::short_function_name(&d.callee.name);
            let start = d.caller.start_line;
            for line in (*first).max(1)..=*last {
                let Some(text) = lines.get(line as usize - 1) else {
                    break;
                };
                let offset = i64::from(line) - start;
                // Offset 0 is the caller's own declaration (`fn eval(`), not a call.
                if offset <= 0
                    || !calls_by_name(text, name)
                    || !decided.insert((
                        d.caller.linkage_name.clone(),
                        offset,
                        d.callee.linkage_name.clone(),
                    ))
                {
                    continue;
                }
                siblings.push(InlineDecision {
                    site: CallSiteRef {
                        line_offset: offset,
                        column: 0,
                    },
                    weight: 0,
                    share_percent: 0.0,
                    already_inlined: false,
                    reason: format!(
                        "another call of a callee decided inline at line offset {} of the same \
                         caller ({:.1}% of samples), {} bytes; unsampled calls are cold to the \
                         next build",
                        d.site.line_offset,
                        d.share_percent,
                        d.callee_bytes.unwrap_or(0)
                    ),
                    ..d.clone()
                });
            }
        }
        inline.extend(siblings);
    }
    inline.sort_by(|a, b| {
        b.weight
            .cmp(&a.weight)
            .then_with(|| (&a.caller, a.site, &a.callee).cmp(&(&b.caller, b.site, &b.callee)))
    });

    // Devirtualization.
    let mut devirtualize = Vec::new();
    for s in &indirect {
        if !s.edges.iter().any(|e| hot_set.contains(e)) || !is_named(g, s.caller) {
            continue;
        }
        // Promotion compares the callee's address against functions of this build.
        let edges: Vec<EdgeIndex> = s
            .edges
            .iter()
            .copied()
            .filter(|&e| {
                same_build(
                    g,
                    binary,
                    s.caller,
                    g.graph.edge_endpoints(e).expect("edge").1,
                )
            })
            .collect();
        if edges.is_empty() {
            continue;
        }
        let s = IndirectSite {
            caller: s.caller,
            site: s.site,
            edges,
            evidence: s.evidence,
        };
        let total: i64 = s.edges.iter().map(|&e| g.graph[e].weight).sum();
        let mut targets: Vec<Target> = s
            .edges
            .iter()
            .map(|&e| {
                let callee = g.graph.edge_endpoints(e).expect("edge").1;
                Target {
                    callee: function_ref(g, callee),
                    weight: g.graph[e].weight,
                    site_percent: round(100.0 * g.graph[e].weight as f64 / total.max(1) as f64),
                }
            })
            .collect();
        targets.sort_by(|a, b| {
            b.weight
                .cmp(&a.weight)
                .then_with(|| a.callee.cmp(&b.callee))
        });
        let mut promote = Vec::new();
        let mut remaining = total;
        for t in &targets {
            if promote.len() >= settings.devirtualize_max_targets || remaining <= 0 {
                break;
            }
            let of_remaining = 100.0 * t.weight as f64 / remaining as f64;
            let of_total = 100.0 * t.weight as f64 / total as f64;
            if of_remaining < settings.devirtualize_min_remaining_percent
                || of_total < settings.devirtualize_min_total_percent
            {
                break;
            }
            promote.push(t.callee.clone());
            remaining -= t.weight;
        }
        let share = g.share(total);
        if promote.is_empty() && share < schema::MIN_UNPROMOTED_SHARE_PERCENT {
            continue;
        }
        let reason = if promote.is_empty() {
            format!(
                "{} targets, none takes {:.0}% of the site: promoting would only add guards",
                targets.len(),
                settings.devirtualize_min_remaining_percent
            )
        } else {
            let covered: i64 = targets.iter().take(promote.len()).map(|t| t.weight).sum();
            format!(
                "{evidence}; promote {} of {} targets covering {:.0}% of the site",
                promote.len(),
                targets.len(),
                100.0 * covered as f64 / total.max(1) as f64,
                evidence = s.evidence
            )
        };
        let other_targets = targets.len().saturating_sub(schema::MAX_LISTED_TARGETS);
        let other_weight: i64 = targets
            .iter()
            .skip(schema::MAX_LISTED_TARGETS)
            .map(|t| t.weight)
            .sum();
        targets.truncate(schema::MAX_LISTED_TARGETS);
        devirtualize.push(DevirtualizeDecision {
            caller: function_ref(g, s.caller),
            site: CallSiteRef {
                line_offset: s.site.line_offset,
                column: s.site.column,
            },
            weight: total,
            share_percent: round(share),
            evidence: s.evidence.to_string(),
            targets,
            other_targets,
            other_targets_site_percent: round(100.0 * other_weight as f64 / total.max(1) as f64),
            promote,
            reason,
        });
    }
    devirtualize.sort_by(|a, b| {
        b.weight
            .cmp(&a.weight)
            .then_with(|| (&a.caller, a.site).cmp(&(&b.caller, b.site)))
    });

    let layout = layout::decide_layout(g, binary);

    // Coverage: the samples taken in a function that is part of a hot call (as caller or
    // callee), i.e. the time the hot set can act on.
    let hot_nodes: FxHashSet<NodeIndex> = hot
        .iter()
        .flat_map(|&e| {
            let (a, b) = g.graph.edge_endpoints(e).expect("edge");
            [a, b]
        })
        .collect();
    let leaf_in_hot: i64 = hot_nodes.iter().map(|&n| g.graph[n].self_weight).sum();
    let binary_matched = binary.map(|b| {
        let w: i64 = g
            .graph
            .node_indices()
            .filter(|&n| b.contains(&g.graph[n].binary))
            .map(|n| g.graph[n].self_weight)
            .sum();
        round(g.share(w))
    });
    Decisions {
        schema: SCHEMA_NAME.to_string(),
        version: SCHEMA_VERSION,
        profile: ProfileSummary {
            sample_type: g.sample_type.clone(),
            total_weight: g.total,
            functions: g.graph.node_count(),
            call_edges: g.graph.edge_count(),
            has_addresses: g.has_addresses,
            has_lines: g.has_lines,
        },
        settings: settings.clone(),
        coverage: Coverage {
            hot_set_percent: round(g.share(leaf_in_hot)),
            binary_matched_percent: binary_matched,
        },
        limitations,
        inline,
        devirtualize,
        layout,
    }
}

pub mod elf;
mod layout;

#[cfg(test)]
mod tests {
    use super::*;
    use pgo_profile::{FunctionInfo, LineInfo, MappingInfo, ProfileBuilder};

    /// A binary whose functions all have `size` bytes, of which the samples run `sampled`,
    /// and `frame` bytes of stack; its calls are `calls`.
    struct Sized {
        size: u64,
        sampled: u64,
        frame: u64,
        calls: CallKind,
        /// Every function's source: file, first and last line.
        source: Option<(String, u32, u32)>,
    }

    impl Sized {
        fn new(size: u64, sampled: u64) -> Sized {
            Sized {
                size,
                sampled,
                frame: 64,
                calls: CallKind::Direct,
                source: None,
            }
        }
    }

    impl BinaryFacts for Sized {
        fn contains(&self, binary: &str) -> bool {
            binary == "/bin/app"
        }
        fn function_size(&self, _: &str) -> Option<u64> {
            Some(self.size)
        }
        fn loop_share(&self, _: &str, _: &[(u64, &MappedFile, i64)]) -> Option<f64> {
            Some(0.0)
        }
        fn sampled_size(&self, _: &str, _: &[(u64, &MappedFile, i64)]) -> Option<u64> {
            Some(self.sampled)
        }
        fn frame_size(&self, _: &str) -> Option<u64> {
            Some(self.frame)
        }
        fn call_at(&self, _: u64, _: &MappedFile) -> Option<CallKind> {
            Some(self.calls)
        }
        fn source_span(&self, _: &str) -> Option<(String, u32, u32)> {
            self.source.clone()
        }
        fn block_layout(
            &self,
            _: &str,
            _: &[(u64, &MappedFile, i64)],
        ) -> Option<(Vec<u64>, usize, String)> {
            None
        }
    }

    /// A frame of a test stack: function, address, line.
    type Frame = (&'static str, u64, i64);

    /// Builds a profile of `/bin/app` (loaded at 0x1000) from `samples` (stacks of
    /// `(function, address, line)`, leaf first; a function starts at `start_line(address)`).
    fn app_graph(start_line: fn(u64) -> i64, samples: &[(&[Frame], i64)]) -> CallGraph {
        let mut b = ProfileBuilder::new(&[("samples", "count")]);
        let app = b.mapping(MappingInfo {
            memory_start: 0x1000,
            memory_limit: 0x9000,
            filename: "/bin/app",
            has_functions: true,
            ..Default::default()
        });
        for (stack, weight) in samples {
            let locations: Vec<_> = stack
                .iter()
                .map(|&(name, address, line)| {
                    let f = b.function(FunctionInfo {
                        name,
                        system_name: name,
                        filename: "src/main.rs",
                        start_line: start_line(address),
                    });
                    b.location(
                        Some(app),
                        0x1000 + address,
                        &[LineInfo {
                            function: f,
                            line,
                            column: 0,
                        }],
                    )
                })
                .collect();
            b.add_sample(&locations, &[*weight], &[]).unwrap();
        }
        CallGraph::build(&b.build(), 0)
    }

    /// `eval` calls `lookup` (1 sample in 30 in it, 3.3%: hot, not very hot) and `rest`.
    fn graph() -> CallGraph {
        let (eval_a, eval_b) = (("eval", 1, 11), ("eval", 2, 12));
        let (lookup, rest) = (("lookup", 3, 31), ("rest", 4, 41));
        app_graph(
            |address| 10 * address as i64,
            &[(&[lookup, eval_a], 1), (&[rest, eval_b], 29)],
        )
    }

    fn inlines_lookup(facts: &Sized) -> Option<String> {
        decide(&graph(), Some(facts), &Settings::default())
            .inline
            .into_iter()
            .find(|d| d.callee.name == "lookup")
            .map(|d| d.reason)
    }

    #[test]
    fn a_large_callee_is_inlined_at_a_hot_site_when_the_part_the_samples_run_is_small() {
        let small = inlines_lookup(&Sized::new(300, 300));
        assert!(small.is_some_and(|r| r.contains("300 bytes within")));
        // 2,771 bytes, 167 of them run: an interpreter's variable lookup.
        let reason = inlines_lookup(&Sized::new(2771, 167)).expect("inlined for its sampled part");
        assert!(reason.contains("of which the samples run 167"), "{reason}");
        // Most of it runs: too big.
        assert_eq!(inlines_lookup(&Sized::new(2771, 2000)), None);
        // Past the very-hot size, however little of it runs.
        assert_eq!(inlines_lookup(&Sized::new(20_000, 100)), None);
    }

    #[test]
    fn names_of_calls_in_source_lines() {
        assert!(calls_by_name(
            "  Protect(luaV_finishset(L, t, k, v));",
            "luaV_finishset"
        ));
        assert!(calls_by_name("let v = obj.get_idx (i)?;", "get_idx"));
        assert!(calls_by_name("x = parse::<u8>(s);", "parse"));
        assert!(!calls_by_name("x = my_get_idx(i);", "get_idx"));
        assert!(!calls_by_name("// see get_idx for why", "get_idx"));
        assert!(!calls_by_name("get_idx!(i)", "get_idx"));
        assert!(!calls_by_name("anything(", ""));
    }

    /// `eval` (lines 10 to 17) calls `lookup` at line 11, where the samples saw it (hot), and
    /// at line 14, where they did not: both are inlined; the other lines that mention the
    /// name do not call it.
    #[test]
    fn a_decided_callee_is_inlined_at_its_other_calls_in_the_callers_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("main.rs");
        std::fs::write(
            &file,
            "\n\n\n\n\n\n\n\n\n\
             fn eval(&self, op: Op) -> V {\n\
             let a = self.lookup(op.a);\n\
             match op.kind {\n\
             // lookup again below\n\
             Kind::B => self.lookup(op.b),\n\
             Kind::C => self.my_lookup(op.c),\n\
             Kind::D => lookup!(op.d),\n\
             _ => self.rest(a) } }\n",
        )
        .unwrap();
        let g = app_graph(
            |_| 10,
            &[
                (&[("lookup", 3, 31), ("eval", 1, 11)], 10),
                (&[("rest", 4, 41), ("eval", 2, 17)], 20),
            ],
        );
        let sites = |facts: &Sized| -> Vec<(i64, i64)> {
            decide(&g, Some(facts), &Settings::default())
                .inline
                .iter()
                .filter(|d| d.caller.name == "eval" && d.callee.name == "lookup")
                .map(|d| (d.site.line_offset, d.weight))
                .collect()
        };
        let mut facts = Sized::new(300, 300);
        assert_eq!(
            sites(&facts),
            [(1, 10)],
            "without the source, the sampled site only"
        );
        facts.source = Some((file.display().to_string(), 10, 17));
        let mut found = sites(&facts);
        found.sort();
        assert_eq!(found, [(1, 10), (4, 0)]);
        // Not for a callee over the (not very hot) size budget.
        facts.size = 600;
        facts.sampled = 600;
        assert!(sites(&facts).iter().all(|&(_, w)| w > 0));
    }

    /// An interpreter: `run` enters `block`, whose node call (through `dyn Node`, at one call
    /// instruction) reaches `if_` and `assign`; `if_` evaluates a nested `block`.
    fn dyn_recursion() -> CallGraph {
        let run = ("run", 0x10, 102);
        let block_call = ("block", 0x25, 302);
        let if_call = ("if_", 0x45, 502);
        let if_own = ("if_", 0x48, 503);
        let assign_own = ("assign", 0x68, 703);
        app_graph(
            |address| 100 * (address as i64 / 16),
            &[
                (&[if_own, block_call, run], 30),
                (&[assign_own, block_call, run], 30),
                (&[assign_own, block_call, if_call, block_call, run], 40),
            ],
        )
    }

    fn inlined_into_block(facts: &Sized) -> Vec<String> {
        let d = decide(&dyn_recursion(), Some(facts), &Settings::default());
        assert!(
            d.devirtualize
                .iter()
                .any(|v| v.caller.name == "block" && v.promote.len() == 2),
            "{:?}",
            d.devirtualize
        );
        d.inline
            .into_iter()
            .filter(|i| i.caller.name == "block")
            .map(|i| i.callee.name)
            .collect()
    }

    #[test]
    fn members_of_a_recursion_called_through_a_pointer_are_inlined_into_it() {
        let mut facts = Sized::new(300, 300);
        facts.calls = CallKind::Indirect;
        // `assign` is called through the pointer too, but outside the recursion: LLVM promotes
        // it by the call targets and decides its inlining as for any call.
        assert_eq!(inlined_into_block(&facts), ["if_"]);
        // The recursion's entry stays a call where `if_` calls it back.
        let d = decide(&dyn_recursion(), Some(&facts), &Settings::default());
        assert!(
            !d.inline.iter().any(|i| i.callee.name == "block"),
            "{:?}",
            d.inline
        );
        // A frame that every level of the recursion would carry: left to LLVM.
        facts.frame = 4096;
        assert!(inlined_into_block(&facts).is_empty());
    }
}
