//! Does `pgo apply` speed up real programs that we did not write, built by their own build
//! systems, and how much of instrumentation PGO's gain does it get there?
//!
//! The programs are published releases, downloaded once into `WORK/downloads` (sha256-checked)
//! and extracted afresh into `WORK/src` on every run:
//!
//! - jaq 2.3.0 (a jq clone; Rust, from crates.io), on a 200,000-record JSON file;
//! - ripgrep 14.1.1 (Rust, from crates.io), `-j1` searches over a 3,000-file source corpus;
//! - bzip2 1.0.8 (C, Debian's source; `make CC=clang-22 bzip2`, whose Makefile assigns its own
//!   `CFLAGS`: pgo reaches its compiles through `CCC_OVERRIDE_OPTIONS`), compressing and
//!   decompressing;
//! - pulldown-cmark 0.13.6 (a CommonMark parser; Rust, from crates.io), its binary turning a
//!   20 MB Markdown document into HTML, tables on (`-T`);
//! - rhai 1.27.0 (an embedded scripting language; Rust, from crates.io, release profile
//!   `lto = "fat"`, `codegen-units = 1`), its `rhai-run` binary (`--bin rhai-run --features
//!   bin-features`) running scripts: training runs recursion, a sieve, string keys and a sort;
//!   the measured scripts float matrices, a Collatz search, closures and string building;
//! - jrsonnet 0.5.0-pre98 (a Jsonnet interpreter; Rust, from crates.io, a thin binary over
//!   its evaluator crates from the registry; built `--locked`): training evaluates recursion,
//!   comprehensions and `std` list and string functions over 50,000 objects, the measured
//!   program object inheritance (`+:`), manifesting JSON and string replacement;
//! - minijinja-cli 3.0.5 (a Jinja2 template renderer over the minijinja bytecode VM; Rust, from
//!   crates.io, built `--locked`), rendering 20,000 records: training renders an HTML table
//!   through a macro with `upper`, `format` and `join` and sums in a namespace, the measured
//!   template sorts, concatenates, tests membership and uses `title`, `replace`, `unique`,
//!   `map` and `selectattr`.
//!
//! The inputs are generated deterministically (`WORK/inputs`, written once); each program has a
//! `train.sh` and a `measure.sh` (`WORK/<program>/`, taking the binary as `$1`), whose filters,
//! patterns or inputs differ (the two Markdown documents mix the same kinds of blocks and spans
//! in other proportions: training has more lists and code blocks, the measured one more
//! emphasis, links and tables). Every variant is built from its own fresh copy of the sources
//! into its own directory (`WORK/<program>/<variant>/`, with `build.log`), with the caller's
//! build variables removed:
//!
//! - `plain`: the release build as the project ships it (`cargo build --release`, `make`);
//! - `control`: the same build through `pgo apply --allow-missing` with no profile: pgo's flags
//!   only, what a project deploys (and profiles) before it has a profile;
//! - `instr`: instrumentation PGO the cargo-pgo way (`-Cprofile-generate`, `train.sh`,
//!   `llvm-profdata-22 merge`, `-Cprofile-use`; for bzip2 clang's `-fprofile-instr-*` in `CC`);
//! - `pgo`: `pgo collect` of `train.sh` on the control build (the steady state: the profiled
//!   binary is a pgo-built one), then the build through `pgo apply` with that profile.
//!
//! Then every variant's `measure.sh` runs once untimed, and its output must be the same for
//! all variants (PGO must not change what a program prints; a difference is reported and the
//! exit code is 1), and `--reps` rounds are timed (wall time of the whole script), each round
//! running every variant once, forward and backward in turn. The report has per program the
//! medians, the speedup over `plain` and over `control`, the share of `instr`'s gain, and the
//! geometric means over the programs; the JSON keeps every run's time and each build's time.
//!
//! Last, unless `--no-counts` is given (or valgrind is not on PATH), counts that do not move
//! between runs as times on a noisy machine do: each variant's `measure.sh` runs once more as
//! `valgrind --tool=cachegrind --cache-sim=yes --branch-sim=yes --trace-children=yes sh
//! measure.sh BIN`, and the instructions executed (`I refs`), branch mispredicts (of
//! cachegrind's simple predictor model) and I1 misses (of its simulated first-level instruction
//! cache) of every process valgrind reports are summed: the program's, and the shell's and
//! `cksum`'s, which are the same for every variant (for pulldown-cmark 15 M of 1.8 G
//! instructions), so the ratios slightly understate the program's own change. The I1 misses are
//! context, not a yardstick: they depend on where the linker happened to put the hot code as
//! much as on how much of it there is. jrsonnet built by hand, same sources and input: plain
//! 31.7 M I1 misses, control (pgo's flags, no profile) 42.1 M, instr 22.8 M, pgo 42.5 M, while
//! by time control was as fast as plain and pgo faster (0.684 s against 0.720 s, medians of 11
//! interleaved runs); this benchmark's own builds, on its input, gave plain 39.6 M and control
//! 40.6 M. Read a change in I1 misses as a hint to look at code size and placement, and confirm
//! it by time. The report has the counts per program (plain/variant, and pgo's share of instr's
//! instruction reduction) and their geometric means over the programs, the JSON too;
//! `WORK/<program>/<variant>/cachegrind/` keeps valgrind's log
//! and an output file per process (for `cg_annotate`). A run under cachegrind without the cache
//! simulation took about 15 times as long as without valgrind for pulldown-cmark (11–17 s a
//! variant), and 20–40 times for the fixtures of `speedup-bench`; the cache simulation roughly
//! doubles that (16 to 34 s on one fixture), which `speedup-bench`, whose fixtures hardly miss
//! the I1 cache, does not pay.
//!
//! What it is for: checking that pgo's gains on our own fixtures (`speedup-bench`) hold on code
//! we did not write, built the way its authors build it, against the established anchor in the
//! same run. What it is not for: comparing the programs with other tools or with each other,
//! small differences (the machines are noisy: see BENCHMARKS.md), or a test: it needs the
//! network for the first download and crates.io for the Rust builds, and takes long: every run
//! rebuilds everything. On a busy 2-core machine the builds took about 16 minutes for ripgrep,
//! 13 for jaq, 1 for bzip2 and 3 for pulldown-cmark, and one round of `measure.sh` runs (all
//! variants of all four) about 2.5 minutes (bzip2's 25 s a run most of it; pulldown-cmark's
//! about 1 s), so the default 7 rounds take about 50 minutes in all.
//!
//! One change to what the projects ship, needed to build them here: the Rust crates get an
//! empty `[workspace]` table appended to their `Cargo.toml` (a published crate has none, and a
//! work directory inside this repository would make Cargo take it for a member of pgo's
//! workspace).
//!
//! Needs curl, sha256sum, tar, make, clang-22, llvm-profdata-22 and ld.lld-22
//! (`cargo xtask bench real` installs the Debian packages when missing).
//!
//! ```text
//! cargo build --release -p pgo-cli -p pgo-benches
//! target/release/real-bench target/release/pgo --reps 7 --json real.json --markdown real.md
//! target/release/real-bench target/release/pgo --reps 1 --program bzip2
//! target/release/real-bench target/release/pgo --reps 5 --program pulldown-cmark
//! ```
//!
//! Usage: real-bench PGO [--reps N] [--program NAME]... [--no-counts] [--json F] [--markdown F]
//! [--work DIR] (7 rounds; every program; counts taken; work directory `target/bench/real` of
//! this workspace by default).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use pgo_benches::{
    CACHEGRIND_WITH_CACHES, Counted, Counts, CountsOf, Progress, Rng, arg, cachegrind,
    counts_fields, counts_off, counts_summary, counts_table, exists, fastest, fresh_dir, geomean,
    load_average, median, pgo_share, pgo_share_paragraph, ratio, run_timed, share, spread,
    try_time, try_write_atomic, write_atomic,
};
use serde_json::json;

const USAGE: &str = "usage: real-bench PGO [--reps N] [--program NAME]... [--no-counts] \
                     [--json F] [--markdown F] [--work DIR]\n  programs: jaq, ripgrep, bzip2, \
                     pulldown-cmark, rhai, jrsonnet, minijinja-cli (default: all)";

#[derive(Clone, Copy, PartialEq)]
enum Lang {
    Rust,
    C,
}

/// A program: where its published source is, and how it is built and run.
struct Spec {
    name: &'static str,
    version: &'static str,
    lang: Lang,
    url: &'static str,
    sha256: &'static str,
    /// The directory the archive extracts to.
    dir: &'static str,
    binary: &'static str,
    /// Arguments after `cargo build --release` (which binary, which features).
    cargo_args: &'static [&'static str],
    /// What `measure.sh` does, for the report.
    measure: &'static str,
}

const PROGRAMS: [Spec; 7] = [
    Spec {
        name: "jaq",
        version: "2.3.0",
        lang: Lang::Rust,
        url: "https://static.crates.io/crates/jaq/jaq-2.3.0.crate",
        sha256: "39a7f4f0fd783acbb5c9db103f7f68484b933cfb8fe0aefc65f8f395ea6cbeb3",
        dir: "jaq-2.3.0",
        binary: "jaq",
        cargo_args: &[],
        measure: "four filters over data.json (200,000 records), each a jaq process",
    },
    Spec {
        name: "ripgrep",
        version: "14.1.1",
        lang: Lang::Rust,
        url: "https://static.crates.io/crates/ripgrep/ripgrep-14.1.1.crate",
        sha256: "f77b8032dc584527975f34aa5a897d0ef5a785573fda778771a614ff9da501d9",
        dir: "ripgrep-14.1.1",
        binary: "rg",
        cargo_args: &[],
        measure: "five `rg -j1 -c` searches over corpus/ (3,000 files)",
    },
    Spec {
        name: "bzip2",
        version: "1.0.8",
        lang: Lang::C,
        url: "http://deb.debian.org/debian/pool/main/b/bzip2/bzip2_1.0.8.orig.tar.gz",
        sha256: "ab5a03176ee106d3f0fa90e381da478ddae405918153cca248e682cd0c4a2269",
        dir: "bzip2-1.0.8",
        binary: "bzip2",
        cargo_args: &[],
        measure: "compress corpus.txt, decompress it (cksum of the output)",
    },
    Spec {
        name: "pulldown-cmark",
        version: "0.13.6",
        lang: Lang::Rust,
        url: "https://static.crates.io/crates/pulldown-cmark/pulldown-cmark-0.13.6.crate",
        sha256: "3db2be46835f013dd3f4fa7f5f7402c537787b54ebb6fe2b94bbdd7e2669bb7b",
        dir: "pulldown-cmark-0.13.6",
        binary: "pulldown-cmark",
        cargo_args: &[],
        measure: "measure.md (20 MB of Markdown) to HTML with tables on (cksum of the output)",
    },
    Spec {
        name: "rhai",
        version: "1.27.0",
        lang: Lang::Rust,
        url: "https://static.crates.io/crates/rhai/rhai-1.27.0.crate",
        sha256: "c3925b784c0bee6542637e425ed7511a63257bf11b7ecf51ffd845e2d24d9163",
        dir: "rhai-1.27.0",
        binary: "rhai-run",
        cargo_args: &["--bin", "rhai-run", "--features", "bin-features"],
        measure: "two rhai scripts (float matrices; Collatz, closures, maps, strings), cksum of \
                  their output",
    },
    Spec {
        name: "jrsonnet",
        version: "0.5.0-pre98",
        lang: Lang::Rust,
        url: "https://static.crates.io/crates/jrsonnet/jrsonnet-0.5.0-pre98.crate",
        sha256: "8d1929431f61ca1c80b16fb8ad9685ac175876ce4c1f6ae748d463fa8b111e27",
        dir: "jrsonnet-0.5.0-pre98",
        binary: "jrsonnet",
        // The crate's own lock file: a newer evaluator crate would be another program.
        cargo_args: &["--locked"],
        measure: "measure.jsonnet (10,000 objects built by inheritance, manifested as JSON), \
                  cksum of the output",
    },
    Spec {
        name: "minijinja-cli",
        version: "3.0.5",
        lang: Lang::Rust,
        url: "https://static.crates.io/crates/minijinja-cli/minijinja-cli-3.0.5.crate",
        sha256: "3af4e401bc0ffc580fe3c0174a486f9fa151d8b68c23edeb97c24c6bff4fa2d8",
        dir: "minijinja-cli-3.0.5",
        binary: "minijinja-cli",
        // The crate's own lock file, as for jrsonnet: the engine is a registry crate.
        cargo_args: &["--locked"],
        measure: "measure.j2 over records.json (20,000 records, ten passes), cksum of the output",
    },
];

