//! A NATS Streaming (STAN) broker on top of nats-server, for development and tests. The protocol messages and
//! the publisher that waits for PubAcks live in the `stan-proto` crate, which the service uses too.
//!
//! # In-process broker
//!
//! [`Broker::start`] runs a broker on its own thread and returns once it answers on
//! `_STAN.discover.<cluster_id>`; give each test its own cluster id. [`Broker::shutdown`] stops it and waits
//! until it has saved its store; dropping a [`Broker`] only asks it to stop.
//!
//! With [`StoreKind::File`] a new broker started on the same directory and cluster id carries on where the
//! old one stopped: channels, messages (sequences, timestamps), clients (they must go on answering heartbeats),
//! subscriptions with their positions and unacked messages (sent again at once, flagged redelivered), queue
//! groups. The same happens after a crash, except that acks and deliveries of the last 200 ms may be
//! forgotten (those messages come again); a message whose PubAck was sent is never lost, as written to the OS
//! before the PubAck (also fsynced with [`BrokerConfig::file_sync`]). Only one broker uses a directory at a time:
//! `start` waits up to 5 s for the previous one to let go of it.
//!
//! ```no_run
//! use stan_testkit::{Broker, BrokerConfig, StoreKind};
//!
//! # async fn restart_mid_test() -> anyhow::Result<()> {
//! let config = BrokerConfig {
//!     cluster_id: "my-test-cluster".into(),
//!     store: StoreKind::File("/tmp/my-test-store".into()),
//!     ..BrokerConfig::default()
//! };
//! let broker = Broker::start(config.clone()).await?;
//! // ... publish, consume ...
//! broker.shutdown().await;
//! let _broker = Broker::start(config).await?; // same channels, clients and durables
//! # Ok(())
//! # }
//! ```

mod broker;
mod channel;
mod config;
pub mod nats_cluster;
pub mod nats_server;
mod server;
mod state;
mod store;

pub use broker::Broker;
pub use config::{BrokerConfig, StoreKind};
