//! DWARF lookups on top of `addr2line`: source frames of an address, innermost inline frame
//! first, each with the declaration line of its function.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use gimli::Reader as _;
use object::{Object, ObjectSection};

use crate::names::Names;

/// Sections are copied out of the file into reference-counted buffers, so the context owns
/// its data and the file's bytes can be dropped after loading.
pub(crate) type Reader = gimli::EndianArcSlice<gimli::RunTimeEndian>;

/// How many `DW_AT_abstract_origin` / `DW_AT_specification` links to follow looking for a
/// declaration line. Real chains are one or two long; the bound stops cycles in bad DWARF.
pub(crate) const MAX_ORIGIN_LINKS: usize = 8;

/// One frame as DWARF describes it; names and locations may each be missing.
#[derive(Debug)]
pub(crate) struct DwarfFrame {
    /// `DW_AT_linkage_name` when present, else `DW_AT_name` (what addr2line reports).
    pub(crate) function_name: Option<Arc<str>>,
    pub(crate) file: Option<Arc<str>>,
    pub(crate) line: Option<u32>,
    pub(crate) column: Option<u32>,
    /// Where the function (for an inline frame, the inlined function) is declared.
    pub(crate) declaration: Declaration,
}

/// `DW_AT_decl_line` and `DW_AT_decl_file` (as a path) of a function.
#[derive(Debug, Default, Clone)]
pub(crate) struct Declaration {
    pub(crate) line: Option<u32>,
    pub(crate) file: Option<Arc<str>>,
}

/// The parsed DWARF of one object (and of its supplementary file, if any).
pub(crate) struct DwarfContext {
    context: addr2line::Context<Reader>,
    /// Unit headers, to resolve references that point into another unit.
    unit_headers: UnitHeaders,
    /// Declarations by (unit offset, entry offset) of the frame's entry: every address of a
    /// function asks for the same one.
    declarations: HashMap<(usize, usize), Declaration>,
}

impl DwarfContext {
    /// Parses the DWARF of `file`, with `supplementary` as the file its
    /// `.gnu_debugaltlink` points to (dwz). Returns a description of the problem when the
    /// DWARF cannot be used at all.
    pub(crate) fn load(
        file: &object::File<'_>,
        supplementary: Option<&object::File<'_>>,
    ) -> Result<DwarfContext, String> {
        let mut dwarf = load_dwarf(file)?;
        if let Some(supplementary) = supplementary {
            dwarf.set_sup(load_dwarf(supplementary)?);
        }
        let context = addr2line::Context::from_dwarf(dwarf).map_err(|error| error.to_string())?;
        Ok(DwarfContext {
            context,
            unit_headers: UnitHeaders::default(),
            declarations: HashMap::new(),
        })
    }

    /// The frames at `svma`, innermost first. Empty when no unit covers the address. A DWARF
    /// error part-way keeps the frames found so far: a partial answer is still useful.
    pub(crate) fn frames(&mut self, svma: u64, names: &mut Names) -> Vec<DwarfFrame> {
        // Split DWARF (.dwo) is not loaded; skipping the loads still gives the skeleton's lines.
        let Ok(mut frame_iter) = self.context.find_frames(svma).skip_all_loads() else {
            return Vec::new();
        };
        let unit = self.context.find_dwarf_and_unit(svma).skip_all_loads();
        let mut frames = Vec::new();
        while let Ok(Some(frame)) = frame_iter.next() {
            let function_name = frame
                .function
                .as_ref()
                .and_then(|name| name.raw_name().ok())
                .map(|name| names.intern(&name));
            let declaration = match (unit, frame.dw_die_offset) {
                (Some(unit), Some(offset)) => {
                    let key = (unit.header.offset().0, offset.0);
                    match self.declarations.get(&key) {
                        Some(declaration) => declaration.clone(),
                        None => {
                            let declaration = declaration(
                                &self.unit_headers,
                                DwarfFile::Main,
                                unit,
                                offset,
                                MAX_ORIGIN_LINKS,
                                names,
                            );
                            self.declarations.insert(key, declaration.clone());
                            declaration
                        }
                    }
                }
                _ => Declaration::default(),
            };
            let (file, line, column) = match frame.location {
                Some(location) => (
                    location.file.map(|file| names.intern(file)),
                    location.line.filter(|&line| line != 0),
                    location.column.filter(|&column| column != 0),
                ),
                None => (None, None, None),
            };
            frames.push(DwarfFrame {
                function_name,
                file,
                line,
                column,
                declaration,
            });
        }
        frames
    }
}

/// Which file a unit is in: the object's own DWARF, or the supplementary file that dwz moved
/// shared entries into (reached through `DW_FORM_GNU_ref_alt`).
#[derive(Debug, Clone, Copy)]
enum DwarfFile {
    Main,
    Supplementary,
}

