//! The caching symbolizer: objects loaded once per build ID, answers cached per address.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::debug_file::{build_id_path, find_debug_file, find_supplementary_file};
use crate::dwarf::{DwarfContext, DwarfFrame};
use crate::names::Names;
use crate::object_info::{parse_elf, read_file};
use crate::symbols::{SymbolTable, SymbolTableKind};
use crate::{Error, FunctionSymbol, MappingKind, ObjectInfo, SpecialMapping};

/// One source-level frame at an address. Numbers are 0 and strings empty when unknown, as in
/// pprof's `Line` and `Function` messages that these fill. Strings are shared: the many
/// addresses of one function hold the same names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFrame {
    /// The function's name as the linker sees it (`_ZN4prog4main17h…E`, `_RNv…`, or the plain
    /// name of a C function). For an inline frame, the inlined function's.
    pub function_linkage_name: Arc<str>,
    /// The demangled name (`prog::main`, `ns::f(int)`, or the C name).
    pub function_name: Arc<str>,
    /// The file `line` is in, as the compiler recorded it (absolute when it knew the
    /// directory). Usually `function_file`; it differs when the line table attributes code to
    /// another file without an inline frame for it (LLVM does this at `-O2`), or when the line
    /// is unknown.
    pub file: Arc<str>,
    /// The source line executing in this function: for the innermost frame the line of the
    /// address, for a caller the line of the call that was inlined.
    pub line: u32,
    /// The 1-based column, when the compiler recorded one (rustc and gcc do by default).
    pub column: u32,
    /// The file the function is declared in (`DW_AT_decl_file`), the one `start_line` counts
    /// in, as pprof's `Function.filename` wants it.
    pub function_file: Arc<str>,
    /// The line where the function is declared (`DW_AT_decl_line`): the `fn`/name line. For
    /// an inline frame it is the inlined function's own declaration line, not the caller's.
    pub start_line: u32,
    /// Whether this function was inlined into the next frame (every frame but the last).
    pub inlined: bool,
}

/// Where the frames of a [`Symbolized`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameSource {
    /// DWARF: files, lines, inline frames.
    Dwarf,
    /// `.symtab` (of the file or its debug file): one frame with the function name only.
    Symtab,
    /// `.dynsym`: one frame with the name of the exported function containing the address.
    Dynsym,
    /// Nothing in the object covers the address (a stripped object, or code between
    /// functions such as the PLT): no frames.
    NotFound,
    /// The address is in a mapping with no file behind it: no frames.
    Special(SpecialMapping),
}

/// The answer for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbolized {
    /// Innermost inline frame first, the function that was really called last. Empty when
    /// nothing is known; the caller then keeps the address.
    pub frames: Arc<[SourceFrame]>,
    /// Where the frames came from.
    pub source: FrameSource,
    /// Whether the object has neither DWARF nor `.symtab`, not even in a separate debug file,
    /// so most of its addresses get no frames. Callers should warn once per object.
    pub object_is_stripped: bool,
}

impl Symbolized {
    fn special(special: SpecialMapping) -> Symbolized {
        Symbolized {
            frames: Arc::from([]),
            source: FrameSource::Special(special),
            object_is_stripped: false,
        }
    }
}

/// A handle to an object loaded in a [`Symbolizer`], to skip the lookup by path or build ID
/// when symbolizing many addresses of one mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectId(usize);

/// An object file as loaded for symbolization: its facts, its debug file, and its parsed
/// DWARF and symbols.
pub struct LoadedObject {
    info: ObjectInfo,
    debug_file: Option<PathBuf>,
    dwarf: Option<DwarfContext>,
    dwarf_error: Option<String>,
    symbols: SymbolTable,
    names: Names,
    answers: HashMap<u64, Symbolized>,
}

impl LoadedObject {
    /// Facts about the file that was loaded (for a deleted or replaced binary found by build
    /// ID, about its debug file).
    pub fn info(&self) -> &ObjectInfo {
        &self.info
    }

    /// The separate debug file that supplied DWARF or `.symtab`, if one was used.
    pub fn debug_file(&self) -> Option<&Path> {
        self.debug_file.as_deref()
    }

    /// Whether usable DWARF was found (in the file or its debug file).
    pub fn has_dwarf(&self) -> bool {
        self.dwarf.is_some()
    }

    /// Why DWARF that exists could not be used (corrupt, bad compression), if it could not.
    pub fn dwarf_error(&self) -> Option<&str> {
        self.dwarf_error.as_deref()
    }

