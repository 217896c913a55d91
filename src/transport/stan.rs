//! The ratsio adapter: the only code that calls ratsio. It works around the ratsio 0.4.1 defects verified against
//! the real server, without forking it:
//! - no request has a timeout: every call here is bounded by `STAN_TIMEOUT`;
//! - a connect the server refuses (duplicate client id) still returns Ok: before ratsio connects, `claim_client_id`
//!   asks the broker with a connect request of its own, which also tells the subject for subscription requests;
//! - its reconnect logic is broken (mnetship/ratsio #10, #16: after a reconnect nothing is subscribed again, and
//!   its reader stops): the subscriber drops the connection and connects afresh instead, through the whole server
//!   list, registering again under the same client id (the broker replaces a registration whose heartbeat inbox
//!   no longer answers) and subscribing the durable again. `probe` tells it when to: the ping travels over
//!   ratsio's own connection, so a dead node, or ratsio's broken reconnect, is noticed at the next probe rather
//!   than after the broker's heartbeat timeout; and the answer says when the broker no longer holds this
//!   connection as the registration of its client id (replaced by another process, or forgotten; see
//!   stan_liveness.rs);
//! - its subscribe ignores the error field of the broker's answer (a refused subscription looks like success), and
//!   it listens on the inbox only after asking, so the first deliveries can be lost; it also decodes deliveries with
//!   `unwrap()`: the subscription is therefore made here, with the protocol messages themselves, over ratsio's NATS
//!   connection (so that it ends with that connection, as ratsio's did): listen on the inbox, ask, read the answer;
//!   a malformed delivery is logged and skipped;
//! - it writes every publish to the socket on its own (a lock and a `send` per message): acks go through a second,
//!   async-nats connection instead, which coalesces everything queued into one write. STAN accepts an ack from any
//!   connection: it is a plain NATS publish to the subscription's ack inbox.
//!
//! Credentials and TLS come from `nats_auth`: neither client sees a URL with credentials in it. Both get the whole
//! server list, tried in order. The close request goes over the ack connection, which async-nats has moved to a
//! live server by itself, so that a registration on a dead node is still closed before its successor connects.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;
use ratsio::{RatsioError, StanClient, StanOptions};
use stan_proto::proto;
use tokio::sync::mpsc;

