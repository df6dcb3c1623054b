//! Shared pieces of pgo's benchmarks: timing a child process (wall time and peak RSS),
//! medians, and argument lookup; for the build benchmarks (`speedup-bench`, `real-bench`),
//! running logged build steps, progress lines, the report's ratios, atomic output files, and
//! deterministic counts under cachegrind (running it, reading its summaries, their tables).
//! Each benchmark binary runs the anchor tool in the same run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub struct Timing {
    pub seconds: f64,
    pub max_rss_kib: i64,
}

/// Runs `cmd`, returning wall time and the child's peak RSS, read from wait4's rusage; panics
/// when the command cannot run or fails (see [`try_time`]).
pub fn time(cmd: &mut Command) -> Timing {
    try_time(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// [`time`], with an error instead of a panic when the command cannot run or fails.
pub fn try_time(cmd: &mut Command) -> Result<Timing, String> {
    use std::os::unix::process::ExitStatusExt;
    cmd.stdout(Stdio::null());
    cmd.stderr(Stdio::null());
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 writes an int status and a struct rusage, both valid for writes; the child
    // is ours and not yet reaped.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = start.elapsed().as_secs_f64();
    drop(child); // already reaped above (or wait4 failed); dropping a Child neither waits nor kills
    if r != pid {
        return Err(format!("wait4 failed: {}", std::io::Error::last_os_error()));
    }
    let exit = std::process::ExitStatus::from_raw(status);
    if !exit.success() {
        return Err(format!("{cmd:?} failed: {exit}"));
    }
    Ok(Timing {
        seconds,
        max_rss_kib: usage.ru_maxrss,
    })
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A xorshift generator: deterministic input data, the same on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

// ------------------------------------------------------------------------- build benchmarks

/// Variables of the caller's environment that would change what a build does.
pub const BUILD_VARS: [&str; 10] = [
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTC_BOOTSTRAP",
    "CARGO_TARGET_DIR",
    "CFLAGS",
    "LDFLAGS",
    "CCC_OVERRIDE_OPTIONS",
    "GOFLAGS",
    "LLVM_PROFILE_FILE",
];

/// The fastest of `times`.
pub fn fastest(times: &[f64]) -> f64 {
    times.iter().copied().fold(f64::INFINITY, f64::min)
}

/// One line of progress per step on stderr: `interp: building instr (3/10)…`.
pub struct Progress {
    /// The fixture or program the steps are of.
    pub fixture: String,
    pub step: usize,
    pub total: usize,
}

impl Progress {
    pub fn step(&mut self, what: &str) {
        self.step += 1;
        eprintln!("{}: {what} ({}/{})…", self.fixture, self.step, self.total);
    }
}

/// A command without the caller's [`BUILD_VARS`].
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    for v in BUILD_VARS {
        c.env_remove(v);
    }
    c
}

/// Runs `cmd` with its output appended to `log`; the error names the log's last lines.
pub fn run(cmd: &mut Command, log: &Path) -> Result<(), String> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot write {}: {e}", log.display()))?;
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    let _ = writeln!(
        file,
        "$ {} {}",
        cmd.get_program().to_string_lossy(),
        args.join(" ")
    );
    let err = file.try_clone().map_err(|e| e.to_string())?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .status()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(6).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "{} failed ({status}); log {}:\n    {}",
        cmd.get_program().to_string_lossy(),
        log.display(),
        tail.join("\n    ")
    ))
}

/// Wall time of `cmd` (output to `log`).
pub fn run_timed(cmd: &mut Command, log: &Path) -> Result<f64, String> {
    let start = Instant::now();
    run(cmd, log)?;
    Ok(start.elapsed().as_secs_f64())
}

/// A fresh directory for one variant's build and files.
pub fn fresh_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// `path`, or an error when the build did not produce it.
pub fn exists(path: PathBuf) -> Result<PathBuf, String> {
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("the build did not produce {}", path.display()))
    }
}

/// `1.234x`, or nothing.
pub fn ratio(x: Option<f64>) -> String {
    x.map(|x| format!("{x:.3}x")).unwrap_or_default()
}

/// (plain/variant − 1) / (plain/anchor − 1), when the anchor gained at least 1%.
pub fn share(speedup: Option<f64>, anchor: Option<f64>) -> Option<f64> {
    let (s, a) = (speedup?, anchor?);
    (a - 1.0 >= 0.01).then(|| 100.0 * (s - 1.0) / (a - 1.0))
}

/// (max − min) / median, in percent.
pub fn spread(xs: &[f64]) -> f64 {
    let max = xs.iter().copied().fold(f64::MIN, f64::max);
    let min = xs.iter().copied().fold(f64::MAX, f64::min);
    100.0 * (max - min) / median(xs.to_vec())
}

