//! Which program a build just linked, so that `pgo apply` can check it against the profile
//! (and a names build's copy can be kept) without the user naming it: Cargo's in its target
//! directory, make's and other builds' a few levels under the directory they ran in.
//!
//! Guessing by the profiled binary's name misses whenever that name is not Cargo's: a profile
//! taken of a deployed copy (`/usr/local/bin/app-2.1`), of a binary copied aside for a
//! benchmark, or a build run from a workspace member, whose target directory is the
//! workspace root's. What Cargo just (re)linked into its profile directory is the answer
//! whatever the names; the `--bin` the user asked for, or the profiled name, picks among
//! several.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::cargo_profile::CargoBuild;

/// Cargo's target directory for `build` run in `workdir`: its `--target-dir`, else what
/// `cargo metadata` resolves (CARGO_TARGET_DIR, `build.target-dir` of the config files, the
/// workspace root's `target`): from `metadata` when the caller already has it, else from a
/// `cargo metadata --no-deps` run here.
pub fn cargo_target_dir(
    build: &CargoBuild,
    workdir: &Path,
    metadata: Option<&serde_json::Value>,
) -> Option<PathBuf> {
    if let Some(dir) = &build.target_dir {
        return Some(workdir.join(dir));
    }
    let target = |meta: &serde_json::Value| meta["target_directory"].as_str().map(PathBuf::from);
    match metadata.and_then(target) {
        Some(dir) => Some(dir),
        None => target(&build.metadata(workdir, true)?),
    }
}

/// The directory Cargo puts a profile's programs in: `dev` and `test` build into `debug`,
/// `bench` into `release`, any other profile into its own name.
pub fn profile_dir(profile: &str) -> &str {
    match profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    }
}

/// The directories a build of `profile` links programs into under `target_dir`: the host's
/// (`target/release`) and each cross target's (`target/<triple>/release`).
pub fn program_dirs(target_dir: &Path, profile: &str) -> Vec<PathBuf> {
    let dir = profile_dir(profile);
    let mut dirs = vec![target_dir.join(dir)];
    if let Ok(entries) = std::fs::read_dir(target_dir) {
        let mut cross: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path().join(dir))
            .filter(|p| p.is_dir() && *p != dirs[0])
            .collect();
        cross.sort();
        dirs.extend(cross);
    }
    dirs
}

/// The ELF executables directly in `dirs` modified at or after `since` (less a second, for
/// file systems with coarse timestamps), sorted.
pub fn linked_since(dirs: &[PathBuf], since: SystemTime) -> Vec<PathBuf> {
    let since = since.checked_sub(Duration::from_secs(1)).unwrap_or(since);
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file()
                && meta.permissions().mode() & 0o111 != 0
                && meta.modified().is_ok_and(|m| m >= since)
                && is_elf(&path)
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The directories a build other than Cargo's may link its programs into: `root` and its
/// subdirectories down to `depth` levels (make leaves Lua's `lua` in `src/`, CMake its
/// programs in `build/`), without hidden ones (`.git`), at most [`MAX_SEARCHED_DIRS`] of them
/// breadth first, so that a build run from a large tree stays a quick look.
pub fn dirs_under(root: &Path, depth: usize) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_path_buf()];
    let mut level = vec![root.to_path_buf()];
    for _ in 0..depth {
        let mut next = Vec::new();
        for dir in &level {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut subdirs: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .collect();
            subdirs.sort();
            next.extend(subdirs);
        }
        if dirs.len() + next.len() > MAX_SEARCHED_DIRS {
            next.truncate(MAX_SEARCHED_DIRS.saturating_sub(dirs.len()));
            dirs.extend(next);
            break;
        }
        dirs.extend(next.iter().cloned());
        level = next;
    }
    dirs
}

