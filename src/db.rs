//! PostgreSQL: the pool, migrations, and the few statements the pipeline needs.

use anyhow::Context;
use bb8_postgres::PostgresConnectionManager;
use bytes::Bytes;
use tokio_postgres::{GenericClient, NoTls};

use crate::domain::{Rejection, ValidOrder};

pub type Pool = bb8::Pool<PostgresConnectionManager<NoTls>>;
pub type PoolError = bb8::RunError<tokio_postgres::Error>;

/// The migrations, applied in this order; each runs once (tracked in `schema_migrations`).
const MIGRATIONS: &[(&str, &str)] = &[(
    "20240101000000_create_orders",
    include_str!("../migrations/20240101000000_create_orders.sql"),
)];

pub async fn connect(url: &str, size: u32) -> anyhow::Result<Pool> {
    let config: tokio_postgres::Config = url
        .parse()
        .context("DATABASE_URL is not a valid PostgreSQL URL")?;
    let manager = PostgresConnectionManager::new(config, NoTls);
    let pool = bb8::Pool::builder()
        .max_size(size.max(1))
        .connection_timeout(std::time::Duration::from_secs(5))
        .build(manager)
        .await
        .context("Failed to create the database pool")?;
    // Fail at start, with the cause, rather than on the first message.
    pool.get()
        .await
        .map_err(|e| anyhow::anyhow!("Failed to connect to PostgreSQL: {e}"))?;
    Ok(pool)
}

/// Applies pending migrations under an advisory lock, so concurrent instances do not race.
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("Failed to connect to PostgreSQL: {e}"))?;
    let tx = conn.transaction().await?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(727274); \
         CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .context("Failed to prepare the migrations table")?;
    for (version, sql) in MIGRATIONS {
        let applied = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[version],
            )
            .await?;
        if applied.is_none() {
            tx.batch_execute(sql)
                .await
                .with_context(|| format!("Migration {version} failed"))?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[version],
            )
            .await?;
            tracing::info!(version, "Applied migration.");
        }
    }
    tx.commit()
        .await
        .context("Failed to commit the migrations")?;
    Ok(())
}

/// What storing an order did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Inserted,
    /// The same order_uid with the same document was stored before (a redelivery or a re-publish).
    Duplicate,
    /// The same order_uid with other content: the first version stays, this one became a dead letter.
    Conflict,
}

/// Stores a valid order in one transaction; a conflicting duplicate becomes a dead letter in the same transaction.
pub async fn insert_order(
    pool: &Pool,
    order: &ValidOrder,
    channel: &str,
    seq: u64,
    raw: &[u8],
) -> Result<Stored, PoolError> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let document = std::str::from_utf8(&order.document).unwrap_or_default();
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    let inserted = tx
        .execute(
            "INSERT INTO orders (order_uid, document, track_number, customer_id, date_created, stan_sequence) \
             VALUES ($1, $2::text::json, $3, $4, $5, $6) ON CONFLICT (order_uid) DO NOTHING",
            &[&order.uid.as_str(), &document, &order.order.track_number, &order.order.customer_id, &order.order.date_created, &seq],
        )
        .await?;
    let stored = if inserted == 1 {
        Stored::Inserted
    } else {
        let row = tx
            .query_one(
                "SELECT document::text FROM orders WHERE order_uid = $1",
                &[&order.uid.as_str()],
            )
            .await?;
        let existing: &str = row.get(0);
        if existing == document {
            Stored::Duplicate
        } else {
            let reasons = serde_json::json!([{
                "pointer": "/order_uid",
                "message": format!("order {} is stored already with other content; the first version stays", order.uid),
            }]);
            insert_rejected_in(
                &tx,
                channel,
                seq,
                raw,
                "conflict",
                &reasons,
                Some(order.uid.as_str()),
            )
            .await?;
            Stored::Conflict
        }
    };
    tx.commit().await?;
    Ok(stored)
}

/// Stores a dead letter; a redelivery of the same message adds nothing.
pub async fn insert_rejected(
    pool: &Pool,
    rejection: &Rejection,
    channel: &str,
    seq: u64,
    raw: &[u8],
) -> Result<(), PoolError> {
    let conn = pool.get().await?;
    let reasons = serde_json::to_value(&rejection.reasons).unwrap_or_default();
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    insert_rejected_in(
        &*conn,
        channel,
        seq,
        raw,
        rejection.class.as_str(),
        &reasons,
        rejection.order_uid.as_deref(),
    )
    .await?;
    Ok(())
}

async fn insert_rejected_in(
    client: &impl GenericClient,
    channel: &str,
    seq: i64,
    raw: &[u8],
    class: &str,
    reasons: &serde_json::Value,
    order_uid: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO rejected_messages (channel, stan_sequence, payload, payload_sha256, reason_class, reasons, order_uid) \
             VALUES ($1, $2, $3, sha256($3), $4, $5::text::jsonb, $6) ON CONFLICT DO NOTHING",
            &[&channel, &seq, &raw, &class, &reasons.to_string(), &order_uid],
        )
        .await?;
    Ok(())
}

/// Every stored order as (order_uid, document), for rebuilding the cache.
pub async fn load_orders(pool: &Pool) -> anyhow::Result<Vec<(Box<str>, Bytes)>> {
    let conn = pool
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("Failed to connect to PostgreSQL: {e}"))?;
    let rows = conn
        .query("SELECT order_uid, document::text FROM orders", &[])
        .await
        .context("Failed to load orders")?;
    Ok(rows
        .iter()
        .map(|row| {
            let uid: &str = row.get(0);
            let document: String = row.get(1);
            (Box::from(uid), Bytes::from(document))
        })
        .collect())
}
