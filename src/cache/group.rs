//! The registry of a process's cache members, one per HTTP worker: the persister and the change feed broadcast
//! committed orders to it, startup waits on it until every member is warm, and it remembers this instance's own
//! commits so that the feed need not read their documents again.
//!
//! Members are addressed as `Recipient`s of the messages in `messages.rs`, so the group does not know the actor that
//! answers them (`OrderCache`, src/actors/cache.rs, which joins with `OrderCache::start_local_member`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::Recipient;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::Notify;

use crate::cache::arena::DocumentArena;
use crate::cache::messages::{CacheOrders, CachedOrder, ExportOrders, WarmCache};
use crate::cache::restored::{Restore, RestoredOrders};
use crate::cache::source::OrderSource;
use crate::telemetry::metrics::Metrics;

/// How the members of a group are built.
#[derive(Clone)]
pub struct CacheSettings {
    /// Bytes one worker's cache may hold (see `crate::cache::store::charge`); `None` keeps every order.
    pub max_bytes: Option<usize>,
    pub source: Arc<dyn OrderSource>,
}

/// The collectors a member counts into.
#[derive(Clone)]
pub struct CacheCounters {
    pub hits: IntCounter,
    pub misses: IntCounter,
    pub negative_hits: IntCounter,
    pub found: IntCounter,
    pub not_found: IntCounter,
    pub errors: IntCounter,
    pub queries: IntCounter,
    pub evictions: IntCounter,
    pub entries: IntGauge,
    pub bytes: IntGauge,
}

impl CacheCounters {
    fn new(metrics: &Metrics) -> CacheCounters {
        CacheCounters {
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

/// How the group reaches one member.
#[derive(Clone)]
pub struct Member {
    pub orders: Recipient<CacheOrders>,
    pub warm: Recipient<WarmCache>,
    pub export: Recipient<ExportOrders>,
}

impl Member {
    fn connected(&self) -> bool {
        self.orders.connected()
    }
}

/// The registry of cache members: the persister and the feed broadcast to it, startup waits on it.
#[derive(Clone)]
pub struct CacheGroup {
    inner: Arc<GroupInner>,
}

struct GroupInner {
    members: Mutex<Vec<Member>>,
    /// The orders restored without a bound, read by every member (a late one too): kept as long as the group.
    restored: Arc<RestoredOrders>,
    /// What each member loads into its own store at start (with a bound, the restored orders), kept until the
    /// expected members are warm, then dropped.
    snapshot: Mutex<Option<Arc<[CachedOrder]>>>,
    expected_members: usize,
    warmed: AtomicUsize,
    warm_changed: Notify,
    settings: CacheSettings,
    counters: CacheCounters,
    /// Orders this instance's persister cached, until the change feed passes them: the feed need not read their
    /// documents again. Entries the feed never meets (a duplicate of an old order) are dropped after a while.
    own_commits: Mutex<HashMap<Arc<str>, Instant>>,
}

/// How long an own commit is remembered for the feed; far longer than the feed's lag.
const OWN_COMMIT_MEMORY: Duration = Duration::from_secs(30);
/// Own commits remembered before the old ones are dropped (checked on insert).
const OWN_COMMITS_PRUNE_AT: usize = 200_000;

impl CacheGroup {
    /// A group of `expected_members` caches, each warmed with `snapshot` into its own store.
    pub fn new(
        snapshot: Arc<[CachedOrder]>,
        expected_members: usize,
        settings: CacheSettings,
        metrics: &Metrics,
    ) -> CacheGroup {
        CacheGroup::build(
            RestoredOrders::empty(),
            snapshot,
            expected_members,
            settings,
            metrics,
        )
    }

    /// A group of `expected_members` caches that start from a restore: they share its index and each loads its
    /// bounded orders.
    pub fn restored(
        restore: Restore,
        expected_members: usize,
        settings: CacheSettings,
        metrics: &Metrics,
    ) -> CacheGroup {
        CacheGroup::build(
            restore.shared,
            restore.each.into(),
            expected_members,
            settings,
            metrics,
        )
    }

    fn build(
        restored: RestoredOrders,
        snapshot: Arc<[CachedOrder]>,
        expected_members: usize,
        settings: CacheSettings,
        metrics: &Metrics,
    ) -> CacheGroup {
        CacheGroup {
            inner: Arc::new(GroupInner {
                members: Mutex::new(Vec::new()),
                restored: Arc::new(restored),
                snapshot: Mutex::new(Some(snapshot)),
                expected_members,
                warmed: AtomicUsize::new(0),
                warm_changed: Notify::new(),
                settings,
                counters: CacheCounters::new(metrics),
                own_commits: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// How members are built.
    pub fn settings(&self) -> &CacheSettings {
        &self.inner.settings
    }

    /// The collectors every member counts into.
    pub fn counters(&self) -> &CacheCounters {
        &self.inner.counters
    }

    /// The index of the orders restored without a bound, which every member reads.
    pub fn shared_orders(&self) -> Arc<RestoredOrders> {
        self.inner.restored.clone()
    }

    /// The restored orders, while some expected member has not loaded them yet.
    pub fn snapshot(&self) -> Option<Arc<[CachedOrder]>> {
        self.inner
            .snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Registers a member for broadcasts, then warms it with `snapshot` (taken with `snapshot()` before the member
    /// was built) or, once the snapshot is gone, with a copy of a live member, which holds it and every commit since.
    /// Registering before warming means no commit is missed: inserts are idempotent, so an order both broadcast and in
    /// the warm-up data is simply added once.
    pub fn join(&self, member: Member, snapshot: Option<Arc<[CachedOrder]>>) {
        let donor = self.any_member();
        self.lock_members().push(member.clone());
        match (snapshot, donor) {
            (Some(snapshot), _) => member.warm.do_send(WarmCache(snapshot)),
            // A late member (its worker restarted).
            (None, Some(donor)) => {
                actix::spawn(async move {
                    match donor.export.send(ExportOrders).await {
                        Ok(orders) => member.warm.do_send(WarmCache(orders)),
                        Err(error) => {
                            tracing::error!(%error, "Failed to warm a late cache member.")
                        }
                    }
                });
            }
            (None, None) => member.warm.do_send(WarmCache(Arc::from(Vec::new()))),
        }
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
        members.retain(Member::connected);
        for member in members.iter() {
            member.orders.do_send(CacheOrders(orders.clone()));
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

    /// A member reports that it loaded its warm-up data (once).
    pub fn member_warmed(&self) {
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

    /// Any one live member.
    fn any_member(&self) -> Option<Member> {
        self.lock_members().iter().find(|m| m.connected()).cloned()
    }

    fn lock_members(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        // The list stays consistent even if a holder panicked: every operation on it is a single push or retain.
        self.inner
            .members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
