//! Publishing orders, each confirmed by its broker: a STAN PubAck, or a JetStream stream's publish ack. The
//! service itself never publishes; the order generator, the latency bench and the tests do, through this one type.

use std::future::IntoFuture;
use std::sync::Arc;

use anyhow::Context;
use async_nats::jetstream;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use futures::future::BoxFuture;
use stan_proto::StanPublisher;

/// Where a tool publishes: the flags the order generator and the latency bench share.
#[derive(Args, Debug, Clone)]
pub struct PublishTarget {
    /// Where to publish: the STAN channel or the JetStream subject.
    #[arg(long, env = "GENERATOR_TARGET", value_enum, default_value_t = Broker::Stan)]
    pub target: Broker,
    /// NATS URL of the NATS Streaming server, or of the JetStream-enabled nats-server(s) (a comma-separated list).
    #[arg(long, env = "STAN_URL", default_value = "nats://127.0.0.1:4222")]
    pub url: String,
    /// NATS Streaming cluster id.
    #[arg(long, env = "STAN_CLUSTER_ID", default_value = "test-cluster")]
    pub cluster_id: String,
    /// STAN channel to publish to (`--target stan`).
    #[arg(long, env = "STAN_CHANNEL", default_value = "orders")]
    pub channel: String,
    /// JetStream subject to publish to (`--target jetstream`).
    #[arg(long, env = "JS_SUBJECT", default_value = "orders")]
    pub subject: String,
    /// STAN client id [default: <the tool's name>-<random>]. Must differ from the service's.
    #[arg(long, env = "GENERATOR_CLIENT_ID")]
    pub client_id: Option<String>,
}

/// The broker a tool publishes to.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    Stan,
    #[value(name = "jetstream")]
    JetStream,
}

impl PublishTarget {
    /// Connects as `--target` asks; a STAN client id not given is `<tool>-<random>`.
    pub async fn connect(&self, tool: &str) -> anyhow::Result<OrderPublisher> {
        match self.target {
            Broker::Stan => {
                let client_id = self
                    .client_id
                    .clone()
                    .unwrap_or_else(|| format!("{tool}-{}", uuid::Uuid::new_v4().simple()));
                OrderPublisher::stan(&self.url, &self.cluster_id, &client_id, &self.channel).await
            }
            Broker::JetStream => OrderPublisher::jetstream(&self.url, &self.subject).await,
        }
    }
}

/// A connection that publishes to one STAN channel or one JetStream subject. Cheap to clone.
#[derive(Clone)]
pub enum OrderPublisher {
    Stan {
        publisher: Arc<StanPublisher>,
        channel: String,
    },
    JetStream {
        client: async_nats::Client,
        context: Box<jetstream::Context>,
        subject: String,
    },
}

/// Resolves when the broker confirmed one publish.
pub type Confirmation = BoxFuture<'static, anyhow::Result<()>>;

impl OrderPublisher {
    /// Registers with the STAN cluster `cluster_id` through the nats-server at `url`.
    pub async fn stan(
        url: &str,
        cluster_id: &str,
        client_id: &str,
        channel: &str,
    ) -> anyhow::Result<OrderPublisher> {
        let publisher = StanPublisher::connect(url, cluster_id, client_id)
            .await
            .with_context(|| format!("Failed to connect to STAN cluster {cluster_id:?}"))?;
        Ok(OrderPublisher::Stan {
            publisher: Arc::new(publisher),
            channel: channel.to_owned(),
        })
    }

    /// Connects to the nats-server(s) at `url` (a comma-separated list is tried in turn, and reconnected through).
    pub async fn jetstream(url: &str, subject: &str) -> anyhow::Result<OrderPublisher> {
        let client = async_nats::connect(url)
            .await
            .context("Failed to connect to the JetStream nats-server")?;
        Ok(OrderPublisher::JetStream {
            context: Box::new(jetstream::new(client.clone())),
            client,
            subject: subject.to_owned(),
        })
    }

    /// The channel or subject, for messages.
    pub fn destination(&self) -> &str {
        match self {
            OrderPublisher::Stan { channel, .. } => channel,
            OrderPublisher::JetStream { subject, .. } => subject,
        }
    }

    /// Sends one message now; the returned future resolves when the broker confirmed it, so that many can be in
    /// flight. With `msg_id`, JetStream's duplicate window drops a re-send of the same id (`Nats-Msg-Id`); STAN
    /// has no such header and ignores it.
    pub async fn send(&self, data: Bytes, msg_id: Option<&str>) -> anyhow::Result<Confirmation> {
        match self {
            OrderPublisher::Stan { publisher, channel } => {
                // Spawned so that it is sent now, whoever polls the confirmation and when.
                let confirmed = tokio::spawn(publisher.publish_pipelined(channel, data));
                Ok(Box::pin(async move {
                    confirmed.await.context("The publish task ended")??;
                    Ok(())
                }))
            }
            OrderPublisher::JetStream {
                context, subject, ..
            } => {
                let mut headers = async_nats::HeaderMap::new();
                if let Some(id) = msg_id {
                    headers.insert("Nats-Msg-Id", id);
                }
                let confirmed = context
                    .publish_with_headers(subject.clone(), headers, data)
                    .await
                    .context("Failed to publish")?
                    .into_future();
                let subject = subject.clone();
                Ok(Box::pin(async move {
                    confirmed.await.with_context(|| {
                        format!(
                            "No publish ack from a JetStream stream on subject {subject:?} (does a stream take \
                             it? the service creates one at its first start)"
                        )
                    })?;
                    Ok(())
                }))
            }
        }
    }

    /// Sends one message and waits until the broker confirmed it.
    pub async fn publish(&self, data: Bytes, msg_id: Option<&str>) -> anyhow::Result<()> {
        self.send(data, msg_id).await?.await
    }

    /// Sends every message, up to `window` unconfirmed at a time; returns once all are confirmed.
    pub async fn publish_all(&self, messages: &[Bytes], window: usize) -> anyhow::Result<()> {
        for chunk in messages.chunks(window.max(1)) {
            let mut confirmations = Vec::with_capacity(chunk.len());
            for message in chunk {
                confirmations.push(self.send(message.clone(), None).await?);
            }
            futures::future::try_join_all(confirmations).await?;
        }
        Ok(())
    }

    /// Unregisters from STAN, or flushes what is left of the NATS protocol (every publish was confirmed already).
    pub async fn close(self) -> anyhow::Result<()> {
        match self {
            OrderPublisher::Stan { publisher, .. } => match Arc::try_unwrap(publisher) {
                Ok(publisher) => Ok(publisher.close().await?),
                // A clone still publishes; the last one to go unregisters.
                Err(_) => Ok(()),
            },
            OrderPublisher::JetStream { client, .. } => Ok(client.flush().await?),
        }
    }
}
