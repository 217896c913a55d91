//! Connect, duplicate client ids, heartbeats, Ping and CloseRequest.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::time::Instant;

use crate::helpers::{
    close_ratsio, distinct_sequences, heartbeats, unique, wait_until_unregistered, SubOptions,
    TestCluster, NO_LONGER_REGISTERED,
};
use crate::raw_client::{nats_connect, send_connect_request, RawSubOptions};

const ALREADY_REGISTERED: &str = "stan: clientID already registered";

#[tokio::test]
async fn connect_response_names_the_protocol_subjects_and_echoes_ping_settings(
) -> anyhow::Result<()> {
    // Arrange
    let cluster = TestCluster::start().await?;

    // Act
    let client = cluster.raw_client(&unique("client")).await?;

    // Assert
    let response = &client.response;
    assert_eq!(response.error, "");
    for (name, subject) in [
        ("pubPrefix", &response.pub_prefix),
        ("subRequests", &response.sub_requests),
        ("unsubRequests", &response.unsub_requests),
        ("closeRequests", &response.close_requests),
        ("subCloseRequests", &response.sub_close_requests),
        ("pingRequests", &response.ping_requests),
    ] {
        assert!(!subject.is_empty(), "{name} is empty");
    }
    assert_eq!(response.protocol, 1, "server protocol");
    assert_eq!(response.ping_interval, 5, "echoed pingInterval");
    assert_eq!(response.ping_max_out, 3, "echoed pingMaxOut");
    Ok(())
}

#[tokio::test]
async fn duplicate_client_id_is_refused_while_the_first_client_answers_heartbeats(
) -> anyhow::Result<()> {
    // Arrange
    let cluster = TestCluster::start().await?;
    let client_id = unique("dup");
    let _alive = cluster.ratsio_client(&client_id).await?;
    let second = cluster.raw_client(&unique("observer")).await?;

    // Act
    let response = second
        .request_connect_as(&cluster.cluster_id, &client_id)
        .await?;

    // Assert
    assert_eq!(response.error, ALREADY_REGISTERED);
    assert_eq!(response.pub_prefix, "", "a refusal carries no subjects");
    Ok(())
}

#[tokio::test]
async fn duplicate_client_id_replaces_a_client_that_stopped_answering_heartbeats(
) -> anyhow::Result<()> {
    // Arrange
    let cluster = TestCluster::start().await?;
    let client_id = unique("replaced");
    let mut dead = cluster.raw_client(&client_id).await?;
    dead.stop_answering_heartbeats().await?;

    // Act
    let started = Instant::now();
    let replacement = cluster.raw_client(&client_id).await?;
    let took = started.elapsed();

    // Assert
    assert_eq!(
        replacement.ping().await?.error,
        "",
        "the new connection is registered"
    );
    assert_eq!(
        replacement.ping_as(dead.conn_id.clone()).await?.error,
        NO_LONGER_REGISTERED,
        "the old connection is gone"
    );
    // The server pings the old client once with a 500 ms timeout; no responder is faster.
    assert!(took < Duration::from_secs(2), "replacing took {took:?}");
    Ok(())
}

#[tokio::test]
async fn server_sends_heartbeats_to_the_client_heartbeat_inbox() -> anyhow::Result<()> {
    // Arrange
    let Some(cluster) = TestCluster::start_configured(heartbeats(
        Duration::from_millis(200),
        Duration::from_millis(500),
        10,
    ))
    .await?
    else {
        return Ok(());
    };
    let nats = nats_connect(&cluster.nats_url).await?;
    let heartbeat_inbox = nats.new_inbox();
    let mut heartbeats = nats.subscribe(heartbeat_inbox.clone()).await?;
    nats.flush().await?;

    // Act
    let response = send_connect_request(
        &nats,
        &cluster.cluster_id,
        &unique("beating"),
        &heartbeat_inbox,
        unique("conn").into_bytes(),
    )
    .await?;

    // Assert
    assert_eq!(response.error, "");
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut beats = 0;
    while let Ok(Some(beat)) = tokio::time::timeout_at(deadline, heartbeats.next()).await {
        let reply = beat.reply.clone();
        assert!(
            reply.is_some(),
            "a heartbeat is a request that expects a reply"
        );
        if let Some(reply) = reply {
            nats.publish(reply, Bytes::new()).await?;
        }
        beats += 1;
    }
    assert!(
        (4..=12).contains(&beats),
        "{beats} heartbeats in 1.5 s at a 200 ms interval"
    );
    Ok(())
}