    /// Whether neither DWARF nor `.symtab` was found anywhere for this object.
    pub fn is_stripped(&self) -> bool {
        self.dwarf.is_none() && self.symbols.kind() != SymbolTableKind::Symtab
    }

    /// The function symbol containing `svma`, with its start and size.
    pub fn function_containing(&self, svma: u64) -> Option<FunctionSymbol> {
        self.symbols.function_containing(svma)
    }

    fn symbolize(&mut self, svma: u64) -> Symbolized {
        if let Some(answer) = self.answers.get(&svma) {
            return answer.clone();
        }
        let answer = self.symbolize_uncached(svma);
        self.answers.insert(svma, answer.clone());
        answer
    }

    fn symbolize_uncached(&mut self, svma: u64) -> Symbolized {
        let dwarf_frames = match &mut self.dwarf {
            Some(dwarf) => dwarf.frames(svma, &mut self.names),
            None => Vec::new(),
        };
        let symbol_name = self.symbols.linkage_name_containing(svma);
        let (frames, source) = if !dwarf_frames.is_empty() {
            let frames = frames_from_dwarf(dwarf_frames, symbol_name, &mut self.names);
            (frames, FrameSource::Dwarf)
        } else if let Some(linkage_name) = symbol_name {
            let frame = frame_from_symbol(linkage_name, &mut self.names);
            let source = match self.symbols.kind() {
                SymbolTableKind::Dynsym => FrameSource::Dynsym,
                _ => FrameSource::Symtab,
            };
            (vec![frame], source)
        } else {
            (Vec::new(), FrameSource::NotFound)
        };
        Symbolized {
            frames: Arc::from(frames),
            source,
            object_is_stripped: self.is_stripped(),
        }
    }
}

fn frame_from_symbol(linkage_name: &Arc<str>, names: &mut Names) -> SourceFrame {
    let empty = names.intern("");
    SourceFrame {
        function_linkage_name: linkage_name.clone(),
        function_name: names.demangled(linkage_name),
        file: empty.clone(),
        line: 0,
        column: 0,
        function_file: empty,
        start_line: 0,
        inlined: false,
    }
}

/// Turns DWARF frames into source frames. The outermost frame takes its name from the
/// symbol table when DWARF has none (line-table-only units, assembly).
fn frames_from_dwarf(
    dwarf_frames: Vec<DwarfFrame>,
    symbol_name: Option<&Arc<str>>,
    names: &mut Names,
) -> Vec<SourceFrame> {
    let outermost = dwarf_frames.len() - 1;
    let empty = names.intern("");
    dwarf_frames
        .into_iter()
        .enumerate()
        .map(|(index, frame)| {
            let linkage_name = match frame.function_name {
                Some(name) => name,
                None if index == outermost => symbol_name.cloned().unwrap_or(empty.clone()),
                None => empty.clone(),
            };
            let function_file = frame.declaration.file.unwrap_or(empty.clone());
            // A row with line 0 marks compiler-made code; the file it carries then says
            // nothing about the source, so report the function's file.
            let file = match (frame.line, frame.file) {
                (Some(_), Some(file)) => file,
                (None, _) | (_, None) => function_file.clone(),
            };
            SourceFrame {
                function_name: names.demangled(&linkage_name),
                function_linkage_name: linkage_name,
                file,
                line: frame.line.unwrap_or(0),
                column: frame.column.unwrap_or(0),
                function_file,
                start_line: frame.declaration.line.unwrap_or(0),
                inlined: index != outermost,
            }
        })
        .collect()
}

/// Symbolizes addresses of ELF files, loading each file once.
///
/// Objects are cached by build ID (and, for files without one, by path and modification
/// time), and every answer is cached per (object, SVMA), so symbolizing the same addresses
/// again, as sampling profiles do, costs a hash lookup.
pub struct Symbolizer {
    debug_dirs: Vec<PathBuf>,
    objects: Vec<LoadedObject>,
    by_build_id: HashMap<String, ObjectId>,
    by_path_and_mtime: HashMap<(PathBuf, SystemTime), ObjectId>,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Symbolizer::new()
    }
}

impl Symbolizer {
    /// A symbolizer that looks for separate debug files under `/usr/lib/debug`.
    pub fn new() -> Symbolizer {
        Symbolizer::with_debug_dirs(vec![PathBuf::from("/usr/lib/debug")])
    }

    /// A symbolizer that looks for separate debug files under `debug_dirs` (each laid out
    /// like `/usr/lib/debug`: `.build-id/ab/cdef….debug` and mirrored directories).
    pub fn with_debug_dirs(debug_dirs: Vec<PathBuf>) -> Symbolizer {
        Symbolizer {
            debug_dirs,
            objects: Vec::new(),
            by_build_id: HashMap::new(),
            by_path_and_mtime: HashMap::new(),
        }
    }

