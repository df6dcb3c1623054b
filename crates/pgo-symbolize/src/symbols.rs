//! Function lookup in ELF symbol tables (`.symtab`, else `.dynsym`): the fallback when there is
//! no DWARF, and the answer to "which function contains this address, from where to where".

use std::sync::Arc;

use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind, SymbolSection};

use crate::demangle::demangle;

/// The function symbol that contains an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSymbol {
    /// The symbol's name as the linker saw it (mangled for Rust and C++).
    pub linkage_name: String,
    /// The demangled name (the linkage name itself for C).
    pub name: String,
    /// The SVMA of the function's first instruction.
    pub start: u64,
    /// The function's size in bytes. When the symbol table gives no size (hand-written
    /// assembly), this is the distance to the next symbol.
    pub size: u64,
}

/// Which ELF table a [`SymbolTable`] was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SymbolTableKind {
    Symtab,
    Dynsym,
    Empty,
}

#[derive(Debug)]
struct Entry {
    start: u64,
    /// Exclusive end: `start + size`, or the next symbol's start when the size is 0.
    end: u64,
    linkage_name: Arc<str>,
}

/// Function symbols sorted by address, one per address.
#[derive(Debug)]
pub(crate) struct SymbolTable {
    kind: SymbolTableKind,
    entries: Vec<Entry>,
}

impl SymbolTable {
    /// The best table among `files` (in order of preference): the first `.symtab` with
    /// functions in it, else the first such `.dynsym`.
    pub(crate) fn from_files(files: &[&object::File<'_>]) -> SymbolTable {
        for file in files {
            let entries = function_entries(file, file.symbols());
            if !entries.is_empty() {
                return SymbolTable {
                    kind: SymbolTableKind::Symtab,
                    entries,
                };
            }
        }
        for file in files {
            let entries = function_entries(file, file.dynamic_symbols());
            if !entries.is_empty() {
                return SymbolTable {
                    kind: SymbolTableKind::Dynsym,
                    entries,
                };
            }
        }
        SymbolTable {
            kind: SymbolTableKind::Empty,
            entries: Vec::new(),
        }
    }

    pub(crate) fn kind(&self) -> SymbolTableKind {
        self.kind
    }

    /// The function symbol whose range contains `svma`.
    pub(crate) fn function_containing(&self, svma: u64) -> Option<FunctionSymbol> {
        let entry = self.entry_containing(svma)?;
        Some(FunctionSymbol {
            linkage_name: entry.linkage_name.to_string(),
            name: demangle(&entry.linkage_name),
            start: entry.start,
            size: entry.end - entry.start,
        })
    }

    /// The linkage name of the function symbol whose range contains `svma`.
    pub(crate) fn linkage_name_containing(&self, svma: u64) -> Option<&Arc<str>> {
        self.entry_containing(svma).map(|entry| &entry.linkage_name)
    }

    fn entry_containing(&self, svma: u64) -> Option<&Entry> {
        // The last symbol starting at or before `svma`.
        let index = self.entries.partition_point(|entry| entry.start <= svma);
        let entry = &self.entries[index.checked_sub(1)?];
        (svma < entry.end).then_some(entry)
    }
}

/// Defined function symbols of one table, sorted and deduplicated. Untyped symbols count when
/// they sit in a code section, because assembly labels are often `STT_NOTYPE`.
fn function_entries<'data: 'file, 'file>(
    file: &'file object::File<'data>,
    symbols: impl Iterator<Item = object::Symbol<'data, 'file>>,
) -> Vec<Entry> {
    struct Candidate {
        start: u64,
        size: u64,
        name: Arc<str>,
        global: bool,
        /// End of the symbol's section, which bounds an unsized symbol.
        section_end: u64,
    }
    let in_code_section = |section: SymbolSection| match section {
        SymbolSection::Section(index) => file
            .section_by_index(index)
            .is_ok_and(|section| section.kind() == SectionKind::Text),
        _ => false,
    };
    let mut candidates: Vec<Candidate> = symbols
        .filter(|symbol| match symbol.kind() {
            SymbolKind::Text => symbol.is_definition(),
            SymbolKind::Unknown => in_code_section(symbol.section()),
            _ => false,
        })
        .filter_map(|symbol| {
            let name = symbol.name().ok()?;
            // Local labels and mapping symbols are not functions.
            if name.is_empty() || name.starts_with(".L") || name.starts_with('$') {
                return None;
            }
            let section_end = match symbol.section() {
                SymbolSection::Section(index) => file
                    .section_by_index(index)
                    .map(|section| section.address().saturating_add(section.size()))
                    .unwrap_or(0),
                _ => 0,
            };
            Some(Candidate {
                start: symbol.address(),
                size: symbol.size(),
                name: Arc::from(name),
                global: symbol.is_global(),
                section_end,
            })
        })
        .collect();

    // At one address keep the best alias: a sized symbol over an unsized one, global over
    // local, then the shortest name (`memcpy` over `__memcpy_avx_unaligned`).
    candidates.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then((b.size > 0).cmp(&(a.size > 0)))
            .then(b.global.cmp(&a.global))
            .then(a.name.len().cmp(&b.name.len()))
            .then(a.name.cmp(&b.name))
    });
    candidates.dedup_by_key(|candidate| candidate.start);

    let next_starts: Vec<u64> = candidates
        .iter()
        .skip(1)
        .map(|candidate| candidate.start)
        .chain(std::iter::once(u64::MAX))
        .collect();
    candidates
        .into_iter()
        .zip(next_starts)
        .map(|(candidate, next_start)| Entry {
            start: candidate.start,
            end: if candidate.size > 0 {
                candidate.start.saturating_add(candidate.size)
            } else {
                next_start.min(candidate.section_end)
            },
            linkage_name: candidate.name,
        })
        .collect()
}
