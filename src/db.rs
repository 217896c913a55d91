//! PostgreSQL: the pool, the migrations, the batch insert the persister commits, the streamed restore of the cache
//! and the paged listings.
//!
//! Orders are stored as their canonical document in a `json` column, byte for byte what the cache serves, plus a few
//! indexed key columns; they are never updated. Documents travel as raw bytes both ways (`RawJson`), so neither
//! side parses or re-serializes them.

use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::time::Duration;

use anyhow::Context;
use bb8_postgres::PostgresConnectionManager;
use bytes::BytesMut;
use chrono::{DateTime, Utc};
use futures::{pin_mut, TryStreamExt};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, Json, ToSql, Type};

use crate::configuration::DatabaseSettings;
use crate::db_tls::{self, Tls};
use crate::domain::{RejectClass, RejectReason, Rejection};

pub type Pool = bb8::Pool<PostgresConnectionManager<Tls>>;

/// A database failure. Every variant is treated as transient by the pipeline: the message is not acked.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("no database connection")]
    Pool(#[from] bb8::RunError<tokio_postgres::Error>),
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
    #[error("order {0} was neither inserted nor found")]
    Vanished(String),
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

/// Migrations in the order they apply; a unit test checks this list against `migrations/`.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "20240101000000_create_orders",
        include_str!("../migrations/20240101000000_create_orders.sql"),
    ),
    (
        "20240102000000_record_dead_letter_replays",
        include_str!("../migrations/20240102000000_record_dead_letter_replays.sql"),
    ),
];

/// Serializes concurrent `migrate` runs (several instances starting at once).
const MIGRATION_LOCK: i64 = 0x6f72_6465_7273; // "orders"

/// Connects once, to fail at start with the cause (the pool alone would only report a timeout), then builds the pool.
pub async fn build_pool(settings: &DatabaseSettings) -> anyhow::Result<Pool> {
    let mut config: tokio_postgres::Config = settings.url.parse().with_context(|| {
        format!(
            "DATABASE_URL {} is not a valid PostgreSQL URL",
            settings.redacted_url()
        )
    })?;
    let tls = db_tls::configure(settings, &mut config)?;
    let target = settings.redacted_url();
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
        .build(PostgresConnectionManager::new(config, tls))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "Failed to open the database pool at {target}: {}",
                error_chain(&e)
            )
        })
}

/// Applies the pending migrations in one transaction, under an advisory lock; returns the versions applied.
pub async fn migrate(pool: &Pool) -> anyhow::Result<Vec<&'static str>> {
    let mut conn = pool
        .get()
        .await
        .context("Failed to get a database connection")?;
    let tx = conn.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("Failed to take the migration lock")?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    text        PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .context("Failed to create schema_migrations")?;
    let applied: HashSet<String> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut newly_applied = Vec::new();
    for (version, sql) in MIGRATIONS {
        if applied.contains(*version) {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| anyhow::anyhow!("Migration {version} failed: {}", error_chain(&e)))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await?;
        newly_applied.push(*version);
    }
    tx.commit()
        .await
        .context("Failed to commit the migrations")?;
    Ok(newly_applied)
}

/// One round trip, for readiness.
pub async fn ping(pool: &Pool) -> Result<(), PersistError> {
    let conn = pool.get().await?;
    conn.simple_query("SELECT 1").await?;
    Ok(())
}

/// A JSON document as raw bytes: written to and read from a `json` column without parsing.
#[derive(Debug, Clone, Copy)]
pub struct RawJson<'a>(pub &'a [u8]);

impl ToSql for RawJson<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        // The binary format of `json` is its text.
        out.extend_from_slice(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for RawJson<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(RawJson(raw))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON
    }
}

/// A valid order to insert.
#[derive(Debug, Clone, Copy)]
pub struct OrderRow<'a> {
    pub uid: &'a str,
    /// The canonical document, stored and served as-is.
    pub document: &'a [u8],
    pub track_number: &'a str,
    pub customer_id: &'a str,
    pub date_created: Option<DateTime<Utc>>,
    pub sequence: u64,
    /// The message as delivered, kept if the order turns out to be a conflict.
    pub raw: &'a [u8],
}

