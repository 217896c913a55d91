//! Publishing to a STAN cluster with every message confirmed by its PubAck (ratsio's publish does not wait).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use tokio::sync::oneshot;

use crate::proto;

/// How long a connect or a PubAck may take before the publish counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot reach nats-server: {0}")]
    Nats(String),
    #[error("no STAN server answered on cluster id {0:?} (is the broker running?)")]
    NoServer(String),
    #[error("the STAN server refused: {0}")]
    Refused(String),
    #[error("no PubAck within {REQUEST_TIMEOUT:?}")]
    Timeout,
    #[error("malformed reply from the STAN server: {0}")]
    Malformed(#[from] prost::DecodeError),
}

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<String>>>>;

/// A STAN connection used only to publish.
pub struct StanPublisher {
    nats: async_nats::Client,
    client_id: String,
    conn_id: Vec<u8>,
    pub_prefix: String,
    close_requests: String,
    ack_inbox: String,
    waiters: Waiters,
}

fn nats_error(error: impl std::fmt::Display) -> PublishError {
    PublishError::Nats(error.to_string())
}

impl StanPublisher {
    pub async fn connect(
        nats_url: &str,
        cluster_id: &str,
        client_id: &str,
    ) -> Result<StanPublisher, PublishError> {
        let nats = async_nats::connect(nats_url).await.map_err(nats_error)?;
        let hb_inbox = nats.new_inbox();
        // Answer the server's heartbeats so it keeps us registered.
        let mut heartbeats = nats.subscribe(hb_inbox.clone()).await.map_err(nats_error)?;
        let hb_client = nats.clone();
        tokio::spawn(async move {
            while let Some(msg) = heartbeats.next().await {
                if let Some(reply) = msg.reply {
                    let _ = hb_client.publish(reply, Bytes::new()).await;
                }
            }
        });

        let ack_inbox = nats.new_inbox();
        let waiters: Waiters = Arc::default();
        let mut acks = nats
            .subscribe(ack_inbox.clone())
            .await
            .map_err(nats_error)?;
        let ack_waiters = waiters.clone();
        tokio::spawn(async move {
            while let Some(msg) = acks.next().await {
                let Ok(ack) = proto::PubAck::decode(&msg.payload[..]) else {
                    continue;
                };
                let waiter = ack_waiters
                    .lock()
                    .ok()
                    .and_then(|mut w| w.remove(&ack.guid));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(ack.error);
                }
            }
        });

        let conn_id = format!("{:032x}", rand::random::<u128>()).into_bytes();
        let request = proto::ConnectRequest {
            client_id: client_id.to_owned(),
            heartbeat_inbox: hb_inbox,
            protocol: 1,
            conn_id: conn_id.clone(),
            ping_interval: 5,
            ping_max_out: 3,
        };
        let discover = format!("_STAN.discover.{cluster_id}");
        let reply = tokio::time::timeout(
            REQUEST_TIMEOUT,
            nats.request(discover, request.encode_to_vec().into()),
        )
        .await
        .map_err(|_| PublishError::NoServer(cluster_id.to_owned()))?
        .map_err(|_| PublishError::NoServer(cluster_id.to_owned()))?;
        let response = proto::ConnectResponse::decode(&reply.payload[..])?;
        if !response.error.is_empty() {
            return Err(PublishError::Refused(response.error));
        }
        Ok(StanPublisher {
            nats,
            client_id: client_id.to_owned(),
            conn_id,
            pub_prefix: response.pub_prefix,
            close_requests: response.close_requests,
            ack_inbox,
            waiters,
        })
    }

    /// Publishes and waits for the PubAck.
    pub async fn publish(&self, subject: &str, data: Bytes) -> Result<(), PublishError> {
        self.publish_pipelined(subject, data).await
    }

    /// Sends now and returns a future that resolves on the PubAck, so callers can keep many in flight.
    pub fn publish_pipelined(
        &self,
        subject: &str,
        data: Bytes,
    ) -> impl Future<Output = Result<(), PublishError>> + Send + 'static {
        let guid = format!("{:032x}", rand::random::<u128>());
        let (tx, rx) = oneshot::channel();
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.insert(guid.clone(), tx);
        }
        let msg = proto::PubMsg {
            client_id: self.client_id.clone(),
            guid: guid.clone(),
            subject: subject.to_owned(),
            data: data.to_vec(),
            conn_id: self.conn_id.clone(),
            ..Default::default()
        };
        let (nats, target, reply, waiters) = (
            self.nats.clone(),
            format!("{}.{subject}", self.pub_prefix),
            self.ack_inbox.clone(),
            self.waiters.clone(),
        );
        async move {
            let sent = nats
                .publish_with_reply(target, reply, msg.encode_to_vec().into())
                .await;
            let outcome = match sent {
                Err(error) => Err(nats_error(error)),
                Ok(()) => match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
                    Ok(Ok(error)) if error.is_empty() => Ok(()),
                    Ok(Ok(error)) => Err(PublishError::Refused(error)),
                    Ok(Err(_)) | Err(_) => Err(PublishError::Timeout),
                },
            };
            if outcome.is_err() {
                if let Ok(mut waiters) = waiters.lock() {
                    waiters.remove(&guid);
                }
            }
            outcome
        }
    }

    /// Unregisters from the STAN server and closes the NATS connection.
    pub async fn close(self) -> Result<(), PublishError> {
        let request = proto::CloseRequest {
            client_id: self.client_id.clone(),
        };
        let reply = tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.nats
                .request(self.close_requests.clone(), request.encode_to_vec().into()),
        )
        .await
        .map_err(|_| PublishError::Timeout)?
        .map_err(nats_error)?;
        let response = proto::CloseResponse::decode(&reply.payload[..])?;
        if !response.error.is_empty() {
            return Err(PublishError::Refused(response.error));
        }
        Ok(())
    }
}
