//! DWARF-CFI stack unwinding for pgo's sampling profiler.
//!
//! A sample taken with `perf_event_open` and `PERF_SAMPLE_REGS_USER | PERF_SAMPLE_STACK_USER`
//! holds the user registers and a copy of the user stack starting at the stack pointer. For
//! code built without frame pointers (a default Rust release build, most C/C++ distributions)
//! the call chain can only be recovered by interpreting the DWARF call-frame information
//! (`.eh_frame`, `.eh_frame_hdr`, or `.debug_frame`) of every module in the process. This crate
//! does that with [`framehop`]: it turns **registers + a stack copy + the process's module
//! list** into a **list of code addresses**, leaf first.
//!
//! [`CallFrameInfo`] answers the one question a frame-pointer profile needs of the same
//! information: where a leaf that has not set up a frame keeps its return address.
//!
//! It is **not** a recorder (it does not call `perf_event_open` or ptrace), **not** a
//! symbolizer (addresses stay addresses; see `pgo-symbolize`), and does **not** write
//! profiles. It only reads the ELF files named by the caller's mappings (or `/proc/PID/maps`).
//!
//! # Address convention
//!
//! [`UnwindResult::frames`]`[0]` is the sampled instruction pointer, unchanged. Every later
//! entry is a **return address** exactly as found on the stack: the address of the instruction
//! *after* the call. For symbolization and line lookup use `address - 1` for those entries
//! (the call instruction itself; a `call` to a `noreturn` function can be the last instruction
//! of a function, so the return address may belong to the next function).
//! [`UnwindResult::lookup_addresses`] does this adjustment.
//!
//! # Registers
//!
//! Only `ip`, `sp` and `bp` are needed (perf register indices `PERF_REG_X86_IP` = 8,
//! `PERF_REG_X86_SP` = 7, `PERF_REG_X86_BP` = 6, so `sample_regs_user = 0x1c0`). The stack
//! copy must start at `sp`: pass `&stack_data[..dyn_size]` of a perf sample.
//!
//! # Modules
//!
//! Modules are added per process id, one executable mapping at a time, exactly as the mapping
//! appears in `/proc/PID/maps` or a `PERF_RECORD_MMAP2` record (start, end, file offset, path):
//! [`Unwinder::add_module`], or [`Unwinder::load_proc_maps`] to read a live process's maps. The
//! load bias of PIE executables and shared libraries is computed from the file's `PT_LOAD`
//! headers and the mapping's file offset. Parsed files are cached by (device, inode, size,
//! mtime), so the second process mapping the same libc costs an `open` and an `fstat`. The vdso
//! has no file: [`Unwinder::load_proc_maps`] copies its image out of `/proc/PID/mem`, or pass
//! the image yourself to [`Unwinder::add_module_image`] (it is the same for every process of
//! one kernel; only its address differs). Without it, a sample whose ip is in the vdso is
//! unwound with frame pointers for that frame, which usually loses its caller.
//!
//! Where a frame's code has no CFI (unknown module, module without `.eh_frame`), framehop falls
//! back to frame-pointer unwinding for that frame. By default the walk stops at a *return
//! address* that lies in no known module ([`UnwindError::UnknownCode`]), because that is almost
//! always the sign of a wrong step; [`Unwinder::set_stop_at_unknown_code`] turns this off (JIT
//! code with frame pointers).
//!
//! Signal frames are followed: when a return address is a signal trampoline (an FDE whose CIE
//! has the `S` augmentation, such as glibc's `__restore_rt`), the interrupted `rip`, `rsp` and
//! `rbp` are read from the kernel's signal frame on the stack. The frame after the trampoline's
//! is then the *interrupted instruction*, not a return address; [`UnwindResult::lookup_addresses`]
//! still subtracts 1 from it, which stays in the right function unless the signal arrived on
//! a function's first instruction.
//!
//! # Limitations
//!
//! - x86-64 ELF only. Files without section headers (`sstrip`) are treated as having no CFI.
//! - One kind of CFI per module, as framehop does: `.eh_frame` (with `.eh_frame_hdr` if
//!   present), else `.debug_frame`. Code compiled with `-fno-asynchronous-unwind-tables` in a
//!   file whose other objects do have `.eh_frame` falls back to frame pointers. Separate debug
//!   files are not consulted.
//! - A module without `.eh_frame_hdr` gets an index built by framehop for every process that
//!   maps it (the parsed sections are shared; that index is not).
//! - JIT code and other anonymous executable memory has no CFI: frame pointers or nothing.
//! - The vdso is found by [`Unwinder::load_proc_maps`] only; with [`Unwinder::add_module`] it is
//!   the caller's job ([`Unwinder::add_module_image`]).
//! - `unwind` takes `&mut self` (framehop's rule cache); use one `Unwinder` per thread.
//!
//! # Example
//!
//! ```no_run
//! use pgo_unwind::{Regs, Unwinder};
//! # let (pid, ip, sp, bp, stack) = (1u32, 0u64, 0u64, 0u64, Vec::<u8>::new());
//! let mut unwinder = Unwinder::new();
//! unwinder.load_proc_maps(pid)?; // or add_module() per PERF_RECORD_MMAP2
//! let result = unwinder.unwind(pid, Regs { ip, sp, bp }, &stack);
//! for address in result.lookup_addresses() {
//!     println!("{address:#x}");
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Only x86-64 ELF is supported.

