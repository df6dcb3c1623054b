//! Reading an ELF file's unwind sections and load segments (the part that is cached).

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use framehop::ExplicitModuleSectionInfo;
use object::read::elf::{ElfFile64, ProgramHeader};
use object::{Architecture, Endianness, Object, ObjectSection, ReadCache, ReadRef, elf};

use crate::ModuleError;

/// Page size used to match a mapping's file offset with a `PT_LOAD` header. The loader maps each
/// segment from its file offset rounded down to a page.
const PAGE_SIZE: u64 = 0x1000;

/// Identity of a file on disk for the module cache: same device, inode, size and modification
/// time means the same bytes (a rebuilt binary gets a new mtime, usually a new inode too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileKey {
    pub(crate) fn of(meta: &std::fs::Metadata) -> FileKey {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

/// One `PT_LOAD` program header.
#[derive(Clone, Copy, Debug)]
struct LoadSegment {
    offset: u64,
    vaddr: u64,
    filesz: u64,
    executable: bool,
}

/// What the unwinder needs from one ELF file, independent of where it is mapped. Shared
/// (through `Arc`) by every process that maps the file.
#[derive(Debug)]
pub(crate) struct ModuleImage {
    /// Section data and addresses (SVMAs) handed to framehop. Cloning it clones `Arc`s.
    pub(crate) sections: ExplicitModuleSectionInfo<Arc<[u8]>>,
    loads: Vec<LoadSegment>,
    /// SVMA ranges of signal trampolines (FDEs whose CIE has the `S` augmentation, such as
    /// glibc's `__restore_rt`). Usually empty; one entry in libc.
    signal_trampolines: Vec<Range<u64>>,
}

impl ModuleImage {
    /// Parses the ELF file `file` (reading only headers and the unwind sections).
    pub(crate) fn from_file(file: File) -> Result<ModuleImage, ModuleError> {
        let cache = ReadCache::new(file);
        Self::parse(&cache)
    }

    /// Parses an ELF image held in memory (for example the vdso, copied out of a process).
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<ModuleImage, ModuleError> {
        Self::parse(bytes)
    }

    fn parse<'data, R: ReadRef<'data>>(data: R) -> Result<ModuleImage, ModuleError> {
        let file = ElfFile64::<Endianness, R>::parse(data)?;
        if file.architecture() != Architecture::X86_64 {
            return Err(ModuleError::UnsupportedArchitecture(format!(
                "{:?}",
                file.architecture()
            )));
        }
        let endian = file.endian();
        let loads = file
            .elf_program_headers()
            .iter()
            .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
            .map(|ph| LoadSegment {
                offset: ph.p_offset(endian),
                vaddr: ph.p_vaddr(endian),
                filesz: ph.p_filesz(endian),
                executable: ph.p_flags(endian).0 & elf::PF_X.0 != 0,
            })
            .collect();

        let svma_range = |name: &str| {
            let section = file.section_by_name(name)?;
            let start = section.address();
            Some(start..start.checked_add(section.size())?)
        };
        // Section data, or None if the section is absent, empty, or has no bytes in this file
        // (SHT_NOBITS, as in separate debug files).
        let data = |name: &str| -> Result<Option<Arc<[u8]>>, ModuleError> {
            let Some(section) = file.section_by_name(name) else {
                return Ok(None);
            };
            if section.file_range().is_none() {
                return Ok(None);
            }
            let bytes = section.uncompressed_data()?;
            Ok((!bytes.is_empty()).then(|| Arc::from(&*bytes)))
        };

        let eh_frame = data(".eh_frame")?;
        // framehop only consults .debug_frame when there is no .eh_frame; don't copy it otherwise.
        let debug_frame = if eh_frame.is_none() {
            data(".debug_frame")?
        } else {
            None
        };
        let sections = ExplicitModuleSectionInfo {
            // ELF: SVMAs are relative to 0, and framehop's "relative address" is the SVMA.
            base_svma: 0,
            text_svma: svma_range(".text"),
            // Instruction bytes are only used by framehop for mach-O; not needed for ELF.
            text: None,
            got_svma: svma_range(".got"),
            eh_frame_svma: svma_range(".eh_frame"),
            eh_frame_hdr_svma: svma_range(".eh_frame_hdr"),
            eh_frame_hdr: if eh_frame.is_some() {
                data(".eh_frame_hdr")?
            } else {
                None
            },
            eh_frame,
            debug_frame,
            ..Default::default()
        };
        let signal_trampolines = match (&sections.eh_frame, eh_frame_bases(&sections)) {
            (Some(data), Some(bases)) => signal_trampolines(data, &bases),
            _ => Vec::new(),
        };
        Ok(ModuleImage {
            sections,
            loads,
            signal_trampolines,
        })
    }

    /// Whether the code at `svma` is a signal trampoline.
    pub(crate) fn is_signal_trampoline(&self, svma: u64) -> bool {
        self.signal_trampolines.iter().any(|r| r.contains(&svma))
    }

    /// The address at which SVMA 0 of this file sits in a process that mapped the file's bytes
    /// starting at `file_offset` to the address `start` (the load bias of a PIE or shared
    /// library; 0 for a non-PIE executable).
    ///
    /// Finds the `PT_LOAD` segment the mapping came from (preferring an executable one) and uses
    /// `svma = vaddr + (file offset - segment offset)`, which holds for every byte of a segment.
    pub(crate) fn base_avma(&self, start: u64, file_offset: u64) -> Result<u64, ModuleError> {
        let contains = |s: &&LoadSegment| {
            let first_page = s.offset & !(PAGE_SIZE - 1);
            file_offset >= first_page && file_offset < s.offset.saturating_add(s.filesz)
        };
        let segment = self
            .loads
            .iter()
            .filter(contains)
            .find(|s| s.executable)
            .or_else(|| self.loads.iter().find(contains))
            .ok_or(ModuleError::OffsetNotInLoadSegment(file_offset))?;
        let svma_at_start = segment
            .vaddr
            .wrapping_sub(segment.offset)
            .wrapping_add(file_offset);
        Ok(start.wrapping_sub(svma_at_start))
    }

    /// Whether the file has any call-frame information framehop can use.
    pub(crate) fn has_cfi(&self) -> bool {
        self.sections.eh_frame.is_some() || self.sections.debug_frame.is_some()
    }
}

/// A module as mapped into one process.
#[derive(Clone, Debug)]
pub(crate) struct LoadedModule {
    pub(crate) name: Arc<str>,
    pub(crate) avma_range: Range<u64>,
    pub(crate) base_avma: u64,
    pub(crate) image: Arc<ModuleImage>,
}

/// gimli's base addresses for reading the `.eh_frame` of `sections` (and its search table);
/// `None` without an `.eh_frame`.
pub(crate) fn eh_frame_bases(
    sections: &ExplicitModuleSectionInfo<Arc<[u8]>>,
) -> Option<gimli::BaseAddresses> {
    let start = |r: &Option<Range<u64>>| r.as_ref().map_or(0, |r| r.start);
    let mut bases = gimli::BaseAddresses::default()
        .set_eh_frame(sections.eh_frame_svma.as_ref()?.start)
        .set_text(start(&sections.text_svma))
        .set_got(start(&sections.got_svma));
    if let Some(hdr) = &sections.eh_frame_hdr_svma {
        bases = bases.set_eh_frame_hdr(hdr.start);
    }
    Some(bases)
}

/// Finds the FDEs of signal trampolines in `.eh_frame`. A malformed section yields what was
/// found before the error.
fn signal_trampolines(eh_frame: &[u8], bases: &gimli::BaseAddresses) -> Vec<Range<u64>> {
    use gimli::{CieOrFde, EhFrame, LittleEndian, UnwindSection};

    let eh_frame = EhFrame::new(eh_frame, LittleEndian);
    // Pass 1: the (few) CIEs with the `S` augmentation. Most files have none.
    let mut cies = Vec::new();
    let mut entries = eh_frame.entries(bases);
    while let Ok(Some(entry)) = entries.next() {
        if let CieOrFde::Cie(cie) = entry
            && cie.is_signal_trampoline()
        {
            cies.push(cie.offset());
        }
    }
    if cies.is_empty() {
        return Vec::new();
    }
    // Pass 2: the address ranges of the FDEs using them.
    let mut ranges = Vec::new();
    let mut entries = eh_frame.entries(bases);
    while let Ok(Some(entry)) = entries.next() {
        if let CieOrFde::Fde(partial) = entry
            && cies.contains(&partial.cie_offset().0)
            && let Ok(fde) =
                partial.parse(|section, bases, offset| section.cie_from_offset(bases, offset))
        {
            let start = fde.initial_address();
            ranges.push(start..start.saturating_add(fde.len()));
        }
    }
    ranges
}
