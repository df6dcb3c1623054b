//! Shared test helpers: capturing a real sample of this process, copying stack memory, and a
//! small symbol-table symbolizer (independent of the crate under test).
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSymbol};
use pgo_unwind::{Regs, Unwinder};

/// Bytes of stack copied per sample (perf's usual `sample_stack_user` is 8–64 KiB).
pub const STACK_COPY: usize = 64 * 1024;

/// Reads the current `rip`, `rsp`, `rbp` at the point where the macro is expanded, inside the
/// calling function's body (so the function's CFI describes exactly this `rsp`).
#[macro_export]
macro_rules! capture_regs {
    () => {{
        let ip: u64;
        let sp: u64;
        let bp: u64;
        // SAFETY: only copies three registers into outputs; touches no memory or stack.
        unsafe {
            core::arch::asm!(
                "lea {ip}, [rip]",
                "mov {sp}, rsp",
                "mov {bp}, rbp",
                ip = out(reg) ip,
                sp = out(reg) sp,
                bp = out(reg) bp,
                options(nomem, nostack, preserves_flags),
            );
        }
        pgo_unwind::Regs { ip, sp, bp }
    }};
}

/// Copies up to `len` bytes of `pid`'s memory at `addr` through `/proc/PID/mem`, stopping early
/// at the first unreadable page (the end of the stack mapping).
pub fn copy_memory(pid: &str, addr: u64, len: usize) -> Vec<u8> {
    let mem = File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem");
    let mut out = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match mem.read_at(&mut out[done..], addr + done as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => done += n,
        }
    }
    out.truncate(done);
    out
}

/// A real sample of this process: registers in `sample_leaf` and the stack above them.
#[derive(Clone, Debug)]
pub struct Sample {
    pub regs: Regs,
    pub stack: Vec<u8>,
}

#[inline(never)]
pub fn sample_leaf(depth: u32) -> Sample {
    let regs = capture_regs!();
    let stack = copy_memory("self", regs.sp, STACK_COPY);
    black_box(depth);
    Sample { regs, stack }
}

/// Recurses `depth` times, then captures: gives a sample with `depth + 1` frames of our own.
#[inline(never)]
pub fn sample_at_depth(depth: u32) -> Sample {
    let sample = if depth == 0 {
        sample_leaf(depth)
    } else {
        sample_at_depth(black_box(depth - 1))
    };
    black_box(sample)
}

/// Address of a function in the current process (for an independent load-bias check).
pub fn fn_addr(f: fn(u32) -> Sample) -> u64 {
    f as usize as u64
}

/// A sorted function-symbol table of one ELF file, plus its separate debug file's if there is
/// one under /usr/lib/debug/.build-id (Debian's libc6-dbg: gives libc's local symbols).
pub struct Symbols {
    syms: Vec<(u64, u64, String)>,
}

impl Symbols {
    pub fn load(path: &Path) -> Symbols {
        let data = std::fs::read(path).unwrap_or_default();
        let mut syms = Vec::new();
        let Ok(file) = object::File::parse(&*data) else {
            return Symbols { syms };
        };
        collect(&file, &mut syms);
        if let Ok(Some(id)) = file.build_id()
            && id.len() > 1
        {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            let debug = PathBuf::from(format!(
                "/usr/lib/debug/.build-id/{}/{}.debug",
                &hex[..2],
                &hex[2..]
            ));
            if let Ok(debug_data) = std::fs::read(debug)
                && let Ok(debug_file) = object::File::parse(&*debug_data)
            {
                collect(&debug_file, &mut syms);
            }
        }
        syms.sort();
        syms.dedup_by_key(|s| s.0);
        Symbols { syms }
    }

    /// Name of the function containing `svma` (demangled, without Rust hash).
    pub fn lookup(&self, svma: u64) -> Option<String> {
        let i = self.syms.partition_point(|s| s.0 <= svma).checked_sub(1)?;
        let (start, size, name) = &self.syms[i];
        (size == &0 || svma < start + size).then(|| format!("{:#}", rustc_demangle::demangle(name)))
    }

    pub fn address_of(&self, name: &str) -> Option<u64> {
        self.syms
            .iter()
            .find(|s| format!("{:#}", rustc_demangle::demangle(&s.2)) == name)
            .map(|s| s.0)
    }
}

fn collect(file: &object::File, out: &mut Vec<(u64, u64, String)>) {
    // Prefer .symtab names (local functions such as __libc_start_call_main); .dynsym as well.
    // (In a separate debug file .text is SHT_NOBITS, so don't look at the section's kind.)
    let text_like =
        |sym: &object::Symbol| sym.kind() == object::SymbolKind::Text && sym.is_definition();
    for sym in file.symbols().chain(file.dynamic_symbols()) {
        if text_like(&sym)
            && let Ok(name) = sym.name()
            && !name.is_empty()
        {
            out.push((sym.address(), sym.size(), name.to_string()));
        }
    }
}

/// Names the frames of an unwind using `unwinder.module_at` for the module and load bias and
/// the module's symbol table. Frames in unknown code or without symbols get `module+offset`.
pub struct Namer {
    tables: HashMap<String, Symbols>,
}

impl Namer {
    pub fn new() -> Namer {
        Namer {
            tables: HashMap::new(),
        }
    }

    pub fn name(&mut self, unwinder: &Unwinder, pid: u32, lookup_address: u64) -> String {
        let Some(module) = unwinder.module_at(pid, lookup_address) else {
            return format!("?{lookup_address:#x}");
        };
        let svma = lookup_address - module.base_avma;
        let basename = module.name.rsplit('/').next().unwrap_or("").to_string();
        let table = self
            .tables
            .entry(module.name.clone())
            .or_insert_with(|| Symbols::load(Path::new(&module.name)));
        table
            .lookup(svma)
            .unwrap_or_else(|| format!("{basename}+{svma:#x}"))
    }

    /// Module basename of the module containing an address.
    pub fn module(unwinder: &Unwinder, pid: u32, address: u64) -> String {
        unwinder
            .module_at(pid, address)
            .map(|m| m.name.rsplit('/').next().unwrap_or("").to_string())
            .unwrap_or_default()
    }
}

/// Position of the first entry of `names` (at or after `from`) equal to or ending in `want`.
pub fn find_from(names: &[String], from: usize, want: &str) -> Option<usize> {
    names
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, n)| *n == want || n.ends_with(&format!("::{want}")))
        .map(|(i, _)| i)
}
