//! `OrderCache` owns a map from order_uid to the order's JSON, serialized once at ingest, and answers lookups.
//!
//! In: `GetOrder` from the HTTP handler of its own worker thread; `CacheOrders` after each commit of this instance's
//! persister and each batch of the change feed (through `CacheGroup::broadcast`); `WarmCache` once at start. Out:
//! lookup queries to PostgreSQL for misses (through an `OrderSource`), run off the actor.
//!
//! Why one cache actor per HTTP worker: a lookup that crosses threads to a single actor costs a wake-up of another
//! thread per request, which measured at 0.6-0.8x of a plain map read; an actor on the worker's own arbiter is a
//! same-thread mailbox hop, close to the map read, while the actor model (the cache owns its map, no locks) stays.
//! The payloads are `Bytes` shared by every copy, and the keys `Arc<str>`: each extra worker costs one map entry per
//! order (about 50 bytes), not a copy of the documents. All members see every commit, because the persister and the
//! feed broadcast to the `CacheGroup` registry and both start only after every member is warm.
//!
//! The cache is a view of PostgreSQL, not of this process's history: a miss reads PostgreSQL (read-through). The
//! answer comes later, so a miss never blocks the worker's other requests; misses are coalesced (`MissQueue`) and
//! ids found missing are remembered (`NegativeCache`) until the feed or the persister delivers them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::{oneshot, Notify};

use crate::cache::{DocumentStore, MissQueue, NegativeCache};
use crate::domain::OrderUid;
use crate::storage::{lookups, PersistError, Pool};
use crate::telemetry::error_chain::error_chain;
use crate::telemetry::metrics::Metrics;

/// Look up one order's JSON: `Ok(None)` when PostgreSQL does not hold it either.
#[derive(Message)]
#[rtype(result = "Result<Option<Bytes>, LookupError>")]
pub struct GetOrder(pub OrderUid);

/// Remember orders that were just committed (by this instance or, through the feed, by any).
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

