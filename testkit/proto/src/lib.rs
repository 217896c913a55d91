//! The NATS Streaming (STAN) protocol as both sides speak it: the protobuf messages of `stan.proto`
//! ([`proto`]) and [`StanPublisher`], which publishes with every message confirmed by its PubAck.
//!
//! The service, the order generator and the dev broker (`stan-testkit`) depend on this crate, so the
//! product links the protocol without linking the broker.

mod publisher;

pub use publisher::{PublishError, StanPublisher};

/// The STAN protocol messages (package `pb`).
///
/// `src/pb.rs` is prost-build's output for `stan.proto`, committed so that building needs no protoc;
/// `tests/generated_code.rs` regenerates it and fails when it differs. It is pulled in with `include!`
/// rather than `mod` so that `cargo fmt` leaves the generated text as prost-build wrote it.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!("pb.rs");
}