/// Jsonnet evaluated in training (three times): recursion, comprehensions, `std` folds,
/// filters, formatting, sorting and sets.
const JSONNET_TRAIN: (&str, &str) = (
    "train.jsonnet",
    "local fib(n) = if n < 2 then n else fib(n - 1) + fib(n - 2);\n\
     local objs = [{ name: 'item' + i, value: i * 3, tags: ['a', 'b', std.toString(i % 7)] } \
     for i in std.range(1, 50000)];\n\
     {\n\
       fib: fib(26),\n\
       sum: std.foldl(function(acc, o) acc + o.value, objs, 0),\n\
       filtered: std.length(std.filter(function(o) o.value % 2 == 0, objs)),\n\
       strs: std.length(std.join(',', [std.format('%s=%d', [o.name, o.value]) for o in objs])),\n\
       sorted: std.sort(objs, function(o) -o.value)[0:5],\n\
       sets: std.length(std.setUnion(std.set([o.value % 1000 for o in objs]), \
     std.set(std.range(500, 1500)))),\n\
     }\n",
);

/// Jsonnet measured: what training ran little (inheritance, object fields by `+:`, manifesting,
/// string replacement and splitting).
const JSONNET_MEASURE: (&str, &str) = (
    "measure.jsonnet",
    "local base = { kind: 'Deployment', meta: { labels: { app: 'x' } }, \
     spec: { replicas: 1, ports: [80] } };\n\
     local mk(i) = base + {\n\
       meta+: { name: 'svc-%d' % i, labels+: { tier: if i % 3 == 0 then 'front' else 'back' } },\n\
       spec+: { replicas: i % 5 + 1, ports+: [8000 + i % 100], \
     env: { ['VAR_%d' % j]: std.toString(i * j) for j in std.range(1, 12) } },\n\
     };\n\
     local all = [mk(i) for i in std.range(1, 10000)];\n\
     {\n\
       manifests: std.length(std.manifestJsonEx(all, '  ')),\n\
       byTier: std.mapWithKey(function(k, v) std.length(v), \
     { front: [m for m in all if m.meta.labels.tier == 'front'], \
     back: [m for m in all if m.meta.labels.tier == 'back'] }),\n\
       names: std.length(std.strReplace(std.join(';', [m.meta.name for m in all]), 'svc', 'service')),\n\
       split: std.length(std.split(std.join(',', [std.toString(m.spec.replicas) for m in all]), ',')),\n\
       fibs: local fib(n) = if n < 2 then n else fib(n - 1) + fib(n - 2); fib(18),\n\
     }\n",
);

/// The Jinja template rendered in training (three times): an HTML table of the records
/// through a macro, with `upper`, `format` and `join`, and a sum kept in a namespace.
const MINIJINJA_TRAIN: (&str, &str) = (
    "train.j2",
    "{% macro row(it) -%}\n\
     <tr><td>{{ it.id }}</td><td>{{ it.name|upper }}</td><td>{{ \"%.2f\"|format(it.price) }}\
     </td><td>{{ it.tags|join(\",\") }}</td></tr>\n\
     {%- endmacro %}\n\
     <h1>{{ title }}</h1>\n\
     {% for round in range(12) %}\n\
     {% for it in items %}{% if it.qty > 3 %}{{ row(it) }}{% else %}<tr><td>{{ it.id }}</td>\
     <td>none</td></tr>{% endif %}\n\
     {% endfor %}\n\
     {% endfor %}\n\
     {% set total = namespace(v=0) %}{% for it in items %}{% set total.v = total.v + it.qty %}\
     {% endfor %}total {{ total.v }}\n",
);

/// The Jinja template measured: what training ran little (sorting, string concatenation,
/// membership tests, `loop.index`, `title`, `replace`, `unique`, `map`, `selectattr`).
const MINIJINJA_MEASURE: (&str, &str) = (
    "measure.j2",
    "{% for round in range(10) %}\n\
     {% for it in items|sort(attribute=\"price\") %}\n\
     {%- set n = it.owner.name ~ \":\" ~ (it.owner.age * 2 + round) -%}\n\
     {%- if \"red\" in it.tags and it.qty is even -%}\n\
     {{ loop.index }} {{ n|title }} {{ (it.price * it.qty)|round(1) }} \
     {{ it.tags|unique|list|length }}\n\
     {%- elif it.price > 50 -%}\n\
     {{ it.name|replace(\"item\", \"I-\") }} {{ it.tags|first }} {{ it.tags|last|capitalize }}\n\
     {%- else -%}\n\
     {{ it.id % 7 }}{{ \"-\" * (it.qty % 5) }}\n\
     {%- endif %}\n\
     {% endfor %}\n\
     {% endfor %}\n\
     {{ items|map(attribute=\"qty\")|sum }} {{ items|selectattr(\"qty\", \"gt\", 10)|list|length }}\n",
);

/// The records both templates render: `{"title": …, "items": [{"id", "name", "price", "tags",
/// "qty", "owner": {"name", "age"}}, …]}`, 20,000 of them, deterministic (minijinja-cli takes
/// a map as its context, so jaq's `data.json`, an array, does not do).
fn minijinja_records() -> String {
    const TAGS: [&str; 5] = ["red", "green", "blue", "big", "small"];
    let mut rng = Rng(0x5EED_0F5E_C011_AB00);
    let mut s = String::with_capacity(3 << 20);
    s.push_str("{\"title\":\"Report\",\"items\":[\n");
    for i in 0..20_000u64 {
        if i > 0 {
            s.push_str(",\n");
        }
        let cents = rng.below(10_000);
        let _ = write!(
            s,
            r#"{{"id":{i},"name":"item{i}","price":{}.{:02},"tags":["{}","{}","{}"],"qty":{},"owner":{{"name":"user{}","age":{}}}}}"#,
            cents / 100,
            cents % 100,
            TAGS[rng.below(5) as usize],
            TAGS[rng.below(5) as usize],
            TAGS[rng.below(5) as usize],
            rng.below(21),
            i % 97,
            20 + i % 50
        );
    }
    s.push_str("\n]}\n");
    s
}

/// rhai scripts run in training: recursion, array indexing in loops, string-keyed maps, sort.
const RHAI_TRAIN: [(&str, &str); 3] = [
    (
        "train-fib.rhai",
        "fn fib(n) { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }\nprint(fib(28));\n",
    ),
    (
        "train-sieve.rhai",
        "let n = 400000;\nlet sieve = [];\nsieve.pad(n + 1, true);\n\
         sieve[0] = false; sieve[1] = false;\nlet i = 2;\nwhile i * i <= n {\n\
         if sieve[i] { let j = i * i; while j <= n { sieve[j] = false; j += i; } }\n\
         i += 1;\n}\nlet count = 0;\nfor x in sieve { if x { count += 1; } }\nprint(count);\n",
    ),
    (
        "train-words.rhai",
        "let words = [];\nfor i in 0..100000 { words.push(\"w\" + (i * 7919 % 1000).to_string()); }\n\
         let counts = #{};\n\
         for w in words { if w in counts { counts[w] += 1; } else { counts[w] = 1; } }\n\
         let s = \"\";\nfor k in counts.keys() { if counts[k] > 5 { s += k; s += \",\"; } }\n\
         print(s.len);\nlet arr = [];\nfor i in 0..80000 { arr.push((i * 31337) % 10007); }\n\
         arr.sort();\nprint(arr[100]);\n",
    ),
];

/// rhai scripts measured: what training ran little (floats, closures, `%`, interpolation).
const RHAI_MEASURE: [(&str, &str); 2] = [
    (
        "measure-matrix.rhai",
        "fn mat_mul(a, b, n) {\n  let c = [];\n  for i in 0..n {\n    let row = [];\n\
         for j in 0..n {\n      let s = 0.0;\n      for k in 0..n { s += a[i][k] * b[k][j]; }\n\
         row.push(s);\n    }\n    c.push(row);\n  }\n  c\n}\nlet n = 60;\nlet a = []; let b = [];\n\
         for i in 0..n { let r = []; let q = [];\n\
         for j in 0..n { r.push((i + j).to_float()); q.push((i - j).to_float()); }\n\
         a.push(r); b.push(q); }\nlet c = mat_mul(a, b, n);\nprint(c[3][5]);\n",
    ),
    (
        "measure-mix.rhai",
        "fn collatz(x) { let steps = 0; while x != 1 { if x % 2 == 0 { x /= 2; } else { x = 3 * x + 1; } steps += 1; } steps }\n\
         let best = 0; let arg = 0;\n\
         for i in 1..9000 { let s = collatz(i); if s > best { best = s; arg = i; } }\nprint(arg);\n\
         let v = [];\nfor i in 0..3000 { v.push(i); }\n\
         let r = v.map(|x| x * 3).filter(|x| x % 2 == 0).reduce(|sum, x| sum + x, 0);\nprint(r);\n\
         let m = #{};\nfor i in 0..3000 { m[\"k\" + (i % 300)] = i; }\nlet total = 0;\n\
         for k in m.keys() { total += m[k]; }\nprint(total);\nlet text = \"\";\n\
         for i in 0..2000 { text += `${i}-`; }\nprint(text.split(\"-\").len);\n",
    ),
];

