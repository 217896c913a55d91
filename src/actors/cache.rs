//! OrderCache owns the map from order_uid to the order's JSON, serialized once at ingest. The persister sends
//! `CacheOrder` after each commit; HTTP handlers send `GetOrder`. Handlers are synchronous and O(1).

use std::collections::HashMap;

use actix::prelude::*;
use bytes::Bytes;

/// Look up an order's JSON.
#[derive(Message)]
#[rtype(result = "Option<Bytes>")]
pub struct GetOrder(pub String);

/// Remember a committed order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CacheOrder {
    pub uid: Box<str>,
    pub document: Bytes,
}

pub struct OrderCache {
    orders: HashMap<Box<str>, Bytes>,
}

impl OrderCache {
    /// A cache warmed with what PostgreSQL holds.
    pub fn new(orders: Vec<(Box<str>, Bytes)>) -> OrderCache {
        OrderCache {
            orders: orders.into_iter().collect(),
        }
    }
}

impl Actor for OrderCache {
    type Context = Context<Self>;
}

impl Handler<GetOrder> for OrderCache {
    type Result = Option<Bytes>;

    /// Bytes clone is a reference count increment: no copy, no serialization per request.
    fn handle(&mut self, msg: GetOrder, _: &mut Self::Context) -> Option<Bytes> {
        self.orders.get(msg.0.as_str()).cloned()
    }
}

impl Handler<CacheOrder> for OrderCache {
    type Result = ();

    fn handle(&mut self, msg: CacheOrder, _: &mut Self::Context) {
        self.orders.insert(msg.uid, msg.document);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix::test]
    async fn cached_orders_are_served_and_unknown_ones_are_not() {
        let cache = OrderCache::new(vec![("a".into(), Bytes::from_static(b"{}"))]).start();
        cache
            .send(CacheOrder {
                uid: "b".into(),
                document: Bytes::from_static(b"[]"),
            })
            .await
            .expect("cache alive");
        assert_eq!(
            cache.send(GetOrder("a".into())).await.expect("alive"),
            Some(Bytes::from_static(b"{}"))
        );
        assert_eq!(
            cache.send(GetOrder("b".into())).await.expect("alive"),
            Some(Bytes::from_static(b"[]"))
        );
        assert_eq!(cache.send(GetOrder("c".into())).await.expect("alive"), None);
    }
}
