//! Links the unikernel with our linker script, only for the bare-metal target.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=boot/entry.S");
    if target == "x86_64-unknown-none" {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        println!("cargo:rustc-link-arg-bin=xvif=-T{dir}/linker.ld");
        println!("cargo:rustc-link-arg-bin=xvif=-no-pie");
        println!("cargo:rustc-link-arg-bin=xvif=--gc-sections");
    }
}
