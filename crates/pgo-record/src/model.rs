//! The plain data model of a recording: what the kernel sent, decoded into owned Rust values.
//!
//! All times are `CLOCK_MONOTONIC` nanoseconds (the events are opened with `use_clockid`), the
//! same clock as [`crate::monotonic_ns`], so they compare with times taken in user space.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::sys;

/// Privilege level of the CPU when a sample was taken (`PERF_RECORD_MISC_CPUMODE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpuMode {
    Unknown,
    Kernel,
    User,
    Hypervisor,
    GuestKernel,
    GuestUser,
}

impl CpuMode {
    pub(crate) fn from_misc(misc: u16) -> Self {
        match misc & sys::PERF_RECORD_MISC_CPUMODE_MASK {
            1 => CpuMode::Kernel,
            2 => CpuMode::User,
            3 => CpuMode::Hypervisor,
            4 => CpuMode::GuestKernel,
            5 => CpuMode::GuestUser,
            _ => CpuMode::Unknown,
        }
    }
}

/// Which part of the system the frames after a `PERF_CONTEXT_*` marker belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallchainContext {
    Hypervisor,
    Kernel,
    User,
    Guest,
    GuestKernel,
    GuestUser,
}

impl CallchainContext {
    /// The context a raw callchain entry announces, if it is a `PERF_CONTEXT_*` marker.
    pub fn from_marker(entry: u64) -> Option<Self> {
        Some(match entry {
            sys::PERF_CONTEXT_HV => Self::Hypervisor,
            sys::PERF_CONTEXT_KERNEL => Self::Kernel,
            sys::PERF_CONTEXT_USER => Self::User,
            sys::PERF_CONTEXT_GUEST => Self::Guest,
            sys::PERF_CONTEXT_GUEST_KERNEL => Self::GuestKernel,
            sys::PERF_CONTEXT_GUEST_USER => Self::GuestUser,
            _ => return None,
        })
    }

    /// Whether a raw callchain entry is any `PERF_CONTEXT_*` marker (including unknown ones).
    pub fn is_marker(entry: u64) -> bool {
        entry >= sys::PERF_CONTEXT_MAX
    }
}

/// One frame of a callchain, with the context marker that preceded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub context: CallchainContext,
    /// For the first frame of a context this is the interrupted instruction pointer; for the others
    /// it is a return address (the instruction *after* the call), as the kernel's frame-pointer
    /// walk reports them.
    pub address: u64,
}

/// The x86-64 user registers a DWARF unwinder needs to start from (`PERF_SAMPLE_REGS_USER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRegs {
    /// `PERF_SAMPLE_REGS_ABI_*`: 1 = 32-bit task, 2 = 64-bit task.
    pub abi: u64,
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
}

/// One `PERF_RECORD_SAMPLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub time: u64,
    pub pid: u32,
    pub tid: u32,
    pub cpu: u32,
    pub ip: u64,
    /// Nanoseconds of CPU time this sample stands for (for the clock events).
    pub period: u64,
    pub cpu_mode: CpuMode,
    /// The raw `PERF_SAMPLE_CALLCHAIN` entries, leaf first, `PERF_CONTEXT_*` markers included;
    /// [`Sample::frames`] decodes them.
    pub callchain: Vec<u64>,
    /// Present in user-stack mode when the task had user registers (not for kernel threads).
    pub user_regs: Option<UserRegs>,
    /// The copy of the user stack starting at `user_regs.sp` (only the valid `dyn_size` bytes);
    /// empty unless user-stack mode is on.
    pub user_stack: Vec<u8>,
}

