//! An inline-replay file: LLVM's inline remarks, one per decided call site (and per chain of
//! decided calls it can be inlined through), which the CGSCC inliner replays
//! (`-Cllvm-args=--cgscc-inline-replay=FILE`).
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
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write;

/// How many decided calls deep a nested entry goes (`a:1 @ b:2 @ c:3` is three).
const MAX_CHAIN: usize = 6;
/// A bound on the file for pathological decision sets (chains multiply).
const MAX_SITES: usize = 200_000;
/// The largest inlined copy (bytes of code in the profiled build) kept inlined without a
/// decision: LLVM's default threshold admits callees of a few hundred bytes.
const KEEP_MAX_BYTES: u64 = 192;

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
///
/// Each decided call is written as it stands in its caller (`caller:off`), and again for every
/// chain of decided calls above it (`callee:off @ caller:off`, LLVM's spelling of a call site
/// inlined into another function): the inliner meets a call in whichever function it is in
/// by then. Bottom-up order usually settles a callee's calls before its callers', but not
/// inside a cycle of calls, nor for functions the sample-profile loader inlined before the
/// CGSCC inliner ran: there the callee's own calls arrive in the caller undecided, and
/// LLVM's defaults outlined, for example, a parser's token reader at every site.
pub fn write(
    decisions: &Decisions,
    kept: &[(String, i64, String)],
    rename: Option<&NameMap>,
) -> (String, usize) {
    write_bounded(decisions, kept, rename, MAX_SITES)
}

/// The calls of `inlined` (what the profiled build inlined into its sampled functions) whose
/// inlined copy is at most [`KEEP_MAX_BYTES`], as (caller, line offset, callee).
///
/// Why: a call no sample landed in is cold to the next build, and LLVM inlines a cold call
/// only under a small threshold (45), so the profile alone can leave out of line a call the
/// profiled build (and a build without a profile) inlined. When that call takes the address
/// of the hot function's locals, they escape: a compressor's match finder, passed by `&mut`
/// to a rarely taken `for_each`, went from registers to memory, and its hot loop reloaded
/// the hash chain's pointer and length and checked bounds on every step (suite compress: 10.59
/// G instructions against 8.53 G without a profile; 9.35 G with that one call inlined). A
/// small call the profiled build inlined costs nothing to keep.
pub fn kept_inlines(inlined: &[pgo_symbolize::InlinedCall]) -> Vec<(String, i64, String)> {
    inlined
        .iter()
        .filter(|c| c.bytes <= KEEP_MAX_BYTES && c.call_line >= c.caller_line)
        .map(|c| {
            (
                c.caller.clone(),
                i64::from(c.call_line - c.caller_line),
                c.callee.clone(),
            )
        })
        .collect()
}

