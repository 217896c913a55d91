//! What `/readyz` and the `ready` gauge check: cache restored, database reachable, every source's subscription up,
//! the pipeline moving, no message that cannot be stored.
//!
//! Each reason has two wordings: the public listener's `/readyz` says what is wrong in words that name no identity
//! (the client id holds the host name; durable, queue group and consumer names are the broker's keys to our
//! subscriptions); the operator listener's `/readyz/detail` names them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::actors::stall::PipelineHealth;
use crate::actors::SubscriberStatus;
use crate::config::redact;
use crate::storage::{self, Pool};
use crate::telemetry::error_chain::error_chain;
use crate::transport::link::Link;
use crate::transport::{Origin, SourceKind};

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

/// One reason the service is not ready, in two wordings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    /// For the public `/readyz`: what is wrong, naming no identity.
    pub public: String,
    /// For the operator's `/readyz/detail`: the same with the subscription's names and the sequences.
    pub detail: String,
}

impl NotReady {
    /// A reason that names nothing, worded the same for both.
    fn same(text: &str) -> NotReady {
        NotReady {
            public: text.to_owned(),
            detail: text.to_owned(),
        }
    }
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
    pub async fn check(&self) -> Result<(), Vec<NotReady>> {
        let mut reasons = Vec::new();
        if !self.cache_restored.load(Ordering::Acquire) {
            reasons.push(NotReady::same("the cache is not restored yet"));
        }
        match tokio::time::timeout(PING_TIMEOUT, storage::ping(&self.pool)).await {
            Ok(Ok(())) => {}
            // The cause goes to the log; the answer names the dependency only, never its address.
            Ok(Err(error)) => {
                tracing::warn!(error = %error_chain(&error), "Readiness: the database is unreachable.");
                reasons.push(NotReady::same("database unreachable"))
            }
            Err(_) => reasons.push(NotReady::same("database did not answer within 2 s")),
        }
        for source in &self.subscribers {
            if let Err(problem) = source.status.check() {
                // The cause goes to the log; the answer names the source, never an address.
                tracing::warn!(problem = %redact::text(&problem), source = %source.subscription,
                    "Readiness: not consuming.");
                reasons.push(NotReady {
                    public: format!(
                        "not consuming {} (broker unreachable or subscription down)",
                        what_it_consumes(source.origin.source)
                    ),
                    detail: format!(
                        "not consuming {} (broker unreachable or subscription down)",
                        source.subscription
                    ),
                });
            } else if let Some(down) = source.link.down_for().filter(|d| *d >= self.stall_after) {
                // Subscribed, but nothing has come through for too long: pulls keep failing while a leader moves,
                // or the connection is gone and not yet replaced.
                reasons.push(NotReady {
                    public: format!(
                        "no message or answer from the broker of {} for {} s",
                        what_it_consumes(source.origin.source),
                        down.as_secs()
                    ),
                    detail: format!(
                        "no message or answer from the broker of {} for {} s",
                        source.subscription,
                        down.as_secs()
                    ),
                });
            }
        }
        if let Some(cause) = self.pipeline.stalled() {
            // "broker silent: <problem>": the problem may name the subscription.
            let general = cause.split(':').next().unwrap_or_default();
            reasons.push(NotReady {
                public: format!("stalled: {general}"),
                detail: format!("stalled: {cause}"),
            });
        }
        let unstorable = self.pipeline.unstorable_sequences();
        if !unstorable.is_empty() {
            let count = unstorable.len();
            reasons.push(NotReady {
                public: format!(
                    "unstorable: {count} message(s) refused even as dead letters, unacknowledged"
                ),
                detail: format!(
                    "unstorable: {count} message(s) refused even as dead letters, unacknowledged (sequences \
                     {unstorable:?})"
                ),
            });
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

/// A source's kind in words, for the public reason.
fn what_it_consumes(source: SourceKind) -> &'static str {
    match source {
        SourceKind::Stan => "the STAN channel",
        SourceKind::JetStream => "the JetStream stream",
    }
}
