//! The ratsio adapter: the only code that calls ratsio. It works around the ratsio 0.4.1 defects verified against
//! the real server, without forking it:
//! - no request has a timeout: every call here is bounded by `STAN_TIMEOUT`;
//! - a connect the server refuses (duplicate client id) still returns Ok and later calls hang: the bounded
//!   subscribe turns that into a clear error;
//! - `subscribe()` sends an ack wait of 1,800,000 s: we always pass ack wait and max in flight explicitly;
//! - its reconnect logic is broken (mnetship/ratsio #10, #16): the subscriber drops the connection and connects
//!   afresh instead, and `probe` tells it when the broker no longer knows this client;
//! - it decodes deliveries with `unwrap()`: the stream is drained in a task of its own, so a malformed frame ends
//!   that task (and the subscription, which is then renewed), not the service;
//! - it writes every publish to the socket on its own (a lock and a `send` per message): acks go through a second,
//!   async-nats connection instead, which coalesces everything queued into one write. STAN accepts an ack from any
//!   connection: it is a plain NATS publish to the subscription's ack inbox.
//!
//! Credentials and TLS come from `nats_auth`: neither client sees a URL with credentials in it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;
use ratsio::{RatsioError, StanClient, StanOptions, StartPosition};
use stan_proto::proto;
use tokio::sync::mpsc;

