//! Time policy of broker calls, in one place: the deadline of a call, and the delay before trying again.
//!
//! ratsio has no timeouts of its own, and an async-nats request to a server that went away can wait for its
//! reconnect: every broker call is bounded by `within`, so a silent broker turns into an error the subscriber acts
//! on. `RECONNECT` spaces the retries of a connection or a pull.

use std::future::Future;
use std::time::Duration;

use crate::config::backoff::Backoff;

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
pub const RECONNECT: Backoff = Backoff {
    first: Duration::from_millis(200),
    max: Duration::from_secs(10),
    jitter: true,
};

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
}
