//! What one ELF file is: its build ID, what debug information it carries, and how its
//! loadable segments turn runtime addresses into file-relative addresses.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SectionKind, SegmentFlags};

use crate::Error;

/// The page size the kernel maps ELF segments with. `pgo` targets x86-64 Linux, where it is
/// always 4 KiB; a segment's first mapping starts at its file offset rounded down to a page.
const PAGE_SIZE: u64 = 4096;

/// Facts about one ELF file that do not need its debug information parsed.
///
/// Addresses inside the file are "SVMAs" (stated virtual memory addresses): the addresses the
/// file's own headers, symbol table and DWARF use. A running process sees them shifted by a
/// load bias (PIE executables, shared libraries, ASLR); [`ObjectInfo::svma_for_runtime_address`]
/// undoes that shift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The file these facts were read from.
    pub path: PathBuf,
    /// The GNU build ID from `.note.gnu.build-id` as lowercase hex, or empty when the file
    /// has none (rustc with the default lld linker emits none unless asked with
    /// `-C link-arg=-Wl,--build-id`).
    pub build_id: String,
    /// The `.gnu_debuglink` section, which names a separate debug file, if any.
    pub debuglink: Option<DebugLink>,
    /// Whether `.symtab` has at least one function symbol (it is removed by `strip`).
    pub has_symtab: bool,
    /// Whether `.dynsym` has at least one defined function symbol (it survives `strip`; an
    /// executable usually exports few functions, a shared library exports its API).
    pub has_dynsym: bool,
    /// Whether the file itself carries DWARF (`.debug_info` with contents).
    pub has_dwarf: bool,
    /// The `PT_LOAD` program headers, in file order.
    pub load_segments: Vec<LoadSegment>,
}

/// The contents of a `.gnu_debuglink` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugLink {
    /// The file name of the separate debug file (no directory).
    pub file_name: String,
    /// The CRC-32 of the whole debug file, to tell it from a stale one.
    pub crc32: u32,
}

/// One `PT_LOAD` program header: a byte range of the file and the SVMA it is loaded at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    /// `p_offset`: where the segment's bytes start in the file.
    pub file_offset: u64,
    /// `p_filesz`: how many bytes come from the file.
    pub file_size: u64,
    /// `p_vaddr`: the SVMA of the segment's first byte.
    pub svma: u64,
    /// `p_memsz`: the size in memory (larger than `file_size` when it ends in `.bss`).
    pub memory_size: u64,
    /// Whether the segment is mapped executable (`PF_X`), i.e. holds code.
    pub executable: bool,
}

impl ObjectInfo {
    /// Reads the ELF file at `path`.
    pub fn read(path: &Path) -> Result<ObjectInfo, Error> {
        let data = read_file(path)?;
        ObjectInfo::parse(path, &data)
    }

    /// Reads an ELF file already in memory; `path` is only used to name it.
    pub fn parse(path: &Path, data: &[u8]) -> Result<ObjectInfo, Error> {
        let file = parse_elf(path, data)?;
        Ok(ObjectInfo::from_elf(path, &file))
    }

    pub(crate) fn from_elf(path: &Path, file: &object::File<'_>) -> ObjectInfo {
        let load_segments = file
            .segments()
            .map(|segment| {
                let (file_offset, file_size) = segment.file_range();
                let executable = match segment.flags() {
                    SegmentFlags::Elf { p_flags, .. } => p_flags.contains(object::elf::PF_X),
                    _ => false,
                };
                LoadSegment {
                    file_offset,
                    file_size,
                    svma: segment.address(),
                    memory_size: segment.size(),
                    executable,
                }
            })
            .collect();
        ObjectInfo {
            path: path.to_path_buf(),
            build_id: build_id_hex(file),
            debuglink: debuglink(file),
            has_symtab: has_function_symbol(file.symbols()),
            has_dynsym: has_function_symbol(file.dynamic_symbols()),
            has_dwarf: has_dwarf(file),
            load_segments,
        }
    }

    /// Whether nothing in the file names its functions: no `.symtab`, no DWARF. `.dynsym`
    /// alone does not count, because it names only exported functions, so most addresses of
    /// an executable would still get a wrong (nearest exported) name or none.
    pub fn is_stripped(&self) -> bool {
        !self.has_symtab && !self.has_dwarf
    }

