//! Every instance serves every order: a miss reads PostgreSQL, ids not stored are remembered until they arrive, a
//! bounded cache keeps the hottest orders, and an order one instance consumed is served by another.

use order_service::app::{Application, ShutdownHandle};
use order_service::cache::store::ENTRY_OVERHEAD;
use order_service_test_support::metrics::{get, scrape, scrape_at};
use order_service_test_support::{
    connect, eventually, insert_directly, prepare, sample_with_uid, spawn_app, TestApp, WAIT,
};

async fn metric(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
    Ok(get(
        &scrape(app).await?,
        &format!("order_service_{name}"),
        labels,
    ))
}

#[actix_web::test]
async fn an_order_inserted_behind_the_services_back_is_served_at_once() -> anyhow::Result<()> {
    // Arrange: an open transaction holds the change feed back (nothing after it can be delivered until it ends),
    // so only a read-through can serve the order.
    let app = spawn_app().await?;
    let blocker = connect(app.database_url()).await?;
    blocker
        .batch_execute("BEGIN; SELECT pg_current_xact_id();")
        .await?;
    let client = connect(app.database_url()).await?;
    let document = insert_directly(&client, "behindthebackorder1").await?;

    // Act: one request, no waiting.
    let response = app.get_order("behindthebackorder1").await?;

    // Assert
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await?, document.as_bytes());
    assert_eq!(
        metric(&app, "cache_read_throughs_total", &[("result", "found")]).await?,
        1.0
    );
    assert_eq!(metric(&app, "feed_orders_total", &[]).await?, 0.0);
    // Once the blocker ends, the feed delivers it too.
    blocker.batch_execute("COMMIT").await?;
    eventually(WAIT, "the feed to deliver the order", || async {
        Ok((metric(&app, "feed_orders_total", &[]).await? >= 1.0).then_some(()))
    })
    .await?;
    Ok(())
}

#[actix_web::test]
async fn an_id_not_found_is_remembered_and_forgotten_once_the_order_arrives() -> anyhow::Result<()>
{
    // Arrange: one HTTP worker, so every request meets the same cache.
    let mut stopped = prepare().await?;
    stopped.settings.application.http_workers = Some(1);
    let app = stopped.start().await?;

    // Act
    let first = app.get_order("notstoredyet000001").await?.status().as_u16();
    let second = app.get_order("notstoredyet000001").await?.status().as_u16();
    let queries_before = metric(&app, "cache_read_through_queries_total", &[]).await?;
    let client = connect(app.database_url()).await?;
    let document = insert_directly(&client, "notstoredyet000001").await?;

    // Assert: one query, then a negative hit; the order is served once the feed delivered it.
    assert_eq!((first, second), (404, 404));
    assert_eq!(queries_before, 1.0);
    assert_eq!(metric(&app, "cache_negative_hits_total", &[]).await?, 1.0);
    let served = app.served("notstoredyet000001").await?;
    assert_eq!(served, document.as_bytes());
    Ok(())
}

#[actix_web::test]
async fn a_bounded_cache_restores_the_newest_orders_evicts_and_reads_the_rest_through(
) -> anyhow::Result<()> {
    // Arrange: 20 orders of one size stored before the start; the bound holds 5 of them.
    let mut stopped = prepare().await?;
    let uids: Vec<String> = (0..20).map(|i| format!("boundedorder{i:07}")).collect();
    let client = connect(stopped.settings.database.url.expose()).await?;
    for uid in &uids {
        insert_directly(&client, uid).await?;
    }
    let one = sample_with_uid(&uids[0]).len() + uids[0].len() + ENTRY_OVERHEAD;
    let bound = 5 * one + one / 2;
    stopped.settings.application.cache_max_bytes = Some(bound);
    stopped.settings.application.http_workers = Some(1);

    // Act
    let app = stopped.start().await?;
    let restored = metric(&app, "cache_restored_orders", &[]).await?;
    for uid in uids.iter().rev().take(5) {
        assert_eq!(app.get_order(uid).await?.status(), 200, "{uid}");
    }
    let hits_on_the_newest = metric(&app, "cache_lookups_total", &[("result", "hit")]).await?;
    for uid in &uids {
        let response = app.get_order(uid).await?;
        assert_eq!(response.status(), 200, "{uid}");
        assert_eq!(response.bytes().await?, sample_with_uid(uid).as_bytes());
    }

    // Assert
    assert_eq!(restored, 5.0, "the newest orders that fit");
    assert_eq!(hits_on_the_newest, 5.0, "the restored ones are the newest");
    let m = scrape(&app).await?;
    let s = |name: &str, labels: &[(&str, &str)]| get(&m, &format!("order_service_{name}"), labels);
    // The 15 older ones at least (an order evicted while the others were read is read through again).
    assert!(s("cache_read_throughs_total", &[("result", "found")]) >= 15.0);
    assert!(s("cache_evictions_total", &[]) >= 15.0);
    assert!(s("cache_entries", &[]) <= 5.0);
    assert!(s("cache_bytes", &[]) <= bound as f64);
    Ok(())
}

