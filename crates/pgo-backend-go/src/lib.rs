//! The Go backend of `pgo apply`: writes the call edges pgo decided on (inline decisions, and
//! each promoted target of a devirtualize decision), together with the call edges Go's compiler
//! would itself read from the samples, as a pprof CPU profile that `go build -pgo=FILE`
//! consumes, and has the build read it through `GOFLAGS=-pgo=FILE`.
//!
//! Go weighs an edge by the samples whose leaf is the callee (its hot call sites are calls to
//! functions that spend time themselves, mostly small ones in loops), while a decided edge
//! carries the time of the callee's whole subtree. Measured, Go's inliner does no better with
//! our decided edges added to its own reading of our samples, and worse with them at subtree
//! weights: so with samples the profile holds the edges Go reads from them, at Go's weights,
//! and the decided edges only where the samples have them. Instructions with the collector off
//! (`GOGC=off GOMAXPROCS=1`, which makes Go counts repeat): gofmt (Go 1.27's) plain 14.60 G,
//! Go's own runtime/pprof profile 14.17 G, this 14.12 G; go-route 11.90, 11.63 and 11.49 G (Go's
//! inliner on the raw samples: 11.49 G). Decided edges alone at subtree weights had lost to
//! Go's own profile on gofmt (its own code 11.78 G against 11.57 G, collector on).
//!
//! Go's compiler builds its PGO call graph from the two leaf-most frames of each sample only
//! (`cmd/internal/pgo`): the leaf is the callee, the frame under it the caller at the call line,
//! and an edge is named by (caller, callee, call line − caller's `Function.start_line`). So
//! every decided edge becomes one sample with a two-location stack, [callee, caller at the call
//! line], whose value is the decision's weight. Go then applies its own hot-callsite CDF (99% by
//! default) over these edges, and devirtualizes the hottest edge of each indirect call site.
//!
//! It is not a way to hand Go the whole input profile (`go build -pgo=input.pb.gz` does that),
//! it decides nothing (pgo-decide does), and it does not run the build or merge `GOFLAGS` into
//! the user's environment (pgo-apply does).

use pgo_backend::{Artifact, Backend, EnvEdit, Language, Plan, Request};
use pgo_decide::{Decisions, FunctionRef};
use pgo_profile::{FunctionInfo, LineInfo, ProfileBuilder};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file the backend writes into its out dir.
pub const PROFILE_FILE: &str = "profile.pprof";

/// Go's default `-d=pgoinlinecdfthreshold`: hot call sites are the heaviest edges covering this
/// percentage of the profile's edge weight.
pub const GO_DEFAULT_CDF_PERCENT: f64 = 99.0;

/// The Go backend (`--backend go`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Go;

/// A call edge as Go's compiler names it (`pgo.NamedCallEdge`): symbol names of both ends and
/// the call's line offset from the caller's start line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Edge {
    pub caller: String,
    pub callee: String,
    pub line_offset: i64,
}

impl Edge {
    /// The edge Go's compiler names for a call from `caller` at `line_offset` to `callee`.
    fn of(caller: &FunctionRef, callee: &FunctionRef, line_offset: i64) -> Edge {
        Edge {
            caller: go_name(caller).to_string(),
            callee: go_name(callee).to_string(),
            line_offset,
        }
    }
}

/// Where a written edge came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Inline,
    Devirtualize,
    /// Decided both ways (an inlined call that is also a promoted indirect target).
    Both,
    /// Not decided: an edge Go would read from the samples (a leaf and its caller).
    Samples,
}

/// A call edge as Go's compiler reads it from a sample: the callee is the sample's leaf
/// function (or an inline frame of it), the caller the frame above it.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledEdge {
    pub caller: FunctionRef,
    pub callee: FunctionRef,
    pub line_offset: i64,
    pub weight: i64,
}

