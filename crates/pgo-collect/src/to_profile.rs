//! From recorder events to a pprof profile: stacks, mappings, symbols, labels.

use std::path::PathBuf;
use std::sync::Arc;

use pgo_profile::{
    FunctionInfo, LabelValue, LineInfo, LocationId, MappingId, MappingInfo, Profile, ProfileBuilder,
};
use pgo_record::{CommEvent, Event, Sample, Summary};
use pgo_symbolize::{FrameSource, SourceFrame, Symbolizer};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::UnwindMode;
use crate::address_space::AddressSpaces;
use crate::kallsyms::KernelSymbols;

/// A sample reduced to what the profile needs: addresses leaf first, the first `kernel` of them
/// kernel addresses. Stack copies are unwound as they arrive and then dropped, so memory stays
/// proportional to stack depth, not to the copy size.
struct RawSample {
    pid: u32,
    tid: u32,
    time: u64,
    period: u64,
    addresses: Vec<u64>,
    kernel: usize,
    /// Frame-pointer mode, user-mode samples: the words at the stack pointer, where a
    /// frameless leaf's return address is. Without them (`perf record -g` copies no stack)
    /// the leaf's caller can only be told from the code ([`Collector::restore_callers_by_code`]).
    leaf_words: Option<[u64; LEAF_WORDS]>,
}

/// Words of stack copied at the stack pointer in frame-pointer mode.
pub(crate) const LEAF_WORDS: usize = 8;

/// What the profile's header and comments say about the collection.
pub(crate) struct Meta {
    /// The first comment: what made the recording (`pgo collect: COMMAND`).
    pub origin: String,
    /// The sampled event's name (`cpu-clock`).
    pub event: String,
    pub executable: Option<PathBuf>,
    pub frequency: u32,
    pub wall_start: std::time::SystemTime,
    pub unwind_note: String,
    /// Bytes of user stack each sample copied (DWARF mode).
    pub stack_bytes: u32,
    /// How the recorder is told to copy more stack, and to walk frame pointers, for advice.
    pub advice: Advice,
}

/// The recorder's own options, for warnings that advise them.
pub(crate) struct Advice {
    /// How to copy more stack than `Meta::stack_bytes` (used while that is below the most
    /// the kernel copies).
    pub larger_stack: String,
    /// How to record with frame pointers instead.
    pub frame_pointers: String,
}

pub(crate) struct Collector {
    samples: Vec<RawSample>,
    spaces: AddressSpaces,
    comms: Vec<CommEvent>,
    /// DWARF mode: unwinds each sample's stack copy as it arrives, with the modules mapped so far.
    dwarf: Option<DwarfUnwinding>,
    code_paths: CodePaths,
}

/// State of DWARF unwinding during a recording.
struct DwarfUnwinding {
    unwinder: pgo_unwind::Unwinder,
    /// The vdso's ELF image (the same in every process of this kernel), copied from our own.
    vdso: Option<Vec<u8>>,
    /// Samples whose walk reached the outermost frame, and all samples unwound.
    complete: u64,
    unwound: u64,
    /// Samples where the stack copy was unusable and the kernel's frame-pointer chain was kept.
    fell_back: u64,
    /// Samples whose walk the kernel's frame-pointer chain carried on.
    spliced: u64,
    /// Samples whose walk ran off the end of the stack copy (and no chain carried it on).
    cut_short: u64,
}

/// Our own vdso image, for unwinding through other processes' vdso (it is the kernel's).
fn own_vdso_image() -> Option<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|l| l.ends_with("[vdso]"))?;
    let (start, end) = line.split_whitespace().next()?.split_once('-')?;
    let (start, end) = (
        u64::from_str_radix(start, 16).ok()?,
        u64::from_str_radix(end, 16).ok()?,
    );
    let mut mem = std::fs::File::open("/proc/self/mem").ok()?;
    mem.seek(SeekFrom::Start(start)).ok()?;
    let mut image = vec![0; (end - start) as usize];
    mem.read_exact(&mut image).ok()?;
    Some(image)
}

/// Where an address of a stack lives.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Place {
    Kernel,
    Mapping(usize),
    Unmapped,
}

/// One distinct frame: where, which address, and whether it is the sampled instruction itself
/// (looked up as is) or a return address (looked up one byte earlier, in the call).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct FrameKey {
    place: Place,
    address: u64,
    is_leaf: bool,
}

