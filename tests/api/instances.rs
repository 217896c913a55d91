//! Several instances of the real binary on one channel and one database: every instance serves every stored order,
//! the queue group shares the work and takes over a killed member's share, and an instance whose client id another
//! process took over while it stalled does not stay ready.

use std::time::{Duration, Instant};

use anyhow::Context;
use order_service::config::{Settings, SourceKind};
use order_service::storage::Pool;
use order_service_test_support::metrics::sum;
use order_service_test_support::{prepare, prepare_with, SAMPLE, SAMPLE_UID, WAIT};
use serde_json::Value;

use crate::fault_harness::{
    assert_accounted_for, assert_serves_every_stored_order, stored_rows, wait_for_stored_rows,
    Corpus, ServiceProcess,
};

for_each_source!(
    three_instances_on_one_channel_each_serve_every_stored_order_with_the_stored_bytes,
    after_sigkill_of_one_of_three_instances_mid_ingest_the_others_take_its_share_and_the_restarted_one_serves_everything,
);

/// How long the instances may take to account for everything once the messages are out.
const RECOVERY: Duration = Duration::from_secs(90);

/// `count` instances, each with a client id of its own, all ready.
async fn start_instances(settings: &Settings, count: usize) -> anyhow::Result<Vec<ServiceProcess>> {
    let mut instances = Vec::new();
    for index in 0..count {
        let mut instance = ServiceProcess::spawn(&instance_settings(settings, index))?;
        instance.wait_ready().await?;
        instances.push(instance);
    }
    Ok(instances)
}

/// The shared settings with instance `index`'s own client id.
fn instance_settings(settings: &Settings, index: usize) -> Settings {
    let mut settings = settings.clone();
    settings.stan.client_id = format!("order-service-test-{index}");
    settings
}

/// Every instance serves every stored order with the stored bytes and answers 404 for ids never published.
async fn assert_every_instance_serves_the_table(
    pool: &Pool,
    instances: &[ServiceProcess],
    unknown: &Corpus,
) -> anyhow::Result<()> {
    for instance in instances {
        assert_serves_every_stored_order(pool, &instance.address)
            .await
            .map_err(|e| e.context(format!("log:\n{}", instance.log_tail())))?;
        for uid in &unknown.valid_uids {
            let response = reqwest::get(format!("{}/order/{uid}", instance.address)).await?;
            assert_eq!(
                response.status(),
                404,
                "{uid} was never published, yet {} answers",
                instance.address
            );
        }
    }
    Ok(())
}

/// `order_service_messages_received_total` of one instance, summed over its sources (from its admin listener).
async fn messages_received(instance: &ServiceProcess) -> anyhow::Result<f64> {
    let name = "order_service_messages_received_total";
    sum(&instance.metrics().await?, name).with_context(|| format!("no {name} in the metrics"))
}

async fn three_instances_on_one_channel_each_serve_every_stored_order_with_the_stored_bytes(
    source: SourceKind,
) -> anyhow::Result<()> {
    // Arrange
    let stopped = prepare_with(&[source]).await?;
    let instances = start_instances(&stopped.settings, 3).await?;
    let corpus = Corpus::new(61, 1500, 300, 150, 100)?;
    let never_published = Corpus::new(62, 50, 0, 0, 0)?;

    // Act
    stopped.publisher.publish_all(&corpus.messages).await?;

    // Assert: each message once in the table; every instance a view of it.
    assert_accounted_for(&stopped.db_pool, &instances[0].address, &corpus, RECOVERY)
        .await
        .map_err(|e| e.context(format!("log:\n{}", instances[0].log_tail())))?;
    assert_every_instance_serves_the_table(&stopped.db_pool, &instances, &never_published).await?;
    for instance in &instances {
        assert!(
            messages_received(instance).await? > 0.0,
            "{} took no share of the messages: the test would not show that instances share",
            instance.address
        );
    }
    Ok(())
}

async fn after_sigkill_of_one_of_three_instances_mid_ingest_the_others_take_its_share_and_the_restarted_one_serves_everything(
    source: SourceKind,
) -> anyhow::Result<()> {
    // Arrange
    let stopped = prepare_with(&[source]).await?;
    let pool = &stopped.db_pool;
    let mut instances = start_instances(&stopped.settings, 3).await?;
    let corpus = Corpus::new(63, 3000, 500, 200, 150)?;
    let (orders, rejected) = corpus.expected_rows();
    let total = orders + rejected;
    let never_published = Corpus::new(64, 50, 0, 0, 0)?;
    stopped.publisher.publish_all(&corpus.messages).await?;

    // Act: kill -9 the second instance once a third is stored.
    wait_for_stored_rows(pool, total / 3).await?;
    instances.remove(1).kill()?;
    let at_kill = stored_rows(pool).await?;

    // Assert: the two survivors store everything, each message once, while the killed one is down.
    assert!(
        at_kill < total,
        "the kill came after the ingest ({at_kill} rows): it proves nothing"
    );
    assert_accounted_for(pool, &instances[0].address, &corpus, RECOVERY)
        .await
        .map_err(|e| e.context(format!("log:\n{}", instances[0].log_tail())))?;
    assert_every_instance_serves_the_table(pool, &instances, &never_published).await?;

    // Restarted under its client id, it serves everything too.
    let mut restarted = ServiceProcess::spawn(&instance_settings(&stopped.settings, 1))?;
    restarted.wait_ready().await?;
    instances.push(restarted);
    assert_every_instance_serves_the_table(pool, &instances, &never_published).await?;
    assert_eq!(
        stored_rows(pool).await?,
        total,
        "rows arrived after the restart"
    );
    Ok(())
}

