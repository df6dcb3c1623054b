//! Binary view of an ELF executable or shared object for the `pgo` analyzer.
//!
//! **What it is for.** `pgo analyze --binary BIN` uses this crate to read the machine code and
//! the function symbols of `BIN`, to split a function into basic blocks ([`Binary::cfg`]), to
//! place sampled instruction addresses on those blocks and turn per-block sample weight into
//! consistent block/edge execution counts ([`Cfg::infer_counts`]), and to tell a direct call
//! site from an indirect one given only a return address from a stack sample
//! ([`Binary::call_at_return_address`]), and to find the functions a tail call left off a
//! sampled stack ([`Binary::tail_call_chain`]).
//!
//! **What it is not for.** It does not read profiles, build call graphs, or make optimization
//! decisions; symbolization to source files and lines (DWARF, inline frames) belongs to
//! `pgo-symbolize`. It decodes x86 / x86-64 only.
//!
//! **Addresses.** Every address in this API is an SVMA: a virtual address as written in the
//! ELF symbol table and section headers. Callers convert runtime addresses (subtract the load
//! bias) before calling in.
//!
//! ```no_run
//! let bin = pgo_binary::Binary::open("target/release/app")?;
//! let f = bin.function_at(0x1234).expect("address in a function").clone();
//! let cfg = bin.cfg(&f)?;
//! let counts = cfg.infer_counts(&[(0x1234, 1)]);
//! # Ok::<(), pgo_binary::Error>(())
//! ```

mod cfg;
mod error;
pub mod infer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use object::{
    Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, RelocationTarget, SectionKind,
    SymbolKind,
};
use rustc_hash::FxHashMap;

pub use cfg::{Block, CallInstr, CallKind, Cfg, EdgeKind, Terminator};
pub use error::Error;
pub use infer::BlockCounts;

/// A function symbol (or a synthesized `name@plt` stub).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FunctionSym {
    /// Symbol name as in the symbol table (mangled).
    pub name: String,
    /// SVMA of the first byte.
    pub start: u64,
    /// Size in bytes (never 0 in [`Binary::functions`]).
    pub size: u64,
}

impl FunctionSym {
    /// `true` if `svma` is inside `[start, start + size)`.
    pub fn contains(&self, svma: u64) -> bool {
        svma >= self.start && svma - self.start < self.size
    }
}

/// An executable section's bytes.
struct CodeSection {
    address: u64,
    data: Vec<u8>,
}

/// Per function: calls keyed by return address.
type CallMap = FxHashMap<u64, CallInstr>;

/// Parsed view of an ELF file: executable section bytes, function symbols and build ID.
/// Cheap to share between threads (`Sync`); the per-function decode cache is behind a mutex.
pub struct Binary {
    path: PathBuf,
    bitness: u32,
    build_id: String,
    code: Vec<CodeSection>,
    functions: Vec<FunctionSym>,
    calls_cache: Mutex<FxHashMap<u64, Arc<CallMap>>>,
}

impl std::fmt::Debug for Binary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binary")
            .field("path", &self.path)
            .field("build_id", &self.build_id)
            .field("functions", &self.functions.len())
            .finish_non_exhaustive()
    }
}

impl Binary {
    /// Read and parse the ELF at `path`: executable sections (`SHF_EXECINSTR` with file
    /// contents), function symbols from `.symtab` (or `.dynsym` if there is no `.symtab`),
    /// sorted by address, deduplicated by address and without size-0 symbols, plus
    /// synthesized `name@plt` entries for PLT stubs, and the GNU build ID.
    pub fn open(path: impl AsRef<Path>) -> Result<Binary, Error> {
        let path = path.as_ref().to_path_buf();
        let data = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Self::parse(path, &data)
    }

