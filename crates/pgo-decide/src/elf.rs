//! [`BinaryFacts`] from an ELF file: sizes from the symbol table, call instructions and basic
//! blocks from `pgo-binary`, block order from `pgo-layout`'s ext-TSP.

use std::path::Path;

use pgo_graph::MappedFile;
use rustc_hash::FxHashSet;

use crate::{BinaryFacts, CallKind};

/// The binary a profile came from, matched to the profile's mappings by build ID.
pub struct ElfFacts {
    binary: pgo_binary::Binary,
    info: pgo_symbolize::ObjectInfo,
    /// The profile's names for this binary (its mappings' file names).
    names: FxHashSet<String>,
    /// The binary's DWARF, loaded on the first question about source lines.
    symbolizer: std::sync::Mutex<pgo_symbolize::Symbolizer>,
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl ElfFacts {
    /// Opens `path` and matches it to one of the profile's `mappings` (file name, build ID):
    /// by build ID, else (with `force`, or when the profile has no build IDs) by file name.
    /// Errors are one line without the path (the caller names it).
    pub fn open(
        path: &Path,
        mappings: &[(String, String)],
        force: bool,
    ) -> Result<ElfFacts, String> {
        let binary = pgo_binary::Binary::open(path).map_err(|e| e.to_string())?;
        let info = pgo_symbolize::ObjectInfo::read(path).map_err(|e| e.to_string())?;
        let id = binary.build_id().to_string();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let by_id: FxHashSet<String> = mappings
            .iter()
            .filter(|(_, b)| !id.is_empty() && *b == id)
            .map(|(f, _)| f.clone())
            .collect();
        let by_name: Vec<&(String, String)> = mappings
            .iter()
            .filter(|(f, _)| basename(f) == name)
            .collect();
        let names = if !by_id.is_empty() {
            by_id
        } else if let Some((file, other)) = by_name
            .iter()
            .find(|(_, b)| !b.is_empty())
            .map(|m| (&m.0, &m.1))
        {
            if !force {
                return Err(format!(
                    "build ID {} does not match the profile's {other} for {file}: not the binary that was profiled (--force uses it anyway)",
                    if id.is_empty() { "(none)" } else { &id }
                ));
            }
            by_name.iter().map(|m| m.0.clone()).collect()
        } else if !by_name.is_empty() || force {
            // The profile has no build IDs for it: trust the name.
            let mut names: FxHashSet<String> = by_name.iter().map(|m| m.0.clone()).collect();
            if names.is_empty() {
                names.extend(mappings.first().map(|m| m.0.clone()));
            }
            names
        } else {
            let seen: Vec<&str> = mappings.iter().map(|(f, _)| basename(f)).take(5).collect();
            return Err(format!(
                "the profile has no samples in this binary (build ID {}; the profile's binaries: {})",
                if id.is_empty() { "(none)" } else { &id },
                if seen.is_empty() {
                    "none".to_string()
                } else {
                    seen.join(", ")
                }
            ));
        };
        Ok(ElfFacts {
            binary,
            info,
            names,
            symbolizer: std::sync::Mutex::new(pgo_symbolize::Symbolizer::new()),
        })
    }

    fn svma(&self, address: u64, mapping_start: u64, file_offset: u64) -> Option<u64> {
        self.info
            .svma_for_runtime_address(address, mapping_start, file_offset)
    }

    /// `samples` in this binary, as (SVMA, weight).
    fn svma_samples(&self, samples: &[(u64, &MappedFile, i64)]) -> Vec<(u64, u64)> {
        samples
            .iter()
            .filter(|(_, m, _)| self.names.contains(&m.file))
            .filter_map(|&(address, m, weight)| {
                Some((
                    self.svma(address, m.start, m.file_offset)?,
                    weight.max(0) as u64,
                ))
            })
            .collect()
    }
}

/// Which blocks lie on a cycle of the control-flow graph (a loop): those in a strongly
/// connected component of more than one block, or with an edge to themselves. A branch to an
/// earlier address is not enough: compilers often place the shared epilogue before the code
/// that jumps to it.
fn blocks_on_cycles(cfg: &pgo_binary::Cfg) -> Vec<bool> {
    let mut graph = petgraph::graph::DiGraph::<(), ()>::with_capacity(cfg.blocks.len(), 0);
    let nodes: Vec<_> = (0..cfg.blocks.len()).map(|_| graph.add_node(())).collect();
    let mut on_cycle = vec![false; cfg.blocks.len()];
    for (i, b) in cfg.blocks.iter().enumerate() {
        for &(s, _) in &b.successors {
            if s == i {
                on_cycle[i] = true;
            }
            if let Some(&to) = nodes.get(s) {
                graph.add_edge(nodes[i], to, ());
            }
        }
    }
    for scc in petgraph::algo::tarjan_scc(&graph) {
        if scc.len() > 1 {
            for n in scc {
                on_cycle[n.index()] = true;
            }
        }
    }
    on_cycle
}

impl BinaryFacts for ElfFacts {
    fn contains(&self, binary: &str) -> bool {
        self.names.contains(binary)
    }

    fn function_size(&self, linkage_name: &str) -> Option<u64> {
        self.binary.function_by_name(linkage_name).map(|f| f.size)
    }

    fn loop_share(&self, linkage_name: &str, samples: &[(u64, &MappedFile, i64)]) -> Option<f64> {
        let function = self.binary.function_by_name(linkage_name)?;
        let cfg = self.binary.cfg(function).ok()?;
        let on_cycle = blocks_on_cycles(&cfg);
        let (mut total, mut looping) = (0u64, 0u64);
        for (svma, weight) in self.svma_samples(samples) {
            let Some(b) = cfg.block_of(svma) else {
                continue;
            };
            total += weight;
            if on_cycle[b] {
                looping += weight;
            }
        }
        Some(if total > 0 {
            looping as f64 / total as f64
        } else if on_cycle.contains(&true) {
            1.0
        } else {
            0.0
        })
    }