/// What `/readyz` answered, in order, until the instance stopped answering or `until` held.
async fn watch_readiness(
    instance: &ServiceProcess,
    until: impl Fn(&[(u16, String)]) -> bool,
) -> Vec<(u16, String)> {
    let url = format!("{}/readyz", instance.address);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    let mut seen: Vec<(u16, String)> = Vec::new();
    while Instant::now() < deadline && !until(&seen) {
        let Ok(response) = client.get(&url).send().await else {
            break;
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or_default();
        let message = body["message"].as_str().unwrap_or_default().to_owned();
        if seen.last() != Some(&(status, message.clone())) {
            seen.push((status, message));
        }
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
    seen
}

/// Stalls `first` (SIGSTOP) until a second process with the same client id has taken the id over and is ready.
async fn take_over_while_stalled(
    first: &ServiceProcess,
    settings: &Settings,
) -> anyhow::Result<ServiceProcess> {
    first.pause()?;
    let mut second = ServiceProcess::spawn(settings)?;
    let ready = second.wait_ready().await;
    ready.map_err(|e| e.context("the second process did not take over the client id"))?;
    Ok(second)
}

#[actix_web::test]
async fn a_process_whose_client_id_was_taken_over_while_it_stalled_reports_not_ready_and_exits_with_the_reason(
) -> anyhow::Result<()> {
    // Arrange: one process, stalled past the broker's liveness probe while a second one takes its client id.
    let stopped = prepare().await?;
    let mut first = ServiceProcess::spawn(&stopped.settings)?;
    first.wait_ready().await?;
    let second = take_over_while_stalled(&first, &stopped.settings).await?;

    // Act
    first.resume()?;
    let answers = watch_readiness(&first, |_| false).await;
    let (status, log) = first.exit().await?;

    // Assert: not ready with the reason, then a non-zero exit whose last line says why.
    assert!(
        answers.iter().any(|(status, message)| *status == 503
            && message.contains("not consuming the STAN channel")),
        "/readyz answered {answers:?}; log:\n{log}"
    );
    assert!(!status.success(), "exit status {status:?}; log:\n{log}");
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("order-service: ")
            && last.contains("taken over by another process")
            && last.contains(&stopped.settings.stan.client_id),
        "{log}"
    );
    // /readyz says which source is down (`/readyz/detail` names the subscription); the log says why.
    assert!(
        log.contains("Lost the client id") && log.contains("no longer knows this connection"),
        "{log}"
    );
    // The process that holds the id now takes the messages.
    stopped.publish(SAMPLE).await?;
    second.served(SAMPLE_UID).await?;
    Ok(())
}

#[actix_web::test]
async fn a_process_whose_client_id_was_taken_over_by_a_process_now_gone_reconnects_and_takes_messages_again(
) -> anyhow::Result<()> {
    // Arrange: the id taken over while the first process stalled; the taker stops before the first wakes.
    let stopped = prepare().await?;
    let mut first = ServiceProcess::spawn(&stopped.settings)?;
    first.wait_ready().await?;
    let second = take_over_while_stalled(&first, &stopped.settings).await?;
    let (status, log) = second.terminate().await?;
    assert!(status.success(), "the second process: {log}");

    // Act
    first.resume()?;
    let answers = watch_readiness(&first, |seen| {
        seen.iter().any(|(status, _)| *status == 503)
            && seen.last().is_some_and(|(status, _)| *status == 200)
    })
    .await;

    // Assert: not ready with the reason, then ready again, and it takes messages.
    let log = first.log()?;
    let not_ready = answers.iter().position(|(status, message)| {
        *status == 503 && message.contains("not consuming the STAN channel")
    });
    let ready_again = answers.iter().rposition(|(status, _)| *status == 200);
    assert!(
        matches!((not_ready, ready_again), (Some(down), Some(up)) if down < up),
        "/readyz answered {answers:?}; log:\n{log}"
    );
    // /readyz says which source is down (`/readyz/detail` names the subscription); the log says why.
    assert!(
        log.contains("Lost the client id") && log.contains("no longer knows this connection"),
        "{log}"
    );
    stopped.publish(SAMPLE).await?;
    first
        .served(SAMPLE_UID)
        .await
        .map_err(|e| e.context(format!("log:\n{}", first.log_tail())))?;
    Ok(())
}
