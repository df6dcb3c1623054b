//! Basic-block ordering maximizing the ext-TSP objective.
//!
//! Reference: A. Newell and S. Pupyrev, "Improved Basic Block Reordering",
//! IEEE Transactions on Computers 2020; the greedy chain-merging procedure
//! follows LLVM's `llvm/lib/Transforms/Utils/CodeLayout.cpp`
//! (`applyExtTspLayout`), which BOLT's `-reorder-blocks=ext-tsp` also uses.
//!
//! # Objective
//!
//! Blocks are laid out back to back; block `b` occupies
//! `[addr(b), addr(b) + size(b))`. For a jump `src → dst` with count `c`,
//! let `end = addr(src) + size(src)`:
//!
//! * `end == addr(dst)` (fallthrough): `c × 1.0`;
//! * `end < addr(dst)`, `d = addr(dst) − end < 1024` (forward):
//!   `c × 0.1 × (1 − d/1024)`;
//! * `end > addr(dst)`, `d = end − addr(dst) < 640` (backward):
//!   `c × 0.1 × (1 − d/640)`;
//! * otherwise 0.
//!
//! The fallthrough test is on addresses (as in LLVM), which is the same as
//! "dst immediately follows src" whenever all sizes are non-zero. A self-loop
//! is a backward jump of distance `size(src)`. The score of a layout is the
//! sum over all edges ([`ext_tsp_score`]).
//!
//! # Algorithm ([`order_blocks_with`])
//!
//! 1. Counts that are NaN or `≤ 0` are treated as 0. A block is *hot* if its
//!    count is `> 0` or it is the entry block; other blocks are *cold*.
//!    Edges with count 0, self-edges, and edges touching a cold block do not
//!    take part in merging (they still count in [`ext_tsp_score`]). Parallel
//!    edges are summed.
//! 2. Every hot block starts as its own chain. Two chains are *adjacent* if
//!    an edge connects them; only adjacent chains are merge candidates.
//! 3. For an adjacent pair, with `X` the chain that may be split and `Y` the
//!    other one, the candidate layouts are (LLVM's merge types):
//!    * `X·Y` (plain concatenation);
//!    * `X1·Y·X2`, `Y·X2·X1`, `X2·X1·Y` for a split `X = X1·X2` at offset
//!      `k` (`0 < k < len(X)`): every `k` if `len(X) ≤ split_threshold`
//!      (default 128); otherwise only the `k` that make a jump
//!      `X → first(Y)` or `last(Y) → X` a fallthrough (as LLVM).
//!      Split variants are skipped entirely if `split_merges` is false.
//!
//!    Both orientations (`X = A, Y = B` and `X = B, Y = A`) are tried.
//!    A layout is rejected if either chain contains the entry block and the
//!    entry block would not be first.
//!    The gain of a layout is (score of the jumps inside `X` and between `X`
//!    and `Y` in the new layout) − (score of the jumps inside `X` now); the
//!    jumps inside `Y` are unaffected. The best layout of a pair is the
//!    first one with strictly greatest gain in the order listed above.
//! 4. A pair is skipped if the merged chain would have more than
//!    `max_chain_blocks` blocks (default 512, LLVM's `ext-tsp-max-chain-size`)
//!    or if the ratio of the two chains' densities exceeds
//!    `max_merge_density_ratio` (default 100, LLVM's
//!    `ext-tsp-max-merge-density-ratio`); density is `Σcount / Σmax(size,1)`,
//!    and the ratio test is skipped if either density is 0.
//! 5. Repeatedly merge the pair with the greatest gain; gains within
//!    `1e-8` of each other are ties, broken by the smallest
//!    `(id(X), id(Y))`, where a chain's id is the index of the block it
//!    started from (the merged chain keeps `X`'s id). Stop when no pair has a
//!    gain `> 1e-8`.
//! 6. Final order: the entry chain first, then the other hot chains by
//!    density descending, ties by the smallest block index in the chain;
//!    then all cold blocks in increasing index order. `hot_len` is the number
//!    of hot blocks.
//!
//! Cost: each merge step scans the adjacent chain pairs (O(E)) with cached
//! gains; only pairs involving the merged chain are re-evaluated. Each
//! candidate layout costs O(jumps between the pair + jumps inside X), and
//! only jumps crossing the split point are re-scored. At most `n − 1`
//! merges, so roughly O(n·E) plus the split scans (≤ 3 × 128 layouts/pair).

