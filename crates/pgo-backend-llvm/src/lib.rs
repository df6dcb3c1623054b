//! The rustc and clang backends of `pgo apply`.
//!
//! From a profile and the decisions they write three files LLVM and its linker consume:
//! - an LLVM sample profile in the text format ([`sample_profile`]): per function (by linkage
//!   name) the samples per line offset from the function's start line, the call targets of each
//!   call line, and nested records for inlined call sites. Where we decided to inline a call
//!   that the profiled binary did not inline, the callee's samples *under that call site* (known
//!   from the whole call stack, which IP-only AutoFDO does not have) are nested at the site, so
//!   LLVM's sample loader inlines it with a context-sensitive profile;
//! - an inline-replay file ([`inline_replay`]) so LLVM's CGSCC inliner takes our inline
//!   decisions (`-Cllvm-args=--cgscc-inline-replay=FILE`);
//! - a symbol ordering file ([`symbol_order`]) for the linker (`--symbol-ordering-file`).
//!
//! It does not run builds or merge flags into the user's (pgo-apply does that) and does not
//! decide anything (pgo-decide does): it translates.

pub mod block_counts;
pub mod inline_replay;
pub mod names;
pub mod sample_profile;
pub mod symbol_order;

use pgo_backend::{Artifact, Backend, EnvEdit, Language, Plan, Request};
use pgo_profile::ProfileView;
use rustc_hash::{FxHashMap, FxHashSet};
use std::path::Path;

/// Which of the three files a build uses: all by default; the others exist for ablation
/// (`pgo apply --no-inline-replay`, `--no-function-order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    pub sample_profile: bool,
    /// Line counts from the profiled binary's blocks (executions), not raw samples (time).
    pub block_counts: bool,
    pub inline_contexts: bool,
    pub inline_replay: bool,
    pub function_order: bool,
    /// Let LLVM re-infer block counts by flow (profi, `-sample-profile-use-profi`). Off by
    /// default: with execution counts the profile already holds counts inferred by flow on
    /// the profiled binary's CFG, and re-inferring them on the new build's IR measured
    /// 9–19% slower on the graph fixture (its hot loop spilled to the stack) for ±3%
    /// elsewhere (BENCHMARKS.md).
    pub profi: bool,
}

impl Default for Parts {
    fn default() -> Self {
        Parts {
            sample_profile: true,
            block_counts: true,
            inline_contexts: true,
            inline_replay: true,
            function_order: true,
            profi: false,
        }
    }
}

/// The files common to both backends, written into `request.out_dir`.
struct Files {
    sample_profile: Option<String>,
    inline_replay: Option<String>,
    symbol_order: Option<String>,
    artifacts: Vec<Artifact>,
    notes: Vec<String>,
}

