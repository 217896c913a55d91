//! Durable subscriptions: resume after close and after the client process dies; close
//! suspends, unsubscribe deletes; the key is client id + durable name + channel.
//!
//! Tests that need the broker to have processed an ack before the client goes away use max in
//! flight 1: the next delivery proves the previous ack arrived.

use std::time::Duration;

use crate::child_process::{ChildClient, ChildEvent, ChildSpec};
use crate::helpers::{close_ratsio, distinct_sequences, unique, Received, SubOptions, TestCluster};
use crate::raw_client::{RawSubOptions, DELIVERY_WAIT};

fn first_delivery_of(received: &[Received], sequence: u64) -> Option<&Received> {
    received.iter().find(|r| r.message.sequence == sequence)
}

#[tokio::test]
async fn durable_resumes_after_the_ratsio_client_closes() -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("resumeclose").await?;
    let client_id = unique("durable");
    let before = cluster.ratsio_client(&client_id).await?;
    let options = SubOptions::new_only().durable("d").max_in_flight(1);
    let mut subscription = cluster
        .subscribe(&before, &channel, options.clone())
        .await?;
    cluster.publish(&channel, &["1", "2", "3"]).await?;
    subscription.ack_all_but_last(&[1, 2]).await?;

    // Act
    close_ratsio(&before).await?;
    cluster.publish(&channel, &["4"]).await?;
    let received = cluster
        .ratsio_collect(&client_id, &channel, options, &[])
        .await?;

    // Assert
    assert_eq!(distinct_sequences(&received), vec![2, 3, 4], "1 was acked");
    let two_again = first_delivery_of(&received, 2);
    assert!(
        two_again.is_some_and(|r| r.message.redelivered),
        "the unacked message comes back flagged as redelivered"
    );
    assert!(
        first_delivery_of(&received, 3).is_some_and(|r| !r.message.redelivered),
        "messages never sent before are not flagged"
    );
    Ok(())
}

#[tokio::test]
async fn acks_sent_right_before_closing_are_kept() -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("ackclose").await?;
    let client_id = unique("durable");
    let before = cluster.ratsio_client(&client_id).await?;
    let options = SubOptions::new_only().durable("d");
    let mut subscription = cluster
        .subscribe(&before, &channel, options.clone())
        .await?;
    cluster.publish(&channel, &["1", "2", "3"]).await?;
    let mut delivered = Vec::new();
    for _ in 0..3 {
        delivered.push(subscription.next_within(Duration::from_secs(2)).await?);
    }

    // Act
    for received in &delivered {
        subscription.ack(&received.message).await?;
    }
    close_ratsio(&before).await?;
    let received = cluster
        .ratsio_collect(&client_id, &channel, options, &["4"])
        .await?;

    // Assert
    assert_eq!(distinct_sequences(&received), vec![4]);
    Ok(())
}

#[tokio::test]
async fn durable_resumes_after_the_client_process_is_killed() -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("resumekill").await?;
    let client_id = unique("victim");
    // The same durable for the process that dies and for the client that takes its place.
    let options = SubOptions::new_only().durable("d").max_in_flight(1);
    let spec = ChildSpec {
        client_id: client_id.clone(),
        channel: channel.clone(),
        options: options.clone(),
        ack_below: 3,
    };
    let mut child = ChildClient::spawn(&cluster, &spec).await?;
    cluster.publish(&channel, &["1", "2", "3"]).await?;
    // Acks 1 and 2; receiving 3 proves the broker processed the ack of 2.
    loop {
        let event = child.next_event_within(Duration::from_secs(3)).await?;
        if let ChildEvent::Received { sequence: 3, .. } = event {
            break;
        }
    }

    // Act
    child.kill().await?;
    cluster.publish(&channel, &["4"]).await?;
    let received = cluster
        .ratsio_collect(&client_id, &channel, options, &[])
        .await?;

    // Assert
    assert_eq!(
        distinct_sequences(&received),
        vec![3, 4],
        "1 and 2 were acked"
    );
    assert!(
        first_delivery_of(&received, 3).is_some_and(|r| r.message.redelivered),
        "the message the dead process held comes back flagged as redelivered"
    );
    Ok(())
}

