//! `OrderCache` owns a map from order_uid to the order's JSON, serialized once at ingest, and answers lookups.
//!
//! In: `GetOrder` from the HTTP handler of its own worker thread; `CacheOrders` after each commit of this instance's
//! persister and each batch of the change feed (through `CacheGroup::broadcast`); `WarmCache` once at start. Out:
//! lookup queries to PostgreSQL for misses (through an `OrderSource`), run off the actor. The messages, the group,
//! the document store and the read-through source live in `crate::cache`; this file is the owner that answers.
//!
//! Why one cache actor per HTTP worker: a lookup that crosses threads to a single actor costs a wake-up of another
//! thread per request, which measured at 0.6-0.8x of a plain map read; an actor on the worker's own arbiter is a
//! same-thread mailbox hop, close to the map read, while the actor model (the cache owns its map, no locks) stays.
//! The orders restored at start sit in one index that every member reads (`RestoredOrders`: immutable, so no lock);
//! later orders go to each member's own store, whose payloads are `Bytes` shared by every copy and whose keys are
//! `Arc<str>`: each extra worker costs one map entry per such order (about 50 bytes), not a copy. All members see
//! every commit, because the persister and the feed broadcast to the `CacheGroup` registry and both start only after
//! every member is warm.
//!
//! The cache is a view of PostgreSQL, not of this process's history: a miss reads PostgreSQL (read-through). The
//! answer comes later, so a miss never blocks the worker's other requests; misses are coalesced (`MissQueue`) and
//! ids found missing are remembered (`NegativeCache`) until the feed or the persister delivers them.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::cache::group::{CacheCounters, Member};
use crate::cache::{
    CacheGroup, CacheOrders, CachedOrder, DocumentStore, ExportOrders, GetOrder, LookupError,
    MissQueue, NegativeCache, OrderSource, RestoredOrders, WarmCache,
};
use crate::domain::OrderUid;
use crate::storage::PersistError;
use crate::telemetry::error_chain::error_chain;

/// Lookup queries one cache runs at a time: with one, the database sees at most one lookup per HTTP worker.
const LOOKUPS_IN_FLIGHT: usize = 1;
/// Most ids in one lookup query.
const LOOKUP_BATCH: usize = 512;
/// Ids remembered as not stored, per cache.
const NEGATIVE_CAPACITY: usize = 100_000;

type Waiter = oneshot::Sender<Result<Option<Bytes>, LookupError>>;

pub struct OrderCache {
    /// The orders restored without a bound, shared with the other members; first in every lookup.
    restored: Arc<RestoredOrders>,
    /// Every other order this member caches.
    store: DocumentStore,
    negative: NegativeCache,
    misses: MissQueue<Waiter>,
    source: Arc<dyn OrderSource>,
    /// Evictions so far: a lookup that saw one while it ran does not record negative answers (below).
    evictions: u64,
    group: Option<CacheGroup>,
    counters: CacheCounters,
}

impl OrderCache {
    /// Starts a cache actor on the current thread's arbiter (call it from the HTTP app factory, which runs on each
    /// worker) and joins it to `group`, which registers it for broadcasts and warms it.
    pub fn start_local_member(group: &CacheGroup) -> LocalCache {
        let snapshot = group.snapshot();
        let settings = group.settings();
        let capacity = match settings.max_bytes {
            None => snapshot.as_ref().map_or(0, |s| s.len()),
            Some(_) => 0,
        };
        let addr = OrderCache {
            restored: group.shared_orders(),
            store: DocumentStore::new(settings.max_bytes, capacity),
            negative: NegativeCache::new(NEGATIVE_CAPACITY),
            misses: MissQueue::new(LOOKUPS_IN_FLIGHT, LOOKUP_BATCH),
            source: settings.source.clone(),
            evictions: 0,
            group: Some(group.clone()),
            counters: group.counters().clone(),
        }
        .start();
        let member = Member {
            orders: addr.clone().recipient(),
            warm: addr.clone().recipient(),
            export: addr.clone().recipient(),
        };
        group.join(member, snapshot);
        LocalCache(addr)
    }