/// Carries a DWARF walk on along the kernel's frame-pointer chain, where
/// that chain reaches the walk's last frame at the walk's own depth (or one less: a frameless
/// leaf's caller is missing from a frame-pointer chain) and goes on. Code that keeps frame
/// pointers while its call-frame information cannot be followed (Go's `systemstack` switches
/// to another stack, which a stack copy does not hold; Go's frame pointers link across)
/// loses nothing to a DWARF recording (`pgo collect -- ./train.sh`, where the shell decides
/// the mode). A frame-pointer chain through code without frame pointers is garbage, and
/// matches the walk's return address at that depth only by accident. Returns whether it did.
fn splice_kernel_chain(frames: &mut Vec<u64>, chain: &[u64]) -> bool {
    let Some(&last) = frames.last() else {
        return false;
    };
    let depth = frames.len() - 1;
    let at = [depth, depth.saturating_sub(1)]
        .into_iter()
        .find(|&j| j >= 1 && chain.get(j) == Some(&last));
    match at {
        Some(j) if j + 1 < chain.len() => {
            frames.extend_from_slice(&chain[j + 1..]);
            true
        }
        _ => false,
    }
}

impl Collector {
    pub(crate) fn new(unwind: UnwindMode) -> Self {
        Collector {
            samples: Vec::new(),
            spaces: AddressSpaces::default(),
            comms: Vec::new(),
            dwarf: (unwind == UnwindMode::Dwarf).then(|| DwarfUnwinding {
                unwinder: pgo_unwind::Unwinder::new(),
                vdso: own_vdso_image(),
                complete: 0,
                unwound: 0,
                fell_back: 0,
                spliced: 0,
                cut_short: 0,
            }),
            code_paths: CodePaths::default(),
        }
    }

    /// One line for the profile's comments on how well DWARF unwinding went.
    fn unwind_report(&self) -> Option<String> {
        let d = self.dwarf.as_ref()?;
        Some(format!(
            "dwarf unwinding: {} of {} stacks reached their outermost frame; {} kept the kernel's frame-pointer chain; {} were completed by it",
            d.complete, d.unwound, d.fell_back, d.spliced
        ))
    }

    pub(crate) fn push(&mut self, event: Event) {
        match event {
            Event::Sample(s) => {
                let raw = self.reduce(&s);
                self.samples.push(raw);
            }
            Event::Mmap(m) => {
                if let Some(d) = &mut self.dwarf {
                    let range = m.start..m.end();
                    if m.filename.as_os_str() == "[vdso]" {
                        if let Some(image) = &d.vdso {
                            let _ = d
                                .unwinder
                                .add_module_image(m.pid, "[vdso]", range, m.pgoff, image);
                        }
                    } else if m.filename.is_absolute()
                        && let Some(path) = self.code_paths.of(&m)
                    {
                        // A module we cannot read is unwound with frame pointers by framehop.
                        let _ = d.unwinder.add_module(m.pid, &path, range, m.pgoff);
                    }
                }
                self.spaces.add_mmap(m)
            }
            Event::Comm(c) => {
                self.spaces.add_comm(&c);
                self.comms.push(c);
            }
            Event::Fork(t) => {
                if let Some(d) = &mut self.dwarf
                    && t.pid == t.tid
                    && t.pid != t.ppid
                {
                    d.unwinder.fork_process(t.ppid, t.pid);
                }
                self.spaces.add_fork(&t)
            }
            _ => {}
        }
    }

    fn reduce(&mut self, s: &Sample) -> RawSample {
        let mut addresses: Vec<u64> = s.kernel_frames().collect();
        let kernel = addresses.len();
        let unwound = match (&mut self.dwarf, s.user_regs) {
            (Some(d), Some(regs)) if !s.user_stack.is_empty() => {
                let r = d.unwinder.unwind(
                    s.pid,
                    pgo_unwind::Regs {
                        ip: regs.ip,
                        sp: regs.sp,
                        bp: regs.bp,
                    },
                    &s.user_stack,
                );
                d.unwound += 1;
                d.complete += u64::from(r.complete);
                // The kernel's chain, as far as it stays in mapped code: through code without
                // frame pointers it follows whatever the frame-pointer register held.
                let spaces = &self.spaces;
                let chain: Vec<u64> = s
                    .user_frames()
                    .take_while(|&a| spaces.find(s.pid, a, s.time).is_some())
                    .collect();
                // A walk stuck at the leaf is worse than a kernel chain, when there is one.
                if r.frames.len() <= 1 && chain.len() > 1 {
                    d.fell_back += 1;
                    Some(chain)
                } else {
                    let mut frames = r.frames;
                    // Even a walk that ended where the call-frame information says the
                    // stack ends: Go's `systemstack` ends the system stack's frames that way.
                    if splice_kernel_chain(&mut frames, &chain) {
                        d.spliced += 1;
                    } else if matches!(
                        r.error,
                        Some(pgo_unwind::UnwindError::StackCopyExhausted { .. })
                    ) {
                        d.cut_short += 1;
                    }
                    Some(frames)
                }
            }
            _ => None,
        };
        match unwound {
            Some(frames) => addresses.extend(frames),
            None => addresses.extend(s.user_frames()),
        }
        if addresses.is_empty() {
            addresses.push(s.ip);
        }
        // Also under kernel frames (a page fault, a syscall): the user registers and stack are
        // those at the entry to the kernel, where the user leaf stopped.
        let leaf_words = match (&self.dwarf, s.user_regs) {
            (None, Some(regs))
                if addresses.get(kernel) == Some(&regs.ip)
                    && s.user_stack.len() >= 8 * LEAF_WORDS =>
            {
                let mut words = [0u64; LEAF_WORDS];
                for (w, chunk) in words.iter_mut().zip(s.user_stack.chunks_exact(8)) {
                    *w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
                }
                Some(words)
            }
            _ => None,
        };
        RawSample {
            pid: s.pid,
            tid: s.tid,
            time: s.time,
            period: s.period,
            addresses,
            kernel,
            leaf_words,
        }
    }

