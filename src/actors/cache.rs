//! `OrderCache` owns a map from order_uid to the order's JSON, serialized once at ingest, and answers lookups.
//!
//! In: `GetOrder` from the HTTP handler of its own worker thread; `CacheOrders` from the persister after each commit
//! (through `CacheGroup::broadcast`); `WarmCache` once at start. Out: nothing. Handlers are synchronous and O(1).
//!
//! Why one cache actor per HTTP worker: a lookup that crosses threads to a single actor costs a wake-up of another
//! thread per request, which measured at 0.6-0.8x of a plain map read; an actor on the worker's own arbiter is a
//! same-thread mailbox hop, close to the map read, while the actor model (the cache owns its map, no locks) stays.
//! The payloads are `Bytes` shared by every copy, and the keys `Arc<str>`: each extra worker costs one map entry per
//! order (about 50 bytes), not a copy of the documents. All members see every commit, because the persister
//! broadcasts to the `CacheGroup` registry and the subscriber starts only after every member is warm.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use prometheus::{IntCounter, IntGauge};
use tokio::sync::Notify;

use crate::domain::OrderUid;
use crate::metrics::Metrics;

/// Look up one order's JSON.
#[derive(Message)]
#[rtype(result = "Option<Bytes>")]
pub struct GetOrder(pub OrderUid);

/// Remember orders that were just committed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CacheOrders(pub Arc<[CachedOrder]>);

/// Load what PostgreSQL held at start.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WarmCache(pub Arc<[CachedOrder]>);

/// Every cached order, to warm a member that joins late (an HTTP worker restarted after a panic).
#[derive(Message)]
#[rtype(result = "Arc<[CachedOrder]>")]
pub struct ExportOrders;

/// One order as the cache keeps it.
#[derive(Debug, Clone)]
pub struct CachedOrder {
    pub uid: Arc<str>,
    pub document: Bytes,
}

pub struct OrderCache {
    orders: HashMap<Arc<str>, Bytes>,
    group: Option<CacheGroup>,
    /// Bytes of the documents in `orders`.
    document_bytes: i64,
    hits: IntCounter,
    misses: IntCounter,
    entries: IntGauge,
    bytes: IntGauge,
}

impl OrderCache {
    fn insert_all(&mut self, orders: &[CachedOrder]) {
        self.orders.reserve(orders.len());
        for order in orders {
            // Orders are static: a uid already cached keeps its first document.
            if let Entry::Vacant(entry) = self.orders.entry(order.uid.clone()) {
                entry.insert(order.document.clone());
                self.document_bytes += order.document.len() as i64;
            }
        }
        // Every member holds the same orders, so each may report them; they agree once a broadcast reached all.
        self.entries.set(self.orders.len() as i64);
        self.bytes.set(self.document_bytes);
    }
}

impl Actor for OrderCache {
    type Context = Context<Self>;
}

impl Handler<GetOrder> for OrderCache {
    type Result = Option<Bytes>;

    /// A reference-count increment: no copy, no serialization.
    fn handle(&mut self, msg: GetOrder, _: &mut Self::Context) -> Option<Bytes> {
        let found = self.orders.get(msg.0.as_str()).cloned();
        if found.is_some() {
            self.hits.inc();
        } else {
            self.misses.inc();
        }
        found
    }
}

impl Handler<CacheOrders> for OrderCache {
    type Result = ();

    /// Adds committed orders.
    fn handle(&mut self, msg: CacheOrders, _: &mut Self::Context) {
        self.insert_all(&msg.0);
    }
}

impl Handler<WarmCache> for OrderCache {
    type Result = ();

    /// Adds the restored orders, then reports this member warm.
    fn handle(&mut self, msg: WarmCache, _: &mut Self::Context) {
        self.insert_all(&msg.0);
        if let Some(group) = self.group.take() {
            group.member_warmed();
        }
    }
}

impl Handler<ExportOrders> for OrderCache {
    type Result = MessageResult<ExportOrders>;

    /// A copy of the map's entries (reference counts only, no document copies).
    fn handle(&mut self, _: ExportOrders, _: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.orders
                .iter()
                .map(|(uid, document)| CachedOrder {
                    uid: uid.clone(),
                    document: document.clone(),
                })
                .collect(),
        )
    }
}

/// The registry of cache actors, one per HTTP worker: the persister broadcasts to it, startup waits on it.
#[derive(Clone)]
pub struct CacheGroup {
    inner: Arc<GroupInner>,
}