/// A message that is not an order, to keep with its reasons.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterRow<'a> {
    pub sequence: u64,
    pub payload: &'a [u8],
    pub class: RejectClass,
    pub reasons: &'a [RejectReason],
    pub order_uid: Option<&'a str>,
}

/// What storing one order did.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    Inserted,
    /// The same order_uid with the same document was stored before (a redelivery or a re-publish).
    Duplicate,
    /// The same order_uid with other content: the first version stays, this message became a dead letter.
    Conflict(Rejection),
}

/// Stores a batch in one transaction: the orders (`ON CONFLICT DO NOTHING`), then the dead letters, including the
/// conflicts found among the orders. Returns one `Stored` per order, in order.
#[tracing::instrument(name = "Store batch", skip_all, fields(orders = orders.len(), dead_letters = dead_letters.len()))]
pub async fn store_batch(
    pool: &Pool,
    channel: &str,
    orders: &[OrderRow<'_>],
    dead_letters: &[DeadLetterRow<'_>],
) -> Result<Vec<Stored>, PersistError> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;

    // The first row of each order_uid is the one we try to insert; later ones are compared with what is stored.
    let mut first_of_uid: HashMap<&str, usize> = HashMap::with_capacity(orders.len());
    let candidates: Vec<&OrderRow> = orders
        .iter()
        .enumerate()
        .filter(|(i, row)| *first_of_uid.entry(row.uid).or_insert(*i) == *i)
        .map(|(_, row)| row)
        .collect();
    let inserted = insert_orders(&tx, &candidates).await?;
    let missing: Vec<&str> = candidates
        .iter()
        .map(|row| row.uid)
        .filter(|uid| !inserted.contains(*uid))
        .collect();
    let stored_documents = select_documents(&tx, &missing).await?;

    let mut results = Vec::with_capacity(orders.len());
    let mut conflicts: Vec<(usize, Rejection)> = Vec::new();
    for (i, row) in orders.iter().enumerate() {
        let stored = if inserted.contains(row.uid) {
            if first_of_uid.get(row.uid) == Some(&i) {
                results.push(Stored::Inserted);
                continue;
            }
            // Repeated within this batch: compare with the copy inserted just now.
            orders[first_of_uid[row.uid]].document
        } else {
            match stored_documents.get(row.uid) {
                Some(document) => document.as_slice(),
                None => return Err(PersistError::Vanished(row.uid.to_owned())),
            }
        };
        match compare_documents(stored, row.document) {
            None => results.push(Stored::Duplicate),
            Some(reasons) => {
                let rejection = Rejection {
                    class: RejectClass::Conflict,
                    reasons,
                    order_uid: Some(row.uid.to_owned()),
                };
                conflicts.push((i, rejection.clone()));
                results.push(Stored::Conflict(rejection));
            }
        }
    }

    let mut all_dead_letters: Vec<DeadLetterRow> = dead_letters.to_vec();
    all_dead_letters.extend(conflicts.iter().map(|(i, rejection)| DeadLetterRow {
        sequence: orders[*i].sequence,
        payload: orders[*i].raw,
        class: rejection.class,
        reasons: &rejection.reasons,
        order_uid: rejection.order_uid.as_deref(),
    }));
    insert_dead_letters(&tx, channel, &all_dead_letters).await?;
    tx.commit().await?;
    Ok(results)
}

/// Multi-row insert through UNNEST: one statement and one round trip for the whole batch.
async fn insert_orders(
    tx: &tokio_postgres::Transaction<'_>,
    rows: &[&OrderRow<'_>],
) -> Result<HashSet<String>, PersistError> {
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    let uids: Vec<&str> = rows.iter().map(|r| r.uid).collect();
    let documents: Vec<RawJson> = rows.iter().map(|r| RawJson(r.document)).collect();
    let track_numbers: Vec<&str> = rows.iter().map(|r| r.track_number).collect();
    let customer_ids: Vec<&str> = rows.iter().map(|r| r.customer_id).collect();
    let dates: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.date_created).collect();
    let sequences: Vec<i64> = rows.iter().map(|r| sequence_i64(r.sequence)).collect();
    let inserted = tx
        .query(
            "INSERT INTO orders (order_uid, document, track_number, customer_id, date_created, stan_sequence)
             SELECT * FROM UNNEST($1::text[], $2::json[], $3::text[], $4::text[], $5::timestamptz[], $6::int8[])
             ON CONFLICT (order_uid) DO NOTHING
             RETURNING order_uid",
            &[&uids, &documents, &track_numbers, &customer_ids, &dates, &sequences],
        )
        .await?;
    Ok(inserted.iter().map(|row| row.get(0)).collect())
}

async fn select_documents(
    tx: &tokio_postgres::Transaction<'_>,
    uids: &[&str],
) -> Result<HashMap<String, Vec<u8>>, PersistError> {
    if uids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = tx
        .query(
            "SELECT order_uid, document FROM orders WHERE order_uid = ANY($1)",
            &[&uids],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let uid: String = row.try_get(0)?;
            let document: RawJson = row.try_get(1)?;
            Ok((uid, document.0.to_vec()))
        })
        .collect()
}