    pub(crate) fn finish(mut self, summary: &Summary, meta: &Meta) -> (Profile, Vec<String>) {
        let mut warnings = Vec::new();
        self.comms.sort_by_key(|c| c.time);
        let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
        let period = 1_000_000_000 / i64::from(meta.frequency.max(1));
        b.set_period("cpu", "nanoseconds", period);
        b.set_default_sample_type("cpu");
        let wall = meta
            .wall_start
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        b.set_time_nanos(wall.as_nanos() as i64);
        b.set_duration_nanos(summary.ended.saturating_sub(summary.started) as i64);
        b.add_comment(&meta.origin);
        b.add_comment(&format!(
            "{} at {} Hz; {}",
            meta.event, meta.frequency, meta.unwind_note
        ));
        b.add_comment(&format!(
            "{} samples, {} lost",
            summary.samples, summary.lost
        ));
        if let Some(report) = self.unwind_report() {
            b.add_comment(&report);
        }
        if let Some(d) = &self.dwarf
            && d.unwound >= 100
            && d.cut_short * 10 > d.unwound
        {
            // A larger copy is advice only while there is a larger one to give.
            let larger = if meta.stack_bytes < crate::MAX_STACK_BYTES {
                format!("{}, or ", meta.advice.larger_stack)
            } else {
                format!(
                    "the copy is at its largest ({} bytes): ",
                    crate::MAX_STACK_BYTES
                )
            };
            warnings.push(format!(
                "{:.0}% of the stacks were deeper than the stack copy, so their callers are \
                 missing: {larger}build with frame pointers (-Cforce-frame-pointers=yes, \
                 -fno-omit-frame-pointer) and use {}",
                d.cut_short as f64 * 100.0 / d.unwound as f64,
                meta.advice.frame_pointers
            ));
        }

        // A return address of 0 is where a walk went wrong (a frame-pointer chain through
        // code that keeps data in rbp): nothing from there up is a caller. Cut before the
        // repairs, so that a frameless leaf's caller goes where the 0 was.
        for s in &mut self.samples {
            cut_at_null_return(&mut s.addresses, s.kernel);
        }
        // Both repairs read the mapped files' code: one cache parses each file once.
        let mut code = CodeCache::default();
        let leaf_fixes = self.restore_frameless_callers(&mut code);
        if leaf_fixes > 0 {
            b.add_comment(&format!(
                "frame pointers: restored the caller of a frameless leaf function in {leaf_fixes} samples"
            ));
        }
        let code_fixes = self.restore_callers_by_code(&mut code);
        if code_fixes > 0 {
            b.add_comment(&format!(
                "frame pointers: restored the caller of a frameless leaf function from the code \
                 (no stack words were copied) in {code_fixes} samples"
            ));
        }
        let (tail_fixes, tail_frames) = self.restore_tail_callers(&mut code);
        if tail_fixes > 0 {
            b.add_comment(&format!(
                "tail calls: restored {tail_frames} frames a tail call had left off, in {tail_fixes} samples"
            ));
        }

        // Pass 1: place and symbolize every distinct frame once.
        let mut symbolizer = Symbolizer::new();
        let mut kernel_symbols: Option<KernelSymbols> = None;
        let mut build_ids: FxHashMap<PathBuf, String> = FxHashMap::default();
        let mut resolved: FxHashMap<FrameKey, Resolved> = FxHashMap::default();
        let mut warned: FxHashSet<String> = FxHashSet::default();
        let mut sample_keys: Vec<Vec<FrameKey>> = Vec::with_capacity(self.samples.len());
        for s in &self.samples {
            let mut keys = Vec::with_capacity(s.addresses.len());
            for (i, &address) in s.addresses.iter().enumerate() {
                let place = if i < s.kernel {
                    Place::Kernel
                } else {
                    self.spaces
                        .find(s.pid, address, s.time)
                        .map_or(Place::Unmapped, Place::Mapping)
                };
                let key = FrameKey {
                    place,
                    address,
                    is_leaf: i == 0,
                };
                if let std::collections::hash_map::Entry::Vacant(slot) = resolved.entry(key) {
                    slot.insert(resolve(
                        key,
                        &self.spaces,
                        &mut symbolizer,
                        &mut kernel_symbols,
                        &mut build_ids,
                        &mut warned,
                        &mut warnings,
                    ));
                }
                keys.push(key);
            }
            sample_keys.push(keys);
        }

        // Pass 2: mappings (main executable first, as pprof expects), then locations.
        let mut used: Vec<Place> = resolved
            .keys()
            .map(|k| k.place)
            .collect::<FxHashSet<_>>()
            .into_iter()
            .collect();
        let is_main = |p: &Place| match (p, &meta.executable) {
            (Place::Mapping(i), Some(exe)) => self.spaces.mmaps[*i].filename == *exe,
            _ => false,
        };
        used.sort_by_key(|p| {
            let order = match p {
                Place::Mapping(i) => *i as u64,
                Place::Kernel => u64::MAX - 1,
                Place::Unmapped => u64::MAX,
            };
            (!is_main(p), order)
        });
        let mut mapping_ids: FxHashMap<Place, MappingId> = FxHashMap::default();
        for place in used {
            let symbolized: Vec<&Resolved> = resolved
                .iter()
                .filter(|(k, _)| k.place == place)
                .map(|(_, r)| r)
                .collect();
            let has_functions = symbolized.iter().any(|r| !r.frames.is_empty());
            let has_lines = symbolized
                .iter()
                .any(|r| r.frames.iter().any(|f| f.line > 0));
            let has_inline = symbolized.iter().any(|r| r.frames.len() > 1) || has_lines;
            let id = match place {
                Place::Mapping(i) => {
                    let m = &self.spaces.mmaps[i];
                    let path = m.filename.to_string_lossy();
                    b.mapping(MappingInfo {
                        memory_start: m.start,
                        memory_limit: m.end(),
                        file_offset: m.pgoff,
                        filename: &path,
                        build_id: build_ids.get(&m.filename).map_or("", String::as_str),
                        has_functions,
                        has_filenames: has_lines,
                        has_line_numbers: has_lines,
                        has_inline_frames: has_inline,
                    })
                }
                Place::Kernel => {
                    let (start, limit) = kernel_symbols
                        .as_ref()
                        .and_then(KernelSymbols::range)
                        .unwrap_or((0, u64::MAX));
                    b.mapping(MappingInfo {
                        memory_start: start,
                        memory_limit: limit,
                        filename: "[kernel.kallsyms]",
                        has_functions,
                        ..MappingInfo::default()
                    })
                }
                Place::Unmapped => continue,
            };
            mapping_ids.insert(place, id);
        }
        let mut locations: FxHashMap<FrameKey, LocationId> = FxHashMap::default();
        for (key, r) in &resolved {
            let lines: Vec<LineInfo> = r
                .frames
                .iter()
                .map(|f| LineInfo {
                    function: b.function(FunctionInfo {
                        name: &f.function_name,
                        system_name: &f.function_linkage_name,
                        filename: if f.function_file.is_empty() {
                            &f.file
                        } else {
                            &f.function_file
                        },
                        start_line: i64::from(f.start_line),
                    }),
                    line: i64::from(f.line),
                    column: i64::from(f.column),
                })
                .collect();
            locations.insert(
                *key,
                b.location(mapping_ids.get(&key.place).copied(), key.address, &lines),
            );
        }

        let processes: FxHashSet<u32> = self.samples.iter().map(|s| s.pid).collect();
        let mut stack = Vec::new();
        for (s, keys) in self.samples.iter().zip(&sample_keys) {
            stack.clear();
            stack.extend(keys.iter().map(|k| locations[k]));
            let thread_name = self.thread_name(s.tid, s.time);
            let mut labels = vec![("thread_id", LabelValue::Num(i64::from(s.tid), ""))];
            if !thread_name.is_empty() {
                labels.push(("thread_name", LabelValue::Str(thread_name)));
            }
            if processes.len() > 1 {
                labels.push(("pid", LabelValue::Num(i64::from(s.pid), "")));
            }
            b.add_sample(&stack, &[1, s.period as i64], &labels)
                .expect("one value per sample type, never negative");
        }
        let mut binaries: Vec<String> = build_ids
            .iter()
            .map(|(path, id)| {
                format!(
                    "binary: {} build-id {}",
                    path.display(),
                    if id.is_empty() { "none" } else { id }
                )
            })
            .collect();
        binaries.sort();
        for line in binaries {
            b.add_comment(&line);
        }
        (b.build(), warnings)
    }

