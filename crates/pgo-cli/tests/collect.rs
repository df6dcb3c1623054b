//! `pgo collect` end to end: real programs (Rust, C, Go) sampled with perf_event_open, checked
//! against independent truths (callgrind instruction counts, Go's own runtime/pprof, the
//! source text), plus threads, forks, crashes, exit codes, Ctrl-C, attach, URLs and errors.

mod common;

/// These tests measure CPU time; running them side by side on a 2-core machine would skew
/// what they measure (and Go's own profiler in particular), so they take turns.
static CPU: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cpu_turn() -> std::sync::MutexGuard<'static, ()> {
    CPU.lock().unwrap_or_else(|e| e.into_inner())
}

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use pgo_profile::{Profile, ProfileView};

/// Builds `fixtures/go-cpu` with `go` into `dir`.
fn go_fixture(go: &Path, dir: &Path) -> PathBuf {
    let binary = dir.join("gocpu");
    let status = Command::new(go)
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(root().join("fixtures/go-cpu"))
        .env("GOTOOLCHAIN", "local")
        .status()
        .unwrap();
    assert!(status.success(), "go build of fixtures/go-cpu");
    binary
}

/// Builds `fixtures/collect-c/workloads.c` into `dir`.
fn c_fixture(dir: &Path) -> PathBuf {
    c_fixture_with(dir, "workloads", &["-fno-omit-frame-pointer", "-g"])
}

/// Builds `fixtures/collect-c/workloads.c` into `dir/name` with `-O1 -pthread` and `flags`.
fn c_fixture_with(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new("cc")
        .args(["-O1", "-pthread"])
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(root().join("fixtures/collect-c/workloads.c"))
        .status()
        .expect("cc runs");
    assert!(status.success());
    out
}

fn load(path: &Path) -> Profile {
    pgo_profile::read_profile(path).expect("pgo collect writes a valid profile")
}

/// Sum of the cpu value per function, cumulative (once per sample) or flat (leaf frame).
fn shares(p: &Profile, cumulative: bool) -> BTreeMap<String, f64> {
    shares_of(p, cumulative, false)
}

/// [`shares`] with `user_only`: kernel frames left out, so a sample taken in a system call or
/// a page fault counts for the program's function that entered the kernel, as a SIGPROF
/// profiler (Go's runtime/pprof) counts it.
fn shares_of(p: &Profile, cumulative: bool, user_only: bool) -> BTreeMap<String, f64> {
    let view = ProfileView::new(p);
    let index = view.sample_index(Some("cpu")).unwrap();
    let total: i64 = p.sample.iter().map(|s| s.value[index]).sum();
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for s in &p.sample {
        // Go's signal-based profiler puts runtime.asyncPreempt, which it injects into a running
        // goroutine to preempt it, on top of the interrupted function: count that function.
        let names: Vec<String> = view
            .frames(s)
            .filter(|f| !user_only || f.location.address < pgo_profile::KERNEL_ADDRESS_START)
            .map(|f| view.frame_name(&f).into_owned())
            .skip_while(|n| n == "runtime.asyncPreempt")
            .collect();
        let counted: Vec<&String> = if cumulative {
            let mut seen = std::collections::BTreeSet::new();
            names.iter().filter(|n| seen.insert(n.as_str())).collect()
        } else {
            names.first().into_iter().collect()
        };
        for n in counted {
            *out.entry(n.clone()).or_default() += s.value[index] as f64 / total as f64;
        }
    }
    out
}

