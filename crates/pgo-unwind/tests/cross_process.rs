//! Unwinds another process, compiled from C with `-O2 -fomit-frame-pointer`, from the same
//! data a perf sample with user registers and a user stack copy carries: registers and stack
//! bytes taken with ptrace and /proc/PID/mem while it spins.

mod common;

use std::ffi::c_void;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::ptr::null_mut;

use common::{Namer, STACK_COPY, copy_memory, find_from};
use pgo_unwind::{Regs, UnwindResult, Unwinder};

const PROGRAM: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <time.h>

volatile unsigned long sink;
static int use_vdso, use_signal;

__attribute__((noipa)) void leaf_spin(void) {
    for (;;) {
        if (use_vdso) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            sink += ts.tv_nsec;
        } else {
            sink++;
        }
    }
}

__attribute__((noipa)) static void on_signal(int sig) {
    leaf_spin();
    sink += sig; /* not a tail call */
}

/* Six frames of recursion, each with a real stack frame. */
__attribute__((noipa)) int recurse(int n) {
    volatile int local[4];
    local[0] = n;
    if (n > 0) {
        int r = recurse(n - 1);
        return r + local[0];
    }
    if (use_signal)
        raise(SIGUSR1); /* the handler spins: the stack goes through a signal frame */
    else
        leaf_spin();
    return local[0];
}

/* Called back from libc's qsort: the walk must go through libc code in the middle. */
__attribute__((noipa)) static int compare(const void *a, const void *b) {
    static int entered;
    if (!entered) {
        entered = 1;
        sink += recurse(5);
    }
    return *(const int *)a - *(const int *)b;
}

__attribute__((noipa)) int via_qsort(void) {
    int values[2] = {2, 1};
    qsort(values, 2, sizeof values[0], compare);
    return values[0];
}

__attribute__((noipa)) int level1(void) {
    int r = via_qsort();
    sink += r;
    return r + 1;
}

int main(int argc, char **argv) {
    use_vdso = argc > 1 && strcmp(argv[1], "vdso") == 0;
    use_signal = argc > 1 && strcmp(argv[1], "signal") == 0;
    signal(SIGUSR1, on_signal);
    printf("ready\n");
    fflush(stdout);
    int r = level1(); /* not `return level1();`: that would be a tail call */
    sink += r;
    return 0;
}
"#;

/// Kills and reaps the child when dropped (also on test failure).
struct Spinner(Child);

impl Drop for Spinner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn build_program(dir: &Path, extra_flags: &[&str]) -> PathBuf {
    let src = dir.join("spin.c");
    let exe = dir.join("spin");
    std::fs::write(&src, PROGRAM).unwrap();
    let status = Command::new("cc")
        .args(["-O2", "-fomit-frame-pointer", "-g"])
        .args(extra_flags)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed");
    exe
}

fn start(exe: &Path, args: &[&str]) -> Spinner {
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start spinner");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    // Let it reach the spin loop.
    std::thread::sleep(std::time::Duration::from_millis(100));
    Spinner(child)
}

fn check(ret: libc::c_long, what: &str) {
    assert!(ret != -1, "{what}: {}", std::io::Error::last_os_error());
}

/// Stops `pid`, reads its registers and up to STACK_COPY bytes of stack at rsp, lets it go.
fn sample(pid: i32) -> (Regs, Vec<u8>) {
    let none = null_mut::<c_void>();
    // SAFETY: ptrace with integer/null arguments on our own child process.
    check(
        unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, none, none) },
        "PTRACE_SEIZE",
    );
    // SAFETY: as above; the process is seized by this thread.
    check(
        unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, pid, none, none) },
        "PTRACE_INTERRUPT",
    );
    let mut status = 0;
    // SAFETY: waitpid writes the status into a valid local.
    let waited = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
    assert_eq!(waited, pid);
    assert!(libc::WIFSTOPPED(status), "status {status:#x}");
    // SAFETY: user_regs_struct is plain old data; all-zero is a valid value.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: PTRACE_GETREGS writes one user_regs_struct to the pointer we pass.
    check(
        unsafe {
            libc::ptrace(
                libc::PTRACE_GETREGS,
                pid,
                none,
                (&raw mut regs).cast::<c_void>(),
            )
        },
        "PTRACE_GETREGS",
    );
    let stack = copy_memory(&pid.to_string(), regs.rsp, STACK_COPY);
    // SAFETY: detaching our stopped tracee.
    check(
        unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, none, none) },
        "PTRACE_DETACH",
    );
    let regs = Regs {
        ip: regs.rip,
        sp: regs.rsp,
        bp: regs.rbp,
    };
    (regs, stack)
}

fn names(unwinder: &Unwinder, pid: u32, result: &UnwindResult) -> Vec<String> {
    let mut namer = Namer::new();
    let names: Vec<String> = result
        .lookup_addresses()
        .map(|a| namer.name(unwinder, pid, a))
        .collect();
    for ((addr, name), lookup) in result
        .frames
        .iter()
        .zip(&names)
        .zip(result.lookup_addresses())
    {
        eprintln!(
            "  {addr:#018x} {name:<40} [{}]",
            Namer::module(unwinder, pid, lookup)
        );
    }
    eprintln!("complete={} error={:?}", result.complete, result.error);
    names
}