/// The most directories [`dirs_under`] returns.
pub const MAX_SEARCHED_DIRS: usize = 20_000;

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// The program among `linked` the user means: the one `--bin` named, else the one with the
/// profiled binary's file name, else the only one, else the only one of the profiled file's
/// kind (executable or shared library). `Err` carries the candidates when that
/// does not decide (none linked, or several and no name to choose by).
pub fn pick(
    linked: &[PathBuf],
    bins: &[String],
    profiled_name: Option<&OsStr>,
) -> Result<PathBuf, Vec<PathBuf>> {
    let named = |name: &OsStr| linked.iter().find(|p| p.file_name() == Some(name));
    let by_bin: Vec<&PathBuf> = bins.iter().filter_map(|b| named(OsStr::new(b))).collect();
    if let [one] = by_bin.as_slice() {
        return Ok((*one).clone());
    }
    if let Some(p) = profiled_name.and_then(named) {
        return Ok(p.clone());
    }
    if let [one] = linked {
        return Ok(one.clone());
    }
    // A renamed copy was profiled (`app` deployed as `app-v2`): a package that links an
    // executable and a cdylib still has one program of the profiled one's kind.
    if by_bin.is_empty()
        && let Some(profiled) = profiled_name
    {
        let kind = is_shared_library(profiled);
        let same_kind: Vec<&PathBuf> = linked
            .iter()
            .filter(|p| p.file_name().is_some_and(|n| is_shared_library(n) == kind))
            .collect();
        if let [one] = same_kind.as_slice() {
            return Ok((*one).clone());
        }
    }
    Err(if by_bin.is_empty() {
        linked.to_vec()
    } else {
        by_bin.into_iter().cloned().collect()
    })
}

/// `libfoo.so`, `libfoo.so.1`: what the dynamic linker loads, not what a user starts.
fn is_shared_library(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.ends_with(".so") || name.contains(".so.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"\x7fELF\x02\x01\x01").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn programs_linked_since_the_build_started_are_found_in_host_and_cross_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path();
        elf(&target.join("release/old-tool"));
        // Old enough to be a previous build's.
        let old = std::fs::File::options()
            .write(true)
            .open(target.join("release/old-tool"))
            .unwrap();
        old.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        let since = SystemTime::now();
        elf(&target.join("release/app"));
        elf(&target.join("x86_64-unknown-linux-musl/release/app"));
        std::fs::write(target.join("release/app.d"), "deps").unwrap();
        elf(&target.join("release/deps/app-0123abcd"));
        elf(&target.join("debug/app"));

        let dirs = program_dirs(target, "release");
        assert_eq!(
            dirs,
            [
                target.join("release"),
                target.join("x86_64-unknown-linux-musl/release")
            ]
        );
        assert_eq!(
            linked_since(&dirs, since),
            [
                target.join("release/app"),
                target.join("x86_64-unknown-linux-musl/release/app")
            ]
        );
        assert_eq!(program_dirs(target, "test"), [target.join("debug")]);
    }

    #[test]
    fn a_build_trees_directories_are_searched_a_few_levels_deep_without_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["src", "build/bin/deep/deeper", ".git/objects", "src/.cache"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("file"), "not a directory").unwrap();
        let rel = |dirs: Vec<PathBuf>| -> Vec<String> {
            dirs.iter()
                .map(|d| d.strip_prefix(root).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(
            rel(dirs_under(root, 3)),
            ["", "build", "src", "build/bin", "build/bin/deep"]
        );
        assert_eq!(rel(dirs_under(root, 0)), [""]);
    }

    #[test]
    fn the_bin_asked_for_then_the_profiled_name_then_the_only_one_is_picked() {
        let p = |s: &str| PathBuf::from(format!("/t/release/{s}"));
        let linked = [p("app"), p("helper")];
        assert_eq!(pick(&linked, &["helper".into()], None), Ok(p("helper")));
        assert_eq!(
            pick(&linked, &[], Some(OsStr::new("app"))),
            Ok(p("app")),
            "the profiled binary's own name"
        );
        assert_eq!(
            pick(&linked, &[], Some(OsStr::new("app-2.1"))),
            Err(linked.to_vec()),
            "two programs and no name to choose by"
        );
        assert_eq!(
            pick(&[p("app")], &[], Some(OsStr::new("app-2.1"))),
            Ok(p("app")),
            "a deployed copy's name, one program built"
        );
        let with_cdylib = [p("app"), p("libapp.so")];
        assert_eq!(
            pick(&with_cdylib, &[], Some(OsStr::new("app-2.1"))),
            Ok(p("app")),
            "a deployed copy's name, a program and a shared library built"
        );
        assert_eq!(
            pick(&with_cdylib, &[], Some(OsStr::new("libapp.so.2"))),
            Ok(p("libapp.so")),
            "a profiled shared library"
        );
        assert_eq!(pick(&[], &[], Some(OsStr::new("app"))), Err(vec![]));
        assert_eq!(profile_dir("dev"), "debug");
        assert_eq!(profile_dir("bench"), "release");
        assert_eq!(profile_dir("dist"), "dist");
    }
}
