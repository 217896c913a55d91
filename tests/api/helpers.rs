use std::future::Future;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use bytes::Bytes;
use clap::Parser;
use order_service::configuration::Settings;
use order_service::db::{self, Pool};
use order_service::startup::Application;
use stan_testkit::{Broker, BrokerConfig, StanPublisher};
use uuid::Uuid;

pub const SAMPLE: &str = include_str!("../fixtures/model.json");

/// One service instance under test, with its own database, cluster and channel.
pub struct TestApp {
    pub address: String,
    pub settings: Settings,
    pub db_pool: Pool,
    pub publisher: StanPublisher,
    pub broker: Broker,
    server: ServerHandle,
    running: actix_web::rt::task::JoinHandle<anyhow::Result<()>>,
}

fn base_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database named by a uuid.
async fn create_database() -> anyhow::Result<String> {
    let name = format!("test_{}", Uuid::new_v4().simple());
    let (client, connection) =
        tokio_postgres::connect(&base_database_url(), tokio_postgres::NoTls).await?;
    actix_web::rt::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let mut config: tokio_postgres::Config = base_database_url().parse()?;
    config.dbname(&name);
    Ok(format!(
        "postgres://{}@127.0.0.1:5432/{name}",
        config.get_user().unwrap_or("postgres")
    ))
}

pub async fn spawn_app() -> anyhow::Result<TestApp> {
    let nats_url = stan_testkit::nats_server::ensure_nats_server().await?;
    let cluster_id = format!("test-{}", Uuid::new_v4().simple());
    let broker = Broker::start(BrokerConfig {
        cluster_id: cluster_id.clone(),
        nats_url: nats_url.clone(),
        ..Default::default()
    })
    .await?;
    let database_url = create_database().await?;
    let settings = Settings::try_parse_from([
        "order-service",
        "--database-url",
        &database_url,
        "--stan-url",
        &nats_url,
        "--stan-cluster-id",
        &cluster_id,
        "--stan-channel",
        &format!("orders-{}", Uuid::new_v4().simple()),
        "--stan-client-id",
        "order-service-test",
        // Short, so the deliveries ratsio loses right after subscribing come back promptly.
        "--stan-ack-wait-secs",
        "1",
        "--http-addr",
        "127.0.0.1:0",
    ])?;
    let publisher = StanPublisher::connect(
        &nats_url,
        &cluster_id,
        &format!("publisher-{}", Uuid::new_v4().simple()),
    )
    .await?;
    let db_pool = db::connect(&database_url, 2).await?;
    start(settings, db_pool, publisher, broker).await
}

async fn start(
    settings: Settings,
    db_pool: Pool,
    publisher: StanPublisher,
    broker: Broker,
) -> anyhow::Result<TestApp> {
    let app = Application::build(settings.clone()).await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let server = app.server_handle();
    let running = actix_web::rt::spawn(app.run_until_stopped());
    Ok(TestApp {
        address,
        settings,
        db_pool,
        publisher,
        broker,
        server,
        running,
    })
}

impl TestApp {
    pub async fn publish(&self, data: impl Into<Bytes>) -> anyhow::Result<()> {
        Ok(self
            .publisher
            .publish(&self.settings.stan_channel, data.into())
            .await?)
    }

    pub async fn get_order(&self, uid: &str) -> anyhow::Result<reqwest::Response> {
        Ok(reqwest::get(format!("{}/order/{uid}", self.address)).await?)
    }

    /// Stops the service the way SIGTERM does and waits until it closed its STAN connection, publishes
    /// `while_down`, then starts the service again on the same database, broker and channel.
    pub async fn restart_with(self, while_down: Vec<Bytes>) -> anyhow::Result<TestApp> {
        let TestApp {
            settings,
            db_pool,
            publisher,
            broker,
            server,
            running,
            ..
        } = self;
        server.stop(true).await;
        running.await??;
        for message in while_down {
            publisher.publish(&settings.stan_channel, message).await?;
        }
        start(settings, db_pool, publisher, broker).await
    }

    pub async fn count(&self, table: &str) -> anyhow::Result<i64> {
        let conn = self.db_pool.get().await?;
        Ok(conn
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await?
            .get(0))
    }
}

/// Polls `check` until it returns Some, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}