/// The 1-minute load average, to show how busy the machine was.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The geometric mean.
pub fn geomean(xs: &[f64]) -> f64 {
    (xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp()
}

/// The first line of an error, made fit for a Markdown table cell.
pub fn short(e: &str) -> String {
    let first = e.lines().next().unwrap_or(e).replace('|', "/");
    if first.len() > 110 {
        format!("{}…", &first[..first.floor_char_boundary(110)])
    } else {
        first
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn try_write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// [`try_write_atomic`] for a report, saying on stderr when it failed.
pub fn write_atomic(path: &Path, text: &str) {
    if let Err(e) = try_write_atomic(path, text.as_bytes()) {
        eprintln!("{e}");
    }
}

/// pgo's share of instrumentation PGO's gain over the fixtures or programs where both were
/// measured, from their (instr, pgo) speedups over plain: (share %, instr geomean, pgo
/// geomean), when instr gained at least 1%.
pub fn pgo_share(both: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    if both.is_empty() {
        return None;
    }
    let gi = geomean(&both.iter().map(|b| b.0).collect::<Vec<_>>());
    let gp = geomean(&both.iter().map(|b| b.1).collect::<Vec<_>>());
    share(Some(gp), Some(gi)).map(|s| (s, gi, gp))
}

/// The Markdown paragraph saying [`pgo_share`] over `count` `what` (fixtures, programs).
pub fn pgo_share_paragraph(shares: Option<(f64, f64, f64)>, count: usize, what: &str) -> String {
    match shares {
        Some((s, gi, gp)) => format!(
            "**pgo gets {s:.0}% of instrumentation PGO's gain** (geomean {gp:.3}x against \
             {gi:.3}x over the {count} {what} where both were measured).\n"
        ),
        None => "pgo's share of instrumentation PGO's gain: not computable (instr gained under \
                 1% or was not measured).\n"
            .to_string(),
    }
}

/// The geometric mean of `ratio` over the `items` that have it, and how many do.
pub fn geomean_over<T>(items: &[T], ratio: impl Fn(&T) -> Option<f64>) -> Option<(f64, usize)> {
    let xs: Vec<f64> = items.iter().filter_map(ratio).collect();
    (!xs.is_empty()).then(|| (geomean(&xs), xs.len()))
}

// ------------------------------------------------------------------------- cachegrind counts

/// The variants counted under cachegrind: a run under valgrind takes 20–40 times as long as the
/// program alone, so only the baseline, pgo's flags, the anchor and pgo.
pub const COUNTED: [&str; 4] = ["plain", "control", "instr", "pgo"];

/// valgrind's options for a count: instructions executed and branch mispredicts, without the
/// cache simulation, which would about double cachegrind's time (16 to 34 s on one fixture).
pub const CACHEGRIND: [&str; 3] = ["--tool=cachegrind", "--cache-sim=no", "--branch-sim=yes"];

/// [`CACHEGRIND`] with the cache simulation, for its I1 misses: the instruction count alone
/// does not show a build that grew (inlined) out of the instruction cache. They move with where
/// the linker put the hot code too (builds with the same flags differ by a quarter), so they
/// are a hint, confirmed by time.
pub const CACHEGRIND_WITH_CACHES: [&str; 3] =
    ["--tool=cachegrind", "--cache-sim=yes", "--branch-sim=yes"];

/// Instructions executed, branch mispredicts (of cachegrind's simple predictor model) and, with
/// the cache simulation, I1 misses of one run under cachegrind, summed over the processes
/// valgrind reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub instructions: u64,
    pub mispredicts: u64,
    /// Misses of cachegrind's simulated first-level instruction cache; `None` when the cache
    /// simulation was off ([`CACHEGRIND`]).
    pub i1_misses: Option<u64>,
    /// How many processes' summaries were summed: one, unless valgrind traced children.
    pub processes: usize,
}

/// Why the counts cannot be taken, when valgrind does not run.
pub fn valgrind_missing() -> Option<String> {
    match Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("`valgrind --version` failed ({s})")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(
            "valgrind is not on PATH (install it, e.g. `apt-get install valgrind`, or pass \
             --no-counts)"
                .into(),
        ),
        Err(e) => Some(format!("cannot run valgrind: {e}")),
    }
}

/// [`Counts`] from cachegrind's summaries on stderr, e.g.
/// `==4316== I   refs:      11,531,596,001`,
/// `==4316== Mispredicts:      213,167,974  ( 16,710,824 cond + 196,457,150 ind)` and, with the
/// cache simulation, `==8397== I1  misses:            2,404`.
/// Only valgrind's own lines (prefixed `==PID==`) are read, since the program's stderr is mixed
/// in; the key's inner spaces are not significant and thousands separators are dropped.
///
/// Under `--trace-children=yes` every process prints its own summary, and those of processes
/// running at the same time interleave: each `Mispredicts:` and `I1 misses:` line belongs to
/// the last `I refs:` line of its PID, and all summaries are summed. A process that calls exec
/// prints none for the image it leaves (the new image's valgrind starts over under the same
/// PID), so nothing is counted twice. Every summary must have a `Mispredicts:` line; the
/// `I1 misses:` lines are all there (the cache simulation was on) or none is.
pub fn parse_cachegrind(stderr: &str) -> Result<Counts, String> {
    struct Summary<'a> {
        pid: &'a str,
        instructions: u64,
        mispredicts: Option<u64>,
        i1_misses: Option<u64>,
    }
    let mut summaries: Vec<Summary> = Vec::new();
    for line in stderr.lines() {
        let Some((pid, rest)) = line
            .strip_prefix("==")
            .and_then(|l| l.split_once("=="))
            .filter(|(pid, _)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Some((key, value)) = rest.split_once(':') else {
            continue;
        };
        let key = key.split_whitespace().collect::<Vec<_>>().join(" ");
        // Not "I1 miss rate" nor "Mispred rate": their percentages are not counts.
        if !matches!(
            key.as_str(),
            "I refs" | "Mispredicts" | "Mispred" | "I1 misses"
        ) {
            continue;
        }
        let number: String = value
            .split_whitespace()
            .next()
            .unwrap_or("")
            .chars()
            .filter(|&c| c != ',')
            .collect();
        let n = number
            .parse::<u64>()
            .map_err(|_| format!("cannot read the count of {line:?}"))?;
        if key == "I refs" {
            summaries.push(Summary {
                pid,
                instructions: n,
                mispredicts: None,
                i1_misses: None,
            });
        } else {
            let own = summaries.iter_mut().rev().find(|s| s.pid == pid);
            let slot = own.map(|s| {
                if key == "I1 misses" {
                    &mut s.i1_misses
                } else {
                    &mut s.mispredicts
                }
            });
            match slot {
                Some(slot) if slot.is_none() => *slot = Some(n),
                _ => {
                    return Err(format!(
                        "process {pid}'s `{key}:` line follows no `I refs:` line of its own"
                    ));
                }
            }
        }
    }
    if summaries.is_empty() {
        return Err("no `I refs:` line in valgrind's output".into());
    }
    let cache_sim = summaries.iter().any(|s| s.i1_misses.is_some());
    let mut counts = Counts {
        instructions: 0,
        mispredicts: 0,
        i1_misses: cache_sim.then_some(0),
        processes: summaries.len(),
    };
    for s in summaries {
        let pid = s.pid;
        let Some(m) = s.mispredicts else {
            return Err(format!(
                "no `Mispredicts:` line in valgrind's output for process {pid} (--branch-sim=yes)"
            ));
        };
        counts.instructions += s.instructions;
        counts.mispredicts += m;
        if let Some(total) = &mut counts.i1_misses {
            // A process without them would be left out of the sum, understating it.
            let Some(i1) = s.i1_misses else {
                return Err(format!(
                    "no `I1 misses:` line in valgrind's output for process {pid}, though other \
                     processes have one (--cache-sim=yes)"
                ));
            };
            *total += i1;
        }
    }
    Ok(counts)
}

/// Counts `variant`: one run of `valgrind OPTIONS --cachegrind-out-file=OUT_FILE ARGS...`
/// (`OPTIONS`: [`CACHEGRIND`], or [`CACHEGRIND_WITH_CACHES`] for the I1 misses too; `ARGS`:
/// more options of valgrind's, then the command) with `env` added to the environment, its
/// stdout and stderr written to `log`, and a line on stderr saying the counts or the error
/// (`what` names the run in it).
pub fn cachegrind(
    variant: &str,
    options: &[&str],
    args: &[std::ffi::OsString],
    env: &[(&str, &str)],
    out_file: &Path,
    log: &Path,
    what: &str,
) -> Result<Counts, String> {
    let start = Instant::now();
    let counts = cachegrind_run(options, args, env, out_file, log, what);
    eprintln!(
        "{}",
        counted_line(variant, &counts, start.elapsed().as_secs_f64())
    );
    counts
}

fn cachegrind_run(
    options: &[&str],
    args: &[std::ffi::OsString],
    env: &[(&str, &str)],
    out_file: &Path,
    log: &Path,
    what: &str,
) -> Result<Counts, String> {
    let mut out_option = std::ffi::OsString::from("--cachegrind-out-file=");
    out_option.push(out_file);
    let out = command("valgrind")
        .args(options)
        .arg(out_option)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run valgrind: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::write(
        log,
        format!("{}{stderr}", String::from_utf8_lossy(&out.stdout)),
    );
    if !out.status.success() {
        // valgrind exits with the program's status; the last line not of its summary (the
        // program's or valgrind's own complaint) says why.
        let why = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with("==") && !l.starts_with("--"))
            .map(|l| format!(": {}", l.trim()))
            .unwrap_or_default();
        return Err(format!(
            "valgrind … {what} failed ({}){why}; log {}",
            out.status,
            log.display()
        ));
    }
    parse_cachegrind(&stderr).map_err(|e| format!("{e}; log {}", log.display()))
}

