//! Whether the pipeline is stuck: deliveries are waiting and nothing has committed for `STALL_AFTER`.
//!
//! The persister reports commits and failed attempts into `PipelineHealth`; a watcher task started by startup looks
//! at it (and at the subscriber's messages in flight) every tick, sets the `pipeline_stalled` gauge, logs the change
//! once each way, and leaves the cause where `/readyz` reads it. The decision itself is `StallWatch`, pure.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::IntGauge;

use crate::actors::SubscriberStatus;

/// What the persister reports and what readiness reads. Times are kept as milliseconds since `started`.
#[derive(Debug)]
pub struct PipelineHealth {
    started: Instant,
    last_commit_ms: AtomicU64,
    /// The cause of the last failed attempt, until a commit succeeds.
    failing: Mutex<Option<String>>,
    /// `Some(cause)` while stalled.
    stalled: Mutex<Option<String>>,
    /// Messages PostgreSQL refused even as dead letters: sequence -> the database's error. They stay unacked.
    unstorable: Mutex<BTreeMap<u64, String>>,
}

impl Default for PipelineHealth {
    fn default() -> Self {
        PipelineHealth {
            started: Instant::now(),
            last_commit_ms: AtomicU64::new(0),
            failing: Mutex::new(None),
            stalled: Mutex::new(None),
            unstorable: Mutex::new(BTreeMap::new()),
        }
    }
}

impl PipelineHealth {
    fn since_start(&self) -> Duration {
        self.started.elapsed()
    }

    /// A transaction committed: the pipeline moves.
    pub fn committed(&self) {
        let now = u64::try_from(self.since_start().as_millis()).unwrap_or(u64::MAX);
        self.last_commit_ms.store(now, Ordering::Release);
        *lock(&self.failing) = None;
    }

    /// An attempt failed for a reason that says nothing about the messages (database down, lock wait).
    pub fn failed(&self, cause: String) {
        *lock(&self.failing) = Some(cause);
    }

    /// `Some(cause)` while the pipeline is stalled.
    pub fn stalled(&self) -> Option<String> {
        lock(&self.stalled).clone()
    }

    /// A message that cannot be stored even as a dead letter; it stays unacked and is reported.
    pub fn unstorable(&self, sequence: u64, error: String) {
        lock(&self.unstorable).insert(sequence, error);
    }

    /// The message was stored after all.
    pub fn stored(&self, sequence: u64) {
        lock(&self.unstorable).remove(&sequence);
    }

    /// The sequences of the messages that cannot be stored, lowest first.
    pub fn unstorable_sequences(&self) -> Vec<u64> {
        lock(&self.unstorable).keys().copied().collect()
    }

    fn last_commit(&self) -> Duration {
        Duration::from_millis(self.last_commit_ms.load(Ordering::Acquire))
    }

    fn failing(&self) -> Option<String> {
        lock(&self.failing).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A change of the stall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Stalled,
    Recovered,
}

/// The stall decision over time. Times are durations since one fixed start.
#[derive(Debug, Clone)]
pub struct StallWatch {
    stall_after: Duration,
    /// The last moment the pipeline was known to move: a commit, or nothing waiting.
    progress: Duration,
    stalled: bool,
}

impl StallWatch {
    pub fn new(stall_after: Duration) -> StallWatch {
        StallWatch {
            stall_after,
            progress: Duration::ZERO,
            stalled: false,
        }
    }

