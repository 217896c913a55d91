//! Faults during ingest, over real connections: the service killed with SIGKILL, its database crashed, its
//! nats-server killed (for JetStream: restarted on its store), its STAN broker restarted on its file store, a commit
//! whose answer was lost. Each test publishes thousands of mixed messages (valid, invalid, duplicates, conflicts),
//! injects the fault while they are being ingested, and asserts that every message ends up exactly once in `orders`
//! or `rejected_messages`, and that the cache serves exactly the table. The first three run for both transports.

use std::time::Duration;

use order_service::config::SourceKind;
use order_service::domain::{OrderSchema, DEFAULT_MAX_BYTES};
use order_service::storage::{self, OrderRow};
use order_service_test_support::{
    eventually, holds_for, prepare_on, prepare_with, spawn_app, SAMPLE, SAMPLE_UID, WAIT,
};
use serde_json::Value;
use stan_testkit::StoreKind;

use crate::fault_harness::{
    assert_accounted_for, stored_rows, temp_dir, wait_for_stored_rows, Corpus, PrivateNats,
    ServiceProcess, ThrowawayPostgres,
};

for_each_source!(
    after_sigkill_twice_mid_ingest_and_restarts_every_message_is_stored_exactly_once,
    while_the_database_is_down_nothing_is_acked_and_the_cache_serves_and_after_it_everything_lands_once,
    after_nats_server_is_killed_mid_ingest_and_restarted_the_subscriber_reconnects_and_every_message_lands_once,
);

/// How long the pipeline may take to account for everything after the fault is over.
const RECOVERY: Duration = Duration::from_secs(60);

async fn after_sigkill_twice_mid_ingest_and_restarts_every_message_is_stored_exactly_once(
    source: SourceKind,
) -> anyhow::Result<()> {
    // Arrange
    let stopped = prepare_with(&[source]).await?;
    let corpus = Corpus::new(41, 3000, 600, 200, 200)?;
    let (orders, rejected) = corpus.expected_rows();
    let mut service = ServiceProcess::spawn(&stopped.settings)?;
    service.wait_ready().await?;
    stopped.publisher.publish_all(&corpus.messages).await?;

    // Act: kill -9 once a third is stored, start again, kill -9 again at two thirds, start again.
    let pool = &stopped.db_pool;
    let total = orders + rejected;
    for threshold in [total / 3, total * 2 / 3] {
        eventually(WAIT, &format!("{threshold} rows to be stored"), || async {
            Ok((stored_rows(pool).await? > threshold).then_some(()))
        })
        .await
        .map_err(|e| e.context(format!("service log:\n{}", service.log_tail())))?;
        service.kill()?;
        let at_kill = stored_rows(pool).await?;
        assert!(
            at_kill < total,
            "the kill came after the ingest ({at_kill} rows): it proves nothing"
        );
        service = ServiceProcess::spawn(&stopped.settings)?;
        service.wait_ready().await?;
    }

    // Assert
    assert_accounted_for(pool, &service.address, &corpus, RECOVERY)
        .await
        .map_err(|e| e.context(format!("service log:\n{}", service.log_tail())))?;
    Ok(())
}

