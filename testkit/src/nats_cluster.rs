//! A real nats-server cluster with JetStream on loopback, for tests of what happens when a node dies.
//!
//! A single server (see [`crate::nats_server`]) cannot show what a replicated stream does when its
//! leader goes away: only the servers' own RAFT groups elect a new leader, so the tests that depend on
//! failover run against real `nats-server` processes. Each [`NatsCluster`] has its own cluster name, free
//! ports and temporary store dirs, so tests may start clusters in parallel; every node runs under a
//! small shell wrapper that SIGKILLs it when the test process ends, however it ends.
//!
//! # How a test uses it
//!
//! [`NatsCluster::start`] returns once every node accepts connections, the JetStream meta group has
//! a leader that answers through each node, and that leader can place a stream on every node (so a
//! test may create a stream with one replica per node at once). [`NatsCluster::client`] connects to all nodes, so the
//! client moves to another node when the one it uses is killed. [`stream_leader`] and
//! [`consumer_leader`] name the node that leads a stream or consumer, [`NatsCluster::index_of`] turns
//! that name into the index that [`NatsCluster::kill`] and [`NatsCluster::restart`] take, and
//! [`wait_for_stream_leader_change`] (or the general [`wait_until`]) waits for the election.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use anyhow::Context;
//! use async_nats::jetstream::{self, stream};
//! use stan_testkit::nats_cluster::{stream_leader, wait_for_stream_leader_change, NatsCluster};
//!
//! # async fn leader_dies() -> anyhow::Result<()> {
//! let mut cluster = NatsCluster::start(3).await?;
//! let client = cluster.client().await?;
//! let js = jetstream::new(client.clone());
//! js.create_stream(stream::Config {
//!     name: "ORDERS".into(),
//!     subjects: vec!["orders.>".into()],
//!     num_replicas: 3,
//!     ..Default::default()
//! })
//! .await?;
//!
//! let old_leader = stream_leader(&client, "ORDERS").await?;
//! cluster.kill(cluster.index_of(&old_leader).context("leader is not in the cluster")?)?;
//! let new_leader =
//!     wait_for_stream_leader_change(&client, "ORDERS", &old_leader, Duration::from_secs(20)).await?;
//! assert_ne!(new_leader, old_leader);
//! # Ok(())
//! # }
//! ```
//!
//! Dropping the cluster kills every node and removes the store dirs. If the test process itself is
//! killed, the nodes still die; only the temp dir (`testkit-nats-cluster-*`) stays behind.

use std::fs::{self, File};
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use async_nats::jetstream;
use futures::TryStreamExt;
use tempfile::TempDir;
use tokio::time::{sleep, Instant};

use crate::nats_server::{answers_like_nats, find_nats_server};

/// How long all nodes together may take to accept connections and elect a JetStream meta leader.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// How long a restarted node may take to accept connections and see the meta leader again.
const RESTART_DEADLINE: Duration = Duration::from_secs(30);
/// How long one JetStream API request of the harness may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The same while polling: a stream without a leader does not answer at all, so a short timeout
/// lets a wait see the new leader soon after it is elected.
const POLL_REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// How often [`wait_until`] tries its condition again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The most replicas a JetStream stream may have.
const MAX_REPLICAS: usize = 5;
/// The name of the stream that shows every node can hold a replica.
const PLACEMENT_PROBE: &str = "TESTKIT_PLACEMENT_PROBE";
/// How many lines of a node's log an error about that node quotes.
const LOG_TAIL_LINES: usize = 20;

/// Makes cluster names unique among the clusters of this process.
static CLUSTER_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A cluster of nats-server processes with JetStream, on 127.0.0.1. Dropping it kills every node.
pub struct NatsCluster {
    binary: PathBuf,
    cluster_name: String,
    nodes: Vec<Node>,
    /// Holds the nodes' store dirs and logs; removed when dropped, after `Drop` has killed the nodes.
    dir: TempDir,
}

/// One server of the cluster: what it needs to be started again on the same ports and store.
struct Node {
    name: String,
    client_port: u16,
    route_port: u16,
    store_dir: PathBuf,
    log_file: PathBuf,
    process: Option<Process>,
}

