//! The brokers orders come from, behind one shape: a connection yields `BrokerMessage`s, each with its payload, its
//! place in the source (sequence), whether it is a redelivery, and the handle that acknowledges it. The subscriber
//! actor drives any of them; the validator, persister and cache never learn which one a message came from, except
//! through its `Origin`, which dead letters record.
//!
//! - `stan`: NATS Streaming through ratsio (a durable queue subscription).
//! - `jetstream`: NATS JetStream through async-nats (a durable pull consumer).
//!
//! Uses `telemetry` and `config`; never `storage`, its peer, or anything above.

pub mod deadline;
pub mod jetstream;
pub mod link;
pub mod nats_auth;
pub mod publisher;
pub mod stan;
pub mod stan_liveness;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

pub use crate::config::SourceKind;
use jetstream::{ConsumerSettings, JetStreamAck, JetStreamConnection, JetStreamError};
use link::Link;
use stan::{BrokerError, StanAck, StanConnection, StanSource};

/// Where a message came from: the broker and the channel (STAN) or stream (JetStream) in it. With the message's
/// sequence it names one message of one source, which is what a dead letter's unique key is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub source: SourceKind,
    pub name: Arc<str>,
}

impl Origin {
    pub fn new(source: SourceKind, name: &str) -> Origin {
        Origin {
            source,
            name: Arc::from(name),
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.source, self.name)
    }
}

/// One message delivered by a source.
pub struct BrokerMessage {
    pub payload: Bytes,
    /// The message's sequence in its channel or stream (the same on every redelivery).
    pub sequence: u64,
    pub redelivered: bool,
    /// How often it has been delivered, this time included, when the source tells (JetStream does, STAN not).
    pub delivery_count: Option<u64>,
    pub ack: AckHandle,
}

/// What acknowledging one delivery needs.
pub enum AckHandle {
    Stan(StanAck),
    JetStream(JetStreamAck),
}

impl AckHandle {
    /// Sends the ack. One that fails is not retried: the message is redelivered and found stored.
    pub async fn ack(self) -> Result<(), TransportError> {
        match self {
            AckHandle::Stan(ack) => Ok(ack.ack().await?),
            AckHandle::JetStream(ack) => Ok(ack.ack().await?),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Stan(#[from] BrokerError),
    #[error(transparent)]
    JetStream(#[from] JetStreamError),
}

impl TransportError {
    /// STAN: the broker holds another connection (or none) as the registration of our client id.
    pub fn is_replaced(&self) -> bool {
        matches!(self, TransportError::Stan(error) if error.is_replaced())
    }

    /// The broker did not answer in time (as opposed to a connection that failed outright).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            TransportError::Stan(BrokerError::Timeout(_))
                | TransportError::JetStream(JetStreamError::Timeout(_))
        )
    }

    /// STAN: the broker refused our client id, which a live process holds.
    pub fn is_refused(&self) -> bool {
        matches!(self, TransportError::Stan(BrokerError::Refused { .. }))
    }
}

/// How to reach one source.
#[derive(Debug, Clone)]
pub enum Transport {
    Stan(StanSource),
    JetStream(ConsumerSettings),
}

/// What the JetStream consumer reports about its backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerLag {
    /// Messages in the stream not yet delivered to the consumer.
    pub pending: u64,
    /// Messages delivered and not yet acknowledged.
    pub ack_pending: u64,
}

impl Transport {
    pub fn origin(&self) -> Origin {
        match self {
            Transport::Stan(s) => Origin::new(SourceKind::Stan, &s.settings.channel),
            Transport::JetStream(s) => Origin::new(SourceKind::JetStream, &s.js.stream),
        }
    }

    /// How often the connection is checked (`SourceConnection::probe`); `None`: never.
    pub fn probe_interval(&self) -> Option<Duration> {
        match self {
            Transport::Stan(s) => s.settings.probe_interval(),
            Transport::JetStream(s) => Some(s.js.info_interval()),
        }
    }

    /// The servers it connects to, without credentials: `nats://a:4222,nats://b:4222`.
    pub fn servers(&self) -> String {
        match self {
            Transport::Stan(s) => s.nats.display(),
            Transport::JetStream(s) => s.nats.display(),
        }
    }

    /// Connects and subscribes, telling `link` which server it is on. Deliveries arrive on the returned channel,
    /// which closes when the subscription ends.
    pub async fn connect(
        &self,
        link: &Arc<Link>,
    ) -> Result<(SourceConnection, mpsc::UnboundedReceiver<BrokerMessage>), TransportError> {
        match self {
            Transport::Stan(source) => {
                let connection = StanConnection::connect(source, link).await?;
                match connection.subscribe().await {
                    Ok(deliveries) => {
                        Ok((SourceConnection::Stan(Box::new(connection)), deliveries))
                    }
                    Err(error) => {
                        // Leaving it registered would make the broker refuse our next connect as a duplicate.
                        connection.close().await;
                        Err(error.into())
                    }
                }
            }
            Transport::JetStream(settings) => {
                let connection = JetStreamConnection::connect(settings, link).await?;
                let deliveries = connection.subscribe().await?;
                Ok((
                    SourceConnection::JetStream(Box::new(connection)),
                    deliveries,
                ))
            }
        }
    }

    /// The subscription, for log lines: what is consumed, and as whom.
    pub fn describe(&self) -> String {
        match self {
            Transport::Stan(StanSource { settings: s, .. }) => format!(
                "STAN channel {:?} (client id {:?}, durable {:?}, queue group {:?})",
                s.channel, s.client_id, s.durable_name, s.queue_group
            ),
            Transport::JetStream(s) => format!(
                "JetStream consumer {:?} on stream {:?} (subject {:?})",
                s.js.consumer, s.js.stream, s.js.subject
            ),
        }
    }
}

/// A live connection to one source.
pub enum SourceConnection {
    /// Boxed: its settings (credentials, TLS) make it large.
    Stan(Box<StanConnection>),
    /// Boxed: the consumer's cached info makes it large.
    JetStream(Box<JetStreamConnection>),
}

impl SourceConnection {
    /// Checks that the source still serves us; JetStream also answers its consumer's backlog. An error means the
    /// subscription is gone and the caller connects afresh.
    pub async fn probe(&self) -> Result<Option<ConsumerLag>, TransportError> {
        match self {
            SourceConnection::Stan(connection) => {
                connection.probe().await?;
                Ok(None)
            }
            SourceConnection::JetStream(connection) => Ok(Some(connection.lag().await?)),
        }
    }

    /// Closes the connection; durable state (STAN durable, JetStream consumer) stays for the next start.
    pub async fn close(&self) {
        match self {
            SourceConnection::Stan(connection) => connection.close().await,
            SourceConnection::JetStream(connection) => connection.close().await,
        }
    }

    /// Drops a connection the broker no longer holds as ours without telling it: a STAN close names only the
    /// client id, so it would remove the process that holds the id now.
    pub async fn abandon(&self) {
        match self {
            SourceConnection::Stan(connection) => connection.abandon().await,
            SourceConnection::JetStream(connection) => connection.close().await,
        }
    }
}
