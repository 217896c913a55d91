//! Publishing test messages: a publisher per source, and the test's own JetStream stream.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;
use bytes::Bytes;
use order_service::config::{Settings, SourceKind};
use order_service::transport::publisher::OrderPublisher;
use uuid::Uuid;

/// Publishes test messages to one source, each confirmed by the broker (a PubAck, a JetStream publish ack). No
/// `Nats-Msg-Id`: a test that publishes the same order twice wants two messages in the stream.
#[derive(Clone)]
pub struct Publisher(pub OrderPublisher);

impl Publisher {
    pub async fn publish(&self, data: impl Into<Bytes>) -> anyhow::Result<()> {
        self.0.publish(data.into(), None).await
    }

    /// Publishes every message, many confirmations in flight at a time; returns once all are confirmed.
    pub async fn publish_all(&self, messages: &[Vec<u8>]) -> anyhow::Result<()> {
        let messages: Vec<Bytes> = messages.iter().cloned().map(Bytes::from).collect();
        self.0.publish_all(&messages, 256).await
    }
}

/// Deletes the test's JetStream stream when the test ends, so the shared server does not collect them.
pub struct StreamGuard {
    url: String,
    stream: String,
}

impl StreamGuard {
    /// Deletes `stream` on the server at `url` when dropped (for a stream the service created).
    pub fn new(url: &str, stream: &str) -> StreamGuard {
        StreamGuard {
            url: url.to_owned(),
            stream: stream.to_owned(),
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let (url, stream) = (self.url.clone(), self.stream.clone());
        // Drop cannot await: a thread with a runtime of its own does the deletion (best effort).
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let delete = async {
                    let client = async_nats::connect(url.as_str()).await.ok()?;
                    jetstream::new(client).delete_stream(&stream).await.ok()
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), delete).await;
            });
        })
        .join();
    }
}

/// Creates the test's stream as the service would (file storage, its subject), so that a test can publish before
/// the service starts.
pub async fn create_stream(settings: &Settings) -> anyhow::Result<StreamGuard> {
    let js = &settings.jetstream;
    let client = async_nats::connect(js.url.expose())
        .await
        .with_context(|| format!("Failed to connect to nats-server at {}", js.url.redacted()))?;
    jetstream::new(client)
        .create_stream(jetstream::stream::Config {
            name: js.stream.clone(),
            subjects: vec![js.subject.clone()],
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .with_context(|| {
            format!(
                "Failed to create the JetStream stream {} (is nats-server running with -js?)",
                js.stream
            )
        })?;
    Ok(StreamGuard {
        url: js.url.expose().to_owned(),
        stream: js.stream.clone(),
    })
}

/// A publisher for each of the settings' sources.
pub async fn publishers(settings: &Settings) -> anyhow::Result<Vec<Publisher>> {
    let mut publishers = Vec::new();
    for source in settings.distinct_sources() {
        publishers.push(Publisher(match source {
            SourceKind::Stan => {
                let client_id = format!("publisher-{}", Uuid::new_v4().simple());
                let stan = &settings.stan;
                OrderPublisher::stan(
                    stan.url.expose(),
                    &stan.cluster_id,
                    &client_id,
                    &stan.channel,
                )
                .await?
            }
            SourceKind::JetStream => {
                let js = &settings.jetstream;
                OrderPublisher::jetstream(js.url.expose(), &js.subject).await?
            }
        }));
    }
    Ok(publishers)
}
