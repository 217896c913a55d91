//! Queue groups and durable queue groups, including a member killed with SIGKILL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ratsio::StanClient;
use tokio::time::Instant;

use crate::child_process::{ChildClient, ChildSpec};
use crate::helpers::{
    close_ratsio, distinct_sequences, unique, RatsioSubscription, SubOptions, TestCluster,
};
use crate::raw_client::RawSubOptions;

#[tokio::test]
async fn queue_group_splits_load_round_robin() -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("split").await?;
    let first = cluster.ratsio_client(&unique("member")).await?;
    let second = cluster.ratsio_client(&unique("member")).await?;
    // No acks and a long ack wait: every member holds what it got, so the split is exact.
    let options = SubOptions::new_only().queue("workers").ack_wait_secs(30);
    let mut first_sub = cluster.subscribe(&first, &channel, options.clone()).await?;
    let mut second_sub = cluster.subscribe(&second, &channel, options).await?;

    // Act
    cluster
        .publish(&channel, &["1", "2", "3", "4", "5", "6"])
        .await?;
    let deadline = Instant::now() + Duration::from_millis(1500);
    let first_got = first_sub.collect_until(deadline, false).await?;
    let second_got = second_sub.collect_until(deadline, false).await?;

    // Assert
    assert_eq!(
        distinct_sequences(&first_got),
        vec![1, 3, 5],
        "first member"
    );
    assert_eq!(
        distinct_sequences(&second_got),
        vec![2, 4, 6],
        "second member"
    );
    assert_eq!(first_got.len() + second_got.len(), 6, "each message once");
    close_ratsio(&first).await?;
    close_ratsio(&second).await?;
    Ok(())
}

#[tokio::test]
async fn durable_queue_group_survives_its_last_member_closing() -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("dqclose").await?;
    let options = SubOptions::new_only()
        .queue("workers")
        .durable("dq")
        .max_in_flight(1);
    let (leaving, mut subscription) = cluster
        .ratsio_subscriber(&unique("leaving"), &channel, options.clone())
        .await?;
    cluster.publish(&channel, &["1", "2"]).await?;
    subscription.ack_all_but_last(&[1, 2]).await?;

    // Act
    close_ratsio(&leaving).await?;
    cluster.publish(&channel, &["3"]).await?;
    let received = cluster
        .ratsio_collect(&unique("joining"), &channel, options, &[])
        .await?;

    // Assert
    assert_eq!(
        distinct_sequences(&received),
        vec![2, 3],
        "the group kept its position and its unacked message"
    );
    Ok(())
}

/// Reads a live member's deliveries until every sequence in `expected` has arrived or
/// `deadline` passes; returns the first arrival of each sequence.
async fn first_arrivals(
    member: &mut RatsioSubscription,
    expected: &[u64],
    deadline: Instant,
) -> anyhow::Result<BTreeMap<u64, (Instant, bool)>> {
    let mut arrivals = BTreeMap::new();
    while !expected.iter().all(|seq| arrivals.contains_key(seq)) {
        let Some(received) = member.next_before(deadline).await else {
            break;
        };
        member.ack(&received.message).await?;
        arrivals
            .entry(received.message.sequence)
            .or_insert((received.at, received.message.redelivered));
    }
    Ok(arrivals)
}

/// Two members of the durable queue group `dq`/`workers` on `channel`, both with `ack_wait_secs`:
/// a child process `client_id` that acks nothing, and a ratsio client in this process.
async fn doomed_and_live_members(
    cluster: &TestCluster,
    channel: &str,
    client_id: &str,
    ack_wait_secs: i32,
) -> anyhow::Result<(ChildClient, Arc<StanClient>, RatsioSubscription)> {
    let options = SubOptions::new_only()
        .queue("workers")
        .durable("dq")
        .ack_wait_secs(ack_wait_secs);
    let spec = ChildSpec {
        client_id: client_id.to_string(),
        channel: channel.to_string(),
        options: options.clone(),
        ack_below: 0,
    };
    let doomed = ChildClient::spawn(cluster, &spec).await?;
    let (survivor, live) = cluster
        .ratsio_subscriber(&unique("survivor"), channel, options)
        .await?;
    Ok((doomed, survivor, live))
}

