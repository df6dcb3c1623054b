//! The backend interface of `pgo apply`: a [`Backend`] receives a [`Request`] (the decisions,
//! the merged profile, the paths of the input profiles, the target and a directory for its
//! files) and returns a [`Plan`]: the artifacts it wrote, the environment the build must run
//! with, and steps to run on the built binary afterwards (BOLT rewrites a linked binary).
//! [`external`] speaks the same request and plan as JSON to any `pgo-backend-NAME` program.
//!
//! It is not a backend itself (those are `pgo-backend-llvm`, `pgo-backend-go`,
//! `pgo-backend-bolt`), and it does not run builds or merge the environment into the user's
//! flags: that is `pgo-apply`'s job, so every backend gets the same merging rules.

pub mod external;

use pgo_decide::Decisions;
use pgo_profile::proto::Profile;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What kind of program is being built, so a backend can refuse what it cannot serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Rust,
    C,
    Go,
    Unknown,
}

/// Everything a backend gets.
pub struct Request<'a> {
    pub decisions: &'a Decisions,
    /// The input profiles merged into one (what the decisions were made from).
    pub profile: &'a Profile,
    /// The input profile files as given, for backends that hand them on unchanged.
    pub profile_paths: &'a [PathBuf],
    /// The decisions file, when there is one on disk.
    pub decisions_path: Option<&'a Path>,
    pub target: &'a Target,
    /// Where the backend writes its artifacts (`<target dir>/pgo/<backend>/`); it exists.
    pub out_dir: &'a Path,
}

/// What is being built.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub language: Language,
    /// The build command, as the user typed it after `--` (empty for `--dry-run` without one).
    pub build_command: Vec<String>,
    /// The directory the build runs in.
    pub workdir: PathBuf,
    /// The binary the build produces, when known (`--output-binary`, or guessed from the
    /// profile's main mapping); BOLT needs it.
    pub output_binary: Option<PathBuf>,
}

/// How a variable of the build environment is to be set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum EnvEdit {
    /// Set the variable to this value, replacing what the user had.
    Set { name: String, value: String },
    /// Add these flags to the user's own (for RUSTFLAGS this includes `.cargo/config.toml`
    /// rustflags, which a plain RUSTFLAGS would silently replace).
    AppendFlags { name: String, flags: Vec<String> },
    /// Give the Cargo profile being built at least this much debug info (`line-tables-only`,
    /// `limited` or `full`): `pgo apply` sets `CARGO_PROFILE_<NAME>_DEBUG` only when the
    /// profile's own `debug` is lower. Unlike a `-Cdebuginfo` rustflag, this never lowers the
    /// user's level, and Cargo does not strip debug info it knows the profile asked for.
    CargoDebugAtLeast { level: String },
}

impl EnvEdit {
    /// The variable the edit changes (`CARGO_PROFILE_*_DEBUG` for a Cargo profile's debug
    /// level, whose profile is known only from the build command).
    pub fn name(&self) -> &str {
        match self {
            EnvEdit::Set { name, .. } | EnvEdit::AppendFlags { name, .. } => name,
            EnvEdit::CargoDebugAtLeast { .. } => "CARGO_PROFILE_*_DEBUG",
        }
    }
}

/// A file a backend wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub path: PathBuf,
    /// What it is, in a few words ("LLVM sample profile", "inline replay", ...).
    pub kind: String,
    /// What went into it: counts a person can check ("812 functions, 14 inlined contexts").
    pub summary: String,
}

/// A command to run on the built binary after the build; `{binary}` in an argument stands for
/// the binary's path. The step's output replaces the binary when `replaces_binary` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostBuildStep {
    pub description: String,
    pub command: Vec<String>,
    /// The file the step writes, which then takes the binary's place (the original is kept
    /// next to it with a `.pre-pgo` suffix).
    pub output: Option<PathBuf>,
}

/// What a backend returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Plan {
    pub artifacts: Vec<Artifact>,
    pub env: Vec<EnvEdit>,
    pub post_build: Vec<PostBuildStep>,
    /// Things the user should know (a decision kind the backend cannot express, names that
    /// did not map, ...): printed by `pgo apply`.
    pub notes: Vec<String>,
}

/// A way to turn decisions into what a toolchain consumes.
pub trait Backend {
    /// The name used with `--backend`.
    fn name(&self) -> &str;
    /// Writes the artifacts into `request.out_dir` and says how to build with them.
    fn plan(&self, request: &Request<'_>) -> Result<Plan, String>;
    /// Runs after a successful build with the binary it produced (when known): for backends
    /// whose work depends on the built binary (BOLT). The default does nothing.
    fn after_build(&self, _request: &Request<'_>, _binary: &Path) -> Result<Plan, String> {
        Ok(Plan::default())
    }
    /// The environment of a build without a profile whose binary profiles best: what the
    /// backend's own builds add besides the profile (the names and debug information the next
    /// `pgo apply` reads). `pgo apply --allow-missing` builds with it when there is no profile
    /// yet, so a project's first build is ready to be profiled. The default adds nothing.
    fn profiling_build_env(&self) -> Vec<EnvEdit> {
        Vec::new()
    }
}
