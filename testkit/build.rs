//! Generates the file store's records (src/store/store.proto) with prost, using the protoc binary shipped in
//! the protoc-bin-vendored crate. The STAN protocol itself comes from the stan-proto crate, which needs no protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    prost_build::compile_protos(&["src/store/store.proto"], &["src/store/"])?;
    println!("cargo:rerun-if-changed=src/store/store.proto");
    Ok(())
}
