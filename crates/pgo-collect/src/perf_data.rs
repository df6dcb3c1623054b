//! Reading `perf record`'s perf.data files: the records, read with the `linux-perf-data`
//! crate, become the recorder's [`Event`]s and go through the same [`Collector`] as
//! `pgo collect`'s own recordings, so that the profile is symbolized, unwound and repaired the
//! same way (inline frames, lines, columns, start lines, build IDs, exact addresses).
//!
//! `perf record -g` (the kernel's frame-pointer callchains) is read in frame-pointer mode;
//! `perf record --call-graph dwarf` (user registers and stack copies) in DWARF mode.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use linux_perf_data::linux_perf_event_reader::{
    self as reader, EventRecord, Mmap2FileId, PerfEventType, RawEventRecord, RecordType,
    SampleFormat, SamplingPolicy, SoftwareCounterType,
};
use linux_perf_data::{DsoKey, PerfFileReader, PerfFileRecord};
use pgo_profile::Profile;
use pgo_record::{
    CommEvent, CpuMode, Event, FileId, LostEvent, MmapEvent, Sample, StopReason, Summary,
    TaskEvent, ThrottleEvent, UserRegs,
};

use crate::UnwindMode;
use crate::to_profile::{Advice, Collector, Meta};

/// A perf.data file read into a profile.
pub struct Imported {
    pub profile: Profile,
    /// Things the user should know (lost samples, binaries rebuilt since the recording, ...),
    /// one line each.
    pub warnings: Vec<String>,
}

/// The size `perf record` gives its file header; a pipe's header is 16 bytes.
const FILE_HEADER_SIZE: u64 = 104;
const PIPE_HEADER_SIZE: u64 = 16;

/// `PERF_SAMPLE_REGS_ABI_64`: what a 64-bit task's registers are (the only kind read here).
const REGS_ABI_64: u64 = 2;

/// Reads the perf.data file at `path` (`perf record`'s, or a pipe's `perf record -o -`) into a
/// profile, symbolized from the binaries on this machine. Errors are one line, without the
/// file's name.
pub fn import_perf_data(path: &Path) -> Result<Imported, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let length = file
        .metadata()
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    // As much of the header as the file has.
    let mut header = Vec::with_capacity(FILE_HEADER_SIZE as usize);
    (&mut file)
        .take(FILE_HEADER_SIZE)
        .read_to_end(&mut header)
        .map_err(|e| format!("cannot read: {e}"))?;
    let header = &header[..];
    if !pgo_profile::is_perf_data(header) {
        return Err("not a perf.data file (it does not start with PERFILE2)".into());
    }
    if header.starts_with(b"2ELIFREP") {
        return Err(
            "a big-endian perf.data (recorded on another architecture); pgo reads \
                    perf.data recorded on x86-64"
                .into(),
        );
    }
    let pipe = header.get(8..16) == Some(&PIPE_HEADER_SIZE.to_le_bytes()[..]);
    if !pipe {
        check_sections(&mut file, header, length)?;
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let unreadable = |e: linux_perf_data::Error| format!("corrupt or truncated perf.data ({e})");
    let wall_end = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::now());
    if pipe {
        let PerfFileReader {
            perf_file,
            record_iter,
        } = PerfFileReader::parse_pipe(BufReader::new(file)).map_err(unreadable)?;
        import(perf_file, record_iter, wall_end)
    } else {
        let PerfFileReader {
            perf_file,
            record_iter,
        } = PerfFileReader::parse_file(BufReader::new(file)).map_err(unreadable)?;
        import(perf_file, record_iter, wall_end)
    }
}