    /// Loads the object at `path` (or returns the one already loaded).
    ///
    /// `build_id` is the build ID recorded for the mapping (hex), or empty when unknown. When
    /// given, an object already loaded with that build ID is reused without touching the file,
    /// and a file with a different build ID is refused (it was rebuilt since); in both that
    /// case and when the file is gone, a debug file with that build ID under the debug
    /// directories, or the copy of the binary `perf record` kept in its build-ID cache, is
    /// used instead when there is one.
    pub fn load(&mut self, path: &Path, build_id: &str) -> Result<ObjectId, Error> {
        // Build IDs are kept in lowercase hex; avoid allocating on the hot path when they are.
        let build_id: std::borrow::Cow<'_, str> =
            if build_id.bytes().any(|b| b.is_ascii_uppercase()) {
                build_id.to_ascii_lowercase().into()
            } else {
                build_id.into()
            };
        if let Some(&id) = self.by_build_id.get(&*build_id) {
            return Ok(id);
        }
        let mtime = match std::fs::metadata(path) {
            Ok(metadata) => metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            Err(source) => {
                return self
                    .load_debug_file_by_build_id(&build_id)
                    .ok_or_else(|| Error::Io {
                        path: path.to_path_buf(),
                        source,
                    });
            }
        };
        let path_key = (path.to_path_buf(), mtime);
        if let Some(&id) = self.by_path_and_mtime.get(&path_key) {
            let loaded_build_id = &self.objects[id.0].info.build_id;
            if build_id.is_empty() || *loaded_build_id == *build_id {
                return Ok(id);
            }
        }

        let data = read_file(path)?;
        let file = parse_elf(path, &data)?;
        let info = ObjectInfo::from_elf(path, &file);
        if !build_id.is_empty() && info.build_id != build_id {
            return self.load_debug_file_by_build_id(&build_id).ok_or_else(|| {
                Error::BuildIdMismatch {
                    path: path.to_path_buf(),
                    expected: build_id.into_owned(),
                    found: info.build_id.clone(),
                }
            });
        }
        // The same build reached through another path (a symlink, a copy) is reused, unless
        // this copy carries debug information the loaded one lacks (it was stripped).
        if let Some(&id) = self.by_build_id.get(&info.build_id) {
            let loaded = &self.objects[id.0];
            let adds_dwarf = info.has_dwarf && !loaded.has_dwarf();
            let adds_symtab = info.has_symtab && loaded.symbols.kind() != SymbolTableKind::Symtab;
            if !adds_dwarf && !adds_symtab {
                self.by_path_and_mtime.insert(path_key, id);
                return Ok(id);
            }
        }
        let object = self.load_object(path, info, &file);
        Ok(self.register(object, Some(path_key)))
    }

    /// Symbolizes `svma` (an address as the file states it) in the file at `path`.
    /// See [`Symbolizer::load`] for `build_id`; pass it whenever it is known, because without
    /// it every call has to check the file's modification time.
    pub fn symbolize(
        &mut self,
        path: &Path,
        build_id: &str,
        svma: u64,
    ) -> Result<Symbolized, Error> {
        let id = self.load(path, build_id)?;
        Ok(self.symbolize_loaded(id, svma))
    }

    /// Symbolizes `svma` in an object already loaded; cannot fail.
    pub fn symbolize_loaded(&mut self, id: ObjectId, svma: u64) -> Symbolized {
        self.objects[id.0].symbolize(svma)
    }

    /// Symbolizes an address seen in a running process, in the mapping that contains it as
    /// `/proc/PID/maps` describes it: the path column, the mapping's start address and file
    /// offset. Mappings with no file behind them ([`SpecialMapping`]) give no frames and no
    /// error; so does an address no segment of the file accounts for.
    ///
    /// A file deleted or replaced since it was mapped (`PATH (deleted)`) is symbolized only
    /// when `build_id` is given and that build is still at hand (loaded before, or its debug
    /// file is under the debug directories): without it, whatever is at the path now would
    /// give wrong answers.
    pub fn symbolize_runtime_address(
        &mut self,
        maps_path: &str,
        build_id: &str,
        mapping_start: u64,
        mapping_file_offset: u64,
        address: u64,
    ) -> Result<Symbolized, Error> {
        let id = match MappingKind::from_maps_path(maps_path) {
            MappingKind::File(path) => self.load(path, build_id)?,
            MappingKind::Special(SpecialMapping::Deleted) if !build_id.is_empty() => {
                let path = maps_path.trim_end_matches(" (deleted)");
                match self.load(Path::new(path), build_id) {
                    Ok(id) => id,
                    Err(_) => return Ok(Symbolized::special(SpecialMapping::Deleted)),
                }
            }
            MappingKind::Special(special) => return Ok(Symbolized::special(special)),
        };
        let object = &self.objects[id.0];
        match object
            .info
            .svma_for_runtime_address(address, mapping_start, mapping_file_offset)
        {
            Some(svma) => Ok(self.symbolize_loaded(id, svma)),
            None => Ok(Symbolized {
                frames: Arc::from([]),
                source: FrameSource::NotFound,
                object_is_stripped: object.is_stripped(),
            }),
        }
    }

