//! The broker driven by a client we did not write: the official Node.js client, node-nats-streaming 0.3.x,
//! through `testkit/interop/node/interop.mjs` (connect, publish, start positions, redelivery, max in
//! flight, durables, durable queue groups, duplicate client ids, unsubscribe). `scripts/interop.sh` installs
//! node and the pinned packages; without them this test fails and says so.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::Command;
use tokio::time::timeout;

use crate::helpers::{unique, TestCluster};

/// The script's own waits are 5 s each and a full run takes about 15 s; this only stops a hang.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(120);
const INSTALL_HINT: &str = "run scripts/interop.sh (installs nodejs/npm with apt-get and runs npm ci in testkit/interop/node)";

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/node")
}

/// Fails with the install hint unless node runs and the pinned client is installed.
async fn check_node_setup(dir: &Path) -> anyhow::Result<()> {
    let version = Command::new("node")
        .arg("--version")
        .output()
        .await
        .with_context(|| format!("node is not installed: {INSTALL_HINT}"))?;
    if !version.status.success() {
        bail!("`node --version` failed: {INSTALL_HINT}");
    }
    let client = dir.join("node_modules/node-nats-streaming/package.json");
    if !client.is_file() {
        bail!("{} is missing: {INSTALL_HINT}", client.display());
    }
    Ok(())
}

fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn official_node_client_passes_every_interop_check() -> anyhow::Result<()> {
    // Arrange
    let dir = interop_dir();
    check_node_setup(&dir).await?;
    let cluster = TestCluster::start().await?;
    let mut command = Command::new("node");
    command
        .arg("interop.mjs")
        .current_dir(&dir)
        .env("STAN_URL", &cluster.nats_url)
        .env("STAN_CLUSTER_ID", &cluster.cluster_id)
        .env("INTEROP_PREFIX", unique("node"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);

    // Act
    let child = command.spawn().context("Failed to start node")?;
    let output = timeout(SCRIPT_DEADLINE, child.wait_with_output())
        .await
        .with_context(|| format!("interop.mjs did not finish within {SCRIPT_DEADLINE:?}"))?
        .context("Failed to wait for interop.mjs")?;

    // Assert
    let report = describe(&output);
    assert!(output.status.success(), "interop.mjs failed: {report}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("all 11 checks passed"),
        "interop.mjs exited 0 without running every check: {report}"
    );
    Ok(())
}
