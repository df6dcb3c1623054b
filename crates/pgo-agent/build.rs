//! Links this crate's tests and examples with a GNU build ID, so the tests can check that
//! profile mappings carry it. rustc's default linker writes none unless asked; services using
//! pgo-agent should ask too (`-C link-arg=-Wl,--build-id`), see the crate documentation.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-link-arg-tests=-Wl,--build-id");
    println!("cargo::rustc-link-arg-examples=-Wl,--build-id");
}
