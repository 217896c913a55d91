//! The read of the stored orders that rebuilds the cache at start, and where the change feed then starts.

use futures::{pin_mut, TryStreamExt};
use tokio_postgres::types::ToSql;
use tokio_postgres::IsolationLevel;

use crate::storage::feed::{FeedCursor, FeedStart};
use crate::storage::{PersistError, Pool, RawJson};

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

/// About how many orders are stored, from the planner's statistics (no scan): to size what the restore fills.
/// 0 when the table was never analyzed.
pub async fn estimated_orders(pool: &Pool) -> Result<usize, PersistError> {
    let conn = pool.get().await?;
    let row = conn
        .query_one(
            "SELECT reltuples::int8 FROM pg_class WHERE oid = 'orders'::regclass",
            &[],
        )
        .await?;
    let estimate: i64 = row.try_get(0)?;
    Ok(usize::try_from(estimate).unwrap_or(0))
}
