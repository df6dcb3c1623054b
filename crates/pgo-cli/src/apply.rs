//! `pgo apply`: profile → (decisions) → backend plan → build with the merged environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use clap::Args;
use pgo_apply::built_program;
use pgo_backend::{Backend, Language, Plan, Request, Target};
use pgo_profile::{Error, ProfileView};
use serde_json::json;

use crate::commands::{InputArgs, emit, emit_json, load, sample_index};

#[derive(Args)]
pub struct ApplyArgs {
    /// Profiles to build with (several are merged). Optional with --allow-missing: without
    /// one, that builds the binary to profile.
    #[arg(
        long = "profile",
        short = 'p',
        value_name = "PROFILE",
        required_unless_present = "allow_missing"
    )]
    profiles: Vec<PathBuf>,
    /// Decisions from `pgo analyze`; without it the profiles are analyzed here.
    #[arg(long, value_name = "FILE")]
    decisions: Option<PathBuf>,
    /// rustc, clang, go, bolt, or NAME for an external `pgo-backend-NAME` program on PATH.
    /// Default: from the build command (cargo → rustc, go → go, else clang).
    #[arg(long)]
    backend: Option<String>,
    /// The profiled binary, for the analysis (sizes, call kinds, blocks). Default: the
    /// profile's main binary when it is still on disk with the same build ID.
    #[arg(long, value_name = "BIN")]
    binary: Option<PathBuf>,
    /// The binary the build produces (checked against the profile after the build; BOLT
    /// rewrites it). Default: for cargo, the program the build linked (the `--bin` named, or
    /// the profiled binary's name, when it linked several); else the `-o FILE` of the command.
    #[arg(long, value_name = "BIN")]
    output_binary: Option<PathBuf>,
    /// Where the backend's files go (in a subdirectory named after the backend). Default:
    /// `pgo` in Cargo's target directory for a cargo build (`CARGO_TARGET_DIR`,
    /// `build.target-dir` or `--target-dir`, as Cargo resolves them), else `target/pgo`.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Fail when less than this percentage of the profile's (checkable) weight is in
    /// functions that still exist in the sources at the same start line.
    #[arg(long, value_name = "PCT")]
    fail_below: Option<f64>,
    /// Build without PGO (and say so) when a profile is missing or unreadable, with the
    /// backend's profile-less flags (rustc: v0 names, discriminators), so that the binary is
    /// the one to profile for the next build: a project's first CI run.
    #[arg(long)]
    allow_missing: bool,
    /// Print the environment and write the artifacts, but do not build.
    #[arg(long)]
    dry_run: bool,
    /// Hot edges are the heaviest ones covering this percentage of call weight.
    #[arg(long, default_value_t = 99.0, value_name = "PERCENT")]
    cdf: f64,
    /// rustc/clang: leave out the inline-replay file (ablation).
    #[arg(long)]
    no_inline_replay: bool,
    /// rustc/clang: leave out the symbol ordering file (ablation).
    #[arg(long)]
    no_function_order: bool,
    /// rustc/clang: do not nest callee samples under decided call sites (ablation).
    #[arg(long)]
    no_inline_contexts: bool,
    /// rustc/clang: line counts are raw samples (time), not executions from the profiled
    /// binary's blocks (ablation).
    #[arg(long)]
    no_block_counts: bool,
    /// rustc/clang: have LLVM re-infer block counts by flow (`-sample-profile-use-profi`);
    /// off by default, as the execution counts are inferred by flow already.
    #[arg(long)]
    profi: bool,
    /// Print a JSON summary on stdout (the build's own output goes to stderr).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    input: InputArgs,
    /// The build command.
    #[arg(last = true, value_name = "BUILD COMMAND")]
    command: Vec<String>,
}

fn guess_language(backend: &str, command: &[String]) -> Language {
    match backend {
        "rustc" => return Language::Rust,
        "clang" => return Language::C,
        "go" => return Language::Go,
        _ => {}
    }
    match build_program(command) {
        Some("cargo" | "rustc") => Language::Rust,
        Some("go") => Language::Go,
        None => Language::Unknown,
        Some(_) => Language::C,
    }
}

