//! The weighted call graph of a profile: one node per function (binary + linkage name), one
//! edge per call site (caller, callee, line offset from the caller's start line, column),
//! weighted by the samples whose stacks pass through it; self and cumulative weight per
//! function; strongly connected components for recursion; the hot edge set by CDF.
//!
//! Every frame of every sample counts, each edge at most once per sample (so recursion does not
//! double count), and calls the profiled binary inlined (inline frames) are edges too, marked as
//! such. Call sites keep the return address the profile recorded, so a binary-aware stage can
//! look at the call instruction.
//!
//! It reads validated profiles (`pgo-profile`) and knows nothing of ELF files, compilers or
//! decisions: `pgo-decide` turns this graph into decisions.

use petgraph::graph::{DiGraph, EdgeIndex, NodeIndex};
use pgo_profile::{Profile, ProfileView};
use rustc_hash::FxHashMap;

/// A function of the profiled program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// The object file it is in (the profile's mapping), "" when unknown.
    pub binary: String,
    /// The name the linker knows (`_ZN...`, `main.mix64`); the display name when no other.
    pub linkage_name: String,
    /// The name people read (demangled).
    pub name: String,
    pub file: String,
    /// The line of the function's declaration; 0 when the profile has none.
    pub start_line: i64,
    /// Weight of samples with this function as the leaf.
    pub self_weight: i64,
    /// Weight of samples with this function anywhere on the stack (once per sample).
    pub cum_weight: i64,
    /// The strongly connected component it belongs to.
    pub scc: usize,
    /// Part of a cycle of calls (including calling itself) that the samples recurse through:
    /// summed over the cycle's members, at least [`RECURSIVE_MIN_SHARE`] of their cumulative
    /// weight is in stacks that hold the member twice or more.
    pub recursive: bool,
    /// Weight of samples whose stack holds this function at least twice.
    pub recursive_weight: i64,
    /// Sampled instruction addresses in this function's own code (including code inlined into
    /// it), with their weight, ascending by address: where in the function the time went.
    pub addresses: Vec<SampledAddress>,
}

/// The share of a function's cumulative weight in stacks that hold it twice or more from
/// which its cycle counts as recursive (see [`Function::recursive`]).
pub const RECURSIVE_MIN_SHARE: f64 = 0.10;

/// A sampled instruction address (runtime), in one of the graph's mappings, with its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SampledAddress {
    pub address: u64,
    pub mapping: Option<u32>,
    pub weight: i64,
}

/// Where in the caller a call happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Site {
    /// The call's line minus the caller's start line (LLVM sample profiles' line offset).
    pub line_offset: i64,
    pub column: i64,
}

/// An object file mapped into the profiled process, as the profile recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MappedFile {
    pub file: String,
    pub build_id: String,
    pub start: u64,
    pub file_offset: u64,
}

/// A runtime return address of a call, in one of the graph's [`CallGraph::mappings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReturnAddress {
    pub address: u64,
    pub mapping: Option<u32>,
    /// Weight of the samples through this address.
    pub weight: i64,
}

/// A call site from a caller to one callee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub site: Site,
    /// The profiled binary already inlined this call (an inline frame).
    pub inlined: bool,
    /// Weight of the samples whose stacks pass through this call (once per sample).
    pub weight: i64,
    /// Weight of the samples where this is the innermost call (the callee is the sampled
    /// function): what ranks calls for hotness, as Go's `-pgo` does, because a call's own cost
    /// shows in the samples taken right around it, not in everything below it.
    pub leaf_weight: i64,
    /// The return addresses seen for this call (none for inlined calls or profiles without
    /// addresses), heaviest first.
    pub return_addresses: Vec<ReturnAddress>,
}

/// The call graph of one profile (merge several first with `pgo_profile::merge`).
pub struct CallGraph {
    pub graph: DiGraph<Function, Call>,
    /// The mapped files addresses refer to.
    pub mappings: Vec<MappedFile>,
    /// Sum of the chosen sample value over all samples.
    pub total: i64,
    /// `type/unit` of the weights.
    pub sample_type: String,
    /// Whether locations carry addresses / line numbers (what later stages can rely on).
    pub has_addresses: bool,
    pub has_lines: bool,
}

/// One source frame of a location, resolved to its node once for all samples.
#[derive(Clone, Copy)]
struct FrameInfo {
    node: NodeIndex,
    line: i64,
    column: i64,
    inlined: bool,
    /// Index of the location in the profile (frames of one location share it).
    location: usize,
}