async fn while_the_database_is_down_nothing_is_acked_and_the_cache_serves_and_after_it_everything_lands_once(
    source: SourceKind,
) -> anyhow::Result<()> {
    // Arrange: the service on a PostgreSQL cluster of the test's own, with some orders stored and cached.
    let postgres = ThrowawayPostgres::start()?;
    let mut stopped = prepare_with(&[source]).await?;
    stopped.settings.database.url = postgres.url().into();
    stopped.db_pool = storage::build_pool(&stopped.settings.database).await?;
    storage::migrate(&stopped.db_pool).await?;
    let app = stopped.start().await?;
    let mut corpus = Corpus::new(42, 100, 10, 0, 0)?;
    app.publisher.publish_all(&corpus.messages).await?;
    assert_accounted_for(&app.db_pool, &app.address, &corpus, WAIT).await?;
    let mut served_before = Vec::new();
    for uid in corpus.valid_uids.iter().take(20) {
        served_before.push((uid.clone(), app.served(uid).await?));
    }
    let during = Corpus::new(43, 2500, 500, 100, 100)?;
    let (orders, rejected) = during.expected_rows();
    let already = stored_rows(&app.db_pool).await?;
    app.publisher.publish_all(&during.messages).await?;
    corpus.extend(&during);

    // Act: crash the database once a third of the new messages is stored.
    wait_for_stored_rows(&app.db_pool, already + (orders + rejected) / 3).await?;
    postgres.crash()?;

    // Assert: degraded, says why, serves the cache, acks nothing.
    let reason = eventually(WAIT, "/readyz to report the database", || async {
        let response = app.get("/readyz").await?;
        let status = response.status();
        let body: Value = response.json().await?;
        let message = body["message"].as_str().unwrap_or_default().to_owned();
        Ok((status == 503 && message.contains("database")).then_some(message))
    })
    .await?;
    for (uid, document) in &served_before {
        let response = app.get_order(uid).await?;
        assert_eq!(response.status(), 200, "{uid} while the database is down");
        assert_eq!(&response.bytes().await?, document, "{uid}");
    }
    // The persister gives up on a batch only after its retries. Acks of what committed before the crash may still
    // be on their way until then; from then on the messages come back, fail again and none may be acked.
    eventually(RECOVERY, "the pipeline to give up on a batch", || async {
        Ok((app.not_acked() > 0).then_some(()))
    })
    .await?;
    let (acked, delivered) = (app.acked(), app.delivered());
    holds_for(
        Duration::from_secs(4),
        "no ack while the database is down",
        || app.acked() == acked,
    )
    .await
    .map_err(|e| e.context(format!("acked while the database was down ({reason})")))?;
    assert!(
        app.delivered() > delivered,
        "no redelivery reached the service while the database was down: the window proves nothing"
    );
    assert!(
        stored_rows_unreachable(&app.db_pool).await,
        "the database was still up"
    );

    // Assert: restored, everything lands exactly once.
    postgres.resume()?;
    assert_accounted_for(&app.db_pool, &app.address, &corpus, RECOVERY).await?;
    eventually(WAIT, "/readyz to be 200 again", || async {
        Ok((app.get("/readyz").await?.status() == 200).then_some(()))
    })
    .await?;
    Ok(())
}

/// True when the database cannot be counted (it is down).
async fn stored_rows_unreachable(pool: &storage::Pool) -> bool {
    tokio::time::timeout(Duration::from_secs(10), stored_rows(pool))
        .await
        .map_or(true, |result| result.is_err())
}

async fn after_nats_server_is_killed_mid_ingest_and_restarted_the_subscriber_reconnects_and_every_message_lands_once(
    source: SourceKind,
) -> anyhow::Result<()> {
    // Arrange: a nats-server of the test's own, so it can be killed; JetStream keeps its stream in the server's
    // store directory, which the restart reuses.
    let mut nats = PrivateNats::start().await?;
    let app = prepare_on(&nats.url(), StoreKind::Memory, &[source])
        .await?
        .start()
        .await?;
    let mut corpus = Corpus::new(44, 2000, 300, 100, 100)?;
    let (orders, rejected) = corpus.expected_rows();
    app.publisher.publish_all(&corpus.messages).await?;

    // Act: kill nats-server once a third is stored, then start it again on the same port.
    wait_for_stored_rows(&app.db_pool, (orders + rejected) / 3).await?;
    nats.kill().await?;
    let at_kill = stored_rows(&app.db_pool).await?;
    eventually(WAIT, "the subscriber to notice", || async {
        Ok(app.status.check().is_err().then_some(()))
    })
    .await?;
    nats.resume().await?;

    // Assert: it reconnects, takes the rest, and takes what is published after the restart.
    eventually(RECOVERY, "the subscriber to reconnect", || async {
        Ok(app.status.check().is_ok().then_some(()))
    })
    .await?;
    // One valid order until a publish goes through: published twice, it is still one row.
    let probe = Corpus::new(45, 1, 0, 0, 0)?;
    eventually(WAIT, "a publish through the restarted server", || async {
        Ok(app
            .publisher
            .publish_all(&probe.messages)
            .await
            .is_ok()
            .then_some(()))
    })
    .await?;
    let after = Corpus::new(46, 200, 20, 0, 0)?;
    app.publisher.publish_all(&after.messages).await?;
    corpus.extend(&probe);
    corpus.extend(&after);
    assert!(
        at_kill < orders + rejected,
        "the kill came after the ingest ({at_kill} rows): it proves nothing"
    );
    assert_accounted_for(&app.db_pool, &app.address, &corpus, RECOVERY).await?;
    Ok(())
}

