use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use order_service::config::SourceKind;
use order_service::domain::generator::{self, InvalidKind};
use order_service_test_support::metrics::{scrape, value};
use order_service_test_support::{
    eventually, holds_for, prepare_with, sample_changed, spawn_app, spawn_app_with, start_error,
    uid_of, TestApp, SAMPLE, SAMPLE_UID, WAIT,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

for_each_source!(
    a_thousand_random_orders_are_all_stored_and_served,
    messages_published_while_the_service_is_down_are_served_after_it_starts,
    the_first_start_takes_what_was_published_before_the_durable_existed,
    the_same_order_twice_is_stored_once_and_both_deliveries_are_acked,
    another_order_under_a_stored_order_uid_is_a_conflict_and_the_first_version_stays,
    invalid_messages_become_acked_dead_letters_and_never_reach_the_cache,
    while_the_orders_table_is_missing_nothing_is_acked_and_the_order_lands_once_it_is_back,
);

/// The channel or stream a dead letter from `source` records.
fn origin_name(app: &TestApp, source: SourceKind) -> String {
    match source {
        SourceKind::Stan => app.settings.stan.channel.clone(),
        SourceKind::JetStream => app.settings.jetstream.stream.clone(),
    }
}

async fn a_thousand_random_orders_are_all_stored_and_served(
    source: SourceKind,
) -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app_with(&[source]).await?;
    let mut rng = StdRng::seed_from_u64(1);
    let orders: Vec<Vec<u8>> = (0..1000)
        .map(|_| generator::valid_order_json(&mut rng))
        .collect();

    // Act
    app.publish_all(orders.clone()).await?;
    app.wait_for_rows("orders", 1000).await?;

    // Assert
    for order in &orders {
        let uid = uid_of(order)?;
        let served: Value = serde_json::from_slice(&app.served(&uid).await?)?;
        assert_eq!(
            served,
            serde_json::from_slice::<Value>(order)?,
            "order {uid}"
        );
    }
    app.wait_for_acks(1000).await?;
    Ok(())
}

async fn messages_published_while_the_service_is_down_are_served_after_it_starts(
    source: SourceKind,
) -> anyhow::Result<()> {
    // Arrange: the durable exists (the service ran once), then the service stops.
    let app = spawn_app_with(&[source]).await?;
    app.publish_sample().await?;
    let stopped = app.stop().await?;
    let mut rng = StdRng::seed_from_u64(2);
    let while_down: Vec<Vec<u8>> = (0..20)
        .map(|_| generator::valid_order_json(&mut rng))
        .collect();
    for message in &while_down {
        stopped.publish(message.clone()).await?;
    }

    // Act
    let app = stopped.start().await?;

    // Assert
    for message in &while_down {
        app.served(&uid_of(message)?).await?;
    }
    app.wait_for_rows("orders", 21).await?;
    Ok(())
}

async fn the_first_start_takes_what_was_published_before_the_durable_existed(
    source: SourceKind,
) -> anyhow::Result<()> {
    // Arrange
    let stopped = prepare_with(&[source]).await?;
    stopped.publish(SAMPLE).await?;

    // Act
    let app = stopped.start().await?;

    // Assert
    app.served(SAMPLE_UID).await?;
    Ok(())
}

async fn the_same_order_twice_is_stored_once_and_both_deliveries_are_acked(
    source: SourceKind,
) -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app_with(&[source]).await?;

    // Act
    app.publish_sample().await?;
    app.publish(SAMPLE).await?;
    app.wait_for_acks(2).await?;

    // Assert: one row, and nothing comes back (a message not acked would be redelivered after the 1 s ack wait).
    assert_eq!(app.count("orders").await?, 1);
    assert_eq!(app.count("rejected_messages").await?, 0);
    let delivered = app.delivered();
    holds_for(Duration::from_secs(3), "no redelivery", || {
        app.delivered() == delivered
    })
    .await?;
    assert_eq!(app.acked(), 2);
    Ok(())
}

