//! The BOLT backend of `pgo apply`: it rewrites the linked binary with LLVM's post-link
//! optimizer `llvm-bolt`, laying out hot code by the profile's samples.
//!
//! **What happens.** [`Bolt::plan`] makes the build link with `--emit-relocs` (BOLT needs the
//! static relocations to move code): `-Clink-arg=-Wl,--emit-relocs` appended to `RUSTFLAGS`
//! for Rust, `-Wl,--emit-relocs` appended to `LDFLAGS` for C; Go is refused. It also saves a
//! copy of the profiled binary as `OUT/profiled/<build-id>/<name>` (`OUT` is the request's
//! `out_dir`) while it is still there, because the build usually overwrites it and its code is
//! needed to map samples into the rebuilt binary. After the build, [`Bolt::after_build`] on
//! the built binary `BIN`:
//!
//! 1. places every sample's leaf address in `BIN`: directly when `BIN` has the build ID the
//!    profile recorded; otherwise through the profiled binary, function by function: a
//!    sample at offset k of function S maps to offset k of S in `BIN` only when S has
//!    byte-identical code in both (a function whose code changed loses its samples). It
//!    reports the share of the program's sample weight placed (the samples whose leaf is in
//!    the program, not in libraries or the kernel), and warns under 50%;
//! 2. writes them as BOLT's no-LBR profile `OUT/BIN.fdata`, the text `perf2bolt -nl` writes:
//!    a first line `no_lbr cycles`, then one line per sampled address,
//!    `1 <function> <hex offset> <count>`, where `<function>` is the name BOLT gives the
//!    function (`name/N` for local symbols) with spaces and backslashes escaped;
//! 3. runs `llvm-bolt-22 BIN -o TMP -data=OUT/BIN.fdata` with [`BOLT_OPTIONS`], keeping its
//!    output in `OUT/BIN.bolt.log`;
//! 4. swaps the result in, each step an atomic rename in `BIN`'s directory: the optimized
//!    binary becomes `BIN.bolt`, the binary as built is kept as `BIN.pre-bolt`, and a copy
//!    (hard link) of `BIN.bolt` replaces `BIN`. `BIN` is thus always a complete binary, and the
//!    returned plan has no post-build steps (unlike the `.pre-pgo` convention of
//!    [`PostBuildStep`](pgo_backend::PostBuildStep), the original's suffix is `.pre-bolt`).
//!    When `BIN` is still BOLT output from an earlier run (the build did not relink it), its
//!    original `BIN.pre-bolt` is optimized again instead.
//!
//! The returned plan lists the fdata, `BIN.bolt` (kind "BOLT-optimized binary") and the log as
//! artifacts. A binary without relocations in its code, a missing `llvm-bolt-22` (Debian
//! package `bolt-22`), or a profile none of whose samples can be placed is an error, and then
//! `BIN` is left as built.
//!
//! **What it is not for.** It does not record profiles or read LBR/branch data (the fdata has
//! sample counts only, so BOLT infers edge counts), it does not use the decisions document
//! (BOLT computes its own function and block order from the samples), and it does not serve
//! Go programs. It reads ELF binaries with a symbol table (`.symtab`) only.

mod fdata;
mod image;
mod place;
mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pgo_backend::{Artifact, Backend, EnvEdit, Language, Plan, Request};
use pgo_profile::ProfileView;
use pgo_profile::proto::Profile;

use crate::image::Image;
use crate::place::{Found, Placement, percent};
pub use crate::run::{BOLT_OPTIONS, LLVM_BOLT, LLVM_BOLT_PACKAGE};

/// The flag that keeps static relocations in the linked binary.
const EMIT_RELOCS: &str = "-Wl,--emit-relocs";

/// The BOLT backend (`--backend bolt`).
#[derive(Debug, Clone)]
pub struct Bolt {
    tool: String,
}

impl Default for Bolt {
    fn default() -> Self {
        Bolt {
            tool: LLVM_BOLT.to_string(),
        }
    }
}

impl Bolt {
    pub fn new() -> Self {
        Bolt::default()
    }

    /// Runs `tool` (a path, or a name looked up on `PATH`) instead of `llvm-bolt-22`.
    pub fn with_tool(tool: impl Into<String>) -> Self {
        Bolt { tool: tool.into() }
    }
}

fn refuse_go() -> String {
    "the BOLT backend does not support Go programs (Go's linker cannot keep the relocations \
     BOLT needs, and BOLT does not understand Go's runtime metadata); use --backend go"
        .into()
}

impl Backend for Bolt {
    fn name(&self) -> &str {
        "bolt"
    }

