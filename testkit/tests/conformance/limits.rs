//! Per-channel limits: the oldest messages are dropped, like the real stores do.
//!
//! These need a configured broker, so they are skipped against an external server.

use std::time::Duration;

use stan_testkit::BrokerConfig;

use crate::helpers::TestCluster;
use crate::raw_client::RawSubOptions;

/// Starts a broker changed by `configure`, publishes `payloads` to a fresh channel and asserts that
/// exactly the sequences `kept` stay stored.
async fn assert_limit_keeps(
    configure: impl Fn(&mut BrokerConfig) + Send + Sync + 'static,
    payloads: &[&[u8]],
    kept: &[u64],
) -> anyhow::Result<()> {
    let Some(cluster) = TestCluster::start_configured(configure).await? else {
        return Ok(());
    };
    let channel = cluster.channel("limits");
    let publisher = cluster.publisher().await?;
    for payload in payloads {
        publisher.publish_confirmed(&channel, payload).await?;
    }
    let mut subscription = publisher
        .subscribe(&channel, RawSubOptions::first())
        .await?;
    let stored = subscription.until_quiet(Duration::from_millis(500)).await?;
    let sequences: Vec<u64> = stored.iter().map(|m| m.sequence).collect();
    assert_eq!(sequences, kept);
    Ok(())
}

#[tokio::test]
async fn max_msgs_drops_the_oldest_messages() -> anyhow::Result<()> {
    let payloads: [&[u8]; 5] = [b"1", b"2", b"3", b"4", b"5"];
    assert_limit_keeps(|c| c.max_msgs = 3, &payloads, &[3, 4, 5]).await
}

#[tokio::test]
async fn max_bytes_drops_the_oldest_messages() -> anyhow::Result<()> {
    // 200-byte payloads: with up to 50 bytes of per-message overhead (however a store counts
    // it) exactly two fit in 500 bytes.
    let payload: &[u8] = &[b'x'; 200];
    assert_limit_keeps(|c| c.max_bytes = 500, &[payload; 5], &[4, 5]).await
}
