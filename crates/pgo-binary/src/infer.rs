//! Block and edge count inference from IP samples (see [`Cfg::infer_counts`]).
//!
//! # Method
//!
//! 1. **Observation.** Each sample `(svma, weight)` is added to the block containing `svma`;
//!    samples outside every block are ignored. IP samples measure *time*, so a block's
//!    observed execution count is `w_b = weight_in_block / instructions_in_block` (every
//!    instruction is assumed to cost the same). Counts are therefore in "sample weight per
//!    instruction" units: proportional to execution counts, not absolute.
//! 2. **Repair as min-cost circulation** (the formulation of LLVM's profi, He et al., "Profile
//!    Inference Revisited", CGO 2022, without its post-processing). Every block `b` becomes a
//!    pair of nodes `in_b -> out_b`; the flow on that pair is the block's inferred count
//!    `f_b`, and the CFG edge `u -> v` is an arc `out_u -> in_v` of unbounded capacity. A
//!    source `S` feeds the entry block (and every block without predecessors: targets of
//!    unresolved jump tables); every block that can leave the function (return, tail call,
//!    indirect jump, trap, conditional jump to a `.cold` part) drains into a sink `T`; an arc
//!    `T -> S` closes the circulation. The cost of a block is piecewise linear in `f_b`:
//!    `COST_DEC * (w_b - f_b)` below the observation and `COST_INC * (f_b - w_b)` above it
//!    (`COST_INC_ZERO` for blocks without samples, slightly more than raising a sampled block,
//!    so cold code stays cold unless a path needs it; `COST_INC_DEAD_END`, prohibitive, for an
//!    unsampled block that ends in a trap or a call that never returns, such as a bounds
//!    check's panic, so an over-sampled block's surplus never drains there). A taken
//!    conditional branch costs `COST_TAKEN` per unit (compilers lay out the likely successor
//!    as fall-through), which only breaks ties. The minimum-cost circulation is computed
//!    exactly with primal-dual successive shortest paths: the "free up to `w_b`" part is
//!    pre-saturated (so residual costs are non-negative), then excess is routed to deficit in
//!    phases of one Dijkstra on reduced costs plus blocking flows on the zero-reduced-cost
//!    subgraph (integer costs, `f64` capacities).
//!
//! Properties: the result satisfies flow conservation at every block (inflow + entry flow =
//! count = outflow + exit flow, up to float rounding); it equals the observation when the
//! observation is already consistent; a block without samples between two hot blocks gets
//! the hot count (raising it costs 11 per unit, lowering both neighbours 40); an unsampled
//! side path (error handling) stays at 0. Among equally cheap solutions (two unsampled
//! parallel paths) the choice is arbitrary; profi's "even distribution" step is not done.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::cfg::{Cfg, EdgeKind, Terminator};

/// Per-unit cost of lowering a block below its observed count.
pub const COST_DEC: i64 = 20;
/// Per-unit cost of raising a sampled block above its observed count.
pub const COST_INC: i64 = 10;
/// Per-unit cost of raising a block that received no samples.
pub const COST_INC_ZERO: i64 = 11;
/// Per-unit cost of raising an unsampled block that ends the program or a thread (a panic,
/// `abort`, a trap): such a block runs once if at all, so it should never absorb the surplus
/// of an over-sampled neighbour (an instruction stalled on memory gathers samples for the
/// whole block; without this, the cheapest repair sent that surplus into a bounds check's
/// panic call).
pub const COST_INC_DEAD_END: i64 = 1000;
/// Per-unit cost of flow on a taken conditional branch (tie-breaker).
pub const COST_TAKEN: i64 = 1;

