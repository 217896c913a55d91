//! The change feed: every committed order, whoever committed it, reaches this instance's caches.
//!
//! A task owns one PostgreSQL connection of its own (not from the pool: a pooled connection is handed to others,
//! and LISTEN belongs to a session). It LISTENs on `orders_committed`, which a statement trigger notifies on each
//! insert (migration V3), and each notification wakes a catch-up read by the (xid, id) cursor (see
//! `storage::feed` for why that cursor cannot skip a row). Notifications carry nothing and may be lost with the
//! connection; they only make the read prompt. The read itself is what guarantees delivery, so it also runs:
//! - after every (re)connection, which catches up whatever was committed while the connection was down;
//! - every `catch_up_interval`, a safety net;
//! - shortly after a read that saw rows held back by an older transaction still running (they become readable when
//!   it ends, and an unrelated transaction does not notify), with a delay growing up to the interval.
//!
//! The cursor starts at the restore's snapshot (`storage::restore::restore`), so restore and feed meet without a gap.
//! A read takes the ids first; the documents are then read only for the orders the sink wants, which leaves out this
//! instance's own commits (cached by the persister already), the bulk of what a single instance reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use crate::config::backoff::Backoff;
use crate::storage::feed::{self as storage_feed, FeedCursor, FeedStart};
use crate::storage::tls::Tls;
use crate::storage::{lookups, Connection, PersistError};
use crate::telemetry::error_chain::error_chain;
use crate::telemetry::metrics::Metrics;

/// The channel the orders trigger notifies (migration V3).
pub const CHANNEL: &str = "orders_committed";
/// How the feed's connection names itself in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "order-service feed";

/// Rows per catch-up query.
const READ_BATCH: i64 = 1000;
/// First wait before reading again when rows were held back; doubles up to the catch-up interval.
const HELD_BACK_FIRST_RETRY: Duration = Duration::from_millis(5);
/// Waits between reconnects: 100 ms, doubling, at most 5 s.
const RECONNECT: Backoff = Backoff {
    first: Duration::from_millis(100),
    max: Duration::from_secs(5),
    jitter: false,
};

#[derive(Clone)]
pub struct FeedSettings {
    /// The database, as the pool reaches it, and its TLS (`storage::tls`).
    pub config: tokio_postgres::Config,
    pub tls: Tls,
    /// Catch-up read even without a notification, at least this often.
    pub catch_up_interval: Duration,
}

impl std::fmt::Debug for FeedSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedSettings")
            .field("config", &self.config)
            .field("catch_up_interval", &self.catch_up_interval)
            .finish_non_exhaustive()
    }
}

/// Where the feed's orders go.
pub trait FeedSink: 'static {
    /// False for an order cached here already (this instance's own commit): its document is not read.
    fn wants(&mut self, uid: &str) -> bool;
    /// The orders wanted from one read, in cursor order.
    fn deliver(&mut self, orders: Vec<FeedOrder>);
}

/// One order the feed delivers.
#[derive(Debug, Clone)]
pub struct FeedOrder {
    pub cursor: FeedCursor,
    pub uid: String,
    pub document: Bytes,
}

/// Counters the tests and the metrics read.
#[derive(Debug, Default)]
pub struct FeedStatus {
    /// Catch-up queries completed.
    pub reads: AtomicU64,
    /// Orders delivered.
    pub delivered: AtomicU64,
}

/// The running feed; dropping it stops the feed.
pub struct ChangeFeed {
    task: JoinHandle<()>,
    pub status: Arc<FeedStatus>,
}