    /// Like [`Binary::open`] on bytes already in memory; `path` is only used in messages.
    pub fn parse(path: impl AsRef<Path>, data: &[u8]) -> Result<Binary, Error> {
        let path = path.as_ref().to_path_buf();
        if !data.starts_with(b"\x7fELF") {
            return Err(Error::NotElf { path });
        }
        let malformed = |e: object::Error| Error::Malformed {
            path: path.clone(),
            message: e.to_string(),
        };
        let obj = object::File::parse(data).map_err(malformed)?;
        let bitness = match obj.architecture() {
            object::Architecture::X86_64 | object::Architecture::X86_64_X32 => 64,
            object::Architecture::I386 => 32,
            other => {
                return Err(Error::UnsupportedArchitecture {
                    path,
                    arch: format!("{other:?}"),
                });
            }
        };
        let build_id = match obj.build_id() {
            Ok(Some(id)) => id.iter().map(|b| format!("{b:02x}")).collect(),
            _ => String::new(),
        };

        let mut code = Vec::new();
        let mut has_plt = false;
        for sec in obj.sections() {
            if sec.kind() != SectionKind::Text {
                continue;
            }
            let Ok(bytes) = sec.uncompressed_data() else {
                continue;
            };
            if bytes.is_empty() {
                continue;
            }
            let name = sec.name().unwrap_or("");
            if matches!(name, ".plt" | ".plt.sec" | ".plt.got" | ".iplt") {
                has_plt = true;
            }
            code.push(CodeSection {
                address: sec.address(),
                data: bytes.into_owned(),
            });
        }
        if code.is_empty() {
            return Err(Error::NoCode { path });
        }
        code.sort_by_key(|c| c.address);

        let use_symtab = obj.symbols().next().is_some();
        let syms: Vec<object::Symbol<'_, '_>> = if use_symtab {
            obj.symbols().collect()
        } else {
            obj.dynamic_symbols().collect()
        };
        // (function, is_global) for deterministic alias resolution.
        let mut raw: Vec<(FunctionSym, bool)> = Vec::new();
        for sym in syms {
            if sym.kind() != SymbolKind::Text || sym.is_undefined() || sym.size() == 0 {
                continue;
            }
            let Ok(name) = sym.name() else { continue };
            raw.push((
                FunctionSym {
                    name: name.to_string(),
                    start: sym.address(),
                    size: sym.size(),
                },
                sym.is_global(),
            ));
        }
        raw.extend(
            plt_symbols(&obj, bitness, has_plt)
                .into_iter()
                .map(|f| (f, true)),
        );
        // Sort by start; among aliases keep the largest, then global, then smallest name.
        raw.sort_by(|(a, ga), (b, gb)| {
            a.start
                .cmp(&b.start)
                .then(b.size.cmp(&a.size))
                .then(gb.cmp(ga))
                .then(a.name.cmp(&b.name))
        });
        raw.dedup_by(|later, first| later.0.start == first.0.start);
        let functions: Vec<FunctionSym> = raw.into_iter().map(|(f, _)| f).collect();

        Ok(Binary {
            path,
            bitness,
            build_id,
            code,
            functions,
            calls_cache: Mutex::new(FxHashMap::default()),
        })
    }

    /// Path the binary was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lower-case hex of the `.note.gnu.build-id` descriptor, or `""` if there is none.
    pub fn build_id(&self) -> &str {
        &self.build_id
    }

    /// All function symbols with a non-zero size, sorted by `start` (one per address).
    pub fn functions(&self) -> &[FunctionSym] {
        &self.functions
    }

    /// The function whose `[start, start + size)` contains `svma`.
    pub fn function_at(&self, svma: u64) -> Option<&FunctionSym> {
        let i = self.functions.partition_point(|f| f.start <= svma);
        // Nested/overlapping symbols are rare; look back a few entries for a container.
        self.functions[..i]
            .iter()
            .rev()
            .take(8)
            .find(|f| f.contains(svma))
    }

    /// The function named exactly `name` (linear scan).
    pub fn function_by_name(&self, name: &str) -> Option<&FunctionSym> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// Bytes of `[start, start + size)`, truncated at the end of the containing section.
    fn bytes(&self, start: u64, size: u64) -> Option<&[u8]> {
        let i = self
            .code
            .partition_point(|c| c.address <= start)
            .checked_sub(1)?;
        let sec = &self.code[i];
        let off = usize::try_from(start - sec.address).ok()?;
        if off >= sec.data.len() {
            return None;
        }
        let len = usize::try_from(size).unwrap_or(usize::MAX);
        Some(&sec.data[off..off.saturating_add(len).min(sec.data.len())])
    }

