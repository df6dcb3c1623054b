//! Disassembly of one function into basic blocks.

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind, Register,
};
use rustc_hash::FxHashMap;

use crate::FunctionSym;

/// How control reaches a successor block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    /// The block ended only because the next instruction starts another block.
    Fallthrough,
    /// Conditional branch, branch taken.
    Taken,
    /// Conditional branch, branch not taken (next instruction).
    NotTaken,
    /// Direct unconditional jump inside the function.
    Jump,
}

/// What a call instruction calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// `call rel32` (or a direct jump leaving the function): the target SVMA is known.
    Direct {
        /// Target SVMA.
        target: u64,
    },
    /// Call through a register or memory operand (virtual call, function pointer, PLT-less
    /// `call *GOT`): target unknown statically.
    Indirect,
}

/// A call (or a jump that leaves the function) inside a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallInstr {
    /// SVMA of the call instruction.
    pub address: u64,
    /// SVMA right after the instruction (what a `call` pushes as return address).
    pub return_address: u64,
    /// Direct (target known) or indirect.
    pub kind: CallKind,
    /// `true` for a direct jump (conditional or not) whose target is outside the function:
    /// a tail call, or a jump to a split-off part such as `foo.cold`. Such an entry pushes no
    /// return address, so [`crate::Binary::call_at_return_address`] never returns it.
    pub tail_call: bool,
}

/// Why a block ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Terminator {
    /// The next instruction is a leader (jump target); one `Fallthrough` successor.
    Fallthrough,
    /// Conditional branch: `Taken` and/or `NotTaken` successors (a taken target outside the
    /// function is recorded as a `tail_call` in `calls` instead).
    Branch,
    /// Direct unconditional jump inside the function: one `Jump` successor.
    Jump,
    /// Indirect jump (jump table, tail call through a register): successors unknown.
    IndirectJump,
    /// Direct jump leaving the function (recorded in `calls` with `tail_call`).
    TailCall,
    /// `ret` and friends.
    Return,
    /// Call to a function known not to return (`abort`, `exit`, Rust panics, ...).
    NoReturnCall,
    /// `int3`, `ud2` and other trapping instructions.
    Trap,
    /// Bytes that do not decode as an instruction (data in code, garbage, truncation).
    DecodeError,
    /// The function's bytes end without a terminator (e.g. a trailing call to a function we
    /// do not know to be `noreturn`).
    FunctionEnd,
}

impl Terminator {
    /// `true` if control may leave the function at the end of this block (returns, tail
    /// calls, unknown indirect jumps, traps, ...).
    pub fn leaves_function(self) -> bool {
        !matches!(
            self,
            Terminator::Fallthrough | Terminator::Branch | Terminator::Jump
        )
    }
}

/// A basic block: a maximal straight-line run of instructions `[start, end)`. Calls do not end
/// blocks (except calls to `noreturn` functions).
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// SVMA of the first instruction.
    pub start: u64,
    /// SVMA one past the last instruction's last byte (exclusive).
    pub end: u64,
    /// Number of decoded instructions in the block (including alignment nops on the
    /// fall-through path).
    pub instructions: u32,
    /// Successor block indices (into [`Cfg::blocks`]) with the edge kind. A conditional branch
    /// whose two targets coincide has two entries.
    pub successors: Vec<(usize, EdgeKind)>,
    /// Calls made by the block, in address order, plus jumps leaving the function
    /// (`tail_call == true`).
    pub calls: Vec<CallInstr>,
    /// Why the block ends. `IndirectJump` marks blocks with unknown successors.
    pub terminator: Terminator,
}

/// Control-flow graph of one function. Block 0 is the entry; blocks are sorted by address.
/// Padding (`nop`/`int3` runs after a terminator that no branch targets) belongs to no block.
#[derive(Debug, Clone, PartialEq)]
pub struct Cfg {
    /// The function this CFG was built from.
    pub function: FunctionSym,
    /// Blocks sorted by `start`; empty for a function of size 0.
    pub blocks: Vec<Block>,
}