    /// Adds orders (the first document of a uid stays) and forgets them as "not stored".
    fn insert_all(&mut self, orders: &[CachedOrder], referenced: bool) {
        for order in orders {
            if self.restored.contains(&order.uid) {
                // Its first document is in the shared index already.
                continue;
            }
            let inserted = self
                .store
                .insert(order.uid.clone(), order.document.clone(), referenced);
            self.count_evictions(inserted.evicted);
            self.negative.remove(&order.uid);
        }
        self.report_size();
    }

    /// The cached document: from the shared index, else from this member's store (marking it used).
    fn cached(&mut self, uid: &str) -> Option<Bytes> {
        self.restored.get(uid).or_else(|| self.store.get(uid))
    }

    fn count_evictions(&mut self, evicted: usize) {
        if evicted > 0 {
            self.evictions += evicted as u64;
            self.counters.evictions.inc_by(evicted as u64);
        }
    }

    fn report_size(&self) {
        // Without a bound every member holds the same orders, so each may report them; with one, the gauges show
        // the member that changed last.
        let entries = self.restored.len() + self.store.len();
        let bytes = self.restored.document_bytes() + self.store.document_bytes();
        self.counters.entries.set(entries as i64);
        self.counters.bytes.set(bytes as i64);
    }

    /// Starts the lookup queries the miss queue allows; each answers its waiters when it ends.
    fn start_lookups(&mut self, ctx: &mut Context<Self>) {
        while let Some(batch) = self.misses.next_batch() {
            self.counters.queries.inc();
            let evictions_before = self.evictions;
            let lookup = self.source.find(batch.clone());
            ctx.spawn(lookup.into_actor(self).map(move |result, act, ctx| {
                act.finish_lookup(batch, evictions_before, result);
                act.start_lookups(ctx);
            }));
        }
    }

    fn finish_lookup(
        &mut self,
        batch: Vec<Arc<str>>,
        evictions_before: u64,
        result: Result<Vec<CachedOrder>, PersistError>,
    ) {
        self.misses.finished();
        let found = match result {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), ids = batch.len(), "Failed to read missed orders from PostgreSQL.");
                let error = Arc::new(error);
                for uid in &batch {
                    self.counters.errors.inc();
                    for waiter in self.misses.take_waiters(uid) {
                        let _ = waiter.send(Err(LookupError::Database(error.clone())));
                    }
                }
                return;
            }
        };
        // Found orders are kept: someone asked for them, so they start with their reference bit set.
        self.insert_all(&found, true);
        let found: HashMap<&str, &Bytes> = found
            .iter()
            .map(|order| (&*order.uid, &order.document))
            .collect();
        for uid in &batch {
            let answer = match found.get(&**uid) {
                Some(document) => {
                    self.counters.found.inc();
                    Some((*document).clone())
                }
                None => {
                    self.counters.not_found.inc();
                    // The query's snapshot may predate a commit the feed delivered while it ran: then the order
                    // is cached now, and is the answer.
                    let cached = self.cached(uid);
                    // A negative answer is kept only if nothing was evicted meanwhile: an order delivered during
                    // the query and evicted at once would otherwise be hidden until the entry ages out.
                    if cached.is_none() && self.evictions == evictions_before {
                        self.negative.insert(uid.clone());
                    }
                    cached
                }
            };
            for waiter in self.misses.take_waiters(uid) {
                // The request may be gone (the client hung up).
                let _ = waiter.send(Ok(answer.clone()));
            }
        }
    }
}

impl Actor for OrderCache {
    type Context = Context<Self>;
}

impl Handler<GetOrder> for OrderCache {
    type Result = Response<Result<Option<Bytes>, LookupError>>;

