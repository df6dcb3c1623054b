//! Shared strings for one object: a profile repeats the same few function and file names over
//! thousands of addresses, so each is stored (and demangled) once and handed out as `Arc<str>`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::demangle::demangle;

#[derive(Default)]
pub(crate) struct Names {
    strings: HashSet<Arc<str>>,
    /// Linkage name to demangled name. Demangling dominated symbolization time before this.
    demangled: HashMap<Arc<str>, Arc<str>>,
}

impl Names {
    /// The one shared copy of `text`.
    pub(crate) fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.strings.insert(shared.clone());
        shared
    }

    /// The demangled form of a linkage name (see [`demangle`]), computed once.
    pub(crate) fn demangled(&mut self, linkage_name: &Arc<str>) -> Arc<str> {
        if let Some(demangled) = self.demangled.get(linkage_name) {
            return demangled.clone();
        }
        let demangled = demangle(linkage_name);
        let demangled = if demangled == **linkage_name {
            linkage_name.clone()
        } else {
            self.intern(&demangled)
        };
        self.demangled
            .insert(linkage_name.clone(), demangled.clone());
        demangled
    }
}
