//! Helpers shared by the integration tests: compile real C / Rust programs into a temp dir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use pgo_binary::{Binary, BlockCounts, CallKind, Cfg};

/// Compile `src` (C) with `cc <opt> -g` into `dir/name`.
pub fn cc(dir: &Path, name: &str, src: &str, opt: &str, extra: &[&str]) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let out = dir.join(name);
    let status = Command::new("cc")
        .arg(opt)
        .arg("-g")
        .arg("-Wl,--build-id=sha1")
        .args(extra)
        .arg(&c)
        .arg("-o")
        .arg(&out)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed for {name}");
    out
}

/// Compile `src` (Rust) with `rustc -O -g` into `dir/name`.
pub fn rustc(dir: &Path, name: &str, src: &str) -> PathBuf {
    let rs = dir.join(format!("{name}.rs"));
    std::fs::write(&rs, src).unwrap();
    let out = dir.join(name);
    let status = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["-O", "-g", "--edition", "2021", "-C", "codegen-units=1"])
        .arg(&rs)
        .arg("-o")
        .arg(&out)
        .status()
        .expect("run rustc");
    assert!(status.success(), "rustc failed for {name}");
    out
}

/// Blocks that lie on a cycle (reachable from one of their own successors).
pub fn loop_blocks(cfg: &Cfg) -> Vec<usize> {
    let n = cfg.blocks.len();
    (0..n)
        .filter(|&b| {
            let mut seen = vec![false; n];
            let mut stack: Vec<usize> = cfg.blocks[b].successors.iter().map(|s| s.0).collect();
            while let Some(x) = stack.pop() {
                if x == b {
                    return true;
                }
                if !std::mem::replace(&mut seen[x], true) {
                    stack.extend(cfg.blocks[x].successors.iter().map(|s| s.0));
                }
            }
            false
        })
        .collect()
}

/// Name of the direct-call target, if it resolves to a symbol (PLT stubs are `name@plt`).
pub fn callee_name(bin: &Binary, kind: CallKind) -> Option<&str> {
    match kind {
        CallKind::Direct { target } => bin.function_at(target).map(|f| f.name.as_str()),
        CallKind::Indirect => None,
    }
}

/// Check inflow + entry == count == outflow + exit at every block, within `tol` (relative to
/// the largest count).
pub fn assert_conservation(cfg: &Cfg, c: &BlockCounts, tol: f64) {
    let n = cfg.blocks.len();
    let mut inflow = c.entry.clone();
    let mut outflow = c.exit.clone();
    for &((u, v), f) in &c.edges {
        assert!(f >= -1e-9, "negative edge flow {f}");
        outflow[u] += f;
        inflow[v] += f;
    }
    let scale = c.block.iter().cloned().fold(1.0, f64::max);
    for b in 0..n {
        assert!(
            (inflow[b] - c.block[b]).abs() <= tol * scale,
            "block {b}: inflow {} != count {}",
            inflow[b],
            c.block[b]
        );
        assert!(
            (outflow[b] - c.block[b]).abs() <= tol * scale,
            "block {b}: outflow {} != count {}",
            outflow[b],
            c.block[b]
        );
    }
}

/// Hot loop with a cold, never-returning error path.
pub const LOOP_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
__attribute__((noinline)) long sum_checked(const int *v, int n) {
    long s = 0;
    for (int i = 0; i < n; i++) {
        int x = v[i];
        if (__builtin_expect(x < 0, 0)) {
            fprintf(stderr, "negative value %d at %d\n", x, i);
            abort();
        }
        s += x * 3 + (x >> 2);
    }
    return s;
}
int main(int argc, char **argv) {
    int v[64];
    for (int i = 0; i < 64; i++) v[i] = i * argc;
    return (int)(sum_checked(v, 64) & 0x7f);
}
"#;
