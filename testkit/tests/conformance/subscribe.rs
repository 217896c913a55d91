//! Start positions, seen through ratsio.
//!
//! Messages stored before a subscription are sent right after the subscription response, which
//! ratsio misses (it subscribes to its inbox only after the response); the broker sends them
//! again when the 1 s ack wait expires. So each test collects for `MISSED_COMES_BACK` and
//! compares the *distinct* sequences received.

use std::time::Duration;

use ratsio::StartPosition;
use stan_proto::proto::SubscriptionRequest;
use tokio::time::{sleep_until, Instant};

use crate::helpers::{distinct_sequences, unique, SubOptions, TestCluster};

/// Subscribes a fresh ratsio client with `options`, publishes `after` once subscribed, and
/// returns the distinct sequences delivered (each acked on arrival).
async fn sequences_delivered(
    cluster: &TestCluster,
    channel: &str,
    options: SubOptions,
    after: &[&str],
) -> anyhow::Result<Vec<u64>> {
    let subscriber = unique("subscriber");
    let received = cluster
        .ratsio_collect(&subscriber, channel, options, after)
        .await?;
    Ok(distinct_sequences(&received))
}

/// Publishes `stored` to a fresh channel, subscribes with `options`, publishes `after`, and asserts
/// that exactly the sequences `expected` were delivered.
async fn assert_start_delivers(
    stored: &[&str],
    options: SubOptions,
    after: &[&str],
    expected: &[u64],
) -> anyhow::Result<()> {
    let (cluster, channel) = TestCluster::start_on_channel("start").await?;
    cluster.publish(&channel, stored).await?;
    let sequences = sequences_delivered(&cluster, &channel, options, after).await?;
    assert_eq!(sequences, expected);
    Ok(())
}

#[tokio::test]
async fn new_only_start_receives_only_messages_published_after_subscribing() -> anyhow::Result<()> {
    assert_start_delivers(&["1", "2"], SubOptions::new_only(), &["3"], &[3]).await
}

#[tokio::test]
async fn last_received_start_receives_the_last_stored_message_then_new_ones() -> anyhow::Result<()>
{
    let options = SubOptions::starting_at(StartPosition::LastReceived);
    assert_start_delivers(&["1", "2", "3"], options, &["4"], &[3, 4]).await
}

#[tokio::test]
async fn sequence_start_receives_from_the_given_sequence_on() -> anyhow::Result<()> {
    let options = SubOptions::starting_at(StartPosition::SequenceStart).start_sequence(3);
    assert_start_delivers(&["1", "2", "3", "4"], options, &["5"], &[3, 4, 5]).await
}

#[tokio::test]
async fn time_delta_start_receives_messages_stored_within_the_delta() -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("delta").await?;
    cluster.publish(&channel, &["1", "2"]).await?;
    // A gap in storage time, with the start time in its middle.
    let second_stored = Instant::now();
    let start_time = second_stored + Duration::from_millis(250);
    sleep_until(second_stored + Duration::from_millis(500)).await;
    cluster.publish(&channel, &["3", "4"]).await?;

    // Act
    // The server reads startTimeDelta as nanoseconds before now; ratsio passes its i32 through.
    let delta_nanos = i32::try_from(start_time.elapsed().as_nanos())?;
    let options =
        SubOptions::starting_at(StartPosition::TimeDeltaStart).start_time_delta_nanos(delta_nanos);
    let sequences = sequences_delivered(&cluster, &channel, options, &["5"]).await?;

    // Assert
    assert_eq!(sequences, vec![3, 4, 5]);
    Ok(())
}

#[tokio::test]
async fn first_start_receives_every_stored_message() -> anyhow::Result<()> {
    let options = SubOptions::starting_at(StartPosition::First);
    assert_start_delivers(&["1", "2", "3"], options, &["4"], &[1, 2, 3, 4]).await
}

#[tokio::test]
async fn subscription_from_an_unknown_client_id_is_refused() -> anyhow::Result<()> {
    // Arrange
    let cluster = TestCluster::start().await?;
    let client = cluster.raw_client(&unique("known")).await?;
    let request = SubscriptionRequest {
        client_id: unique("stranger"),
        subject: cluster.channel("stranger"),
        inbox: client.nats().new_inbox(),
        max_in_flight: 1,
        ack_wait_in_secs: 30,
        ..SubscriptionRequest::default()
    };

    // Act
    let response = client.request_subscription(&request).await?;

    // Assert
    assert_eq!(response.error, "stan: unknown clientID");
    assert_eq!(response.ack_inbox, "");
    Ok(())
}
