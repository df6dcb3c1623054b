//! The profiled build's function names, as the new build spells them.
//!
//! LLVM's sample loader finds a function's profile by the function's name cut at its first
//! `.` (the default suffix policy of `getCanonicalFnName`), and Rust's legacy mangling is full
//! of dots (`_ZN58_$LT$app..Block$u20$as$u20$app..Node$GT$4eval17h…E`): every trait method
//! and generic impl would silently get no profile. v0 mangling (`_RNv…`) has no dots, so the
//! new build uses v0, and the profile's names (legacy, from a plain release build) are
//! translated to the v0 names of a build of the same sources: matched by what both builds'
//! DWARF says about each function — short name, declaring file and line — and, where a
//! generic function has several instances there, by their demangled paths.

use pgo_profile::{Profile, ProfileView};
use rustc_hash::FxHashMap;
use std::path::Path;

/// Profiled-build name → new-build name.
#[derive(Debug, Clone, Default)]
pub struct NameMap {
    /// One name, or several instances of a generic function the profile cannot tell apart.
    map: FxHashMap<String, Vec<String>>,
    /// Functions of the profile that the new build names differently, and were found.
    pub mapped: usize,
    /// Functions of the profile found under the same name.
    pub same: usize,
    /// Functions not found (removed, renamed, or generic instances that could not be told
    /// apart).
    pub unmapped: usize,
}

/// v0 names of generic instances end with the crate that instantiated them: these are the
/// standard library's own.
const STD_CRATES: [&str; 3] = ["_3std", "_4core", "_5alloc"];

/// More instances than this of one generic function: the profile's record is left unnamed.
const MAX_INSTANCES: usize = 8;

/// The last two components of a path: enough to tell files apart, and the same in another
/// checkout of the sources.
fn file_key(path: &str) -> String {
    let mut parts = path.rsplit('/');
    let last = parts.next().unwrap_or("");
    match parts.next() {
        Some(dir) => format!("{dir}/{last}"),
        None => last.to_string(),
    }
}

/// A mangled name demangled without hashes or crate disambiguators.
fn plain(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

impl NameMap {
    /// Maps the profile's function names to those of `binary` (a build of the same sources).
    pub fn build(profile: &Profile, binary: &Path) -> Result<NameMap, String> {
        let subprograms = pgo_symbolize::subprograms(binary)?;
        if subprograms.is_empty() {
            return Err(format!(
                "{}: no DWARF functions with linkage names (build it with debug info)",
                binary.display()
            ));
        }
        let known: rustc_hash::FxHashSet<&str> = subprograms
            .iter()
            .map(|s| s.linkage_name.as_str())
            .collect();
        let mut by_key: FxHashMap<(&str, String, u32), Vec<&str>> = FxHashMap::default();
        for s in &subprograms {
            // DWARF names of generic instances carry their arguments (`extend_with<app::V>`).
            let short = s.name.split('<').next().unwrap_or(&s.name);
            by_key
                .entry((short, file_key(&s.decl_file), s.decl_line))
                .or_default()
                .push(s.linkage_name.as_str());
        }
        let view = ProfileView::new(profile);
        let mut out = NameMap::default();
        for f in &profile.function {
            let linkage = view.str(f.system_name);
            if linkage.is_empty() || out.map.contains_key(linkage) {
                continue;
            }
            if known.contains(linkage) {
                out.same += 1;
                out.map
                    .insert(linkage.to_string(), vec![linkage.to_string()]);
                continue;
            }
            let demangled = view.str(f.name);
            let line = u32::try_from(f.start_line).unwrap_or(0);
            let key = (
                pgo_profile::short_function_name(demangled),
                file_key(view.str(f.filename)),
                line,
            );
            let found: Vec<&str> = match by_key.get(&key).map(Vec::as_slice) {
                Some([one]) => vec![*one],
                Some(several) => {
                    // Instances of one generic function: the one whose path reads the same,
                    // else those instantiated by the program rather than inside the standard
                    // library (a legacy name does not say which instance it was; each record
                    // is written for each of them, and LLVM uses the one a call site calls).
                    let want = plain(linkage);
                    let same: Vec<&str> = several
                        .iter()
                        .copied()
                        .filter(|c| plain(c) == want)
                        .collect();
                    if same.len() == 1 {
                        same
                    } else {
                        let own: Vec<&str> = several
                            .iter()
                            .copied()
                            .filter(|c| !STD_CRATES.iter().any(|s| c.ends_with(s)))
                            .collect();
                        if own.len() <= MAX_INSTANCES {
                            own
                        } else {
                            Vec::new()
                        }
                    }
                }
                None => Vec::new(),
            };
            if found.is_empty() {
                if std::env::var_os("PGO_DEBUG_NAMES").is_some() {
                    eprintln!("pgo: names: not found: {demangled} {key:?}");
                }
                out.unmapped += 1;
            } else {
                out.mapped += 1;
                out.map.insert(
                    linkage.to_string(),
                    found.into_iter().map(str::to_string).collect(),
                );
            }
        }
        Ok(out)
    }

    /// The new build's names for `name` (itself when unknown).
    pub fn names<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        match self.map.get(name) {
            Some(v) => v.iter().map(String::as_str).collect(),
            None => vec![name],
        }
    }

    /// The new build's (first) name for `name` (itself when unknown).
    pub fn rename<'a>(&'a self, name: &'a str) -> &'a str {
        self.map
            .get(name)
            .and_then(|v| v.first())
            .map_or(name, String::as_str)
    }
}

/// The new build's names for `name`: through `map` when there is one, else `name` itself.
pub fn names_in<'a>(map: Option<&'a NameMap>, name: &'a str) -> Vec<&'a str> {
    match map {
        Some(map) => map.names(name),
        None => vec![name],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_survive_a_moved_checkout() {
        assert_eq!(file_key("/a/b/src/main.rs"), file_key("/c/src/main.rs"));
    }
}
