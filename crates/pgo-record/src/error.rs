//! One-line, actionable errors.

use std::io;

/// Everything that can stop a recording from starting. Once recording has started, problems end
/// it early instead and the recording is still returned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", denied_message(*.errno, *.paranoid, *.seccomp, *.attach))]
    PerfDenied {
        errno: i32,
        /// `kernel.perf_event_paranoid`, when readable.
        paranoid: Option<i64>,
        /// A seccomp filter is active in this process (typical of containers).
        seccomp: bool,
        /// We were attaching to an existing process (ptrace access rules apply too).
        attach: bool,
    },

    #[error(
        "perf_event_open is not available (ENOSYS): the kernel lacks CONFIG_PERF_EVENTS, or a \
         seccomp filter (e.g. a container runtime's default profile) blocks the syscall{}",
        if *.seccomp { " — a seccomp filter is active in this process" } else { "" }
    )]
    Unavailable { seccomp: bool },

    #[error(
        "the {event} event is not supported here ({source}); only software events may exist on \
         this machine (no hardware PMU)"
    )]
    EventNotSupported {
        event: &'static str,
        source: io::Error,
    },

    #[error("invalid recording options: {0}")]
    InvalidOptions(String),

    #[error("the kernel rejected the perf event attributes (EINVAL): {0}")]
    KernelRejected(String),

    #[error("no process with pid {pid}")]
    NoSuchProcess { pid: u32 },

    #[error("{pid} is a thread of process {tgid}, not a process: attach to {tgid}")]
    NotAProcess { pid: u32, tgid: u32 },

    #[error("process {pid} exited before it could be attached to")]
    ProcessExited { pid: u32 },

    #[error("no command given to spawn")]
    EmptyCommand,

    #[error("command not found: {command}")]
    CommandNotFound { command: String },

    #[error("cannot execute {command}: {source}")]
    CommandNotExecutable { command: String, source: io::Error },

    #[error(
        "too many open files ({open} perf events open): attaching needs one descriptor per \
         thread and CPU; raise `ulimit -n`"
    )]
    TooManyFiles { open: usize },

    #[error(
        "cannot map a {bytes}-byte perf ring buffer ({source}): kernel.perf_event_mlock_kb is \
         {mlock_kb} KiB; use fewer RecordOptions::buffer_pages, raise the sysctl or RLIMIT_MEMLOCK"
    )]
    BufferMap {
        bytes: usize,
        mlock_kb: String,
        source: io::Error,
    },

    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        _ => "error",
    }
}

fn denied_message(errno: i32, paranoid: Option<i64>, seccomp: bool, attach: bool) -> String {
    let level = match paranoid {
        Some(p) => format!("kernel.perf_event_paranoid = {p}"),
        None => "kernel.perf_event_paranoid unreadable".to_owned(),
    };
    let mut msg = format!(
        "perf_event_open was refused ({}) with {level}: run `sysctl kernel.perf_event_paranoid=1` \
         or give the recorder CAP_PERFMON (or run it as root)",
        errno_name(errno)
    );
    if attach {
        msg.push_str("; attaching to another user's process also needs CAP_SYS_PTRACE");
    }
    if seccomp {
        msg.push_str("; a seccomp filter is active (container?): allow perf_event_open in it");
    }
    msg
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_actionable() {
        let e = Error::PerfDenied {
            errno: libc::EACCES,
            paranoid: Some(3),
            seccomp: true,
            attach: true,
        };
        let msg = e.to_string();
        assert!(msg.contains("perf_event_paranoid = 3"), "{msg}");
        assert!(msg.contains("sysctl kernel.perf_event_paranoid=1"), "{msg}");
        assert!(
            msg.contains("CAP_PERFMON") && msg.contains("seccomp"),
            "{msg}"
        );
        let all = [
            msg,
            Error::Unavailable { seccomp: false }.to_string(),
            Error::CommandNotFound {
                command: "nope".into(),
            }
            .to_string(),
            Error::TooManyFiles { open: 10 }.to_string(),
        ];
        for m in all {
            assert!(!m.contains('\n'), "{m}");
        }
    }
}
