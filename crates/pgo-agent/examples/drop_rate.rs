//! Measures how many SIGPROF samples pprof-rs loses at several frequencies on this machine:
//! busy threads spin in plain arithmetic (no libc, so no sample is lost to the blocklist),
//! and each profile's received count is compared with process CPU time × Hz.
//!
//! ```sh
//! cargo run --release -p pgo-agent --example drop_rate -- [SECONDS=3] [THREADS=2] [HZ...]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[inline(never)]
fn spin(seed: u64) -> u64 {
    let mut x = seed;
    for _ in 0..100_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x ^= x >> 29;
    }
    x
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(3);
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let mut frequencies: Vec<u32> = args.iter().skip(2).filter_map(|s| s.parse().ok()).collect();
    if frequencies.is_empty() {
        frequencies = vec![1000, 250, 100];
    }

    let running = Arc::new(AtomicBool::new(true));
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let running = running.clone();
            std::thread::spawn(move || {
                let mut x = i as u64;
                while running.load(Ordering::Relaxed) {
                    x = spin(x);
                }
                std::hint::black_box(x);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));

    println!("{threads} busy threads, {seconds} s per run");
    for hz in frequencies {
        match pgo_agent::profile_cpu(Duration::from_secs(seconds), hz) {
            Ok(profile) => {
                let s = profile.stats;
                println!(
                    "{hz:>5} Hz: cpu {:.2} s, {} ({:.1}% dropped)",
                    s.cpu_time.as_secs_f64(),
                    s.summary(),
                    s.drop_ratio() * 100.0
                );
            }
            Err(e) => println!("{hz:>5} Hz: {e}"),
        }
    }
    running.store(false, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
}