async fn another_order_under_a_stored_order_uid_is_a_conflict_and_the_first_version_stays(
    source: SourceKind,
) -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app_with(&[source]).await?;
    let changed = sample_changed()?;
    let first = app.publish_sample().await?;

    // Act
    app.publish(changed.clone()).await?;
    app.wait_for_rows("rejected_messages", 1).await?;

    // Assert
    let conn = app.db_pool.get().await?;
    let row = conn
        .query_one(
            "SELECT reason_class, order_uid, reasons, payload, source, channel FROM rejected_messages",
            &[],
        )
        .await?;
    assert_eq!(row.get::<_, String>(0), "conflict");
    assert_eq!(
        (row.get::<_, String>(4), row.get::<_, String>(5)),
        (source.as_str().to_owned(), origin_name(&app, source)),
        "the dead letter records where it came from"
    );
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some(SAMPLE_UID));
    let reasons: Value = row.get(2);
    assert_eq!(reasons[0]["pointer"], "/delivery/city", "{reasons}");
    assert_eq!(
        row.get::<_, Vec<u8>>(3),
        changed.into_bytes(),
        "the raw message is kept"
    );
    assert_eq!(app.count("orders").await?, 1);
    assert_eq!(
        app.get_order(SAMPLE_UID).await?.bytes().await?,
        first,
        "the first version stays"
    );
    app.wait_for_acks(2).await?;
    Ok(())
}

async fn invalid_messages_become_acked_dead_letters_and_never_reach_the_cache(
    source: SourceKind,
) -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app_with(&[source]).await?;
    let mut rng = StdRng::seed_from_u64(3);
    let messages: Vec<(InvalidKind, Vec<u8>)> = InvalidKind::ALL
        .iter()
        .map(|kind| (*kind, generator::invalid_message_of(*kind, &mut rng)))
        .collect();

    // Act
    app.publish_all(messages.iter().map(|(_, m)| m.clone()).collect())
        .await?;
    app.wait_for_rows("rejected_messages", messages.len() as i64)
        .await?;
    app.wait_for_acks(messages.len() as u64).await?;

    // Assert
    let conn = app.db_pool.get().await?;
    for (kind, message) in &messages {
        let row = conn
            .query_opt(
                "SELECT reason_class, reasons, source, channel FROM rejected_messages WHERE payload = $1",
                &[message],
            )
            .await?;
        let row = row.ok_or_else(|| anyhow::anyhow!("no dead letter for {kind:?}"))?;
        assert_eq!(
            (row.get::<_, String>(2), row.get::<_, String>(3)),
            (source.as_str().to_owned(), origin_name(&app, source)),
            "{kind:?} records where it came from"
        );
        let reasons: Value = row.get(1);
        assert!(
            reasons.as_array().is_some_and(|r| !r.is_empty()),
            "{kind:?} has its reasons: {reasons}"
        );
        // An invalid message may have no order_uid at all: then there is nothing to look up.
        let uid = uid_of(message).unwrap_or_default();
        if !uid.is_empty() && uid != "dup" {
            assert_eq!(
                app.get_order(&uid).await?.status().as_u16(),
                404,
                "{kind:?} is not served"
            );
        }
    }
    assert_eq!(app.count("orders").await?, 0);
    Ok(())
}

async fn while_the_orders_table_is_missing_nothing_is_acked_and_the_order_lands_once_it_is_back(
    source: SourceKind,
) -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app_with(&[source]).await?;
    app.execute("ALTER TABLE orders RENAME TO orders_sabotaged")
        .await?;

    // Act
    app.publish(SAMPLE).await?;
    eventually(WAIT, "a failed commit and a redelivery", || async {
        Ok((app.not_acked() >= 1 && app.delivered() >= 2).then_some(()))
    })
    .await?;
    let acked_while_broken = app.acked();
    app.execute("ALTER TABLE orders_sabotaged RENAME TO orders")
        .await?;

    // Assert
    assert_eq!(
        acked_while_broken, 0,
        "nothing is acked while the table is missing"
    );
    app.served(SAMPLE_UID).await?;
    assert_eq!(app.count("orders").await?, 1);
    app.wait_for_acks(1).await?;
    Ok(())
}

#[actix_web::test]
async fn when_the_broker_forgets_the_client_the_subscription_is_renewed() -> anyhow::Result<()> {
    // Arrange
    let mut app = spawn_app().await?;
    app.publish_sample().await?;
    let reconnects = app.status.reconnects.load(Ordering::Relaxed);

    // Act: a memory broker restarted on the same cluster id knows no client and no subscription.
    let publisher = app.restart_broker().await?;
    eventually(WAIT, "a new subscription", || async {
        Ok((app.status.reconnects.load(Ordering::Relaxed) > reconnects
            && app.status.check().is_ok())
        .then_some(()))
    })
    .await?;
    let mut rng = StdRng::seed_from_u64(4);
    let after = generator::valid_order_json(&mut rng);
    publisher.publish(after.clone()).await?;

    // Assert
    app.served(&uid_of(&after)?).await?;
    Ok(())
}

