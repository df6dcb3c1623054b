//! Decoding of the records found in the ring buffer into [`Event`]s.
//!
//! The layout of a `PERF_RECORD_SAMPLE` depends on the `sample_type` the events were opened with;
//! the other records carry a `sample_id_all` trailer (TID, TIME, CPU here) at their end.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::model::{
    CommEvent, CpuMode, Event, FileId, LostEvent, MmapEvent, Sample, TaskEvent, ThrottleEvent,
    UserRegs,
};
use crate::sys;

/// Size of `struct perf_event_header`.
pub const HEADER_SIZE: usize = 8;

/// The `sample_id_all` trailer for `TID | TIME | CPU`: pid, tid, time, cpu, reserved.
const SAMPLE_ID_SIZE: usize = 24;

/// A record's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub type_: u32,
    pub misc: u16,
    pub size: u16,
}

impl Header {
    pub fn parse(bytes: &[u8; HEADER_SIZE]) -> Self {
        Header {
            type_: u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            misc: u16::from_ne_bytes([bytes[4], bytes[5]]),
            size: u16::from_ne_bytes([bytes[6], bytes[7]]),
        }
    }
}

/// Reads native-endian integers from a record body, failing (None) instead of panicking when the
/// record is shorter than its layout says.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_ne_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_ne_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_ne_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// The trailer of non-sample records.
#[derive(Debug, Clone, Copy, Default)]
struct SampleId {
    time: u64,
    cpu: u32,
}

/// Knows the record layout the events were opened with.
#[derive(Debug, Clone, Copy)]
pub struct Parser {
    pub sample_type: u64,
    pub regs_user_mask: u64,
}

impl Parser {
    /// Decode one whole record (header included). `None` for record types we do not decode and
    /// for malformed records.
    pub fn parse(&self, record: &[u8]) -> Option<Event> {
        let header = Header::parse(record.get(..HEADER_SIZE)?.try_into().ok()?);
        let body = record.get(HEADER_SIZE..header.size as usize)?;
        match header.type_ {
            sys::PERF_RECORD_SAMPLE => self.sample(header, body).map(Event::Sample),
            sys::PERF_RECORD_MMAP2 => mmap2(header, body).map(Event::Mmap),
            sys::PERF_RECORD_COMM => comm(header, body).map(Event::Comm),
            sys::PERF_RECORD_FORK => task(body).map(Event::Fork),
            sys::PERF_RECORD_EXIT => task(body).map(Event::Exit),
            sys::PERF_RECORD_LOST => {
                let mut c = Cursor::new(body);
                let _id = c.u64()?;
                let lost = c.u64()?;
                let sid = sample_id(body)?;
                Some(Event::Lost(LostEvent {
                    time: sid.time,
                    cpu: sid.cpu,
                    lost,
                }))
            }
            sys::PERF_RECORD_LOST_SAMPLES => {
                let lost = Cursor::new(body).u64()?;
                let sid = sample_id(body)?;
                Some(Event::Lost(LostEvent {
                    time: sid.time,
                    cpu: sid.cpu,
                    lost,
                }))
            }
            sys::PERF_RECORD_THROTTLE | sys::PERF_RECORD_UNTHROTTLE => {
                let time = Cursor::new(body).u64()?;
                let sid = sample_id(body)?;
                Some(Event::Throttle(ThrottleEvent {
                    time,
                    cpu: sid.cpu,
                    throttled: header.type_ == sys::PERF_RECORD_THROTTLE,
                }))
            }
            // PERF_RECORD_MMAP is not produced once `mmap2` is set; the rest are not requested.
            _ => None,
        }
    }