use std::collections::BTreeMap;

/// Score multiplier of a fallthrough.
pub const FALLTHROUGH_WEIGHT: f64 = 1.0;
/// Score multiplier of a forward jump at distance 0.
pub const FORWARD_WEIGHT: f64 = 0.1;
/// Score multiplier of a backward jump at distance 0.
pub const BACKWARD_WEIGHT: f64 = 0.1;
/// Forward jumps at this distance (bytes) or more score 0.
pub const FORWARD_DISTANCE: u64 = 1024;
/// Backward jumps at this distance (bytes) or more score 0.
pub const BACKWARD_DISTANCE: u64 = 640;

const EPS: f64 = 1e-8;

/// One basic block.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Block {
    /// Size in bytes.
    pub size: u64,
    /// Execution count.
    pub count: f64,
}

/// A control-flow edge `src → dst` with its execution count.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BlockEdge {
    /// Source block index.
    pub src: usize,
    /// Destination block index.
    pub dst: usize,
    /// How many times the edge was taken.
    pub count: f64,
}

/// Result of [`order_blocks`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockOrder {
    /// Every block index exactly once.
    pub order: Vec<usize>,
    /// `order[..hot_len]` are hot blocks, `order[hot_len..]` cold ones.
    pub hot_len: usize,
}

/// Tunables of [`order_blocks_with`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExtTspConfig {
    /// Maximum number of blocks in a merged chain. Default 512.
    pub max_chain_blocks: usize,
    /// Chains with at most this many blocks are tried at every split
    /// offset. Default 128.
    pub split_threshold: usize,
    /// Maximum ratio between the densities of two merged chains.
    /// Default 100.0; `f64::INFINITY` disables the check.
    pub max_merge_density_ratio: f64,
    /// Try the split-merge layouts, not only concatenation. Default true.
    pub split_merges: bool,
}

impl Default for ExtTspConfig {
    fn default() -> Self {
        Self {
            max_chain_blocks: 512,
            split_threshold: 128,
            max_merge_density_ratio: 100.0,
            split_merges: true,
        }
    }
}

/// Score of one jump given the source address and size and the destination
/// address (see the module docs).
pub fn jump_score(src_addr: u64, src_size: u64, dst_addr: u64, count: f64) -> f64 {
    let end = src_addr + src_size;
    if end == dst_addr {
        count * FALLTHROUGH_WEIGHT
    } else if end < dst_addr {
        let d = dst_addr - end;
        if d < FORWARD_DISTANCE {
            count * FORWARD_WEIGHT * (1.0 - d as f64 / FORWARD_DISTANCE as f64)
        } else {
            0.0
        }
    } else {
        let d = end - dst_addr;
        if d < BACKWARD_DISTANCE {
            count * BACKWARD_WEIGHT * (1.0 - d as f64 / BACKWARD_DISTANCE as f64)
        } else {
            0.0
        }
    }
}

fn clean_count(c: f64) -> f64 {
    if c > 0.0 { c } else { 0.0 }
}

