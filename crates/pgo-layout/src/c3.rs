//! Function ordering with C3, "call-chain clustering".
//!
//! Reference: G. Ottoni and B. Maher, "Optimizing Function Placement for
//! Large-Scale Data-Center Applications", CGO 2017; the variant implemented
//! here follows the `clusterize` routine of HHVM's hfsort and BOLT's
//! `-reorder-functions=hfsort` (`bolt/lib/Passes/HFSort.cpp`).
//!
//! # Exact rules
//!
//! 1. **Hot / cold.** A function is *hot* if its `weight > 0` or it is the
//!    caller or callee of at least one edge with `weight > 0` (self-edges
//!    included). All other functions are *cold*; they are returned in
//!    [`FunctionOrder::cold`] in increasing index order and take no part in
//!    clustering.
//! 2. **Arcs.** Edges with `weight == 0` and self-edges (`caller == callee`)
//!    are ignored for clustering. Parallel edges with the same
//!    `(caller, callee)` are summed (saturating).
//! 3. **Initial clusters.** Every hot function starts in its own cluster.
//! 4. **Processing order.** Hot functions are visited once each, by
//!    decreasing `weight` ([`ProcessOrder::Weight`], the paper's "decreasing
//!    hotness", the default) or by decreasing density `weight / max(size, 1)`
//!    ([`ProcessOrder::Density`], what hfsort/BOLT actually do); ties by
//!    increasing function index.
//! 5. **Most frequent caller.** For the visited function `f`, the candidate
//!    is the caller `p` with the largest summed arc weight `w(p → f)`; ties
//!    go to the smallest caller index. No candidate → `f` is not merged. Only
//!    this one caller is tried (no fallback to the second-best caller).
//! 6. **Merge conditions** (all must hold; otherwise `f` stays where it is):
//!    * `f.weight == 0` or `w(p → f) ≥ min_arc_probability × f.weight`
//!      (BOLT's "don't merge if the caller is too cold", default 0.1);
//!    * `cluster(p) != cluster(f)`;
//!    * `size(cluster(p)) + size(cluster(f)) ≤ max_cluster_size`
//!      (sizes are the plain sums of `FunctionNode::size`; default 4096, the
//!      page size used by HHVM's hfsort);
//!    * `density(cluster(p)) ≤ density(merged) × max_density_degradation`
//!      where `density = Σweight / max(Σsize, 1)` (default 8.0, as in hfsort:
//!      the caller cluster's density may not drop by more than 8×).
//! 7. **Merge.** The whole cluster of `f` is appended after the cluster of
//!    `p` (callee cluster goes right after the caller cluster, keeping both
//!    internal orders).
//! 8. **Final order.** Surviving clusters are sorted by density descending
//!    (compared exactly with integer cross-multiplication), ties broken by
//!    the index of the cluster's first function (ascending). The hot order is
//!    the concatenation of the clusters; `order = hot ++ cold`.
//!
//! Sizes of 0 are allowed; for density purposes a size is taken as at least 1.

use std::cmp::{Ordering, Reverse};

/// One function of the call graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct FunctionNode {
    /// Code size in bytes.
    pub size: u64,
    /// Profile weight: samples attributed to this function.
    pub weight: u64,
}

/// A weighted call edge `caller → callee` (an arc of the call graph).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct CallEdge {
    /// Index into the node slice of the calling function.
    pub caller: usize,
    /// Index into the node slice of the called function.
    pub callee: usize,
    /// Call frequency (samples or call counts).
    pub weight: u64,
}

/// Order in which C3 visits functions (rule 4 of the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum ProcessOrder {
    /// Decreasing `weight`, as described in the C3 paper.
    #[default]
    Weight,
    /// Decreasing `weight / max(size, 1)`, as HHVM's hfsort and BOLT do.
    Density,
}

/// Tunables of [`order_functions_with`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct C3Config {
    /// Maximum size in bytes of a merged cluster. Default 4096.
    pub max_cluster_size: u64,
    /// A merge is refused if the caller cluster's density would drop by more
    /// than this factor. Default 8.0. Use `f64::INFINITY` to disable.
    pub max_density_degradation: f64,
    /// A merge is refused if `w(caller → f) < min_arc_probability × f.weight`.
    /// Default 0.1. Use 0.0 to disable.
    pub min_arc_probability: f64,
    /// Visiting order. Default [`ProcessOrder::Weight`].
    pub process_order: ProcessOrder,
}

impl Default for C3Config {
    fn default() -> Self {
        Self {
            max_cluster_size: 4096,
            max_density_degradation: 8.0,
            min_arc_probability: 0.1,
            process_order: ProcessOrder::Weight,
        }
    }
}

/// Result of [`order_functions`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FunctionOrder {
    /// Every function index exactly once: `hot` followed by `cold`.
    pub order: Vec<usize>,
    /// Hot functions in layout order (concatenation of `clusters`).
    pub hot: Vec<usize>,
    /// Cold functions (zero weight, no hot edge), by increasing index.
    pub cold: Vec<usize>,
    /// The final clusters in layout order; `hot` is their concatenation.
    pub clusters: Vec<Vec<usize>>,
}

