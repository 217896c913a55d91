//! A ratsio subscriber in a separate process, so tests can kill a client with SIGKILL.
//!
//! The test binary re-runs itself with a filter that selects only
//! [`ratsio_subscriber_child_process_runs_only_when_spawned_by_a_test`] and passes the
//! subscription in `CONFORMANCE_CHILD_*` variables. The child reports on stdout, one event per
//! line: `CHILD READY`, `CHILD RECEIVED <seq> <redelivered>`, `CHILD ACKED <seq>`.

use std::env;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use ratsio::{StanClient, StanOptions, StartPosition};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::timeout;

use crate::helpers::{SubOptions, TestCluster};
use crate::raw_client::REQUEST_TIMEOUT;

const ENV_PREFIX: &str = "CONFORMANCE_CHILD_";
const CHILD_TEST_NAME: &str =
    "child_process::ratsio_subscriber_child_process_runs_only_when_spawned_by_a_test";

/// What the child subscribes to and which messages it acks.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    pub client_id: String,
    pub channel: String,
    /// Its durable name, queue group, max in flight and ack wait; the child always starts with
    /// new messages only and acks by hand, so other start positions are refused.
    pub options: SubOptions,
    /// The child acks every message whose sequence is below this (0: acks nothing).
    pub ack_below: u64,
}

/// One line of the child's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChildEvent {
    Received { sequence: u64, redelivered: bool },
    Acked { sequence: u64 },
}

/// A running child subscriber.
pub struct ChildClient {
    process: Child,
    events: Lines<BufReader<ChildStdout>>,
}