#[tokio::test]
async fn killed_queue_members_unacked_messages_go_to_a_live_member_after_ack_wait(
) -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("qkill").await?;
    let (mut doomed, survivor, mut live) =
        doomed_and_live_members(&cluster, &channel, &unique("doomed"), 1).await?;
    cluster.publish(&channel, &["1", "2", "3", "4"]).await?;
    let held_by_doomed = doomed.next_held_sequence().await?;
    let held_since = Instant::now();

    // Act
    doomed.kill().await?;
    cluster.publish(&channel, &["5", "6"]).await?;
    let all: Vec<u64> = (1..=6).collect();
    let arrivals = first_arrivals(&mut live, &all, Instant::now() + Duration::from_secs(6)).await?;

    // Assert
    assert_eq!(
        arrivals.keys().copied().collect::<Vec<_>>(),
        all,
        "the live member ends up with every message"
    );
    let Some(&(arrived, redelivered)) = arrivals.get(&held_by_doomed) else {
        panic!("message {held_by_doomed} never reached the live member");
    };
    assert!(
        redelivered,
        "a message taken from the dead member is flagged"
    );
    let waited = arrived - held_since;
    assert!(
        waited >= Duration::from_millis(600),
        "message {held_by_doomed} moved after {waited:?}, before its 1 s ack wait expired"
    );
    close_ratsio(&survivor).await?;
    Ok(())
}

#[tokio::test]
async fn reconnecting_a_killed_members_client_id_hands_its_pending_messages_over_at_once(
) -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("qreplace").await?;
    let client_id = unique("doomed");
    // A 10 s ack wait: anything the live member gets within 2 s was handed over, not expired.
    let (mut doomed, survivor, mut live) =
        doomed_and_live_members(&cluster, &channel, &client_id, 10).await?;
    cluster.publish(&channel, &["1", "2"]).await?;
    let held_by_doomed = doomed.next_held_sequence().await?;
    doomed.kill().await?;

    // Act
    let _replacement = cluster.ratsio_client(&client_id).await?;
    let arrivals =
        first_arrivals(&mut live, &[1, 2], Instant::now() + Duration::from_secs(2)).await?;

    // Assert
    let Some(&(_, redelivered)) = arrivals.get(&held_by_doomed) else {
        panic!(
            "message {held_by_doomed} held by the dead member did not reach the live member \
             within 2 s of the replacing connect (ack wait 10 s)"
        );
    };
    assert!(
        redelivered,
        "a handed-over message is flagged as redelivered"
    );
    close_ratsio(&survivor).await?;
    Ok(())
}

#[tokio::test]
async fn unsubscribing_the_last_member_deletes_a_durable_queue_group() -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("dqunsub").await?;
    let member = cluster.raw_client(&unique("member")).await?;
    let options = RawSubOptions::first().queue("workers").durable("dq");
    let mut subscription = member.subscribe(&channel, options.clone()).await?;
    cluster.publish(&channel, &["1", "2"]).await?;
    subscription.receive_and_ack(&[1, 2]).await?;

    // Act
    let response = subscription.unsubscribe(&member).await?;
    let newcomer = cluster.raw_client(&unique("newcomer")).await?;
    let mut fresh = newcomer.subscribe(&channel, options).await?;
    let one = fresh.next_within(Duration::from_secs(2)).await?;

    // Assert
    assert_eq!(response.error, "");
    assert_eq!(
        (one.sequence, one.redelivered),
        (1, false),
        "a deleted group starts over at its start position"
    );
    Ok(())
}
