//! `pgo-record`: the recording half of pgo's sampling profiler, on Linux `perf_event_open`.
//!
//! **What it is for:** running a command (or attaching to a running process), sampling it with a
//! software clock event (`cpu-clock`/`task-clock`, [`DEFAULT_FREQUENCY`] by default) across every thread and
//! every child it forks or execs, and returning the *raw* data: samples (IP, pid/tid, time, CPU,
//! period, the kernel's frame-pointer callchain with its `PERF_CONTEXT_*` markers, and optionally
//! the user registers + a copy of the user stack for DWARF unwinding) plus the process side-band
//! records needed to make sense of them later (MMAP2 with build IDs, COMM, FORK, EXIT, LOST,
//! THROTTLE), with the initial state of an attached process synthesized from `/proc`.
//!
//! **What it is not for:** it does not symbolize addresses, does not unwind DWARF (it only copies
//! the stack an unwinder needs), does not write pprof or perf.data, and has no CLI. Those are
//! `pgo collect`, the symbolization crate and the DWARF unwinder, which consume [`Recording`] or
//! the [`Event`] stream.
//!
//! # Use
//! ```no_run
//! use pgo_record::{record, RecordOptions, Target};
//! let rec = record(&Target::spawn(["./my-program", "--arg"]), &RecordOptions::default())?;
//! println!("{} samples, {} lost", rec.samples.len(), rec.lost);
//! # Ok::<(), pgo_record::Error>(())
//! ```
//! [`record`] collects everything in memory; [`record_with`] streams decoded events to a callback
//! and keeps only counters, for bounded memory.
//!
//! # Design
//! * **Per-CPU ring buffers, pid-scoped, `inherit = 1`** in both modes (what `perf record` does):
//!   one event per CPU with `pid = target, cpu = i`. `inherit` makes the kernel clone the event into
//!   every thread and process the target creates afterwards, and such inherited events can only be
//!   mmapped per CPU (the kernel refuses `mmap` of an inherited `cpu = -1` event), so per-thread
//!   buffers could not follow new threads.
//! * **Spawn**: fork; the child blocks on a pipe until the events (`disabled`, `enable_on_exec`)
//!   are open on its pid, then `execve`s, which enables them exactly at the new image; a
//!   close-on-exec pipe reports `execve` failure. No ptrace.
//! * **Attach**: one event per existing thread (from `/proc/PID/task`) and CPU, all redirected
//!   (`PERF_EVENT_IOC_SET_OUTPUT`) into that CPU's single buffer; threads created later are
//!   inherited. Threads that appear while attaching are re-scanned until none is missing (a thread
//!   whose FORK record we saw was inherited and is not opened twice). Existing executable mappings
//!   and thread names are synthesized from `/proc/PID/maps` and `/proc/PID/task/*/comm`.
//! * **Times** are `CLOCK_MONOTONIC` (`use_clockid`), comparable with [`monotonic_ns`].
//! * **Reading**: `poll()` on the buffers (woken at a quarter full) and a pidfd of the target, with
//!   a short timeout so the stop flag is seen promptly; each wake-up drains every buffer
//!   (acquire-load of `data_head`, release-store of `data_tail`, records may wrap around the end)
//!   and delivers that round's events sorted by time.
//! * **Stopping**: when the target exits (spawn mode: the spawned command itself, reaped, its
//!   status and CPU time returned; attach mode: the process is gone or a zombie), when
//!   `duration` elapses, when the caller's stop flag is set, or when the callback breaks. The
//!   events are disabled and the buffers drained once more, so the recording is complete in every
//!   case. A spawned command still running then gets SIGTERM (SIGKILL after `kill_grace`).
//!
//! # Limitations
//! * Only software clock events (no PMU here); no LBR, no hardware callchains.
//! * Attach mode follows the target's threads and the children it creates *after* attaching;
//!   child processes that already existed are not recorded (like `perf record -p`).
//! * Spawn mode ends with the spawned command: descendants still running are not waited for.
//! * Synthesized mappings of an attached process carry device/inode, not build IDs.

mod error;
mod model;
mod parse;
mod procfs;
mod ring;
mod session;
mod spawn;
mod sys;

use std::ffi::OsString;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub use error::{Error, Result};
pub use model::{
    CallchainContext, ChildExit, CommEvent, CpuMode, Event, FileId, Frame, LostEvent, MmapEvent,
    Recording, RecordingInfo, Sample, StopReason, Summary, TaskEvent, ThrottleEvent, UserRegs,
};
pub use session::{Capabilities, probe};
/// The x86-64 user registers a sample carries for unwinding (`perf_regs.h` indices), for
/// readers of other recordings of the same records (perf.data).
pub use sys::{PERF_REG_X86_BP, PERF_REG_X86_IP, PERF_REG_X86_SP, UNWIND_REGS_MASK};

