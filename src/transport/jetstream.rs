//! The JetStream adapter: the only code that calls async-nats' JetStream API.
//!
//! - The stream: looked up by name; if it does not exist it is created (file storage, the configured subject and
//!   limits, `JS_REPLICAS` replicas) when `JS_CREATE_STREAM` allows it, else start-up fails naming the stream it
//!   needs. An existing stream is used as it is: its replica count is logged and exposed, never changed. The
//!   consumer is created with the stream's replica count (JetStream's default: it follows the stream).
//! - The consumer: one durable pull consumer, shared by every instance (JetStream hands each pulled message to one
//!   of them), with explicit acks, ack wait and max ack pending from the in-flight settings, and a filter on the
//!   subject. A new consumer starts at the first message of the stream; an existing one resumes where it stands.
//! - Acks: a `+ACK` published to the delivery's reply subject through the shared client, only after the message's
//!   outcome is committed (the subscriber decides). A lost ack means a redelivery, which is found stored.
//! - The servers: the whole `NATS_URL` list; async-nats moves to another server by itself when its own dies.
//! - While a stream's or a consumer's leader moves, pulls time out, find no responders or end with "leadership
//!   change": those are retried on the same message stream with backoff. Only when they go on past
//!   `MAX_TRANSIENT_ERRORS` in a row, or the consumer is gone, does the subscription end, and the subscriber
//!   connects afresh; nothing here ends the process.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, ErrorCode};
use async_nats::Subject;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::config::redact;
use crate::config::{JetStreamSettings, Settings};
use crate::telemetry::error_chain::error_chain;
use crate::transport::deadline::{backoff, within, Elapsed};
use crate::transport::link::Link;
use crate::transport::nats_auth::{NatsSettingsError, NatsTarget};
use crate::transport::{AckHandle, BrokerMessage, ConsumerLag};

/// Most messages one pull request asks for; the client asks for more when half of them arrived.
const MAX_BATCH: i64 = 512;
/// How often the server confirms an open pull request when it has nothing to deliver: a silent server is noticed
/// within two of these.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long one pull request stays open.
const EXPIRES: Duration = Duration::from_secs(30);
/// Transient pull errors in a row (a leader moving) retried on the same message stream before it is given up and
/// the subscriber connects afresh. With the backoff, about half a minute.
const MAX_TRANSIENT_ERRORS: u32 = 8;

/// The JetStream settings plus the in-flight settings shared with STAN.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub js: JetStreamSettings,
    /// `NATS_URL` without credentials, the NATS credentials and TLS (shared with STAN).
    pub nats: NatsTarget,
    /// After this long without an ack, JetStream delivers the message again.
    pub ack_wait: Duration,
    /// Messages delivered and not yet acked, at most, over every instance sharing the consumer.
    pub max_ack_pending: i64,
}

