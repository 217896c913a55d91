//! File store: a broker restart on the same directory keeps messages, clients, durables and
//! their unacked messages. Skipped against an external server, which we cannot restart.

use std::time::Duration;

use anyhow::Context;
use stan_testkit::{Broker, BrokerConfig, StoreKind};
use tempfile::TempDir;
use tokio::time::Instant;

use crate::helpers::{
    close_ratsio, distinct_sequences, heartbeats, local_nats_url, unique, wait_until_unregistered,
    SubOptions, TestCluster,
};
use crate::raw_client::{RawConnection, RawSubOptions, DELIVERY_WAIT};

/// Settings for brokers that the test starts itself, on a file store in a fresh directory (returned
/// with them, to keep) and a cluster id named after `name`; `None` (and a skip line) when the suite
/// targets an external server.
async fn own_file_store_config(name: &str) -> anyhow::Result<Option<(BrokerConfig, TempDir)>> {
    let reason = "needs to start brokers of its own";
    let Some(nats_url) = local_nats_url(reason).await? else {
        return Ok(None);
    };
    let dir = tempfile::tempdir().context("Failed to create a store directory")?;
    let config = BrokerConfig {
        cluster_id: unique(name),
        nats_url,
        store: StoreKind::File(dir.path().to_path_buf()),
        ..BrokerConfig::default()
    };
    Ok(Some((config, dir)))
}

/// `(sequence, timestamp)` of the first `count` messages of `channel`, read by a fresh client.
async fn read_all(
    cluster: &TestCluster,
    channel: &str,
    count: usize,
) -> anyhow::Result<Vec<(u64, i64)>> {
    let reader = cluster.raw_client(&unique("reader")).await?;
    let mut subscription = reader.subscribe(channel, RawSubOptions::first()).await?;
    let mut read = Vec::new();
    for _ in 0..count {
        let message = subscription.next_within(Duration::from_secs(2)).await?;
        read.push((message.sequence, message.timestamp));
    }
    reader.close().await?;
    Ok(read)
}

#[tokio::test]
async fn file_store_keeps_messages_across_a_restart() -> anyhow::Result<()> {
    // Arrange
    let Some(mut cluster) = TestCluster::start_with_file_store().await? else {
        return Ok(());
    };
    let channel = cluster.channel("fsmsgs");
    cluster.publish(&channel, &["a", "b", "c"]).await?;
    let before = read_all(&cluster, &channel, 3).await?;

    // Act
    cluster.restart_broker().await?;

    // Assert
    let reader = cluster.raw_client(&unique("reader")).await?;
    let mut subscription = reader.subscribe(&channel, RawSubOptions::first()).await?;
    for (expected, payload) in before.iter().zip(["a", "b", "c"]) {
        let message = subscription.next_within(Duration::from_secs(2)).await?;
        assert_eq!(message.data, payload.as_bytes());
        assert_eq!(
            (message.sequence, message.timestamp),
            *expected,
            "sequence and timestamp of {payload:?} are kept"
        );
    }
    cluster.publish(&channel, &["d"]).await?;
    let next = subscription.next_within(Duration::from_secs(2)).await?;
    assert_eq!(next.sequence, 4, "sequences continue after a restart");
    Ok(())
}

#[tokio::test]
async fn file_store_keeps_clients_across_a_restart() -> anyhow::Result<()> {
    // Arrange
    let Some(mut cluster) = TestCluster::start_with_file_store().await? else {
        return Ok(());
    };
    let client_id = unique("survivor");
    let client = cluster.raw_client(&client_id).await?;
    let channel = cluster.channel("fsclients");

    // Act
    cluster.restart_broker().await?;

    // Assert
    assert_eq!(
        client.ping().await?.error,
        "",
        "the connection is still known"
    );
    client.publish_confirmed(&channel, b"still here").await?;
    // The client still answers heartbeats, so a second connect with its id is a duplicate.
    let duplicate = client
        .request_connect_as(&cluster.cluster_id, &client_id)
        .await?;
    assert_eq!(duplicate.error, "stan: clientID already registered");
    Ok(())
}

