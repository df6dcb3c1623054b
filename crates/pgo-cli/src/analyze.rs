//! `pgo analyze` and `pgo explain`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use pgo_decide::{Decisions, Settings};
use pgo_graph::CallGraph;
use pgo_profile::{Error, ProfileView};
use serde_json::json;

use crate::commands::{InputArgs, emit, emit_json, load, sample_index, write_output};

#[derive(Args)]
pub struct AnalyzeArgs {
    /// Profiles to analyze; several are merged.
    #[arg(required = true, value_name = "PROFILE")]
    profiles: Vec<PathBuf>,
    /// The binary the profile came from (matched by build ID): enables size budgets, call
    /// instruction checks and basic-block layout.
    #[arg(long, value_name = "BIN")]
    binary: Option<PathBuf>,
    /// Use --binary even when its build ID does not match the profile's.
    #[arg(long, requires = "binary")]
    force: bool,
    /// Hot edges are the heaviest ones covering this percentage of call weight.
    #[arg(long, default_value_t = 99.0, value_name = "PERCENT")]
    cdf: f64,
    /// Output decisions file.
    #[arg(short, long, default_value = "decisions.json")]
    output: PathBuf,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    input: InputArgs,
}

pub fn analyze(a: AnalyzeArgs) -> Result<(), Error> {
    if !(a.cdf > 0.0 && a.cdf <= 100.0) {
        return Err(Error::new(
            "",
            format!("--cdf {} must be in (0, 100]", a.cdf),
        ));
    }
    let profile = load(&a.profiles, &a.input, &[])?;
    let view = ProfileView::new(&profile);
    let index = sample_index(&view, &a.input, &a.profiles)?;
    let decisions = make_decisions(&profile, index, a.binary.as_deref(), a.force, a.cdf)?;
    write_output(&a.output, decisions.to_json().as_bytes())?;
    let summary = json!({
        "output": a.output.display().to_string(),
        "inline": decisions.inline.len(),
        "devirtualize": decisions.devirtualize.len(),
        "function_order": decisions.layout.function_order.len(),
        "block_layouts": decisions.layout.blocks.len(),
        "limitations": decisions.limitations,
    });
    if a.json {
        emit_json(&summary)
    } else {
        for l in &decisions.limitations {
            eprintln!("pgo: note: {l}");
        }
        emit(&format!(
            "wrote {}: {} inline, {} devirtualize, {} functions ordered, {} block layouts\n",
            a.output.display(),
            decisions.inline.len(),
            decisions.devirtualize.len(),
            decisions.layout.function_order.len(),
            decisions.layout.blocks.len()
        ))
    }
}

/// Decisions from a (merged, filtered) profile, with the binary's facts when `binary` is given.
pub fn make_decisions(
    profile: &pgo_profile::Profile,
    index: usize,
    binary: Option<&std::path::Path>,
    force: bool,
    cdf: f64,
) -> Result<Decisions, Error> {
    let view = ProfileView::new(profile);
    let graph = CallGraph::build(profile, index);
    let binary = match binary {
        Some(path) => {
            let mappings: Vec<(String, String)> = profile
                .mapping
                .iter()
                .map(|m| {
                    (
                        view.str(m.filename).to_string(),
                        view.str(m.build_id).to_string(),
                    )
                })
                .collect();
            Some(
                pgo_decide::elf::ElfFacts::open(path, &mappings, force)
                    .map_err(|e| Error::new(path, e))?,
            )
        }
        None => None,
    };
    let settings = Settings {
        hot_cdf_percent: cdf,
        ..Settings::default()
    };
    Ok(pgo_decide::decide(
        &graph,
        binary.as_ref().map(|b| b as &dyn pgo_decide::BinaryFacts),
        &settings,
    ))
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Inline,
    Devirtualize,
    Layout,
}

#[derive(Args)]
pub struct ExplainArgs {
    /// A decisions file written by `pgo analyze`.
    decisions: PathBuf,
    /// Only this kind of decision.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// Show this many decisions of each kind (0 shows all).
    #[arg(short = 'n', long = "nodes", default_value_t = 20)]
    limit: usize,
    /// Print the selected decisions as JSON.
    #[arg(long)]
    json: bool,
}

