//! DWARF discriminators of the code at an address: which of the basic blocks that share one
//! source line an instruction belongs to.
//!
//! A compiler that numbers the blocks of a line (LLVM's `AddDiscriminators`, turned on by
//! `-fdebug-info-for-profiling`) writes the number into the line table rows, and for an
//! inlined call into `DW_AT_GNU_discriminator` of its `DW_TAG_inlined_subroutine`. addr2line
//! reports neither, so this module reads them with gimli, for the functions a caller asks
//! about. The values are returned raw: how they are encoded (LLVM packs a base
//! discriminator, a duplication factor and a copy id into one number) is the consumer's
//! business.

use std::path::Path;

use object::Object as _;

use crate::dwarf::load_dwarf;

/// Discriminators of the code in some address ranges of one ELF file.
#[derive(Debug, Default, Clone)]
pub struct Discriminators {
    /// The ranges asked about, sorted.
    ranges: Vec<(u64, u64)>,
    /// Line-table rows in the ranges: (address, discriminator), sorted by address; a row
    /// that ends a sequence has discriminator 0 and stands for "no row here".
    rows: Vec<(u64, u32)>,
    /// Inlined calls overlapping the ranges.
    inlined: Vec<InlinedCall>,
    /// Whether any row or inlined call has a non-zero discriminator.
    any: bool,
}

#[derive(Debug, Clone)]
struct InlinedCall {
    ranges: Vec<(u64, u64)>,
    /// Depth of the entry in its unit's tree: enclosing inlined calls are shallower.
    depth: isize,
    discriminator: u32,
}

impl Discriminators {
    /// Reads the discriminators of the code in `ranges` (`[start, end)` file addresses) from
    /// the DWARF of the ELF file at `path` (the file that has the DWARF: a separate debug
    /// file where there is one).
    pub fn load(path: &Path, ranges: &[(u64, u64)]) -> Result<Discriminators, String> {
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", path.display()))?;
        if !file.has_debug_symbols() {
            return Ok(Discriminators::default());
        }
        let dwarf = load_dwarf(&file).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut sorted: Vec<(u64, u64)> = ranges.iter().copied().filter(|r| r.0 < r.1).collect();
        sorted.sort_unstable();
        let wanted = |start: u64, end: u64| overlaps(&sorted, start, end);
        let mut out = Discriminators::default();
        // (address, is a row that starts code, order read): an end-of-sequence row sorts
        // before a row that starts the next sequence at the same address.
        let mut rows: Vec<(u64, bool, usize, u32)> = Vec::new();
        let mut headers = dwarf.units();
        while let Ok(Some(header)) = headers.next() {
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            if let Some(program) = unit.line_program.clone() {
                let mut iter = program.rows();
                while let Ok(Some((_, row))) = iter.next_row() {
                    let address = row.address();
                    if !wanted(address, address + 1) {
                        continue;
                    }
                    let end = row.end_sequence();
                    let discriminator = if end {
                        0
                    } else {
                        u32::try_from(row.discriminator()).unwrap_or(0)
                    };
                    out.any |= discriminator != 0;
                    rows.push((address, !end, rows.len(), discriminator));
                }
            }
            let unit_ref = gimli::UnitRef::new(&dwarf, &unit);
            let mut entries = unit.entries();
            while let Ok(Some(entry)) = entries.next_dfs() {
                if entry.tag() != gimli::DW_TAG_inlined_subroutine {
                    continue;
                }
                let discriminator = entry
                    .attr_value(gimli::DW_AT_GNU_discriminator)
                    .and_then(|v| v.udata_value())
                    .and_then(|d| u32::try_from(d).ok())
                    .unwrap_or(0);
                let mut ranges = Vec::new();
                if let Ok(mut iter) = unit_ref.die_ranges(entry) {
                    while let Ok(Some(r)) = iter.next() {
                        if wanted(r.begin, r.end) {
                            ranges.push((r.begin, r.end));
                        }
                    }
                }
                if ranges.is_empty() {
                    continue;
                }
                out.any |= discriminator != 0;
                out.inlined.push(InlinedCall {
                    ranges,
                    depth: entry.depth(),
                    discriminator,
                });
            }
        }
        rows.sort_unstable_by_key(|r| (r.0, r.1, r.2));
        out.ranges = sorted;
        out.rows = rows.into_iter().map(|(a, _, _, d)| (a, d)).collect();
        Ok(out)
    }

    /// True when the file numbers blocks at all (built with discriminators).
    pub fn any(&self) -> bool {
        self.any
    }

    /// The discriminator of the line-table row that covers `svma` (0 where there is none, or
    /// outside the ranges read).
    pub fn line(&self, svma: u64) -> u32 {
        if !overlaps(&self.ranges, svma, svma + 1) {
            return 0;
        }
        let i = self.rows.partition_point(|r| r.0 <= svma);
        i.checked_sub(1).map_or(0, |i| self.rows[i].1)
    }

    /// The discriminators of the inlined calls whose code `svma` is, outermost call first:
    /// one per inline frame above the physical function, as [`crate::Symbolizer`] lists the
    /// frames (innermost first) less the last.
    pub fn inlined_calls(&self, svma: u64) -> Vec<u32> {
        let mut calls: Vec<(isize, u32)> = self
            .inlined
            .iter()
            .filter(|c| c.ranges.iter().any(|r| r.0 <= svma && svma < r.1))
            .map(|c| (c.depth, c.discriminator))
            .collect();
        calls.sort_by_key(|c| c.0);
        calls.into_iter().map(|c| c.1).collect()
    }
}

/// Whether `[start, end)` overlaps one of `ranges` (sorted, `[start, end)` each).
fn overlaps(ranges: &[(u64, u64)], start: u64, end: u64) -> bool {
    let i = ranges.partition_point(|r| r.1 <= start);
    ranges.get(i).is_some_and(|r| r.0 < end)
}
