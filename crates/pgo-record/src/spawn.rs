//! Spawning the command to record, held before `execve` until its events exist.
//!
//! The handshake is perf's (no ptrace): the child is forked and blocks reading a "go" pipe; the
//! parent opens the events on the child's pid with `enable_on_exec`, maps the buffers, then writes
//! the go byte. The child calls `execve`, which enables the counters atomically with the new
//! program image. A second, close-on-exec "status" pipe carries a ready byte (the child has made
//! itself traceable and waits), then an `execve` failure (its errno) or, by reaching EOF, success.
//!
//! Between `fork` and `execve` the child only makes async-signal-safe calls: everything it needs
//! (path, argv, signal mask) is prepared before forking.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::model::ChildExit;

/// Find `program` like `execvp` would, so "command not found" is reported before forking.
pub fn resolve(program: &OsStr) -> Result<PathBuf> {
    let display = program.to_string_lossy().into_owned();
    if program.is_empty() {
        return Err(Error::EmptyCommand);
    }
    let executable = |p: &Path| -> Result<bool> {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => Err(Error::CommandNotExecutable {
                command: display.clone(),
                source: io::Error::from_raw_os_error(libc::EISDIR),
            }),
            Ok(_) => {
                let c =
                    CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::CommandNotFound {
                        command: display.clone(),
                    })?;
                // SAFETY: `c` is a valid NUL-terminated path.
                if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
                    Ok(true)
                } else {
                    Err(Error::CommandNotExecutable {
                        command: display.clone(),
                        source: io::Error::last_os_error(),
                    })
                }
            }
            Err(_) => Ok(false),
        }
    };
    if program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        return if executable(&path)? {
            Ok(path)
        } else {
            Err(Error::CommandNotFound { command: display })
        };
    }
    let search = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut denied = None;
    for dir in std::env::split_paths(&search) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(program);
        match executable(&candidate) {
            Ok(true) => return Ok(candidate),
            Ok(false) => {}
            // Like execvp: keep looking, report EACCES only if nothing else is found.
            Err(e) => denied = Some(e),
        }
    }
    Err(denied.unwrap_or(Error::CommandNotFound { command: display }))
}

/// First byte the child writes on the status pipe once it is set up and waiting for "go".
const READY: u8 = b'R';

/// Read until `buf` is full or EOF; the number of bytes read.
fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reading into the unfilled part of a valid buffer.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        got += n as usize;
    }
    Ok(got)
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A forked child waiting for the go byte (then: running the command).
pub struct Child {
    pub pid: i32,
    command: String,
    go: Option<OwnedFd>,
    exec_result: Option<OwnedFd>,
    exit: Option<ChildExit>,
}

