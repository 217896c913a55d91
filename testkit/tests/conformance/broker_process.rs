//! The `stan-broker` binary with a file store, killed with SIGKILL or stopped with SIGTERM.
//! Skipped against an external server, which we cannot kill.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use futures::future::try_join_all;
use stan_testkit::nats_server::ensure_nats_server;
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout, Instant};

use crate::helpers::{external_server, skip_on_external_server, unique};
use crate::raw_client::{RawConnection, RawSubOptions};

/// A `stan-broker` process on a file store.
struct BrokerProcess {
    process: Child,
}

impl BrokerProcess {
    /// Starts the binary and waits until it accepts a connection.
    async fn start(nats_url: &str, cluster_id: &str, dir: &Path) -> anyhow::Result<BrokerProcess> {
        let process = Command::new(env!("CARGO_BIN_EXE_stan-broker"))
            .args(["--cluster_id", cluster_id, "--nats_server", nats_url])
            .args(["--store", "file", "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("Failed to start stan-broker")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let probe = RawConnection::connect(nats_url, cluster_id, &unique("probe")).await;
            match probe {
                Ok(probe) => {
                    probe.close().await?;
                    return Ok(BrokerProcess { process });
                }
                Err(error) if Instant::now() >= deadline => {
                    return Err(error.context("stan-broker did not answer within 10 s"))
                }
                Err(_) => sleep(Duration::from_millis(50)).await,
            }
        }
    }

    async fn kill(mut self) -> anyhow::Result<()> {
        self.process
            .kill()
            .await
            .context("Failed to kill stan-broker")
    }

    /// Sends SIGTERM and returns how the process exited.
    async fn terminate(mut self) -> anyhow::Result<ExitStatus> {
        let pid = self.process.id().context("stan-broker already exited")?;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .context("Failed to run kill")?;
        anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
        timeout(Duration::from_secs(5), self.process.wait())
            .await
            .context("stan-broker did not exit within 5 s of SIGTERM")?
            .context("Failed to wait for stan-broker")
    }
}

/// The NATS url, or `None` (and a skip line) when the suite targets an external server.
async fn local_nats(test: &str) -> anyhow::Result<Option<String>> {
    if external_server().is_some() {
        skip_on_external_server(test, "needs to kill and restart the broker process");
        return Ok(None);
    }
    ensure_nats_server().await.map(Some)
}

#[tokio::test]
async fn acknowledged_messages_survive_a_broker_killed_with_sigkill() -> anyhow::Result<()> {
    // Arrange
    let Some(nats_url) =
        local_nats("acknowledged_messages_survive_a_broker_killed_with_sigkill").await?
    else {
        return Ok(());
    };
    let (cluster_id, channel) = (unique("sigkill"), unique("conf.sigkill"));
    let dir = tempfile::tempdir()?;
    let broker = BrokerProcess::start(&nats_url, &cluster_id, dir.path()).await?;
    let publisher = RawConnection::connect(&nats_url, &cluster_id, &unique("pub")).await?;
    let payloads: Vec<String> = (1..=200).map(|i| format!("m{i}")).collect();
    // Many PubAcks in flight at once, so the kill lands on a busy broker.
    let acks = try_join_all(
        payloads
            .iter()
            .map(|payload| publisher.publish(&channel, payload.as_bytes())),
    )
    .await?;
    assert!(
        acks.iter().all(|ack| ack.error.is_empty()),
        "all acknowledged"
    );

    // Act
    broker.kill().await?;
    let _restarted = BrokerProcess::start(&nats_url, &cluster_id, dir.path()).await?;

    // Assert
    let reader = RawConnection::connect(&nats_url, &cluster_id, &unique("reader")).await?;
    let mut subscription = reader.subscribe(&channel, RawSubOptions::first()).await?;
    let mut stored = Vec::new();
    while let Some(message) = subscription.next_if_any(Duration::from_millis(500)).await? {
        stored.push(message);
    }
    let sequences: Vec<u64> = stored.iter().map(|m| m.sequence).collect();
    assert_eq!(sequences, (1..=200).collect::<Vec<u64>>());
    let mut got: Vec<String> = stored
        .iter()
        .map(|m| String::from_utf8_lossy(&m.data).into_owned())
        .collect();
    let mut expected = payloads.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "every acknowledged payload is stored once");
    // The publisher was restored with the store: it may go on publishing.
    publisher.publish_confirmed(&channel, b"after").await?;
    let next = subscription.next_within(Duration::from_secs(2)).await?;
    assert_eq!(next.sequence, 201);
    Ok(())
}

#[tokio::test]
async fn sigterm_stops_the_broker_cleanly_with_positions_saved() -> anyhow::Result<()> {
    // Arrange
    let Some(nats_url) =
        local_nats("sigterm_stops_the_broker_cleanly_with_positions_saved").await?
    else {
        return Ok(());
    };
    let (cluster_id, channel) = (unique("sigterm"), unique("conf.sigterm"));
    let dir = tempfile::tempdir()?;
    let broker = BrokerProcess::start(&nats_url, &cluster_id, dir.path()).await?;
    let client = RawConnection::connect(&nats_url, &cluster_id, &unique("durable")).await?;
    let options = RawSubOptions::first().durable("d").max_in_flight(1);
    let mut subscription = client.subscribe(&channel, options.clone()).await?;
    let publisher = RawConnection::connect(&nats_url, &cluster_id, &unique("pub")).await?;
    for payload in ["1", "2", "3"] {
        publisher
            .publish_confirmed(&channel, payload.as_bytes())
            .await?;
    }
    for expected in [1, 2] {
        let message = subscription.next_within(Duration::from_secs(2)).await?;
        assert_eq!(message.sequence, expected);
        subscription.ack(message.sequence).await?;
    }
    // Max in flight 1: receiving 3 proves the acks of 1 and 2 were processed.
    let three = subscription.next_within(Duration::from_secs(2)).await?;
    assert_eq!(three.sequence, 3);

    // Act
    let status = broker.terminate().await?;
    let _restarted = BrokerProcess::start(&nats_url, &cluster_id, dir.path()).await?;
    subscription.close(&client).await?;
    let mut resumed = client.subscribe(&channel, options).await?;
    let again = resumed.next_within(Duration::from_secs(2)).await?;
    resumed.ack(again.sequence).await?;
    let extra = resumed.next_if_any(Duration::from_millis(500)).await?;

    // Assert
    assert!(status.success(), "stan-broker exited with {status}");
    assert_eq!((again.sequence, again.redelivered), (3, true));
    assert!(
        extra.is_none(),
        "1 and 2 stay acked, got {:?}",
        extra.map(|m| m.sequence)
    );
    Ok(())
}