/// A nats-server under a shell wrapper that SIGKILLs it once our end of the wrapper's stdin pipe
/// closes, and exits when it exits. The kernel closes that pipe however this process ends, so no
/// node outlives the tests (the trick of `nats_server.rs`), and the wrapper's exit shows that the
/// server died, so a node that cannot start fails the wait at once.
struct Process {
    wrapper: Child,
    lifeline: ChildStdin,
}

impl NatsCluster {
    /// Spawns `nodes` nats-servers with JetStream, routed to each other, and returns once each
    /// accepts connections, the JetStream meta leader answers through each, and it can place a
    /// stream on every node. Fails, naming the node and quoting its log, if that takes longer than
    /// 30 s; fails at once if no nats-server binary exists or `nodes` is below 2.
    pub async fn start(nodes: usize) -> anyhow::Result<NatsCluster> {
        // nats-server 2.9 never elects a meta leader in a cluster of one ("Waiting for routing to
        // be established..."); a single server is what `nats_server` provides.
        if nodes < 2 {
            bail!("A nats-server cluster needs at least 2 nodes, not {nodes}");
        }
        let binary = find_nats_server()?;
        let started = Instant::now();
        // A free port may be taken by someone else between choosing it and the server binding it:
        // that shows in the node's log, and a second attempt with new ports is then worth it.
        let mut retried = false;
        loop {
            let mut cluster = NatsCluster::spawn(&binary, nodes)?;
            match cluster.wait_until_all_ready(STARTUP_DEADLINE).await {
                Ok(()) => {
                    tracing::info!(
                        cluster = %cluster.cluster_name,
                        nodes,
                        elapsed = ?started.elapsed(),
                        "Started a nats-server cluster."
                    );
                    return Ok(cluster);
                }
                Err(error) if !retried && cluster.a_port_was_taken() => {
                    tracing::warn!(%error, "A port of the nats-server cluster was taken; retrying.");
                    retried = true;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// A client connected to any node of the cluster; it reconnects to another node when its
    /// node is killed.
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        let urls = self.urls();
        async_nats::ConnectOptions::new()
            .connection_timeout(REQUEST_TIMEOUT)
            .connect(urls.as_slice())
            .await
            .with_context(|| format!("Failed to connect to the nats-server cluster at {urls:?}"))
    }

    /// The client URLs of all nodes, in index order (whether running or not).
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// The client URL of node `i`, `nats://127.0.0.1:<port>`. Panics if there is no node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// The server name of node `i`, as stream and consumer cluster info report leaders.
    /// Panics if there is no node `i`.
    pub fn server_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the node called `server_name`, if it belongs to this cluster.
    pub fn index_of(&self, server_name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == server_name)
    }

    /// SIGKILLs node `i` and waits until the process is reaped. Fails if it is not running.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let node = self.node_mut(i)?;
        let process = node
            .process
            .take()
            .with_context(|| format!("Cannot kill node {i} ({}): it is not running", node.name))?;
        process
            .kill()
            .with_context(|| format!("Failed to kill node {i} ({})", node.name))
    }

    /// Starts killed node `i` again on the same ports and store dir, and returns once it accepts
    /// connections and the meta leader answers through it. Fails if it is running or does not come
    /// back in 30 s.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let binary = self.binary.clone();
        let cluster_name = self.cluster_name.clone();
        let routes = self.routes();
        let node = self.node_mut(i)?;
        if node.process.is_some() {
            bail!("Cannot restart node {i} ({}): it is running", node.name);
        }
        node.process = Some(Process::spawn(
            &binary,
            &node.args(&cluster_name, &routes),
            &node.log_file,
        )?);
        let deadline = Instant::now() + RESTART_DEADLINE;
        self.wait_until_ready(i, deadline).await
    }

