//! `pgo collect`: arguments, Ctrl-C, the progress line, and the summary.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use clap::{Args, ValueEnum};
use pgo_collect::{CollectOptions, Target, UnwindMode};
use pgo_profile::Error;
use serde_json::json;

use crate::commands::{emit, emit_json, path_str};

#[derive(Clone, Copy, ValueEnum)]
enum Unwind {
    /// Frame pointers when the program's binary keeps them, DWARF otherwise.
    Auto,
    /// Kernel frame-pointer callchains.
    Fp,
    /// Copy user stacks and unwind them with DWARF call-frame information.
    Dwarf,
}

#[derive(Args)]
pub struct CollectArgs {
    /// Output file (gzipped pprof).
    #[arg(short, long, default_value = "pgo.pb.gz")]
    output: PathBuf,
    /// Samples per second of CPU time.
    #[arg(
        short = 'F',
        long = "frequency",
        default_value_t = pgo_collect::DEFAULT_FREQUENCY,
        value_name = "HZ"
    )]
    frequency: u32,
    /// Stop after this long (e.g. 30s, 500ms, 2m; a bare number is seconds).
    #[arg(long, value_parser = parse_duration, value_name = "D")]
    duration: Option<Duration>,
    /// Attach to this running process (all its threads, and new ones).
    #[arg(long, conflicts_with = "url")]
    pid: Option<u32>,
    /// Fetch a profile from a /debug/pprof/profile?seconds=N endpoint instead of recording.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// How to rebuild call stacks.
    #[arg(long, value_enum, default_value = "auto")]
    unwind: Unwind,
    /// Bytes of user stack copied with each sample in DWARF mode, at most 65528 (deeper
    /// stacks need more; the profile's comments say how many stacks were unwound completely;
    /// less costs the program less).
    #[arg(long, default_value_t = pgo_collect::MAX_STACK_BYTES, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(8..=i64::from(pgo_collect::MAX_STACK_BYTES)))]
    stack_bytes: u32,
    /// Print a JSON summary on standard output, as its last line (after the program's own
    /// output, which passes through).
    #[arg(long)]
    json: bool,
    /// The command to run and profile, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("{s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