impl Sample {
    /// The callchain frames, each tagged with the `PERF_CONTEXT_*` marker before it; markers are
    /// not returned as frames. Entries before any marker are attributed to `cpu_mode`'s context.
    pub fn frames(&self) -> impl Iterator<Item = Frame> + '_ {
        let mut context = match self.cpu_mode {
            CpuMode::Kernel => CallchainContext::Kernel,
            CpuMode::Hypervisor => CallchainContext::Hypervisor,
            CpuMode::GuestKernel => CallchainContext::GuestKernel,
            CpuMode::GuestUser => CallchainContext::GuestUser,
            CpuMode::User | CpuMode::Unknown => CallchainContext::User,
        };
        self.callchain.iter().filter_map(move |&entry| {
            if CallchainContext::is_marker(entry) {
                if let Some(c) = CallchainContext::from_marker(entry) {
                    context = c;
                }
                None
            } else {
                Some(Frame {
                    context,
                    address: entry,
                })
            }
        })
    }

    /// The user-space frames of the callchain (leaf first).
    pub fn user_frames(&self) -> impl Iterator<Item = u64> + '_ {
        self.frames()
            .filter(|f| f.context == CallchainContext::User)
            .map(|f| f.address)
    }

    /// The kernel frames of the callchain (leaf first).
    pub fn kernel_frames(&self) -> impl Iterator<Item = u64> + '_ {
        self.frames()
            .filter(|f| f.context == CallchainContext::Kernel)
            .map(|f| f.address)
    }
}

/// Identity of a mapped file: the build ID when the kernel gave one, else device and inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileId {
    BuildId(Vec<u8>),
    Inode {
        major: u32,
        minor: u32,
        inode: u64,
        generation: u64,
    },
}

/// An executable mapping (`PERF_RECORD_MMAP2`, or synthesized from `/proc/PID/maps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmapEvent {
    pub time: u64,
    pub pid: u32,
    pub tid: u32,
    pub start: u64,
    pub len: u64,
    /// File offset of `start`.
    pub pgoff: u64,
    pub file_id: FileId,
    /// `PROT_*` bits.
    pub prot: u32,
    /// `MAP_*` bits.
    pub flags: u32,
    /// Path of the mapped file, or a pseudo name such as `[vdso]`, `//anon`, `[heap]`.
    pub filename: PathBuf,
    /// True for mappings read from `/proc/PID/maps` when attaching (time = recording start).
    pub synthesized: bool,
}

impl MmapEvent {
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
    pub fn contains(&self, address: u64) -> bool {
        address >= self.start && address < self.end()
    }
    pub fn is_executable(&self) -> bool {
        self.prot & libc::PROT_EXEC as u32 != 0
    }
    /// The build ID, if the kernel reported one.
    pub fn build_id(&self) -> Option<&[u8]> {
        match &self.file_id {
            FileId::BuildId(b) => Some(b),
            FileId::Inode { .. } => None,
        }
    }
}

/// A thread's name (`PERF_RECORD_COMM`, or synthesized from `/proc/PID/task/TID/comm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommEvent {
    pub time: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// The name changed because the thread called `execve` (`PERF_RECORD_MISC_COMM_EXEC`).
    pub exec: bool,
    pub synthesized: bool,
}

/// `PERF_RECORD_FORK` / `PERF_RECORD_EXIT`. A new thread has `pid == ppid`; a new process has
/// `pid == tid` and `ppid` its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskEvent {
    pub time: u64,
    pub pid: u32,
    pub ppid: u32,
    pub tid: u32,
    pub ptid: u32,
}

/// `PERF_RECORD_LOST` (or `LOST_SAMPLES`): the ring buffer was full and records were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostEvent {
    pub time: u64,
    pub cpu: u32,
    pub lost: u64,
}

/// `PERF_RECORD_THROTTLE` / `UNTHROTTLE`: the kernel lowered (or restored) the sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleEvent {
    pub time: u64,
    pub cpu: u32,
    pub throttled: bool,
}

/// One decoded record, as handed to the streaming callback of [`crate::record_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Sample(Sample),
    Mmap(MmapEvent),
    Comm(CommEvent),
    Fork(TaskEvent),
    Exit(TaskEvent),
    Lost(LostEvent),
    Throttle(ThrottleEvent),
}

impl Event {
    pub fn time(&self) -> u64 {
        match self {
            Event::Sample(s) => s.time,
            Event::Mmap(m) => m.time,
            Event::Comm(c) => c.time,
            Event::Fork(t) | Event::Exit(t) => t.time,
            Event::Lost(l) => l.time,
            Event::Throttle(t) => t.time,
        }
    }
}