#[tokio::test]
async fn file_store_keeps_durables_and_their_unacked_messages_across_a_restart(
) -> anyhow::Result<()> {
    // Arrange
    let Some(mut cluster) = TestCluster::start_with_file_store().await? else {
        return Ok(());
    };
    let channel = cluster.channel("fsdurable");
    let client = cluster.raw_client(&unique("durable")).await?;
    // A 5 s ack wait: the resend after the restart comes from resuming, not from a timeout, and a
    // slow machine does not get redeliveries the assertions would trip over.
    let options = RawSubOptions::first()
        .durable("d")
        .max_in_flight(1)
        .ack_wait_secs(5);
    let mut subscription = client.subscribe(&channel, options.clone()).await?;
    cluster.publish(&channel, &["1", "2", "3"]).await?;
    // 2 stays unacked.
    subscription.ack_all_but_last(&[1, 2]).await?;
    subscription.close(&client).await?;

    // Act
    cluster.restart_broker().await?;
    let mut resumed = client.subscribe(&channel, options).await?;
    let deliveries = resumed
        .acked_until_quiet(Duration::from_secs(3), Duration::from_millis(1500))
        .await?;

    // Assert
    assert_eq!(
        deliveries,
        vec![(2, true), (3, false)],
        "(sequence, redelivered): the unacked message comes back flagged, then the next one"
    );
    Ok(())
}

#[tokio::test]
async fn ratsio_subscription_keeps_working_across_a_file_store_restart() -> anyhow::Result<()> {
    // Arrange
    let Some(mut cluster) = TestCluster::start_with_file_store().await? else {
        return Ok(());
    };
    let channel = cluster.channel("fslive");
    // 5 s: the resend after the restart is the restart's doing, not the ack wait's.
    let options = SubOptions::new_only()
        .durable("d")
        .max_in_flight(1)
        .ack_wait_secs(5);
    let (client, mut subscription) = cluster
        .ratsio_subscriber(&unique("live"), &channel, options)
        .await?;
    cluster.publish(&channel, &["before"]).await?;
    let before = subscription.next_within(Duration::from_secs(2)).await?;

    // Act
    cluster.restart_broker().await?;
    // The unacked message comes back on the same inbox; the ack must reach the restored
    // subscription through the ack inbox ratsio already knows.
    let again = subscription.next_within(Duration::from_secs(3)).await?;
    subscription.ack(&again.message).await?;
    cluster.publish(&channel, &["after"]).await?;
    let received = subscription
        .collect_until(Instant::now() + Duration::from_millis(2000), true)
        .await?;

    // Assert
    assert_eq!(before.message.sequence, 1);
    assert_eq!(
        (again.message.sequence, again.message.redelivered),
        (1, true)
    );
    assert_eq!(
        distinct_sequences(&received),
        vec![2],
        "the ack of 1 was honoured and 2 arrived"
    );
    assert_eq!(received.len(), 1, "nothing redelivered after acks");
    close_ratsio(&client).await?;
    Ok(())
}

#[tokio::test]
async fn file_store_keeps_durable_queue_groups_across_a_restart() -> anyhow::Result<()> {
    // Arrange
    let Some(mut cluster) = TestCluster::start_with_file_store().await? else {
        return Ok(());
    };
    let channel = cluster.channel("fsqueue");
    let client = cluster.raw_client(&unique("member")).await?;
    let options = RawSubOptions::first()
        .queue("workers")
        .durable("dq")
        .max_in_flight(1)
        .ack_wait_secs(30);
    let mut member = client.subscribe(&channel, options).await?;
    cluster.publish(&channel, &["1", "2"]).await?;
    member.ack_all_but_last(&[1, 2]).await?;

    // Act
    cluster.restart_broker().await?;
    // The ack wait is 30 s: getting 2 again within 3 s is the restart's redelivery, not a timeout.
    let again = member.next_acked_within(Duration::from_secs(3)).await?;
    cluster.publish(&channel, &["3"]).await?;
    let after = member
        .acked_until_quiet(DELIVERY_WAIT, Duration::from_millis(500))
        .await?;

    // Assert
    assert_eq!((again.sequence, again.redelivered), (2, true));
    assert_eq!(
        after,
        vec![(3, false)],
        "(sequence, redelivered) after the restart"
    );
    Ok(())
}