/// Result of [`Cfg::infer_counts`]. All vectors are indexed like [`Cfg::blocks`].
#[derive(Debug, Clone, PartialEq)]
pub struct BlockCounts {
    /// Inferred execution count per block.
    pub block: Vec<f64>,
    /// Inferred count per CFG edge `((from, to), count)`, one entry per element of
    /// `Block::successors`, in block then successor order.
    pub edges: Vec<((usize, usize), f64)>,
    /// Flow entering each block from outside the function (function entry, unknown
    /// predecessors such as jump tables). `block[b] = Σ in-edges + entry[b]`.
    pub entry: Vec<f64>,
    /// Flow leaving the function at each block (returns, tail calls, indirect jumps, ...).
    /// `block[b] = Σ out-edges + exit[b]`.
    pub exit: Vec<f64>,
    /// Observed counts before repair (`weight / instructions`).
    pub observed: Vec<f64>,
}

struct Arc {
    to: usize,
    cap: f64,
    cost: i64,
    rev: usize,
}

struct Net {
    adj: Vec<Vec<Arc>>,
}

impl Net {
    fn add(&mut self, u: usize, v: usize, cap: f64, cost: i64) -> (usize, usize) {
        let iu = self.adj[u].len();
        let iv = self.adj[v].len() + usize::from(u == v);
        self.adj[u].push(Arc {
            to: v,
            cap,
            cost,
            rev: iv,
        });
        self.adj[v].push(Arc {
            to: u,
            cap: 0.0,
            cost: -cost,
            rev: iu,
        });
        (u, iu)
    }
    /// Flow on the forward arc `(u, i)` = residual capacity of its reverse arc.
    fn flow(&self, (u, i): (usize, usize)) -> f64 {
        let a = &self.adj[u][i];
        self.adj[a.to][a.rev].cap
    }
}

impl Cfg {
    /// Estimate block and edge execution counts from IP samples `(svma, weight)` by
    /// min-cost-flow repair (see the [module docs](crate::infer) for the method and units).
    pub fn infer_counts(&self, samples: &[(u64, u64)]) -> BlockCounts {
        let n = self.blocks.len();
        let mut weight = vec![0f64; n];
        for &(a, w) in samples {
            if let Some(b) = self.block_of(a) {
                weight[b] += w as f64;
            }
        }
        let observed: Vec<f64> = weight
            .iter()
            .zip(&self.blocks)
            .map(|(w, b)| w / f64::from(b.instructions.max(1)))
            .collect();
        let total: f64 = observed.iter().sum();
        let eps = 1e-11 * (1.0 + total);

        let (s, t) = (2 * n, 2 * n + 1);
        let mut net = Net {
            adj: (0..2 * n + 2).map(|_| Vec::new()).collect(),
        };
        let mut excess = vec![0f64; 2 * n + 2];
        let mut block_arcs = Vec::with_capacity(n);
        for (b, &w) in observed.iter().enumerate() {
            let (i, o) = (2 * b, 2 * b + 1);
            let mut arcs = Vec::with_capacity(2);
            if w > eps {
                // Free (rewarded) part up to the observation, pre-saturated.
                let a = net.add(i, o, w, -COST_DEC);
                let rev = net.adj[a.0][a.1].rev;
                net.adj[a.0][a.1].cap = 0.0;
                net.adj[o][rev].cap = w;
                excess[o] += w;
                excess[i] -= w;
                arcs.push(a);
                arcs.push(net.add(i, o, f64::INFINITY, COST_INC));
            } else if matches!(
                self.blocks[b].terminator,
                Terminator::NoReturnCall | Terminator::Trap | Terminator::DecodeError
            ) {
                arcs.push(net.add(i, o, f64::INFINITY, COST_INC_DEAD_END));
            } else {
                arcs.push(net.add(i, o, f64::INFINITY, COST_INC_ZERO));
            }
            block_arcs.push(arcs);
        }
        let mut edge_arcs = Vec::new();
        let mut has_pred = vec![false; n];
        for (u, b) in self.blocks.iter().enumerate() {
            for &(v, k) in &b.successors {
                has_pred[v] = true;
                let cost = if k == EdgeKind::Taken { COST_TAKEN } else { 0 };
                edge_arcs.push(((u, v), net.add(2 * u + 1, 2 * v, f64::INFINITY, cost)));
            }
        }
        let mut entry_arcs = vec![None; n];
        let mut exit_arcs = vec![None; n];
        for (b, blk) in self.blocks.iter().enumerate() {
            if b == 0 || !has_pred[b] {
                entry_arcs[b] = Some(net.add(s, 2 * b, f64::INFINITY, 0));
            }
            if blk.terminator.leaves_function() || blk.calls.iter().any(|c| c.tail_call) {
                exit_arcs[b] = Some(net.add(2 * b + 1, t, f64::INFINITY, 0));
            }
        }
        net.add(t, s, f64::INFINITY, 0);

        successive_shortest_paths(&mut net, &mut excess, eps);

        let block = block_arcs
            .iter()
            .map(|arcs| arcs.iter().map(|&a| net.flow(a)).sum())
            .collect();
        let edges = edge_arcs.iter().map(|&(e, a)| (e, net.flow(a))).collect();
        let entry = entry_arcs
            .iter()
            .map(|a| a.map_or(0.0, |a| net.flow(a)))
            .collect();
        let exit = exit_arcs
            .iter()
            .map(|a| a.map_or(0.0, |a| net.flow(a)))
            .collect();
        BlockCounts {
            block,
            edges,
            entry,
            exit,
            observed,
        }
    }
}