    fn plan(&self, request: &Request<'_>) -> Result<Plan, String> {
        let mut plan = Plan::default();
        let rustflags = EnvEdit::AppendFlags {
            name: "RUSTFLAGS".into(),
            flags: vec![format!("-Clink-arg={EMIT_RELOCS}")],
        };
        let ldflags = EnvEdit::AppendFlags {
            name: "LDFLAGS".into(),
            flags: vec![EMIT_RELOCS.into()],
        };
        match request.target.language {
            Language::Rust => plan.env.push(rustflags),
            Language::C => plan.env.push(ldflags),
            Language::Go => return Err(refuse_go()),
            Language::Unknown => {
                plan.env.push(rustflags);
                plan.env.push(ldflags);
                plan.notes.push(
                    "BOLT: the language is unknown, so --emit-relocs is added to both RUSTFLAGS \
                     and LDFLAGS; a build that reads neither must link with -Wl,--emit-relocs \
                     itself"
                        .into(),
                );
            }
        }
        if request.target.output_binary.is_none() {
            plan.notes.push(
                "BOLT rewrites the built binary after the build: pass --output-binary if pgo \
                 cannot tell which file the build produces"
                    .into(),
            );
        }
        let order = &request.decisions.layout.function_order;
        if !order.is_empty() {
            plan.notes.push(format!(
                "BOLT orders functions and blocks itself from the samples (cdsort, ext-tsp); \
                 the decisions' layout of {} functions is not passed on",
                order.len()
            ));
        }
        snapshot_profiled(request, &mut plan);
        Ok(plan)
    }

    fn after_build(&self, request: &Request<'_>, binary: &Path) -> Result<Plan, String> {
        if request.target.language == Language::Go {
            return Err(refuse_go());
        }
        let tool = run::find_tool(&self.tool)?;
        let mut plan = Plan::default();

        let mut image = Image::read(binary)?;
        let mut input = binary.to_path_buf();
        let mut keep_original = true;
        if image.bolted {
            let original = run::sibling(binary, ".pre-bolt");
            match Image::read(&original) {
                Ok(o) if !o.bolted => {
                    plan.notes.push(format!(
                        "BOLT: {} is still the optimized binary of an earlier run (the build \
                         did not relink it); optimizing its original {} again",
                        binary.display(),
                        original.display()
                    ));
                    image = o;
                    input = original;
                    keep_original = false;
                }
                _ => {
                    return Err(format!(
                        "{}: already optimized by BOLT (it has a .note.bolt_info section) and \
                         its original {} is not there; rebuild it (BOLT cannot rewrite its own \
                         output)",
                        binary.display(),
                        original.display()
                    ));
                }
            }
        }
        check_rewritable(&image)?;

        let program = file_name(binary);
        let converted = convert(request.profile, &image, &program, Some(request.out_dir))?;
        let fdata_path = request.out_dir.join(format!("{program}.fdata"));
        pgo_profile::write_atomic(&fdata_path, converted.text.as_bytes())
            .map_err(|e| e.to_string())?;
        plan.artifacts.push(Artifact {
            path: fdata_path.clone(),
            kind: "BOLT profile (fdata, no LBR)".into(),
            summary: converted.summary.clone(),
        });
        plan.notes.extend(converted.notes.iter().cloned());

        let optimized = run::sibling(binary, ".bolt");
        let tmp = run::temp_path_next_to(&optimized)?;
        let log_path = request.out_dir.join(format!("{program}.bolt.log"));
        let ran = match run::run_bolt(&tool, &input, &fdata_path, &tmp) {
            Ok(ran) => ran,
            Err((message, log)) => {
                if !log.is_empty() && pgo_profile::write_atomic(&log_path, log.as_bytes()).is_ok() {
                    return Err(format!(
                        "{message} (its output is in {})",
                        log_path.display()
                    ));
                }
                return Err(message);
            }
        };
        pgo_profile::write_atomic(&log_path, ran.log.as_bytes()).map_err(|e| e.to_string())?;
        let profile_line = match ran.profiled_functions {
            Some((n, m)) if n > 0 => {
                format!("BOLT found a profile for {n} of its {m} functions")
            }
            other => {
                plan.notes.push(format!(
                    "BOLT used none of the profile in {} ({}): the optimized binary is laid \
                     out without it",
                    fdata_path.display(),
                    match other {
                        Some((_, m)) => format!("0 of {m} functions have a profile"),
                        None => "it reported no profiled functions".into(),
                    }
                ));
                "BOLT found no profile for any function".into()
            }
        };
        let swapped = run::swap_in(binary, tmp, keep_original)?;
        plan.artifacts.push(Artifact {
            path: swapped.optimized.clone(),
            kind: "BOLT-optimized binary".into(),
            summary: format!(
                "{profile_line}; {:.1}% of the program's samples placed; installed as {} \
                 (atomic rename), the binary as built kept as {}",
                converted.placed_percent,
                binary.display(),
                swapped.original.display()
            ),
        });
        plan.artifacts.push(Artifact {
            path: log_path,
            kind: "llvm-bolt output".into(),
            summary: format!(
                "{} {} with dynamic statistics before and after",
                tool.display(),
                BOLT_OPTIONS.join(" ")
            ),
        });
        Ok(plan)
    }
}

