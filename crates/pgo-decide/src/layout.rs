//! Function order (C3 call-chain clustering) and basic-block order (ext-TSP), via `pgo-layout`.

use petgraph::graph::{EdgeIndex, NodeIndex};
use petgraph::visit::EdgeRef;
use pgo_graph::CallGraph;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::{BinaryFacts, BlockLayout, FunctionRef, Layout, function_ref, is_named};

/// Assumed code size of a function when there is no binary to ask (a typical small function).
const UNKNOWN_SIZE: u64 = 128;

/// Functions get a block layout when they hold at least this share of the samples.
const BLOCK_LAYOUT_MIN_SHARE: f64 = 0.5;

pub(crate) fn decide_layout(
    g: &CallGraph,
    binary: Option<&dyn BinaryFacts>,
    hot: &FxHashSet<EdgeIndex>,
) -> Layout {
    // The functions placed by the layout: named code, in the profiled binary when one is given.
    let placed: Vec<NodeIndex> = g
        .graph
        .node_indices()
        .filter(|&n| is_named(g, n) && binary.is_none_or(|b| b.contains(&g.graph[n].binary)))
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
            weight: g.graph[n].self_weight.max(0) as u64,
        })
        .collect();
    // Real calls only: an inlined call is inside one function already.
    let edges: Vec<pgo_layout::CallEdge> = g
        .graph
        .edge_references()
        .filter(|e| !e.weight().inlined && hot.contains(&e.id()))
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
        "C3 call-chain clustering over {} hot call edges: each function joins its heaviest caller's cluster (up to {} bytes), clusters by density; sizes {}",
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
            .filter(|&n| {
                g.share(g.graph[n].self_weight) >= BLOCK_LAYOUT_MIN_SHARE
                    && !g.graph[n].addresses.is_empty()
            })
            .collect();
        candidates.sort_by(|&x, &y| {
            g.graph[y]
                .self_weight
                .cmp(&g.graph[x].self_weight)
                .then_with(|| g.graph[x].linkage_name.cmp(&g.graph[y].linkage_name))
        });
        for n in candidates {
            let samples: Vec<(u64, &pgo_graph::MappedFile, i64)> = g.graph[n]
                .addresses
                .iter()
                .filter_map(|s| Some((s.address, g.mapping(s.mapping)?, s.weight)))
                .collect();
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
