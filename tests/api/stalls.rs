//! Every wait has a deadline and every poison is isolated: a lock held on `orders` stalls the pipeline visibly
//! (no ack, `/readyz` 503 `stalled`, the gauge) and it recovers by itself; a message PostgreSQL refuses for a reason
//! of its own (a trigger) becomes a `storage` dead letter while the rest of its batches commits; a message refused
//! even as a dead letter is reported and the stream flows past it; a subscription the broker refuses is reported.

use std::time::Duration;

use anyhow::Context;
use order_service_test_support::metrics::{scrape, value};
use order_service_test_support::{
    connect, count, eventually, holds_for, prepare, start_error, StoppedApp, TestApp, WAIT,
};

use crate::fault_harness::{assert_accounted_for, Corpus};

/// Short deadlines, so the tests see them pass.
fn with_short_deadlines(stopped: &mut StoppedApp) {
    stopped.settings.database.statement_timeout_secs = 1;
    stopped.settings.application.stall_after_secs = 2;
}

async fn readyz(app: &TestApp) -> anyhow::Result<(u16, String)> {
    let response = app.get("/readyz").await?;
    Ok((response.status().as_u16(), response.text().await?))
}

/// The value of an unlabelled sample in `GET /metrics`.
async fn gauge(app: &TestApp, name: &str) -> anyhow::Result<f64> {
    value(&scrape(app).await?, name, &[]).with_context(|| format!("{name} is not exported"))
}

/// Installs a trigger that refuses (SQLSTATE P0001, not class 22) every row of `table` with this order_uid.
async fn refuse_in(stopped: &StoppedApp, table: &str, uid: &str) -> anyhow::Result<()> {
    let conn = stopped.db_pool.get().await?;
    conn.batch_execute(&format!(
        "CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.order_uid = '{uid}' THEN
                 RAISE EXCEPTION 'order % is refused by a test trigger', NEW.order_uid;
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table}
             FOR EACH ROW EXECUTE FUNCTION refuse_{table}();"
    ))
    .await?;
    Ok(())
}

#[actix_web::test]
async fn a_lock_on_orders_stalls_the_pipeline_visibly_without_acks_and_it_recovers_after_release(
) -> anyhow::Result<()> {
    // Arrange: a session holds the table longer than the statement timeout.
    let mut stopped = prepare().await?;
    with_short_deadlines(&mut stopped);
    let app = stopped.start().await?;
    let locker = connect(app.database_url()).await?;
    locker
        .batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;")
        .await?;
    let corpus = Corpus::new(160, 30, 0, 0, 0)?;

    // Act
    app.publisher.publish_all(&corpus.messages).await?;
    let body = eventually(WAIT, "/readyz to report the stall", || async {
        let (status, body) = readyz(&app).await?;
        Ok((status == 503 && body.contains("stalled")).then_some(body))
    })
    .await?;

    // Assert: visible, and nothing acked while the lock is held.
    assert!(body.contains("lock wait"), "the cause is named: {body}");
    assert_eq!(gauge(&app, "order_service_pipeline_stalled").await?, 1.0);
    assert!(app.delivered() > 0, "no delivery reached the service");
    holds_for(Duration::from_secs(2), "no ack during the lock", || {
        app.acked() == 0
    })
    .await?;

    // Act: release.
    locker.batch_execute("ROLLBACK").await?;

    // Assert: every order stored once, and ready again by itself.
    assert_accounted_for(&app.db_pool, &app.address, &corpus, WAIT).await?;
    eventually(WAIT, "/readyz to answer 200 again", || async {
        Ok((readyz(&app).await?.0 == 200).then_some(()))
    })
    .await?;
    assert_eq!(gauge(&app, "order_service_pipeline_stalled").await?, 0.0);
    Ok(())
}