    fn frame_size(&self, linkage_name: &str) -> Option<u64> {
        let function = self.binary.function_by_name(linkage_name)?;
        self.binary.frame_size(function).ok().flatten()
    }

    fn call_at(&self, address: u64, mapping: &MappedFile) -> Option<CallKind> {
        if !self.names.contains(&mapping.file) {
            return None;
        }
        let svma = self.svma(address, mapping.start, mapping.file_offset)?;
        let call = self.binary.call_at_return_address(svma)?;
        Some(match call.kind {
            pgo_binary::CallKind::Direct { .. } => CallKind::Direct,
            _ => CallKind::Indirect,
        })
    }

    fn source_span(&self, linkage_name: &str) -> Option<(String, u32, u32)> {
        let function = self.binary.function_by_name(linkage_name)?;
        let instructions = self.binary.instructions(function).ok()?;
        let mut symbolizer = self.symbolizer.lock().unwrap_or_else(|e| e.into_inner());
        let (path, build_id) = (self.binary.path(), self.binary.build_id());
        let mut span: Option<(String, u32, u32)> = None;
        for (address, _) in instructions {
            let Ok(s) = symbolizer.symbolize(path, build_id, address) else {
                return None;
            };
            // The outermost frame is the function itself; for code inlined into it, its line
            // is the line of the call. Lines the table gives to another file are not its own.
            let Some(own) = s.frames.last() else {
                continue;
            };
            if &*own.function_linkage_name != linkage_name
                || own.line == 0
                || own.file != own.function_file
            {
                continue;
            }
            match &mut span {
                Some((_, first, last)) => {
                    *first = (*first).min(own.line);
                    *last = (*last).max(own.line);
                }
                None => span = Some((own.function_file.to_string(), own.line, own.line)),
            }
        }
        span
    }

    fn sampled_size(&self, linkage_name: &str, samples: &[(u64, &MappedFile, i64)]) -> Option<u64> {
        let function = self.binary.function_by_name(linkage_name)?;
        let cfg = self.binary.cfg(function).ok()?;
        let svma_samples = self.svma_samples(samples);
        if svma_samples.is_empty() {
            return None;
        }
        let counts = cfg.infer_counts(&svma_samples);
        Some(
            cfg.blocks
                .iter()
                .zip(&counts.block)
                .filter(|(_, count)| **count > 0.0)
                .map(|(b, _)| b.end - b.start)
                .sum(),
        )
    }

    fn block_layout(
        &self,
        linkage_name: &str,
        samples: &[(u64, &MappedFile, i64)],
    ) -> Option<(Vec<u64>, usize, String)> {
        let function = self.binary.function_by_name(linkage_name)?;
        let cfg = self.binary.cfg(function).ok()?;
        if cfg.blocks.len() < 2 {
            return None;
        }
        let svma_samples = self.svma_samples(samples);
        if svma_samples.is_empty() {
            return None;
        }
        let counts = cfg.infer_counts(&svma_samples);
        let blocks: Vec<pgo_layout::Block> = cfg
            .blocks
            .iter()
            .zip(&counts.block)
            .map(|(b, &count)| pgo_layout::Block {
                size: b.end - b.start,
                count,
            })
            .collect();
        let edges: Vec<pgo_layout::BlockEdge> = counts
            .edges
            .iter()
            .map(|&((src, dst), count)| pgo_layout::BlockEdge { src, dst, count })
            .collect();
        let entry = cfg.block_of(function.start).unwrap_or(0);
        let order = pgo_layout::order_blocks(&blocks, &edges, entry);
        let original: Vec<usize> = (0..blocks.len()).collect();
        let (before, after) = (
            pgo_layout::ext_tsp_score(&original, &blocks, &edges),
            pgo_layout::ext_tsp_score(&order.order, &blocks, &edges),
        );
        let reason = format!(
            "ext-TSP over {} blocks ({} hot, {} cold moved last): score {:.0} against {:.0} for the compiler's order",
            blocks.len(),
            order.hot_len,
            blocks.len() - order.hot_len,
            after,
            before
        );
        Some((
            order.order.iter().map(|&i| cfg.blocks[i].start).collect(),
            order.hot_len,
            reason,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgo_binary::{Block, Cfg, EdgeKind, FunctionSym, Terminator};

    fn block(start: u64, successors: &[usize], terminator: Terminator) -> Block {
        Block {
            start,
            end: start + 4,
            instructions: 1,
            successors: successors.iter().map(|&s| (s, EdgeKind::Jump)).collect(),
            calls: Vec::new(),
            terminator,
        }
    }

    #[test]
    fn only_blocks_on_a_cycle_are_loops_not_jumps_back_to_a_shared_epilogue() {
        use Terminator::*;
        // 0: switch-like entry; 1: the shared epilogue, placed before the arms that jump
        // back to it; 2: an arm; 3-4: an arm with a loop; 5: a block that branches to itself.
        let cfg = Cfg {
            function: FunctionSym {
                name: "f".into(),
                start: 0,
                size: 24,
            },
            blocks: vec![
                block(0, &[2, 3, 5], Branch),
                block(4, &[], Return),
                block(8, &[1], Jump),
                block(12, &[4], Fallthrough),
                block(16, &[3, 1], Branch),
                block(20, &[5, 1], Branch),
            ],
        };
        assert_eq!(
            blocks_on_cycles(&cfg),
            [false, false, false, true, true, true]
        );
    }
}
