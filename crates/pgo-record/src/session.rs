//! Opening the events for a target, the reading loop, and stopping.

use std::collections::HashSet;
use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::model::{Event, RecordingInfo, StopReason, Summary};
use crate::parse::Parser;
use crate::procfs;
use crate::ring::RingBuffer;
use crate::spawn::{self, Child};
use crate::sys::{self, PerfEventAttr};
use crate::{RecordOptions, SoftwareEvent, Target};

/// Largest `sample_stack_user` the kernel accepts (the sample must fit a u16 record size).
const MAX_USER_STACK: u32 = 65528;
/// Smallest buffer we fall back to when the locked-memory limit refuses the default one.
const MIN_BUFFER_PAGES: usize = 8;

/// What this machine's kernel allows, for diagnostics (`pgo collect --check`) and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub paranoid: Option<i64>,
    pub max_sample_rate: Option<i64>,
    pub max_stack: Option<i64>,
    pub mlock_kb: Option<i64>,
    pub cpus: Vec<u32>,
    /// Kernel samples/callchains are allowed for this process.
    pub kernel_samples: bool,
    /// MMAP2 records can carry build IDs (`build_id` attr bit, Linux 5.12+).
    pub build_id_mmap: bool,
    /// A seccomp filter is active in this process.
    pub seccomp_filter: bool,
}

/// Check that `perf_event_open` works here by opening (and closing) a cpu-clock event on the
/// calling thread, and report what the kernel allows.
pub fn probe() -> Result<Capabilities> {
    let options = RecordOptions::default();
    let mut opener = Opener::new(&options, Mode::Probe);
    // Our own thread (pid 0), any CPU: enough to learn what the kernel accepts.
    let fd = opener.open_first(0, -1).map_err(|e| opener.error(e, 0))?;
    drop(fd);
    Ok(Capabilities {
        paranoid: procfs::kernel_sysctl("perf_event_paranoid"),
        max_sample_rate: procfs::kernel_sysctl("perf_event_max_sample_rate"),
        max_stack: procfs::kernel_sysctl("perf_event_max_stack"),
        mlock_kb: procfs::kernel_sysctl("perf_event_mlock_kb"),
        cpus: procfs::online_cpus(),
        kernel_samples: opener.kernel(),
        build_id_mmap: opener.build_id(),
        seccomp_filter: procfs::seccomp_mode() == Some(2),
    })
}

pub(crate) fn placeholder_info() -> RecordingInfo {
    RecordingInfo {
        target_pid: 0,
        event: SoftwareEvent::CpuClock,
        frequency: 0,
        cpus: Vec::new(),
        kernel_included: false,
        build_ids: false,
        user_stack_size: 0,
        buffer_bytes: 0,
        event_fds: 0,
    }
}

fn validate(options: &RecordOptions) -> Result<()> {
    let invalid = |s: String| Err(Error::InvalidOptions(s));
    if options.frequency == 0 {
        return invalid("the sample frequency must be at least 1 Hz".into());
    }
    if let Some(max) = procfs::kernel_sysctl("perf_event_max_sample_rate")
        && i64::from(options.frequency) > max
    {
        return invalid(format!(
            "sample frequency {} Hz exceeds kernel.perf_event_max_sample_rate = {max}",
            options.frequency
        ));
    }
    if let Some(stack) = options.user_stack
        && (stack == 0 || stack > MAX_USER_STACK)
    {
        return invalid(format!(
            "user stack size {stack} must be between 8 and {MAX_USER_STACK} bytes"
        ));
    }
    if let Some(pages) = options.buffer_pages
        && (pages == 0 || !pages.is_power_of_two())
    {
        return invalid(format!("buffer_pages {pages} is not a power of two"));
    }
    if options.poll_interval.is_zero() {
        return invalid("poll_interval must not be zero".into());
    }
    Ok(())
}

/// What the events are opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// On a forked child before its `execve`: disabled until then (`enable_on_exec`).
    Spawn,
    /// On the threads of a running process: enabled at once.
    Attach,
    /// On ourselves, only to see what the kernel accepts.
    Probe,
}

/// Builds the attribute struct and opens events, applying the fallbacks the kernel may force.
struct Opener {
    attr: PerfEventAttr,
    event: SoftwareEvent,
    attach: bool,
}

