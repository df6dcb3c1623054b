//! A symbol ordering file for the linker (`ld.lld --symbol-ordering-file`, also read by gold
//! as `--section-ordering-file` when functions have their own sections): the decided function
//! order, one linkage name per line, hottest cluster first. Functions not listed keep the
//! linker's order after them.

use crate::names::{NameMap, names_in};
use pgo_decide::Decisions;
use std::collections::HashSet;

/// The ordering file's text and the number of symbols in it.
pub fn write(decisions: &Decisions, rename: Option<&NameMap>) -> (String, usize) {
    let mut seen = HashSet::new();
    let mut text = String::new();
    for f in &decisions.layout.function_order {
        for name in names_in(rename, &f.linkage_name) {
            if !name.is_empty() && seen.insert(name) {
                text.push_str(name);
                text.push('\n');
            }
        }
    }
    (text, seen.len())
}
