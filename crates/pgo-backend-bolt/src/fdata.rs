//! BOLT's text profile ("fdata") in its no-LBR form, as `perf2bolt -nl` writes it and
//! `llvm-bolt -data=FILE` reads it (`DataAggregator::writeAggregatedFile`,
//! `DataReader::parseInNoLBRMode` in LLVM's `bolt/lib/Profile`):
//!
//! ```text
//! no_lbr cycles
//! 1 hot_loop/1 34 252
//! 1 main 1b 3
//! ```
//!
//! The first line is `no_lbr`, then the event names separated by spaces. Every other line is
//! one sampled address: `1` (the location is a symbol; `0` would be a bare address, which
//! BOLT skips in this mode), the function's name as BOLT names it (locals get `/N`; spaces and
//! backslashes escaped with a backslash), the offset in the function in hex without `0x`,
//! and the number of samples in decimal.

use std::collections::BTreeMap;

/// The event named on the `no_lbr` line. BOLT divides a block's samples by its instruction
/// count (to estimate how often it ran) only when an event name contains `cycles` or
/// `instructions`; pgo's samples are CPU-time samples, which estimate the same thing as
/// cycle samples, so they are declared as `cycles`.
pub(crate) const EVENT: &str = "cycles";

/// `name` as BOLT writes names in fdata: spaces and backslashes escaped with a backslash.
pub(crate) fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c == ' ' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What went into an fdata text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Written {
    pub lines: usize,
    pub functions: usize,
    pub samples: u64,
}

/// The fdata text for `counts`: (BOLT name, offset) to sample count, sorted by name and
/// offset so the same profile gives the same bytes. Zero counts and names BOLT could not read
/// back (empty, or with a line break) are left out.
pub(crate) fn render(counts: &BTreeMap<(String, u64), u64>) -> (String, Written) {
    let mut text = format!("no_lbr {EVENT}\n");
    let mut written = Written::default();
    let mut last: Option<&str> = None;
    for ((name, offset), &count) in counts {
        if count == 0 || name.is_empty() || name.contains(['\n', '\r']) {
            continue;
        }
        text.push_str(&format!("1 {} {offset:x} {count}\n", escape(name)));
        written.lines += 1;
        written.samples += count;
        if last != Some(name.as_str()) {
            written.functions += 1;
            last = Some(name);
        }
    }
    (text, written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_spaces_and_backslashes_only() {
        assert_eq!(escape("a b\\c/1"), "a\\ b\\\\c/1");
        assert_eq!(
            escape("_ZN4core3fmt5write17h0123E"),
            "_ZN4core3fmt5write17h0123E"
        );
    }

    #[test]
    fn skips_zero_counts_and_unreadable_names() {
        let counts = BTreeMap::from([
            (("f".to_string(), 0x10), 3),
            (("f".to_string(), 0x11), 0),
            (("bad\nname".to_string(), 0), 4),
            ((String::new(), 0), 4),
        ]);
        let (text, written) = render(&counts);
        assert_eq!(text, "no_lbr cycles\n1 f 10 3\n");
        assert_eq!(
            written,
            Written {
                lines: 1,
                functions: 1,
                samples: 3
            }
        );
    }
}