    /// Turns an address seen in a running process into this file's SVMA.
    ///
    /// `mapping_start` and `mapping_file_offset` describe the memory mapping the address
    /// falls in, as `/proc/PID/maps` (or a pprof `Mapping`) gives them: the mapping's first
    /// address and the file offset mapped there. Returns `None` when the mapping matches no
    /// `PT_LOAD` segment of this file, or the address lies before the mapping.
    ///
    /// The kernel maps each segment from its file offset rounded down to a page, so the
    /// segment is found from the mapping (not from the address), and then
    /// `svma = address - mapping_start + mapping_file_offset - p_offset + p_vaddr`. This is
    /// right for non-PIE executables (bias 0), PIE executables and shared libraries under
    /// ASLR, linkers that put `p_vaddr` and `p_offset` apart (lld does), and mappings split by
    /// `mprotect` (RELRO). For a separate debug file, whose program headers no longer
    /// describe the file layout, the mapping is assumed to be of the code segment.
    pub fn svma_for_runtime_address(
        &self,
        address: u64,
        mapping_start: u64,
        mapping_file_offset: u64,
    ) -> Option<u64> {
        let offset_in_mapping = address.checked_sub(mapping_start)?;
        if !self.code_is_in_file() {
            // A separate debug file (`objcopy --only-keep-debug`) keeps the program headers
            // but not the file layout: its code segment has no bytes and a meaningless
            // `p_offset`. The mapping is then taken to be the code segment's first mapping,
            // which starts at the segment's first page; that is where samples land.
            let mut code_segments = self.load_segments.iter().filter(|s| s.executable);
            let code = code_segments.next()?;
            if code_segments.next().is_some() {
                return None;
            }
            return (code.svma & !(PAGE_SIZE - 1)).checked_add(offset_in_mapping);
        }
        let segment = self.segment_for_mapping(mapping_file_offset)?;
        mapping_file_offset
            .checked_add(offset_in_mapping)?
            .wrapping_sub(segment.file_offset)
            .checked_add(segment.svma)
    }

    /// Whether the code this file describes is in the file itself: false for separate debug
    /// files, whose executable segment has a size in memory but no bytes in the file.
    fn code_is_in_file(&self) -> bool {
        !self
            .load_segments
            .iter()
            .any(|segment| segment.executable && segment.file_size == 0 && segment.memory_size > 0)
    }

    /// Turns a file offset into an SVMA, through the `PT_LOAD` segment whose file bytes
    /// contain it (`None` when no segment does, e.g. offsets of section headers).
    pub fn svma_for_file_offset(&self, file_offset: u64) -> Option<u64> {
        self.load_segments
            .iter()
            .find(|segment| {
                file_offset >= segment.file_offset
                    && file_offset - segment.file_offset < segment.file_size
            })
            .map(|segment| file_offset - segment.file_offset + segment.svma)
    }

    /// The segment a mapping with file offset `mapping_file_offset` was made for: the one
    /// whose first page starts there (the mapping as the loader made it), else the one whose
    /// file bytes contain that offset (a later piece of a mapping split by `mprotect`).
    fn segment_for_mapping(&self, mapping_file_offset: u64) -> Option<&LoadSegment> {
        let first_page = |segment: &LoadSegment| segment.file_offset & !(PAGE_SIZE - 1);
        self.load_segments
            .iter()
            .find(|segment| first_page(segment) == mapping_file_offset)
            .or_else(|| {
                self.load_segments.iter().find(|segment| {
                    mapping_file_offset >= segment.file_offset
                        && mapping_file_offset - segment.file_offset < segment.file_size
                })
            })
    }
}

/// Reads a whole file, with an error that names it.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses `data` as ELF, telling "not ELF at all" from "ELF but broken".
pub(crate) fn parse_elf<'data>(
    path: &Path,
    data: &'data [u8],
) -> Result<object::File<'data>, Error> {
    if !data.starts_with(&object::elf::ELFMAG) {
        return Err(Error::NotElf {
            path: path.to_path_buf(),
        });
    }
    let malformed = |error: object::Error| Error::MalformedElf {
        path: path.to_path_buf(),
        reason: error.to_string(),
    };
    match object::FileKind::parse(data).map_err(malformed)? {
        object::FileKind::Elf32 | object::FileKind::Elf64 => {
            object::File::parse(data).map_err(malformed)
        }
        _ => Err(Error::NotElf {
            path: path.to_path_buf(),
        }),
    }
}

/// The build ID as lowercase hex, or empty when absent or unreadable.
pub(crate) fn build_id_hex(file: &object::File<'_>) -> String {
    match file.build_id() {
        Ok(Some(bytes)) => bytes.iter().fold(String::new(), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        }),
        _ => String::new(),
    }
}

