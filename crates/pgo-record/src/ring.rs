//! A perf ring buffer: one metadata page followed by 2^n data pages, mapped read-write so we can
//! advance `data_tail` (the kernel then never overwrites unread data; it drops records and emits
//! `PERF_RECORD_LOST` instead).
//!
//! Protocol (see `perf_event_open(2)` and `tools/lib/perf/mmap.c`): load `data_head` with acquire
//! ordering, read the records in `[tail, head)` (offsets modulo the data size, so a record may wrap
//! around the end), then store the new `data_tail` with release ordering so the kernel cannot reuse
//! the space before our reads are done.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::parse::{HEADER_SIZE, Header};
use crate::sys;

pub struct RingBuffer {
    /// Start of the mapping (the `perf_event_mmap_page`).
    base: NonNull<u8>,
    map_len: usize,
    /// Offset of the data area from `base` (one page).
    data_offset: usize,
    /// Size of the data area, a power of two.
    data_size: usize,
    /// Our copy of `data_tail`; we are its only writer.
    tail: u64,
    /// Whether `base` came from `mmap` (and must be unmapped on drop).
    mapped: bool,
    scratch: Vec<u8>,
}

// SAFETY: the mapping is owned by this value and only accessed through `&mut self`; the kernel
// side synchronises through data_head/data_tail atomics.
unsafe impl Send for RingBuffer {}

/// What one drain did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DrainStats {
    pub records: u64,
    pub bytes: u64,
    /// Times the buffer content was inconsistent and had to be skipped up to `data_head`.
    pub corrupt: u64,
}

impl RingBuffer {
    /// Map the ring buffer of `fd` with `data_pages` (a power of two) data pages.
    pub fn map(fd: &OwnedFd, data_pages: usize) -> io::Result<Self> {
        let page = sys::page_size();
        let map_len = page * (data_pages + 1);
        // SAFETY: we ask for a fresh shared mapping of a perf event fd; the kernel validates the
        // size. The result is checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(RingBuffer {
            base,
            map_len,
            data_offset: page,
            data_size: page * data_pages,
            tail: 0,
            mapped: true,
            scratch: Vec::new(),
        })
    }

    /// A ring buffer over caller-provided memory laid out like the kernel's (tests only).
    ///
    /// # Safety
    /// `base` must be 8-byte aligned, valid for reads and writes of `data_offset + data_size`
    /// bytes and outlive the returned value.
    #[cfg(test)]
    pub unsafe fn from_raw(base: NonNull<u8>, data_offset: usize, data_size: usize) -> Self {
        RingBuffer {
            base,
            map_len: data_offset + data_size,
            data_offset,
            data_size,
            tail: 0,
            mapped: false,
            scratch: Vec::new(),
        }
    }

    pub fn data_size(&self) -> usize {
        self.data_size
    }

    fn head_atomic(&self) -> &AtomicU64 {
        // SAFETY: data_head lives at a fixed, 8-aligned offset in the metadata page, which stays
        // mapped for as long as `self`; the kernel updates it concurrently, hence the atomic.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(sys::MMAP_PAGE_DATA_HEAD).cast()) }
    }

    fn tail_atomic(&self) -> &AtomicU64 {
        // SAFETY: as for `head_atomic`; data_tail is read by the kernel concurrently.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(sys::MMAP_PAGE_DATA_TAIL).cast()) }
    }

    /// Copy `out.len()` bytes starting at ring position `pos`, wrapping around the end.
    fn copy_out(&self, pos: u64, out: &mut [u8]) {
        let offset = (pos as usize) & (self.data_size - 1);
        let first = out.len().min(self.data_size - offset);
        // SAFETY: `offset + first <= data_size` and `out.len() - first <= data_size` (callers
        // never ask for more than data_size bytes), so both source ranges are inside the data
        // area; the kernel does not write to [tail, head), which is all we read.
        unsafe {
            let data = self.base.as_ptr().add(self.data_offset);
            std::ptr::copy_nonoverlapping(data.add(offset), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(data, out.as_mut_ptr().add(first), out.len() - first);
        }
    }

    /// Hand every complete record between `data_tail` and `data_head` to `f` (header included,
    /// contiguous even if it wrapped), then release the space to the kernel.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> DrainStats {
        let mut stats = DrainStats::default();
        let head = self.head_atomic().load(Ordering::Acquire);
        let mut tail = self.tail;
        if head.wrapping_sub(tail) > self.data_size as u64 {
            // Cannot happen with a writable mapping; resynchronise rather than read garbage.
            stats.corrupt += 1;
            tail = head;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        while tail < head {
            let mut hdr = [0u8; HEADER_SIZE];
            self.copy_out(tail, &mut hdr);
            let header = Header::parse(&hdr);
            let size = header.size as u64;
            if size < HEADER_SIZE as u64 || size > head - tail {
                stats.corrupt += 1;
                tail = head;
                break;
            }
            scratch.resize(size as usize, 0);
            self.copy_out(tail, &mut scratch);
            f(&scratch);
            stats.records += 1;
            stats.bytes += size;
            tail += size;
        }
        self.scratch = scratch;
        self.tail = tail;
        self.tail_atomic().store(tail, Ordering::Release);
        stats
    }
}

