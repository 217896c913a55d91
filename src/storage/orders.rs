//! The write path of the persister: one batch of orders and dead letters, acked only once all of it is committed.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, Type};
use tokio_postgres::{GenericClient, Statement, Transaction};

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

/// Stores a batch: the orders, then the dead letters, including the conflicts found among the orders. Returns one
/// `Stored` per order, in order, once everything is committed.
///
/// Almost always no order of a batch is stored yet, so the orders of a large batch go in with `COPY ... BINARY`,
/// which PostgreSQL writes in bulk, without the speculative insertion of `ON CONFLICT` for each row, in one
/// transaction with the dead letters. When one is stored (a redelivery after a lost ack, a re-publish, another
/// instance), the COPY fails on the primary key, its transaction is rolled back, and the batch is stored again with
/// `INSERT ... ON CONFLICT DO NOTHING`, which tells the duplicates and conflicts apart. A small batch (below
/// `COPY_FROM`) takes that INSERT at once.
///
/// The INSERT and what follows it run without BEGIN and COMMIT: each statement commits on its own, so a lone order is
/// one round trip to PostgreSQL instead of three (at low rates those round trips are most of its latency). The batch
/// needs no transaction around them: each is idempotent (orders and dead letters both skip what is stored), and
/// nothing is acked before the last has committed. If a later statement fails, the batch is retried and finds its
/// orders stored, as after a lost ack: duplicates, acked.
#[tracing::instrument(name = "Store batch", skip_all, fields(orders = orders.len(), dead_letters = dead_letters.len()))]
pub async fn store_batch(
    pool: &Pool,
    orders: &[OrderRow<'_>],
    dead_letters: &[DeadLetterRow<'_>],
) -> Result<Vec<Stored>, PersistError> {
    let mut conn = pool.get().await?;

    // The first row of each order_uid is the one we try to insert; later ones are compared with what is stored.
    let mut first_of_uid: HashMap<&str, usize> = HashMap::with_capacity(orders.len());
    let candidates: Vec<&OrderRow> = orders
        .iter()
        .enumerate()
        .filter(|(i, row)| *first_of_uid.entry(row.uid).or_insert(*i) == *i)
        .map(|(_, row)| row)
        .collect();

    if candidates.len() >= COPY_FROM {
        let copy = conn.prepared(COPY_ORDERS).await?;
        let tx = conn.transaction().await?;
        match copy_orders(&tx, &copy, &candidates).await {
            Ok(()) => {
                let written = Written {
                    inserted: Inserted::All,
                    stored_documents: HashMap::new(),
                };
                let results = settle(orders, &first_of_uid, &written)?;
                insert_dead_letters(&tx, &with_conflicts(dead_letters, orders, &results)).await?;
                tx.commit().await?;
                return Ok(results);
            }
            Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                tx.rollback().await?
            }
            Err(error) => return Err(error),
        }
    }

    let insert = conn.prepared(INSERT_ORDERS).await?;
    let inserted = insert_orders(conn.client(), &insert, &candidates).await?;
    let missing: Vec<&str> = candidates
        .iter()
        .map(|row| row.uid)
        .filter(|uid| !inserted.contains(*uid))
        .collect();
    let stored_documents = find_orders(&mut conn, &missing)
        .await?
        .into_iter()
        .collect();
    let written = Written {
        inserted: Inserted::These(inserted),
        stored_documents,
    };
    let results = settle(orders, &first_of_uid, &written)?;
    insert_dead_letters(
        conn.client(),
        &with_conflicts(dead_letters, orders, &results),
    )
    .await?;
    Ok(results)
}

/// Which of the batch's first rows per order_uid went in.
enum Inserted {
    All,
    These(HashSet<String>),
}

impl Inserted {
    fn contains(&self, uid: &str) -> bool {
        match self {
            Inserted::All => true,
            Inserted::These(uids) => uids.contains(uid),
        }
    }
}

/// What the orders' statement did: which went in, and the stored documents of those that did not.
struct Written {
    inserted: Inserted,
    stored_documents: HashMap<String, Bytes>,
}

/// Tells each order's fate from what was written.
fn settle(
    orders: &[OrderRow<'_>],
    first_of_uid: &HashMap<&str, usize>,
    written: &Written,
) -> Result<Vec<Stored>, PersistError> {
    let mut results = Vec::with_capacity(orders.len());
    for (i, row) in orders.iter().enumerate() {
        let stored = if written.inserted.contains(row.uid) {
            if first_of_uid.get(row.uid) == Some(&i) {
                results.push(Stored::Inserted);
                continue;
            }
            // Repeated within this batch: compare with the copy inserted just now.
            orders[first_of_uid[row.uid]].document
        } else {
            match written.stored_documents.get(row.uid) {
                Some(document) => document.as_ref(),
                None => return Err(PersistError::Vanished(row.uid.to_owned())),
            }
        };
        results.push(match compare_documents(stored, row.document) {
            None => Stored::Duplicate,
            Some(reasons) => Stored::Conflict(Rejection {
                class: RejectClass::Conflict,
                reasons,
                order_uid: Some(row.uid.to_owned()),
            }),
        });
    }
    Ok(results)
}

/// The batch's dead letters and its conflicts (each kept as the message was delivered, with its reasons).
fn with_conflicts<'a>(
    dead_letters: &[DeadLetterRow<'a>],
    orders: &[OrderRow<'a>],
    results: &'a [Stored],
) -> Vec<DeadLetterRow<'a>> {
    let conflicts = orders
        .iter()
        .zip(results)
        .filter_map(|(row, result)| match result {
            Stored::Conflict(rejection) => Some(DeadLetterRow {
                source: row.source,
                channel: row.channel,
                sequence: row.sequence,
                payload: row.raw,
                class: rejection.class,
                reasons: &rejection.reasons,
                order_uid: rejection.order_uid.as_deref(),
            }),
            Stored::Inserted | Stored::Duplicate => None,
        });
    dead_letters.iter().copied().chain(conflicts).collect()
}

/// Orders in a batch from which COPY is tried first.
pub const COPY_FROM: usize = 16;

/// The columns the orders' writes fill (a macro, for `concat!`), and their types for the binary COPY.
macro_rules! order_columns {
    () => {
        "order_uid, document, track_number, customer_id, date_created, stan_sequence"
    };
}
const COPY_ORDERS: &str = concat!(
    "COPY orders (",
    order_columns!(),
    ") FROM STDIN (FORMAT binary)"
);
const INSERT_ORDERS: &str = concat!(
    "INSERT INTO orders (",
    order_columns!(),
    ")
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::int8[])
     ON CONFLICT (order_uid) DO NOTHING
     RETURNING order_uid"
);
const ORDER_COLUMN_TYPES: [Type; 6] = [
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::INT8,
];

/// `COPY orders FROM STDIN BINARY`: fails with a unique violation if any of the orders is stored already.
async fn copy_orders(
    tx: &Transaction<'_>,
    copy: &Statement,
    rows: &[&OrderRow<'_>],
) -> Result<(), PersistError> {
    let sink = tx.copy_in(copy).await?;
    let writer = BinaryCopyInWriter::new(sink, &ORDER_COLUMN_TYPES);
    pin_mut!(writer);
    for row in rows {
        let sequence = sequence_i64(row.sequence);
        writer
            .as_mut()
            .write(&[
                &row.uid,
                &RawJson(row.document),
                &row.track_number,
                &row.customer_id,
                &row.date_created,
                &sequence,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Multi-row insert through UNNEST, skipping the orders stored already: one statement for the whole batch.
async fn insert_orders(
    client: &impl GenericClient,
    insert: &Statement,
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
    let inserted = client
        .query(
            insert,
            &[
                &uids,
                &documents,
                &track_numbers,
                &customer_ids,
                &dates,
                &sequences,
            ],
        )
        .await?;
    Ok(inserted.iter().map(|row| row.get(0)).collect())
}

async fn insert_dead_letters(
    client: &impl GenericClient,
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
    client
        .execute(
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