impl ConsumerSettings {
    /// The settings of a source: `NATS_URL` parsed, `JS_ACK_WAIT` / `JS_MAX_ACK_PENDING` or their STAN fallbacks.
    pub fn from_settings(settings: &Settings) -> Result<ConsumerSettings, NatsSettingsError> {
        Ok(ConsumerSettings {
            js: settings.jetstream.clone(),
            nats: NatsTarget::for_jetstream(settings)?,
            ack_wait: settings.js_ack_wait(),
            max_ack_pending: settings.js_max_ack_pending(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JetStreamError {
    #[error("cannot reach nats-server at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error(transparent)]
    Timeout(#[from] Elapsed),
    #[error(
        "the JetStream stream {stream:?} does not exist and JS_CREATE_STREAM is false: create it (file storage, \
         subject {subject:?}) or let the service create it"
    )]
    NoStream { stream: String, subject: String },
    #[error(
        "the JetStream stream {stream:?} does not take subject {subject:?} (its subjects: {subjects:?}): set \
         JS_SUBJECT to one of them or add it to the stream"
    )]
    SubjectNotInStream {
        stream: String,
        subject: String,
        subjects: Vec<String>,
    },
    #[error(
        "the JetStream stream {stream:?} cannot be created with {replicas} replicas: the cluster has fewer \
         JetStream servers (or too little storage) for them. Set JS_REPLICAS to at most the number of servers \
         (JetStream answered: {answer})"
    )]
    TooFewServers {
        stream: String,
        replicas: usize,
        answer: String,
    },
    #[error("{what} failed: {message}")]
    Request { what: &'static str, message: String },
    #[error(transparent)]
    Settings(#[from] NatsSettingsError),
    #[error("the delivery carries no JetStream ack subject")]
    NoAckSubject,
    #[error("failed to send an ack: {0}")]
    Ack(#[from] async_nats::PublishError),
}

fn request_error<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> JetStreamError {
    move |error| JetStreamError::Request {
        what,
        message: error.to_string(),
    }
}

/// A connection to nats-server and the durable consumer on the stream.
pub struct JetStreamConnection {
    /// Shared by every delivery's ack handle: an `Arc` clone is one increment, a `Client` clone about eight.
    client: Arc<async_nats::Client>,
    consumer: PullConsumer,
    settings: ConsumerSettings,
    link: Arc<Link>,
}

/// What acknowledging one JetStream delivery needs: the client and the delivery's reply subject.
pub struct JetStreamAck {
    client: Arc<async_nats::Client>,
    reply: Subject,
    timeout: Duration,
}

impl JetStreamAck {
    /// Queues `+ACK` for the client's next write.
    pub async fn ack(self) -> Result<(), JetStreamError> {
        let ack = Bytes::from_static(b"+ACK");
        within("ack", self.timeout, self.client.publish(self.reply, ack)).await??;
        Ok(())
    }
}

impl JetStreamConnection {
    /// Connects, makes sure the stream exists (creating it where allowed) and takes the durable consumer,
    /// creating it at the first message of the stream if it does not exist.
    pub async fn connect(
        settings: &ConsumerSettings,
        link: &Arc<Link>,
    ) -> Result<JetStreamConnection, JetStreamError> {
        let s = &settings.js;
        let timeout = s.timeout();
        let nats = &settings.nats;
        let client = within(
            "connect",
            timeout,
            nats.async_nats_options_for(link)
                .name(format!("order-service {}", s.consumer))
                .connect(nats.async_nats_servers()?),
        )
        .await?
        .map_err(|e| JetStreamError::Unreachable {
            url: nats.display(),
            message: redact::text(&error_chain(&e)),
        })?;
        link.connected(nats.server_of(&client.server_info()));
        let context = jetstream::context::ContextBuilder::new()
            .timeout(timeout)
            .build(client.clone());
        let stream = match within("stream lookup", timeout, context.get_stream(&s.stream)).await? {
            Ok(stream) => stream,
            Err(error) if is_stream_not_found(error.kind()) => {
                if !s.create_stream {
                    return Err(JetStreamError::NoStream {
                        stream: s.stream.clone(),
                        subject: s.subject.clone(),
                    });
                }
                let created = within(
                    "stream creation",
                    timeout,
                    context.get_or_create_stream(stream_config(s)),
                )
                .await?
                .map_err(|error| match error.kind() {
                    CreateStreamErrorKind::JetStream(answer)
                        if is_too_few_servers(answer.error_code()) =>
                    {
                        JetStreamError::TooFewServers {
                            stream: s.stream.clone(),
                            replicas: usize::from(s.replicas),
                            answer: answer.to_string(),
                        }
                    }
                    _ => request_error("creating the stream")(error),
                })?;
                tracing::info!(stream = %s.stream, subject = %s.subject, replicas = usize::from(s.replicas),
                    "Created the JetStream stream.");
                created
            }
            Err(error) => return Err(request_error("looking up the stream")(error)),
        };
        let replicas = stream.cached_info().config.num_replicas.max(1);
        if replicas != usize::from(s.replicas) {
            tracing::info!(stream = %s.stream, replicas, js_replicas = usize::from(s.replicas),
                "The JetStream stream exists with its own replica count; using it as it is.");
        } else {
            tracing::info!(stream = %s.stream, replicas, "Using the JetStream stream.");
        }
        link.stream_replicas(replicas);
        let subjects = &stream.cached_info().config.subjects;
        if !subjects.iter().any(|pattern| covers(pattern, &s.subject)) {
            return Err(JetStreamError::SubjectNotInStream {
                stream: s.stream.clone(),
                subject: s.subject.clone(),
                subjects: subjects.clone(),
            });
        }
        let consumer: PullConsumer = within(
            "consumer lookup",
            timeout,
            stream.get_or_create_consumer(&s.consumer, consumer_config(settings)),
        )
        .await?
        .map_err(request_error("taking the durable consumer"))?;
        Ok(JetStreamConnection {
            client: Arc::new(client),
            consumer,
            settings: settings.clone(),
            link: link.clone(),
        })
    }

    /// Starts pulling. Deliveries arrive on the returned channel, which closes when the message stream fails.
    pub async fn subscribe(
        &self,
    ) -> Result<mpsc::UnboundedReceiver<BrokerMessage>, JetStreamError> {
        let timeout = self.settings.js.timeout();
        let batch = self.settings.max_ack_pending.clamp(1, MAX_BATCH);
        let messages = within(
            "pull",
            timeout,
            self.consumer
                .stream()
                .max_messages_per_batch(usize::try_from(batch).unwrap_or(1))
                .heartbeat(HEARTBEAT)
                .expires(EXPIRES)
                .messages(),
        )
        .await?
        .map_err(request_error("pulling from the consumer"))?;

        let (sender, receiver) = mpsc::unbounded_channel();
        let client = self.client.clone();
        // The consumer's max ack pending bounds what is delivered and unacked, so this channel is bounded in
        // practice.
        tokio::spawn(async move {
            let mut messages = Box::pin(messages);
            let mut transient_errors = 0;
            while let Some(item) = messages.next().await {
                let message = match item {
                    Ok(message) => {
                        transient_errors = 0;
                        message
                    }
                    Err(error)
                        if is_transient(error.kind())
                            && transient_errors < MAX_TRANSIENT_ERRORS =>
                    {
                        // A leader moving, or our server gone while async-nats moves to another: pull again.
                        let delay = backoff(transient_errors);
                        transient_errors += 1;
                        tracing::warn!(%error, attempt = transient_errors, ?delay,
                            "A JetStream pull failed; pulling again.");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "The JetStream message stream failed.");
                        break;
                    }
                };
                let Some(delivery) = delivery_of(message, &client, timeout) else {
                    continue;
                };
                if sender.send(delivery).is_err() {
                    break;
                }
            }
        });
        Ok(receiver)
    }

    /// The consumer's backlog, read from the server; an error means the connection or the consumer is gone.
    pub async fn lag(&self) -> Result<ConsumerLag, JetStreamError> {
        let info = within(
            "consumer info",
            self.settings.js.timeout(),
            self.consumer.get_info(),
        )
        .await?
        .map_err(request_error("reading the consumer's state"))?;
        self.link
            .connected(self.settings.nats.server_of(&self.client.server_info()));
        self.link.working();
        Ok(ConsumerLag {
            pending: info.num_pending,
            ack_pending: u64::try_from(info.num_ack_pending).unwrap_or(u64::MAX),
        })
    }

    /// Sends the acks queued, then closes the connection. The durable consumer stays.
    pub async fn close(&self) {
        let timeout = self.settings.js.timeout();
        if let Ok(Err(error)) = within("flush", timeout, self.client.flush()).await {
            tracing::warn!(%error, "Failed to flush the last acks; those messages will be redelivered.");
        }
        let _ = within("drain", timeout, self.client.drain()).await;
    }
}

/// A delivery from a pulled message; `None` (logged) for a message without JetStream metadata, which cannot be
/// acked or placed and so is left to the server.
fn delivery_of(
    message: jetstream::Message,
    client: &Arc<async_nats::Client>,
    timeout: Duration,
) -> Option<BrokerMessage> {
    let (sequence, delivered) = match message.info() {
        Ok(info) => (info.stream_sequence, info.delivered),
        Err(error) => {
            tracing::warn!(%error, subject = %message.subject, "Ignored a message without JetStream metadata.");
            return None;
        }
    };
    let jetstream::Message { message, .. } = message;
    let reply = message.reply?;
    let delivery_count = u64::try_from(delivered).ok();
    Some(BrokerMessage {
        payload: message.payload,
        sequence,
        redelivered: delivered > 1,
        delivery_count,
        ack: AckHandle::JetStream(JetStreamAck {
            client: client.clone(),
            reply,
            timeout,
        }),
    })
}

/// Pull errors of a moving leader or a lost server, which the next pull may not meet.
fn is_transient(kind: MessagesErrorKind) -> bool {
    matches!(
        kind,
        MessagesErrorKind::MissingHeartbeat
            | MessagesErrorKind::NoResponders
            | MessagesErrorKind::Pull
            | MessagesErrorKind::Other
    )
}

/// JetStream's answers to a stream asking for more replicas than the cluster has servers.
fn is_too_few_servers(code: ErrorCode) -> bool {
    [
        ErrorCode::INSUFFICIENT_RESOURCES,
        ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED,
        ErrorCode::CLUSTER_NO_PEERS,
    ]
    .contains(&code)
}

fn is_stream_not_found(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(error) if error.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// The stream the service creates when none exists: file storage (survives a server restart), the one subject,
/// the configured limits, and a duplicate window so a re-send with the same `Nats-Msg-Id` is dropped.
fn stream_config(s: &JetStreamSettings) -> StreamConfig {
    StreamConfig {
        name: s.stream.clone(),
        subjects: vec![s.subject.clone()],
        storage: StorageType::File,
        max_messages: s.max_msgs,
        max_bytes: s.max_bytes,
        max_age: Duration::from_secs(s.max_age_secs),
        duplicate_window: Duration::from_secs(s.duplicate_window_secs),
        num_replicas: usize::from(s.replicas),
        ..Default::default()
    }
}

fn consumer_config(settings: &ConsumerSettings) -> pull::Config {
    pull::Config {
        durable_name: Some(settings.js.consumer.clone()),
        // A new consumer takes the whole stream; an existing one keeps its place.
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        max_ack_pending: settings.max_ack_pending,
        // Redelivered until stored: a message that keeps failing shows in the delivery-count metrics instead.
        max_deliver: -1,
        filter_subject: settings.js.subject.clone(),
        ..Default::default()
    }
}

/// True when the subject pattern `pattern` (tokens split by `.`, `*` one token, `>` the rest) matches `subject`.
fn covers(pattern: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for part in pattern.split('.') {
        match (part, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (part, Some(token)) if part == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_patterns_match_as_nats_does() {
        let cases = [
            ("orders", "orders", true),
            ("orders", "orders.eu", false),
            ("orders.*", "orders.eu", true),
            ("orders.*", "orders", false),
            ("orders.>", "orders.eu.de", true),
            ("orders.>", "orders", false),
            (">", "anything.at.all", true),
            ("other", "orders", false),
        ];
        for (pattern, subject, expected) in cases {
            assert_eq!(covers(pattern, subject), expected, "{pattern} / {subject}");
        }
    }
}
