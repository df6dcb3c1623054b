//! `cargo xtask cg-diff A B`: where two cachegrind runs of one program differ.
//!
//! The speedup and real-program benchmarks leave `cachegrind.out` files of every variant
//! (`target/bench-builds/F/counts/*.cachegrind.out`, `/tmp/rb/P/V/cachegrind/*`); the question
//! after a change is which functions, then which source lines, gained or lost instructions.
//! Function names are compared after normalization, because a pgo build's names are v0-demangled
//! (`<suite::Decoder>::new`, `f::<T>`) and a plain build's legacy (`suite::Decoder::new`,
//! `f<T>`): generic arguments go, and a leading `<Type>` wrapper becomes `Type`.

use std::collections::HashMap;
use std::path::Path;

/// Counts of one cachegrind file, by function and by (function, file, line).
#[derive(Default)]
struct Counts {
    /// Instructions and mispredicts (conditional + indirect, when simulated) per function.
    by_function: HashMap<String, (u64, u64)>,
    /// Instructions per (normalized function, file name, line).
    by_line: HashMap<(String, String, u64), u64>,
}

pub fn run(args: &[String]) -> Result<(), String> {
    let mut files = Vec::new();
    let mut function: Option<String> = None;
    let mut rows = 20usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--lines" => {
                function = Some(
                    it.next()
                        .ok_or("--lines takes a function name (or part of one)")?
                        .clone(),
                )
            }
            "-n" => {
                rows = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("-n takes a number of rows")?
            }
            _ => files.push(a.clone()),
        }
    }
    let [a, b] = files.as_slice() else {
        return Err(
            "usage: cargo xtask cg-diff A.cachegrind.out B.cachegrind.out [--lines FUNCTION] [-n ROWS]"
                .into(),
        );
    };
    let (ca, cb) = (read(Path::new(a))?, read(Path::new(b))?);
    print!("{}", report(&ca, &cb, function.as_deref(), rows));
    Ok(())
}

fn read(path: &Path) -> Result<Counts, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse(text: &str) -> Result<Counts, String> {
    let mut counts = Counts::default();
    let mut events: Vec<&str> = Vec::new();
    let (mut file, mut function) = (String::new(), String::new());
    for line in text.lines() {
        if let Some(e) = line.strip_prefix("events:") {
            events = e.split_whitespace().collect();
        } else if let Some(f) = line
            .strip_prefix("fl=")
            .or_else(|| line.strip_prefix("fi="))
            .or_else(|| line.strip_prefix("fe="))
        {
            file = f.rsplit('/').next().unwrap_or(f).to_string();
        } else if let Some(f) = line.strip_prefix("fn=") {
            function = normalize(f);
        } else if line.starts_with(|c: char| c.is_ascii_digit()) {
            if events.is_empty() {
                return Err("a count line before the `events:` line: not a cachegrind file".into());
            }
            let mut fields = line.split_whitespace();
            let line_no: u64 = fields
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("a bad count line: {line}"))?;
            let values: Vec<u64> = fields.map(|v| v.parse().unwrap_or(0)).collect();
            let value = |name: &str| {
                events
                    .iter()
                    .position(|e| *e == name)
                    .and_then(|i| values.get(i))
                    .copied()
                    .unwrap_or(0)
            };
            let ir = value("Ir");
            let entry = counts.by_function.entry(function.clone()).or_default();
            entry.0 += ir;
            entry.1 += value("Bcm") + value("Bim");
            *counts
                .by_line
                .entry((function.clone(), file.clone(), line_no))
                .or_default() += ir;
        }
    }
    if events.is_empty() {
        return Err("no `events:` line: not a cachegrind file".into());
    }
    Ok(counts)
}

/// A demangled name with its generic arguments removed and a leading `<Type>` unwrapped, so
/// that a v0 name (`<alloc::vec::Vec<u8>>::push`) and a legacy one (`alloc::vec::Vec<T>::push`)
/// meet (`alloc::vec::Vec::push`); `<A as B>::f` becomes `A as B::f`.
fn normalize(name: &str) -> String {
    let mut name = name.trim().to_string();
    if name.starts_with('<')
        && let Some(end) = matching(&name, 0)
    {
        name = format!("{}{}", &name[1..end], &name[end + 1..]);
    }
    let mut out = String::with_capacity(name.len());
    let mut depth = 0usize;
    let bytes = name.as_bytes();
    for (i, c) in name.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if depth > 0 && (i == 0 || bytes[i - 1] != b'-') => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.replace("::::", "::").trim_end_matches("::").to_string()
}

