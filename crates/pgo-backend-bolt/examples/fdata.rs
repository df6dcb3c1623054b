//! Prints the BOLT fdata for a profile and a binary: `fdata PROFILE BINARY [OUT_DIR]`
//! (OUT_DIR is where `pgo apply` kept copies of profiled binaries). Notes go to stderr.

use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [profile, binary, rest @ ..] = args.as_slice() else {
        eprintln!("usage: fdata PROFILE BINARY [OUT_DIR]");
        std::process::exit(2);
    };
    let result = pgo_profile::read_profile(profile)
        .map_err(|e| e.to_string())
        .and_then(|p| {
            pgo_backend_bolt::fdata_for(&p, Path::new(binary), rest.first().map(Path::new))
        });
    match result {
        Ok(fdata) => {
            print!("{}", fdata.text);
            eprintln!("{}", fdata.summary);
            for note in &fdata.notes {
                eprintln!("note: {note}");
            }
        }
        Err(e) => {
            eprintln!("fdata: {e}");
            std::process::exit(1);
        }
    }
}
