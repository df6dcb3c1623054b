//! Running `llvm-bolt` and putting its output in the binary's place.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::image::io_reason;

/// The llvm-bolt this backend runs by default, and the Debian package that has it.
pub const LLVM_BOLT: &str = "llvm-bolt-22";
pub const LLVM_BOLT_PACKAGE: &str = "bolt-22";

/// The optimization options passed to llvm-bolt (after `-data` and `-o`), all present in
/// `llvm-bolt-22 --help-hidden`.
pub const BOLT_OPTIONS: &[&str] = &[
    // Lay out basic blocks for the i-cache (extended TSP) ...
    "-reorder-blocks=ext-tsp",
    // ... and functions by cache-directed sort.
    "-reorder-functions=cdsort",
    // Move cold blocks out of hot functions, as many as possible, and C++ landing pads too.
    "-split-functions",
    "-split-all-cold",
    "-split-eh",
    // Print dynamic statistics (executed instructions, taken branches) before and after.
    "-dyno-stats",
    // Rewrite DWARF for the new layout instead of dropping it (BOLT's default drops debug
    // information, which would leave the user's binary without symbols for debuggers and
    // for symbolizing the next profile).
    "-update-debug-sections",
];

/// The program `tool` names: a path as is, else the first match on `PATH`, else (for the
/// default) LLVM 22's own directory.
pub(crate) fn find_tool(tool: &str) -> Result<PathBuf, String> {
    if tool.contains('/') {
        let path = PathBuf::from(tool);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{tool}: llvm-bolt not found there (install the Debian package {LLVM_BOLT_PACKAGE})"
            ))
        };
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
    });
    if let Some(path) = on_path {
        return Ok(path);
    }
    let llvm_dir = Path::new("/usr/lib/llvm-22/bin/llvm-bolt");
    if tool == LLVM_BOLT && llvm_dir.is_file() {
        return Ok(llvm_dir.to_path_buf());
    }
    Err(format!(
        "{tool} not found on PATH: BOLT needs it (install the Debian package {LLVM_BOLT_PACKAGE}: apt-get install {LLVM_BOLT_PACKAGE})"
    ))
}

/// What a successful llvm-bolt run said.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct BoltRun {
    /// Everything it printed (standard output, then standard error).
    pub log: String,
    /// From "BOLT-INFO: N out of M functions in the binary (P%) have non-empty execution
    /// profile": (N, M).
    pub profiled_functions: Option<(u64, u64)>,
}

/// Runs `tool input -o output -data=fdata OPTIONS...`.
pub(crate) fn run_bolt(
    tool: &Path,
    input: &Path,
    fdata: &Path,
    output: &Path,
) -> Result<BoltRun, (String, String)> {
    let mut data_arg = std::ffi::OsString::from("-data=");
    data_arg.push(fdata);
    let result = Command::new(tool)
        .arg(input)
        .arg("-o")
        .arg(output)
        .arg(data_arg)
        .args(BOLT_OPTIONS)
        .output();
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            return Err((
                format!("{}: cannot run: {}", tool.display(), io_reason(&e)),
                String::new(),
            ));
        }
    };
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        let reason = log
            .lines()
            .find(|l| l.contains("BOLT-ERROR") || l.contains("error:"))
            .or_else(|| log.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or("no output")
            .trim()
            .to_string();
        return Err((
            format!(
                "{}: {} failed ({}): {reason}",
                input.display(),
                tool.display(),
                out.status
            ),
            log,
        ));
    }
    let profiled_functions = log.lines().find_map(parse_profiled_functions);
    Ok(BoltRun {
        log,
        profiled_functions,
    })
}

/// (N, M) from "BOLT-INFO: N out of M functions in the binary (P%) have non-empty execution
/// profile".
pub(crate) fn parse_profiled_functions(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("BOLT-INFO: ")?;
    if !rest.contains("have non-empty execution profile") {
        return None;
    }
    let mut words = rest.split_whitespace();
    let n = words.next()?.parse().ok()?;
    if (words.next()?, words.next()?) != ("out", "of") {
        return None;
    }
    let m = words.next()?.parse().ok()?;
    Some((n, m))
}

