//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// Why an object file could not be used for symbolization.
///
/// Every message is a single line that names the file, so a caller can print it as is.
/// Problems *inside* an otherwise readable ELF file (garbage DWARF, a broken symbol table)
/// are not errors: symbolization degrades to what still works and says so through
/// [`crate::FrameSource`] and [`crate::ObjectInfo`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read (missing, unreadable, a directory, ...).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },

    /// The file exists but is not an ELF file (a script, a text file, a Mach-O binary, ...).
    #[error("{} is not an ELF file", path.display())]
    NotElf {
        /// The file that was asked for.
        path: PathBuf,
    },

    /// The file starts like ELF but its headers cannot be parsed (truncated, corrupted).
    #[error("{} is a malformed ELF file: {reason}", path.display())]
    MalformedElf {
        /// The file that was asked for.
        path: PathBuf,
        /// What the ELF parser objected to.
        reason: String,
    },

    /// The file at the path is not the build the caller recorded: it was rebuilt or replaced
    /// since, so its addresses would give wrong answers. No debug file with the recorded build
    /// ID was found either.
    #[error("{} has build ID {found:?}, but build ID {expected} was asked for", path.display())]
    BuildIdMismatch {
        /// The file that was asked for.
        path: PathBuf,
        /// The build ID the caller recorded.
        expected: String,
        /// The build ID of the file on disk (empty when it has none).
        found: String,
    },
}