struct GroupInner {
    members: Mutex<Vec<Addr<OrderCache>>>,
    /// What PostgreSQL held at start, kept until the expected members are warm, then dropped.
    snapshot: Mutex<Option<Arc<[CachedOrder]>>>,
    expected_members: usize,
    warmed: AtomicUsize,
    warm_changed: Notify,
    hits: IntCounter,
    misses: IntCounter,
    entries: IntGauge,
    bytes: IntGauge,
}

impl CacheGroup {
    /// A group of `expected_members` caches, each warmed with `snapshot`.
    pub fn new(
        snapshot: Arc<[CachedOrder]>,
        expected_members: usize,
        metrics: &Metrics,
    ) -> CacheGroup {
        CacheGroup {
            inner: Arc::new(GroupInner {
                members: Mutex::new(Vec::new()),
                snapshot: Mutex::new(Some(snapshot)),
                expected_members,
                warmed: AtomicUsize::new(0),
                warm_changed: Notify::new(),
                hits: metrics.cache_hits.clone(),
                misses: metrics.cache_misses.clone(),
                entries: metrics.cache_entries.clone(),
                bytes: metrics.cache_bytes.clone(),
            }),
        }
    }

    /// Starts a cache actor on the current thread's arbiter (call it from the HTTP app factory, which runs on each
    /// worker), registers it for broadcasts, and warms it. Registering before warming means no commit is missed:
    /// inserts are idempotent, so an order both broadcast and in the warm-up data is simply added once.
    pub fn start_local_member(&self) -> LocalCache {
        let snapshot = self
            .inner
            .snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let addr = OrderCache {
            orders: HashMap::with_capacity(snapshot.as_ref().map_or(0, |s| s.len())),
            group: Some(self.clone()),
            document_bytes: 0,
            hits: self.inner.hits.clone(),
            misses: self.inner.misses.clone(),
            entries: self.inner.entries.clone(),
            bytes: self.inner.bytes.clone(),
        }
        .start();
        let donor = self.any_member();
        self.lock_members().push(addr.clone());
        match (snapshot, donor) {
            (Some(snapshot), _) => addr.do_send(WarmCache(snapshot)),
            // A late member (its worker restarted): copy a live member, which holds the snapshot and every commit.
            (None, Some(donor)) => {
                let member = addr.clone();
                actix::spawn(async move {
                    match donor.send(ExportOrders).await {
                        Ok(orders) => member.do_send(WarmCache(orders)),
                        Err(error) => {
                            tracing::error!(%error, "Failed to warm a late cache member.")
                        }
                    }
                });
            }
            (None, None) => addr.do_send(WarmCache(Arc::from(Vec::new()))),
        }
        LocalCache(addr)
    }

    /// Sends committed orders to every member. Members of stopped workers are dropped.
    pub fn broadcast(&self, orders: Arc<[CachedOrder]>) {
        let mut members = self.lock_members();
        members.retain(|member| member.connected());
        for member in members.iter() {
            member.do_send(CacheOrders(orders.clone()));
        }
    }

    /// Waits until at least `count` members are warm.
    pub async fn wait_until_warm(&self, count: usize) {
        loop {
            let notified = self.inner.warm_changed.notified();
            if self.warmed_members() >= count {
                return;
            }
            notified.await;
        }
    }

    /// Members that loaded the snapshot.
    pub fn warmed_members(&self) -> usize {
        self.inner.warmed.load(Ordering::Acquire)
    }

    /// Any one member, for counting.
    pub fn any_member(&self) -> Option<Addr<OrderCache>> {
        self.lock_members().iter().find(|m| m.connected()).cloned()
    }

