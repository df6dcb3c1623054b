use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use pgo_inspect::{FlameOptions, Top};
use pgo_profile::{Error, Format, MergeInput, Profile, ProfileView, SampleFilter};
use regex::Regex;
use serde_json::json;

/// Profile-guided optimization from sampled profiles: collect, analyze, apply, inspect.
#[derive(Parser)]
#[command(name = "pgo", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the functions that take the most time (flat and cumulative), like `go tool pprof -top`.
    #[command(
        after_help = "Examples:\n  pgo top profiles/go-cpu.pb.gz\n  pgo top --cum -n 10 a.pb.gz b.pb.gz --focus 'main\\.'\n  pgo top cpu.pprof --json | jq '.rows[0]'"
    )]
    Top(TopArgs),
    /// Draw a flamegraph SVG; with --base, a differential one (red grew, blue shrank).
    #[command(
        after_help = "Examples:\n  pgo flamegraph profiles/go-cpu.pb.gz -o cpu.svg\n  pgo flamegraph new.pb.gz --base old.pb.gz -o diff.svg\n  pgo flamegraph stacks.folded --reverse --title 'who calls malloc' --focus malloc"
    )]
    Flamegraph(FlameArgs),
    /// Merge profiles into one gzipped pprof file, optionally weighting each input.
    #[command(
        after_help = "Examples:\n  pgo merge a.pb.gz b.pb.gz -o merged.pb.gz\n  pgo merge prod.pb.gz bench.pb.gz --weight 3 --weight 1 -o merged.pb.gz\n\nWhen periods differ, samples/count values are scaled to the smallest period; values\nin real units (nanoseconds, bytes) are added as they are."
    )]
    Merge(MergeArgs),
    /// Compare two profiles: the functions whose share of the time grew and shrank the most.
    #[command(
        after_help = "Example:\n  pgo diff profiles/go-cpu.pb.gz profiles/go-cpu-b.pb.gz -n 5"
    )]
    Diff(DiffArgs),
    /// Record where a program spends its CPU time and write a pprof profile.
    #[command(
        after_help = "Examples:\n  pgo collect -o app.pb.gz -- ./target/release/app --input big.txt\n  pgo collect --pid 4242 --duration 30s -o server.pb.gz\n  pgo collect --url 'http://127.0.0.1:6060/debug/pprof/profile?seconds=10' -o go.pb.gz\n\nThe program gets Ctrl-C too; the profile is written either way. pgo exits with the\nprogram's exit status (128+N when signal N killed it)."
    )]
    Collect(crate::collect::CollectArgs),
    /// Decide what to inline, devirtualize and lay out, from profiles (and the binary).
    #[command(
        after_help = "Examples:\n  pgo analyze app.pb.gz --binary target/release/app -o decisions.json\n  pgo analyze a.pb.gz b.pb.gz --cdf 95 -o decisions.json\n\nThe decisions file is versioned, deterministic JSON; `pgo explain` prints it as tables."
    )]
    Analyze(crate::analyze::AnalyzeArgs),
    /// Explain a decisions file: what was decided, why, and how much it weighs.
    #[command(
        after_help = "Examples:\n  pgo explain decisions.json\n  pgo explain decisions.json --kind devirtualize --json"
    )]
    Explain(crate::analyze::ExplainArgs),
    /// Build with profile-guided optimization: check the profile, analyze it, have a backend
    /// write what the toolchain consumes, and run the build with it.
    #[command(after_help = crate::apply::EXAMPLES)]
    Apply(crate::apply::ApplyArgs),
    /// Convert perf.data, folded stacks or `perf script` output to pprof (or a profile to
    /// folded stacks).
    #[command(
        after_help = "Examples:\n  pgo convert perf.data -o perf.pb.gz\n  perf script > out.perf && pgo convert out.perf -o perf.pb.gz\n  pgo convert stacks.folded --from folded -o stacks.pb.gz\n  pgo convert cpu.pb.gz --to folded -o cpu.folded"
    )]
    Convert(ConvertArgs),
}

/// Input formats, for `--from`.
#[derive(Clone, Copy, ValueEnum)]
enum InputFormat {
    Pprof,
    Folded,
    PerfScript,
    // `perf record`'s perf.data, symbolized by pgo-collect from the binaries it names.
    PerfData,
}

impl From<InputFormat> for Format {
    fn from(f: InputFormat) -> Format {
        match f {
            InputFormat::Pprof => Format::Pprof,
            InputFormat::Folded => Format::Folded,
            InputFormat::PerfScript => Format::PerfScript,
            InputFormat::PerfData => Format::PerfData,
        }
    }
}