#[actix_web::test]
async fn a_bounded_cache_makes_room_for_new_orders_by_evicting_the_oldest_restored_first(
) -> anyhow::Result<()> {
    // Arrange: 20 orders stored before the start; the bound holds 5, so the newest 5 are restored.
    let mut stopped = prepare().await?;
    let uids: Vec<String> = (0..20).map(|i| format!("evictsoldest{i:07}")).collect();
    let client = connect(stopped.settings.database.url.expose()).await?;
    for uid in &uids {
        insert_directly(&client, uid).await?;
    }
    let one = sample_with_uid(&uids[0]).len() + uids[0].len() + ENTRY_OVERHEAD;
    stopped.settings.application.cache_max_bytes = Some(5 * one + one / 2);
    stopped.settings.application.http_workers = Some(1);
    let app = stopped.start().await?;

    // Act: one new order of the same size arrives; each member (public and admin) evicts one restored order.
    app.publish(sample_with_uid("evictsnewest0000001")).await?;
    eventually(WAIT, "an eviction in each member", || async {
        Ok((metric(&app, "cache_evictions_total", &[]).await? >= 2.0).then_some(()))
    })
    .await?;
    for uid in &uids[16..] {
        assert_eq!(app.get_order(uid).await?.status(), 200, "{uid}");
    }
    let read_through_for_the_newest =
        metric(&app, "cache_read_throughs_total", &[("result", "found")]).await?;
    assert_eq!(app.get_order(&uids[15]).await?.status(), 200);

    // Assert: the four newest restored orders stayed; the oldest restored one was evicted and is read through.
    assert_eq!(
        read_through_for_the_newest, 0.0,
        "the newest restored orders stay"
    );
    assert_eq!(
        metric(&app, "cache_read_throughs_total", &[("result", "found")]).await?,
        1.0,
        "the oldest restored order was the one evicted"
    );
    Ok(())
}

/// A second service instance in this process, on another instance's database and channel.
struct SecondInstance {
    address: String,
    admin_address: String,
    shutdown: ShutdownHandle,
    running: actix_web::rt::task::JoinHandle<anyhow::Result<()>>,
}

impl SecondInstance {
    async fn start(first: &TestApp, client_id: &str) -> anyhow::Result<SecondInstance> {
        let mut settings = first.settings.clone();
        settings.stan.client_id = client_id.to_owned();
        let app = Application::build(settings).await?;
        Ok(SecondInstance {
            address: format!("http://127.0.0.1:{}", app.port()),
            admin_address: format!("http://127.0.0.1:{}", app.admin_port()),
            shutdown: app.shutdown_handle(),
            running: actix_web::rt::spawn(app.run_until_stopped()),
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.shutdown();
        self.running.await?
    }
}

#[actix_web::test]
async fn every_order_either_instance_consumed_is_cached_and_served_by_both() -> anyhow::Result<()> {
    // Arrange: two instances on one database, one channel and one queue group.
    let a = spawn_app().await?;
    let b = SecondInstance::start(&a, "order-service-test-b").await?;
    let uids: Vec<String> = (0..40).map(|i| format!("twoinstances{i:07}")).collect();

    // Act
    a.publish_all(
        uids.iter()
            .map(|uid| sample_with_uid(uid).into_bytes())
            .collect(),
    )
    .await?;
    a.wait_for_rows("orders", uids.len() as i64).await?;

    // Assert: both caches learn every order (the persister's own and the feed's), before anyone asks.
    for address in [&a.admin_address, &b.admin_address] {
        eventually(WAIT, &format!("{address} to cache every order"), || async {
            let m = scrape_at(address, &a.admin_token).await?;
            Ok((get(&m, "order_service_cache_entries", &[]) == uids.len() as f64).then_some(()))
        })
        .await?;
    }
    let client = connect(a.database_url()).await?;
    for uid in &uids {
        let stored: String = client
            .query_one(
                "SELECT document::text FROM orders WHERE order_uid = $1",
                &[uid],
            )
            .await?
            .get(0);
        for address in [&a.address, &b.address] {
            let response = reqwest::get(format!("{address}/order/{uid}")).await?;
            assert_eq!(response.status(), 200, "{uid} on {address}");
            assert_eq!(
                response.bytes().await?,
                stored.as_bytes(),
                "{uid} on {address}"
            );
        }
    }
    let read_through_b = get(
        &scrape_at(&b.admin_address, &a.admin_token).await?,
        "order_service_cache_read_throughs_total",
        &[("result", "found")],
    );
    assert_eq!(
        read_through_b, 0.0,
        "served from the cache, not read through"
    );
    b.stop().await?;
    Ok(())
}
