//! Bad input gives partial results, never panics: random stacks, ip in no module, truncated and
//! corrupted stack copies, absurd registers, non-ELF modules.

mod common;

use std::hint::black_box;

use common::sample_at_depth;
use pgo_unwind::{ModuleError, Regs, UnwindError, Unwinder};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn self_unwinder() -> (u32, Unwinder) {
    let pid = std::process::id();
    let mut unwinder = Unwinder::new();
    unwinder.load_proc_maps(pid).unwrap();
    (pid, unwinder)
}

#[test]
fn unknown_process() {
    let mut unwinder = Unwinder::new();
    let result = unwinder.unwind(
        7,
        Regs {
            ip: 1,
            sp: 2,
            bp: 3,
        },
        &[0; 64],
    );
    assert_eq!(result.frames, vec![1]);
    assert!(!result.complete);
    assert_eq!(result.error, Some(UnwindError::UnknownProcess(7)));
}

#[test]
fn random_stacks_and_registers() {
    let (pid, mut unwinder) = self_unwinder();
    let code = sample_at_depth as fn(u32) -> common::Sample as usize as u64;
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for i in 0..20_000u64 {
        let len = (rng.next() % 4096) as usize;
        let mut stack = rng.bytes(len);
        let sp = match i % 4 {
            0 => rng.next(),
            1 => u64::MAX - (rng.next() % 64),
            _ => 0x7ffd_0000_0000 + (rng.next() % 0x10000) * 8,
        };
        // Half of the stacks are "plausible": words that point into the copy and into code.
        if i % 2 == 0 {
            for chunk in stack.chunks_exact_mut(8) {
                let word = if rng.next().is_multiple_of(2) {
                    sp.wrapping_add(rng.next() % (len as u64 + 64))
                } else {
                    code.wrapping_add(rng.next() % 0x4000)
                };
                chunk.copy_from_slice(&word.to_le_bytes());
            }
        }
        let ip = match i % 3 {
            0 => rng.next(),                          // in no module
            1 => code.wrapping_add(rng.next() % 256), // in real code, maybe mid-instruction
            _ => 0x1234,
        };
        let regs = Regs {
            ip,
            sp,
            bp: if i % 5 == 0 { 0 } else { rng.next() },
        };
        unwinder.set_stop_at_unknown_code(i % 7 != 0);
        let result = unwinder.unwind(pid, regs, &stack);
        assert_eq!(result.frames[0], ip);
        assert!(result.frames.len() <= pgo_unwind::DEFAULT_MAX_DEPTH);
        assert!(result.complete == result.error.is_none());
    }
}

#[test]
fn ip_in_no_module_stops_at_first_unknown_return_address() {
    let (pid, mut unwinder) = self_unwinder();
    // Frame-pointer fallback over a fake frame whose return address is unknown code.
    let sp = 0x7ffd_0000_1000u64;
    let mut stack = vec![0u8; 48];
    stack[16..24].copy_from_slice(&(sp + 48).to_le_bytes()); // saved bp
    stack[24..32].copy_from_slice(&0xdead_0000u64.to_le_bytes()); // return address
    let regs = Regs {
        ip: 0x1000,
        sp,
        bp: sp + 16,
    };
    let result = unwinder.unwind(pid, regs, &stack);
    assert_eq!(result.frames, vec![0x1000]);
    assert_eq!(
        result.error,
        Some(UnwindError::UnknownCode { addr: 0xdead_0000 })
    );
    unwinder.set_stop_at_unknown_code(false);
    let result = unwinder.unwind(pid, regs, &stack);
    assert_eq!(result.frames, vec![0x1000, 0xdead_0000]);
    // The next frame-pointer step reads the saved bp at sp + 48: past the end of the copy.
    assert_eq!(
        result.error,
        Some(UnwindError::StackCopyExhausted { addr: sp + 48 })
    );
}

#[test]
fn truncated_stack_gives_a_prefix() {
    let sample = sample_at_depth(black_box(5));
    let (pid, mut unwinder) = self_unwinder();
    let full = unwinder.unwind(pid, sample.regs, &sample.stack);
    assert!(full.complete, "{:?}", full.error);
    let mut lengths: Vec<usize> = vec![0, 1, 7, 8, 9, 15, 16, 63, 64, 65];
    lengths.extend((0..sample.stack.len()).step_by(40));
    for len in lengths {
        let part = unwinder.unwind(pid, sample.regs, &sample.stack[..len]);
        assert!(!part.frames.is_empty());
        assert_eq!(
            part.frames[..],
            full.frames[..part.frames.len()],
            "len {len}"
        );
        if part.frames.len() < full.frames.len() {
            assert!(!part.complete);
            assert!(
                // The failed 8-byte read reaches past the end of the copy.
                matches!(part.error, Some(UnwindError::StackCopyExhausted { addr })
                    if addr + 8 > sample.regs.sp + len as u64),
                "len {len}: {:?}",
                part.error
            );
        }
    }
}

#[test]
fn corrupted_real_stack() {
    let sample = sample_at_depth(black_box(8));
    let (pid, mut unwinder) = self_unwinder();
    let mut rng = XorShift(42);
    for _ in 0..5_000 {
        let mut stack = sample.stack.clone();
        let used = stack.len().min(2048);
        for _ in 0..1 + rng.next() % 8 {
            let at = (rng.next() as usize) % used;
            stack[at] = rng.next() as u8;
        }
        let result = unwinder.unwind(pid, sample.regs, &stack);
        assert_eq!(result.frames[0], sample.regs.ip);
        assert!(result.complete == result.error.is_none());
    }
}

#[test]
fn bad_modules_are_errors() {
    let pid = 4_000_000_002;
    let mut unwinder = Unwinder::new();
    let exe = std::fs::read_link("/proc/self/exe").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, XorShift(5).bytes(10_000)).unwrap();
    assert!(matches!(
        unwinder.add_module(pid, &junk, 0x1000..0x2000, 0),
        Err(ModuleError::Elf(_))
    ));
    assert!(matches!(
        unwinder.add_module(pid, dir.path().join("missing"), 0x1000..0x2000, 0),
        Err(ModuleError::Io(_))
    ));
    assert!(matches!(
        unwinder.add_module(pid, &exe, 0x1000..0x1000, 0),
        Err(ModuleError::EmptyRange)
    ));
    assert!(matches!(
        unwinder.add_module(pid, &exe, 0x1000..0x2000, 1 << 40),
        Err(ModuleError::OffsetNotInLoadSegment(_))
    ));
    // Truncated ELF images (header only, half of the section table gone, ...).
    let bytes = std::fs::read(&exe).unwrap();
    let mut rng = XorShift(77);
    for len in [0usize, 4, 64, 1000, 4096, bytes.len() / 2, bytes.len() - 1] {
        let _ = unwinder.add_module_image(pid, "cut", 0x1000..0x2000, 0, &bytes[..len]);
    }
    for _ in 0..200 {
        let mut image = bytes[..bytes.len().min(1 << 16)].to_vec();
        for _ in 0..16 {
            let at = (rng.next() as usize) % image.len();
            image[at] = rng.next() as u8;
        }
        let _ = unwinder.add_module_image(pid, "mangled", 0x1000..0x2000, 0, &image);
    }
    let result = unwinder.unwind(
        pid,
        Regs {
            ip: 0x1800,
            sp: 0x10_0000,
            bp: 0,
        },
        &[1; 256],
    );
    assert_eq!(result.frames[0], 0x1800);
}