    fn member_warmed(&self) {
        let warmed = self.inner.warmed.fetch_add(1, Ordering::AcqRel) + 1;
        if warmed >= self.inner.expected_members {
            // Every expected member holds the snapshot now; it need not stay in memory twice.
            *self
                .inner
                .snapshot
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
        self.inner.warm_changed.notify_waiters();
    }

    fn lock_members(&self) -> std::sync::MutexGuard<'_, Vec<Addr<OrderCache>>> {
        // The list stays consistent even if a holder panicked: every operation on it is a single push or retain.
        self.inner
            .members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The cache of the current HTTP worker: what the routes use.
#[derive(Clone)]
pub struct LocalCache(Addr<OrderCache>);

impl LocalCache {
    /// The order's JSON, if cached.
    pub async fn get(&self, uid: OrderUid) -> Result<Option<Bytes>, MailboxError> {
        self.0.send(GetOrder(uid)).await
    }
}

/// Copies restored documents into large shared chunks: one allocation per megabyte instead of one per order, so a
/// million cached orders cost little more than their JSON.
pub struct DocumentArena {
    chunk: BytesMut,
}

/// Size of one arena chunk.
const ARENA_CHUNK: usize = 1 << 20;

impl DocumentArena {
    pub fn new() -> DocumentArena {
        DocumentArena {
            chunk: BytesMut::new(),
        }
    }

    /// A `Bytes` with a copy of `document`, sharing its chunk with its neighbours.
    pub fn copy(&mut self, document: &[u8]) -> Bytes {
        if self.chunk.capacity() - self.chunk.len() < document.len() {
            self.chunk = BytesMut::with_capacity(ARENA_CHUNK.max(document.len()));
        }
        self.chunk.extend_from_slice(document);
        self.chunk.split().freeze()
    }
}

impl Default for DocumentArena {
    fn default() -> Self {
        DocumentArena::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(uid: &str, document: &'static [u8]) -> CachedOrder {
        CachedOrder {
            uid: uid.into(),
            document: Bytes::from_static(document),
        }
    }

    fn uid(s: &str) -> OrderUid {
        OrderUid::parse(s).expect("valid uid")
    }

    fn metrics() -> Metrics {
        Metrics::new().expect("valid metric names")
    }

    #[actix::test]
    async fn size_and_lookups_are_counted() {
        // Arrange
        let metrics = metrics();
        let group = CacheGroup::new(vec![order("a", b"{}")].into(), 1, &metrics);
        let member = group.start_local_member();
        group.wait_until_warm(1).await;

        // Act: "a" again is not a new entry.
        group.broadcast(vec![order("b", b"[1]"), order("a", b"{ }")].into());
        member.get(uid("a")).await.expect("alive");
        member.get(uid("b")).await.expect("alive");
        member.get(uid("c")).await.expect("alive");

        // Assert
        assert_eq!(metrics.cache_entries.get(), 2);
        assert_eq!(metrics.cache_bytes.get(), 5);
        assert_eq!(metrics.cache_hits.get(), 2);
        assert_eq!(metrics.cache_misses.get(), 1);
    }

    #[actix::test]
    async fn members_are_warmed_and_see_every_broadcast() {
        // Arrange
        let group = CacheGroup::new(vec![order("a", b"{}")].into(), 2, &metrics());
        let first = group.start_local_member();
        let second = group.start_local_member();

        // Act
        group.wait_until_warm(2).await;
        group.broadcast(vec![order("b", b"[]")].into());

        // Assert
        for member in [&first, &second] {
            assert_eq!(
                member.get(uid("a")).await.expect("alive"),
                Some(Bytes::from_static(b"{}"))
            );
            assert_eq!(
                member.get(uid("b")).await.expect("alive"),
                Some(Bytes::from_static(b"[]"))
            );
            assert_eq!(member.get(uid("c")).await.expect("alive"), None);
        }
    }

    #[actix::test]
    async fn a_cached_order_keeps_its_first_document() {
        let group = CacheGroup::new(vec![order("a", b"1")].into(), 1, &metrics());
        let member = group.start_local_member();
        group.wait_until_warm(1).await;
        group.broadcast(vec![order("a", b"2")].into());
        assert_eq!(
            member.get(uid("a")).await.expect("alive"),
            Some(Bytes::from_static(b"1"))
        );
    }

    #[actix::test]
    async fn a_late_member_is_warmed_from_a_live_one_with_later_commits() {
        // Arrange: the expected member is warm, so the snapshot is gone; an order was committed since.
        let group = CacheGroup::new(vec![order("a", b"1")].into(), 1, &metrics());
        let _first = group.start_local_member();
        group.wait_until_warm(1).await;
        group.broadcast(vec![order("b", b"2")].into());

        // Act
        let late = group.start_local_member();
        group.wait_until_warm(2).await;

        // Assert
        assert_eq!(
            late.get(uid("a")).await.expect("alive"),
            Some(Bytes::from_static(b"1"))
        );
        assert_eq!(
            late.get(uid("b")).await.expect("alive"),
            Some(Bytes::from_static(b"2"))
        );
    }

    #[test]
    fn the_arena_returns_exact_copies() {
        let mut arena = DocumentArena::new();
        let big = vec![7u8; ARENA_CHUNK + 1];
        let copies: Vec<Bytes> = [&b"one"[..], &b"two!"[..], &big, &b""[..]]
            .iter()
            .map(|d| arena.copy(d))
            .collect();
        assert_eq!(copies[0], &b"one"[..]);
        assert_eq!(copies[1], &b"two!"[..]);
        assert_eq!(copies[2], big);
        assert!(copies[3].is_empty());
    }
}