/// Checks that the sections a perf.data file's header lists lie inside the file, before the
/// reader allocates what they claim: a truncated file, or one perf did not finish, is said
/// to be that, and a corrupt size is an error rather than an allocation of that size.
fn check_sections(file: &mut std::fs::File, header: &[u8], length: u64) -> Result<(), String> {
    use std::io::{Seek, SeekFrom};
    if header.len() < FILE_HEADER_SIZE as usize {
        return Err(format!(
            "truncated perf.data: {length} bytes, shorter than its header"
        ));
    }
    let word = |bytes: &[u8], at: usize| {
        u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
    };
    if word(header, 8) != FILE_HEADER_SIZE {
        return Err(format!(
            "unsupported perf.data header ({} bytes; perf writes {FILE_HEADER_SIZE})",
            word(header, 8)
        ));
    }
    let attr_size = word(header, 16);
    if !(64..=4096).contains(&attr_size) {
        return Err(format!(
            "corrupt perf.data: event attributes of {attr_size} bytes"
        ));
    }
    let (data_offset, data_size) = (word(header, 40), word(header, 48));
    if data_size == 0 {
        return Err(
            "perf record did not finish writing this perf.data (its header says it \
                    holds no records): was perf killed?"
                .into(),
        );
    }
    let data_end = data_offset.saturating_add(data_size);
    if data_end > length {
        return Err(format!(
            "truncated perf.data: its header says its records end at byte {data_end}, the \
             file has {length} bytes"
        ));
    }
    let inside = |offset: u64, size: u64| offset.saturating_add(size) <= length;
    if !inside(word(header, 24), word(header, 32)) || !inside(word(header, 56), word(header, 64)) {
        return Err("corrupt perf.data: its event attributes lie outside the file".into());
    }
    // The feature sections (command line, build IDs, event names, ...): one (offset, size)
    // after the records for each bit of the header's feature bitmap.
    let features: u32 = (0..4).map(|i| word(header, 72 + 8 * i).count_ones()).sum();
    let mut table = vec![0u8; 16 * features as usize];
    file.seek(SeekFrom::Start(data_end))
        .and_then(|_| file.read_exact(&mut table))
        .map_err(|_| {
            format!("truncated perf.data: its feature sections, after byte {data_end}, are missing")
        })?;
    for entry in table.chunks_exact(16) {
        if !inside(word(entry, 0), word(entry, 8)) {
            return Err(format!(
                "truncated perf.data: a feature section ends at byte {}, the file has {length} \
                 bytes",
                word(entry, 0).saturating_add(word(entry, 8))
            ));
        }
    }
    Ok(())
}

/// The sampled event that the profile is made of, and how to weigh its samples.
struct Sampled {
    index: usize,
    name: String,
    /// The event is a clock (cpu-clock, task-clock): each sample's period is nanoseconds.
    clock: bool,
    /// Samples per second the profile header states.
    frequency: u32,
    /// Nanoseconds a sample stands for when its period does not say.
    nanos_per_sample: u64,
}

/// The event's name as perf printed it, else its kind.
fn event_name(attr: &linux_perf_data::AttributeDescription) -> String {
    match (attr.name(), attr.attr.type_) {
        (Some(name), _) => name.to_string(),
        (None, PerfEventType::Software(SoftwareCounterType::CpuClock)) => "cpu-clock".into(),
        (None, PerfEventType::Software(SoftwareCounterType::TaskClock)) => "task-clock".into(),
        (None, other) => format!("{other:?}"),
    }
}

fn is_clock(attr: &linux_perf_data::AttributeDescription) -> bool {
    matches!(
        attr.attr.type_,
        PerfEventType::Software(SoftwareCounterType::CpuClock | SoftwareCounterType::TaskClock)
    )
}

/// Picks the event the profile is made of: a clock if one was recorded, else the first
/// sampling event (perf adds non-sampling `dummy` events for side-band records).
fn sampled_event(attrs: &[linux_perf_data::AttributeDescription]) -> Result<Sampled, String> {
    let samples = |a: &&linux_perf_data::AttributeDescription| {
        !matches!(a.attr.sampling_policy, SamplingPolicy::NoSampling)
            && !matches!(
                a.attr.type_,
                PerfEventType::Software(SoftwareCounterType::Dummy)
            )
    };
    let (index, attr) = attrs
        .iter()
        .enumerate()
        .find(|(_, a)| samples(a) && is_clock(a))
        .or_else(|| attrs.iter().enumerate().find(|(_, a)| samples(a)))
        .ok_or("this perf.data holds no sampling event (a `perf stat record`?)")?;
    let name = event_name(attr);
    let clock = is_clock(attr);
    let (frequency, nanos_per_sample) = match attr.attr.sampling_policy {
        SamplingPolicy::Frequency(hz) if hz > 0 => {
            (u32::try_from(hz).unwrap_or(u32::MAX), 1_000_000_000 / hz)
        }
        SamplingPolicy::Period(period) if clock => {
            let ns = period.get();
            (
                u32::try_from(1_000_000_000 / ns).unwrap_or(u32::MAX).max(1),
                ns,
            )
        }
        SamplingPolicy::Period(period) => {
            return Err(format!(
                "its event `{name}` was sampled every {} events (perf record -c), so its samples \
                 are not time; record a frequency (-F 999) or the cpu-clock event \
                 (-e cpu-clock)",
                period.get()
            ));
        }
        _ => return Err(format!("its event `{name}` has no sample rate")),
    };
    Ok(Sampled {
        index,
        name,
        clock,
        frequency,
        nanos_per_sample,
    })
}

