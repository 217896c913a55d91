//! `src/pb.rs` is committed so that building the service needs no protoc. This test regenerates it
//! from `stan.proto` with prost-build and the vendored protoc, and fails when the two differ.
//! After editing `stan.proto`, run it with `STAN_PROTO_BLESS=1` to rewrite `src/pb.rs`.

use std::env;
use std::fs;
use std::path::Path;

const PROTO_DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn committed_protocol_code_is_what_prost_build_generates_from_stan_proto(
) -> Result<(), Box<dyn std::error::Error>> {
    // Arrange
    let out_dir = tempfile::tempdir()?;
    let committed_path = Path::new(PROTO_DIR).join("src/pb.rs");
    let committed = fs::read_to_string(&committed_path)?;

    // Act
    prost_build::Config::new()
        .out_dir(out_dir.path())
        .protoc_executable(protoc_bin_vendored::protoc_bin_path()?)
        .compile_protos(&[Path::new(PROTO_DIR).join("stan.proto")], &[PROTO_DIR])?;
    let generated = fs::read_to_string(out_dir.path().join("pb.rs"))?;

    // Assert
    if generated != committed && env::var_os("STAN_PROTO_BLESS").is_some() {
        fs::write(&committed_path, &generated)?;
        return Ok(());
    }
    assert!(
        generated == committed,
        "src/pb.rs is not what prost-build generates from stan.proto; \
         rerun this test with STAN_PROTO_BLESS=1 and commit src/pb.rs"
    );
    Ok(())
}
