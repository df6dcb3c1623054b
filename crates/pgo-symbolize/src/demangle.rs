//! Demangling of Rust (legacy and v0) and C++ (Itanium ABI) linkage names.

/// Demangles a linkage name, or returns it unchanged when it is not mangled (C) or not in a
/// scheme this crate knows.
///
/// Rust names lose their hash (`prog::main`, not `prog::main::h0123456789abcdef`), as in
/// `rustc`'s own backtraces: the hash tells apart builds, not functions. C++ names keep their
/// parameter lists, which do tell apart overloads. LLVM's clone suffixes (`.llvm.123`,
/// `.cold`, `.isra.0`) are kept in a readable form by both demanglers.
pub fn demangle(linkage_name: &str) -> String {
    if let Some(rust) = demangle_rust(linkage_name) {
        return rust;
    }
    if linkage_name.starts_with("_Z")
        && let Some(cpp) = cpp_demangle::Symbol::new(linkage_name)
            .ok()
            .and_then(|symbol| symbol.demangle().ok())
    {
        return cpp;
    }
    linkage_name.to_string()
}

/// Rust v0 names start with `_R`. Legacy Rust names are Itanium-shaped (`_ZN...E`) and end
/// in a hash segment `17h<16 hex digits>E`; checking for it keeps C++ names such as
/// `_ZN3foo3barEv` away from the Rust demangler, which would otherwise accept some of them.
fn demangle_rust(linkage_name: &str) -> Option<String> {
    let is_v0 = linkage_name.starts_with("_R");
    let is_legacy = linkage_name.starts_with("_ZN") && has_legacy_rust_hash(linkage_name);
    if !is_v0 && !is_legacy {
        return None;
    }
    rustc_demangle::try_demangle(linkage_name)
        .ok()
        .map(|demangled| format!("{demangled:#}"))
}

fn has_legacy_rust_hash(linkage_name: &str) -> bool {
    // `17` (the segment's length), `h`, 16 hex digits, and the closing `E`, at the end or
    // before a clone suffix (`.llvm.1234`). Paths themselves contain dots (`$LT$core..ops`),
    // so the suffix cannot be found by splitting at the first dot.
    const HASH_DIGITS: usize = 16;
    linkage_name.match_indices("17h").any(|(start, _)| {
        let rest = &linkage_name.as_bytes()[start + 3..];
        rest.len() > HASH_DIGITS
            && rest[..HASH_DIGITS].iter().all(u8::is_ascii_hexdigit)
            && rest[HASH_DIGITS] == b'E'
            && (rest.len() == HASH_DIGITS + 1 || rest[HASH_DIGITS + 1] == b'.')
    })
}

#[cfg(test)]
mod tests {
    use super::demangle;

    #[test]
    fn demangles_each_scheme() {
        assert_eq!(
            demangle("_ZN4prog13compute_outer17h26f704506f6c74f9E"),
            "prog::compute_outer"
        );
        assert_eq!(
            demangle("_ZN4prog13compute_outer17h26f704506f6c74f9E.llvm.123"),
            "prog::compute_outer"
        );
        assert_eq!(
            demangle("_RNvCs1234_4prog13compute_outer"),
            "prog::compute_outer"
        );
        assert_eq!(
            demangle(
                "_ZN89_$LT$core..ops..range..Range$LT$T$GT$$u20$as$u20$core..iter..range..\
                 RangeIteratorImpl$GT$9spec_next17h194cebd6ea8db68aE"
            ),
            "<core::ops::range::Range<T> as core::iter::range::RangeIteratorImpl>::spec_next"
        );
        assert_eq!(demangle("_ZN3foo3barEv"), "foo::bar()");
        assert_eq!(demangle("_Z6squarei"), "square(int)");
        assert_eq!(demangle("main"), "main");
        assert_eq!(demangle(""), "");
        // Garbage that looks mangled comes back unchanged rather than failing.
        assert_eq!(demangle("_ZN3foo"), "_ZN3foo");
        assert_eq!(demangle("_Rgarbage"), "_Rgarbage");
    }
}
