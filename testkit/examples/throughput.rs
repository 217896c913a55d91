//! Throughput of the dev broker: messages/s published with PubAck, then delivered and manually acked.
//!
//! ```text
//! cargo run --release -p stan-testkit --example throughput -- --count 100000
//! ```
//!
//! Starts an in-process broker per store (memory, then file in a temp directory) on the nats-server found by
//! `ensure_nats_server` (`$NATS_URL`, else 127.0.0.1:4222, else a private one). Phase 1 publishes `--count`
//! messages with up to `--window` PubAcks outstanding; phase 2 subscribes from the first message with
//! `--max-in-flight` and acks each delivery as it arrives.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use bytes::Bytes;
use clap::Parser;
use futures::stream::{FuturesUnordered, StreamExt};
use prost::Message;
use stan_proto::proto::{
    Ack, ConnectRequest, ConnectResponse, MsgProto, StartPosition, SubscriptionRequest,
    SubscriptionResponse,
};
use stan_proto::StanPublisher;
use stan_testkit::nats_server::ensure_nats_server;
use stan_testkit::{Broker, BrokerConfig, StoreKind};

#[derive(Parser, Debug)]
struct Args {
    /// Messages to publish and then consume.
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// PubAcks outstanding at once.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// The subscription's max in flight.
    #[arg(long = "max-in-flight", default_value_t = 1024)]
    max_in_flight: i32,
    /// Which stores to measure.
    #[arg(long, value_delimiter = ',', default_values_t = ["memory".to_string(), "file".to_string()])]
    store: Vec<String>,
    /// fsync before each PubAck (file store).
    #[arg(long = "file-sync")]
    file_sync: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let nats_url = ensure_nats_server().await?;
    println!(
        "count={} size={}B window={} max_in_flight={} file_sync={}",
        args.count, args.size, args.window, args.max_in_flight, args.file_sync
    );
    for store in &args.store {
        let dir = tempfile::tempdir().context("Failed to create a store directory")?;
        let kind = match store.as_str() {
            "memory" => StoreKind::Memory,
            "file" => StoreKind::File(dir.path().to_path_buf()),
            other => anyhow::bail!("unknown store {other:?}"),
        };
        let cluster_id = format!("throughput-{:08x}", rand::random::<u32>());
        let broker = Broker::start(BrokerConfig {
            cluster_id: cluster_id.clone(),
            nats_url: nats_url.clone(),
            store: kind,
            file_sync: args.file_sync,
            ..BrokerConfig::default()
        })
        .await?;
        let published = publish(&nats_url, &cluster_id, &args).await?;
        let delivered = consume(&nats_url, &cluster_id, &args).await?;
        println!(
            "{store:>6} store: published {:>8.0} msg/s ({:.2?}), delivered+acked {:>8.0} msg/s ({:.2?})",
            rate(args.count, published),
            published,
            rate(args.count, delivered),
            delivered
        );
        broker.shutdown().await;
    }
    Ok(())
}

fn rate(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64()
}

async fn publish(nats_url: &str, cluster_id: &str, args: &Args) -> anyhow::Result<Duration> {
    let publisher = StanPublisher::connect(nats_url, cluster_id, "throughput-publisher").await?;
    let payload = Bytes::from(vec![b'x'; args.size]);
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for _ in 0..args.count {
        if in_flight.len() >= args.window {
            if let Some(result) = in_flight.next().await {
                result?;
            }
        }
        in_flight.push(publisher.publish_pipelined("throughput", payload.clone()));
    }
    while let Some(result) = in_flight.next().await {
        result?;
    }
    let took = started.elapsed();
    publisher.close().await?;
    Ok(took)
}

/// Sends `request` to `subject` and decodes the broker's reply.
async fn request<Resp: Message + Default>(
    nats: &async_nats::Client,
    subject: String,
    request: &impl Message,
) -> anyhow::Result<Resp> {
    let reply = nats
        .request(subject, request.encode_to_vec().into())
        .await?;
    Ok(Resp::decode(reply.payload)?)
}

/// Fails saying that the broker refused `what`, and why, unless its reply's `error` is empty.
fn granted(what: &str, error: &str) -> anyhow::Result<()> {
    ensure!(error.is_empty(), "{what} refused: {error}");
    Ok(())
}

/// Subscribes from the first message and acks every delivery; returns the time until the last one arrived.
async fn consume(nats_url: &str, cluster_id: &str, args: &Args) -> anyhow::Result<Duration> {
    let nats = async_nats::connect(nats_url).await?;
    let connect = ConnectRequest {
        client_id: "throughput-consumer".into(),
        heartbeat_inbox: nats.new_inbox(),
        protocol: 1,
        conn_id: b"throughput-consumer".to_vec(),
        ping_interval: 5,
        ping_max_out: 3,
    };
    let discover = format!("_STAN.discover.{cluster_id}");
    let connected: ConnectResponse = request(&nats, discover, &connect).await?;
    granted("connect", &connected.error)?;

    let inbox = nats.new_inbox();
    let mut deliveries = nats.subscribe(inbox.clone()).await?;
    let subscription = SubscriptionRequest {
        client_id: connect.client_id.clone(),
        subject: "throughput".into(),
        inbox,
        max_in_flight: args.max_in_flight,
        ack_wait_in_secs: 60,
        start_position: StartPosition::First as i32,
        ..SubscriptionRequest::default()
    };
    let started = Instant::now();
    let subscribed: SubscriptionResponse =
        request(&nats, connected.sub_requests, &subscription).await?;
    granted("subscribe", &subscribed.error)?;

    let mut seen = 0;
    while seen < args.count {
        let delivery = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
            .await
            .context("No delivery for 10 s")?
            .context("The delivery subscription ended")?;
        let msg = MsgProto::decode(delivery.payload)?;
        if !msg.redelivered {
            seen += 1;
        }
        let ack = Ack {
            subject: msg.subject,
            sequence: msg.sequence,
        };
        nats.publish(subscribed.ack_inbox.clone(), ack.encode_to_vec().into())
            .await?;
    }
    Ok(started.elapsed())
}