#[actix_web::test]
async fn an_order_a_trigger_refuses_becomes_a_storage_dead_letter_and_the_rest_of_its_batches_commits(
) -> anyhow::Result<()> {
    // Arrange: a backlog published before the service starts, so the refused order shares a batch with others.
    let mut stopped = prepare().await?;
    with_short_deadlines(&mut stopped);
    let corpus = Corpus::new(161, 300, 0, 0, 0)?;
    let refused = corpus
        .valid_uids
        .iter()
        .nth(150)
        .cloned()
        .expect("300 orders");
    refuse_in(&stopped, "orders", &refused).await?;
    stopped.publisher.publish_all(&corpus.messages).await?;

    // Act
    let app = stopped.start().await?;

    // Assert: 299 orders and one dead letter of class storage, every message acked.
    app.wait_for_rows("orders", 299).await?;
    app.wait_for_rows("rejected_messages", 1).await?;
    app.wait_for_acks(300).await?;
    let conn = app.db_pool.get().await?;
    let row = conn
        .query_one(
            "SELECT reason_class, order_uid, reasons::text FROM rejected_messages",
            &[],
        )
        .await?;
    let (class, uid, reasons): (String, Option<String>, String) =
        (row.get(0), row.get(1), row.get(2));
    assert_eq!(class, "storage");
    assert_eq!(uid.as_deref(), Some(refused.as_str()));
    assert!(
        reasons.contains("refused by a test trigger"),
        "the database's error is kept: {reasons}"
    );
    let stored = conn
        .query_one(
            "SELECT count(*) FROM orders WHERE order_uid = $1",
            &[&refused],
        )
        .await?
        .get::<_, i64>(0);
    assert_eq!(stored, 0);
    let text = app.admin_get("/metrics").await?.text().await?;
    assert!(
        text.contains(r#"order_service_orders_rejected_total{reason="storage"} 1"#),
        "the storage class is counted"
    );
    Ok(())
}

#[actix_web::test]
async fn a_message_refused_even_as_a_dead_letter_is_reported_and_the_stream_flows_past_it(
) -> anyhow::Result<()> {
    // Arrange: the order and its dead letter are both refused.
    let mut stopped = prepare().await?;
    with_short_deadlines(&mut stopped);
    stopped.settings.database.store_max_attempts = 2;
    let corpus = Corpus::new(162, 100, 0, 0, 0)?;
    let refused = corpus
        .valid_uids
        .iter()
        .nth(40)
        .cloned()
        .expect("100 orders");
    refuse_in(&stopped, "orders", &refused).await?;
    refuse_in(&stopped, "rejected_messages", &refused).await?;
    let app = stopped.start().await?;

    // Act
    app.publisher.publish_all(&corpus.messages).await?;

    // Assert: the others are stored and acked; the refused one is reported, unacked.
    app.wait_for_rows("orders", 99).await?;
    app.wait_for_acks(99).await?;
    let body = eventually(WAIT, "/readyz to report the unstorable message", || async {
        let (status, body) = readyz(&app).await?;
        Ok((status == 503 && body.contains("unstorable")).then_some(body))
    })
    .await?;
    assert!(
        body.contains("1 message(s)") && !body.contains("sequences"),
        "the public answer counts it: {body}"
    );
    let detail = app.admin_get("/readyz/detail").await?.text().await?;
    assert!(
        detail.contains("sequences ["),
        "the operator's detail names the sequence: {detail}"
    );
    assert_eq!(gauge(&app, "order_service_messages_unstorable").await?, 1.0);
    assert_eq!(count(&app.db_pool, "rejected_messages").await?, 0);
    // More messages still flow while the refused one keeps coming back.
    let more = Corpus::new(163, 20, 0, 0, 0)?;
    app.publisher.publish_all(&more.messages).await?;
    app.wait_for_rows("orders", 119).await?;
    Ok(())
}

#[actix_web::test]
async fn a_subscription_the_broker_refuses_is_reported_with_the_brokers_message(
) -> anyhow::Result<()> {
    // Arrange: a durable name the broker refuses (STAN keeps ':' for itself).
    let mut stopped = prepare().await?;
    stopped.settings.stan.durable_name = "not:valid".into();

    // Act
    let error = start_error(
        stopped.start().await,
        "the service started on a refused subscription",
    )?;

    // Assert
    assert!(error.contains("refused the subscription"), "{error}");
    assert!(
        error.contains("stan: invalid subscription request"),
        "the broker's message is kept: {error}"
    );
    Ok(())
}