use crate::config::redact;
use crate::config::StanSettings;
use crate::transport::deadline::{within, Elapsed};
use crate::transport::link::Link;
use crate::transport::nats_auth::{NatsSettingsError, NatsTarget};
use crate::transport::stan_liveness::{self, ConnectWatch, LivenessError};
use crate::transport::{AckHandle, BrokerMessage};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Timeout(#[from] Elapsed),
    #[error(
        "the broker on cluster {cluster_id:?} refused client id {client_id:?} or did not answer: \
         is another instance running with that client id?"
    )]
    Refused {
        cluster_id: String,
        client_id: String,
    },
    /// An error of ratsio, the STAN client.
    #[error("{what} failed: {message}")]
    Ratsio { what: &'static str, message: String },
    /// An error of async-nats, which carries the acks and the requests made here.
    #[error("{what} failed: {message}")]
    AsyncNats { what: &'static str, message: String },
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
    #[error(transparent)]
    Liveness(#[from] LivenessError),
    #[error("the broker no longer knows client id {0:?}")]
    NotRegistered(String),
    #[error("the broker answered with an error: {0}")]
    Answered(String),
    #[error("the broker refused the subscription to channel {channel:?}: {message}")]
    SubscriptionRefused { channel: String, message: String },
    #[error("malformed answer from the broker: {0}")]
    Malformed(#[from] prost::DecodeError),
    #[error("the delivery carries no ack inbox")]
    NoAckInbox,
    #[error("failed to send an ack: {0}")]
    Ack(#[from] async_nats::PublishError),
    #[error("{0}")]
    Settings(#[from] NatsSettingsError),
}

impl BrokerError {
    /// The broker holds another connection (or none) as the registration of our client id.
    pub fn is_replaced(&self) -> bool {
        matches!(self, BrokerError::Liveness(LivenessError::Replaced { .. }))
    }
}

/// ratsio's errors, with anything secret-shaped masked (its messages may repeat what it was given).
fn ratsio_error(what: &'static str) -> impl FnOnce(RatsioError) -> BrokerError {
    move |error| BrokerError::Ratsio {
        what,
        message: redact::text(&format!("{error:?}")),
    }
}

/// async-nats's errors, with anything secret-shaped masked.
fn async_nats_error<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> BrokerError {
    move |error| BrokerError::AsyncNats {
        what,
        message: redact::text(&error.to_string()),
    }
}

/// What a STAN source needs: its settings and its NATS servers, credentials and TLS.
#[derive(Debug, Clone)]
pub struct StanSource {
    pub settings: StanSettings,
    pub nats: NatsTarget,
}

/// The broker's subjects for one registration's requests, from its connect answer.
struct BrokerSubjects {
    sub_requests: String,
    close_requests: String,
}

/// A connection to the STAN cluster, registered under the configured client id, and the NATS connection its acks
/// are sent through.
pub struct StanConnection {
    client: Arc<StanClient>,
    /// Shared by every delivery's `AckHandle`: an `Arc` clone is one increment, a `Client` clone about eight. Also
    /// carries the pings.
    acks: Arc<async_nats::Client>,
    /// The broker's subjects for subscription and close requests (ratsio keeps its own copies to itself).
    subjects: BrokerSubjects,
    settings: StanSettings,
    nats: NatsTarget,
    link: Arc<Link>,
    /// The connection id ratsio registered us with, and where the broker answers pings about it.
    conn_id: Vec<u8>,
    ping_subject: String,
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
        within("ack", self.timeout, self.acks.publish(inbox, payload)).await??;
        Ok(())
    }
}

/// Fails when a live client holds our client id. ratsio takes the broker's refusal of a duplicate connect for
/// success, so the question is asked here first, with a connect request of our own: a live holder makes the broker
/// refuse it, a dead one is replaced. The registration this makes is closed again at once, for ratsio's; the answer
/// names the broker's subjects for subscription and close requests, which are returned.
async fn claim_client_id(
    nats: &async_nats::Client,
    s: &StanSettings,
    servers: &str,
) -> Result<BrokerSubjects, BrokerError> {
    let request = proto::ConnectRequest {
        client_id: s.client_id.clone(),
        heartbeat_inbox: format!("_INBOX.claim.{}", uuid::Uuid::new_v4().simple()),
        conn_id: uuid::Uuid::new_v4().simple().to_string().into_bytes(),
        ..Default::default()
    };
    let discover = format!("_STAN.discover.{}", s.cluster_id);
    let reply = within(
        "connect",
        s.timeout(),
        nats.request(discover, Bytes::from(request.encode_to_vec())),
    )
    .await
    .map_err(|_| BrokerError::NoServer {
        cluster_id: s.cluster_id.clone(),
        url: servers.to_owned(),
        after: s.timeout(),
    })?
    .map_err(async_nats_error("connect"))?;
    let response = proto::ConnectResponse::decode(reply.payload)?;
    if response.error.contains("already registered") {
        return Err(BrokerError::Refused {
            cluster_id: s.cluster_id.clone(),
            client_id: s.client_id.clone(),
        });
    }
    if !response.error.is_empty() {
        return Err(BrokerError::Answered(response.error));
    }
    let close = proto::CloseRequest {
        client_id: s.client_id.clone(),
    };
    // Waited for, so that ratsio's connect does not meet this registration.
    within(
        "connect",
        s.timeout(),
        nats.request(
            response.close_requests.clone(),
            Bytes::from(close.encode_to_vec()),
        ),
    )
    .await?
    .map_err(async_nats_error("close"))?;
    Ok(BrokerSubjects {
        sub_requests: response.sub_requests,
        close_requests: response.close_requests,
    })
}

impl StanConnection {
    /// Connects (NATS, then the STAN handshake) with the configured, stable client id, and checks with a ping that
    /// the broker took this connection as the id's registration: it refuses the id while another live process
    /// holds it.
    pub async fn connect(
        source: &StanSource,
        link: &Arc<Link>,
    ) -> Result<StanConnection, BrokerError> {
        let (settings, target) = (&source.settings, &source.nats);
        let nats_options = target.ratsio_options()?;
        // The ack connection first: async-nats says plainly when nats-server refuses the credentials, where ratsio
        // would only time out.
        let acks = within(
            "connect",
            settings.timeout(),
            target
                .async_nats_options_for(link)
                .name(format!("{} acks", settings.client_id))
                .connect(target.async_nats_servers()?),
        )
        .await?
        .map_err(|e| BrokerError::Unreachable {
            url: target.display(),
            message: redact::text(&crate::telemetry::error_chain::error_chain(&e)),
        })?;
        let subjects = claim_client_id(&acks, settings, &target.display()).await?;
        // Opened after the claim, whose connect request carries our client id too.
        let watch = ConnectWatch::open(&acks, &settings.cluster_id, settings.timeout()).await?;
        let options = StanOptions::with_options(
            nats_options,
            settings.cluster_id.clone(),
            settings.client_id.clone(),
        );
        let client = within(
            "connect",
            settings.timeout(),
            StanClient::from_options(options),
        )
        .await?
        .map_err(ratsio_error("connect"))?;
        let connection = async {
            let conn_id = watch
                .conn_id_of(&settings.client_id, settings.timeout())
                .await?;
            let ping_subject = stan_liveness::ping_subject(
                &acks,
                &settings.cluster_id,
                &settings.client_id,
                settings.timeout(),
            )
            .await?;
            Ok::<_, BrokerError>(StanConnection {
                client: client.clone(),
                acks: Arc::new(acks),
                subjects,
                settings: settings.clone(),
                nats: target.clone(),
                link: link.clone(),
                conn_id,
                ping_subject,
            })
        }
        .await;
        let failure = match connection {
            Ok(connection) => match connection.probe().await {
                Ok(()) => return Ok(connection),
                Err(error) if error.is_replaced() => BrokerError::Refused {
                    cluster_id: settings.cluster_id.clone(),
                    client_id: settings.client_id.clone(),
                },
                Err(error) => {
                    connection.close().await;
                    return Err(error);
                }
            },
            Err(error) => error,
        };
        // Not registered, or not known to be: a STAN close would remove whoever holds the id.
        let _ = within("close", settings.timeout(), client.nats_client.close()).await;
        Err(failure)
    }

    /// Subscribes to the channel as a member of the durable queue group, with manual acks. Deliveries arrive on the
    /// returned channel, which closes when the subscription ends. A refusal comes back with the broker's message.
    pub async fn subscribe(&self) -> Result<mpsc::UnboundedReceiver<BrokerMessage>, BrokerError> {
        let s = &self.settings;
        let sub_requests = self.subjects.sub_requests.clone();
        let nats = &self.client.nats_client;
        let inbox = format!("_INBOX.{}", uuid::Uuid::new_v4().simple());
        // Listening before asking: the broker starts delivering as soon as it has answered.
        let (sid, messages) = within("subscribe", s.timeout(), nats.subscribe(inbox.clone()))
            .await?
            .map_err(ratsio_error("subscribe"))?;
        let request = proto::SubscriptionRequest {
            client_id: s.client_id.clone(),
            subject: s.channel.clone(),
            q_group: s.queue_group.clone(),
            inbox,
            max_in_flight: s.max_in_flight,
            ack_wait_in_secs: s.ack_wait_secs,
            durable_name: s.durable_name.clone(),
            // A new durable starts with the first message; a resumed one continues after its last ack.
            start_position: proto::StartPosition::First as i32,
            ..Default::default()
        };
        let answer = within(
            "subscribe",
            s.timeout(),
            nats.request(sub_requests, &request.encode_to_vec()),
        )
        .await
        .map_err(|_| BrokerError::Refused {
            cluster_id: s.cluster_id.clone(),
            client_id: s.client_id.clone(),
        })
        .and_then(|reply| reply.map_err(ratsio_error("subscribe")))
        .and_then(|reply| {
            Ok(proto::SubscriptionResponse::decode(
                reply.payload.as_slice(),
            )?)
        });
        let response = match answer {
            Ok(response) if response.error.is_empty() => response,
            refused => {
                let _ = within("unsubscribe", s.timeout(), nats.un_subscribe(&sid)).await;
                return Err(refused
                    .map(|response| BrokerError::SubscriptionRefused {
                        channel: s.channel.clone(),
                        message: response.error,
                    })
                    .unwrap_or_else(|error| error));
            }
        };

        let (sender, receiver) = mpsc::unbounded_channel();
        let (acks, timeout) = (self.acks.clone(), s.timeout());
        let ack_inbox = response.ack_inbox;
        // The broker bounds what is unacknowledged (max in flight), so this channel is bounded in practice.
        tokio::spawn(async move {
            let mut messages = Box::pin(messages);
            while let Some(message) = messages.next().await {
                let message = match proto::MsgProto::decode(message.payload.as_slice()) {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(%error, "Skipped a delivery that is not a STAN message.");
                        continue;
                    }
                };
                let delivery = BrokerMessage {
                    payload: Bytes::from(message.data),
                    sequence: message.sequence,
                    redelivered: message.redelivered,
                    // ratsio does not expose the redelivery count.
                    delivery_count: None,
                    ack: AckHandle::Stan(StanAck {
                        acks: acks.clone(),
                        inbox: Some(ack_inbox.clone()),
                        ack: proto::Ack {
                            subject: message.subject,
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

    /// Pings the broker with our connection id, over ratsio's connection (the one our subscription and heartbeats
    /// live on): an error when that connection is dead, when the broker no longer holds this connection as the
    /// registration of our client id (`is_replaced`: another process took the id over, or the broker forgot us),
    /// or when it does not answer.
    pub async fn probe(&self) -> Result<(), BrokerError> {
        let s = &self.settings;
        let request = stan_liveness::ping_request(&self.conn_id);
        let reply = within(
            "ping",
            s.timeout(),
            self.client
                .nats_client
                .request(self.ping_subject.clone(), &request),
        )
        .await?
        .map_err(ratsio_error("ping"))?;
        stan_liveness::read_pong(&reply.payload, &s.client_id)?;
        self.link
            .connected(self.nats.server_of(&self.acks.server_info()));
        self.link.working();
        Ok(())
    }

    /// Drops the connection without the STAN close request, for a connection the broker no longer holds: the
    /// close names only the client id, so it would remove the process that holds the id now.
    pub async fn abandon(&self) {
        let timeout = self.settings.timeout();
        let _ = within("close", timeout, self.acks.drain()).await;
        let _ = within("close", timeout, self.client.nats_client.close()).await;
    }

    /// Closes the connection. The durable subscription is not unsubscribed, so the next start resumes it. The close
    /// request goes over the ack connection, which async-nats keeps on a live server, where ratsio's may be dead.
    pub async fn close(&self) {
        let timeout = self.settings.timeout();
        // The acks queued so far leave before the connection they belong to closes.
        if let Ok(Err(error)) = within("flush", timeout, self.acks.flush()).await {
            tracing::warn!(%error, "Failed to flush the last acks; those messages will be redelivered.");
        }
        let close = proto::CloseRequest {
            client_id: self.settings.client_id.clone(),
        };
        let closed = within(
            "close",
            timeout,
            self.acks.request(
                self.subjects.close_requests.clone(),
                Bytes::from(close.encode_to_vec()),
            ),
        )
        .await;
        if !matches!(closed, Ok(Ok(_))) {
            // The broker replaces the registration once its heartbeat inbox stops answering.
            tracing::warn!(client_id = %self.settings.client_id,
                "The broker did not confirm the close; the next connect replaces the registration.");
        }
        let _ = within("close", timeout, self.acks.drain()).await;
        let _ = within("close", timeout, self.client.nats_client.close()).await;
    }

    pub fn client_id(&self) -> &str {
        &self.settings.client_id
    }
}
