//! `pgo apply` without the command line: the staleness check of a profile against the sources
//! ([`staleness`]), the merging of a backend's flags into the user's own ([`rustflags`]), the
//! Cargo profile a build uses and its settings ([`cargo_profile`]), which program a Cargo build
//! linked ([`built_program`]), and running the build with the merged environment.
//!
//! It does not write toolchain files (backends do) or parse command lines (pgo-cli does).

pub mod built_program;
pub mod cargo_profile;
pub mod rustflags;
pub mod staleness;
