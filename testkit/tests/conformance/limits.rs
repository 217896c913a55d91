//! Per-channel limits: the oldest messages are dropped, like the real stores do.
//!
//! These need a configured broker, so they are skipped against an external server.

use std::time::Duration;

use crate::helpers::TestCluster;
use crate::raw_client::{RawSubOptions, RawSubscription};

/// Reads deliveries until the inbox stays quiet for a moment.
async fn stored_sequences(subscription: &mut RawSubscription) -> anyhow::Result<Vec<u64>> {
    let mut sequences = Vec::new();
    while let Some(message) = subscription.next_if_any(Duration::from_millis(500)).await? {
        sequences.push(message.sequence);
    }
    Ok(sequences)
}

#[tokio::test]
async fn max_msgs_drops_the_oldest_messages() -> anyhow::Result<()> {
    // Arrange
    let Some(cluster) = TestCluster::start_configured("max_msgs_drops_the_oldest_messages", |c| {
        c.max_msgs = 3;
    })
    .await?
    else {
        return Ok(());
    };
    let channel = cluster.channel("maxmsgs");
    let publisher = cluster.publisher().await?;

    // Act
    for payload in ["1", "2", "3", "4", "5"] {
        publisher
            .publish_confirmed(&channel, payload.as_bytes())
            .await?;
    }

    // Assert
    let mut subscription = publisher
        .subscribe(&channel, RawSubOptions::first())
        .await?;
    assert_eq!(stored_sequences(&mut subscription).await?, vec![3, 4, 5]);
    Ok(())
}

#[tokio::test]
async fn max_bytes_drops_the_oldest_messages() -> anyhow::Result<()> {
    // Arrange
    // 200-byte payloads: with up to 50 bytes of per-message overhead (however a store counts
    // it) exactly two fit in 500 bytes.
    let Some(cluster) = TestCluster::start_configured("max_bytes_drops_the_oldest_messages", |c| {
        c.max_bytes = 500;
    })
    .await?
    else {
        return Ok(());
    };
    let channel = cluster.channel("maxbytes");
    let publisher = cluster.publisher().await?;
    let payload = [b'x'; 200];

    // Act
    for _ in 0..5 {
        publisher.publish_confirmed(&channel, &payload).await?;
    }

    // Assert
    let mut subscription = publisher
        .subscribe(&channel, RawSubOptions::first())
        .await?;
    assert_eq!(stored_sequences(&mut subscription).await?, vec![4, 5]);
    Ok(())
}