/// Why the recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The spawned command exited (spawn mode) or the attached process exited (attach mode).
    TargetExited,
    /// `RecordOptions::duration` elapsed.
    Duration,
    /// The caller's stop flag was set.
    StopFlag,
    /// The streaming callback returned `ControlFlow::Break`.
    Callback,
}

/// How the spawned command ended (spawn mode only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildExit {
    pub pid: u32,
    /// `None` when the status could not be collected (e.g. the caller set `SIGCHLD` to `SIG_IGN`).
    pub status: Option<ExitStatus>,
    /// User + system CPU time of the command (from `wait4`), when collected.
    pub cpu_time: Option<Duration>,
    /// True when the recording ended first and the command was terminated by us (SIGTERM, then
    /// SIGKILL after a grace period).
    pub killed_by_recorder: bool,
}

/// What was actually configured, after the fallbacks the kernel forced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingInfo {
    /// The pid that was spawned or attached to.
    pub target_pid: u32,
    pub event: crate::SoftwareEvent,
    pub frequency: u32,
    /// CPUs with a ring buffer.
    pub cpus: Vec<u32>,
    /// False when kernel samples/frames had to be excluded (`perf_event_paranoid` >= 2 without
    /// CAP_PERFMON).
    pub kernel_included: bool,
    /// The kernel was asked to put build IDs into MMAP2 records (`build_id` attr bit accepted).
    pub build_ids: bool,
    /// Bytes of user stack requested per sample (0 = callchain-only mode).
    pub user_stack_size: u32,
    /// Ring-buffer data size per CPU in bytes.
    pub buffer_bytes: usize,
    /// Number of perf event file descriptors opened (threads × CPUs in attach mode).
    pub event_fds: usize,
}

/// Counters every recording keeps, whether streamed or collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub info: RecordingInfo,
    pub started: u64,
    pub ended: u64,
    pub stop_reason: StopReason,
    pub child: Option<ChildExit>,
    pub samples: u64,
    /// Records the kernel dropped because a ring buffer was full (sum of `PERF_RECORD_LOST`).
    pub lost: u64,
    pub throttle_events: u64,
    /// Records of a type this crate does not decode, or too short to decode.
    pub skipped_records: u64,
}

/// A whole recording in memory. Memory grows with the number of samples (≈ 100 bytes plus 8 per
/// callchain entry plus the user-stack copy each); use [`crate::record_with`] to stream instead.
///
/// Every list is sorted by time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub info: RecordingInfo,
    /// `CLOCK_MONOTONIC` ns when recording started / ended.
    pub started: u64,
    pub ended: u64,
    pub stop_reason: StopReason,
    /// Spawn mode: how the command ended.
    pub child: Option<ChildExit>,
    pub samples: Vec<Sample>,
    /// Executable mappings over time, for every pid (synthesized ones first, at `started`).
    pub mmaps: Vec<MmapEvent>,
    pub comms: Vec<CommEvent>,
    pub forks: Vec<TaskEvent>,
    pub exits: Vec<TaskEvent>,
    pub lost_events: Vec<LostEvent>,
    pub throttles: Vec<ThrottleEvent>,
    /// Total records lost (sum over `lost_events`).
    pub lost: u64,
    pub skipped_records: u64,
}

impl Recording {
    pub(crate) fn new(info: RecordingInfo) -> Self {
        Recording {
            info,
            started: 0,
            ended: 0,
            stop_reason: StopReason::TargetExited,
            child: None,
            samples: Vec::new(),
            mmaps: Vec::new(),
            comms: Vec::new(),
            forks: Vec::new(),
            exits: Vec::new(),
            lost_events: Vec::new(),
            throttles: Vec::new(),
            lost: 0,
            skipped_records: 0,
        }
    }

    pub(crate) fn push(&mut self, event: Event) {
        match event {
            Event::Sample(s) => self.samples.push(s),
            Event::Mmap(m) => self.mmaps.push(m),
            Event::Comm(c) => self.comms.push(c),
            Event::Fork(t) => self.forks.push(t),
            Event::Exit(t) => self.exits.push(t),
            Event::Lost(l) => {
                self.lost += l.lost;
                self.lost_events.push(l)
            }
            Event::Throttle(t) => self.throttles.push(t),
        }
    }

