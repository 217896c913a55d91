//! A minimal STAN client written directly on async-nats and the protocol messages.
//!
//! ratsio hides server errors (a refused connect still returns `Ok`) and has no timeouts, so
//! protocol checks go through this client instead. It also subscribes to a delivery inbox
//! *before* sending the subscription request, so no delivery is ever lost: the tests that use it
//! can expect exact sequences.

use std::time::Duration;

use anyhow::{bail, ensure, Context};
use async_nats::{Client, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use stan_proto::proto::{
    Ack, CloseRequest, CloseResponse, ConnectRequest, ConnectResponse, MsgProto, Ping,
    PingResponse, PubAck, PubMsg, StartPosition, SubscriptionRequest, SubscriptionResponse,
    UnsubscribeRequest,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::helpers::{unique, ClientStartPosition, SubscriptionOptions};

/// Upper bound for any request/response exchange with the broker.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a delivery the broker should send at once may take to arrive.
pub const DELIVERY_WAIT: Duration = Duration::from_secs(2);
/// The `pingInterval` and `pingMaxOut` we announce; the server echoes them back.
const PING_INTERVAL_SECS: i32 = 5;
const PING_MAX_OUT: i32 = 3;

/// Opens a NATS connection of its own, as a separate client process would have.
pub async fn nats_connect(nats_url: &str) -> anyhow::Result<Client> {
    async_nats::ConnectOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .connect(nats_url)
        .await
        .with_context(|| format!("Failed to connect to NATS at {nats_url}"))
}

/// Sends one protobuf request and decodes the protobuf reply.
pub async fn request<Req: Message, Resp: Message + Default>(
    nats: &Client,
    subject: &str,
    request: &Req,
) -> anyhow::Result<Resp> {
    let reply = nats
        .request(subject.to_string(), Bytes::from(request.encode_to_vec()))
        .await
        .with_context(|| format!("No reply to a request on {subject}"))?;
    Resp::decode(reply.payload).with_context(|| format!("Undecodable reply from {subject}"))
}

/// One STAN connection: a client id registered with the broker.
pub struct RawConnection {
    nats: Client,
    pub client_id: String,
    pub conn_id: Vec<u8>,
    pub response: ConnectResponse,
    heartbeats: Option<HeartbeatResponder>,
}

impl RawConnection {
    /// Connects `client_id` and answers the server's heartbeats, like a live client.
    pub async fn connect(
        nats_url: &str,
        cluster_id: &str,
        client_id: &str,
    ) -> anyhow::Result<RawConnection> {
        let nats = nats_connect(nats_url).await?;
        let heartbeat_inbox = nats.new_inbox();
        let heartbeats = Some(HeartbeatResponder::start(&nats, &heartbeat_inbox).await?);
        let conn_id = unique("conn").into_bytes();
        let response = send_connect_request(
            &nats,
            cluster_id,
            client_id,
            &heartbeat_inbox,
            conn_id.clone(),
        )
        .await?;
        ensure!(
            response.error.is_empty(),
            "The broker refused client {client_id}: {}",
            response.error
        );
        Ok(RawConnection {
            nats,
            client_id: client_id.to_string(),
            conn_id,
            response,
            heartbeats,
        })
    }

    /// Sends a ConnectRequest for `client_id` over this connection's NATS connection, with a fresh
    /// heartbeat inbox and connection id, and returns the response, whatever it says.
    pub async fn request_connect_as(
        &self,
        cluster_id: &str,
        client_id: &str,
    ) -> anyhow::Result<ConnectResponse> {
        let heartbeat_inbox = self.nats.new_inbox();
        let conn_id = unique("conn").into_bytes();
        send_connect_request(&self.nats, cluster_id, client_id, &heartbeat_inbox, conn_id).await
    }

    /// The NATS connection under this STAN connection.
    pub fn nats(&self) -> &Client {
        &self.nats
    }

    /// From now on the server's heartbeats go unanswered, as if the process had died.
    pub async fn stop_answering_heartbeats(&mut self) -> anyhow::Result<()> {
        if let Some(responder) = self.heartbeats.take() {
            responder.stop().await?;
        }
        self.nats
            .flush()
            .await
            .context("Failed to flush the unsubscribe of the heartbeat inbox")
    }

    /// Publishes `data` to `channel` and returns the broker's PubAck, whatever it says.
    pub async fn publish(&self, channel: &str, data: &[u8]) -> anyhow::Result<PubAck> {
        let message = pub_msg(&self.client_id, &self.conn_id, channel, data);
        self.publish_message(channel, &message).await
    }

    /// Publishes and fails unless the PubAck confirms the message.
    pub async fn publish_confirmed(&self, channel: &str, data: &[u8]) -> anyhow::Result<()> {
        let ack = self.publish(channel, data).await?;
        ensure!(
            ack.error.is_empty(),
            "The broker refused a publish on {channel}: {}",
            ack.error
        );
        Ok(())
    }

    /// Sends a hand-made PubMsg to `<pubPrefix>.<channel>` and waits for its PubAck.
    pub async fn publish_message(&self, channel: &str, message: &PubMsg) -> anyhow::Result<PubAck> {
        let subject = format!("{}.{channel}", self.response.pub_prefix);
        request(&self.nats, &subject, message).await
    }

    /// Pings the server with this connection's id.
    pub async fn ping(&self) -> anyhow::Result<PingResponse> {
        self.ping_as(self.conn_id.clone()).await
    }

    /// Pings the server with any connection id.
    pub async fn ping_as(&self, conn_id: Vec<u8>) -> anyhow::Result<PingResponse> {
        ensure!(
            !self.response.ping_requests.is_empty(),
            "The broker gave no ping subject"
        );
        request(&self.nats, &self.response.ping_requests, &Ping { conn_id }).await
    }

    /// Sends a CloseRequest for this client id.
    pub async fn close(&self) -> anyhow::Result<CloseResponse> {
        self.close_as(&self.client_id).await
    }

    /// Sends a CloseRequest for any client id.
    pub async fn close_as(&self, client_id: &str) -> anyhow::Result<CloseResponse> {
        let close = CloseRequest {
            client_id: client_id.to_string(),
        };
        request(&self.nats, &self.response.close_requests, &close).await
    }

    /// Sends a subscription request as given and returns the response, whatever it says.
    pub async fn request_subscription(
        &self,
        subscription: &SubscriptionRequest,
    ) -> anyhow::Result<SubscriptionResponse> {
        request(&self.nats, &self.response.sub_requests, subscription).await
    }

    /// Subscribes: listens on a fresh inbox first, then asks the broker to deliver there.
    pub async fn subscribe(
        &self,
        channel: &str,
        options: RawSubOptions,
    ) -> anyhow::Result<RawSubscription> {
        let inbox = self.nats.new_inbox();
        let deliveries = self
            .nats
            .subscribe(inbox.clone())
            .await
            .context("Failed to subscribe to the delivery inbox")?;
        let subscription = SubscriptionRequest {
            client_id: self.client_id.clone(),
            subject: channel.to_string(),
            q_group: options.queue_group.clone().unwrap_or_default(),
            inbox: inbox.clone(),
            max_in_flight: options.max_in_flight,
            ack_wait_in_secs: options.ack_wait_secs,
            durable_name: options.durable_name.clone().unwrap_or_default(),
            start_position: options.start_position as i32,
            start_sequence: options.start_sequence,
            start_time_delta: options.start_time_delta.map_or(0, i64::from),
        };
        let response = self.request_subscription(&subscription).await?;
        ensure!(
            response.error.is_empty(),
            "The broker refused a subscription to {channel}: {}",
            response.error
        );
        Ok(RawSubscription {
            nats: self.nats.clone(),
            client_id: self.client_id.clone(),
            channel: channel.to_string(),
            ack_inbox: response.ack_inbox,
            durable_name: options.durable_name.unwrap_or_default(),
            deliveries,
        })
    }
}

/// A PubMsg of `data` to `channel` from `client_id` on `conn_id`, with a fresh guid.
pub fn pub_msg(client_id: &str, conn_id: &[u8], channel: &str, data: &[u8]) -> PubMsg {
    PubMsg {
        client_id: client_id.to_string(),
        guid: unique("guid"),
        subject: channel.to_string(),
        data: data.to_vec(),
        conn_id: conn_id.to_vec(),
        ..PubMsg::default()
    }
}

/// Sends a ConnectRequest and returns the ConnectResponse, whatever it says.
pub async fn send_connect_request(
    nats: &Client,
    cluster_id: &str,
    client_id: &str,
    heartbeat_inbox: &str,
    conn_id: Vec<u8>,
) -> anyhow::Result<ConnectResponse> {
    let connect = ConnectRequest {
        client_id: client_id.to_string(),
        heartbeat_inbox: heartbeat_inbox.to_string(),
        protocol: 1,
        conn_id,
        ping_interval: PING_INTERVAL_SECS,
        ping_max_out: PING_MAX_OUT,
    };
    request(nats, &format!("_STAN.discover.{cluster_id}"), &connect).await
}

/// Subscription settings for [`RawConnection::subscribe`].
pub type RawSubOptions = SubscriptionOptions<StartPosition>;

/// The raw client's: long, since it misses no delivery and its tests ack what they mean to.
impl ClientStartPosition for StartPosition {
    const NEW_ONLY: Self = StartPosition::NewOnly;
    const FIRST: Self = StartPosition::First;
    const DEFAULT_ACK_WAIT_SECS: i32 = 30;
}

/// An active subscription of a [`RawConnection`].
pub struct RawSubscription {
    nats: Client,
    client_id: String,
    channel: String,
    ack_inbox: String,
    durable_name: String,
    deliveries: Subscriber,
}

impl RawSubscription {
    /// The next delivery, or an error if none arrives within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> anyhow::Result<MsgProto> {
        match timeout(wait, self.deliveries.next()).await {
            Ok(Some(message)) => {
                MsgProto::decode(message.payload).context("Undecodable MsgProto delivery")
            }
            Ok(None) => bail!("The delivery inbox of {} was closed", self.channel),
            Err(_) => bail!("No delivery on {} within {wait:?}", self.channel),
        }
    }

    /// `Some(delivery)` if one arrives within `wait`, `None` if the inbox stays quiet.
    pub async fn next_if_any(&mut self, wait: Duration) -> anyhow::Result<Option<MsgProto>> {
        match timeout(wait, self.deliveries.next()).await {
            Ok(Some(message)) => Ok(Some(
                MsgProto::decode(message.payload).context("Undecodable MsgProto delivery")?,
            )),
            Ok(None) => bail!("The delivery inbox of {} was closed", self.channel),
            Err(_) => Ok(None),
        }
    }

    /// Every delivery until the inbox stays quiet for `quiet`.
    pub async fn until_quiet(&mut self, quiet: Duration) -> anyhow::Result<Vec<MsgProto>> {
        let mut deliveries = Vec::new();
        while let Some(message) = self.next_if_any(quiet).await? {
            deliveries.push(message);
        }
        Ok(deliveries)
    }

    /// The next delivery within `wait`, acknowledged.
    pub async fn next_acked_within(&mut self, wait: Duration) -> anyhow::Result<MsgProto> {
        let message = self.next_within(wait).await?;
        self.ack(message.sequence).await?;
        Ok(message)
    }

    /// `(sequence, redelivered)` of the next delivery, which must come within `first_wait`, and of
    /// every one after it until the inbox stays quiet for `quiet`; each is acked on arrival, so
    /// the broker may send what max in flight held back.
    pub async fn acked_until_quiet(
        &mut self,
        first_wait: Duration,
        quiet: Duration,
    ) -> anyhow::Result<Vec<(u64, bool)>> {
        let first = self.next_acked_within(first_wait).await?;
        let mut deliveries = vec![(first.sequence, first.redelivered)];
        while let Some(message) = self.next_if_any(quiet).await? {
            self.ack(message.sequence).await?;
            deliveries.push((message.sequence, message.redelivered));
        }
        Ok(deliveries)
    }

    /// Receives the sequences `expected` in this order, asserting each, and acks each one.
    pub async fn receive_and_ack(&mut self, expected: &[u64]) -> anyhow::Result<()> {
        for &sequence in expected {
            let delivered = self.next_within(DELIVERY_WAIT).await?;
            assert_eq!(delivered.sequence, sequence);
            self.ack(delivered.sequence).await?;
        }
        Ok(())
    }

    /// Receives the sequences `expected` in this order, asserting each, acks all but the last and
    /// returns the last, unacked. With max in flight 1 each delivery proves the ack before it arrived.
    pub async fn ack_all_but_last(&mut self, expected: &[u64]) -> anyhow::Result<MsgProto> {
        let Some((&last, acked)) = expected.split_last() else {
            bail!("ack_all_but_last needs at least one expected sequence");
        };
        self.receive_and_ack(acked).await?;
        let held = self.next_within(DELIVERY_WAIT).await?;
        assert_eq!(held.sequence, last);
        Ok(held)
    }

    /// Acknowledges `sequence` and flushes, so the ack has left this process on return.
    pub async fn ack(&self, sequence: u64) -> anyhow::Result<()> {
        let ack = Ack {
            subject: self.channel.clone(),
            sequence,
        };
        self.nats
            .publish(self.ack_inbox.clone(), Bytes::from(ack.encode_to_vec()))
            .await
            .context("Failed to publish an ack")?;
        self.nats.flush().await.context("Failed to flush an ack")
    }

    /// Unsubscribes (deletes a durable) and returns the broker's response.
    pub async fn unsubscribe(
        self,
        connection: &RawConnection,
    ) -> anyhow::Result<SubscriptionResponse> {
        let subject = connection.response.unsub_requests.clone();
        self.end(&subject).await
    }

    /// Closes the subscription (suspends a durable) and returns the broker's response.
    pub async fn close(self, connection: &RawConnection) -> anyhow::Result<SubscriptionResponse> {
        let subject = connection.response.sub_close_requests.clone();
        ensure!(
            !subject.is_empty(),
            "The broker gave no subscription close subject"
        );
        self.end(&subject).await
    }

    async fn end(self, subject: &str) -> anyhow::Result<SubscriptionResponse> {
        let unsubscribe = UnsubscribeRequest {
            client_id: self.client_id.clone(),
            subject: self.channel.clone(),
            inbox: self.ack_inbox.clone(),
            durable_name: self.durable_name.clone(),
        };
        request(&self.nats, subject, &unsubscribe).await
    }
}

/// Answers the server's heartbeats on a heartbeat inbox until stopped.
struct HeartbeatResponder {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl HeartbeatResponder {
    async fn start(nats: &Client, inbox: &str) -> anyhow::Result<HeartbeatResponder> {
        let mut heartbeats = nats
            .subscribe(inbox.to_string())
            .await
            .context("Failed to subscribe to the heartbeat inbox")?;
        nats.flush()
            .await
            .context("Failed to flush the heartbeat subscription")?;
        let replies = nats.clone();
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    heartbeat = heartbeats.next() => match heartbeat {
                        Some(heartbeat) => {
                            if let Some(reply) = heartbeat.reply {
                                // Any reply counts as alive; a failed reply is a missed beat.
                                let _ = replies.publish(reply, Bytes::new()).await;
                            }
                        }
                        None => break,
                    },
                }
            }
            let _ = heartbeats.unsubscribe().await;
        });
        Ok(HeartbeatResponder { stop, task })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task
            .await
            .context("The heartbeat responder task failed")
    }
}
