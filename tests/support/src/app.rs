//! The service under test (`spawn_app`, `TestApp`) and the same without the service running (`prepare`,
//! `StoppedApp`), each with its own database, STAN broker (cluster id) and channel, and JetStream stream.

use std::sync::{Arc, LazyLock};

use anyhow::Context;
use bytes::Bytes;
use order_service::actors::SubscriberStatus;
use order_service::app::{Application, ShutdownHandle};
use order_service::config::{Settings, SourceKind};
use order_service::storage::{self, Pool};
use order_service::transport::publisher::OrderPublisher;
use stan_testkit::{Broker, BrokerConfig, StoreKind};
use uuid::Uuid;

use crate::database::{count, create_database};
use crate::orders::{SAMPLE, SAMPLE_UID};
use crate::publish::{create_stream, publishers, Publisher, StreamGuard};
use crate::settings::{admin_token, test_settings, TRACING};
use crate::wait::{eventually, WAIT};

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

/// The error of a start that must fail, as the operator reads it (`{error:#}`, the whole chain); when it started
/// instead, the test fails saying `started`.
pub fn start_error<T>(start: anyhow::Result<T>, started: &str) -> anyhow::Result<String> {
    match start {
        Ok(_) => anyhow::bail!("{started}"),
        Err(error) => Ok(format!("{error:#}")),
    }
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
        let admin_token = admin_token(&self.settings);
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

    /// Publishes the sample order and waits until it is served; answers its body.
    pub async fn publish_sample(&self) -> anyhow::Result<Bytes> {
        self.publish(SAMPLE).await?;
        self.served(SAMPLE_UID).await
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

    /// Publishes a message that is not JSON and waits until it is a dead letter; answers its id. For a test that
    /// needs one dead letter and nothing else in `rejected_messages`.
    pub async fn add_dead_letter(&self) -> anyhow::Result<i64> {
        self.publish(&b"{not json"[..]).await?;
        self.wait_for_rows("rejected_messages", 1).await?;
        let conn = self.db_pool.get().await?;
        Ok(conn
            .query_one("SELECT id FROM rejected_messages", &[])
            .await?
            .get(0))
    }

    /// How many times the dead letter `id` was replayed.
    pub async fn replay_count(&self, id: i64) -> anyhow::Result<i32> {
        let conn = self.db_pool.get().await?;
        Ok(conn
            .query_one(
                "SELECT replay_count FROM rejected_messages WHERE id = $1",
                &[&id],
            )
            .await?
            .get(0))
    }

    /// Runs SQL on the test database as its owner.
    pub async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        let conn = self.db_pool.get().await?;
        conn.batch_execute(sql).await?;
        Ok(())
    }
}
