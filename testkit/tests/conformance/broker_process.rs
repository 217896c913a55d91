//! The `stan-broker` binary with a file store, killed with SIGKILL or stopped with SIGTERM.
//! Skipped against an external server, which we cannot kill.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use futures::future::try_join_all;
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout, Instant};

use crate::helpers::{local_nats_url, publish_all, unique};
use crate::raw_client::{RawConnection, RawSubOptions, DELIVERY_WAIT};

/// The `stan-broker` binary on a file store of its own, with what it takes to start it there again.
struct BrokerProcess {
    /// Declared first, so it is dropped (killed) before its store directory is removed.
    process: Option<Child>,
    nats_url: String,
    cluster_id: String,
    dir: TempDir,
}

impl BrokerProcess {
    /// Starts the binary on a fresh store and cluster id named after `name`; `None` (and a skip
    /// line) when the suite targets an external server, which we cannot kill.
    async fn start_new(name: &str) -> anyhow::Result<Option<BrokerProcess>> {
        let reason = "needs to kill and restart the broker process";
        let Some(nats_url) = local_nats_url(reason).await? else {
            return Ok(None);
        };
        let mut broker = BrokerProcess {
            process: None,
            nats_url,
            cluster_id: unique(name),
            dir: tempfile::tempdir().context("Failed to create a store directory")?,
        };
        broker.start().await?;
        Ok(Some(broker))
    }

    /// Starts the binary on this store and waits until it accepts a connection.
    async fn start(&mut self) -> anyhow::Result<()> {
        let process = Command::new(env!("CARGO_BIN_EXE_stan-broker"))
            .args([
                "--cluster_id",
                &self.cluster_id,
                "--nats_server",
                &self.nats_url,
            ])
            .args(["--store", "file", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("Failed to start stan-broker")?;
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.connect("probe").await {
                Ok(probe) => {
                    probe.close().await?;
                    return Ok(());
                }
                Err(error) if Instant::now() >= deadline => {
                    return Err(error.context("stan-broker did not answer within 10 s"))
                }
                Err(_) => sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// A live raw connection to this broker, with a client id named after `name`.
    async fn connect(&self, name: &str) -> anyhow::Result<RawConnection> {
        RawConnection::connect(&self.nats_url, &self.cluster_id, &unique(name)).await
    }

    /// The running process; fails if it was already killed or stopped.
    fn running(&mut self) -> anyhow::Result<Child> {
        self.process.take().context("stan-broker is not running")
    }

    /// Kills the process with SIGKILL.
    async fn kill(&mut self) -> anyhow::Result<()> {
        self.running()?
            .kill()
            .await
            .context("Failed to kill stan-broker")
    }

    /// Sends SIGTERM and returns how the process exited.
    async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        let mut process = self.running()?;
        let pid = process.id().context("stan-broker already exited")?;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .context("Failed to run kill")?;
        anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
        timeout(Duration::from_secs(5), process.wait())
            .await
            .context("stan-broker did not exit within 5 s of SIGTERM")?
            .context("Failed to wait for stan-broker")
    }
}

#[tokio::test]
async fn acknowledged_messages_survive_a_broker_killed_with_sigkill() -> anyhow::Result<()> {
    // Arrange
    let Some(mut broker) = BrokerProcess::start_new("sigkill").await? else {
        return Ok(());
    };
    let channel = unique("conf.sigkill");
    let publisher = broker.connect("pub").await?;
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
    broker.start().await?;

    // Assert
    let reader = broker.connect("reader").await?;
    let mut subscription = reader.subscribe(&channel, RawSubOptions::first()).await?;
    let stored = subscription.until_quiet(Duration::from_millis(500)).await?;
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
    let Some(mut broker) = BrokerProcess::start_new("sigterm").await? else {
        return Ok(());
    };
    let channel = unique("conf.sigterm");
    let client = broker.connect("durable").await?;
    let options = RawSubOptions::first().durable("d").max_in_flight(1);
    let mut subscription = client.subscribe(&channel, options.clone()).await?;
    let publisher = broker.connect("pub").await?;
    publish_all(&publisher, &channel, &["1", "2", "3"]).await?;
    subscription.ack_all_but_last(&[1, 2, 3]).await?;

    // Act
    let status = broker.terminate().await?;
    broker.start().await?;
    subscription.close(&client).await?;
    let mut resumed = client.subscribe(&channel, options).await?;
    let deliveries = resumed
        .acked_until_quiet(DELIVERY_WAIT, Duration::from_millis(500))
        .await?;

    // Assert
    assert!(status.success(), "stan-broker exited with {status}");
    assert_eq!(
        deliveries,
        vec![(3, true)],
        "(sequence, redelivered): only the unacked message comes back; 1 and 2 stay acked"
    );
    Ok(())
}
