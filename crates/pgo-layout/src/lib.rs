//! `pgo-layout`: pure code-layout algorithms on plain weighted graphs.
//!
//! **What it is for.** The analyzer hands this crate numbers — function sizes
//! and sample weights with call-edge weights, or basic-block sizes and
//! execution counts with branch-edge counts — and gets back *orders*:
//!
//! * [`order_functions`]: function order by C3 call-chain clustering
//!   (Ottoni & Maher, CGO 2017; HHVM hfsort / BOLT `-reorder-functions=hfsort`).
//!   See [`c3`] for the exact rules.
//! * [`order_blocks`]: basic-block order maximizing the ext-TSP objective
//!   (Newell & Pupyrev, IEEE TC 2020; LLVM `applyExtTspLayout`, BOLT
//!   `-reorder-blocks=ext-tsp`), with [`ext_tsp_score`] to evaluate any order.
//!   See [`ext_tsp`] for the exact rules.
//!
//! **What it is not for.** No profiles, no ELF/DWARF, no symbols, no I/O, no
//! logging, no threads: nodes are plain indices into the caller's slices.
//! Mapping samples to functions/blocks and applying the orders (linker
//! scripts, section ordering files, BOLT flags) is other crates' business.
//!
//! **Determinism.** Same input → same output, bit for bit. No hash maps are
//! iterated; every tie is broken by index as documented on each function.
//! The order in which edges are listed does not matter (parallel edges are
//! summed after sorting).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod c3;
pub mod ext_tsp;

pub use c3::{
    C3Config, CallEdge, FunctionNode, FunctionOrder, ProcessOrder, order_functions,
    order_functions_with,
};
pub use ext_tsp::{
    Block, BlockEdge, BlockOrder, ExtTspConfig, ext_tsp_score, jump_score, order_blocks,
    order_blocks_with,
};
