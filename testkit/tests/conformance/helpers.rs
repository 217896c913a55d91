//! The broker under test (in-process or external) and its settings, unique names, the subscription
//! options of both clients, ratsio helpers, and waiting for the broker to drop a client.

use std::env;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use ratsio::{StanClient, StanMessage, StanOptions, StartPosition};
use stan_testkit::nats_server::{ensure_nats_server, server_has_processed};
use stan_testkit::{Broker, BrokerConfig, StoreKind};
use tempfile::TempDir;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio::time::{timeout, timeout_at, Instant};

use crate::raw_client::{nats_connect, RawConnection, DELIVERY_WAIT, REQUEST_TIMEOUT};

/// A name no other test (or earlier run against a shared server) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// Fails unless `actual` is within `tolerance` of `expected`.
pub fn assert_close_to(actual: Duration, expected: Duration, tolerance: Duration, what: &str) {
    let low = expected.saturating_sub(tolerance);
    let high = expected + tolerance;
    assert!(
        actual >= low && actual <= high,
        "{what}: took {actual:?}, expected {expected:?} +/- {tolerance:?}"
    );
}

/// Broker settings that send heartbeats every `interval`, wait `timeout` for each answer and
/// remove a client after `fail_count` unanswered ones in a row.
pub fn heartbeats(
    interval: Duration,
    timeout: Duration,
    fail_count: u32,
) -> impl Fn(&mut BrokerConfig) + Send + Sync + 'static {
    move |config: &mut BrokerConfig| {
        config.hb_interval = interval;
        config.hb_timeout = timeout;
        config.hb_fail_count = fail_count;
    }
}

/// What a Ping for a connection the broker no longer knows gets.
pub const NO_LONGER_REGISTERED: &str = "client has been replaced or is no longer registered";

/// Polls Ping from `observer` for `client`'s connection until the server no longer knows it;
/// returns how long that took.
pub async fn wait_until_unregistered(
    observer: &RawConnection,
    client: &RawConnection,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if observer.ping_as(client.conn_id.clone()).await?.error == NO_LONGER_REGISTERED {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("The client was still registered after {limit:?}")
}

/// How long [`TestCluster::ratsio_collect`] collects: what ratsio misses right after subscribing
/// (see [`TestCluster::subscribe`]) comes back once its 1 s ack wait expires, and the rest of a
/// max-in-flight-1 durable follows ack by ack; the margin is for a loaded machine.
pub const MISSED_COMES_BACK: Duration = Duration::from_secs(3);

/// Broker settings a test changes from the defaults.
type Configure = dyn Fn(&mut BrokerConfig) + Send + Sync;

/// The STAN server a test talks to.
///
/// With `STAN_CONFORMANCE_URL` and `STAN_CONFORMANCE_CLUSTER_ID` set it is that external server (a real
/// nats-streaming-server, say); otherwise an in-process [`Broker`] on its own cluster id. The suite has
/// variables of its own so that a shell set up for the service (`STAN_URL`, `STAN_CLUSTER_ID`) runs it
/// in-process as usual.
pub struct TestCluster {
    pub nats_url: String,
    pub cluster_id: String,
    broker: Option<Broker>,
    configure: Option<Arc<Configure>>,
    store_dir: Option<TempDir>,
    flush_subject: String,
    flush_responder: JoinHandle<()>,
    publisher: OnceCell<RawConnection>,
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.flush_responder.abort();
    }
}

impl TestCluster {
    /// The external server if configured, else an in-process broker with default settings.
    pub async fn start() -> anyhow::Result<TestCluster> {
        if let Some(external) = external_server() {
            let (nats_url, cluster_id) = external;
            return Self::assemble(nats_url, cluster_id, None, None, None).await;
        }
        Self::start_in_process(Arc::new(|_: &mut BrokerConfig| {}), None).await
    }

    /// [`TestCluster::start`], and a channel named after `name` that is unique to this run.
    pub async fn start_on_channel(name: &str) -> anyhow::Result<(TestCluster, String)> {
        let cluster = Self::start().await?;
        let channel = cluster.channel(name);
        Ok((cluster, channel))
    }

    /// An in-process broker with test-specific settings. Returns `None` (and prints a skip line)
    /// when the suite targets an external server, which cannot be reconfigured from here.
    pub async fn start_configured(
        configure: impl Fn(&mut BrokerConfig) + Send + Sync + 'static,
    ) -> anyhow::Result<Option<TestCluster>> {
        let reason = "needs to configure the broker";
        Self::start_unless_external(reason, Arc::new(configure), false).await
    }