/// Inclusive instruction counts per function from `callgrind_annotate --inclusive=yes`.
fn callgrind_inclusive(binary: &Path, args: &[&str], dir: &Path) -> BTreeMap<String, u64> {
    let out = dir.join("callgrind.out");
    let status = Command::new("valgrind")
        .args(["--tool=callgrind", "--quiet"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(binary)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("valgrind runs (it is on every machine of this kind)");
    assert!(status.success());
    let text = Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(&out)
        .output()
        .expect("callgrind_annotate runs");
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&text.stdout).lines() {
        // "1,234,567 (12.3%)  src/main.rs:collect_rust::sixty [/path/bin]"
        let line = line.trim();
        let Some((count, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(count) = count.replace(',', "").parse::<u64>() else {
            continue;
        };
        // A function's lines may be listed under several files (inlined code); its own entry,
        // the largest, is the function's inclusive count.
        if let Some((_, func)) = rest
            .split_whitespace()
            .find(|w| w.contains(':'))
            .and_then(|w| w.split_once(':'))
        {
            let entry = counts.entry(func.to_string()).or_insert(0);
            *entry = (*entry).max(count);
        }
    }
    counts
}

fn check_rust_accuracy(frame_pointers: bool) {
    let dir = tempfile::tempdir().unwrap();
    let binary = rust_fixture(frame_pointers);
    let truth = callgrind_inclusive(&binary, &["4"], dir.path());
    let three = [
        "collect_rust::sixty",
        "collect_rust::thirty",
        "collect_rust::ten",
    ];
    let truth_total: u64 = three.iter().map(|f| truth[*f]).sum();

    let out = dir.path().join("rust.pb.gz");
    let unwind = if frame_pointers { "fp" } else { "dwarf" };
    ok(pgo(&[
        &"collect",
        &"--unwind",
        &unwind,
        &"-o",
        &out,
        &"--",
        &binary,
        &"400",
    ]));
    let profile = load(&out);
    let cum = shares(&profile, true);
    let ours_total: f64 = three
        .iter()
        .map(|f| cum.get(*f).copied().unwrap_or(0.0))
        .sum();
    for f in three {
        let want = 100.0 * truth[f] as f64 / truth_total as f64;
        let got = 100.0 * cum.get(f).copied().unwrap_or(0.0) / ours_total;
        assert!(
            (got - want).abs() <= 5.0,
            "{f}: {got:.1}% sampled vs {want:.1}% of instructions (callgrind)"
        );
    }
    assert!(
        cum.get("collect_rust::run").copied().unwrap_or(0.0) > 0.9,
        "run is on (almost) every stack: {cum:?}"
    );

    // Inline frames and start lines, against the source text.
    assert_collect_rust_symbolized(&profile);
    let view = ProfileView::new(&profile);
    // Exact addresses and the main binary's mapping with its build ID.
    let main = &profile.mapping[0];
    assert!(view.str(main.filename).ends_with("collect-rust"));
    assert!(
        profile
            .location
            .iter()
            .filter(|l| l.mapping_id == main.id)
            .all(|l| l.address >= main.memory_start && l.address < main.memory_limit)
    );
}

#[test]
fn rust_shares_match_callgrind_with_frame_pointers() {
    let _turn = cpu_turn();
    check_rust_accuracy(true);
}

#[test]
fn go_profile_agrees_with_runtime_pprof_and_go_build_accepts_it() {
    let _turn = cpu_turn();
    let Some(go) = go() else { return };
    let dir = tempfile::tempdir().unwrap();
    let binary = go_fixture(&go, dir.path());
    let ours = dir.path().join("ours.pb.gz");
    let theirs = dir.path().join("theirs.pb.gz");
    // One run, two profilers: ours from outside, Go's runtime/pprof from inside.
    let o = pgo(&[
        &"collect",
        &"-o",
        &ours,
        &"--",
        &binary,
        &"-seconds",
        &"5",
        &"-cpuprofile",
        &theirs,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unwinding: frame pointers (a Go binary"),
        "{}",
        stderr(&o)
    );
    // Go's SIGPROF profile sees no kernel frames: its time in the kernel is the calling
    // function's, so ours is compared by its user-space leaves.
    let (a, b) = (
        shares_of(&load(&ours), false, true),
        shares(&load(&theirs), false),
    );
    let top10 = |m: &BTreeMap<String, f64>| {
        let mut v: Vec<(&String, &f64)> = m.iter().collect();
        v.sort_by(|x, y| y.1.total_cmp(x.1));
        v.into_iter()
            .take(10)
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>()
    };
    let mut union = top10(&a);
    union.extend(top10(&b));
    union.sort();
    union.dedup();
    // Both distributions renormalized over the union of the two top-10 lists.
    let sum = |m: &BTreeMap<String, f64>| {
        union
            .iter()
            .map(|f| m.get(f).copied().unwrap_or(0.0))
            .sum::<f64>()
    };
    let (sa, sb) = (sum(&a), sum(&b));
    let overlap: f64 = union
        .iter()
        .map(|f| (a.get(f).copied().unwrap_or(0.0) / sa).min(b.get(f).copied().unwrap_or(0.0) / sb))
        .sum();
    assert!(
        overlap >= 0.9,
        "top-10 overlap {overlap:.3}: ours {a:?} theirs {b:?}"
    );

    // runtime.memmove is hand-written and sets up no frame, so the kernel's frame-pointer walk
    // skips whoever called it; the collector puts the caller back (the return address at the
    // stack pointer). Every caller the profile gives it must really call it: its code has a
    // CALL runtime.memmove (go tool objdump), where the caller's caller mostly has none.
    let callers = callers_of(&load(&ours), |f| f == "runtime.memmove");
    let total: i64 = callers.values().sum();
    assert!(
        total >= 20,
        "too few samples in runtime.memmove: {callers:?}"
    );
    let calls_memmove = |function: &str| {
        let out = Command::new(&go)
            .args(["tool", "objdump", "-s"])
            .arg(format!("^{}$", regex_quote(function)))
            .arg(&binary)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("CALL runtime.memmove(SB)")
    };
    let direct: i64 = callers
        .iter()
        .filter(|(f, _)| calls_memmove(f))
        .map(|(_, n)| n)
        .sum();
    assert!(
        direct * 10 >= total * 9,
        "runtime.memmove's callers in our profile, by samples (under 90% call it): {callers:?}"
    );

    // Go's compiler takes our profile (it refuses ones without start lines).
    let status = Command::new(&go)
        .arg("build")
        .arg(format!("-pgo={}", ours.display()))
        .arg("-o")
        .arg(dir.path().join("gocpu-pgo"))
        .arg(".")
        .current_dir(root().join("fixtures/go-cpu"))
        .env("GOTOOLCHAIN", "local")
        .status()
        .unwrap();
    assert!(status.success(), "go build -pgo accepts our profile");
}

#[test]
fn a_go_program_under_a_shell_keeps_whole_stacks_in_dwarf_mode() {
    // `pgo collect -- sh train.sh` records in DWARF mode (the shell has no symbols to check
    // for frame pointers). Go runs its garbage collector and allocator on a system stack
    // that a copy of the goroutine's stack does not hold; Go's frame pointers link across,
    // so the kernel's frame-pointer chain carries those stacks on to their goroutine.
    let _turn = cpu_turn();
    let Some(go) = go() else { return };
    let dir = tempfile::tempdir().unwrap();
    let binary = go_fixture(&go, dir.path());
    let out = dir.path().join("viash.pb.gz");
    let script = format!("'{}' -seconds 3", binary.display());
    let o = pgo(&[&"collect", &"-o", &out, &"--", &"sh", &"-c", &script]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("unwinding: dwarf"), "{}", stderr(&o));
    let profile = load(&out);
    let view = ProfileView::new(&profile);
    // Samples on the system stack (under runtime.systemstack), and how many of them reach
    // the goroutine's (or the thread's) outermost frame.
    let (mut on_system_stack, mut whole) = (0, 0);
    for s in &profile.sample {
        let names: Vec<String> = view
            .frames(s)
            .map(|f| view.frame_name(&f).into_owned())
            .collect();
        if !names.iter().any(|n| n == "runtime.systemstack") {
            continue;
        }
        on_system_stack += s.value[0];
        let root = names.last().map(String::as_str).unwrap_or("");
        if ["runtime.goexit", "runtime.mstart", "runtime.rt0_go"].contains(&root) {
            whole += s.value[0];
        }
    }
    assert!(
        on_system_stack >= 20,
        "{on_system_stack} samples on Go's system stack"
    );
    assert!(
        whole * 10 >= on_system_stack * 9,
        "{whole} of {on_system_stack} samples on Go's system stack reach goexit, mstart or rt0_go"
    );
}

/// Per caller, how many samples have a frame matching `callee` under it (its first such
/// frame).
fn callers_of(p: &Profile, callee: impl Fn(&str) -> bool) -> BTreeMap<String, i64> {
    let view = ProfileView::new(p);
    let count = view.sample_index(Some("samples")).unwrap();
    let mut callers: BTreeMap<String, i64> = BTreeMap::new();
    for s in &p.sample {
        let names: Vec<String> = view
            .frames(s)
            .map(|f| view.frame_name(&f).into_owned())
            .collect();
        let at = names.iter().position(|n| callee(n));
        if let Some(caller) = at.and_then(|i| names.get(i + 1)) {
            *callers.entry(caller.clone()).or_default() += s.value[count];
        }
    }
    callers
}

/// Asserts that `callers` (from [`callers_of`]) hold at least 200 samples of the callee
/// `what` and that at least 90% of them have `caller` as the caller.
fn assert_called_from(callers: &BTreeMap<String, i64>, caller: &str, what: &str) {
    let total: i64 = callers.values().sum();
    assert!(total >= 200, "too few samples in {what}: {callers:?}");
    let from = callers.get(caller).copied().unwrap_or(0);
    assert!(
        from * 10 >= total * 9,
        "{what}'s callers ({caller} calls it): {callers:?}"
    );
}

/// `text` as a Go regexp matching exactly it.
fn regex_quote(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escape = "\\.+*?()|[]{}^$".contains(c);
            escape.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

fn thread_ids(p: &Profile) -> std::collections::BTreeSet<i64> {
    let view = ProfileView::new(p);
    p.sample
        .iter()
        .flat_map(|s| {
            s.label
                .iter()
                .filter(|l| view.str(l.key) == "thread_id")
                .map(|l| l.num)
        })
        .collect()
}

#[test]
fn a_libc_leaf_keeps_its_caller_with_frame_pointers() {
    // libc's memcpy sets up no frame, so the kernel's frame-pointer walk goes from it straight
    // to its caller's caller; the collector puts the caller back from the stack, finding the
    // return address by libc's call-frame information (the library has no symbols).
    let _turn = cpu_turn();
    let dir = tempfile::tempdir().unwrap();
    let bin = c_fixture(dir.path());
    let out = dir.path().join("copy.pb.gz");
    let o = pgo(&[&"collect", &"-o", &out, &"--", &bin, &"copy"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unwinding: frame pointers"),
        "{}",
        stderr(&o)
    );
    let callers = callers_of(&load(&out), |f| {
        f.contains("memcpy") || f.contains("memmove")
    });
    assert_called_from(&callers, "copy_block", "memcpy");
}

#[test]
fn a_function_that_ends_in_a_tail_call_is_put_back_as_its_callees_caller() {
    // Built with -O2, tail_entry ends in `jmp tail_target`: no frame of it is on the stack
    // while tail_target runs, and the return address above tail_target is main's call of
    // tail_entry. The collector finds the one chain of tail jumps from the called function to
    // the sampled one in the binary and puts tail_entry back, in both unwinding modes.
    let _turn = cpu_turn();
    let dir = tempfile::tempdir().unwrap();
    let bin = c_fixture_with(
        dir.path(),
        "tail",
        &["-O2", "-g", "-fno-omit-frame-pointer"],
    );
    let disassembly = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(&bin)
        .output()
        .expect("objdump runs");
    let text = String::from_utf8_lossy(&disassembly.stdout);
    let entry: String = text
        .split("\n\n")
        .find(|f| f.contains("<tail_entry>:"))
        .expect("tail_entry in the binary")
        .into();
    assert!(
        entry
            .lines()
            .any(|l| l.contains("jmp") && l.contains("<tail_target>")),
        "the compiler did not make tail_entry's call a tail call:\n{entry}"
    );
    for unwind in ["fp", "dwarf"] {
        let out = dir.path().join(format!("tail-{unwind}.pb.gz"));
        let o = pgo(&[
            &"collect",
            &"--unwind",
            &unwind,
            &"-o",
            &out,
            &"--",
            &bin,
            &"tail",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let callers = callers_of(&load(&out), |f| f == "tail_target");
        assert_called_from(
            &callers,
            "tail_entry",
            &format!("tail_target (--unwind {unwind})"),
        );
    }
}

#[test]
fn every_thread_and_forked_child_is_sampled() {
    let _turn = cpu_turn();
    let dir = tempfile::tempdir().unwrap();
    let bin = c_fixture(dir.path());
    let out = dir.path().join("t.pb.gz");
    ok(pgo(&[&"collect", &"-o", &out, &"--", &bin, &"threads"]));
    let p = load(&out);
    let cum = shares(&p, true);
    assert!(
        cum.get("thread_a_work").copied().unwrap_or(0.0) > 0.2,
        "{cum:?}"
    );
    assert!(
        cum.get("thread_b_work").copied().unwrap_or(0.0) > 0.2,
        "{cum:?}"
    );
    assert!(thread_ids(&p).len() >= 2, "samples carry both thread ids");

    ok(pgo(&[&"collect", &"-o", &out, &"--", &bin, &"fork"]));
    let p = load(&out);
    let cum = shares(&p, true);
    assert!(
        cum.get("parent_work").copied().unwrap_or(0.0) > 0.2,
        "{cum:?}"
    );
    assert!(
        cum.get("child_work").copied().unwrap_or(0.0) > 0.2,
        "the forked child is sampled: {cum:?}"
    );
    let view = ProfileView::new(&p);
    let pids: std::collections::BTreeSet<i64> = p
        .sample
        .iter()
        .flat_map(|s| {
            s.label
                .iter()
                .filter(|l| view.str(l.key) == "pid")
                .map(|l| l.num)
        })
        .collect();
    assert_eq!(pids.len(), 2, "a pid label tells the two processes apart");
}

#[test]
fn a_crashing_program_still_gets_a_profile_and_its_status_is_passed_on() {
    let _turn = cpu_turn();
    let dir = tempfile::tempdir().unwrap();
    let bin = c_fixture(dir.path());
    let out = dir.path().join("crash.pb.gz");
    let o = pgo(&[&"collect", &"-o", &out, &"--", &bin, &"crash"]);
    assert_eq!(o.status.code(), Some(128 + 11), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("was killed by signal 11 (SIGSEGV)"),
        "{}",
        stderr(&o)
    );
    assert!(shares(&load(&out), true).contains_key("before_crash"));

    let o = pgo(&[&"collect", &"-o", &out, &"--", &bin, &"exit", &"3"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("exited with status 3"),
        "{}",
        stderr(&o)
    );
    assert!(shares(&load(&out), true).contains_key("before_exit"));
}

#[test]
fn a_program_built_without_debug_info_is_named_at_collection() {
    // Cargo's default release profile has no line tables: a profile of such a build names
    // functions only. The user hears it when collecting, not after training and two builds.
    let _turn = cpu_turn();
    let dir = tempfile::tempdir().unwrap();
    let bare = c_fixture_with(
        dir.path(),
        "workloads-nodebug",
        &["-fno-omit-frame-pointer"],
    );
    let out = dir.path().join("p.pb.gz");
    let o = pgo(&[&"collect", &"-o", &out, &"--", &bare, &"exit", &"0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("workloads-nodebug: 100% of its samples have no source line")
            && err.contains("--allow-missing"),
        "{err}"
    );
    // The same program with -g: no such warning.
    let with_lines = c_fixture(dir.path());
    let o = pgo(&[&"collect", &"-o", &out, &"--", &with_lines, &"exit", &"0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("no source line"), "{}", stderr(&o));
}

#[test]
fn ctrl_c_stops_the_program_and_writes_the_profile() {
    let _turn = cpu_turn();
    let dir = tempfile::tempdir().unwrap();
    let bin = c_fixture(dir.path());
    let out = dir.path().join("int.pb.gz");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgo"))
        .args(["collect", "-o"])
        .arg(&out)
        .arg("--")
        .arg(&bin)
        .args(["burn", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "burning\n");
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc_kill(child.id() as i32, 2) };
    let start = std::time::Instant::now();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "stopped promptly"
    );
    assert_eq!(
        status.code(),
        Some(128 + 2),
        "the program got SIGINT too: {err}"
    );
    assert!(
        shares(&load(&out), true).contains_key("burn_forever"),
        "{err}"
    );
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn attach_to_a_running_process() {
    let _turn = cpu_turn();
    let dir = tempfile::tempdir().unwrap();
    let bin = c_fixture(dir.path());
    let mut target = Command::new(&bin)
        .args(["burn", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(target.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let out = dir.path().join("attach.pb.gz");
    let pid = target.id().to_string();
    let o = pgo(&[
        &"collect",
        &"--pid",
        &pid,
        &"--duration",
        &"1s",
        &"-o",
        &out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    target.kill().unwrap();
    target.wait().unwrap();
    let p = load(&out);
    let samples: i64 = p.sample.iter().map(|s| s.value[0]).sum();
    assert!(samples > 1200, "about a second at 4000 Hz: {samples}");
    assert!(shares(&p, true).get("burn_forever").copied().unwrap_or(0.0) > 0.8);
}

#[test]
fn url_pulls_a_profile_from_go_net_http_pprof() {
    let _turn = cpu_turn();
    let Some(go) = go() else { return };
    let dir = tempfile::tempdir().unwrap();
    let binary = go_fixture(&go, dir.path());
    let (mut server, addr) =
        spawn_server(Command::new(&binary).args(["-seconds", "6", "-http", "127.0.0.1:0"]));
    let out = dir.path().join("url.pb.gz");
    let url = format!("http://{addr}/debug/pprof/profile?seconds=2");
    let o = pgo(&[&"collect", &"--url", &url, &"-o", &out]);
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(shares(&load(&out), true).contains_key("main.mix64"));
}

/// Starts a profiling server that prints `listening on ADDR` first; returns it and ADDR.
fn spawn_server(cmd: &mut Command) -> (std::process::Child, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the address")
        .to_string();
    (child, addr)
}

/// A one-shot HTTP server on loopback that answers `body` with `status`.
fn serve_once(status: &'static str, body: &'static [u8]) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
        }
    });
    format!("http://{addr}/debug/pprof/profile?seconds=1")
}

/// Exit code 2, one line naming `what`, and no output file.
fn assert_collect_fails(
    args: &[&dyn AsRef<std::ffi::OsStr>],
    out: &Path,
    what: &str,
    problem: &str,
) {
    let o = pgo(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("pgo: error: ") && err.contains(what) && err.contains(problem),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn collect_errors_are_one_line() {
    let _turn = cpu_turn();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("e.pb.gz");
    assert_collect_fails(
        &[&"collect", &"-o", &out, &"--", &"/no/such/program"],
        &out,
        "/no/such/program",
        "not found",
    );
    assert_collect_fails(
        &[&"collect", &"--pid", &"999999999", &"-o", &out],
        &out,
        "999999999",
        "no process",
    );
    let bad_out = dir.path().join("missing/dir/x.pb.gz");
    assert_collect_fails(
        &[&"collect", &"-o", &bad_out, &"--", &"true"],
        &bad_out,
        &bad_out.display().to_string(),
        "cannot write",
    );
    let closed = "http://127.0.0.1:1/debug/pprof/profile?seconds=1";
    assert_collect_fails(
        &[&"collect", &"--url", &closed, &"-o", &out],
        &out,
        closed,
        "cannot connect",
    );
    let url = serve_once("200 OK", b"this is not a profile");
    assert_collect_fails(
        &[&"collect", &"--url", &url, &"-o", &out],
        &out,
        &url,
        "not a profile",
    );
    let url = serve_once(
        "500 Internal Server Error",
        b"could not enable CPU profiling: already in use\n",
    );
    assert_collect_fails(
        &[&"collect", &"--url", &url, &"-o", &out],
        &out,
        &url,
        "HTTP 500: could not enable CPU profiling",
    );
    assert_collect_fails(&[&"collect", &"-o", &out], &out, "", "say what to profile");
}

#[test]
fn rust_shares_match_callgrind_with_dwarf_unwinding_of_a_default_release_build() {
    let _turn = cpu_turn();
    check_rust_accuracy(false);
}

#[test]
fn auto_mode_picks_dwarf_for_a_default_rust_build_and_frame_pointers_when_present() {
    let _turn = cpu_turn();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("auto.pb.gz");
    let o = pgo(&[&"collect", &"-o", &out, &"--", &rust_fixture(false), &"20"]);
    assert!(
        stderr(&o).contains("unwinding: dwarf (0 of"),
        "{}",
        stderr(&o)
    );
    let o = pgo(&[&"collect", &"-o", &out, &"--", &rust_fixture(true), &"20"]);
    assert!(
        stderr(&o).contains("unwinding: frame pointers ("),
        "{}",
        stderr(&o)
    );
    // v0 names (as pgo apply builds): the precompiled std, which keeps frame pointers and is
    // most of the functions, is told apart from the program's own code, which has none.
    let v0 = rust_fixture_with("v0", "-Csymbol-mangling-version=v0");
    let o = pgo(&[&"collect", &"-o", &out, &"--", &v0, &"20"]);
    assert!(
        stderr(&o).contains("unwinding: dwarf (0 of"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn stacks_deeper_than_the_stack_copy_are_warned_about() {
    let _turn = cpu_turn();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("short.pb.gz");
    let binary = rust_fixture(false);
    let collect = |bytes: &str| {
        let o = pgo(&[
            &"collect",
            &"--unwind",
            &"dwarf",
            &"--stack-bytes",
            &bytes,
            &"-o",
            &out,
            &"--",
            &binary,
            &"300",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    let err = collect("128");
    assert!(err.contains("deeper than the stack copy"), "{err}");
    assert!(
        err.contains("give a larger --stack-bytes (this run copied 128, at most 65528)"),
        "{err}"
    );
    // The default copy holds this program's stacks.
    let err = collect("65528");
    assert!(!err.contains("deeper than the stack copy"), "{err}");
}

#[test]
fn stacks_deeper_than_the_largest_copy_get_frame_pointers_as_the_advice() {
    // A recursive parser's stacks can outgrow any copy the kernel allows: then a larger
    // --stack-bytes is no advice, frame pointers are.
    let _turn = cpu_turn();
    let dir = tempfile::tempdir().unwrap();
    let binary = c_fixture_with(
        dir.path(),
        "workloads-nofp",
        &["-fomit-frame-pointer", "-g"],
    );
    let out = dir.path().join("deep.pb.gz");
    let o = pgo(&[
        &"collect",
        &"--unwind",
        &"dwarf",
        &"-o",
        &out,
        &"--",
        &binary,
        &"deep",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("deeper than the stack copy")
            && err.contains("the copy is at its largest (65528 bytes): build with frame pointers"),
        "{err}"
    );
    assert!(!err.contains("give a larger --stack-bytes"), "{err}");
}

#[test]
fn url_pulls_a_profile_from_a_rust_service_using_pgo_agent() {
    let _turn = cpu_turn();
    let target = root().join("target/fixture-builds/agent-service");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(root().join("fixtures/agent-service/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success(), "building fixtures/agent-service");
    let (mut service, addr) =
        spawn_server(Command::new(target.join("release/agent-service")).args(["--seconds", "20"]));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("agent.pb.gz");
    let url = format!("http://{addr}/debug/pprof/profile?seconds=2");
    let o = pgo(&[&"collect", &"--url", &url, &"-o", &out]);
    service.kill().unwrap();
    service.wait().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let p = load(&out);
    let view = ProfileView::new(&p);
    let cum = shares(&p, true);
    for f in [
        "agent_service::hash_block",
        "agent_service::sort_records",
        "agent_service::interpret",
    ] {
        assert!(cum.get(f).copied().unwrap_or(0.0) > 0.01, "{f} in {cum:?}");
    }
    // Unlike pprof-rs's own writer, the agent keeps addresses, mappings and start lines.
    assert!(p.location.iter().all(|l| l.address != 0));
    assert!(view.str(p.mapping[0].filename).ends_with("agent-service"));
    assert!(
        p.function
            .iter()
            .any(|f| view.str(f.name) == "agent_service::hash_block" && f.start_line > 0)
    );
}