/// Checks the chain from the innermost `recurse` (at index `first`) out to `_start`.
fn check_chain(
    unwinder: &Unwinder,
    pid: u32,
    result: &UnwindResult,
    names: &[String],
    first: usize,
) {
    for depth in 0..6 {
        assert_eq!(names[first + depth], "recurse", "{names:?}");
    }
    let compare = first + 6;
    assert_eq!(names[compare], "compare");
    let via_qsort = find_from(names, compare + 1, "via_qsort").expect("via_qsort");
    assert!(via_qsort > compare + 1, "at least one libc (qsort) frame");
    for (i, (frame, name)) in result.frames.iter().zip(names).enumerate() {
        if (compare + 1..via_qsort).contains(&i) {
            let module = Namer::module(unwinder, pid, frame - 1);
            assert_eq!(module, "libc.so.6", "frame {i} {name}");
        }
    }
    assert_eq!(names[via_qsort + 1], "level1");
    assert_eq!(names[via_qsort + 2], "main");
    let start_call_main = via_qsort + 3;
    let module = Namer::module(unwinder, pid, result.frames[start_call_main] - 1);
    assert_eq!(module, "libc.so.6");
    if names[start_call_main].starts_with("libc.so.6+") {
        eprintln!(
            "note: no libc symbols (libc6-dbg) here; only checked that main's caller is in libc"
        );
    } else {
        assert_eq!(names[start_call_main], "__libc_start_call_main");
    }
    assert!(
        names[start_call_main + 1].starts_with("__libc_start_main")
            || names[start_call_main + 1].starts_with("libc.so.6+")
    );
    assert_eq!(names[start_call_main + 2], "_start");
    assert_eq!(names.len(), start_call_main + 3, "nothing after _start");
    assert!(result.complete, "{:?}", result.error);
}

#[test]
fn unwinds_c_program_without_frame_pointers() {
    unwind_c_program(&[]);
}

/// A non-PIE executable: load bias 0, text at 0x401000.
#[test]
fn unwinds_non_pie_c_program() {
    unwind_c_program(&["-no-pie"]);
}

fn unwind_c_program(extra_flags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), extra_flags);
    let spinner = start(&exe, &[]);
    let pid = spinner.0.id();

    let (regs, stack) = sample(pid as i32);
    let mut unwinder = Unwinder::new();
    let report = unwinder.load_proc_maps(pid).unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    let pie = extra_flags.is_empty();
    let exe_base = unwinder.module_at(pid, regs.ip).unwrap().base_avma;
    assert_eq!(exe_base == 0, !pie, "load bias {exe_base:#x}");
    let result = unwinder.unwind(pid, regs, &stack);
    let names = names(&unwinder, pid, &result);
    assert_eq!(names[0], "leaf_spin");
    check_chain(&unwinder, pid, &result, &names, 1);
}

#[test]
fn unwinds_through_the_vdso() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), &[]);
    let spinner = start(&exe, &["vdso"]);
    let pid = spinner.0.id();
    let mut unwinder = Unwinder::new();
    let report = unwinder.load_proc_maps(pid).unwrap();
    assert!(report.failed.is_empty(), "{report:?}");

    // Sample until one lands in the vdso (clock_gettime).
    for attempt in 0..300 {
        let (regs, stack) = sample(pid as i32);
        if Namer::module(&unwinder, pid, regs.ip) != "[vdso]" {
            continue;
        }
        eprintln!("sample {attempt} is in the vdso");
        let result = unwinder.unwind(pid, regs, &stack);
        let names = names(&unwinder, pid, &result);
        let leaf = find_from(&names, 0, "leaf_spin").expect("leaf_spin");
        for (i, name) in names.iter().enumerate().take(leaf).skip(1) {
            // Between the vdso and leaf_spin only libc's clock_gettime wrapper.
            assert!(name.contains("clock_gettime"), "frame {i}: {name}");
        }
        check_chain(&unwinder, pid, &result, &names, leaf + 1);
        return;
    }
    eprintln!("note: no sample landed in the vdso (clock_gettime may not use it here); skipped");
}

/// A handler running on the same stack: the walk goes from the handler through the kernel's
/// signal frame (glibc's `__restore_rt`) to the interrupted code and on to `_start`.
#[test]
fn unwinds_through_a_signal_frame() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), &[]);
    let spinner = start(&exe, &["signal"]);
    let pid = spinner.0.id();
    let (regs, stack) = sample(pid as i32);
    let mut unwinder = Unwinder::new();
    unwinder.load_proc_maps(pid).unwrap();
    let result = unwinder.unwind(pid, regs, &stack);
    let names = names(&unwinder, pid, &result);
    assert_eq!(names[0], "leaf_spin");
    assert_eq!(names[1], "on_signal");
    // names[2]: the return address into __restore_rt (its FDE starts one byte early, at a nop,
    // so address - 1 may symbolize to whatever precedes it); then the interrupted code in libc
    // (pthread_kill, raise).
    let first_recurse = find_from(&names, 2, "recurse").expect("recurse after the signal frame");
    assert!(first_recurse >= 4, "{names:?}");
    for (i, frame) in result.frames.iter().enumerate().take(first_recurse).skip(2) {
        assert_eq!(
            Namer::module(&unwinder, pid, frame - 1),
            "libc.so.6",
            "frame {i}"
        );
    }
    // (`gsignal` is raise's alias in .dynsym, the name seen without libc debug symbols.)
    let raise = &names[first_recurse - 1];
    assert!(raise.contains("raise") || raise == "gsignal", "{names:?}");
    check_chain(&unwinder, pid, &result, &names, first_recurse);
}
