//! The sample profile writer on a hand-made profile whose right answer is known, and LLVM's own
//! reader (`llvm-profdata-22 show --sample`) on what it writes.

use pgo_backend_llvm::sample_profile::{self, Options};
use pgo_profile::{FunctionInfo, LineInfo, Profile, ProfileBuilder};
use std::process::Command;

/// main (start 10) calls work at line 12 (offset 2); work (start 20) inlined `step` (start 30)
/// at line 22 (offset 2); the leaf sample is in step at line 31 (offset 1). A second stack
/// calls leaf `cold` from main line 14 (offset 4). One sample lies in the kernel.
fn profile() -> Profile {
    let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
    let f = |b: &mut ProfileBuilder, name: &str, line: i64| {
        b.function(FunctionInfo {
            name,
            system_name: name,
            filename: "src/main.rs",
            start_line: line,
        })
    };
    let main = f(&mut b, "main", 10);
    let work = f(&mut b, "work", 20);
    let step = f(&mut b, "step", 30);
    let cold = f(&mut b, "cold", 40);
    let kernel = f(&mut b, "kernel_fn", 1);
    let line = |function, line| LineInfo {
        function,
        line,
        column: 0,
    };
    let main_calls_work = b.location(None, 0x1000, &[line(main, 12)]);
    let main_calls_cold = b.location(None, 0x1010, &[line(main, 14)]);
    let in_step = b.location(None, 0x2000, &[line(step, 31), line(work, 22)]);
    let in_work = b.location(None, 0x2010, &[line(work, 23)]);
    let in_cold = b.location(None, 0x3000, &[line(cold, 41)]);
    let in_kernel = b.location(None, 0xffff_ffff_8100_0000, &[line(kernel, 2)]);
    b.add_sample(&[in_step, main_calls_work], &[6, 6], &[])
        .unwrap();
    b.add_sample(&[in_work, main_calls_work], &[2, 2], &[])
        .unwrap();
    b.add_sample(&[in_cold, main_calls_cold], &[1, 1], &[])
        .unwrap();
    b.add_sample(&[in_kernel, in_cold, main_calls_cold], &[1, 1], &[])
        .unwrap();
    b.build()
}

#[test]
fn stacks_become_records_call_targets_and_inlined_call_sites() {
    let (text, summary) = sample_profile::write(&profile(), &Options::default()).unwrap();
    assert_eq!(
        text,
        "cold:2:2\n 1: 2\n\
         main:10:0\n 2: 0 work:8\n 4: 0 cold:2\n\
         work:8:8\n 2: step:6\n  1: 6\n 3: 2\n",
        "a caller's calls are call targets (and count toward its total); an inline frame of \
         the profiled binary is a nested record"
    );
    assert_eq!(summary.functions, 3);
    assert_eq!(summary.inlined_records, 1);
    assert_eq!(summary.samples, 10);
    assert_eq!(summary.dropped_samples, 0);
}

#[test]
fn a_decided_inline_nests_the_callees_samples_under_the_call_site() {
    let mut options = Options::default();
    options
        .inline_contexts
        .insert(("main".into(), 2, "work".into()));
    let (text, summary) = sample_profile::write(&profile(), &options).unwrap();
    assert_eq!(
        text,
        "cold:2:2\n 1: 2\n\
         main:10:0\n 2: work:8\n  2: step:6\n   1: 6\n  3: 2\n 4: 0 cold:2\n"
    );
    assert_eq!(summary.decided_contexts, 1);
    assert_eq!(summary.inlined_records, 2);
}

#[test]
fn llvm_profdata_reads_what_we_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::default();
    options
        .inline_contexts
        .insert(("main".into(), 2, "work".into()));
    let (text, _) = sample_profile::write(&profile(), &options).unwrap();
    let path = dir.path().join("p.txt");
    std::fs::write(&path, text).unwrap();
    let out = Command::new("llvm-profdata-22")
        .args(["show", "--sample", "--all-functions"])
        .arg(&path)
        .output()
        .expect("llvm-profdata-22 runs (Debian package llvm-22; `cargo xtask test` installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Function: main: 10, 0, 1 sampled lines"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Function: cold: 2, 2, 1 sampled lines"),
        "{stdout}"
    );
    // The nested record for the decided call site.
    assert!(
        stdout.contains("2: inlined callee: work: 8, 0, 1 sampled lines"),
        "{stdout}"
    );
}
