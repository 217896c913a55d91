//! What `/readyz` and the `ready` gauge check: cache restored, database reachable, subscription up, the pipeline
//! moving, no message that cannot be stored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::actors::SubscriberStatus;
use crate::error_chain::error_chain;
use crate::stall::PipelineHealth;
use crate::storage::{self, Pool};

/// How long the database may take to answer the readiness ping.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Shared by startup (which reports progress) and the routes (which ask).
pub struct Readiness {
    cache_restored: AtomicBool,
    pub subscriber: Arc<SubscriberStatus>,
    pub pipeline: Arc<PipelineHealth>,
    pool: Pool,
}

impl Readiness {
    /// Not ready until the cache is restored.
    pub fn new(
        subscriber: Arc<SubscriberStatus>,
        pipeline: Arc<PipelineHealth>,
        pool: Pool,
    ) -> Readiness {
        Readiness {
            cache_restored: AtomicBool::new(false),
            subscriber,
            pipeline,
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
            Ok(Err(error)) => {
                reasons.push(format!("database unreachable: {}", error_chain(&error)))
            }
            Err(_) => reasons.push("database did not answer within 2 s".to_owned()),
        }
        if let Err(problem) = self.subscriber.check() {
            reasons.push(format!("not subscribed to the broker: {problem}"));
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
