//! Orders by id, for the misses of the cache (read-through) and the documents the change feed delivers.

use bytes::Bytes;
use tokio_postgres::GenericClient;
use tokio_postgres::ToStatement;

use crate::storage::{Connection, PersistError, Pool, RawJson};

const FIND_ORDERS: &str = "SELECT order_uid, document FROM orders WHERE order_uid = ANY($1)";

/// The stored orders among `uids`: (order_uid, document), for the batch write's comparison of a conflicting order
/// with the stored one (it is rare, so the statement is not kept).
pub async fn find_orders(
    client: &impl GenericClient,
    uids: &[&str],
) -> Result<Vec<(String, Bytes)>, PersistError> {
    query_orders(client, FIND_ORDERS, uids).await
}

/// `find_orders` with the statement prepared once per connection: for the misses of the cache and the documents the
/// change feed delivers.
pub async fn find_orders_prepared(
    conn: &mut Connection,
    uids: &[&str],
) -> Result<Vec<(String, Bytes)>, PersistError> {
    if uids.is_empty() {
        return Ok(Vec::new());
    }
    let statement = conn.prepared(FIND_ORDERS).await?;
    query_orders(conn.client(), &statement, uids).await
}

/// `find_orders_prepared` on a connection of the pool.
pub async fn find_orders_pooled(
    pool: &Pool,
    uids: &[&str],
) -> Result<Vec<(String, Bytes)>, PersistError> {
    let mut conn = pool.get().await?;
    find_orders_prepared(&mut conn, uids).await
}

async fn query_orders<T>(
    client: &impl GenericClient,
    statement: &T,
    uids: &[&str],
) -> Result<Vec<(String, Bytes)>, PersistError>
where
    T: ?Sized + ToStatement + Sync + Send,
{
    if uids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client.query(statement, &[&uids]).await?;
    rows.iter()
        .map(|row| {
            let document: RawJson = row.try_get(1)?;
            Ok((row.try_get(0)?, Bytes::copy_from_slice(document.0)))
        })
        .collect()
}
