//! One dead letter, read for a replay, and the record of what the replay gave.

use tokio_postgres::types::Json;

use crate::domain::RejectReason;
use crate::storage::{PersistError, Pool};

/// A dead letter as it arrived, for a replay.
#[derive(Debug)]
pub struct DeadLetter {
    pub id: i64,
    /// `stan` or `jetstream`.
    pub source: String,
    /// The STAN channel or JetStream stream.
    pub channel: String,
    pub stan_sequence: i64,
    pub payload: Vec<u8>,
}

/// The dead letter with this id, if there is one.
pub async fn get_dead_letter(pool: &Pool, id: i64) -> Result<Option<DeadLetter>, PersistError> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            "SELECT id, channel, stan_sequence, payload, source FROM rejected_messages WHERE id = $1",
            &[&id],
        )
        .await?;
    row.map(|row| {
        Ok(DeadLetter {
            id: row.try_get(0)?,
            source: row.try_get(4)?,
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
