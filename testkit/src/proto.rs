//! The STAN protocol messages (package `pb`), generated from `proto/stan.proto`.
#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/pb.rs"));