mod leaf;
mod maps;
mod module;

pub use leaf::CallFrameInfo;

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{FrameAddress, Module, Unwinder as _};

use maps::MapsLine;
use module::{FileKey, LoadedModule, ModuleImage};

/// Default for [`Unwinder::set_max_depth`].
pub const DEFAULT_MAX_DEPTH: usize = 1024;

/// Largest vdso image [`Unwinder::load_proc_maps`] will copy (it is 8 KiB on current kernels).
const MAX_VDSO_SIZE: u64 = 1 << 20;

/// Offsets of the interrupted `rbp`, `rsp`, `rip` from the stack pointer at which a signal
/// handler returns into the signal trampoline: that address holds the kernel's `ucontext`
/// (x86-64 `struct rt_sigframe` after its return-address slot), whose `uc_mcontext`
/// (`struct sigcontext`) starts at 40. The same offsets as glibc's CFI for `__restore_rt`.
const SIGFRAME_RBP: u64 = 40 + 10 * 8;
const SIGFRAME_RSP: u64 = 40 + 15 * 8;
const SIGFRAME_RIP: u64 = 40 + 16 * 8;

/// The registers the unwinder starts from, as sampled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// Instruction pointer (`rip`).
    pub ip: u64,
    /// Stack pointer (`rsp`); the stack copy starts here.
    pub sp: u64,
    /// Frame pointer register (`rbp`), whatever it holds.
    pub bp: u64,
}

/// Why an unwind stopped before reaching the outermost frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnwindError {
    /// No modules were ever added for this pid.
    #[error("no modules known for pid {0}")]
    UnknownProcess(u32),
    /// The next frame's data lies beyond the end of the stack copy (the copy was too small, or
    /// a frame was wrong and pointed far up).
    #[error("stack copy ends before {addr:#x}")]
    StackCopyExhausted {
        /// The stack address that could not be read.
        addr: u64,
    },
    /// A frame pointed below the sampled stack pointer: the stack or an unwind step is corrupt.
    #[error("stack address {addr:#x} below the sampled stack pointer")]
    BadStackAddress {
        /// The stack address that could not be read.
        addr: u64,
    },
    /// A return address is in no known module (see [`Unwinder::set_stop_at_unknown_code`]).
    /// It is not included in the frames.
    #[error("return address {addr:#x} is in no known module")]
    UnknownCode {
        /// The return address.
        addr: u64,
    },
    /// The depth limit was reached.
    #[error("stopped at the depth limit of {0} frames")]
    DepthLimit(usize),
    /// An unwind step made no sense (stack pointer moved backwards, no progress, overflow).
    #[error("invalid unwind step: {0}")]
    InvalidStep(String),
}