/// C3 with [`C3Config::default`]. See the module docs for the exact rules.
///
/// # Panics
/// If an edge refers to a node index `>= nodes.len()`.
pub fn order_functions(nodes: &[FunctionNode], edges: &[CallEdge]) -> FunctionOrder {
    order_functions_with(nodes, edges, &C3Config::default())
}

/// C3 with explicit tunables. See the module docs for the exact rules.
///
/// # Panics
/// If an edge refers to a node index `>= nodes.len()`.
pub fn order_functions_with(
    nodes: &[FunctionNode],
    edges: &[CallEdge],
    config: &C3Config,
) -> FunctionOrder {
    let n = nodes.len();
    for e in edges {
        assert!(
            e.caller < n && e.callee < n,
            "call edge {} -> {} out of range for {} functions",
            e.caller,
            e.callee,
            n
        );
    }

    // Rule 1: hotness.
    let mut is_hot: Vec<bool> = nodes.iter().map(|f| f.weight > 0).collect();
    for e in edges.iter().filter(|e| e.weight > 0) {
        is_hot[e.caller] = true;
        is_hot[e.callee] = true;
    }

    // Rules 2 and 5: summed arcs, best caller per callee.
    let mut arcs: Vec<(usize, usize, u64)> = edges
        .iter()
        .filter(|e| e.weight > 0 && e.caller != e.callee)
        .map(|e| (e.callee, e.caller, e.weight))
        .collect();
    arcs.sort_unstable_by_key(|&(callee, caller, _)| (callee, caller));
    let mut best_caller: Vec<Option<(usize, u64)>> = vec![None; n];
    let mut i = 0;
    while i < arcs.len() {
        let (callee, caller, _) = arcs[i];
        let mut w = 0u64;
        while i < arcs.len() && arcs[i].0 == callee && arcs[i].1 == caller {
            w = w.saturating_add(arcs[i].2);
            i += 1;
        }
        // Callers arrive in increasing index order: strict `>` keeps the
        // smallest index on ties.
        if best_caller[callee].is_none_or(|(_, bw)| w > bw) {
            best_caller[callee] = Some((caller, w));
        }
    }

    // Rule 3: singleton clusters, identified by their first function.
    let mut cluster_of: Vec<usize> = (0..n).collect();
    let mut members: Vec<Vec<usize>> = (0..n)
        .map(|i| if is_hot[i] { vec![i] } else { Vec::new() })
        .collect();
    let mut csize: Vec<u64> = nodes.iter().map(|f| f.size).collect();
    let mut cweight: Vec<u64> = nodes.iter().map(|f| f.weight).collect();

    // Rule 4: processing order.
    let mut visit: Vec<usize> = (0..n).filter(|&i| is_hot[i]).collect();
    match config.process_order {
        ProcessOrder::Weight => visit.sort_by_key(|&i| (Reverse(nodes[i].weight), i)),
        ProcessOrder::Density => visit.sort_by(|&a, &b| {
            cmp_density_desc(
                nodes[a].weight,
                nodes[a].size,
                nodes[b].weight,
                nodes[b].size,
            )
            .then(a.cmp(&b))
        }),
    }

    // Rules 5-7.
    for f in visit {
        let Some((caller, arc_w)) = best_caller[f] else {
            continue;
        };
        let fw = nodes[f].weight;
        if fw > 0 && (arc_w as f64) < config.min_arc_probability * fw as f64 {
            continue;
        }
        let c = cluster_of[f];
        let p = cluster_of[caller];
        if c == p {
            continue;
        }
        let merged_size = csize[p].saturating_add(csize[c]);
        if merged_size > config.max_cluster_size {
            continue;
        }
        let merged_weight = cweight[p].saturating_add(cweight[c]);
        let pred_density = cweight[p] as f64 / csize[p].max(1) as f64;
        let new_density = merged_weight as f64 / merged_size.max(1) as f64;
        if pred_density > new_density * config.max_density_degradation {
            continue;
        }
        let moved = std::mem::take(&mut members[c]);
        for &g in &moved {
            cluster_of[g] = p;
        }
        members[p].extend(moved);
        csize[p] = merged_size;
        cweight[p] = merged_weight;
    }

    // Rule 8: sort surviving clusters by density.
    let mut ids: Vec<usize> = (0..n).filter(|&c| !members[c].is_empty()).collect();
    ids.sort_by(|&a, &b| {
        cmp_density_desc(cweight[a], csize[a], cweight[b], csize[b]).then(a.cmp(&b))
    });
    let clusters: Vec<Vec<usize>> = ids
        .into_iter()
        .map(|c| std::mem::take(&mut members[c]))
        .collect();
    let hot: Vec<usize> = clusters.iter().flatten().copied().collect();
    let cold: Vec<usize> = (0..n).filter(|&i| !is_hot[i]).collect();
    let order = hot.iter().chain(cold.iter()).copied().collect();
    FunctionOrder {
        order,
        hot,
        cold,
        clusters,
    }
}

/// Exact "higher density first" comparison of `wa / max(sa,1)` and
/// `wb / max(sb,1)`.
fn cmp_density_desc(wa: u64, sa: u64, wb: u64, sb: u64) -> Ordering {
    let lhs = u128::from(wa) * u128::from(sb.max(1));
    let rhs = u128::from(wb) * u128::from(sa.max(1));
    rhs.cmp(&lhs)
}