    /// Frame-pointer mode: a leaf function that has not set up a frame (frameless leaves, or a
    /// sample in a prologue) is invisible to the kernel's walk, which continues from the caller's
    /// frame and so skips the caller. Where the leaf's code shows the return address's stack slot
    /// and the word there returns just after a call instruction, insert it. Returns how many
    /// samples were fixed.
    fn restore_frameless_callers(&mut self, code: &mut CodeCache) -> usize {
        let mut slots: FxHashMap<(usize, u64), Option<usize>> = FxHashMap::default();
        let mut fixed = 0;
        for s in &mut self.samples {
            let Some(words) = s.leaf_words else {
                continue;
            };
            // The user leaf, under the kernel frames if any.
            let leaf = s.kernel;
            let Some(&ip) = s.addresses.get(leaf) else {
                continue;
            };
            let Some(m) = self.spaces.find(s.pid, ip, s.time) else {
                continue;
            };
            let slot = *slots
                .entry((m, ip))
                .or_insert_with(|| code.return_slot(&self.spaces.mmaps[m], ip));
            // A slot beyond the copied words (a big frame) cannot be read.
            let Some(ret) = slot.and_then(|i| words.get(i).copied()) else {
                continue;
            };
            if s.addresses.get(leaf + 1) == Some(&ret) {
                continue;
            }
            let Some(rm) = self.spaces.find(s.pid, ret, s.time) else {
                continue;
            };
            if code.follows_call(&self.spaces.mmaps[rm], ret) {
                s.addresses.insert(leaf + 1, ret);
                fixed += 1;
            }
        }
        fixed
    }

