//! What `/readyz` and the `ready` gauge check: cache restored, database reachable, every source's subscription up,
//! the pipeline moving, no message that cannot be stored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::actors::stall::PipelineHealth;
use crate::actors::SubscriberStatus;
use crate::config::redact;
use crate::storage::{self, Pool};
use crate::telemetry::error_chain::error_chain;
use crate::transport::link::Link;
use crate::transport::Origin;

/// How long the database may take to answer the readiness ping.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Shared by startup (which reports progress) and the routes (which ask).
pub struct Readiness {
    cache_restored: AtomicBool,
    /// One per source, in the order configured.
    pub subscribers: Vec<SourceStatus>,
    pub pipeline: Arc<PipelineHealth>,
    pool: Pool,
    /// How long a source may go without a working connection (`STALL_AFTER`).
    stall_after: Duration,
}

/// One source's subscription, as readiness and the tests see it.
#[derive(Clone)]
pub struct SourceStatus {
    pub origin: Origin,
    /// What it consumes, as whom: `JetStream consumer "order-service" on stream "ORDERS" (subject "orders")`.
    pub subscription: String,
    /// Its server list, without credentials.
    pub servers: String,
    pub status: Arc<SubscriberStatus>,
    /// The server it is on, and how long it has been without a working connection.
    pub link: Arc<Link>,
}

impl Readiness {
    /// Not ready until the cache is restored.
    pub fn new(
        subscribers: Vec<SourceStatus>,
        pipeline: Arc<PipelineHealth>,
        pool: Pool,
        stall_after: Duration,
    ) -> Readiness {
        Readiness {
            cache_restored: AtomicBool::new(false),
            subscribers,
            pipeline,
            pool,
            stall_after,
        }
    }

    /// The status of the first source: the only one, unless several run.
    pub fn subscriber(&self) -> Arc<SubscriberStatus> {
        self.subscribers
            .first()
            .map(|s| s.status.clone())
            .unwrap_or_default()
    }

    /// Every HTTP worker's cache holds the restored orders.
    pub fn cache_restored(&self) {
        self.cache_restored.store(true, Ordering::Release);
    }

    /// `Ok` when ready, else every reason it is not.
    pub async fn check(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if !self.cache_restored.load(Ordering::Acquire) {
            reasons.push("the cache is not restored yet".to_owned());
        }
        match tokio::time::timeout(PING_TIMEOUT, storage::ping(&self.pool)).await {
            Ok(Ok(())) => {}
            // The cause goes to the log; the answer names the dependency only, never its address.
            Ok(Err(error)) => {
                tracing::warn!(error = %error_chain(&error), "Readiness: the database is unreachable.");
                reasons.push("database unreachable".to_owned())
            }
            Err(_) => reasons.push("database did not answer within 2 s".to_owned()),
        }
        for source in &self.subscribers {
            if let Err(problem) = source.status.check() {
                // The cause goes to the log; the answer names the source, never an address.
                tracing::warn!(problem = %redact::text(&problem), source = %source.subscription,
                    "Readiness: not consuming.");
                reasons.push(format!(
                    "not consuming {} (broker unreachable or subscription down)",
                    source.subscription
                ));
            } else if let Some(down) = source.link.down_for().filter(|d| *d >= self.stall_after) {
                // Subscribed, but nothing has come through for too long: pulls keep failing while a leader moves,
                // or the connection is gone and not yet replaced.
                reasons.push(format!(
                    "no message or answer from the broker of {} for {} s",
                    source.subscription,
                    down.as_secs()
                ));
            }
        }
        if let Some(cause) = self.pipeline.stalled() {
            reasons.push(format!("stalled: {cause}"));
        }
        let unstorable = self.pipeline.unstorable_sequences();
        if !unstorable.is_empty() {
            reasons.push(format!(
                "unstorable: {} message(s) refused even as dead letters, unacknowledged (sequences {unstorable:?})",
                unstorable.len()
            ));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}
