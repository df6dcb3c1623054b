//! The calls a binary's compiler inlined, as its DWARF records them: every
//! `DW_TAG_inlined_subroutine` below an out-of-line function, with the function it was inlined
//! into (the enclosing subprogram or inlined call), the call's line and the bytes of code the
//! inlined copy became.
//!
//! What a rebuild needs to keep the inlining of the build it profiled: a call the profile
//! never saw (no sample in it) is cold to the next compiler, which may then leave it out of
//! line, even where the profiled build had inlined it into a hot function.

use std::path::Path;

use gimli::Reader as _;

use crate::dwarf::read_dwarf;

/// One inlined call: `callee` inlined into `caller` at `call_line`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InlinedCall {
    /// Linkage name of the function the call is in (itself possibly an inlined copy).
    pub caller: String,
    /// The caller's declaration line: call lines minus it are LLVM's line offsets.
    pub caller_line: u32,
    pub call_line: u32,
    pub callee: String,
    /// Bytes of code the inlined copy covers (its address ranges, nested copies included).
    pub bytes: u64,
}

/// The inlined calls in the out-of-line functions of the ELF file at `path` (the file with
/// the DWARF) whose code overlaps `ranges` (`[start, end)` file addresses). Calls whose caller
/// or callee has no linkage name, or no line, are left out.
pub fn inlined_calls(path: &Path, ranges: &[(u64, u64)]) -> Result<Vec<InlinedCall>, String> {
    let dwarf = read_dwarf(path)?;
    let mut wanted: Vec<(u64, u64)> = ranges.iter().copied().filter(|r| r.0 < r.1).collect();
    wanted.sort_unstable();
    let overlaps = |start: u64, end: u64| {
        let i = wanted.partition_point(|r| r.1 <= start);
        wanted.get(i).is_some_and(|r| r.0 < end)
    };
    let mut out = Vec::new();
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let unit_ref = gimli::UnitRef::new(&dwarf, &unit);
        // The functions enclosing the current entry: (depth, linkage name and declaration
        // line), `None` for a function outside the ranges or without a name.
        let mut frames: Vec<(isize, Option<(String, u32)>)> = Vec::new();
        let mut entries = unit.entries();
        while let Ok(Some(entry)) = entries.next_dfs() {
            let depth = entry.depth();
            while frames.last().is_some_and(|f| f.0 >= depth) {
                frames.pop();
            }
            let tag = entry.tag();
            if tag != gimli::DW_TAG_subprogram && tag != gimli::DW_TAG_inlined_subroutine {
                continue;
            }
            // (bytes of code, whether any of it is in the ranges)
            let extent = || {
                let (mut bytes, mut inside) = (0, false);
                if let Ok(mut iter) = unit_ref.die_ranges(entry) {
                    while let Ok(Some(r)) = iter.next() {
                        bytes += r.end.saturating_sub(r.begin);
                        inside |= overlaps(r.begin, r.end);
                    }
                }
                (bytes, inside)
            };
            // Names are looked up only for functions in the ranges and the copies inside them:
            // most of a binary's functions are neither.
            if tag == gimli::DW_TAG_subprogram {
                let inside = extent().1;
                frames.push((
                    depth,
                    inside.then(|| function_of(&unit_ref, entry)).flatten(),
                ));
                continue;
            }
            // A copy inside a function outside the ranges stays outside.
            let Some((caller, caller_line)) = frames.last().and_then(|f| f.1.clone()) else {
                frames.push((depth, None));
                continue;
            };
            let (bytes, inside) = extent();
            let this = function_of(&unit_ref, entry);
            let call_line = entry
                .attr_value(gimli::DW_AT_call_line)
                .and_then(|v| v.udata_value())
                .and_then(|l| u32::try_from(l).ok());
            if let (Some((callee, _)), Some(call_line)) = (this.as_ref(), call_line)
                && inside
            {
                out.push(InlinedCall {
                    caller,
                    caller_line,
                    call_line,
                    callee: callee.clone(),
                    bytes,
                });
            }
            frames.push((depth, this));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The linkage name and declaration line of the function an entry is (a concrete or inlined
/// instance keeps them behind `DW_AT_abstract_origin`, a definition behind
/// `DW_AT_specification`), following links within the unit. C functions have no linkage
/// name: their name is the symbol's.
fn function_of(
    unit: &gimli::UnitRef<'_, crate::dwarf::Reader>,
    entry: &gimli::DebuggingInformationEntry<crate::dwarf::Reader>,
) -> Option<(String, u32)> {
    let mut name: Option<String> = None;
    let mut fallback: Option<String> = None;
    let mut line: Option<u32> = None;
    let mut current = entry.clone();
    for _ in 0..crate::dwarf::MAX_ORIGIN_LINKS {
        let string = |attr| {
            current
                .attr_value(attr)
                .and_then(|v| unit.attr_string(v).ok())
                .and_then(|s| s.to_string_lossy().ok().map(|s| s.into_owned()))
        };
        name = name.or_else(|| {
            string(gimli::DW_AT_linkage_name).or_else(|| string(gimli::DW_AT_MIPS_linkage_name))
        });
        fallback = fallback.or_else(|| string(gimli::DW_AT_name));
        line = line.or_else(|| {
            current
                .attr_value(gimli::DW_AT_decl_line)
                .and_then(|v| v.udata_value())
                .and_then(|l| u32::try_from(l).ok())
        });
        if name.is_some() && line.is_some() {
            break;
        }
        let next = [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification]
            .into_iter()
            .find_map(|link| match current.attr_value(link) {
                Some(gimli::AttributeValue::UnitRef(offset)) => unit.entry(offset).ok(),
                _ => None,
            });
        match next {
            Some(e) => current = e,
            None => break,
        }
    }
    Some((name.or(fallback)?, line?))
}