    pub(crate) fn finish(&mut self, summary: &Summary) {
        self.info = summary.info.clone();
        self.started = summary.started;
        self.ended = summary.ended;
        self.stop_reason = summary.stop_reason;
        self.child = summary.child;
        self.skipped_records = summary.skipped_records;
        self.samples.sort_by_key(|s| s.time);
        self.mmaps.sort_by_key(|m| m.time);
        self.comms.sort_by_key(|c| c.time);
        self.forks.sort_by_key(|t| t.time);
        self.exits.sort_by_key(|t| t.time);
        self.lost_events.sort_by_key(|l| l.time);
        self.throttles.sort_by_key(|t| t.time);
    }

    /// Wall-clock length of the recording.
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.ended.saturating_sub(self.started))
    }

    /// Every pid that appears in samples, mappings, names or forks.
    pub fn pids(&self) -> BTreeSet<u32> {
        let mut pids: BTreeSet<u32> = self.samples.iter().map(|s| s.pid).collect();
        pids.extend(self.mmaps.iter().map(|m| m.pid));
        pids.extend(self.comms.iter().map(|c| c.pid));
        pids.extend(self.forks.iter().map(|f| f.pid));
        pids
    }

    /// The (pid, tid) pairs that have samples, with their sample counts.
    pub fn samples_per_thread(&self) -> BTreeMap<(u32, u32), u64> {
        let mut map = BTreeMap::new();
        for s in &self.samples {
            *map.entry((s.pid, s.tid)).or_insert(0) += 1;
        }
        map
    }

    /// The name thread `tid` of process `pid` had at `time`: its latest COMM at or before `time`;
    /// for a thread that never had one (names are inherited without a record), the process
    /// leader's, and for a forked process without an exec, its parent's as of the fork.
    pub fn comm_at(&self, pid: u32, tid: u32, time: u64) -> Option<&str> {
        let latest = |matches: &dyn Fn(&CommEvent) -> bool, time: u64| {
            self.comms
                .iter()
                .filter(|c| c.time <= time && matches(c))
                .max_by_key(|c| c.time)
                .map(|c| c.comm.as_str())
        };
        if let Some(name) = latest(&|c| c.pid == pid && c.tid == tid, time) {
            return Some(name);
        }
        let (mut pid, mut time) = (pid, time);
        // Bounded walk up the fork tree (guards against malformed cycles).
        for _ in 0..64 {
            if let Some(name) = latest(&|c| c.pid == pid && c.tid == pid, time) {
                return Some(name);
            }
            let fork = self.parent_fork(pid)?;
            (pid, time) = (fork.ppid, fork.time);
        }
        None
    }

    /// The FORK record that created process `pid` (not a thread), if it was recorded.
    pub fn parent_fork(&self, pid: u32) -> Option<&TaskEvent> {
        self.forks
            .iter()
            .find(|f| f.pid == pid && f.tid == pid && f.ppid != pid)
    }

    /// The executable mapping that covered `address` in process `pid` at `time`.
    ///
    /// Follows the address-space lineage: a mapping made after the latest `execve` of `pid`
    /// (before `time`) wins; a process with no exec of its own inherits its parent's mappings as
    /// of its fork. Later mappings of the same range replace earlier ones.
    pub fn mapping_at(&self, pid: u32, address: u64, time: u64) -> Option<&MmapEvent> {
        let mut pid = pid;
        let mut time = time;
        // Bounded walk up the fork tree (guards against malformed cycles).
        for _ in 0..64 {
            let exec_time = self
                .comms
                .iter()
                .filter(|c| c.pid == pid && c.exec && c.time <= time)
                .map(|c| c.time)
                .max();
            let found = self
                .mmaps
                .iter()
                .rev()
                .filter(|m| m.pid == pid && m.time <= time && m.contains(address))
                .find(|m| exec_time.is_none_or(|e| m.time >= e));
            if found.is_some() {
                return found;
            }
            if exec_time.is_some() {
                return None;
            }
            // No exec of its own: look at the parent as of the fork.
            let fork = self.parent_fork(pid)?;
            (pid, time) = (fork.ppid, fork.time);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mmap(time: u64, pid: u32, start: u64, name: &str) -> MmapEvent {
        MmapEvent {
            time,
            pid,
            tid: pid,
            start,
            len: 0x1000,
            pgoff: 0,
            file_id: FileId::BuildId(vec![1; 20]),
            prot: libc::PROT_EXEC as u32 | libc::PROT_READ as u32,
            flags: 0,
            filename: name.into(),
            synthesized: false,
        }
    }

    fn comm(time: u64, pid: u32, tid: u32, name: &str, exec: bool) -> CommEvent {
        CommEvent {
            time,
            pid,
            tid,
            comm: name.into(),
            exec,
            synthesized: false,
        }
    }

    fn fork(time: u64, pid: u32, ppid: u32, tid: u32) -> TaskEvent {
        TaskEvent {
            time,
            pid,
            ppid,
            tid,
            ptid: ppid,
        }
    }

    /// Process 10 runs "a" (mapped at 0x1000); it forks 11 (no exec) and 12, which execs "b"
    /// (mapped at 0x1000 too); thread 13 of 10 has no COMM of its own.
    fn lineage() -> Recording {
        let mut r = Recording::new(crate::session::placeholder_info());
        r.comms = vec![comm(1, 10, 10, "a", true), comm(30, 12, 12, "b", true)];
        r.mmaps = vec![
            mmap(2, 10, 0x1000, "/a"),
            mmap(25, 10, 0x1000, "/a2"),
            mmap(31, 12, 0x1000, "/b"),
        ];
        r.forks = vec![
            fork(20, 11, 10, 11),
            fork(21, 12, 10, 12),
            fork(22, 10, 10, 13),
        ];
        r
    }

    #[test]
    fn mapping_follows_fork_and_exec() {
        let r = lineage();
        let name = |pid, t| r.mapping_at(pid, 0x1800, t).map(|m| m.filename.clone());
        assert_eq!(name(10, 5), Some("/a".into()));
        assert_eq!(
            name(10, 26),
            Some("/a2".into()),
            "a later mapping of the range wins"
        );
        assert_eq!(
            name(11, 40),
            Some("/a".into()),
            "inherited as of the fork at t=20"
        );
        assert_eq!(name(12, 40), Some("/b".into()));
        assert_eq!(
            name(12, 30),
            None,
            "after exec, before the new image is mapped"
        );
        assert_eq!(r.mapping_at(10, 0x5000, 5), None);
        assert_eq!(name(99, 5), None);
    }

    #[test]
    fn comm_falls_back_to_leader_and_parent() {
        let r = lineage();
        assert_eq!(r.comm_at(10, 13, 40), Some("a"));
        assert_eq!(r.comm_at(11, 11, 40), Some("a"));
        assert_eq!(r.comm_at(12, 12, 40), Some("b"));
        assert_eq!(r.comm_at(12, 12, 25), Some("a"));
        assert_eq!(r.comm_at(99, 99, 40), None);
    }

    #[test]
    fn frames_carry_their_context() {
        let s = Sample {
            time: 0,
            pid: 1,
            tid: 1,
            cpu: 0,
            ip: 5,
            period: 1,
            cpu_mode: CpuMode::User,
            callchain: vec![
                5,
                6,
                sys::PERF_CONTEXT_KERNEL,
                7,
                sys::PERF_CONTEXT_MAX + 3,
                8,
            ],
            user_regs: None,
            user_stack: Vec::new(),
        };
        let frames: Vec<_> = s.frames().map(|f| (f.context, f.address)).collect();
        assert_eq!(
            frames,
            [
                (CallchainContext::User, 5),
                (CallchainContext::User, 6),
                (CallchainContext::Kernel, 7),
                (CallchainContext::Kernel, 8),
            ]
        );
        assert!(CallchainContext::is_marker(sys::PERF_CONTEXT_USER));
        assert!(!CallchainContext::is_marker(0x7fff_ffff_f000));
    }
}
