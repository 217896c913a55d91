//! File store: a broker restart on the same directory keeps messages, clients, durables and
//! their unacked messages. Skipped against an external server, which we cannot restart.

use std::time::Duration;

use tokio::time::Instant;

use crate::helpers::{
    close_ratsio, distinct_sequences, publish_all, unique, SubOptions, TestCluster,
};
use crate::raw_client::{send_connect_request, RawSubOptions};

#[tokio::test]
#[ignore = "the file store is not implemented yet"]
async fn file_store_keeps_messages_across_a_restart() -> anyhow::Result<()> {
    // Arrange
    let Some(mut cluster) =
        TestCluster::start_with_file_store("file_store_keeps_messages_across_a_restart").await?
    else {
        return Ok(());
    };
    let channel = cluster.channel("fsmsgs");
    publish_all(&cluster.publisher().await?, &channel, &["a", "b", "c"]).await?;

    // Act
    cluster.restart_broker().await?;

    // Assert
    let reader = cluster.raw_client(&unique("reader")).await?;
    let mut subscription = reader.subscribe(&channel, RawSubOptions::first()).await?;
    for (sequence, payload) in [(1, "a"), (2, "b"), (3, "c")] {
        let message = subscription.next_within(Duration::from_secs(2)).await?;
        assert_eq!(message.sequence, sequence);
        assert_eq!(message.data, payload.as_bytes());
    }
    let publisher = cluster.publisher().await?;
    publisher.publish_confirmed(&channel, b"d").await?;
    let next = subscription.next_within(Duration::from_secs(2)).await?;
    assert_eq!(next.sequence, 4, "sequences continue after a restart");
    Ok(())
}

#[tokio::test]
#[ignore = "the file store is not implemented yet"]
async fn file_store_keeps_clients_across_a_restart() -> anyhow::Result<()> {
    // Arrange
    let Some(mut cluster) =
        TestCluster::start_with_file_store("file_store_keeps_clients_across_a_restart").await?
    else {
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
    let duplicate = send_connect_request(
        client.nats(),
        &cluster.cluster_id,
        &client_id,
        &client.nats().new_inbox(),
        unique("conn").into_bytes(),
    )
    .await?;
    assert_eq!(duplicate.error, "stan: clientID already registered");
    Ok(())
}

#[tokio::test]
#[ignore = "the file store is not implemented yet"]
async fn file_store_keeps_durables_and_their_unacked_messages_across_a_restart(
) -> anyhow::Result<()> {
    // Arrange
    let Some(mut cluster) = TestCluster::start_with_file_store(
        "file_store_keeps_durables_and_their_unacked_messages_across_a_restart",
    )
    .await?
    else {
        return Ok(());
    };
    let channel = cluster.channel("fsdurable");
    let client = cluster.raw_client(&unique("durable")).await?;
    let options = RawSubOptions::first()
        .durable("d")
        .max_in_flight(1)
        .ack_wait_secs(1);
    let mut subscription = client.subscribe(&channel, options.clone()).await?;
    publish_all(&cluster.publisher().await?, &channel, &["1", "2", "3"]).await?;
    let one = subscription.next_within(Duration::from_secs(2)).await?;
    subscription.ack(one.sequence).await?;
    // Max in flight 1: receiving 2 proves the ack of 1 arrived; 2 stays unacked.
    let two = subscription.next_within(Duration::from_secs(2)).await?;
    assert_eq!((one.sequence, two.sequence), (1, 2));
    subscription.close(&client).await?;

    // Act
    cluster.restart_broker().await?;
    let mut resumed = client.subscribe(&channel, options).await?;
    let again = resumed.next_within(Duration::from_secs(3)).await?;
    resumed.ack(again.sequence).await?;
    let next = resumed.next_within(Duration::from_secs(2)).await?;
    resumed.ack(next.sequence).await?;
    let extra = resumed.next_if_any(Duration::from_millis(1500)).await?;

    // Assert
    assert_eq!((again.sequence, again.redelivered), (2, true));
    assert_eq!((next.sequence, next.redelivered), (3, false));
    assert!(
        extra.is_none(),
        "unexpected delivery {:?}",
        extra.map(|m| m.sequence)
    );
    Ok(())
}

#[tokio::test]
#[ignore = "the file store is not implemented yet"]
async fn ratsio_subscription_keeps_working_across_a_file_store_restart() -> anyhow::Result<()> {
    // Arrange
    let Some(mut cluster) = TestCluster::start_with_file_store(
        "ratsio_subscription_keeps_working_across_a_file_store_restart",
    )
    .await?
    else {
        return Ok(());
    };
    let channel = cluster.channel("fslive");
    let client = cluster.ratsio_client(&unique("live")).await?;
    let mut subscription = cluster
        .subscribe(
            &client,
            &channel,
            SubOptions::new_only().durable("d").max_in_flight(1),
        )
        .await?;
    let publisher = cluster.publisher().await?;
    publish_all(&publisher, &channel, &["before"]).await?;
    let before = subscription.next_within(Duration::from_secs(2)).await?;

    // Act
    cluster.restart_broker().await?;
    // The unacked message comes back on the same inbox; the ack must reach the restored
    // subscription through the ack inbox ratsio already knows.
    let again = subscription.next_within(Duration::from_secs(3)).await?;
    subscription.ack(&again.message).await?;
    publish_all(&publisher, &channel, &["after"]).await?;
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
