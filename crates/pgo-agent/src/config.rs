//! What the agent listens on and how it samples.

use std::net::{Ipv4Addr, SocketAddr};

/// The sampling frequency used unless [`Config::frequency_hz`] says otherwise: the rate
/// pprof-rs's `setitimer(ITIMER_PROF)`/`SIGPROF` sampling keeps up with, and Go's.
///
/// Measured with `cargo run --release -p pgo-agent --example drop_rate -- 5 2` (two threads
/// spinning in plain arithmetic, 5 s per run, 2-core x86-64, Linux 6.18 with `CONFIG_HZ=250`,
/// other builds running), expected = process CPU time × Hz:
///
/// | Hz   | dropped, 2 busy threads (3 runs) | dropped, 1 busy thread |
/// |------|----------------------------------|------------------------|
/// | 1000 | 75.3 %, 75.9 %, 75.4 %           | 74.2 %                 |
/// | 250  | 4.3 %, 0.7 %, 0.6 % (up to 16 % in 3 s runs) | 0.0 %      |
/// | 100  | 0.0 %, 0.0 %, 0.0 %              | 0.0 %                  |
///
/// The kernel checks CPU-time timers on its scheduler tick, so no more than `CONFIG_HZ`
/// signals a second per busy CPU arrive (250 here): asking for 1000 Hz gets about 250 and
/// claims a period four times too short. At 250 Hz timer and tick beat against each other
/// and two threads' handlers collide in pprof-rs (which drops the second). 100 Hz loses
/// nothing measurable.
pub const DEFAULT_FREQUENCY_HZ: u32 = 100;

/// Profile length when the request has no `seconds` parameter, as in Go.
pub const DEFAULT_SECONDS: u64 = 30;

/// Longest profile a request may ask for unless [`Config::max_seconds`] says otherwise.
pub const DEFAULT_MAX_SECONDS: u64 = 300;

/// Highest sampling frequency accepted (pprof-rs's timer has microsecond granularity, and
/// far below this it loses most samples anyway).
pub const MAX_FREQUENCY_HZ: u32 = 10_000;

/// How the agent listens and samples. `Config::default()` listens on `127.0.0.1` on a port
/// the system picks; read the port back from [`crate::Agent::addr`].
///
/// ```
/// let config = pgo_agent::Config::default().port(6060).max_seconds(60);
/// assert_eq!(config.addr.to_string(), "127.0.0.1:6060");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Where to listen. Default `127.0.0.1:0` (port 0: any free port).
    pub addr: SocketAddr,
    /// Whether `addr` may be other than a loopback address. Default `false`: the endpoint
    /// runs the profiler on demand and shows code addresses and paths, so exposing it
    /// beyond this host has to be asked for explicitly.
    pub allow_non_loopback: bool,
    /// Sampling frequency in Hz of CPU time. Default [`DEFAULT_FREQUENCY_HZ`].
    pub frequency_hz: u32,
    /// Profile length when a request gives no `seconds`. Default [`DEFAULT_SECONDS`].
    pub default_seconds: u64,
    /// Requests for longer profiles are refused with `400`. Default [`DEFAULT_MAX_SECONDS`].
    pub max_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            allow_non_loopback: false,
            frequency_hz: DEFAULT_FREQUENCY_HZ,
            default_seconds: DEFAULT_SECONDS,
            max_seconds: DEFAULT_MAX_SECONDS,
        }
    }
}

impl Config {
    /// Listens on this port (of the address already set, `127.0.0.1` by default).
    pub fn port(mut self, port: u16) -> Self {
        self.addr.set_port(port);
        self
    }

    /// Listens on `addr`. A non-loopback address also needs
    /// [`Config::allow_non_loopback`], or [`crate::start`] refuses it.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Allows (or not) listening on a non-loopback address.
    pub fn allow_non_loopback(mut self, allow: bool) -> Self {
        self.allow_non_loopback = allow;
        self
    }

    /// Samples at `hz` (1 to [`MAX_FREQUENCY_HZ`]).
    pub fn frequency_hz(mut self, hz: u32) -> Self {
        self.frequency_hz = hz;
        self
    }

    /// Profiles this long when a request gives no `seconds`.
    pub fn default_seconds(mut self, seconds: u64) -> Self {
        self.default_seconds = seconds;
        self
    }

    /// Refuses requests for profiles longer than this.
    pub fn max_seconds(mut self, seconds: u64) -> Self {
        self.max_seconds = seconds;
        self
    }

    /// Checks the numbers; the address is checked when binding.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_FREQUENCY_HZ).contains(&self.frequency_hz) {
            return Err(format!(
                "frequency_hz must be 1..={MAX_FREQUENCY_HZ}, not {}",
                self.frequency_hz
            ));
        }
        if self.max_seconds == 0 {
            return Err("max_seconds must be at least 1".to_string());
        }
        if !(1..=self.max_seconds).contains(&self.default_seconds) {
            return Err(format!(
                "default_seconds must be 1..=max_seconds ({}), not {}",
                self.max_seconds, self.default_seconds
            ));
        }
        Ok(())
    }
}
