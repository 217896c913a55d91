//! Waiting on a condition instead of sleeping, and how long a test waits.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::database::Cleanup;

/// How long a test waits for the pipeline before it fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// Polls `check` until it returns `Some`, failing after `timeout`: waiting on a condition, not sleeping.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() > deadline {
            Cleanup::test_failed();
            match last_error {
                Some(error) => anyhow::bail!(
                    "timed out after {timeout:?} waiting for {what}; last error: {error:#}"
                ),
                None => anyhow::bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Asserts that `check` stays true for `window`: for claims that something does *not* happen (no redelivery),
/// which no condition can signal.
pub async fn holds_for<F>(window: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> bool,
{
    let until = Instant::now() + window;
    while Instant::now() < until {
        if !check() {
            Cleanup::test_failed();
            anyhow::bail!("{what} stopped holding");
        }
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}
