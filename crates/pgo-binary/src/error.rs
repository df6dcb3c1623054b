//! Error type: every message is one line and names the file it is about.

use std::path::PathBuf;

/// Errors from opening a binary or analysing one of its functions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// File that was being read.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The file does not start with the ELF magic.
    #[error("{path}: not an ELF file")]
    NotElf {
        /// Offending file.
        path: PathBuf,
    },
    /// The file claims to be ELF but could not be parsed (e.g. truncated).
    #[error("{path}: malformed ELF: {message}")]
    Malformed {
        /// Offending file.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
    /// The ELF is for an architecture other than x86 / x86-64.
    #[error("{path}: unsupported architecture {arch} (only x86 and x86-64 are decoded)")]
    UnsupportedArchitecture {
        /// Offending file.
        path: PathBuf,
        /// Architecture as reported by the `object` crate.
        arch: String,
    },
    /// The ELF has no executable section with bytes in the file.
    #[error("{path}: no executable code (no executable section with file contents)")]
    NoCode {
        /// Offending file.
        path: PathBuf,
    },
    /// The address is not inside any function symbol / the function's bytes are not in the file.
    #[error("{path}: address {address:#x} is outside any function with code in the file")]
    AddressOutsideFunction {
        /// File the address was looked up in.
        path: PathBuf,
        /// Requested SVMA.
        address: u64,
    },
}