    /// An in-process broker with a file store in a fresh directory; `None` (and a skip line) when external.
    pub async fn start_with_file_store() -> anyhow::Result<Option<TestCluster>> {
        Self::start_with_file_store_configured(|_: &mut BrokerConfig| {}).await
    }

    /// Like [`TestCluster::start_with_file_store`], with test-specific settings.
    pub async fn start_with_file_store_configured(
        configure: impl Fn(&mut BrokerConfig) + Send + Sync + 'static,
    ) -> anyhow::Result<Option<TestCluster>> {
        let reason = "needs to restart the broker";
        Self::start_unless_external(reason, Arc::new(configure), true).await
    }

    /// An in-process broker (on a file store in a fresh directory if `file_store`), or `None` and
    /// a skip line giving `reason` when the suite targets an external server.
    async fn start_unless_external(
        reason: &str,
        configure: Arc<Configure>,
        file_store: bool,
    ) -> anyhow::Result<Option<TestCluster>> {
        if external_server().is_some() {
            skip_on_external_server(reason);
            return Ok(None);
        }
        let store_dir = if file_store {
            Some(tempfile::tempdir().context("Failed to create a store directory")?)
        } else {
            None
        };
        Self::start_in_process(configure, store_dir).await.map(Some)
    }

    async fn start_in_process(
        configure: Arc<Configure>,
        store_dir: Option<TempDir>,
    ) -> anyhow::Result<TestCluster> {
        let nats_url = ensure_nats_server().await?;
        let cluster_id = unique("conformance");
        let config = broker_config(&nats_url, &cluster_id, &configure, store_dir.as_ref());
        let broker = Broker::start(config)
            .await
            .context("Failed to start the in-process broker")?;
        Self::assemble(
            nats_url,
            cluster_id,
            Some(broker),
            Some(configure),
            store_dir,
        )
        .await
    }