/// The call edges Go's compiler would read from `profile` (`internal/profile.NewGraph` as
/// `cmd/internal/pgo` calls it): of each sample, only the two leaf-most locations outside the
/// kernel, each with its inline frames; an edge joins each frame to the next one inward, named
/// by the outer frame's function, its line minus its start line, and the inner frame's
/// function; the sample's value (of `sample_type`, e.g. "cpu/nanoseconds") goes to every
/// distinct edge of the sample once. Heaviest first.
pub fn sampled_edges(
    profile: &pgo_profile::Profile,
    sample_type: &str,
) -> Result<Vec<SampledEdge>, String> {
    let view = pgo_profile::ProfileView::new(profile);
    let index = view.sample_index(Some(sample_type))?;
    let mut weights: BTreeMap<(u64, i64, u64), i64> = BTreeMap::new();
    let mut frames: Vec<(u64, i64)> = Vec::new();
    let mut seen: Vec<(u64, i64, u64)> = Vec::new();
    for s in &profile.sample {
        let w = s.value.get(index).copied().unwrap_or(0);
        if w <= 0 {
            continue;
        }
        let user: Vec<&pgo_profile::proto::Location> = s
            .location_id
            .iter()
            .filter_map(|id| view.location(*id))
            .filter(|l| l.address < pgo_profile::KERNEL_ADDRESS_START)
            .take(2)
            .collect();
        // Outermost first: the caller's location, then the leaf's; in each, pprof lists the
        // inline frames innermost first.
        frames.clear();
        for loc in user.iter().rev() {
            frames.extend(loc.line.iter().rev().map(|l| (l.function_id, l.line)));
        }
        seen.clear();
        for pair in frames.windows(2) {
            let ((caller, line), callee) = (pair[0], pair[1].0);
            if pair[0] == pair[1] {
                continue;
            }
            let key = (caller, line, callee);
            if !seen.contains(&key) {
                seen.push(key);
                *weights.entry(key).or_default() += w;
            }
        }
    }
    let function_ref = |id: u64| {
        view.function(id).map(|f| FunctionRef {
            name: view.str(f.name).to_string(),
            linkage_name: view.str(f.system_name).to_string(),
            binary: String::new(),
            file: view.str(f.filename).to_string(),
            start_line: f.start_line,
        })
    };
    let mut edges: Vec<SampledEdge> = weights
        .into_iter()
        .filter_map(|((caller, line, callee), weight)| {
            let caller = function_ref(caller)?;
            Some(SampledEdge {
                line_offset: line - caller.start_line,
                caller,
                callee: function_ref(callee)?,
                weight,
            })
        })
        .collect();
    edges.sort_by_key(|e| std::cmp::Reverse(e.weight));
    Ok(edges)
}

/// One edge written to the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenEdge {
    pub edge: Edge,
    pub weight: i64,
    pub source: Source,
}

/// What [`write_go_profile`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub path: PathBuf,
    /// The edges written, in Go's order: heaviest first, then by caller, callee and offset.
    pub edges: Vec<WrittenEdge>,
    /// The sum of the edge weights (Go's total weight for this profile).
    pub total_weight: i64,
    /// Inline decisions and promoted devirtualization targets that were turned into edges.
    pub inline_decisions: usize,
    pub devirtualize_targets: usize,
    /// Edges from the samples that no decision names.
    pub sampled_edges: usize,
    /// Decided edges left out because no sample shows the call at its leaf (with samples only).
    pub unsampled_decided: usize,
    /// Decisions left out, one sentence each (not Go functions, no start line, ...).
    pub skipped: Vec<String>,
    /// Devirtualize decisions that promote more than one target (Go promotes only the hottest).
    pub multi_target_sites: usize,
}

