//! Sampling: pprof-rs's SIGPROF profiler run for a while, its raw stacks taken out unresolved,
//! the profiler's own frames cut off, and the CPU time the process spent meanwhile measured
//! to tell how many samples were lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::Error;

/// Libraries pprof-rs must not take samples in: unwinding from a signal that interrupted
/// them can deadlock or crash (the dynamic loader's and the unwinder's own locks, the vDSO
/// without unwind tables). A sample whose leaf is in one of them is dropped by pprof-rs, and
/// counts as dropped in [`SampleStats`].
const BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

/// Whether this crate is profiling right now (pprof-rs has one profiler per process).
static PROFILING: AtomicBool = AtomicBool::new(false);

/// Held while a profile is being taken; lets the next one start when dropped.
pub(crate) struct ProfilingSlot(());

impl ProfilingSlot {
    /// Takes the one profiling slot of the process, or says it is taken.
    pub(crate) fn acquire() -> Result<ProfilingSlot, Error> {
        PROFILING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ProfilingSlot(()))
            .map_err(|_| Error::Busy)
    }
}

impl Drop for ProfilingSlot {
    fn drop(&mut self) {
        PROFILING.store(false, Ordering::Release);
    }
}

/// How many samples a profile should have had, and how many it got.
///
/// pprof-rs asks the kernel for `SIGPROF` every `1/frequency` seconds of the process's CPU
/// time (`setitimer(ITIMER_PROF)`). The kernel merges a signal into one already pending, and
/// pprof-rs throws away a sample whose handler finds another thread's handler running, or
/// whose leaf is in a blocklisted library (libc, libgcc, libpthread, the vDSO). The expected
/// count is the process CPU time (user + system, `getrusage(RUSAGE_SELF)`) over the window
/// times the frequency; what is missing was lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleStats {
    /// The sampling frequency asked for, in Hz of CPU time.
    pub frequency_hz: u32,
    /// Wall-clock time the profiler ran.
    pub wall_time: Duration,
    /// CPU time the whole process used meanwhile, all threads (user + system).
    pub cpu_time: Duration,
    /// `cpu_time × frequency_hz`, rounded.
    pub expected_samples: u64,
    /// Samples pprof-rs recorded (before this crate trims its frames; none are discarded).
    pub received_samples: u64,
}

impl SampleStats {
    /// Samples that were expected and not received (0 when more arrived than expected,
    /// which timer granularity allows).
    pub fn dropped_samples(&self) -> u64 {
        self.expected_samples.saturating_sub(self.received_samples)
    }

    /// The dropped fraction of the expected samples, `0.0..=1.0` (0 when none were expected).
    pub fn drop_ratio(&self) -> f64 {
        if self.expected_samples == 0 {
            0.0
        } else {
            self.dropped_samples() as f64 / self.expected_samples as f64
        }
    }

    /// The sentence the profile carries as a comment:
    /// `expected N samples from CPU time, received M (K% dropped)`.
    pub fn summary(&self) -> String {
        format!(
            "expected {} samples from CPU time, received {} ({:.1}% dropped)",
            self.expected_samples,
            self.received_samples,
            self.drop_ratio() * 100.0
        )
    }
}

/// One distinct stack pprof-rs recorded, already trimmed of the profiler's own frames.
pub(crate) struct RawStack {
    /// Instruction addresses, leaf first. `addresses[0]` is the interrupted instruction
    /// (exact when the signal frame was found); the others are return addresses.
    pub addresses: Vec<u64>,
    /// Whether `addresses[0]` is the exact interrupted instruction rather than a return
    /// address (false only when the signal trampoline could not be recognized).
    pub leaf_is_exact: bool,
    /// The thread as pprof-rs identifies it: `pthread_self()`, not the kernel TID.
    pub thread_id: u64,
    /// The thread's name as `pthread_getname_np` gave it (at most 15 bytes).
    pub thread_name: String,
    pub count: u64,
}

/// What one sampling run produced.
pub(crate) struct RawProfile {
    pub stacks: Vec<RawStack>,
    pub stats: SampleStats,
    pub start_time: SystemTime,
    /// Stacks in which the signal handler frame was not found, kept untrimmed.
    pub untrimmed_stacks: u64,
}

