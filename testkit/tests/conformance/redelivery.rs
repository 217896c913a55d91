//! Manual acks, ack wait, redelivery and max in flight, seen through ratsio (the redelivery count, which
//! ratsio does not expose, through raw protocol requests).
//!
//! Messages are published after subscribing, so ratsio's lost-first-delivery race does not
//! apply; timings are measured from message arrival with a tolerance.

use std::time::Duration;

use tokio::time::Instant;

use crate::helpers::{
    assert_close_to, close_ratsio, distinct_sequences, unique, SubOptions, TestCluster,
};
use crate::raw_client::RawSubOptions;

const TOLERANCE: Duration = Duration::from_millis(400);
const ONE_SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn unacked_message_is_redelivered_every_ack_wait_with_the_redelivered_flag(
) -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("redeliver").await?;
    let (client, mut subscription) = cluster
        .ratsio_subscriber(
            &unique("slow"),
            &channel,
            SubOptions::new_only().ack_wait_secs(1),
        )
        .await?;

    // Act
    cluster.publish(&channel, &["once"]).await?;
    let first = subscription.next_within(Duration::from_secs(2)).await?;
    let second = subscription.next_within(Duration::from_secs(3)).await?;
    let third = subscription.next_within(Duration::from_secs(3)).await?;
    subscription.ack(&third.message).await?;
    let after_ack = subscription
        .next_before(Instant::now() + Duration::from_millis(1600))
        .await;

    // Assert
    assert_eq!(first.message.sequence, 1);
    assert!(
        !first.message.redelivered,
        "the first delivery is not flagged"
    );
    for (name, delivery) in [("second", &second), ("third", &third)] {
        assert_eq!(delivery.message.sequence, 1, "{name} delivery");
        assert!(delivery.message.redelivered, "{name} delivery is flagged");
        assert_eq!(delivery.message.payload, b"once", "{name} delivery");
    }
    assert_close_to(
        second.at - first.at,
        ONE_SECOND,
        TOLERANCE,
        "first redelivery",
    );
    assert_close_to(
        third.at - second.at,
        ONE_SECOND,
        TOLERANCE,
        "second redelivery",
    );
    assert!(
        after_ack.is_none(),
        "an acked message came back: seq {:?}",
        after_ack.map(|r| r.message.sequence)
    );
    close_ratsio(&client).await?;
    Ok(())
}

/// Subscribes a ratsio client with `options` and a 1 s ack wait, publishes two messages, and
/// asserts that each is delivered once, unflagged, within 1.8 s, acking each by hand unless
/// `options` auto-ack (`how`, for the assert message).
async fn assert_each_delivered_once(options: SubOptions, how: &str) -> anyhow::Result<()> {
    let (cluster, channel) = TestCluster::start_on_channel("acked").await?;
    let manual_acks = options.manual_acks;
    let (client, mut subscription) = cluster
        .ratsio_subscriber(&unique("acking"), &channel, options.ack_wait_secs(1))
        .await?;
    cluster.publish(&channel, &["1", "2"]).await?;
    let deadline = Instant::now() + Duration::from_millis(1800);
    let mut deliveries = Vec::new();
    // ratsio sends the ack of an auto-ack message when the message is dropped, so keep only its
    // sequence: a kept message stays unacked and is rightly redelivered after the ack wait.
    while let Some(received) = subscription.next_before(deadline).await {
        if manual_acks {
            subscription.ack(&received.message).await?;
        }
        deliveries.push((received.message.sequence, received.message.redelivered));
    }
    close_ratsio(&client).await?;
    assert_eq!(
        deliveries,
        vec![(1, false), (2, false)],
        "(sequence, redelivered) of messages {how}: each delivered once and never again"
    );
    Ok(())
}

#[tokio::test]
async fn acked_message_is_not_redelivered() -> anyhow::Result<()> {
    assert_each_delivered_once(SubOptions::new_only(), "acked by hand").await
}

#[tokio::test]
async fn auto_acked_message_is_not_redelivered() -> anyhow::Result<()> {
    assert_each_delivered_once(SubOptions::new_only().auto_ack(), "auto-acked").await
}

#[tokio::test]
async fn max_in_flight_holds_back_messages_until_acks_come() -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("inflight").await?;
    // A long ack wait keeps redeliveries out of the picture.
    let (client, mut subscription) = cluster
        .ratsio_subscriber(
            &unique("bounded"),
            &channel,
            SubOptions::new_only().max_in_flight(2).ack_wait_secs(30),
        )
        .await?;

    // Act
    cluster
        .publish(&channel, &["1", "2", "3", "4", "5"])
        .await?;
    let before_acks = subscription
        .collect_until(Instant::now() + Duration::from_millis(800), false)
        .await?;
    let Some(oldest) = before_acks.first() else {
        anyhow::bail!("Nothing was delivered");
    };
    subscription.ack(&oldest.message).await?;
    let after_one_ack = subscription
        .collect_until(Instant::now() + Duration::from_millis(800), false)
        .await?;
    for pending in before_acks.iter().skip(1).chain(&after_one_ack) {
        subscription.ack(&pending.message).await?;
    }
    let after_all_acks = subscription
        .collect_until(Instant::now() + Duration::from_millis(800), true)
        .await?;

    // Assert
    assert_eq!(distinct_sequences(&before_acks), vec![1, 2], "none acked");
    assert_eq!(distinct_sequences(&after_one_ack), vec![3], "1 acked");
    assert_eq!(distinct_sequences(&after_all_acks), vec![4, 5], "1-3 acked");
    close_ratsio(&client).await?;
    Ok(())
}

