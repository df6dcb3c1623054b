//! Bad input gives one line naming the file and the problem, exit code 2, no panic, and no
//! partial output file. One test per case.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use pgo_profile::proto::Profile;
use prost::Message as _;

/// Asserts `o` failed the way users rely on: exit 2 and one line `pgo: error: FILE: ...PROBLEM...`.
fn assert_fails(o: &Output, file: &Path, problem: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit code 2; stderr: {err}");
    assert!(!err.contains("panicked"), "no panic: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    let prefix = format!("pgo: error: {}: ", file.display());
    assert!(err.starts_with(&prefix), "names the file ({prefix}): {err}");
    assert!(err.contains(problem), "says {problem:?}: {err}");
    assert!(o.stdout.is_empty(), "prints nothing else");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// The committed Go profile, decoded, for tests that break one thing in it.
fn go_profile() -> Profile {
    pgo_profile::read_profile(profile("go-cpu.pb.gz")).unwrap()
}

/// Every command that reads a profile reports the problem the same way; `merge` also must not
/// leave an output behind.
fn assert_all_commands_fail(bad: &Path, problem: &str) {
    let dir = bad.parent().unwrap();
    let out = dir.join("out.pb.gz");
    assert_fails(&pgo(&[&"top", &bad]), bad, problem);
    assert_fails(
        &pgo(&[&"flamegraph", &bad, &"-o", &dir.join("f.svg")]),
        bad,
        problem,
    );
    assert_fails(
        &pgo(&[&"merge", &profile("go-cpu.pb.gz"), &bad, &"-o", &out]),
        bad,
        problem,
    );
    assert!(
        !out.exists() && !dir.join("f.svg").exists(),
        "no output file"
    );
}

#[test]
fn truncated_gzip_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(profile("go-cpu.pb.gz")).unwrap();
    let bad = write(dir.path(), "cut.pb.gz", &bytes[..bytes.len() / 2]);
    assert_all_commands_fail(&bad, "gzip data is truncated");
}

#[test]
fn truncated_raw_protobuf_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(profile("pprof-rs-cpu.pb")).unwrap();
    let bad = write(dir.path(), "cut.pb", &bytes[..bytes.len() - 7]);
    assert_all_commands_fail(&bad, "not a pprof profile");
}

#[test]
fn corrupt_gzip_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(profile("go-cpu.pb.gz")).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    let bad = write(dir.path(), "corrupt.pb.gz", &bytes);
    assert_all_commands_fail(&bad, "corrupt gzip data");
}

#[test]
fn random_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // A fixed xorshift sequence: random-looking, the same every run.
    let mut x = 0x9e3779b97f4a7c15u64;
    let bytes: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let bad = write(dir.path(), "random.bin", &bytes);
    assert_all_commands_fail(&bad, "not a pprof profile");
}

#[test]
fn dangling_location_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = go_profile();
    p.sample[17].location_id.push(99_999);
    let bad = write(dir.path(), "dangling.pb.gz", &gzip(&p.encode_to_vec()));
    assert_all_commands_fail(
        &bad,
        "sample 17 refers to location 99999, which does not exist",
    );
}

#[test]
fn dangling_function_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = go_profile();
    let id = p.location[3].id;
    p.location[3].line[0].function_id = 123_456;
    let bad = write(dir.path(), "dangling-fn.pb", &p.encode_to_vec());
    assert_all_commands_fail(
        &bad,
        &format!("location {id} refers to function 123456, which does not exist"),
    );
}

#[test]
fn negative_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = go_profile();
    p.sample[2].value[0] = -3;
    let bad = write(dir.path(), "negative.pb.gz", &gzip(&p.encode_to_vec()));
    assert_all_commands_fail(&bad, "sample 2 has a negative value -3 for samples/count");
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "empty.pb.gz", b"");
    assert_all_commands_fail(&bad, "file is empty");
}

#[test]
fn profile_without_samples() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = go_profile();
    p.sample.clear();
    let bad = write(dir.path(), "nosamples.pb.gz", &gzip(&p.encode_to_vec()));
    let problem = "profile has no samples";
    assert_fails(&pgo(&[&"top", &bad]), &bad, problem);
    let out = dir.path().join("out.pb.gz");
    assert_fails(&pgo(&[&"merge", &bad, &bad, &"-o", &out]), &bad, problem);
    assert!(!out.exists(), "no output file");
}