/// The outcome of one unwind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnwindResult {
    /// `frames[0]` is the sampled ip; later entries are return addresses (see the crate docs).
    pub frames: Vec<u64>,
    /// True if the walk ended at a frame that marks the end of the stack (a CFI rule with an
    /// undefined return address, as in `_start` and `clone`, or a zero return address / frame
    /// pointer).
    pub complete: bool,
    /// Why the walk stopped early, when it did. `complete` is false whenever this is `Some`.
    pub error: Option<UnwindError>,
}

impl UnwindResult {
    /// Addresses suitable for symbolization: the ip unchanged, return addresses minus one (so
    /// they point into the call instruction).
    pub fn lookup_addresses(&self) -> impl Iterator<Item = u64> + '_ {
        self.frames
            .iter()
            .enumerate()
            .map(|(i, &a)| if i == 0 { a } else { a.wrapping_sub(1) })
    }
}

/// Why a module could not be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleError {
    /// The file could not be opened or read.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not a readable 64-bit ELF file.
    #[error("ELF parse error: {0}")]
    Elf(#[from] object::Error),
    /// The ELF file is not for x86-64.
    #[error("unsupported architecture {0}")]
    UnsupportedArchitecture(String),
    /// The mapping's file offset is inside no `PT_LOAD` segment of the file, so the mapping
    /// does not come from this file (or the file changed).
    #[error("file offset {0:#x} is in no PT_LOAD segment")]
    OffsetNotInLoadSegment(u64),
    /// The address range is empty.
    #[error("empty address range")]
    EmptyRange,
}

/// A module as mapped in a process, as returned by [`Unwinder::module_at`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleInfo {
    /// The path (or name, such as `[vdso]`) it was added with.
    pub name: String,
    /// The mapped address range.
    pub avma_range: Range<u64>,
    /// The address of file address (SVMA) 0: `svma = address - base_avma`.
    pub base_avma: u64,
    /// Whether the file has `.eh_frame` or `.debug_frame` (otherwise only frame pointers help).
    pub has_cfi: bool,
}

/// What [`Unwinder::load_proc_maps`] did.
#[derive(Debug, Default)]
pub struct MapsReport {
    /// Executable mappings added (including the vdso).
    pub added: usize,
    /// Executable mappings that could not be added, with the reason. Samples in them unwind
    /// with frame pointers only.
    pub failed: Vec<(String, ModuleError)>,
}

/// One process's modules.
struct Process {
    framehop: UnwinderX86_64<Arc<[u8]>>,
    /// Sorted by start address, non-overlapping.
    modules: Vec<LoadedModule>,
}

impl Process {
    fn new() -> Process {
        Process {
            framehop: UnwinderX86_64::new(),
            modules: Vec::new(),
        }
    }

    fn module_index(&self, addr: u64) -> Option<usize> {
        let i = self.modules.partition_point(|m| m.avma_range.start <= addr);
        let i = i.checked_sub(1)?;
        (addr < self.modules[i].avma_range.end).then_some(i)
    }

    fn insert(&mut self, module: LoadedModule) {
        // A new mapping replaces whatever overlapped it (as mmap does).
        let range = module.avma_range.clone();
        let framehop = &mut self.framehop;
        self.modules.retain(|m| {
            let overlaps = m.avma_range.start < range.end && range.start < m.avma_range.end;
            if overlaps {
                framehop.remove_module(m.avma_range.start);
            }
            !overlaps
        });
        self.framehop.add_module(Module::new(
            module.name.to_string(),
            module.avma_range.clone(),
            module.base_avma,
            module.image.sections.clone(),
        ));
        let at = self
            .modules
            .partition_point(|m| m.avma_range.start < range.start);
        self.modules.insert(at, module);
    }
}