/// Why the counts are not taken, when so: `--no-counts` among `args`, or valgrind missing (said
/// on stderr).
pub fn counts_off(args: &[String]) -> Option<String> {
    if args.iter().any(|a| a == "--no-counts") {
        return Some("--no-counts".to_string());
    }
    let missing = valgrind_missing();
    if let Some(why) = &missing {
        eprintln!("deterministic counts (cachegrind) skipped: {why}");
    }
    missing
}

/// The progress line of one variant's count: `  pgo: 1,234 instructions, 56 mispredicts, 78 I1
/// misses (40 s)` (the I1 misses when counted, and how many processes were summed, when more
/// than one), or why it failed.
fn counted_line(variant: &str, counts: &Result<Counts, String>, seconds: f64) -> String {
    match counts {
        Ok(c) => format!(
            "  {variant}: {} instructions, {} mispredicts{}{} ({seconds:.0} s)",
            thousands(c.instructions),
            thousands(c.mispredicts),
            c.i1_misses
                .map(|n| format!(", {} I1 misses", thousands(n)))
                .unwrap_or_default(),
            if c.processes > 1 {
                format!(" in {} processes", c.processes)
            } else {
                String::new()
            }
        ),
        Err(e) => format!("  {variant}: cachegrind FAILED: {e}"),
    }
}

