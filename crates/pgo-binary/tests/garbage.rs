//! Garbage in, errors or partial CFGs out; never a panic.
mod common;

use common::*;
use pgo_binary::{Binary, Error, Terminator};

/// xorshift64* for deterministic "random" bytes.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Exercise everything on every function; panics are the failure mode under test.
fn poke(bin: &Binary) {
    for f in bin.functions() {
        let Ok(cfg) = bin.cfg(f) else { continue };
        let n = cfg.blocks.len();
        for (i, b) in cfg.blocks.iter().enumerate() {
            assert!(b.start < b.end, "empty block {i}");
            assert!(f.contains(b.start) && b.end <= f.start + f.size);
            assert!(b.successors.iter().all(|&(s, _)| s < n));
        }
        let samples: Vec<(u64, u64)> = (f.start..f.start + f.size.min(256))
            .map(|a| (a, a % 7))
            .collect();
        let c = cfg.infer_counts(&samples);
        assert_conservation(&cfg, &c, 1e-6);
        for a in f.start..=(f.start + f.size.min(64)) {
            let _ = bin.call_at_return_address(a);
            let _ = cfg.block_of(a);
        }
    }
}

#[test]
fn random_bytes_as_function_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let mut next = rng(0x5eed);
    let mut src = String::from("int main(void) { return 0; }\n");
    for k in 0..8 {
        let len = 64 + (next() % 400) as usize;
        let bytes: Vec<String> = (0..len)
            .map(|_| format!("{:#04x}", next() & 0xff))
            .collect();
        src.push_str(&format!(
            "__asm__(\".text\\n.globl junk{k}\\n.type junk{k},@function\\njunk{k}:\\n.byte {}\\n.size junk{k}, .-junk{k}\\n\");\n",
            bytes.join(",")
        ));
    }
    let path = cc(dir.path(), "junk", &src, "-O1", &[]);
    let bin = Binary::open(&path).unwrap();
    for k in 0..8 {
        let f = bin.function_by_name(&format!("junk{k}")).unwrap().clone();
        let cfg = bin.cfg(&f).unwrap();
        assert!(!cfg.blocks.is_empty());
        assert_eq!(cfg.blocks[0].start, f.start);
    }
    poke(&bin);
}

#[test]
fn non_elf_missing_and_no_code() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("notes.txt");
    std::fs::write(&txt, b"hello, I am not an executable\n").unwrap();
    let e = Binary::open(&txt).unwrap_err();
    assert!(matches!(e, Error::NotElf { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("notes.txt") && !msg.contains('\n'), "{msg}");

    let e = Binary::open(dir.path().join("missing")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }) && e.to_string().contains("missing"));

    // An object file with data only: no executable bytes.
    let c = dir.path().join("data.c");
    std::fs::write(&c, "int table[4] = {1, 2, 3, 4};\n").unwrap();
    let o = dir.path().join("data.o");
    assert!(
        std::process::Command::new("cc")
            .args(["-c", "-O2"])
            .arg(&c)
            .arg("-o")
            .arg(&o)
            .status()
            .unwrap()
            .success()
    );
    let e = Binary::open(&o).unwrap_err();
    assert!(matches!(e, Error::NoCode { .. }), "{e}");
    assert!(e.to_string().contains("data.o"));
}

#[test]
fn truncated_and_corrupted_elf() {
    let dir = tempfile::tempdir().unwrap();
    let path = cc(dir.path(), "loop", LOOP_C, "-O2", &[]);
    let data = std::fs::read(&path).unwrap();
    let bin = Binary::open(&path).unwrap();
    let f = bin.function_by_name("sum_checked").unwrap().clone();
    assert!(matches!(
        bin.cfg_at(1),
        Err(Error::AddressOutsideFunction { address: 1, .. })
    ));
    // A symbol that points outside the code is an error, a zero-size one an empty CFG.
    let bogus = pgo_binary::FunctionSym {
        name: "bogus".into(),
        start: 0xdead_0000_0000,
        size: 16,
    };
    assert!(bin.cfg(&bogus).is_err());
    let empty = pgo_binary::FunctionSym {
        size: 0,
        ..f.clone()
    };
    assert!(bin.cfg(&empty).unwrap().blocks.is_empty());

    let len = data.len();
    for cut in [
        4,
        16,
        52,
        63,
        64,
        65,
        200,
        1000,
        len / 4,
        len / 2,
        len - 100,
        len - 1,
    ] {
        match Binary::parse(format!("cut{cut}"), &data[..cut]) {
            Ok(b) => poke(&b),
            Err(e) => assert!(e.to_string().contains(&format!("cut{cut}")), "{e}"),
        }
    }
    // Random corruption anywhere in the file, including headers.
    let mut next = rng(42);
    for _ in 0..40 {
        let mut d = data.clone();
        for _ in 0..16 {
            let i = (next() as usize) % len;
            d[i] = next() as u8;
        }
        if let Ok(b) = Binary::parse("corrupt", &d) {
            poke(&b);
        }
    }
    // The intact binary decodes cleanly.
    let cfg = bin.cfg(&f).unwrap();
    assert!(
        cfg.blocks
            .iter()
            .all(|b| b.terminator != Terminator::DecodeError)
    );
}