    /// The machine code of `func` (cut short where its code section ends).
    pub fn function_code(&self, func: &FunctionSym) -> Result<&[u8], Error> {
        self.bytes(func.start, func.size)
            .ok_or_else(|| Error::AddressOutsideFunction {
                path: self.path.clone(),
                address: func.start,
            })
    }

    fn is_noreturn_target(&self, target: u64) -> bool {
        self.function_at(target)
            .is_some_and(|f| f.start == target && cfg::is_noreturn_name(&f.name))
    }

    /// Disassemble `func` and split it into basic blocks (see [`Cfg`]). A function of size 0
    /// gives an empty CFG; a function whose start is not in an executable section gives
    /// [`Error::AddressOutsideFunction`]. Undecodable bytes end a block
    /// ([`Terminator::DecodeError`]) and never cause a panic.
    pub fn cfg(&self, func: &FunctionSym) -> Result<Cfg, Error> {
        if func.size == 0 {
            return Ok(Cfg {
                function: func.clone(),
                blocks: Vec::new(),
            });
        }
        let bytes = self.function_code(func)?;
        Ok(cfg::build(func, bytes, self.bitness, &|t| {
            self.is_noreturn_target(t)
        }))
    }

    /// Bytes of stack `func` reserves in its prologue (pushes and `sub rsp`; the whole frame
    /// of a large one that probes its stack page by page); `None` for code that is not
    /// x86-64. What inlining it into a recursive function adds to every level of the
    /// recursion.
    pub fn frame_size(&self, func: &FunctionSym) -> Result<Option<u64>, Error> {
        let bytes = self.function_code(func)?;
        Ok(cfg::prologue_frame_size(bytes, func.start, self.bitness))
    }

    /// `(address, length)` of every instruction of `func` in linear-sweep order (undecodable
    /// bytes appear as instructions too). Lets callers snap addresses to instruction starts.
    pub fn instructions(&self, func: &FunctionSym) -> Result<Vec<(u64, u32)>, Error> {
        if func.size == 0 {
            return Ok(Vec::new());
        }
        let bytes = self.function_code(func)?;
        Ok(cfg::decode(bytes, func.start, self.bitness)
            .into_iter()
            .map(|i| (i.addr, i.len))
            .collect())
    }

    /// CFG of the function containing `svma`.
    pub fn cfg_at(&self, svma: u64) -> Result<Cfg, Error> {
        let f = self
            .function_at(svma)
            .ok_or_else(|| Error::AddressOutsideFunction {
                path: self.path.clone(),
                address: svma,
            })?
            .clone();
        self.cfg(&f)
    }

    /// The call instruction that ends exactly at `ret` (a return address from a stack sample),
    /// or `None` if there is none.
    ///
    /// The function containing `ret - 1` is decoded from its start (linear sweep, cached per
    /// function), so instruction boundaries are the compiler's, not a guess. If `ret - 1` is in
    /// executable code but in no known function (stripped code), the bytes just before `ret`
    /// are decoded at every start offset from 2 to 15 bytes back; the result is returned only
    /// if all candidate calls agree on the kind (and target).
    pub fn call_at_return_address(&self, ret: u64) -> Option<CallInstr> {
        let probe = ret.checked_sub(1)?;
        let Some(func) = self.function_at(probe) else {
            return self.call_before_unknown(ret);
        };
        let map = {
            let cache = self.calls_cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.get(&func.start).cloned()
        };
        let map = match map {
            Some(m) => m,
            None => {
                let bytes = self.bytes(func.start, func.size)?;
                let mut m = CallMap::default();
                for ins in cfg::decode(bytes, func.start, self.bitness) {
                    if let cfg::Flow::Call(kind) = ins.flow {
                        let ra = ins.addr + u64::from(ins.len);
                        m.insert(
                            ra,
                            CallInstr {
                                address: ins.addr,
                                return_address: ra,
                                kind,
                                tail_call: false,
                            },
                        );
                    }
                }
                let m = Arc::new(m);
                self.calls_cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(func.start, Arc::clone(&m));
                m
            }
        };
        map.get(&ret).copied()
    }