    async fn assemble(
        nats_url: String,
        cluster_id: String,
        broker: Option<Broker>,
        configure: Option<Arc<Configure>>,
        store_dir: Option<TempDir>,
    ) -> anyhow::Result<TestCluster> {
        let nats = nats_connect(&nats_url).await?;
        let flush_subject = unique("_CONFORMANCE.flush");
        let mut requests = nats
            .subscribe(flush_subject.clone())
            .await
            .context("Failed to subscribe the flush responder")?;
        server_has_processed(&nats)
            .await
            .context("nats-server did not confirm the flush responder")?;
        let flush_responder = tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply {
                    let _ = nats.publish(reply, Bytes::new()).await;
                }
            }
        });
        Ok(TestCluster {
            nats_url,
            cluster_id,
            broker,
            configure,
            store_dir,
            flush_subject,
            flush_responder,
            publisher: OnceCell::new(),
        })
    }

    /// Stops the in-process broker gracefully and starts it again with the same settings and
    /// store, on the same cluster id.
    pub async fn restart_broker(&mut self) -> anyhow::Result<()> {
        let (Some(broker), Some(configure)) = (self.broker.take(), self.configure.clone()) else {
            bail!("Only an in-process broker can be restarted");
        };
        broker.shutdown().await;
        let config = broker_config(
            &self.nats_url,
            &self.cluster_id,
            &configure,
            self.store_dir.as_ref(),
        );
        self.broker = Some(
            Broker::start(config)
                .await
                .context("Failed to restart the in-process broker")?,
        );
        Ok(())
    }

    /// A subject that answers every request at once; a round trip to it from a client proves
    /// that the NATS server has processed everything that client sent before.
    pub fn flush_subject(&self) -> &str {
        &self.flush_subject
    }

    /// A channel name unique to this test run.
    pub fn channel(&self, name: &str) -> String {
        format!("conf.{name}.{:08x}", rand::random::<u32>())
    }

    /// A live raw STAN connection (answers heartbeats).
    pub async fn raw_client(&self, client_id: &str) -> anyhow::Result<RawConnection> {
        RawConnection::connect(&self.nats_url, &self.cluster_id, client_id).await
    }

    /// A raw connection used only to publish test data with PubAck confirmation.
    pub async fn publisher(&self) -> anyhow::Result<RawConnection> {
        self.raw_client(&unique("publisher")).await
    }

    /// Publishes each payload to `channel` with PubAck confirmation, in order, from one publisher
    /// connection that the cluster opens on first use and keeps.
    pub async fn publish(&self, channel: &str, payloads: &[&str]) -> anyhow::Result<()> {
        let publisher = self.publisher.get_or_try_init(|| self.publisher()).await?;
        publish_all(publisher, channel, payloads).await
    }

    /// Connects a ratsio client. ratsio has no connect timeout and reports a refused connect
    /// as success, so this bounds the wait and leaves refusals to the test's assertions.
    pub async fn ratsio_client(&self, client_id: &str) -> anyhow::Result<Arc<StanClient>> {
        let options =
            StanOptions::with_options(self.nats_url.as_str(), self.cluster_id.as_str(), client_id);
        timeout(REQUEST_TIMEOUT, StanClient::from_options(options))
            .await
            .context("ratsio did not connect in time")?
            .context("ratsio failed to connect")
    }

    /// Subscribes with ratsio and waits until the NATS server has registered the delivery
    /// inbox, so messages published afterwards cannot be missed.
    ///
    /// Messages the broker sends right after answering the request (stored messages, a
    /// durable's pending ones) are still lost: ratsio only subscribes to its inbox after the
    /// answer. They arrive once their ack wait expires; tests that meet this say so.
    pub async fn subscribe(
        &self,
        client: &Arc<StanClient>,
        channel: &str,
        options: SubOptions,
    ) -> anyhow::Result<RatsioSubscription> {
        // Owned strings: ratsio's stream borrows its string arguments' type for its lifetime.
        let subscribing = client.subscribe_with_all(
            channel.to_string(),
            options.queue_group,
            options.durable_name,
            options.max_in_flight,
            options.ack_wait_secs,
            options.start_position,
            options.start_sequence,
            options.start_time_delta,
            options.manual_acks,
        );
        let (_sid, messages) = timeout(REQUEST_TIMEOUT, subscribing)
            .await
            .context("ratsio did not subscribe in time")?
            .context("ratsio failed to subscribe")?;
        self.flush(client).await?;
        Ok(RatsioSubscription {
            messages: Box::pin(messages),
            client: client.clone(),
        })
    }

    /// A ratsio client connected as `client_id` and subscribed to `channel` with `options` (see
    /// [`TestCluster::subscribe`]).
    pub async fn ratsio_subscriber(
        &self,
        client_id: &str,
        channel: &str,
        options: SubOptions,
    ) -> anyhow::Result<(Arc<StanClient>, RatsioSubscription)> {
        let client = self.ratsio_client(client_id).await?;
        let subscription = self.subscribe(&client, channel, options).await?;
        Ok((client, subscription))
    }

    /// Connects ratsio as `client_id`, subscribes to `channel` with `options` (resuming a durable
    /// of that client id), publishes `after` once subscribed, and returns everything that arrives
    /// within [`MISSED_COMES_BACK`] of subscribing, each acked on arrival; then closes the client.
    pub async fn ratsio_collect(
        &self,
        client_id: &str,
        channel: &str,
        options: SubOptions,
        after: &[&str],
    ) -> anyhow::Result<Vec<Received>> {
        let (client, mut subscription) =
            self.ratsio_subscriber(client_id, channel, options).await?;
        let subscribed = Instant::now();
        self.publish(channel, after).await?;
        let received = subscription
            .collect_until(subscribed + MISSED_COMES_BACK, true)
            .await?;
        close_ratsio(&client).await?;
        Ok(received)
    }

    /// Round trip on the ratsio client's NATS connection (see [`TestCluster::flush_subject`]).
    pub async fn flush(&self, client: &StanClient) -> anyhow::Result<()> {
        timeout(
            REQUEST_TIMEOUT,
            client.nats_client.request(self.flush_subject.as_str(), b""),
        )
        .await
        .context("The flush round trip timed out")?
        .context("The flush round trip failed")?;
        Ok(())
    }
}

/// `(nats_url, cluster_id)` of the external server, if the suite targets one.
///
/// Panics when only one of the two variables is set: the run would otherwise test the in-process
/// broker while its caller believes it tests the external server.
pub fn external_server() -> Option<(String, String)> {
    let var = |name: &str| env::var(name).ok().filter(|value| !value.is_empty());
    match (var(EXTERNAL_URL_VAR), var(EXTERNAL_CLUSTER_ID_VAR)) {
        (Some(url), Some(cluster_id)) => Some((url, cluster_id)),
        (None, None) => None,
        _ => panic!("set both {EXTERNAL_URL_VAR} and {EXTERNAL_CLUSTER_ID_VAR}, or neither"),
    }
}

