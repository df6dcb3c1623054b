//! Memory mappings of a process: which ones are backed by a file that can be symbolized,
//! and the `/proc/PID/maps` line format they come from.

use std::path::Path;

/// What backs a memory mapping, judged from the path `/proc/PID/maps` shows for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingKind<'a> {
    /// A file on disk (an executable or shared library) that can be opened and symbolized.
    File(&'a Path),
    /// Memory with no file to symbolize from.
    Special(SpecialMapping),
}

/// Mappings that have no file to read symbols from. Addresses in them get no frames; the
/// caller keeps the raw address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialMapping {
    /// `[vdso]`: code the kernel maps into every process (`clock_gettime`, ...). It is an ELF
    /// image that could be read from `/proc/PID/mem` while the process lives; not done yet.
    Vdso,
    /// `[vsyscall]`: the legacy fixed-address syscall page.
    Vsyscall,
    /// `[vvar]` and friends: kernel data pages next to the vDSO.
    Vvar,
    /// `[heap]`: the brk heap (JIT code can live here).
    Heap,
    /// `[stack]` or `[stack:TID]`.
    Stack,
    /// No path, `[anon:NAME]`, `/memfd:NAME`, or `//anon`: anonymous memory, e.g. JIT code.
    Anonymous,
    /// A file that was deleted or replaced after it was mapped (`PATH (deleted)`): what is at
    /// the path now, if anything, is not what was mapped.
    Deleted,
    /// Any other bracketed kernel name (`[uprobes]`, ...).
    OtherKernel,
}

impl MappingKind<'_> {
    /// Classifies the path column of a `/proc/PID/maps` line (empty for anonymous memory).
    pub fn from_maps_path(path: &str) -> MappingKind<'_> {
        let special = match path {
            "" | "//anon" => SpecialMapping::Anonymous,
            "[vdso]" => SpecialMapping::Vdso,
            "[vsyscall]" => SpecialMapping::Vsyscall,
            "[vvar]" | "[vvar_vclock]" => SpecialMapping::Vvar,
            "[heap]" => SpecialMapping::Heap,
            "[stack]" => SpecialMapping::Stack,
            _ if path.starts_with("[stack:") => SpecialMapping::Stack,
            _ if path.starts_with("[anon:") || path.starts_with("/memfd:") => {
                SpecialMapping::Anonymous
            }
            _ if path.starts_with('[') => SpecialMapping::OtherKernel,
            _ if path.ends_with(" (deleted)") => SpecialMapping::Deleted,
            _ => return MappingKind::File(Path::new(path)),
        };
        MappingKind::Special(special)
    }
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapsEntry {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Whether the mapping is executable (`x` in the permissions).
    pub executable: bool,
    /// The file offset mapped at `start`.
    pub file_offset: u64,
    /// The path column as printed (may be empty, bracketed, or end in ` (deleted)`).
    pub path: String,
}

impl MapsEntry {
    /// Parses a line like
    /// `55d0c8a00000-55d0c8a01000 r-xp 00001000 fd:01 1234   /usr/bin/prog`.
    /// Returns `None` for a line that does not have that shape.
    pub fn parse(line: &str) -> Option<MapsEntry> {
        let mut fields = line.splitn(6, ' ');
        let (start, end) = fields.next()?.split_once('-')?;
        let permissions = fields.next()?;
        let file_offset = fields.next()?;
        let _device = fields.next()?;
        let _inode = fields.next()?;
        // The path is padded with spaces to a column and may itself contain spaces.
        let path = fields.next().unwrap_or("").trim_start().to_string();
        Some(MapsEntry {
            start: u64::from_str_radix(start, 16).ok()?,
            end: u64::from_str_radix(end, 16).ok()?,
            executable: permissions.as_bytes().get(2) == Some(&b'x'),
            file_offset: u64::from_str_radix(file_offset, 16).ok()?,
            path,
        })
    }

    /// Whether `address` falls in this mapping.
    pub fn contains(&self, address: u64) -> bool {
        self.start <= address && address < self.end
    }

    /// What backs this mapping.
    pub fn kind(&self) -> MappingKind<'_> {
        MappingKind::from_maps_path(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let entry = MapsEntry::parse(
            "55d0c8a00000-55d0c8a01000 r-xp 00001000 fd:01 1234                       /usr/bin/my prog",
        )
        .unwrap();
        assert_eq!(entry.start, 0x55d0c8a00000);
        assert_eq!(entry.end, 0x55d0c8a01000);
        assert!(entry.executable);
        assert_eq!(entry.file_offset, 0x1000);
        assert_eq!(
            entry.kind(),
            MappingKind::File(Path::new("/usr/bin/my prog"))
        );
        assert!(entry.contains(0x55d0c8a00fff) && !entry.contains(0x55d0c8a01000));

        let anonymous = MapsEntry::parse("7f00-8f00 rw-p 00000000 00:00 0 ").unwrap();
        assert_eq!(
            anonymous.kind(),
            MappingKind::Special(SpecialMapping::Anonymous)
        );
        assert!(!anonymous.executable);
        assert_eq!(MapsEntry::parse("not a maps line"), None);
    }

    #[test]
    fn classifies_special_paths() {
        let special = |path| match MappingKind::from_maps_path(path) {
            MappingKind::Special(special) => Some(special),
            MappingKind::File(_) => None,
        };
        assert_eq!(special("[vdso]"), Some(SpecialMapping::Vdso));
        assert_eq!(special("[vsyscall]"), Some(SpecialMapping::Vsyscall));
        assert_eq!(special("[heap]"), Some(SpecialMapping::Heap));
        assert_eq!(special("[stack]"), Some(SpecialMapping::Stack));
        assert_eq!(special("[stack:42]"), Some(SpecialMapping::Stack));
        assert_eq!(special("[anon:jit]"), Some(SpecialMapping::Anonymous));
        assert_eq!(special(""), Some(SpecialMapping::Anonymous));
        assert_eq!(
            special("/memfd:x (deleted)"),
            Some(SpecialMapping::Anonymous)
        );
        assert_eq!(
            special("/tmp/a.out (deleted)"),
            Some(SpecialMapping::Deleted)
        );
        assert_eq!(special("[uprobes]"), Some(SpecialMapping::OtherKernel));
        assert_eq!(special("/usr/lib/libc.so.6"), None);
    }
}