impl CallGraph {
    /// Builds the graph of sample value `index` of a validated profile.
    ///
    /// Each location is resolved to its functions once; samples are then walked over plain
    /// indices, so the cost is one pass over the stack frames with no string work.
    pub fn build(profile: &Profile, index: usize) -> CallGraph {
        let view = ProfileView::new(profile);
        let mut graph: DiGraph<Function, Call> = DiGraph::new();
        let mut nodes: FxHashMap<(u64, u64), NodeIndex> = FxHashMap::default();
        let mut by_name: FxHashMap<(String, String), NodeIndex> = FxHashMap::default();

        let mut mappings: Vec<MappedFile> = Vec::new();
        let mut mapping_index: FxHashMap<u64, u32> = FxHashMap::default();
        for m in &profile.mapping {
            mapping_index.insert(m.id, mappings.len() as u32);
            mappings.push(MappedFile {
                file: view.str(m.filename).to_string(),
                build_id: view.str(m.build_id).to_string(),
                start: m.memory_start,
                file_offset: m.file_offset,
            });
        }

        // Locations: their frames (innermost first), address and mapping.
        let mut location_index: FxHashMap<u64, usize> = FxHashMap::default();
        let mut location_frames: Vec<(usize, usize)> = Vec::with_capacity(profile.location.len());
        let mut location_address: Vec<(u64, Option<u32>)> =
            Vec::with_capacity(profile.location.len());
        let mut frames_table: Vec<FrameInfo> = Vec::new();
        for (li, loc) in profile.location.iter().enumerate() {
            location_index.insert(loc.id, li);
            let start = frames_table.len();
            let mapping = mapping_index.get(&loc.mapping_id).copied();
            for frame in view.location_frames(loc) {
                // Functions are nodes by (binary, linkage name); an unsymbolized address is its
                // own node, keyed by its display name.
                let key = (
                    loc.mapping_id,
                    frame.function.map_or(u64::MAX - loc.id, |f| f.id),
                );
                let node = match nodes.get(&key) {
                    Some(&n) => n,
                    None => {
                        let binary = mapping
                            .map_or("", |m| mappings[m as usize].file.as_str())
                            .to_string();
                        let name = view.frame_name(&frame).into_owned();
                        let (linkage, file, start_line) = match frame.function {
                            Some(f) => {
                                let sys = view.str(f.system_name);
                                let linkage = if sys.is_empty() {
                                    name.clone()
                                } else {
                                    sys.to_string()
                                };
                                (linkage, view.str(f.filename).to_string(), f.start_line)
                            }
                            None => (name.clone(), String::new(), 0),
                        };
                        let n = *by_name
                            .entry((binary.clone(), linkage.clone()))
                            .or_insert_with(|| {
                                graph.add_node(Function {
                                    binary,
                                    linkage_name: linkage,
                                    name,
                                    file,
                                    start_line,
                                    self_weight: 0,
                                    cum_weight: 0,
                                    scc: 0,
                                    recursive: false,
                                    recursive_weight: 0,
                                    addresses: Vec::new(),
                                })
                            });
                        nodes.insert(key, n);
                        n
                    }
                };
                frames_table.push(FrameInfo {
                    node,
                    line: frame.line,
                    column: frame.column,
                    inlined: frame.inlined,
                    location: li,
                });
            }
            location_frames.push((start, frames_table.len()));
            location_address.push((loc.address, mapping));
        }

        // Location ids are usually 1..=n; index them directly then.
        let max_id = profile.location.iter().map(|l| l.id).max().unwrap_or(0);
        let dense: Option<Vec<u32>> =
            (max_id as usize <= 4 * profile.location.len() + 16).then(|| {
                let mut v = vec![u32::MAX; max_id as usize + 1];
                for (li, l) in profile.location.iter().enumerate() {
                    v[l.id as usize] = li as u32;
                }
                v
            });
        let location_of = |id: u64| -> Option<usize> {
            match &dense {
                Some(v) => v
                    .get(id as usize)
                    .filter(|&&li| li != u32::MAX)
                    .map(|&li| li as usize),
                None => location_index.get(&id).copied(),
            }
        };

        type EdgeKey = (NodeIndex, NodeIndex, Site, bool);
        let mut edges: FxHashMap<EdgeKey, EdgeIndex> = FxHashMap::default();
        // Stacks repeat the same (callee frame, caller frame) pairs over and over: resolve each
        // pair to its edge (and return-address slot) once.
        let mut pairs: FxHashMap<u64, (EdgeIndex, u32)> = FxHashMap::default();
        let mut return_slots: Vec<(EdgeIndex, usize, i64)> = Vec::new();
        let mut return_slot_of: FxHashMap<(EdgeIndex, usize), u32> = FxHashMap::default();
        let mut leaf_addresses: FxHashMap<(NodeIndex, usize), i64> = FxHashMap::default();
        // Weights accumulate in flat arrays (small, cache-resident) and go into the graph at the
        // end; the graph's node and edge records are large and scattered.
        let mut node_stamp: Vec<usize> = vec![usize::MAX; graph.node_count()];
        let mut self_weight: Vec<i64> = vec![0; graph.node_count()];
        let mut cum_weight: Vec<i64> = vec![0; graph.node_count()];
        let mut recursion_stamp: Vec<usize> = vec![usize::MAX; graph.node_count()];
        let mut recursive_weight: Vec<i64> = vec![0; graph.node_count()];
        let mut edge_stamp: Vec<usize> = Vec::new();
        let mut edge_weight: Vec<i64> = Vec::new();
        let mut edge_leaf_weight: Vec<i64> = Vec::new();
        let mut frames: Vec<u32> = Vec::new();
        let mut total = 0i64;
        for (si, s) in profile.sample.iter().enumerate() {
            let v = s.value[index];
            total += v;
            frames.clear();
            for &id in &s.location_id {
                if let Some(li) = location_of(id) {
                    let (a, b) = location_frames[li];
                    frames.extend(a as u32..b as u32);
                }
            }
            let Some(&leaf_index) = frames.first() else {
                continue;
            };
            let leaf = frames_table[leaf_index as usize];
            self_weight[leaf.node.index()] += v;
            // The sampled address belongs to the function whose code it is: the outermost
            // frame of the leaf location (the others were inlined into it).
            let physical = frames
                .iter()
                .map(|&f| frames_table[f as usize])
                .take_while(|f| f.location == leaf.location)
                .last()
                .unwrap_or(leaf);
            if location_address[leaf.location].0 != 0 {
                *leaf_addresses
                    .entry((physical.node, leaf.location))
                    .or_default() += v;
            }
            for &f in &frames {
                let node = frames_table[f as usize].node.index();
                if node_stamp[node] != si {
                    node_stamp[node] = si;
                    cum_weight[node] += v;
                } else if recursion_stamp[node] != si {
                    recursion_stamp[node] = si;
                    recursive_weight[node] += v;
                }
            }
            for (depth, pair) in frames.windows(2).enumerate() {
                let key = (u64::from(pair[0]) << 32) | u64::from(pair[1]);
                let (e, slot) = *pairs.entry(key).or_insert_with(|| {
                    let (callee, caller) = (
                        frames_table[pair[0] as usize],
                        frames_table[pair[1] as usize],
                    );
                    let start = graph[caller.node].start_line;
                    let site = Site {
                        line_offset: if start > 0 && caller.line >= start {
                            caller.line - start
                        } else {
                            caller.line
                        },
                        column: caller.column,
                    };
                    let e = *edges
                        .entry((caller.node, callee.node, site, callee.inlined))
                        .or_insert_with(|| {
                            graph.add_edge(
                                caller.node,
                                callee.node,
                                Call {
                                    site,
                                    inlined: callee.inlined,
                                    weight: 0,
                                    leaf_weight: 0,
                                    return_addresses: Vec::new(),
                                },
                            )
                        });
                    // The caller's location address is the return address of a real (not
                    // inlined) call; the leaf's is the sampled instruction, never one.
                    let slot = if !callee.inlined
                        && caller.location != callee.location
                        && location_address[caller.location].0 != 0
                    {
                        *return_slot_of
                            .entry((e, caller.location))
                            .or_insert_with(|| {
                                return_slots.push((e, caller.location, 0));
                                (return_slots.len() - 1) as u32
                            })
                    } else {
                        u32::MAX
                    };
                    (e, slot)
                });
                if edge_stamp.len() <= e.index() {
                    edge_stamp.resize(e.index() + 1, usize::MAX);
                    edge_weight.resize(e.index() + 1, 0);
                    edge_leaf_weight.resize(e.index() + 1, 0);
                }
                if depth == 0 {
                    edge_leaf_weight[e.index()] += v;
                }
                if edge_stamp[e.index()] == si {
                    continue; // each edge once per sample
                }
                edge_stamp[e.index()] = si;
                edge_weight[e.index()] += v;
                if slot != u32::MAX {
                    return_slots[slot as usize].2 += v;
                }
            }
        }
        for n in graph.node_indices() {
            graph[n].self_weight = self_weight[n.index()];
            graph[n].cum_weight = cum_weight[n.index()];
            graph[n].recursive_weight = recursive_weight[n.index()];
        }
        for e in graph.edge_indices() {
            graph[e].weight = edge_weight.get(e.index()).copied().unwrap_or(0);
            graph[e].leaf_weight = edge_leaf_weight.get(e.index()).copied().unwrap_or(0);
        }
        for ((node, li), weight) in leaf_addresses {
            let (address, mapping) = location_address[li];
            graph[node].addresses.push(SampledAddress {
                address,
                mapping,
                weight,
            });
        }
        for n in graph.node_indices() {
            graph[n].addresses.sort();
        }
        for (e, li, weight) in return_slots {
            let (address, mapping) = location_address[li];
            graph[e].return_addresses.push(ReturnAddress {
                address,
                mapping,
                weight,
            });
        }
        for e in graph.edge_indices() {
            graph[e]
                .return_addresses
                .sort_by(|a, b| b.weight.cmp(&a.weight).then(a.address.cmp(&b.address)));
        }
        // Recursion: components with more than one function, or a function calling itself,
        // where the samples do recurse. A cycle the program rarely goes round (dropping a
        // value that holds an array of values drops values again) is no reason to treat its
        // members as recursive: inlining them stays worth it.
        for (i, component) in petgraph::algo::tarjan_scc(&graph).into_iter().enumerate() {
            let (again, all) = component.iter().fold((0i64, 0i64), |(r, c), &n| {
                (r + graph[n].recursive_weight, c + graph[n].cum_weight)
            });
            let cyclic = (component.len() > 1
                || graph.find_edge(component[0], component[0]).is_some())
                && again as f64 >= RECURSIVE_MIN_SHARE * all as f64;
            for n in component {
                graph[n].scc = i;
                graph[n].recursive = cyclic;
            }
        }
        let sample_type = view.sample_types()[index].clone();
        CallGraph {
            has_addresses: profile.location.iter().any(|l| l.address != 0),
            has_lines: profile
                .location
                .iter()
                .any(|l| l.line.iter().any(|line| line.line > 0)),
            graph,
            mappings,
            total,
            sample_type,
        }
    }