    pub fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// Looks at the pipeline at `now`: `waiting` when deliveries wait (or the last attempt failed), `last_commit`
    /// when the last transaction committed. Stalled when waiting and nothing moved for `stall_after`.
    pub fn observe(
        &mut self,
        now: Duration,
        waiting: bool,
        last_commit: Duration,
    ) -> Option<Transition> {
        if !waiting {
            self.progress = now;
        }
        self.progress = self.progress.max(last_commit);
        let stalled = waiting && now.saturating_sub(self.progress) >= self.stall_after;
        let transition = match (self.stalled, stalled) {
            (false, true) => Some(Transition::Stalled),
            (true, false) => Some(Transition::Recovered),
            _ => None,
        };
        self.stalled = stalled;
        transition
    }
}

/// Watches the pipeline (and every source's deliveries) every `tick` until the process ends: keeps the gauge and the readiness cause current and
/// logs each change once.
pub async fn watch(
    health: Arc<PipelineHealth>,
    subscribers: Vec<Arc<SubscriberStatus>>,
    stall_after: Duration,
    gauge: IntGauge,
) {
    let tick = (stall_after / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = StallWatch::new(stall_after);
    loop {
        interval.tick().await;
        let failing = health.failing();
        let waiting = failing.is_some()
            || subscribers
                .iter()
                .any(|s| s.in_flight.load(Ordering::Relaxed) > 0);
        let transition = watch.observe(health.since_start(), waiting, health.last_commit());
        if watch.is_stalled() {
            let silent = subscribers.iter().find_map(|s| s.check().err());
            let cause = match (failing, silent) {
                (Some(cause), _) => cause,
                (None, Some(problem)) => format!("broker silent: {problem}"),
                (None, None) => "a commit is taking long".to_owned(),
            };
            *lock(&health.stalled) = Some(cause.clone());
            if transition == Some(Transition::Stalled) {
                gauge.set(1);
                tracing::error!(%cause, after = ?stall_after,
                    "The pipeline is stalled: deliveries are waiting and nothing has committed.");
            }
        } else if transition == Some(Transition::Recovered) {
            *lock(&health.stalled) = None;
            gauge.set(0);
            tracing::info!("The pipeline moves again.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn waiting_without_a_commit_for_the_limit_is_a_stall_reported_once() {
        // Arrange
        let mut watch = StallWatch::new(s(30));
        assert_eq!(watch.observe(s(0), false, s(0)), None);

        // Act
        let transitions: Vec<Option<Transition>> = [10, 29, 30, 31, 60]
            .iter()
            .map(|t| watch.observe(s(*t), true, s(0)))
            .collect();

        // Assert
        assert_eq!(
            transitions,
            [None, None, Some(Transition::Stalled), None, None]
        );
    }

    #[test]
    fn a_long_idle_time_before_the_first_waiting_delivery_is_no_stall() {
        let mut watch = StallWatch::new(s(30));
        assert_eq!(watch.observe(s(3600), false, s(0)), None);
        assert_eq!(watch.observe(s(3601), true, s(0)), None);
        assert_eq!(
            watch.observe(s(3631), true, s(0)),
            Some(Transition::Stalled)
        );
    }

    #[test]
    fn commits_resuming_end_the_stall() {
        let mut watch = StallWatch::new(s(30));
        watch.observe(s(0), true, s(0));
        assert_eq!(watch.observe(s(40), true, s(0)), Some(Transition::Stalled));
        assert_eq!(
            watch.observe(s(41), true, s(41)),
            Some(Transition::Recovered)
        );
        assert!(!watch.is_stalled());
    }

    #[test]
    fn nothing_waiting_ends_the_stall() {
        let mut watch = StallWatch::new(s(30));
        watch.observe(s(0), true, s(0));
        assert_eq!(watch.observe(s(40), true, s(0)), Some(Transition::Stalled));
        assert_eq!(
            watch.observe(s(41), false, s(0)),
            Some(Transition::Recovered)
        );
    }

    #[test]
    fn commits_that_keep_coming_are_no_stall_however_long_deliveries_wait() {
        let mut watch = StallWatch::new(s(30));
        for t in (0..600).step_by(10) {
            assert_eq!(watch.observe(s(t), true, s(t)), None, "at {t} s");
        }
    }

    #[test]
    fn unstorable_messages_are_listed_until_stored() {
        let health = PipelineHealth::default();
        health.unstorable(7, "refused".into());
        health.unstorable(3, "refused".into());
        assert_eq!(health.unstorable_sequences(), [3, 7]);
        health.stored(3);
        assert_eq!(health.unstorable_sequences(), [7]);
    }
}