/// Unwinds samples of any number of processes. Holds one module set per pid, a cache of parsed
/// ELF files shared by all processes, and framehop's unwind-rule cache.
pub struct Unwinder {
    processes: HashMap<u32, Process>,
    files: HashMap<FileKey, Arc<ModuleImage>>,
    cache: CacheX86_64,
    max_depth: usize,
    stop_at_unknown_code: bool,
}

impl Default for Unwinder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Unwinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unwinder")
            .field("processes", &self.processes.len())
            .field("cached_files", &self.files.len())
            .field("max_depth", &self.max_depth)
            .field("stop_at_unknown_code", &self.stop_at_unknown_code)
            .finish()
    }
}

impl Unwinder {
    /// An unwinder with no processes, depth limit [`DEFAULT_MAX_DEPTH`], stopping at unknown
    /// code.
    pub fn new() -> Unwinder {
        Unwinder {
            processes: HashMap::new(),
            files: HashMap::new(),
            cache: CacheX86_64::new(),
            max_depth: DEFAULT_MAX_DEPTH,
            stop_at_unknown_code: true,
        }
    }

    /// Maximum number of frames (ip included) returned by one unwind; at least 1.
    pub fn set_max_depth(&mut self, max_depth: usize) {
        self.max_depth = max_depth.max(1);
    }

    /// Whether to stop at a return address in no known module (default true). Turn off for
    /// processes with JIT code that keeps frame pointers.
    pub fn set_stop_at_unknown_code(&mut self, stop: bool) {
        self.stop_at_unknown_code = stop;
    }

    /// Adds the executable mapping `avma_range` of the ELF file `path`, mapped from
    /// `file_offset`, to process `pid`. Replaces modules overlapping the range. `path` must be
    /// readable by this process (for a process in another mount namespace use
    /// `/proc/PID/root/...`). Non-executable mappings need not be added.
    pub fn add_module(
        &mut self,
        pid: u32,
        path: impl AsRef<Path>,
        avma_range: Range<u64>,
        file_offset: u64,
    ) -> Result<(), ModuleError> {
        let path = path.as_ref();
        let file = File::open(path)?;
        self.add_module_from_file(pid, &path.to_string_lossy(), file, avma_range, file_offset)
    }

    /// Adds a module whose ELF image is given as bytes (the vdso, or a file read elsewhere).
    /// Not cached across calls.
    pub fn add_module_image(
        &mut self,
        pid: u32,
        name: &str,
        avma_range: Range<u64>,
        file_offset: u64,
        image: &[u8],
    ) -> Result<(), ModuleError> {
        let image = Arc::new(ModuleImage::from_bytes(image)?);
        self.insert_module(pid, name, image, avma_range, file_offset)
    }

    /// Removes the module that starts at `avma_start` from process `pid` (munmap).
    pub fn remove_module(&mut self, pid: u32, avma_start: u64) {
        if let Some(process) = self.processes.get_mut(&pid)
            && let Some(i) = process.module_index(avma_start)
            && process.modules[i].avma_range.start == avma_start
        {
            process.modules.remove(i);
            process.framehop.remove_module(avma_start);
        }
    }

    /// Forgets process `pid` (exit, or exec before adding the new image's modules).
    pub fn remove_process(&mut self, pid: u32) {
        self.processes.remove(&pid);
    }

    /// Gives `child` a copy of `parent`'s modules (fork: perf reports no mmaps for inherited
    /// mappings). Replaces any modules `child` had. No-op if `parent` is unknown.
    pub fn fork_process(&mut self, parent: u32, child: u32) {
        if let Some(p) = self.processes.get(&parent) {
            let copy = Process {
                framehop: p.framehop.clone(),
                modules: p.modules.clone(),
            };
            self.processes.insert(child, copy);
        }
    }

