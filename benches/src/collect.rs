//! `pgo collect` overhead against the bare program and against `perf record`, in one run with
//! interleaved repetitions; and pgo's symbolization time against `perf script` on a recording
//! of the same workload.
//!
//! The workload is `fixtures/collect-rust` (integer hashing, about 1 s per 400 units), built
//! twice: with frame pointers (compared with `perf record -g`) and without (compared with
//! `perf record --call-graph dwarf`), each tool in its matching unwind mode.
//!
//! Usage: collect-bench PGO_BINARY FP_BUILD NOFP_BUILD [--units N] [--reps N] [--json]

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use pgo_benches::{arg, median, time};

fn argv(parts: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    parts.iter().map(|p| p.as_ref().to_os_string()).collect()
}

fn command(argv: &[OsString]) -> Command {
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    c
}

/// Runs `argv`: the whole command's wall time, and the run time the program printed.
fn run_timed(argv: &[OsString]) -> (f64, f64) {
    let start = std::time::Instant::now();
    let o = command(argv)
        .stderr(std::process::Stdio::null())
        .output()
        .expect("the command runs");
    let wall = start.elapsed().as_secs_f64();
    assert!(o.status.success(), "{argv:?} failed");
    let text = String::from_utf8_lossy(&o.stdout);
    let own = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("collect-rust: ")?
                .split(" in ")
                .nth(1)?
                .strip_suffix(" s")?
                .parse()
                .ok()
        })
        .expect("the program prints its run time");
    (wall, own)
}

/// Samples per second for every recorder here: `pgo collect`'s default
/// (`pgo_record::DEFAULT_FREQUENCY`), so both run at the rate users get.
const FREQUENCY: &str = "4000";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!(
            "usage: collect-bench PGO_BINARY FP_BUILD NOFP_BUILD [--units N] [--reps N] [--json]"
        );
        std::process::exit(2);
    }
    let pgo = PathBuf::from(&args[0]);
    let (fp, nofp) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let units = arg(&args, "--units", 1200u64).to_string();
    let reps: usize = arg(&args, "--reps", 5);
    let dir = std::env::temp_dir().join(format!("pgo-collect-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("out.pb.gz");
    let data = dir.join("perf.data");

    // (name, baseline index for the overhead, argv)
    let variants: Vec<(&str, usize, Vec<OsString>)> = vec![
        ("bare, frame-pointer build", 0, argv(&[&fp, &units])),
        (
            "pgo collect --unwind fp",
            0,
            argv(&[
                &pgo,
                &"collect",
                &"-F",
                &FREQUENCY,
                &"--unwind",
                &"fp",
                &"-o",
                &out,
                &"--",
                &fp,
                &units,
            ]),
        ),
        (
            "perf record -g",
            0,
            argv(&[
                &"perf",
                &"record",
                &"-q",
                &"-e",
                &"cpu-clock",
                &"-F",
                &FREQUENCY,
                &"-g",
                &"-o",
                &data,
                &"--",
                &fp,
                &units,
            ]),
        ),
        ("bare, default build", 3, argv(&[&nofp, &units])),
        (
            "pgo collect --unwind dwarf",
            3,
            argv(&[
                &pgo,
                &"collect",
                &"-F",
                &FREQUENCY,
                &"--unwind",
                &"dwarf",
                &"-o",
                &out,
                &"--",
                &nofp,
                &units,
            ]),
        ),
        (
            "perf record --call-graph dwarf",
            3,
            argv(&[
                &"perf",
                &"record",
                &"-q",
                &"-e",
                &"cpu-clock",
                &"-F",
                &FREQUENCY,
                &"--call-graph",
                &"dwarf",
                &"-o",
                &data,
                &"--",
                &nofp,
                &units,
            ]),
        ),
    ];
    // Two measures per run: the program's own run time (what sampling slows down; the program
    // prints it) and the whole command's wall time (what a user waits, with the tool's start-up
    // and post-processing).
    let mut program: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for rep in 0..reps {
        eprint!("\rrepetition {}/{reps}", rep + 1);
        for (i, (_, _, a)) in variants.iter().enumerate() {
            let (w, own) = run_timed(a);
            wall[i].push(w);
            program[i].push(own);
        }
    }
    eprintln!();
    let program: Vec<f64> = program.into_iter().map(median).collect();
    let wall: Vec<f64> = wall.into_iter().map(median).collect();
    let mut rows = Vec::new();
    eprintln!(
        "{:<32} {:>10} {:>9} {:>10} {:>9}",
        "", "program", "overhead", "wall", "overhead"
    );
    for (i, (name, base, _)) in variants.iter().enumerate() {
        let program_overhead = 100.0 * (program[i] / program[*base] - 1.0);
        let wall_overhead = 100.0 * (wall[i] / wall[*base] - 1.0);
        eprintln!(
            "{name:<32} {:>9.3}s {program_overhead:>+8.1}% {:>9.3}s {wall_overhead:>+8.1}%",
            program[i], wall[i]
        );
        rows.push(serde_json::json!({
            "variant": name,
            "program_seconds": program[i], "program_overhead_percent": program_overhead,
            "wall_seconds": wall[i], "wall_overhead_percent": wall_overhead,
        }));
    }

    // Symbolization: pgo's post-recording processing against `perf script` on the same workload
    // recorded with frame pointers.
    let o = command(&argv(&[
        &pgo,
        &"collect",
        &"--json",
        &"--unwind",
        &"fp",
        &"-o",
        &out,
        &"--",
        &fp,
        &units,
    ]))
    .output()
    .expect("pgo runs");
    let text = String::from_utf8_lossy(&o.stdout);
    let last = text.lines().last().unwrap_or("");
    let summary: serde_json::Value =
        serde_json::from_str(last).expect("pgo collect --json ends with the summary");
    let pgo_processing = summary["processing_seconds"].as_f64().unwrap_or(f64::NAN);
    let pgo_samples = summary["samples"].as_u64().unwrap_or(0);
    time(&mut command(&variants[2].2));
    let script = time(Command::new("perf").args(["script", "-i"]).arg(&data)).seconds;
    // What pgo does per address (lines, inline frames), perf script does with these options.
    let script_lines = time(
        Command::new("perf")
            .args(["script", "-F", "+srcline", "--inline", "-i"])
            .arg(&data),
    )
    .seconds;
    eprintln!(
        "symbolization of the same workload: pgo {pgo_processing:.3}s ({pgo_samples} samples; names, lines, inline frames)\n  perf script {script:.3}s (names only): ratio pgo/perf {:.2}\n  perf script -F +srcline --inline {script_lines:.3}s (lines, inline frames): ratio pgo/perf {:.2}",
        pgo_processing / script,
        pgo_processing / script_lines
    );
    let _ = std::fs::remove_dir_all(&dir);
    if args.iter().any(|a| a == "--json") {
        println!(
            "{}",
            serde_json::json!({
                "units": units, "reps": reps, "results": rows,
                "symbolization": { "pgo_seconds": pgo_processing, "perf_script_seconds": script, "perf_script_srcline_inline_seconds": script_lines, "samples": pgo_samples },
            })
        );
    }
}
