//! The profile model of pgo: pprof profiles read, validated, built, merged, filtered, and
//! imported from the text formats other profilers write (folded stacks, `perf script`).
//!
//! Every pgo stage speaks pprof, so this crate is the bottom of the pipeline: it knows nothing
//! of recording, symbolization, call graphs, decisions or backends, and it draws nothing (that
//! is `pgo-inspect`). What it hands out has passed [`validate()`], so later stages can index ids
//! without checking them again.

mod builder;
mod error;
mod filter;
pub mod import;
mod io;
mod merge;
mod names;
pub mod proto;
mod validate;
mod view;

use std::path::Path;

pub use builder::{
    BuildError, FunctionId, FunctionInfo, LabelValue, LineInfo, LocationId, MappingId, MappingInfo,
    ProfileBuilder,
};
pub use error::Error;
pub use filter::SampleFilter;
pub use io::{
    decode_profile, encode_profile, gunzip_if_needed, is_gzip, read_file, read_profile,
    write_atomic, write_profile,
};
pub use merge::{MergeInput, copy_samples, merge};
pub use names::short_function_name;
pub use proto::Profile;
pub use validate::validate;
pub use view::{Frame, KERNEL_ADDRESS_START, ProfileView, could_be_program};

/// The file formats pgo reads profiles from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// pprof protobuf, gzipped or not.
    Pprof,
    /// Folded stacks: `root;caller;leaf COUNT` per line.
    Folded,
    /// The text `perf script` prints.
    PerfScript,
    /// `perf record`'s binary perf.data (a file's, or a pipe's from `perf record -o -`). Its
    /// addresses need symbolizing, which this crate does not do: `pgo-collect` reads it.
    PerfData,
}

/// Whether a file starts like a perf.data file: `PERFILE2` (or byte-swapped, `2ELIFREP`, from
/// a big-endian machine), in files and pipes alike.
pub fn is_perf_data(prefix: &[u8]) -> bool {
    prefix.starts_with(b"PERFILE2") || prefix.starts_with(b"2ELIFREP")
}

impl Format {
    /// Guesses the format of a file's (decompressed) contents.
    pub fn detect(bytes: &[u8]) -> Format {
        if is_perf_data(bytes) {
            return Format::PerfData;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Format::Pprof;
        };
        let mut lines = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
        let Some(first) = lines.next() else {
            return Format::Pprof;
        };
        let second = lines.next();
        let ends_in_count = |l: &str| {
            l.trim_end()
                .rsplit_once(char::is_whitespace)
                .is_some_and(|(_, c)| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
        };
        if second.is_some_and(|l| l.starts_with(char::is_whitespace))
            || first.contains(": ") && !ends_in_count(first)
        {
            Format::PerfScript
        } else if ends_in_count(first) {
            Format::Folded
        } else {
            Format::Pprof
        }
    }
}

/// Reads a profile from `path` in `format`, or in the format its contents show when `None`.
/// Text inputs may be gzipped too. A perf.data file is an error that says what it is: reading
/// one takes symbolizing, which is `pgo_collect::import_perf_data`'s job.
pub fn load(path: impl AsRef<Path>, format: Option<Format>) -> Result<Profile, Error> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    if bytes.is_empty() {
        return Err(Error::new(path, "file is empty (0 bytes), not a profile"));
    }
    let raw = gunzip_if_needed(bytes).map_err(|e| Error::new(path, e))?;
    let result = match format.unwrap_or_else(|| Format::detect(&raw)) {
        Format::Pprof => decode_profile(raw),
        Format::PerfData => Err(io::PERF_DATA_UNREADABLE.to_string()),
        format => {
            let text = String::from_utf8(raw).map_err(|e| {
                let at = e.utf8_error().valid_up_to();
                Error::new(
                    path,
                    format!("not a text file (invalid UTF-8 at byte {at})"),
                )
            })?;
            let parsed = if format == Format::Folded {
                import::folded::parse(&text)
            } else {
                import::perf_script::parse(&text)
            };
            parsed.and_then(|p| validate(&p).map(|()| p))
        }
    };
    result.map_err(|e| Error::new(path, e))
}
