//! The `pgo` command line: thin glue over the pgo library crates.
//!
//! Each subcommand parses its arguments, calls into `pgo-profile` / `pgo-inspect`, and prints.
//! No profile logic lives here, so everything the CLI does can be done from a library too.

mod analyze;
mod apply;
mod collect;
mod commands;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "pgo: error: {e}");
            ExitCode::from(2)
        }
    }
}
