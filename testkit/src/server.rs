//! The NATS side of the broker: subscribes to the protocol subjects, feeds every request to the one `State` in
//! arrival order, and publishes what the state decides. Heartbeats and duplicate-client probes are requests with
//! timeouts, so they run as tasks that report back instead of blocking the loop.
//!
//! Requests that are already waiting are handled as one batch, then the store commits once (one write, one fsync
//! with `file_sync`) before any reply of the batch is published: a PubAck never promises more than the disk has.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures::stream::{select_all, StreamExt};
use futures::FutureExt;
use prost::Message;
use stan_proto::proto;
use tokio::sync::{mpsc, oneshot};

use crate::config::{BrokerConfig, StoreKind};
use crate::nats_server::server_has_processed;
use crate::state::{State, Subjects};
use crate::store::{FileStore, MemoryStore, Recovered, Store};

/// How often ack deadlines are checked: the precision of redelivery timing.
const TICK: Duration = Duration::from_millis(50);
/// The real server gives a registered client this long to answer before a duplicate connect replaces it.
const DUPLICATE_PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How often positions moved by deliveries and acks are saved; a crash loses at most this much of them, which
/// only causes redeliveries.
const PROGRESS_SAVE_INTERVAL: Duration = Duration::from_millis(200);
/// Most requests handled before one store commit and the replies it releases.
const MAX_BATCH: usize = 512;
/// How long a starting broker waits for a previous one to release the store directory.
const STORE_LOCK_WAIT: Duration = Duration::from_secs(5);

enum Event {
    ConnectProbed {
        reply: String,
        req: proto::ConnectRequest,
        alive: bool,
    },
    Heartbeat {
        client_id: String,
        alive: bool,
    },
}

/// Which protocol subject a request arrived on.
#[derive(Clone, Copy)]
enum Kind {
    Discover,
    Publish,
    Subscribe,
    Unsubscribe,
    SubClose,
    Close,
    Ping,
    Ack,
}

/// Runs until `stop` fires or something fails. `ready` is told once every subscription is in place on the server.
pub(crate) async fn run(
    config: BrokerConfig,
    ready: oneshot::Sender<anyhow::Result<()>>,
    stop: oneshot::Receiver<()>,
) -> Result<(), String> {
    match serve(config, ready, stop).await {
        Ok(()) => {
            tracing::info!("Broker stopped.");
            Ok(())
        }
        Err(error) => {
            let error = format!("{error:#}");
            tracing::error!(%error, "Broker failed.");
            Err(error)
        }
    }
}

async fn serve(
    config: BrokerConfig,
    ready: oneshot::Sender<anyhow::Result<()>>,
    mut stop: oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    let setup = async {
        let (store, recovered) = open_store(&config).await?;
        if let Some(stored) = recovered.snapshot.as_ref().map(|s| &s.cluster_id) {
            anyhow::ensure!(
                stored.is_empty() || *stored == config.cluster_id,
                "The store belongs to cluster id {stored:?}, not {:?}",
                config.cluster_id
            );
        }
        let client = async_nats::connect(&config.nats_url)
            .await
            .with_context(|| format!("Failed to connect to nats-server at {}", config.nats_url))?;
        // Restored clients keep publishing, acking and pinging on the subjects they were given.
        let instance = recovered
            .snapshot
            .as_ref()
            .map(|s| s.instance.clone())
            .filter(|instance| !instance.is_empty())
            .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
        let subjects = Subjects::new(&config.cluster_id, &instance);
        let mut state = State::new(subjects.clone(), config.max_msgs, config.max_bytes, store);
        state.restore(recovered.snapshot, recovered.channels);
        // Saves the instance on first use and a compacted snapshot on every start.
        state
            .save_snapshot()
            .context("Failed to write the store snapshot")?;
        let plan = [
            (
                format!("_STAN.discover.{}", config.cluster_id),
                Kind::Discover,
            ),
            (format!("{}.>", subjects.pub_prefix), Kind::Publish),
            (subjects.sub_requests.clone(), Kind::Subscribe),
            (subjects.unsub_requests.clone(), Kind::Unsubscribe),
            (subjects.sub_close_requests.clone(), Kind::SubClose),
            (subjects.close_requests.clone(), Kind::Close),
            (subjects.ping_requests.clone(), Kind::Ping),
            (format!("{}.>", subjects.ack_prefix), Kind::Ack),
        ];
        let mut streams = Vec::new();
        for (subject, kind) in plan {
            let sub = client
                .subscribe(subject.clone())
                .await
                .with_context(|| format!("Failed to subscribe to {subject}"))?;
            streams.push(sub.map(move |m| (kind, m)).boxed());
        }
        // Ready means answering: every subscription exists on the server before anyone hears of it.
        server_has_processed(&client)
            .await
            .context("nats-server did not confirm the broker's subscriptions")?;
        anyhow::Ok((client, state, select_all(streams)))
    };
    let (client, mut state, mut requests) = match setup.await {
        Ok(parts) => parts,
        Err(error) => {
            let message = format!("{error:#}");
            let _ = ready.send(Err(error));
            anyhow::bail!(message);
        }
    };
    let _ = ready.send(Ok(()));
    tracing::info!(cluster_id = %config.cluster_id, "Broker ready.");

    let hb_secs = i32::try_from(config.hb_interval.as_secs()).unwrap_or(30);
    let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
    let mut tick = tokio::time::interval(TICK);
    let mut save_progress = tokio::time::interval(PROGRESS_SAVE_INTERVAL);
    let mut heartbeat = tokio::time::interval(config.hb_interval);
    heartbeat.tick().await;

    loop {
        tokio::select! {
            _ = &mut stop => break,
            request = requests.next() => {
                let Some((kind, msg)) = request else { anyhow::bail!("nats-server connection closed") };
                handle(&mut state, &client, &events_tx, kind, msg, hb_secs);
            }
            Some(event) = events.recv() => match event {
                Event::ConnectProbed { reply, req, alive } => state.connect(&reply, req, alive, hb_secs),
                Event::Heartbeat { client_id, alive } => state.heartbeat_result(&client_id, alive, config.hb_fail_count),
            },
            _ = tick.tick() => state.redeliver_expired(Instant::now()),
            _ = save_progress.tick() => state.save_progress().context("Failed to write the store snapshot")?,
            _ = heartbeat.tick() => {
                for (client_id, inbox) in state.heartbeat_targets() {
                    let (client, events_tx, timeout) = (client.clone(), events_tx.clone(), config.hb_timeout);
                    tokio::spawn(async move {
                        let alive = probe(&client, inbox, timeout).await;
                        let _ = events_tx.send(Event::Heartbeat { client_id, alive });
                    });
                }
            }
        }
        for _ in 1..MAX_BATCH {
            let Some(Some((kind, msg))) = requests.next().now_or_never() else {
                break;
            };
            handle(&mut state, &client, &events_tx, kind, msg, hb_secs);
        }
        // On failure the batch's replies are never sent: clients retry or time out, none is told a lie.
        state.commit().context("Failed to write to the store")?;
        for out in state.out.drain(..) {
            if let Err(error) = client.publish(out.subject, out.payload).await {
                tracing::warn!(%error, "Failed to publish a protocol message.");
            }
        }
    }
    state
        .save_progress()
        .context("Failed to write the store snapshot")?;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    Ok(())
}