fn write_files(
    request: &Request<'_>,
    parts: Parts,
    rename: Option<&names::NameMap>,
) -> Result<Files, String> {
    let mut files = Files {
        sample_profile: None,
        inline_replay: None,
        symbol_order: None,
        artifacts: Vec::new(),
        notes: Vec::new(),
    };
    let write = |name: &str, text: &str| -> Result<String, String> {
        let path = request.out_dir.join(name);
        pgo_profile::write_atomic(&path, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path.to_string_lossy().into_owned())
    };
    // The calls the profiled build inlined into its sampled functions, small enough to keep.
    let mut kept_inlines: Vec<(String, i64, String)> = Vec::new();
    if parts.sample_profile {
        let mut options = sample_profile::Options {
            rename: rename.cloned(),
            ..Default::default()
        };
        if parts.inline_contexts {
            options.inline_contexts = request
                .decisions
                .inline
                .iter()
                .filter(|d| !d.already_inlined && d.site.line_offset >= 0)
                .map(|d| {
                    (
                        d.caller.linkage_name.clone(),
                        d.site.line_offset as u32,
                        d.callee.linkage_name.clone(),
                    )
                })
                .collect::<FxHashSet<_>>();
        }
        if parts.block_counts {
            let index = sample_profile::sample_count_index(&ProfileView::new(request.profile))?;
            match block_counts::BlockCounts::from_profile(request.profile, index) {
                Ok(counts) => {
                    files.notes.push(format!(
                        "execution counts from {}: {} functions disassembled, {:.1}% of the \
                         program's samples; {}",
                        counts.binary,
                        counts.functions,
                        counts.covered_percent,
                        if counts.discriminators {
                            "blocks of one line told apart by its discriminators"
                        } else {
                            "it has no discriminators, so blocks of one line share a count \
                             (profile a binary built by pgo apply to tell them apart)"
                        }
                    ));
                    kept_inlines = inline_replay::kept_inlines(&counts.inlined);
                    options.block_counts = Some(counts);
                }
                Err(e) => files.notes.push(format!(
                    "line counts are sample counts (time), not executions: {e}"
                )),
            }
        }
        let (text, summary) = sample_profile::write(request.profile, &options)?;
        if summary.functions == 0 {
            return Err(
                "no sample of the profile could be placed in an LLVM sample profile: it needs \
                 symbolized frames with linkage names and start lines (a profile from pgo collect \
                 of a binary with debug info)"
                    .into(),
            );
        }
        let path = write("sample-profile.txt", &text)?;
        files.artifacts.push(Artifact {
            path: path.clone().into(),
            kind: "LLVM sample profile (text)".into(),
            summary: format!(
                "{} functions ({} with execution counts), {} inlined call-site records ({} from \
                 our inline decisions), {:.1}% of samples placed",
                summary.functions,
                summary.counted_functions,
                summary.inlined_records,
                summary.decided_contexts,
                summary.placed_percent()
            ),
        });
        if summary.lineless_samples * 2 > summary.samples {
            files.notes.push(format!(
                "{:.1}% of the placed samples have no source line, so LLVM gets little more \
                 than function totals: the profiled binary had no debug info (build the binary \
                 you profile through `pgo apply --allow-missing`, which adds it)",
                100.0 * summary.lineless_samples as f64 / summary.samples as f64
            ));
        }
        if summary.placed_percent() < 90.0 {
            files.notes.push(format!(
                "only {:.1}% of the samples could be placed in the sample profile (frames without \
                 symbols or linkage names)",
                summary.placed_percent()
            ));
        }
        files.sample_profile = Some(path);
    }
    if parts.inline_replay {
        let (text, sites) = inline_replay::write(request.decisions, &kept_inlines, rename);
        if sites > 0 {
            let path = write("inline-replay.txt", &text)?;
            files.artifacts.push(Artifact {
                path: path.clone().into(),
                kind: "inline replay".into(),
                summary: format!(
                    "{sites} call sites to inline ({} decided, {} small calls the profiled build \
                     inlined into sampled functions)",
                    request.decisions.inline.len(),
                    kept_inlines.len()
                ),
            });
            files.inline_replay = Some(path);
        }
    }
    if parts.function_order {
        let (text, symbols) = symbol_order::write(request.decisions, rename);
        if symbols > 0 {
            let path = write("symbol-order.txt", &text)?;
            files.artifacts.push(Artifact {
                path: path.clone().into(),
                kind: "symbol ordering file".into(),
                summary: format!("{symbols} functions, hottest cluster first"),
            });
            files.symbol_order = Some(path);
        }
    }
    Ok(files)
}

/// The mangling scheme the profiled build used: `Some("v0")` for `_R` names, `Some("legacy")`
/// for `_ZN…17h…E` names, `None` when it has no Rust functions. Told by the functions of the
/// program's own sources and its dependencies': the standard library comes precompiled with
/// v0 names whatever the build's scheme, so the more whole the stacks, the more of its
/// functions a profile has (and `/rustc/` sources also hold the generic code instantiated in
/// the program, which takes the program's scheme). Only a profile of nothing but the standard
/// library is told by all of its functions.
pub fn rust_mangling(profile: &pgo_profile::Profile) -> Option<&'static str> {
    let view = ProfileView::new(profile);
    let count = |own_only: bool| {
        let (mut v0, mut legacy) = (0usize, 0usize);
        for f in &profile.function {
            if own_only && view.str(f.filename).starts_with("/rustc/") {
                continue;
            }
            let name = view.str(f.system_name);
            if name.starts_with("_R") {
                v0 += 1;
            } else if name.starts_with("_ZN") && name.ends_with('E') && name.contains("17h") {
                legacy += 1;
            }
        }
        (v0, legacy)
    };
    let counts = match count(true) {
        (0, 0) => count(false),
        own => own,
    };
    match counts {
        (0, 0) => None,
        (v, l) if v > l => Some("v0"),
        _ => Some("legacy"),
    }
}