fn debuglink(file: &object::File<'_>) -> Option<DebugLink> {
    let (name, crc32) = file.gnu_debuglink().ok()??;
    Some(DebugLink {
        file_name: String::from_utf8_lossy(name).into_owned(),
        crc32,
    })
}

/// Whether the file has a `.debug_info` with bytes in it (`object` also finds a compressed
/// `.zdebug_info` under that name). `objcopy --only-keep-debug` and `strip --strip-debug`
/// leave other sections in place, so the section's presence alone is not enough.
pub(crate) fn has_dwarf(file: &object::File<'_>) -> bool {
    file.section_by_name(".debug_info").is_some_and(|section| {
        section.kind() != SectionKind::UninitializedData
            && section.file_range().is_some_and(|(_, size)| size > 0)
    })
}

fn has_function_symbol<'data: 'file, 'file>(
    mut symbols: impl Iterator<Item = object::Symbol<'data, 'file>>,
) -> bool {
    symbols.any(|symbol| symbol.kind() == object::SymbolKind::Text && symbol.is_definition())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(file_offset: u64, file_size: u64, svma: u64, executable: bool) -> LoadSegment {
        LoadSegment {
            file_offset,
            file_size,
            svma,
            memory_size: file_size,
            executable,
        }
    }

    fn info(load_segments: Vec<LoadSegment>) -> ObjectInfo {
        ObjectInfo {
            path: PathBuf::from("test"),
            build_id: String::new(),
            debuglink: None,
            has_symtab: true,
            has_dynsym: false,
            has_dwarf: false,
            load_segments,
        }
    }

    const BIAS: u64 = 0x5555_0000_0000;

    #[test]
    fn lld_layout_with_offsets_apart_from_addresses() {
        // rustc's default linker, lld, puts code at p_offset 0x12d90 but p_vaddr 0x13d90.
        let object = info(vec![
            segment(0, 0x12d8c, 0, false),
            segment(0x12d90, 0x3d560, 0x13d90, true),
            segment(0x502f0, 0x2748, 0x522f0, false),
        ]);
        // The code mapping starts at the segment's first page: offset 0x12000, at bias+0x13000.
        let code = object.svma_for_runtime_address(BIAS + 0x13eb0, BIAS + 0x13000, 0x12000);
        assert_eq!(code, Some(0x13eb0));
        assert_eq!(
            object.svma_for_runtime_address(BIAS + 0x100, BIAS, 0),
            Some(0x100)
        );
        // RELRO splits the data mapping; the second piece starts inside the segment.
        assert_eq!(
            object.svma_for_runtime_address(BIAS + 0x52300, BIAS + 0x52000, 0x50000),
            Some(0x52300)
        );
        assert_eq!(
            object.svma_for_runtime_address(BIAS + 0x53010, BIAS + 0x53000, 0x51000),
            Some(0x53010)
        );
        assert_eq!(object.svma_for_file_offset(0x12d90), Some(0x13d90));
        assert_eq!(object.svma_for_file_offset(0x12d8e), None);
    }

    #[test]
    fn non_pie_executable_has_no_bias() {
        let object = info(vec![
            segment(0, 0x500, 0x400000, false),
            segment(0x1000, 0x2000, 0x401000, true),
        ]);
        assert_eq!(
            object.svma_for_runtime_address(0x401234, 0x401000, 0x1000),
            Some(0x401234)
        );
    }

    #[test]
    fn addresses_outside_the_mapping_or_segments_have_no_svma() {
        let object = info(vec![segment(0x1000, 0x2000, 0x1000, true)]);
        assert_eq!(
            object.svma_for_runtime_address(BIAS, BIAS + 0x1000, 0x1000),
            None
        );
        assert_eq!(
            object.svma_for_runtime_address(BIAS + 0x9000, BIAS + 0x9000, 0x9000),
            None
        );
    }

    #[test]
    fn debug_file_segments_are_taken_as_the_code_mapping() {
        // objcopy --only-keep-debug: p_offset 0 and p_filesz 0 for the code segment.
        let mut code = segment(0, 0, 0x1000, true);
        code.memory_size = 0x271;
        let object = info(vec![segment(0, 0x39c, 0, false), code]);
        assert_eq!(
            object.svma_for_runtime_address(BIAS + 0x1130, BIAS + 0x1000, 0x1000),
            Some(0x1130)
        );
    }
}