async fn insert_dead_letters(
    tx: &tokio_postgres::Transaction<'_>,
    channel: &str,
    rows: &[DeadLetterRow<'_>],
) -> Result<(), PersistError> {
    if rows.is_empty() {
        return Ok(());
    }
    let sequences: Vec<i64> = rows.iter().map(|r| sequence_i64(r.sequence)).collect();
    let payloads: Vec<&[u8]> = rows.iter().map(|r| r.payload).collect();
    let classes: Vec<&str> = rows.iter().map(|r| r.class.as_str()).collect();
    let reasons: Vec<Json<&[RejectReason]>> = rows.iter().map(|r| Json(r.reasons)).collect();
    let order_uids: Vec<Option<&str>> = rows.iter().map(|r| r.order_uid).collect();
    tx.execute(
        "INSERT INTO rejected_messages
             (channel, stan_sequence, payload, payload_sha256, reason_class, reasons, order_uid)
         SELECT $1, s, p, sha256(p), c, r, u
         FROM UNNEST($2::int8[], $3::bytea[], $4::text[], $5::jsonb[], $6::text[]) AS t(s, p, c, r, u)
         ON CONFLICT (channel, stan_sequence, payload_sha256) DO NOTHING",
        &[&channel, &sequences, &payloads, &classes, &reasons, &order_uids],
    )
    .await?;
    Ok(())
}

/// STAN sequences are u64; PostgreSQL has i64. Real sequences never come near the limit.
fn sequence_i64(sequence: u64) -> i64 {
    i64::try_from(sequence).unwrap_or(i64::MAX)
}

/// Most differences listed in one conflict dead letter.
const MAX_DIFFERENCES: usize = 32;

/// `None` when the documents are the same order; otherwise the JSON pointers where the new one differs.
fn compare_documents(stored: &[u8], new: &[u8]) -> Option<Vec<RejectReason>> {
    if stored == new {
        return None;
    }
    // Byte-different documents may still be equal JSON (an older serializer): compare the values.
    let (Ok(stored), Ok(new)) = (
        serde_json::from_slice::<Value>(stored),
        serde_json::from_slice::<Value>(new),
    ) else {
        return Some(vec![conflict_reason(String::new())]);
    };
    if stored == new {
        return None;
    }
    let mut pointers = Vec::new();
    collect_differences(&stored, &new, String::new(), &mut pointers);
    Some(pointers.into_iter().map(conflict_reason).collect())
}

fn conflict_reason(pointer: String) -> RejectReason {
    RejectReason {
        pointer,
        message: "differs from the order stored under this order_uid; the first version stays"
            .into(),
    }
}

fn collect_differences(stored: &Value, new: &Value, pointer: String, out: &mut Vec<String>) {
    if out.len() >= MAX_DIFFERENCES || stored == new {
        return;
    }
    match (stored, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let (x, y) = (
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                );
                collect_differences(x, y, format!("{pointer}/{}", escape_pointer(key)), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                collect_differences(x, y, format!("{pointer}/{i}"), out);
            }
        }
        _ => out.push(pointer),
    }
}

