//! The ratsio adapter: connect and subscribe with every call bounded in time, because ratsio has no timeouts and a
//! connect refused by the server (a duplicate client id) still returns Ok, after which calls hang.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use futures::Stream;
use ratsio::{StanClient, StanMessage, StanOptions, StartPosition};

use crate::configuration::Settings;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A live STAN connection and its durable queue subscription with manual acks.
pub async fn subscribe(
    settings: &Settings,
) -> anyhow::Result<(
    Arc<StanClient>,
    impl Stream<Item = StanMessage> + Send + Unpin + 'static,
)> {
    let options = StanOptions::with_options(
        settings.stan_url.as_str(),
        settings.stan_cluster_id.as_str(),
        settings.stan_client_id.as_str(),
    );
    let client = tokio::time::timeout(CALL_TIMEOUT, StanClient::from_options(options))
        .await
        .map_err(|_| {
            anyhow!(
                "no NATS Streaming server answered at {} within {CALL_TIMEOUT:?}",
                settings.stan_url
            )
        })?
        .map_err(|e| {
            anyhow!(
                "failed to connect to NATS Streaming at {}: {e:?}",
                settings.stan_url
            )
        })?;
    let subscribing = client.subscribe_with_all(
        settings.stan_channel.clone(),
        Some(settings.stan_queue_group.clone()),
        Some(settings.stan_durable_name.clone()),
        settings.stan_max_in_flight,
        settings.stan_ack_wait_secs,
        // A new durable starts from the first message; a resumed one continues after its last ack.
        StartPosition::First,
        0,
        None,
        true,
    );
    let (_sid, messages) = tokio::time::timeout(CALL_TIMEOUT, subscribing)
        .await
        .map_err(|_| {
            anyhow!(
                "cluster {:?} refused or did not answer the subscription: is another instance running with client id {:?}?",
                settings.stan_cluster_id,
                settings.stan_client_id
            )
        })?
        .map_err(|e| anyhow!("subscription to {:?} failed: {e:?}", settings.stan_channel))?;
    Ok((client, Box::pin(messages)))
}

/// Acknowledges one message, bounded in time.
pub async fn ack(client: &StanClient, message: StanMessage) -> anyhow::Result<()> {
    tokio::time::timeout(CALL_TIMEOUT, client.acknowledge(message))
        .await
        .context("ack timed out")?
        .map_err(|e| anyhow!("ack failed: {e:?}"))
}

/// Closes the connection without unsubscribing, so the durable survives for the next start.
pub async fn close(client: &StanClient) {
    let _ = tokio::time::timeout(CALL_TIMEOUT, client.close()).await;
}
