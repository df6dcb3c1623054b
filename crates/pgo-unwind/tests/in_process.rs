//! Unwinds a real sample of this test process: a → b → c, captured inside c.

mod common;

use std::hint::black_box;

use common::{Namer, Sample, Symbols, copy_memory, find_from};
use pgo_unwind::Unwinder;

#[inline(never)]
fn chain_a(seed: u64) -> Sample {
    let sample = chain_b(black_box(seed + 1));
    // Work after the call, so it cannot become a tail call.
    black_box(seed);
    black_box(sample)
}

#[inline(never)]
fn chain_b(seed: u64) -> Sample {
    let sample = chain_c(black_box(seed + 1));
    black_box(seed);
    black_box(sample)
}

#[inline(never)]
fn chain_c(seed: u64) -> Sample {
    let regs = capture_regs!();
    let stack = copy_memory("self", regs.sp, common::STACK_COPY);
    black_box(seed);
    Sample { regs, stack }
}

fn self_pid() -> u32 {
    std::process::id()
}

#[test]
#[inline(never)] // a frame of its own in release builds too
fn unwinds_own_stack_a_b_c() {
    let sample = chain_a(black_box(1));
    black_box(&sample); // keep work after the call
    let pid = self_pid();
    let mut unwinder = Unwinder::new();
    let report = unwinder.load_proc_maps(pid).expect("read /proc/self/maps");
    assert!(report.added >= 2, "exe and libc at least: {report:?}");
    assert!(report.failed.is_empty(), "{report:?}");

    // The crate's load bias for the test executable must agree with an independent one: the
    // runtime address of chain_c minus its symbol-table address.
    let c_addr = chain_c as fn(u64) -> Sample as usize as u64;
    let module = unwinder
        .module_at(pid, c_addr)
        .expect("chain_c is in a module");
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    assert_eq!(module.name, exe.to_string_lossy());
    assert!(module.has_cfi);
    let c_svma = Symbols::load(&exe)
        .address_of("in_process::chain_c")
        .expect("chain_c in .symtab");
    assert_eq!(module.base_avma, c_addr - c_svma, "load bias");

    let result = unwinder.unwind(pid, sample.regs, &sample.stack);
    let mut namer = Namer::new();
    let names: Vec<String> = result
        .lookup_addresses()
        .map(|a| namer.name(&unwinder, pid, a))
        .collect();
    for (addr, name) in result.frames.iter().zip(&names) {
        eprintln!("  {addr:#018x} {name}");
    }
    eprintln!("complete={} error={:?}", result.complete, result.error);

    assert_eq!(result.frames[0], sample.regs.ip);
    let c = find_from(&names, 0, "chain_c").expect("chain_c");
    assert_eq!(c, 0, "the leaf is chain_c");
    let b = find_from(&names, c + 1, "chain_b").expect("chain_b after chain_c");
    let a = find_from(&names, b + 1, "chain_a").expect("chain_a after chain_b");
    assert_eq!((b, a), (1, 2), "no frames in between");
    find_from(&names, a + 1, "unwinds_own_stack_a_b_c").expect("the test function after chain_a");

    // Frame pointers play no part: with rbp poisoned, CFI alone still recovers the chain.
    let poisoned = pgo_unwind::Regs {
        bp: 0x0bad_0bad_0bad_0bad,
        ..sample.regs
    };
    let without_fp = unwinder.unwind(pid, poisoned, &sample.stack);
    assert!(without_fp.frames.len() > a + 1);
    assert_eq!(without_fp.frames[..=a + 1], result.frames[..=a + 1]);

    // The walk continues through libtest and std to the thread's (or process's) first frame.
    assert!(
        result.complete,
        "reached the end of the stack: {:?}",
        result.error
    );
    let last = names.last().unwrap();
    assert!(
        last.contains("clone") || last == "_start",
        "outermost frame is clone3 or _start: {last}"
    );
}

