//! What `/readyz` and the `ready` gauge check: cache restored, database reachable, subscription up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::actors::SubscriberStatus;
use crate::error_chain::error_chain;
use crate::redact;
use crate::storage::{self, Pool};

/// How long the database may take to answer the readiness ping.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Shared by startup (which reports progress) and the routes (which ask).
pub struct Readiness {
    cache_restored: AtomicBool,
    pub subscriber: Arc<SubscriberStatus>,
    pool: Pool,
}

impl Readiness {
    /// Not ready until the cache is restored.
    pub fn new(subscriber: Arc<SubscriberStatus>, pool: Pool) -> Readiness {
        Readiness {
            cache_restored: AtomicBool::new(false),
            subscriber,
            pool,
        }
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
        if let Err(problem) = self.subscriber.check() {
            tracing::warn!(problem = %redact::text(&problem), "Readiness: not subscribed to the broker.");
            reasons.push("not subscribed to the broker".to_owned());
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}