    /// Frame-pointer mode without the stack words at the leaf (`perf record -g`): where the
    /// leaf has not set up its frame at the sampled instruction (so the kernel's walk went on
    /// from its caller's frame and skipped the caller), the first return address is after a
    /// direct call to another function; when that function calls the leaf's function directly
    /// from exactly one place, that call is the missing frame. Returns how many samples were
    /// fixed.
    fn restore_callers_by_code(&mut self, code: &mut CodeCache) -> usize {
        if self.dwarf.is_some() {
            return 0;
        }
        let mut found: FxHashMap<(usize, u64, u64), Option<u64>> = FxHashMap::default();
        let mut fixed = 0;
        for s in &mut self.samples {
            if s.leaf_words.is_some() {
                continue;
            }
            let leaf = s.kernel;
            let (Some(&ip), Some(&ret)) = (s.addresses.get(leaf), s.addresses.get(leaf + 1)) else {
                continue;
            };
            let (Some(m), Some(rm)) = (
                self.spaces.find(s.pid, ip, s.time),
                self.spaces.find(s.pid, ret, s.time),
            ) else {
                continue;
            };
            let caller = *found.entry((m, ip, ret)).or_insert_with(|| {
                let (m, rm) = (&self.spaces.mmaps[m], &self.spaces.mmaps[rm]);
                if m.filename != rm.filename {
                    return None;
                }
                code.return_slot(m, ip)?;
                code.only_caller_of_leaf(m, ret, ip)
            });
            if let Some(caller) = caller {
                s.addresses.insert(leaf + 1, caller);
                fixed += 1;
            }
        }
        fixed
    }