    fn sample(&self, header: Header, body: &[u8]) -> Option<Sample> {
        let t = self.sample_type;
        let mut c = Cursor::new(body);
        let mut s = Sample {
            time: 0,
            pid: 0,
            tid: 0,
            cpu: 0,
            ip: 0,
            period: 0,
            cpu_mode: CpuMode::from_misc(header.misc),
            callchain: Vec::new(),
            user_regs: None,
            user_stack: Vec::new(),
        };
        // Field order is fixed by the kernel (perf_output_sample).
        if t & sys::PERF_SAMPLE_IP != 0 {
            s.ip = c.u64()?;
        }
        if t & sys::PERF_SAMPLE_TID != 0 {
            s.pid = c.u32()?;
            s.tid = c.u32()?;
        }
        if t & sys::PERF_SAMPLE_TIME != 0 {
            s.time = c.u64()?;
        }
        if t & sys::PERF_SAMPLE_CPU != 0 {
            s.cpu = c.u32()?;
            let _res = c.u32()?;
        }
        if t & sys::PERF_SAMPLE_PERIOD != 0 {
            s.period = c.u64()?;
        }
        if t & sys::PERF_SAMPLE_CALLCHAIN != 0 {
            let nr = c.u64()? as usize;
            let raw = c.take(nr.checked_mul(8)?)?;
            s.callchain = raw
                .chunks_exact(8)
                .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or_default()))
                .collect();
        }
        if t & sys::PERF_SAMPLE_REGS_USER != 0 {
            let abi = c.u64()?;
            if abi != 0 {
                // The selected registers follow in ascending register-index order.
                let mut values = [0u64; 64];
                for (bit, value) in values.iter_mut().enumerate() {
                    if self.regs_user_mask & (1 << bit) != 0 {
                        *value = c.u64()?;
                    }
                }
                s.user_regs = Some(UserRegs {
                    abi,
                    ip: values[sys::PERF_REG_X86_IP as usize],
                    sp: values[sys::PERF_REG_X86_SP as usize],
                    bp: values[sys::PERF_REG_X86_BP as usize],
                });
            }
        }
        if t & sys::PERF_SAMPLE_STACK_USER != 0 {
            let size = c.u64()? as usize;
            if size != 0 {
                let data = c.take(size)?;
                let dyn_size = (c.u64()? as usize).min(size);
                s.user_stack = data[..dyn_size].to_vec();
            }
        }
        Some(s)
    }
}

fn sample_id(body: &[u8]) -> Option<SampleId> {
    let start = body.len().checked_sub(SAMPLE_ID_SIZE)?;
    let mut c = Cursor::new(&body[start..]);
    let _pid = c.u32()?;
    let _tid = c.u32()?;
    let time = c.u64()?;
    let cpu = c.u32()?;
    Some(SampleId { time, cpu })
}

