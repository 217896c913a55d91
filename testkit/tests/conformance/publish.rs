//! Publishing: PubMsg in, PubAck out.

use stan_proto::proto::PubMsg;

use crate::helpers::{unique, TestCluster};
use crate::raw_client::pub_msg;

/// A PubMsg from a client id and connection the broker has never seen.
fn stranger_pub_msg(channel: &str, data: &[u8]) -> PubMsg {
    pub_msg(
        &unique("stranger"),
        unique("conn").as_bytes(),
        channel,
        data,
    )
}

#[tokio::test]
async fn publish_is_acknowledged_with_the_message_guid() -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("puback").await?;
    let client = cluster.publisher().await?;
    let message = pub_msg(&client.client_id, &client.conn_id, &channel, b"payload");

    // Act
    let ack = client.publish_message(&channel, &message).await?;

    // Assert
    assert_eq!(ack.guid, message.guid);
    assert_eq!(ack.error, "");
    Ok(())
}

#[tokio::test]
async fn publish_with_an_unknown_client_id_gets_invalid_publish_request() -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("stranger").await?;
    let client = cluster.publisher().await?;
    let message = stranger_pub_msg(&channel, b"payload");

    // Act
    let ack = client.publish_message(&channel, &message).await?;

    // Assert
    assert_eq!(ack.error, "stan: invalid publish request");
    assert_eq!(
        ack.guid, message.guid,
        "the error PubAck still names the message"
    );
    Ok(())
}

#[tokio::test]
async fn refused_publish_is_not_stored() -> anyhow::Result<()> {
    // Arrange
    let (cluster, channel) = TestCluster::start_on_channel("notstored").await?;
    let client = cluster.publisher().await?;
    let stranger = stranger_pub_msg(&channel, b"refused");

    // Act
    client.publish_message(&channel, &stranger).await?;
    client.publish_confirmed(&channel, b"accepted").await?;

    // Assert
    let mut subscription = client
        .subscribe(&channel, crate::raw_client::RawSubOptions::first())
        .await?;
    let only = subscription
        .next_within(std::time::Duration::from_secs(2))
        .await?;
    assert_eq!((only.sequence, only.data.as_slice()), (1, &b"accepted"[..]));
    Ok(())
}
