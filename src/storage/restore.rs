//! The streamed read of every stored order, to rebuild the cache at start.

use futures::{pin_mut, TryStreamExt};
use tokio_postgres::types::ToSql;

use crate::storage::{PersistError, Pool, RawJson};

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
