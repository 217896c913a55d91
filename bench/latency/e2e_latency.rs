//! End-to-end latency for bench/latency.sh: publishes generated orders at a steady rate through STAN or JetStream and
//! times each one from the start of its publish to the first 200 from `GET /order/{order_uid}` on the service.
//!
//! Every order is polled until served on the ticks of one thread that sleeps the poll interval (tokio's timer counts
//! whole milliseconds, too coarse for figures of a few): after each 404 the next GET waits one tick, or a twentieth of
//! the time so far when that is longer. So each figure is late by at most one tick or 5 %, whichever is more, plus one
//! GET round trip, and a slow spell does not multiply the polls that load the machine further. An order not served
//! within the timeout counts as timed out; a failed publish or an answer other than 200 or 404 as failed. With
//! `--probe-every N` only one order in N is timed and polled, the others are background. Prints p50 / p90 / p99 / max
//! and the counts; `--json FILE` writes them for the script.
//!
//!     cargo run --release --example e2e_latency -- --target stan --service http://127.0.0.1:8081 --rate 1000

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use futures::future::BoxFuture;
use order_service::domain::generator;
use order_service::transport::publisher::{Broker, PublishTarget};
use rand::rngs::StdRng;
use rand::SeedableRng;
use reqwest::StatusCode;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinSet;

#[derive(Parser, Debug)]
#[command(
    about = "Publish -> first 200 from GET /order/{id}, for each order at a steady rate (a benchmark)"
)]
struct Cli {
    #[command(flatten)]
    target: PublishTarget,
    /// Base URL of the service's public listener.
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    service: String,
    /// Orders published per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// How long to publish, in seconds.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Time between two GETs of one order, in microseconds.
    #[arg(long, default_value_t = 250)]
    poll_interval_us: u64,
    /// Time one order in this many; the others are published only, as background (1: time every order).
    #[arg(long, default_value_t = 1)]
    probe_every: u64,
    /// An order not served this many milliseconds after its publish started counts as timed out.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

enum Outcome {
    Served(Duration),
    TimedOut,
    Failed(String),
    /// Published, not timed.
    Untimed,
}

/// The outcomes so far.
#[derive(Default)]
struct Tally {
    served: Vec<Duration>,
    timed_out: u64,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, outcome: Result<Outcome, tokio::task::JoinError>) {
        match outcome {
            Ok(Outcome::Served(latency)) => self.served.push(latency),
            Ok(Outcome::TimedOut) => self.timed_out += 1,
            Ok(Outcome::Failed(error)) => self.failures.push(error),
            Ok(Outcome::Untimed) => {}
            Err(error) => self.failures.push(format!("task: {error}")),
        }
    }
}

/// Polls the service for one order at a time, on the shared ticks.
#[derive(Clone)]
struct Poller {
    client: reqwest::Client,
    base: Arc<str>,
    ticks: Arc<Notify>,
    interval: Duration,
    timeout: Duration,
    gets: Arc<AtomicU64>,
}

impl Poller {
    async fn until_served(&self, uid: &str, started: Instant) -> Outcome {
        let url = format!("{}/order/{uid}", self.base);
        loop {
            // Waiting from before the GET: when a tick passes during it, the next GET goes at once.
            let tick = self.ticks.notified();
            tokio::pin!(tick);
            tick.as_mut().enable();
            self.gets.fetch_add(1, Ordering::Relaxed);
            match self.client.get(&url).send().await {
                Ok(response) if response.status() == StatusCode::OK => {
                    let served = started.elapsed();
                    // Read to the end, so the connection goes back to the pool.
                    let _ = response.bytes().await;
                    return Outcome::Served(served);
                }
                Ok(response) if response.status() == StatusCode::NOT_FOUND => {
                    let _ = response.bytes().await;
                }
                Ok(response) => {
                    return Outcome::Failed(format!("GET {url}: {}", response.status()))
                }
                Err(error) => return Outcome::Failed(format!("GET {url}: {error}")),
            }
            let elapsed = started.elapsed();
            if elapsed >= self.timeout {
                return Outcome::TimedOut;
            }
            let ticks = (elapsed.as_nanos() / (20 * self.interval.as_nanos().max(1))).max(1);
            tick.await;
            for _ in 1..ticks {
                self.ticks.notified().await;
            }
        }
    }
}

