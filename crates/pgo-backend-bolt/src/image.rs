//! What BOLT's input looks like to us: an ELF file's build ID, loadable segments, function
//! symbols with their code and the names BOLT gives them, and whether it can be rewritten.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SectionKind, SymbolKind};

/// One `PT_LOAD` program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub file_offset: u64,
    pub file_size: u64,
    pub vaddr: u64,
}

/// A function symbol (one per address; aliases are looked up through [`Image::by_name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Function {
    /// The symbol name as in `.symtab`.
    pub name: String,
    /// The name BOLT knows it by: the symbol name for globals, `name/N` for locals.
    pub bolt_name: String,
    pub start: u64,
    pub size: u64,
    /// Where its bytes are in [`Image::data`] (shorter than `size` where the section ends).
    pub code: Range<usize>,
}

impl Function {
    pub fn contains(&self, vaddr: u64) -> bool {
        vaddr >= self.start && vaddr - self.start < self.size
    }
}

/// An ELF executable as far as the BOLT backend needs it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Image {
    pub path: PathBuf,
    /// Lower-case hex of the GNU build ID, or "".
    pub build_id: String,
    pub segments: Vec<Segment>,
    /// Sorted by start, one per address.
    pub functions: Vec<Function>,
    /// Every function symbol name (aliases too) to the functions carrying it, by address.
    pub by_name: HashMap<String, Vec<usize>>,
    /// The file's bytes (function code is sliced from here).
    pub data: Vec<u8>,
    /// Code sections carry the static relocations `--emit-relocs` keeps (`.rela.text`).
    pub code_relocations: bool,
    /// The file was written by BOLT (`.note.bolt_info` / `.bolt.org.text`).
    pub bolted: bool,
}

/// A symbol as BOLT's name disambiguation sees it.
#[derive(Debug, Clone)]
pub(crate) struct SymbolEntry<'a> {
    pub name: &'a str,
    pub address: u64,
    pub local: bool,
    pub function: bool,
}

/// The names BOLT gives symbols, in `symbols` order: a non-local symbol keeps its name; a
/// local one becomes `name/N`, N counting the local symbols of that name in address order
/// (functions first at equal addresses), as `RewriteInstance::discoverFileObjects` does with
/// its `NameResolver::uniquify`. Only symbols BOLT registers may be passed: defined, not
/// `STT_FILE`, in an allocated section or absolute, at a non-zero address.
pub(crate) fn bolt_names(symbols: &[SymbolEntry<'_>]) -> Vec<String> {
    let mut order: Vec<usize> = (0..symbols.len()).collect();
    order.sort_by_key(|&i| (symbols[i].address, !symbols[i].function, i));
    let mut counters: HashMap<&str, u64> = HashMap::new();
    let mut names = vec![String::new(); symbols.len()];
    for i in order {
        let s = &symbols[i];
        names[i] = if !s.local || s.name.is_empty() {
            s.name.to_string()
        } else {
            let n = counters.entry(s.name).or_insert(0);
            *n += 1;
            format!("{}/{n}", s.name)
        };
    }
    names
}

impl Image {
    /// Reads the ELF file at `path`.
    pub fn read(path: &Path) -> Result<Image, String> {
        let data = std::fs::read(path)
            .map_err(|e| format!("{}: cannot read: {}", path.display(), io_reason(&e)))?;
        Image::parse(path, data)
    }

    /// Parses ELF bytes; `path` names the file in messages.
    pub fn parse(path: &Path, data: Vec<u8>) -> Result<Image, String> {
        let fail = |what: String| format!("{}: {what}", path.display());
        if !data.starts_with(b"\x7fELF") {
            return Err(fail("not an ELF file".into()));
        }
        let (build_id, segments, symbols, code_relocations, bolted) = {
            let obj = object::File::parse(&*data)
                .map_err(|e| fail(format!("malformed ELF file ({e})")))?;
            let build_id = match obj.build_id() {
                Ok(Some(id)) => id.iter().map(|b| format!("{b:02x}")).collect(),
                _ => String::new(),
            };
            let segments = obj
                .segments()
                .map(|s| {
                    let (file_offset, file_size) = s.file_range();
                    Segment {
                        file_offset,
                        file_size,
                        vaddr: s.address(),
                    }
                })
                .collect::<Vec<_>>();
            let code_relocations = obj
                .sections()
                .any(|s| s.kind() == SectionKind::Text && s.relocations().next().is_some());
            let bolted = obj
                .sections()
                .any(|s| matches!(s.name(), Ok(".note.bolt_info" | ".bolt.org.text")));
            (
                build_id,
                segments,
                read_symbols(&obj, data.len()),
                code_relocations,
                bolted,
            )
        };
        let mut image = Image {
            path: path.to_path_buf(),
            build_id,
            segments,
            data,
            code_relocations,
            bolted,
            ..Image::default()
        };
        image.set_functions(symbols);
        Ok(image)
    }

    /// Sets the function table from `(function, is_global)` pairs in any order: sorted by
    /// address, one per address (the largest, then global, then first name wins), every name
    /// kept for lookups.
    pub fn set_functions(&mut self, mut functions: Vec<(Function, bool)>) {
        functions.sort_by(|(a, ga), (b, gb)| {
            a.start
                .cmp(&b.start)
                .then(b.size.cmp(&a.size))
                .then(gb.cmp(ga))
                .then(a.name.cmp(&b.name))
        });
        self.functions.clear();
        self.by_name.clear();
        for (f, _) in functions {
            let index = match self.functions.last() {
                Some(last) if last.start == f.start => self.functions.len() - 1,
                _ => {
                    self.functions.push(f.clone());
                    self.functions.len() - 1
                }
            };
            let list = self.by_name.entry(f.name).or_default();
            if list.last() != Some(&index) {
                list.push(index);
            }
        }
    }

    /// The function whose `[start, start + size)` contains `vaddr`.
    pub fn function_at(&self, vaddr: u64) -> Option<usize> {
        let i = self.functions.partition_point(|f| f.start <= vaddr);
        (i.saturating_sub(8)..i)
            .rev()
            .find(|&j| self.functions[j].contains(vaddr))
    }

    /// The machine code of function `index`.
    pub fn code(&self, index: usize) -> &[u8] {
        self.data
            .get(self.functions[index].code.clone())
            .unwrap_or(&[])
    }

    /// The virtual address the byte at `file_offset` is loaded at, through the `PT_LOAD`
    /// segment whose file bytes contain it.
    pub fn vaddr_for_file_offset(&self, file_offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| file_offset >= s.file_offset && file_offset - s.file_offset < s.file_size)
            .and_then(|s| (file_offset - s.file_offset).checked_add(s.vaddr))
    }
}

