//! An in-process CPU profiling endpoint for Rust services, so that
//! `pgo collect --url http://127.0.0.1:PORT/debug/pprof/profile?seconds=N` works for a Rust
//! service the way it does for a Go one with `net/http/pprof`.
//!
//! **For:** long-running Rust programs on Linux (x86-64) that want to hand out CPU profiles on
//! demand. One call starts a small HTTP server on a thread of its own; `GET
//! /debug/pprof/profile?seconds=N` samples the whole process for N seconds with pprof-rs
//! (`setitimer(ITIMER_PROF)` and `SIGPROF`) and answers a gzipped pprof CPU profile that keeps
//! what pgo's analysis needs and pprof-rs's own writer drops: the exact address of every
//! location, one mapping per mapped file with its build ID and file offset, source lines with
//! inline frames innermost first and function start lines (symbolized in-process by
//! pgo-symbolize from `/proc/self/maps`), and `thread_id`/`thread_name` labels.
//!
//! **Not for:** profiling other processes (that is `pgo collect` with perf), heap, lock or
//! goroutine-style profiles (only `/debug/pprof/profile` is served), exposing anything to the
//! network by default (it binds loopback unless [`Config::allow_non_loopback`] is set; there
//! is no authentication or TLS), async runtimes (it needs none and integrates with none), or
//! high-rate sampling (see below). It is not a general HTTP server.
//!
//! ```no_run
//! let agent = pgo_agent::start(pgo_agent::Config::default())?;
//! println!("listening on {}", agent.addr());
//! // ... serve; `agent.stop()` or dropping it stops the endpoint.
//! # Ok::<(), pgo_agent::Error>(())
//! ```
//!
//! # Protocol
//!
//! - `GET /debug/pprof/profile?seconds=N` → `200`, `Content-Type: application/octet-stream`,
//!   `Content-Disposition: attachment; filename="profile"`, body a gzipped pprof profile
//!   with sample types `samples/count` and `cpu/nanoseconds`, `period` = 1e9/Hz ns.
//!   `seconds` absent or empty means [`Config::default_seconds`] (30, as in Go).
//! - `seconds` not a whole number from 1 to [`Config::max_seconds`] → `400` with the reason
//!   in plain text. (Go silently profiles 30 s for a bad value; a typo here should not cost
//!   half a minute.)
//! - While a profile is being taken, another request → `409 Conflict` at once, plain text.
//!   pprof-rs has one profiler per process, so the choice is between refusing and queueing;
//!   refusing tells the client right away instead of holding its connection for up to
//!   `max_seconds` (Go answers `500` "cpu profiling already in use"). The same `409` comes
//!   when something else in the process runs pprof-rs.
//! - Any other path → `404`; another method on the profile path → `405`; the agent
//!   stopping while a profile is taken → `503`.
//!
//! # Sampling rate and lost samples
//!
//! The kernel sends `SIGPROF` per 1/Hz of the *process's* CPU time, merges signals that are
//! still pending, and pprof-rs discards a sample whose handler finds another thread's handler
//! busy, or whose leaf is in libc, libgcc, libpthread or the vDSO (unwinding there is unsafe).
//! Each profile therefore says how complete it is, in a comment
//! `expected N samples from CPU time, received M (K% dropped)` (N = CPU time of the process
//! over the window, from `getrusage`, × Hz) and in [`SampleStats`]. Measured on a 2-core
//! x86-64 Linux machine (`cargo run --release -p pgo-agent --example drop_rate`): about 75 %
//! of samples are lost at 1000 Hz (the kernel delivers at most its tick rate, 250 Hz here),
//! 0–16 % at 250 Hz, none at 100 Hz, which is the default, as in Go. Figures in
//! [`DEFAULT_FREQUENCY_HZ`].
//!
//! # What a profile holds
//!
//! - One `Mapping` per executable `/proc/self/maps` entry that a sampled address falls in,
//!   with the file's GNU build ID (empty when the file has none: rustc's default linker
//!   emits none unless linked with `-C link-arg=-Wl,--build-id`).
//! - One `Location` per distinct address, address kept exactly. A caller's address is the
//!   return address; its lines are those of the call (looked up at address − 1). When
//!   symbolization fails the location keeps its address and mapping and has no lines.
//! - pprof-rs's signal handler, unwinder and the signal trampoline are cut from every stack,
//!   which starts at the interrupted instruction.
//!
//! # Limitations
//!
//! - pprof-rs merges stacks whose frames are in the same *functions* (it compares function
//!   start addresses, not instruction addresses), keeping the addresses of the first sample
//!   it saw. Flat and cumulative weight per function are right; weight per address or line
//!   within a function is not: every sample of one call path lands on the one address first
//!   seen for it.
//! - Stacks deeper than 128 frames (counting pprof-rs's own) lose their outermost frames.
//! - `thread_id` is pprof-rs's thread id, `pthread_self()`, not the kernel TID.
//! - Libraries unloaded before the profile ends cannot be mapped or symbolized; their
//!   addresses stay without a mapping.
//! - Linux only.

mod config;
mod profile;
mod sampler;
mod server;

use std::net::SocketAddr;
use std::time::Duration;

pub use config::{
    Config, DEFAULT_FREQUENCY_HZ, DEFAULT_MAX_SECONDS, DEFAULT_SECONDS, MAX_FREQUENCY_HZ,
};
pub use profile::CpuProfile;
pub use sampler::SampleStats;
pub use server::{Agent, PROFILE_PATH};

/// Why the agent could not start, or a profile could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A CPU profile is already being taken in this process (by this crate or by other
    /// pprof-rs use); there can be one at a time.
    #[error("a CPU profile is already being taken in this process")]
    Busy,
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The configured address is not a loopback address and
    /// [`Config::allow_non_loopback`] was not set.
    #[error(
        "refusing to listen on {0}: not a loopback address \
         (set Config::allow_non_loopback to expose the profiler beyond this host)"
    )]
    NotLoopback(SocketAddr),
    /// A number in [`Config`] is out of range.
    #[error("invalid pgo-agent configuration: {0}")]
    InvalidConfig(String),
    /// pprof-rs failed to start or to report.
    #[error("the CPU profiler failed: {0}")]
    Profiler(String),
    /// The agent was stopped while a profile was being taken.
    #[error("profiling was cut short: the agent is stopping")]
    Stopped,
    /// The server thread could not be started.
    #[error("cannot start the pgo-agent server thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Starts the profiling endpoint on a thread of its own and returns at once. Binds
/// `config.addr` (`127.0.0.1`, any free port, by default); refuses a non-loopback address
/// unless [`Config::allow_non_loopback`] is set.
pub fn start(config: Config) -> Result<Agent, Error> {
    server::start(config)
}

/// Profiles this process for `duration` at `frequency_hz` and returns the profile, without
/// any HTTP. Blocks the calling thread meanwhile; fails with [`Error::Busy`] while another
/// profile is being taken. Each call loads the process's debug information anew (the
/// [`Agent`] keeps it between requests).
pub fn profile_cpu(duration: Duration, frequency_hz: u32) -> Result<CpuProfile, Error> {
    if !(1..=MAX_FREQUENCY_HZ).contains(&frequency_hz) {
        return Err(Error::InvalidConfig(format!(
            "frequency_hz must be 1..={MAX_FREQUENCY_HZ}, not {frequency_hz}"
        )));
    }
    let _slot = sampler::ProfilingSlot::acquire()?;
    let raw = sampler::sample(duration, frequency_hz, None)?;
    let mut symbolizer = pgo_symbolize::Symbolizer::new();
    Ok(profile::build_profile(&raw, &mut symbolizer))
}