/// The NATS url of an external STAN server to run the suite against instead of the in-process broker.
const EXTERNAL_URL_VAR: &str = "STAN_CONFORMANCE_URL";
/// The cluster id of that server.
const EXTERNAL_CLUSTER_ID_VAR: &str = "STAN_CONFORMANCE_CLUSTER_ID";

/// Says that the running test did not run against the external server, and why. Written to the
/// process's stderr directly, not through `eprintln!`, which the test harness captures and shows
/// only for failures.
/// Also appended to `SKIPPED_FILE`, which `scripts/test.sh` counts into its summary: the harness itself can only
/// count such a test as passed.
pub fn skip_on_external_server(reason: &str) {
    let test = current_test_name();
    let line = format!("SKIPPED (external server): {test}: {reason}\n");
    // Nothing useful is left to do if stderr itself is gone.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(SKIPPED_FILE)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(error) = appended {
        let _ = writeln!(
            std::io::stderr(),
            "could not record the skip in {SKIPPED_FILE}: {error}"
        );
    }
}

/// The NATS url for brokers the running test starts itself, or `None` (and a skip line giving
/// `reason`) when the suite targets an external server.
pub async fn local_nats_url(reason: &str) -> anyhow::Result<Option<String>> {
    if external_server().is_some() {
        skip_on_external_server(reason);
        return Ok(None);
    }
    ensure_nats_server().await.map(Some)
}

/// The running test's name (`module::test`), which the harness gives the thread it runs the test
/// on; a `#[tokio::test]` body runs on that thread. Read from there so that a skip line cannot name
/// another test than the one it skips.
fn current_test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("an unnamed test")
        .to_string()
}

/// Where each skipped test is recorded, one line each, for the run's summary.
pub const SKIPPED_FILE: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/conformance-skipped.txt");

fn broker_config(
    nats_url: &str,
    cluster_id: &str,
    configure: &Arc<Configure>,
    store_dir: Option<&TempDir>,
) -> BrokerConfig {
    let mut config = BrokerConfig {
        cluster_id: cluster_id.to_string(),
        nats_url: nats_url.to_string(),
        ..BrokerConfig::default()
    };
    if let Some(dir) = store_dir {
        config.store = StoreKind::File(dir.path().to_path_buf());
    }
    configure(&mut config);
    config
}

/// Subscription settings for either client; `Start` is that client's type of start position.
///
/// The raw client never acks on its own, so `manual_acks` only matters to ratsio.
#[derive(Clone, Debug)]
pub struct SubscriptionOptions<Start> {
    pub queue_group: Option<String>,
    pub durable_name: Option<String>,
    pub max_in_flight: i32,
    pub ack_wait_secs: i32,
    pub start_position: Start,
    pub start_sequence: u64,
    pub start_time_delta: Option<i32>,
    pub manual_acks: bool,
}

/// A client's type of start position, with the ack wait its tests use unless they set one.
pub trait ClientStartPosition: Sized {
    const NEW_ONLY: Self;
    const FIRST: Self;
    const DEFAULT_ACK_WAIT_SECS: i32;
}

/// ratsio's: short, so that what ratsio misses right after subscribing comes back soon.
impl ClientStartPosition for StartPosition {
    const NEW_ONLY: Self = StartPosition::NewOnly;
    const FIRST: Self = StartPosition::First;
    const DEFAULT_ACK_WAIT_SECS: i32 = 1;
}

impl<Start: ClientStartPosition> SubscriptionOptions<Start> {
    /// Manual acks, max in flight 1024, the client's default ack wait.
    pub fn starting_at(start_position: Start) -> Self {
        SubscriptionOptions {
            queue_group: None,
            durable_name: None,
            max_in_flight: 1024,
            ack_wait_secs: Start::DEFAULT_ACK_WAIT_SECS,
            start_position,
            start_sequence: 0,
            start_time_delta: None,
            manual_acks: true,
        }
    }

    /// Messages published after subscribing.
    pub fn new_only() -> Self {
        Self::starting_at(Start::NEW_ONLY)
    }

    /// Every stored message.
    pub fn first() -> Self {
        Self::starting_at(Start::FIRST)
    }

    pub fn durable(mut self, name: &str) -> Self {
        self.durable_name = Some(name.to_string());
        self
    }

    pub fn queue(mut self, group: &str) -> Self {
        self.queue_group = Some(group.to_string());
        self
    }