/// Whether the event's samples carry what DWARF unwinding starts from: the user registers
/// (instruction, stack and frame pointers) and a copy of the user stack.
fn has_stack_copies(attr: &linux_perf_data::AttributeDescription) -> bool {
    let a = &attr.attr;
    let regs = pgo_record::UNWIND_REGS_MASK;
    a.sample_format
        .contains(SampleFormat::REGS_USER | SampleFormat::STACK_USER)
        && a.sample_regs_user & regs == regs
        && a.sample_stack_user > 0
}

fn import<R: Read>(
    mut perf_file: linux_perf_data::PerfFile,
    mut records: linux_perf_data::PerfRecordIter<R>,
    wall_end: SystemTime,
) -> Result<Imported, String> {
    let unreadable = |e: linux_perf_data::Error| format!("corrupt or truncated perf.data ({e})");
    if perf_file.is_stats() {
        return Err("a `perf stat record` file: it counts events and has no samples".into());
    }
    if let Ok(Some(arch)) = perf_file.arch()
        && arch != "x86_64"
    {
        return Err(format!(
            "recorded on {arch}; pgo reads perf.data recorded on x86-64"
        ));
    }
    let attrs = perf_file.event_attributes().to_vec();
    let sampled = sampled_event(&attrs)?;
    let sampled_attr = &attrs[sampled.index];
    let (unwind, unwind_reason) = if has_stack_copies(sampled_attr) {
        (
            UnwindMode::Dwarf,
            "perf record --call-graph dwarf: samples carry user stack copies",
        )
    } else {
        (
            UnwindMode::FramePointers,
            "perf record without stack copies: the kernel's frame-pointer callchains",
        )
    };
    let cmdline: Vec<String> = perf_file
        .cmdline()
        .ok()
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .map(str::to_string)
        .collect();
    // Build IDs of the binaries samples hit, which perf writes at the end of the recording;
    // MMAP2 records carry their own only with --buildid-mmap.
    let build_ids: HashMap<PathBuf, Vec<u8>> = perf_file
        .build_ids()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(key, info)| match key {
            DsoKey::User { full_path, .. } => {
                Some((PathBuf::from(OsStr::from_bytes(&full_path)), info.build_id))
            }
            _ => None,
        })
        .collect();
    let time_range = perf_file.sample_time_range().ok().flatten();
    let little_endian = perf_file.endian() == reader::Endianness::LittleEndian;

    let mut collector = Collector::new(unwind);
    let mut summary = Summary {
        info: pgo_record::RecordingInfo {
            target_pid: 0,
            event: pgo_record::SoftwareEvent::CpuClock,
            frequency: sampled.frequency,
            cpus: Vec::new(),
            kernel_included: !sampled_attr
                .attr
                .flags
                .contains(reader::AttrFlags::EXCLUDE_KERNEL),
            build_ids: !build_ids.is_empty(),
            user_stack_size: sampled_attr.attr.sample_stack_user,
            buffer_bytes: 0,
            event_fds: 0,
        },
        started: 0,
        ended: 0,
        stop_reason: StopReason::TargetExited,
        child: None,
        samples: 0,
        lost: 0,
        throttle_events: 0,
        skipped_records: 0,
    };
    let (mut first_sample, mut last_sample) = (u64::MAX, 0u64);
    let mut other_events: HashMap<usize, u64> = HashMap::new();
    // The program perf started: the first process that exec'd, and the file it mapped first.
    let mut first_exec: Option<(u32, u64)> = None;
    let mut executable: Option<PathBuf> = None;
    while let Some(record) = records.next_record(&mut perf_file).map_err(unreadable)? {
        let PerfFileRecord::EventRecord { attr_index, record } = record else {
            continue;
        };
        let time = record.timestamp().unwrap_or(0);
        if record.record_type == RecordType::SAMPLE && attr_index != sampled.index {
            *other_events.entry(attr_index).or_default() += 1;
            continue;
        }
        if record.record_type == RecordType::LOST_SAMPLES {
            let lost = record.data.as_slice().get(..8).map_or(0, |b| {
                let b: [u8; 8] = b.try_into().expect("8 bytes");
                if little_endian {
                    u64::from_le_bytes(b)
                } else {
                    u64::from_be_bytes(b)
                }
            });
            summary.lost += lost;
            collector.push(Event::Lost(LostEvent { time, cpu: 0, lost }));
            continue;
        }
        check_mmap2(&record)?;
        let parsed = record
            .parse()
            .map_err(|e| format!("corrupt perf.data: a {:?} record: {e}", record.record_type))?;
        let event = match parsed {
            EventRecord::Sample(s) => {
                let sample = sample(&s, time, &sampled);
                if sample.period > MAX_PERIOD {
                    return Err(format!(
                        "corrupt perf.data: a sample of {} ns (one sample at {} Hz is {} ns)",
                        sample.period, sampled.frequency, sampled.nanos_per_sample
                    ));
                }
                summary.samples += 1;
                first_sample = first_sample.min(sample.time);
                last_sample = last_sample.max(sample.time);
                Event::Sample(sample)
            }
            EventRecord::Mmap(m) => {
                // The kernel's and its modules' (pid -1): kernel frames are named from
                // /proc/kallsyms, as in pgo collect.
                if m.pid < 0 || !m.is_executable {
                    continue;
                }
                let filename = PathBuf::from(OsStr::from_bytes(&m.path.as_slice()));
                Event::Mmap(MmapEvent {
                    time,
                    pid: m.pid as u32,
                    tid: m.tid as u32,
                    start: m.address,
                    len: m.length,
                    pgoff: m.page_offset,
                    file_id: known_build_id(&build_ids, &filename),
                    prot: PROT_READ | PROT_EXEC,
                    flags: 0,
                    filename,
                    synthesized: false,
                })
            }
            EventRecord::Mmap2(m) => {
                if m.pid < 0 || m.protection & PROT_EXEC == 0 {
                    continue;
                }
                let filename = PathBuf::from(OsStr::from_bytes(&m.path.as_slice()));
                let file_id = match m.file_id {
                    Mmap2FileId::BuildId(id) if !id.is_empty() => FileId::BuildId(id),
                    _ => known_build_id(&build_ids, &filename),
                };
                Event::Mmap(MmapEvent {
                    time,
                    pid: m.pid as u32,
                    tid: m.tid as u32,
                    start: m.address,
                    len: m.length,
                    pgoff: m.page_offset,
                    file_id,
                    prot: m.protection,
                    flags: m.flags,
                    filename,
                    synthesized: false,
                })
            }
            EventRecord::Comm(c) => Event::Comm(CommEvent {
                time,
                pid: c.pid as u32,
                tid: c.tid as u32,
                comm: String::from_utf8_lossy(&c.name.as_slice()).into_owned(),
                exec: c.is_execve,
                synthesized: false,
            }),
            EventRecord::Fork(t) => Event::Fork(task(&t)),
            EventRecord::Exit(t) => Event::Exit(task(&t)),
            EventRecord::Lost(l) => {
                summary.lost += l.count;
                Event::Lost(LostEvent {
                    time,
                    cpu: 0,
                    lost: l.count,
                })
            }
            EventRecord::Throttle(t) | EventRecord::Unthrottle(t) => {
                summary.throttle_events += 1;
                Event::Throttle(ThrottleEvent {
                    time: t.timestamp,
                    cpu: 0,
                    throttled: record.record_type == RecordType::THROTTLE,
                })
            }
            _ => {
                summary.skipped_records += 1;
                continue;
            }
        };
        match &event {
            Event::Comm(c) if c.exec && first_exec.is_none() => first_exec = Some((c.pid, c.time)),
            Event::Mmap(m)
                if executable.is_none()
                    && m.filename.is_absolute()
                    && first_exec.is_some_and(|(pid, t)| m.pid == pid && m.time >= t) =>
            {
                executable = Some(m.filename.clone())
            }
            _ => {}
        }
        collector.push(event);
    }

    (summary.started, summary.ended) = match time_range {
        Some(r) => (r.first_sample_time, r.last_sample_time),
        None if summary.samples > 0 => (first_sample, last_sample),
        None => (0, 0),
    };
    let duration = Duration::from_nanos(summary.ended.saturating_sub(summary.started));
    // perf.data keeps no wall-clock time of its own (without -k): perf writes the file as the
    // recording ends.
    let wall_start = wall_end.checked_sub(duration).unwrap_or(wall_end);
    let recorded = match cmdline.iter().position(|a| a == "--") {
        Some(i) => cmdline[i + 1..].join(" "),
        None => cmdline.join(" "),
    };
    // `perf record -g` walks frame pointers; through code that keeps none the stacks are
    // wrong (frames skipped, or made of whatever the register held), whoever reads them.
    // The recorded build: a binary rebuilt since says nothing of it (and is warned about).
    let recorded_executable = executable.as_deref().and_then(|exe| {
        pgo_symbolize::binary_with_build_id(exe, &crate::build_id_hex(build_ids.get(exe)?))
    });
    let no_frame_pointers = (unwind == UnwindMode::FramePointers)
        .then_some(recorded_executable.as_deref())
        .flatten()
        .and_then(|exe| match crate::detect_frame_pointers(exe) {
            crate::FramePointerVerdict::Absent(why) => Some(format!(
                "{why}: the stacks perf record -g took through it are broken; record with \
                 perf record --call-graph dwarf (or build with frame pointers)"
            )),
            crate::FramePointerVerdict::Present(_) => None,
        });
    let meta = Meta {
        origin: if recorded.is_empty() {
            "perf record (perf.data)".to_string()
        } else {
            format!("perf record (perf.data): {recorded}")
        },
        event: sampled.name.clone(),
        executable,
        frequency: sampled.frequency,
        wall_start,
        unwind_note: format!("unwinding: {} ({unwind_reason})", unwind.name()),
        stack_bytes: sampled_attr.attr.sample_stack_user,
        advice: Advice {
            larger_stack: format!(
                "record with a larger copy (perf record --call-graph dwarf,{}; this recording \
                 copied {} bytes)",
                crate::MAX_STACK_BYTES,
                sampled_attr.attr.sample_stack_user
            ),
            frame_pointers: "perf record -g".to_string(),
        },
    };
    let (profile, mut warnings) = crate::build_profile(collector, &summary, &meta);
    let rebuilt = rebuilt_binaries(&profile);
    // The symbolizer refuses a file whose build ID is not the recorded one; say why once.
    warnings.retain(|w| {
        !rebuilt
            .iter()
            .any(|(path, _)| w.starts_with(&format!("cannot symbolize {path}: ")))
    });
    warnings.extend(rebuilt.into_iter().map(|(_, warning)| warning));
    warnings.extend(no_frame_pointers);
    let mut others: Vec<(usize, u64)> = other_events.into_iter().collect();
    others.sort();
    for (index, count) in others {
        warnings.push(format!(
            "left out {count} samples of event `{}`: the profile is made of `{}`'s",
            event_name(&attrs[index]),
            sampled.name
        ));
    }
    Ok(Imported { profile, warnings })
}