#[actix_web::test]
async fn a_second_instance_with_the_same_client_id_fails_to_start_with_a_clear_error(
) -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;

    // Act
    let second = order_service::app::Application::build(app.settings.clone()).await;

    // Assert
    let error = start_error(second, "a second instance with the same client id started")?;
    assert!(
        error.contains("another instance") && error.contains("order-service-test"),
        "{error}"
    );
    assert!(
        app.status.check().is_ok(),
        "the first instance is still subscribed"
    );
    Ok(())
}

/// `order_service_commit_failures_total` as `/metrics` reports it.
async fn commit_failures(app: &TestApp) -> anyhow::Result<f64> {
    value(
        &scrape(app).await?,
        "order_service_commit_failures_total",
        &[],
    )
    .context("no commit failure counter in /metrics")
}

#[actix_web::test]
async fn a_value_the_database_refuses_dead_letters_only_its_order_while_the_rest_of_the_batch_commits(
) -> anyhow::Result<()> {
    // Arrange: track numbers longer than 20 characters now fail with SQLSTATE 22001 (a class 22 data error).
    let app = spawn_app().await?;
    app.execute("ALTER TABLE orders ALTER COLUMN track_number TYPE varchar(20)")
        .await?;
    let mut rng = StdRng::seed_from_u64(22);
    let mut orders: Vec<Value> = (0..12)
        .map(|_| serde_json::from_slice(&generator::valid_order_json(&mut rng)))
        .collect::<Result<_, _>>()?;
    let too_long = "WB".repeat(15);
    let bad = &mut orders[8];
    bad["track_number"] = Value::from(too_long.as_str());
    for item in bad["items"].as_array_mut().into_iter().flatten() {
        item["track_number"] = Value::from(too_long.as_str());
    }
    let bad_uid = bad["order_uid"].as_str().unwrap_or_default().to_owned();
    let messages: Vec<Vec<u8>> = orders
        .iter()
        .map(serde_json::to_vec)
        .collect::<Result<_, _>>()?;

    // The first order's transaction waits on a table lock, so the others accumulate into the next batch together.
    let mut blocker = app.db_pool.get().await?;
    let lock = blocker.transaction().await?;
    lock.batch_execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await?;
    app.publish(messages[0].clone()).await?;
    eventually(WAIT, "the first order in flight", || async {
        Ok((app.status.in_flight.load(Ordering::Relaxed) >= 1).then_some(()))
    })
    .await?;
    app.publish_all(messages[1..].to_vec()).await?;
    let all = messages.len() as u64;
    eventually(WAIT, "every order in flight", || async {
        Ok((app.status.in_flight.load(Ordering::Relaxed) >= all).then_some(()))
    })
    .await?;

    // Act
    lock.commit().await?;
    app.wait_for_acks(all).await?;

    // Assert
    assert_eq!(
        app.count("orders").await?,
        all as i64 - 1,
        "the rest of the batch is stored"
    );
    let conn = app.db_pool.get().await?;
    let rows = conn
        .query(
            "SELECT order_uid, reason_class, reasons FROM rejected_messages",
            &[],
        )
        .await?;
    assert_eq!(rows.len(), 1, "one dead letter");
    let (uid, class, reasons): (Option<String>, String, Value) =
        (rows[0].get(0), rows[0].get(1), rows[0].get(2));
    assert_eq!(uid.as_deref(), Some(bad_uid.as_str()));
    assert_eq!(class, "schema");
    assert!(
        reasons
            .to_string()
            .contains("value too long for type character varying(20)"),
        "the database's reason is kept: {reasons}"
    );
    for order in orders.iter().filter(|o| o["order_uid"] != bad_uid.as_str()) {
        let uid = order["order_uid"].as_str().unwrap_or_default();
        app.served(uid).await?;
    }
    assert_eq!(app.get_order(&bad_uid).await?.status().as_u16(), 404);
    assert_eq!(app.not_acked(), 0, "nothing left for redelivery");
    // The batch, then each half holding the bad order (a bisection), down to the order alone; no other transaction.
    let failures = commit_failures(&app).await?;
    let halvings = (all as f64).log2().ceil();
    assert!(
        (2.0..=halvings + 1.0).contains(&failures),
        "{failures} failed transactions for a batch of at most {all}"
    );
    Ok(())
}
