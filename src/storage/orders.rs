//! The write path of the persister: one batch of orders and dead letters in one transaction.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio_postgres::types::Json;

use crate::domain::{compare_documents, RejectClass, RejectReason, Rejection};
use crate::storage::lookups::find_orders;
use crate::storage::{sequence_i64, PersistError, Pool, RawJson};

/// A valid order to insert.
#[derive(Debug, Clone, Copy)]
pub struct OrderRow<'a> {
    pub uid: &'a str,
    /// The canonical document, stored and served as-is.
    pub document: &'a [u8],
    pub track_number: &'a str,
    pub customer_id: &'a str,
    pub date_created: Option<DateTime<Utc>>,
    /// Where the delivery that stored it came from (`stan` or `jetstream`, and its channel or stream), kept with
    /// a conflict's dead letter.
    pub source: &'a str,
    pub channel: &'a str,
    /// Its sequence in that channel or stream.
    pub sequence: u64,
    /// The message as delivered, kept if the order turns out to be a conflict.
    pub raw: &'a [u8],
}

/// A message that is not an order, to keep with its reasons.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterRow<'a> {
    /// `stan` or `jetstream`.
    pub source: &'a str,
    /// The STAN channel or JetStream stream.
    pub channel: &'a str,
    /// The sequence in that channel or stream.
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
    let stored_documents: HashMap<String, Bytes> =
        find_orders(&tx, &missing).await?.into_iter().collect();

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
                Some(document) => document.as_ref(),
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
        source: orders[*i].source,
        channel: orders[*i].channel,
        sequence: orders[*i].sequence,
        payload: orders[*i].raw,
        class: rejection.class,
        reasons: &rejection.reasons,
        order_uid: rejection.order_uid.as_deref(),
    }));
    insert_dead_letters(&tx, &all_dead_letters).await?;
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

async fn insert_dead_letters(
    tx: &tokio_postgres::Transaction<'_>,
    rows: &[DeadLetterRow<'_>],
) -> Result<(), PersistError> {
    if rows.is_empty() {
        return Ok(());
    }
    let sources: Vec<&str> = rows.iter().map(|r| r.source).collect();
    let channels: Vec<&str> = rows.iter().map(|r| r.channel).collect();
    let sequences: Vec<i64> = rows.iter().map(|r| sequence_i64(r.sequence)).collect();
    let payloads: Vec<&[u8]> = rows.iter().map(|r| r.payload).collect();
    let classes: Vec<&str> = rows.iter().map(|r| r.class.as_str()).collect();
    let reasons: Vec<Json<&[RejectReason]>> = rows.iter().map(|r| Json(r.reasons)).collect();
    let order_uids: Vec<Option<&str>> = rows.iter().map(|r| r.order_uid).collect();
    tx.execute(
        "INSERT INTO rejected_messages
             (source, channel, stan_sequence, payload, payload_sha256, reason_class, reasons, order_uid)
         SELECT src, ch, s, p, sha256(p), c, r, u
         FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::bytea[], $5::text[], $6::jsonb[], $7::text[])
             AS t(src, ch, s, p, c, r, u)
         ON CONFLICT (source, channel, stan_sequence, payload_sha256) DO NOTHING",
        &[&sources, &channels, &sequences, &payloads, &classes, &reasons, &order_uids],
    )
    .await?;
    Ok(())
}