/// Refuses binaries BOLT cannot rewrite usefully.
fn check_rewritable(image: &Image) -> Result<(), String> {
    if !image.code_relocations {
        return Err(format!(
            "{}: its code has no relocations; BOLT needs the binary linked with \
             --emit-relocs (RUSTFLAGS=\"-Clink-arg=-Wl,--emit-relocs\", or -Wl,--emit-relocs in \
             LDFLAGS), which pgo apply --backend bolt adds to the build it runs",
            image.path.display()
        ));
    }
    if image.functions.is_empty() {
        return Err(format!(
            "{}: no function symbols (.symtab); BOLT needs them, so do not strip the binary",
            image.path.display()
        ));
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A profile turned into BOLT's fdata for one binary.
#[derive(Debug, Clone, PartialEq)]
pub struct Fdata {
    /// The fdata file's contents.
    pub text: String,
    /// Percent of the program's sample weight (samples whose leaf is in the program) placed in
    /// the binary.
    pub placed_percent: f64,
    /// Percent of the whole profile's sample weight placed in the binary.
    pub placed_percent_of_profile: f64,
    /// Sampled functions of the profiled binary whose code differs in this one, heaviest
    /// first.
    pub changed_functions: Vec<String>,
    /// Sampled functions of the profiled binary missing from this one, heaviest first.
    pub missing_functions: Vec<String>,
    /// One line for the artifact list.
    pub summary: String,
    /// What the user should know (low coverage, unplaced samples, ...).
    pub notes: Vec<String>,
}

/// Converts `profile` into fdata for the ELF binary at `binary`. Samples recorded from another
/// build are mapped through the profiled binary, looked for at its recorded path (and
/// `PATH.pre-bolt`), and under `snapshots/profiled/<build-id>/` when given (where
/// [`Bolt::plan`] saves it).
pub fn fdata_for(
    profile: &Profile,
    binary: &Path,
    snapshots: Option<&Path>,
) -> Result<Fdata, String> {
    let image = Image::read(binary)?;
    convert(profile, &image, &file_name(binary), snapshots)
}

fn convert(
    profile: &Profile,
    image: &Image,
    program: &str,
    snapshots: Option<&Path>,
) -> Result<Fdata, String> {
    let find = |filename: &str, build_id: &str| find_profiled(snapshots, filename, build_id);
    convert_with(profile, image, program, &find)
}

/// [`convert`] with the profiled binaries found by `find`.
fn convert_with(
    profile: &Profile,
    image: &Image,
    program: &str,
    find: &dyn Fn(&str, &str) -> Found,
) -> Result<Fdata, String> {
    let weight = place::weight(profile)?;
    let placement = place::place(profile, image, program, &weight, find);
    if placement.placed == 0 {
        return Err(format!(
            "{}: no sample of the profile could be placed in it, so BOLT would have nothing to \
             work with: {}",
            image.path.display(),
            why_unplaced(profile, image, program, &placement)
        ));
    }
    let counts: BTreeMap<(String, u64), u64> = placement
        .weights
        .iter()
        .map(|(k, &w)| {
            let count = (w + weight.per_sample / 2) / weight.per_sample;
            (k.clone(), u64::try_from(count).unwrap_or(u64::MAX))
        })
        .collect();
    let (text, written) = fdata::render(&counts);
    let placed_percent = placement.placed_percent();
    let placed_percent_of_profile = percent(placement.placed, placement.total);
    let program_path = image.path.display();

    let mut how: Vec<String> = placement.groups.iter().map(|g| g.how.clone()).collect();
    how.dedup();
    let summary = format!(
        "{} samples at {} addresses in {}; {placed_percent:.1}% of the program's \
         sample weight placed in {program_path} ({placed_percent_of_profile:.1}% of the \
         profile); {}",
        written.samples,
        written.lines,
        plural(written.functions, "function"),
        how.join("; ")
    );

    let mut notes = Vec::new();
    if let Some(main) = &placement.fell_back_to_main_mapping {
        notes.push(format!(
            "BOLT: no binary of the profile is named {program} or has its build ID; used the \
             profile's main binary {main}"
        ));
    }
    notes.push(format!(
        "BOLT profile: {placed_percent:.1}% of the program's sample weight placed in \
         {program_path}{}",
        if placement.unplaced.is_empty() {
            String::new()
        } else {
            let mut reasons: Vec<(&String, &u128)> = placement.unplaced.iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            format!(
                "; not placed: {}",
                reasons
                    .iter()
                    .map(|(why, w)| format!("{:.1}% {why}", percent(**w, placement.program)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    ));
    let heaviest = |map: &BTreeMap<String, u128>| {
        let mut list: Vec<(&String, &u128)> = map.iter().collect();
        list.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        list.into_iter()
            .map(|(name, _)| name.clone())
            .collect::<Vec<_>>()
    };
    let changed_functions = heaviest(&placement.changed);
    let missing_functions = heaviest(&placement.missing);
    if !changed_functions.is_empty() {
        notes.push(format!(
            "BOLT: {} changed since the profile and lost {} samples: {}",
            plural(changed_functions.len(), "sampled function"),
            if changed_functions.len() == 1 {
                "its"
            } else {
                "their"
            },
            list_some(&placement.changed, &changed_functions, placement.program)
        ));
    }
    if !missing_functions.is_empty() {
        notes.push(format!(
            "BOLT: {} of the profile {} missing from the new binary: {}",
            plural(missing_functions.len(), "sampled function"),
            if missing_functions.len() == 1 {
                "is"
            } else {
                "are"
            },
            list_some(&placement.missing, &missing_functions, placement.program)
        ));
    }
    if placed_percent < 50.0 {
        notes.push(format!(
            "BOLT will have little to work with: only {placed_percent:.1}% of the program's \
             samples could be placed in {program_path}; profile the binary you are optimizing \
             (or keep the profiled binary until pgo apply has run)"
        ));
    }
    Ok(Fdata {
        text,
        placed_percent,
        placed_percent_of_profile,
        changed_functions,
        missing_functions,
        summary,
        notes,
    })
}

/// "1 function", "2 functions".
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Up to five names with their share of `whole`.
fn list_some(weights: &BTreeMap<String, u128>, names: &[String], whole: u128) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .take(5)
        .map(|n| format!("{n} ({:.1}%)", percent(weights[n], whole)))
        .collect();
    if names.len() > 5 {
        parts.push(format!("{} more", names.len() - 5));
    }
    parts.join(", ")
}

/// Why nothing was placed, in one line.
fn why_unplaced(profile: &Profile, image: &Image, program: &str, placement: &Placement) -> String {
    if placement.program == 0 {
        let view = ProfileView::new(profile);
        let files: BTreeSet<String> = profile
            .mapping
            .iter()
            .map(|m| {
                let id = view.str(m.build_id);
                format!(
                    "{} ({})",
                    view.str(m.filename),
                    if id.is_empty() { "no build ID" } else { id }
                )
            })
            .collect();
        if files.is_empty() {
            return "the profile has no mappings (no addresses; was it imported from folded \
                    stacks?)"
                .into();
        }
        return format!(
            "the profile has no samples in a file named {program}{} (its files: {})",
            if image.build_id.is_empty() {
                String::new()
            } else {
                format!(" or with build ID {}", image.build_id)
            },
            files.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    let mut reasons: Vec<(&String, &u128)> = placement.unplaced.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1));
    reasons
        .iter()
        .map(|(why, w)| {
            format!(
                "{why} ({:.0}% of the program's samples)",
                percent(**w, placement.program)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where [`Bolt::plan`] keeps a copy of the profiled binary with `build_id`; `None` for a
/// build ID that is not hex (it comes from the profile and becomes a directory name).
fn snapshot_path(out_dir: &Path, build_id: &str, filename: &str) -> Option<PathBuf> {
    if build_id.is_empty() || !build_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let base = filename.rsplit('/').next().unwrap_or(filename);
    let base = if matches!(base, "" | "." | "..") {
        "binary"
    } else {
        base
    };
    Some(out_dir.join("profiled").join(build_id).join(base))
}

/// Finds the binary a mapping was recorded from.
fn find_profiled(snapshots: Option<&Path>, filename: &str, build_id: &str) -> Found {
    let recorded = PathBuf::from(filename);
    if build_id.is_empty() {
        return match Image::read(&recorded) {
            Ok(image) if image.bolted => Found::Gone(format!(
                "{filename} is BOLT output, not a binary the profile can be mapped from"
            )),
            Ok(image) => {
                let modified = std::fs::metadata(&recorded).and_then(|m| m.modified()).ok();
                Found::Unverified(image, modified)
            }
            Err(e) => Found::Gone(format!(
                "the profiled binary is gone ({e}) and the profile has no build ID for it"
            )),
        };
    }
    let mut candidates = Vec::new();
    if let Some(path) = snapshots.and_then(|dir| snapshot_path(dir, build_id, filename)) {
        candidates.push(path);
    }
    candidates.push(recorded.clone());
    candidates.push(run::sibling(&recorded, ".pre-bolt"));
    let mut seen = Vec::new();
    for path in candidates {
        if !path.exists() {
            continue;
        }
        match Image::read(&path) {
            Ok(image) if image.build_id == build_id && image.bolted => {
                return Found::Gone(format!(
                    "the profile was recorded from {}, a BOLT-optimized binary, whose layout \
                     is not the built binary's; profile the binary as built (kept as \
                     {filename}.pre-bolt) instead",
                    path.display()
                ));
            }
            Ok(image) if image.build_id == build_id => return Found::Verified(image),
            Ok(image) => seen.push(format!(
                "{} has build ID {}",
                path.display(),
                if image.build_id.is_empty() {
                    "none"
                } else {
                    &image.build_id
                }
            )),
            Err(e) => seen.push(e),
        }
    }
    Found::Gone(format!(
        "the profiled binary {filename} (build ID {build_id}) is gone{}; keep it until pgo \
         apply has planned the build (which saves a copy), or profile the new binary",
        if seen.is_empty() {
            String::new()
        } else {
            format!(" ({})", seen.join(", "))
        }
    ))
}

/// Saves a copy of each profiled binary of the program that is still on disk, so samples can
/// be mapped after the build has overwritten it.
fn snapshot_profiled(request: &Request<'_>, plan: &mut Plan) {
    let view = ProfileView::new(request.profile);
    let program = request.target.output_binary.as_deref().map(file_name);
    let files: BTreeSet<(String, String)> = request
        .profile
        .mapping
        .iter()
        .enumerate()
        .filter(|(i, m)| {
            let filename = view.str(m.filename);
            let base = filename.rsplit('/').next().unwrap_or(filename);
            match &program {
                Some(p) => base == p,
                None => *i == 0 && place::could_be_program(filename),
            }
        })
        .map(|(_, m)| {
            (
                view.str(m.filename).to_string(),
                view.str(m.build_id).to_string(),
            )
        })
        .collect();
    for (filename, build_id) in files {
        if build_id.is_empty() {
            plan.notes.push(format!(
                "BOLT: the profile has no build ID for {filename}; its samples can be mapped \
                 into the new binary only while {filename} is the profiled binary, unchanged"
            ));
            continue;
        }
        let Some(dest) = snapshot_path(request.out_dir, &build_id, &filename) else {
            plan.notes.push(format!(
                "BOLT: the profile's build ID for {filename} is not hex ({build_id:?}); no copy \
                 of the profiled binary is kept"
            ));
            continue;
        };
        let summary = format!(
            "the profiled binary {filename} (build ID {build_id}), kept to map samples into \
             the rebuilt binary"
        );
        if Image::read(&dest).is_ok_and(|i| i.build_id == build_id) {
            plan.artifacts.push(Artifact {
                path: dest,
                kind: "copy of the profiled binary".into(),
                summary,
            });
            continue;
        }
        let saved = std::fs::read(&filename)
            .map_err(|e| format!("{filename}: cannot read: {}", image::io_reason(&e)))
            .and_then(|bytes| {
                let image = Image::parse(Path::new(&filename), bytes)?;
                if image.bolted {
                    return Err(format!(
                        "{filename} is BOLT output: a profile of it cannot be mapped into the \
                         binary as built"
                    ));
                }
                if image.build_id != build_id {
                    return Err(format!(
                        "{filename} now has build ID {} (rebuilt since the profile)",
                        if image.build_id.is_empty() {
                            "none"
                        } else {
                            &image.build_id
                        }
                    ));
                }
                if let Some(dir) = dest.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        format!("{}: cannot create: {}", dir.display(), image::io_reason(&e))
                    })?;
                }
                pgo_profile::write_atomic(&dest, &image.data).map_err(|e| e.to_string())
            });
        match saved {
            Ok(()) => plan.artifacts.push(Artifact {
                path: dest,
                kind: "copy of the profiled binary".into(),
                summary,
            }),
            Err(why) => plan.notes.push(format!(
                "BOLT: cannot keep the profiled binary ({why}); samples will map into the new \
                 binary only if it has build ID {build_id}"
            )),
        }
    }
}

#[cfg(test)]
mod tests;
