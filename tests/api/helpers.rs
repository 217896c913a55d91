use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use bytes::Bytes;
use clap::Parser;
use order_service::actors::SubscriberStatus;
use order_service::app::{Application, ShutdownHandle};
use order_service::config::{Cli, DatabaseSettings, Settings, SourceKind};
use order_service::storage::{self, Pool};
use order_service::telemetry::{get_subscriber, init_subscriber};
use order_service::transport::publisher::OrderPublisher;
use stan_testkit::{Broker, BrokerConfig, StoreKind};
use uuid::Uuid;

/// The canonical sample order.
pub const SAMPLE: &str = include_str!("../fixtures/model.json");
pub const SAMPLE_UID: &str = "b563feb7b2b84b6test";

/// How long a test waits for the pipeline before it fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// Logs only under `TEST_LOG` (z2p).
static TRACING: LazyLock<()> = LazyLock::new(|| {
    let format = order_service::config::LogFormat::Human;
    if std::env::var("TEST_LOG").is_ok() {
        init_subscriber(get_subscriber("info", format, std::io::stdout));
    } else {
        init_subscriber(get_subscriber("info", format, std::io::sink));
    }
});

/// One service instance under test, with its own database, broker (cluster id) and channel, and its own JetStream
/// stream, subject and consumer.
pub struct TestApp {
    /// The public listener (`HTTP_ADDR`).
    pub address: String,
    /// The admin listener (`ADMIN_ADDR`); every request to it needs `admin_token`.
    pub admin_address: String,
    pub admin_token: String,
    pub settings: Settings,
    pub db_pool: Pool,
    /// `None` only while `restart_broker` runs.
    broker: Option<Broker>,
    /// Publishes to the first source (the only one, unless the test runs several).
    pub publisher: Publisher,
    /// Publishers for every source, in the order of `settings.sources`.
    pub publishers: Vec<Publisher>,
    /// The first source's subscriber.
    pub status: Arc<SubscriberStatus>,
    /// Every source's subscriber.
    pub statuses: Vec<Arc<SubscriberStatus>>,
    shutdown: ShutdownHandle,
    running: actix_web::rt::task::JoinHandle<anyhow::Result<()>>,
    _stream: Option<StreamGuard>,
}

/// A test database and broker with no service running.
pub struct StoppedApp {
    pub settings: Settings,
    pub db_pool: Pool,
    pub broker: Broker,
    pub publisher: Publisher,
    pub publishers: Vec<Publisher>,
    stream: Option<StreamGuard>,
}

/// Publishes test messages to one source, each confirmed by the broker (a PubAck, a JetStream publish ack). No
/// `Nats-Msg-Id`: a test that publishes the same order twice wants two messages in the stream.
#[derive(Clone)]
pub struct Publisher(pub OrderPublisher);

impl Publisher {
    pub async fn publish(&self, data: impl Into<Bytes>) -> anyhow::Result<()> {
        self.0.publish(data.into(), None).await
    }

    /// Publishes every message, many confirmations in flight at a time; returns once all are confirmed.
    pub async fn publish_all(&self, messages: &[Vec<u8>]) -> anyhow::Result<()> {
        let messages: Vec<Bytes> = messages.iter().cloned().map(Bytes::from).collect();
        self.0.publish_all(&messages, 256).await
    }
}

/// Deletes the test's JetStream stream when the test ends, so the shared server does not collect them.
pub struct StreamGuard {
    url: String,
    stream: String,
}

impl StreamGuard {
    /// Deletes `stream` on the server at `url` when dropped (for a stream the service created).
    pub fn new(url: &str, stream: &str) -> StreamGuard {
        StreamGuard {
            url: url.to_owned(),
            stream: stream.to_owned(),
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let (url, stream) = (self.url.clone(), self.stream.clone());
        // Drop cannot await: a thread with a runtime of its own does the deletion (best effort).
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let delete = async {
                    let client = async_nats::connect(url.as_str()).await.ok()?;
                    jetstream::new(client).delete_stream(&stream).await.ok()
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), delete).await;
            });
        })
        .join();
    }
}