    /// Chooses ports and store dirs and spawns every node, without waiting for any.
    fn spawn(binary: &Path, count: usize) -> anyhow::Result<NatsCluster> {
        let dir = tempfile::Builder::new()
            .prefix("testkit-nats-cluster-")
            .tempdir()
            .context("Failed to create a temp dir for the nats-server cluster")?;
        let cluster_name = format!(
            "testkit-{}-{}-{:08x}",
            std::process::id(),
            CLUSTER_COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let ports = free_ports(2 * count)?;
        let mut nodes = Vec::with_capacity(count);
        for (i, pair) in ports.chunks_exact(2).enumerate() {
            let store_dir = dir.path().join(format!("n{i}"));
            fs::create_dir(&store_dir)
                .with_context(|| format!("Failed to create {}", store_dir.display()))?;
            nodes.push(Node {
                name: format!("{cluster_name}-n{i}"),
                client_port: pair[0],
                route_port: pair[1],
                store_dir,
                log_file: dir.path().join(format!("n{i}.log")),
                process: None,
            });
        }
        let mut cluster = NatsCluster {
            binary: binary.to_path_buf(),
            cluster_name,
            nodes,
            dir,
        };
        let routes = cluster.routes();
        for node in &mut cluster.nodes {
            let args = node.args(&cluster.cluster_name, &routes);
            node.process = Some(Process::spawn(binary, &args, &node.log_file)?);
        }
        Ok(cluster)
    }

    /// The `--routes` value: every node's route URL (a server ignores the route to itself).
    fn routes(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("nats://127.0.0.1:{}", node.route_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn node_mut(&mut self, i: usize) -> anyhow::Result<&mut Node> {
        let count = self.nodes.len();
        self.nodes
            .get_mut(i)
            .with_context(|| format!("There is no node {i} in a cluster of {count}"))
    }

    async fn wait_until_all_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        for i in 0..self.nodes.len() {
            self.wait_until_ready(i, deadline).await?;
        }
        self.wait_until_streams_can_be_placed(deadline).await
    }

    /// Waits until the meta leader can place a stream on every node (on 5 where there are more,
    /// the most JetStream replicates to). A meta leader is elected by a quorum, before it has
    /// heard from every node, and meanwhile creating a stream with as many replicas as nodes fails
    /// with "no suitable peers for placement"; so a probe stream is created and deleted until that
    /// works.
    async fn wait_until_streams_can_be_placed(&self, deadline: Instant) -> anyhow::Result<()> {
        let replicas = self.nodes.len().min(MAX_REPLICAS);
        let client = self.client().await?;
        let js = context(&client, REQUEST_TIMEOUT);
        let probe = jetstream::stream::Config {
            name: PLACEMENT_PROBE.to_string(),
            subjects: vec![format!("_testkit.{PLACEMENT_PROBE}")],
            num_replicas: replicas,
            storage: jetstream::stream::StorageType::Memory,
            ..Default::default()
        };
        wait_until(
            deadline.saturating_duration_since(Instant::now()),
            &format!("a stream with {replicas} replicas can be created"),
            || async {
                js.create_stream(probe.clone()).await?;
                js.delete_stream(PLACEMENT_PROBE).await?;
                Ok(())
            },
        )
        .await
        .with_context(|| {
            format!(
                "The JetStream meta leader of nats-server cluster {} does not know all nodes",
                self.cluster_name
            )
        })
    }

    /// Waits until node `i` greets like NATS and then the JetStream meta leader answers a request
    /// sent through node `i`; the error names the step that did not happen and quotes the node's log.
    ///
    /// The request is `$JS.API.STREAM.NAMES`, which in a cluster only the meta leader answers (any
    /// server without a leader answers 503). `$JS.API.INFO` would do as well, but async-nats 0.51
    /// cannot parse nats-server 2.9's answer to it (no `reserved_memory`).
    async fn wait_until_ready(&mut self, i: usize, deadline: Instant) -> anyhow::Result<()> {
        let url = self.url(i);
        let describe = |node: &Node, what: &str| {
            format!(
                "Node {i} ({}, {url}) of nats-server cluster {} {what}; its log ends with:\n{}",
                node.name,
                self.cluster_name,
                log_tail(&node.log_file)
            )
        };
        let node = &mut self.nodes[i];
        let addr = format!("127.0.0.1:{}", node.client_port);
        let client = loop {
            let exited = match &mut node.process {
                Some(process) => process.exit_status()?,
                None => bail!(describe(node, "is not running")),
            };
            if let Some(status) = exited {
                node.process = None;
                bail!(describe(node, &format!("exited ({status}) while starting")));
            }
            let error = if answers_like_nats(&addr).await {
                match async_nats::ConnectOptions::new()
                    .connection_timeout(REQUEST_TIMEOUT)
                    .connect(url.as_str())
                    .await
                {
                    Ok(client) => break client,
                    Err(error) => error.to_string(),
                }
            } else {
                format!("nothing greets like NATS on {addr}")
            };
            if Instant::now() + POLL_INTERVAL > deadline {
                bail!(describe(
                    node,
                    &format!("did not accept connections in time: {error}")
                ));
            }
            sleep(POLL_INTERVAL).await;
        };
        let node = &self.nodes[i];
        let js = context(&client, POLL_REQUEST_TIMEOUT);
        wait_until(
            deadline.saturating_duration_since(Instant::now()),
            "the JetStream meta leader answers $JS.API.STREAM.NAMES",
            || async {
                js.stream_names().try_next().await?;
                Ok(())
            },
        )
        .await
        .with_context(|| describe(node, "did not see a JetStream meta leader"))?;
        Ok(())
    }

    /// True if any node's log says it could not bind its port.
    fn a_port_was_taken(&self) -> bool {
        self.nodes.iter().any(|node| {
            fs::read_to_string(&node.log_file)
                .is_ok_and(|log| log.contains("address already in use"))
        })
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(process) = node.process.take() {
                if let Err(error) = process.kill() {
                    tracing::warn!(node = %node.name, ?error, "Failed to kill a nats-server node.");
                }
            }
        }
        tracing::debug!(dir = %self.dir.path().display(), "Removing the nats-server cluster's files.");
    }
}

impl Node {
    fn args(&self, cluster_name: &str, routes: &str) -> Vec<String> {
        let store_dir = self.store_dir.display().to_string();
        [
            "-js",
            "--server_name",
            &self.name,
            "-sd",
            &store_dir,
            "-a",
            "127.0.0.1",
            "-p",
            &self.client_port.to_string(),
            "--cluster_name",
            cluster_name,
            "--cluster",
            &format!("nats://127.0.0.1:{}", self.route_port),
            "--routes",
            routes,
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect()
    }
}

impl Process {
    /// Spawns `binary args...` under the wrapper, its output appended to `log_file`.
    fn spawn(binary: &Path, args: &[String], log_file: &Path) -> anyhow::Result<Process> {
        // The server runs in the background; a background subshell reads the pipe (through fd 3:
        // background jobs get /dev/null as stdin) and kills the server at end of file; the wrapper
        // waits for the server, stops that reader and exits with the server's status.
        let script = r#"
            "$0" "$@" & server=$!
            exec 3<&0
            (read -r _ <&3; kill -9 "$server") & reader=$!
            wait "$server"; status=$?
            kill "$reader" 2>/dev/null
            exit "$status"
        "#;
        let log = File::options()
            .create(true)
            .append(true)
            .open(log_file)
            .with_context(|| format!("Failed to open {}", log_file.display()))?;
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(binary)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("Failed to spawn {}", binary.display()))?;
        let lifeline = wrapper
            .stdin
            .take()
            .context("The nats-server wrapper has no stdin pipe")?;
        Ok(Process { wrapper, lifeline })
    }