/// The sampling clock. There is no hardware PMU on pgo's machines, so only software clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SoftwareEvent {
    /// `PERF_COUNT_SW_CPU_CLOCK` (what `perf record` falls back to without a PMU).
    #[default]
    CpuClock,
    /// `PERF_COUNT_SW_TASK_CLOCK`.
    TaskClock,
}

impl SoftwareEvent {
    pub fn name(self) -> &'static str {
        match self {
            SoftwareEvent::CpuClock => "cpu-clock",
            SoftwareEvent::TaskClock => "task-clock",
        }
    }
}

/// What to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Run `program` with `args` (`args[0]` is the program name, as for `execv`), following every
    /// thread and child process it creates.
    Spawn {
        program: OsString,
        args: Vec<OsString>,
    },
    /// Attach to the running process `pid`: all its threads, and those created later.
    Attach { pid: u32 },
}

impl Target {
    /// Spawn `argv[0]` (looked up in `PATH` unless it contains a `/`) with arguments `argv`.
    pub fn spawn<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = argv.into_iter().map(Into::into).collect();
        Target::Spawn {
            program: args.first().cloned().unwrap_or_default(),
            args,
        }
    }

    pub fn attach(pid: u32) -> Self {
        Target::Attach { pid }
    }
}

/// Samples per second of CPU time unless asked otherwise: perf record's own default. At
/// 999 Hz a few seconds of training gave profiles whose builds differed run to run (interp:
/// 28–44 M mispredicts in five builds from five profiles of one input; 23–30 M in five at
/// 4–5 kHz), for about 0.2 s more collection per second of the program's CPU time.
pub const DEFAULT_FREQUENCY: u32 = 4000;

/// How to record. `Default` gives [`DEFAULT_FREQUENCY`] cpu-clock with user+kernel callchains and build IDs.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub event: SoftwareEvent,
    /// Samples per second of CPU time (`freq = 1`). Must not exceed
    /// `kernel.perf_event_max_sample_rate`.
    pub frequency: u32,
    /// Deepest callchain (clamped to `kernel.perf_event_max_stack`).
    pub max_stack: u16,
    /// DWARF mode: copy this many bytes of user stack (rounded up to 8, at most 65 528) plus the
    /// IP/SP/BP user registers with every sample. `None` (default) records callchains only.
    pub user_stack: Option<u32>,
    /// Include the user-space part of callchains (the kernel's frame-pointer walk). A DWARF
    /// unwinder that has the stack copy can turn it off and save the kernel that walk.
    pub user_callchain: bool,
    /// Sample the kernel too (kernel frames in callchains). When refused (`perf_event_paranoid`
    /// of 2 or more without CAP_PERFMON) the recorder falls back to user space only and says so
    /// in [`RecordingInfo::kernel_included`].
    pub include_kernel: bool,
    /// Ask for build IDs in MMAP2 records (falls back to device/inode when unsupported).
    pub build_ids: bool,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop when the caller sets this (e.g. from a Ctrl-C handler); seen within `poll_interval`.
    pub stop: Option<Arc<AtomicBool>>,
    /// Data pages per CPU buffer (a power of two). Default 128 (512 KiB), 1024 in DWARF mode.
    pub buffer_pages: Option<usize>,
    /// Longest wait between two drains (and stop-flag checks).
    pub poll_interval: Duration,
    /// Spawn mode, when recording stops before the command ends: SIGTERM, and SIGKILL after this.
    pub kill_grace: Duration,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            event: SoftwareEvent::CpuClock,
            frequency: DEFAULT_FREQUENCY,
            max_stack: 127,
            user_stack: None,
            user_callchain: true,
            include_kernel: true,
            build_ids: true,
            duration: None,
            stop: None,
            buffer_pages: None,
            poll_interval: Duration::from_millis(50),
            kill_grace: Duration::from_secs(1),
        }
    }
}

/// Record `target` and return everything in memory, sorted by time. Ends when the target exits,
/// the duration elapses or the stop flag is set; the recording is complete in all three cases.
pub fn record(target: &Target, options: &RecordOptions) -> Result<Recording> {
    let mut recording = Recording::new(session::placeholder_info());
    let summary = record_with(target, options, |event| {
        recording.push(event);
        ControlFlow::Continue(())
    })?;
    recording.finish(&summary);
    Ok(recording)
}

/// Record `target`, handing each decoded event to `on_event` as buffers are drained (memory stays
/// bounded by the ring buffers). Events come in rounds: sorted by time within a round, while a
/// round may hold events slightly older than the previous one's last. Synthesized `/proc` state
/// (attach mode) comes first. Return `ControlFlow::Break` to stop recording.
pub fn record_with(
    target: &Target,
    options: &RecordOptions,
    on_event: impl FnMut(Event) -> ControlFlow<()>,
) -> Result<Summary> {
    session::run(target, options, on_event)
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of every event time.
pub fn monotonic_ns() -> u64 {
    sys::monotonic_ns()
}