    /// The mapped file of an address, if the profile recorded one.
    pub fn mapping(&self, mapping: Option<u32>) -> Option<&MappedFile> {
        mapping.and_then(|m| self.mappings.get(m as usize))
    }

    /// Edges in decreasing weight (ties by caller and callee name, then site, so the order is
    /// the same for the same profile content).
    pub fn edges_by_weight(&self) -> Vec<EdgeIndex> {
        // Rank nodes by name once; comparing ranks is cheaper than comparing strings.
        let mut by_name: Vec<NodeIndex> = self.graph.node_indices().collect();
        by_name.sort_by(|&a, &b| {
            let (x, y) = (&self.graph[a], &self.graph[b]);
            (&x.linkage_name, &x.binary).cmp(&(&y.linkage_name, &y.binary))
        });
        let mut rank = vec![0usize; by_name.len()];
        for (r, n) in by_name.into_iter().enumerate() {
            rank[n.index()] = r;
        }
        let mut edges: Vec<(std::cmp::Reverse<i64>, usize, usize, Site, bool, EdgeIndex)> = self
            .graph
            .edge_indices()
            .map(|e| {
                let (from, to) = self.graph.edge_endpoints(e).expect("an edge of this graph");
                let c = &self.graph[e];
                (
                    std::cmp::Reverse(c.weight),
                    rank[from.index()],
                    rank[to.index()],
                    c.site,
                    c.inlined,
                    e,
                )
            })
            .collect();
        edges.sort_unstable();
        edges.into_iter().map(|t| t.5).collect()
    }