/// The unit headers of each file sorted by offset, built on first need, to find the unit a
/// cross-unit reference points into (`DW_FORM_ref_addr` from LTO builds, or dwz's references
/// into the supplementary file).
#[derive(Default)]
struct UnitHeaders {
    main: OnceLock<Vec<gimli::UnitHeader<Reader>>>,
    supplementary: OnceLock<Vec<gimli::UnitHeader<Reader>>>,
}

impl UnitHeaders {
    /// The header of the unit of `dwarf` (which is `file`) that `target` lies in.
    fn containing(
        &self,
        file: DwarfFile,
        dwarf: &gimli::Dwarf<Reader>,
        target: gimli::DebugInfoOffset,
    ) -> Option<&gimli::UnitHeader<Reader>> {
        let headers = match file {
            DwarfFile::Main => &self.main,
            DwarfFile::Supplementary => &self.supplementary,
        };
        let headers = headers.get_or_init(|| {
            let mut headers = Vec::new();
            let mut iter = dwarf.units();
            while let Ok(Some(header)) = iter.next() {
                headers.push(header);
            }
            headers
        });
        let unit_start =
            |header: &gimli::UnitHeader<Reader>| header.debug_info_offset().map(|offset| offset.0);
        let index = headers.partition_point(|header| unit_start(header) <= Some(target.0));
        let header = &headers[index.checked_sub(1)?];
        target.to_unit_offset(header).map(|_| header)
    }
}

/// `DW_AT_decl_line` and `DW_AT_decl_file` of the entry at `offset` of `unit` (in `file`),
/// or of the entry its `DW_AT_abstract_origin` (inline instances, out-of-line copies) or
/// `DW_AT_specification` (definitions of declared methods) points to.
fn declaration(
    unit_headers: &UnitHeaders,
    file: DwarfFile,
    unit: gimli::UnitRef<'_, Reader>,
    offset: gimli::UnitOffset,
    links_left: usize,
    names: &mut Names,
) -> Declaration {
    let Ok(entry) = unit.entry(offset) else {
        return Declaration::default();
    };
    if let Some(line) = entry
        .attr_value(gimli::DW_AT_decl_line)
        .and_then(|value| value.udata_value())
    {
        // The file index is resolved in the unit the attribute was found in.
        let decl_file = match entry.attr_value(gimli::DW_AT_decl_file) {
            Some(gimli::AttributeValue::FileIndex(index)) => file_path(unit, index),
            Some(value) => value.udata_value().and_then(|index| file_path(unit, index)),
            None => None,
        };
        return Declaration {
            line: u32::try_from(line).ok().filter(|&line| line != 0),
            file: decl_file.map(|path| names.intern(&path)),
        };
    }
    let Some(links_left) = links_left.checked_sub(1) else {
        return Declaration::default();
    };
    for link in [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification] {
        let (target_file, target_dwarf, target) = match entry.attr_value(link) {
            Some(gimli::AttributeValue::UnitRef(target)) => {
                return declaration(unit_headers, file, unit, target, links_left, names);
            }
            Some(gimli::AttributeValue::DebugInfoRef(target)) => (file, unit.dwarf, target),
            Some(gimli::AttributeValue::DebugInfoRefSup(target)) => match unit.dwarf.sup() {
                Some(supplementary) => (DwarfFile::Supplementary, supplementary, target),
                None => return Declaration::default(),
            },
            _ => continue,
        };
        let Some(header) = unit_headers.containing(target_file, target_dwarf, target) else {
            return Declaration::default();
        };
        let Ok(target_unit) = target_dwarf.unit(header.clone()) else {
            return Declaration::default();
        };
        let Some(target) = target.to_unit_offset(&target_unit.header) else {
            return Declaration::default();
        };
        return declaration(
            unit_headers,
            target_file,
            gimli::UnitRef::new(target_dwarf, &target_unit),
            target,
            links_left,
            names,
        );
    }
    Declaration::default()
}

/// The DWARF of the ELF file at `path`; errors name the file.
pub(crate) fn read_dwarf(path: &std::path::Path) -> Result<gimli::Dwarf<Reader>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", path.display()))?;
    load_dwarf(&file).map_err(|e| format!("{}: {e}", path.display()))
}

/// Copies the DWARF sections of `file` into owned buffers, decompressing
/// `SHF_COMPRESSED` and `.zdebug_*` sections.
pub(crate) fn load_dwarf(file: &object::File<'_>) -> Result<gimli::Dwarf<Reader>, String> {
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    gimli::Dwarf::load(|section_id: gimli::SectionId| -> Result<Reader, String> {
        let bytes: Arc<[u8]> = match file.section_by_name(section_id.name()) {
            Some(section) => {
                let data = section.uncompressed_data().map_err(|error| {
                    format!("cannot read section {}: {error}", section_id.name())
                })?;
                Arc::from(&*data)
            }
            None => Arc::from(&[][..]),
        };
        Ok(gimli::EndianArcSlice::new(bytes, endian))
    })
}

