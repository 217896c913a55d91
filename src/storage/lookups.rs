//! Orders by id, for the misses of the cache (read-through) and the documents the change feed delivers.

use bytes::Bytes;
use tokio_postgres::GenericClient;

use crate::storage::{PersistError, Pool, RawJson};

/// The stored orders among `uids`: (order_uid, document). For misses of the cache, the feed, and the batch write's
/// comparison of a conflicting order with the stored one (inside its transaction).
pub async fn find_orders(
    client: &impl GenericClient,
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
    find_orders(conn.client(), uids).await
}
