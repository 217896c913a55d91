//! Generates the STAN protocol types with prost, using the protoc binary shipped in the protoc-bin-vendored crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    prost_build::compile_protos(&["proto/stan.proto", "proto/store.proto"], &["proto/"])?;
    println!("cargo:rerun-if-changed=proto/stan.proto");
    println!("cargo:rerun-if-changed=proto/store.proto");
    Ok(())
}
