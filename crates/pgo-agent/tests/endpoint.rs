//! End-to-end tests of the profiling endpoint: the agent runs in this test process, a thread
//! burns CPU in a known function, and the profile is fetched over real HTTP, decoded and
//! validated by pgo-profile, and opened with `go tool pprof`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgo_agent::{Config, Error};
use pgo_profile::proto::Profile;
use pgo_profile::{ProfileView, decode_profile};

/// pprof-rs has one profiler per process: tests that take profiles take turns.
static PROFILING: Mutex<()> = Mutex::new(());

fn profiling_turn() -> std::sync::MutexGuard<'static, ()> {
    PROFILING.lock().unwrap_or_else(|e| e.into_inner())
}

/// The line of `fn burn_cpu` below, which its pprof Function's start_line must be.
const BURN_CPU_LINE: i64 = line!() as i64 + 5;

/// The hot function: plain xorshift arithmetic, no calls, so every sample in it has it as
/// the leaf, in debug and release builds alike.
#[inline(never)]
fn burn_cpu(mut x: u64, rounds: u32) -> u64 {
    let mut round = 0;
    while round < rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        round += 1;
    }
    x
}

/// Runs `burn_cpu` on a thread named `burner` until dropped.
struct Burner {
    running: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Burner {
    fn start() -> Burner {
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        let thread = std::thread::Builder::new()
            .name("burner".to_string())
            .spawn(move || {
                let mut x = 0x9e3779b97f4a7c15;
                while flag.load(Ordering::Relaxed) {
                    x = burn_cpu(x, 1_000_000);
                }
                std::hint::black_box(x);
            })
            .unwrap();
        Burner {
            running,
            thread: Some(thread),
        }
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An HTTP response as a plain client sees it.
#[derive(Debug)]
struct HttpResponse {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A minimal HTTP/1.1 client over `TcpStream` (what `pgo collect` and curl send).
fn http(method: &str, addr: SocketAddr, target: &str) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: pgo-agent-test\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        body = dechunk(&body);
    } else if let Some(length) = headers.get("content-length") {
        assert_eq!(body.len(), length.parse::<usize>().unwrap(), "short body");
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn get(addr: SocketAddr, target: &str) -> HttpResponse {
    http("GET", addr, target)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Flat weight (cpu/nanoseconds) per leaf function name, heaviest first.
fn flat_by_function(profile: &Profile) -> Vec<(String, i64)> {
    let view = ProfileView::new(profile);
    let index = view.sample_index(Some("cpu")).unwrap();
    let mut flat: HashMap<String, i64> = HashMap::new();
    for sample in &profile.sample {
        if let Some(leaf) = view.frames(sample).next() {
            *flat.entry(view.frame_name(&leaf).into_owned()).or_default() += sample.value[index];
        }
    }
    let mut flat: Vec<_> = flat.into_iter().collect();
    flat.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    flat
}

fn label_str<'a>(
    profile: &'a Profile,
    sample: &pgo_profile::proto::Sample,
    key: &str,
) -> Option<&'a str> {
    sample
        .label
        .iter()
        .find(|l| profile.string_table[l.key as usize] == key)
        .map(|l| profile.string_table[l.str as usize].as_str())
}

fn label_num(profile: &Profile, sample: &pgo_profile::proto::Sample, key: &str) -> Option<i64> {
    sample
        .label
        .iter()
        .find(|l| profile.string_table[l.key as usize] == key && l.str == 0)
        .map(|l| l.num)
}

/// Runs `go tool pprof -top` on the profile, or says why it could not.
fn go_pprof_top(bytes: &[u8]) -> Option<String> {
    let go_on_path = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !go_on_path {
        assert!(
            std::env::var_os("CI").is_none(),
            "`go` is not on PATH, and CI is set: `go tool pprof` interop must be tested in CI"
        );
        eprintln!("skipping `go tool pprof -top`: `go` is not on PATH");
        return None;
    }
    let path = std::env::temp_dir().join(format!("pgo-agent-test-{}.pb.gz", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let output = Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(&path)
        .env("PPROF_TMPDIR", std::env::temp_dir())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "go tool pprof -top failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(stdout)
}

#[test]
fn serves_a_cpu_profile_of_this_process() {
    let _turn = profiling_turn();
    let agent = pgo_agent::start(Config::default()).unwrap();
    let addr = agent.addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let burner = Burner::start();

    let started = Instant::now();
    let fetch = std::thread::spawn(move || get(addr, "/debug/pprof/profile?seconds=2"));
    // While that profile is being taken, a second one is refused at once, and other
    // requests are still answered.
    std::thread::sleep(Duration::from_millis(500));
    let busy_started = Instant::now();
    let busy = get(addr, "/debug/pprof/profile?seconds=1");
    assert_eq!(busy.status, 409, "{}", busy.text());
    assert!(busy.text().contains("already"), "{}", busy.text());
    assert!(busy_started.elapsed() < Duration::from_secs(1));
    assert_eq!(get(addr, "/debug/pprof/heap").status, 404);

    let response = fetch.join().unwrap();
    drop(burner);
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(
        response.header("Content-Type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        response.header("Content-Disposition"),
        Some("attachment; filename=\"profile\"")
    );
    assert!(pgo_profile::is_gzip(&response.body));

    let profile = decode_profile(response.body.clone()).expect("a valid profile");
    let strings = &profile.string_table;
    let types: Vec<String> = profile
        .sample_type
        .iter()
        .map(|t| {
            format!(
                "{}/{}",
                strings[t.r#type as usize], strings[t.unit as usize]
            )
        })
        .collect();
    assert_eq!(types, ["samples/count", "cpu/nanoseconds"]);
    assert_eq!(profile.period, 10_000_000);
    assert!(
        profile.duration_nanos >= 2_000_000_000,
        "{}",
        profile.duration_nanos
    );
    assert!(profile.time_nanos > 0);
    assert!(!profile.sample.is_empty());

    // The hot function is the top flat function.
    let flat = flat_by_function(&profile);
    assert_eq!(flat[0].0, "endpoint::burn_cpu", "flat profile: {flat:?}");

    // The profiler's own frames are gone from every stack.
    let view = ProfileView::new(&profile);
    for sample in &profile.sample {
        for frame in view.frames(sample) {
            let name = view.frame_name(&frame);
            assert!(
                !name.contains("perf_signal_handler")
                    && !name.starts_with("backtrace::")
                    && !name.contains("__restore_rt"),
                "profiler frame {name} in a sample"
            );
        }
    }

    // Addresses and mappings are real: burn_cpu's locations sit in this test binary's
    // mapping, which carries its build ID.
    let exe = std::env::current_exe().unwrap();
    let exe_build_id = pgo_symbolize::ObjectInfo::read(&exe).unwrap().build_id;
    assert!(
        !exe_build_id.is_empty(),
        "build.rs links the tests with --build-id"
    );
    assert!(profile.location.iter().all(|l| l.address != 0));
    let burn_function = profile
        .function
        .iter()
        .find(|f| strings[f.name as usize] == "endpoint::burn_cpu")
        .unwrap();
    assert_eq!(burn_function.start_line, BURN_CPU_LINE);
    assert!(strings[burn_function.filename as usize].ends_with("tests/endpoint.rs"));
    assert!(
        strings[burn_function.system_name as usize].starts_with("_ZN")
            || strings[burn_function.system_name as usize].starts_with("_R")
    );
    let burn_locations: Vec<_> = profile
        .location
        .iter()
        .filter(|l| {
            l.line
                .first()
                .is_some_and(|line| line.function_id == burn_function.id)
        })
        .collect();
    assert!(!burn_locations.is_empty());
    for location in &burn_locations {
        let mapping = view.mapping(location.mapping_id).expect("a mapping");
        assert!(
            mapping.memory_start <= location.address && location.address < mapping.memory_limit
        );
        assert_eq!(strings[mapping.build_id as usize], exe_build_id);
        assert_eq!(
            std::path::Path::new(&strings[mapping.filename as usize]),
            exe
        );
        assert!(mapping.has_functions && mapping.has_line_numbers);
        // Line 0 is DWARF's own "no source line" (a debug build gives the `while` loop's head
        // such a row, column 21): a sample there is right to say so.
        let line = &location.line[0];
        assert!(
            line.line == 0 || (BURN_CPU_LINE..BURN_CPU_LINE + 10).contains(&line.line),
            "burn_cpu line {} at {:#x}",
            line.line,
            location.address
        );
    }

    // Every sample names its thread; burn_cpu ran on `burner`.
    for sample in &profile.sample {
        assert!(label_num(&profile, sample, "thread_id").is_some_and(|id| id != 0));
    }
    let burner_samples: i64 = profile
        .sample
        .iter()
        .filter(|s| label_str(&profile, s, "thread_name") == Some("burner"))
        .map(|s| s.value[0])
        .sum();
    assert!(burner_samples > 0);

    // The drop comment, and the same numbers through the API.
    let comments: Vec<&str> = profile
        .comment
        .iter()
        .map(|&i| strings[i as usize].as_str())
        .collect();
    let stats = agent
        .last_stats()
        .expect("stats of the profile just served");
    assert!(comments.contains(&stats.summary().as_str()), "{comments:?}");
    let drop_comment = regex_like_drop_comment(&comments);
    assert!(drop_comment, "no drop comment in {comments:?}");
    assert_eq!(stats.frequency_hz, 100);
    let received: i64 = profile.sample.iter().map(|s| s.value[0]).sum();
    // Every sample pprof-rs recorded is in the profile, unless its whole stack was the
    // profiler's own frames.
    assert!(received > 0 && received as u64 <= stats.received_samples);

    if let Some(top) = go_pprof_top(&response.body) {
        assert!(top.contains("endpoint::burn_cpu"), "{top}");
        assert!(top.contains("Type: cpu"), "{top}");
    }
    agent.stop();
}

/// Whether a comment reads `expected N samples from CPU time, received M (K% dropped)`.
fn regex_like_drop_comment(comments: &[&str]) -> bool {
    comments.iter().any(|c| {
        let Some(rest) = c.strip_prefix("expected ") else {
            return false;
        };
        let Some((n, rest)) = rest.split_once(" samples from CPU time, received ") else {
            return false;
        };
        let Some((m, rest)) = rest.split_once(" (") else {
            return false;
        };
        let Some(k) = rest.strip_suffix("% dropped)") else {
            return false;
        };
        n.parse::<u64>().is_ok() && m.parse::<u64>().is_ok() && k.parse::<f64>().is_ok()
    })
}

#[test]
fn agent_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<pgo_agent::Agent>();
    shareable::<pgo_agent::CpuProfile>();
    shareable::<pgo_agent::Error>();
}

#[test]
fn refuses_bad_requests_with_reasons() {
    let agent = pgo_agent::start(Config::default().max_seconds(60)).unwrap();
    let addr = agent.addr();
    for target in [
        "/debug/pprof/profile?seconds=abc",
        "/debug/pprof/profile?seconds=0",
        "/debug/pprof/profile?seconds=-3",
        "/debug/pprof/profile?seconds=1.5",
        "/debug/pprof/profile?seconds=61",
    ] {
        let response = get(addr, target);
        assert_eq!(response.status, 400, "{target}: {}", response.text());
        assert!(
            response
                .header("Content-Type")
                .unwrap()
                .starts_with("text/plain"),
            "{target}"
        );
        assert!(
            response.text().contains("seconds"),
            "{target}: {}",
            response.text()
        );
    }
    assert!(
        get(addr, "/debug/pprof/profile?seconds=abc")
            .text()
            .contains("\"abc\"")
    );
    assert!(
        get(addr, "/debug/pprof/profile?seconds=61")
            .text()
            .contains("60")
    );
    for target in [
        "/",
        "/debug/pprof/",
        "/debug/pprof/heap",
        "/debug/pprof/profile/x",
    ] {
        assert_eq!(get(addr, target).status, 404, "{target}");
    }
    let post = http("POST", addr, "/debug/pprof/profile?seconds=1");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("Allow"), Some("GET"));
    drop(agent);
}

#[test]
fn listens_on_loopback_unless_told_otherwise() {
    let agent = pgo_agent::start(Config::default()).unwrap();
    assert_eq!(agent.addr().ip().to_string(), "127.0.0.1");
    assert_eq!(
        agent.profile_url(),
        format!("http://{}/debug/pprof/profile", agent.addr())
    );
    agent.stop();

    let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
    match pgo_agent::start(Config::default().addr(any)) {
        Err(Error::NotLoopback(addr)) => assert_eq!(addr, any),
        other => panic!("expected NotLoopback, got {other:?}"),
    }
    let agent = pgo_agent::start(Config::default().addr(any).allow_non_loopback(true)).unwrap();
    assert!(agent.addr().ip().is_unspecified());
    drop(agent);

    // A taken port is an error, not a panic.
    let first = pgo_agent::start(Config::default()).unwrap();
    let taken = pgo_agent::start(Config::default().port(first.addr().port()));
    assert!(matches!(taken, Err(Error::Bind { .. })), "{taken:?}");
    assert!(matches!(
        pgo_agent::start(Config::default().frequency_hz(0)),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn stopping_cuts_a_profile_short() {
    let _turn = profiling_turn();
    let agent = pgo_agent::start(Config::default()).unwrap();
    let addr = agent.addr();
    let fetch = std::thread::spawn(move || get(addr, "/debug/pprof/profile?seconds=30"));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    agent.stop();
    assert!(started.elapsed() < Duration::from_secs(5));
    let response = fetch.join().unwrap();
    assert_eq!(response.status, 503, "{}", response.text());
    // The profiler is free again.
    let profile = pgo_agent::profile_cpu(Duration::from_millis(200), 100).unwrap();
    assert_eq!(profile.stats.frequency_hz, 100);
}