/// Variables of the caller's environment that would change a build, besides `BUILD_VARS`.
const MORE_BUILD_VARS: [&str; 2] = ["CC", "CXX"];

const JAQ_TRAIN: [&str; 4] = [
    "[.[] | select(.score > 50) | {id, n: (.name|ascii_upcase), t: (.tags|length)}] | length",
    "map(.nested.b | add) | add",
    "group_by(.name) | map({k: .[0].name, c: length}) | sort_by(.c) | .[-1]",
    "[.[] | .tags | join(\",\")] | unique | length",
];

const JAQ_MEASURE: [&str; 4] = [
    "[.[] | select(.nested.a < 30) | .score * 2 | floor] | add",
    "map(select(.tags | index(\"a\"))) | map(.id) | length",
    "[.[] | {name, s: (.score|tostring)}] | group_by(.s[0:1]) | map(length)",
    "reduce .[] as $x ({}; .[$x.name[0:5]] += 1) | length",
];

/// rg's arguments (shell words) before the path `.`.
const RG_TRAIN: [&str; 5] = [
    r"-c 'fn \w+_\w+\('",
    r"-ci 'unsafe\s*\{'",
    r"-c '[A-Z][a-z]+Error'",
    r"-c 'impl<.*> \w+ for'",
    r"-F -c 'unwrap()'",
];

const RG_MEASURE: [&str; 5] = [
    r"-c 'pub (crate )?struct \w+<'",
    r"-ci 'todo|fixme|xxx'",
    r"-c '\b\d{4,}\b'",
    r"-c -w 'self'",
    r"-F -c 'Result<'",
];

/// `pgo_benches::command` without `CC` and `CXX` either.
fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = pgo_benches::command(program);
    for v in MORE_BUILD_VARS {
        c.env_remove(v);
    }
    c
}

/// The first line of an error, made fit for one line of output and a Markdown table cell.
fn one_line(e: &str) -> String {
    e.lines()
        .next()
        .unwrap_or(e)
        .trim_end_matches(':')
        .replace('|', "/")
}

/// Runs one step of a build with its output appended to `log`; the error is one line naming
/// the step and the log.
fn step(what: &str, cmd: &mut Command, log: &Path) -> Result<f64, String> {
    run_timed(cmd, log).map_err(|e| {
        let first = one_line(&e);
        let log = log.display().to_string();
        if first.contains(&log) {
            format!("{what}: {first}")
        } else {
            format!("{what}: {first}; log {log}")
        }
    })
}

/// A string as one single-quoted shell word.
fn sq(s: impl AsRef<str>) -> String {
    format!("'{}'", s.as_ref().replace('\'', r"'\''"))
}

fn path_word(p: &Path) -> String {
    sq(p.to_string_lossy())
}

// ---------------------------------------------------------------------------------- inputs

const WORDS: [&str; 40] = [
    "alpha", "batch", "buffer", "cache", "chunk", "client", "config", "count", "cursor", "data",
    "delta", "entry", "event", "field", "frame", "graph", "handle", "header", "index", "item",
    "key", "layer", "limit", "node", "offset", "page", "parse", "queue", "range", "record",
    "scope", "shard", "state", "table", "token", "value", "view", "window", "worker", "write",
];

fn word(rng: &mut Rng) -> &'static str {
    WORDS[rng.below(WORDS.len() as u64) as usize]
}

/// An identifier of 1–3 vocabulary words joined by `_`.
fn snake(rng: &mut Rng) -> String {
    let n = 1 + rng.below(3);
    (0..n).map(|_| word(rng)).collect::<Vec<_>>().join("_")
}

/// A CamelCase type name of 1–2 vocabulary words.
fn camel(rng: &mut Rng) -> String {
    let n = 1 + rng.below(2);
    (0..n)
        .map(|_| {
            let w = word(rng);
            w[..1].to_uppercase() + &w[1..]
        })
        .collect()
}

/// A number of 1–6 digits.
fn number(rng: &mut Rng) -> u64 {
    let digits = 1 + rng.below(6) as u32;
    if digits == 1 {
        rng.below(10)
    } else {
        let low = 10u64.pow(digits - 1);
        low + rng.below(9 * low)
    }
}

/// One line of pseudo-Rust source.
fn source_line(rng: &mut Rng, out: &mut String) {
    for _ in 0..rng.below(4) {
        out.push_str("    ");
    }
    let r = rng;
    let _ = match r.below(21) {
        0 => write!(
            out,
            "fn {}({}: {}) -> Result<{}, {}Error> {{",
            snake(r),
            snake(r),
            camel(r),
            camel(r),
            camel(r)
        ),
        1 => write!(
            out,
            "pub fn {}(&self, {}: Option<{}>) -> {} {{",
            snake(r),
            snake(r),
            camel(r),
            camel(r)
        ),
        2 => write!(out, "pub struct {}<T> {{", camel(r)),
        3 => write!(out, "pub(crate) struct {} {{", camel(r)),
        4 => write!(
            out,
            "let {} = self.{}.{}({}).unwrap();",
            snake(r),
            snake(r),
            snake(r),
            number(r)
        ),
        5 => write!(out, "match self.{} {{", snake(r)),
        6 => write!(
            out,
            "{}::{}({}) => {}({}, {}),",
            camel(r),
            camel(r),
            snake(r),
            snake(r),
            number(r),
            number(r)
        ),
        7 => write!(
            out,
            "unsafe {{ {}({}, {}) }}",
            snake(r),
            snake(r),
            number(r)
        ),
        8 => write!(
            out,
            "impl<T: {}> {} for {}<T> {{",
            camel(r),
            camel(r),
            camel(r)
        ),
        9 => write!(out, "impl {} {{", camel(r)),
        10 => write!(
            out,
            "// TODO: {} the {} before {} {}",
            word(r),
            word(r),
            word(r),
            number(r)
        ),
        11 => write!(
            out,
            "// FIXME({}): {} {} is {}",
            word(r),
            word(r),
            word(r),
            number(r)
        ),
        12 => write!(
            out,
            "let mut {}: Vec<{}> = Vec::with_capacity({});",
            snake(r),
            camel(r),
            number(r)
        ),
        13 => write!(
            out,
            "if {} > {} {{ return Err({}Error::{}); }}",
            snake(r),
            number(r),
            camel(r),
            camel(r)
        ),
        14 => write!(out, "self.{} += {};", snake(r), number(r)),
        15 => write!(out, "Ok(Some({}?))", snake(r)),
        16 => write!(
            out,
            "{}.{}().map(|{}| {} * {}).collect::<Vec<_>>();",
            snake(r),
            snake(r),
            word(r),
            word(r),
            number(r)
        ),
        17 => write!(
            out,
            "let {}: Option<{}> = {}.get({}).copied();",
            snake(r),
            camel(r),
            snake(r),
            number(r)
        ),
        18 => {
            if r.below(4) == 0 {
                write!(out, "// XXX: {} {}", word(r), word(r))
            } else {
                write!(out, "{}.{} = {}::new();", snake(r), snake(r), camel(r))
            }
        }
        _ => write!(out, "}}"),
    };
    out.push('\n');
}