impl Summary {
    /// The edges Go's compiler makes hot call sites at `cdf_percent` (its
    /// `hotNodesFromCDF`): the heaviest ones, in order, up to and including the one whose
    /// cumulative weight passes the percentage.
    pub fn go_hot_edges(&self, cdf_percent: f64) -> &[WrittenEdge] {
        if self.total_weight <= 0 {
            return &[];
        }
        let mut cum = 0i64;
        for (i, e) in self.edges.iter().enumerate() {
            cum = cum.saturating_add(e.weight);
            if cum as f64 / self.total_weight as f64 * 100.0 > cdf_percent {
                return &self.edges[..=i];
            }
        }
        &self.edges
    }
}

/// Whether `f` is a Go function: Go source, Go assembly, or (without a file, or in the
/// compiler's `<autogenerated>` file: method wrappers such as `main.(*T).Serve`, through which
/// interface calls reach `main.T.Serve`) a Go symbol name such as `main.hashBlock` or
/// `example.com/pkg.(*T).Method`.
pub fn is_go_function(f: &FunctionRef) -> bool {
    let name = go_name(f);
    let go_shaped = || {
        let base = name.rsplit('/').next().unwrap_or(name);
        !name.is_empty()
            && base.contains('.')
            && !base.starts_with('.')
            && !name.contains("::")
            && !name.starts_with("_Z")
            && !name.chars().any(char::is_whitespace)
    };
    if f.file.ends_with(".go") {
        return !name.is_empty();
    }
    (f.file.is_empty() || f.file.ends_with(".s") || is_autogenerated(f)) && go_shaped()
}

/// Whether `f` is one of the compiler's wrappers (file `<autogenerated>`, as DWARF names it
/// `./<autogenerated>`): its start line is 0 and its call on line 1, which is how Go's
/// compiler places the call too (`go build -pgo` on a profile with such edges makes the
/// wrapped methods hot).
fn is_autogenerated(f: &FunctionRef) -> bool {
    f.file.ends_with("<autogenerated>")
}

/// The symbol name Go's compiler matches (`ir.LinkFuncName`), which is what Go's runtime/pprof
/// writes as the function name.
fn go_name(f: &FunctionRef) -> &str {
    if f.name.is_empty() {
        &f.linkage_name
    } else {
        &f.name
    }
}

fn describe(caller: &FunctionRef, line_offset: i64, callee: &FunctionRef) -> String {
    format!(
        "{} +{} -> {}",
        go_name(caller),
        line_offset,
        go_name(callee)
    )
}

/// Why an edge cannot be written for Go, if it cannot.
fn unusable(caller: &FunctionRef, callee: &FunctionRef) -> Option<&'static str> {
    if !is_go_function(caller) || !is_go_function(callee) {
        Some("not a call between Go functions")
    } else if caller.start_line <= 0 && !is_autogenerated(caller) {
        Some("the caller has no start line, so Go cannot place the call site")
    } else {
        None
    }
}