/// A variant's counts as JSON fields: `instructions`, `mispredicts`, `i1_misses`,
/// `processes_counted` and `counts_error`, null when not counted (`i1_misses` also when the
/// cache simulation was off).
pub fn counts_fields(
    counts: Option<&Result<Counts, String>>,
) -> serde_json::Map<String, serde_json::Value> {
    let ok = counts.and_then(|c| c.as_ref().ok());
    let fields = serde_json::json!({
        "instructions": ok.map(|c| c.instructions),
        "mispredicts": ok.map(|c| c.mispredicts),
        "i1_misses": ok.and_then(|c| c.i1_misses),
        "processes_counted": ok.map(|c| c.processes),
        "counts_error": counts.and_then(|c| c.as_ref().err()),
    });
    match fields {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("an object"),
    }
}

/// `11,531,596,001`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A variant's counts in a report: its name, and its counts or why they could not be taken.
pub type Counted<'a> = (&'a str, &'a Result<Counts, String>);

/// The counted ones of `variants` (name, counts when counted).
pub fn counted<'a>(
    variants: impl IntoIterator<Item = (&'a str, Option<&'a Result<Counts, String>>)>,
) -> Vec<Counted<'a>> {
    variants
        .into_iter()
        .filter_map(|(name, c)| Some((name, c?)))
        .collect()
}

/// plain/variant of `count` (instructions, mispredicts or I1 misses) among one fixture's or
/// program's `counted` variants, when both have it.
pub fn count_ratio(
    counted: &[Counted],
    name: &str,
    count: fn(&Counts) -> Option<u64>,
) -> Option<f64> {
    let of = |name| {
        let (_, c) = counted.iter().find(|(n, _)| *n == name)?;
        c.as_ref().ok().and_then(count)
    };
    let (p, v) = (of("plain")?, of(name)?);
    (v > 0).then(|| p as f64 / v as f64)
}

fn instructions(c: &Counts) -> Option<u64> {
    Some(c.instructions)
}

fn mispredicts(c: &Counts) -> Option<u64> {
    Some(c.mispredicts)
}

fn i1_misses(c: &Counts) -> Option<u64> {
    c.i1_misses
}

/// Whether some of `counted` were counted with the cache simulation: the reports have I1
/// columns only then, so those of counts without it (speedup-bench's) stay as they were.
fn has_i1_misses(counted: &[Counted]) -> bool {
    counted
        .iter()
        .any(|(_, c)| c.as_ref().is_ok_and(|c| c.i1_misses.is_some()))
}

/// How a report names the run that was counted and what its counts are summarized over.
pub struct CountsOf<'a> {
    /// The counted run, e.g. "`measure 1`".
    pub run: &'a str,
    /// The summary's column and JSON key: "fixtures", "programs".
    pub column: &'a str,
    /// What the summary is over, in a sentence: "Rust fixtures", "programs".
    pub over: &'a str,
}

/// The table of one fixture's or program's counted variants, ratios against plain's (I1
/// misses too, when counted), with the share of `anchor`'s instruction reduction; nothing when
/// no variant was counted.
pub fn counts_table(md: &mut String, of: &CountsOf, anchor: &str, counted: &[Counted]) {
    use std::fmt::Write as _;
    if counted.is_empty() {
        return;
    }
    let with_i1 = has_i1_misses(counted);
    let (i1_head, i1_rule, i1_failed) = if with_i1 {
        (" I1 misses | vs plain |", "---:|---:|", " | |")
    } else {
        ("", "", "")
    };
    let _ = writeln!(
        md,
        "Deterministic counts (cachegrind, {}):\n\n| variant | instructions | vs plain \
         | mispredicts | vs plain |{i1_head} share of {anchor} gain (instructions) |\n\
         |---|---:|---:|---:|---:|{i1_rule}---:|",
        of.run
    );
    let anchor = count_ratio(counted, anchor, instructions);
    for &(name, result) in counted {
        match result {
            Ok(c) => {
                let ratio_i = count_ratio(counted, name, instructions);
                let sh = share(ratio_i, anchor);
                let i1 = if with_i1 {
                    format!(
                        " {} | {} |",
                        c.i1_misses.map(thousands).unwrap_or_default(),
                        ratio(count_ratio(counted, name, i1_misses))
                    )
                } else {
                    String::new()
                };
                let _ = writeln!(
                    md,
                    "| {name} | {} | {} | {} | {} |{i1} {} |",
                    thousands(c.instructions),
                    ratio(ratio_i),
                    thousands(c.mispredicts),
                    ratio(count_ratio(counted, name, mispredicts)),
                    sh.map(|s| format!("{s:.0}%")).unwrap_or_default()
                );
            }
            Err(e) => {
                let _ = writeln!(md, "| {name} | failed: {} | | | |{i1_failed} |", short(e));
            }
        }
    }
    md.push('\n');
}