    pub fn max_in_flight(mut self, max: i32) -> Self {
        self.max_in_flight = max;
        self
    }

    pub fn ack_wait_secs(mut self, secs: i32) -> Self {
        self.ack_wait_secs = secs;
        self
    }

    pub fn start_sequence(mut self, sequence: u64) -> Self {
        self.start_sequence = sequence;
        self
    }

    /// ratsio passes this through unchanged and the server reads nanoseconds.
    pub fn start_time_delta_nanos(mut self, nanos: i32) -> Self {
        self.start_time_delta = Some(nanos);
        self
    }

    pub fn auto_ack(mut self) -> Self {
        self.manual_acks = false;
        self
    }
}

/// Subscription settings passed to ratsio's `subscribe_with_all`.
///
/// Always explicit: ratsio's `subscribe()` asks for an ack wait of 1,800,000 s.
pub type SubOptions = SubscriptionOptions<StartPosition>;

/// A message with the moment it arrived.
pub struct Received {
    pub message: StanMessage,
    pub at: Instant,
}

/// A ratsio subscription with bounded waits.
pub struct RatsioSubscription {
    messages: Pin<Box<dyn Stream<Item = StanMessage> + Send + Sync>>,
    client: Arc<StanClient>,
}

impl RatsioSubscription {
    /// The next message, or an error if none arrives within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> anyhow::Result<Received> {
        match timeout(wait, self.messages.next()).await {
            Ok(Some(message)) => Ok(Received {
                message,
                at: Instant::now(),
            }),
            Ok(None) => bail!("The ratsio subscription ended"),
            Err(_) => bail!("No message within {wait:?}"),
        }
    }

    /// The next message if one arrives before `deadline`.
    pub async fn next_before(&mut self, deadline: Instant) -> Option<Received> {
        match timeout_at(deadline, self.messages.next()).await {
            Ok(Some(message)) => Some(Received {
                message,
                at: Instant::now(),
            }),
            _ => None,
        }
    }

    /// Everything that arrives until `deadline`, acking each message if `ack` is set.
    pub async fn collect_until(
        &mut self,
        deadline: Instant,
        ack: bool,
    ) -> anyhow::Result<Vec<Received>> {
        let mut received = Vec::new();
        while let Some(next) = self.next_before(deadline).await {
            if ack {
                self.ack(&next.message).await?;
            }
            received.push(next);
        }
        Ok(received)
    }

    /// Receives the sequences `expected` in this order, asserting each, acks all but the last and
    /// returns the last, unacked. With max in flight 1 each delivery proves the ack before it arrived.
    pub async fn ack_all_but_last(&mut self, expected: &[u64]) -> anyhow::Result<Received> {
        let Some((&last, acked)) = expected.split_last() else {
            bail!("ack_all_but_last needs at least one expected sequence");
        };
        for &sequence in acked {
            let delivered = self.next_within(DELIVERY_WAIT).await?;
            assert_eq!(delivered.message.sequence, sequence);
            self.ack(&delivered.message).await?;
        }
        let held = self.next_within(DELIVERY_WAIT).await?;
        assert_eq!(held.message.sequence, last);
        Ok(held)
    }

    /// Manually acknowledges `message`.
    pub async fn ack(&self, message: &StanMessage) -> anyhow::Result<()> {
        timeout(REQUEST_TIMEOUT, self.client.acknowledge(message.clone()))
            .await
            .context("ratsio did not ack in time")?
            .context("ratsio failed to ack")
    }
}

/// The distinct sequences in `received`, sorted.
pub fn distinct_sequences(received: &[Received]) -> Vec<u64> {
    let mut sequences: Vec<u64> = received.iter().map(|r| r.message.sequence).collect();
    sequences.sort_unstable();
    sequences.dedup();
    sequences
}

/// Closes a ratsio client (CloseRequest), bounded in time.
pub async fn close_ratsio(client: &StanClient) -> anyhow::Result<()> {
    timeout(REQUEST_TIMEOUT, client.close())
        .await
        .context("ratsio did not close in time")?
        .context("ratsio failed to close")
}

/// Publishes each payload with PubAck confirmation, in order.
pub async fn publish_all(
    publisher: &RawConnection,
    channel: &str,
    payloads: &[&str],
) -> anyhow::Result<()> {
    for payload in payloads {
        publisher
            .publish_confirmed(channel, payload.as_bytes())
            .await?;
    }
    Ok(())
}