impl Opener {
    fn new(options: &RecordOptions, mode: Mode) -> Self {
        let mut attr = PerfEventAttr {
            type_: sys::PERF_TYPE_SOFTWARE,
            config: match options.event {
                SoftwareEvent::CpuClock => sys::PERF_COUNT_SW_CPU_CLOCK,
                SoftwareEvent::TaskClock => sys::PERF_COUNT_SW_TASK_CLOCK,
            },
            sample_period_or_freq: u64::from(options.frequency),
            sample_type: sys::PERF_SAMPLE_IP
                | sys::PERF_SAMPLE_TID
                | sys::PERF_SAMPLE_TIME
                | sys::PERF_SAMPLE_CPU
                | sys::PERF_SAMPLE_PERIOD
                | sys::PERF_SAMPLE_CALLCHAIN,
            flags: sys::ATTR_INHERIT
                | sys::ATTR_FREQ
                | sys::ATTR_MMAP
                | sys::ATTR_MMAP2
                | sys::ATTR_COMM
                | sys::ATTR_COMM_EXEC
                | sys::ATTR_TASK
                | sys::ATTR_SAMPLE_ID_ALL
                | sys::ATTR_USE_CLOCKID
                | sys::ATTR_WATERMARK,
            clockid: libc::CLOCK_MONOTONIC,
            sample_max_stack: options.max_stack,
            ..Default::default()
        };
        if let Some(max) = procfs::kernel_sysctl("perf_event_max_stack") {
            attr.sample_max_stack = attr.sample_max_stack.min(max.clamp(1, 65535) as u16);
        }
        let intended = default_pages(options) * sys::page_size();
        attr.wakeup = (intended / 4).min(128 * 1024) as u32;
        if mode == Mode::Spawn {
            attr.flags |= sys::ATTR_DISABLED | sys::ATTR_ENABLE_ON_EXEC;
        }
        if !options.include_kernel {
            attr.flags |= kernel_exclusion();
        }
        if options.build_ids {
            attr.flags |= sys::ATTR_BUILD_ID;
        }
        if !options.user_callchain {
            attr.flags |= sys::ATTR_EXCLUDE_CALLCHAIN_USER;
        }
        if let Some(stack) = options.user_stack {
            attr.sample_type |= sys::PERF_SAMPLE_REGS_USER | sys::PERF_SAMPLE_STACK_USER;
            attr.sample_regs_user = sys::UNWIND_REGS_MASK;
            attr.sample_stack_user = stack.div_ceil(8) * 8;
        }
        Opener {
            attr,
            event: options.event,
            attach: mode == Mode::Attach,
        }
    }

    fn kernel(&self) -> bool {
        self.attr.flags & sys::ATTR_EXCLUDE_KERNEL == 0
    }

    fn build_id(&self) -> bool {
        self.attr.flags & sys::ATTR_BUILD_ID != 0
    }

    fn parser(&self) -> Parser {
        Parser {
            sample_type: self.attr.sample_type,
            regs_user_mask: self.attr.sample_regs_user,
        }
    }