/// A NUL-terminated (and NUL-padded) string field.
fn c_string(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

fn mmap2(header: Header, body: &[u8]) -> Option<MmapEvent> {
    let sid = sample_id(body)?;
    let fixed = body.get(..body.len() - SAMPLE_ID_SIZE)?;
    let mut c = Cursor::new(fixed);
    let pid = c.u32()?;
    let tid = c.u32()?;
    let start = c.u64()?;
    let len = c.u64()?;
    let pgoff = c.u64()?;
    let file_id = if header.misc & sys::PERF_RECORD_MISC_MMAP_BUILD_ID != 0 {
        let size = c.u8()? as usize;
        let _reserved1 = c.u8()?;
        let _reserved2 = c.u16()?;
        let id = c.take(20)?;
        FileId::BuildId(id[..size.min(20)].to_vec())
    } else {
        FileId::Inode {
            major: c.u32()?,
            minor: c.u32()?,
            inode: c.u64()?,
            generation: c.u64()?,
        }
    };
    let prot = c.u32()?;
    let flags = c.u32()?;
    let name = c_string(&fixed[c.pos..]);
    Some(MmapEvent {
        time: sid.time,
        pid,
        tid,
        start,
        len,
        pgoff,
        file_id,
        prot,
        flags,
        filename: PathBuf::from(OsStr::from_bytes(name)),
        synthesized: false,
    })
}

fn comm(header: Header, body: &[u8]) -> Option<CommEvent> {
    let sid = sample_id(body)?;
    let fixed = body.get(..body.len() - SAMPLE_ID_SIZE)?;
    let mut c = Cursor::new(fixed);
    let pid = c.u32()?;
    let tid = c.u32()?;
    Some(CommEvent {
        time: sid.time,
        pid,
        tid,
        comm: String::from_utf8_lossy(c_string(&fixed[c.pos..])).into_owned(),
        exec: header.misc & sys::PERF_RECORD_MISC_COMM_EXEC != 0,
        synthesized: false,
    })
}

fn task(body: &[u8]) -> Option<TaskEvent> {
    let mut c = Cursor::new(body);
    Some(TaskEvent {
        pid: c.u32()?,
        ppid: c.u32()?,
        tid: c.u32()?,
        ptid: c.u32()?,
        time: c.u64()?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds records the way the kernel lays them out.
    pub(crate) struct RecordBuilder {
        pub bytes: Vec<u8>,
    }

    impl RecordBuilder {
        pub fn new(type_: u32, misc: u16) -> Self {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&type_.to_ne_bytes());
            bytes.extend_from_slice(&misc.to_ne_bytes());
            bytes.extend_from_slice(&0u16.to_ne_bytes());
            RecordBuilder { bytes }
        }
        pub fn u32(mut self, v: u32) -> Self {
            self.bytes.extend_from_slice(&v.to_ne_bytes());
            self
        }
        pub fn u64(mut self, v: u64) -> Self {
            self.bytes.extend_from_slice(&v.to_ne_bytes());
            self
        }
        pub fn raw(mut self, b: &[u8]) -> Self {
            self.bytes.extend_from_slice(b);
            self
        }
        pub fn pad8(mut self) -> Self {
            while !self.bytes.len().is_multiple_of(8) {
                self.bytes.push(0);
            }
            self
        }
        pub fn sample_id(self, pid: u32, tid: u32, time: u64, cpu: u32) -> Self {
            self.u32(pid).u32(tid).u64(time).u32(cpu).u32(0)
        }
        pub fn finish(mut self) -> Vec<u8> {
            let size = self.bytes.len() as u16;
            self.bytes[6..8].copy_from_slice(&size.to_ne_bytes());
            self.bytes
        }
    }

    fn parser(stack: bool) -> Parser {
        let mut sample_type = sys::PERF_SAMPLE_IP
            | sys::PERF_SAMPLE_TID
            | sys::PERF_SAMPLE_TIME
            | sys::PERF_SAMPLE_CPU
            | sys::PERF_SAMPLE_PERIOD
            | sys::PERF_SAMPLE_CALLCHAIN;
        if stack {
            sample_type |= sys::PERF_SAMPLE_REGS_USER | sys::PERF_SAMPLE_STACK_USER;
        }
        Parser {
            sample_type,
            regs_user_mask: sys::UNWIND_REGS_MASK,
        }
    }

    pub(crate) fn sample_record(time: u64, tid: u32) -> Vec<u8> {
        RecordBuilder::new(sys::PERF_RECORD_SAMPLE, 2)
            .u64(0x401000)
            .u32(tid)
            .u32(tid)
            .u64(time)
            .u32(1)
            .u32(0)
            .u64(1_001_001)
            .u64(4)
            .u64(sys::PERF_CONTEXT_USER)
            .u64(0x401000)
            .u64(0x401234)
            .u64(0x401300)
            .finish()
    }

    #[test]
    fn decodes_sample_with_callchain_contexts() {
        let rec = RecordBuilder::new(sys::PERF_RECORD_SAMPLE, 1)
            .u64(0xffff_ffff_8100_0000)
            .u32(10)
            .u32(11)
            .u64(5000)
            .u32(1)
            .u32(0)
            .u64(1_001_001)
            .u64(5)
            .u64(sys::PERF_CONTEXT_KERNEL)
            .u64(0xffff_ffff_8100_0000)
            .u64(sys::PERF_CONTEXT_USER)
            .u64(0x401000)
            .u64(0x401234)
            .finish();
        let Some(Event::Sample(s)) = parser(false).parse(&rec) else {
            panic!("not a sample")
        };
        assert_eq!((s.pid, s.tid, s.time, s.cpu), (10, 11, 5000, 1));
        assert_eq!(s.cpu_mode, CpuMode::Kernel);
        assert_eq!(s.period, 1_001_001);
        assert_eq!(
            s.kernel_frames().collect::<Vec<_>>(),
            [0xffff_ffff_8100_0000]
        );
        assert_eq!(s.user_frames().collect::<Vec<_>>(), [0x401000, 0x401234]);
        assert!(s.user_regs.is_none());
    }

    #[test]
    fn decodes_user_regs_and_stack() {
        let stack: Vec<u8> = (0..32u8).collect();
        let rec = RecordBuilder::new(sys::PERF_RECORD_SAMPLE, 2)
            .u64(0x401000)
            .u32(10)
            .u32(10)
            .u64(5000)
            .u32(0)
            .u32(0)
            .u64(1)
            .u64(0)
            .u64(2) // abi 64
            .u64(0x7ffd_0010) // bp
            .u64(0x7ffd_0000) // sp
            .u64(0x401000) // ip
            .u64(32)
            .raw(&stack)
            .u64(24) // dyn_size
            .finish();
        let Some(Event::Sample(s)) = parser(true).parse(&rec) else {
            panic!("not a sample")
        };
        let regs = s.user_regs.unwrap();
        assert_eq!(
            (regs.abi, regs.bp, regs.sp, regs.ip),
            (2, 0x7ffd_0010, 0x7ffd_0000, 0x401000)
        );
        assert_eq!(s.user_stack, &stack[..24]);
    }

    #[test]
    fn decodes_mmap2_with_and_without_build_id() {
        let name = b"/usr/bin/true\0\0\0";
        let rec = RecordBuilder::new(
            sys::PERF_RECORD_MMAP2,
            2 | sys::PERF_RECORD_MISC_MMAP_BUILD_ID,
        )
        .u32(7)
        .u32(7)
        .u64(0x1000)
        .u64(0x2000)
        .u64(0)
        .raw(&[20, 0, 0, 0])
        .raw(&[0xab; 20])
        .u32(5)
        .u32(2)
        .raw(name)
        .sample_id(7, 7, 99, 0)
        .finish();
        let Some(Event::Mmap(m)) = Parser {
            sample_type: 0,
            regs_user_mask: 0,
        }
        .parse(&rec) else {
            panic!("not an mmap")
        };
        assert_eq!(m.build_id(), Some(&[0xab; 20][..]));
        assert_eq!(m.filename, PathBuf::from("/usr/bin/true"));
        assert_eq!((m.time, m.start, m.len, m.prot), (99, 0x1000, 0x2000, 5));
        assert!(m.is_executable() && m.contains(0x2fff) && !m.contains(0x3000));

        let rec = RecordBuilder::new(sys::PERF_RECORD_MMAP2, 2)
            .u32(7)
            .u32(7)
            .u64(0x1000)
            .u64(0x2000)
            .u64(0x1000)
            .u32(8)
            .u32(1)
            .u64(1234)
            .u64(0)
            .u32(5)
            .u32(2)
            .raw(b"/lib/x.so\0")
            .pad8()
            .sample_id(7, 7, 100, 0)
            .finish();
        let Some(Event::Mmap(m)) = Parser {
            sample_type: 0,
            regs_user_mask: 0,
        }
        .parse(&rec) else {
            panic!("not an mmap")
        };
        assert_eq!(
            m.file_id,
            FileId::Inode {
                major: 8,
                minor: 1,
                inode: 1234,
                generation: 0
            }
        );
        assert_eq!(m.filename, PathBuf::from("/lib/x.so"));
    }

    #[test]
    fn decodes_comm_task_lost_throttle() {
        let p = Parser {
            sample_type: 0,
            regs_user_mask: 0,
        };
        let rec = RecordBuilder::new(sys::PERF_RECORD_COMM, sys::PERF_RECORD_MISC_COMM_EXEC)
            .u32(5)
            .u32(6)
            .raw(b"burn\0\0\0\0")
            .sample_id(5, 6, 42, 1)
            .finish();
        assert_eq!(
            p.parse(&rec),
            Some(Event::Comm(CommEvent {
                time: 42,
                pid: 5,
                tid: 6,
                comm: "burn".into(),
                exec: true,
                synthesized: false
            }))
        );
        let rec = RecordBuilder::new(sys::PERF_RECORD_FORK, 0)
            .u32(5)
            .u32(4)
            .u32(6)
            .u32(4)
            .u64(77)
            .sample_id(5, 6, 77, 1)
            .finish();
        assert_eq!(
            p.parse(&rec),
            Some(Event::Fork(TaskEvent {
                time: 77,
                pid: 5,
                ppid: 4,
                tid: 6,
                ptid: 4
            }))
        );
        let rec = RecordBuilder::new(sys::PERF_RECORD_LOST, 0)
            .u64(1)
            .u64(13)
            .sample_id(0, 0, 88, 1)
            .finish();
        assert_eq!(
            p.parse(&rec),
            Some(Event::Lost(LostEvent {
                time: 88,
                cpu: 1,
                lost: 13
            }))
        );
        let rec = RecordBuilder::new(sys::PERF_RECORD_THROTTLE, 0)
            .u64(90)
            .u64(1)
            .u64(1)
            .sample_id(0, 0, 90, 0)
            .finish();
        assert_eq!(
            p.parse(&rec),
            Some(Event::Throttle(ThrottleEvent {
                time: 90,
                cpu: 0,
                throttled: true
            }))
        );
    }

    #[test]
    fn malformed_records_are_rejected_not_panicking() {
        let p = parser(true);
        let good = sample_record(1, 2);
        for cut in 0..good.len() {
            let mut bad = good[..cut].to_vec();
            if bad.len() >= HEADER_SIZE {
                bad[6..8].copy_from_slice(&(cut as u16).to_ne_bytes());
            }
            assert_eq!(p.parse(&bad), None, "cut at {cut}");
        }
        // A callchain length that overflows.
        let rec = RecordBuilder::new(sys::PERF_RECORD_SAMPLE, 2)
            .u64(0)
            .u64(0)
            .u64(0)
            .u64(0)
            .u64(0)
            .u64(u64::MAX)
            .finish();
        assert_eq!(p.parse(&rec), None);
    }
}
