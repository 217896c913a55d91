//! The queries behind the change feed (`crate::cache::feed`); the restore it starts from is in `restore`.
//!
//! The cursor is (xid, id): the inserting transaction's id (column `xid`, migration V3) and the row id. A read
//! takes only rows whose transaction is below the xmin of the statement's own snapshot (`pg_current_snapshot()` in
//! a READ COMMITTED statement is the snapshot the statement reads with): every transaction below it has ended, so
//! all of its rows are visible to the read, and any row committed later has an xid at or above that xmin, which is
//! above the cursor. So no row can ever land behind the cursor, whatever order transactions commit in.

use crate::storage::{Connection, PersistError};

// Both queries are prepared once per connection, so after a few runs PostgreSQL may plan them without their
// parameters (a generic plan). Each is ordered by the (xid, id) index and limited, which only an index scan can
// serve cheaply whatever the parameters; the first form of `HAS_ROWS_AFTER`, an `EXISTS`, got a sequential scan
// in its generic plan (it expects a third of the rows past any cursor) and read the whole table on every wake-up.

/// The next committed rows after a cursor, below the statement snapshot's xmin (see the module's head).
pub const READ_AFTER: &str = "SELECT o.xid::text::int8, o.id, o.order_uid,
        extract(epoch FROM clock_timestamp() - o.ingested_at)::float8
    FROM orders o
    WHERE (o.xid, o.id) > ($1::int8::text::xid8, $2::int8)
      AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
      AND ($4::text IS NULL OR NOT pg_visible_in_snapshot(o.xid, $4::text::pg_snapshot))
    ORDER BY o.xid, o.id
    LIMIT $3";
/// Whether any committed row lies after a cursor, held back or not.
pub const HAS_ROWS_AFTER: &str =
    "SELECT 1 FROM orders WHERE (xid, id) > ($1::int8::text::xid8, $2::int8)
    ORDER BY xid, id LIMIT 1";

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
    conn: &mut Connection,
    after: FeedCursor,
    skip: Option<&str>,
    limit: i64,
) -> Result<Vec<FeedRow>, PersistError> {
    let statement = conn.prepared(READ_AFTER).await?;
    let rows = conn
        .query(&statement, &[&after.xid, &after.id, &limit, &skip])
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
pub async fn has_rows_after(
    conn: &mut Connection,
    after: FeedCursor,
) -> Result<bool, PersistError> {
    let statement = conn.prepared(HAS_ROWS_AFTER).await?;
    let row = conn.query_opt(&statement, &[&after.xid, &after.id]).await?;
    Ok(row.is_some())
}