impl Cfg {
    /// Index of the block containing `svma`, if any (padding and addresses outside the
    /// function give `None`).
    pub fn block_of(&self, svma: u64) -> Option<usize> {
        let i = self.blocks.partition_point(|b| b.start <= svma);
        let i = i.checked_sub(1)?;
        (svma < self.blocks[i].end).then_some(i)
    }

    /// Predecessor lists, computed from `successors` (one entry per edge).
    pub fn predecessors(&self) -> Vec<Vec<usize>> {
        let mut preds = vec![Vec::new(); self.blocks.len()];
        for (i, b) in self.blocks.iter().enumerate() {
            for &(s, _) in &b.successors {
                preds[s].push(i);
            }
        }
        preds
    }
}

/// Decoded instruction, reduced to what the CFG needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Insn {
    pub addr: u64,
    pub len: u32,
    pub flow: Flow,
    /// `nop` or `int3`: skipped when it follows a terminator and is not a jump target.
    pub padding: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Next,
    Call(CallKind),
    CondBranch(Option<u64>),
    Jump(Option<u64>),
    IndirectJump,
    Return,
    Trap,
    Invalid,
}

fn near_target(ins: &Instruction) -> Option<u64> {
    matches!(
        ins.op0_kind(),
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
    )
    .then(|| ins.near_branch_target())
}

/// Bytes of stack a function's prologue reserves (x86-64): its pushes and `sub rsp, N`, up to
/// the first branch or call, or `None` when the code is not x86-64. A large frame is probed
/// page by page (`mov r11, rsp; sub r11, N`, then a loop of `sub rsp, 0x1000`): the `N` taken
/// from the register loaded from `rsp` counts (the rest, after the loop, does not: the size is
/// the probed pages at least). A leaf that keeps its locals in the red zone reserves 0.
pub(crate) fn prologue_frame_size(bytes: &[u8], start: u64, bitness: u32) -> Option<u64> {
    if bitness != 64 {
        return None;
    }
    let mut decoder = Decoder::with_ip(bitness, bytes, start, DecoderOptions::NONE);
    let mut ins = Instruction::default();
    let (mut size, mut stack_copy) = (0u64, None);
    for _ in 0..32 {
        if !decoder.can_decode() {
            break;
        }
        decoder.decode_out(&mut ins);
        if ins.is_invalid() || ins.flow_control() != FlowControl::Next {
            break;
        }
        let reg0 =
            (ins.op_count() > 0 && ins.op0_kind() == OpKind::Register).then(|| ins.op0_register());
        match ins.mnemonic() {
            Mnemonic::Push => size = size.saturating_add(8),
            Mnemonic::Mov
                if ins.op_count() == 2
                    && ins.op1_kind() == OpKind::Register
                    && ins.op1_register() == Register::RSP =>
            {
                stack_copy = reg0;
            }
            // `sub reg, imm` only: `sub reg, [mem]` reserves nothing we can read.
            Mnemonic::Sub => {
                let Ok(imm) = ins.try_immediate(1) else {
                    continue;
                };
                if reg0 == Some(Register::RSP) {
                    if stack_copy.is_some() {
                        break; // the probing loop: the size is the copy's
                    }
                    size = size.saturating_add(imm);
                } else if reg0.is_some() && reg0 == stack_copy {
                    size = size.saturating_add(imm);
                    break;
                }
            }
            _ => {}
        }
    }
    Some(size)
}