    /// A hit is a reference-count increment, answered at once. A miss is answered when PostgreSQL has (a lookup
    /// shared with every other miss of the moment), unless the id is known not to be stored.
    fn handle(&mut self, msg: GetOrder, ctx: &mut Self::Context) -> Self::Result {
        let uid = msg.0.as_str();
        if let Some(document) = self.cached(uid) {
            self.counters.hits.inc();
            return Response::reply(Ok(Some(document)));
        }
        self.counters.misses.inc();
        if self.negative.contains(uid) {
            self.counters.negative_hits.inc();
            return Response::reply(Ok(None));
        }
        let (waiter, answer) = oneshot::channel();
        self.misses.wait(uid, waiter);
        self.start_lookups(ctx);
        Response::fut(async move { answer.await.unwrap_or(Err(LookupError::Dropped)) })
    }
}

impl Handler<CacheOrders> for OrderCache {
    type Result = ();

    /// Adds committed orders.
    fn handle(&mut self, msg: CacheOrders, _: &mut Self::Context) {
        self.insert_all(&msg.0, false);
    }
}

impl Handler<WarmCache> for OrderCache {
    type Result = ();

    /// Adds the restored orders, then reports this member warm.
    fn handle(&mut self, msg: WarmCache, _: &mut Self::Context) {
        self.insert_all(&msg.0, false);
        if let Some(group) = self.group.take() {
            group.member_warmed();
        }
    }
}

impl Handler<ExportOrders> for OrderCache {
    type Result = MessageResult<ExportOrders>;

    /// A copy of this member's own entries (reference counts only, no document copies); the shared index is not
    /// copied, a late member reads it too.
    fn handle(&mut self, _: ExportOrders, _: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.store
                .entries()
                .into_iter()
                .map(|(uid, document)| CachedOrder { uid, document })
                .collect(),
        )
    }
}

/// The cache of the current HTTP worker: what the routes use.
#[derive(Clone)]
pub struct LocalCache(Addr<OrderCache>);

impl LocalCache {
    /// The order's JSON, from the cache or else from PostgreSQL; `None` if it is not stored.
    pub async fn get(&self, uid: OrderUid) -> Result<Option<Bytes>, LookupError> {
        self.0.send(GetOrder(uid)).await?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use futures::future::BoxFuture;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::cache::restored::RestoredOrdersBuilder;
    use crate::cache::store::ENTRY_OVERHEAD;
    use crate::cache::{CacheSettings, Restore};
    use crate::storage::feed::{FeedCursor, FeedStart};
    use crate::telemetry::metrics::Metrics;

    /// Orders in a map; each query takes its answer at once (its snapshot) and returns it when the gate lets it.
    #[derive(Default)]
    struct MapSource {
        orders: Mutex<HashMap<String, Bytes>>,
        queries: AtomicUsize,
        gate: Option<Arc<Semaphore>>,
    }

    impl MapSource {
        fn gated() -> (Arc<MapSource>, Arc<Semaphore>) {
            let gate = Arc::new(Semaphore::new(0));
            let source = MapSource {
                gate: Some(gate.clone()),
                ..Default::default()
            };
            (Arc::new(source), gate)
        }

        fn store(&self, uid: &str, document: &'static [u8]) {
            self.orders
                .lock()
                .expect("not poisoned")
                .insert(uid.to_owned(), Bytes::from_static(document));
        }

        fn queries(&self) -> usize {
            self.queries.load(Ordering::SeqCst)
        }
    }

    impl OrderSource for MapSource {
        fn find(
            &self,
            uids: Vec<Arc<str>>,
        ) -> BoxFuture<'static, Result<Vec<CachedOrder>, PersistError>> {
            self.queries.fetch_add(1, Ordering::SeqCst);
            let orders = self.orders.lock().expect("not poisoned");
            let found: Vec<CachedOrder> = uids
                .iter()
                .filter_map(|uid| {
                    orders.get(&**uid).map(|document| CachedOrder {
                        uid: uid.clone(),
                        document: document.clone(),
                    })
                })
                .collect();
            let gate = self.gate.clone();
            Box::pin(async move {
                if let Some(gate) = gate {
                    gate.acquire().await.expect("gate open").forget();
                }
                Ok(found)
            })
        }
    }

    fn settings(source: &Arc<MapSource>, max_bytes: Option<usize>) -> CacheSettings {
        CacheSettings {
            max_bytes,
            source: source.clone(),
        }
    }