/// The summary of the counts of several fixtures or programs (`each`: one's counted variants):
/// geometric means of plain/variant instructions (and I1 misses, when counted) and pgo's share
/// of instr's instruction reduction. Returns them as JSON.
pub fn counts_summary(md: &mut String, of: &CountsOf, each: &[Vec<Counted>]) -> serde_json::Value {
    use std::fmt::Write as _;
    let (run, column, over) = (of.run, of.column, of.over);
    let with_i1 = each.iter().any(|c| has_i1_misses(c));
    let (what, i1_head, i1_rule, i1_none) = if with_i1 {
        (
            "instructions executed and of plain/variant I1 misses",
            " geomean I1 misses vs plain |",
            "---:|",
            " |",
        )
    } else {
        ("instructions executed", "", "", "")
    };
    let _ = writeln!(
        md,
        "Deterministic counts (cachegrind, {run}): geometric means of plain/variant {what} over \
         the {over} where the variant was counted (counts, not time).\n\n| variant | {column} \
         | geomean instructions vs plain | share of instr gain (instructions) |{i1_head}\n\
         |---|---:|---:|---:|{i1_rule}"
    );
    let geo = |name: &str, count: fn(&Counts) -> Option<u64>| {
        geomean_over(each, |c| count_ratio(c, name, count))
    };
    let instr = geo("instr", instructions).map(|(g, _)| g);
    let mut rows = Vec::new();
    for name in COUNTED {
        let Some((g, n)) = geo(name, instructions) else {
            let _ = writeln!(md, "| {name} | 0 | | |{i1_none}");
            continue;
        };
        let sh = share(Some(g), instr);
        let g_i1 = geo(name, i1_misses).map(|(g, _)| g);
        let i1 = if with_i1 {
            format!(" {} |", ratio(g_i1))
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {name} | {n} | {g:.3}x | {} |{i1}",
            sh.map(|s| format!("{s:.0}%")).unwrap_or_default()
        );
        rows.push(serde_json::json!({
            "variant": name,
            column: n,
            "geomean_instructions_vs_plain": g,
            "share_of_instr_gain_percent": sh,
            "geomean_i1_misses_vs_plain": g_i1,
        }));
    }
    let both: Vec<(f64, f64)> = each
        .iter()
        .filter_map(|c| {
            Some((
                count_ratio(c, "instr", instructions)?,
                count_ratio(c, "pgo", instructions)?,
            ))
        })
        .collect();
    let shares = pgo_share(&both);
    let _ = match shares {
        Some((s, gi, gp)) => writeln!(
            md,
            "\nBy instructions executed, pgo's share of instr's gain is {s:.0}% (geomean \
             plain/variant {gp:.3}x against {gi:.3}x over the {} {over} where both were \
             counted).\n",
            both.len()
        ),
        None => writeln!(
            md,
            "\npgo's share of instr's gain by instructions executed: not computable (instr \
             executed less than 1% fewer instructions than plain, or was not counted).\n"
        ),
    };
    serde_json::json!({"geomeans": rows, "pgo_share_of_instr_gain_percent": shares.map(|s| s.0)})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(instructions: u64, mispredicts: u64) -> Counts {
        Counts {
            instructions,
            mispredicts,
            i1_misses: None,
            processes: 1,
        }
    }

    /// valgrind-3.19.0's stderr of `suite-interp measure 1` (plain build) under
    /// `--tool=cachegrind --cache-sim=no --branch-sim=yes`, as captured on the dev machine.
    const INTERP: &str = "\
==4316== Cachegrind, a cache and branch-prediction profiler
==4316== Copyright (C) 2002-2017, and GNU GPL'd, by Nicholas Nethercote et al.
==4316== Using Valgrind-3.19.0 and LibVEX; rerun with -h for copyright info
==4316== Command: /work/main/target/bench-builds/interp/plain/release/suite-interp measure 1
==4316== 
--4316-- warning: L3 cache found, using its data for the LL simulation.
==4316== 
==4316== I   refs:      11,531,596,001
==4316== 
==4316== Branches:       1,459,608,246  (818,267,537 cond + 641,340,709 ind)
==4316== Mispredicts:      213,167,974  ( 16,710,824 cond + 196,457,150 ind)
==4316== Mispred rate:            14.6% (        2.0%     +        30.6%   )
";

    #[test]
    fn cachegrind_summary_is_parsed() {
        assert_eq!(
            parse_cachegrind(INTERP),
            Ok(one(11_531_596_001, 213_167_974))
        );
        // suite-graph's, other widths; with the program's own stderr mixed in, which must not
        // be read even when it looks like a summary line.
        let graph = "\
I refs: 1
==4724== I   refs:      3,137,916,885
==4724== 
warning: Mispredicts: 99
==4724== Branches:        634,676,290  (634,675,080 cond + 1,210 ind)
==4724== Mispredicts:      47,880,391  ( 47,879,989 cond +   402 ind)
==4724== Mispred rate:            7.5% (        7.5%     +  33.2%   )
";
        assert_eq!(parse_cachegrind(graph), Ok(one(3_137_916_885, 47_880_391)));
    }

    #[test]
    fn cachegrind_summary_without_branch_simulation_is_an_error() {
        let no_branches: String = INTERP
            .lines()
            .filter(|l| !l.contains("Mispred"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            parse_cachegrind(&no_branches)
                .unwrap_err()
                .contains("Mispredicts")
        );
        assert!(parse_cachegrind("").unwrap_err().contains("I refs"));
        assert!(parse_cachegrind("==1== I   refs:      12x\n").is_err());
    }

    /// valgrind-3.19.0's stderr of real-bench's pulldown-cmark `measure.sh` (plain build) under
    /// `--tool=cachegrind --cache-sim=no --branch-sim=yes --trace-children=yes
    /// --cachegrind-out-file=/dev/null sh measure.sh BIN`, as captured on the dev machine: the
    /// shell (29687), the command substitution's subshell (29688), the pipeline's left side
    /// (29689), cksum (29690) and pulldown-cmark (29691).
    const PULLDOWN_CMARK: &str = "\
==29687== Cachegrind, a cache and branch-prediction profiler
==29687== Copyright (C) 2002-2017, and GNU GPL'd, by Nicholas Nethercote et al.
==29687== Using Valgrind-3.19.0 and LibVEX; rerun with -h for copyright info
==29687== Command: sh measure.sh plain/target/release/pulldown-cmark
==29687== 
--29687-- warning: L3 cache found, using its data for the LL simulation.
==29690== Cachegrind, a cache and branch-prediction profiler
==29690== Copyright (C) 2002-2017, and GNU GPL'd, by Nicholas Nethercote et al.
==29690== Using Valgrind-3.19.0 and LibVEX; rerun with -h for copyright info
==29690== Command: /usr/bin/cksum
==29690== 
--29690-- warning: L3 cache found, using its data for the LL simulation.
==29691== Cachegrind, a cache and branch-prediction profiler
==29691== Copyright (C) 2002-2017, and GNU GPL'd, by Nicholas Nethercote et al.
==29691== Using Valgrind-3.19.0 and LibVEX; rerun with -h for copyright info
==29691== Command: plain/target/release/pulldown-cmark -T
==29691== 
--29691-- warning: L3 cache found, using its data for the LL simulation.
==29691== 
==29691== I   refs:      1,807,677,319
==29691== 
==29691== Branches:        327,984,019  (303,433,092 cond + 24,550,927 ind)
==29691== Mispredicts:      19,289,089  ( 10,517,799 cond +  8,771,290 ind)
==29691== Mispred rate:            5.9% (        3.5%     +       35.7%   )
==29689== 
==29689== I   refs:      262,232
==29689== 
==29689== Branches:       46,837  (45,375 cond + 1,462 ind)
==29689== Mispredicts:     5,798  ( 5,442 cond +   356 ind)
==29689== Mispred rate:     12.4% (  12.0%     +  24.4%   )
==29690== 
==29690== I   refs:      14,511,976
==29690== 
==29690== Branches:         626,302  (619,663 cond + 6,639 ind)
==29690== Mispredicts:        8,634  (  8,304 cond +   330 ind)
==29690== Mispred rate:         1.4% (    1.3%     +   5.0%   )
==29688== 
==29688== I   refs:      254,630
==29688== 
==29688== Branches:       45,588  (44,182 cond + 1,406 ind)
==29688== Mispredicts:     5,514  ( 5,183 cond +   331 ind)
==29688== Mispred rate:     12.1% (  11.7%     +  23.5%   )
==29687== 
==29687== I   refs:      260,712
==29687== 
==29687== Branches:       46,340  (44,861 cond + 1,479 ind)
==29687== Mispredicts:     5,626  ( 5,280 cond +   346 ind)
==29687== Mispred rate:     12.1% (  11.8%     +  23.4%   )
";

    #[test]
    fn cachegrind_summaries_of_traced_children_are_summed() {
        // 1,807,677,319 + 262,232 + 14,511,976 + 254,630 + 260,712 instructions;
        // 19,289,089 + 5,798 + 8,634 + 5,514 + 5,626 mispredicts.
        assert_eq!(
            parse_cachegrind(PULLDOWN_CMARK),
            Ok(Counts {
                instructions: 1_822_966_869,
                mispredicts: 19_314_661,
                i1_misses: None,
                processes: 5,
            })
        );
    }

    #[test]
    fn interleaved_summaries_pair_by_pid() {
        // Two processes' summaries interleaved: each `Mispredicts:` line goes with its own
        // PID's `I refs:` line.
        let text = "\
==7== I   refs:      100
==8== I   refs:      20
==7== Mispredicts:     3  ( 2 cond + 1 ind)
==8== Mispredicts:     1  ( 1 cond + 0 ind)
";
        assert_eq!(
            parse_cachegrind(text),
            Ok(Counts {
                instructions: 120,
                mispredicts: 4,
                i1_misses: None,
                processes: 2,
            })
        );
        let orphan = "==7== I   refs:      100\n==8== Mispredicts:     1\n";
        assert!(parse_cachegrind(orphan).unwrap_err().contains("process 8"));
        let missing = "==7== I   refs:      100\n==8== I   refs:      20\n==7== Mispredicts: 3\n";
        let e = parse_cachegrind(missing).unwrap_err();
        assert!(e.contains("Mispredicts") && e.contains("process 8"), "{e}");
    }

    #[test]
    fn counts_as_json_fields_and_progress_lines() {
        let c = Ok(Counts {
            instructions: 1_822_966_869,
            mispredicts: 19_314_661,
            i1_misses: None,
            processes: 5,
        });
        let fields = counts_fields(Some(&c));
        assert_eq!(fields["instructions"], 1_822_966_869u64);
        assert_eq!(fields["processes_counted"], 5);
        assert_eq!(fields["i1_misses"], serde_json::Value::Null);
        assert_eq!(fields["counts_error"], serde_json::Value::Null);
        assert_eq!(counts_fields(None)["instructions"], serde_json::Value::Null);
        let failed: Result<Counts, String> = Err("valgrind … failed".into());
        assert_eq!(
            counts_fields(Some(&failed))["counts_error"],
            "valgrind … failed"
        );
        assert_eq!(
            counted_line("plain", &c, 10.4),
            "  plain: 1,822,966,869 instructions, 19,314,661 mispredicts in 5 processes (10 s)"
        );
        assert_eq!(
            counted_line("pgo", &failed, 1.0),
            "  pgo: cachegrind FAILED: valgrind … failed"
        );
        let with_caches = Ok(Counts {
            i1_misses: Some(45_100_000),
            ..c.clone().unwrap()
        });
        assert_eq!(counts_fields(Some(&with_caches))["i1_misses"], 45_100_000);
        assert_eq!(
            counted_line("pgo", &with_caches, 10.4),
            "  pgo: 1,822,966,869 instructions, 19,314,661 mispredicts, 45,100,000 I1 misses in 5 \
             processes (10 s)"
        );
    }

    /// valgrind-3.19.0's stderr of a speedup-bench fixture's `measure 1` under
    /// `--tool=cachegrind --cache-sim=yes --branch-sim=yes`, as captured on the dev machine.
    const WITH_CACHES: &str = "\
==8397== I   refs:      8,857,659,675
==8397== I1  misses:            2,404
==8397== LLi misses:            2,177
==8397== I1  miss rate:          0.00%
==8397== LLi miss rate:          0.00%
==8397== 
==8397== D   refs:      2,047,649,833  (1,760,097,228 rd   + 287,552,605 wr)
==8397== D1  misses:      107,795,261  (  102,896,458 rd   +   4,898,803 wr)
==8397== LLd misses:        1,010,582  (        1,686 rd   +   1,008,896 wr)
==8397== D1  miss rate:           5.3% (          5.8%     +         1.7%  )
==8397== LLd miss rate:           0.0% (          0.0%     +         0.4%  )
==8397== 
==8397== LL refs:         107,797,665  (  102,898,862 rd   +   4,898,803 wr)
==8397== LL misses:         1,012,759  (        3,863 rd   +   1,008,896 wr)
==8397== LL miss rate:            0.0% (          0.0%     +         0.4%  )
==8397== 
==8397== Branches:      1,777,009,790  (1,772,178,208 cond +   4,831,582 ind)
==8397== Mispredicts:      44,885,965  (   44,884,697 cond +       1,268 ind)
==8397== Mispred rate:            2.5% (          2.5%     +         0.0%   )
";

    #[test]
    fn cachegrind_summary_with_cache_simulation_has_i1_misses() {
        // The `I1  misses:` count, not its `I1  miss rate:` (0.00%) nor the LLi or D1 misses.
        assert_eq!(
            parse_cachegrind(WITH_CACHES),
            Ok(Counts {
                instructions: 8_857_659_675,
                mispredicts: 44_885_965,
                i1_misses: Some(2_404),
                processes: 1,
            })
        );
        // Without the cache simulation there are none, and no error.
        assert_eq!(parse_cachegrind(INTERP).unwrap().i1_misses, None);
    }

    /// The summaries of `sh -c 'ls >/dev/null; true'` (sh 8940, ls 8942) under
    /// `--tool=cachegrind --cache-sim=yes --branch-sim=yes --trace-children=yes`, as captured on
    /// the dev machine, without their D and LL lines.
    const SH_LS: [&str; 2] = [
        "\
==8942== I   refs:      767,047
==8942== I1  misses:      2,229
==8942== LLi misses:      1,981
==8942== I1  miss rate:    0.29%
==8942== LLi miss rate:    0.26%
==8942== Branches:      131,648  (124,194 cond +  7,454 ind)
==8942== Mispredicts:    10,746  ( 10,041 cond +    705 ind)
==8942== Mispred rate:      8.2% (    8.1%     +    9.5%   )
",
        "\
==8940== I   refs:      230,250
==8940== I1  misses:      1,625
==8940== LLi misses:      1,586
==8940== I1  miss rate:    0.71%
==8940== LLi miss rate:    0.69%
==8940== Branches:       41,539  (40,336 cond +  1,203 ind)
==8940== Mispredicts:     4,859  ( 4,601 cond +    258 ind)
==8940== Mispred rate:     11.7% (  11.4%     +   21.4%   )
",
    ];

    /// Two summaries interleaved line by line, as those of processes exiting at once are.
    fn interleave(a: &str, b: &str) -> String {
        a.lines()
            .zip(b.lines())
            .map(|(a, b)| format!("{a}\n{b}\n"))
            .collect()
    }

    #[test]
    fn i1_misses_of_traced_children_are_summed() {
        // 767,047 + 230,250 instructions; 10,746 + 4,859 mispredicts; 2,229 + 1,625 I1 misses.
        assert_eq!(
            parse_cachegrind(&interleave(SH_LS[0], SH_LS[1])),
            Ok(Counts {
                instructions: 997_297,
                mispredicts: 15_605,
                i1_misses: Some(3_854),
                processes: 2,
            })
        );
    }

    #[test]
    fn i1_misses_of_only_some_processes_are_an_error() {
        // The sum would leave out the process without them.
        let without_i1: String = SH_LS[1]
            .lines()
            .filter(|l| !l.contains("I1  misses"))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = parse_cachegrind(&interleave(SH_LS[0], &without_i1)).unwrap_err();
        assert!(e.contains("I1 misses") && e.contains("process 8940"), "{e}");
        // Nor may a process have two.
        let twice = format!("{}==8942== I1  misses:      7\n", SH_LS[0]);
        assert!(
            parse_cachegrind(&twice)
                .unwrap_err()
                .contains("process 8942")
        );
    }

    const COUNTS_OF: CountsOf = CountsOf {
        run: "`measure.sh`",
        column: "programs",
        over: "programs",
    };

    #[test]
    fn i1_columns_only_when_i1_misses_were_counted() {
        let failed: Result<Counts, String> = Err("valgrind … failed".into());
        let (plain, pgo) = (Ok(one(1_000, 10)), Ok(one(900, 10)));
        let without = vec![("plain", &plain), ("instr", &failed), ("pgo", &pgo)];
        let mut md = String::new();
        counts_table(&mut md, &COUNTS_OF, "instr", &without);
        assert!(
            md.contains(
                "| variant | instructions | vs plain | mispredicts | vs plain | share of instr \
                 gain (instructions) |\n|---|---:|---:|---:|---:|---:|\n"
            ),
            "{md}"
        );
        assert!(md.contains("| instr | failed: valgrind … failed | | | | |\n"));
        assert!(
            md.contains("| pgo | 900 | 1.111x | 10 | 1.000x |  |\n"),
            "{md}"
        );
        counts_summary(&mut md, &COUNTS_OF, &[without]);
        assert!(md.contains("| pgo | 1 | 1.111x |  |\n"), "{md}");
        assert!(!md.contains("I1"), "{md}");

        let with_i1 = |instructions, i1| {
            Ok(Counts {
                i1_misses: Some(i1),
                ..one(instructions, 10)
            })
        };
        let (plain, pgo) = (with_i1(1_000, 400), with_i1(900, 500));
        let with = vec![("plain", &plain), ("instr", &failed), ("pgo", &pgo)];
        let mut md = String::new();
        counts_table(&mut md, &COUNTS_OF, "instr", &with);
        assert!(
            md.contains(
                "| mispredicts | vs plain | I1 misses | vs plain | share of instr gain \
                 (instructions) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
            ),
            "{md}"
        );
        assert!(md.contains("| instr | failed: valgrind … failed | | | | | | |\n"));
        assert!(
            md.contains("| pgo | 900 | 1.111x | 10 | 1.000x | 500 | 0.800x |  |\n"),
            "{md}"
        );
        let json = counts_summary(&mut md, &COUNTS_OF, &[with]);
        assert!(
            md.contains(
                "| share of instr gain (instructions) | geomean I1 misses vs plain |\n\
                 |---|---:|---:|---:|---:|\n"
            ),
            "{md}"
        );
        assert!(md.contains("| pgo | 1 | 1.111x |  | 0.800x |\n"), "{md}");
        assert!(md.contains("| instr | 0 | | | |\n"), "{md}");
        let pgo_i1 = json["geomeans"][1]["geomean_i1_misses_vs_plain"]
            .as_f64()
            .unwrap();
        assert!((pgo_i1 - 0.8).abs() < 1e-9, "{pgo_i1}");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(11_531_596_001), "11,531,596,001");
    }
}