/// The most CPU time one sample may stand for: 1,000 s (a clock sampled once a second stands
/// for 1 s). More is a corrupt period, which would overflow the profile's sums.
const MAX_PERIOD: u64 = 1_000_000_000_000;

const PROT_READ: u32 = 1;
const PROT_EXEC: u32 = 4;

/// MMAP2's build ID is at most 20 bytes; the parser asserts it, so a corrupt length would
/// panic: refuse it first.
fn check_mmap2(record: &RawEventRecord<'_>) -> Result<(), String> {
    const BUILD_ID_LENGTH_AT: usize = 4 + 4 + 8 + 8 + 8;
    if record.record_type == RecordType::MMAP2
        && record.misc & reader::constants::PERF_RECORD_MISC_MMAP_BUILD_ID != 0
        && record
            .data
            .as_slice()
            .get(BUILD_ID_LENGTH_AT)
            .is_some_and(|&n| n > 20)
    {
        return Err("corrupt perf.data: an MMAP2 record with a build ID over 20 bytes".into());
    }
    Ok(())
}

/// The build ID perf recorded for the file, else none (the collector reads the file's).
fn known_build_id(build_ids: &HashMap<PathBuf, Vec<u8>>, filename: &Path) -> FileId {
    match build_ids.get(filename) {
        Some(id) if !id.is_empty() => FileId::BuildId(id.clone()),
        _ => FileId::Inode {
            major: 0,
            minor: 0,
            inode: 0,
            generation: 0,
        },
    }
}

