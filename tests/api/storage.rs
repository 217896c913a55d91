//! The persister's batch write against PostgreSQL: the bulk COPY for new orders, the fallback that tells
//! duplicates and conflicts apart when an order of the batch is stored already, and a small batch's statements,
//! which commit one by one.

use chrono::{DateTime, Utc};
use order_service::domain::generator::valid_order_json;
use order_service::domain::{
    OrderSchema, RejectClass, RejectReason, ValidOrder, DEFAULT_MAX_BYTES,
};
use order_service::storage::{self, DeadLetterRow, OrderRow, Stored};
use order_service_test_support::spawn_app;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// `count` valid generated orders as a publisher sends them.
fn messages(count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count).map(|_| valid_order_json(&mut rng)).collect()
}

/// Each message with its order, validated as the pipeline does (the order borrows from its message).
fn validated(messages: &[Vec<u8>]) -> anyhow::Result<Vec<(&[u8], ValidOrder<'_>)>> {
    let schema = OrderSchema::new(DEFAULT_MAX_BYTES)?;
    messages
        .iter()
        .map(|raw| {
            let order = schema.validate(raw).map_err(|rejection| {
                anyhow::anyhow!("a generated order is rejected: {rejection}")
            })?;
            Ok((raw.as_slice(), order))
        })
        .collect()
}

fn row<'a>(raw: &'a [u8], order: &'a ValidOrder<'_>, sequence: u64) -> OrderRow<'a> {
    OrderRow {
        uid: order.uid.as_str(),
        document: &order.document,
        track_number: &order.order.track_number,
        customer_id: &order.order.customer_id,
        date_created: DateTime::parse_from_rfc3339(&order.order.date_created)
            .ok()
            .map(|d| d.with_timezone(&Utc)),
        source: "stan",
        channel: "orders-storage-test",
        sequence,
        raw,
    }
}

#[actix_web::test]
async fn a_batch_of_new_orders_is_stored_whole_with_its_key_columns() -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;
    let messages = messages(50, 1);
    let orders = validated(&messages)?;
    let rows: Vec<OrderRow> = orders
        .iter()
        .enumerate()
        .map(|(i, (raw, order))| row(raw, order, i as u64 + 1))
        .collect();

    // Act
    let stored = storage::store_batch(&app.db_pool, &rows, &[]).await?;

    // Assert
    assert_eq!(stored, vec![Stored::Inserted; rows.len()]);
    let conn = app.db_pool.get().await?;
    for (i, (_, order)) in orders.iter().enumerate() {
        let found = conn
            .query_one(
                "SELECT document::text, track_number, customer_id, date_created, stan_sequence
                 FROM orders WHERE order_uid = $1",
                &[&order.uid.as_str()],
            )
            .await?;
        let document: String = found.try_get(0)?;
        assert_eq!(
            document.as_bytes(),
            &order.document[..],
            "order {i}'s document"
        );
        assert_eq!(found.try_get::<_, String>(1)?, order.order.track_number);
        assert_eq!(found.try_get::<_, String>(2)?, order.order.customer_id);
        assert_eq!(
            found.try_get::<_, Option<DateTime<Utc>>>(3)?,
            rows[i].date_created
        );
        assert_eq!(found.try_get::<_, i64>(4)?, i as i64 + 1);
    }
    let transactions: i64 = conn
        .query_one("SELECT count(DISTINCT xid) FROM orders", &[])
        .await?
        .try_get(0)?;
    assert_eq!(
        transactions, 1,
        "one transaction, recorded on every row for the change feed"
    );
    Ok(())
}