#[tokio::test]
async fn new_ack_wait_on_resume_applies_to_new_deliveries_while_pending_keep_their_deadline(
) -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("resumewait").await?;
    let client_id = unique("resumer");
    // One durable, resumed below with a shorter ack wait.
    let durable = SubOptions::new_only().durable("d");
    let (before, mut old) = cluster
        .ratsio_subscriber(&client_id, &channel, durable.clone().ack_wait_secs(3))
        .await?;
    cluster.publish(&channel, &["pending"]).await?;
    let pending = old.next_within(Duration::from_secs(2)).await?;
    close_ratsio(&before).await?;

    // Act
    let after = cluster.ratsio_client(&client_id).await?;
    let resumed_at = Instant::now();
    let mut resumed = cluster
        .subscribe(&after, &channel, durable.ack_wait_secs(1))
        .await?;
    cluster.publish(&channel, &["fresh"]).await?;
    let received = resumed
        .collect_until(pending.at + Duration::from_millis(5000), false)
        .await?;

    // Assert
    assert_eq!(pending.message.sequence, 1);
    let fresh: Vec<_> = received
        .iter()
        .filter(|r| r.message.sequence == 2)
        .collect();
    assert!(fresh.len() >= 2, "message 2 was delivered and redelivered");
    assert!(!fresh[0].message.redelivered);
    assert_close_to(
        fresh[1].at - fresh[0].at,
        ONE_SECOND,
        TOLERANCE,
        "redelivery of a message delivered after resuming with ack wait 1 s",
    );
    // The server resends pending messages the moment the durable resumes (ratsio usually misses
    // that); after it, the old 3 s deadline rules, not the new 1 s ack wait.
    let later_redelivery = received
        .iter()
        .find(|r| r.message.sequence == 1 && r.at > resumed_at + Duration::from_millis(300));
    let Some(later_redelivery) = later_redelivery else {
        panic!("message 1 was not redelivered within 5 s of its delivery");
    };
    assert!(later_redelivery.message.redelivered);
    let since_delivery = later_redelivery.at - pending.at;
    assert!(
        since_delivery >= Duration::from_secs(3) - TOLERANCE
            && since_delivery <= Duration::from_secs(4) + TOLERANCE,
        "message 1 came back {since_delivery:?} after its delivery with a 3 s ack wait \
         (resumed {:?} after it with a 1 s ack wait)",
        resumed_at - pending.at
    );
    close_ratsio(&after).await?;
    Ok(())
}

#[tokio::test]
async fn redelivery_count_grows_with_each_redelivery_and_a_queue_group_keeps_counting(
) -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("redelivery-count").await?;
    let single = cluster.raw_client(&unique("single")).await?;
    let mut alone = single
        .subscribe(&channel, RawSubOptions::new_only().ack_wait_secs(1))
        .await?;
    let group = RawSubOptions::new_only()
        .queue(&unique("group"))
        .ack_wait_secs(1);
    let first = cluster.raw_client(&unique("member")).await?;
    let second = cluster.raw_client(&unique("member")).await?;
    let mut members = [
        first.subscribe(&channel, group.clone()).await?,
        second.subscribe(&channel, group).await?,
    ];

    // Act
    cluster.publish(&channel, &["counted"]).await?;
    let mut alone_seen = Vec::new();
    for _ in 0..3 {
        let message = alone.next_within(Duration::from_secs(3)).await?;
        alone_seen.push((
            message.sequence,
            message.redelivered,
            message.redelivery_count,
        ));
    }
    // Each expiry hands the message to the other member; whoever has it, the group's count goes on.
    let mut group_seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(6);
    while group_seen.len() < 3 && Instant::now() < deadline {
        for (member, subscription) in members.iter_mut().enumerate() {
            if let Some(message) = subscription.next_if_any(Duration::from_millis(50)).await? {
                group_seen.push((member, message.redelivered, message.redelivery_count));
            }
        }
    }

    // Assert
    assert_eq!(
        alone_seen,
        vec![(1, false, 0), (1, true, 1), (1, true, 2)],
        "(sequence, redelivered, redelivery count) of a plain subscription"
    );
    let counts: Vec<(bool, u32)> = group_seen.iter().map(|s| (s.1, s.2)).collect();
    assert_eq!(
        counts,
        vec![(false, 0), (true, 1), (true, 2)],
        "(redelivered, redelivery count) across the queue group: {group_seen:?}"
    );
    assert_ne!(
        group_seen[0].0, group_seen[1].0,
        "the first redelivery goes to the other member: {group_seen:?}"
    );
    Ok(())
}
