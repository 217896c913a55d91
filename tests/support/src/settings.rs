//! The settings of a service under test, and the tests' logging.

use std::sync::LazyLock;

use clap::Parser;
use order_service::config::{Cli, Settings, SourceKind};
use order_service::telemetry::{get_subscriber, init_subscriber};
use uuid::Uuid;

/// Logs only under `TEST_LOG` (z2p).
pub(crate) static TRACING: LazyLock<()> = LazyLock::new(|| {
    let format = order_service::config::LogFormat::Human;
    if std::env::var("TEST_LOG").is_ok() {
        init_subscriber(get_subscriber("info", format, std::io::stdout));
    } else {
        init_subscriber(get_subscriber("info", format, std::io::sink));
    }
});

/// Settings for a test: its own database, cluster and channel, stream, subject and consumer, port 0, short ack
/// wait and probe interval, the given sources.
pub(crate) fn test_settings(
    database_url: &str,
    nats_url: &str,
    cluster_id: &str,
    sources: &[SourceKind],
) -> anyhow::Result<Settings> {
    let id = Uuid::new_v4().simple().to_string();
    let channel = format!("orders-{id}");
    let stream = format!("ORDERS_{id}");
    let subject = format!("orders.{id}");
    let sources: Vec<&str> = sources.iter().map(|s| s.as_str()).collect();
    let sources = sources.join(",");
    let cli = Cli::try_parse_from([
        "order-service",
        "--source",
        &sources,
        "--nats-url",
        nats_url,
        "--js-stream",
        &stream,
        "--js-subject",
        &subject,
        "--js-consumer",
        "order-service-test",
        "--js-info-interval",
        "1",
        "--js-timeout",
        "2",
        "--database-url",
        database_url,
        "--stan-url",
        nats_url,
        "--stan-cluster-id",
        cluster_id,
        "--stan-channel",
        &channel,
        "--stan-client-id",
        "order-service-test",
        // Short, so the deliveries ratsio drops right after subscribing come back promptly.
        "--stan-ack-wait",
        "1",
        "--stan-probe-interval",
        "1",
        "--stan-timeout",
        "2",
        "--http-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        // Every test goes through the admin gate, as a production deployment with a token does.
        "--admin-token",
        &format!("test-token-{}", Uuid::new_v4().simple()),
        "--http-workers",
        "2",
        "--db-pool-size",
        "4",
    ])?;
    Ok(cli.settings)
}

/// The admin token of `settings`, or an empty string when the admin listener has none.
pub fn admin_token(settings: &Settings) -> String {
    settings
        .application
        .admin_token
        .as_ref()
        .map(|token| token.expose().to_owned())
        .unwrap_or_default()
}
