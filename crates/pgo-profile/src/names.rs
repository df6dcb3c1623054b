//! Names of functions as profiles carry them.

/// The name a function is declared and called with, from its demangled path: the last `::`
/// segment outside angle brackets, without generic arguments. It is what DWARF's `DW_AT_name`
/// says and what a call in the source spells: `<app::Obj>::get_idx::<T>` → `get_idx`,
/// `core::ptr::drop_in_place<app::Value>` → `drop_in_place`, `app::main::{closure#0}` →
/// `{closure#0}`, a C name stays itself. Both demangled forms are read: Rust's legacy
/// (`Vec<T,A>::push`) and v0 (`<alloc::vec::Vec<u8>>::push`, `parse::<u8>`).
pub fn short_function_name(demangled: &str) -> &str {
    let bytes = demangled.as_bytes();
    // `->` in a generic argument (`fn() -> u8`) is no bracket.
    let closes = |i: usize| bytes[i] == b'>' && (i == 0 || bytes[i - 1] != b'-');
    let mut name = demangled;
    // Generic arguments at the end (`f::<T>`, `f<T>`), unless they are the whole name.
    if name.ends_with('>') {
        let mut depth = 0i32;
        for i in (0..name.len()).rev() {
            if closes(i) {
                depth += 1;
            } else if bytes[i] == b'<' {
                depth -= 1;
                if depth == 0 {
                    if i > 0 {
                        name = name[..i].trim_end_matches("::");
                    }
                    break;
                }
            }
        }
    }
    let mut depth = 0i32;
    let mut start = 0;
    let nb = name.as_bytes();
    let mut i = 0;
    while i < nb.len() {
        if nb[i] == b'<' {
            depth += 1;
        } else if closes(i) {
            depth -= 1;
        } else if nb[i] == b':' && depth == 0 && nb.get(i + 1) == Some(&b':') {
            start = i + 2;
            i += 1;
        }
        i += 1;
    }
    &name[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_segment_without_generic_arguments() {
        for (full, short) in [
            ("<suite_interp::Block as suite_interp::Node>::eval", "eval"),
            ("alloc::vec::Vec<T,A>::extend_with", "extend_with"),
            ("app::main::{closure#0}", "{closure#0}"),
            ("core::ptr::drop_in_place<app::Value>", "drop_in_place"),
            ("core::ptr::drop_in_place::<app::Value>", "drop_in_place"),
            ("main", "main"),
            ("<app::Obj>::get_idx", "get_idx"),
            ("<app::Obj>::get_idx::<T>", "get_idx"),
            ("app::parse::<alloc::vec::Vec<u8>>", "parse"),
            ("<app::Map<K, V>>::get::<u8>", "get"),
            (
                "core::ops::function::FnOnce::call_once<fn() -> u8>",
                "call_once",
            ),
            ("<fn() -> u8 as app::Run>::run", "run"),
            ("luaV_finishset", "luaV_finishset"),
            ("", ""),
        ] {
            assert_eq!(short_function_name(full), short, "{full}");
        }
    }
}
