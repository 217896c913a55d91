//! PostgreSQL access: pool, migrations, order and dead-letter storage.

use anyhow::Context;
use bb8_postgres::PostgresConnectionManager;
use bytes::Bytes;
use tokio_postgres::NoTls;

/// Shared connection pool.
pub type Pool = bb8::Pool<PostgresConnectionManager<NoTls>>;

/// Migrations compiled into the binary, applied in order.
const MIGRATIONS: &[(&str, &str)] = &[(
    "20240101000000_create_orders",
    include_str!("../migrations/20240101000000_create_orders.sql"),
)];

/// Arbitrary constant so concurrent instances do not migrate at the same time.
const MIGRATION_LOCK_KEY: i64 = 0x6f72_6465_7273;

/// Opens a pool; fails if the database cannot be reached.
pub async fn connect(url: &str, size: u32) -> anyhow::Result<Pool> {
    let manager = PostgresConnectionManager::new_from_stringlike(url, NoTls)
        .context("invalid DATABASE_URL")?;
    let pool = bb8::Pool::builder()
        .max_size(size)
        .connection_timeout(std::time::Duration::from_secs(10))
        .build(manager)
        .await
        .context("cannot build the database pool")?;
    pool.get()
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))?;
    Ok(pool)
}

/// Applies pending migrations under an advisory lock.
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("cannot get a connection: {e}"))?;
    conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let result = async {
        conn.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        for (version, sql) in MIGRATIONS {
            let tx = conn.transaction().await?;
            let done = tx
                .query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[version])
                .await?
                .is_some();
            if !done {
                tx.batch_execute(sql).await?;
                tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[version])
                    .await?;
            }
            tx.commit().await?;
        }
        anyhow::Ok(())
    }
    .await;
    conn.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    result.context("migration failed")
}

/// What happened to an order we tried to store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// Same uid, same document: already stored.
    Duplicate,
    /// Same uid, different document: the caller dead-letters it.
    Conflict,
}

/// Columns of an order row besides the document.
pub struct NewOrder<'a> {
    pub order_uid: &'a str,
    pub document: &'a str,
    pub track_number: &'a str,
    pub customer_id: &'a str,
    pub date_created: Option<chrono::DateTime<chrono::Utc>>,
    pub stan_sequence: i64,
}

/// Stores one order unless its uid is already stored.
pub async fn insert_order(pool: &Pool, order: &NewOrder<'_>) -> anyhow::Result<InsertOutcome> {
    let conn = pool
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("cannot get a connection: {e}"))?;
    let inserted = conn
        .query_opt(
            "INSERT INTO orders (order_uid, document, track_number, customer_id, date_created, stan_sequence) \
             VALUES ($1, $2::text::json, $3, $4, $5, $6) ON CONFLICT (order_uid) DO NOTHING RETURNING id",
            &[
                &order.order_uid,
                &order.document,
                &order.track_number,
                &order.customer_id,
                &order.date_created,
                &order.stan_sequence,
            ],
        )
        .await?;
    if inserted.is_some() {
        return Ok(InsertOutcome::Inserted);
    }
    let row = conn
        .query_one("SELECT document::text FROM orders WHERE order_uid = $1", &[&order.order_uid])
        .await?;
    let stored: &str = row.get(0);
    Ok(if stored == order.document {
        InsertOutcome::Duplicate
    } else {
        InsertOutcome::Conflict
    })
}

/// A message that is not a storable order.
pub struct DeadLetter<'a> {
    pub channel: &'a str,
    pub stan_sequence: i64,
    pub payload: &'a [u8],
    pub reason_class: &'a str,
    pub reasons: serde_json::Value,
    pub order_uid: Option<&'a str>,
}

/// Stores a dead letter; a redelivery of the same message is ignored.
pub async fn insert_dead_letter(pool: &Pool, letter: &DeadLetter<'_>) -> anyhow::Result<()> {
    let conn = pool
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("cannot get a connection: {e}"))?;
    conn.execute(
        "INSERT INTO rejected_messages (channel, stan_sequence, payload, payload_sha256, reason_class, reasons, order_uid) \
         VALUES ($1, $2, $3, sha256($3), $4, $5, $6) ON CONFLICT DO NOTHING",
        &[
            &letter.channel,
            &letter.stan_sequence,
            &letter.payload,
            &letter.reason_class,
            &letter.reasons,
            &letter.order_uid,
        ],
    )
    .await?;
    Ok(())
}

/// Every stored order as (uid, document), for warming the cache at start.
pub async fn load_all_orders(pool: &Pool) -> anyhow::Result<Vec<(Box<str>, Bytes)>> {
    let conn = pool
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("cannot get a connection: {e}"))?;
    let rows = conn
        .query("SELECT order_uid, document::text FROM orders", &[])
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let uid: &str = row.get(0);
            let doc: String = row.get(1);
            (Box::from(uid), Bytes::from(doc))
        })
        .collect())
}

/// Summary row for GET /orders.
#[derive(Debug, serde::Serialize)]
pub struct OrderSummary {
    pub id: i64,
    pub order_uid: String,
    pub track_number: Option<String>,
    pub customer_id: Option<String>,
    pub date_created: Option<chrono::DateTime<chrono::Utc>>,
}

/// Newest first, `limit` rows with id below `before`.
pub async fn list_orders(pool: &Pool, limit: i64, before: Option<i64>) -> anyhow::Result<Vec<OrderSummary>> {
    let conn = pool
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("cannot get a connection: {e}"))?;
    let rows = conn
        .query(
            "SELECT id, order_uid, track_number, customer_id, date_created FROM orders \
             WHERE ($1::bigint IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
            &[&before, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| OrderSummary {
            id: r.get(0),
            order_uid: r.get(1),
            track_number: r.get(2),
            customer_id: r.get(3),
            date_created: r.get(4),
        })
        .collect())
}

/// Dead letter row for GET /rejected.
#[derive(Debug, serde::Serialize)]
pub struct RejectedSummary {
    pub id: i64,
    pub channel: String,
    pub stan_sequence: i64,
    pub reason_class: String,
    pub reasons: serde_json::Value,
    pub order_uid: Option<String>,
    pub received_at: Option<chrono::DateTime<chrono::Utc>>,
    pub payload: String,
}

/// How much of a rejected payload the listing shows.
const PAYLOAD_PREVIEW_BYTES: usize = 4096;

/// Newest first, `limit` rows with id below `before`.
pub async fn list_rejected(pool: &Pool, limit: i64, before: Option<i64>) -> anyhow::Result<Vec<RejectedSummary>> {
    let conn = pool
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("cannot get a connection: {e}"))?;
    let rows = conn
        .query(
            "SELECT id, channel, stan_sequence, reason_class, reasons, order_uid, received_at, \
             substring(payload from 1 for 4096) FROM rejected_messages \
             WHERE ($1::bigint IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
            &[&before, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let payload: Vec<u8> = r.get(7);
            let shown = &payload[..payload.len().min(PAYLOAD_PREVIEW_BYTES)];
            RejectedSummary {
                id: r.get(0),
                channel: r.get(1),
                stan_sequence: r.get(2),
                reason_class: r.get(3),
                reasons: r.get(4),
                order_uid: r.get(5),
                received_at: r.get(6),
                payload: String::from_utf8_lossy(shown).into_owned(),
            }
        })
        .collect())
}

/// True if a trivial query answers.
pub async fn is_reachable(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(conn) => conn.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}