impl ChildClient {
    /// Starts the child and waits until its subscription is registered.
    pub async fn spawn(cluster: &TestCluster, spec: &ChildSpec) -> anyhow::Result<ChildClient> {
        let options = &spec.options;
        ensure!(
            options.start_position == StartPosition::NewOnly && options.manual_acks,
            "The child client only subscribes to new messages with manual acks"
        );
        let executable = env::current_exe().context("Failed to find the test executable")?;
        let mut command = Command::new(executable);
        command
            .args([
                CHILD_TEST_NAME,
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(format!("{ENV_PREFIX}NATS_URL"), &cluster.nats_url)
            .env(format!("{ENV_PREFIX}CLUSTER_ID"), &cluster.cluster_id)
            .env(
                format!("{ENV_PREFIX}FLUSH_SUBJECT"),
                cluster.flush_subject(),
            )
            .env(format!("{ENV_PREFIX}CLIENT_ID"), &spec.client_id)
            .env(format!("{ENV_PREFIX}CHANNEL"), &spec.channel)
            .env(
                format!("{ENV_PREFIX}DURABLE"),
                options.durable_name.clone().unwrap_or_default(),
            )
            .env(
                format!("{ENV_PREFIX}QUEUE"),
                options.queue_group.clone().unwrap_or_default(),
            )
            .env(
                format!("{ENV_PREFIX}MAX_IN_FLIGHT"),
                options.max_in_flight.to_string(),
            )
            .env(
                format!("{ENV_PREFIX}ACK_WAIT_SECS"),
                options.ack_wait_secs.to_string(),
            )
            .env(format!("{ENV_PREFIX}ACK_BELOW"), spec.ack_below.to_string())
            // The child exits when this pipe closes, so it cannot outlive a crashed parent.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut process = command
            .spawn()
            .context("Failed to spawn the child client")?;
        let stdout = process
            .stdout
            .take()
            .context("The child client has no stdout")?;
        let mut child = ChildClient {
            process,
            events: BufReader::new(stdout).lines(),
        };
        child.wait_for_line("CHILD READY").await?;
        Ok(child)
    }

    async fn next_line_within(&mut self, wait: Duration) -> anyhow::Result<String> {
        loop {
            let line = timeout(wait, self.events.next_line())
                .await
                .context("The child client reported nothing in time")?
                .context("Failed to read the child client's output")?
                .context("The child client exited")?;
            // libtest prints "test <name> ... " without a newline before the test runs, so the
            // child's first report shares a line with it.
            if let Some(start) = line.find("CHILD ") {
                return Ok(line[start..].to_string());
            }
        }
    }

    async fn wait_for_line(&mut self, expected: &str) -> anyhow::Result<()> {
        let line = self.next_line_within(Duration::from_secs(20)).await?;
        if line != expected {
            bail!("The child client said {line:?} instead of {expected:?}");
        }
        Ok(())
    }

    /// The next event the child reports within `wait`.
    pub async fn next_event_within(&mut self, wait: Duration) -> anyhow::Result<ChildEvent> {
        let line = self.next_line_within(wait).await?;
        parse_event(&line).with_context(|| format!("Unexpected child client line {line:?}"))
    }

    /// The sequence of the next message the child receives (and, acking nothing, holds) within 2 s.
    pub async fn next_held_sequence(&mut self) -> anyhow::Result<u64> {
        match self.next_event_within(Duration::from_secs(2)).await? {
            ChildEvent::Received { sequence, .. } => Ok(sequence),
            ChildEvent::Acked { .. } => bail!("The child acked without being asked to"),
        }
    }

    /// Kills the child with SIGKILL and reaps it.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.process
            .kill()
            .await
            .context("Failed to kill the child client")
    }
}

fn parse_event(line: &str) -> Option<ChildEvent> {
    let mut words = line.split_whitespace().skip(1);
    match (words.next()?, words.next()?.parse().ok()?, words.next()) {
        ("RECEIVED", sequence, Some(redelivered)) => Some(ChildEvent::Received {
            sequence,
            redelivered: redelivered.parse().ok()?,
        }),
        ("ACKED", sequence, None) => Some(ChildEvent::Acked { sequence }),
        _ => None,
    }
}

/// The child side. A no-op in a normal test run.
#[test]
fn ratsio_subscriber_child_process_runs_only_when_spawned_by_a_test() -> anyhow::Result<()> {
    let Ok(nats_url) = env::var(format!("{ENV_PREFIX}NATS_URL")) else {
        return Ok(());
    };
    let runtime = tokio::runtime::Runtime::new().context("Failed to start a runtime")?;
    runtime.block_on(run_child(nats_url))
}

fn child_var(name: &str) -> anyhow::Result<String> {
    env::var(format!("{ENV_PREFIX}{name}")).with_context(|| format!("{ENV_PREFIX}{name} is unset"))
}

fn non_empty(value: String) -> Option<String> {
    Some(value).filter(|value| !value.is_empty())
}

async fn run_child(nats_url: String) -> anyhow::Result<()> {
    tokio::spawn(exit_when_parent_goes_away());
    let cluster_id = child_var("CLUSTER_ID")?;
    let flush_subject = child_var("FLUSH_SUBJECT")?;
    let client_id = child_var("CLIENT_ID")?;
    let channel = child_var("CHANNEL")?;
    let durable = non_empty(child_var("DURABLE")?);
    let queue = non_empty(child_var("QUEUE")?);
    let max_in_flight: i32 = child_var("MAX_IN_FLIGHT")?.parse()?;
    let ack_wait_secs: i32 = child_var("ACK_WAIT_SECS")?.parse()?;
    let ack_below: u64 = child_var("ACK_BELOW")?.parse()?;

    let options = StanOptions::with_options(nats_url.as_str(), cluster_id.as_str(), &client_id);
    let client = timeout(REQUEST_TIMEOUT, StanClient::from_options(options))
        .await
        .context("ratsio did not connect in time")??;
    let subscribing = client.subscribe_with_all(
        channel,
        queue,
        durable,
        max_in_flight,
        ack_wait_secs,
        StartPosition::NewOnly,
        0,
        None,
        true,
    );
    let (_sid, mut messages) = timeout(REQUEST_TIMEOUT, subscribing)
        .await
        .context("ratsio did not subscribe in time")??;
    flush(&client, &flush_subject).await?;
    println!("CHILD READY");

    while let Some(message) = futures::StreamExt::next(&mut messages).await {
        let sequence = message.sequence;
        println!("CHILD RECEIVED {sequence} {}", message.redelivered);
        if sequence < ack_below {
            client.acknowledge(message).await?;
            // Make sure the ack reached the NATS server before reporting it.
            flush(&client, &flush_subject).await?;
            println!("CHILD ACKED {sequence}");
        }
    }
    Ok(())
}

async fn flush(client: &StanClient, flush_subject: &str) -> anyhow::Result<()> {
    timeout(
        REQUEST_TIMEOUT,
        client.nats_client.request(flush_subject, b""),
    )
    .await
    .context("The flush round trip timed out")??;
    Ok(())
}

/// Exits the child process when its stdin (a pipe from the parent) reaches end of file.
async fn exit_when_parent_goes_away() {
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 64];
    while let Ok(read) = stdin.read(&mut buffer).await {
        if read == 0 {
            break;
        }
    }
    std::process::exit(0);
}