#[tokio::test]
async fn closing_a_durable_subscription_suspends_it() -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("subclose").await?;
    let client = cluster.raw_client(&unique("closer")).await?;
    let options = RawSubOptions::first().durable("d").max_in_flight(1);
    let mut subscription = client.subscribe(&channel, options.clone()).await?;
    cluster.publish(&channel, &["1", "2"]).await?;
    subscription.ack_all_but_last(&[1, 2]).await?;

    // Act
    let response = subscription.close(&client).await?;
    cluster.publish(&channel, &["3"]).await?;
    let mut resumed = client.subscribe(&channel, options).await?;
    let deliveries = resumed
        .acked_until_quiet(DELIVERY_WAIT, Duration::from_secs(1))
        .await?;

    // Assert
    assert_eq!(response.error, "");
    assert_eq!(
        deliveries,
        vec![(2, true), (3, false)],
        "(sequence, redelivered): the unacked message is resent first, flagged, then the new one"
    );
    Ok(())
}

#[tokio::test]
async fn unsubscribing_a_durable_deletes_it() -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("unsub").await?;
    let client = cluster.raw_client(&unique("leaver")).await?;
    let options = RawSubOptions::first().durable("d");
    let mut subscription = client.subscribe(&channel, options.clone()).await?;
    cluster.publish(&channel, &["1", "2"]).await?;
    subscription.receive_and_ack(&[1, 2]).await?;

    // Act
    let response = subscription.unsubscribe(&client).await?;
    let mut fresh = client.subscribe(&channel, options).await?;
    let one = fresh.next_within(Duration::from_secs(2)).await?;
    let two = fresh.next_within(Duration::from_secs(2)).await?;

    // Assert
    assert_eq!(response.error, "");
    // A new durable starts over at its start position; nothing was pending, so nothing is
    // flagged as redelivered.
    assert_eq!((one.sequence, one.redelivered), (1, false));
    assert_eq!((two.sequence, two.redelivered), (2, false));
    Ok(())
}

#[tokio::test]
async fn durable_is_keyed_by_client_id_durable_name_and_channel() -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("key").await?;
    let other_channel = cluster.channel("key");
    cluster.publish(&channel, &["1", "2"]).await?;
    cluster.publish(&other_channel, &["1"]).await?;
    let first_client = cluster.raw_client(&unique("first")).await?;
    let options = RawSubOptions::first().durable("shared");
    let mut original = first_client.subscribe(&channel, options.clone()).await?;
    original.receive_and_ack(&[1, 2]).await?;
    original.close(&first_client).await?;

    // Act
    let second_client = cluster.raw_client(&unique("second")).await?;
    let mut same_name_other_client = second_client.subscribe(&channel, options.clone()).await?;
    let mut same_name_other_channel = first_client.subscribe(&other_channel, options).await?;

    // Assert
    for (subscription, other) in [
        (&mut same_name_other_client, "another client id"),
        (&mut same_name_other_channel, "another channel"),
    ] {
        let delivered = subscription.next_within(DELIVERY_WAIT).await?;
        assert_eq!(
            (delivered.sequence, delivered.redelivered),
            (1, false),
            "{other} gets its own durable from the start"
        );
    }
    Ok(())
}

#[tokio::test]
async fn second_active_subscription_to_the_same_durable_is_refused() -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("dupdurable").await?;
    let client = cluster.raw_client(&unique("greedy")).await?;
    let options = RawSubOptions::new_only().durable("d");
    let _active = client.subscribe(&channel, options.clone()).await?;

    // Act
    let second = client.subscribe(&channel, options).await;

    // Assert
    let Err(error) = second else {
        panic!("a second active subscription to the durable was accepted");
    };
    assert!(
        error
            .to_string()
            .contains("stan: duplicate durable registration"),
        "unexpected error: {error:#}"
    );
    Ok(())
}