    /// Open the first event, dropping optional features the kernel refuses: build IDs in MMAP2
    /// (EINVAL before Linux 5.12) and kernel sampling (EACCES under `perf_event_paranoid` >= 2).
    fn open_first(&mut self, pid: i32, cpu: i32) -> io::Result<OwnedFd> {
        loop {
            match sys::perf_event_open(&self.attr, pid, cpu) {
                Ok(fd) => return Ok(fd),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINVAL) if self.build_id() => {
                        self.attr.flags &= !sys::ATTR_BUILD_ID;
                    }
                    Some(libc::EACCES | libc::EPERM)
                        if self.kernel()
                            && procfs::kernel_sysctl("perf_event_paranoid")
                                .is_none_or(|p| p >= 2) =>
                    {
                        self.attr.flags |= kernel_exclusion();
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    fn open(&self, pid: i32, cpu: i32) -> io::Result<OwnedFd> {
        sys::perf_event_open(&self.attr, pid, cpu)
    }

    /// Turn a `perf_event_open` failure into a one-line error.
    fn error(&self, e: io::Error, pid: u32) -> Error {
        let seccomp = procfs::seccomp_mode() == Some(2);
        match e.raw_os_error() {
            Some(errno @ (libc::EACCES | libc::EPERM)) => Error::PerfDenied {
                errno,
                paranoid: procfs::kernel_sysctl("perf_event_paranoid"),
                seccomp,
                attach: self.attach,
            },
            Some(libc::ENOSYS) => Error::Unavailable { seccomp },
            Some(libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV) => Error::EventNotSupported {
                event: self.event.name(),
                source: e,
            },
            Some(libc::ESRCH) => Error::ProcessExited { pid },
            Some(libc::EINVAL | libc::E2BIG | libc::EOVERFLOW) => Error::KernelRejected(format!(
                "{} at {} Hz, max stack {}, user stack {} bytes ({e})",
                self.event.name(),
                self.attr.sample_period_or_freq,
                self.attr.sample_max_stack,
                self.attr.sample_stack_user
            )),
            _ => Error::io("perf_event_open", e),
        }
    }
}

fn kernel_exclusion() -> u64 {
    sys::ATTR_EXCLUDE_KERNEL | sys::ATTR_EXCLUDE_HV | sys::ATTR_EXCLUDE_CALLCHAIN_KERNEL
}

fn default_pages(options: &RecordOptions) -> usize {
    options
        .buffer_pages
        .unwrap_or(if options.user_stack.is_some() {
            1024
        } else {
            128
        })
}

/// The ring buffer of one CPU and the event that owns it.
struct CpuBuffer {
    cpu: u32,
    ring: RingBuffer,
    fd: OwnedFd,
    /// The owning event reported POLLHUP/POLLERR (its task exited): stop polling it, but keep
    /// draining: inherited events of live children still write here.
    hung_up: bool,
}

struct Session<'o, F> {
    options: &'o RecordOptions,
    opener: Opener,
    parser: Parser,
    buffers: Vec<CpuBuffer>,
    /// Events whose records are redirected into a `CpuBuffer` (attach mode: other threads).
    redirected: Vec<OwnedFd>,
    /// Threads whose PERF_RECORD_FORK we saw: they were inherited, not to be opened again.
    forked_tids: HashSet<u32>,
    on_event: F,
    samples: u64,
    lost: u64,
    throttle_events: u64,
    skipped_records: u64,
    callback_stopped: bool,
    /// When the events were disabled.
    ended: u64,
}

pub(crate) fn run(
    target: &Target,
    options: &RecordOptions,
    on_event: impl FnMut(Event) -> ControlFlow<()>,
) -> Result<Summary> {
    validate(options)?;
    let mode = match target {
        Target::Spawn { .. } => Mode::Spawn,
        Target::Attach { .. } => Mode::Attach,
    };
    let opener = Opener::new(options, mode);
    let mut session = Session {
        options,
        parser: opener.parser(),
        opener,
        buffers: Vec::new(),
        redirected: Vec::new(),
        forked_tids: HashSet::new(),
        on_event,
        samples: 0,
        lost: 0,
        throttle_events: 0,
        skipped_records: 0,
        callback_stopped: false,
        ended: 0,
    };
    match target {
        Target::Spawn { program, args } => session.spawn(program, args),
        Target::Attach { pid } => session.attach(*pid),
    }
}

impl<F: FnMut(Event) -> ControlFlow<()>> Session<'_, F> {
    fn spawn(&mut self, program: &std::ffi::OsStr, args: &[std::ffi::OsString]) -> Result<Summary> {
        let path = spawn::resolve(program)?;
        let mut child = Child::fork(&path, args)?;
        let pid = child.pid;
        let started = sys::monotonic_ns();
        // The child is blocked before execve: open its events (disabled until exec) per CPU.
        if !self.open_task(pid as u32)? {
            return Err(Error::ProcessExited { pid: pid as u32 });
        }
        let pidfd = sys::pidfd_open(pid).ok();
        child.release()?;
        let stop = self.run_loop(pid as u32, Some(&mut child), pidfd, Vec::new());
        let exit = match child.try_wait() {
            Some(exit) => exit,
            None => child.terminate(self.options.kill_grace),
        };
        let mut summary = self.summary(pid as u32, started, stop);
        summary.child = Some(exit);
        Ok(summary)
    }

    fn attach(&mut self, pid: u32) -> Result<Summary> {
        match procfs::process_state(pid) {
            None => return Err(Error::NoSuchProcess { pid }),
            Some('Z' | 'X') => return Err(Error::ProcessExited { pid }),
            Some(_) => {}
        }
        match procfs::tgid(pid) {
            Some(tgid) if tgid != pid => return Err(Error::NotAProcess { pid, tgid }),
            Some(_) => {}
            None => return Err(Error::ProcessExited { pid }),
        }
        let pidfd = sys::pidfd_open(pid as i32).ok();
        let started = sys::monotonic_ns();
        let mut pending = Vec::new();
        let mut monitored: HashSet<u32> = HashSet::new();
        // Open every thread; repeat for threads that appeared meanwhile and were not inherited
        // (created by a thread before its own events existed). A thread with a FORK record was
        // inherited; the short sleep lets a just-created thread's FORK record land first.
        for round in 0..20 {
            pending.extend(self.drain_round());
            let Ok(visible) = procfs::tids(pid) else {
                break;
            };
            let mut missing: Vec<u32> = visible
                .into_iter()
                .filter(|t| !monitored.contains(t) && !self.forked_tids.contains(t))
                .collect();
            if missing.is_empty() {
                break;
            }
            if round > 0 {
                std::thread::sleep(Duration::from_millis(2));
                pending.extend(self.drain_round());
                missing.retain(|t| !self.forked_tids.contains(t));
            }
            for tid in missing {
                if self.open_task(tid)? {
                    monitored.insert(tid);
                }
            }
        }
        if monitored.is_empty() || self.buffers.is_empty() {
            return Err(Error::ProcessExited { pid });
        }
        // The state before the events existed: names and executable mappings from /proc.
        let mut initial: Vec<Event> = procfs::comms(pid, started)
            .into_iter()
            .map(Event::Comm)
            .collect();
        initial.extend(
            procfs::executable_mappings(pid, started)
                .unwrap_or_default()
                .into_iter()
                .map(Event::Mmap),
        );
        initial.append(&mut pending);
        let stop = self.run_loop(pid, None, pidfd, initial);
        Ok(self.summary(pid, started, stop))
    }

    /// Open task `tid` on every CPU, the first event of each CPU owning its ring buffer and later
    /// ones redirected into it. `Ok(false)` if the task exited first.
    fn open_task(&mut self, tid: u32) -> Result<bool> {
        let mut opened_any = false;
        let mut offline = None;
        for cpu in procfs::online_cpus() {
            let opened = if self.buffers.is_empty() && self.redirected.is_empty() {
                self.opener.open_first(tid as i32, cpu as i32)
            } else {
                self.opener.open(tid as i32, cpu as i32)
            };
            let fd = match opened {
                Ok(fd) => fd,
                Err(e) => match e.raw_os_error() {
                    Some(libc::ESRCH) => return Ok(false),
                    // A CPU that went offline since we listed them.
                    Some(libc::ENODEV) => {
                        offline = Some(e);
                        continue;
                    }
                    Some(libc::EMFILE | libc::ENFILE) => {
                        return Err(Error::TooManyFiles {
                            open: self.buffers.len() + self.redirected.len(),
                        });
                    }
                    _ => return Err(self.opener.error(e, tid)),
                },
            };
            opened_any = true;
            match self.buffers.iter().find(|b| b.cpu == cpu) {
                Some(owner) => {
                    sys::set_output(&fd, &owner.fd)
                        .map_err(|e| Error::io("redirecting a thread's events", e))?;
                    self.redirected.push(fd);
                }
                None => self.add_buffer(cpu, fd)?,
            }
        }
        match offline {
            Some(e) if !opened_any => Err(self.opener.error(e, tid)),
            _ => Ok(true),
        }
    }

    /// Map the ring buffer of `fd`, halving the default size while locked memory is refused.
    fn add_buffer(&mut self, cpu: u32, fd: OwnedFd) -> Result<()> {
        let mut pages = default_pages(self.options);
        let ring = loop {
            match RingBuffer::map(&fd, pages) {
                Ok(ring) => break ring,
                Err(e)
                    if self.options.buffer_pages.is_none()
                        && matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOMEM))
                        && pages > MIN_BUFFER_PAGES =>
                {
                    pages /= 2;
                }
                Err(e) => {
                    return Err(Error::BufferMap {
                        bytes: pages * sys::page_size(),
                        mlock_kb: procfs::kernel_sysctl("perf_event_mlock_kb")
                            .map_or_else(|| "unknown".into(), |v| v.to_string()),
                        source: e,
                    });
                }
            }
        };
        self.buffers.push(CpuBuffer {
            cpu,
            ring,
            fd,
            hung_up: false,
        });
        Ok(())
    }

    /// Drain every buffer once; the events sorted by time.
    fn drain_round(&mut self) -> Vec<Event> {
        let mut round = Vec::new();
        let mut skipped = 0;
        let parser = self.parser;
        for buffer in &mut self.buffers {
            let stats = buffer.ring.drain(|record| match parser.parse(record) {
                Some(event) => round.push(event),
                None => skipped += 1,
            });
            skipped += stats.corrupt;
        }
        self.skipped_records += skipped;
        for event in &round {
            match event {
                Event::Sample(_) => self.samples += 1,
                Event::Lost(l) => self.lost += l.lost,
                Event::Throttle(t) if t.throttled => self.throttle_events += 1,
                Event::Fork(f) => {
                    self.forked_tids.insert(f.tid);
                }
                _ => {}
            }
        }
        round.sort_by_key(Event::time);
        round
    }

    /// Hand events to the callback; false once it asked to stop.
    fn deliver(&mut self, events: Vec<Event>) -> bool {
        if self.callback_stopped {
            return false;
        }
        for event in events {
            if (self.on_event)(event).is_break() {
                self.callback_stopped = true;
                return false;
            }
        }
        true
    }

    fn run_loop(
        &mut self,
        pid: u32,
        mut child: Option<&mut Child>,
        pidfd: Option<OwnedFd>,
        initial: Vec<Event>,
    ) -> StopReason {
        let deadline = self.options.duration.map(|d| Instant::now() + d);
        let stop_flag = self.options.stop.clone();
        let mut target_gone = false;
        let mut reason = if self.deliver(initial) {
            None
        } else {
            Some(StopReason::Callback)
        };
        while reason.is_none() {
            if stop_flag
                .as_ref()
                .is_some_and(|f| f.load(Ordering::Relaxed))
            {
                reason = Some(StopReason::StopFlag);
                break;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                reason = Some(StopReason::Duration);
                break;
            }
            target_gone |= match child.as_deref_mut() {
                Some(child) => child.try_wait().is_some(),
                None => procfs::has_exited(pid),
            };
            if target_gone {
                reason = Some(StopReason::TargetExited);
                break;
            }
            let mut timeout = self.options.poll_interval;
            if let Some(d) = deadline {
                timeout = timeout.min(d.saturating_duration_since(now));
            }
            self.poll(pidfd.as_ref(), timeout);
            let events = self.drain_round();
            if !self.deliver(events) {
                reason = Some(StopReason::Callback);
            }
        }
        // Stop the events, then collect what is left in the buffers.
        for fd in self.buffers.iter().map(|b| &b.fd).chain(&self.redirected) {
            let _ = sys::disable(fd);
        }
        self.ended = sys::monotonic_ns();
        let events = self.drain_round();
        self.deliver(events);
        reason.unwrap_or(StopReason::TargetExited)
    }

    /// Wait until a buffer passes its watermark, the target exits, or `timeout`.
    fn poll(&mut self, pidfd: Option<&OwnedFd>, timeout: Duration) {
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(self.buffers.len() + 1);
        let mut owners = Vec::with_capacity(self.buffers.len());
        for (i, b) in self.buffers.iter().enumerate().filter(|(_, b)| !b.hung_up) {
            fds.push(libc::pollfd {
                fd: b.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            owners.push(i);
        }
        if let Some(p) = pidfd {
            fds.push(libc::pollfd {
                fd: p.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if fds.is_empty() {
            std::thread::sleep(timeout);
            return;
        }
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the whole call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc <= 0 {
            return; // timeout, or EINTR (a signal such as the caller's Ctrl-C): just re-check.
        }
        for (pfd, &i) in fds.iter().zip(&owners) {
            if pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                self.buffers[i].hung_up = true;
            }
        }
    }

    fn summary(&self, pid: u32, started: u64, stop_reason: StopReason) -> Summary {
        Summary {
            info: RecordingInfo {
                target_pid: pid,
                event: self.opener.event,
                frequency: self.options.frequency,
                cpus: self.buffers.iter().map(|b| b.cpu).collect(),
                kernel_included: self.opener.kernel(),
                build_ids: self.opener.build_id(),
                user_stack_size: self.opener.attr.sample_stack_user,
                buffer_bytes: self
                    .buffers
                    .iter()
                    .map(|b| b.ring.data_size())
                    .min()
                    .unwrap_or(0),
                event_fds: self.buffers.len() + self.redirected.len(),
            },
            started,
            ended: self.ended,
            stop_reason,
            child: None,
            samples: self.samples,
            lost: self.lost,
            throttle_events: self.throttle_events,
            skipped_records: self.skipped_records,
        }
    }
}
