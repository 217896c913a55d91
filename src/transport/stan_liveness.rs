//! Is this connection still the broker's registered holder of its client id?
//!
//! A process that stalls longer than the broker's liveness probe (a freeze, a long pause, SIGSTOP) can lose its
//! client id: a new connect with the same id finds the old heartbeat inbox silent and replaces the registration.
//! When the old process wakes, nothing tells it: its connection is open, its subscription simply receives no more
//! messages. Asking the broker "is client id X registered?" cannot tell either, because X is registered, to the
//! other process. What tells is the connection id: each STAN connect carries a fresh `conn_id`, and since
//! protocol 1 a client pings with it on the server's ping subject; nats-streaming-server answers a `PingResponse`
//! whose error says the client was replaced or is not registered when that conn_id is not a current registration.
//!
//! ratsio 0.4.1 keeps both pieces to itself: it generates the conn_id privately, and it connects with protocol 0,
//! to which the server does not announce its ping subject. So:
//! - the conn_id is read from our own connect request, which the NATS server also delivers to a subscription of
//!   ours on the cluster's discover subject while ratsio connects (`ConnectWatch`);
//! - the ping subject is asked for with a protocol 1 connect under a throwaway client id, closed at once
//!   (`ping_subject`). It is the server's, not the client's: nats-streaming-server serves every client's pings on
//!   `_STAN.discover.<cluster>.pings`.

use std::time::Duration;

use async_nats::Subscriber;
use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;
use stan_proto::proto;

use crate::transport::deadline::{within, Elapsed};

#[derive(Debug, thiserror::Error)]
pub enum LivenessError {
    #[error(
        "the broker no longer knows this connection of client id {client_id:?}: another process connected with \
         the same id while this one did not answer the broker's liveness probe, or the broker forgot it \
         (it answered: {answer})"
    )]
    Replaced { client_id: String, answer: String },
    #[error(transparent)]
    Timeout(#[from] Elapsed),
    #[error("{what} failed: {message}")]
    Nats { what: &'static str, message: String },
    #[error("malformed answer from the broker: {0}")]
    Malformed(#[from] prost::DecodeError),
    #[error("the broker refused a protocol 1 connect: {0}")]
    Refused(String),
    #[error(
        "the broker offers no client pings (STAN protocol 1, nats-streaming-server 0.10 or later): a replaced \
         client id could not be noticed"
    )]
    NoPings,
    #[error("our own connect request for client id {0:?} was not seen on the discover subject")]
    ConnectNotSeen(String),
}

fn nats_error<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> LivenessError {
    move |error| LivenessError::Nats {
        what,
        message: error.to_string(),
    }
}

fn discover_subject(cluster_id: &str) -> String {
    format!("_STAN.discover.{cluster_id}")
}

/// A view of the cluster's connect requests, opened before ratsio connects, to learn the conn_id it sends.
pub struct ConnectWatch {
    requests: Subscriber,
}

impl ConnectWatch {
    /// Subscribes to the discover subject and waits until the server has the subscription, so that a connect
    /// request published afterwards (on any connection) reaches it.
    pub async fn open(
        nats: &async_nats::Client,
        cluster_id: &str,
        timeout: Duration,
    ) -> Result<ConnectWatch, LivenessError> {
        let what = "watching connect requests";
        let requests = within(what, timeout, async {
            let requests = nats
                .subscribe(discover_subject(cluster_id))
                .await
                .map_err(nats_error(what))?;
            // A flush only empties our buffer. The server handles one connection's operations in order, so once a
            // message we publish after the subscription comes back to us, the subscription is in place.
            let echo_subject = nats.new_inbox();
            let mut echo = nats
                .subscribe(echo_subject.clone())
                .await
                .map_err(nats_error(what))?;
            nats.publish(echo_subject, Bytes::new())
                .await
                .map_err(nats_error(what))?;
            echo.next().await;
            let _ = echo.unsubscribe().await;
            Ok::<_, LivenessError>(requests)
        })
        .await??;
        Ok(ConnectWatch { requests })
    }

    /// The conn_id of the first connect request for `client_id` seen since `open`: ours, when called right after
    /// our connect returned. (Another process connecting with the same id in that very moment would be refused as
    /// a duplicate or replace us; either way the first ping tells.)
    pub async fn conn_id_of(
        mut self,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Vec<u8>, LivenessError> {
        let seen = within("reading our connect request", timeout, async {
            while let Some(message) = self.requests.next().await {
                // Anything undecodable on the discover subject is somebody else's problem.
                if let Ok(request) = proto::ConnectRequest::decode(message.payload) {
                    if request.client_id == client_id && !request.conn_id.is_empty() {
                        return Some(request.conn_id);
                    }
                }
            }
            None
        })
        .await;
        let _ = self.requests.unsubscribe().await;
        seen?.ok_or_else(|| LivenessError::ConnectNotSeen(client_id.to_owned()))
    }
}

/// The broker's ping subject, from a protocol 1 connect under a throwaway client id that is closed again at once.
pub async fn ping_subject(
    nats: &async_nats::Client,
    cluster_id: &str,
    client_id: &str,
    timeout: Duration,
) -> Result<String, LivenessError> {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let request = proto::ConnectRequest {
        client_id: format!("{client_id}-pings-{}", &nonce[..12]),
        heartbeat_inbox: format!("_INBOX.pings.{nonce}"),
        protocol: 1,
        conn_id: nonce.clone().into_bytes(),
        ping_interval: 5,
        ping_max_out: 3,
    };
    let reply = within(
        "asking for the ping subject",
        timeout,
        nats.request(
            discover_subject(cluster_id),
            Bytes::from(request.encode_to_vec()),
        ),
    )
    .await?
    .map_err(nats_error("asking for the ping subject"))?;
    let response = proto::ConnectResponse::decode(reply.payload)?;
    if !response.error.is_empty() {
        return Err(LivenessError::Refused(response.error));
    }
    let close = proto::CloseRequest {
        client_id: request.client_id,
    };
    // Best effort: a registration whose close is lost goes once its heartbeats fail.
    let _ = within(
        "closing the ping subject's connection",
        timeout,
        nats.request(response.close_requests, Bytes::from(close.encode_to_vec())),
    )
    .await;
    if response.ping_requests.is_empty() {
        return Err(LivenessError::NoPings);
    }
    Ok(response.ping_requests)
}

/// The ping with our conn_id, to send on the ping subject.
pub fn ping_request(conn_id: &[u8]) -> Vec<u8> {
    proto::Ping {
        conn_id: conn_id.to_vec(),
    }
    .encode_to_vec()
}

/// Reads the broker's answer to `ping_request`: `Ok` while it holds the pinging connection as the registration of
/// `client_id`.
pub fn read_pong(payload: &[u8], client_id: &str) -> Result<(), LivenessError> {
    let response = proto::PingResponse::decode(payload)?;
    if response.error.is_empty() {
        Ok(())
    } else {
        Err(LivenessError::Replaced {
            client_id: client_id.to_owned(),
            answer: response.error,
        })
    }
}