/// The index of the `>` that closes the `<` at `open`.
fn matching(s: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices().skip(open) {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn report(a: &Counts, b: &Counts, function: Option<&str>, rows: usize) -> String {
    let total = |c: &Counts| c.by_function.values().map(|v| v.0).sum::<u64>();
    let mut out = format!(
        "instructions: A {:.3} G, B {:.3} G ({:+.2}%)\n",
        total(a) as f64 / 1e9,
        total(b) as f64 / 1e9,
        100.0 * (total(b) as f64 / total(a).max(1) as f64 - 1.0)
    );
    let mega = |v: i128| v as f64 / 1e6;
    match function {
        None => {
            let get = |c: &Counts, k: &String| c.by_function.get(k).copied().unwrap_or((0, 0));
            let keys = largest_changes(&a.by_function, &b.by_function, rows, |k| {
                i128::from(get(b, k).0) - i128::from(get(a, k).0)
            });
            out += "    change         A         B  mispredicts  function\n";
            for k in keys {
                let ((ia, ma), (ib, mb)) = (get(a, k), get(b, k));
                out += &format!(
                    "{:+9.1} M {:8.1} M {:8.1} M {:+9.2} M  {k}\n",
                    mega(i128::from(ib) - i128::from(ia)),
                    mega(ia.into()),
                    mega(ib.into()),
                    mega(i128::from(mb) - i128::from(ma)),
                );
            }
        }
        Some(f) => {
            let lines = |c: &Counts| {
                let mut m: HashMap<(String, u64), u64> = HashMap::new();
                for ((func, file, line), ir) in &c.by_line {
                    if func.contains(f) {
                        *m.entry((file.clone(), *line)).or_default() += ir;
                    }
                }
                m
            };
            let (la, lb) = (lines(a), lines(b));
            let get = |m: &HashMap<(String, u64), u64>, k: &(String, u64)| {
                i128::from(m.get(k).copied().unwrap_or(0))
            };
            let keys = largest_changes(&la, &lb, rows, |k| get(&lb, k) - get(&la, k));
            out += &format!("lines of functions matching `{f}`:\n");
            out += "    change         A         B  line\n";
            for k in keys {
                out += &format!(
                    "{:+9.1} M {:8.1} M {:8.1} M  {}:{}\n",
                    mega(get(&lb, k) - get(&la, k)),
                    mega(get(&la, k)),
                    mega(get(&lb, k)),
                    k.0,
                    k.1
                );
            }
        }
    }
    out
}

/// The `rows` keys of `a` or `b` whose `change` is largest in size, largest first (ties in key
/// order).
fn largest_changes<'m, K: Ord + std::hash::Hash, V>(
    a: &'m HashMap<K, V>,
    b: &'m HashMap<K, V>,
    rows: usize,
    change: impl Fn(&K) -> i128,
) -> Vec<&'m K> {
    let mut keys: Vec<&K> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.sort_by_key(|k| std::cmp::Reverse(change(k).abs()));
    keys.truncate(rows);
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "events: Ir Bc Bcm Bi Bim\nfl=/src/main.rs\nfn=suite::Decoder::new\n\
                         10 1000000 0 0 0 0\nfn=suite::main\n20 50000000 0 1000000 0 0\n\
                         fi=/rust/index.rs\n272 3000000 0 0 0 0\n";
    const PGO: &str = "events: Ir Bc Bcm Bi Bim\nfl=/src/main.rs\nfn=<suite::Decoder>::new\n\
                       10 1000000 0 0 0 0\nfn=suite::main\n20 40000000 0 400000 0 0\n\
                       0 5000000 0 0 0 0\nfi=/rust/index.rs\n272 9000000 0 0 0 0\n";

    #[test]
    fn names_of_both_manglings_meet() {
        assert_eq!(normalize("<suite::Decoder>::new"), "suite::Decoder::new");
        assert_eq!(
            normalize("alloc::vec::Vec<T,A>::push"),
            "alloc::vec::Vec::push"
        );
        assert_eq!(
            normalize("<alloc::vec::Vec<u8>>::push"),
            "alloc::vec::Vec::push"
        );
        assert_eq!(
            normalize("core::ptr::drop_in_place::<app::V>"),
            "core::ptr::drop_in_place"
        );
        assert_eq!(
            normalize("<app::A as app::Node>::eval"),
            "app::A as app::Node::eval"
        );
        assert_eq!(normalize("f<fn() -> u8>"), "f");
    }

    #[test]
    fn functions_and_lines_that_changed() {
        let (a, b) = (parse(PLAIN).unwrap(), parse(PGO).unwrap());
        let by_function = report(&a, &b, None, 5);
        assert!(
            by_function.starts_with("instructions: A 0.054 G, B 0.055 G (+1.85%)"),
            "{by_function}"
        );
        let main = by_function
            .lines()
            .find(|l| l.ends_with(" suite::main"))
            .unwrap();
        let fields: Vec<&str> = main.split_whitespace().collect();
        assert_eq!(
            fields[..8],
            ["+1.0", "M", "53.0", "M", "54.0", "M", "-0.60", "M"]
        );
        // The renamed function is one row without a change, not a loss and a gain.
        assert_eq!(by_function.matches("suite::Decoder::new").count(), 1);
        let by_line = report(&a, &b, Some("main"), 5);
        let rows: Vec<&str> = by_line.lines().skip(3).collect();
        assert!(
            rows[0].starts_with("    -10.0 M") && rows[0].ends_with("main.rs:20"),
            "{by_line}"
        );
        assert!(
            rows[1].starts_with("     +6.0 M") && rows[1].ends_with("index.rs:272"),
            "{by_line}"
        );
        assert!(
            rows[2].starts_with("     +5.0 M") && rows[2].ends_with("main.rs:0"),
            "{by_line}"
        );
        assert_eq!(rows.len(), 3, "{by_line}");
    }

    #[test]
    fn a_file_that_is_not_cachegrind_output_is_an_error() {
        assert!(parse("hello\n").is_err());
        assert!(parse("10 20 30\n").is_err());
    }
}