    /// A function that ends by jumping to another (a tail call) leaves no frame: a sample
    /// in the callee shows the caller's caller directly above it, at a call instruction that
    /// calls another function. Where that call is direct and the binary holds exactly one chain
    /// of direct tail jumps from the called function to the sampled one
    /// ([`pgo_binary::Binary::tail_call_chain`]), the chain's functions are put back, each at
    /// its jump (as if the jump were a call returning just after it), so that the profile
    /// says who called the callee and from which line. Calls through a pointer are left
    /// alone: which function they called is not known. Returns the samples fixed and the
    /// frames restored.
    fn restore_tail_callers(&mut self, code: &mut CodeCache) -> (usize, usize) {
        let mut chains: FxHashMap<(usize, u64, u64), Option<Vec<u64>>> = FxHashMap::default();
        let (mut fixed, mut restored) = (0, 0);
        for s in &mut self.samples {
            let mut k = s.kernel + 1;
            let mut changed = false;
            while k < s.addresses.len() {
                let ret = s.addresses[k];
                let placed = code_address(s.addresses[k - 1], k - 1 == s.kernel).and_then(|c| {
                    let m = self.spaces.find(s.pid, ret, s.time)?;
                    Some((c, m, self.spaces.find(s.pid, c, s.time)?))
                });
                let Some((callee, m, cm)) = placed else {
                    k += 1;
                    continue;
                };
                let missing = chains
                    .entry((m, ret, callee))
                    .or_insert_with(|| {
                        let (m, cm) = (&self.spaces.mmaps[m], &self.spaces.mmaps[cm]);
                        (m.filename == cm.filename)
                            .then(|| code.hidden_tail_callers(m, ret, callee))
                            .flatten()
                    })
                    .clone();
                match missing {
                    Some(frames) => {
                        let n = frames.len();
                        s.addresses.splice(k..k, frames);
                        (restored, changed) = (restored + n, true);
                        k += n + 1;
                    }
                    None => k += 1,
                }
            }
            fixed += usize::from(changed);
        }
        (fixed, restored)
    }

    /// The name the thread had at `time` (the last COMM before it).
    fn thread_name(&self, tid: u32, time: u64) -> &str {
        self.comms
            .iter()
            .rev()
            .find(|c| c.tid == tid && (c.time <= time || c.synthesized))
            .or_else(|| self.comms.iter().find(|c| c.tid == tid))
            .map_or("", |c| c.comm.as_str())
    }
}

/// Source frames of one distinct frame (empty when unknown).
struct Resolved {
    frames: Arc<[SourceFrame]>,
}

fn kernel_frame(name: &str) -> Arc<[SourceFrame]> {
    let name: Arc<str> = Arc::from(name);
    Arc::from([SourceFrame {
        function_linkage_name: name.clone(),
        function_name: name,
        file: Arc::from(""),
        line: 0,
        column: 0,
        function_file: Arc::from(""),
        start_line: 0,
        inlined: false,
    }])
}

fn resolve(
    key: FrameKey,
    spaces: &AddressSpaces,
    symbolizer: &mut Symbolizer,
    kernel_symbols: &mut Option<KernelSymbols>,
    build_ids: &mut FxHashMap<PathBuf, String>,
    warned: &mut FxHashSet<String>,
    warnings: &mut Vec<String>,
) -> Resolved {
    let lookup = code_address(key.address, key.is_leaf).unwrap_or(0);
    let empty = || Resolved {
        frames: Arc::from([]),
    };
    match key.place {
        Place::Unmapped => empty(),
        Place::Kernel => {
            let ks = kernel_symbols.get_or_insert_with(KernelSymbols::load);
            match ks.lookup(lookup) {
                Some(name) => Resolved {
                    frames: kernel_frame(name),
                },
                None => empty(),
            }
        }
        Place::Mapping(i) => {
            let m = &spaces.mmaps[i];
            let path = m.filename.to_string_lossy();
            let build_id = build_ids
                .entry(m.filename.clone())
                .or_insert_with(|| match m.build_id() {
                    Some(id) => crate::build_id_hex(id),
                    None => pgo_symbolize::ObjectInfo::read(&m.filename)
                        .map(|i| i.build_id)
                        .unwrap_or_default(),
                })
                .clone();
            match symbolizer.symbolize_runtime_address(&path, &build_id, m.start, m.pgoff, lookup) {
                Ok(s) => {
                    if s.object_is_stripped && warned.insert(path.to_string()) {
                        warnings.push(format!(
                            "{path} is stripped (no symbols): its addresses are kept unsymbolized"
                        ));
                    }
                    if matches!(s.source, FrameSource::Special(_)) {
                        return empty();
                    }
                    Resolved { frames: s.frames }
                }
                Err(e) => {
                    if warned.insert(path.to_string()) {
                        warnings.push(format!("cannot symbolize {path}: {e}"));
                    }
                    empty()
                }
            }
        }
    }
}

/// Code of mapped files, for looking at instructions around sampled addresses.
#[derive(Default)]
struct CodeCache {
    files: FxHashMap<PathBuf, Option<MappedCode>>,
    paths: CodePaths,
}

