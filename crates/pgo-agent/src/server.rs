//! The HTTP side: one thread takes requests, and each profile request gets its own thread
//! (so a second request can be refused while the first one samples).

use std::net::{SocketAddr, TcpListener};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use pgo_symbolize::Symbolizer;
use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

use crate::sampler::{ProfilingSlot, SampleStats, StopSignal, sample};
use crate::{Config, Error, profile::build_profile};

/// The one path served, as in Go's `net/http/pprof`.
pub const PROFILE_PATH: &str = "/debug/pprof/profile";

/// A running agent. Dropping it (or [`Agent::stop`]) stops the server: a profile being taken
/// is cut short and its request answered `503`.
pub struct Agent {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    config: Config,
    stop: StopSignal,
    /// Kept across requests: the process's objects are loaded and their DWARF parsed once.
    symbolizer: Mutex<Symbolizer>,
    last_stats: Mutex<Option<SampleStats>>,
}

impl Agent {
    /// The address the server listens on (with the port the system picked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/debug/pprof/profile`: add `?seconds=N`.
    pub fn profile_url(&self) -> String {
        format!("http://{}{PROFILE_PATH}", self.addr)
    }

    /// The sample counts of the last profile this agent served, if any.
    pub fn last_stats(&self) -> Option<SampleStats> {
        *self
            .shared
            .last_stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the server and waits for its threads (a profile being taken ends early).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.stop();
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("addr", &self.addr)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

pub(crate) fn start(config: Config) -> Result<Agent, Error> {
    config.validate().map_err(Error::InvalidConfig)?;
    if !config.addr.ip().is_loopback() && !config.allow_non_loopback {
        return Err(Error::NotLoopback(config.addr));
    }
    let listener = TcpListener::bind(config.addr).map_err(|source| Error::Bind {
        addr: config.addr,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.addr,
        source,
    })?;
    let server = Server::from_listener(listener, None).map_err(|e| Error::Bind {
        addr,
        source: std::io::Error::other(e.to_string()),
    })?;
    let server = Arc::new(server);
    let shared = Arc::new(Shared {
        config,
        stop: StopSignal::default(),
        symbolizer: Mutex::new(Symbolizer::new()),
        last_stats: Mutex::new(None),
    });
    let thread = {
        let (server, shared) = (server.clone(), shared.clone());
        std::thread::Builder::new()
            .name("pgo-agent-http".to_string())
            .spawn(move || serve(&server, &shared))
            .map_err(Error::Thread)?
    };
    Ok(Agent {
        addr,
        shared,
        server,
        thread: Some(thread),
    })
}

fn serve(server: &Server, shared: &Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.is_stopped() {
        match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(request)) => {
                // A panic here would be a bug; it must not take the server down with it.
                let handled = catch_unwind(AssertUnwindSafe(|| route(request, shared)));
                if let Ok(Some(worker)) = handled {
                    workers.push(worker);
                }
            }
            Ok(None) => {}
            // A failed accept or a broken connection: nothing to answer, keep serving.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
        workers.retain(|worker| !worker.is_finished());
    }
    for worker in workers {
        let _ = worker.join();
    }
}

/// Answers `request`, or hands it to a new profiling thread (returned).
fn route(request: Request, shared: &Arc<Shared>) -> Option<JoinHandle<()>> {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    if path != PROFILE_PATH {
        respond_text(request, 404, "404 page not found");
        return None;
    }
    if *request.method() != Method::Get {
        let response = text_response(405, "method not allowed: use GET");
        respond(request, with_header(response, "Allow", "GET"));
        return None;
    }
    let seconds = match parse_seconds(query, &shared.config) {
        Ok(seconds) => seconds,
        Err(reason) => {
            respond_text(request, 400, &reason);
            return None;
        }
    };
    let slot = match ProfilingSlot::acquire() {
        Ok(slot) => slot,
        Err(_) => {
            respond_text(request, 409, BUSY_MESSAGE);
            return None;
        }
    };
    // The request goes to the thread through a channel so that it is still here to answer
    // if the thread cannot be started.
    let (send, receive) = mpsc::channel::<Request>();
    let worker_shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("pgo-agent-profile".to_string())
        .spawn(move || {
            let Ok(request) = receive.recv() else { return };
            let result = catch_unwind(AssertUnwindSafe(|| {
                take_profile(&worker_shared, Duration::from_secs(seconds))
            }));
            drop(slot);
            match result {
                Ok(Ok(bytes)) => respond(request, profile_response(bytes)),
                Ok(Err(error)) => respond_error(request, &error),
                Err(_) => respond_text(request, 500, "internal error while building the profile"),
            }
        });
    match spawned {
        Ok(worker) => {
            if let Err(mpsc::SendError(request)) = send.send(request) {
                respond_text(request, 500, "could not start profiling");
            }
            Some(worker)
        }
        Err(e) => {
            respond_text(request, 500, &format!("could not start profiling: {e}"));
            None
        }
    }
}

const BUSY_MESSAGE: &str = "could not enable CPU profiling: a CPU profile is already being \
taken in this process (one at a time); retry when it is done";

/// Samples for `duration`, builds and encodes the profile, and records its stats.
fn take_profile(shared: &Shared, duration: Duration) -> Result<Vec<u8>, Error> {
    let raw = sample(duration, shared.config.frequency_hz, Some(&shared.stop))?;
    let profile = {
        let mut symbolizer = shared
            .symbolizer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        build_profile(&raw, &mut symbolizer)
    };
    *shared
        .last_stats
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(profile.stats);
    Ok(profile.encode())
}

/// The profile length a query asks for: `seconds` absent or empty means the default (as in
/// Go); anything but a whole number from 1 to the maximum is refused with a reason.
fn parse_seconds(query: &str, config: &Config) -> Result<u64, String> {
    let value = query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == "seconds")
        .map(|(_, value)| value);
    let value = match value {
        None | Some("") => return Ok(config.default_seconds),
        Some(value) => value,
    };
    let seconds: u64 = value.parse().map_err(|_| {
        format!(
            "invalid seconds={value:?}: want a whole number of seconds from 1 to {}",
            config.max_seconds
        )
    })?;
    if seconds == 0 {
        return Err("invalid seconds=0: want at least 1".to_string());
    }
    if seconds > config.max_seconds {
        return Err(format!(
            "seconds={seconds} exceeds this agent's maximum of {} seconds",
            config.max_seconds
        ));
    }
    Ok(seconds)
}