    /// Replaces `pid`'s modules with the executable mappings in `/proc/PID/maps`: ELF files
    /// (found through the path, `/proc/PID/root`, or `/proc/PID/map_files` for deleted files)
    /// and the vdso (copied from `/proc/PID/mem`). Fails only if the maps file cannot be read;
    /// per-mapping failures are in the report.
    pub fn load_proc_maps(&mut self, pid: u32) -> std::io::Result<MapsReport> {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
        self.processes.insert(pid, Process::new());
        let mut report = MapsReport::default();
        for line in maps.lines().filter_map(MapsLine::parse) {
            if !line.executable {
                continue;
            }
            let range = line.start..line.end;
            let added = if line.path == "[vdso]" {
                read_process_memory(pid, range.clone(), MAX_VDSO_SIZE)
                    .map_err(ModuleError::from)
                    .and_then(|image| self.add_module_image(pid, line.path, range, 0, &image))
            } else if line.path.starts_with('/') {
                line.open_file(pid)
                    .map_err(ModuleError::from)
                    .and_then(|file| {
                        self.add_module_from_file(pid, line.path, file, range, line.file_offset)
                    })
            } else {
                // Anonymous executable memory (JIT), [vsyscall]: nothing to read.
                continue;
            };
            match added {
                Ok(()) => report.added += 1,
                Err(e) => report.failed.push((line.path.to_string(), e)),
            }
        }
        Ok(report)
    }

    /// The module containing `addr` in process `pid`, if any.
    pub fn module_at(&self, pid: u32, addr: u64) -> Option<ModuleInfo> {
        let process = self.processes.get(&pid)?;
        let m = &process.modules[process.module_index(addr)?];
        Some(ModuleInfo {
            name: m.name.to_string(),
            avma_range: m.avma_range.clone(),
            base_avma: m.base_avma,
            has_cfi: m.image.has_cfi(),
        })
    }

    /// Number of distinct ELF files parsed and cached.
    pub fn cached_file_count(&self) -> usize {
        self.files.len()
    }

    /// Drops cached files no process maps any more.
    pub fn purge_unused_files(&mut self) {
        self.files.retain(|_, image| Arc::strong_count(image) > 1);
    }

    /// Unwinds one sample of process `pid`: `regs` as sampled, `stack` a copy of the stack
    /// memory starting at `regs.sp`. Never panics; on bad input returns what it found.
    pub fn unwind(&mut self, pid: u32, regs: Regs, stack: &[u8]) -> UnwindResult {
        let mut result = UnwindResult {
            frames: Vec::with_capacity(32),
            ..UnwindResult::default()
        };
        (result.complete, result.error) = self.unwind_into(pid, regs, stack, &mut result.frames);
        result
    }

    /// Like [`Unwinder::unwind`], but appends the frames to `frames` (cleared first) so a
    /// caller can reuse the allocation. Returns `(complete, error)`.
    pub fn unwind_into(
        &mut self,
        pid: u32,
        regs: Regs,
        stack: &[u8],
        frames: &mut Vec<u64>,
    ) -> (bool, Option<UnwindError>) {
        frames.clear();
        let Some(process) = self.processes.get(&pid) else {
            frames.push(regs.ip);
            return (false, Some(UnwindError::UnknownProcess(pid)));
        };
        let stack_start = regs.sp;
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let offset = addr.checked_sub(stack_start).ok_or(())?;
            let offset = usize::try_from(offset).map_err(|_| ())?;
            let bytes = stack.get(offset..).and_then(|s| s.first_chunk::<8>());
            bytes.map(|b| u64::from_le_bytes(*b)).ok_or(())
        };
        let read_error = |addr: u64| {
            if addr >= stack_start {
                UnwindError::StackCopyExhausted { addr }
            } else {
                UnwindError::BadStackAddress { addr }
            }
        };

