//! A database of the test's own: created under a fresh uuid, migrated, dropped when the test passes and kept when
//! it fails; and plain SQL on it behind the service's back.

use std::sync::LazyLock;

use anyhow::Context;
use clap::Parser;
use order_service::config::{Cli, DatabaseSettings, SourceKind};
use order_service::storage::{self, Pool};
use uuid::Uuid;

use crate::orders::sample_with_uid;
use crate::settings::{test_settings, TRACING};

/// The server tests make their databases on (`TEST_DATABASE_URL`, by default the local PostgreSQL), as its
/// superuser.
pub fn base_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates a database named by a fresh uuid and returns its URL. It is dropped when the test's thread ends,
/// unless the test failed: then it is kept for inspection and its name printed (`Cleanup`).
pub(crate) async fn create_database() -> anyhow::Result<String> {
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

pub async fn count(pool: &Pool, table: &str) -> anyhow::Result<i64> {
    let conn = pool.get().await?;
    Ok(conn
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?
        .get(0))
}

/// The databases one test created. Each test runs on a thread of its own, so they are kept per thread and dropped
/// when it ends, with `psql`: a thread-local destructor cannot start an async runtime. A test that panicked, or
/// whose `eventually`/`holds_for` gave up, keeps them and names them on stderr. A test that fails by returning
/// another `Err` cannot be told from one that passed here, and its databases go.
pub(crate) struct Cleanup {
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
    pub(crate) fn test_failed() {
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

/// Settings for a fresh database with no tables: for tests of the migrations themselves.
pub async fn empty_database() -> anyhow::Result<DatabaseSettings> {
    LazyLock::force(&TRACING);
    let database_url = create_database().await?;
    let cli = Cli::try_parse_from(["order-service", "--database-url", &database_url])?;
    Ok(cli.settings.database)
}
