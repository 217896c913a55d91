//! Memory under a backlog of maximum-size messages: the service holds at most what README documents per message in
//! flight, its transactions stay under `BATCH_MAX_BYTES`, and every message is kept.

use std::time::Duration;

use order_service_test_support::metrics::get;
use order_service_test_support::{count, eventually, prepare};

use crate::fault_harness::ServiceProcess;

/// Messages in flight for this test (`STAN_MAX_IN_FLIGHT`).
const IN_FLIGHT: u64 = 16;
const BATCH_MAX_BYTES: u64 = 4 << 20;
/// nats-server's default max payload, which bounds a message (the STAN envelope takes a little of it).
const MAX_PAYLOAD: u64 = 1 << 20;
/// What README documents per message in flight: the payload, and at most as much again twice (the parsed order and
/// its document, or the rejection reasons).
const PER_MESSAGE: u64 = 3 * MAX_PAYLOAD;
/// The runtime's and the allocator's own share, as README states it.
const SLACK: u64 = 32 << 20;
const MESSAGES: usize = 64;

/// `MAX_MESSAGE_BYTES` for this test: every message is above it, so each is held whole until kept as a dead letter.
const MAX_MESSAGE_BYTES: u64 = 64 << 10;

/// A message as large as the broker takes, above `MAX_MESSAGE_BYTES`.
fn large_invalid_message(i: usize) -> Vec<u8> {
    let filler = "x".repeat(usize::try_from(MAX_PAYLOAD).unwrap_or(1 << 20) - 4096);
    format!(r#"{{"order_uid": "{i}{filler}"}}"#).into_bytes()
}

#[actix_web::test]
async fn a_backlog_of_maximum_size_invalid_messages_stays_within_the_documented_memory_and_batch_bounds(
) -> anyhow::Result<()> {
    // Arrange
    let stopped = prepare().await?;
    let mut service = ServiceProcess::spawn_with(
        &stopped.settings,
        &[
            ("STAN_MAX_IN_FLIGHT", IN_FLIGHT.to_string()),
            ("BATCH_MAX_BYTES", BATCH_MAX_BYTES.to_string()),
            ("MAX_MESSAGE_BYTES", MAX_MESSAGE_BYTES.to_string()),
        ],
    )?;
    service.wait_ready().await?;
    let base = service.memory("VmRSS")?;
    let messages: Vec<Vec<u8>> = (0..MESSAGES).map(large_invalid_message).collect();
    let published: usize = messages.iter().map(Vec::len).sum();

    // Act
    stopped.publisher.publish_all(&messages).await?;
    let pool = &stopped.db_pool;
    eventually(Duration::from_secs(120), "every message kept", || async {
        Ok((count(pool, "rejected_messages").await? == MESSAGES as i64).then_some(()))
    })
    .await
    .map_err(|e| e.context(format!("service log:\n{}", service.log_tail())))?;

    // Assert: memory.
    let peak = service.memory("VmHWM")?;
    let bound = base + IN_FLIGHT * PER_MESSAGE + 2 * BATCH_MAX_BYTES + SLACK;
    assert!(
        peak <= bound,
        "peak RSS {} MiB is above the documented bound {} MiB (at start {} MiB)",
        peak >> 20,
        bound >> 20,
        base >> 20
    );

    // Assert: every transaction under BATCH_MAX_BYTES (a bucket boundary of the histogram).
    let metrics = service.metrics().await?;
    let transactions = get(&metrics, "order_service_commit_batch_bytes_count", &[]);
    let under = get(
        &metrics,
        "order_service_commit_batch_bytes_bucket",
        &[("le", &BATCH_MAX_BYTES.to_string())],
    );
    assert!(transactions > 0.0);
    assert_eq!(
        under, transactions,
        "a transaction exceeded BATCH_MAX_BYTES"
    );

    // Assert: everything kept, whole.
    let conn = pool.get().await?;
    let row = conn
        .query_one(
            "SELECT sum(length(payload))::int8, count(*) FILTER (WHERE reason_class = 'too_large') FROM rejected_messages",
            &[],
        )
        .await?;
    assert_eq!(row.get::<_, i64>(0), published as i64);
    assert_eq!(row.get::<_, i64>(1), MESSAGES as i64);
    Ok(())
}