    /// The one chain of direct tail calls (`jmp` to another function's first byte) by which
    /// the function starting at `from` reaches the function starting at `to`, at most
    /// `max_hops` jumps long, in the order they run: the frames a sampled stack lacks when
    /// its call instruction calls `from` but the frame below it is in `to` (a tail call
    /// leaves no return address). `None` when there is no such chain, or more than one, or a
    /// function on it jumps to the next from more than one place: which frames (or which line
    /// of a frame) ran cannot then be told. A jump to a part split off the jumping function
    /// (`foo` to `foo.cold`) is not a call.
    pub fn tail_call_chain(&self, from: u64, to: u64, max_hops: usize) -> Option<Vec<CallInstr>> {
        let mut search = ChainSearch {
            to,
            on_path: vec![from],
            path: Vec::new(),
            ambiguous: 0,
            found: Vec::new(),
        };
        self.tail_call_paths(&mut search, from, max_hops);
        match <[_; 1]>::try_from(search.found) {
            Ok([Some(chain)]) => Some(chain),
            _ => None,
        }
    }

    /// The one direct call (not a tail jump) in the function starting at `from` to the
    /// function starting at `to`; `None` when it has none or several (which of them ran
    /// cannot then be told).
    pub fn only_direct_call(&self, from: u64, to: u64) -> Option<CallInstr> {
        let func = self.function_at(from).filter(|f| f.start == from)?;
        let cfg = self.cfg(func).ok()?;
        let mut calls = cfg
            .blocks
            .iter()
            .flat_map(|b| &b.calls)
            .filter(|c| !c.tail_call && c.kind == CallKind::Direct { target: to });
        let call = *calls.next()?;
        calls.next().is_none().then_some(call)
    }

    /// Depth-first search for [`Binary::tail_call_chain`]; stops at a second chain.
    fn tail_call_paths(&self, search: &mut ChainSearch, at: u64, hops_left: usize) {
        if hops_left == 0 {
            return;
        }
        let Some(func) = self.function_at(at).filter(|f| f.start == at) else {
            return;
        };
        let Ok(cfg) = self.cfg(func) else {
            return;
        };
        let mut jumps: Vec<(u64, CallInstr)> = cfg
            .blocks
            .iter()
            .flat_map(|b| &b.calls)
            .filter(|c| c.tail_call)
            .filter_map(|c| match c.kind {
                CallKind::Direct { target } => Some((target, *c)),
                CallKind::Indirect => None,
            })
            .filter(|&(target, _)| {
                !search.on_path.contains(&target)
                    && self.function_at(target).is_some_and(|t| {
                        t.start == target && !is_split_part_of(&t.name, &func.name)
                    })
            })
            .collect();
        jumps.sort_by_key(|&(target, c)| (target, c.address));
        for (i, &(target, jump)) in jumps.iter().enumerate() {
            if i > 0 && jumps[i - 1].0 == target {
                continue;
            }
            let ambiguous = jumps.get(i + 1).is_some_and(|n| n.0 == target);
            search.path.push(jump);
            search.ambiguous += usize::from(ambiguous);
            if target == search.to {
                let chain = (search.ambiguous == 0).then(|| search.path.clone());
                search.found.push(chain);
            } else {
                search.on_path.push(target);
                self.tail_call_paths(search, target, hops_left - 1);
                search.on_path.pop();
            }
            search.ambiguous -= usize::from(ambiguous);
            search.path.pop();
            if search.found.len() > 1 {
                return;
            }
        }
    }

