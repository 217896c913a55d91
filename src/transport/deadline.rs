//! Time policy of broker calls, in one place: the deadline of a call, and the delay before trying again.
//!
//! ratsio has no timeouts of its own, and an async-nats request to a server that went away can wait for its
//! reconnect: every broker call is bounded by `within`, so a silent broker turns into an error the subscriber acts
//! on. `backoff` spaces the retries of a connection or a pull.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

/// A broker call that did not finish in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} got no answer from the broker within {after:?}")]
pub struct Elapsed {
    pub what: &'static str,
    pub after: Duration,
}

/// Runs `future` for at most `after`; `what` names the call in the error.
pub async fn within<F: Future>(
    what: &'static str,
    after: Duration,
    future: F,
) -> Result<F::Output, Elapsed> {
    tokio::time::timeout(after, future)
        .await
        .map_err(|_| Elapsed { what, after })
}

/// 200 ms doubling up to 10 s, with jitter so that several instances do not retry in step.
pub fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(200)
        .saturating_mul(1 << failures.min(6))
        .min(Duration::from_secs(10));
    base.mul_f64(rand::rng().random_range(0.8..1.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_outlives_its_deadline_is_named_in_the_error() {
        let elapsed = within(
            "ping",
            Duration::from_millis(10),
            std::future::pending::<()>(),
        )
        .await
        .expect_err("never answers");
        assert_eq!(
            elapsed.to_string(),
            "ping got no answer from the broker within 10ms"
        );
        assert_eq!(
            within("ping", Duration::from_secs(1), async { 7 }).await,
            Ok(7)
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) <= Duration::from_millis(240));
        assert!(backoff(3) >= Duration::from_millis(1280));
        assert!(backoff(100) <= Duration::from_secs(12));
    }
}