/// Lets a caller end a sampling run early (the agent stopping).
#[derive(Default)]
pub(crate) struct StopSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl StopSignal {
    pub(crate) fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }

    pub(crate) fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps for `duration` or until stopped; returns whether it was stopped.
    fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if *stopped {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stopped = self
                .wake
                .wait_timeout(stopped, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Process CPU time so far, user + system, all threads.
fn process_cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let micros = |tv: libc::timeval| tv.tv_sec.max(0) as u64 * 1_000_000 + tv.tv_usec.max(0) as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// The `SIGPROF` handler pprof-rs installed and the signal-return trampoline the C library
/// registered with it, read back from the kernel while the profiler runs. They tell where
/// the profiler's frames end in each stack, without symbolizing anything.
#[derive(Debug, Clone, Copy, Default)]
struct SignalFrames {
    handler: u64,
    restorer: u64,
}

fn current_sigprof_handler() -> SignalFrames {
    // SAFETY: with a null new action, sigaction only reads the current one into `old`.
    unsafe {
        let mut old = std::mem::zeroed::<libc::sigaction>();
        if libc::sigaction(libc::SIGPROF, std::ptr::null(), &mut old) != 0 {
            return SignalFrames::default();
        }
        SignalFrames {
            handler: old.sa_sigaction as u64,
            restorer: old.sa_restorer.map_or(0, |f| f as usize as u64),
        }
    }
}

/// Samples the whole process with pprof-rs at `frequency_hz` for `duration` (or until `stop`).
pub(crate) fn sample(
    duration: Duration,
    frequency_hz: u32,
    stop: Option<&StopSignal>,
) -> Result<RawProfile, Error> {
    let hz = i32::try_from(frequency_hz)
        .ok()
        .filter(|hz| (1..=1_000_000).contains(hz))
        .ok_or_else(|| {
            Error::InvalidConfig(format!("frequency {frequency_hz} Hz is out of range"))
        })?;
    let start_time = SystemTime::now();
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(hz)
        .blocklist(&BLOCKLIST)
        .build()
        .map_err(|e| match e {
            pprof::Error::Running => Error::Busy,
            other => Error::Profiler(other.to_string()),
        })?;
    let cpu_start = process_cpu_time();
    let wall_start = Instant::now();
    let signal_frames = current_sigprof_handler();

    match stop {
        Some(stop) => {
            if stop.sleep(duration) {
                return Err(Error::Stopped);
            }
        }
        None => std::thread::sleep(duration),
    }

    let cpu_time = process_cpu_time().saturating_sub(cpu_start);
    let wall_time = wall_start.elapsed();
    let report = guard.report().build_unresolved();
    drop(guard);
    let report = report.map_err(|e| Error::Profiler(e.to_string()))?;

    let mut stacks = Vec::with_capacity(report.data.len());
    let mut received = 0u64;
    let mut untrimmed_stacks = 0u64;
    for (frames, count) in &report.data {
        let Ok(count) = u64::try_from(*count) else {
            continue;
        };
        received += count;
        let raw: Vec<(u64, u64)> = frames
            .frames
            .iter()
            .map(|f| (f.ip() as u64, f.symbol_address() as usize as u64))
            .collect();
        let (mut addresses, leaf_is_exact) = match trim_profiler_frames(&raw, signal_frames) {
            Some(trimmed) => trimmed,
            None => {
                untrimmed_stacks += 1;
                (raw.iter().map(|(ip, _)| *ip).collect(), false)
            }
        };
        // The unwinder ends a stack with a frame at address 0 (past `clone3` or `_start`).
        addresses.retain(|&address| address != 0);
        if addresses.is_empty() {
            continue;
        }
        let name_len = frames.thread_name_length.min(frames.thread_name.len());
        stacks.push(RawStack {
            addresses,
            leaf_is_exact,
            thread_id: frames.thread_id,
            thread_name: String::from_utf8_lossy(&frames.thread_name[..name_len]).into_owned(),
            count,
        });
    }

    let expected = (cpu_time.as_secs_f64() * f64::from(frequency_hz)).round() as u64;
    Ok(RawProfile {
        stacks,
        stats: SampleStats {
            frequency_hz,
            wall_time,
            cpu_time,
            expected_samples: expected,
            received_samples: received,
        },
        start_time,
        untrimmed_stacks,
    })
}

/// Cuts the leaf end of a stack pprof-rs recorded inside its signal handler: the unwinder's
/// and the handler's frames, and the kernel's signal-return trampoline, so the stack starts
/// at the interrupted instruction. `frames` are `(ip, function start)` pairs, leaf first.
/// Returns `None` when the handler is not in the stack.
fn trim_profiler_frames(frames: &[(u64, u64)], signal: SignalFrames) -> Option<(Vec<u64>, bool)> {
    if signal.handler == 0 {
        return None;
    }
    let handler = frames
        .iter()
        .rposition(|&(ip, start)| start == signal.handler || ip == signal.handler)?;
    let rest = &frames[handler + 1..];
    // The handler returns into the trampoline (`__restore_rt`), whose frame the unwinder
    // reports at the trampoline's first instruction; the frame after it is the interrupted
    // one, at the exact instruction the signal arrived on.
    match rest.first() {
        Some(&(ip, start))
            if signal.restorer != 0
                && (start == signal.restorer
                    || (signal.restorer..signal.restorer + 16).contains(&ip)) =>
        {
            Some((rest[1..].iter().map(|(ip, _)| *ip).collect(), true))
        }
        _ => Some((rest.iter().map(|(ip, _)| *ip).collect(), false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_handler_and_trampoline() {
        let signal = SignalFrames {
            handler: 0x1000,
            restorer: 0x2000,
        };
        let frames = [
            (0x900, 0x800),   // unwinder
            (0x1040, 0x1000), // perf_signal_handler
            (0x2000, 0x2000), // __restore_rt
            (0x3004, 0x3000), // interrupted
            (0x4010, 0x4000), // caller
        ];
        assert_eq!(
            trim_profiler_frames(&frames, signal),
            Some((vec![0x3004, 0x4010], true))
        );
        let no_trampoline = [(0x1040, 0x1000), (0x3004, 0x3000)];
        assert_eq!(
            trim_profiler_frames(&no_trampoline, signal),
            Some((vec![0x3004], false))
        );
        assert_eq!(trim_profiler_frames(&frames[3..], signal), None);
        assert_eq!(trim_profiler_frames(&frames, SignalFrames::default()), None);
    }

    #[test]
    fn stats_summary() {
        let stats = SampleStats {
            frequency_hz: 100,
            wall_time: Duration::from_secs(2),
            cpu_time: Duration::from_secs(4),
            expected_samples: 400,
            received_samples: 390,
        };
        assert_eq!(stats.dropped_samples(), 10);
        assert_eq!(
            stats.summary(),
            "expected 400 samples from CPU time, received 390 (2.5% dropped)"
        );
        let more = SampleStats {
            received_samples: 401,
            ..stats
        };
        assert_eq!(more.dropped_samples(), 0);
        assert_eq!(more.drop_ratio(), 0.0);
    }
}
