//! Which file was mapped at an address of a process at a given time.
//!
//! The same rules as `pgo_record::Recording::mapping_at` (a mapping made after the latest exec
//! wins; a process that has not exec'd inherits its parent's mappings as of the fork), indexed
//! by pid for a streaming consumer that looks up every frame of every sample.

use pgo_record::{CommEvent, MmapEvent, TaskEvent};
use rustc_hash::FxHashMap;

#[derive(Default)]
pub(crate) struct AddressSpaces {
    pub(crate) mmaps: Vec<MmapEvent>,
    by_pid: FxHashMap<u32, Vec<usize>>,
    /// Times each process called execve.
    execs: FxHashMap<u32, Vec<u64>>,
    /// Parent and fork time of each process.
    forked_from: FxHashMap<u32, (u32, u64)>,
}

impl AddressSpaces {
    pub(crate) fn add_mmap(&mut self, m: MmapEvent) {
        self.by_pid.entry(m.pid).or_default().push(self.mmaps.len());
        self.mmaps.push(m);
    }

    pub(crate) fn add_comm(&mut self, c: &CommEvent) {
        if c.exec {
            self.execs.entry(c.pid).or_default().push(c.time);
        }
    }

    pub(crate) fn add_fork(&mut self, t: &TaskEvent) {
        // A new process (not a thread): pid == tid and a different parent.
        if t.pid == t.tid && t.pid != t.ppid {
            self.forked_from.entry(t.pid).or_insert((t.ppid, t.time));
        }
    }

    /// The index of the mapping of `pid` that covered `address` at `time`.
    pub(crate) fn find(&self, pid: u32, address: u64, time: u64) -> Option<usize> {
        let (mut pid, mut time) = (pid, time);
        for _ in 0..64 {
            let exec = self
                .execs
                .get(&pid)
                .and_then(|times| times.iter().copied().filter(|&t| t <= time).max());
            let found = self.by_pid.get(&pid).and_then(|list| {
                list.iter().rev().copied().find(|&i| {
                    let m = &self.mmaps[i];
                    (m.time <= time || m.synthesized)
                        && m.contains(address)
                        && exec.is_none_or(|e| m.time >= e || m.synthesized)
                })
            });
            if found.is_some() || exec.is_some() {
                return found;
            }
            (pid, time) = *self.forked_from.get(&pid)?;
        }
        None
    }
}
