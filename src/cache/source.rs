//! Where a cache's misses are read from: PostgreSQL in the service (read-through), a map in unit tests.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::cache::messages::CachedOrder;
use crate::storage::{lookups, PersistError, Pool};

/// Where misses are read from.
pub trait OrderSource: Send + Sync + 'static {
    /// The stored orders among `uids`; an id not returned is not stored.
    fn find(
        &self,
        uids: Vec<Arc<str>>,
    ) -> BoxFuture<'static, Result<Vec<CachedOrder>, PersistError>>;
}

/// PostgreSQL as the source of misses.
pub struct PostgresOrders(pub Pool);

impl OrderSource for PostgresOrders {
    fn find(
        &self,
        uids: Vec<Arc<str>>,
    ) -> BoxFuture<'static, Result<Vec<CachedOrder>, PersistError>> {
        let pool = self.0.clone();
        Box::pin(async move {
            let ids: Vec<&str> = uids.iter().map(|uid| &**uid).collect();
            let found = lookups::find_orders_pooled(&pool, &ids).await?;
            Ok(found
                .into_iter()
                .map(|(uid, document)| CachedOrder {
                    uid: Arc::from(uid),
                    document,
                })
                .collect())
        })
    }
}