impl Child {
    /// Fork a child that will `execv(path, argv)` once [`Child::release`] is called.
    pub fn fork(path: &Path, args: &[OsString]) -> Result<Child> {
        let command = path.to_string_lossy().into_owned();
        let not_found = || Error::CommandNotFound {
            command: command.clone(),
        };
        // Everything the child touches is allocated before fork.
        let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| not_found())?;
        let c_args: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::InvalidOptions("a command argument contains a NUL byte".into()))?;
        let mut argv: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let (go_r, go_w) = pipe().map_err(|e| Error::io("creating a pipe", e))?;
        let (res_r, res_w) = pipe().map_err(|e| Error::io("creating a pipe", e))?;
        // SAFETY: sigset_t is plain data; sigemptyset initialises it.
        let empty_set = unsafe {
            let mut set = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut set);
            set
        };

        // SAFETY: fork is called with everything prepared; the child branch below only calls
        // async-signal-safe functions (close, sigprocmask, signal, prctl, read, execv, write, _exit) on
        // memory allocated before the fork, and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(Error::io("fork", io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY: child side, see above. The raw fds are still open (copies of the parent's).
            unsafe {
                libc::close(go_w.as_raw_fd());
                libc::close(res_r.as_raw_fd());
                libc::sigprocmask(libc::SIG_SETMASK, &empty_set, std::ptr::null_mut());
                // Rust ignores SIGPIPE; the command should get the default, like Command does.
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                // perf_event_open on us needs ptrace access, which a non-dumpable process (one
                // whose recorder changed credentials) denies even to its own user. Only until
                // execve, which sets dumpability from the new image again.
                libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
                // Tell the parent we are ready to be recorded.
                let ready = READY;
                libc::write(res_w.as_raw_fd(), (&ready as *const u8).cast(), 1);
                let mut byte = 0u8;
                loop {
                    let n = libc::read(go_r.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
                    if n == 1 {
                        break;
                    }
                    if n < 0 && *libc::__errno_location() == libc::EINTR {
                        continue;
                    }
                    // The parent gave up (its end closed): leave quietly.
                    libc::_exit(127);
                }
                libc::execv(c_path.as_ptr(), argv.as_ptr());
                let errno: i32 = *libc::__errno_location();
                libc::write(
                    res_w.as_raw_fd(),
                    (&errno as *const i32).cast(),
                    std::mem::size_of::<i32>(),
                );
                libc::_exit(127);
            }
        }
        drop(go_r);
        drop(res_w);
        let mut ready = [0u8; 1];
        let got = read_full(&res_r, &mut ready);
        // From here on, dropping `child` reaps the process on every error path.
        let child = Child {
            pid,
            command,
            go: Some(go_w),
            exec_result: Some(res_r),
            exit: None,
        };
        match got {
            Ok(1) if ready[0] == READY => {}
            Ok(_) => {
                return Err(Error::io(
                    "the forked child died before exec",
                    io::Error::from(io::ErrorKind::UnexpectedEof),
                ));
            }
            Err(e) => return Err(Error::io("waiting for the forked child", e)),
        }
        Ok(child)
    }

    /// Let the child exec and report whether `execve` succeeded.
    pub fn release(&mut self) -> Result<()> {
        let Some(go) = self.go.take() else {
            return Ok(());
        };
        let byte = 1u8;
        // SAFETY: writing one byte from a valid buffer to our pipe end.
        let n = unsafe { libc::write(go.as_raw_fd(), (&byte as *const u8).cast(), 1) };
        if n != 1 {
            return Err(Error::io(
                "starting the command",
                io::Error::last_os_error(),
            ));
        }
        drop(go);
        let Some(res) = self.exec_result.take() else {
            return Ok(());
        };
        let mut buf = [0u8; 4];
        let got = read_full(&res, &mut buf)
            .map_err(|e| Error::io("waiting for the command to start", e))?;
        if got < buf.len() {
            return Ok(()); // EOF: execve succeeded and closed the pipe.
        }
        let errno = i32::from_ne_bytes(buf);
        self.wait(true);
        let source = io::Error::from_raw_os_error(errno);
        Err(if errno == libc::ENOENT {
            Error::CommandNotFound {
                command: self.command.clone(),
            }
        } else {
            Error::CommandNotExecutable {
                command: self.command.clone(),
                source,
            }
        })
    }

    /// `wait4` the child; `block` waits, otherwise returns None while it runs.
    fn wait(&mut self, block: bool) -> Option<ChildExit> {
        if let Some(exit) = self.exit {
            return Some(exit);
        }
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills it and `status`.
        let mut usage = unsafe { std::mem::zeroed::<libc::rusage>() };
        loop {
            // SAFETY: valid out-pointers; waits only for our own child.
            let rc = unsafe {
                libc::wait4(
                    self.pid,
                    &mut status,
                    if block { 0 } else { libc::WNOHANG },
                    &mut usage,
                )
            };
            if rc == 0 {
                return None;
            }
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // ECHILD: SIGCHLD is ignored (auto-reaped) or someone else reaped it.
                let exit = ChildExit {
                    pid: self.pid as u32,
                    status: None,
                    cpu_time: None,
                    killed_by_recorder: false,
                };
                self.exit = Some(exit);
                return Some(exit);
            }
            let tv = |t: libc::timeval| {
                Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
            };
            let exit = ChildExit {
                pid: self.pid as u32,
                status: Some(ExitStatus::from_raw(status)),
                cpu_time: Some(tv(usage.ru_utime) + tv(usage.ru_stime)),
                killed_by_recorder: false,
            };
            self.exit = Some(exit);
            return Some(exit);
        }
    }

    /// The exit of the child if it has ended (reaping it).
    pub fn try_wait(&mut self) -> Option<ChildExit> {
        self.wait(false)
    }

    /// End the child: SIGTERM, then SIGKILL after `grace`; always reaps it.
    pub fn terminate(&mut self, grace: Duration) -> ChildExit {
        if let Some(exit) = self.try_wait() {
            return exit;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(exit) = self.try_wait() {
                return ChildExit {
                    killed_by_recorder: true,
                    ..exit
                };
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.signal(libc::SIGKILL);
        let exit = self.wait(true).unwrap_or(ChildExit {
            pid: self.pid as u32,
            status: None,
            cpu_time: None,
            killed_by_recorder: true,
        });
        ChildExit {
            killed_by_recorder: true,
            ..exit
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own, not yet reaped child (its pid cannot have been reused).
        unsafe { libc::kill(self.pid, sig) };
    }
}

impl Drop for Child {
    /// Never leave a zombie or a stray process behind on error paths.
    fn drop(&mut self) {
        if self.exit.is_some() {
            return;
        }
        if self.go.take().is_some() {
            // Not released: closing the go pipe makes the child exit by itself.
            self.wait(true);
        } else {
            self.signal(libc::SIGKILL);
            self.wait(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_execvp() {
        assert!(resolve(OsStr::new("sh")).unwrap().ends_with("sh"));
        assert!(matches!(resolve(OsStr::new("")), Err(Error::EmptyCommand)));
        assert!(matches!(
            resolve(OsStr::new("pgo-no-such-command-xyz")),
            Err(Error::CommandNotFound { .. })
        ));
        assert!(matches!(
            resolve(OsStr::new("/nonexistent/pgo")),
            Err(Error::CommandNotFound { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("not-executable");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        assert!(matches!(
            resolve(plain.as_os_str()),
            Err(Error::CommandNotExecutable { .. })
        ));
        assert!(matches!(
            resolve(OsStr::new("/tmp/")),
            Err(Error::CommandNotExecutable { .. })
        ));
    }

    #[test]
    fn fork_release_and_wait() {
        let path = resolve(OsStr::new("sh")).unwrap();
        let mut child = Child::fork(&path, &["sh".into(), "-c".into(), "exit 7".into()]).unwrap();
        child.release().unwrap();
        let exit = loop {
            if let Some(e) = child.try_wait() {
                break e;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        assert_eq!(exit.status.unwrap().code(), Some(7));
    }

    #[test]
    fn unreleased_child_is_cleaned_up() {
        let path = resolve(OsStr::new("sh")).unwrap();
        let child = Child::fork(&path, &["sh".into()]).unwrap();
        let pid = child.pid;
        drop(child);
        // SAFETY: probing for existence only.
        assert_eq!(unsafe { libc::kill(pid, 0) }, -1);
    }

    #[test]
    fn terminate_reaps() {
        let path = resolve(OsStr::new("sleep")).unwrap();
        let mut child = Child::fork(&path, &["sleep".into(), "10".into()]).unwrap();
        child.release().unwrap();
        let exit = child.terminate(Duration::from_secs(1));
        assert!(exit.killed_by_recorder);
        assert_eq!(exit.status.unwrap().signal(), Some(libc::SIGTERM));
    }
}