#[actix_web::test]
async fn a_batch_meeting_stored_orders_tells_new_duplicate_and_conflicting_ones_apart(
) -> anyhow::Result<()> {
    // Arrange: one order stored before; the batch repeats it unchanged, changes it, and brings two new ones, one of
    // them twice.
    let app = spawn_app().await?;
    let messages = messages(3, 2);
    let orders = validated(&messages)?;
    let (stored_raw, stored_order) = &orders[0];
    storage::store_batch(&app.db_pool, &[row(stored_raw, stored_order, 1)], &[]).await?;
    let mut changed = stored_order.clone();
    let mut document: serde_json::Value = serde_json::from_slice(&changed.document)?;
    document["delivery"]["city"] = "Elsewhere".into();
    changed.document = serde_json::to_vec(&document)?.into();
    let batch = [
        row(orders[1].0, &orders[1].1, 2),
        row(stored_raw, stored_order, 3),
        row(stored_raw, &changed, 4),
        row(orders[2].0, &orders[2].1, 5),
        row(orders[1].0, &orders[1].1, 6),
    ];

    // Act
    let stored = storage::store_batch(&app.db_pool, &batch, &[]).await?;

    // Assert
    assert_eq!(stored[0], Stored::Inserted);
    assert_eq!(stored[1], Stored::Duplicate);
    match &stored[2] {
        Stored::Conflict(rejection) => assert_eq!(rejection.class, RejectClass::Conflict),
        other => panic!("the changed order is a conflict, not {other:?}"),
    }
    assert_eq!(stored[3], Stored::Inserted);
    assert_eq!(stored[4], Stored::Duplicate, "the repeat within the batch");
    assert_eq!(app.count("orders").await?, 3);
    assert_eq!(app.count("rejected_messages").await?, 1);
    let served: Vec<u8> = app.served(stored_order.uid.as_str()).await?.to_vec();
    assert_eq!(served, stored_order.document, "the first version stays");
    Ok(())
}

#[actix_web::test]
async fn a_large_batch_meeting_a_stored_order_falls_back_from_copy_and_stores_the_rest(
) -> anyhow::Result<()> {
    // Arrange: a batch large enough to be tried with COPY, which the stored order makes fail.
    let app = spawn_app().await?;
    let messages = messages(40, 3);
    let orders = validated(&messages)?;
    let (stored_raw, stored_order) = &orders[0];
    storage::store_batch(&app.db_pool, &[row(stored_raw, stored_order, 1)], &[]).await?;
    let batch: Vec<OrderRow> = orders
        .iter()
        .enumerate()
        .map(|(i, (raw, order))| row(raw, order, i as u64 + 2))
        .collect();
    assert!(batch.len() >= storage::orders::COPY_FROM, "COPY is tried");

    // Act
    let stored = storage::store_batch(&app.db_pool, &batch, &[]).await?;

    // Assert
    assert_eq!(stored[0], Stored::Duplicate);
    assert_eq!(stored[1..], vec![Stored::Inserted; batch.len() - 1][..]);
    assert_eq!(app.count("orders").await?, orders.len() as i64);
    assert_eq!(app.count("rejected_messages").await?, 0);
    Ok(())
}

#[actix_web::test]
async fn a_small_batch_interrupted_after_its_orders_is_stored_whole_when_retried(
) -> anyhow::Result<()> {
    // Arrange: a small batch (its statements commit one by one) whose dead letters PostgreSQL refuses at first.
    let app = spawn_app().await?;
    let messages = messages(2, 4);
    let orders = validated(&messages)?;
    let batch: Vec<OrderRow> = orders
        .iter()
        .enumerate()
        .map(|(i, (raw, order))| row(raw, order, i as u64 + 1))
        .collect();
    assert!(batch.len() < storage::orders::COPY_FROM, "no COPY");
    let reasons = [RejectReason {
        pointer: String::new(),
        message: "not JSON".to_owned(),
    }];
    let dead_letter = DeadLetterRow {
        source: "stan",
        channel: "orders-storage-test",
        sequence: 3,
        payload: b"{not json",
        class: RejectClass::MalformedJson,
        reasons: &reasons,
        order_uid: None,
    };
    let conn = app.db_pool.get().await?;
    conn.batch_execute(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON rejected_messages FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .await?;

    // Act: the first attempt fails after the orders' statement; the retry runs once PostgreSQL takes dead letters.
    let failed = storage::store_batch(&app.db_pool, &batch, &[dead_letter]).await;
    let orders_after_failure = app.count("orders").await?;
    conn.batch_execute("DROP TRIGGER refuse ON rejected_messages")
        .await?;
    let retried = storage::store_batch(&app.db_pool, &batch, &[dead_letter]).await?;

    // Assert
    assert!(failed.is_err(), "the refused dead letter fails the batch");
    assert_eq!(
        orders_after_failure, 2,
        "the orders' statement committed on its own"
    );
    assert_eq!(
        retried,
        vec![Stored::Duplicate; 2],
        "the retry finds them stored"
    );
    assert_eq!(app.count("orders").await?, 2);
    assert_eq!(app.count("rejected_messages").await?, 1);
    Ok(())
}
