//! The queries behind the change feed, the read-through of missed orders and the restore the feed starts from.
//!
//! The cursor is (xid, id): the inserting transaction's id (column `xid`, migration V3) and the row id. A read
//! takes only rows whose transaction is below the xmin of the statement's own snapshot (`pg_current_snapshot()` in
//! a READ COMMITTED statement is the snapshot the statement reads with): every transaction below it has ended, so
//! all of its rows are visible to the read, and any row committed later has an xid at or above that xmin, which is
//! above the cursor. So no row can ever land behind the cursor, whatever order transactions commit in.

use bytes::Bytes;
use futures::{pin_mut, TryStreamExt};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, IsolationLevel};

use crate::db::{PersistError, Pool, RawJson};

/// A position in the feed: every row at or before it was delivered. Ordered as the rows are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeedCursor {
    /// A transaction id (xid8 as i64: xid8 counts from 0 and will not reach 2^63).
    pub xid: i64,
    pub id: i64,
}

/// Where a feed starts: at a restore's snapshot.
#[derive(Debug, Clone)]
pub struct FeedStart {
    /// At the snapshot's xmin: every row of a transaction below it was in the snapshot.
    pub cursor: FeedCursor,
    /// The snapshot (`pg_snapshot` text). Rows visible in it were restored, or left out by the cache's bound; the
    /// feed skips them, so a bounded cache is not filled with old orders that the restore chose to leave out.
    pub snapshot: String,
    /// The snapshot's xmax: rows of later transactions were all invisible to it, so past it nothing is skipped.
    pub snapshot_xmax: i64,
}

/// One order passed by the feed's cursor (without its document: most are this instance's own, cached already).
#[derive(Debug, Clone)]
pub struct FeedRow {
    pub cursor: FeedCursor,
    pub uid: String,
    /// Seconds from the start of its transaction (`ingested_at`) to this read, by the database's clock.
    pub lag_seconds: f64,
}

/// The next rows after `after` whose transactions have ended, in cursor order, at most `limit`; rows visible in
/// `skip` (a restore's snapshot) are left out.
pub async fn read_after(
    client: &Client,
    after: FeedCursor,
    skip: Option<&str>,
    limit: i64,
) -> Result<Vec<FeedRow>, PersistError> {
    let rows = client
        .query(
            "SELECT o.xid::text::int8, o.id, o.order_uid,
                    extract(epoch FROM clock_timestamp() - o.ingested_at)::float8
             FROM orders o
             WHERE (o.xid, o.id) > ($1::int8::text::xid8, $2::int8)
               AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
               AND ($4::text IS NULL OR NOT pg_visible_in_snapshot(o.xid, $4::text::pg_snapshot))
             ORDER BY o.xid, o.id
             LIMIT $3",
            &[&after.xid, &after.id, &limit, &skip],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(FeedRow {
                cursor: FeedCursor {
                    xid: row.try_get(0)?,
                    id: row.try_get(1)?,
                },
                uid: row.try_get(2)?,
                lag_seconds: row.try_get(3)?,
            })
        })
        .collect()
}

/// True when committed rows lie after `after` (some may be held back by an older transaction still running).
pub async fn has_rows_after(client: &Client, after: FeedCursor) -> Result<bool, PersistError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM orders WHERE (xid, id) > ($1::int8::text::xid8, $2::int8))",
            &[&after.xid, &after.id],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// The stored orders among `uids`: (order_uid, document). For misses of the cache and for the feed.
pub async fn find_orders(
    client: &Client,
    uids: &[&str],
) -> Result<Vec<(String, Bytes)>, PersistError> {
    if uids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT order_uid, document FROM orders WHERE order_uid = ANY($1)",
            &[&uids],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let document: RawJson = row.try_get(1)?;
            Ok((row.try_get(0)?, Bytes::copy_from_slice(document.0)))
        })
        .collect()
}

/// `find_orders` on a connection of the pool.
pub async fn find_orders_pooled(
    pool: &Pool,
    uids: &[&str],
) -> Result<Vec<(String, Bytes)>, PersistError> {
    let conn = pool.get().await?;
    find_orders(&conn, uids).await
}

/// Rows per page of a bounded restore.
const RESTORE_PAGE: i64 = 1000;

/// Streams the stored orders to `each(order_uid, document)` from one REPEATABLE READ snapshot and returns where
/// the feed starts: at that snapshot's xmin, skipping what the snapshot saw. Every row of a transaction below the
/// xmin is in the snapshot, so the feed misses nothing. `bounded`: the newest orders first, until `each` returns
/// false (the caller's bound is full); else every order, in table order.
pub async fn restore(
    pool: &Pool,
    bounded: bool,
    mut each: impl FnMut(&str, &[u8]) -> bool,
) -> Result<FeedStart, PersistError> {
    let mut conn = pool.get().await?;
    let tx = conn
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    // The first statement takes the snapshot that every later one in this transaction reads.
    let snapshot = tx
        .query_one(
            "SELECT pg_snapshot_xmin(s)::text::int8, pg_snapshot_xmax(s)::text::int8, s::text
             FROM pg_current_snapshot() AS s",
            &[],
        )
        .await?;
    let start = FeedStart {
        cursor: FeedCursor {
            xid: snapshot.try_get(0)?,
            id: 0,
        },
        snapshot_xmax: snapshot.try_get(1)?,
        snapshot: snapshot.try_get(2)?,
    };
    if bounded {
        let mut before = i64::MAX;
        'pages: loop {
            let rows = tx
                .query(
                    "SELECT id, order_uid, document FROM orders WHERE id < $1 ORDER BY id DESC LIMIT $2",
                    &[&before, &RESTORE_PAGE],
                )
                .await?;
            for row in &rows {
                before = row.try_get(0)?;
                let document: RawJson = row.try_get(2)?;
                if !each(row.try_get(1)?, document.0) {
                    break 'pages;
                }
            }
            if (rows.len() as i64) < RESTORE_PAGE {
                break;
            }
        }
    } else {
        // Row by row: no result set held in memory.
        let rows = tx
            .query_raw(
                "SELECT order_uid, document FROM orders",
                std::iter::empty::<&(dyn ToSql + Sync)>(),
            )
            .await?;
        pin_mut!(rows);
        while let Some(row) = rows.try_next().await? {
            let document: RawJson = row.try_get(1)?;
            each(row.try_get(0)?, document.0);
        }
    }
    tx.commit().await?;
    Ok(start)
}
