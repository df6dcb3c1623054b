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
        })
    }

    fn svma(&self, address: u64, mapping_start: u64, file_offset: u64) -> Option<u64> {
        self.info
            .svma_for_runtime_address(address, mapping_start, file_offset)
    }
}

impl BinaryFacts for ElfFacts {
    fn contains(&self, binary: &str) -> bool {
        self.names.contains(binary)
    }

    fn function_size(&self, linkage_name: &str) -> Option<u64> {
        self.binary.function_by_name(linkage_name).map(|f| f.size)
    }

    fn has_loop(&self, linkage_name: &str) -> Option<bool> {
        let function = self.binary.function_by_name(linkage_name)?;
        let cfg = self.binary.cfg(function).ok()?;
        Some(
            cfg.blocks
                .iter()
                .enumerate()
                .any(|(i, b)| b.successors.iter().any(|&(s, _)| s <= i)),
        )
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
        let svma_samples: Vec<(u64, u64)> = samples
            .iter()
            .filter(|(_, m, _)| self.names.contains(&m.file))
            .filter_map(|&(address, m, weight)| {
                Some((
                    self.svma(address, m.start, m.file_offset)?,
                    weight.max(0) as u64,
                ))
            })
            .collect();
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