#[derive(Args)]
pub(crate) struct InputArgs {
    /// Input format; detected from the contents when omitted.
    #[arg(long, value_enum)]
    from: Option<InputFormat>,
    /// Keep only samples with a function whose name matches this regex.
    #[arg(long, value_name = "REGEX")]
    focus: Option<Regex>,
    /// Drop samples with a function whose name matches this regex.
    #[arg(long, value_name = "REGEX")]
    ignore: Option<Regex>,
    /// Which sample value to use (e.g. `cpu` or `samples/count`); default: the profile's
    /// default sample type, else the last one, as pprof does.
    #[arg(long, value_name = "TYPE")]
    sample_type: Option<String>,
}

impl InputArgs {
    pub(crate) fn filter(&self) -> SampleFilter {
        SampleFilter {
            focus: self.focus.clone(),
            ignore: self.ignore.clone(),
        }
    }
}

#[derive(Args)]
struct TopArgs {
    /// Profiles to read (pprof, gzipped or not; folded stacks; perf script; perf.data). Several
    /// are merged.
    #[arg(required = true, value_name = "PROFILE")]
    profiles: Vec<PathBuf>,
    /// Sort by cumulative weight instead of flat.
    #[arg(long)]
    cum: bool,
    /// Show this many functions (0 shows all).
    #[arg(short = 'n', long = "nodes", default_value_t = 20, value_name = "N")]
    limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(Args)]
struct FlameArgs {
    /// Profiles to draw; several are merged.
    #[arg(required = true, value_name = "PROFILE")]
    profiles: Vec<PathBuf>,
    /// Output SVG file (`-` for standard output).
    #[arg(short, long, default_value = "flamegraph.svg")]
    output: PathBuf,
    /// Draw a differential flamegraph against this earlier profile.
    #[arg(long, value_name = "PROFILE")]
    base: Option<PathBuf>,
    /// With --base, compare absolute values instead of scaling the base to the new total.
    #[arg(long, requires = "base")]
    absolute: bool,
    /// Title shown at the top of the graph.
    #[arg(long)]
    title: Option<String>,
    /// Reverse the stacks: leaf functions at the root, their callers above.
    #[arg(long)]
    reverse: bool,
    /// Mark the calls a decisions file (from `pgo analyze`) decided: `callee [inline]`,
    /// `callee [devirtualize]`.
    #[arg(long, value_name = "DECISIONS")]
    decisions: Option<PathBuf>,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(Args)]
struct MergeArgs {
    /// Profiles to merge (at least one).
    #[arg(required = true, value_name = "PROFILE")]
    profiles: Vec<PathBuf>,
    /// Output file (gzipped pprof).
    #[arg(short, long)]
    output: PathBuf,
    /// Weight of each input, in the order the inputs are given: one per input.
    #[arg(long = "weight", value_name = "W")]
    weights: Vec<f64>,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(Args)]
struct DiffArgs {
    /// The earlier profile.
    base: PathBuf,
    /// The later profile.
    new: PathBuf,
    /// Show this many functions in each direction.
    #[arg(short = 'n', long = "nodes", default_value_t = 10, value_name = "N")]
    limit: usize,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    input: InputArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Pprof,
    Folded,
}

#[derive(Args)]
struct ConvertArgs {
    /// The file to convert.
    input_file: PathBuf,
    /// Output file.
    #[arg(short, long)]
    output: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "pprof")]
    to: OutputFormat,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    input: InputArgs,
}

/// Runs the command; `Ok` carries the process exit code (`pgo collect` passes on the program's).
pub fn run(cli: Cli) -> Result<u8, Error> {
    match cli.command {
        Command::Top(a) => top(a).map(|()| 0),
        Command::Flamegraph(a) => flamegraph(a).map(|()| 0),
        Command::Merge(a) => merge(a).map(|()| 0),
        Command::Diff(a) => diff(a).map(|()| 0),
        Command::Convert(a) => convert(a).map(|()| 0),
        Command::Collect(a) => crate::collect::collect(a),
        Command::Analyze(a) => crate::analyze::analyze(a).map(|()| 0),
        Command::Explain(a) => crate::analyze::explain(a).map(|()| 0),
        Command::Apply(a) => crate::apply::apply(a),
    }
}