/// Of several profiles, those without samples (`go build -gcflags=-cpuprofile` writes one per
/// package, an empty one for a package that compiles between two ticks) are skipped with a
/// warning that names them, as `go tool pprof` merges them; the merge is the others'.
#[test]
fn merge_skips_inputs_without_samples() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = go_profile();
    p.sample.clear();
    let empty = write(dir.path(), "nosamples.pb.gz", &gzip(&p.encode_to_vec()));
    let good = profile("go-cpu.pb.gz");
    let out = dir.path().join("out.pb.gz");
    let o = pgo(&[&"merge", &empty, &good, &empty, &"-o", &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("skipped 2 of 3 profiles that have no samples")
            && err.contains(&empty.display().to_string()),
        "{err}"
    );
    assert_eq!(pgo_top_json(&[&out]), pgo_top_json(&[&good]));
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("nope.pb.gz");
    assert_all_commands_fail(&bad, "cannot read: No such file or directory");
}

#[test]
fn merge_of_mismatched_sample_types() {
    let dir = tempfile::tempdir().unwrap();
    let mut b =
        pgo_profile::ProfileBuilder::new(&[("alloc_objects", "count"), ("alloc_space", "bytes")]);
    let f = b.function(pgo_profile::FunctionInfo {
        name: "main.alloc",
        ..Default::default()
    });
    let l = b.location(
        None,
        0,
        &[pgo_profile::LineInfo {
            function: f,
            line: 3,
            column: 0,
        }],
    );
    b.add_sample(&[l], &[2, 4096], &[]).unwrap();
    let heap = dir.path().join("heap.pb.gz");
    pgo_profile::write_profile(&heap, &b.build()).unwrap();
    let out = dir.path().join("m.pb.gz");
    let o = pgo(&[&"merge", &profile("go-cpu.pb.gz"), &heap, &"-o", &out]);
    assert_fails(
        &o,
        &heap,
        "sample types [alloc_objects/count, alloc_space/bytes] do not match",
    );
    assert!(!out.exists());
}

#[test]
fn unwritable_output_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing_dir = dir.path().join("no/such/dir/out.pb.gz");
    let o = pgo(&[&"merge", &profile("go-cpu.pb.gz"), &"-o", &missing_dir]);
    assert_fails(&o, &missing_dir, "cannot write: No such file or directory");
    let o = pgo(&[&"flamegraph", &profile("go-cpu.pb.gz"), &"-o", &dir.path()]);
    assert_fails(&o, dir.path(), "cannot write: is a directory");
    let o = pgo(&[&"convert", &profile("folded.txt"), &"-o", &missing_dir]);
    assert_fails(&o, &missing_dir, "cannot write");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temporary files left"
    );
}

#[test]
fn failed_merge_keeps_the_previous_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = write(dir.path(), "merged.pb.gz", b"previous contents");
    let bad = write(dir.path(), "bad.pb.gz", b"\x1f\x8b garbage");
    let o = pgo(&[&"merge", &profile("go-cpu.pb.gz"), &bad, &"-o", &out]);
    assert_fails(&o, &bad, "gzip");
    assert_eq!(std::fs::read(&out).unwrap(), b"previous contents");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn malformed_folded_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "stacks.folded", b"main;a 10\nmain;b ten\n");
    assert_all_commands_fail(&bad, "line 2: expected \"frame;frame;... COUNT\"");
}

#[test]
fn malformed_perf_script_header() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(profile("perf-script.txt")).unwrap();
    let broken = text.replacen("cpu-clock:", "", 1);
    let bad = write(dir.path(), "perf.txt", broken.as_bytes());
    let o = pgo(&[&"top", &"--from", &"perf-script", &bad]);
    assert_fails(&o, &bad, "line 1: not a `perf script` sample header");
}

#[test]
fn unknown_sample_type() {
    let p = profile("go-cpu.pb.gz");
    let o = pgo(&[&"top", &"--sample-type", &"alloc_space", &p]);
    assert_fails(
        &o,
        &p,
        "has no sample type \"alloc_space\"; it has samples/count, cpu/nanoseconds",
    );
}

#[test]
fn weights_must_match_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let p = profile("go-cpu.pb.gz");
    let out = dir.path().join("o.pb.gz");
    let o = pgo(&[&"merge", &p, &p, &"--weight", &"2", &"-o", &out]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).trim(),
        "pgo: error: give one --weight per input: 2 inputs, 1 weights"
    );
    let o = pgo(&[&"merge", &p, &"--weight=0", &"-o", &out]);
    assert_fails(&o, &p, "weight 0 must be a positive number");
    assert!(!out.exists());
}