/// The program a build command runs (`cargo`, `go`, `make`, ...), by its file name.
fn build_program(command: &[String]) -> Option<&str> {
    command
        .first()
        .and_then(|c| Path::new(c).file_name())
        .and_then(|n| n.to_str())
}

/// The sources of the build's dependencies, for the staleness check: the packages of a cargo
/// build's `cargo_metadata`; for a go build, `go list -m all`'s module directories and every
/// package the build compiles (`go list -deps` with the build's own flags and packages: the
/// standard library's too, as Go builds it with the profile, and a GOROOT command's, such as
/// `go build cmd/compile`, which is in no module), with their import paths, which are the file
/// names of a `-trimpath` build's profile; none for other builds, or when the tool cannot say
/// (the check then leaves dependencies out). Directories in or above `workdir` are left out
/// (the project's own); its packages' import paths are kept (the check calls them its own).
fn dependencies(
    command: &[String],
    workdir: &Path,
    cargo_metadata: Option<&serde_json::Value>,
) -> pgo_apply::staleness::Dependencies {
    let outside = |d: &PathBuf| !workdir.starts_with(d) && !d.starts_with(workdir);
    match build_program(command) {
        Some("cargo") => pgo_apply::staleness::Dependencies::new(
            cargo_metadata
                .map(pgo_apply::cargo_profile::package_dirs)
                .unwrap_or_default()
                .into_iter()
                .filter(outside),
        ),
        Some("go") => {
            let mut dirs: Vec<PathBuf> =
                go_lines(command, workdir, &["list", "-m", "-f", "{{.Dir}}", "all"])
                    .into_iter()
                    .map(PathBuf::from)
                    .collect();
            let mut packages = Vec::new();
            if let Some(args) = go_list_deps_args(command) {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                for line in go_lines(command, workdir, &args) {
                    if let Some((import_path, dir)) = line.split_once('\t') {
                        dirs.push(PathBuf::from(dir));
                        packages.push((import_path.to_string(), PathBuf::from(dir)));
                    }
                }
            }
            dirs.sort();
            dirs.dedup();
            pgo_apply::staleness::Dependencies::new(dirs.into_iter().filter(outside))
                .with_go_packages(packages)
        }
        _ => pgo_apply::staleness::Dependencies::default(),
    }
}

