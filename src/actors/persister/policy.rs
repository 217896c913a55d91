//! The persister's decisions, kept apart from the database calls so they can be tested without one: how long to
//! wait before retrying a transaction, what to do with a batch PostgreSQL refused, and which outcome each message
//! of a committed batch gets.

use std::time::Duration;

use crate::actors::persister::Outcome;
use crate::domain::RejectClass;
use crate::storage::Stored;

/// How a failed transaction is retried: doubling waits, capped, a bounded number of attempts.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

/// Attempts per transaction before its messages are answered with an error (and so left unacked).
pub const RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 5,
    first_delay: Duration::from_millis(100),
    max_delay: Duration::from_secs(2),
};

impl RetryPolicy {
    /// The wait before the next attempt after attempt `attempt` (counted from 1) failed, or `None` to give up. A data
    /// error (SQLSTATE class 22) is never retried: the same rows would be refused again.
    pub fn after_failure(&self, attempt: u32, data_error: bool) -> Option<Duration> {
        if data_error || attempt >= self.max_attempts {
            return None;
        }
        let doublings = attempt.saturating_sub(1).min(31);
        Some(
            self.first_delay
                .saturating_mul(1 << doublings)
                .min(self.max_delay),
        )
    }
}

/// What to do with a batch whose transaction failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePlan {
    /// PostgreSQL refused a value in a batch of several: commit each message alone, so one bad row does not take
    /// the innocent ones with it.
    CommitEachAlone,
    /// PostgreSQL refused the value of a lone message: keep it as a dead letter with the database's reason.
    DeadLetter,
    /// Anything else is transient: answer every message with the error, so none is acked.
    FailAll,
}

/// The plan for a batch of `messages` whose last attempt failed.
pub fn plan_after_failure(data_error: bool, messages: usize) -> FailurePlan {
    match (data_error, messages) {
        (true, 0) | (false, _) => FailurePlan::FailAll,
        (true, 1) => FailurePlan::DeadLetter,
        (true, _) => FailurePlan::CommitEachAlone,
    }
}

/// A message of a batch as far as pairing goes: an order, which gets one `Stored`, or a dead letter, which gets none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Order,
    DeadLetter(RejectClass),
}

/// The outcome of each message, in order; `stored` has one entry per order, in order. `Err(i)` names the first order
/// without an entry: that is an error, never an ack.
pub fn pair_outcomes(kinds: &[Kind], stored: &[Stored]) -> Result<Vec<Outcome>, usize> {
    let mut stored = stored.iter();
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| match kind {
            Kind::DeadLetter(class) => Ok(Outcome::Rejected(*class)),
            Kind::Order => match stored.next() {
                Some(Stored::Inserted) => Ok(Outcome::Persisted),
                Some(Stored::Duplicate) => Ok(Outcome::Duplicate),
                Some(Stored::Conflict(_)) => Ok(Outcome::Rejected(RejectClass::Conflict)),
                None => Err(i),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Rejection;

    #[test]
    fn a_transient_failure_is_retried_with_doubling_waits_until_the_last_attempt() {
        // Act
        let waits: Vec<Option<Duration>> = (1..=5).map(|a| RETRY.after_failure(a, false)).collect();

        // Assert
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(waits, [ms(100), ms(200), ms(400), ms(800), None]);
    }

    #[test]
    fn the_wait_between_attempts_never_exceeds_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 100,
            ..RETRY
        };
        for attempt in 1..100 {
            let wait = policy.after_failure(attempt, false).expect("a retry");
            assert!(wait <= policy.max_delay, "attempt {attempt} waits {wait:?}");
        }
        assert_eq!(policy.after_failure(99, false), Some(policy.max_delay));
    }

    #[test]
    fn a_data_error_is_never_retried() {
        assert_eq!(RETRY.after_failure(1, true), None);
    }

    #[test]
    fn a_refused_value_splits_a_batch_of_several_and_dead_letters_a_lone_message() {
        let cases = [
            (
                true,
                2,
                FailurePlan::CommitEachAlone,
                "data error, two messages",
            ),
            (
                true,
                100,
                FailurePlan::CommitEachAlone,
                "data error, a full batch",
            ),
            (true, 1, FailurePlan::DeadLetter, "data error, one message"),
            (true, 0, FailurePlan::FailAll, "data error, nothing to keep"),
            (
                false,
                1,
                FailurePlan::FailAll,
                "transient error, one message",
            ),
            (
                false,
                100,
                FailurePlan::FailAll,
                "transient error, a full batch",
            ),
        ];
        for (data_error, messages, expected, description) in cases {
            assert_eq!(
                plan_after_failure(data_error, messages),
                expected,
                "{description}"
            );
        }
    }

    #[test]
    fn each_order_takes_the_next_stored_result_and_dead_letters_take_none() {
        // Arrange
        let kinds = [
            Kind::Order,
            Kind::DeadLetter(RejectClass::MalformedJson),
            Kind::Order,
            Kind::Order,
        ];
        let conflict = Rejection {
            class: RejectClass::Conflict,
            reasons: Vec::new(),
            order_uid: Some("b".into()),
        };
        let stored = [
            Stored::Inserted,
            Stored::Conflict(conflict),
            Stored::Duplicate,
        ];

        // Act
        let outcomes = pair_outcomes(&kinds, &stored);

        // Assert
        assert_eq!(
            outcomes,
            Ok(vec![
                Outcome::Persisted,
                Outcome::Rejected(RejectClass::MalformedJson),
                Outcome::Rejected(RejectClass::Conflict),
                Outcome::Duplicate,
            ])
        );
    }

    #[test]
    fn an_order_without_a_stored_result_is_an_error() {
        let kinds = [
            Kind::Order,
            Kind::DeadLetter(RejectClass::Schema),
            Kind::Order,
        ];
        assert_eq!(pair_outcomes(&kinds, &[Stored::Inserted]), Err(2));
    }
}