    fn call_before_unknown(&self, ret: u64) -> Option<CallInstr> {
        let mut found: Option<CallInstr> = None;
        for back in 2..=15u64 {
            let Some(start) = ret.checked_sub(back) else {
                break;
            };
            let Some(bytes) = self.bytes(start, back) else {
                continue;
            };
            if bytes.len() as u64 != back {
                continue;
            }
            let ins = cfg::decode(bytes, start, self.bitness);
            let [one] = ins.as_slice() else { continue };
            let cfg::Flow::Call(kind) = one.flow else {
                continue;
            };
            if u64::from(one.len) != back {
                continue;
            }
            match found {
                Some(prev) if prev.kind != kind => return None,
                Some(_) => {}
                None => {
                    found = Some(CallInstr {
                        address: start,
                        return_address: ret,
                        kind,
                        tail_call: false,
                    })
                }
            }
        }
        found
    }
}

/// State of one [`Binary::tail_call_chain`] search.
struct ChainSearch {
    to: u64,
    /// Starts of the functions on the current path (no function twice).
    on_path: Vec<u64>,
    /// The jumps of the current path.
    path: Vec<CallInstr>,
    /// How many hops of the current path have more than one jump to their target.
    ambiguous: usize,
    /// Chains found: `None` for one through an ambiguous hop.
    found: Vec<Option<Vec<CallInstr>>>,
}

/// `part` is a piece LLVM or GCC split off `function` (`foo.cold`, `foo.cold.1`,
/// `foo.part.0`): its code, not a callee.
fn is_split_part_of(part: &str, function: &str) -> bool {
    part.strip_prefix(function)
        .is_some_and(|rest| rest.starts_with('.'))
}

/// Synthesize `name@plt` symbols: each PLT stub is `[endbr64;] jmp *GOT(%rip)` where the GOT
/// slot carries a dynamic relocation naming the imported symbol.
fn plt_symbols(obj: &object::File<'_>, bitness: u32, has_plt: bool) -> Vec<FunctionSym> {
    if !has_plt {
        return Vec::new();
    }
    let mut got_names: FxHashMap<u64, String> = FxHashMap::default();
    if let (Some(relocs), Some(dynsym)) = (obj.dynamic_relocations(), obj.dynamic_symbol_table()) {
        for (offset, rel) in relocs {
            if let RelocationTarget::Symbol(idx) = rel.target()
                && let Ok(sym) = dynsym.symbol_by_index(idx)
                && let Ok(name) = sym.name()
                && !name.is_empty()
            {
                got_names.insert(offset, name.to_string());
            }
        }
    }
    if got_names.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for sec in obj.sections() {
        let name = sec.name().unwrap_or("");
        if !matches!(name, ".plt" | ".plt.sec" | ".plt.got" | ".iplt") {
            continue;
        }
        let Ok(data) = sec.uncompressed_data() else {
            continue;
        };
        let base = sec.address();
        let end = base + data.len() as u64;
        let mut decoder =
            iced_x86::Decoder::with_ip(bitness, &data, base, iced_x86::DecoderOptions::NONE);
        let mut prev_endbr: Option<u64> = None;
        let mut stubs: Vec<(u64, String)> = Vec::new();
        let mut ins = iced_x86::Instruction::default();
        while decoder.can_decode() {
            decoder.decode_out(&mut ins);
            let m = ins.mnemonic();
            if matches!(m, iced_x86::Mnemonic::Endbr64 | iced_x86::Mnemonic::Endbr32) {
                prev_endbr = Some(ins.ip());
                continue;
            }
            if ins.flow_control() == iced_x86::FlowControl::IndirectBranch
                && ins.is_ip_rel_memory_operand()
                && let Some(name) = got_names.get(&ins.ip_rel_memory_address())
            {
                let start = prev_endbr
                    .filter(|&e| e + 4 == ins.ip())
                    .unwrap_or(ins.ip());
                stubs.push((start, format!("{name}@plt")));
            }
            prev_endbr = None;
        }
        for (k, (start, name)) in stubs.iter().enumerate() {
            let next = stubs.get(k + 1).map_or(end, |s| s.0);
            let size = (next - start).min(16);
            if size > 0 {
                out.push(FunctionSym {
                    name: name.clone(),
                    start: *start,
                    size,
                });
            }
        }
    }
    out
}