    fn unbounded() -> CacheSettings {
        settings(&Arc::new(MapSource::default()), None)
    }

    /// Waits (yielding to the actors) until `condition` holds; fails after two seconds.
    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !condition() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    fn order(uid: &str, document: &'static [u8]) -> CachedOrder {
        CachedOrder {
            uid: uid.into(),
            document: Bytes::from_static(document),
        }
    }

    /// A restore without a bound: `orders` in the shared index.
    fn shared_restore(orders: &[(&str, &[u8])]) -> Restore {
        let mut builder = RestoredOrdersBuilder::new(orders.len());
        for (uid, document) in orders {
            builder.push(uid, document);
        }
        Restore {
            shared: builder.finish(),
            each: Vec::new(),
            feed_start: FeedStart {
                cursor: FeedCursor { xid: 1, id: 0 },
                snapshot: "1:1:".into(),
                snapshot_xmax: 1,
            },
        }
    }

    fn uid(s: &str) -> OrderUid {
        OrderUid::parse(s).expect("valid uid")
    }

    /// A group of one member, started and warm.
    async fn warm_member(
        snapshot: Arc<[CachedOrder]>,
        settings: CacheSettings,
        metrics: &Metrics,
    ) -> (CacheGroup, LocalCache) {
        let group = CacheGroup::new(snapshot, 1, settings, metrics);
        let member = OrderCache::start_local_member(&group);
        group.wait_until_warm(1).await;
        (group, member)
    }

    fn metrics() -> Metrics {
        Metrics::new().expect("valid metric names")
    }

