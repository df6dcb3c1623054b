//! Direct vs indirect call sites from return addresses, in real C and Rust binaries.
mod common;

use std::process::Command;

use common::*;
use pgo_binary::{Binary, CallInstr, CallKind};

const CALLS_C: &str = r#"
__attribute__((noipa)) int callee_direct(int x) { return x * 3 + 1; }
__attribute__((noipa)) int callee_indirect(int x) { return x * 5 + 2; }
int (*volatile fp)(int) = callee_indirect;
__attribute__((noipa)) int caller(int n) {
    int s = 0;
    for (int i = 0; i < n; i++) {
        s += callee_direct(i);
        s += fp(i);
    }
    return s;
}
int main(int argc, char **argv) { return caller(argc) & 0xff; }
"#;

fn calls_of(bin: &Binary, name: &str) -> Vec<CallInstr> {
    let f = bin.function_by_name(name).unwrap().clone();
    let cfg = bin.cfg(&f).unwrap();
    cfg.blocks
        .iter()
        .flat_map(|b| b.calls.iter().copied())
        .filter(|c| !c.tail_call)
        .collect()
}

#[test]
fn c_direct_and_indirect_calls() {
    let dir = tempfile::tempdir().unwrap();
    for opt in ["-O1", "-O2"] {
        let path = cc(dir.path(), &format!("calls{opt}"), CALLS_C, opt, &[]);
        let bin = Binary::open(&path).unwrap();
        let direct_target = bin.function_by_name("callee_direct").unwrap().start;
        let calls = calls_of(&bin, "caller");
        let direct: Vec<_> = calls
            .iter()
            .filter(|c| {
                c.kind
                    == CallKind::Direct {
                        target: direct_target,
                    }
            })
            .collect();
        let indirect: Vec<_> = calls
            .iter()
            .filter(|c| c.kind == CallKind::Indirect)
            .collect();
        assert_eq!(direct.len(), 1, "{opt}: {calls:?}");
        assert_eq!(indirect.len(), 1, "{opt}: {calls:?}");

        let d = bin
            .call_at_return_address(direct[0].return_address)
            .unwrap();
        assert_eq!(
            d.kind,
            CallKind::Direct {
                target: direct_target
            }
        );
        assert_eq!(d.address, direct[0].address);
        let i = bin
            .call_at_return_address(indirect[0].return_address)
            .unwrap();
        assert_eq!(i.kind, CallKind::Indirect);
        // Cached second lookup gives the same answer.
        assert_eq!(bin.call_at_return_address(d.return_address), Some(d));
        // Not a return address: the call instruction itself, a function start, address 0.
        assert_eq!(bin.call_at_return_address(d.address), None);
        assert_eq!(bin.call_at_return_address(direct_target), None);
        assert_eq!(bin.call_at_return_address(0), None);

        // main -> caller is direct too.
        let caller = bin.function_by_name("caller").unwrap().start;
        let main_calls = calls_of(&bin, "main");
        let to_caller = main_calls
            .iter()
            .find(|c| c.kind == CallKind::Direct { target: caller });
        if let Some(c) = to_caller {
            assert_eq!(bin.call_at_return_address(c.return_address), Some(*c));
        }

        // Stripped binary (only .dynsym): the backward-decoding fallback still classifies.
        let stripped = dir.path().join(format!("calls{opt}.stripped"));
        let ok = Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            let sbin = Binary::open(&stripped).unwrap();
            assert!(sbin.function_by_name("caller").is_none());
            assert_eq!(
                sbin.call_at_return_address(d.return_address)
                    .map(|c| c.kind),
                Some(d.kind)
            );
            assert_eq!(
                sbin.call_at_return_address(i.return_address)
                    .map(|c| c.kind),
                Some(CallKind::Indirect)
            );
        }
    }
}