/// `data.json`: 200,000 records, deterministic.
fn data_json() -> String {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut s = String::with_capacity(26 << 20);
    s.push_str("[\n");
    for i in 0..200_000u64 {
        if i > 0 {
            s.push_str(",\n");
        }
        let name = rng.below(5000);
        let _ = write!(s, r#"{{"id":{i},"name":"user{name}","tags":["#);
        for t in 0..rng.below(6) {
            if t > 0 {
                s.push(',');
            }
            let _ = write!(s, "\"{}\"", (b'a' + rng.below(7) as u8) as char);
        }
        let score = rng.below(100_000_001);
        let a = rng.below(100);
        let b = [rng.below(10), rng.below(10), rng.below(10)];
        let _ = write!(
            s,
            r#"],"score":{}.{:06},"nested":{{"a":{a},"b":[{},{},{}]}}}}"#,
            score / 1_000_000,
            score % 1_000_000,
            b[0],
            b[1],
            b[2]
        );
    }
    s.push_str("\n]\n");
    s
}

/// `corpus/` (3,000 files of pseudo-Rust in 30 directories, 5–60 KB each) and `corpus.txt`
/// (the first 30 MB of them concatenated: bzip2's measured input, sized so one compression and
/// decompression takes a few seconds), written through temporary names.
const CORPUS_TXT_BYTES: usize = 30_000_000;

fn write_corpus(inputs: &Path) -> Result<(), String> {
    let corpus = inputs.join("corpus");
    let tmp = inputs.join("corpus.tmp");
    for dir in [&corpus, &tmp] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
        }
    }
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut all = String::with_capacity(CORPUS_TXT_BYTES + (64 << 10));
    for d in 0..30 {
        let dir = tmp.join(format!("module_{d:02}"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for f in 0..100 {
            let size = 5 * 1024 + rng.below(55 * 1024 + 1) as usize;
            let mut text = String::with_capacity(size + 200);
            while text.len() < size {
                source_line(&mut rng, &mut text);
            }
            let path = dir.join(format!("file_{f:03}.rs"));
            std::fs::write(&path, &text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            if all.len() < CORPUS_TXT_BYTES {
                all.push_str(&text);
            }
        }
    }
    all.truncate(CORPUS_TXT_BYTES);
    try_write_atomic(&inputs.join("corpus.txt"), all.as_bytes())?;
    std::fs::rename(&tmp, &corpus).map_err(|e| format!("cannot write {}: {e}", corpus.display()))
}

/// The proportions of a generated Markdown document: `train.md` and `measure.md` differ in them
/// (and in their seeds), as the other programs' training and measured workloads differ.
struct MarkdownMix {
    seed: u64,
    /// Weights of the blocks: heading, paragraph, bullet list, fenced code block, pipe table,
    /// block quote.
    blocks: [u64; 6],
    /// Weights of a paragraph's pieces: plain word, *emphasis*, **strong**, `code span`,
    /// [link](url).
    inlines: [u64; 5],
}

/// Training: more lists and code blocks, fewer spans.
const MARKDOWN_TRAIN: MarkdownMix = MarkdownMix {
    seed: 0xA076_1D64_78BD_642F,
    blocks: [6, 28, 26, 22, 4, 4],
    inlines: [88, 3, 2, 5, 2],
};

/// Measured: more emphasis, links and tables.
const MARKDOWN_MEASURE: MarkdownMix = MarkdownMix {
    seed: 0xE703_7ED1_A0B4_28DB,
    blocks: [6, 38, 10, 6, 22, 18],
    inlines: [68, 12, 5, 5, 10],
};

/// The size of each generated Markdown document.
const MARKDOWN_BYTES: usize = 20_000_000;

/// An index into `weights`, drawn with those weights.
fn pick(rng: &mut Rng, weights: &[u64]) -> usize {
    let mut x = rng.below(weights.iter().sum());
    for (i, &w) in weights.iter().enumerate() {
        if x < w {
            return i;
        }
        x -= w;
    }
    unreachable!("x is below the sum of the weights")
}

/// `n` pieces of inline Markdown (words, emphasis, code spans, links) separated by spaces.
fn inline_text(rng: &mut Rng, mix: &MarkdownMix, n: u64, out: &mut String) {
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        let r = &mut *rng;
        let _ = match pick(r, &mix.inlines) {
            0 => write!(out, "{}", word(r)),
            1 => write!(out, "*{} {}*", word(r), word(r)),
            2 => write!(out, "**{}**", word(r)),
            3 => write!(out, "`{}({})`", snake(r), number(r)),
            _ => write!(
                out,
                "[{} {}](https://example.com/{}/{})",
                word(r),
                word(r),
                word(r),
                number(r)
            ),
        };
    }
}

/// One block of Markdown, followed by a blank line.
fn markdown_block(rng: &mut Rng, mix: &MarkdownMix, out: &mut String) {
    match pick(rng, &mix.blocks) {
        0 => {
            out.push_str(&"#".repeat(1 + rng.below(4) as usize));
            out.push(' ');
            let n = 2 + rng.below(5);
            inline_text(rng, mix, n, out);
            out.push('\n');
        }
        1 => {
            for _ in 0..2 + rng.below(4) {
                let n = 8 + rng.below(7);
                inline_text(rng, mix, n, out);
                out.push('\n');
            }
        }
        2 => {
            let ordered = rng.below(4) == 0;
            for item in 1..=2 + rng.below(7) {
                if item > 1 && rng.below(4) == 0 {
                    out.push_str("  ");
                }
                if ordered {
                    let _ = write!(out, "{item}. ");
                } else {
                    out.push_str("- ");
                }
                let n = 3 + rng.below(10);
                inline_text(rng, mix, n, out);
                out.push('\n');
            }
        }
        3 => {
            out.push_str("```rust\n");
            for _ in 0..3 + rng.below(13) {
                source_line(rng, out);
            }
            out.push_str("```\n");
        }
        4 => {
            let columns = 2 + rng.below(4) as usize;
            let row = |rng: &mut Rng, out: &mut String| {
                for _ in 0..columns {
                    out.push_str("| ");
                    let n = 1 + rng.below(3);
                    inline_text(rng, mix, n, out);
                    out.push(' ');
                }
                out.push_str("|\n");
            };
            row(rng, out);
            for _ in 0..columns {
                out.push_str(["|---", "|:---", "|---:", "|:---:"][rng.below(4) as usize]);
            }
            out.push_str("|\n");
            for _ in 0..2 + rng.below(9) {
                row(rng, out);
            }
        }
        _ => {
            for _ in 0..1 + rng.below(3) {
                out.push_str("> ");
                let n = 6 + rng.below(9);
                inline_text(rng, mix, n, out);
                out.push('\n');
            }
        }
    }
    out.push('\n');
}

/// A Markdown document of about `bytes` in the proportions of `mix`, deterministic.
fn markdown(mix: &MarkdownMix, bytes: usize) -> String {
    let mut rng = Rng(mix.seed);
    let mut s = String::with_capacity(bytes + (4 << 10));
    while s.len() < bytes {
        markdown_block(&mut rng, mix, &mut s);
    }
    s
}

/// Writes the rhai scripts under `inputs/rhai` and the Jsonnet programs under
/// `inputs/jsonnet`: small, and rewritten every run so that they follow this file.
fn ensure_scripts(inputs: &Path) -> Result<(), String> {
    let sets: [(&str, Vec<&(&str, &str)>); 3] = [
        ("rhai", RHAI_TRAIN.iter().chain(&RHAI_MEASURE).collect()),
        ("jsonnet", vec![&JSONNET_TRAIN, &JSONNET_MEASURE]),
        ("minijinja", vec![&MINIJINJA_TRAIN, &MINIJINJA_MEASURE]),
    ];
    for (dir, files) in sets {
        let dir = inputs.join(dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for (name, text) in files {
            try_write_atomic(&dir.join(name), text.as_bytes())?;
        }
    }
    Ok(())
}

/// Generates the inputs that are missing.
fn ensure_inputs(inputs: &Path) -> Result<(), String> {
    std::fs::create_dir_all(inputs)
        .map_err(|e| format!("cannot create {}: {e}", inputs.display()))?;
    generate_once(&inputs.join("data.json"), data_json)?;
    if !inputs.join("corpus").is_dir() || !inputs.join("corpus.txt").exists() {
        eprintln!(
            "inputs: generating {} and corpus.txt…",
            inputs.join("corpus").display()
        );
        write_corpus(inputs)?;
    }
    ensure_scripts(inputs)?;
    generate_once(
        &inputs.join("minijinja").join("records.json"),
        minijinja_records,
    )?;
    for (name, mix) in [
        ("train.md", &MARKDOWN_TRAIN),
        ("measure.md", &MARKDOWN_MEASURE),
    ] {
        generate_once(&inputs.join(name), || markdown(mix, MARKDOWN_BYTES))?;
    }
    Ok(())
}

/// Writes `file` with what `make` generates, unless it exists (generated inputs are
/// deterministic: once is enough).
fn generate_once(file: &Path, make: impl FnOnce() -> String) -> Result<(), String> {
    if !file.exists() {
        eprintln!("inputs: generating {}…", file.display());
        try_write_atomic(file, make().as_bytes())?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------- workloads

fn script(lines: &[String]) -> String {
    let mut s =
        String::from("#!/bin/sh\n# Written by real-bench: $1 is the binary to run.\nset -e\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// `train.sh` and `measure.sh` of `spec`.
fn scripts(spec: &Spec, inputs: &Path, tmp: &Path) -> (String, String) {
    let data = path_word(&inputs.join("data.json"));
    match spec.name {
        "jaq" => {
            let train: Vec<String> = JAQ_TRAIN
                .iter()
                .map(|f| format!("\"$1\" {} {data} > /dev/null", sq(f)))
                .collect();
            let measure: Vec<String> = JAQ_MEASURE
                .iter()
                .map(|f| format!("\"$1\" {} {data}", sq(f)))
                .collect();
            (script(&train), script(&measure))
        }
        "ripgrep" => {
            let cd = format!("cd {}", path_word(&inputs.join("corpus")));
            let lines = |args: &[&str], to_null: bool| {
                let mut v = vec![cd.clone()];
                v.extend(args.iter().map(|a| {
                    let null = if to_null { " > /dev/null" } else { "" };
                    format!("\"$1\" -j1 {a} .{null}")
                }));
                v
            };
            (
                script(&lines(&RG_TRAIN, true)),
                script(&lines(&RG_MEASURE, false)),
            )
        }
        "rhai" => {
            let run = |(name, _): &(&str, &str)| {
                format!("\"$1\" {}", path_word(&inputs.join("rhai").join(name)))
            };
            let train: Vec<String> = RHAI_TRAIN
                .iter()
                .map(|s| format!("{} > /dev/null", run(s)))
                .collect();
            let all: Vec<String> = RHAI_MEASURE.iter().map(run).collect();
            (
                script(&train),
                script(&checksum_of(&all.join(" && "), "the scripts' output")),
            )
        }
        "jrsonnet" => {
            let program = |(name, _): &(&str, &str)| path_word(&inputs.join("jsonnet").join(name));
            let train = format!("\"$1\" {} > /dev/null", program(&JSONNET_TRAIN));
            let measure = checksum_of(&format!("\"$1\" {}", program(&JSONNET_MEASURE)), "the JSON");
            (
                script(&[train.clone(), train.clone(), train]),
                script(&measure),
            )
        }
        "minijinja-cli" => {
            let dir = inputs.join("minijinja");
            let records = path_word(&dir.join("records.json"));
            let run = |(name, _): &(&str, &str)| {
                format!("\"$1\" {} {records}", path_word(&dir.join(name)))
            };
            let train = format!("{} > /dev/null", run(&MINIJINJA_TRAIN));
            (
                script(&[train.clone(), train.clone(), train]),
                script(&checksum_of(&run(&MINIJINJA_MEASURE), "the rendered text")),
            )
        }
        "pulldown-cmark" => {
            // -T: GitHub-style tables, which the binary leaves off by default.
            let train = path_word(&inputs.join("train.md"));
            let run = format!("\"$1\" -T < {train} > /dev/null");
            let measure = checksum_of(
                &format!("\"$1\" -T < {}", path_word(&inputs.join("measure.md"))),
                "the HTML",
            );
            (script(&[run.clone(), run]), script(&measure))
        }
        _ => {
            let t = path_word(&tmp.join("t.bz2"));
            let m = path_word(&tmp.join("m.bz2"));
            let corpus = path_word(&inputs.join("corpus.txt"));
            let train = [
                format!("\"$1\" -c {data} > {t}"),
                format!("\"$1\" -dc {t} > /dev/null"),
            ];
            let mut measure = vec![format!("\"$1\" -c {corpus} > {m}")];
            measure.extend(checksum_of(
                &format!("\"$1\" -dc {m}"),
                "the decompressed output",
            ));
            (script(&train), script(&measure))
        }
    }
}

/// Script lines printing the checksum of what `run` (a shell command running `$1`) prints,
/// and failing when `run` fails (dash has no pipefail).
fn checksum_of(run: &str, what: &str) -> Vec<String> {
    vec![
        format!("# The checksum of {what}, failing when the program fails (dash has no pipefail)."),
        "exec 4>&1".to_string(),
        format!("status=$( {{ {{ {run}; echo $? >&3; }} | cksum >&4; }} 3>&1 )"),
        "test \"$status\" = 0".to_string(),
    ]
}

// ---------------------------------------------------------------------------------- sources

/// The archive of `spec` in `downloads`, downloaded when missing, with its sha256 checked.
fn fetch(spec: &Spec, downloads: &Path) -> Result<PathBuf, String> {
    let name = spec.url.rsplit('/').next().expect("a file name");
    let file = downloads.join(name);
    let log = downloads.join("download.log");
    if !file.exists() {
        let part = downloads.join(format!("{name}.part"));
        step(
            &format!("downloading {}", spec.url),
            command("curl")
                .arg("-sfL")
                .arg("-o")
                .arg(&part)
                .arg(spec.url),
            &log,
        )?;
        std::fs::rename(&part, &file)
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    }
    let out = Command::new("sha256sum")
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run sha256sum: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let got = text.split_whitespace().next().unwrap_or("");
    if !out.status.success() || got != spec.sha256 {
        let _ = std::fs::remove_file(&file);
        return Err(format!(
            "{}: sha256 {got:?}, expected {} (removed; the next run downloads it again)",
            file.display(),
            spec.sha256
        ));
    }
    Ok(file)
}

/// Extracts `archive` afresh into `src`; the Rust crates get an empty `[workspace]`.
fn extract(spec: &Spec, archive: &Path, src: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(src).map_err(|e| format!("cannot create {}: {e}", src.display()))?;
    let dir = src.join(spec.dir);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    let log = src.join(format!("{}.log", spec.name));
    let _ = std::fs::remove_file(&log);
    step(
        "extracting",
        command("tar").arg("xzf").arg(archive).arg("-C").arg(src),
        &log,
    )?;
    let dir = exists(dir).map_err(|e| format!("extracting: {e}; log {}", log.display()))?;
    if spec.lang == Lang::Rust {
        let manifest = dir.join("Cargo.toml");
        let mut toml = std::fs::read_to_string(&manifest)
            .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
        if !toml.lines().any(|l| l.trim() == "[workspace]") {
            toml.push_str(
                "\n# Added by real-bench: not a member of any enclosing workspace.\n[workspace]\n",
            );
            std::fs::write(&manifest, toml)
                .map_err(|e| format!("cannot write {}: {e}", manifest.display()))?;
        }
    }
    Ok(dir)
}

// ---------------------------------------------------------------------------------- builds

/// A built variant: its binary, and how long each step of its build took.
struct Built {
    binary: PathBuf,
    steps: Vec<(&'static str, f64)>,
}

/// One program's build context.
struct Program<'a> {
    spec: &'a Spec,
    pgo: &'a Path,
    /// The extracted sources, copied for each build.
    src: PathBuf,
    /// `WORK/<program>`.
    dir: PathBuf,
    train: PathBuf,
    measure: PathBuf,
}

impl Program<'_> {
    /// A fresh `WORK/<program>/<name>` holding a copy of the sources in `src/`.
    fn prepare(&self, name: &str) -> Result<PathBuf, String> {
        let d = self.dir.join(name);
        fresh_dir(&d)?;
        step(
            "copying the sources",
            command("cp").arg("-a").arg(&self.src).arg(d.join("src")),
            &d.join("build.log"),
        )?;
        Ok(d)
    }

    /// The project's own build command, with `cc` as the C compiler.
    /// `cargo build --release --quiet` and the program's own arguments.
    fn build_words(spec: &Spec) -> Vec<String> {
        ["cargo", "build", "--release", "--quiet"]
            .iter()
            .chain(spec.cargo_args)
            .map(|a| a.to_string())
            .collect()
    }

    fn build_command(&self, cc: &str) -> Vec<OsString> {
        let words: Vec<String> = match self.spec.lang {
            Lang::Rust => Self::build_words(self.spec),
            Lang::C => vec![
                "make".into(),
                "-s".into(),
                format!("CC={cc}"),
                self.spec.binary.into(),
            ],
        };
        words.into_iter().map(OsString::from).collect()
    }

    /// Where the build in `d` puts the binary.
    fn binary(&self, d: &Path) -> PathBuf {
        match self.spec.lang {
            Lang::Rust => d.join("target/release").join(self.spec.binary),
            Lang::C => d.join("src").join(self.spec.binary),
        }
    }

    /// Builds in `d` (prepared): the project's build command with `cc` and `rustflags`, run
    /// through `pgo apply` with `apply` (its options) when given. Returns the binary and the
    /// build's wall time.
    fn build(
        &self,
        d: &Path,
        apply: Option<Vec<OsString>>,
        rustflags: Option<String>,
        cc: &str,
    ) -> Result<(PathBuf, f64), String> {
        let build = self.build_command(cc);
        let mut cmd = match apply {
            Some(options) => {
                let mut c = command(self.pgo);
                c.arg("apply")
                    .args(options)
                    .arg("--out-dir")
                    .arg(d.join("pgo-files"))
                    .arg("--")
                    .args(&build);
                c
            }
            None => {
                let mut c = command(&build[0]);
                c.args(&build[1..]);
                c
            }
        };
        cmd.current_dir(d.join("src"));
        if self.spec.lang == Lang::Rust {
            cmd.env("CARGO_TARGET_DIR", d.join("target"));
        }
        if let Some(flags) = rustflags {
            cmd.env("RUSTFLAGS", flags);
        }
        let log = d.join("build.log");
        let secs = step("building", &mut cmd, &log)?;
        let bin = exists(self.binary(d)).map_err(|e| format!("{e}; log {}", log.display()))?;
        Ok((bin, secs))
    }

    fn plain(&self) -> Result<Built, String> {
        let d = self.prepare("plain")?;
        let (binary, secs) = self.build(&d, None, None, "clang-22")?;
        Ok(Built {
            binary,
            steps: vec![("build", secs)],
        })
    }

    fn control(&self) -> Result<Built, String> {
        let none = self.dir.join("none.pb.gz");
        if none.exists() {
            std::fs::remove_file(&none)
                .map_err(|e| format!("cannot remove {}: {e}", none.display()))?;
        }
        let d = self.prepare("control")?;
        let mut options: Vec<OsString> =
            vec!["--profile".into(), none.into(), "--allow-missing".into()];
        if self.spec.lang == Lang::C {
            options.extend(["--backend".into(), "clang".into()]);
        }
        let (binary, secs) = self.build(&d, Some(options), None, "clang-22")?;
        Ok(Built {
            binary,
            steps: vec![("build", secs)],
        })
    }

    /// Instrumented build, `train.sh`, `llvm-profdata-22 merge`, the build with the profile.
    fn instr(&self) -> Result<Built, String> {
        let gen_dir = self.prepare("instr-gen")?;
        let raw = gen_dir.join("profraw");
        fresh_dir(&raw)?;
        let (generator, gen_secs) = match self.spec.lang {
            Lang::Rust => self.build(
                &gen_dir,
                None,
                Some(format!("-Cprofile-generate={}", raw.display())),
                "clang-22",
            )?,
            Lang::C => self.build(
                &gen_dir,
                None,
                None,
                &format!(
                    "clang-22 -fprofile-instr-generate={}",
                    raw.join("%p.profraw").display()
                ),
            )?,
        };
        let log = gen_dir.join("build.log");
        let train_secs = step(
            "training (instrumented binary)",
            command("sh").arg(&self.train).arg(&generator),
            &log,
        )?;
        let merged = gen_dir.join("merged.profdata");
        let merge_secs = step(
            "merging the raw profiles",
            command("llvm-profdata-22")
                .arg("merge")
                .arg("-o")
                .arg(&merged)
                .arg(&raw),
            &log,
        )?;
        let d = self.prepare("instr")?;
        let (binary, use_secs) = match self.spec.lang {
            Lang::Rust => self.build(
                &d,
                None,
                Some(format!("-Cprofile-use={}", merged.display())),
                "clang-22",
            )?,
            Lang::C => self.build(
                &d,
                None,
                None,
                &format!("clang-22 -fprofile-instr-use={}", merged.display()),
            )?,
        };
        Ok(Built {
            binary,
            steps: vec![
                ("instrumented build", gen_secs),
                ("train", train_secs),
                ("merge", merge_secs),
                ("build", use_secs),
            ],
        })
    }

    /// `pgo collect` of `train.sh` on the control build, then `pgo apply` with that profile.
    /// Also returns the profile's sample count, when pgo printed it.
    fn pgo_variant(&self, control: &Path) -> Result<(Built, Option<u64>), String> {
        let profile = self.dir.join("pgo.pb.gz");
        let _ = std::fs::remove_file(&profile);
        let d = self.prepare("pgo")?;
        let log = d.join("build.log");
        let collect_secs = step(
            "pgo collect",
            command(self.pgo)
                .arg("collect")
                .arg("-o")
                .arg(&profile)
                .arg("--")
                .arg("sh")
                .arg(&self.train)
                .arg(control),
            &log,
        )?;
        let samples = collected_samples(&std::fs::read_to_string(&log).unwrap_or_default());
        let options: Vec<OsString> = match self.spec.lang {
            Lang::Rust => vec![
                "--profile".into(),
                profile.into(),
                "--output-binary".into(),
                self.binary(&d).into(),
            ],
            Lang::C => vec![
                "--profile".into(),
                profile.into(),
                "--backend".into(),
                "clang".into(),
                "--output-binary".into(),
                self.binary(&d).into(),
            ],
        };
        let (binary, secs) = self.build(&d, Some(options), None, "clang-22")?;
        Ok((
            Built {
                binary,
                steps: vec![("pgo collect", collect_secs), ("build", secs)],
            },
            samples,
        ))
    }
}

/// The sample count of `pgo collect`'s last `pgo: wrote FILE: N samples` line.
fn collected_samples(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        let rest = l.strip_prefix("pgo: wrote ")?;
        let (_, after) = rest.split_once(": ")?;
        after.split_once(" samples")?.0.trim().parse().ok()
    })
}

// ---------------------------------------------------------------------------------- results

struct Variant {
    name: &'static str,
    /// The binary to measure; `None` when it could not be built or failed a run.
    binary: Option<PathBuf>,
    error: Option<String>,
    build_steps: Vec<(&'static str, f64)>,
    /// Wall time of each timed `measure.sh` run.
    seconds: Vec<f64>,
    /// Its `measure.sh` printed something else than the reference variant's.
    output_differs: bool,
    /// Instructions executed, branch mispredicts and I1 misses of one `measure.sh` run under
    /// cachegrind (every process summed), or why that run failed; `None` when not counted.
    counts: Option<Result<Counts, String>>,
}

struct ProgramResult {
    name: &'static str,
    version: &'static str,
    measure: &'static str,
    variants: Vec<Variant>,
    samples: Option<u64>,
    notes: Vec<String>,
    /// Why nothing was measured, when so.
    skipped: Option<String>,
}

impl ProgramResult {
    fn new(spec: &Spec) -> Self {
        ProgramResult {
            name: spec.name,
            version: spec.version,
            measure: spec.measure,
            variants: Vec::new(),
            samples: None,
            notes: Vec::new(),
            skipped: None,
        }
    }

    fn stat(&self, name: &str, stat: fn(&[f64]) -> f64) -> Option<f64> {
        let v = self.variants.iter().find(|v| v.name == name)?;
        (v.error.is_none() && !v.seconds.is_empty()).then(|| stat(&v.seconds))
    }

    fn median(&self, name: &str) -> Option<f64> {
        self.stat(name, |xs| median(xs.to_vec()))
    }

    /// plain / variant.
    fn speedup(&self, name: &str) -> Option<f64> {
        Some(self.median("plain")? / self.median(name)?)
    }

    /// plain / variant on each one's fastest run: interference from other work on the
    /// machine only ever adds time, so the minimum is the estimate it disturbs least.
    fn best_speedup(&self, name: &str) -> Option<f64> {
        Some(self.stat("plain", fastest)? / self.stat(name, fastest)?)
    }

    fn push(&mut self, name: &'static str, result: Result<Built, String>) {
        let (binary, error, build_steps) = match result {
            Ok(b) => (Some(b.binary), None, b.steps),
            Err(e) => {
                eprintln!("  {}: {name} FAILED: {e}", self.name);
                (None, Some(e), Vec::new())
            }
        };
        self.variants.push(Variant {
            name,
            binary,
            error,
            build_steps,
            seconds: Vec::new(),
            output_differs: false,
            counts: None,
        });
    }
}

// ---------------------------------------------------------------------------------- one program

/// Fetches, builds and measures one program, and counts it under cachegrind when `counts`.
/// Returns the number of variants whose output differed from the reference's.
fn run_program(
    spec: &'static Spec,
    pgo: &Path,
    work: &Path,
    reps: usize,
    counts: bool,
    r: &mut ProgramResult,
) -> usize {
    let mut p = Progress {
        fixture: spec.name.to_string(),
        step: 0,
        total: 6 + usize::from(counts),
    };
    p.step(&format!(
        "fetching {} {} (cached in {}), checking its sha256, extracting",
        spec.name,
        spec.version,
        work.join("downloads").display()
    ));
    let dir = work.join(spec.name);
    let prepared = std::fs::create_dir_all(work.join("downloads"))
        .and_then(|()| std::fs::create_dir_all(&dir))
        .map_err(|e| format!("cannot create the work directories: {e}"))
        .and_then(|()| fetch(spec, &work.join("downloads")))
        .and_then(|archive| extract(spec, &archive, &work.join("src")))
        .and_then(|src| {
            let (train, measure) = scripts(spec, &work.join("inputs"), &work.join("tmp"));
            let (train_sh, measure_sh) = (dir.join("train.sh"), dir.join("measure.sh"));
            try_write_atomic(&train_sh, train.as_bytes())?;
            try_write_atomic(&measure_sh, measure.as_bytes())?;
            Ok(Program {
                spec,
                pgo,
                src,
                dir: dir.clone(),
                train: train_sh,
                measure: measure_sh,
            })
        });
    let prog = match prepared {
        Ok(prog) => prog,
        Err(e) => {
            eprintln!("  {}: FAILED: {e}", spec.name);
            r.skipped = Some(e);
            return 0;
        }
    };

    p.step("building plain");
    let plain = prog.plain();
    r.push("plain", plain);
    p.step("building control (pgo apply --allow-missing, no profile)");
    let control = prog.control();
    let control_bin = control.as_ref().ok().map(|b| b.binary.clone());
    r.push("control", control);
    p.step("building instr (instrumented build, train.sh, llvm-profdata-22 merge, rebuild)");
    let instr = prog.instr();
    r.push("instr", instr);
    p.step("building pgo (pgo collect of train.sh on control, pgo apply)");
    let pgo_built = match control_bin {
        Some(control) => prog.pgo_variant(&control).map(|(built, samples)| {
            r.samples = samples;
            built
        }),
        None => Err("no control build to profile".to_string()),
    };
    r.push("pgo", pgo_built);
    if let Some(n) = r.samples {
        r.notes.push(format!(
            "pgo collect: {n} samples of train.sh on the control build"
        ));
    }
    if r.variants[0].binary.is_none() {
        r.skipped = Some("the plain build failed".into());
        return 0;
    }

    p.step("checking that every variant's measure.sh prints the same");
    let differing = check_outputs(&prog, r);
    measure(&prog, r, reps);
    if counts {
        p.step("counting each variant's measure.sh under cachegrind");
        count(&prog, r);
    }
    differing
}

/// Runs every built variant's `measure.sh` once, untimed, and compares its output with the
/// first one's (plain's). Returns the number of variants whose output differs.
fn check_outputs(prog: &Program, r: &mut ProgramResult) -> usize {
    let mut reference: Option<(&'static str, Vec<u8>)> = None;
    let mut differing = 0;
    for v in &mut r.variants {
        let Some(bin) = v.binary.clone() else {
            continue;
        };
        let d = prog.dir.join(v.name);
        let log = d.join("measure.log");
        let out_file = d.join("measure.out");
        let output = std::fs::File::create(&log)
            .map_err(|e| format!("cannot write {}: {e}", log.display()))
            .and_then(|stderr| {
                Command::new("sh")
                    .arg(&prog.measure)
                    .arg(&bin)
                    .stdin(Stdio::null())
                    .stderr(stderr)
                    .output()
                    .map_err(|e| format!("cannot run sh: {e}"))
            })
            .and_then(|o| {
                if o.status.success() {
                    Ok(o.stdout)
                } else {
                    Err(format!(
                        "measure.sh failed ({}); log {}",
                        o.status,
                        log.display()
                    ))
                }
            });
        let stdout = match output {
            Ok(s) => s,
            Err(e) => {
                eprintln!("  {}: {} FAILED: {e}", r.name, v.name);
                v.error = Some(e);
                v.binary = None;
                continue;
            }
        };
        let _ = std::fs::write(&out_file, &stdout);
        match &reference {
            None => reference = Some((v.name, stdout)),
            Some((name, expected)) if *expected != stdout => {
                eprintln!(
                    "  !!! OUTPUT DIFFERS: {} {}'s measure.sh printed something else than \
                     {name}'s (compare {} with {})",
                    r.name,
                    v.name,
                    out_file.display(),
                    prog.dir.join(name).join("measure.out").display()
                );
                v.output_differs = true;
                differing += 1;
            }
            Some(_) => {}
        }
    }
    differing
}

/// `reps` rounds, each running every variant's `measure.sh` once, forward and backward in
/// turn; wall time of each run.
fn measure(prog: &Program, r: &mut ProgramResult, reps: usize) {
    let n = r.variants.len();
    for round in 0..reps {
        eprintln!("{}: measuring, round {}/{reps}…", r.name, round + 1);
        let order: Vec<usize> = if round % 2 == 0 {
            (0..n).collect()
        } else {
            (0..n).rev().collect()
        };
        for i in order {
            let v = &mut r.variants[i];
            let Some(bin) = v.binary.clone() else {
                continue;
            };
            match try_time(Command::new("sh").arg(&prog.measure).arg(&bin)) {
                Ok(t) => v.seconds.push(t.seconds),
                Err(e) => {
                    let e = format!(
                        "measure.sh failed in round {}: {}; rerun `sh {} {}` to see why",
                        round + 1,
                        one_line(&e),
                        prog.measure.display(),
                        bin.display()
                    );
                    eprintln!("  {}: {} FAILED: {e}", r.name, v.name);
                    v.error = Some(e);
                    v.binary = None;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------- counts

/// valgrind's options, after [`CACHEGRIND_WITH_CACHES`], that make it follow `measure.sh`'s
/// children.
const TRACE_CHILDREN: &str = "--trace-children=yes";

/// Runs each built variant's `measure.sh` once more under cachegrind with its cache simulation
/// (for the I1 misses, which the instruction count does not show; twice cachegrind's time),
/// following its children (`valgrind … --trace-children=yes sh measure.sh BIN`), the counts of
/// every process summed; the output files (for `cg_annotate`, one a process) and the log in
/// `WORK/<program>/<variant>/cachegrind/`. A failure is recorded on the variant, and the others
/// go on.
fn count(prog: &Program, r: &mut ProgramResult) {
    for v in &mut r.variants {
        let Some(bin) = v.binary.clone() else {
            continue;
        };
        let dir = prog.dir.join(v.name).join("cachegrind");
        let counts = fresh_dir(&dir).and_then(|()| {
            cachegrind(
                v.name,
                &CACHEGRIND_WITH_CACHES,
                &[
                    TRACE_CHILDREN.into(),
                    "sh".into(),
                    prog.measure.clone().into(),
                    bin.into(),
                ],
                &[],
                &dir.join("cachegrind.out.%p"),
                &dir.join("valgrind.log"),
                "sh measure.sh",
            )
        });
        v.counts = Some(counts);
    }
}

// ---------------------------------------------------------------------------------- report

/// How the counts are named in the report.
const COUNTS_OF: CountsOf = CountsOf {
    run: "`measure.sh`, every process summed",
    column: "programs",
    over: "programs",
};

/// A program's counted variants.
fn counted(r: &ProgramResult) -> Vec<Counted<'_>> {
    pgo_benches::counted(r.variants.iter().map(|v| (v.name, v.counts.as_ref())))
}

fn report(
    results: &[ProgramResult],
    reps: usize,
    command_line: &str,
    wall: f64,
    load: [Option<f64>; 2],
    counts_off: Option<&str>,
) -> (String, serde_json::Value) {
    let mut md = String::new();
    let mut programs_json = Vec::new();
    let _ = writeln!(
        md,
        "# pgo on real programs\n\nMedian of {reps} runs of each variant's `measure.sh` (wall \
         time of the whole script), interleaved (every variant once per round, forward and \
         backward in turn); vs plain = plain/variant; net of control = control/variant; share \
         = (plain/variant − 1) / (plain/instr − 1), shown when instr gained at least 1%; \
         spread = (max − min) / median of the runs; \"fastest\" compares each variant's \
         fastest run (interference only adds time, so the minimum is the estimate it disturbs \
         least).\n"
    );
    let _ = match counts_off {
        None => writeln!(
            md,
            "Deterministic counts: each variant's `measure.sh` ran once more as `valgrind {} \
             {TRACE_CHILDREN} sh measure.sh BIN`, and the instructions executed, branch \
             mispredicts and I1 misses of every process valgrind reported are summed: the \
             program's, and those of the shell and of `cksum`, which are the same for every \
             variant (so the ratios slightly understate the program's own change). They are \
             counts, not time; the mispredicts are those of cachegrind's simple branch \
             predictor model and the I1 misses those of its simulated first-level instruction \
             cache, not the CPU's. The I1 misses depend on where the hot code was placed as \
             much as on its size (builds with the same flags and no profile differ by a \
             quarter): a hint to look at code size and placement, to be confirmed by time. vs \
             plain = plain/variant, share as above with instr's instruction ratio.\n",
            CACHEGRIND_WITH_CACHES.join(" ")
        ),
        Some(why) => writeln!(
            md,
            "Deterministic counts (cachegrind): not taken ({why}).\n"
        ),
    };
    for r in results {
        let _ = writeln!(md, "## {} {}\n", r.name, r.version);
        if let Some(why) = &r.skipped
            && r.variants.iter().all(|v| v.seconds.is_empty())
        {
            let _ = writeln!(md, "Skipped: {}\n", one_line(why));
        }
        let mut rows = Vec::new();
        if !r.variants.is_empty() {
            let _ = writeln!(
                md,
                "measure: {}\n\n| variant | median s | spread | vs plain | net of control | \
                 share of instr gain | vs plain, fastest |\n|---|---:|---:|---:|---:|---:|---:|",
                r.measure
            );
        }
        let anchor = r.speedup("instr");
        let control = r.median("control");
        for v in &r.variants {
            let med = r.median(v.name);
            let speedup = r.speedup(v.name);
            let net = control.zip(med).map(|(c, m)| c / m);
            let sh = share(speedup, anchor);
            let flag = if v.output_differs {
                " **OUTPUT DIFFERS**"
            } else {
                ""
            };
            match (&v.error, med) {
                (None, Some(m)) => {
                    let _ = writeln!(
                        md,
                        "| {}{flag} | {m:.3} | {:.1}% | {} | {} | {} | {} |",
                        v.name,
                        spread(&v.seconds),
                        ratio(speedup),
                        ratio(net),
                        sh.map(|s| format!("{s:.0}%")).unwrap_or_default(),
                        ratio(r.best_speedup(v.name)),
                    );
                }
                (e, _) => {
                    let why = e
                        .as_deref()
                        .map(one_line)
                        .unwrap_or_else(|| "not run".into());
                    let _ = writeln!(md, "| {}{flag} | failed: {why} | | | | | |", v.name);
                }
            }
            let steps: serde_json::Map<String, serde_json::Value> = v
                .build_steps
                .iter()
                .map(|(k, s)| (k.to_string(), json!(s)))
                .collect();
            let mut row = json!({
                "variant": v.name,
                "binary": v.binary,
                "error": v.error,
                "build_seconds": (!v.build_steps.is_empty())
                    .then(|| v.build_steps.iter().map(|s| s.1).sum::<f64>()),
                "build_steps_seconds": steps,
                "seconds": v.seconds,
                "median_seconds": med,
                "spread_percent": (!v.seconds.is_empty()).then(|| spread(&v.seconds)),
                "speedup_vs_plain": speedup,
                "speedup_vs_control": net,
                "share_of_instr_gain_percent": sh,
                "speedup_vs_plain_fastest_run": r.best_speedup(v.name),
                "output_differs": v.output_differs,
            });
            if let Some(o) = row.as_object_mut() {
                o.extend(counts_fields(v.counts.as_ref()));
            }
            rows.push(row);
        }
        md.push('\n');
        for n in &r.notes {
            let _ = writeln!(md, "- {n}");
        }
        if !r.notes.is_empty() {
            md.push('\n');
        }
        counts_table(&mut md, &COUNTS_OF, "instr", &counted(r));
        programs_json.push(json!({
            "program": r.name,
            "version": r.version,
            "measure": r.measure,
            "skipped": r.skipped,
            "pgo_collect_samples": r.samples,
            "notes": r.notes,
            "variants": rows,
        }));
    }

    // Geometric means over the programs.
    let _ = writeln!(
        md,
        "## Summary\n\nGeometric means of the speedup over plain, over the programs where the \
         variant was measured (medians; and each variant's fastest runs).\n\n| variant | \
         programs | geomean vs plain | share of instr gain | geomean vs plain, fastest |\n\
         |---|---:|---:|---:|---:|"
    );
    let instr: Vec<f64> = results.iter().filter_map(|r| r.speedup("instr")).collect();
    let instr_geo = (!instr.is_empty()).then(|| geomean(&instr));
    let mut summary = Vec::new();
    for name in ["control", "instr", "pgo"] {
        let xs: Vec<f64> = results.iter().filter_map(|r| r.speedup(name)).collect();
        if xs.is_empty() {
            let _ = writeln!(md, "| {name} | 0 | | | |");
            continue;
        }
        let g = geomean(&xs);
        let sh = share(Some(g), instr_geo);
        let best: Vec<f64> = results
            .iter()
            .filter_map(|r| r.best_speedup(name))
            .collect();
        let gb = geomean(&best);
        let _ = writeln!(
            md,
            "| {name} | {} | {g:.3}x | {} | {gb:.3}x |",
            xs.len(),
            sh.map(|s| format!("{s:.0}%")).unwrap_or_default()
        );
        summary.push(json!({
            "variant": name,
            "programs": xs.len(),
            "geomean_speedup": g,
            "share_of_instr_gain_percent": sh,
            "geomean_speedup_fastest_run": gb,
        }));
    }
    // pgo's share of instr's gain over the programs where both were measured.
    let both: Vec<(f64, f64)> = results
        .iter()
        .filter_map(|r| Some((r.speedup("instr")?, r.speedup("pgo")?)))
        .collect();
    let shares = pgo_share(&both);
    md.push('\n');
    let _ = writeln!(
        md,
        "{}",
        pgo_share_paragraph(shares, both.len(), "programs")
    );
    let counts = counts_off.is_none().then(|| {
        let each: Vec<Vec<Counted>> = results.iter().map(counted).collect();
        counts_summary(&mut md, &COUNTS_OF, &each)
    });
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fmt_load = |l: Option<f64>| l.map_or("?".to_string(), |l| format!("{l:.1}"));
    let _ = writeln!(
        md,
        "Command: `{command_line}`; whole run {wall:.0} s; 1-minute load average {} at the \
         start, {} at the end, on {cpus} CPUs (other work on the machine makes the times \
         noisier).",
        fmt_load(load[0]),
        fmt_load(load[1])
    );
    let json = json!({
        "command": command_line,
        "reps": reps,
        "wall_seconds": wall,
        "load_average": load,
        "programs": programs_json,
        "summary": summary,
        "pgo_share_of_instr_gain_percent": shares.map(|s| s.0),
        "counts": counts,
        "counts_skipped": counts_off,
    });
    (md, json)
}

// ---------------------------------------------------------------------------------- main

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args[0].starts_with('-') {
        usage();
    }
    let pgo = std::fs::canonicalize(&args[0]).unwrap_or_else(|e| {
        eprintln!("real-bench: {}: {e}", args[0]);
        std::process::exit(2);
    });
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--reps" | "--program" | "--json" | "--markdown" | "--work" if i + 1 < args.len() => {
                i += 2;
            }
            "--no-counts" => i += 1,
            _ => {
                eprintln!("real-bench: unexpected argument {:?}", args[i]);
                usage();
            }
        }
    }
    let reps: usize = arg(&args, "--reps", 7).max(1);
    let chosen: Vec<&str> = args
        .windows(2)
        .filter(|w| w[0] == "--program")
        .map(|w| w[1].as_str())
        .collect();
    for name in &chosen {
        if !PROGRAMS.iter().any(|s| s.name == *name) {
            eprintln!("real-bench: unknown program {name:?}");
            usage();
        }
    }
    let specs: Vec<&'static Spec> = PROGRAMS
        .iter()
        .filter(|s| chosen.is_empty() || chosen.contains(&s.name))
        .collect();
    let json_out = arg(&args, "--json", String::new());
    let md_out = arg(&args, "--markdown", String::new());
    let work = match args.windows(2).find(|w| w[0] == "--work") {
        Some(w) => PathBuf::from(&w[1]),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace root")
            .join("target/bench/real"),
    };
    let work = std::fs::create_dir_all(work.join("tmp"))
        .and_then(|()| std::fs::canonicalize(&work))
        .unwrap_or_else(|e| {
            eprintln!("real-bench: cannot create {}: {e}", work.display());
            std::process::exit(1);
        });
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let counts_off = counts_off(&args);

    let start = Instant::now();
    let load_start = load_average();
    if let Err(e) = ensure_inputs(&work.join("inputs")) {
        eprintln!("real-bench: generating the inputs failed: {e}");
        std::process::exit(1);
    }
    let mut results = Vec::new();
    let mut differing = 0;
    for spec in specs {
        let mut r = ProgramResult::new(spec);
        differing += run_program(spec, &pgo, &work, reps, counts_off.is_none(), &mut r);
        results.push(r);
    }
    let wall = start.elapsed().as_secs_f64();
    let (md, json) = report(
        &results,
        reps,
        &command_line,
        wall,
        [load_start, load_average()],
        counts_off.as_deref(),
    );
    print!("{md}");
    if !md_out.is_empty() {
        write_atomic(Path::new(&md_out), &md);
    }
    if !json_out.is_empty() {
        write_atomic(
            Path::new(&json_out),
            &serde_json::to_string_pretty(&json).expect("JSON"),
        );
    }
    if differing > 0 {
        eprintln!(
            "!!! {differing} variant(s) printed something else than plain: PGO changed a \
             program's output"
        );
        std::process::exit(1);
    }
    if !results
        .iter()
        .any(|r| r.variants.iter().any(|v| !v.seconds.is_empty()))
    {
        eprintln!("nothing could be measured");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many lines of `doc` start with `prefix`.
    fn lines_starting(doc: &str, prefix: &str) -> usize {
        doc.lines().filter(|l| l.starts_with(prefix)).count()
    }

    #[test]
    fn markdown_documents_are_deterministic_and_mix_differently() {
        let train = markdown(&MARKDOWN_TRAIN, 400_000);
        let measure = markdown(&MARKDOWN_MEASURE, 400_000);
        assert_eq!(train, markdown(&MARKDOWN_TRAIN, 400_000));
        assert!(train.len() >= 400_000 && measure.len() >= 400_000);
        assert_ne!(train[..1000], measure[..1000]);
        // Every fence is closed, every table has its delimiter row.
        for doc in [&train, &measure] {
            assert_eq!(lines_starting(doc, "```") % 2, 0);
            assert!(lines_starting(doc, "|---") + lines_starting(doc, "|:--") > 0);
        }
        // Training: more code blocks and list items; measured: more tables, quotes, emphasis
        // and links.
        let more = |prefix: &str| lines_starting(&train, prefix) > lines_starting(&measure, prefix);
        assert!(more("```rust") && more("- "));
        let fewer =
            |prefix: &str| lines_starting(&train, prefix) < lines_starting(&measure, prefix);
        assert!(fewer("| ") && fewer("> "));
        let per_kb = |doc: &str, needle: &str| doc.matches(needle).count() * 1000 / doc.len();
        assert!(per_kb(&train, "](https://") < per_kb(&measure, "](https://"));
        assert!(per_kb(&train, " *") < per_kb(&measure, " *"));
    }

    /// Writes `measure` to `dir/measure.sh`; the closure runs it with `$1` set to `bin`.
    fn measure_runner(dir: &Path, measure: &str) -> impl Fn(&str) -> std::process::Output {
        let measure_sh = dir.join("measure.sh");
        std::fs::write(&measure_sh, measure).unwrap();
        move |bin| {
            Command::new("sh")
                .arg(&measure_sh)
                .arg(bin)
                .stderr(Stdio::null())
                .output()
                .unwrap()
        }
    }

    /// `measure` run with `cat` as the program prints the checksum of `text` (the measured
    /// files, in order), and fails when the program fails.
    fn assert_measure_checksums(dir: &Path, measure: &str, text: &str) {
        let run = measure_runner(dir, measure);
        let cat = run("cat");
        assert!(cat.status.success());
        let cksum = Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s' {} | cksum", sq(text)))
            .output()
            .unwrap();
        assert_eq!(cat.stdout, cksum.stdout);
        assert!(!run("false").status.success());
    }

    #[test]
    fn rhai_scripts_run_every_script_and_checksum_what_the_measured_ones_print() {
        let dir = std::env::temp_dir().join(format!("real-bench-rhai-{}", std::process::id()));
        fresh_dir(&dir).unwrap();
        ensure_scripts(&dir).unwrap();
        let spec = PROGRAMS.iter().find(|s| s.name == "rhai").unwrap();
        assert_eq!(
            Program::build_words(spec),
            [
                "cargo",
                "build",
                "--release",
                "--quiet",
                "--bin",
                "rhai-run",
                "--features",
                "bin-features"
            ]
        );
        let (train, measure) = scripts(spec, &dir, &dir);
        for (name, _) in &RHAI_TRAIN {
            assert!(train.contains(name), "{train}");
        }
        // `cat` prints the scripts themselves: the checksum covers both, in order.
        let both: String = RHAI_MEASURE.iter().map(|(_, text)| *text).collect();
        assert_measure_checksums(&dir, &measure, &both);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn jrsonnet_is_built_locked_trained_three_times_and_its_output_checksummed() {
        let dir = std::env::temp_dir().join(format!("real-bench-jsonnet-{}", std::process::id()));
        fresh_dir(&dir).unwrap();
        ensure_scripts(&dir).unwrap();
        let spec = PROGRAMS.iter().find(|s| s.name == "jrsonnet").unwrap();
        assert_eq!(
            Program::build_words(spec),
            ["cargo", "build", "--release", "--quiet", "--locked"]
        );
        let (train, measure) = scripts(spec, &dir, &dir);
        assert_eq!(train.matches(JSONNET_TRAIN.0).count(), 3, "{train}");
        assert_measure_checksums(&dir, &measure, JSONNET_MEASURE.1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn minijinja_renders_records_it_can_read_trained_three_times_and_checksummed() {
        let dir = std::env::temp_dir().join(format!("real-bench-jinja-{}", std::process::id()));
        fresh_dir(&dir).unwrap();
        ensure_scripts(&dir).unwrap();
        let spec = PROGRAMS.iter().find(|s| s.name == "minijinja-cli").unwrap();
        assert_eq!(
            Program::build_words(spec),
            ["cargo", "build", "--release", "--quiet", "--locked"]
        );
        let (train, measure) = scripts(spec, &dir, &dir);
        assert_eq!(train.matches(MINIJINJA_TRAIN.0).count(), 3, "{train}");
        assert_eq!(
            train.matches("records.json' > /dev/null").count(),
            3,
            "{train}"
        );
        // A stand-in for the records: `cat` prints the template, then them.
        std::fs::write(dir.join("minijinja/records.json"), "{}").unwrap();
        assert_measure_checksums(&dir, &measure, &format!("{}{{}}", MINIJINJA_MEASURE.1));
        let _ = std::fs::remove_dir_all(&dir);
        // The context is a map (minijinja-cli refuses an array) with every field the templates
        // use.
        let records: serde_json::Value = serde_json::from_str(&minijinja_records()).unwrap();
        assert_eq!(records["title"], "Report");
        let items = records["items"].as_array().unwrap();
        assert_eq!(items.len(), 20_000);
        for it in [&items[0], &items[19_999]] {
            assert!(it["id"].is_u64() && it["name"].is_string() && it["price"].is_f64());
            assert_eq!(it["tags"].as_array().unwrap().len(), 3);
            assert!(it["qty"].as_u64().unwrap() <= 20);
            assert!(it["owner"]["name"].is_string() && it["owner"]["age"].is_u64());
        }
    }

    #[test]
    fn pulldown_cmark_scripts_enable_tables_and_fail_when_the_program_fails() {
        let dir = std::env::temp_dir().join(format!("real-bench-test-{}", std::process::id()));
        fresh_dir(&dir).unwrap();
        std::fs::write(dir.join("measure.md"), "# a\n").unwrap();
        let spec = PROGRAMS
            .iter()
            .find(|s| s.name == "pulldown-cmark")
            .unwrap();
        let (train, measure) = scripts(spec, &dir, &dir);
        let train_md = path_word(&dir.join("train.md"));
        assert_eq!(
            train
                .matches(&format!("\"$1\" -T < {train_md} > /dev/null"))
                .count(),
            2,
            "{train}"
        );
        let run = measure_runner(&dir, &measure);
        // `cat -T` shows tabs as ^I: the checksum is of what the program printed.
        let cat = run("cat");
        assert!(cat.status.success());
        let cksum = Command::new("sh")
            .arg("-c")
            .arg("printf '# a\\n' | cksum")
            .output()
            .unwrap();
        assert_eq!(cat.stdout, cksum.stdout);
        assert!(!run("false").status.success());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A program whose variants were timed (`seconds`) and counted (instructions, mispredicts,
    /// I1 misses).
    fn program(
        name: &'static str,
        variants: [(&'static str, f64, u64, u64, u64); 4],
    ) -> ProgramResult {
        let spec = PROGRAMS.iter().find(|s| s.name == name).unwrap();
        let mut r = ProgramResult::new(spec);
        for (variant, seconds, instructions, mispredicts, i1_misses) in variants {
            r.push(
                variant,
                Ok(Built {
                    binary: PathBuf::from("/bin/true"),
                    steps: vec![("build", 1.0)],
                }),
            );
            let v = r.variants.last_mut().unwrap();
            v.seconds = vec![seconds];
            v.counts = Some(Ok(Counts {
                instructions,
                mispredicts,
                i1_misses: Some(i1_misses),
                processes: 5,
            }));
        }
        r
    }

    #[test]
    fn counts_are_reported_per_program_and_summarized() {
        let a = program(
            "pulldown-cmark",
            [
                ("plain", 1.0, 1_000_000, 1_000, 400),
                ("control", 1.0, 1_000_000, 1_000, 400),
                ("instr", 1.0, 800_000, 500, 320),
                ("pgo", 1.0, 900_000, 800, 500),
            ],
        );
        let mut b = program(
            "bzip2",
            [
                ("plain", 1.0, 2_000_000, 100, 200),
                ("control", 1.0, 2_000_000, 100, 200),
                ("instr", 1.0, 1_000_000, 100, 100),
                ("pgo", 1.0, 1_000_000, 100, 100),
            ],
        );
        b.variants[3].counts = Some(Err(
            "valgrind … sh measure.sh failed (exit status: 1)".into()
        ));
        let (md, json) = report(&[a, b], 1, "real-bench pgo", 1.0, [None, None], None);
        assert!(
            md.contains(
                "`valgrind --tool=cachegrind --cache-sim=yes --branch-sim=yes \
                 --trace-children=yes sh measure.sh BIN`"
            ),
            "{md}"
        );
        assert!(
            md.contains("Deterministic counts (cachegrind, `measure.sh`, every process summed):"),
            "{md}"
        );
        // The I1 misses are what shows a pgo build that executes fewer instructions than
        // plain and misses the instruction cache more.
        assert!(
            md.contains(
                "| variant | instructions | vs plain | mispredicts | vs plain | I1 misses | vs \
                 plain | share of instr gain (instructions) |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| instr | 800,000 | 1.250x | 500 | 2.000x | 320 | 1.250x | 100% |"),
            "{md}"
        );
        // (1e6/9e5 − 1) / (1e6/8e5 − 1) = 0.111… / 0.25
        assert!(
            md.contains("| pgo | 900,000 | 1.111x | 800 | 1.250x | 500 | 0.800x | 44% |"),
            "{md}"
        );
        assert!(md.contains("| pgo | failed: valgrind … sh measure.sh failed (exit status: 1) |"));
        // instr: geomean of 1.25 and 2 = 1.581x over 2 programs, by instructions and by I1
        // misses alike; pgo counted in one.
        assert!(md.contains(
            "| variant | programs | geomean instructions vs plain | share of instr gain \
             (instructions) | geomean I1 misses vs plain |"
        ));
        assert!(
            md.contains("| instr | 2 | 1.581x | 100% | 1.581x |"),
            "{md}"
        );
        assert!(md.contains("| pgo | 1 | 1.111x | 19% | 0.800x |"), "{md}");
        assert!(md.contains("pgo's share of instr's gain is 44%"), "{md}");
        assert!(
            md.contains("over the 1 programs where both were counted"),
            "{md}"
        );
        let pgo = &json["programs"][0]["variants"][3];
        assert_eq!(pgo["instructions"], 900_000);
        assert_eq!(pgo["processes_counted"], 5);
        assert_eq!(pgo["i1_misses"], 500);
        let pgo_i1 = json["counts"]["geomeans"][3]["geomean_i1_misses_vs_plain"]
            .as_f64()
            .unwrap();
        assert!((pgo_i1 - 0.8).abs() < 1e-9, "{pgo_i1}");
        assert_eq!(
            json["programs"][1]["variants"][3]["instructions"],
            serde_json::Value::Null
        );
        assert_eq!(json["counts"]["geomeans"][2]["programs"], 2);
        let share = json["counts"]["pgo_share_of_instr_gain_percent"]
            .as_f64()
            .unwrap();
        assert!((share - 400.0 / 9.0).abs() < 1e-9, "{share}");

        let (md, json) = report(
            &[],
            1,
            "real-bench pgo",
            1.0,
            [None, None],
            Some("--no-counts"),
        );
        assert!(md.contains("Deterministic counts (cachegrind): not taken (--no-counts)."));
        assert_eq!(json["counts"], serde_json::Value::Null);
        assert_eq!(json["counts_skipped"], "--no-counts");
    }
}