    #[actix::test]
    async fn size_and_lookups_are_counted() {
        // Arrange
        let metrics = metrics();
        let (group, member) =
            warm_member(vec![order("a", b"{}")].into(), unbounded(), &metrics).await;

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
        let group = CacheGroup::new(vec![order("a", b"{}")].into(), 2, unbounded(), &metrics());
        let first = OrderCache::start_local_member(&group);
        let second = OrderCache::start_local_member(&group);

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
    async fn one_shared_index_serves_every_member_without_a_copy_and_keeps_its_first_documents() {
        // Arrange: two restored orders in the shared index, two members.
        let metrics = metrics();
        let restore = shared_restore(&[("a", b"{\"a\":1}"), ("b", b"{\"b\":2}")]);
        let group = CacheGroup::restored(restore, 2, unbounded(), &metrics);
        let first = OrderCache::start_local_member(&group);
        let second = OrderCache::start_local_member(&group);
        group.wait_until_warm(2).await;

        // Act: "a" again, and a new order.
        group.broadcast(vec![order("a", b"{}"), order("c", b"[]")].into());
        let from_first = first.get(uid("a")).await.expect("answered");
        let from_second = second.get(uid("a")).await.expect("answered");

        // Assert: the same bytes, not a copy per member; the restored document stays; new orders are cached too.
        assert_eq!(from_first.as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(
            from_first.as_deref().map(<[u8]>::as_ptr),
            from_second.as_deref().map(<[u8]>::as_ptr)
        );
        for member in [&first, &second] {
            assert_eq!(
                member.get(uid("b")).await.expect("answered").as_deref(),
                Some(&b"{\"b\":2}"[..])
            );
            assert_eq!(
                member.get(uid("c")).await.expect("answered").as_deref(),
                Some(&b"[]"[..])
            );
        }
        assert_eq!(metrics.cache_entries.get(), 3);
        assert_eq!(metrics.cache_bytes.get(), 7 + 7 + 2);
        assert_eq!(metrics.cache_misses.get(), 0);
    }

    #[actix::test]
    async fn a_late_member_reads_the_shared_index_too() {
        let restore = shared_restore(&[("a", b"1")]);
        let group = CacheGroup::restored(restore, 1, unbounded(), &metrics());
        let _first = OrderCache::start_local_member(&group);
        group.wait_until_warm(1).await;

        let late = OrderCache::start_local_member(&group);
        group.wait_until_warm(2).await;

        assert_eq!(
            late.get(uid("a")).await.expect("answered").as_deref(),
            Some(&b"1"[..])
        );
    }

    #[actix::test]
    async fn a_cached_order_keeps_its_first_document() {
        let (group, member) =
            warm_member(vec![order("a", b"1")].into(), unbounded(), &metrics()).await;
        group.broadcast(vec![order("a", b"2")].into());
        assert_eq!(
            member.get(uid("a")).await.expect("alive"),
            Some(Bytes::from_static(b"1"))
        );
    }

    #[actix::test]
    async fn a_late_member_is_warmed_from_a_live_one_with_later_commits() {
        // Arrange: the expected member is warm, so the snapshot is gone; an order was committed since.
        let group = CacheGroup::new(vec![order("a", b"1")].into(), 1, unbounded(), &metrics());
        let _first = OrderCache::start_local_member(&group);
        group.wait_until_warm(1).await;
        group.broadcast(vec![order("b", b"2")].into());

        // Act
        let late = OrderCache::start_local_member(&group);
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

    #[actix::test]
    async fn a_miss_reads_the_order_through_once_and_then_hits() {
        // Arrange
        let metrics = metrics();
        let source = Arc::new(MapSource::default());
        source.store("x", b"{\"x\":1}");
        let (_group, member) =
            warm_member(Vec::new().into(), settings(&source, None), &metrics).await;

        // Act
        let first = member.get(uid("x")).await.expect("answered");
        let second = member.get(uid("x")).await.expect("answered");

        // Assert
        assert_eq!(first, Some(Bytes::from_static(b"{\"x\":1}")));
        assert_eq!(second, first);
        assert_eq!(source.queries(), 1);
        assert_eq!(metrics.cache_read_through_found.get(), 1);
        assert_eq!(metrics.cache_hits.get(), 1);
    }

    #[actix::test]
    async fn concurrent_misses_wait_once_per_id_and_share_one_query_per_batch() {
        // Arrange: queries are held until released.
        let metrics = metrics();
        let (source, gate) = MapSource::gated();
        source.store("found", b"1");
        let (_group, member) =
            warm_member(Vec::new().into(), settings(&source, None), &metrics).await;

        // Act: the first miss starts a query; 300 more arrive while it is held.
        let first = actix::spawn({
            let member = member.clone();
            async move { member.get(uid("found")).await }
        });
        until("the first query started", || source.queries() == 1).await;
        let mut rest = Vec::new();
        for i in 0..300 {
            let member = member.clone();
            let id = ["found", "gone1", "gone2"][i % 3];
            rest.push(actix::spawn(async move { (id, member.get(uid(id)).await) }));
        }
        until("every miss queued", || metrics.cache_misses.get() == 301).await;
        gate.add_permits(2);

        // Assert: every request answered, from two queries.
        assert_eq!(
            first.await.expect("joined").expect("answered"),
            Some(Bytes::from_static(b"1"))
        );
        for request in rest {
            let (id, answer) = request.await.expect("joined");
            let expected = (id == "found").then(|| Bytes::from_static(b"1"));
            assert_eq!(answer.expect("answered"), expected, "id {id}");
        }
        assert_eq!(source.queries(), 2);
        assert_eq!(metrics.cache_read_through_queries.get(), 2);
    }

    #[actix::test]
    async fn an_id_not_stored_is_asked_once_then_answered_from_the_negative_cache_until_it_arrives()
    {
        // Arrange
        let metrics = metrics();
        let source = Arc::new(MapSource::default());
        let (group, member) =
            warm_member(Vec::new().into(), settings(&source, None), &metrics).await;

        // Act
        let first = member.get(uid("z")).await.expect("answered");
        let second = member.get(uid("z")).await.expect("answered");
        group.broadcast(vec![order("z", b"[]")].into());
        let after_delivery = member.get(uid("z")).await.expect("answered");

        // Assert
        assert_eq!((first, second), (None, None));
        assert_eq!(source.queries(), 1);
        assert_eq!(metrics.cache_negative_hits.get(), 1);
        assert_eq!(after_delivery, Some(Bytes::from_static(b"[]")));
    }

    #[actix::test]
    async fn a_not_found_answer_that_arrives_after_the_order_was_delivered_is_not_remembered() {
        // Arrange: a lookup is in flight; its snapshot predates the order.
        let metrics = metrics();
        let (source, gate) = MapSource::gated();
        let (group, member) =
            warm_member(Vec::new().into(), settings(&source, None), &metrics).await;
        let lookup = actix::spawn({
            let member = member.clone();
            async move { member.get(uid("late")).await }
        });
        until("the query started", || source.queries() == 1).await;

        // Act: the order is committed and delivered while the query runs, then the query says "not found".
        source.store("late", b"2");
        group.broadcast(vec![order("late", b"2")].into());
        gate.add_permits(1);

        // Assert
        let answer = lookup.await.expect("joined").expect("answered");
        assert_eq!(answer, Some(Bytes::from_static(b"2")));
        assert_eq!(metrics.cache_negative_hits.get(), 0);
    }

    #[actix::test]
    async fn with_a_bound_an_order_delivered_and_evicted_during_a_lookup_is_not_hidden() {
        // Arrange: room for one order; a lookup of "late" is in flight with a snapshot that predates it.
        let metrics = metrics();
        let (source, gate) = MapSource::gated();
        let room_for_one = Some(1 + 4 + ENTRY_OVERHEAD);
        let group = CacheGroup::new(
            Vec::new().into(),
            1,
            settings(&source, room_for_one),
            &metrics,
        );
        let member = OrderCache::start_local_member(&group);
        group.wait_until_warm(1).await;
        let lookup = actix::spawn({
            let member = member.clone();
            async move { member.get(uid("late")).await }
        });
        until("the query started", || source.queries() == 1).await;

        // Act: "late" arrives and is evicted at once by "next"; then the stale "not found" comes back.
        source.store("late", b"2");
        group.broadcast(vec![order("late", b"2"), order("next", b"3")].into());
        gate.add_permits(1);
        let stale = lookup.await.expect("joined").expect("answered");
        gate.add_permits(1);
        let asked_again = member.get(uid("late")).await.expect("answered");

        // Assert: the stale answer was not remembered, so the next request reads the order through.
        assert_eq!(stale, None);
        assert_eq!(asked_again, Some(Bytes::from_static(b"2")));
        assert_eq!(source.queries(), 2);
        assert!(metrics.cache_evictions.get() >= 1);
    }

    #[actix::test]
    async fn a_lookup_that_fails_answers_an_error_and_the_next_miss_asks_again() {
        struct Failing(AtomicUsize);
        impl OrderSource for Failing {
            fn find(
                &self,
                _: Vec<Arc<str>>,
            ) -> BoxFuture<'static, Result<Vec<CachedOrder>, PersistError>> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Box::pin(async { Err(PersistError::Vanished("x".into())) })
            }
        }
        let metrics = metrics();
        let source = Arc::new(Failing(AtomicUsize::new(0)));
        let settings = CacheSettings {
            max_bytes: None,
            source: source.clone(),
        };
        let (_group, member) = warm_member(Vec::new().into(), settings, &metrics).await;

        let first = member.get(uid("x")).await;
        let second = member.get(uid("x")).await;

        assert!(matches!(first, Err(LookupError::Database(_))), "{first:?}");
        assert!(
            matches!(second, Err(LookupError::Database(_))),
            "{second:?}"
        );
        assert_eq!(source.0.load(Ordering::SeqCst), 2);
        assert_eq!(metrics.cache_read_through_errors.get(), 2);
    }

    #[actix::test]
    async fn the_feed_skips_each_own_commit_once_and_nothing_else() {
        let (group, member) = warm_member(Vec::new().into(), unbounded(), &metrics()).await;

        group.cache_committed(vec![order("own", b"1")].into());

        assert!(group.take_own_commit("own"), "committed here");
        assert!(!group.take_own_commit("own"), "taken once");
        assert!(!group.take_own_commit("other"), "committed elsewhere");
        assert_eq!(
            member.get(uid("own")).await.expect("answered"),
            Some(Bytes::from_static(b"1"))
        );
    }
}