/// Opens the configured store, waiting a little for a broker that is still releasing the directory.
async fn open_store(config: &BrokerConfig) -> anyhow::Result<(Box<dyn Store>, Recovered)> {
    let StoreKind::File(dir) = &config.store else {
        let empty = Recovered {
            snapshot: None,
            channels: Vec::new(),
        };
        return Ok((Box::new(MemoryStore), empty));
    };
    let deadline = Instant::now() + STORE_LOCK_WAIT;
    loop {
        let (path, sync, max_msgs, max_bytes) = (
            dir.clone(),
            config.file_sync,
            config.max_msgs,
            config.max_bytes,
        );
        let opened =
            tokio::task::spawn_blocking(move || FileStore::open(&path, sync, max_msgs, max_bytes))
                .await
                .context("The store loader panicked")??;
        if let Some((store, recovered)) = opened {
            tracing::info!(
                dir = %dir.display(),
                channels = recovered.channels.len(),
                restored = recovered.snapshot.is_some(),
                "Opened the file store."
            );
            return Ok((Box::new(store), recovered));
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "The store directory {} is in use by another broker",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Does anybody answer on `inbox` within `timeout`?
async fn probe(client: &async_nats::Client, inbox: String, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, client.request(inbox, Bytes::new())).await,
        Ok(Ok(_))
    )
}

fn handle(
    state: &mut State,
    client: &async_nats::Client,
    events: &mpsc::UnboundedSender<Event>,
    kind: Kind,
    msg: async_nats::Message,
    hb_secs: i32,
) {
    let reply = msg
        .reply
        .as_ref()
        .map(|r| r.to_string())
        .unwrap_or_default();
    let payload = &msg.payload[..];
    // Undecodable requests are dropped with a log line: a client that sends garbage gets no answer, like the real server.
    let result: Result<(), prost::DecodeError> = (|| {
        match kind {
            Kind::Discover => {
                let req = proto::ConnectRequest::decode(payload)?;
                match state.hb_inbox(&req.client_id) {
                    Some(inbox) => {
                        let (client, events) = (client.clone(), events.clone());
                        tokio::spawn(async move {
                            let alive = probe(&client, inbox, DUPLICATE_PROBE_TIMEOUT).await;
                            let _ = events.send(Event::ConnectProbed { reply, req, alive });
                        });
                    }
                    None => state.connect(&reply, req, false, hb_secs),
                }
            }
            Kind::Publish => state.publish(&reply, proto::PubMsg::decode(payload)?),
            Kind::Subscribe => {
                state.subscribe(&reply, proto::SubscriptionRequest::decode(payload)?)
            }
            Kind::Unsubscribe => {
                state.unsubscribe(&reply, proto::UnsubscribeRequest::decode(payload)?, false)
            }
            Kind::SubClose => {
                state.unsubscribe(&reply, proto::UnsubscribeRequest::decode(payload)?, true)
            }
            Kind::Close => state.close(&reply, proto::CloseRequest::decode(payload)?),
            Kind::Ping => state.ping(&reply, proto::Ping::decode(payload)?),
            Kind::Ack => state.ack(msg.subject.as_str(), proto::Ack::decode(payload)?),
        }
        Ok(())
    })();
    if let Err(error) = result {
        tracing::warn!(%error, subject = %msg.subject, "Dropped an undecodable protocol message.");
    }
}