pub(crate) fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Loads `paths` and merges them when there are several (with `weights`, or 1 each).
pub(crate) fn load_merged(
    paths: &[PathBuf],
    input: &InputArgs,
    weights: &[f64],
) -> Result<Profile, Error> {
    let format = input.from.map(Format::from);
    if let [path] = paths {
        let profile = load_one(path, format)?;
        if weights.iter().all(|w| *w == 1.0) {
            return Ok(profile);
        }
        return merge_loaded(vec![(path_str(path), profile, weights[0])]);
    }
    // Of several profiles, one without samples (a short run's: `go build -gcflags=-cpuprofile`
    // writes one per package, many empty) adds nothing, so it is skipped, as `go tool pprof`
    // does; it is still an error when every input is empty.
    let mut loaded = Vec::with_capacity(paths.len());
    let mut empty = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        match load_one(path, format) {
            Ok(profile) => loaded.push((
                path_str(path),
                profile,
                weights.get(i).copied().unwrap_or(1.0),
            )),
            Err(e) if e.is_without_samples() => empty.push(e),
            Err(e) => return Err(e),
        }
    }
    if loaded.is_empty() {
        return Err(empty.swap_remove(0));
    }
    if let Some(first) = empty.first() {
        eprintln!(
            "pgo: warning: skipped {} of {} profiles that have no samples (first: {})",
            empty.len(),
            paths.len(),
            first.file
        );
    }
    merge_loaded(loaded)
}

/// Reads one profile: a perf.data file (detected by its first bytes, without reading the
/// rest) is symbolized by pgo-collect's importer, anything else read by pgo-profile.
fn load_one(path: &Path, format: Option<Format>) -> Result<Profile, Error> {
    let is_perf_data = match format {
        Some(format) => format == Format::PerfData,
        None => starts_like_perf_data(path),
    };
    if !is_perf_data {
        return pgo_profile::load(path, format);
    }
    let imported = pgo_collect::import_perf_data(path).map_err(|e| Error::new(path, e))?;
    for w in &imported.warnings {
        eprintln!("pgo: warning: {w}");
    }
    // As for every other input: one without samples is said so (and skipped in a merge).
    pgo_profile::validate(&imported.profile).map_err(|e| Error::new(path, e))?;
    Ok(imported.profile)
}

/// Whether the file at `path` starts with perf.data's magic (false when it cannot be read:
/// then reading it as a profile says why).
fn starts_like_perf_data(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| pgo_profile::is_perf_data(&magic))
}

/// Merges `(file name, profile, weight)` triples.
fn merge_loaded(loaded: Vec<(String, Profile, f64)>) -> Result<Profile, Error> {
    let inputs: Vec<MergeInput<'_>> = loaded
        .iter()
        .map(|(file, profile, weight)| MergeInput {
            profile,
            file,
            weight: *weight,
        })
        .collect();
    pgo_profile::merge(&inputs)
}

/// [`load_merged`], then the `--focus`/`--ignore` filters.
pub(crate) fn load(
    paths: &[PathBuf],
    input: &InputArgs,
    weights: &[f64],
) -> Result<Profile, Error> {
    let profile = load_merged(paths, input, weights)?;
    let filter = input.filter();
    Ok(if filter.is_empty() {
        profile
    } else {
        filter.apply(&profile)
    })
}

/// Names the inputs in errors about all of them together.
fn describe(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| path_str(p))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn sample_index(
    view: &ProfileView<'_>,
    input: &InputArgs,
    paths: &[PathBuf],
) -> Result<usize, Error> {
    view.sample_index(input.sample_type.as_deref())
        .map_err(|e| Error::new(describe(paths), e))
}

/// Prints to standard output; a closed pipe (`pgo top | head`) is not an error.
pub(crate) fn emit(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::new("standard output", format!("cannot write: {e}")))
        }
        _ => Ok(()),
    }
}

pub(crate) fn emit_json(value: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).expect("plain data serializes");
    emit(&(text + "\n"))
}

fn compute_top(paths: &[PathBuf], input: &InputArgs) -> Result<Top, Error> {
    // Filtering happens in `top` itself, so that percentages stay of the unfiltered total.
    let profile = load_merged(paths, input, &[])?;
    let view = ProfileView::new(&profile);
    let index = sample_index(&view, input, paths)?;
    Ok(pgo_inspect::top(&view, index, &input.filter()))
}

fn top(a: TopArgs) -> Result<(), Error> {
    let mut t = compute_top(&a.profiles, &a.input)?;
    if a.cum {
        t.sort_by_cum();
    }
    let limit = if a.limit == 0 { usize::MAX } else { a.limit };
    if a.json {
        t.rows.truncate(limit);
        emit_json(&t)
    } else {
        emit(&t.render(limit))
    }
}

/// Writes `bytes` to `path` atomically, or to standard output for `-`.
pub(crate) fn write_output(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        return out
            .write_all(bytes)
            .and_then(|()| out.flush())
            .map_err(|e| Error::new("standard output", format!("cannot write: {e}")));
    }
    pgo_profile::write_atomic(path, bytes)
}

