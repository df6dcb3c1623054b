//! Function order (C3 call-chain clustering) and basic-block order (ext-TSP), via `pgo-layout`.

use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use pgo_graph::CallGraph;
use rustc_hash::FxHashMap;

use crate::{BinaryFacts, BlockLayout, FunctionRef, Layout, function_ref, is_named};

/// Assumed code size of a function when there is no binary to ask (a typical small function).
const UNKNOWN_SIZE: u64 = 128;

/// Functions get a block layout when they hold at least this share of the samples.
const BLOCK_LAYOUT_MIN_SHARE: f64 = 0.5;

/// Samples taken in the function's own machine code (including code inlined into it): what a
/// linker can place. A function that only exists inlined into others has none.
fn physical_weight(g: &CallGraph, n: NodeIndex) -> i64 {
    g.graph[n].addresses.iter().map(|a| a.weight).sum()
}

pub(crate) fn decide_layout(g: &CallGraph, binary: Option<&dyn BinaryFacts>) -> Layout {
    let physical: Vec<i64> = g
        .graph
        .node_indices()
        .map(|n| physical_weight(g, n))
        .collect();
    let physical_weight = |_: &CallGraph, n: NodeIndex| physical[n.index()];
    // The functions placed by the layout: real functions of the profiled binary (a symbol of
    // it, when it is given), not functions that only exist inlined into others.
    let real_call = |n: NodeIndex| {
        g.graph
            .edges_directed(n, petgraph::Direction::Incoming)
            .any(|e| !e.weight().inlined && e.weight().weight > 0)
    };
    let placed: Vec<NodeIndex> = g
        .graph
        .node_indices()
        .filter(|&n| is_named(g, n))
        .filter(|&n| match binary {
            Some(b) => {
                b.contains(&g.graph[n].binary)
                    && b.function_size(&g.graph[n].linkage_name).is_some()
            }
            None => physical_weight(g, n) > 0 || real_call(n),
        })
        .filter(|&n| g.graph[n].cum_weight > 0)
        .collect();
    let index: FxHashMap<NodeIndex, usize> =
        placed.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let nodes: Vec<pgo_layout::FunctionNode> = placed
        .iter()
        .map(|&n| pgo_layout::FunctionNode {
            size: binary
                .and_then(|b| b.function_size(&g.graph[n].linkage_name))
                .unwrap_or(UNKNOWN_SIZE),
            weight: physical_weight(g, n).max(0) as u64,
        })
        .collect();
    // Real calls only: an inlined call is inside one function already. Weighted by all the
    // samples through the call, as C3 wants call frequency between placed functions.
    let edges: Vec<pgo_layout::CallEdge> = g
        .graph
        .edge_references()
        .filter(|e| !e.weight().inlined && e.weight().weight > 0)
        .filter_map(|e| {
            Some(pgo_layout::CallEdge {
                caller: *index.get(&e.source())?,
                callee: *index.get(&e.target())?,
                weight: e.weight().weight.max(0) as u64,
            })
        })
        .collect();
    // The node list above is in graph order, which depends on sample order; sort it by name
    // first so the same profile content always gives the same layout.
    let mut by_name: Vec<usize> = (0..placed.len()).collect();
    by_name.sort_by(|&a, &b| {
        g.graph[placed[a]]
            .linkage_name
            .cmp(&g.graph[placed[b]].linkage_name)
    });
    let rank: Vec<usize> = {
        let mut r = vec![0; placed.len()];
        for (pos, &i) in by_name.iter().enumerate() {
            r[i] = pos;
        }
        r
    };
    let sorted_nodes: Vec<pgo_layout::FunctionNode> = by_name.iter().map(|&i| nodes[i]).collect();
    let sorted_edges: Vec<pgo_layout::CallEdge> = edges
        .iter()
        .map(|e| pgo_layout::CallEdge {
            caller: rank[e.caller],
            callee: rank[e.callee],
            weight: e.weight,
        })
        .collect();
    let order = pgo_layout::order_functions(&sorted_nodes, &sorted_edges);
    let node_at = |i: usize| placed[by_name[i]];
    let function_order: Vec<FunctionRef> = order
        .hot
        .iter()
        .map(|&i| function_ref(g, node_at(i)))
        .collect();
    let cold_functions: Vec<FunctionRef> = order
        .cold
        .iter()
        .map(|&i| function_ref(g, node_at(i)))
        .collect();
    let reason = format!(
        "C3 call-chain clustering over {} calls between placed functions: each function joins its heaviest caller's cluster (up to {} bytes), clusters by density; sizes {}",
        sorted_edges.len(),
        pgo_layout::C3Config::default().max_cluster_size,
        if binary.is_some() {
            "from the binary's symbol table"
        } else {
            "assumed (no --binary)"
        }
    );

    let mut blocks = Vec::new();
    if let Some(b) = binary {
        let mut candidates: Vec<NodeIndex> = placed
            .iter()
            .copied()
            .filter(|&n| g.share(physical_weight(g, n)) >= BLOCK_LAYOUT_MIN_SHARE)
            .collect();
        candidates.sort_by(|&x, &y| {
            physical_weight(g, y)
                .cmp(&physical_weight(g, x))
                .then_with(|| g.graph[x].linkage_name.cmp(&g.graph[y].linkage_name))
        });
        for n in candidates {
            let samples = crate::sampled(g, n);
            if let Some((order, hot_blocks, reason)) =
                b.block_layout(&g.graph[n].linkage_name, &samples)
            {
                blocks.push(BlockLayout {
                    function: function_ref(g, n),
                    order,
                    hot_blocks,
                    reason,
                });
            }
        }
    }
    Layout {
        function_order,
        cold_functions,
        reason,
        blocks,
    }
}