/// Function symbols of `.symtab` with BOLT's names and the file range of their code.
fn read_symbols(obj: &object::File<'_>, file_len: usize) -> Vec<(Function, bool)> {
    let allocated = |index: object::SectionIndex| {
        obj.section_by_index(index).is_ok_and(|s| match s.flags() {
            object::SectionFlags::Elf { sh_flags, .. } => sh_flags.contains(object::elf::SHF_ALLOC),
            _ => false,
        })
    };
    // What BOLT registers (see `bolt_names`).
    let registered: Vec<object::Symbol<'_, '_>> = obj
        .symbols()
        .filter(|s| {
            !s.is_undefined()
                && !matches!(s.kind(), SymbolKind::File | SymbolKind::Section)
                && s.address() != 0
                && match s.section() {
                    object::SymbolSection::Absolute => true,
                    object::SymbolSection::Section(i) => allocated(i),
                    _ => false,
                }
                && !matches!(s.name(), Ok("__hot_start" | "__hot_end"))
        })
        .collect();
    let entries: Vec<SymbolEntry<'_>> = registered
        .iter()
        .map(|s| SymbolEntry {
            name: s.name().unwrap_or(""),
            address: s.address(),
            local: s.is_local(),
            function: s.kind() == SymbolKind::Text,
        })
        .collect();
    let names = bolt_names(&entries);
    let mut out = Vec::new();
    for (sym, bolt_name) in registered.iter().zip(names) {
        if sym.kind() != SymbolKind::Text || sym.size() == 0 {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        let Some(index) = sym.section().index() else {
            continue;
        };
        let Ok(section) = obj.section_by_index(index) else {
            continue;
        };
        let Some((sec_offset, sec_size)) = section.file_range() else {
            continue;
        };
        let Some(delta) = sym.address().checked_sub(section.address()) else {
            continue;
        };
        if delta >= sec_size {
            continue;
        }
        let range = sec_offset.checked_add(delta).and_then(|start| {
            let end = sec_offset.checked_add(delta.saturating_add(sym.size()).min(sec_size))?;
            Some(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
        });
        let Some(range) = range.filter(|r| r.end <= file_len) else {
            continue;
        };
        out.push((
            Function {
                name: name.to_string(),
                bolt_name,
                start: sym.address(),
                size: sym.size(),
                code: range,
            },
            sym.is_global(),
        ));
    }
    out
}

/// The OS reason without Rust's " (os error N)" suffix.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(name: &str, address: u64, local: bool, function: bool) -> SymbolEntry<'_> {
        SymbolEntry {
            name,
            address,
            local,
            function,
        }
    }

    #[test]
    fn locals_are_numbered_by_address_across_functions_and_data() {
        // Two static `helper` functions and a static `helper` array in .rodata, which lld
        // places below .text: perf2bolt-22 names the functions helper/2 and helper/3.
        let symbols = [
            sym("helper", 0x17f0, true, true),
            sym("main", 0x1900, false, true),
            sym("helper", 0x1870, true, true),
            sym("helper", 0x5a0, true, false),
            sym("other", 0x1a00, true, true),
        ];
        assert_eq!(
            bolt_names(&symbols),
            ["helper/2", "main", "helper/3", "helper/1", "other/1"]
        );
    }

    #[test]
    fn functions_are_one_per_address_with_aliases_kept_for_lookup() {
        let f = |name: &str, start, size| Function {
            name: name.into(),
            bolt_name: name.into(),
            start,
            size,
            code: 0..0,
        };
        let mut image = Image::default();
        image.set_functions(vec![
            (f("b", 0x20, 0x10), true),
            (f("a_alias", 0x10, 0x10), false),
            (f("a", 0x10, 0x10), true),
        ]);
        let names: Vec<&str> = image.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(image.by_name["a_alias"], [0]);
        assert_eq!(image.function_at(0x1f), Some(0));
        assert_eq!(image.function_at(0x30), None);
    }
}