    /// The function symbol containing `svma` in the file at `path`: its name, start address
    /// and size. `None` when no symbol contains the address.
    pub fn function_containing(
        &mut self,
        path: &Path,
        build_id: &str,
        svma: u64,
    ) -> Result<Option<FunctionSymbol>, Error> {
        let id = self.load(path, build_id)?;
        Ok(self.objects[id.0].function_containing(svma))
    }

    /// The object behind a handle from [`Symbolizer::load`].
    pub fn object(&self, id: ObjectId) -> &LoadedObject {
        &self.objects[id.0]
    }

    /// Loads a debug file found by build ID as the object itself, for binaries that were
    /// deleted or rebuilt after they were profiled. Debug files keep the program headers, so
    /// the address arithmetic still works.
    fn load_debug_file_by_build_id(&mut self, build_id: &str) -> Option<ObjectId> {
        if build_id.is_empty() {
            return None;
        }
        // A separate debug file, else the binary itself as perf's build-ID cache kept it
        // (its build ID is checked below, as a debug file's).
        let debug_path = self
            .debug_dirs
            .iter()
            .filter_map(|debug_dir| build_id_path(debug_dir, build_id))
            .chain(crate::debug_file::perf_cache_path(build_id))
            .find(|candidate| candidate.is_file())?;
        let data = read_file(&debug_path).ok()?;
        let file = parse_elf(&debug_path, &data).ok()?;
        let info = ObjectInfo::from_elf(&debug_path, &file);
        if info.build_id != build_id {
            return None;
        }
        let object = self.load_object(&debug_path, info, &file);
        Some(self.register(object, None))
    }

    /// Parses the DWARF and symbols of `file`, with its separate debug file (and that one's
    /// dwz supplementary file) when the file lacks DWARF or `.symtab`.
    fn load_object(&self, path: &Path, info: ObjectInfo, file: &object::File<'_>) -> LoadedObject {
        let debug_found = if info.has_dwarf && info.has_symtab {
            None
        } else {
            find_debug_file(path, &info, &self.debug_dirs)
        };
        let debug_file = debug_found
            .as_ref()
            .and_then(|found| parse_elf(&found.path, &found.data).ok());

        let (dwarf_path, dwarf_file) = match (&debug_found, &debug_file) {
            _ if info.has_dwarf => (path, Some(file)),
            (Some(found), Some(debug_file)) => (found.path.as_path(), Some(debug_file)),
            _ => (path, None),
        };
        let (dwarf, dwarf_error) = match dwarf_file {
            Some(dwarf_file) => {
                let supplementary =
                    find_supplementary_file(dwarf_path, dwarf_file, &self.debug_dirs);
                let supplementary_file = supplementary
                    .as_ref()
                    .and_then(|found| parse_elf(&found.path, &found.data).ok());
                match DwarfContext::load(dwarf_file, supplementary_file.as_ref()) {
                    Ok(context) => (Some(context), None),
                    Err(error) => (None, Some(error)),
                }
            }
            None => (None, None),
        };

        let mut symbol_files = vec![file];
        symbol_files.extend(debug_file.as_ref());
        let symbols = SymbolTable::from_files(&symbol_files);
        drop(debug_file);
        LoadedObject {
            info,
            debug_file: debug_found.map(|found| found.path),
            dwarf,
            dwarf_error,
            symbols,
            names: Names::default(),
            answers: HashMap::new(),
        }
    }

    fn register(
        &mut self,
        object: LoadedObject,
        path_key: Option<(PathBuf, SystemTime)>,
    ) -> ObjectId {
        let id = ObjectId(self.objects.len());
        if !object.info.build_id.is_empty() {
            self.by_build_id.insert(object.info.build_id.clone(), id);
        }
        if let Some(path_key) = path_key {
            self.by_path_and_mtime.insert(path_key, id);
        }
        self.objects.push(object);
        id
    }
}
