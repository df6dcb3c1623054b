//! The bits of `/proc` and `/sys` the recorder reads: CPUs, sysctls, threads, names and mappings.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::model::{CommEvent, FileId, MmapEvent};

/// Parse a kernel CPU list such as `0-3,6,8-9`.
pub fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 65536 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// The online CPUs (falls back to `0..nproc`).
pub fn online_cpus() -> Vec<u32> {
    if let Some(cpus) = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpu_list(&s))
        .filter(|c| !c.is_empty())
    {
        return cpus;
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (0..n.max(1) as u32).collect()
}

/// An integer sysctl under `/proc/sys/kernel/`.
pub fn kernel_sysctl(name: &str) -> Option<i64> {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `Seccomp:` of `/proc/self/status`: 0 none, 1 strict, 2 filter.
pub fn seccomp_mode() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))?
        .trim()
        .parse()
        .ok()
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `Z`, ...); `None` if the process is gone.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name in parentheses may contain anything, including ')': the state follows the last one.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// Whether `pid` has exited (gone or a zombie).
pub fn has_exited(pid: u32) -> bool {
    !matches!(process_state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// The thread-group id (process id) of thread `tid`, from `/proc/TID/status`.
pub fn tgid(tid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()
}

/// The thread ids of `pid` (`/proc/PID/task`).
pub fn tids(pid: u32) -> io::Result<Vec<u32>> {
    let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

/// Synthesized COMM events for each thread of `pid`.
pub fn comms(pid: u32, time: u64) -> Vec<CommEvent> {
    let Ok(tids) = tids(pid) else {
        return Vec::new();
    };
    tids.into_iter()
        .filter_map(|tid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
            Some(CommEvent {
                time,
                pid,
                tid,
                comm: comm.trim_end_matches('\n').to_owned(),
                exec: false,
                synthesized: true,
            })
        })
        .collect()
}

/// Parse one line of `/proc/PID/maps` into a synthesized [`MmapEvent`].
pub fn parse_maps_line(line: &[u8], pid: u32, time: u64) -> Option<MmapEvent> {
    // Fields are separated by single spaces except before the path, which is padded.
    let mut fields = line.splitn(6, |&b| b == b' ');
    let range = std::str::from_utf8(fields.next()?).ok()?;
    let perms = fields.next()?;
    let offset = std::str::from_utf8(fields.next()?).ok()?;
    let dev = std::str::from_utf8(fields.next()?).ok()?;
    let inode = std::str::from_utf8(fields.next()?).ok()?;
    let path = fields.next().unwrap_or(&[]);
    let path = {
        let start = path.iter().position(|&b| b != b' ').unwrap_or(path.len());
        &path[start..]
    };
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let (major, minor) = dev.split_once(':')?;
    if perms.len() < 4 {
        return None;
    }
    let mut prot = 0;
    if perms[0] == b'r' {
        prot |= libc::PROT_READ as u32;
    }
    if perms[1] == b'w' {
        prot |= libc::PROT_WRITE as u32;
    }
    if perms[2] == b'x' {
        prot |= libc::PROT_EXEC as u32;
    }
    let flags = if perms[3] == b's' {
        libc::MAP_SHARED as u32
    } else {
        libc::MAP_PRIVATE as u32
    };
    let filename = if path.is_empty() {
        PathBuf::from("//anon")
    } else {
        PathBuf::from(OsStr::from_bytes(path))
    };
    Some(MmapEvent {
        time,
        pid,
        tid: pid,
        start,
        len: end.checked_sub(start)?,
        pgoff: u64::from_str_radix(offset, 16).ok()?,
        file_id: FileId::Inode {
            major: u32::from_str_radix(major, 16).ok()?,
            minor: u32::from_str_radix(minor, 16).ok()?,
            inode: inode.parse().ok()?,
            generation: 0,
        },
        prot,
        flags,
        filename,
        synthesized: true,
    })
}

/// Synthesized MMAP2 events for the executable mappings of `pid`, like `perf record -p` does.
pub fn executable_mappings(pid: u32, time: u64) -> io::Result<Vec<MmapEvent>> {
    let maps = std::fs::read(format!("/proc/{pid}/maps"))?;
    Ok(maps
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| parse_maps_line(l, pid, time))
        .filter(|m| m.is_executable())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0,2-4,7"), Some(vec![0, 2, 3, 4, 7]));
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(parse_cpu_list("3-1"), None);
    }

    #[test]
    fn maps_lines() {
        let m = parse_maps_line(
            b"55d0c4a00000-55d0c4a05000 r-xp 00002000 fd:01 1311769                    /usr/bin/my prog",
            9,
            5,
        )
        .unwrap();
        assert_eq!(
            (m.start, m.len, m.pgoff, m.pid, m.time),
            (0x55d0c4a00000, 0x5000, 0x2000, 9, 5)
        );
        assert_eq!(
            m.file_id,
            FileId::Inode {
                major: 0xfd,
                minor: 1,
                inode: 1311769,
                generation: 0
            }
        );
        assert_eq!(m.filename, PathBuf::from("/usr/bin/my prog"));
        assert!(m.is_executable() && m.synthesized);
        let v = parse_maps_line(
            b"7ffc1b5e0000-7ffc1b5e2000 r-xp 00000000 00:00 0                          [vdso]",
            9,
            5,
        )
        .unwrap();
        assert_eq!(v.filename, PathBuf::from("[vdso]"));
        let anon =
            parse_maps_line(b"7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ", 9, 5).unwrap();
        assert_eq!(anon.filename, PathBuf::from("//anon"));
        assert!(!anon.is_executable());
        assert!(parse_maps_line(b"garbage", 1, 1).is_none());
    }

    #[test]
    fn own_process() {
        let me = std::process::id();
        assert!(!has_exited(me));
        assert_eq!(tgid(me), Some(me));
        assert!(tids(me).unwrap().contains(&me));
        let maps = executable_mappings(me, 1).unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert!(maps.iter().any(|m| m.filename == exe), "{maps:?}");
        assert!(comms(me, 1).iter().any(|c| c.tid == me));
        assert!(!online_cpus().is_empty());
        assert!(has_exited(u32::MAX / 2));
    }
}