#[test]
fn deep_recursion_and_depth_limit() {
    let sample = common::sample_at_depth(black_box(40));
    let pid = self_pid();
    let mut unwinder = Unwinder::new();
    unwinder.load_proc_maps(pid).unwrap();
    let result = unwinder.unwind(pid, sample.regs, &sample.stack);
    let mut namer = Namer::new();
    let names: Vec<String> = result
        .lookup_addresses()
        .map(|a| namer.name(&unwinder, pid, a))
        .collect();
    assert!(names[0].ends_with("sample_leaf"), "{names:?}");
    let recursive = names
        .iter()
        .filter(|n| n.ends_with("sample_at_depth"))
        .count();
    assert_eq!(recursive, 41, "{names:?}");
    assert!(result.complete, "{:?}", result.error);

    unwinder.set_max_depth(10);
    let limited = unwinder.unwind(pid, sample.regs, &sample.stack);
    assert_eq!(limited.frames, result.frames[..10]);
    assert!(!limited.complete);
    assert_eq!(limited.error, Some(pgo_unwind::UnwindError::DepthLimit(10)));
}

#[test]
fn module_cache_is_shared_between_processes() {
    let pid = self_pid();
    let mut unwinder = Unwinder::new();
    unwinder.load_proc_maps(pid).unwrap();
    let files = unwinder.cached_file_count();
    assert!(files >= 2);
    // A second "process" with the same mappings (as after fork) parses nothing new.
    unwinder.load_proc_maps(pid).unwrap();
    assert_eq!(unwinder.cached_file_count(), files);
    unwinder.fork_process(pid, 4_000_000_001);

    let sample = chain_a(black_box(5));
    let from_parent = unwinder.unwind(pid, sample.regs, &sample.stack);
    let from_child = unwinder.unwind(4_000_000_001, sample.regs, &sample.stack);
    assert_eq!(from_parent, from_child);
    assert!(from_parent.complete);

    unwinder.remove_process(pid);
    unwinder.remove_process(4_000_000_001);
    unwinder.purge_unused_files();
    assert_eq!(unwinder.cached_file_count(), 0);
    let gone = unwinder.unwind(pid, sample.regs, &sample.stack);
    assert_eq!(gone.frames, vec![sample.regs.ip]);
    assert_eq!(
        gone.error,
        Some(pgo_unwind::UnwindError::UnknownProcess(pid))
    );
}

/// Modules given one by one, as a recorder would from PERF_RECORD_MMAP2 (start, end, file
/// offset, path), unwind exactly like `load_proc_maps`.
#[test]
fn explicit_add_module_matches_load_proc_maps() {
    let sample = chain_a(black_box(9));
    let pid = self_pid();
    let mut from_maps = Unwinder::new();
    from_maps.load_proc_maps(pid).unwrap();
    let expected = from_maps.unwind(pid, sample.regs, &sample.stack);

    let mut explicit = Unwinder::new();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut added = 0;
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(range), Some(perms), Some(offset), Some(path)) =
            (fields.first(), fields.get(1), fields.get(2), fields.get(5))
        else {
            continue;
        };
        if !perms.contains('x') || !path.starts_with('/') {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let offset = u64::from_str_radix(offset, 16).unwrap();
        explicit.add_module(pid, path, start..end, offset).unwrap();
        added += 1;
    }
    assert!(added >= 2);
    let result = explicit.unwind(pid, sample.regs, &sample.stack);
    assert_eq!(result, expected);
    assert!(result.complete);

    // Unmapping the executable's text stops the walk at the first return address in it.
    let exe_text = explicit.module_at(pid, sample.regs.ip).unwrap().avma_range;
    explicit.remove_module(pid, exe_text.start);
    assert!(explicit.module_at(pid, sample.regs.ip).is_none());
    let after = explicit.unwind(pid, sample.regs, &sample.stack);
    assert!(after.frames.len() < expected.frames.len());
    assert!(after.frames[1..].iter().all(|a| !exe_text.contains(a)));
}