/// Which file holds the code a mapping mapped. A recording that names the build (perf.data's
/// build IDs) may outlive the binary: then the file on disk is another build, whose code
/// would place frames wrongly, and the code is perf's copy in its build-ID cache, or none
/// ([`pgo_symbolize::binary_with_build_id`]). Without a build ID (`pgo collect`'s own
/// mappings, read while the program runs) the file is the one mapped.
#[derive(Default)]
struct CodePaths(FxHashMap<(PathBuf, Vec<u8>), Option<PathBuf>>);

impl CodePaths {
    fn of(&mut self, m: &pgo_record::MmapEvent) -> Option<PathBuf> {
        match m.build_id() {
            Some(id) if !id.is_empty() => self
                .0
                .entry((m.filename.clone(), id.to_vec()))
                .or_insert_with(|| {
                    pgo_symbolize::binary_with_build_id(&m.filename, &crate::build_id_hex(id))
                })
                .clone(),
            _ => Some(m.filename.clone()),
        }
    }
}

/// One mapped file, parsed for [`CodeCache`].
struct MappedCode {
    binary: pgo_binary::Binary,
    info: pgo_symbolize::ObjectInfo,
    /// Its `.eh_frame`, when it has one.
    frames: Option<pgo_unwind::CallFrameInfo>,
}

impl CodeCache {
    fn file(&mut self, m: &pgo_record::MmapEvent) -> Option<&MappedCode> {
        let path = self.paths.of(m)?;
        self.files
            .entry(path.clone())
            .or_insert_with(|| {
                let data = std::fs::read(&path).ok()?;
                Some(MappedCode {
                    binary: pgo_binary::Binary::parse(&path, &data).ok()?,
                    info: pgo_symbolize::ObjectInfo::parse(&path, &data).ok()?,
                    frames: pgo_unwind::CallFrameInfo::parse(&data),
                })
            })
            .as_ref()
    }

    /// Where the return address of the leaf stopped at `ip` is: by the file's call-frame
    /// information where it has an entry for `ip` (compiled code, and libc's hand-written
    /// functions, which a stripped library gives no symbols to find their code by), else by
    /// reading the function's code ([`crate::frame_pointers::frameless_return_slot`]: Go
    /// binaries have no `.eh_frame`).
    fn return_slot(&mut self, m: &pgo_record::MmapEvent, ip: u64) -> Option<usize> {
        let file = self.file(m)?;
        let svma = file.info.svma_for_runtime_address(ip, m.start, m.pgoff)?;
        if let Some(frames) = &file.frames
            && let Some(slot) = frames.return_address_slot(svma)
        {
            return Some(slot);
        }
        let function = file.binary.function_at(svma)?;
        let code = file.binary.function_code(function).ok()?;
        crate::frame_pointers::frameless_return_slot(code, function.start, svma)
    }

    /// The frames missing between the call returning to `ret` and the code at `callee`
    /// (both runtime addresses in `m`'s file): the functions of the one chain of tail jumps
    /// from the called function to `callee`'s, innermost first, each as the runtime address
    /// just after its jump. `None` when nothing is missing or it cannot be told what is.
    fn hidden_tail_callers(
        &mut self,
        m: &pgo_record::MmapEvent,
        ret: u64,
        callee: u64,
    ) -> Option<Vec<u64>> {
        /// Longer chains of tail calls are rare, and the longer the chain the likelier a
        /// second one.
        const MAX_HOPS: usize = 3;
        let file = self.file(m)?;
        let ret_svma = file.info.svma_for_runtime_address(ret, m.start, m.pgoff)?;
        let callee_svma = file
            .info
            .svma_for_runtime_address(callee, m.start, m.pgoff)?;
        let pgo_binary::CallKind::Direct { target } =
            file.binary.call_at_return_address(ret_svma)?.kind
        else {
            return None;
        };
        let sampled = file.binary.function_at(callee_svma)?.start;
        if sampled == target {
            return None;
        }
        let chain = file.binary.tail_call_chain(target, sampled, MAX_HOPS)?;
        let bias = ret.wrapping_sub(ret_svma);
        Some(
            chain
                .iter()
                .rev()
                .map(|jump| jump.return_address.wrapping_add(bias))
                .collect(),
        )
    }

    /// For a frameless leaf at `ip` whose stack shows `ret` above it: the return address (at
    /// run time) of the one direct call to `ip`'s function in the function the call before
    /// `ret` calls, when that is not `ip`'s function (both in `m`'s file).
    fn only_caller_of_leaf(&mut self, m: &pgo_record::MmapEvent, ret: u64, ip: u64) -> Option<u64> {
        let file = self.file(m)?;
        let ret_svma = file.info.svma_for_runtime_address(ret, m.start, m.pgoff)?;
        let ip_svma = file.info.svma_for_runtime_address(ip, m.start, m.pgoff)?;
        let pgo_binary::CallKind::Direct { target } =
            file.binary.call_at_return_address(ret_svma)?.kind
        else {
            return None;
        };
        let leaf = file.binary.function_at(ip_svma)?.start;
        if leaf == target {
            return None;
        }
        let call = file.binary.only_direct_call(target, leaf)?;
        Some(call.return_address.wrapping_add(ret.wrapping_sub(ret_svma)))
    }

