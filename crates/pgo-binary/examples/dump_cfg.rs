//! Print the CFG of one function: `cargo run -p pgo-binary --example dump_cfg -- BIN FUNC`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(bin), Some(func)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: dump_cfg BIN FUNCTION");
        std::process::exit(2);
    };
    let bin = pgo_binary::Binary::open(bin)?;
    println!("build id: {:?}", bin.build_id());
    let f = bin
        .function_by_name(func)
        .ok_or("no such function")?
        .clone();
    let cfg = bin.cfg(&f)?;
    for (i, b) in cfg.blocks.iter().enumerate() {
        println!(
            "#{i} {:#x}..{:#x} n={} {:?} succ={:?}",
            b.start, b.end, b.instructions, b.terminator, b.successors
        );
        for c in &b.calls {
            let name = match c.kind {
                pgo_binary::CallKind::Direct { target } => {
                    bin.function_at(target).map_or("?", |f| f.name.as_str())
                }
                pgo_binary::CallKind::Indirect => "<indirect>",
            };
            println!(
                "    call@{:#x} {:?} {name} tail={}",
                c.address, c.kind, c.tail_call
            );
        }
    }
    Ok(())
}