#[actix_web::test]
async fn an_order_whose_commit_answer_was_lost_is_cached_when_its_redelivery_finds_it_stored(
) -> anyhow::Result<()> {
    // Arrange: what a connection lost right after COMMIT leaves behind: the order is in the table, the service took
    // the commit for failed (so never cached it and did not ack), and the message comes again.
    let app = spawn_app().await?;
    let order = OrderSchema::new(DEFAULT_MAX_BYTES)?
        .validate(SAMPLE.as_bytes())
        .map_err(|rejection| anyhow::anyhow!("the sample is rejected: {rejection}"))?;
    let row = OrderRow {
        uid: order.uid.as_str(),
        document: &order.document,
        track_number: &order.order.track_number,
        customer_id: &order.order.customer_id,
        date_created: None,
        source: "stan",
        channel: &app.settings.stan.channel,
        sequence: 1,
        raw: SAMPLE.as_bytes(),
    };
    storage::store_batch(&app.db_pool, &[row], &[]).await?;
    // Served already: a miss reads PostgreSQL, and the change feed delivers what any transaction committed.
    assert_eq!(app.served(SAMPLE_UID).await?, order.document);

    // Act
    app.publish(SAMPLE).await?;

    // Assert
    assert_eq!(app.served(SAMPLE_UID).await?, order.document);
    assert_eq!(app.count("orders").await?, 1);
    Ok(())
}

#[actix_web::test]
async fn after_the_broker_is_restarted_on_its_file_store_mid_ingest_every_message_lands_once(
) -> anyhow::Result<()> {
    // Arrange: a broker with a file store, so a restart keeps the channel, the durable and what is unacked.
    // Declared before the app, so it is removed after the app (and its broker) stopped.
    let store_dir = temp_dir("stan")?;
    let store = StoreKind::File(store_dir.path().to_path_buf());
    let nats_url = stan_testkit::nats_server::ensure_nats_server().await?;
    let mut app = prepare_on(&nats_url, store.clone(), &[SourceKind::Stan])
        .await?
        .start()
        .await?;
    let mut corpus = Corpus::new(47, 2500, 400, 100, 100)?;
    let (orders, rejected) = corpus.expected_rows();
    // Two thirds before the restart and the rest after it: the restart falls mid-ingest however fast this machine
    // stores (on a quiet one the whole corpus could be stored before the broker came back).
    let (before_restart, after_restart) = corpus.messages.split_at(corpus.messages.len() * 2 / 3);
    app.publisher.publish_all(before_restart).await?;

    // Act: restart the broker on the same directory once a third is stored.
    wait_for_stored_rows(&app.db_pool, (orders + rejected) / 3).await?;
    let publisher = app.restart_broker_on(store).await?;
    let at_restart = stored_rows(&app.db_pool).await?;
    publisher.publish_all(after_restart).await?;
    let after = Corpus::new(48, 200, 20, 0, 0)?;
    publisher.publish_all(&after.messages).await?;
    corpus.extend(&after);

    // Assert
    assert!(
        at_restart < orders + rejected,
        "the restart came after the ingest ({at_restart} rows): it proves nothing"
    );
    assert_accounted_for(&app.db_pool, &app.address, &corpus, RECOVERY).await?;
    assert_eq!(app.status.check(), Ok(()), "subscribed at the end");
    Ok(())
}