/// Creates the test's stream as the service would (file storage, its subject), so that a test can publish before
/// the service starts.
pub async fn create_stream(settings: &Settings) -> anyhow::Result<StreamGuard> {
    let js = &settings.jetstream;
    let client = async_nats::connect(js.url.expose())
        .await
        .with_context(|| format!("Failed to connect to nats-server at {}", js.url.redacted()))?;
    jetstream::new(client)
        .create_stream(jetstream::stream::Config {
            name: js.stream.clone(),
            subjects: vec![js.subject.clone()],
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .with_context(|| {
            format!(
                "Failed to create the JetStream stream {} (is nats-server running with -js?)",
                js.stream
            )
        })?;
    Ok(StreamGuard {
        url: js.url.expose().to_owned(),
        stream: js.stream.clone(),
    })
}

/// A publisher for each of the settings' sources.
pub async fn publishers(settings: &Settings) -> anyhow::Result<Vec<Publisher>> {
    let mut publishers = Vec::new();
    for source in settings.distinct_sources() {
        publishers.push(Publisher(match source {
            SourceKind::Stan => {
                let client_id = format!("publisher-{}", Uuid::new_v4().simple());
                let stan = &settings.stan;
                OrderPublisher::stan(
                    stan.url.expose(),
                    &stan.cluster_id,
                    &client_id,
                    &stan.channel,
                )
                .await?
            }
            SourceKind::JetStream => {
                let js = &settings.jetstream;
                OrderPublisher::jetstream(js.url.expose(), &js.subject).await?
            }
        }));
    }
    Ok(publishers)
}

fn base_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates a database named by a fresh uuid and returns its URL. It is dropped when the test's thread ends,
/// unless the test failed: then it is kept for inspection and its name printed (`Cleanup`).
async fn create_database() -> anyhow::Result<String> {
    let base = base_database_url();
    let name = Uuid::new_v4().to_string();
    Cleanup::register(&base, &name);
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .context("Failed to connect to TEST_DATABASE_URL")?;
    actix_web::rt::spawn(connection);
    client
        .batch_execute(&format!(r#"CREATE DATABASE "{name}""#))
        .await?;
    let (server, _) = base
        .rsplit_once('/')
        .context("TEST_DATABASE_URL has no database name")?;
    Ok(format!("{server}/{name}"))
}

/// A fresh database with the migrations applied, without broker or service: its URL and a pool.
pub async fn migrated_database() -> anyhow::Result<(String, Pool)> {
    LazyLock::force(&TRACING);
    let url = create_database().await?;
    let settings = test_settings(&url, "nats://127.0.0.1:4222", "unused", &[SourceKind::Stan])?;
    let pool = storage::build_pool(&settings.database).await?;
    storage::migrate(&pool).await?;
    Ok((url, pool))
}

/// The sample order under another order_uid (the same length keeps the same size).
pub fn sample_with_uid(uid: &str) -> String {
    SAMPLE.replace(SAMPLE_UID, uid)
}

/// Inserts the sample under `uid` with plain SQL, as another instance or a person would, behind the service's back.
/// Returns the stored document.
pub async fn insert_directly(client: &tokio_postgres::Client, uid: &str) -> anyhow::Result<String> {
    let document = sample_with_uid(uid);
    client
        .execute(
            "INSERT INTO orders (order_uid, document, track_number, customer_id, stan_sequence)
             VALUES ($1, $2, 'WBILMTESTTRACK', 'test', 0)",
            &[&uid, &document],
        )
        .await?;
    Ok(document)
}

/// A connection of its own to the database at `url`, driven in the background.
pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    actix_web::rt::spawn(connection);
    Ok(client)
}

/// Settings for a test: its own database, cluster and channel, stream, subject and consumer, port 0, short ack
/// wait and probe interval, the given sources.
fn test_settings(
    database_url: &str,
    nats_url: &str,
    cluster_id: &str,
    sources: &[SourceKind],
) -> anyhow::Result<Settings> {
    let id = Uuid::new_v4().simple().to_string();
    let channel = format!("orders-{id}");
    let stream = format!("ORDERS_{id}");
    let subject = format!("orders.{id}");
    let sources: Vec<&str> = sources.iter().map(|s| s.as_str()).collect();
    let sources = sources.join(",");
    let cli = Cli::try_parse_from([
        "order-service",
        "--source",
        &sources,
        "--nats-url",
        nats_url,
        "--js-stream",
        &stream,
        "--js-subject",
        &subject,
        "--js-consumer",
        "order-service-test",
        "--js-info-interval",
        "1",
        "--js-timeout",
        "2",
        "--database-url",
        database_url,
        "--stan-url",
        nats_url,
        "--stan-cluster-id",
        cluster_id,
        "--stan-channel",
        &channel,
        "--stan-client-id",
        "order-service-test",
        // Short, so the deliveries ratsio drops right after subscribing come back promptly.
        "--stan-ack-wait",
        "1",
        "--stan-probe-interval",
        "1",
        "--stan-timeout",
        "2",
        "--http-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        // Every test goes through the admin gate, as a production deployment with a token does.
        "--admin-token",
        &format!("test-token-{}", Uuid::new_v4().simple()),
        "--http-workers",
        "2",
        "--db-pool-size",
        "4",
    ])?;
    Ok(cli.settings)
}

/// Settings for a fresh database with no tables: for tests of the migrations themselves.
pub async fn empty_database() -> anyhow::Result<DatabaseSettings> {
    LazyLock::force(&TRACING);
    let database_url = create_database().await?;
    let cli = Cli::try_parse_from(["order-service", "--database-url", &database_url])?;
    Ok(cli.settings.database)
}

/// The service consuming STAN.
pub async fn spawn_app() -> anyhow::Result<TestApp> {
    prepare().await?.start().await
}

/// The service consuming `sources`.
pub async fn spawn_app_with(sources: &[SourceKind]) -> anyhow::Result<TestApp> {
    prepare_with(sources).await?.start().await
}

/// Database, broker and publisher, without the service: for tests that publish before it starts.
pub async fn prepare() -> anyhow::Result<StoppedApp> {
    prepare_with(&[SourceKind::Stan]).await
}

/// Like `prepare`, for the service consuming `sources`.
pub async fn prepare_with(sources: &[SourceKind]) -> anyhow::Result<StoppedApp> {
    let nats_url = stan_testkit::nats_server::ensure_nats_server().await?;
    prepare_on(&nats_url, StoreKind::Memory, sources).await
}

/// Like `prepare`, against the given nats-server (a test's private one) and with the broker's store.
pub async fn prepare_on(
    nats_url: &str,
    store: StoreKind,
    sources: &[SourceKind],
) -> anyhow::Result<StoppedApp> {
    LazyLock::force(&TRACING);
    let database_url = create_database().await?;
    prepare_at(nats_url, store, sources, &database_url).await
}

/// Like `prepare`, on the database at `database_url` (one the test made itself, which several instances share):
/// its own broker and channel, the migrations applied if they are not yet.
pub async fn prepare_on_database(database_url: &str) -> anyhow::Result<StoppedApp> {
    let nats_url = stan_testkit::nats_server::ensure_nats_server().await?;
    prepare_at(
        &nats_url,
        StoreKind::Memory,
        &[SourceKind::Stan],
        database_url,
    )
    .await
}

async fn prepare_at(
    nats_url: &str,
    store: StoreKind,
    sources: &[SourceKind],
    database_url: &str,
) -> anyhow::Result<StoppedApp> {
    LazyLock::force(&TRACING);
    let nats_url = nats_url.to_owned();
    let cluster_id = format!("test-{}", Uuid::new_v4().simple());
    let broker = Broker::start(BrokerConfig {
        cluster_id: cluster_id.clone(),
        nats_url: nats_url.clone(),
        store,
        ..Default::default()
    })
    .await?;
    let settings = test_settings(database_url, &nats_url, &cluster_id, sources)?;
    let db_pool = storage::build_pool(&settings.database).await?;
    storage::migrate(&db_pool).await?;
    let stream = if sources.contains(&SourceKind::JetStream) {
        Some(create_stream(&settings).await?)
    } else {
        None
    };
    let publishers = publishers(&settings).await?;
    Ok(StoppedApp {
        settings,
        db_pool,
        broker,
        publisher: publishers.first().context("no source")?.clone(),
        publishers,
        stream,
    })
}

impl StoppedApp {
    /// Starts the service; returns once it is subscribed.
    pub async fn start(self) -> anyhow::Result<TestApp> {
        let app = Application::build(self.settings.clone()).await?;
        let address = format!("http://127.0.0.1:{}", app.port());
        let admin_address = format!("http://127.0.0.1:{}", app.admin_port());
        let admin_token = self
            .settings
            .application
            .admin_token
            .as_ref()
            .map(|token| token.expose().to_owned())
            .unwrap_or_default();
        let statuses: Vec<Arc<SubscriberStatus>> = app
            .readiness()
            .subscribers
            .iter()
            .map(|s| s.status.clone())
            .collect();
        let shutdown = app.shutdown_handle();
        let running = actix_web::rt::spawn(app.run_until_stopped());
        Ok(TestApp {
            address,
            admin_address,
            admin_token,
            settings: self.settings,
            db_pool: self.db_pool,
            broker: Some(self.broker),
            publisher: self.publisher,
            publishers: self.publishers,
            status: statuses.first().context("no subscriber")?.clone(),
            statuses,
            shutdown,
            running,
            _stream: self.stream,
        })
    }

    pub async fn publish(&self, data: impl Into<Bytes>) -> anyhow::Result<()> {
        self.publisher.publish(data).await
    }
}

impl TestApp {
    /// The service is still running: it has not stopped or given up.
    pub fn is_running(&self) -> bool {
        !self.running.is_finished()
    }

    /// Stops the service the way SIGTERM does and waits until it is down.
    pub async fn stop(self) -> anyhow::Result<StoppedApp> {
        self.shutdown.shutdown();
        self.running.await??;
        Ok(StoppedApp {
            settings: self.settings,
            db_pool: self.db_pool,
            broker: self.broker.context("the broker is being restarted")?,
            publisher: self.publisher,
            publishers: self.publishers,
            stream: self._stream,
        })
    }

    /// Restarts the (memory) broker on the same cluster id: it comes back knowing no client, subscription or
    /// message. Returns a publisher connected to the new broker.
    pub async fn restart_broker(&mut self) -> anyhow::Result<Publisher> {
        self.restart_broker_on(StoreKind::Memory).await
    }

    /// Stops the broker and starts another on the same cluster id with `store` (with a file store: the same
    /// directory, to resume what the first one kept). Returns a publisher connected to the new broker.
    pub async fn restart_broker_on(&mut self, store: StoreKind) -> anyhow::Result<Publisher> {
        let old = self
            .broker
            .take()
            .context("the broker is being restarted")?;
        let (nats_url, cluster_id) = (old.nats_url().to_owned(), old.cluster_id().to_owned());
        old.shutdown().await;
        self.broker = Some(
            Broker::start(BrokerConfig {
                cluster_id: cluster_id.clone(),
                nats_url: nats_url.clone(),
                store,
                ..Default::default()
            })
            .await?,
        );
        let client_id = format!("publisher-{}", Uuid::new_v4().simple());
        let channel = &self.settings.stan.channel;
        Ok(Publisher(
            OrderPublisher::stan(&nats_url, &cluster_id, &client_id, channel).await?,
        ))
    }

    pub async fn publish(&self, data: impl Into<Bytes>) -> anyhow::Result<()> {
        self.publisher.publish(data).await
    }

    /// Publishes all messages with their confirmations pipelined.
    pub async fn publish_all(&self, messages: Vec<Vec<u8>>) -> anyhow::Result<()> {
        self.publisher.publish_all(&messages).await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        Ok(reqwest::get(format!("{}{path}", self.address)).await?)
    }

    /// A request to the admin listener, with the admin token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, format!("{}{path}", self.admin_address))
            .bearer_auth(&self.admin_token)
    }

    /// `GET` on the admin listener, with the admin token.
    pub async fn admin_get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self.admin(reqwest::Method::GET, path).send().await?)
    }

    pub async fn get_order(&self, uid: &str) -> anyhow::Result<reqwest::Response> {
        self.get(&format!("/order/{uid}")).await
    }

    /// Waits until the order is served and returns its body.
    pub async fn served(&self, uid: &str) -> anyhow::Result<Bytes> {
        eventually(WAIT, &format!("order {uid} to be served"), || async {
            let response = self.get_order(uid).await?;
            Ok(if response.status() == 200 {
                Some(response.bytes().await?)
            } else {
                None
            })
        })
        .await
    }

    pub async fn count(&self, table: &str) -> anyhow::Result<i64> {
        count(&self.db_pool, table).await
    }

    /// Waits until `table` holds `expected` rows.
    pub async fn wait_for_rows(&self, table: &str, expected: i64) -> anyhow::Result<()> {
        eventually(WAIT, &format!("{expected} rows in {table}"), || async {
            Ok((self.count(table).await? == expected).then_some(()))
        })
        .await
    }

    /// Waits until the service has acked `expected` messages.
    pub async fn wait_for_acks(&self, expected: u64) -> anyhow::Result<()> {
        eventually(WAIT, &format!("{expected} acks"), || async {
            Ok((self.acked() >= expected).then_some(()))
        })
        .await
    }

    /// Acks sent, over every source.
    pub fn acked(&self) -> u64 {
        self.sum(|s| &s.acked)
    }

    /// The test database's URL.
    pub fn database_url(&self) -> &str {
        self.settings.database.url.expose()
    }

    /// Deliveries taken, over every source.
    pub fn delivered(&self) -> u64 {
        self.sum(|s| &s.delivered)
    }

    /// Messages left unacked, over every source.
    pub fn not_acked(&self) -> u64 {
        self.sum(|s| &s.not_acked)
    }

    fn sum(&self, field: fn(&SubscriberStatus) -> &std::sync::atomic::AtomicU64) -> u64 {
        self.statuses
            .iter()
            .map(|s| field(s).load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    /// Runs SQL on the test database as its owner.
    pub async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        let conn = self.db_pool.get().await?;
        conn.batch_execute(sql).await?;
        Ok(())
    }
}

pub async fn count(pool: &Pool, table: &str) -> anyhow::Result<i64> {
    let conn = pool.get().await?;
    Ok(conn
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?
        .get(0))
}

/// Polls `check` until it returns `Some`, failing after `timeout`: waiting on a condition, not sleeping.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() > deadline {
            Cleanup::test_failed();
            match last_error {
                Some(error) => anyhow::bail!(
                    "timed out after {timeout:?} waiting for {what}; last error: {error:#}"
                ),
                None => anyhow::bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Asserts that `check` stays true for `window`: for claims that something does *not* happen (no redelivery),
/// which no condition can signal.
pub async fn holds_for<F>(window: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> bool,
{
    let until = Instant::now() + window;
    while Instant::now() < until {
        if !check() {
            Cleanup::test_failed();
            anyhow::bail!("{what} stopped holding");
        }
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

/// The databases one test created. Each test runs on a thread of its own, so they are kept per thread and dropped
/// when it ends, with `psql`: a thread-local destructor cannot start an async runtime. A test that panicked, or
/// whose `eventually`/`holds_for` gave up, keeps them and names them on stderr. A test that fails by returning
/// another `Err` cannot be told from one that passed here, and its databases go.
struct Cleanup {
    base_url: String,
    databases: Vec<String>,
    failed: bool,
}

thread_local! {
    static CLEANUP: std::cell::RefCell<Option<Cleanup>> = const { std::cell::RefCell::new(None) };
}

impl Cleanup {
    fn register(base_url: &str, name: &str) {
        // A panic is caught by the test harness before the thread ends, so the thread cannot tell afterwards.
        static MARK_PANICS: std::sync::Once = std::sync::Once::new();
        MARK_PANICS.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                Cleanup::test_failed();
                previous(info)
            }));
        });
        CLEANUP.with(|cleanup| {
            cleanup
                .borrow_mut()
                .get_or_insert_with(|| Cleanup {
                    base_url: base_url.to_owned(),
                    databases: Vec::new(),
                    failed: false,
                })
                .databases
                .push(name.to_owned())
        });
    }

    /// Called where a test is about to fail without panicking (a returned `Err`).
    fn test_failed() {
        // `try_with`: a panic hook may run while the thread's locals are being torn down.
        let _ = CLEANUP.try_with(|cleanup| {
            if let Ok(mut cleanup) = cleanup.try_borrow_mut() {
                if let Some(cleanup) = cleanup.as_mut() {
                    cleanup.failed = true;
                }
            }
        });
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.failed {
            eprintln!(
                "Kept the failed test's database(s) for inspection: {}",
                self.databases.join(", ")
            );
            return;
        }
        for name in &self.databases {
            // FORCE ends the connections a service still holds; the test is over.
            let dropped = std::process::Command::new("psql")
                .args(["-q", "-X", "-d", &self.base_url, "-c"])
                .arg(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
                .stdout(std::process::Stdio::null())
                .status();
            if !matches!(dropped, Ok(status) if status.success()) {
                eprintln!("Could not drop test database {name}: {dropped:?}");
            }
        }
    }
}
