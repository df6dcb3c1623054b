//! `pgo collect`: turn a running program into a pprof profile.
//!
//! It drives the pipeline's first stage: record samples with `pgo-record` (perf_event_open,
//! software cpu-clock), rebuild each sample's call stack (the kernel's frame-pointer callchain,
//! or DWARF unwinding of user-stack copies for binaries without frame pointers), symbolize every
//! address with `pgo-symbolize` (inline frames, lines, columns, start lines, build IDs), and build
//! a profile with `pgo-profile` that keeps each location's exact address and mapping. It also
//! reads `perf record`'s perf.data files ([`import_perf_data`]: their records become the same
//! events, through the same pipeline, so the profile is the one `pgo collect` would have made
//! of them) and fetches profiles from `/debug/pprof/profile` endpoints.
//!
//! It does not analyze profiles, draw them, or parse command lines (that is `pgo-cli`).

mod address_space;
mod frame_pointers;
mod kallsyms;
mod perf_data;
mod to_profile;
mod url;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use pgo_profile::Profile;
pub use pgo_record::{DEFAULT_FREQUENCY, Target};
use pgo_record::{Event, RecordOptions, Summary};

pub use frame_pointers::{FramePointerVerdict, detect_frame_pointers};
pub use perf_data::{Imported, import_perf_data};
pub use url::fetch_profile;

/// How call stacks are rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnwindMode {
    /// Frame pointers if the program's main binary keeps them, DWARF otherwise (also when it
    /// is a script or cannot be read: the programs it starts are unknown).
    Auto,
    /// The kernel walks frame pointers (cheap; wrong or short stacks without them).
    FramePointers,
    /// Copy user stacks and unwind them with DWARF call-frame information.
    Dwarf,
}

impl UnwindMode {
    pub fn name(self) -> &'static str {
        match self {
            UnwindMode::Auto => "auto",
            UnwindMode::FramePointers => "frame pointers",
            UnwindMode::Dwarf => "dwarf",
        }
    }
}

/// The largest user-stack copy the kernel makes per sample (its size field is 16 bits, in
/// whole words).
pub const MAX_STACK_BYTES: u32 = 65528;

/// What to collect and for how long.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// Samples per second of CPU time.
    pub frequency: u32,
    pub duration: Option<Duration>,
    pub unwind: UnwindMode,
    /// Bytes of user stack copied per sample in DWARF mode.
    pub user_stack_bytes: u32,
    /// Set to stop collecting (Ctrl-C); the profile is still built.
    pub stop: Option<Arc<AtomicBool>>,
    /// Filled with the pid of the spawned program as soon as it runs (for passing on signals).
    pub spawned_pid: Option<Arc<AtomicU32>>,
}

impl Default for CollectOptions {
    fn default() -> Self {
        CollectOptions {
            frequency: pgo_record::DEFAULT_FREQUENCY,
            duration: None,
            unwind: UnwindMode::Auto,
            // The most the kernel copies (perf's limit too). perf's default of 8 KiB cut
            // nearly every stack of a Sass compiler (grass: 0.1% reached `main`; 32 KiB 90%,
            // 64 KiB 99.9%): Rust's large enums make large frames. The copy is kernel time
            // taken from the program (BENCHMARKS.md, "Collection").
            user_stack_bytes: MAX_STACK_BYTES,
            stop: None,
            spawned_pid: None,
        }
    }
}

/// Progress while recording, for a live status line.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub elapsed: Duration,
    pub samples: u64,
    pub lost: u64,
}

/// A finished collection.
pub struct Collected {
    pub profile: Profile,
    /// The recorder's counters: samples, lost records, how the target ended.
    pub summary: Summary,
    /// The unwinding actually used (never `Auto`), and why.
    pub unwind: UnwindMode,
    pub unwind_reason: String,
    /// Things the user should know (stripped binaries, lost samples, ...), one line each.
    pub warnings: Vec<String>,
    /// Time spent after recording: symbolizing and building the profile.
    pub processing: Duration,
}

/// Why collection failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Record(#[from] pgo_record::Error),
    #[error("{0}")]
    Other(String),
}

/// A build ID as the symbolizer and profiles spell it: lowercase hex.
pub(crate) fn build_id_hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The main executable of a target, for unwinding detection and comments.
fn target_executable(target: &Target) -> Option<PathBuf> {
    match target {
        Target::Attach { pid } => std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
        Target::Spawn { program, .. } => {
            let p = Path::new(program);
            if p.components().count() > 1 {
                return Some(p.to_path_buf());
            }
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(p))
                    .find(|c| c.is_file())
            })
        }
    }
}

