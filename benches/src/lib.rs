//! Shared pieces of pgo's benchmarks: timing a child process (wall time and peak RSS),
//! medians, and argument lookup. Each benchmark binary runs the anchor tool in the same run.

use std::process::Command;
use std::time::Instant;

pub struct Timing {
    pub seconds: f64,
    pub max_rss_kib: i64,
}

/// Runs `cmd`, returning wall time and the child's peak RSS, read from wait4's rusage.
pub fn time(cmd: &mut Command) -> Timing {
    use std::os::unix::process::ExitStatusExt;
    cmd.stdout(std::process::Stdio::null());
    cmd.stderr(std::process::Stdio::null());
    let start = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 writes an int status and a struct rusage, both valid for writes; the child
    // is ours and not yet reaped.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(r, pid, "wait4 failed");
    let exit = std::process::ExitStatus::from_raw(status);
    assert!(exit.success(), "{cmd:?} failed: {exit}");
    drop(child); // already reaped above; dropping a Child neither waits nor kills
    Timing {
        seconds,
        max_rss_kib: usage.ru_maxrss,
    }
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