/// Adds a header; names and values here are fixed ASCII, which tiny_http always accepts.
fn with_header(response: Body, name: &str, value: &str) -> Body {
    match Header::from_bytes(name.as_bytes(), value.as_bytes()) {
        Ok(header) => response.with_header(header),
        Err(()) => response,
    }
}

type Body = Response<std::io::Cursor<Vec<u8>>>;

fn profile_response(bytes: Vec<u8>) -> Body {
    // Sent with Content-Length rather than chunked: the size is known.
    let response = Response::from_data(bytes).with_chunked_threshold(usize::MAX);
    let response = with_header(response, "Content-Type", "application/octet-stream");
    let response = with_header(
        response,
        "Content-Disposition",
        "attachment; filename=\"profile\"",
    );
    with_header(response, "X-Content-Type-Options", "nosniff")
}

fn text_response(status: u16, text: &str) -> Body {
    let response = Response::from_data(format!("{text}\n")).with_status_code(StatusCode(status));
    let response = with_header(response, "Content-Type", "text/plain; charset=utf-8");
    with_header(response, "X-Content-Type-Options", "nosniff")
}

fn respond_text(request: Request, status: u16, text: &str) {
    respond(request, text_response(status, text));
}

fn respond_error(request: Request, error: &Error) {
    let status = match error {
        Error::Busy => 409,
        Error::Stopped => 503,
        _ => 500,
    };
    let text = match error {
        Error::Busy => BUSY_MESSAGE.to_string(),
        other => format!("could not take a CPU profile: {other}"),
    };
    respond_text(request, status, &text);
}

fn respond(request: Request, response: Body) {
    // The client may be gone; there is no one left to tell.
    let _ = request.respond(response);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seconds_like_go_but_strict() {
        let config = Config::default().max_seconds(60);
        assert_eq!(parse_seconds("", &config), Ok(30));
        assert_eq!(parse_seconds("seconds=", &config), Ok(30));
        assert_eq!(parse_seconds("debug=1", &config), Ok(30));
        assert_eq!(parse_seconds("seconds=5", &config), Ok(5));
        assert_eq!(parse_seconds("x=1&seconds=7&seconds=9", &config), Ok(7));
        assert_eq!(parse_seconds("seconds=60", &config), Ok(60));
        for bad in [
            "seconds=abc",
            "seconds=0",
            "seconds=-1",
            "seconds=1.5",
            "seconds=61",
        ] {
            assert!(parse_seconds(bad, &config).is_err(), "{bad}");
        }
        assert!(
            parse_seconds("seconds=99999999999999999999999", &config)
                .unwrap_err()
                .contains("whole number")
        );
    }
}