    /// How the server ended, if it has.
    fn exit_status(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        self.wrapper
            .try_wait()
            .context("Failed to check on the nats-server wrapper")
    }

    /// Closes the lifeline, so the wrapper SIGKILLs the server and reaps it, then reaps the wrapper.
    fn kill(self) -> anyhow::Result<()> {
        let Process {
            mut wrapper,
            lifeline,
        } = self;
        drop(lifeline);
        wrapper
            .wait()
            .context("Failed to wait for the nats-server wrapper")?;
        Ok(())
    }
}

/// The server name of the node leading `stream`, from the stream info's cluster info.
pub async fn stream_leader(client: &async_nats::Client, stream: &str) -> anyhow::Result<String> {
    stream_leader_within(client, stream, REQUEST_TIMEOUT).await
}

async fn stream_leader_within(
    client: &async_nats::Client,
    stream: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let info = context(client, timeout)
        .get_stream(stream)
        .await
        .with_context(|| format!("Failed to get the info of stream {stream}"))?
        .cached_info()
        .clone();
    info.cluster
        .and_then(|cluster| cluster.leader)
        .with_context(|| format!("Stream {stream} reports no leader"))
}

/// The server name of the node leading `consumer` of `stream`, from the consumer info's cluster info.
pub async fn consumer_leader(
    client: &async_nats::Client,
    stream: &str,
    consumer: &str,
) -> anyhow::Result<String> {
    let info = context(client, REQUEST_TIMEOUT)
        .get_stream_no_info(stream)
        .await
        .with_context(|| format!("Failed to look up stream {stream}"))?
        .consumer_info(consumer)
        .await
        .with_context(|| {
            format!("Failed to get the info of consumer {consumer} of stream {stream}")
        })?;
    info.cluster
        .and_then(|cluster| cluster.leader)
        .with_context(|| format!("Consumer {consumer} of stream {stream} reports no leader"))
}

/// Waits until `stream` reports a leader other than `old_leader`, and returns it. While no node
/// leads the stream its info request fails; that is retried like any other failure.
pub async fn wait_for_stream_leader_change(
    client: &async_nats::Client,
    stream: &str,
    old_leader: &str,
    within: Duration,
) -> anyhow::Result<String> {
    wait_until(
        within,
        &format!("stream {stream} has a leader other than {old_leader}"),
        || async {
            let leader = stream_leader_within(client, stream, POLL_REQUEST_TIMEOUT).await?;
            if leader == old_leader {
                bail!("{old_leader} still leads stream {stream}");
            }
            Ok(leader)
        },
    )
    .await
}

/// Tries `attempt` every 50 ms until it succeeds, and returns its value. After `within` it fails
/// with an error saying `what` did not happen, caused by the last attempt's error.
pub async fn wait_until<T, F, Fut>(
    within: Duration,
    what: &str,
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if Instant::now() + POLL_INTERVAL > deadline {
            return Err(error.context(format!("Gave up waiting after {within:?} until {what}")));
        }
        sleep(POLL_INTERVAL).await;
    }
}