        let mut unwind_regs = UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp);
        let mut address = FrameAddress::from_instruction_pointer(regs.ip);
        frames.push(regs.ip);
        // Index of the module containing `address` (looked up once per frame).
        let mut module: Option<usize> = None;
        loop {
            if frames.len() >= self.max_depth {
                return (false, Some(UnwindError::DepthLimit(self.max_depth)));
            }
            let in_trampoline = address.is_return_address()
                && module.is_some_and(|i| {
                    let m = &process.modules[i];
                    let svma = address.address_for_lookup().wrapping_sub(m.base_avma);
                    m.image.is_signal_trampoline(svma)
                });
            let next = if in_trampoline {
                // Returning into a signal trampoline (glibc's __restore_rt): the interrupted
                // registers are in the kernel's signal frame. framehop cannot evaluate that
                // frame's CFI (a CFA expression with DW_OP_deref), so restore them here.
                let sp = unwind_regs.sp();
                let read = |offset: u64| {
                    let addr = sp.checked_add(offset).ok_or(UnwindError::InvalidStep(
                        "signal frame address overflows".into(),
                    ))?;
                    read_stack(addr).map_err(|()| read_error(addr))
                };
                let restored = read(SIGFRAME_RIP)
                    .and_then(|ip| Ok((ip, read(SIGFRAME_RSP)?, read(SIGFRAME_RBP)?)));
                match restored {
                    Ok((ip, sp, bp)) => {
                        unwind_regs = UnwindRegsX86_64::new(ip, sp, bp);
                        // The interrupted instruction itself, not a return address.
                        address = FrameAddress::from_instruction_pointer(ip);
                        Some(ip)
                    }
                    Err(e) => return (false, Some(e)),
                }
            } else {
                match process.framehop.unwind_frame(
                    address,
                    &mut unwind_regs,
                    &mut self.cache,
                    &mut read_stack,
                ) {
                    Ok(Some(return_address)) => {
                        // A zero return address marks the outermost frame.
                        let Some(next) = FrameAddress::from_return_address(return_address) else {
                            return (true, None);
                        };
                        address = next;
                        Some(return_address)
                    }
                    Ok(None) => None,
                    Err(framehop::Error::CouldNotReadStack(addr)) => {
                        return (false, Some(read_error(addr)));
                    }
                    Err(e) => return (false, Some(UnwindError::InvalidStep(e.to_string()))),
                }
            };
            let Some(addr) = next else {
                return (true, None);
            };
            module = process.module_index(addr);
            if self.stop_at_unknown_code && module.is_none() {
                return (false, Some(UnwindError::UnknownCode { addr }));
            }
            frames.push(addr);
        }
    }

    fn add_module_from_file(
        &mut self,
        pid: u32,
        name: &str,
        file: File,
        avma_range: Range<u64>,
        file_offset: u64,
    ) -> Result<(), ModuleError> {
        if avma_range.is_empty() {
            return Err(ModuleError::EmptyRange);
        }
        let key = FileKey::of(&file.metadata()?);
        let image = match self.files.get(&key) {
            Some(image) => image.clone(),
            None => {
                let image = Arc::new(ModuleImage::from_file(file)?);
                self.files.insert(key, image.clone());
                image
            }
        };
        self.insert_module(pid, name, image, avma_range, file_offset)
    }

    fn insert_module(
        &mut self,
        pid: u32,
        name: &str,
        image: Arc<ModuleImage>,
        avma_range: Range<u64>,
        file_offset: u64,
    ) -> Result<(), ModuleError> {
        if avma_range.is_empty() {
            return Err(ModuleError::EmptyRange);
        }
        let base_avma = image.base_avma(avma_range.start, file_offset)?;
        self.processes
            .entry(pid)
            .or_insert_with(Process::new)
            .insert(LoadedModule {
                name: Arc::from(name),
                avma_range,
                base_avma,
                image,
            });
        Ok(())
    }
}

/// Copies `range` of process `pid`'s memory (at most `limit` bytes) through `/proc/PID/mem`.
fn read_process_memory(pid: u32, range: Range<u64>, limit: u64) -> std::io::Result<Vec<u8>> {
    let len = range.end.saturating_sub(range.start).min(limit);
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    let mem = File::open(format!("/proc/{pid}/mem"))?;
    mem.read_exact_at(&mut buf, range.start)?;
    Ok(buf)
}

// An unwinder can be moved to a worker thread.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<Unwinder>();
};