pub fn collect(a: CollectArgs) -> Result<u8, Error> {
    let sources = usize::from(a.pid.is_some())
        + usize::from(a.url.is_some())
        + usize::from(!a.command.is_empty());
    if sources != 1 {
        return Err(Error::new(
            "",
            "say what to profile: a command after `--`, --pid PID, or --url URL (exactly one)",
        ));
    }
    if let Some(url) = &a.url {
        let profile = pgo_collect::fetch_profile(url, Duration::from_secs(30))
            .map_err(|e| Error::new(url, e))?;
        pgo_profile::write_profile(&a.output, &profile)?;
        let summary = json!({ "output": path_str(&a.output), "source": url, "samples": profile.sample.len() });
        eprintln!(
            "pgo: wrote {} ({} samples from {url})",
            a.output.display(),
            profile.sample.len()
        );
        return if a.json {
            emit_json(&summary).map(|()| 0)
        } else {
            Ok(0)
        };
    }
    // Fail on an unwritable output before recording, not after a long run.
    check_writable(&a.output)?;

    let target = match a.pid {
        Some(pid) => Target::attach(pid),
        None => Target::spawn(a.command.clone()),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let spawned = a.pid.is_none().then(|| Arc::new(AtomicU32::new(0)));
    install_ctrl_c(stop.clone(), spawned.clone());
    let options = CollectOptions {
        frequency: a.frequency,
        duration: a.duration,
        unwind: match a.unwind {
            Unwind::Auto => UnwindMode::Auto,
            Unwind::Fp => UnwindMode::FramePointers,
            Unwind::Dwarf => UnwindMode::Dwarf,
        },
        stop: Some(stop),
        spawned_pid: spawned,
        user_stack_bytes: a.stack_bytes,
    };
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} recording {msg}")
            .expect("a valid template"),
    );
    let collected = pgo_collect::collect(&target, &options, |p| {
        bar.set_message(format!(
            "{:.1}s  {} samples  {} lost",
            p.elapsed.as_secs_f64(),
            p.samples,
            p.lost
        ));
        bar.tick();
    })
    .map_err(|e| Error::new("", e.to_string()))?;
    bar.finish_and_clear();
    pgo_profile::write_profile(&a.output, &collected.profile)?;

    let s = &collected.summary;
    let cpu_seconds: f64 = collected
        .profile
        .sample
        .iter()
        .map(|x| x.value[1])
        .sum::<i64>() as f64
        / 1e9;
    for w in &collected.warnings {
        eprintln!("pgo: warning: {w}");
    }
    eprintln!(
        "pgo: wrote {}: {} samples ({cpu_seconds:.2}s of CPU), {} lost; unwinding: {} ({})",
        a.output.display(),
        s.samples,
        s.lost,
        collected.unwind.name(),
        collected.unwind_reason
    );
    let (code, ended) = match s.child.as_ref().and_then(|c| c.status) {
        None => (0, None),
        Some(status) => {
            use std::os::unix::process::ExitStatusExt;
            let what = describe_command(&a.command);
            match (status.code(), status.signal()) {
                (Some(0), _) => (0, None),
                (Some(c), _) => (c as u8, Some(format!("{what} exited with status {c}"))),
                (None, Some(sig)) => (
                    128u8.wrapping_add(sig as u8),
                    Some(format!(
                        "{what} was killed by signal {sig} ({})",
                        signal_name(sig)
                    )),
                ),
                (None, None) => (1, Some(format!("{what} ended abnormally ({status})"))),
            }
        }
    };
    if let Some(ended) = &ended {
        eprintln!("pgo: {ended}");
    }
    if a.json {
        emit_json_line(&json!({
            "output": path_str(&a.output),
            "samples": s.samples,
            "lost": s.lost,
            "cpu_seconds": cpu_seconds,
            "unwind": collected.unwind.name(),
            "unwind_reason": collected.unwind_reason,
            "warnings": collected.warnings,
            "processing_seconds": collected.processing.as_secs_f64(),
            "exit_code": code,
            "ended": ended,
        }))?;
    }
    Ok(code)
}

/// JSON on one line, so it can be told apart from the program's output that came before it.
fn emit_json_line(value: &serde_json::Value) -> Result<(), Error> {
    emit(&format!("{value}\n"))
}

fn describe_command(command: &[OsString]) -> String {
    command.first().map_or_else(
        || "the process".to_string(),
        |c| c.to_string_lossy().into_owned(),
    )
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGPIPE => "SIGPIPE",
        _ => "signal",
    }
}

/// Creates and removes a temporary file next to `path`, so a bad output path fails at once.
fn check_writable(path: &std::path::Path) -> Result<(), Error> {
    if path.is_dir() {
        return Err(Error::new(path, "cannot write: is a directory"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".pgo-check.")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| {
            let reason = e.to_string();
            let reason = reason
                .split(" (os error")
                .next()
                .unwrap_or(&reason)
                .to_string();
            Error::new(path, format!("cannot write: {reason}"))
        })
}

/// Ctrl-C in attach mode stops recording. In spawn mode the program gets the signal and pgo
/// waits for it to end, so it can shut down cleanly; a second Ctrl-C stops recording at once.
/// A Ctrl-C typed at a terminal reaches the program directly (same process group); a SIGINT
/// sent to pgo alone (not from a terminal) is passed on to the program. Either way the profile
/// is written.
fn install_ctrl_c(stop: Arc<AtomicBool>, spawned: Option<Arc<AtomicU32>>) {
    let from_terminal = std::io::stdin().is_terminal();
    let presses = AtomicU32::new(0);
    let _ = ctrlc::set_handler(move || {
        let first = presses.fetch_add(1, Ordering::SeqCst) == 0;
        let pid = spawned.as_ref().map_or(0, |p| p.load(Ordering::SeqCst));
        if !first || pid == 0 {
            stop.store(true, Ordering::SeqCst);
        } else if !from_terminal {
            // SAFETY: kill(2) has no memory-safety preconditions; pid is the spawned program.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGINT);
            }
        }
    });
}