/// A JetStream context whose requests give up after `timeout`.
fn context(client: &async_nats::Client, timeout: Duration) -> jetstream::Context {
    let mut js = jetstream::new(client.clone());
    js.set_timeout(timeout);
    js
}

/// `count` distinct ports that were free a moment ago on 127.0.0.1. The probe sockets stay open
/// until all are chosen, so the OS cannot hand out the same port twice.
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))))
        .collect::<Result<Vec<_>, _>>()
        .context("Failed to bind probe sockets to find free ports")?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

/// The last lines of a node's log, or why they cannot be read.
fn log_tail(log_file: &Path) -> String {
    match fs::read_to_string(log_file) {
        Ok(log) => {
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", log_file.display()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::ops::RangeInclusive;

    use async_nats::jetstream::message::PublishMessage;
    use async_nats::jetstream::{consumer, stream};

    use super::*;

    /// How long a test lets the survivors take to elect a new stream leader.
    const FAILOVER_DEADLINE: Duration = Duration::from_secs(20);

    fn replicated_stream(name: &str) -> stream::Config {
        stream::Config {
            name: name.to_string(),
            subjects: vec![format!("{name}.>")],
            num_replicas: 3,
            ..Default::default()
        }
    }

    /// Publishes `message <n>` to `<stream>.<n>` for each `n`, returning the last ack's sequence.
    /// A publish sent just as the client's node dies is lost without an answer, so each is tried
    /// again until acked; its message id makes the stream store it once however often it is sent.
    async fn publish(
        js: &jetstream::Context,
        stream: &str,
        numbers: RangeInclusive<u64>,
    ) -> anyhow::Result<u64> {
        let mut sequence = 0;
        for n in numbers {
            let what = format!("message {n} to stream {stream} is acked");
            sequence = wait_until(FAILOVER_DEADLINE, &what, || async {
                let message = PublishMessage::build()
                    .message_id(format!("{stream}-{n}"))
                    .payload(format!("message {n}").into());
                let ack = js
                    .send_publish(format!("{stream}.{n}"), message)
                    .await?
                    .await?;
                Ok(ack.sequence)
            })
            .await?;
        }
        Ok(sequence)
    }

    #[tokio::test]
    async fn start_returns_once_every_node_answers_jetstream() -> anyhow::Result<()> {
        // Act
        let started = Instant::now();
        let cluster = NatsCluster::start(3).await?;
        eprintln!("3-node cluster started in {:?}", started.elapsed());

        // Assert
        let urls = cluster.urls();
        assert_eq!(urls.len(), 3);
        assert_eq!(
            urls.iter().collect::<HashSet<_>>().len(),
            3,
            "ports differ: {urls:?}"
        );
        for (i, url) in urls.iter().enumerate() {
            let client = async_nats::connect(url.as_str()).await?;
            let streams: Vec<String> = context(&client, REQUEST_TIMEOUT)
                .stream_names()
                .try_collect()
                .await
                .with_context(|| format!("$JS.API.STREAM.NAMES through node {i} ({url})"))?;
            assert!(
                streams.is_empty(),
                "a new cluster has no streams: {streams:?}"
            );
            assert_eq!(cluster.index_of(cluster.server_name(i)), Some(i));
        }
        assert_eq!(cluster.index_of("not-a-node"), None);
        Ok(())
    }

    #[tokio::test]
    async fn killing_the_stream_leader_elects_another_node_that_keeps_the_messages(
    ) -> anyhow::Result<()> {
        // Arrange
        let mut cluster = NatsCluster::start(3).await?;
        let client = cluster.client().await?;
        let js = context(&client, REQUEST_TIMEOUT);
        js.create_stream(replicated_stream("ORDERS")).await?;
        publish(&js, "ORDERS", 1..=10).await?;
        let old_leader = stream_leader(&client, "ORDERS").await?;
        let old_index = cluster
            .index_of(&old_leader)
            .with_context(|| format!("leader {old_leader} is not a node of the cluster"))?;

        // Act
        cluster.kill(old_index)?;
        let killed = Instant::now();
        let new_leader =
            wait_for_stream_leader_change(&client, "ORDERS", &old_leader, FAILOVER_DEADLINE)
                .await?;
        eprintln!(
            "stream leader moved from {old_leader} to {new_leader} in {:?}",
            killed.elapsed()
        );

        // Assert
        let new_index = cluster
            .index_of(&new_leader)
            .with_context(|| format!("new leader {new_leader} is not a node of the cluster"))?;
        assert_ne!(new_index, old_index, "the killed node cannot lead");
        let mut stream = js.get_stream("ORDERS").await?;
        assert_eq!(stream.info().await?.state.messages, 10, "messages kept");
        for sequence in 1..=10 {
            let message = stream.get_raw_message(sequence).await?;
            assert_eq!(message.payload, format!("message {sequence}").as_bytes());
        }
        let sequence = publish(&js, "ORDERS", 11..=11).await?;
        assert_eq!(sequence, 11, "the stream still takes messages");
        Ok(())
    }

    #[tokio::test]
    async fn consumer_leader_names_a_node_of_the_cluster() -> anyhow::Result<()> {
        // Arrange
        let cluster = NatsCluster::start(3).await?;
        let client = cluster.client().await?;
        let js = context(&client, REQUEST_TIMEOUT);
        let stream = js.create_stream(replicated_stream("PAYMENTS")).await?;
        stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some("billing".to_string()),
                ..Default::default()
            })
            .await?;

        // Act
        let leader = consumer_leader(&client, "PAYMENTS", "billing").await?;

        // Assert
        assert!(
            cluster.index_of(&leader).is_some(),
            "{leader} is not one of {:?}",
            (0..3).map(|i| cluster.server_name(i)).collect::<Vec<_>>()
        );
        assert!(
            consumer_leader(&client, "PAYMENTS", "nobody")
                .await
                .is_err(),
            "a missing consumer has no leader"
        );
        Ok(())
    }

    #[tokio::test]
    async fn restarted_node_catches_up_on_its_old_port() -> anyhow::Result<()> {
        // Arrange
        let mut cluster = NatsCluster::start(3).await?;
        let client = cluster.client().await?;
        let js = context(&client, REQUEST_TIMEOUT);
        js.create_stream(replicated_stream("SHIPMENTS")).await?;
        publish(&js, "SHIPMENTS", 1..=5).await?;
        let leader = stream_leader(&client, "SHIPMENTS").await?;
        let follower = (0..3)
            .find(|&i| cluster.server_name(i) != leader)
            .context("a 3-node cluster has a follower")?;
        let follower_name = cluster.server_name(follower).to_string();
        cluster.kill(follower)?;
        assert!(
            cluster.kill(follower).is_err(),
            "a killed node cannot be killed again"
        );
        publish(&js, "SHIPMENTS", 6..=10).await?;

        // Act
        cluster.restart(follower).await?;

        // Assert
        assert!(
            cluster.restart(follower).await.is_err(),
            "a running node cannot be restarted"
        );
        assert!(answers_like_nats(cluster.url(follower).trim_start_matches("nats://")).await);
        wait_until(
            FAILOVER_DEADLINE,
            &format!("{follower_name} is a current replica"),
            || async {
                let info = js.get_stream("SHIPMENTS").await?.cached_info().clone();
                let replicas = info
                    .cluster
                    .map(|cluster| cluster.replicas)
                    .unwrap_or_default();
                match replicas.iter().find(|peer| peer.name == follower_name) {
                    Some(peer) if peer.current && !peer.offline => Ok(()),
                    _ => bail!("replicas: {replicas:?}"),
                }
            },
        )
        .await?;
        let mut stream = js.get_stream("SHIPMENTS").await?;
        assert_eq!(stream.info().await?.state.messages, 10);
        Ok(())
    }

    #[tokio::test]
    async fn restart_fails_at_once_naming_the_node_when_its_port_is_taken() -> anyhow::Result<()> {
        // Arrange
        let mut cluster = NatsCluster::start(3).await?;
        cluster.kill(2)?;
        let url = cluster.url(2);
        let squatter = TcpListener::bind(url.trim_start_matches("nats://"))?;

        // Act
        let started = Instant::now();
        let result = cluster.restart(2).await;
        drop(squatter);

        // Assert
        let error = format!(
            "{:#}",
            result.err().context("restart succeeded on a taken port")?
        );
        assert!(error.contains(cluster.server_name(2)), "{error}");
        assert!(error.contains("exited"), "{error}");
        assert!(error.contains("address already in use"), "{error}");
        assert!(
            started.elapsed() < RESTART_DEADLINE / 2,
            "took {:?}",
            started.elapsed()
        );
        Ok(())
    }

    #[tokio::test]
    async fn start_refuses_a_cluster_of_one_node() {
        // Act
        let result = NatsCluster::start(1).await;

        // Assert
        let error = format!(
            "{:#}",
            result.err().expect("one node cannot elect a meta leader")
        );
        assert!(error.contains("at least 2 nodes"), "{error}");
    }

    #[tokio::test]
    async fn wait_until_says_what_did_not_happen_when_the_deadline_passes() {
        // Act
        let result: anyhow::Result<()> =
            wait_until(Duration::from_millis(120), "the moon is blue", || async {
                bail!("it is grey")
            })
            .await;

        // Assert
        let error = format!("{:#}", result.expect_err("the condition never holds"));
        assert!(error.contains("the moon is blue"), "{error}");
        assert!(error.contains("it is grey"), "{error}");
    }
}