fn task(t: &reader::ForkOrExitRecord) -> TaskEvent {
    TaskEvent {
        time: t.timestamp,
        pid: t.pid as u32,
        ppid: t.ppid as u32,
        tid: t.tid as u32,
        ptid: t.ptid as u32,
    }
}

fn sample(s: &reader::SampleRecord<'_>, time: u64, sampled: &Sampled) -> Sample {
    let callchain = s
        .callchain
        .map(|c| (0..c.len()).filter_map(|i| c.get(i)).collect())
        .unwrap_or_default();
    let user_regs = s.user_regs.as_ref().and_then(|r| {
        Some(UserRegs {
            abi: REGS_ABI_64,
            ip: r.get(pgo_record::PERF_REG_X86_IP.into())?,
            sp: r.get(pgo_record::PERF_REG_X86_SP.into())?,
            bp: r.get(pgo_record::PERF_REG_X86_BP.into())?,
        })
    });
    let user_stack = s
        .user_stack
        .as_ref()
        .map(|(data, dyn_size)| {
            let data = data.as_slice();
            let valid = usize::try_from(*dyn_size)
                .unwrap_or(usize::MAX)
                .min(data.len());
            data[..valid].to_vec()
        })
        .unwrap_or_default();
    let period = match s.period {
        Some(p) if sampled.clock && p > 0 => p,
        _ => sampled.nanos_per_sample,
    };
    Sample {
        time: s.timestamp.unwrap_or(time),
        pid: s.pid.unwrap_or(0) as u32,
        tid: s.tid.unwrap_or(0) as u32,
        cpu: s.cpu.unwrap_or(0),
        ip: s.ip.unwrap_or(0),
        period,
        cpu_mode: match s.cpu_mode {
            reader::CpuMode::Kernel => CpuMode::Kernel,
            reader::CpuMode::User => CpuMode::User,
            reader::CpuMode::Hypervisor => CpuMode::Hypervisor,
            reader::CpuMode::GuestKernel => CpuMode::GuestKernel,
            reader::CpuMode::GuestUser => CpuMode::GuestUser,
            _ => CpuMode::Unknown,
        },
        callchain,
        user_regs,
        user_stack,
    }
}