/// Linear-sweep decode of `bytes` placed at `start`. Never panics; undecodable bytes become
/// `Flow::Invalid` instructions (iced consumes at least one byte for them).
pub(crate) fn decode(bytes: &[u8], start: u64, bitness: u32) -> Vec<Insn> {
    let mut out = Vec::with_capacity(bytes.len() / 4 + 1);
    let mut decoder = Decoder::with_ip(bitness, bytes, start, DecoderOptions::NONE);
    let mut ins = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut ins);
        let len = ins.len().max(1) as u32;
        let flow = if ins.is_invalid() || ins.code() == Code::INVALID {
            Flow::Invalid
        } else {
            match ins.flow_control() {
                FlowControl::Next | FlowControl::XbeginXabortXend => Flow::Next,
                FlowControl::Call => match near_target(&ins) {
                    Some(t) => Flow::Call(CallKind::Direct { target: t }),
                    None => Flow::Call(CallKind::Indirect),
                },
                FlowControl::IndirectCall => Flow::Call(CallKind::Indirect),
                FlowControl::ConditionalBranch => Flow::CondBranch(near_target(&ins)),
                FlowControl::UnconditionalBranch => Flow::Jump(near_target(&ins)),
                FlowControl::IndirectBranch => Flow::IndirectJump,
                FlowControl::Return => Flow::Return,
                FlowControl::Exception => Flow::Trap,
                FlowControl::Interrupt => {
                    if ins.mnemonic() == Mnemonic::Int3 {
                        Flow::Trap
                    } else {
                        // int n / syscall-like: the kernel comes back.
                        Flow::Next
                    }
                }
            }
        };
        let padding = matches!(ins.mnemonic(), Mnemonic::Nop | Mnemonic::Int3);
        out.push(Insn {
            addr: ins.ip(),
            len,
            flow,
            padding,
        });
        if ins.len() == 0 {
            break; // defensive: cannot happen with iced, but never loop forever
        }
    }
    out
}

/// Build the CFG of `func` whose bytes (possibly truncated) are `bytes`.
/// `is_noreturn(target)` says whether a direct call to `target` never returns.
pub(crate) fn build(
    func: &FunctionSym,
    bytes: &[u8],
    bitness: u32,
    is_noreturn: &dyn Fn(u64) -> bool,
) -> Cfg {
    let insns = decode(bytes, func.start, bitness);
    let fstart = func.start;
    let fend = func.start + bytes.len() as u64;
    let inside = |a: u64| a >= fstart && a < fend;
    let index_of = |a: u64| insns.binary_search_by_key(&a, |i| i.addr).ok();

    // Leaders: function start and direct branch targets that land on an instruction boundary.
    // Instructions after terminators start a block lazily (skipping padding) below.
    let mut leader = vec![false; insns.len()];
    if let Some(l) = leader.first_mut() {
        *l = true;
    }
    for ins in &insns {
        if let Flow::CondBranch(Some(t)) | Flow::Jump(Some(t)) = ins.flow
            && inside(t)
            && let Some(i) = index_of(t)
        {
            leader[i] = true;
        }
    }

    struct Open {
        start: u64,
        end: u64,
        n: u32,
        calls: Vec<CallInstr>,
    }
    let mut blocks: Vec<Block> = Vec::new();
    // Successors by address, resolved once all blocks exist.
    let mut pending: Vec<Vec<(u64, EdgeKind)>> = Vec::new();
    let mut cur: Option<Open> = None;

    let close = |o: Open,
                 term: Terminator,
                 succ: Vec<(u64, EdgeKind)>,
                 blocks: &mut Vec<Block>,
                 pending: &mut Vec<Vec<(u64, EdgeKind)>>| {
        blocks.push(Block {
            start: o.start,
            end: o.end,
            instructions: o.n,
            successors: Vec::new(),
            calls: o.calls,
            terminator: term,
        });
        pending.push(succ);
    };

    for (i, ins) in insns.iter().enumerate() {
        if leader[i] {
            if let Some(o) = cur.take() {
                close(
                    o,
                    Terminator::Fallthrough,
                    vec![(ins.addr, EdgeKind::Fallthrough)],
                    &mut blocks,
                    &mut pending,
                );
            }
        } else if cur.is_none() && ins.padding {
            continue;
        }
        let o = cur.get_or_insert_with(|| Open {
            start: ins.addr,
            end: ins.addr,
            n: 0,
            calls: Vec::new(),
        });
        let next = ins.addr + u64::from(ins.len);
        o.end = next;
        o.n += 1;
        let term: Option<(Terminator, Vec<(u64, EdgeKind)>)> = match ins.flow {
            Flow::Next => None,
            Flow::Call(kind) => {
                o.calls.push(CallInstr {
                    address: ins.addr,
                    return_address: next,
                    kind,
                    tail_call: false,
                });
                match kind {
                    CallKind::Direct { target } if !inside(target) && is_noreturn(target) => {
                        Some((Terminator::NoReturnCall, Vec::new()))
                    }
                    _ => None,
                }
            }
            Flow::CondBranch(t) => {
                let mut succ = Vec::new();
                match t {
                    Some(t) if inside(t) => succ.push((t, EdgeKind::Taken)),
                    Some(t) => o.calls.push(CallInstr {
                        address: ins.addr,
                        return_address: next,
                        kind: CallKind::Direct { target: t },
                        tail_call: true,
                    }),
                    None => {}
                }
                if inside(next) {
                    succ.push((next, EdgeKind::NotTaken));
                }
                Some((Terminator::Branch, succ))
            }
            Flow::Jump(Some(t)) if inside(t) => Some((Terminator::Jump, vec![(t, EdgeKind::Jump)])),
            Flow::Jump(Some(t)) => {
                o.calls.push(CallInstr {
                    address: ins.addr,
                    return_address: next,
                    kind: CallKind::Direct { target: t },
                    tail_call: true,
                });
                Some((Terminator::TailCall, Vec::new()))
            }
            Flow::Jump(None) | Flow::IndirectJump => Some((Terminator::IndirectJump, Vec::new())),
            Flow::Return => Some((Terminator::Return, Vec::new())),
            Flow::Trap => Some((Terminator::Trap, Vec::new())),
            Flow::Invalid => Some((Terminator::DecodeError, Vec::new())),
        };
        if let Some((term, succ)) = term {
            let o = cur.take().expect("block is open");
            close(o, term, succ, &mut blocks, &mut pending);
        }
    }
    if let Some(o) = cur.take() {
        close(
            o,
            Terminator::FunctionEnd,
            Vec::new(),
            &mut blocks,
            &mut pending,
        );
    }

    let by_start: FxHashMap<u64, usize> = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| (b.start, i))
        .collect();
    for (b, succ) in blocks.iter_mut().zip(pending) {
        b.successors = succ
            .into_iter()
            .filter_map(|(a, k)| by_start.get(&a).map(|&i| (i, k)))
            .collect();
    }
    Cfg {
        function: func.clone(),
        blocks,
    }
}

