//! `stan-broker`: a NATS Streaming server on top of nats-server, for machines without the official one.

use std::time::Duration;

use clap::Parser;
use stan_testkit::{Broker, BrokerConfig, StoreKind};

/// A NATS Streaming (STAN) broker on top of a running nats-server (development and tests).
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to change the level. \
                  SIGTERM or SIGINT stops the broker after it has saved its store."
)]
struct Cli {
    /// Cluster ID clients connect to.
    #[arg(
        long = "cluster_id",
        visible_alias = "cid",
        env = "STAN_CLUSTER_ID",
        default_value = "test-cluster"
    )]
    cluster_id: String,
    /// URL of the nats-server to use.
    #[arg(
        long = "nats_server",
        visible_alias = "ns",
        env = "STAN_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_server: String,
    /// Store type: memory (lost on exit) or file (kept in --dir and restored on the next start).
    #[arg(
        long,
        visible_alias = "st",
        default_value = "memory",
        value_parser = ["memory", "file"]
    )]
    store: String,
    /// Directory for the file store (created if missing; one broker at a time).
    #[arg(long, visible_alias = "dir_path")]
    dir: Option<std::path::PathBuf>,
    /// File store: fsync before every PubAck, not only write to the OS (survives a machine crash, slower).
    #[arg(
        long = "file_sync",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    file_sync: bool,
    /// Maximum messages per channel, 0 for unlimited; the oldest are dropped.
    #[arg(long = "max_msgs", default_value_t = 0)]
    max_msgs: u64,
    /// Maximum bytes per channel, 0 for unlimited; the oldest are dropped.
    #[arg(long = "max_bytes", default_value_t = 0)]
    max_bytes: u64,
    /// Interval between server heartbeats to each client, in seconds.
    #[arg(long = "hb_interval", default_value_t = 30)]
    hb_interval: u64,
    /// How long a client has to answer a heartbeat, in seconds.
    #[arg(long = "hb_timeout", default_value_t = 10)]
    hb_timeout: u64,
    /// Unanswered heartbeats after which a client is removed.
    #[arg(long = "hb_fail_count", default_value_t = 10)]
    hb_fail_count: u32,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let store = match (cli.store.as_str(), cli.dir) {
        ("file", Some(dir)) => StoreKind::File(dir),
        ("file", None) => fail("--store file needs --dir"),
        (_, Some(_)) => fail("--dir is only used with --store file"),
        _ => StoreKind::Memory,
    };
    let config = BrokerConfig {
        cluster_id: cli.cluster_id,
        nats_url: cli.nats_server,
        store,
        file_sync: cli.file_sync,
        max_msgs: cli.max_msgs,
        max_bytes: cli.max_bytes,
        hb_interval: Duration::from_secs(cli.hb_interval.max(1)),
        hb_timeout: Duration::from_secs(cli.hb_timeout.max(1)),
        hb_fail_count: cli.hb_fail_count.max(1),
    };
    let mut broker = match Broker::start(config).await {
        Ok(broker) => broker,
        Err(error) => fail(&format!("{error:#}")),
    };
    tokio::select! {
        () = wait_for_signal() => {}
        error = broker.failed() => fail(&error),
    }
    tracing::info!("Shutting down.");
    broker.shutdown().await;
}

async fn wait_for_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn fail(message: &str) -> ! {
    eprintln!("stan-broker: {message}");
    std::process::exit(1)
}