/// Route all positive `excess` to negative `excess` at minimum cost (primal-dual successive
/// shortest paths). Precondition: every arc with positive residual capacity has a
/// non-negative cost, so the zero potential is feasible.
///
/// Each phase runs one multi-source Dijkstra on reduced costs, raises the potentials, then
/// saturates the zero-reduced-cost ("admissible") subgraph with Dinic-style blocking flows
/// (BFS levels, iterative DFS with current-arc pointers; no recursion, so deep CFGs cannot
/// overflow the stack). Costs are small integers, so the number of phases is bounded by the
/// longest shortest-path cost, not by the number of blocks.
fn successive_shortest_paths(net: &mut Net, excess: &mut [f64], eps: f64) {
    let nodes = net.adj.len();
    let mut potential = vec![0i64; nodes];
    let mut dist = vec![i64::MAX; nodes];
    let mut level = vec![u32::MAX; nodes];
    let mut cursor = vec![0usize; nodes];
    let mut queue = std::collections::VecDeque::new();
    let mut path: Vec<(usize, usize)> = Vec::new();
    let reduced = |net: &Net, p: &[i64], u: usize, i: usize| {
        let a = &net.adj[u][i];
        a.cost + p[u] - p[a.to]
    };
    // Phases are bounded by the total cost range; the cap only guards against float trouble.
    for _phase in 0..(4 * nodes + 64) {
        // Dijkstra from all excess nodes on reduced costs.
        dist.fill(i64::MAX);
        let mut heap = BinaryHeap::new();
        for v in 0..nodes {
            if excess[v] > eps {
                dist[v] = 0;
                heap.push(Reverse((0i64, v)));
            }
        }
        if heap.is_empty() {
            return;
        }
        let mut reach = i64::MAX;
        while let Some(Reverse((d, u))) = heap.pop() {
            if d > dist[u] || d > reach {
                continue;
            }
            if excess[u] < -eps {
                reach = reach.min(d);
                continue;
            }
            for (i, a) in net.adj[u].iter().enumerate() {
                if a.cap <= eps {
                    continue;
                }
                let nd = d + reduced(net, &potential, u, i).max(0);
                if nd < dist[a.to] {
                    dist[a.to] = nd;
                    heap.push(Reverse((nd, a.to)));
                }
            }
        }
        if reach == i64::MAX {
            return; // infeasible remainder (cannot happen: every block can cancel itself)
        }
        for v in 0..nodes {
            potential[v] += dist[v].min(reach);
        }
        // Blocking flows on the admissible subgraph until no augmenting path is left.
        loop {
            level.fill(u32::MAX);
            queue.clear();
            for v in 0..nodes {
                if excess[v] > eps {
                    level[v] = 0;
                    queue.push_back(v);
                }
            }
            let mut found = false;
            while let Some(u) = queue.pop_front() {
                if excess[u] < -eps {
                    found = true;
                    continue; // do not route through a sink
                }
                for (i, a) in net.adj[u].iter().enumerate() {
                    if a.cap > eps && level[a.to] == u32::MAX && reduced(net, &potential, u, i) == 0
                    {
                        level[a.to] = level[u] + 1;
                        queue.push_back(a.to);
                    }
                }
            }
            if !found {
                break;
            }
            cursor.fill(0);
            for s in 0..nodes {
                while excess[s] > eps && level[s] == 0 {
                    // Iterative DFS from s along level-increasing admissible arcs.
                    path.clear();
                    let mut u = s;
                    let reached = loop {
                        if excess[u] < -eps && u != s {
                            break true;
                        }
                        let mut advanced = false;
                        while cursor[u] < net.adj[u].len() {
                            let i = cursor[u];
                            let a = &net.adj[u][i];
                            if a.cap > eps
                                && level[a.to] == level[u].wrapping_add(1)
                                && reduced(net, &potential, u, i) == 0
                            {
                                path.push((u, i));
                                u = a.to;
                                advanced = true;
                                break;
                            }
                            cursor[u] += 1;
                        }
                        if !advanced {
                            level[u] = u32::MAX; // dead end
                            match path.pop() {
                                Some((p, i)) => {
                                    cursor[p] = i + 1;
                                    u = p;
                                }
                                None => break false,
                            }
                        }
                    };
                    if !reached {
                        break;
                    }
                    let t = u;
                    let mut delta = excess[s].min(-excess[t]);
                    for &(u, i) in &path {
                        delta = delta.min(net.adj[u][i].cap);
                    }
                    for &(u, i) in &path {
                        let (to, rev) = (net.adj[u][i].to, net.adj[u][i].rev);
                        let a = &mut net.adj[u][i];
                        a.cap -= delta;
                        if a.cap <= eps {
                            a.cap = 0.0;
                        }
                        net.adj[to][rev].cap += delta;
                    }
                    excess[s] -= delta;
                    excess[t] += delta;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FunctionSym;
    use crate::cfg::{Block, Terminator};

    /// Blocks of 1 instruction at addresses 0, 1, 2, ... with the given successors.
    fn cfg(succ: &[&[(usize, EdgeKind)]], terms: &[Terminator]) -> Cfg {
        Cfg {
            function: FunctionSym {
                name: "f".into(),
                start: 0,
                size: succ.len() as u64,
            },
            blocks: succ
                .iter()
                .zip(terms)
                .enumerate()
                .map(|(i, (s, &t))| Block {
                    start: i as u64,
                    end: i as u64 + 1,
                    instructions: 1,
                    successors: s.to_vec(),
                    calls: Vec::new(),
                    terminator: t,
                })
                .collect(),
        }
    }

    fn conserved(c: &Cfg, r: &BlockCounts) {
        let mut inn = r.entry.clone();
        let mut out = r.exit.clone();
        for &((u, v), f) in &r.edges {
            out[u] += f;
            inn[v] += f;
        }
        for b in 0..c.blocks.len() {
            assert!((inn[b] - r.block[b]).abs() < 1e-6, "{b}: {r:?}");
            assert!((out[b] - r.block[b]).abs() < 1e-6, "{b}: {r:?}");
        }
    }

    use EdgeKind::*;
    use Terminator as T;

    /// 0 -> {1 hot, 2 cold} -> 3 -> back to 0 or exit.
    fn diamond_loop() -> Cfg {
        cfg(
            &[
                &[(2, Taken), (1, NotTaken)],
                &[(3, Jump)],
                &[(3, Fallthrough)],
                &[(0, Taken), (4, NotTaken)],
                &[],
            ],
            &[T::Branch, T::Jump, T::Fallthrough, T::Branch, T::Return],
        )
    }

    #[test]
    fn consistent_observation_is_kept() {
        let c = diamond_loop();
        let r = c.infer_counts(&[(0, 100), (1, 100), (3, 100), (4, 1)]);
        conserved(&c, &r);
        assert!((r.block[0] - 100.0).abs() < 1e-9);
        assert!((r.block[1] - 100.0).abs() < 1e-9);
        assert!(r.block[2].abs() < 1e-9);
        assert!((r.block[4] - 1.0).abs() < 1e-9);
    }

    #[test]
    fn unsampled_block_on_hot_path_is_filled() {
        let c = diamond_loop();
        // Block 3 (the latch) has no samples but both neighbours are hot.
        let r = c.infer_counts(&[(0, 100), (1, 100), (4, 1)]);
        conserved(&c, &r);
        assert!(r.block[3] > 99.0, "{r:?}");
        assert!(r.block[2] < 1e-9, "{r:?}");
    }

    #[test]
    fn inconsistent_counts_are_repaired() {
        let c = diamond_loop();
        let r = c.infer_counts(&[(0, 100), (1, 70), (2, 10), (3, 90)]);
        conserved(&c, &r);
        assert!(r.block.iter().all(|&x| x >= 0.0));
        // Raising is cheaper than lowering: the loop keeps (about) the header's count.
        assert!(r.block[0] >= 90.0, "{r:?}");
    }

    #[test]
    fn empty_and_sampleless() {
        let c = cfg(&[], &[]);
        let r = c.infer_counts(&[(5, 5)]);
        assert!(r.block.is_empty());
        let c = diamond_loop();
        let r = c.infer_counts(&[]);
        assert!(r.block.iter().all(|&x| x == 0.0));
    }

    /// The shape of an interpreter's `Assign::eval` in the profiled build: the entry block
    /// (a virtual call, then a store that stalls on forwarding) gathers 20x the samples per
    /// instruction of the blocks after it, all of which run exactly as often.
    #[test]
    fn an_over_sampled_block_does_not_feed_a_panic() {
        for dead_end in [T::Trap, T::NoReturnCall] {
            let c = cfg(
                &[
                    &[(3, Taken), (1, NotTaken)], // bounds check
                    &[(2, Fallthrough)],
                    &[],
                    &[], // `call panic_bounds_check`
                ],
                &[T::Branch, T::Fallthrough, T::Return, dead_end],
            );
            let r = c.infer_counts(&[(0, 200), (1, 10), (2, 10)]);
            conserved(&c, &r);
            assert!(r.block[3] < 1e-9, "{dead_end:?}: {r:?}");
            assert!((r.block[0] - r.block[2]).abs() < 1e-9, "{r:?}");
            // A panic the samples saw is still counted.
            let r = c.infer_counts(&[(0, 10), (1, 10), (2, 10), (3, 5)]);
            conserved(&c, &r);
            assert!(r.block[3] > 4.0, "{r:?}");
        }
    }

    #[test]
    fn self_loop_and_parallel_edges() {
        let c = cfg(
            &[
                &[(0, Taken), (1, NotTaken)],
                &[(2, Taken), (2, NotTaken)],
                &[],
            ],
            &[T::Branch, T::Branch, T::Return],
        );
        let r = c.infer_counts(&[(0, 50), (2, 5)]);
        conserved(&c, &r);
        assert!((r.block[0] - 50.0).abs() < 1e-9);
        assert!((r.block[1] - 5.0).abs() < 1e-9, "{r:?}");
    }
}