/// RFC 6901 escaping of one pointer segment.
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Streams every stored order to `each(order_uid, document)`, row by row (no result set held in memory), and
/// returns how many there were. Used once at start to rebuild the cache.
pub async fn for_each_order(
    pool: &Pool,
    mut each: impl FnMut(&str, &[u8]),
) -> Result<u64, PersistError> {
    let conn = pool.get().await?;
    let rows = conn
        .query_raw(
            "SELECT order_uid, document FROM orders",
            std::iter::empty::<&(dyn ToSql + Sync)>(),
        )
        .await?;
    pin_mut!(rows);
    let mut count = 0;
    while let Some(row) = rows.try_next().await? {
        let uid: &str = row.try_get(0)?;
        let document: RawJson = row.try_get(1)?;
        each(uid, document.0);
        count += 1;
    }
    Ok(count)
}

/// One stored order, without its document, for listings.
#[derive(Debug, Serialize)]
pub struct OrderSummary {
    pub id: i64,
    pub order_uid: String,
    pub track_number: String,
    pub customer_id: String,
    pub date_created: Option<DateTime<Utc>>,
    pub stan_sequence: i64,
    pub ingested_at: DateTime<Utc>,
}

/// Newest first; `before` is the `id` of the last row of the previous page.
pub async fn list_orders(
    pool: &Pool,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<OrderSummary>, PersistError> {
    let conn = pool.get().await?;
    let rows = conn
        .query(
            "SELECT id, order_uid, track_number, customer_id, date_created, stan_sequence, ingested_at
             FROM orders WHERE ($2::int8 IS NULL OR id < $2) ORDER BY id DESC LIMIT $1",
            &[&limit, &before],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(OrderSummary {
                id: row.try_get(0)?,
                order_uid: row.try_get(1)?,
                track_number: row.try_get(2)?,
                customer_id: row.try_get(3)?,
                date_created: row.try_get(4)?,
                stan_sequence: row.try_get(5)?,
                ingested_at: row.try_get(6)?,
            })
        })
        .collect()
}

/// Longest payload excerpt a listing shows; the full bytes stay in the table.
const PAYLOAD_EXCERPT_BYTES: usize = 4096;

/// One dead letter, for listings.
#[derive(Debug, Serialize)]
pub struct RejectedMessage {
    pub id: i64,
    pub channel: String,
    pub stan_sequence: i64,
    pub reason_class: String,
    pub reasons: Value,
    pub order_uid: Option<String>,
    pub received_at: DateTime<Utc>,
    pub payload_bytes: usize,
    /// The start of the payload as text (invalid UTF-8 replaced by U+FFFD).
    pub payload_excerpt: String,
    /// How often an operator replayed it, and what the latest replay gave.
    pub replay_count: i32,
    pub replayed_at: Option<DateTime<Utc>>,
    pub replay_outcome: Option<String>,
    pub replay_reason_class: Option<String>,
    pub replay_reasons: Option<Value>,
}

/// Newest first; `before` is the `id` of the last row of the previous page.
pub async fn list_rejected(
    pool: &Pool,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<RejectedMessage>, PersistError> {
    let conn = pool.get().await?;
    let rows = conn
        .query(
            "SELECT id, channel, stan_sequence, reason_class, reasons, order_uid, received_at,
                    length(payload), substring(payload FROM 1 FOR $3),
                    replay_count, replayed_at, replay_outcome, replay_reason_class, replay_reasons
             FROM rejected_messages WHERE ($2::int8 IS NULL OR id < $2) ORDER BY id DESC LIMIT $1",
            &[&limit, &before, &(PAYLOAD_EXCERPT_BYTES as i32)],
        )
        .await?;
    rows.iter().map(rejected_message).collect()
}

/// One dead letter with its whole payload as text.
pub async fn get_rejected(pool: &Pool, id: i64) -> Result<Option<RejectedMessage>, PersistError> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            "SELECT id, channel, stan_sequence, reason_class, reasons, order_uid, received_at,
                    length(payload), payload,
                    replay_count, replayed_at, replay_outcome, replay_reason_class, replay_reasons
             FROM rejected_messages WHERE id = $1",
            &[&id],
        )
        .await?;
    row.as_ref().map(rejected_message).transpose()
}