impl ChangeFeed {
    /// Starts following the orders committed after `start`, handing each batch read to `sink`, in cursor order.
    /// Runs on the current thread's runtime (the actix system's).
    pub fn start(
        settings: FeedSettings,
        start: FeedStart,
        metrics: Arc<Metrics>,
        sink: impl FeedSink,
    ) -> ChangeFeed {
        let status = Arc::new(FeedStatus::default());
        let follower = Follower {
            settings,
            cursor: start.cursor,
            skip: Some((start.snapshot, start.snapshot_xmax)),
            metrics,
            status: status.clone(),
            sink: Box::new(sink),
        };
        ChangeFeed {
            task: tokio::task::spawn_local(follower.run()),
            status,
        }
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Follower {
    settings: FeedSettings,
    cursor: FeedCursor,
    /// The restore's snapshot and its xmax, while the cursor is below that xmax.
    skip: Option<(String, i64)>,
    metrics: Arc<Metrics>,
    status: Arc<FeedStatus>,
    sink: Box<dyn FeedSink>,
}

/// Why a connection was given up.
#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
    #[error("failed to read the feed")]
    Read(#[from] PersistError),
    #[error("the LISTEN connection closed")]
    Closed,
}

impl Follower {
    async fn run(mut self) {
        let mut failures: u32 = 0;
        let mut connected_before = false;
        loop {
            if connected_before {
                self.metrics.feed_reconnects.inc();
            }
            let error = self.follow(&mut failures).await;
            connected_before = true;
            self.metrics.feed_connected.set(0);
            let delay = RECONNECT.delay(failures);
            failures = failures.saturating_add(1);
            tracing::warn!(error = %error_chain(&error), ?delay, "The change feed lost its connection; reconnecting.");
            tokio::time::sleep(delay).await;
        }
    }

    /// Connects, listens, catches up, then reads on every wake-up until the connection fails.
    async fn follow(&mut self, failures: &mut u32) -> FeedError {
        let mut config = self.settings.config.clone();
        config.application_name(APPLICATION_NAME);
        let (client, mut connection) = match config.connect(self.settings.tls.clone()).await {
            Ok(pair) => pair,
            Err(error) => return error.into(),
        };
        let wake = Arc::new(Notify::new());
        // The connection must be polled for the client to work; its notifications wake the reader.
        let driver = tokio::task::spawn_local({
            let wake = wake.clone();
            async move {
                let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                        Ok(_) => {}
                        Err(error) => return FeedError::from(error),
                    }
                }
                FeedError::Closed
            }
        });
        self.listen_and_read(&mut Connection::new(client), &wake, failures, driver)
            .await
    }

    async fn listen_and_read(
        &mut self,
        conn: &mut Connection,
        wake: &Notify,
        failures: &mut u32,
        mut driver: JoinHandle<FeedError>,
    ) -> FeedError {
        // LISTEN before the first read: a commit after that read is then sure to wake the next one.
        if let Err(error) = conn.batch_execute(&format!("LISTEN {CHANNEL}")).await {
            driver.abort();
            return error.into();
        }
        self.metrics.feed_connected.set(1);
        let interval = self.settings.catch_up_interval;
        let mut retry = HELD_BACK_FIRST_RETRY;
        loop {
            let held_back = match self.catch_up(conn).await {
                Ok(held_back) => held_back,
                Err(error) => {
                    driver.abort();
                    return error;
                }
            };
            *failures = 0;
            let wait = if held_back {
                let wait = retry;
                retry = (retry * 2).min(interval);
                wait
            } else {
                retry = HELD_BACK_FIRST_RETRY;
                interval
            };
            // Wait for a notification, the timer or the end of the connection.
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                ended = &mut driver => return ended.unwrap_or(FeedError::Closed),
            }
        }
    }

    /// Reads until nothing more is readable; true when rows are held back by a transaction still running.
    async fn catch_up(&mut self, conn: &mut Connection) -> Result<bool, FeedError> {
        loop {
            let skip = self.skip.as_ref().map(|(snapshot, _)| snapshot.as_str());
            let rows = storage_feed::read_after(conn, self.cursor, skip, READ_BATCH).await?;
            self.status.reads.fetch_add(1, Ordering::Relaxed);
            let full = rows.len() as i64 == READ_BATCH;
            if let Some(last) = rows.last() {
                let wanted: Vec<&str> = rows
                    .iter()
                    .filter(|row| self.sink.wants(&row.uid))
                    .map(|row| row.uid.as_str())
                    .collect();
                let mut documents: HashMap<String, Bytes> = lookups::find_orders(conn, &wanted)
                    .await?
                    .into_iter()
                    .collect();
                let orders: Vec<FeedOrder> = rows
                    .iter()
                    .filter_map(|row| {
                        Some(FeedOrder {
                            cursor: row.cursor,
                            uid: row.uid.clone(),
                            document: documents.remove(&row.uid)?,
                        })
                    })
                    .collect();
                let oldest = rows.iter().map(|r| r.lag_seconds).fold(0.0, f64::max);
                self.metrics.feed_lag.observe(oldest);
                self.metrics.feed_orders.inc_by(rows.len() as u64);
                self.status
                    .delivered
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                self.cursor = last.cursor;
                if self
                    .skip
                    .as_ref()
                    .is_some_and(|(_, xmax)| self.cursor.xid >= *xmax)
                {
                    self.skip = None;
                }
                if !orders.is_empty() {
                    self.sink.deliver(orders);
                }
            }
            if !full {
                break;
            }
        }
        Ok(storage_feed::has_rows_after(conn, self.cursor).await?)
    }
}