/// Names of functions that never return (mangled or plain; `@plt` / `@VERSION` suffixes are
/// stripped before matching).
pub(crate) fn is_noreturn_name(name: &str) -> bool {
    let base = name.split('@').next().unwrap_or(name);
    const C: &[&str] = &[
        "abort",
        "exit",
        "_exit",
        "_Exit",
        "quick_exit",
        "__assert_fail",
        "__assert_perror_fail",
        "__stack_chk_fail",
        "__chk_fail",
        "__fortify_fail",
        "__cxa_throw",
        "__cxa_rethrow",
        "__cxa_bad_cast",
        "__cxa_bad_typeid",
        "__cxa_throw_bad_array_new_length",
        "_Unwind_Resume",
        "longjmp",
        "_longjmp",
        "siglongjmp",
        "__longjmp_chk",
        "pthread_exit",
        "err",
        "errx",
        "verr",
        "verrx",
        "__ubsan_handle_builtin_unreachable",
        "_ZSt9terminatev",
        "rust_panic",
        "__rust_start_panic",
        "rust_begin_unwind",
        "__rust_alloc_error_handler",
    ];
    if C.contains(&base) {
        return true;
    }
    // Rust (legacy `_ZN` and v0 `_R` manglings keep these path segments readable).
    base.starts_with("_ZN4core9panicking")
        || base.starts_with("_ZN4core6option13expect_failed")
        || base.starts_with("_ZN4core6result13unwrap_failed")
        || base.starts_with("_ZN3std7process5abort")
        || base.starts_with("_ZN3std7process4exit")
        || base.starts_with("_ZN5alloc5alloc18handle_alloc_error")
        || base.starts_with("_ZN3std9panicking11begin_panic")
        || (base.starts_with("_R") && base.contains("4core9panicking"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(size: usize) -> FunctionSym {
        FunctionSym {
            name: "f".into(),
            start: 0x1000,
            size: size as u64,
        }
    }

    #[test]
    fn random_buffers_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..2000 {
            let len = 1 + (round % 97);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            for bitness in [32, 64] {
                let cfg = build(&f(len), &bytes, bitness, &|t| t % 3 == 0);
                let n = cfg.blocks.len();
                assert!(n >= 1);
                for w in cfg.blocks.windows(2) {
                    assert!(w[0].end <= w[1].start);
                }
                for b in &cfg.blocks {
                    assert!(b.successors.iter().all(|&(s, _)| s < n));
                    assert!(b.end <= 0x1000 + len as u64);
                }
                let c = cfg.infer_counts(&[(0x1000, 3), (0x1000 + len as u64 / 2, 7)]);
                assert_eq!(c.block.len(), n);
                let _ = prologue_frame_size(&bytes, 0x1000, bitness);
            }
        }
    }

    #[test]
    fn prologue_frame_sizes() {
        // push rbp; push rbx; sub rax, [rbx] (not a frame); sub rsp, 0x28; call
        let plain = [
            0x55, 0x53, 0x48, 0x2b, 0x03, 0x48, 0x83, 0xec, 0x28, 0xe8, 0, 0, 0, 0,
        ];
        assert_eq!(prologue_frame_size(&plain, 0x1000, 64), Some(56));
        // push rbp; mov r11, rsp; sub r11, 0x3000; loop: sub rsp, 0x1000; ...
        let probed = [
            0x55, 0x49, 0x89, 0xe3, 0x49, 0x81, 0xeb, 0x00, 0x30, 0x00, 0x00, 0x48, 0x81, 0xec,
            0x00, 0x10, 0x00, 0x00,
        ];
        assert_eq!(prologue_frame_size(&probed, 0x1000, 64), Some(8 + 0x3000));
        assert_eq!(prologue_frame_size(&plain, 0x1000, 32), None);
    }

    #[test]
    fn padding_after_ret_is_skipped_unless_targeted() {
        // test edi,edi; je +3 (to ret2); ret; int3; int3; nop; ret
        let bytes = [0x85, 0xff, 0x74, 0x03, 0xc3, 0xcc, 0xcc, 0x90, 0xc3];
        let cfg = build(&f(bytes.len()), &bytes, 64, &|_| false);
        // je target = 0x1004 + 3 = 0x1007 (the nop): a leader, so it is a block.
        let starts: Vec<u64> = cfg.blocks.iter().map(|b| b.start).collect();
        assert_eq!(starts, vec![0x1000, 0x1004, 0x1007]);
        assert_eq!(cfg.block_of(0x1005), None, "int3 padding");
        assert_eq!(cfg.blocks[0].terminator, Terminator::Branch);
        assert_eq!(
            cfg.blocks[0].successors,
            vec![(2, EdgeKind::Taken), (1, EdgeKind::NotTaken)]
        );
    }

    #[test]
    fn tail_calls_and_indirect_jumps() {
        // jmp rax ; jmp rel32 out of the function
        let bytes = [0xff, 0xe0, 0xe9, 0x00, 0x10, 0x00, 0x00];
        let cfg = build(&f(bytes.len()), &bytes, 64, &|_| false);
        assert_eq!(cfg.blocks[0].terminator, Terminator::IndirectJump);
        assert!(cfg.blocks[0].successors.is_empty());
        assert_eq!(cfg.blocks[1].terminator, Terminator::TailCall);
        let c = cfg.blocks[1].calls[0];
        assert!(c.tail_call);
        assert_eq!(
            c.kind,
            CallKind::Direct {
                target: 0x1007 + 0x1000
            }
        );
    }

    #[test]
    fn noreturn_names() {
        assert!(is_noreturn_name("abort@plt"));
        assert!(is_noreturn_name("__stack_chk_fail"));
        assert!(is_noreturn_name(
            "_ZN4core9panicking5panic17h0123456789abcdefE"
        ));
        assert!(!is_noreturn_name("fprintf@plt"));
        assert!(!is_noreturn_name("exit_handler"));
    }
}
