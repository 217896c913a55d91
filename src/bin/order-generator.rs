//! Publishes orders to the STAN channel (every one confirmed by its PubAck) or, with `--target jetstream`, to the
//! JetStream subject (every one confirmed by the stream's publish ack, with `Nats-Msg-Id` set to the order_uid so the
//! stream's duplicate window drops a re-send): a file (`--file`), random valid orders (`--count`, `--rate`), and a
//! share of malformed ones (`--invalid-ratio`). Prints progress and a summary; exits non-zero when a publish fails.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use futures::stream::{FuturesUnordered, StreamExt};
use order_service::domain::generator;
use order_service::transport::publisher::{OrderPublisher, PublishTarget};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Parser, Debug)]
#[command(
    name = "order-generator",
    version,
    about = "Publishes valid and malformed orders to a NATS Streaming channel or a JetStream subject."
)]
struct Cli {
    #[command(flatten)]
    target: PublishTarget,
    /// Publish this file as one message first (e.g. the sample order).
    #[arg(long)]
    file: Option<PathBuf>,
    /// How many random messages to publish.
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Messages per second; 0 publishes as fast as PubAcks come back, with a bounded window in flight.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Share of the random messages that are malformed, from 0.0 to 1.0.
    #[arg(long, default_value_t = 0.0, value_parser = parse_ratio)]
    invalid_ratio: f64,
    /// Seed for reproducible runs.
    #[arg(long)]
    seed: Option<u64>,
    /// Publishes awaiting their PubAck, at most.
    #[arg(long, default_value_t = 512)]
    window: usize,
    /// Write `--count` random valid orders to stdout, one JSON document per line, instead of publishing (bulk
    /// loads for the benchmarks, e.g. into PostgreSQL with COPY).
    #[arg(long)]
    stdout: bool,
}

/// The order_uid of a message, if it has one: the `Nats-Msg-Id`, so that JetStream drops a re-send of the same
/// order within the stream's duplicate window.
fn order_uid(data: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Uid {
        order_uid: String,
    }
    serde_json::from_slice::<Uid>(data)
        .ok()
        .map(|u| u.order_uid)
        .filter(|uid| !uid.is_empty())
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    let ratio: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&ratio) {
        Ok(ratio)
    } else {
        Err("must be between 0.0 and 1.0".into())
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(error) = run(cli).await {
        eprintln!("order-generator: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.stdout {
        return write_documents(&cli);
    }
    let publisher = cli.target.connect("order-generator").await?;

    if let Some(path) = &cli.file {
        let data =
            std::fs::read(path).with_context(|| format!("Failed to read {}", path.display()))?;
        let uid = order_uid(&data);
        publisher
            .publish(Bytes::from(data), uid.as_deref())
            .await
            .with_context(|| format!("Failed to publish {}", path.display()))?;
        println!(
            "published {} to {}",
            path.display(),
            publisher.destination()
        );
    }
    if cli.count > 0 {
        let summary = publish_random(&publisher, &cli).await?;
        println!(
            "published {} messages ({} malformed) to {} in {:.2} s: {:.0} msg/s",
            summary.published,
            summary.invalid,
            publisher.destination(),
            summary.elapsed.as_secs_f64(),
            summary.published as f64 / summary.elapsed.as_secs_f64().max(1e-9)
        );
    }
    publisher
        .close()
        .await
        .context("Failed to close the connection")?;
    Ok(())
}

/// The documents a `--count` run would publish (valid ones only), one per line on stdout.
fn write_documents(cli: &Cli) -> anyhow::Result<()> {
    let mut rng = match cli.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_rng(&mut rand::rng()),
    };
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    for _ in 0..cli.count {
        out.write_all(&generator::valid_order_json(&mut rng))?;
        out.write_all(b"\n")?;
    }
    out.flush().context("Failed to write to stdout")?;
    Ok(())
}

struct Summary {
    published: u64,
    invalid: u64,
    elapsed: Duration,
}

async fn publish_random(publisher: &OrderPublisher, cli: &Cli) -> anyhow::Result<Summary> {
    let mut rng = match cli.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_rng(&mut rand::rng()),
    };
    let started = Instant::now();
    let mut last_report = started;
    let mut in_flight = FuturesUnordered::new();
    let (mut confirmed, mut invalid) = (0u64, 0u64);
    for i in 0..cli.count {
        if cli.rate > 0.0 {
            let due = started + Duration::from_secs_f64(i as f64 / cli.rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let message = if cli.invalid_ratio > 0.0 && rng.random_bool(cli.invalid_ratio) {
            invalid += 1;
            generator::invalid_message(&mut rng).1
        } else {
            generator::valid_order_json(&mut rng)
        };
        let uid = order_uid(&message);
        in_flight.push(publisher.send(Bytes::from(message), uid.as_deref()).await?);
        while in_flight.len() >= cli.window.max(1) {
            if let Some(result) = in_flight.next().await {
                result.context("A publish failed")?;
                confirmed += 1;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            eprintln!(
                "{confirmed}/{} confirmed, {:.0} msg/s",
                cli.count,
                confirmed as f64 / started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    while let Some(result) = in_flight.next().await {
        result.context("A publish failed")?;
        confirmed += 1;
    }
    Ok(Summary {
        published: confirmed,
        invalid,
        elapsed: started.elapsed(),
    })
}