use crate::configuration::StanSettings;
use crate::nats_auth::{NatsSettingsError, NatsTarget};
use crate::redact;
use crate::transport::{AckHandle, Delivery};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{what} got no answer from the broker within {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error(
        "broker refused or did not answer the subscription on cluster {cluster_id:?}: \
         is another instance running with client id {client_id:?}?"
    )]
    Refused {
        cluster_id: String,
        client_id: String,
    },
    #[error("{what} failed: {message}")]
    Ratsio { what: &'static str, message: String },
    #[error("cannot reach nats-server at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error(
        "no NATS Streaming server answered on cluster {cluster_id:?} at {url} within {after:?}"
    )]
    NoServer {
        cluster_id: String,
        url: String,
        after: Duration,
    },
    #[error("the broker no longer knows client id {0:?}")]
    NotRegistered(String),
    #[error("the broker answered with an error: {0}")]
    Answered(String),
    #[error("malformed answer from the broker: {0}")]
    Malformed(#[from] prost::DecodeError),
    #[error("the delivery carries no ack inbox")]
    NoAckInbox,
    #[error("failed to send an ack: {0}")]
    Ack(#[from] async_nats::PublishError),
    #[error("{0}")]
    Settings(#[from] NatsSettingsError),
}

/// ratsio's errors, with anything secret-shaped masked (its messages may repeat what it was given).
fn ratsio_error(what: &'static str) -> impl FnOnce(RatsioError) -> BrokerError {
    move |error| BrokerError::Ratsio {
        what,
        message: redact::text(&format!("{error:?}")),
    }
}

/// A connection to the STAN cluster, registered under the configured client id, and the NATS connection its acks
/// are sent through.
pub struct StanConnection {
    client: Arc<StanClient>,
    /// Shared by every delivery's `AckHandle`: an `Arc` clone is one increment, a `Client` clone about eight.
    acks: Arc<async_nats::Client>,
    settings: StanSettings,
}

/// What acknowledging one STAN delivery needs: the ack connection, the subscription's ack inbox and the message's
/// place.
pub struct StanAck {
    acks: Arc<async_nats::Client>,
    inbox: Option<String>,
    ack: proto::Ack,
    timeout: Duration,
}

impl StanAck {
    /// Queues the ack for the next write of the ack connection. An ack that fails is not retried: the message is
    /// redelivered and found stored.
    pub async fn ack(self) -> Result<(), BrokerError> {
        let inbox = self.inbox.ok_or(BrokerError::NoAckInbox)?;
        let payload = Bytes::from(self.ack.encode_to_vec());
        bounded("ack", self.timeout, self.acks.publish(inbox, payload)).await??;
        Ok(())
    }
}

/// Runs `future` for at most `after`.
async fn bounded<F: std::future::Future>(
    what: &'static str,
    after: Duration,
    future: F,
) -> Result<F::Output, BrokerError> {
    tokio::time::timeout(after, future)
        .await
        .map_err(|_| BrokerError::Timeout { what, after })
}

impl StanConnection {
    /// Connects (NATS, then the STAN handshake) with the configured, stable client id.
    pub async fn connect(settings: &StanSettings) -> Result<StanConnection, BrokerError> {
        let target = NatsTarget::from_settings(settings);
        let nats_options = target.ratsio_options()?;
        // The ack connection first: async-nats says plainly when nats-server refuses the credentials, where ratsio
        // would only time out.
        let acks = bounded(
            "connect",
            settings.timeout(),
            target
                .async_nats_options()
                .name(format!("{} acks", settings.client_id))
                .connect(target.async_nats_url()),
        )
        .await?
        .map_err(|e| BrokerError::Unreachable {
            url: target.url.clone(),
            message: redact::text(&crate::error_chain::error_chain(&e)),
        })?;
        let options = StanOptions::with_options(
            nats_options,
            settings.cluster_id.clone(),
            settings.client_id.clone(),
        );
        let client = bounded(
            "connect",
            settings.timeout(),
            StanClient::from_options(options),
        )
        .await?
        .map_err(ratsio_error("connect"))?;
        Ok(StanConnection {
            client,
            acks: Arc::new(acks),
            settings: settings.clone(),
        })
    }

    /// Subscribes to the channel as a member of the durable queue group, with manual acks. Deliveries arrive on the
    /// returned channel, which closes when the subscription ends.
    pub async fn subscribe(&self) -> Result<mpsc::UnboundedReceiver<Delivery>, BrokerError> {
        let s = &self.settings;
        let subscribing = self.client.subscribe_with_all(
            s.channel.clone(),
            Some(s.queue_group.clone()),
            Some(s.durable_name.clone()),
            s.max_in_flight,
            s.ack_wait_secs,
            // A new durable starts with the first message; a resumed one continues after its last ack.
            StartPosition::First,
            0,
            None,
            true,
        );
        let (_sid, messages) = tokio::time::timeout(s.timeout(), subscribing)
            .await
            .map_err(|_| BrokerError::Refused {
                cluster_id: s.cluster_id.clone(),
                client_id: s.client_id.clone(),
            })?
            .map_err(ratsio_error("subscribe"))?;

        let (sender, receiver) = mpsc::unbounded_channel();
        let (acks, timeout) = (self.acks.clone(), s.timeout());
        // The broker bounds what is unacknowledged (max in flight), so this channel is bounded in practice.
        tokio::spawn(async move {
            let mut messages = Box::pin(messages);
            while let Some(mut message) = messages.next().await {
                let delivery = Delivery {
                    payload: Bytes::from(std::mem::take(&mut message.payload)),
                    sequence: message.sequence,
                    redelivered: message.redelivered,
                    // ratsio does not expose the redelivery count.
                    delivery_count: None,
                    ack: AckHandle::Stan(StanAck {
                        acks: acks.clone(),
                        inbox: message.ack_inbox.take(),
                        ack: proto::Ack {
                            subject: std::mem::take(&mut message.subject),
                            sequence: message.sequence,
                        },
                        timeout,
                    }),
                };
                if sender.send(delivery).is_err() {
                    break;
                }
            }
        });
        Ok(receiver)
    }

    /// Asks the broker whether it still knows this client, as a new connect request with our client id would: a live
    /// registration is refused as a duplicate (after the broker pinged our heartbeat inbox, which ratsio answers),
    /// an unknown id is accepted. The accepted probe is closed again at once, and the caller reconnects.
    pub async fn probe(&self) -> Result<(), BrokerError> {
        let s = &self.settings;
        let request = proto::ConnectRequest {
            client_id: s.client_id.clone(),
            heartbeat_inbox: format!("_INBOX.probe.{}", uuid::Uuid::new_v4().simple()),
            conn_id: uuid::Uuid::new_v4().simple().to_string().into_bytes(),
            ..Default::default()
        };
        let discover = format!("_STAN.discover.{}", s.cluster_id);
        let reply = bounded(
            "probe",
            s.timeout(),
            self.client
                .nats_client
                .request(discover, &request.encode_to_vec()),
        )
        .await?
        .map_err(ratsio_error("probe"))?;
        let response = proto::ConnectResponse::decode(reply.payload.as_slice())?;
        if response.error.contains("already registered") {
            return Ok(());
        }
        if !response.error.is_empty() {
            return Err(BrokerError::Answered(response.error));
        }
        let close = proto::CloseRequest {
            client_id: s.client_id.clone(),
        };
        // Best effort: if this is lost, the next connect replaces the probe's registration after one heartbeat.
        let _ = bounded(
            "close",
            s.timeout(),
            self.client
                .nats_client
                .publish(response.close_requests, &close.encode_to_vec()),
        )
        .await;
        Err(BrokerError::NotRegistered(s.client_id.clone()))
    }

    /// Closes the connection. The durable subscription is not unsubscribed, so the next start resumes it.
    pub async fn close(&self) {
        let timeout = self.settings.timeout();
        // The acks queued so far leave before the connection they belong to closes.
        if let Ok(Err(error)) = bounded("flush", timeout, self.acks.flush()).await {
            tracing::warn!(%error, "Failed to flush the last acks; those messages will be redelivered.");
        }
        match bounded("close", timeout, self.client.close()).await {
            Ok(Ok(())) => {}
            // ratsio's close stops before closing the NATS connection when the close request fails.
            _ => {
                let _ = bounded("close", timeout, self.client.nats_client.close()).await;
            }
        }
    }

    pub fn client_id(&self) -> &str {
        &self.settings.client_id
    }
}
