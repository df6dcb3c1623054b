//! A symbol ordering file for the linker (`ld.lld --symbol-ordering-file`, also read by gold
//! as `--section-ordering-file` when functions have their own sections): the decided function
//! order, one linkage name per line, hottest cluster first. Functions not listed keep the
//! linker's order after them.

use pgo_decide::Decisions;
use std::collections::HashSet;

/// The ordering file's text and the number of symbols in it.
pub fn write(decisions: &Decisions) -> (String, usize) {
    let mut seen = HashSet::new();
    let mut text = String::new();
    for f in &decisions.layout.function_order {
        if !f.linkage_name.is_empty() && seen.insert(f.linkage_name.as_str()) {
            text.push_str(&f.linkage_name);
            text.push('\n');
        }
    }
    (text, seen.len())
}
