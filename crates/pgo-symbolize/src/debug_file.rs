//! Finding the separate debug files that distributions and `objcopy --only-keep-debug` split
//! out of binaries, the way gdb does.

use std::path::{Path, PathBuf};

use object::Object;

use crate::object_info::{build_id_hex, has_dwarf, parse_elf};
use crate::{DebugLink, ObjectInfo};

/// A separate file read and checked to belong to an object.
pub(crate) struct FoundFile {
    pub(crate) path: PathBuf,
    pub(crate) data: Vec<u8>,
}

/// `<dir>/.build-id/ab` and `cdef…` for build ID `abcdef…`: the layout of debug directories
/// and of perf's build-ID cache alike.
fn build_id_dir<'a>(dir: &Path, build_id: &'a str) -> Option<(PathBuf, &'a str)> {
    // A build ID is at least a few bytes; anything shorter cannot name a file this way.
    if build_id.len() < 4 || !build_id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    let (directory, rest) = build_id.split_at(2);
    Some((dir.join(".build-id").join(directory), rest))
}

/// `<debug dir>/.build-id/ab/cdef….debug`: where distribution debug packages (Debian
/// `-dbgsym`, Fedora `-debuginfo`) install debug files.
pub(crate) fn build_id_path(debug_dir: &Path, build_id: &str) -> Option<PathBuf> {
    let (dir, rest) = build_id_dir(debug_dir, build_id)?;
    Some(dir.join(format!("{rest}.debug")))
}

/// Where `perf record` keeps a copy of every binary it sampled, unless told not to (`-N`):
/// its build-ID cache, `~/.debug` (or `perf --buildid-dir DIR`: `$PERF_BUILDID_DIR`, the
/// variable perf exports to its scripts, names it instead), as `.build-id/ab/cdef…/elf`.
pub(crate) fn perf_cache_path(build_id: &str) -> Option<PathBuf> {
    let cache = match std::env::var_os("PERF_BUILDID_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".debug"),
    };
    let (dir, rest) = build_id_dir(&cache, build_id)?;
    Some(dir.join(rest).join("elf"))
}

/// Whether the ELF file at `path` has build ID `build_id` (lowercase hex).
fn has_build_id(path: &Path, build_id: &str) -> bool {
    std::fs::read(path)
        .is_ok_and(|data| parse_elf(path, &data).is_ok_and(|file| build_id_hex(&file) == build_id))
}

/// The file that holds build `build_id` (hex) of the binary a profile recorded at `path`:
/// `path` itself while it still has that build ID, else the copy `perf record` put in its
/// build-ID cache ([`perf_cache_path`]) before the binary was rebuilt. `None` without a
/// build ID or a file that has it.
pub fn binary_with_build_id(path: &Path, build_id: &str) -> Option<PathBuf> {
    let build_id = build_id.to_ascii_lowercase();
    if build_id.is_empty() {
        return None;
    }
    if has_build_id(path, &build_id) {
        return Some(path.to_path_buf());
    }
    perf_cache_path(&build_id).filter(|candidate| has_build_id(candidate, &build_id))
}

/// The debug file for the object at `object_path`: by build ID under each debug directory,
/// then by `.gnu_debuglink` next to the object, in its `.debug/` subdirectory, and under each
/// debug directory followed by the object's directory. A candidate counts only if it is ELF,
/// carries DWARF, and matches: the same build ID when both have one, else the debuglink CRC.
pub(crate) fn find_debug_file(
    object_path: &Path,
    info: &ObjectInfo,
    debug_dirs: &[PathBuf],
) -> Option<FoundFile> {
    let object_real_path = std::fs::canonicalize(object_path).ok();
    let is_the_object_itself = |candidate: &Path| {
        object_real_path.is_some() && std::fs::canonicalize(candidate).ok() == object_real_path
    };

    if !info.build_id.is_empty() {
        for debug_dir in debug_dirs {
            let Some(candidate) = build_id_path(debug_dir, &info.build_id) else {
                continue;
            };
            if is_the_object_itself(&candidate) {
                continue;
            }
            if let Some(found) = read_matching(&candidate, &info.build_id, None) {
                return Some(found);
            }
        }
    }

    let debuglink = info.debuglink.as_ref()?;
    // The link is a bare file name; one with a directory in it is not following the
    // convention and could point anywhere.
    if debuglink.file_name.contains('/') || debuglink.file_name.is_empty() {
        return None;
    }
    // gdb resolves symlinks first (`/usr/bin/foo` -> `/opt/foo/bin/foo`), then looks next to
    // the real file.
    let object_dir = object_real_path
        .as_deref()
        .unwrap_or(object_path)
        .parent()?
        .to_path_buf();
    let mut candidates = vec![
        object_dir.join(&debuglink.file_name),
        object_dir.join(".debug").join(&debuglink.file_name),
    ];
    for debug_dir in debug_dirs {
        let relative_dir = object_dir.strip_prefix("/").unwrap_or(&object_dir);
        candidates.push(debug_dir.join(relative_dir).join(&debuglink.file_name));
    }
    candidates
        .iter()
        .filter(|candidate| !is_the_object_itself(candidate))
        .find_map(|candidate| read_matching(candidate, &info.build_id, Some(debuglink)))
}

/// The supplementary file a dwz-processed debug file points to with `.gnu_debugaltlink`
/// (Debian and Fedora debug packages): by the path in the link (relative to the debug file's
/// directory), else by the link's build ID under each debug directory.
pub(crate) fn find_supplementary_file(
    debug_file_path: &Path,
    debug_file: &object::File<'_>,
    debug_dirs: &[PathBuf],
) -> Option<FoundFile> {
    let (link_path, link_build_id) = debug_file.gnu_debugaltlink().ok()??;
    let link_build_id: String = link_build_id
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let link_path = Path::new(std::str::from_utf8(link_path).ok()?);
    let mut candidates = Vec::new();
    if !link_path.as_os_str().is_empty() {
        candidates.push(match debug_file_path.parent() {
            Some(dir) => dir.join(link_path),
            None => link_path.to_path_buf(),
        });
    }
    candidates.extend(
        debug_dirs
            .iter()
            .filter_map(|debug_dir| build_id_path(debug_dir, &link_build_id)),
    );
    candidates
        .iter()
        .find_map(|candidate| read_matching(candidate, &link_build_id, None))
}

/// Reads `candidate` and keeps it if it is an ELF file with DWARF that matches: when both
/// sides have a build ID they must be equal; otherwise the debuglink CRC must match.
fn read_matching(
    candidate: &Path,
    expected_build_id: &str,
    debuglink: Option<&DebugLink>,
) -> Option<FoundFile> {
    let data = std::fs::read(candidate).ok()?;
    let file = parse_elf(candidate, &data).ok()?;
    if !has_dwarf(&file) {
        return None;
    }
    let candidate_build_id = build_id_hex(&file);
    let matches = if !expected_build_id.is_empty() && !candidate_build_id.is_empty() {
        candidate_build_id == expected_build_id
    } else {
        debuglink.is_some_and(|link| crc32fast::hash(&data) == link.crc32)
    };
    drop(file);
    matches.then(|| FoundFile {
        path: candidate.to_path_buf(),
        data,
    })
}
