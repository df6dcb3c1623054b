//! The `perf_event_open` ABI (from `include/uapi/linux/perf_event.h`) and thin wrappers around the
//! syscalls this crate makes.
//!
//! `libc` has the syscall number but not the attribute struct or the record layouts, so the few
//! definitions we need live here, checked against the header of Linux 6.x.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// `perf_event_attr.type`
pub const PERF_TYPE_SOFTWARE: u32 = 1;

// `perf_event_attr.config` for `PERF_TYPE_SOFTWARE`
pub const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
pub const PERF_COUNT_SW_TASK_CLOCK: u64 = 1;

// `perf_event_attr.sample_type`
pub const PERF_SAMPLE_IP: u64 = 1 << 0;
pub const PERF_SAMPLE_TID: u64 = 1 << 1;
pub const PERF_SAMPLE_TIME: u64 = 1 << 2;
pub const PERF_SAMPLE_CALLCHAIN: u64 = 1 << 5;
pub const PERF_SAMPLE_CPU: u64 = 1 << 7;
pub const PERF_SAMPLE_PERIOD: u64 = 1 << 8;
pub const PERF_SAMPLE_REGS_USER: u64 = 1 << 12;
pub const PERF_SAMPLE_STACK_USER: u64 = 1 << 13;

// Bits of the `perf_event_attr` flags bitfield (the u64 after `read_format`).
pub const ATTR_DISABLED: u64 = 1 << 0;
pub const ATTR_INHERIT: u64 = 1 << 1;
pub const ATTR_EXCLUDE_KERNEL: u64 = 1 << 5;
pub const ATTR_EXCLUDE_HV: u64 = 1 << 6;
pub const ATTR_MMAP: u64 = 1 << 8;
pub const ATTR_COMM: u64 = 1 << 9;
pub const ATTR_FREQ: u64 = 1 << 10;
pub const ATTR_ENABLE_ON_EXEC: u64 = 1 << 12;
pub const ATTR_TASK: u64 = 1 << 13;
pub const ATTR_WATERMARK: u64 = 1 << 14;
pub const ATTR_SAMPLE_ID_ALL: u64 = 1 << 18;
pub const ATTR_EXCLUDE_CALLCHAIN_KERNEL: u64 = 1 << 21;
pub const ATTR_EXCLUDE_CALLCHAIN_USER: u64 = 1 << 22;
pub const ATTR_MMAP2: u64 = 1 << 23;
pub const ATTR_COMM_EXEC: u64 = 1 << 24;
pub const ATTR_USE_CLOCKID: u64 = 1 << 25;
pub const ATTR_BUILD_ID: u64 = 1 << 34;

// x86-64 `perf_regs.h` register indices; the kernel emits the selected registers in index order.
pub const PERF_REG_X86_BP: u32 = 6;
pub const PERF_REG_X86_SP: u32 = 7;
pub const PERF_REG_X86_IP: u32 = 8;
/// `sample_regs_user` mask: BP, SP, IP (in that order in the record).
pub const UNWIND_REGS_MASK: u64 =
    (1 << PERF_REG_X86_BP) | (1 << PERF_REG_X86_SP) | (1 << PERF_REG_X86_IP);

// `perf_event_header.type`
pub const PERF_RECORD_LOST: u32 = 2;
pub const PERF_RECORD_COMM: u32 = 3;
pub const PERF_RECORD_EXIT: u32 = 4;
pub const PERF_RECORD_THROTTLE: u32 = 5;
pub const PERF_RECORD_UNTHROTTLE: u32 = 6;
pub const PERF_RECORD_FORK: u32 = 7;
pub const PERF_RECORD_SAMPLE: u32 = 9;
pub const PERF_RECORD_MMAP2: u32 = 10;
pub const PERF_RECORD_LOST_SAMPLES: u32 = 13;

// `perf_event_header.misc`
pub const PERF_RECORD_MISC_CPUMODE_MASK: u16 = 7;
pub const PERF_RECORD_MISC_COMM_EXEC: u16 = 1 << 13;
pub const PERF_RECORD_MISC_MMAP_BUILD_ID: u16 = 1 << 14;

// Callchain context markers (`enum perf_callchain_context`, as u64).
pub const PERF_CONTEXT_HV: u64 = -32i64 as u64;
pub const PERF_CONTEXT_KERNEL: u64 = -128i64 as u64;
pub const PERF_CONTEXT_USER: u64 = -512i64 as u64;
pub const PERF_CONTEXT_GUEST: u64 = -2048i64 as u64;
pub const PERF_CONTEXT_GUEST_KERNEL: u64 = -2176i64 as u64;
pub const PERF_CONTEXT_GUEST_USER: u64 = -2560i64 as u64;
pub const PERF_CONTEXT_MAX: u64 = -4095i64 as u64;

// ioctls (`_IO('$', n)`).
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
const PERF_EVENT_IOC_SET_OUTPUT: libc::c_ulong = 0x2405;

// Offsets in `struct perf_event_mmap_page` (the first page of the ring-buffer mapping).
pub const MMAP_PAGE_DATA_HEAD: usize = 1024;
pub const MMAP_PAGE_DATA_TAIL: usize = 1032;

/// `struct perf_event_attr`, `PERF_ATTR_SIZE_VER8` (136 bytes). The flags bitfield is kept as one
/// u64 and set with the `ATTR_*` constants.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PerfEventAttr {
    pub type_: u32,
    pub size: u32,
    pub config: u64,
    /// `sample_period`, or `sample_freq` when `ATTR_FREQ` is set.
    pub sample_period_or_freq: u64,
    pub sample_type: u64,
    pub read_format: u64,
    pub flags: u64,
    /// `wakeup_events`, or `wakeup_watermark` when `ATTR_WATERMARK` is set.
    pub wakeup: u32,
    pub bp_type: u32,
    pub config1: u64,
    pub config2: u64,
    pub branch_sample_type: u64,
    pub sample_regs_user: u64,
    pub sample_stack_user: u32,
    pub clockid: i32,
    pub sample_regs_intr: u64,
    pub aux_watermark: u32,
    pub sample_max_stack: u16,
    pub reserved_2: u16,
    pub aux_sample_size: u32,
    pub aux_action: u32,
    pub sig_data: u64,
    pub config3: u64,
}

const _: () = assert!(std::mem::size_of::<PerfEventAttr>() == 136);

/// `perf_event_open(attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC)`.
pub fn perf_event_open(attr: &PerfEventAttr, pid: i32, cpu: i32) -> io::Result<OwnedFd> {
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
    let mut attr = *attr;
    attr.size = std::mem::size_of::<PerfEventAttr>() as u32;
    // SAFETY: `attr` is a valid, fully initialised `perf_event_attr` of the size we announce; the
    // kernel only reads it (and may write `size` back on E2BIG, into our local copy).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &mut attr as *mut PerfEventAttr,
            pid as libc::pid_t,
            cpu as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

fn ioctl(fd: &OwnedFd, request: libc::c_ulong, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: perf event ioctls with an integer argument (or none); no memory is passed.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, arg) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub fn disable(fd: &OwnedFd) -> io::Result<()> {
    ioctl(fd, PERF_EVENT_IOC_DISABLE, 0)
}

/// Redirect `fd`'s records into the ring buffer of `target` (same CPU).
pub fn set_output(fd: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
    ioctl(
        fd,
        PERF_EVENT_IOC_SET_OUTPUT,
        target.as_raw_fd() as libc::c_ulong,
    )
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock the events are told to use (`use_clockid`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as usize } else { 4096 }
}

/// `pidfd_open(pid, 0)`: a descriptor that polls readable once the process has exited.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}