fn flamegraph(a: FlameArgs) -> Result<(), Error> {
    let profile = load(&a.profiles, &a.input, &[])?;
    let view = ProfileView::new(&profile);
    let index = sample_index(&view, &a.input, &a.profiles)?;
    let marks = match &a.decisions {
        Some(path) => crate::analyze::decision_marks(&crate::analyze::read_decisions(path)?),
        None => Vec::new(),
    };
    let opts = FlameOptions {
        title: a.title.clone(),
        reverse: a.reverse,
        absolute: a.absolute,
        marks,
    };
    let svg = match &a.base {
        None => pgo_inspect::flamegraph(&view, index, &opts),
        Some(base_path) => {
            let base = load(std::slice::from_ref(base_path), &a.input, &[])?;
            let base_view = ProfileView::new(&base);
            let base_index = sample_index(&base_view, &a.input, std::slice::from_ref(base_path))?;
            let (bt, nt) = (
                &base_view.sample_types()[base_index],
                &view.sample_types()[index],
            );
            if bt != nt {
                return Err(Error::new(
                    base_path,
                    format!(
                        "compares {bt} with {nt} of {}; pick one with --sample-type",
                        describe(&a.profiles)
                    ),
                ));
            }
            pgo_inspect::diff_flamegraph((&base_view, base_index), (&view, index), &opts)
        }
    }
    .map_err(|e| Error::new(describe(&a.profiles), e))?;
    write_output(&a.output, &svg)?;
    if a.json {
        emit_json(&json!({
            "output": path_str(&a.output),
            "sample_type": view.sample_types()[index],
            "differential": a.base.is_some(),
            "bytes": svg.len(),
        }))
    } else if a.output != Path::new("-") {
        emit(&format!("wrote {}\n", a.output.display()))
    } else {
        Ok(())
    }
}

fn merge(a: MergeArgs) -> Result<(), Error> {
    if !a.weights.is_empty() && a.weights.len() != a.profiles.len() {
        return Err(Error::new(
            "",
            format!(
                "give one --weight per input: {} inputs, {} weights",
                a.profiles.len(),
                a.weights.len()
            ),
        ));
    }
    let mut weights = a.weights.clone();
    if weights.is_empty() {
        weights = vec![1.0; a.profiles.len()];
    }
    let merged = load(&a.profiles, &a.input, &weights)?;
    // Filtering keeps the tables; one more pass through the builder drops what no sample uses.
    let merged = if a.input.filter().is_empty() {
        merged
    } else {
        pgo_profile::merge(&[MergeInput {
            profile: &merged,
            file: &path_str(&a.output),
            weight: 1.0,
        }])?
    };
    pgo_profile::write_profile(&a.output, &merged)?;
    let summary = json!({
        "output": path_str(&a.output),
        "inputs": a.profiles.iter().map(|p| path_str(p)).collect::<Vec<_>>(),
        "weights": weights,
        "samples": merged.sample.len(),
        "locations": merged.location.len(),
        "functions": merged.function.len(),
    });
    if a.json {
        emit_json(&summary)
    } else {
        emit(&format!(
            "wrote {}: {} inputs, {} samples, {} functions\n",
            a.output.display(),
            a.profiles.len(),
            merged.sample.len(),
            merged.function.len()
        ))
    }
}

fn diff(a: DiffArgs) -> Result<(), Error> {
    let base = compute_top(std::slice::from_ref(&a.base), &a.input)?;
    let new = compute_top(std::slice::from_ref(&a.new), &a.input)?;
    if base.sample_type != new.sample_type {
        return Err(Error::new(
            &a.new,
            format!(
                "compares {} with {} of {}; pick one with --sample-type",
                new.sample_type,
                base.sample_type,
                a.base.display()
            ),
        ));
    }
    let d = pgo_inspect::diff(&base, &new, a.limit);
    if a.json {
        emit_json(&d)
    } else {
        emit(&d.render(&new.unit))
    }
}

fn convert(a: ConvertArgs) -> Result<(), Error> {
    let profile = load(std::slice::from_ref(&a.input_file), &a.input, &[])?;
    let (bytes, what) = match a.to {
        OutputFormat::Pprof => (pgo_profile::encode_profile(&profile), "pprof"),
        OutputFormat::Folded => {
            let view = ProfileView::new(&profile);
            let index = sample_index(&view, &a.input, std::slice::from_ref(&a.input_file))?;
            (
                pgo_profile::import::folded::write(&view, index).into_bytes(),
                "folded stacks",
            )
        }
    };
    write_output(&a.output, &bytes)?;
    if a.json {
        emit_json(&json!({
            "input": path_str(&a.input_file),
            "output": path_str(&a.output),
            "format": what,
            "samples": profile.sample.len(),
        }))
    } else if a.output != Path::new("-") {
        emit(&format!(
            "wrote {} ({what}, {} samples)\n",
            a.output.display(),
            profile.sample.len()
        ))
    } else {
        Ok(())
    }
}