/// The profile's binaries whose file on disk is not the build perf recorded (rebuilt since):
/// each one's path and a warning.
fn rebuilt_binaries(profile: &Profile) -> Vec<(String, String)> {
    let view = pgo_profile::ProfileView::new(profile);
    let mut rebuilt = Vec::new();
    for m in &profile.mapping {
        let (path, recorded) = (view.str(m.filename), view.str(m.build_id));
        if recorded.is_empty() || !Path::new(path).is_absolute() {
            continue;
        }
        let Ok(info) = pgo_symbolize::ObjectInfo::read(Path::new(path)) else {
            continue;
        };
        // perf's build-ID cache keeps the recorded build, unless recorded with -N.
        if info.build_id != recorded
            && pgo_symbolize::binary_with_build_id(Path::new(path), recorded).is_none()
        {
            let on_disk = if info.build_id.is_empty() {
                "none".to_string()
            } else {
                info.build_id.clone()
            };
            rebuilt.push((
                path.to_string(),
                format!(
                    "{path} is not the build perf recorded (build ID {on_disk} on disk, \
                     {recorded} in perf.data, and not in perf's build-ID cache): it was \
                     rebuilt since, so its samples are left unsymbolized (a debug file with \
                     the recorded build ID under /usr/lib/debug would be used); record \
                     without -N (perf then keeps a copy in ~/.debug), or convert perf.data \
                     with `pgo convert` right after recording, before rebuilding"
                ),
            ));
        }
    }
    rebuilt
}