/// The path of file `index` of the unit's line program, built the way addr2line builds the
/// paths of line-table rows (compilation directory, then the file's directory, then its
/// name, each replacing what came before when absolute), so the two can be compared.
fn file_path(unit: gimli::UnitRef<'_, Reader>, index: u64) -> Option<String> {
    let header = unit.line_program.as_ref()?.header();
    let file = header.file(index)?;
    let mut path = match &unit.comp_dir {
        Some(comp_dir) => comp_dir.to_string_lossy().ok()?.into_owned(),
        None => String::new(),
    };
    // Directory index 0 is the compilation directory itself.
    if file.directory_index() != 0
        && let Some(directory) = file.directory(header)
    {
        let directory = unit.attr_string(directory).ok()?;
        push_path(&mut path, &directory.to_string_lossy().ok()?);
    }
    push_path(
        &mut path,
        &unit
            .attr_string(file.path_name())
            .ok()?
            .to_string_lossy()
            .ok()?,
    );
    Some(path)
}

fn push_path(path: &mut String, component: &str) {
    if component.starts_with('/') {
        *path = component.to_string();
    } else {
        if !path.is_empty() && !path.ends_with('/') {
            path.push('/');
        }
        path.push_str(component);
    }
}

/// The compiler of each compilation unit in the DWARF of the ELF file at `path`
/// (`DW_AT_producer`: `clang version 22.1.0 ...`, `GNU C17 12.2.0 -mtune=generic ...`, rustc's
/// `clang LLVM (rustc version 1.95.0 ...)`), one entry per unit that names one. Empty when the
/// file has no DWARF.
pub fn producers(path: &std::path::Path) -> Result<Vec<String>, String> {
    let dwarf = read_dwarf(path)?;
    let mut out = Vec::new();
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let mut entries = unit.entries();
        let Ok(Some(root)) = entries.next_dfs() else {
            continue;
        };
        if let Some(value) = root.attr_value(gimli::DW_AT_producer)
            && let Ok(name) = dwarf.attr_string(&unit, value)
        {
            out.push(String::from_utf8_lossy(&name).into_owned());
        }
    }
    Ok(out)
}

/// A function as the DWARF of an object declares it: every `DW_TAG_subprogram` with a
/// linkage name, whether it was emitted out of line, only inlined, or both.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subprogram {
    pub linkage_name: String,
    /// `DW_AT_name`: the short name (`eval`, `{closure#0}`, `main`).
    pub name: String,
    /// The declaring file, built as the line table's paths are.
    pub decl_file: String,
    pub decl_line: u32,
}

/// Every function the DWARF of the ELF file at `path` declares with a linkage name, sorted
/// and without duplicates. What a later build calls the functions a profile names: a rebuild
/// can mangle names differently (legacy and v0), and its inline-only functions have no symbol.
pub fn subprograms(path: &std::path::Path) -> Result<Vec<Subprogram>, String> {
    let dwarf = read_dwarf(path)?;
    let mut out = Vec::new();
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let unit_ref = gimli::UnitRef::new(&dwarf, &unit);
        let mut entries = unit.entries();
        while let Ok(Some(entry)) = entries.next_dfs() {
            if entry.tag() != gimli::DW_TAG_subprogram {
                continue;
            }
            // What the entry lacks (a concrete instance keeps its declaration's name, file
            // and line behind DW_AT_specification or DW_AT_abstract_origin) comes from the
            // entry it points to, in the same unit as rustc and clang write them.
            let linked = [gimli::DW_AT_specification, gimli::DW_AT_abstract_origin]
                .into_iter()
                .find_map(|link| match entry.attr_value(link) {
                    Some(gimli::AttributeValue::UnitRef(offset)) => unit.entry(offset).ok(),
                    _ => None,
                });
            let attr = |name| {
                entry
                    .attr_value(name)
                    .or_else(|| linked.as_ref().and_then(|l| l.attr_value(name)))
            };
            let string = |name| {
                attr(name)
                    .and_then(|v| unit_ref.attr_string(v).ok())
                    .and_then(|s| s.to_string_lossy().ok().map(|s| s.into_owned()))
            };
            // C functions have no linkage name: their name is the symbol's.
            let Some(linkage_name) = string(gimli::DW_AT_linkage_name)
                .or_else(|| string(gimli::DW_AT_MIPS_linkage_name))
                .or_else(|| string(gimli::DW_AT_name))
            else {
                continue;
            };
            let Some(decl_line) = attr(gimli::DW_AT_decl_line)
                .and_then(|v| v.udata_value())
                .and_then(|l| u32::try_from(l).ok())
            else {
                continue;
            };
            let decl_file = match attr(gimli::DW_AT_decl_file) {
                Some(gimli::AttributeValue::FileIndex(index)) => file_path(unit_ref, index),
                Some(value) => value.udata_value().and_then(|i| file_path(unit_ref, i)),
                None => None,
            }
            .unwrap_or_default();
            out.push(Subprogram {
                linkage_name,
                name: string(gimli::DW_AT_name).unwrap_or_default(),
                decl_file,
                decl_line,
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
