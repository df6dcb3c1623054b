//! Symbolization for pgo: what is at this address of this ELF file?
//!
//! Given an executable or shared library and an address in it, this crate answers with source
//! frames — function (linkage and demangled name), file, line, column, the function's
//! declaration line — innermost inline frame first, from DWARF (via `addr2line`), falling back
//! to the ELF symbol tables, and finding separate debug files by build ID and
//! `.gnu_debuglink`. It also turns runtime addresses of a process into file addresses through
//! the mapping and the file's `PT_LOAD` headers (PIE, ASLR, shared libraries), and finds the
//! symbol (start, size) containing an address, and reads the DWARF discriminators of code
//! ([`Discriminators`]) that addr2line does not report.
//!
//! Addresses come in two kinds. An *SVMA* is an address as the file itself states it (symbol
//! table, DWARF, program headers); [`Symbolizer::symbolize`] takes those. A *runtime address*
//! is where that code sat in a process, shifted by the load bias of a PIE or shared library;
//! [`Symbolizer::symbolize_runtime_address`] takes one with its `/proc/PID/maps` mapping and
//! does the conversion ([`ObjectInfo::svma_for_runtime_address`]).
//!
//! Objects are loaded once and cached by build ID, answers are cached per address, and an
//! [`ObjectId`] from [`Symbolizer::load`] skips even the lookup. When an object has no DWARF
//! and no `.symtab` anywhere, answers say so ([`Symbolized::object_is_stripped`]) so the
//! caller can warn once and keep raw addresses.
//!
//! It is **not** a profiler: it does not record samples, does not unwind stacks, does not
//! read other processes' memory, and does not read or write pprof. `pgo collect` does those
//! things and calls this crate for the one question above.
//!
//! ```no_run
//! use pgo_symbolize::Symbolizer;
//! # fn main() -> Result<(), pgo_symbolize::Error> {
//! let mut symbolizer = Symbolizer::new();
//! // An address from a sample, in a mapping from /proc/PID/maps.
//! let answer = symbolizer.symbolize_runtime_address(
//!     "/usr/bin/prog", "", 0x5555_5555_4000, 0x1000, 0x5555_5555_4123)?;
//! for frame in answer.frames.iter() {
//!     println!("{} at {}:{}", frame.function_name, frame.file, frame.line);
//! }
//! # Ok(())
//! # }
//! ```

mod debug_file;
mod demangle;
mod discriminators;
mod dwarf;
mod error;
mod inline_tree;
mod mapping;
mod names;
mod object_info;
mod symbolizer;
mod symbols;

pub use debug_file::binary_with_build_id;
pub use demangle::demangle;
pub use discriminators::Discriminators;
pub use dwarf::{Subprogram, producers, subprograms};
pub use error::Error;
pub use inline_tree::{InlinedCall, inlined_calls};
pub use mapping::{MappingKind, MapsEntry, SpecialMapping};
pub use object_info::{DebugLink, LoadSegment, ObjectInfo};
pub use symbolizer::{FrameSource, LoadedObject, ObjectId, SourceFrame, Symbolized, Symbolizer};
pub use symbols::FunctionSymbol;
