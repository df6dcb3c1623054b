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
    let Ok(data) = std::fs::read(path) else {
        return FramePointerVerdict::Present(format!(
            "{name} is unreadable; assumed frame pointers"
        ));
    };
    let Ok(file) = object::File::parse(&*data) else {
        return FramePointerVerdict::Present(format!(
            "{name} is not an ELF file; assumed frame pointers"
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
    let own_code_only = is_rust
        && symbols
            .iter()
            .any(|s| s.name().is_ok_and(|n| n.starts_with("_ZN")));
    for sym in symbols {
        if sym.kind() != SymbolKind::Text || sym.size() < 32 {
            continue;
        }
        // Rust's precompiled standard library (v0-mangled, `_R...`) keeps frame pointers
        // whatever the program's own code does. Code compiled in the program's own build,
        // including generic std code instantiated there, is legacy-mangled (`_ZN`): judge by it.
        if own_code_only && !sym.name().is_ok_and(|n| n.starts_with("_ZN")) {
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