/// ext-TSP score of laying out `order` back to back from address 0.
///
/// Edges whose source or destination is not in `order` contribute 0; NaN
/// and non-positive counts contribute 0.
///
/// # Panics
/// If `order` or an edge refers to a block index `>= blocks.len()`.
pub fn ext_tsp_score(order: &[usize], blocks: &[Block], edges: &[BlockEdge]) -> f64 {
    let mut addr: Vec<Option<u64>> = vec![None; blocks.len()];
    let mut cur = 0u64;
    for &b in order {
        addr[b] = Some(cur);
        cur += blocks[b].size;
    }
    let mut score = 0.0;
    for e in edges {
        if let (Some(s), Some(d)) = (addr[e.src], addr[e.dst]) {
            score += jump_score(s, blocks[e.src].size, d, clean_count(e.count));
        }
    }
    score
}

/// ext-TSP block ordering with [`ExtTspConfig::default`].
///
/// # Panics
/// If `entry` or an edge endpoint is `>= blocks.len()` (an empty `blocks`
/// slice returns an empty order regardless of `entry`).
pub fn order_blocks(blocks: &[Block], edges: &[BlockEdge], entry: usize) -> BlockOrder {
    order_blocks_with(blocks, edges, entry, &ExtTspConfig::default())
}

/// ext-TSP block ordering with explicit tunables. See the module docs.
///
/// # Panics
/// If `entry` or an edge endpoint is `>= blocks.len()` (an empty `blocks`
/// slice returns an empty order regardless of `entry`).
pub fn order_blocks_with(
    blocks: &[Block],
    edges: &[BlockEdge],
    entry: usize,
    config: &ExtTspConfig,
) -> BlockOrder {
    let n = blocks.len();
    if n == 0 {
        return BlockOrder::default();
    }
    assert!(entry < n, "entry block {entry} out of range for {n} blocks");
    for e in edges {
        assert!(
            e.src < n && e.dst < n,
            "block edge {} -> {} out of range for {} blocks",
            e.src,
            e.dst,
            n
        );
    }
    let is_hot: Vec<bool> = (0..n)
        .map(|i| i == entry || clean_count(blocks[i].count) > 0.0)
        .collect();

    let mut st = State::new(blocks, edges, entry, &is_hot, config);
    st.merge_chains();

    let mut chains: Vec<usize> = (0..st.chains.len())
        .filter(|&c| st.chains[c].alive)
        .collect();
    let entry_chain = st.chain_of[entry];
    let min_block: Vec<usize> = st
        .chains
        .iter()
        .map(|c| c.blocks.iter().copied().min().unwrap_or(usize::MAX))
        .collect();
    chains.sort_by(|&a, &b| {
        (b == entry_chain)
            .cmp(&(a == entry_chain))
            .then_with(|| st.chains[b].density().total_cmp(&st.chains[a].density()))
            .then(min_block[a].cmp(&min_block[b]))
    });
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for c in chains {
        order.extend_from_slice(&st.chains[c].blocks);
    }
    let hot_len = order.len();
    order.extend((0..n).filter(|&i| !is_hot[i]));
    BlockOrder { order, hot_len }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MergeKind {
    /// `X1·Y·X2`; with `k == len(X)` this is plain `X·Y`.
    X1YX2,
    /// `Y·X2·X1`.
    YX2X1,
    /// `X2·X1·Y`.
    X2X1Y,
}

#[derive(Debug, Clone, Copy)]
struct Gain {
    score: f64,
    offset: usize,
    kind: MergeKind,
}

struct Jump {
    src: usize,
    dst: usize,
    count: f64,
}

struct Chain {
    blocks: Vec<usize>,
    /// Sum of raw sizes (bytes).
    bytes: u64,
    /// Sum of `max(size, 1)` for density.
    dsize: f64,
    count: f64,
    internal: Vec<usize>,
    /// Adjacent chain → chain-edge index.
    adj: BTreeMap<usize, usize>,
    alive: bool,
}

impl Chain {
    fn density(&self) -> f64 {
        self.count / self.dsize
    }
}

struct ChainEdge {
    ends: [usize; 2],
    jumps: Vec<usize>,
    /// Cached best gain with `ends[i]` as the split chain `X`.
    cache: [Option<Option<Gain>>; 2],
    alive: bool,
}

struct State<'a> {
    blocks: &'a [Block],
    entry: usize,
    config: &'a ExtTspConfig,
    jumps: Vec<Jump>,
    chains: Vec<Chain>,
    cedges: Vec<ChainEdge>,
    chain_of: Vec<usize>,
    idx_in_chain: Vec<usize>,
    off_in_chain: Vec<u64>,
    /// Current score of each jump internal to a chain (0 otherwise).
    jump_score_now: Vec<f64>,
}