    /// The hot edges: the smallest set of calls whose innermost-call weight
    /// ([`Call::leaf_weight`]) covers `cdf_percent` of all samples' innermost-call weight (Go's
    /// `-pgo` uses 99%), heaviest first. Ranking by the whole-stack weight instead would let
    /// the long chain of calls above `main` (each carrying every sample) crowd out the calls
    /// that matter.
    pub fn hot_edges(&self, cdf_percent: f64) -> Vec<EdgeIndex> {
        let mut edges: Vec<EdgeIndex> = self.edges_by_weight();
        edges.retain(|&e| self.graph[e].leaf_weight > 0);
        // Stable: equal leaf weights keep the name order of edges_by_weight.
        edges.sort_by(|&a, &b| self.graph[b].leaf_weight.cmp(&self.graph[a].leaf_weight));
        let sum: i64 = edges.iter().map(|&e| self.graph[e].leaf_weight).sum();
        let goal = sum as f64 * cdf_percent / 100.0;
        let mut covered = 0i64;
        let mut hot = Vec::new();
        for e in edges {
            if covered as f64 >= goal {
                break;
            }
            covered += self.graph[e].leaf_weight;
            hot.push(e);
        }
        hot
    }

    /// Whether the call from `caller` to `callee` stays inside one recursive cycle.
    pub fn within_cycle(&self, caller: NodeIndex, callee: NodeIndex) -> bool {
        self.graph[caller].recursive && self.graph[caller].scc == self.graph[callee].scc
    }