#[tokio::test]
async fn channel_limits_still_apply_after_a_file_store_restart() -> anyhow::Result<()> {
    // Arrange
    let Some(mut cluster) =
        TestCluster::start_with_file_store_configured(|config| config.max_msgs = 2).await?
    else {
        return Ok(());
    };
    let channel = cluster.channel("fslimits");
    cluster.publish(&channel, &["1", "2", "3"]).await?;

    // Act
    cluster.restart_broker().await?;
    let after_restart = read_all(&cluster, &channel, 2).await?;
    cluster.publish(&channel, &["4"]).await?;
    let after_publish = read_all(&cluster, &channel, 2).await?;

    // Assert
    let sequences = |read: &[(u64, i64)]| read.iter().map(|r| r.0).collect::<Vec<_>>();
    assert_eq!(
        sequences(&after_restart),
        vec![2, 3],
        "the oldest stays dropped"
    );
    assert_eq!(
        sequences(&after_publish),
        vec![3, 4],
        "the limit applies to new messages"
    );
    Ok(())
}

#[tokio::test]
async fn restored_client_that_stops_answering_heartbeats_is_removed() -> anyhow::Result<()> {
    // Arrange
    let Some(mut cluster) = TestCluster::start_with_file_store_configured(heartbeats(
        Duration::from_millis(200),
        Duration::from_millis(200),
        3,
    ))
    .await?
    else {
        return Ok(());
    };
    let live = cluster.raw_client(&unique("live")).await?;
    let mut dying = cluster.raw_client(&unique("dying")).await?;
    cluster.restart_broker().await?;
    assert_eq!(dying.ping().await?.error, "", "restored with the store");

    // Act
    dying.stop_answering_heartbeats().await?;
    // Fails if it is still registered 10 s after it stopped answering.
    wait_until_unregistered(&live, &dying, Duration::from_secs(10)).await?;

    // Assert
    assert_eq!(live.ping().await?.error, "", "a live restored client stays");
    Ok(())
}

#[tokio::test]
async fn a_broker_started_right_after_dropping_one_takes_over_its_store() -> anyhow::Result<()> {
    // Arrange
    let Some((config, _dir)) = own_file_store_config("takeover").await? else {
        return Ok(());
    };
    let nats_url = &config.nats_url;
    let channel = unique("conf.takeover");
    let first = Broker::start(config.clone()).await?;
    let publisher = RawConnection::connect(nats_url, &config.cluster_id, &unique("pub")).await?;
    publisher.publish_confirmed(&channel, b"kept").await?;

    // Act
    // Dropping does not wait for the broker to stop; the next one waits for the store instead.
    drop(first);
    let _second = Broker::start(config.clone()).await?;

    // Assert
    let reader = RawConnection::connect(nats_url, &config.cluster_id, &unique("reader")).await?;
    let mut subscription = reader.subscribe(&channel, RawSubOptions::first()).await?;
    let kept = subscription.next_within(Duration::from_secs(2)).await?;
    assert_eq!((kept.sequence, &kept.data[..]), (1, &b"kept"[..]));
    Ok(())
}

#[tokio::test]
async fn a_file_store_refuses_a_different_cluster_id() -> anyhow::Result<()> {
    // Arrange
    let Some((config, _dir)) = own_file_store_config("owner").await? else {
        return Ok(());
    };
    Broker::start(config.clone()).await?.shutdown().await;

    // Act
    let other = Broker::start(BrokerConfig {
        cluster_id: unique("intruder"),
        ..config
    })
    .await;

    // Assert
    let Err(error) = other else {
        panic!("a broker started on another cluster's store");
    };
    assert!(
        format!("{error:#}").contains("belongs to cluster id"),
        "unexpected error: {error:#}"
    );
    Ok(())
}