/// The non-empty lines `go ARGS` prints; none when it fails.
fn go_lines(command: &[String], workdir: &Path, args: &[&str]) -> Vec<String> {
    let output = Command::new(&command[0])
        .args(args)
        .current_dir(workdir)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match output {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// `go build|install FLAGS PACKAGES` as `list -deps -f FORMAT FLAGS PACKAGES` (FORMAT: import
/// path, tab, directory): `go list`
/// takes the same build flags (and `-C DIR`, which must stay first), except `-o`, which only
/// `go build` has. `None` for other go commands (`go run`'s arguments after the package are
/// the program's).
fn go_list_deps_args(command: &[String]) -> Option<Vec<String>> {
    let verb = command.get(1)?;
    if verb != "build" && verb != "install" {
        return None;
    }
    let mut list = vec!["list".to_string()];
    let mut args = command[2..].iter().peekable();
    if let Some(first) = args.peek() {
        if *first == "-C" || *first == "--C" {
            list.push(args.next()?.clone());
            list.push(args.next()?.clone());
        } else if first.starts_with("-C=") || first.starts_with("--C=") {
            list.push(args.next()?.clone());
        }
    }
    list.extend(["-deps", "-f", "{{.ImportPath}}\t{{.Dir}}"].map(String::from));
    while let Some(arg) = args.next() {
        if arg == "-o" || arg == "--o" {
            args.next();
        } else if !(arg.starts_with("-o=") || arg.starts_with("--o=")) {
            list.push(arg.clone());
        }
    }
    Some(list)
}

fn default_backend(command: &[String]) -> &'static str {
    match guess_language("", command) {
        Language::Rust | Language::Unknown => "rustc",
        Language::Go => "go",
        Language::C => "clang",
    }
}

fn backend_for(
    a: &ApplyArgs,
    name: &str,
    names_from: Option<PathBuf>,
) -> Result<Box<dyn Backend>, Error> {
    let parts = pgo_backend_llvm::Parts {
        sample_profile: true,
        block_counts: !a.no_block_counts,
        inline_contexts: !a.no_inline_contexts,
        inline_replay: !a.no_inline_replay,
        function_order: !a.no_function_order,
        profi: a.profi,
    };
    Ok(match name {
        "rustc" => Box::new(pgo_backend_llvm::Rustc::new(parts, names_from)),
        "clang" => Box::new(pgo_backend_llvm::Clang { parts }),
        "go" => Box::new(pgo_backend_go::Go),
        "bolt" => Box::new(pgo_backend_bolt::Bolt::default()),
        other => match pgo_backend::external::External::find(other) {
            Some(e) => Box::new(e),
            None => {
                return Err(Error::new(
                    "--backend",
                    format!(
                        "no backend {other:?}: the built-in ones are rustc, clang, go and bolt, \
                         and no program pgo-backend-{other} is on PATH"
                    ),
                ));
            }
        },
    })
}

/// Below this many samples a profile's decisions are noise-prone: two 4000 Hz profiles of
/// pulldown-cmark's 0.8-second training run (3,150 and 5,236 samples) gave builds with 39% and
/// 70% of instrumentation PGO's instruction reduction; interp's builds from ~2,600-sample
/// profiles spread twice as wide (28-44 M mispredicts) as from ~10,000-sample ones (23-30 M).
const FEW_SAMPLES: i64 = 10_000;

/// How many samples the profile holds (its `samples/count` values), when it says.
fn sample_count(view: &ProfileView<'_>) -> Option<i64> {
    let index = view.sample_index(Some("samples/count")).ok()?;
    Some(
        view.profile
            .sample
            .iter()
            .map(|s| s.value.get(index).copied().unwrap_or(0).max(0))
            .sum(),
    )
}

/// The profile's main binary (the mapping most samples are in) and its build ID.
fn main_binary(profile: &pgo_profile::Profile) -> Option<(PathBuf, String)> {
    let view = ProfileView::new(profile);
    let m = view.main_mapping()?;
    let file = view.str(m.filename);
    if file.is_empty() || file.starts_with('[') {
        return None;
    }
    Some((PathBuf::from(file), view.str(m.build_id).to_string()))
}

/// The profiled binary, when it is still on disk with the same build ID, or `perf record`
/// kept a copy of it in its build-ID cache.
fn profiled_binary(profile: &pgo_profile::Profile) -> Option<PathBuf> {
    let (path, build_id) = main_binary(profile)?;
    pgo_symbolize::binary_with_build_id(&path, &build_id)
}

/// Where to look for the program a build makes, worked out once per `pgo apply` (for cargo,
/// from the `cargo metadata` the staleness check ran).
struct ProgramLookup {
    /// `--output-binary` or the command's `-o FILE`, with the words that name it in errors.
    named: Option<(PathBuf, &'static str)>,
    /// The profiled program's file name.
    profiled: Option<OsString>,
    cargo: pgo_apply::cargo_profile::CargoBuild,
    /// Cargo's target directory as `cargo metadata` resolves it (none when a build other than
    /// cargo names its output file).
    target_dir: Option<PathBuf>,
    workdir: PathBuf,
}

/// How many directory levels below the build's directory a build other than Cargo's is looked
/// at for the program it linked (`src/lua`, `build/bin/app`).
const BUILD_TREE_DEPTH: usize = 4;

impl ProgramLookup {
    fn new(
        a: &ApplyArgs,
        profile: &pgo_profile::Profile,
        workdir: &Path,
        cargo: pgo_apply::cargo_profile::CargoBuild,
        cargo_metadata: Option<&serde_json::Value>,
    ) -> ProgramLookup {
        let dash_o = a
            .command
            .iter()
            .position(|x| x == "-o")
            .and_then(|i| a.command.get(i + 1));
        let named = match (&a.output_binary, dash_o) {
            (Some(p), _) => Some((workdir.join(p), "--output-binary ")),
            (None, Some(out)) => Some((workdir.join(out), "")),
            (None, None) => None,
        };
        // Cargo's target directory, where the program is looked for (unless named) and the
        // backend's files go.
        let target_dir = (named.is_none() || cargo.from_command)
            .then(|| built_program::cargo_target_dir(&cargo, workdir, cargo_metadata))
            .flatten();
        ProgramLookup {
            named,
            profiled: main_binary(profile).and_then(|(p, _)| p.file_name().map(OsString::from)),
            cargo,
            target_dir,
            workdir: workdir.to_path_buf(),
        }
    }

    /// Where the backend's files go: `--out-dir`; else beside the build's own output, so
    /// that two builds of one checkout with their own target directories keep their own
    /// files: `pgo/` in Cargo's target directory, or `target/pgo` in the workdir.
    fn out_dir(&self, given: Option<&Path>) -> PathBuf {
        match given {
            Some(dir) => self.workdir.join(dir),
            None => self.target().join("pgo"),
        }
    }

    /// Cargo's target directory, else `target` in the workdir (Cargo's default).
    fn target(&self) -> PathBuf {
        self.target_dir
            .clone()
            .unwrap_or_else(|| self.workdir.join("target"))
    }

    /// Where the build will put the program, before it runs: the named file; for cargo, the
    /// `--bin` it names (or the profiled program's name) in Cargo's directory for the profile
    /// (`target/<profile dir>/`); for other build commands (make, scripts), a file of the
    /// profiled program's name in the workdir, where it exists. After the build, [`Self::find`]
    /// looks at what was linked.
    fn expected(&self) -> Option<PathBuf> {
        if let Some((p, _)) = &self.named {
            return Some(p.clone());
        }
        if !self.cargo.from_command
            && let Some(name) = &self.profiled
        {
            let here = self.workdir.join(name);
            if here.is_file() {
                return Some(here);
            }
        }
        let name = match self.cargo.bins.as_slice() {
            [one] => OsString::from(one),
            _ => self.profiled.clone()?,
        };
        Some(
            self.target()
                .join(built_program::profile_dir(&self.cargo.profile))
                .join(name),
        )
    }

    /// The program the build that started at `since` made: the named file; else the one
    /// program it linked since then (the `--bin` asked for, or the profiled program's name,
    /// when it linked several), in Cargo's directories for a cargo build, anywhere a few levels
    /// under the build's directory for others (make's `src/lua`); else [`Self::expected`],
    /// where it exists. `Err` says why none was found.
    fn find(&self, since: SystemTime) -> Result<PathBuf, String> {
        if let Some((p, label)) = &self.named {
            return if p.exists() {
                Ok(p.clone())
            } else {
                Err(format!("{label}{} does not exist", p.display()))
            };
        }
        // Where the build links programs: Cargo's directories for the profile; for make and
        // the like, anywhere in the tree it was run in, a few levels down.
        let dirs = if self.cargo.from_command {
            self.target_dir
                .as_ref()
                .map(|target| built_program::program_dirs(target, &self.cargo.profile))
        } else {
            Some(built_program::dirs_under(&self.workdir, BUILD_TREE_DEPTH))
        };
        if let Some(dirs) = dirs {
            let linked = built_program::linked_since(&dirs, since);
            match built_program::pick(&linked, &self.cargo.bins, self.profiled.as_deref()) {
                Ok(p) => return Ok(p),
                Err(several) if several.len() > 1 => {
                    let names: Vec<String> =
                        several.iter().map(|p| p.display().to_string()).collect();
                    return Err(format!(
                        "the build linked {} programs ({}), none named as the profiled one",
                        names.len(),
                        names.join(", ")
                    ));
                }
                // Nothing relinked (the build was up to date): the program is where it was.
                Err(_) => {}
            }
        }
        match self.expected() {
            Some(p) if p.exists() => Ok(p),
            Some(p) => Err(format!("{} does not exist", p.display())),
            None => Err("the profile names no program to look for".into()),
        }
    }
}

pub fn apply(a: ApplyArgs) -> Result<u8, Error> {
    let workdir = std::env::current_dir().map_err(|e| Error::new(".", e.to_string()))?;
    // Without a build command, the backend works on an existing binary (BOLT's post-link
    // rewrite): that needs --output-binary.
    if a.command.is_empty() && !a.dry_run && a.output_binary.is_none() {
        return Err(Error::new(
            "pgo apply",
            "no build command: give one after `--` (e.g. `-- cargo build --release`), \
             --output-binary BIN to optimize an existing binary (BOLT), or --dry-run",
        ));
    }
    let backend_name = a
        .backend
        .clone()
        .unwrap_or_else(|| default_backend(&a.command).to_string());
    let mut backend = backend_for(&a, &backend_name, None)?;
    // The build command as Cargo reads it (its profile, target directory, binaries), parsed
    // once for the metadata, the program lookup and the flag merge.
    let cargo = pgo_apply::cargo_profile::cargo_build(&a.command);

    // The profile. Missing or corrupt is an error, unless the user asked to build without.
    let loaded = if a.profiles.is_empty() {
        Err(Error::new("pgo apply", "no --profile given"))
    } else {
        load(&a.profiles, &a.input, &[])
    };
    let profile = match loaded {
        Ok(p) => p,
        Err(e) if a.allow_missing => {
            eprintln!("pgo: WARNING: {e}");
            eprintln!(
                "pgo: WARNING: --allow-missing: building WITHOUT profile-guided optimization"
            );
            // The build still gets the backend's profile-less flags, so that a profile of
            // this binary has the names and discriminators the next `pgo apply` reads.
            let edits = backend.profiling_build_env();
            let merged = merge_env(&edits, &workdir, &cargo)?;
            if !edits.is_empty() {
                eprintln!(
                    "pgo: building with {}'s flags for a binary to profile:",
                    backend.name()
                );
                report_env(&merged.vars);
            }
            let code = if a.dry_run {
                0
            } else {
                run_build(&a.command, Some(&merged), a.json)?
            };
            if a.json {
                emit_json(&json!({"applied": false, "reason": e.to_string(), "build_exit": code}))?;
            }
            return Ok(code);
        }
        Err(e) => return Err(e),
    };
    let view = ProfileView::new(&profile);
    let index = sample_index(&view, &a.input, &a.profiles)?;
    let profiles_label = a
        .profiles
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");

    if let Some(n) = sample_count(&view)
        && n < FEW_SAMPLES
    {
        eprintln!(
            "pgo: note: the profile holds only {n} samples; builds from profiles this small \
             differ from one profile to the next: train longer, sample faster (pgo collect -F), \
             or merge several runs (pgo merge)"
        );
    }

    // Staleness: does the profile still describe these sources?
    // The project's own packages (workspace members) are its sources, not dependencies.
    // One `cargo metadata` serves the dependencies' directories and Cargo's target directory.
    let cargo_metadata = (build_program(&a.command) == Some("cargo"))
        .then(|| cargo.metadata(&workdir, false))
        .flatten();
    let staleness = pgo_apply::staleness::check_with_dependencies(
        &profile,
        index,
        std::slice::from_ref(&workdir),
        &dependencies(&a.command, &workdir, cargo_metadata.as_ref()),
    );
    let fresh = staleness.fresh_percent();
    match fresh {
        Some(p) => {
            let checked = staleness.fresh_weight + staleness.stale_weight;
            let in_dependencies = match staleness.dependency_weight {
                0 => String::new(),
                w => format!(
                    " ({:.0}% of the weight checked is in the sources of the dependencies this \
                     build compiles)",
                    w as f64 * 100.0 / checked as f64
                ),
            };
            eprintln!(
                "pgo: profile freshness: {p:.1}% of the profile's weight in this project's sources \
                 is in functions still at their start line{in_dependencies}"
            );
            for s in staleness.stale.iter().take(5) {
                eprintln!(
                    "pgo:   stale: {} ({}:{}): {}",
                    s.name, s.file, s.start_line, s.reason
                );
            }
            if p < 90.0 {
                eprintln!(
                    "pgo: WARNING: the profile is stale ({p:.1}% fresh, below 90%): re-collect it"
                );
            }
            if let Some(min) = a.fail_below
                && p < min
            {
                return Err(Error::new(
                    profiles_label,
                    format!("profile is {p:.1}% fresh, below --fail-below {min}"),
                ));
            }
        }
        None => {
            eprintln!(
                "pgo: profile freshness: none of the profile's functions is in sources under {} \
                 (cannot check)",
                workdir.display()
            );
            if a.fail_below.is_some() {
                return Err(Error::new(
                    profiles_label,
                    "--fail-below: no function of the profile could be checked against the sources",
                ));
            }
        }
    }

    // Decisions: given, or made here (with the profiled binary's facts when we can find it).
    let decisions = match &a.decisions {
        Some(path) => crate::analyze::read_decisions(path)?,
        None => {
            let binary = a.binary.clone().or_else(|| profiled_binary(&profile));
            crate::analyze::make_decisions(&profile, index, binary.as_deref(), false, a.cdf)?
        }
    };

    let lookup = ProgramLookup::new(&a, &profile, &workdir, cargo, cargo_metadata.as_ref());
    let out_dir = lookup.out_dir(a.out_dir.as_deref()).join(backend.name());
    std::fs::create_dir_all(&out_dir).map_err(|e| Error::new(&out_dir, e.to_string()))?;
    let output_binary = lookup.expected();
    let target = Target {
        language: guess_language(&backend_name, &a.command),
        build_command: a.command.clone(),
        workdir: workdir.clone(),
        output_binary: output_binary.clone(),
    };
    // A profile of a legacy-mangled build (any plain release build) names functions in a way
    // LLVM cannot match; the names of a build of these sources with our flags can (v0). Build
    // once without the profile to learn them, then with it.
    if backend.name() == "rustc"
        && pgo_backend_llvm::Rustc::needs_names_build(&profile)
        && !a.dry_run
        && !a.command.is_empty()
    {
        eprintln!(
            "pgo: names build: the profile's Rust names are legacy-mangled, which LLVM cannot \
             match; building once without the profile to learn this build's v0 names"
        );
        let merged = merge_env(
            &pgo_backend_llvm::Rustc::names_build_env(),
            &workdir,
            &lookup.cargo,
        )?;
        let since = SystemTime::now();
        let code = run_build(&a.command, Some(&merged), a.json)?;
        if code != 0 {
            eprintln!("pgo: the names build failed (exit {code})");
            return Ok(code);
        }
        let built = lookup.find(since).map_err(|why| {
            Error::new(
                "the names build",
                format!("cannot find the program it built: {why}; give --output-binary BIN"),
            )
        })?;
        // The build with the profile overwrites it: keep a copy.
        let copy = out_dir
            .join("names-build")
            .join(built.file_name().unwrap_or_default());
        std::fs::create_dir_all(copy.parent().unwrap_or(&out_dir))
            .and_then(|()| std::fs::copy(&built, &copy))
            .map_err(|e| Error::new(&copy, e.to_string()))?;
        backend = backend_for(&a, "rustc", Some(copy))?;
    }
    let request = Request {
        decisions: &decisions,
        profile: &profile,
        profile_paths: &a.profiles,
        decisions_path: a.decisions.as_deref(),
        target: &target,
        out_dir: &out_dir,
    };
    let plan = backend
        .plan(&request)
        .map_err(|e| Error::new(format!("backend {}", backend.name()), e))?;
    let merged = merge_env(&plan.env, &workdir, &lookup.cargo)?;
    report_plan(backend.name(), &plan, &merged.vars, a.json && a.dry_run);
    if a.dry_run {
        if a.json {
            emit_json(&summary_json(
                backend.name(),
                &plan,
                &merged.vars,
                fresh,
                None,
                &[],
            ))?;
        }
        return Ok(0);
    }

    let since = SystemTime::now();
    let code = if a.command.is_empty() {
        0
    } else {
        run_build(&a.command, Some(&merged), a.json)?
    };
    if code != 0 {
        eprintln!("pgo: the build failed (exit {code})");
        return Ok(code);
    }
    let mut after = Vec::new();
    let built = lookup.find(since);
    match &built {
        Ok(bin) => {
            let extra = backend
                .after_build(&request, bin)
                .map_err(|e| Error::new(format!("backend {}", backend.name()), e))?;
            run_post_build(&plan, bin)?;
            after.push(extra);
        }
        Err(why) => eprintln!(
            "pgo: note: the built program was not checked against the profile: {why}; give \
             --output-binary BIN"
        ),
    }
    for p in &after {
        report_artifacts(&p.artifacts, "pgo: ");
        report_notes(&p.notes);
    }
    if a.json {
        emit_json(&summary_json(
            backend.name(),
            &plan,
            &merged.vars,
            fresh,
            built.as_deref().ok(),
            &after,
        ))?;
    } else {
        emit(&format!(
            "pgo: built with backend {} ({} artifacts under {})\n",
            backend.name(),
            plan.artifacts.len(),
            out_dir.display()
        ))?;
    }
    Ok(0)
}

fn report_plan(backend: &str, plan: &Plan, vars: &[(String, Option<String>)], quiet: bool) {
    if quiet {
        return;
    }
    eprintln!("pgo: backend {backend}:");
    report_artifacts(&plan.artifacts, "pgo:   ");
    report_env(vars);
    report_notes(&plan.notes);
}

/// The variables a build gets: set (flags separated by spaces) or unset.
fn report_env(vars: &[(String, Option<String>)]) {
    for (name, value) in vars {
        match value {
            Some(v) => eprintln!("pgo:   {name}={}", v.replace('\u{1f}', " ")),
            None => eprintln!("pgo:   unset {name}"),
        }
    }
}

fn report_artifacts(artifacts: &[pgo_backend::Artifact], prefix: &str) {
    for art in artifacts {
        eprintln!(
            "{prefix}{}: {} ({})",
            art.kind,
            art.path.display(),
            art.summary
        );
    }
}

fn report_notes(notes: &[String]) {
    for n in notes {
        eprintln!("pgo: note: {n}");
    }
}

/// The build environment for `edits`, merged into the user's own (see pgo-apply), after
/// printing what the user should know about it. rustc is asked for its host only when Rust
/// flags are involved.
fn merge_env(
    edits: &[pgo_backend::EnvEdit],
    workdir: &Path,
    cargo: &pgo_apply::cargo_profile::CargoBuild,
) -> Result<pgo_apply::rustflags::MergedEnv, Error> {
    let env = |k: &str| std::env::var(k).ok();
    let host = if edits
        .iter()
        .any(|e| matches!(e.name(), "RUSTFLAGS" | "CARGO_ENCODED_RUSTFLAGS"))
    {
        pgo_apply::rustflags::Host::detect(workdir, &env).map_err(|e| Error::new("rustc", e))?
    } else {
        pgo_apply::rustflags::Host::from_triple("x86_64-unknown-linux-gnu")
    };
    let merged = pgo_apply::rustflags::merged_env(edits, workdir, &env, &host, cargo)
        .map_err(|e| Error::new(workdir, e))?;
    for w in &merged.warnings {
        eprintln!("pgo: WARNING: {w}");
    }
    report_notes(&merged.notes);
    Ok(merged)
}

fn summary_json(
    backend: &str,
    plan: &Plan,
    vars: &[(String, Option<String>)],
    fresh: Option<f64>,
    binary: Option<&Path>,
    after: &[Plan],
) -> serde_json::Value {
    let artifacts: Vec<_> = plan
        .artifacts
        .iter()
        .chain(after.iter().flat_map(|p| p.artifacts.iter()))
        .collect();
    let notes: Vec<_> = plan
        .notes
        .iter()
        .chain(after.iter().flat_map(|p| p.notes.iter()))
        .collect();
    json!({
        "applied": true,
        "backend": backend,
        "fresh_percent": fresh,
        "artifacts": artifacts,
        "env": vars.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
        "binary": binary.map(|b| b.display().to_string()),
        "notes": notes,
    })
}

fn run_build(
    command: &[String],
    env: Option<&pgo_apply::rustflags::MergedEnv>,
    json: bool,
) -> Result<u8, Error> {
    let Some((program, args)) = command.split_first() else {
        return Ok(0);
    };
    eprintln!("pgo: running {}", command.join(" "));
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(env) = env {
        env.apply(&mut cmd);
    }
    if json {
        // Stdout carries our JSON summary alone; the build's output goes to stderr.
        use std::os::fd::AsFd;
        if let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() {
            cmd.stdout(std::process::Stdio::from(fd));
        }
    }
    let status = cmd
        .status()
        .map_err(|e| Error::new(program, format!("cannot run the build command: {e}")))?;
    Ok(match status.code() {
        Some(c) => c.clamp(0, 255) as u8,
        None => {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0).clamp(0, 127) as u8
        }
    })
}

/// Runs an external backend's post-build steps on the built binary.
fn run_post_build(plan: &Plan, binary: &Path) -> Result<(), Error> {
    for step in &plan.post_build {
        let argv: Vec<String> = step
            .command
            .iter()
            .map(|a| a.replace("{binary}", &binary.to_string_lossy()))
            .collect();
        let Some((program, args)) = argv.split_first() else {
            continue;
        };
        eprintln!("pgo: {}: {}", step.description, argv.join(" "));
        let status = Command::new(program)
            .args(args)
            .status()
            .map_err(|e| Error::new(program, format!("cannot run post-build step: {e}")))?;
        if !status.success() {
            return Err(Error::new(
                program,
                format!("post-build step {:?} failed ({status})", step.description),
            ));
        }
        if let Some(out) = &step.output {
            let keep = binary.with_extension("pre-pgo");
            std::fs::rename(binary, &keep).map_err(|e| Error::new(binary, e.to_string()))?;
            std::fs::rename(out, binary).map_err(|e| Error::new(out, e.to_string()))?;
        }
    }
    Ok(())
}

/// Shown by `--help`.
pub const EXAMPLES: &str = "Examples:\n  \
pgo apply --profile prod.pb.gz -- cargo build --release\n  \
pgo apply --profile a.pb.gz --profile b.pb.gz --fail-below 90 --json -- cargo build --release\n  \
pgo apply --profile app.pb.gz --backend clang -- make CC=clang-22\n  \
pgo apply --profile cpu.pprof --backend go -- go build -o app .\n  \
pgo apply --profile perf.data -- cargo build --release   (perf record's file, read as collect's)\n  \
pgo apply --profile p.pb.gz --dry-run      (print the environment, write the files, no build)\n  \
pgo apply --allow-missing -- cargo build --release   (no profile yet: the binary to profile)";

#[cfg(test)]
mod tests {
    use super::go_list_deps_args;

    fn list(command: &str) -> Option<String> {
        let command: Vec<String> = command.split(' ').map(String::from).collect();
        go_list_deps_args(&command).map(|a| a.join(" "))
    }

    #[test]
    fn go_list_takes_the_build_flags_and_packages_without_the_output() {
        assert_eq!(
            list("go build -o bin/app -tags netgo ./cmd/app").as_deref(),
            Some("list -deps -f {{.ImportPath}}\t{{.Dir}} -tags netgo ./cmd/app")
        );
        assert_eq!(
            list("go build -C sub -o=app -trimpath .").as_deref(),
            Some("list -C sub -deps -f {{.ImportPath}}\t{{.Dir}} -trimpath .")
        );
        assert_eq!(
            list("/usr/bin/go install --C=sub cmd/compile").as_deref(),
            Some("list --C=sub -deps -f {{.ImportPath}}\t{{.Dir}} cmd/compile")
        );
        assert_eq!(list("go run . -o x"), None);
        assert_eq!(list("go"), None);
    }
}