impl Drop for RingBuffer {
    fn drop(&mut self) {
        if self.mapped {
            // SAFETY: `base`/`map_len` are exactly what mmap returned; nothing borrows the mapping
            // past `self`.
            unsafe { libc::munmap(self.base.as_ptr().cast(), self.map_len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::tests::sample_record;

    /// Fake kernel: writes records into the buffer the way perf_output does.
    struct Fake {
        mem: Vec<u64>,
        head: u64,
        data_offset: usize,
        data_size: usize,
    }

    impl Fake {
        /// The fake "metadata page" is 2048 bytes: data_head/data_tail fit before the data.
        fn new(data_size: usize) -> Self {
            let data_offset = 2048;
            Fake {
                mem: vec![0; (data_offset + data_size) / 8],
                head: 0,
                data_offset,
                data_size,
            }
        }
        fn bytes(&mut self) -> &mut [u8] {
            let len = self.mem.len() * 8;
            // SAFETY: reinterpreting an owned u64 buffer as bytes.
            unsafe { std::slice::from_raw_parts_mut(self.mem.as_mut_ptr().cast::<u8>(), len) }
        }
        fn write(&mut self, record: &[u8]) {
            let (off, size, head) = (self.data_offset, self.data_size, self.head);
            let bytes = self.bytes();
            for (i, b) in record.iter().enumerate() {
                bytes[off + ((head as usize + i) % size)] = *b;
            }
            self.head += record.len() as u64;
            let h = self.head.to_ne_bytes();
            self.bytes()[sys::MMAP_PAGE_DATA_HEAD..sys::MMAP_PAGE_DATA_HEAD + 8]
                .copy_from_slice(&h);
        }
    }

    fn fake_and_ring(data_size: usize) -> (Box<Fake>, RingBuffer) {
        let mut fake = Box::new(Fake::new(data_size));
        let base = NonNull::new(fake.mem.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: the Box keeps the memory alive and in place for the test's duration.
        let ring = unsafe { RingBuffer::from_raw(base, fake.data_offset, data_size) };
        (fake, ring)
    }

    #[test]
    fn drains_records_wrapping_around_the_end() {
        let (mut fake, mut ring) = fake_and_ring(512);
        let rec = sample_record(1, 2);
        assert_eq!(rec.len(), 88);
        let mut seen = Vec::new();
        let mut time = 0;
        // 88-byte records in a 512-byte buffer, up to 3 per drain: records wrap around the end.
        for round in 0..10 {
            for _ in 0..(round % 3) + 1 {
                time += 1;
                fake.write(&sample_record(time, 2));
            }
            ring.drain(|r| seen.push(r.to_vec()));
        }
        assert_eq!(seen.len() as u64, time);
        for (i, r) in seen.iter().enumerate() {
            assert_eq!(r, &sample_record(i as u64 + 1, 2), "record {i}");
        }
        // The tail was published.
        let tail = u64::from_ne_bytes(
            fake.bytes()[sys::MMAP_PAGE_DATA_TAIL..sys::MMAP_PAGE_DATA_TAIL + 8]
                .try_into()
                .unwrap(),
        );
        assert_eq!(tail, fake.head);
    }

    #[test]
    fn corrupt_size_resynchronises() {
        let (mut fake, mut ring) = fake_and_ring(256);
        fake.write(&[1, 0, 0, 0, 0, 0, 0, 0]); // size 0
        let stats = ring.drain(|_| panic!("no record expected"));
        assert_eq!(stats.corrupt, 1);
        fake.write(&sample_record(5, 1));
        let mut n = 0;
        ring.drain(|_| n += 1);
        assert_eq!(n, 1);
    }
}
