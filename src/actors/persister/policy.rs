//! The persister's decisions, kept apart from the database calls so they can be tested without one: what a failure
//! means, how long to wait before retrying a transaction, when to bisect a batch PostgreSQL refused, how much goes
//! into one transaction, and which outcome each message of a committed batch gets.

use std::time::Duration;

use crate::actors::persister::Outcome;
use crate::config::backoff::Backoff;
use crate::domain::RejectClass;
use crate::storage::Stored;

/// How a transaction failed, as far as the decisions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer from PostgreSQL (no connection, a lost one, the commit deadline): says nothing about the rows.
    Unreachable,
    /// A lock or statement timeout: something else holds what the batch needs.
    LockWait,
    /// An error of the server or the schema (resources, shutdown, a conflict, a missing table), with its SQLSTATE.
    Transient(String),
    /// PostgreSQL refused the statement with this SQLSTATE: the same rows may be refused again.
    Refused(String),
}

impl Failure {
    /// Reads a SQLSTATE; `None` means PostgreSQL gave no answer. Only the classes a row can cause count as
    /// refusals; the rest (a missing table, a privilege, a shutdown) are the environment's, and every message would
    /// meet them: those are retried and left unacked, never blamed on a message.
    pub fn classify(sqlstate: Option<&str>) -> Failure {
        let Some(code) = sqlstate else {
            return Failure::Unreachable;
        };
        // data exception, integrity constraint, program limit (a statement too large), raised by PL/pgSQL,
        // triggered action or data change, external routine, WITH CHECK OPTION
        const ROW_CLASSES: [&str; 9] = ["22", "23", "54", "P0", "09", "27", "38", "39", "44"];
        match code {
            // lock_not_available, query_canceled (what statement_timeout raises)
            "55P03" | "57014" => Failure::LockWait,
            _ if ROW_CLASSES.iter().any(|class| code.starts_with(class)) => {
                Failure::Refused(code.to_owned())
            }
            _ => Failure::Transient(code.to_owned()),
        }
    }

    /// The same rows would be refused again: isolate the message to blame.
    pub fn is_persistent(&self) -> bool {
        matches!(self, Failure::Refused(_))
    }

    /// SQLSTATE class 22: PostgreSQL refused a value; no retry can help.
    pub fn is_data_error(&self) -> bool {
        matches!(self, Failure::Refused(code) if code.starts_with("22"))
    }

    /// The cause as `/readyz` names it while the pipeline is stalled.
    pub fn cause(&self) -> String {
        match self {
            Failure::Unreachable => "database unreachable".into(),
            Failure::LockWait => "lock wait".into(),
            Failure::Transient(code) => format!("database error {code}"),
            Failure::Refused(code) => format!("database refused a batch ({code})"),
        }
    }
}

/// How a failed transaction is retried: doubling waits, capped, a bounded number of attempts.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Give up as soon as the same refusal comes twice in a row (a batch: bisect it rather than wait).
    pub stop_on_repeat: bool,
}

/// Attempts per batch before its messages are answered with an error (and so left unacked).
pub const RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 5,
    backoff: Backoff {
        first: Duration::from_millis(100),
        max: Duration::from_secs(2),
        jitter: false,
    },
    stop_on_repeat: true,
};

impl RetryPolicy {
    /// The policy of a message tried on its own: `attempts` tries, whatever the refusal.
    pub fn alone(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: attempts.max(1),
            stop_on_repeat: false,
            ..RETRY
        }
    }

    /// The wait before the next attempt after attempt `attempt` (counted from 1) failed with `failure`, or `None`
    /// to give up. `previous` is the failure before it (or the one already known to the caller). A data error
    /// (SQLSTATE class 22) is never retried: the same rows would be refused again.
    pub fn after_failure(
        &self,
        attempt: u32,
        failure: &Failure,
        previous: Option<&Failure>,
    ) -> Option<Duration> {
        let repeated = failure.is_persistent() && previous == Some(failure);
        if failure.is_data_error()
            || attempt >= self.max_attempts
            || (self.stop_on_repeat && repeated)
        {
            return None;
        }
        Some(self.backoff.delay(attempt.saturating_sub(1)))
    }
}

/// What to do with a batch whose transaction failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePlan {
    /// PostgreSQL refused a batch of several the same way twice: commit each half on its own, so the good rows
    /// commit and the message to blame is found.
    Bisect,
    /// PostgreSQL refused a lone message after its attempts: keep it as a dead letter of this class.
    DeadLetter(RejectClass),
    /// Anything else is transient: answer every message with the error, so none is acked.
    FailAll,
}

/// The plan for a batch of `messages` whose last attempt failed with `failure`.
pub fn plan_after_failure(failure: &Failure, messages: usize) -> FailurePlan {
    match (failure.is_persistent(), messages) {
        (false, _) | (true, 0) => FailurePlan::FailAll,
        (true, 1) if failure.is_data_error() => FailurePlan::DeadLetter(RejectClass::Schema),
        (true, 1) => FailurePlan::DeadLetter(RejectClass::Storage),
        (true, _) => FailurePlan::Bisect,
    }
}