/// [`write`] with at most `max_sites` entries. Entries go in by depth, every caller's direct
/// calls first, then the chains one call deeper, and so on: past the bound, what is left
/// out are the deepest chains, which the inliner meets least (each is one particular path
/// through several inlined calls), never a decided call as it stands in its own caller.
fn write_bounded<'a>(
    decisions: &'a Decisions,
    kept: &'a [(String, i64, String)],
    rename: Option<&'a NameMap>,
    max_sites: usize,
) -> (String, usize) {
    let mut calls: BTreeMap<&str, BTreeSet<(i64, &str)>> = BTreeMap::new();
    let decided = decisions.inline.iter().map(|d| {
        (
            d.caller.linkage_name.as_str(),
            d.site.line_offset,
            d.callee.linkage_name.as_str(),
        )
    });
    let kept = kept
        .iter()
        .map(|(a, off, b)| (a.as_str(), *off, b.as_str()));
    for (caller, off, callee) in decided.chain(kept) {
        if off < 0 {
            continue;
        }
        for caller in names_in(rename, caller) {
            for callee in names_in(rename, callee) {
                if !caller.is_empty() && !callee.is_empty() && caller != callee {
                    calls.entry(caller).or_default().insert((off, callee));
                }
            }
        }
    }
    // (outermost caller, call site as LLVM spells it, callee)
    let mut sites: BTreeSet<(&str, String, &str)> = BTreeSet::new();
    // Breadth first over every caller at once: (outermost caller, site, callee, the chain of
    // functions from the outermost caller down to the callee's caller).
    let mut pending: VecDeque<(&str, String, &str, Vec<&str>)> = calls
        .iter()
        .flat_map(|(&caller, decided)| {
            decided.iter().map(move |&(off, callee)| {
                (caller, format!("{caller}:{off}"), callee, vec![caller])
            })
        })
        .collect();
    while let Some((caller, site, callee, chain)) = pending.pop_front() {
        if sites.len() >= max_sites {
            break;
        }
        if chain.len() < MAX_CHAIN
            && let Some(inner) = calls.get(callee)
        {
            for &(off, next) in inner {
                // A chain through a function twice would be a recursion LLVM never inlines.
                if next != callee && !chain.contains(&next) {
                    let mut longer = chain.clone();
                    longer.push(callee);
                    pending.push_back((caller, format!("{callee}:{off} @ {site}"), next, longer));
                }
            }
        }
        sites.insert((caller, site, callee));
    }
    let mut text = String::new();
    for (caller, site, callee) in &sites {
        let _ = writeln!(
            text,
            "{site}: '{callee}' inlined into '{caller}' at callsite {site};"
        );
    }
    (text, sites.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgo_decide::{
        CallSiteRef, Coverage, FunctionRef, InlineDecision, Layout, ProfileSummary, SCHEMA_NAME,
        SCHEMA_VERSION, Settings,
    };

    fn function(name: &str) -> FunctionRef {
        FunctionRef {
            name: name.into(),
            linkage_name: name.into(),
            binary: "prog".into(),
            file: "main.rs".into(),
            start_line: 1,
        }
    }

    fn decisions(calls: &[(&str, i64, &str)]) -> Decisions {
        Decisions {
            schema: SCHEMA_NAME.into(),
            version: SCHEMA_VERSION,
            profile: ProfileSummary {
                sample_type: "cpu/nanoseconds".into(),
                total_weight: 100,
                functions: 4,
                call_edges: calls.len(),
                has_addresses: true,
                has_lines: true,
            },
            settings: Settings::default(),
            coverage: Coverage {
                hot_set_percent: 100.0,
                binary_matched_percent: None,
            },
            limitations: Vec::new(),
            inline: calls
                .iter()
                .map(|&(caller, off, callee)| InlineDecision {
                    caller: function(caller),
                    site: CallSiteRef {
                        line_offset: off,
                        column: 0,
                    },
                    callee: function(callee),
                    weight: 10,
                    share_percent: 10.0,
                    callee_bytes: None,
                    already_inlined: true,
                    reason: String::new(),
                })
                .collect(),
            devirtualize: Vec::new(),
            layout: Layout {
                function_order: Vec::new(),
                cold_functions: Vec::new(),
                reason: String::new(),
                blocks: Vec::new(),
            },
        }
    }

    #[test]
    fn a_chain_of_decided_calls_is_replayable_wherever_the_inliner_meets_it() {
        // value -> object -> bump -> next_token, and object -> value back (not decided: the
        // recursion), as in a recursive-descent parser.
        let d = decisions(&[
            ("value", 2, "object"),
            ("object", 13, "bump"),
            ("bump", 1, "next_token"),
        ]);
        let (text, n) = write(&d, &[], None);
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "value:2: 'object' inlined into 'value' at callsite value:2;",
            "object:13: 'bump' inlined into 'object' at callsite object:13;",
            "object:13 @ value:2: 'bump' inlined into 'value' at callsite object:13 @ value:2;",
            "bump:1 @ object:13 @ value:2: 'next_token' inlined into 'value' at callsite \
             bump:1 @ object:13 @ value:2;",
            "bump:1 @ object:13: 'next_token' inlined into 'object' at callsite bump:1 @ object:13;",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{text}");
        }
        assert_eq!(n, 6, "{text}");
        assert_eq!(lines.len(), n);
    }

    #[test]
    fn past_the_bound_every_direct_call_is_kept_and_the_deepest_chains_go() {
        // Two callers with chains below them: a bound of four keeps all four direct entries
        // (the later caller's too), none of the nested ones.
        let d = decisions(&[("a", 1, "b"), ("b", 2, "c"), ("c", 3, "d"), ("z", 9, "b")]);
        let (text, n) = write_bounded(&d, &[], None, 4);
        assert_eq!(
            text,
            "a:1: 'b' inlined into 'a' at callsite a:1;\n\
             b:2: 'c' inlined into 'b' at callsite b:2;\n\
             c:3: 'd' inlined into 'c' at callsite c:3;\n\
             z:9: 'b' inlined into 'z' at callsite z:9;\n"
        );
        assert_eq!(n, 4);
        // One more: a depth-two chain, not a depth-three one.
        let (text, _) = write_bounded(&d, &[], None, 5);
        let nested: Vec<&str> = text.lines().filter(|l| l.contains(" @ ")).collect();
        assert_eq!(nested.len(), 1, "{text}");
        let site = nested[0].split(": '").next().unwrap_or_default();
        assert_eq!(site.matches(" @ ").count(), 1, "{text}");
        // Unbounded: a:1>b:2>c:3, b:2>c:3, z:9>b:2>c:3 chains, 4 + 2 + 1 + 2 = 9 entries.
        let (_, n) = write(&d, &[], None);
        assert_eq!(n, 9);
    }

    #[test]
    fn small_calls_the_profiled_build_inlined_are_kept_and_chained_with_decided_ones() {
        let call = |caller: &str, caller_line, call_line, callee: &str, bytes| {
            pgo_symbolize::InlinedCall {
                caller: caller.into(),
                caller_line,
                call_line,
                callee: callee.into(),
                bytes,
            }
        };
        let kept = kept_inlines(&[
            call("tokenize", 141, 167, "for_each", 177),
            call("tokenize", 141, 170, "big", KEEP_MAX_BYTES + 1),
            // A line before the caller's declaration (a macro's): no offset to key it by.
            call("tokenize", 141, 12, "from_macro", 10),
        ]);
        assert_eq!(kept, vec![("tokenize".into(), 26, "for_each".into())]);
        // The decided call into tokenize carries the kept call along.
        let d = decisions(&[("compress", 1, "tokenize")]);
        let (text, n) = write(&d, &kept, None);
        assert_eq!(
            text,
            "compress:1: 'tokenize' inlined into 'compress' at callsite compress:1;\n\
             tokenize:26 @ compress:1: 'for_each' inlined into 'compress' at callsite \
             tokenize:26 @ compress:1;\n\
             tokenize:26: 'for_each' inlined into 'tokenize' at callsite tokenize:26;\n"
        );
        assert_eq!(n, 3);
    }

    #[test]
    fn a_cycle_of_decisions_does_not_loop() {
        let d = decisions(&[("a", 1, "b"), ("b", 2, "a")]);
        let (text, n) = write(&d, &[], None);
        assert_eq!(
            text,
            "a:1: 'b' inlined into 'a' at callsite a:1;\n\
             b:2: 'a' inlined into 'b' at callsite b:2;\n"
        );
        assert_eq!(n, 2);
    }
}
