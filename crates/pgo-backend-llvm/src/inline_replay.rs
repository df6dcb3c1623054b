//! An inline-replay file: LLVM's inline remarks, one per decided call site, which the CGSCC
//! inliner replays (`-Cllvm-args=--cgscc-inline-replay=FILE`).
//!
//! LLVM's replay advisor keys a decision by the callee's linkage name and the call site
//! `caller:line_offset` (with `--cgscc-inline-replay-format=line`; column and discriminator
//! are left out because the profiled build may lack discriminators and columns move with
//! formatting). Each line reads like a remark: `caller:off: 'callee' inlined into 'caller' at
//! callsite caller:off;`. With `--cgscc-inline-replay-scope=Function` only callers named here
//! are replayed; other call sites in them fall back to LLVM's own advice
//! (`--cgscc-inline-replay-fallback=Original`).

use crate::names::{NameMap, names_in};
use pgo_decide::Decisions;
use std::collections::BTreeSet;
use std::fmt::Write;

/// The LLVM options that make the inliner read `file` the way [`write`] writes it.
pub fn llvm_args(file: &str) -> Vec<String> {
    vec![
        format!("--cgscc-inline-replay={file}"),
        "--cgscc-inline-replay-scope=Function".into(),
        "--cgscc-inline-replay-fallback=Original".into(),
        "--cgscc-inline-replay-format=Line".into(),
    ]
}

/// The replay file for the inline decisions of `decisions` whose caller and callee have
/// linkage names, and how many sites it holds.
pub fn write(decisions: &Decisions, rename: Option<&NameMap>) -> (String, usize) {
    let mut sites = BTreeSet::new();
    for d in &decisions.inline {
        if d.site.line_offset < 0 {
            continue;
        }
        for caller in names_in(rename, &d.caller.linkage_name) {
            for callee in names_in(rename, &d.callee.linkage_name) {
                if !caller.is_empty() && !callee.is_empty() {
                    sites.insert((caller.to_string(), d.site.line_offset, callee.to_string()));
                }
            }
        }
    }
    let mut text = String::new();
    for (caller, off, callee) in &sites {
        let _ = writeln!(
            text,
            "{caller}:{off}: '{callee}' inlined into '{caller}' at callsite {caller}:{off};"
        );
    }
    (text, sites.len())
}