/// Each sample in the program itself (the mapping most samples are in; shared libraries do
/// not count) as the physical function of its user leaf (the outermost of its inline frames)
/// and the sample's count.
fn program_leaf_functions<'a>(
    view: &'a ProfileView<'a>,
) -> Result<impl Iterator<Item = (&'a pgo_profile::proto::Function, i64)> + 'a, String> {
    let index = sample_profile::sample_count_index(view)?;
    let main_mapping = view.main_mapping().map(|m| m.id);
    Ok(view.profile.sample.iter().filter_map(move |s| {
        let loc = view.user_leaf(s)?;
        if main_mapping.is_some_and(|m| loc.mapping_id != m) {
            return None;
        }
        let f = view.function(loc.line.last()?.function_id)?;
        Some((f, s.value.get(index).copied().unwrap_or(0)))
    }))
}

/// The share of the profile's samples in the program itself (its busiest mapping) whose
/// physical function exists by name in `binary` (as a symbol, or declared in its DWARF when
/// inlined everywhere): whether the names of the profile match the new build. Samples in
/// shared libraries do not count.
///
/// Functions we decided to inline count as matched when they are gone: the new build inlined
/// them everywhere, as asked.
pub fn name_match_percent(
    profile: &pgo_profile::Profile,
    decisions: &pgo_decide::Decisions,
    binary: &Path,
    rename: Option<&names::NameMap>,
) -> Result<f64, String> {
    let bin = pgo_binary::Binary::open(binary).map_err(|e| format!("{}: {e}", binary.display()))?;
    let mut names: FxHashSet<&str> = bin.functions().iter().map(|f| f.name.as_str()).collect();
    // Functions the new build inlined everywhere have no symbol, but its DWARF declares them.
    let declared = pgo_symbolize::subprograms(binary).unwrap_or_default();
    names.extend(declared.iter().map(|s| s.linkage_name.as_str()));
    names.extend(
        decisions
            .inline
            .iter()
            .map(|d| d.callee.linkage_name.as_str()),
    );
    let view = ProfileView::new(profile);
    let (mut matched, mut all) = (0i64, 0i64);
    for (f, w) in program_leaf_functions(&view)? {
        all += w;
        if names::names_in(rename, view.str(f.system_name))
            .iter()
            .any(|n| names.contains(n))
        {
            matched += w;
        }
    }
    Ok(if all == 0 {
        0.0
    } else {
        100.0 * matched as f64 / all as f64
    })
}

/// Source files whose code rustc does not compile: C, C++ and assembly, which a Cargo build
/// gets from build scripts (the `cc` and `cmake` crates) and links into the program.
const FOREIGN_SOURCE: [&str; 11] = [
    ".c", ".h", ".cc", ".cpp", ".cxx", ".hh", ".hpp", ".hxx", ".s", ".S", ".asm",
];

/// Below this share of the program's samples, code rustc does not compile goes unmentioned.
const FOREIGN_NOTE_PERCENT: f64 = 5.0;

/// The share of the program's samples (its busiest mapping; shared libraries do not count)
/// whose function comes from a C, C++ or assembly file, with the busiest such functions'
/// names (at most three). A rustc build's profile reaches none of that code.
pub fn foreign_code_share(profile: &pgo_profile::Profile) -> Result<(f64, Vec<String>), String> {
    let view = ProfileView::new(profile);
    let mut foreign: FxHashMap<u64, i64> = FxHashMap::default();
    let mut all = 0i64;
    for (f, w) in program_leaf_functions(&view)? {
        all += w;
        let file = view.str(f.filename);
        if FOREIGN_SOURCE.iter().any(|ext| file.ends_with(ext)) {
            *foreign.entry(f.id).or_default() += w;
        }
    }
    let mut busiest: Vec<(u64, i64)> = foreign.into_iter().collect();
    busiest.sort_by_key(|&(id, w)| (std::cmp::Reverse(w), id));
    let share: i64 = busiest.iter().map(|(_, w)| w).sum();
    let names = busiest
        .iter()
        .take(3)
        .filter_map(|(id, _)| view.function(*id))
        .map(|f| view.str(f.name).to_string())
        .collect();
    Ok((
        if all == 0 {
            0.0
        } else {
            100.0 * share as f64 / all as f64
        },
        names,
    ))
}

/// A note when much of the program's time is in C, C++ or assembly, which the rustc
/// backend's flags do not reach: a user who sees "100% matched" should not believe the whole
/// program was built with the profile.
fn foreign_code_note(profile: &pgo_profile::Profile) -> Result<Option<String>, String> {
    let (percent, names) = foreign_code_share(profile)?;
    Ok((percent >= FOREIGN_NOTE_PERCENT).then(|| {
        format!(
            "{percent:.1}% of the program's samples are in C, C++ or assembly ({}): rustc's \
             profile does not reach that code (a build script's C from the cc or cmake crate); \
             only its Rust code is built with the profile",
            names.join(", ")
        )
    }))
}

fn match_note(
    request: &Request<'_>,
    binary: &Path,
    rename: Option<&names::NameMap>,
) -> Result<Plan, String> {
    let percent = name_match_percent(request.profile, request.decisions, binary, rename)?;
    let mut plan = Plan::default();
    plan.notes.push(format!(
        "{percent:.1}% of the profile's samples are in functions that exist by name in {}",
        binary.display()
    ));
    if percent < 50.0 {
        plan.notes.push(
            "most of the profile did not match the new build's function names: was it recorded \
             from this program?"
                .into(),
        );
    }
    Ok(plan)
}

/// rustc: `RUSTC_BOOTSTRAP=1`, `-Zprofile-sample-use`, inline replay through `-Cllvm-args`,
/// the order through the linker (rustc 1.95 links with its bundled lld).
///
/// The build uses v0 symbol mangling (see [`names`] for why legacy names cannot work); a
/// profile of a legacy-mangled build (any plain `cargo build --release`) needs the names of a
/// build of these sources with these flags: `names_from` is such a binary
/// ([`Rustc::names_build_env`] is the environment to build it with).
#[derive(Debug, Clone, Default)]
pub struct Rustc {
    pub parts: Parts,
    pub names_from: Option<std::path::PathBuf>,
    /// The name map from `names_from`, made once for `plan` and `after_build`.
    name_map: std::sync::OnceLock<names::NameMap>,
}

/// LLVM's profile inference for the blocks a sample profile leaves without counts.
const PROFI: &str = "-sample-profile-use-profi";

/// Turns off profile-guided size optimization. With a sample profile LLVM optimizes for size
/// every function outside the hottest 99% of the samples (and `-pgso-cold-code-only-for-
/// sample-pgo` still every function with a cold count): code the training run barely touched,
/// but the real workload runs, loses vectorization and unrolling. oxipng 10.2.1 trained on
/// `-o max` (95% of the time in libdeflate) and measured on `-o 4`: its row filter ran 4.7x the
/// instructions of a build without a profile (82 M to 389 M; 126 M with this). On the fixture
/// suite it changes instruction counts by under 1%.
const NO_PGSO: &str = "-pgso=false";

/// Weighs the call sites the samples did not reach at LLVM's normal inline threshold (225),
/// not its cold one (45). With a sample profile LLVM takes a call site without samples in a
/// function with samples for a cold one, but a sampled run cannot tell "never ran" from "ran
/// between two samples": instrumentation counts such a site and inlines a small callee there,
/// our build left it out of line. stylua 2.6.0 (a program we had not seen, trained and measured
/// on different Lua sources): the allocation helpers of every `Vec` clone in the syntax tree
/// (`RawVecInner::try_allocate_in`, 318 M instructions, `finish_grow`) ran as calls, and
/// the pgo build executed 1.4% more instructions than plain; with this, 3.2% fewer (9.232 →
/// 8.810 G; instrumentation 8.470 G, plain 9.105 G), the same text size. Fixtures: interp and
/// parser 1% fewer, compress 0.3% and graph 0.2% more, c-sort the same. Callees marked cold
/// (`#[cold]`, `__attribute__((cold))`) keep LLVM's cold threshold (`-inlinecold-threshold`).
const UNSAMPLED_CALLS_NOT_COLD: &str = "-inline-cold-callsite-threshold=225";

/// Turns off LLVM's LoopSink, a pass that runs only with a profile: it moves loop-invariant
/// code from a loop's preheader into the blocks of the loop that use it when the profile says
/// those blocks run less often than the preheader. That is a bet on one ratio a sampled
/// profile knows least well: a preheader runs once per entry to the loop, is rarely sampled,
/// and gets its count from inference, and the training input's loops may be shorter than the
/// real ones. Lost, the bet costs every iteration (the moved code, and the registers its
/// operands now hold across the loop); won, it saves once per entry. graph (trained on a road
/// network, measured on a graph with hubs), on one of two profiles: LoopSink moved code into
/// the breadth-first search's neighbour loop, whose counter then went to the stack (2 × 25 M
/// extra instructions); with this, 3.195 → 3.154 G. Elsewhere it is within a profile's noise
/// (same-profile A/Bs from −0.7% to +0.5% on c-sort, interp, parser, compress, jrsonnet and
/// resvg) except pulldown-cmark's short per-line loops, +0.4%: BENCHMARKS.md round 15.
const NO_LOOP_SINK: &str = "-max-uses-for-sinking=0";

/// The LLVM options every build with a sample profile gets, rustc's and clang's alike.
const SAMPLE_PROFILE_LLVM_ARGS: [&str; 3] = [NO_PGSO, UNSAMPLED_CALLS_NOT_COLD, NO_LOOP_SINK];

/// The debug info every Cargo build of ours needs, with or without a profile: the sample
/// loader matches by debug locations, and the symbolizer needs linkage names of inlined
/// functions (`line-tables-only` has none).
const DEBUG_LEVEL: &str = "limited";

/// The flags every rustc build of ours gets, with or without a profile.
const RUSTC_FLAGS: [&str; 2] = ["-Zdebug-info-for-profiling", "-Csymbol-mangling-version=v0"];

impl Rustc {
    pub fn new(parts: Parts, names_from: Option<std::path::PathBuf>) -> Rustc {
        Rustc {
            parts,
            names_from,
            name_map: std::sync::OnceLock::new(),
        }
    }

    /// The map from the profile's names to `names_from`'s (the request's profile is the same
    /// in `plan` and `after_build`, so it is built once).
    fn name_map(&self, profile: &pgo_profile::Profile) -> Result<Option<&names::NameMap>, String> {
        let Some(binary) = &self.names_from else {
            return Ok(None);
        };
        if let Some(map) = self.name_map.get() {
            return Ok(Some(map));
        }
        let map = names::NameMap::build(profile, binary)?;
        Ok(Some(self.name_map.get_or_init(|| map)))
    }

    /// Whether the profile's names come from a legacy-mangled build, so a names build is needed.
    pub fn needs_names_build(profile: &pgo_profile::Profile) -> bool {
        rust_mangling(profile) == Some("legacy")
    }

    /// The environment of the names build: our flags without the profile.
    pub fn names_build_env() -> Vec<EnvEdit> {
        vec![
            EnvEdit::Set {
                name: "RUSTC_BOOTSTRAP".into(),
                value: "1".into(),
            },
            EnvEdit::AppendFlags {
                name: "RUSTFLAGS".into(),
                flags: RUSTC_FLAGS.iter().map(|f| f.to_string()).collect(),
            },
            EnvEdit::CargoDebugAtLeast {
                level: DEBUG_LEVEL.into(),
            },
        ]
    }
}

impl Backend for Rustc {
    fn name(&self) -> &str {
        "rustc"
    }

    /// v0 names (what the next build calls its functions) and discriminators.
    fn profiling_build_env(&self) -> Vec<EnvEdit> {
        Rustc::names_build_env()
    }

    fn plan(&self, request: &Request<'_>) -> Result<Plan, String> {
        if matches!(request.target.language, Language::Go | Language::C) {
            return Err(format!(
                "the rustc backend builds Rust; this is {:?} (use --backend {})",
                request.target.language,
                if request.target.language == Language::Go {
                    "go"
                } else {
                    "clang"
                }
            ));
        }
        let mut notes = Vec::new();
        let rename = match (
            self.name_map(request.profile)?,
            rust_mangling(request.profile),
        ) {
            (Some(map), _) => {
                let binary = self.names_from.as_deref().unwrap_or(Path::new(""));
                notes.push(format!(
                    "names: {} functions of the profile renamed to {}'s v0 names, {} the same, \
                     {} not found",
                    map.mapped,
                    binary.display(),
                    map.same,
                    map.unmapped
                ));
                Some(map)
            }
            (None, Some("legacy")) => {
                notes.push(
                    "the profile has legacy-mangled names, which LLVM cannot match (it cuts \
                     names at the first '.'): without a names build, most functions get no profile"
                        .into(),
                );
                None
            }
            (None, None) => {
                notes.push(
                    "the profile has no Rust symbol names (legacy or v0); nothing will match a \
                     Rust build"
                        .into(),
                );
                None
            }
            (None, Some(_)) => None,
        };
        let files = write_files(request, self.parts, rename)?;
        notes.extend(files.notes);
        notes.extend(foreign_code_note(request.profile)?);
        let mut flags: Vec<String> = Vec::new();
        if let Some(p) = &files.sample_profile {
            flags.push(format!("-Zprofile-sample-use={p}"));
            flags.extend(SAMPLE_PROFILE_LLVM_ARGS.map(|a| format!("-Cllvm-args={a}")));
            if self.parts.profi {
                flags.push(format!("-Cllvm-args={PROFI}"));
            }
        }
        flags.extend(RUSTC_FLAGS.iter().map(|f| f.to_string()));
        if let Some(p) = &files.inline_replay {
            for arg in inline_replay::llvm_args(p) {
                flags.push(format!("-Cllvm-args={arg}"));
            }
        }
        if let Some(p) = &files.symbol_order {
            flags.push(format!("-Clink-arg=-Wl,--symbol-ordering-file={p}"));
            flags.push("-Clink-arg=-Wl,--no-warn-symbol-ordering".into());
        }
        Ok(Plan {
            artifacts: files.artifacts,
            env: vec![
                EnvEdit::Set {
                    name: "RUSTC_BOOTSTRAP".into(),
                    value: "1".into(),
                },
                EnvEdit::AppendFlags {
                    name: "RUSTFLAGS".into(),
                    flags,
                },
                EnvEdit::CargoDebugAtLeast {
                    level: DEBUG_LEVEL.into(),
                },
            ],
            post_build: Vec::new(),
            notes,
        })
    }

    fn after_build(&self, request: &Request<'_>, binary: &Path) -> Result<Plan, String> {
        match_note(request, binary, self.name_map(request.profile)?)
    }
}

/// clang: `-fprofile-sample-use`, inline replay through `-mllvm`, the order through lld.
#[derive(Debug, Clone, Default)]
pub struct Clang {
    pub parts: Parts,
}

/// The variable every clang driver reads and edits its own arguments by. Build systems
/// differ in what they do with CFLAGS (a Makefile that assigns its own ignores the
/// environment's; a CMake cache keeps the flags of its first configure), but every compile
/// and link the build runs through clang sees this.
const CLANG_OVERRIDE: &str = "CCC_OVERRIDE_OPTIONS";

/// Edits for [`CLANG_OVERRIDE`]: `first` go before the build's own arguments (which then
/// override them), `last` after (where they win). `#` keeps clang from printing each edit;
/// the compile flags reach link steps and the link flags compile steps, where clang would
/// warn that they are unused.
fn clang_override(first: &[&str], last: &[&str]) -> EnvEdit {
    let mut flags = vec!["#".to_string()];
    // Each `^` edit inserts at the front: the last one ends up first.
    flags.extend(first.iter().rev().map(|f| format!("^{f}")));
    flags.extend(last.iter().map(|f| format!("+{f}")));
    flags.push("+-Wno-unused-command-line-argument".into());
    EnvEdit::AppendFlags {
        name: CLANG_OVERRIDE.into(),
        flags,
    }
}

impl Backend for Clang {
    fn name(&self) -> &str {
        "clang"
    }

    /// Discriminators (the blocks of one line told apart in the binary's DWARF) and at least
    /// line tables.
    fn profiling_build_env(&self) -> Vec<EnvEdit> {
        vec![clang_override(
            &["-gline-tables-only"],
            &["-fdebug-info-for-profiling"],
        )]
    }

    fn plan(&self, request: &Request<'_>) -> Result<Plan, String> {
        if matches!(request.target.language, Language::Go | Language::Rust) {
            return Err(format!(
                "the clang backend builds C and C++; this is {:?} (use --backend {})",
                request.target.language,
                if request.target.language == Language::Go {
                    "go"
                } else {
                    "rustc"
                }
            ));
        }
        let files = write_files(request, self.parts, None)?;
        let mut first = Vec::new();
        let mut last = Vec::new();
        if let Some(p) = &files.sample_profile {
            last.push(format!("-fprofile-sample-use={p}"));
            last.push("-fdebug-info-for-profiling".into());
            // The joined `-mllvm=` spelling: the override's edits are single words, and a
            // repeated `-mllvm` word would be merged away as a duplicate flag.
            last.extend(SAMPLE_PROFILE_LLVM_ARGS.map(|a| format!("-mllvm={a}")));
            if self.parts.profi {
                last.push(format!("-mllvm={PROFI}"));
            }
            // The sample loader needs no -g (clang tracks locations for it), but this build's
            // binary is the next one profiled, which needs line tables: at least those, placed
            // first so that the build's own -g, if any, wins.
            first.push("-gline-tables-only".to_string());
        }
        if let Some(p) = &files.inline_replay {
            for arg in inline_replay::llvm_args(p) {
                last.push(format!("-mllvm={arg}"));
            }
        }
        if let Some(p) = &files.symbol_order {
            // Each function in its own section, so the linker can place it.
            last.push("-ffunction-sections".into());
            last.push("-fuse-ld=lld".into());
            last.push(format!("-Wl,--symbol-ordering-file={p}"));
            last.push("-Wl,--no-warn-symbol-ordering".into());
        }
        if let Some(bad) = first
            .iter()
            .chain(&last)
            .find(|f| f.contains(char::is_whitespace))
        {
            return Err(format!(
                "{bad}: clang's {CLANG_OVERRIDE} cannot carry a path with white space; give \
                 --out-dir a path without it"
            ));
        }
        let env = if first.is_empty() && last.is_empty() {
            Vec::new()
        } else {
            let first: Vec<&str> = first.iter().map(String::as_str).collect();
            let last: Vec<&str> = last.iter().map(String::as_str).collect();
            vec![clang_override(&first, &last)]
        };
        Ok(Plan {
            artifacts: files.artifacts,
            env,
            post_build: Vec::new(),
            notes: files.notes,
        })
    }

    fn after_build(&self, request: &Request<'_>, binary: &Path) -> Result<Plan, String> {
        let mut plan = match_note(request, binary, None)?;
        let producers = pgo_symbolize::producers(binary).unwrap_or_default();
        plan.notes
            .extend(gcc_units_warning(&binary.display().to_string(), &producers));
        Ok(plan)
    }
}

/// A warning when C or C++ units of the built binary were compiled by GCC: GCC does not read
/// [`CLANG_OVERRIDE`], so they were built without the profile, though the build succeeded
/// and their functions still match the profile by name (a Makefile's default `cc` is GCC on
/// most Linux systems). `producers` are the binary's compilation units' `DW_AT_producer`.
fn gcc_units_warning(binary: &str, producers: &[String]) -> Option<String> {
    let gcc: Vec<&String> = producers
        .iter()
        .filter(|p| p.starts_with("GNU C"))
        .collect();
    let clang = producers.iter().filter(|p| p.contains("clang")).count();
    let first = gcc.first()?;
    let version: String = first.split(" -").next().unwrap_or(first).into();
    let what = if clang == 0 {
        "the build got NO profile".to_string()
    } else {
        format!("those units got no profile (the {clang} compiled by clang did)")
    };
    Some(format!(
        "WARNING: {} of {} C/C++ compilation units in {binary} were compiled by GCC ({version}), \
         which does not read {CLANG_OVERRIDE}: {what}; build with clang (CC=clang-22 \
         CXX=clang++-22, e.g. `make CC=clang-22`)",
        gcc.len(),
        gcc.len() + clang,
    ))
}

#[cfg(test)]
mod tests {
    use super::{foreign_code_note, foreign_code_share, gcc_units_warning, rust_mangling};
    use pgo_profile::{FunctionInfo, LineInfo, MappingInfo, Profile, ProfileBuilder};

    /// A Rust program with a C library built in (a build script's `cc`), and libc: samples
    /// in the program's Rust 6, its C 3 + 1 (a C function inlined into another), libc 5.
    fn mixed_program() -> Profile {
        let mut b = ProfileBuilder::new(&[("cpu", "nanoseconds")]);
        let prog = b.mapping(MappingInfo {
            memory_start: 0x5555_0000_0000,
            memory_limit: 0x5555_0010_0000,
            filename: "/work/app",
            has_functions: true,
            ..MappingInfo::default()
        });
        let libc = b.mapping(MappingInfo {
            memory_start: 0x7f00_0000_0000,
            memory_limit: 0x7f00_0010_0000,
            filename: "/usr/lib/x86_64-linux-gnu/libc.so.6",
            ..MappingInfo::default()
        });
        let mut frame = |name: &str, filename: &str| LineInfo {
            function: b.function(FunctionInfo {
                name,
                system_name: name,
                filename,
                start_line: 1,
            }),
            line: 2,
            column: 0,
        };
        let main = frame("app::main", "/work/src/main.rs");
        let deflate = frame(
            "deflate_compress",
            "/work/libdeflate/lib/deflate_compress.c",
        );
        let extend = frame("lz_extend", "/work/libdeflate/lib/matchfinder_common.h");
        let memcpy = frame("memcpy", "");
        let at = |b: &mut ProfileBuilder, m, a, lines: &[LineInfo]| b.location(Some(m), a, lines);
        let main_loc = at(&mut b, prog, 0x5555_0000_1000, &[main]);
        let deflate_loc = at(&mut b, prog, 0x5555_0000_2000, &[deflate]);
        // lz_extend inlined into deflate_compress: the physical function is the C one.
        let inlined_loc = at(&mut b, prog, 0x5555_0000_2040, &[extend, deflate]);
        let libc_loc = at(&mut b, libc, 0x7f00_0000_0040, &[memcpy]);
        for (stack, n) in [
            (vec![main_loc], 6),
            (vec![deflate_loc, main_loc], 3),
            (vec![inlined_loc, main_loc], 1),
            (vec![libc_loc, main_loc], 5),
        ] {
            b.add_sample(&stack, &[n], &[]).unwrap();
        }
        b.build()
    }

    #[test]
    fn the_mangling_is_the_programs_own_not_the_precompiled_standard_librarys() {
        // A legacy-mangled program whose whole stacks pass through more of std's (precompiled,
        // v0) functions than the program has of its own.
        let profile = |std_functions: usize| {
            let mut b = ProfileBuilder::new(&[("cpu", "nanoseconds")]);
            let mut functions = vec![
                (
                    "_ZN3app4main17h0123456789abcdefE".to_string(),
                    "/work/src/main.rs",
                ),
                (
                    "_ZN3app3hot17h0123456789abcdefE".to_string(),
                    "/work/src/main.rs",
                ),
            ];
            for i in 0..std_functions {
                functions.push((
                    format!("_RNvNtCsgEmfK2I1SDS_3std2rt{i}"),
                    "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/rt.rs",
                ));
            }
            let lines: Vec<LineInfo> = functions
                .iter()
                .map(|(name, file)| LineInfo {
                    function: b.function(FunctionInfo {
                        name,
                        system_name: name,
                        filename: file,
                        start_line: 1,
                    }),
                    line: 2,
                    column: 0,
                })
                .collect();
            let stack: Vec<_> = lines
                .iter()
                .enumerate()
                .map(|(i, l)| b.location(None, 0x1000 + i as u64, std::slice::from_ref(l)))
                .collect();
            b.add_sample(&stack, &[1], &[]).unwrap();
            b.build()
        };
        assert_eq!(rust_mangling(&profile(5)), Some("legacy"));
        assert_eq!(rust_mangling(&profile(0)), Some("legacy"));
    }

    #[test]
    fn the_share_of_c_code_is_of_the_programs_own_samples_by_physical_function() {
        let (percent, names) = foreign_code_share(&mixed_program()).unwrap();
        // 4 of the program's 10 samples; libc's 5 are not the program's.
        assert!((percent - 40.0).abs() < 1e-9, "{percent}");
        assert_eq!(names, ["deflate_compress"]);
        let note = foreign_code_note(&mixed_program()).unwrap().unwrap();
        assert!(
            note.starts_with(
                "40.0% of the program's samples are in C, C++ or assembly (deflate_compress)"
            ),
            "{note}"
        );
    }

    #[test]
    fn gcc_compiled_units_are_named_and_clang_ones_are_not() {
        let clang = "Debian clang version 22.1.0 (++20251201)".to_string();
        let gcc = "GNU C17 12.2.0 -mtune=generic -march=x86-64 -g -O2".to_string();
        let rustc = "clang LLVM (rustc version 1.95.0 (59807616e 2026-10-30))".to_string();
        let gas = "GNU AS 2.40".to_string();
        assert_eq!(
            gcc_units_warning("prog", &[clang.clone(), rustc, gas.clone()]),
            None
        );
        assert_eq!(gcc_units_warning("prog", &[]), None);
        let all_gcc = gcc_units_warning("prog", &[gcc.clone(), gcc.clone(), gas]).unwrap();
        assert!(
            all_gcc.starts_with(
                "WARNING: 2 of 2 C/C++ compilation units in prog were compiled by GCC (GNU C17 \
                 12.2.0), which does not read CCC_OVERRIDE_OPTIONS: the build got NO profile;"
            ),
            "{all_gcc}"
        );
        let mixed = gcc_units_warning("prog", &[gcc, clang]).unwrap();
        assert!(
            mixed.contains("1 of 2 C/C++ compilation units")
                && mixed.contains("(the 1 compiled by clang did)"),
            "{mixed}"
        );
    }
}