/// Writes the decided call edges of `decisions` and the `sampled` edges (in the decisions'
/// weight units, see [`sampled_edges`]) to `path` as a gzipped pprof CPU profile for
/// `go build -pgo=PATH`: with samples, every sampled edge at its weight, and decided edges only
/// where the samples have them; without, the decided edges at their own weights. Fails when no
/// decision is a call between Go functions.
pub fn write_go_profile(
    decisions: &Decisions,
    sampled: &[SampledEdge],
    path: &Path,
) -> Result<Summary, String> {
    // (caller, callee, line offset, column, weight, source) of every decided edge.
    let mut decided: Vec<(&FunctionRef, &FunctionRef, i64, i64, i64, Source)> = Vec::new();
    let mut skipped = Vec::new();
    for d in &decisions.inline {
        decided.push((
            &d.caller,
            &d.callee,
            d.site.line_offset,
            d.site.column,
            d.weight,
            Source::Inline,
        ));
    }
    let mut multi_target_sites = 0;
    for d in &decisions.devirtualize {
        if d.promote.len() > 1 {
            multi_target_sites += 1;
        }
        for p in &d.promote {
            match d.targets.iter().find(|t| &t.callee == p) {
                Some(t) => decided.push((
                    &d.caller,
                    p,
                    d.site.line_offset,
                    d.site.column,
                    t.weight,
                    Source::Devirtualize,
                )),
                None => skipped.push(format!(
                    "{}: the promoted target is not among the site's listed targets, so its \
                     weight is unknown",
                    describe(&d.caller, d.site.line_offset, p)
                )),
            }
        }
    }

    // An edge observed at one site (caller, callee, line, column) has one weight whichever
    // decisions name it; distinct columns of one line are distinct calls, which Go (by line)
    // sees as one edge of their summed weight.
    // Its decisions are counted on it, so that the summary's counts (and the edge's source)
    // follow from the edges written, whichever are merged or left out below.
    struct Site<'a> {
        caller: &'a FunctionRef,
        callee: &'a FunctionRef,
        weight: i64,
        inline: usize,
        devirtualize: usize,
    }
    impl Site<'_> {
        fn source(&self) -> Source {
            match (self.inline > 0, self.devirtualize > 0) {
                (true, true) => Source::Both,
                (true, false) => Source::Inline,
                (false, true) => Source::Devirtualize,
                (false, false) => Source::Samples,
            }
        }
    }
    let mut sites: BTreeMap<(Edge, i64), Site<'_>> = BTreeMap::new();
    for (caller, callee, line_offset, column, weight, source) in decided {
        if let Some(why) = unusable(caller, callee) {
            skipped.push(format!("{}: {why}", describe(caller, line_offset, callee)));
            continue;
        }
        if weight <= 0 {
            skipped.push(format!(
                "{}: weight {weight}, nothing to tell Go",
                describe(caller, line_offset, callee)
            ));
            continue;
        }
        let (inline, devirtualize) = match source {
            Source::Devirtualize => (0, 1),
            _ => (1, 0),
        };
        sites
            .entry((Edge::of(caller, callee, line_offset), column))
            .and_modify(|s| {
                s.weight = s.weight.max(weight);
                s.inline += inline;
                s.devirtualize += devirtualize;
            })
            .or_insert(Site {
                caller,
                callee,
                weight,
                inline,
                devirtualize,
            });
    }
    if sites.is_empty() {
        let decided = decisions.inline.len()
            + decisions
                .devirtualize
                .iter()
                .map(|d| d.promote.len())
                .sum::<usize>();
        let why = if decided == 0 {
            "the decisions have no inline or devirtualize decision, so there is no call edge to \
             tell Go"
                .to_string()
        } else {
            format!(
                "none of the {decided} decided call edges is a call between Go functions with a \
                 start line (first: {}); was the profile taken from a Go program (Go 1.20+)?",
                skipped.first().map(String::as_str).unwrap_or("-")
            )
        };
        return Err(format!("{}: not written: {why}", path.display()));
    }
    // With samples, every edge at Go's own weight from them (the callee's own samples), and
    // a decided edge no sample shows at a leaf left out: Go weighs a call by nothing else, and
    // given a weight of their own such edges did not help (go-route 11.295 G at the lightest
    // hot weight, 11.294 G left out, collector off).
    let mut usable: BTreeMap<Edge, &SampledEdge> = BTreeMap::new();
    for e in sampled {
        if e.weight <= 0 || unusable(&e.caller, &e.callee).is_some() {
            continue;
        }
        usable.insert(Edge::of(&e.caller, &e.callee, e.line_offset), e);
    }
    let mut unsampled = 0;
    if !usable.is_empty() {
        let mut merged: BTreeMap<(Edge, i64), Site<'_>> = BTreeMap::new();
        for ((edge, _column), site) in sites {
            let Some(weight) = usable.get(&edge).map(|e| e.weight) else {
                unsampled += 1;
                continue;
            };
            merged
                .entry((edge, 0))
                .and_modify(|s| {
                    s.inline += site.inline;
                    s.devirtualize += site.devirtualize;
                })
                .or_insert(Site { weight, ..site });
        }
        for (edge, e) in usable {
            let key = (edge, 0);
            if merged.contains_key(&key) {
                continue;
            }
            merged.insert(
                key,
                Site {
                    caller: &e.caller,
                    callee: &e.callee,
                    weight: e.weight,
                    inline: 0,
                    devirtualize: 0,
                },
            );
        }
        sites = merged;
    }

    let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
    b.set_period("cpu", "nanoseconds", 1);
    b.set_default_sample_type("cpu");
    b.add_comment(&format!(
        "pgo: the decided call edges for go build -pgo, one sample per edge [callee, caller at \
         the call line]; both values are the decision weight in {}",
        decisions.profile.sample_type
    ));
    let mut by_edge: BTreeMap<Edge, (i64, Source)> = BTreeMap::new();
    for ((edge, _column), site) in &sites {
        let function = |b: &mut ProfileBuilder, f: &FunctionRef| {
            let name = go_name(f);
            b.function(FunctionInfo {
                name,
                system_name: name,
                filename: &f.file,
                start_line: f.start_line.max(0),
            })
        };
        let caller = function(&mut b, site.caller);
        let callee = function(&mut b, site.callee);
        let call_line = site.caller.start_line.saturating_add(edge.line_offset);
        // Any line of the callee will do; it must not make the callee's frame the caller's
        // own (a recursive call on the function's first line), which Go would not count.
        let mut callee_line = site.callee.start_line.max(0);
        if caller == callee && callee_line == call_line {
            callee_line = callee_line.saturating_add(1);
        }
        let leaf = b.location(
            None,
            0,
            &[LineInfo {
                function: callee,
                line: callee_line,
                column: 0,
            }],
        );
        let site_loc = b.location(
            None,
            0,
            &[LineInfo {
                function: caller,
                line: call_line,
                column: 0,
            }],
        );
        b.add_sample(&[leaf, site_loc], &[site.weight, site.weight], &[])
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let source = site.source();
        let entry = by_edge.entry(edge.clone()).or_insert((0, source));
        entry.0 = entry.0.saturating_add(site.weight);
        if entry.1 != source {
            entry.1 = Source::Both;
        }
    }
    let profile = b.build();
    pgo_profile::write_profile(path, &profile).map_err(|e| e.to_string())?;

    let mut edges: Vec<WrittenEdge> = by_edge
        .into_iter()
        .map(|(edge, (weight, source))| WrittenEdge {
            edge,
            weight,
            source,
        })
        .collect();
    edges.sort_by(|a, b| b.weight.cmp(&a.weight).then_with(|| a.edge.cmp(&b.edge)));
    let total_weight = edges.iter().fold(0i64, |t, e| t.saturating_add(e.weight));
    let inline_decisions = sites.values().map(|s| s.inline).sum();
    let devirtualize_targets = sites.values().map(|s| s.devirtualize).sum();
    let sampled_edges = sites
        .values()
        .filter(|s| s.source() == Source::Samples)
        .count();
    Ok(Summary {
        path: path.to_path_buf(),
        edges,
        total_weight,
        inline_decisions,
        devirtualize_targets,
        sampled_edges,
        unsampled_decided: unsampled,
        skipped,
        multi_target_sites,
    })
}