impl<'a> State<'a> {
    fn new(
        blocks: &'a [Block],
        edges: &[BlockEdge],
        entry: usize,
        is_hot: &[bool],
        config: &'a ExtTspConfig,
    ) -> Self {
        let n = blocks.len();
        let mut raw: Vec<(usize, usize, f64)> = edges
            .iter()
            .map(|e| (e.src, e.dst, clean_count(e.count)))
            .filter(|&(s, d, c)| c > 0.0 && s != d && is_hot[s] && is_hot[d])
            .collect();
        // Sorting on the count too makes the float sums independent of the
        // order in which parallel edges were listed.
        raw.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(a.2.total_cmp(&b.2)));
        let mut jumps: Vec<Jump> = Vec::new();
        for (s, d, c) in raw {
            match jumps.last_mut() {
                Some(j) if j.src == s && j.dst == d => j.count += c,
                _ => jumps.push(Jump {
                    src: s,
                    dst: d,
                    count: c,
                }),
            }
        }
        let chains = (0..n)
            .map(|i| Chain {
                blocks: if is_hot[i] { vec![i] } else { Vec::new() },
                bytes: blocks[i].size,
                dsize: blocks[i].size.max(1) as f64,
                count: clean_count(blocks[i].count),
                internal: Vec::new(),
                adj: BTreeMap::new(),
                alive: is_hot[i],
            })
            .collect();
        let mut st = State {
            blocks,
            entry,
            config,
            jumps,
            chains,
            cedges: Vec::new(),
            chain_of: (0..n).collect(),
            idx_in_chain: vec![0; n],
            off_in_chain: vec![0; n],
            jump_score_now: Vec::new(),
        };
        st.jump_score_now = vec![0.0; st.jumps.len()];
        for j in 0..st.jumps.len() {
            let (a, b) = (st.jumps[j].src, st.jumps[j].dst);
            let e = match st.chains[a].adj.get(&b) {
                Some(&e) => e,
                None => {
                    let e = st.cedges.len();
                    st.cedges.push(ChainEdge {
                        ends: [a.min(b), a.max(b)],
                        jumps: Vec::new(),
                        cache: [None, None],
                        alive: true,
                    });
                    st.chains[a].adj.insert(b, e);
                    st.chains[b].adj.insert(a, e);
                    e
                }
            };
            st.cedges[e].jumps.push(j);
        }
        st
    }

    fn merge_chains(&mut self) {
        loop {
            let mut best: Option<(Gain, usize, usize)> = None;
            for e in 0..self.cedges.len() {
                if !self.cedges[e].alive {
                    continue;
                }
                let [a, b] = self.cedges[e].ends;
                if self.chains[a].blocks.len() + self.chains[b].blocks.len()
                    > self.config.max_chain_blocks
                {
                    continue;
                }
                let (da, db) = (self.chains[a].density(), self.chains[b].density());
                if da > 0.0 && db > 0.0 {
                    let ratio = if da >= db { da / db } else { db / da };
                    if ratio > self.config.max_merge_density_ratio {
                        continue;
                    }
                }
                for side in 0..2 {
                    let (x, y) = if side == 0 { (a, b) } else { (b, a) };
                    let gain = match self.cedges[e].cache[side] {
                        Some(g) => g,
                        None => {
                            let g = self.best_gain(x, y, e);
                            self.cedges[e].cache[side] = Some(g);
                            g
                        }
                    };
                    let Some(g) = gain else { continue };
                    if g.score <= EPS {
                        continue;
                    }
                    let better = match &best {
                        None => true,
                        Some((bg, bx, by)) => {
                            if (g.score - bg.score).abs() < EPS {
                                (x, y) < (*bx, *by)
                            } else {
                                g.score > bg.score
                            }
                        }
                    };
                    if better {
                        best = Some((g, x, y));
                    }
                }
            }
            match best {
                Some((g, x, y)) => self.merge(x, y, g),
                None => break,
            }
        }
    }

    /// Best layout for merging chain `y` into split chain `x`, or `None` if
    /// no layout is allowed.
    fn best_gain(&self, x: usize, y: usize, e: usize) -> Option<Gain> {
        let cx = &self.chains[x];
        let cy = &self.chains[y];
        let lx = cx.blocks.len();
        let x_entry = self.chain_of[self.entry] == x;
        let y_entry = self.chain_of[self.entry] == y;
        let mut best: Option<Gain> = None;
        let consider = |offset: usize, kind: MergeKind, best: &mut Option<Gain>| {
            // Entry must stay first.
            let first_is_x1 = kind == MergeKind::X1YX2;
            let first_is_y = kind == MergeKind::YX2X1;
            if (x_entry && !first_is_x1) || (y_entry && !first_is_y) {
                return;
            }
            let s = self.eval(x, y, e, offset, kind);
            if best.is_none_or(|b| s > b.score) {
                *best = Some(Gain {
                    score: s,
                    offset,
                    kind,
                });
            }
        };
        // Plain concatenation X·Y.
        consider(lx, MergeKind::X1YX2, &mut best);
        if !self.config.split_merges || lx < 2 {
            return best;
        }
        let y_first = cy.blocks[0];
        let y_last = *cy.blocks.last().expect("chain is non-empty");
        for &j in &self.cedges[e].jumps {
            let jp = &self.jumps[j];
            if jp.dst == y_first && self.chain_of[jp.src] == x {
                let k = self.idx_in_chain[jp.src] + 1;
                if k < lx {
                    consider(k, MergeKind::X1YX2, &mut best);
                    consider(k, MergeKind::X2X1Y, &mut best);
                }
            }
        }
        for &j in &self.cedges[e].jumps {
            let jp = &self.jumps[j];
            if jp.src == y_last && self.chain_of[jp.dst] == x {
                let k = self.idx_in_chain[jp.dst];
                if k > 0 {
                    consider(k, MergeKind::X1YX2, &mut best);
                    consider(k, MergeKind::YX2X1, &mut best);
                }
            }
        }
        if lx <= self.config.split_threshold {
            for k in 1..lx {
                consider(k, MergeKind::X1YX2, &mut best);
                consider(k, MergeKind::YX2X1, &mut best);
                consider(k, MergeKind::X2X1Y, &mut best);
            }
        }
        best
    }

    /// Gain of laying out `x` split at `offset` together with `y` as `kind`.
    fn eval(&self, x: usize, y: usize, e: usize, offset: usize, kind: MergeKind) -> f64 {
        let cx = &self.chains[x];
        let cy = &self.chains[y];
        let off_k = if offset < cx.blocks.len() {
            self.off_in_chain[cx.blocks[offset]]
        } else {
            cx.bytes
        };
        let x2_bytes = cx.bytes - off_k;
        // Base addresses of X1, Y, X2 (X2 base is relative to `off_k`).
        let (b_x1, b_y, b_x2) = match kind {
            MergeKind::X1YX2 => (0, off_k, off_k + cy.bytes),
            MergeKind::YX2X1 => (cy.bytes + x2_bytes, 0, cy.bytes),
            MergeKind::X2X1Y => (x2_bytes, cx.bytes, 0),
        };
        let addr = |b: usize| -> u64 {
            let o = self.off_in_chain[b];
            if self.chain_of[b] == y {
                b_y + o
            } else if self.idx_in_chain[b] < offset {
                b_x1 + o
            } else {
                b_x2 + (o - off_k)
            }
        };
        let score = |j: usize| {
            let jp = &self.jumps[j];
            jump_score(
                addr(jp.src),
                self.blocks[jp.src].size,
                addr(jp.dst),
                jp.count,
            )
        };
        let mut gain: f64 = self.cedges[e].jumps.iter().map(|&j| score(j)).sum();
        // Jumps inside X1 or inside X2 keep their distance; only jumps
        // between X1 and X2 change (none for plain concatenation).
        if offset < cx.blocks.len() {
            for &j in &cx.internal {
                let jp = &self.jumps[j];
                if (self.idx_in_chain[jp.src] < offset) != (self.idx_in_chain[jp.dst] < offset) {
                    gain += score(j) - self.jump_score_now[j];
                }
            }
        }
        gain
    }

    fn merge(&mut self, x: usize, y: usize, g: Gain) {
        let xb = std::mem::take(&mut self.chains[x].blocks);
        let yb = std::mem::take(&mut self.chains[y].blocks);
        let (x1, x2) = xb.split_at(g.offset);
        let merged: Vec<usize> = match g.kind {
            MergeKind::X1YX2 => [x1, &yb, x2].concat(),
            MergeKind::YX2X1 => [&yb, x2, x1].concat(),
            MergeKind::X2X1Y => [x2, x1, &yb].concat(),
        };
        let mut off = 0u64;
        for (i, &b) in merged.iter().enumerate() {
            self.chain_of[b] = x;
            self.idx_in_chain[b] = i;
            self.off_in_chain[b] = off;
            off += self.blocks[b].size;
        }
        let (ybytes, ydsize, ycount) = {
            let cy = &self.chains[y];
            (cy.bytes, cy.dsize, cy.count)
        };
        let y_internal = std::mem::take(&mut self.chains[y].internal);
        let y_adj = std::mem::take(&mut self.chains[y].adj);
        self.chains[y].alive = false;

        // The x–y edge becomes internal.
        let exy = self.chains[x]
            .adj
            .remove(&y)
            .expect("merged chains are adjacent");
        self.cedges[exy].alive = false;
        let xy_jumps = std::mem::take(&mut self.cedges[exy].jumps);
        {
            let cx = &mut self.chains[x];
            cx.blocks = merged;
            cx.bytes += ybytes;
            cx.dsize += ydsize;
            cx.count += ycount;
            cx.internal.extend(xy_jumps);
            cx.internal.extend(y_internal);
        }
        // Re-home y's other edges onto x.
        for (z, ez) in y_adj {
            if z == x {
                continue;
            }
            self.chains[z].adj.remove(&y);
            match self.chains[x].adj.get(&z) {
                Some(&ex) => {
                    let moved = std::mem::take(&mut self.cedges[ez].jumps);
                    self.cedges[ez].alive = false;
                    self.cedges[ex].jumps.extend(moved);
                }
                None => {
                    let ends = &mut self.cedges[ez].ends;
                    if ends[0] == y {
                        ends[0] = x;
                    } else {
                        ends[1] = x;
                    }
                    self.chains[x].adj.insert(z, ez);
                    self.chains[z].adj.insert(x, ez);
                }
            }
        }
        // Every edge touching x needs a new gain.
        let adj: Vec<usize> = self.chains[x].adj.values().copied().collect();
        for ez in adj {
            self.cedges[ez].cache = [None, None];
        }
        for &j in &self.chains[x].internal {
            let jp = &self.jumps[j];
            let s = jump_score(
                self.off_in_chain[jp.src],
                self.blocks[jp.src].size,
                self.off_in_chain[jp.dst],
                jp.count,
            );
            self.jump_score_now[j] = s;
        }
    }
}
