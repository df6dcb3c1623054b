//! Where a function that has not set up a frame pointer keeps its return address, read from
//! the call-frame information of its file: what a frame-pointer profiler needs to put back the
//! caller the kernel's frame-pointer walk skips, for functions of any file with `.eh_frame`
//! (libc's hand-written `memcpy` and `strlen` variants, which stripped distribution libraries
//! give no symbols to find their code by).

use std::sync::Arc;

use framehop::ExplicitModuleSectionInfo;
use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, LittleEndian, RegisterRule, UnwindContext,
    UnwindSection, X86_64,
};

use crate::module::{ModuleImage, eh_frame_bases};

/// The `.eh_frame` (and its `.eh_frame_hdr` search table) of one x86-64 ELF file.
pub struct CallFrameInfo {
    /// The file's unwind sections, as the unwinder reads them.
    sections: ExplicitModuleSectionInfo<Arc<[u8]>>,
    bases: BaseAddresses,
}

impl CallFrameInfo {
    /// The call-frame information of the x86-64 ELF file `elf`; `None` when it has no
    /// `.eh_frame`.
    pub fn parse(elf: &[u8]) -> Option<CallFrameInfo> {
        let sections = ModuleImage::from_bytes(elf).ok()?.sections;
        let bases = eh_frame_bases(&sections).filter(|_| sections.eh_frame.is_some())?;
        Some(CallFrameInfo { sections, bases })
    }

    /// For a sample stopped at `svma` (an address of this file as linked), how many 8-byte
    /// words above the stack pointer the return address is, when the canonical frame address
    /// there is the stack pointer plus a constant. `None` without an FDE for `svma`, and when
    /// the frame address is computed from another register (the frame pointer is set up, so
    /// the kernel's walk already found the caller) or by an expression.
    pub fn return_address_slot(&self, svma: u64) -> Option<usize> {
        let eh_frame = EhFrame::new(self.sections.eh_frame.as_deref()?, LittleEndian);
        let fde = match self.sections.eh_frame_hdr.as_deref() {
            Some(hdr) => EhFrameHdr::new(hdr, LittleEndian)
                .parse(&self.bases, 8)
                .ok()?
                .table()?
                .fde_for_address(&eh_frame, &self.bases, svma, EhFrame::cie_from_offset)
                .ok()?,
            None => eh_frame
                .fde_for_address(&self.bases, svma, EhFrame::cie_from_offset)
                .ok()?,
        };
        let mut context = Box::new(UnwindContext::new());
        let row = fde
            .unwind_info_for_address(&eh_frame, &self.bases, &mut context, svma)
            .ok()?;
        let CfaRule::RegisterAndOffset { register, offset } = row.cfa() else {
            return None;
        };
        if *register != X86_64::RSP {
            return None;
        }
        let ra_from_cfa = match row.register(X86_64::RA) {
            Some(RegisterRule::Offset(o)) => o,
            _ => return None,
        };
        let from_sp = offset.checked_add(ra_from_cfa)?;
        (from_sp >= 0 && from_sp % 8 == 0).then_some((from_sp / 8) as usize)
    }
}
