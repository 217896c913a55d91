//! The queries behind the listing routes. They return plain rows; the JSON the API answers is shaped in `routes/`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::storage::{PersistError, Pool};

/// One stored order, without its document.
#[derive(Debug)]
pub struct OrderListRow {
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
) -> Result<Vec<OrderListRow>, PersistError> {
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
            Ok(OrderListRow {
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

/// Longest start of a payload a listing reads (the route shows less); the full bytes stay in the table.
const PAYLOAD_START_BYTES: i32 = 256;

/// One dead letter, with the start of its payload.
#[derive(Debug)]
pub struct DeadLetterListRow {
    pub id: i64,
    pub source: String,
    pub channel: String,
    pub stan_sequence: i64,
    pub reason_class: String,
    pub reasons: Value,
    pub order_uid: Option<String>,
    pub received_at: DateTime<Utc>,
    /// The whole payload's length in bytes.
    pub payload_length: i32,
    /// At most `PAYLOAD_START_BYTES` of the payload in a listing; all of it from `get_rejected`.
    pub payload_start: Vec<u8>,
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
) -> Result<Vec<DeadLetterListRow>, PersistError> {
    let conn = pool.get().await?;
    let rows = conn
        .query(
            "SELECT id, channel, stan_sequence, reason_class, reasons, order_uid, received_at,
                    length(payload), substring(payload FROM 1 FOR $3),
                    replay_count, replayed_at, replay_outcome, replay_reason_class, replay_reasons, source
             FROM rejected_messages WHERE ($2::int8 IS NULL OR id < $2) ORDER BY id DESC LIMIT $1",
            &[&limit, &before, &PAYLOAD_START_BYTES],
        )
        .await?;
    rows.iter().map(dead_letter_row).collect()
}

/// One dead letter with its whole payload.
pub async fn get_rejected(pool: &Pool, id: i64) -> Result<Option<DeadLetterListRow>, PersistError> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            "SELECT id, channel, stan_sequence, reason_class, reasons, order_uid, received_at,
                    length(payload), payload,
                    replay_count, replayed_at, replay_outcome, replay_reason_class, replay_reasons, source
             FROM rejected_messages WHERE id = $1",
            &[&id],
        )
        .await?;
    row.as_ref().map(dead_letter_row).transpose()
}

fn dead_letter_row(row: &tokio_postgres::Row) -> Result<DeadLetterListRow, PersistError> {
    Ok(DeadLetterListRow {
        id: row.try_get(0)?,
        source: row.try_get(14)?,
        channel: row.try_get(1)?,
        stan_sequence: row.try_get(2)?,
        reason_class: row.try_get(3)?,
        reasons: row.try_get(4)?,
        order_uid: row.try_get(5)?,
        received_at: row.try_get(6)?,
        payload_length: row.try_get(7)?,
        payload_start: row.try_get(8)?,
        replay_count: row.try_get(9)?,
        replayed_at: row.try_get(10)?,
        replay_outcome: row.try_get(11)?,
        replay_reason_class: row.try_get(12)?,
        replay_reasons: row.try_get(13)?,
    })
}
