//! Shared pieces of pgo's benchmarks: timing a child process (wall time and peak RSS),
//! medians, and argument lookup; for the build benchmarks (`speedup-bench`, `real-bench`),
//! running logged build steps, progress lines, the report's ratios, and atomic output files.
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