/// One order: publish and poll at once, so the time to the 200 does not wait for the broker's confirmation.
async fn track(
    started: Instant,
    published: BoxFuture<'static, anyhow::Result<()>>,
    poller: Poller,
    uid: String,
) -> Outcome {
    let (published, served) = tokio::join!(published, poller.until_served(&uid, started));
    match published {
        Err(error) => Outcome::Failed(format!("publish of {uid}: {error:#}")),
        Ok(()) => served,
    }
}

/// One background order: published, not timed.
async fn publish_only(published: BoxFuture<'static, anyhow::Result<()>>, uid: String) -> Outcome {
    match published.await {
        Ok(()) => Outcome::Untimed,
        Err(error) => Outcome::Failed(format!("publish of {uid}: {error:#}")),
    }
}

/// A thread that wakes every waiting poll each `interval` (a nanosleep, accurate to tens of microseconds); returns
/// how many ticks it made.
fn start_ticker(interval: Duration, ticks: Arc<Notify>, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut count = 0;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(interval);
            ticks.notify_waiters();
            count += 1;
        }
        count
    })
}

/// What the run measured besides the outcomes.
struct Measured {
    gets: u64,
    /// Seconds from the first publish to the last outcome.
    elapsed: f64,
    mean_tick: Duration,
}

/// The figures of a run, printed and written as JSON for bench/latency.sh.
#[derive(Serialize)]
struct Summary {
    target: &'static str,
    rate: f64,
    seconds: f64,
    published: u64,
    publish_rate: f64,
    timed: u64,
    served: usize,
    timed_out: u64,
    failed: usize,
    timeout_ms: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    poll_interval_us: u64,
    measured_tick_us: u64,
    gets: u64,
    gets_per_second: f64,
    #[serde(skip)]
    failures: Vec<String>,
}

impl Summary {
    fn new(
        cli: &Cli,
        tally: Tally,
        timed: u64,
        publish_seconds: f64,
        measured: Measured,
    ) -> Summary {
        let Tally {
            mut served,
            timed_out,
            failures,
        } = tally;
        served.sort_unstable();
        let published = (cli.rate * cli.seconds).round() as u64;
        Summary {
            target: match cli.target.target {
                Broker::Stan => "stan",
                Broker::JetStream => "jetstream",
            },
            rate: cli.rate,
            seconds: cli.seconds,
            published,
            publish_rate: published as f64 / publish_seconds.max(1e-9),
            timed,
            served: served.len(),
            timed_out,
            failed: failures.len(),
            timeout_ms: cli.timeout_ms,
            p50_ms: ms(percentile(&served, 0.50)),
            p90_ms: ms(percentile(&served, 0.90)),
            p99_ms: ms(percentile(&served, 0.99)),
            max_ms: ms(served.last().copied().unwrap_or_default()),
            poll_interval_us: cli.poll_interval_us.max(1),
            measured_tick_us: measured.mean_tick.as_micros() as u64,
            gets: measured.gets,
            gets_per_second: measured.gets as f64 / measured.elapsed.max(1e-9),
            failures,
        }
    }

    fn print(&self) {
        println!(
            "{}: {} orders at {:.0}/s (asked {}/s for {} s), {} timed: {} served, {} timed out ({} ms), {} failed",
            self.target,
            self.published,
            self.publish_rate,
            self.rate,
            self.seconds,
            self.timed,
            self.served,
            self.timed_out,
            self.timeout_ms,
            self.failed
        );
        println!(
            "publish -> first 200 (ms): p50 {}  p90 {}  p99 {}  max {}",
            self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
        );
        println!(
            "resolution: a GET every {} µs tick (measured {} µs) or 5 % of the time so far, whichever is more, + one \
             GET round trip; {} GETs, {:.1} per timed order, {:.0}/s",
            self.poll_interval_us,
            self.measured_tick_us,
            self.gets,
            self.gets as f64 / self.timed.max(1) as f64,
            self.gets_per_second
        );
        for failure in self.failures.iter().take(5) {
            println!("failed: {failure}");
        }
    }
}