    /// Whether `address` is just after a call instruction: a real return address.
    fn follows_call(&mut self, m: &pgo_record::MmapEvent, address: u64) -> bool {
        let Some(file) = self.file(m) else {
            return false;
        };
        file.info
            .svma_for_runtime_address(address, m.start, m.pgoff)
            .and_then(|svma| file.binary.call_at_return_address(svma))
            .is_some()
    }
}

/// Drops the first return address of 0 above the user leaf (at index `leaf`) and every frame
/// after it.
fn cut_at_null_return(addresses: &mut Vec<u64>, leaf: usize) {
    if let Some(i) = addresses.iter().skip(leaf + 1).position(|a| *a == 0) {
        addresses.truncate(leaf + 1 + i);
    }
}

/// An address in a frame's code: a leaf's instruction pointer itself, or a byte of the call
/// instruction before a return address (which points after the call). None for a return
/// address of 0, which a broken walk can leave (the call would be before the address space).
fn code_address(address: u64, is_leaf: bool) -> Option<u64> {
    if is_leaf {
        Some(address)
    } else {
        address.checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::{code_address, cut_at_null_return, splice_kernel_chain};

    #[test]
    fn a_stack_ends_below_a_return_address_of_zero() {
        // Kernel frame, user leaf, a caller, then a broken chain.
        let mut stack = vec![0xffff_0001, 0x1000, 0x2001, 0, 0x3001];
        cut_at_null_return(&mut stack, 1);
        assert_eq!(stack, [0xffff_0001, 0x1000, 0x2001]);
        // The leaf itself is an instruction pointer, never cut; whole stacks stay whole.
        let mut stack = vec![0, 0x2001];
        cut_at_null_return(&mut stack, 0);
        assert_eq!(stack, [0, 0x2001]);
        let mut stack = vec![0x1000, 0x2001, 0x3001];
        cut_at_null_return(&mut stack, 0);
        assert_eq!(stack, [0x1000, 0x2001, 0x3001]);
    }

    #[test]
    fn a_frames_code_is_the_leaf_ip_or_the_call_before_a_return_address() {
        assert_eq!(code_address(0x1000, true), Some(0x1000));
        assert_eq!(code_address(0x2001, false), Some(0x2000));
        // A return address of 0 (a broken walk) has no call before it.
        assert_eq!(code_address(0, false), None);
        assert_eq!(code_address(0, true), Some(0));
    }

    #[test]
    fn a_walk_is_carried_on_only_where_the_frame_pointer_chain_agrees_with_it() {
        // The chain holds the walk's last frame at the walk's depth and goes on.
        let mut frames = vec![0x10, 0x20, 0x30];
        assert!(splice_kernel_chain(
            &mut frames,
            &[0x10, 0x20, 0x30, 0x40, 0x50]
        ));
        assert_eq!(frames, [0x10, 0x20, 0x30, 0x40, 0x50]);
        // A frameless leaf's caller (0x20) is not in a frame-pointer chain: one shallower.
        let mut frames = vec![0x10, 0x20, 0x30];
        assert!(splice_kernel_chain(&mut frames, &[0x10, 0x30, 0x40]));
        assert_eq!(frames, [0x10, 0x20, 0x30, 0x40]);
        // A recursion: the same return address deeper in the chain is not where the walk
        // stopped.
        let mut frames = vec![0x10, 0x20, 0x20];
        assert!(splice_kernel_chain(
            &mut frames,
            &[0x10, 0x20, 0x20, 0x20, 0x20, 0x90]
        ));
        assert_eq!(frames, [0x10, 0x20, 0x20, 0x20, 0x20, 0x90]);
        // Garbage (code without frame pointers), a chain that ends there, no chain: unchanged.
        for chain in [
            vec![0x10, 0x7777, 0x8888, 0x9999],
            vec![0x10, 0x20, 0x30],
            vec![],
        ] {
            let mut frames = vec![0x10, 0x20, 0x30];
            assert!(!splice_kernel_chain(&mut frames, &chain));
            assert_eq!(frames, [0x10, 0x20, 0x30], "{chain:x?}");
        }
    }
}
