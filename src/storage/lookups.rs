//! Orders by id, for the misses of the cache (read-through), the documents the change feed delivers and the batch
//! write's conflicts.

use bytes::Bytes;

use crate::storage::{Connection, PersistError, Pool, RawJson};

const FIND_ORDERS: &str = "SELECT order_uid, document FROM orders WHERE order_uid = ANY($1)";

/// The stored orders among `uids`: (order_uid, document), with the statement prepared once per connection. For the
/// misses of the cache, the documents the change feed delivers, and the batch write's comparison of a conflicting
/// order with the stored one.
pub async fn find_orders(
    conn: &mut Connection,
    uids: &[&str],
) -> Result<Vec<(String, Bytes)>, PersistError> {
    if uids.is_empty() {
        return Ok(Vec::new());
    }
    let statement = conn.prepared(FIND_ORDERS).await?;
    let rows = conn.query(&statement, &[&uids]).await?;
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
    let mut conn = pool.get().await?;
    find_orders(&mut conn, uids).await
}