/// The nearest-rank percentile of sorted figures.
fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(error) = run(cli).await {
        eprintln!("e2e_latency: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    anyhow::ensure!(
        cli.rate > 0.0 && cli.seconds > 0.0,
        "--rate and --seconds must be positive"
    );
    let interval = Duration::from_micros(cli.poll_interval_us.max(1));
    let poller = Poller {
        client: reqwest::Client::new(),
        base: Arc::from(cli.service.trim_end_matches('/')),
        ticks: Arc::new(Notify::new()),
        interval,
        timeout: Duration::from_millis(cli.timeout_ms),
        gets: Arc::new(AtomicU64::new(0)),
    };
    // Open a few connections first, so the first orders do not pay for them.
    let warm = (0..8).map(|_| poller.client.get(format!("{}/readyz", poller.base)).send());
    for response in futures::future::join_all(warm).await {
        response
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("The service at {} is not ready", poller.base))?;
    }
    poller.gets.store(0, Ordering::Relaxed);
    let publisher = cli.target.connect("e2e-latency").await?;

    let stop = Arc::new(AtomicBool::new(false));
    let ticker_started = Instant::now();
    let ticker = start_ticker(interval, poller.ticks.clone(), stop.clone());
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let total = (cli.rate * cli.seconds).round() as u64;
    let probe_every = cli.probe_every.max(1);
    let mut tasks = JoinSet::new();
    let mut tally = Tally::default();
    let begun = Instant::now();
    for i in 0..total {
        let order = generator::valid_order(&mut rng);
        let payload =
            Bytes::from(serde_json::to_vec(&order).context("Failed to serialize an order")?);
        let due = begun + Duration::from_secs_f64(i as f64 / cli.rate);
        tokio::time::sleep_until(due.into()).await;
        let started = Instant::now();
        // Timed from here, so the publish is part of each figure; it runs in the order's own task.
        let published: BoxFuture<'static, anyhow::Result<()>> = {
            let (publisher, uid) = (publisher.clone(), order.order_uid.clone());
            Box::pin(async move { publisher.publish(payload, Some(&uid)).await })
        };
        if i % probe_every == 0 {
            tasks.spawn(track(
                started,
                published,
                poller.clone(),
                order.order_uid.into_owned(),
            ));
        } else {
            tasks.spawn(publish_only(published, order.order_uid.into_owned()));
        }
        while let Some(outcome) = tasks.try_join_next() {
            tally.record(outcome);
        }
    }
    let publish_seconds = begun.elapsed().as_secs_f64();
    while let Some(outcome) = tasks.join_next().await {
        tally.record(outcome);
    }
    let elapsed = begun.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let tick_count = ticker.join().unwrap_or(0);
    let mean_tick = ticker_started.elapsed() / u32::try_from(tick_count.max(1)).unwrap_or(u32::MAX);
    publisher
        .close()
        .await
        .context("Failed to close the connection")?;

    let summary = Summary::new(
        &cli,
        tally,
        total.div_ceil(probe_every),
        publish_seconds,
        Measured {
            gets: poller.gets.load(Ordering::Relaxed),
            elapsed,
            mean_tick,
        },
    );
    summary.print();
    if let Some(path) = &cli.json {
        let json = serde_json::to_string(&summary).context("Failed to serialize the summary")?;
        std::fs::write(path, json)
            .with_context(|| format!("Failed to write {}", path.display()))?;
    }
    anyhow::ensure!(summary.served > 0, "no order was served");
    Ok(())
}
