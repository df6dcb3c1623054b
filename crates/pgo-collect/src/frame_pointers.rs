//! Does a binary keep frame pointers? Decides between the kernel's cheap frame-pointer
//! callchains and DWARF unwinding of copied stacks.

use std::path::Path;

use iced_x86::{Code, Decoder, DecoderOptions, Register};
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

/// The answer and the evidence, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramePointerVerdict {
    Present(String),
    Absent(String),
}

/// Whether a function's prologue sets up a frame pointer (`push rbp` then `mov rbp, rsp`)
/// within its first instructions, after whatever stack checks the compiler put first.
fn sets_up_frame_pointer(code: &[u8], address: u64) -> bool {
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut pushed_rbp = false;
    for _ in 0..16 {
        if !decoder.can_decode() {
            break;
        }
        let insn = decoder.decode();
        match insn.code() {
            Code::Push_r64 if insn.op0_register() == Register::RBP => pushed_rbp = true,
            Code::Mov_r64_rm64 | Code::Mov_rm64_r64
                if pushed_rbp
                    && insn.op0_register() == Register::RBP
                    && insn.op1_register() == Register::RSP =>
            {
                return true;
            }
            Code::Retnq | Code::Jmp_rel32_64 | Code::Jmp_rel8_64 if !pushed_rbp => return false,
            _ => {}
        }
    }
    false
}

/// Looks at the prologues of the binary's functions (from its symbol table). Go binaries always
/// keep frame pointers on x86-64; others are judged by the share of functions of 32 bytes or
/// more that set one up (leaf functions may legitimately omit it).
pub fn detect_frame_pointers(path: &Path) -> FramePointerVerdict {
    let name = path.display();
    // Without a binary to look at, the programs that actually run are unknown (a script
    // starts others, which may lack frame pointers): DWARF unwinding is right for either kind.
    let Ok(data) = std::fs::read(path) else {
        return FramePointerVerdict::Absent(format!(
            "{name} is unreadable; DWARF works with or without frame pointers"
        ));
    };
    let Ok(file) = object::File::parse(&*data) else {
        return FramePointerVerdict::Absent(format!(
            "{name} is not an ELF file (a script?): the programs it starts may lack frame \
             pointers"
        ));
    };
    if file.section_by_name(".go.buildinfo").is_some()
        || file.section_by_name(".note.go.buildid").is_some()
    {
        return FramePointerVerdict::Present(
            "a Go binary: Go keeps frame pointers on x86-64".into(),
        );
    }
    let Some(text) = file.section_by_name(".text") else {
        return FramePointerVerdict::Present(format!(
            "{name} has no .text; assumed frame pointers"
        ));
    };
    let (text_start, text_data) = (text.address(), text.data().unwrap_or(&[]));
    let mut checked = 0usize;
    let mut with_fp = 0usize;
    let symbols: Vec<_> = if file.symbols().next().is_some() {
        file.symbols().collect()
    } else {
        file.dynamic_symbols().collect()
    };
    let is_rust = symbols.iter().any(|s| {
        s.name()
            .is_ok_and(|n| n.starts_with("_R") || n == "rust_begin_unwind")
    });
    // Rust's precompiled standard library keeps frame pointers whatever the program's own code
    // does, and it is most of a small program's functions: judge by the code the program's
    // own build compiled. In a legacy-mangled build that is every `_ZN` symbol (std is
    // v0-mangled, `_R`); in a v0 build (pgo's), every symbol naming the crate of the Rust
    // `main`, generic std code instantiated there included.
    let legacy_own_code = is_rust
        && symbols
            .iter()
            .any(|s| s.name().is_ok_and(|n| n.starts_with("_ZN")));
    let main_crate = if is_rust && !legacy_own_code {
        symbols
            .iter()
            .find_map(|s| v0_main_crate_root(s.name().ok()?))
    } else {
        None
    };
    for sym in symbols.iter() {
        if sym.kind() != SymbolKind::Text || sym.size() < 32 {
            continue;
        }
        let name = sym.name().unwrap_or("");
        if legacy_own_code && !name.starts_with("_ZN") {
            continue;
        }
        if let Some(root) = main_crate
            && !name.contains(root)
        {
            continue;
        }
        let Some(offset) = sym.address().checked_sub(text_start) else {
            continue;
        };
        let Some(code) = text_data.get(offset as usize..(offset + sym.size().min(96)) as usize)
        else {
            continue;
        };
        checked += 1;
        with_fp += sets_up_frame_pointer(code, sym.address()) as usize;
        if checked >= 2000 {
            break;
        }
    }
    if checked == 0 {
        return FramePointerVerdict::Absent(format!(
            "{name} has no function symbols to check; using DWARF"
        ));
    }
    let share = 100.0 * with_fp as f64 / checked as f64;
    let evidence =
        format!("{with_fp} of {checked} functions in {name} set up a frame pointer ({share:.0}%)");
    if share >= 50.0 {
        FramePointerVerdict::Present(evidence)
    } else {
        FramePointerVerdict::Absent(evidence)
    }
}

