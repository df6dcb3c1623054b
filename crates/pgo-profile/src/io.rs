//! Reading and writing pprof files: gzip detected on input, always written gzipped, atomically.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use prost::Message;

use crate::Error;
use crate::proto::Profile;
use crate::validate::validate;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// True when `bytes` start like a gzip stream.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Decompresses `bytes` if they are gzipped; returns them unchanged otherwise.
pub fn gunzip_if_needed(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if !is_gzip(&bytes) {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "gzip data is truncated".to_string(),
            _ => format!("corrupt gzip data ({e})"),
        })?;
    Ok(out)
}

/// What reading a perf.data file as a profile says.
pub(crate) const PERF_DATA_UNREADABLE: &str = "a perf.data file (from `perf record`), not a \
    pprof profile: its addresses need symbolizing, which the `pgo` command does (`pgo convert \
    FILE -o profile.pb.gz`) and this library does not (pgo_collect::import_perf_data does)";

/// Decodes a pprof profile from raw or gzipped protobuf bytes and validates it.
pub fn decode_profile(bytes: Vec<u8>) -> Result<Profile, String> {
    if bytes.is_empty() {
        return Err("file is empty (0 bytes), not a profile".into());
    }
    let raw = gunzip_if_needed(bytes)?;
    if raw.is_empty() {
        return Err("gzip data decompresses to nothing, not a profile".into());
    }
    if crate::is_perf_data(&raw) {
        return Err(PERF_DATA_UNREADABLE.into());
    }
    let profile = Profile::decode(&raw[..])
        .map_err(|e| format!("not a pprof profile: protobuf decoding failed ({e})"))?;
    validate(&profile)?;
    Ok(profile)
}

/// Reads, decodes and validates the pprof profile at `path`.
pub fn read_profile(path: impl AsRef<Path>) -> Result<Profile, Error> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    decode_profile(bytes).map_err(|problem| Error::new(path, problem))
}

/// Reads a whole file, with an error that names it.
pub fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::new(path, format!("cannot read: {}", io_reason(&e))))
}

/// The profile as gzipped protobuf, the form pprof tools expect on disk. Compressed for speed,
/// as Go's runtime/pprof does (`gzip.BestSpeed`): profiles are written far more than stored.
pub fn encode_profile(profile: &Profile) -> Vec<u8> {
    let raw = profile.encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).expect("writing to a Vec cannot fail");
    gz.finish().expect("writing to a Vec cannot fail")
}

/// Writes `profile` gzipped to `path`, atomically.
pub fn write_profile(path: impl AsRef<Path>, profile: &Profile) -> Result<(), Error> {
    write_atomic(path.as_ref(), &encode_profile(profile))
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader never sees a half-written file and a failed write leaves nothing behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let fail = |e: std::io::Error| Error::new(path, format!("cannot write: {}", io_reason(&e)));
    if path.is_dir() {
        return Err(Error::new(path, "cannot write: is a directory"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A temporary file is private (0600); the output should get what any new file gets
    // (0666 less the umask), or keep the mode of the file it replaces.
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(_) => 0o666 & !current_umask(),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// The process's umask, read from /proc (setting it to read it would race with other threads).
fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// The OS reason without Rust's " (os error N)" suffix.
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
