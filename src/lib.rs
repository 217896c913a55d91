//! order-service: takes orders from NATS Streaming or JetStream, keeps them in PostgreSQL and serves them from
//! memory. Each part below uses only the parts listed after it (`docs/architecture.md` draws the graph from the
//! code):
//!
//! - `app`: wiring (`Application::build`), the graceful stop;
//! - `http`: both listeners, their routes, the admin gate, readiness, the web page;
//! - `replay`: a dead letter sent through the pipeline again, and the CLI client that asks for it;
//! - `actors`: the pipeline (subscriber, validator, persister, cache owner) and its stall watch;
//! - `cache`: the in-memory documents, their group broadcast, the change feed's follower;
//! - `storage`: every SQL statement; `transport`: the brokers (STAN, JetStream), their credentials and liveness;
//! - `telemetry`: logs, the metrics registry, error chains;
//! - `config`: settings, their defaults and secrets;
//! - `domain`: orders, their rules and validation; no I/O.
#![forbid(unsafe_code)]

pub mod actors;
pub mod app;
pub mod cache;
pub mod config;
pub mod domain;
pub mod http;
pub mod replay;
pub mod storage;
pub mod telemetry;
pub mod transport;