/// The crate root of a v0-mangled Rust `main` (`Cs1kRS7Wn0HRC_12suite_parser` in
/// `_RNvCs1kRS7Wn0HRC_12suite_parser4main`): the program's own crate, which every symbol of code
/// compiled in it names.
fn v0_main_crate_root(symbol: &str) -> Option<&str> {
    let root = symbol.strip_prefix("_RNv")?.strip_suffix("4main")?;
    let rest = root.strip_prefix('C')?;
    // An optional disambiguator `s<base62>_`, then the length-prefixed crate name.
    let rest = match rest.strip_prefix('s') {
        Some(r) => r.split_once('_')?.1,
        None => rest,
    };
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let len: usize = rest[..digits].parse().ok()?;
    (rest.len() == digits + len).then_some(root)
}

/// For a sample stopped at `ip` in a function starting at `start` (its whole code in `code`):
/// how many 8-byte words above the stack pointer hold the return address, when the function
/// has not (yet) set up a frame pointer — the case where the kernel's frame-pointer walk skips
/// the function's caller. `None` when the frame is set up, or when neither the code before `ip`
/// can be followed in a straight line (a branch, an unusual stack adjustment) nor does the
/// function leave the stack pointer alone everywhere.
pub(crate) fn frameless_return_slot(code: &[u8], start: u64, ip: u64) -> Option<usize> {
    let before_ip = ip.saturating_sub(start).saturating_add(16);
    let prefix = &code[..usize::try_from(before_ip).map_or(code.len(), |n| n.min(code.len()))];
    straight_line_return_slot(prefix, start, ip)
        .or_else(|| leaves_the_stack_alone(code, start).then_some(0))
}

/// Whether no instruction of the function (its whole code in `code`) moves the stack pointer
/// other than to call or return: then at every instruction the return address is the word at
/// the stack pointer, whatever the branches. Hand-written leaves are like this — Go's
/// `memeqbody` and `indexbytebody`, C libraries' `memcpy` and `strlen` variants — and they
/// branch from their first instructions, so the straight-line reading gives up on them.
fn leaves_the_stack_alone(code: &[u8], start: u64) -> bool {
    // Larger functions are not hand-written leaves, and decoding them per sample would cost.
    const MAX_BYTES: usize = 16 * 1024;
    if code.is_empty() || code.len() > MAX_BYTES {
        return false;
    }
    let mut decoder = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.is_invalid() {
            return false;
        }
        let call_or_return = matches!(
            insn.flow_control(),
            iced_x86::FlowControl::Call
                | iced_x86::FlowControl::IndirectCall
                | iced_x86::FlowControl::Return
        );
        // Any register operand naming the stack pointer (reads too: conservative).
        let names_rsp = (0..insn.op_count()).any(|i| {
            insn.op_kind(i) == iced_x86::OpKind::Register
                && matches!(
                    insn.op_register(i),
                    Register::RSP | Register::ESP | Register::SP
                )
        });
        if (insn.stack_pointer_increment() != 0 && !call_or_return) || names_rsp {
            return false;
        }
    }
    true
}