fn rejected_message(row: &tokio_postgres::Row) -> Result<RejectedMessage, PersistError> {
    let length: i32 = row.try_get(7)?;
    let excerpt: &[u8] = row.try_get(8)?;
    Ok(RejectedMessage {
        id: row.try_get(0)?,
        channel: row.try_get(1)?,
        stan_sequence: row.try_get(2)?,
        reason_class: row.try_get(3)?,
        reasons: row.try_get(4)?,
        order_uid: row.try_get(5)?,
        received_at: row.try_get(6)?,
        payload_bytes: usize::try_from(length).unwrap_or(0),
        payload_excerpt: String::from_utf8_lossy(excerpt).into_owned(),
        replay_count: row.try_get(9)?,
        replayed_at: row.try_get(10)?,
        replay_outcome: row.try_get(11)?,
        replay_reason_class: row.try_get(12)?,
        replay_reasons: row.try_get(13)?,
    })
}

/// A dead letter as it arrived, for a replay.
#[derive(Debug)]
pub struct DeadLetter {
    pub id: i64,
    pub channel: String,
    pub stan_sequence: i64,
    pub payload: Vec<u8>,
}

pub async fn get_dead_letter(pool: &Pool, id: i64) -> Result<Option<DeadLetter>, PersistError> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            "SELECT id, channel, stan_sequence, payload FROM rejected_messages WHERE id = $1",
            &[&id],
        )
        .await?;
    row.map(|row| {
        Ok(DeadLetter {
            id: row.try_get(0)?,
            channel: row.try_get(1)?,
            stan_sequence: row.try_get(2)?,
            payload: row.try_get(3)?,
        })
    })
    .transpose()
}

/// What a replay gave: `persisted`, `duplicate` or `rejected` with the class and reasons.
#[derive(Debug, Clone, Copy)]
pub struct ReplayRecord<'a> {
    pub outcome: &'a str,
    pub reason_class: Option<&'a str>,
    pub reasons: &'a [RejectReason],
}

/// Notes a replay on its dead letter (after the pipeline committed its outcome).
pub async fn record_replay(
    pool: &Pool,
    id: i64,
    record: ReplayRecord<'_>,
) -> Result<(), PersistError> {
    let conn = pool.get().await?;
    let reasons = record.reason_class.map(|_| Json(record.reasons));
    conn.execute(
        "UPDATE rejected_messages
         SET replay_count = replay_count + 1, replayed_at = now(), replay_outcome = $2,
             replay_reason_class = $3, replay_reasons = $4
         WHERE id = $1",
        &[&id, &record.outcome, &record.reason_class, &reasons],
    )
    .await?;
    Ok(())
}

/// An error and its causes on one line ("a: b: c"): tokio-postgres puts the server's message in the source.
/// Secrets are masked (`redact::text`): a library's error may repeat a URL or a password it was given.
pub fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    crate::redact::text(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let mut files: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
                .expect("migrations directory")
                .filter_map(|entry| entry.ok())
                .filter_map(|entry| entry.file_name().into_string().ok())
                .filter_map(|name| name.strip_suffix(".sql").map(str::to_owned))
                .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|(version, _)| *version).collect();
        assert_eq!(listed, files);
    }

    #[test]
    fn equal_documents_are_duplicates_even_if_formatted_differently() {
        assert_eq!(compare_documents(br#"{"a":1}"#, br#"{"a":1}"#), None);
        assert_eq!(
            compare_documents(br#"{"a":1,"b":2}"#, br#"{ "b": 2, "a": 1 }"#),
            None
        );
    }

    #[test]
    fn conflicts_name_every_differing_pointer() {
        let reasons = compare_documents(
            br#"{"a":1,"d":{"city":"X","zip":"1"},"items":[{"p":1}]}"#,
            br#"{"a":1,"d":{"city":"Y","zip":"1"},"items":[{"p":2}],"e/x":0}"#,
        )
        .expect("a conflict");
        let pointers: Vec<&str> = reasons.iter().map(|r| r.pointer.as_str()).collect();
        assert_eq!(pointers, ["/d/city", "/e~1x", "/items/0/p"]);
    }
}
