//! `/proc/PID/maps` parsing, and finding a readable copy of each mapped file.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MapsLine<'a> {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) executable: bool,
    pub(crate) file_offset: u64,
    pub(crate) inode: u64,
    /// The path column; may be empty, `[vdso]`, or end in ` (deleted)`.
    pub(crate) path: &'a str,
}

impl<'a> MapsLine<'a> {
    /// Parses `start-end perms offset dev inode   path`. Returns None for malformed lines.
    pub(crate) fn parse(line: &'a str) -> Option<MapsLine<'a>> {
        let mut rest = line;
        let mut field = || {
            let trimmed = rest.trim_start();
            let end = trimmed.find(' ').unwrap_or(trimmed.len());
            let (f, r) = trimmed.split_at(end);
            rest = r;
            f
        };
        let (start, end) = field().split_once('-')?;
        let perms = field();
        let offset = field();
        let _dev = field();
        let inode = field();
        let path = rest.trim();
        Some(MapsLine {
            start: u64::from_str_radix(start, 16).ok()?,
            end: u64::from_str_radix(end, 16).ok()?,
            executable: perms.as_bytes().get(2) == Some(&b'x'),
            file_offset: u64::from_str_radix(offset, 16).ok()?,
            inode: inode.parse().ok()?,
            path,
        })
    }

    /// Opens the file behind this mapping. Tries, in order, the path as written, the path under
    /// `/proc/PID/root` (a process in another mount namespace), and `/proc/PID/map_files/`
    /// (a deleted or replaced file; needs root). A candidate is only accepted if its inode
    /// matches the one in the maps line.
    pub(crate) fn open_file(&self, pid: u32) -> std::io::Result<File> {
        let path = self.path.strip_suffix(" (deleted)").unwrap_or(self.path);
        let candidates = [
            PathBuf::from(path),
            PathBuf::from(format!("/proc/{pid}/root{path}")),
            PathBuf::from(format!(
                "/proc/{pid}/map_files/{:x}-{:x}",
                self.start, self.end
            )),
        ];
        let mut last_err = None;
        for candidate in candidates {
            match File::open(&candidate) {
                Ok(file) => match file.metadata() {
                    Ok(meta) if meta.ino() == self.inode => return Ok(file),
                    Ok(_) => {}
                    Err(e) => last_err = Some(e),
                },
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no readable file with inode {} for {path}", self.inode),
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let l = MapsLine::parse(
            "7f1c2a428000-7f1c2a5bd000 r-xp 00028000 fe:01 1234567                    /usr/lib/x86_64-linux-gnu/libc.so.6",
        )
        .unwrap();
        assert_eq!(l.start, 0x7f1c2a428000);
        assert_eq!(l.end, 0x7f1c2a5bd000);
        assert!(l.executable);
        assert_eq!(l.file_offset, 0x28000);
        assert_eq!(l.inode, 1234567);
        assert_eq!(l.path, "/usr/lib/x86_64-linux-gnu/libc.so.6");

        let l = MapsLine::parse("7ffd4a5f1000-7ffd4a5f3000 r-xp 00000000 00:00 0  [vdso]").unwrap();
        assert_eq!(l.path, "[vdso]");
        let l = MapsLine::parse("55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0").unwrap();
        assert_eq!(l.path, "");
        assert!(!l.executable);
        let l = MapsLine::parse("1000-2000 r-xp 00000000 08:01 42 /tmp/a b (deleted)").unwrap();
        assert_eq!(l.path, "/tmp/a b (deleted)");
        assert!(MapsLine::parse("garbage").is_none());
        assert!(MapsLine::parse("").is_none());
    }
}