/// `-pgo=PATH` as one word of `GOFLAGS`, which cmd/go splits at spaces and where a word may be
/// wrapped whole in '' or "" (no escapes).
fn goflags_word(path: &Path) -> Result<String, String> {
    let word = format!("-pgo={}", path.display());
    if !word.chars().any(|c| matches!(c, ' ' | '\t' | '\n' | '\r')) {
        return Ok(word);
    }
    for quote in ['\'', '"'] {
        if !word.contains(quote) {
            return Ok(format!("{quote}{word}{quote}"));
        }
    }
    Err(format!(
        "{}: this path has both spaces and both quote characters, which GOFLAGS cannot carry; \
         use --out-dir with a plainer path",
        path.display()
    ))
}

impl Backend for Go {
    fn name(&self) -> &str {
        "go"
    }

    fn plan(&self, request: &Request<'_>) -> Result<Plan, String> {
        if request.target.language != Language::Go {
            return Err(format!(
                "the go backend builds Go programs (go build -pgo); this build is {:?} (use \
                 --backend rustc or clang)",
                request.target.language
            ));
        }
        let path = std::path::absolute(request.out_dir.join(PROFILE_FILE))
            .map_err(|e| format!("{}: {e}", request.out_dir.display()))?;
        let mut notes = Vec::new();
        let sampled = sampled_edges(request.profile, &request.decisions.profile.sample_type)
            .unwrap_or_else(|e| {
                notes.push(format!(
                    "the samples' own call edges are left out: the profile {e}"
                ));
                Vec::new()
            });
        let summary = write_go_profile(request.decisions, &sampled, &path)?;
        let flag = goflags_word(&path)?;
        let hot = summary.go_hot_edges(GO_DEFAULT_CDF_PERCENT).len();

        notes.insert(
            0,
            format!(
                "the profile holds {} call edges: {} decided ones and {} more that Go reads from \
             the samples (a leaf and its caller), at Go's own weights; Go applies its \
             hot-callsite CDF ({GO_DEFAULT_CDF_PERCENT}% by default) on top: its hot call sites \
             will be the heaviest {hot}; -gcflags=all=-d=pgoinlinecdfthreshold=100 makes all of \
             them hot",
                summary.edges.len(),
                summary.inline_decisions + summary.devirtualize_targets,
                summary.sampled_edges
            ),
        );
        if summary.unsampled_decided > 0 {
            notes.push(format!(
                "{} decided call edges are left out: no sample shows them at its leaf, which is \
                 all Go weighs a call by",
                summary.unsampled_decided
            ));
        }
        if summary.devirtualize_targets > 0 {
            let several = match summary.multi_target_sites {
                0 => String::new(),
                n => format!(" ({n} decided sites promote several targets: Go takes the first)"),
            };
            notes.push(format!(
                "Go devirtualizes an indirect call site to its hottest edge only{several}"
            ));
        }
        if !summary.skipped.is_empty() {
            notes.push(format!(
                "{} decided call edges are not in the Go profile (first: {})",
                summary.skipped.len(),
                summary.skipped[0]
            ));
        }
        if request
            .target
            .build_command
            .iter()
            .any(|a| a == "-pgo" || a.starts_with("-pgo=") || a.starts_with("--pgo"))
        {
            notes.push(
                "the build command has its own -pgo flag, which takes precedence over GOFLAGS: \
                 remove it to build with pgo's profile"
                    .to_string(),
            );
        }
        if request.target.workdir.join("default.pgo").is_file() {
            notes.push(format!(
                "{} is not used: GOFLAGS' -pgo takes its place for this build",
                request.target.workdir.join("default.pgo").display()
            ));
        }
        Ok(Plan {
            artifacts: vec![Artifact {
                path: summary.path.clone(),
                kind: "Go PGO profile (pprof, for go build -pgo)".to_string(),
                summary: format!(
                    "{} call edges ({} inline decisions, {} devirtualization targets, {} more \
                     from the samples), {} hot at Go's default {GO_DEFAULT_CDF_PERCENT}% CDF",
                    summary.edges.len(),
                    summary.inline_decisions,
                    summary.devirtualize_targets,
                    summary.sampled_edges,
                    hot
                ),
            }],
            env: vec![EnvEdit::AppendFlags {
                name: "GOFLAGS".to_string(),
                flags: vec![flag],
            }],
            post_build: Vec::new(),
            notes,
        })
    }
}