/// Records `target` and builds its profile. `progress` is called a few times a second.
pub fn collect(
    target: &Target,
    options: &CollectOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<Collected, CollectError> {
    let executable = target_executable(target);
    let (unwind, unwind_reason) = match options.unwind {
        UnwindMode::Auto => match executable.as_deref().map(detect_frame_pointers) {
            Some(FramePointerVerdict::Present(why)) => (UnwindMode::FramePointers, why),
            Some(FramePointerVerdict::Absent(why)) => (UnwindMode::Dwarf, why),
            None => (
                UnwindMode::Dwarf,
                "the program's executable was not found; DWARF works with or without frame \
                 pointers"
                    .to_string(),
            ),
        },
        mode => (mode, "chosen with --unwind".to_string()),
    };
    let record_options = RecordOptions {
        frequency: options.frequency,
        duration: options.duration,
        stop: options.stop.clone(),
        // Frame-pointer mode copies a few words at the stack pointer too: enough to find the
        // caller of a leaf function that sets up no frame (which the kernel's walk skips).
        user_stack: Some(if unwind == UnwindMode::Dwarf {
            options.user_stack_bytes
        } else {
            to_profile::LEAF_WORDS as u32 * 8
        }),
        // DWARF mode unwinds the stack copy itself, and still takes the kernel's user walk
        // (cheap: it stops at the first frame pointer that is not one) to carry on where code
        // that keeps frame pointers leaves the copied stack (Go's system stack).
        user_callchain: true,
        ..RecordOptions::default()
    };
    let wall_start = std::time::SystemTime::now();
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut collector = to_profile::Collector::new(unwind);
    let (mut samples, mut lost) = (0u64, 0u64);
    let summary = pgo_record::record_with(target, &record_options, |event| {
        if let (Some(slot), Target::Spawn { .. }) = (&options.spawned_pid, target) {
            // The first event of a spawn is the program's own exec.
            let pid = match &event {
                Event::Comm(c) => c.pid,
                Event::Sample(s) => s.pid,
                Event::Mmap(m) => m.pid,
                _ => 0,
            };
            if pid != 0 {
                let _ = slot.compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst);
            }
        }
        match &event {
            Event::Sample(_) => samples += 1,
            Event::Lost(l) => lost += l.lost,
            _ => {}
        }
        collector.push(event);
        if last_report.elapsed() >= Duration::from_millis(200) {
            last_report = Instant::now();
            progress(&Progress {
                elapsed: started.elapsed(),
                samples,
                lost,
            });
        }
        std::ops::ControlFlow::Continue(())
    })?;
    progress(&Progress {
        elapsed: started.elapsed(),
        samples,
        lost: summary.lost,
    });
    let meta = to_profile::Meta {
        origin: format!(
            "pgo collect: {}",
            match target {
                Target::Spawn { args, .. } => args
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" "),
                Target::Attach { pid } => format!("pid {pid}"),
            }
        ),
        event: summary.info.event.name().to_string(),
        executable,
        frequency: options.frequency,
        wall_start,
        unwind_note: format!("unwinding: {} ({unwind_reason})", unwind.name()),
        stack_bytes: options.user_stack_bytes,
        advice: to_profile::Advice {
            larger_stack: format!(
                "give a larger --stack-bytes (this run copied {}, at most {MAX_STACK_BYTES})",
                options.user_stack_bytes
            ),
            frame_pointers: "--unwind fp".to_string(),
        },
    };
    let processing_started = Instant::now();
    let (profile, warnings) = build_profile(collector, &summary, &meta);
    let processing = processing_started.elapsed();
    Ok(Collected {
        profile,
        summary,
        unwind,
        unwind_reason,
        warnings,
        processing,
    })
}

/// The profile of a finished recording, with the warnings about it: what the collector says,
/// lost samples, a program without line tables. `pgo collect` and the perf.data importer share
/// it.
fn build_profile(
    collector: to_profile::Collector,
    summary: &Summary,
    meta: &to_profile::Meta,
) -> (Profile, Vec<String>) {
    let (profile, mut warnings) = collector.finish(summary, meta);
    if summary.lost > 0 {
        warnings.push(format!(
            "{} samples were lost (the kernel's ring buffer was full); try a lower -F",
            summary.lost
        ));
    }
    warnings.extend(lineless_program_warning(&profile));
    (profile, warnings)
}

/// A warning when most samples in the program's own code have no source line: it was built
/// without debug info (Cargo's default release profile), so the profile names functions but
/// not their lines or inlined calls, which is what `pgo apply` builds from. Said at collection,
/// before the user trains on it and builds twice.
fn lineless_program_warning(profile: &Profile) -> Option<String> {
    let view = pgo_profile::ProfileView::new(profile);
    let main = view.main_mapping()?;
    let (mut total, mut lineless) = (0i64, 0i64);
    for sample in &profile.sample {
        let weight = sample.value.first().copied().unwrap_or(0).max(0);
        let Some(leaf) = sample.location_id.first().and_then(|id| view.location(*id)) else {
            continue;
        };
        // An address nothing named (a stripped file, or one rebuilt since a perf.data
        // recording) says nothing of line tables: other warnings say what it is.
        if leaf.mapping_id != main.id || leaf.line.is_empty() {
            continue;
        }
        total += weight;
        if leaf.line.iter().all(|l| l.line <= 0) {
            lineless += weight;
        }
    }
    (total > 0 && lineless * 2 > total).then(|| {
        format!(
            "{}: {:.0}% of its samples have no source line: it was built without debug info, \
             so this profile names functions but not their lines or inlined calls, which \
             `pgo apply` builds from; profile a build with line tables (`pgo apply \
             --allow-missing -- cargo build --release` makes one; or `debug = \"limited\"` \
             in the Cargo profile, `-g` for C)",
            view.str(main.filename),
            100.0 * lineless as f64 / total as f64
        )
    })
}