const DYN_RS: &str = r#"
pub trait Shape {
    fn area(&self) -> f64;
}
pub struct Square(f64);
pub struct Circle(f64);
impl Shape for Square {
    #[inline(never)]
    fn area(&self) -> f64 { self.0 * self.0 }
}
impl Shape for Circle {
    #[inline(never)]
    fn area(&self) -> f64 { 3.14159 * self.0 * self.0 }
}
#[inline(never)]
#[no_mangle]
pub fn total_area(shapes: &[&dyn Shape]) -> f64 {
    let mut t = 0.0;
    for s in shapes {
        t += std::hint::black_box(*s).area();
    }
    t
}
fn main() {
    let a = Square(2.0);
    let b = Circle(1.0);
    let v: Vec<&dyn Shape> = vec![&a, &b, &a];
    let n = std::env::args().count().min(3);
    println!("{}", total_area(std::hint::black_box(&v[..n])));
}
"#;

#[test]
fn rust_dyn_trait_call_is_indirect() {
    let dir = tempfile::tempdir().unwrap();
    let path = rustc(dir.path(), "dyn_trait", DYN_RS);
    let bin = Binary::open(&path).unwrap();
    let f = bin.function_by_name("total_area").unwrap().clone();
    let cfg = bin.cfg(&f).unwrap();
    assert!(!loop_blocks(&cfg).is_empty(), "{:#?}", cfg.blocks);
    let calls = calls_of(&bin, "total_area");
    let ind: Vec<_> = calls
        .iter()
        .filter(|c| c.kind == CallKind::Indirect)
        .collect();
    assert_eq!(ind.len(), 1, "{calls:?}");
    let c = bin.call_at_return_address(ind[0].return_address).unwrap();
    assert_eq!(c.kind, CallKind::Indirect);
    // The impls exist as separate functions (not devirtualized into the loop).
    assert!(
        bin.functions()
            .iter()
            .filter(|f| f.name.contains("area"))
            .count()
            >= 3
    );
    // No direct call from the loop to an `area` impl.
    for c in &calls {
        if let Some(n) = callee_name(&bin, c.kind) {
            assert!(!n.contains("4area"), "devirtualized call to {n}");
        }
    }
}

const TAIL_CALLS_C: &str = r#"
volatile int sink;
__attribute__((noipa)) int c(int x) { sink = x; return x + 1; }
__attribute__((noipa)) int b(int x) { sink = 2; return c(x * 3); }
__attribute__((noipa)) int a(int x) { sink = 1; return b(x + 1); }
__attribute__((noipa)) int f(int x) { sink = 5; return c(x - 1); }
__attribute__((noipa)) int g(int x) { sink = 6; return c(x - 2); }
__attribute__((noipa)) int e(int x) { if (x & 1) return f(x); return g(x); }
int main(int argc, char **argv) { return a(argc) + e(argc); }
"#;

#[test]
fn the_one_chain_of_tail_calls_between_two_functions() {
    // A sample in `c` whose call instruction above calls `a` lost the frames of `a` and `b`,
    // which each end in a jump to the next: the chain says so. From `e` there are two ways
    // to `c` (through `f` or `g`): which one ran cannot be told.
    let dir = tempfile::tempdir().unwrap();
    let path = cc(dir.path(), "tail", TAIL_CALLS_C, "-O2", &[]);
    let bin = Binary::open(&path).unwrap();
    let start = |name: &str| bin.function_by_name(name).unwrap().start;
    let (a, b, c) = (start("a"), start("b"), start("c"));
    let chain = bin.tail_call_chain(a, c, 3).expect("a jumps to b, b to c");
    let hops: Vec<(u64, u64)> = chain
        .iter()
        .map(|j| match j.kind {
            CallKind::Direct { target } => (bin.function_at(j.address).unwrap().start, target),
            CallKind::Indirect => panic!("a direct jump: {j:?}"),
        })
        .collect();
    assert_eq!(hops, [(a, b), (b, c)]);
    assert!(
        chain
            .iter()
            .all(|j| j.tail_call && j.return_address > j.address)
    );
    assert_eq!(bin.tail_call_chain(a, b, 3).map(|c| c.len()), Some(1));
    assert_eq!(bin.tail_call_chain(a, c, 1), None, "two hops needed");
    assert_eq!(
        bin.tail_call_chain(start("e"), c, 3),
        None,
        "through f or g"
    );
    assert_eq!(
        bin.tail_call_chain(start("e"), start("f"), 3)
            .map(|c| c.len()),
        Some(1)
    );
    assert_eq!(bin.tail_call_chain(c, a, 3), None, "c jumps nowhere");
}
