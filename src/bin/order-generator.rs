//! Publishes orders to the STAN channel, each confirmed by its PubAck: a file (`--file`), random valid orders
//! (`--count`, `--rate`), and a share of malformed ones (`--invalid-ratio`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures::stream::{FuturesUnordered, StreamExt};
use order_service::generator;
use rand::Rng;
use stan_testkit::StanPublisher;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Publishes valid and invalid orders to a NATS Streaming channel."
)]
struct Cli {
    #[arg(long, env = "STAN_URL", default_value = "nats://127.0.0.1:4222")]
    url: String,
    #[arg(long, env = "STAN_CLUSTER_ID", default_value = "test-cluster")]
    cluster_id: String,
    #[arg(long, env = "STAN_CHANNEL", default_value = "orders")]
    channel: String,
    /// Client id of the generator (must differ from the service's).
    #[arg(long, default_value = "order-generator")]
    client_id: String,
    /// Publish this file as one message (e.g. the sample order).
    #[arg(long)]
    file: Option<std::path::PathBuf>,
    /// Number of random messages to publish.
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Messages per second; 0 publishes as fast as PubAcks come back.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Share of the random messages that are malformed (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    invalid_ratio: f64,
}

/// Publishes in flight at most, when not rate-limited.
const WINDOW: usize = 256;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(error) = run(cli).await {
        eprintln!("order-generator: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let publisher = StanPublisher::connect(&cli.url, &cli.cluster_id, &cli.client_id).await?;
    if let Some(path) = &cli.file {
        let data = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        publisher.publish(&cli.channel, Bytes::from(data)).await?;
        println!("published {}", path.display());
    }
    let started = Instant::now();
    let mut last_report = Instant::now();
    let (mut in_flight, mut done, mut invalid) = (FuturesUnordered::new(), 0u64, 0u64);
    let mut rng = rand::rng();
    for i in 0..cli.count {
        if cli.rate > 0.0 {
            let due = started + Duration::from_secs_f64(i as f64 / cli.rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let message = if rng.random_bool(cli.invalid_ratio.clamp(0.0, 1.0)) {
            invalid += 1;
            generator::invalid_message(&mut rng)
        } else {
            generator::valid_order(&mut rng).to_string().into_bytes()
        };
        in_flight.push(publisher.publish_pipelined(&cli.channel, Bytes::from(message)));
        while in_flight.len() >= WINDOW {
            if let Some(result) = in_flight.next().await {
                result?;
                done += 1;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            eprintln!("published {done}/{}", cli.count);
            last_report = Instant::now();
        }
    }
    while let Some(result) = in_flight.next().await {
        result?;
        done += 1;
    }
    if cli.count > 0 {
        let secs = started.elapsed().as_secs_f64();
        println!(
            "published {done} messages ({invalid} invalid) in {secs:.2} s, {:.0} msg/s",
            done as f64 / secs.max(1e-9)
        );
    }
    publisher.close().await?;
    Ok(())
}
