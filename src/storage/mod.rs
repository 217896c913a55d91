//! PostgreSQL: the pool and what every query shares. Each submodule reads or writes for one caller:
//! `migrations` (startup and `order-service migrate`), `orders` (the persister's batch write), `restore` (the cache
//! rebuilt at start), `feed` (the change feed), `lookups` (orders by id for cache misses and the feed), `listings`
//! (the listing routes), `dead_letters` (the replay); `tls` protects the connections, `connection` tests and keeps
//! them.
//!
//! Orders are stored as their canonical document in a `text` column (a `json` one until migration V6: the service
//! has checked every document it stores, so PostgreSQL's parse of each was paid for nothing), byte for byte what the
//! cache serves, plus a few indexed key columns; they are never updated. Documents travel as raw bytes both ways
//! (`RawJson`), so neither side parses or re-serializes them.
//!
//! Uses `telemetry`, `config` and `domain`; never `transport`, its peer, or anything above.

mod connection;
pub mod dead_letters;
pub mod feed;
pub mod listings;
pub mod lookups;
mod migrations;
pub mod orders;
pub mod restore;
pub mod tls;

use std::error::Error as StdError;
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

use crate::config::DatabaseSettings;
use crate::telemetry::error_chain::error_chain;
use crate::telemetry::metrics::Reading;

pub use connection::{Connection, Manager};
pub use migrations::{migrate, MigrationReport};
pub use orders::{store_batch, DeadLetterRow, OrderRow, Stored};

pub type Pool = bb8::Pool<Manager>;

/// What the metrics read from the pool when scraped (`Metrics::watch`).
pub fn pool_readings(pool: &Pool) -> Vec<Reading> {
    type Read = fn(&bb8::State) -> f64;
    let fields: [(&'static str, bool, &'static str, Read); 4] = [
        (
            "db_pool_connections",
            false,
            "Open database connections.",
            |s| f64::from(s.connections),
        ),
        (
            "db_pool_idle_connections",
            false,
            "Open database connections not in use.",
            |s| f64::from(s.idle_connections),
        ),
        (
            "db_pool_pending_gets",
            false,
            "Tasks waiting for a database connection.",
            |s| s.statistics.pending_gets() as f64,
        ),
        (
            "db_pool_get_timeouts_total",
            true,
            "Waits for a database connection that timed out.",
            |s| s.statistics.get_timed_out as f64,
        ),
    ];
    fields
        .into_iter()
        .map(|(name, counter, help, read)| {
            let pool = pool.clone();
            let value = move || read(&pool.state());
            if counter {
                Reading::counter(name, help, value)
            } else {
                Reading::gauge(name, help, value)
            }
        })
        .collect()
}

/// A database failure. Every variant is treated as transient by the pipeline: the message is not acked.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("no database connection")]
    Pool(#[from] bb8::RunError<tokio_postgres::Error>),
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
    #[error("order {0} was neither inserted nor found")]
    Vanished(String),
    #[error("the transaction did not finish within {0:?}")]
    Deadline(Duration),
}

impl PersistError {
    /// The SQLSTATE, when PostgreSQL answered with an error.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            PersistError::Database(e) => e.code(),
            PersistError::Pool(bb8::RunError::User(e)) => e.code(),
            _ => None,
        }
    }

    /// True when PostgreSQL refused the data itself (SQLSTATE class 22), so retrying the same rows cannot help.
    pub fn is_data_error(&self) -> bool {
        self.code().is_some_and(|c| c.code().starts_with("22"))
    }
}

/// Connects once, to fail at start with the cause (the pool alone would only report a timeout), then builds the pool.
pub async fn build_pool(settings: &DatabaseSettings) -> anyhow::Result<Pool> {
    let mut config: tokio_postgres::Config = settings.url.expose().parse().with_context(|| {
        format!(
            "DATABASE_URL {} is not a valid PostgreSQL URL",
            settings.redacted_url()
        )
    })?;
    // Every wait on the server has a deadline: a lock held by anyone else fails our statement instead of blocking
    // the one commit in flight for ever.
    let timeout_ms = settings.statement_timeout().as_millis();
    let options = format!(
        "{} -c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
        config.get_options().unwrap_or_default()
    );
    config.options(options.trim_start());
    let target = settings.redacted_url();
    let tls = tls::configure(settings, &mut config)?;
    let (client, connection) =
        tokio::time::timeout(Duration::from_secs(10), config.connect(tls.clone()))
            .await
            .map_err(|_| anyhow::anyhow!("PostgreSQL at {target} did not answer within 10 s"))?
            .map_err(|e| {
                anyhow::anyhow!(
                    "Failed to connect to PostgreSQL at {target}: {}",
                    error_chain(&e)
                )
            })?;
    drop(client);
    let _ = connection.await;

    bb8::Pool::builder()
        .max_size(settings.pool_size.max(1))
        .connection_timeout(Duration::from_secs(5))
        .build(Manager::new(config, tls))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "Failed to open the database pool at {target}: {}",
                error_chain(&e)
            )
        })
}

/// One round trip, for readiness.
pub async fn ping(pool: &Pool) -> Result<(), PersistError> {
    let conn = pool.get().await?;
    conn.simple_query("SELECT 1").await?;
    Ok(())
}

/// A JSON document as raw bytes: written to and read from the `text` column (or a `json` one, before migration V6)
/// without parsing.
#[derive(Debug, Clone, Copy)]
pub struct RawJson<'a>(pub &'a [u8]);

impl ToSql for RawJson<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        // The binary format of `text`, and of `json`, is the text itself.
        out.extend_from_slice(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TEXT || *ty == Type::JSON
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for RawJson<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(RawJson(raw))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TEXT || *ty == Type::JSON
    }
}

/// STAN sequences are u64; PostgreSQL has i64. Real sequences never come near the limit.
fn sequence_i64(sequence: u64) -> i64 {
    i64::try_from(sequence).unwrap_or(i64::MAX)
}
