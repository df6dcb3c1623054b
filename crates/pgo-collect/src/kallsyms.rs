//! Kernel symbols from `/proc/kallsyms`, for the kernel frames of callchains.

/// Kernel text symbols sorted by address.
pub(crate) struct KernelSymbols {
    symbols: Vec<(u64, String)>,
}

impl KernelSymbols {
    /// Reads `/proc/kallsyms`; empty when it is unreadable or its addresses are hidden
    /// (`kptr_restrict`), in which case kernel frames stay unsymbolized.
    pub(crate) fn load() -> KernelSymbols {
        let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        let mut symbols: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let address = u64::from_str_radix(parts.next()?, 16).ok()?;
                let kind = parts.next()?;
                let name = parts.next()?;
                (address != 0 && matches!(kind, "t" | "T" | "w" | "W"))
                    .then(|| (address, name.to_string()))
            })
            .collect();
        symbols.sort_unstable();
        KernelSymbols { symbols }
    }

    /// The symbol at or before `address`.
    pub(crate) fn lookup(&self, address: u64) -> Option<&str> {
        let i = self.symbols.partition_point(|(a, _)| *a <= address);
        (i > 0).then(|| self.symbols[i - 1].1.as_str())
    }

    /// The address range the symbols span, for the kernel's mapping.
    pub(crate) fn range(&self) -> Option<(u64, u64)> {
        Some((self.symbols.first()?.0, self.symbols.last()?.0 + 1))
    }
}