/// `dir/name` for a file named after `binary`: `BIN.suffix`.
pub(crate) fn sibling(binary: &Path, suffix: &str) -> PathBuf {
    let mut name = binary.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    binary.with_file_name(name)
}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A fresh temporary path next to `path` (nothing is created there).
pub(crate) fn temp_path_next_to(path: &Path) -> Result<tempfile::TempPath, String> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir_of(path))
        .map(|f| f.into_temp_path())
        .map_err(|e| {
            format!(
                "{}: cannot create a file next to it: {}",
                path.display(),
                io_reason(&e)
            )
        })
}

/// Puts a copy (a hard link where the file system allows) of `from` at `to` atomically:
/// through a temporary name in `to`'s directory and a rename, so `to` is always either the
/// old file or the new one.
pub(crate) fn install(from: &Path, to: &Path) -> Result<(), String> {
    let tmp = temp_path_next_to(to)?;
    let fail = |e: std::io::Error| format!("{}: cannot write: {}", to.display(), io_reason(&e));
    std::fs::remove_file(&tmp).map_err(fail)?;
    if std::fs::hard_link(from, &tmp).is_err() {
        std::fs::copy(from, &tmp).map_err(|e| {
            format!(
                "{}: cannot copy to {}: {}",
                from.display(),
                tmp.display(),
                io_reason(&e)
            )
        })?;
    }
    tmp.persist(to).map_err(|e| fail(e.error))
}

/// The files of a BOLT swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Swapped {
    /// `BIN.bolt`: the optimized binary.
    pub optimized: PathBuf,
    /// `BIN.pre-bolt`: the binary as built.
    pub original: PathBuf,
}

/// Puts the optimized binary `bolted` (a temporary file next to `binary`) in place:
/// `bolted` → `BIN.bolt` (rename); `BIN` → `BIN.pre-bolt` (hard link or copy, then rename;
/// skipped when `keep_original` is false because `BIN.pre-bolt` already is the original);
/// `BIN.bolt` → `BIN` (hard link or copy, then rename). Every step replaces its target
/// atomically, so `BIN` is at every moment a complete binary, the original or the new one.
pub(crate) fn swap_in(
    binary: &Path,
    bolted: tempfile::TempPath,
    keep_original: bool,
) -> Result<Swapped, String> {
    let optimized = sibling(binary, ".bolt");
    let original = sibling(binary, ".pre-bolt");
    if let Ok(meta) = std::fs::metadata(binary) {
        // BOLT's output gets the built binary's permissions.
        let _ = std::fs::set_permissions(&bolted, meta.permissions());
    }
    bolted.persist(&optimized).map_err(|e| {
        format!(
            "{}: cannot write: {}",
            optimized.display(),
            io_reason(&e.error)
        )
    })?;
    if keep_original {
        install(binary, &original)?;
    }
    install(&optimized, binary)?;
    Ok(Swapped {
        optimized,
        original,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_profile_line() {
        let line = "BOLT-INFO: 1 out of 11 functions in the binary (9.1%) have non-empty execution profile";
        assert_eq!(parse_profiled_functions(line), Some((1, 11)));
        assert_eq!(parse_profiled_functions("BOLT-INFO: 1 out of 11"), None);
    }

    #[test]
    fn a_missing_tool_names_the_package() {
        let err = find_tool("llvm-bolt-does-not-exist").unwrap_err();
        assert!(err.contains("bolt-22"), "{err}");
        let err = find_tool("/nonexistent/llvm-bolt").unwrap_err();
        assert!(err.contains("bolt-22"), "{err}");
    }

    #[test]
    fn swap_keeps_the_original_and_installs_the_new_binary() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("app");
        std::fs::write(&bin, b"original").unwrap();
        let tmp = temp_path_next_to(&bin).unwrap();
        std::fs::write(&tmp, b"optimized").unwrap();
        let swapped = swap_in(&bin, tmp, true).unwrap();
        assert_eq!(std::fs::read(&bin).unwrap(), b"optimized");
        assert_eq!(std::fs::read(&swapped.optimized).unwrap(), b"optimized");
        assert_eq!(std::fs::read(&swapped.original).unwrap(), b"original");
        assert_eq!(swapped.original, dir.path().join("app.pre-bolt"));
        // Nothing else is left behind.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["app", "app.bolt", "app.pre-bolt"]);
    }
}
