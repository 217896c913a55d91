//! A NATS Streaming (STAN) broker on top of nats-server, for development and tests, plus the client side the
//! project needs beyond ratsio (publishing with PubAck confirmation).

mod broker;
mod channel;
mod config;
pub mod nats_server;
pub mod proto;
mod publisher;
mod server;
mod state;

pub use broker::Broker;
pub use config::{BrokerConfig, StoreKind};
pub use publisher::{PublishError, StanPublisher};