/// [`frameless_return_slot`] by following the code from the function's start to `ip` in a
/// straight line.
fn straight_line_return_slot(code: &[u8], start: u64, ip: u64) -> Option<usize> {
    let mut decoder = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
    let mut pushed: u64 = 0; // bytes below the return address
    let mut pushed_rbp = false;
    for _ in 0..64 {
        if decoder.ip() >= ip {
            return pushed.is_multiple_of(8).then_some((pushed / 8) as usize);
        }
        if !decoder.can_decode() {
            return None;
        }
        let insn = decoder.decode();
        if insn.is_invalid() {
            return None;
        }
        match insn.code() {
            Code::Push_r64 => {
                pushed += 8;
                pushed_rbp |= insn.op0_register() == Register::RBP;
            }
            Code::Pop_r64 => pushed = pushed.checked_sub(8)?,
            Code::Mov_r64_rm64 | Code::Mov_rm64_r64
                if insn.op0_register() == Register::RBP && insn.op1_register() == Register::RSP =>
            {
                if pushed_rbp {
                    return None; // the frame is set up: the kernel's walk is right
                }
            }
            Code::Sub_rm64_imm8 | Code::Sub_rm64_imm32 if insn.op0_register() == Register::RSP => {
                pushed += insn.immediate(1);
            }
            Code::Add_rm64_imm8 | Code::Add_rm64_imm32 if insn.op0_register() == Register::RSP => {
                pushed = pushed.checked_sub(insn.immediate(1))?;
            }
            // A call returns to the next instruction with the stack as it was.
            Code::Call_rel32_64 => {}
            _ => {
                if insn.flow_control() != iced_x86::FlowControl::Next
                    || insn.op0_register() == Register::RSP
                {
                    return None;
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::frameless_return_slot;

    #[test]
    fn the_program_crate_of_a_v0_main() {
        use super::v0_main_crate_root as root;
        assert_eq!(
            root("_RNvCs1kRS7Wn0HRC_12suite_parser4main"),
            Some("Cs1kRS7Wn0HRC_12suite_parser")
        );
        assert_eq!(root("_RNvC3app4main"), Some("C3app"));
        // A function named main in a module, or std's: not the program's root main.
        assert_eq!(root("_RNvNtCs1kRS7Wn0HRC_12suite_parser3cli4main"), None);
        assert_eq!(root("_RNvCs1kRS7Wn0HRC_12suite_parser5other"), None);
        assert_eq!(root("main"), None);
    }

    #[test]
    fn finds_the_return_address_of_frameless_code() {
        // push rbx; push r12; sub rsp, 0x10; mov eax, 1; ret
        let code = [
            0x53, 0x41, 0x54, 0x48, 0x83, 0xec, 0x10, 0xb8, 1, 0, 0, 0, 0xc3,
        ];
        assert_eq!(frameless_return_slot(&code, 0x1000, 0x1000), Some(0));
        assert_eq!(frameless_return_slot(&code, 0x1000, 0x1001), Some(1));
        assert_eq!(frameless_return_slot(&code, 0x1000, 0x1007), Some(4));
        // push rbp; mov rbp, rsp; ...: set up, the kernel's chain is right.
        let framed = [0x55, 0x48, 0x89, 0xe5, 0xb8, 1, 0, 0, 0, 0xc3];
        assert_eq!(frameless_return_slot(&framed, 0x1000, 0x1001), Some(1));
        assert_eq!(frameless_return_slot(&framed, 0x1000, 0x1004), None);
        // A branch before ip, in a function that pushes: not followed.
        // je +2; push rbx; nop; pop rbx; ret
        let branchy = [0x74, 0x02, 0x53, 0x90, 0x5b, 0xc3];
        assert_eq!(frameless_return_slot(&branchy, 0x1000, 0x1003), None);
        // A hand-written leaf that branches but never moves the stack pointer (as Go's
        // memeqbody): the return address is at the stack pointer everywhere.
        // xor eax, eax; L: cmp rdi, rsi; je +4; inc rax; jmp L; ret
        let leaf = [
            0x31, 0xc0, 0x48, 0x39, 0xf7, 0x74, 0x05, 0x48, 0xff, 0xc0, 0xeb, 0xf6, 0xc3,
        ];
        assert_eq!(frameless_return_slot(&leaf, 0x1000, 0x1007), Some(0));
        assert_eq!(frameless_return_slot(&leaf, 0x1000, 0x100c), Some(0));
        // The same with a stack adjustment after its loop: nothing is assumed.
        // ... add rsp, 8 in place of inc rax
        let adjusting = [
            0x31, 0xc0, 0x48, 0x39, 0xf7, 0x74, 0x06, 0x48, 0x83, 0xc4, 0x08, 0xeb, 0xf5, 0xc3,
        ];
        assert_eq!(frameless_return_slot(&adjusting, 0x1000, 0x1007), None);
    }
}