    /// The entry of each recursive cycle (by [`Function::scc`]): the member the most weight
    /// enters from outside the cycle (for a cycle nothing outside calls, the one with the most
    /// weight on the stack), ties by linkage name. The other members of a cycle can be inlined
    /// into it as once into any caller, the calls back into the entry staying the recursion:
    /// what LLVM makes of a recursive descent parser with an instrumentation profile.
    pub fn cycle_entries(&self) -> FxHashMap<usize, NodeIndex> {
        let mut entered: FxHashMap<NodeIndex, i64> = FxHashMap::default();
        for e in self.graph.edge_indices() {
            let (from, to) = self.graph.edge_endpoints(e).expect("an edge of this graph");
            if self.graph[to].recursive && self.graph[from].scc != self.graph[to].scc {
                *entered.entry(to).or_default() += self.graph[e].weight;
            }
        }
        let mut entries: FxHashMap<usize, NodeIndex> = FxHashMap::default();
        for n in self.graph.node_indices() {
            let f = &self.graph[n];
            if !f.recursive {
                continue;
            }
            let rank = |n: NodeIndex| {
                let f = &self.graph[n];
                (
                    entered.get(&n).copied().unwrap_or(0),
                    f.cum_weight,
                    std::cmp::Reverse(&f.linkage_name),
                )
            };
            entries
                .entry(f.scc)
                .and_modify(|best| {
                    if rank(n) > rank(*best) {
                        *best = n;
                    }
                })
                .or_insert(n);
        }
        entries
    }

    /// Share of the total, in percent.
    pub fn share(&self, weight: i64) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            100.0 * weight as f64 / self.total as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgo_profile::{FunctionInfo, LineInfo, LocationId, ProfileBuilder};

    /// A profile of `main → drop_value` stacks, `recursing` of which go round the cycle
    /// `drop_value → drop_array → drop_value` once, and `plain` that do not.
    fn drops(recursing: i64, plain: i64) -> CallGraph {
        let mut b = ProfileBuilder::new(&[("samples", "count")]);
        let mut loc = |name: &str, line: i64| -> LocationId {
            let f = b.function(FunctionInfo {
                name,
                system_name: name,
                filename: "src/main.rs",
                start_line: line,
            });
            b.location(
                None,
                0,
                &[LineInfo {
                    function: f,
                    line: line + 1,
                    column: 0,
                }],
            )
        };
        let (main, value, array) = (loc("main", 1), loc("drop_value", 10), loc("drop_array", 20));
        b.add_sample(&[value, main], &[plain], &[]).unwrap();
        b.add_sample(&[value, array, value, main], &[recursing], &[])
            .unwrap();
        CallGraph::build(&b.build(), 0)
    }

    fn recursive(g: &CallGraph, name: &str) -> bool {
        let n = g
            .graph
            .node_indices()
            .find(|&n| g.graph[n].name == name)
            .unwrap();
        g.graph[n].recursive
    }

    #[test]
    fn a_cycle_counts_as_recursive_only_when_the_samples_go_round_it() {
        // 3 samples in 100 drop an array of values: the cycle is there, but rare.
        let rare = drops(3, 97);
        assert!(!recursive(&rare, "drop_value"));
        assert!(!recursive(&rare, "drop_array"));
        // Half of them: a recursive structure.
        let often = drops(50, 50);
        assert!(recursive(&often, "drop_value"));
        assert!(recursive(&often, "drop_array"));
        assert!(!recursive(&often, "main"));
    }
}