/// A lookup that could not be answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    #[error("the cache is unavailable")]
    Mailbox(#[from] MailboxError),
    #[error("PostgreSQL could not be asked for the order")]
    Database(#[source] Arc<PersistError>),
    #[error("the cache stopped before answering")]
    Dropped,
}

/// Where misses are read from: PostgreSQL in the service, a map in unit tests.
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

/// How the members of a group are built.
#[derive(Clone)]
pub struct CacheSettings {
    /// Bytes one worker's cache may hold (see `crate::cache::store::charge`); `None` keeps every order.
    pub max_bytes: Option<usize>,
    pub source: Arc<dyn OrderSource>,
}

/// Lookup queries one cache runs at a time: with one, the database sees at most one lookup per HTTP worker.
const LOOKUPS_IN_FLIGHT: usize = 1;
/// Most ids in one lookup query.
const LOOKUP_BATCH: usize = 512;
/// Ids remembered as not stored, per cache.
const NEGATIVE_CAPACITY: usize = 100_000;

type Waiter = oneshot::Sender<Result<Option<Bytes>, LookupError>>;

pub struct OrderCache {
    store: DocumentStore,
    negative: NegativeCache,
    misses: MissQueue<Waiter>,
    source: Arc<dyn OrderSource>,
    /// Evictions so far: a lookup that saw one while it ran does not record negative answers (below).
    evictions: u64,
    group: Option<CacheGroup>,
    counters: Counters,
}

/// The collectors a member counts into.
#[derive(Clone)]
struct Counters {
    hits: IntCounter,
    misses: IntCounter,
    negative_hits: IntCounter,
    found: IntCounter,
    not_found: IntCounter,
    errors: IntCounter,
    queries: IntCounter,
    evictions: IntCounter,
    entries: IntGauge,
    bytes: IntGauge,
}

impl Counters {
    fn new(metrics: &Metrics) -> Counters {
        Counters {
            hits: metrics.cache_hits.clone(),
            misses: metrics.cache_misses.clone(),
            negative_hits: metrics.cache_negative_hits.clone(),
            found: metrics.cache_read_through_found.clone(),
            not_found: metrics.cache_read_through_not_found.clone(),
            errors: metrics.cache_read_through_errors.clone(),
            queries: metrics.cache_read_through_queries.clone(),
            evictions: metrics.cache_evictions.clone(),
            entries: metrics.cache_entries.clone(),
            bytes: metrics.cache_bytes.clone(),
        }
    }
}

impl OrderCache {
    /// Adds orders (the first document of a uid stays) and forgets them as "not stored".
    fn insert_all(&mut self, orders: &[CachedOrder], referenced: bool) {
        for order in orders {
            let inserted = self
                .store
                .insert(order.uid.clone(), order.document.clone(), referenced);
            self.count_evictions(inserted.evicted);
            self.negative.remove(&order.uid);
        }
        self.report_size();
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
        self.counters.entries.set(self.store.len() as i64);
        self.counters.bytes.set(self.store.document_bytes() as i64);
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
                    let cached = self.store.get(uid);
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
        if let Some(document) = self.store.get(uid) {
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

    /// A copy of the map's entries (reference counts only, no document copies).
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

/// The registry of cache actors, one per HTTP worker: the persister and the feed broadcast to it, startup waits on
/// it.
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
    settings: CacheSettings,
    counters: Counters,
    /// Orders this instance's persister cached, until the change feed passes them: the feed need not read their
    /// documents again. Entries the feed never meets (a duplicate of an old order) are dropped after a while.
    own_commits: Mutex<HashMap<Arc<str>, Instant>>,
}

/// How long an own commit is remembered for the feed; far longer than the feed's lag.
const OWN_COMMIT_MEMORY: Duration = Duration::from_secs(30);
/// Own commits remembered before the old ones are dropped (checked on insert).
const OWN_COMMITS_PRUNE_AT: usize = 200_000;

impl CacheGroup {
    /// A group of `expected_members` caches, each warmed with `snapshot`.
    pub fn new(
        snapshot: Arc<[CachedOrder]>,
        expected_members: usize,
        settings: CacheSettings,
        metrics: &Metrics,
    ) -> CacheGroup {
        CacheGroup {
            inner: Arc::new(GroupInner {
                members: Mutex::new(Vec::new()),
                snapshot: Mutex::new(Some(snapshot)),
                expected_members,
                warmed: AtomicUsize::new(0),
                warm_changed: Notify::new(),
                settings,
                counters: Counters::new(metrics),
                own_commits: Mutex::new(HashMap::new()),
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
        let settings = &self.inner.settings;
        let capacity = match settings.max_bytes {
            None => snapshot.as_ref().map_or(0, |s| s.len()),
            Some(_) => 0,
        };
        let addr = OrderCache {
            store: DocumentStore::new(settings.max_bytes, capacity),
            negative: NegativeCache::new(NEGATIVE_CAPACITY),
            misses: MissQueue::new(LOOKUPS_IN_FLIGHT, LOOKUP_BATCH),
            source: settings.source.clone(),
            evictions: 0,
            group: Some(self.clone()),
            counters: self.inner.counters.clone(),
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

    /// Where to copy documents this group will cache (packed into chunks only without a bound).
    pub fn document_arena(&self) -> DocumentArena {
        DocumentArena::for_bound(self.inner.settings.max_bytes)
    }

    /// Sends orders this instance's persister committed to every member, and remembers them for the feed.
    pub fn cache_committed(&self, orders: Arc<[CachedOrder]>) {
        {
            let mut own = self.lock_own_commits();
            let now = Instant::now();
            if own.len() >= OWN_COMMITS_PRUNE_AT {
                own.retain(|_, at| now.duration_since(*at) < OWN_COMMIT_MEMORY);
            }
            for order in orders.iter() {
                own.insert(order.uid.clone(), now);
            }
        }
        self.broadcast(orders);
    }

    /// True (once) for an order this instance's persister cached: the feed skips its document.
    pub fn take_own_commit(&self, uid: &str) -> bool {
        self.lock_own_commits().remove(uid).is_some()
    }

    fn lock_own_commits(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Instant>> {
        // A plain map of hints: a panic mid-update cannot leave it inconsistent in a way that matters.
        self.inner
            .own_commits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
    /// The order's JSON, from the cache or else from PostgreSQL; `None` if it is not stored.
    pub async fn get(&self, uid: OrderUid) -> Result<Option<Bytes>, LookupError> {
        self.0.send(GetOrder(uid)).await?
    }
}

/// Copies restored documents into large shared chunks: one allocation per megabyte instead of one per order, so a
/// million cached orders cost little more than their JSON. With a bound the chunks are not used: a chunk lives
/// while any of its documents is cached, so evicting a document would free nothing.
pub struct DocumentArena {
    chunk: BytesMut,
    packed: bool,
    /// Bytes of every chunk allocated so far: what the arena has cost, for tests and accounting.
    allocated: usize,
}

/// Size of one arena chunk.
const ARENA_CHUNK: usize = 1 << 20;

impl DocumentArena {
    pub fn new() -> DocumentArena {
        DocumentArena {
            chunk: BytesMut::new(),
            packed: true,
            allocated: 0,
        }
    }

    /// Packed into chunks without a cache bound, one allocation per document with one.
    pub fn for_bound(max_bytes: Option<usize>) -> DocumentArena {
        DocumentArena {
            chunk: BytesMut::new(),
            packed: max_bytes.is_none(),
            allocated: 0,
        }
    }

    /// Bytes of every chunk allocated so far.
    pub fn allocated_bytes(&self) -> usize {
        self.allocated
    }

    /// A `Bytes` with a copy of `document`, sharing its chunk with its neighbours when packed.
    pub fn copy(&mut self, document: &[u8]) -> Bytes {
        if !self.packed {
            return Bytes::copy_from_slice(document);
        }
        if self.chunk.capacity() - self.chunk.len() < document.len() {
            let size = ARENA_CHUNK.max(document.len());
            self.chunk = BytesMut::with_capacity(size);
            self.allocated += size;
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
    use tokio::sync::Semaphore;

    use super::*;
    use crate::cache::store::ENTRY_OVERHEAD;

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
        let group = CacheGroup::new(vec![order("a", b"{}")].into(), 1, unbounded(), &metrics);
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
        let group = CacheGroup::new(vec![order("a", b"{}")].into(), 2, unbounded(), &metrics());
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
        let group = CacheGroup::new(vec![order("a", b"1")].into(), 1, unbounded(), &metrics());
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
        let group = CacheGroup::new(vec![order("a", b"1")].into(), 1, unbounded(), &metrics());
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

    #[actix::test]
    async fn a_miss_reads_the_order_through_once_and_then_hits() {
        // Arrange
        let metrics = metrics();
        let source = Arc::new(MapSource::default());
        source.store("x", b"{\"x\":1}");
        let group = CacheGroup::new(Vec::new().into(), 1, settings(&source, None), &metrics);
        let member = group.start_local_member();
        group.wait_until_warm(1).await;

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
        let group = CacheGroup::new(Vec::new().into(), 1, settings(&source, None), &metrics);
        let member = group.start_local_member();
        group.wait_until_warm(1).await;

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
        let group = CacheGroup::new(Vec::new().into(), 1, settings(&source, None), &metrics);
        let member = group.start_local_member();
        group.wait_until_warm(1).await;

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
        let group = CacheGroup::new(Vec::new().into(), 1, settings(&source, None), &metrics);
        let member = group.start_local_member();
        group.wait_until_warm(1).await;
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
        let member = group.start_local_member();
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
        let group = CacheGroup::new(Vec::new().into(), 1, settings, &metrics);
        let member = group.start_local_member();
        group.wait_until_warm(1).await;

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
        let group = CacheGroup::new(Vec::new().into(), 1, unbounded(), &metrics());
        let member = group.start_local_member();
        group.wait_until_warm(1).await;

        group.cache_committed(vec![order("own", b"1")].into());

        assert!(group.take_own_commit("own"), "committed here");
        assert!(!group.take_own_commit("own"), "taken once");
        assert!(!group.take_own_commit("other"), "committed elsewhere");
        assert_eq!(
            member.get(uid("own")).await.expect("answered"),
            Some(Bytes::from_static(b"1"))
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
