//! Publishing: PubMsg in, PubAck out.

use stan_proto::proto::PubMsg;

use crate::helpers::{unique, TestCluster};

#[tokio::test]
async fn publish_is_acknowledged_with_the_message_guid() -> anyhow::Result<()> {
    // Arrange
    let cluster = TestCluster::start().await?;
    let client = cluster.raw_client(&unique("publisher")).await?;
    let channel = cluster.channel("puback");
    let guid = unique("guid");
    let message = PubMsg {
        client_id: client.client_id.clone(),
        guid: guid.clone(),
        subject: channel.clone(),
        data: b"payload".to_vec(),
        conn_id: client.conn_id.clone(),
        ..PubMsg::default()
    };

    // Act
    let ack = client.publish_message(&channel, &message).await?;

    // Assert
    assert_eq!(ack.guid, guid);
    assert_eq!(ack.error, "");
    Ok(())
}

#[tokio::test]
async fn publish_with_an_unknown_client_id_gets_invalid_publish_request() -> anyhow::Result<()> {
    // Arrange
    let cluster = TestCluster::start().await?;
    let client = cluster.raw_client(&unique("publisher")).await?;
    let channel = cluster.channel("stranger");
    let guid = unique("guid");
    let message = PubMsg {
        client_id: unique("stranger"),
        guid: guid.clone(),
        subject: channel.clone(),
        data: b"payload".to_vec(),
        conn_id: unique("conn").into_bytes(),
        ..PubMsg::default()
    };

    // Act
    let ack = client.publish_message(&channel, &message).await?;

    // Assert
    assert_eq!(ack.error, "stan: invalid publish request");
    assert_eq!(ack.guid, guid, "the error PubAck still names the message");
    Ok(())
}

#[tokio::test]
async fn refused_publish_is_not_stored() -> anyhow::Result<()> {
    // Arrange
    let cluster = TestCluster::start().await?;
    let client = cluster.raw_client(&unique("publisher")).await?;
    let channel = cluster.channel("notstored");
    let stranger = PubMsg {
        client_id: unique("stranger"),
        guid: unique("guid"),
        subject: channel.clone(),
        data: b"refused".to_vec(),
        conn_id: unique("conn").into_bytes(),
        ..PubMsg::default()
    };

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