#[tokio::test]
async fn client_that_stops_answering_heartbeats_is_removed_and_its_durable_suspended(
) -> anyhow::Result<()> {
    // Arrange
    let Some(cluster) = TestCluster::start_configured(heartbeats(
        Duration::from_millis(200),
        Duration::from_millis(200),
        3,
    ))
    .await?
    else {
        return Ok(());
    };
    let channel = cluster.channel("hbdead");
    let client_id = unique("dying");
    let live = cluster.raw_client(&unique("live")).await?;
    let mut dying = cluster.raw_client(&client_id).await?;
    let mut durable = dying
        .subscribe(
            &channel,
            RawSubOptions::first()
                .durable("d")
                .max_in_flight(1)
                .ack_wait_secs(1),
        )
        .await?;
    cluster.publish(&channel, &["one", "two"]).await?;
    durable.ack_all_but_last(&[1, 2]).await?;

    // Act
    dying.stop_answering_heartbeats().await?;
    let removed_after = wait_until_unregistered(&live, &dying, Duration::from_secs(10)).await?;

    // Assert
    // 3 failures of 200 ms + 200 ms each; anything under one interval means no heartbeat failed.
    assert!(
        removed_after >= Duration::from_millis(200),
        "removed {removed_after:?} after the client stopped answering"
    );
    assert_eq!(
        live.ping().await?.error,
        "",
        "a live client stays registered"
    );

    // The pending message 2 is sent on resume, which ratsio misses, and again after the 1 s ack
    // wait; a deleted durable would start over with new messages only.
    let options = SubOptions::new_only().durable("d").max_in_flight(10);
    let received = cluster
        .ratsio_collect(&client_id, &channel, options, &["three"])
        .await?;
    assert_eq!(distinct_sequences(&received), vec![2, 3]);
    Ok(())
}

#[tokio::test]
async fn ping_from_a_registered_connection_gets_an_empty_response() -> anyhow::Result<()> {
    // Arrange
    let cluster = TestCluster::start().await?;
    let client = cluster.raw_client(&unique("pinger")).await?;

    // Act
    let response = client.ping().await?;

    // Assert
    assert_eq!(response.error, "");
    Ok(())
}

#[tokio::test]
async fn ping_with_an_unknown_connection_id_gets_an_error() -> anyhow::Result<()> {
    // Arrange
    let cluster = TestCluster::start().await?;
    let client = cluster.raw_client(&unique("pinger")).await?;

    // Act
    let response = client.ping_as(unique("nobody").into_bytes()).await?;

    // Assert
    assert_eq!(response.error, NO_LONGER_REGISTERED);
    Ok(())
}

#[tokio::test]
async fn close_request_unregisters_the_client() -> anyhow::Result<()> {
    // Arrange
    let cluster = TestCluster::start().await?;
    let client_id = unique("closing");
    let client = cluster.raw_client(&client_id).await?;
    let channel = cluster.channel("closed");

    // Act
    let response = client.close().await?;

    // Assert
    assert_eq!(response.error, "");
    assert_eq!(client.ping().await?.error, NO_LONGER_REGISTERED);
    assert_eq!(
        client.publish(&channel, b"late").await?.error,
        "stan: invalid publish request"
    );
    // The client still answers heartbeats, so only a real unregistration lets the id back in.
    let again = cluster.raw_client(&client_id).await?;
    assert_eq!(again.ping().await?.error, "");
    Ok(())
}

#[tokio::test]
async fn close_request_for_an_unknown_client_id_gets_an_error() -> anyhow::Result<()> {
    // Arrange
    let cluster = TestCluster::start().await?;
    let client = cluster.raw_client(&unique("closer")).await?;

    // Act
    let response = client.close_as(&unique("stranger")).await?;

    // Assert
    assert_eq!(response.error, "stan: unknown clientID");
    Ok(())
}

#[tokio::test]
async fn ratsio_client_connects_publishes_subscribes_and_closes() -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("ratsio").await?;
    let (client, mut subscription) = cluster
        .ratsio_subscriber(
            &unique("ratsio"),
            &channel,
            SubOptions::new_only().auto_ack(),
        )
        .await?;

    // Act
    for payload in ["a", "b", "c"] {
        client.publish(channel.as_str(), payload.as_bytes()).await?;
    }

    // Assert
    for (expected_sequence, expected_payload) in [(1, "a"), (2, "b"), (3, "c")] {
        let received = subscription.next_within(Duration::from_secs(2)).await?;
        let message = &received.message;
        assert_eq!(message.sequence, expected_sequence);
        assert_eq!(message.payload, expected_payload.as_bytes());
        assert_eq!(message.subject, channel);
        assert!(!message.redelivered);
        assert!(message.timestamp > 0, "stored messages carry a timestamp");
    }
    close_ratsio(&client).await?;
    Ok(())
}