pub fn read_decisions(path: &std::path::Path) -> Result<Decisions, Error> {
    let bytes = pgo_profile::read_file(path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::new(path, "not a decisions file (not UTF-8 text)"))?;
    pgo_decide::schema::parse(&text).map_err(|e| Error::new(path, e))
}

pub fn explain(a: ExplainArgs) -> Result<(), Error> {
    let d = read_decisions(&a.decisions)?;
    let limit = if a.limit == 0 { usize::MAX } else { a.limit };
    let wants = |k: Kind| a.kind.is_none_or(|w| w == k);
    if a.json {
        let mut out = serde_json::Map::new();
        if wants(Kind::Inline) {
            out.insert(
                "inline".into(),
                json!(d.inline.iter().take(limit).collect::<Vec<_>>()),
            );
        }
        if wants(Kind::Devirtualize) {
            out.insert(
                "devirtualize".into(),
                json!(d.devirtualize.iter().take(limit).collect::<Vec<_>>()),
            );
        }
        if wants(Kind::Layout) {
            out.insert("layout".into(), json!(d.layout));
        }
        return emit_json(&out);
    }
    let mut text = format!(
        "{} decisions (schema {} v{}) for {} of {}; hot set covers {:.1}% of samples\n",
        a.decisions.display(),
        d.schema,
        d.version,
        d.profile.sample_type,
        d.profile.total_weight,
        d.coverage.hot_set_percent
    );
    for l in &d.limitations {
        text.push_str(&format!("note: {l}\n"));
    }
    if wants(Kind::Inline) {
        text.push_str(&format!(
            "\ninline ({}):\n{:>7}  {:<60}  why\n",
            d.inline.len(),
            "share",
            "call"
        ));
        for i in d.inline.iter().take(limit) {
            text.push_str(&format!(
                "{:>6.2}%  {:<60}  {}\n",
                i.share_percent,
                format!(
                    "{} +{} -> {}",
                    i.caller.name, i.site.line_offset, i.callee.name
                ),
                i.reason
            ));
        }
    }
    if wants(Kind::Devirtualize) {
        text.push_str(&format!("\ndevirtualize ({}):\n", d.devirtualize.len()));
        for v in d.devirtualize.iter().take(limit) {
            text.push_str(&format!(
                "{:>6.2}%  {} +{}: promote [{}]; {}\n",
                v.share_percent,
                v.caller.name,
                v.site.line_offset,
                v.promote
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                v.reason
            ));
            for t in &v.targets {
                text.push_str(&format!(
                    "           {:>6.2}% of the site  {}\n",
                    t.site_percent, t.callee.name
                ));
            }
        }
    }
    if wants(Kind::Layout) {
        text.push_str(&format!(
            "\nlayout: {} hot functions in order, {} cold; {}\n",
            d.layout.function_order.len(),
            d.layout.cold_functions.len(),
            d.layout.reason
        ));
        for (i, f) in d.layout.function_order.iter().take(limit).enumerate() {
            text.push_str(&format!("  {:>4}. {}\n", i + 1, f.name));
        }
        for b in d.layout.blocks.iter().take(limit) {
            text.push_str(&format!(
                "  blocks of {}: {} hot, {} cold; {}\n",
                b.function.name,
                b.hot_blocks,
                b.order.len() - b.hot_blocks,
                b.reason
            ));
        }
    }
    emit(&text)
}

/// The calls a decisions file is about, as flamegraph marks: (caller, callee, label).
pub fn decision_marks(d: &Decisions) -> Vec<(String, String, String)> {
    let mut marks: Vec<(String, String, String)> = d
        .inline
        .iter()
        .map(|i| {
            (
                i.caller.name.clone(),
                i.callee.name.clone(),
                "inline".to_string(),
            )
        })
        .collect();
    for v in &d.devirtualize {
        for t in &v.promote {
            marks.push((
                v.caller.name.clone(),
                t.name.clone(),
                "devirtualize".to_string(),
            ));
        }
    }
    marks
}