/// How many of the messages (with these payload sizes, in queue order) go into the next transaction: at most
/// `max_messages`, and no more bytes than `max_bytes`, except that the first message always goes (alone if larger).
pub fn batch_len(
    sizes: impl IntoIterator<Item = usize>,
    max_messages: usize,
    max_bytes: usize,
) -> usize {
    let mut total = 0usize;
    let mut count = 0;
    for size in sizes.into_iter().take(max_messages.max(1)) {
        total = total.saturating_add(size);
        if count > 0 && total > max_bytes {
            break;
        }
        count += 1;
    }
    count
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

    fn refused(code: &str) -> Failure {
        Failure::Refused(code.into())
    }

    #[test]
    fn sqlstates_are_read_as_lock_waits_outages_or_refusals() {
        let cases = [
            (None, Failure::Unreachable, "no answer"),
            (Some("55P03"), Failure::LockWait, "lock_timeout"),
            (Some("57014"), Failure::LockWait, "statement_timeout"),
            (
                Some("08006"),
                Failure::Transient("08006".into()),
                "connection failure",
            ),
            (
                Some("57P01"),
                Failure::Transient("57P01".into()),
                "admin shutdown",
            ),
            (
                Some("40001"),
                Failure::Transient("40001".into()),
                "serialization failure",
            ),
            (Some("P0001"), refused("P0001"), "raised by a trigger"),
            (Some("23514"), refused("23514"), "check violation"),
            (
                Some("22P02"),
                refused("22P02"),
                "invalid text representation",
            ),
        ];
        for (code, expected, description) in cases {
            assert_eq!(Failure::classify(code), expected, "{description}");
        }
    }

    #[test]
    fn a_transient_failure_is_retried_with_doubling_waits_until_the_last_attempt() {
        // Act
        let waits: Vec<Option<Duration>> = (1..=5)
            .map(|a| RETRY.after_failure(a, &Failure::Unreachable, Some(&Failure::Unreachable)))
            .collect();

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
            let wait = policy
                .after_failure(attempt, &Failure::LockWait, None)
                .expect("a retry");
            assert!(
                wait <= policy.backoff.max,
                "attempt {attempt} waits {wait:?}"
            );
        }
        assert_eq!(
            policy.after_failure(99, &Failure::LockWait, None),
            Some(policy.backoff.max)
        );
    }

    #[test]
    fn a_data_error_is_never_retried() {
        assert_eq!(RETRY.after_failure(1, &refused("22001"), None), None);
        assert_eq!(
            RetryPolicy::alone(5).after_failure(1, &refused("22001"), None),
            None
        );
    }

    #[test]
    fn a_batch_gives_up_when_the_same_refusal_comes_twice() {
        let trigger = refused("P0001");
        assert!(
            RETRY.after_failure(1, &trigger, None).is_some(),
            "first refusal"
        );
        assert_eq!(
            RETRY.after_failure(2, &trigger, Some(&trigger)),
            None,
            "same twice"
        );
        assert!(
            RETRY
                .after_failure(2, &trigger, Some(&refused("23505")))
                .is_some(),
            "another refusal"
        );
        assert!(
            RETRY
                .after_failure(2, &Failure::LockWait, Some(&Failure::LockWait))
                .is_some(),
            "lock waits repeat without being poison"
        );
    }

    #[test]
    fn a_lone_message_gets_all_its_attempts_whatever_the_refusal() {
        let alone = RetryPolicy::alone(5);
        let trigger = refused("P0001");
        for attempt in 1..5 {
            assert!(
                alone
                    .after_failure(attempt, &trigger, Some(&trigger))
                    .is_some(),
                "attempt {attempt}"
            );
        }
        assert_eq!(alone.after_failure(5, &trigger, Some(&trigger)), None);
    }

    #[test]
    fn a_refusal_bisects_a_batch_and_dead_letters_a_lone_message() {
        let cases = [
            (
                refused("22P02"),
                2,
                FailurePlan::Bisect,
                "data error, two messages",
            ),
            (
                refused("P0001"),
                100,
                FailurePlan::Bisect,
                "trigger, a full batch",
            ),
            (
                refused("22P02"),
                1,
                FailurePlan::DeadLetter(RejectClass::Schema),
                "data error, one message",
            ),
            (
                refused("P0001"),
                1,
                FailurePlan::DeadLetter(RejectClass::Storage),
                "trigger, one message",
            ),
            (refused("P0001"), 0, FailurePlan::FailAll, "nothing to keep"),
            (
                Failure::Unreachable,
                1,
                FailurePlan::FailAll,
                "database down, one message",
            ),
            (
                Failure::LockWait,
                100,
                FailurePlan::FailAll,
                "lock wait, a full batch",
            ),
            (
                Failure::Transient("08006".into()),
                100,
                FailurePlan::FailAll,
                "connection lost, a full batch",
            ),
        ];
        for (failure, messages, expected, description) in cases {
            assert_eq!(
                plan_after_failure(&failure, messages),
                expected,
                "{description}"
            );
        }
    }

    #[test]
    fn a_batch_stops_before_the_byte_limit_but_always_takes_one_message() {
        let cases = [
            (
                vec![10, 10, 10],
                100,
                25,
                2,
                "the third would pass the limit",
            ),
            (vec![10, 10, 10], 2, 1000, 2, "the count limit"),
            (vec![50, 1], 100, 25, 1, "a large first message goes alone"),
            (vec![10, 15, 1], 100, 25, 2, "exactly at the limit"),
            (vec![], 100, 25, 0, "nothing queued"),
        ];
        for (sizes, max_messages, max_bytes, expected, description) in cases {
            assert_eq!(
                batch_len(sizes, max_messages, max_bytes),
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
