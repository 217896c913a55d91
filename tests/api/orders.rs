use order_service::config::SourceKind;
use order_service_test_support::{header, spawn_app, spawn_app_with, SAMPLE, SAMPLE_UID};
use serde_json::Value;

for_each_source!(the_published_sample_is_served_equal_to_what_was_published);

async fn the_published_sample_is_served_equal_to_what_was_published(
    source: SourceKind,
) -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app_with(&[source]).await?;

    // Act
    let body = app.publish_sample().await?;

    // Assert
    let served: Value = serde_json::from_slice(&body)?;
    let published: Value = serde_json::from_str(SAMPLE)?;
    assert_eq!(served, published);
    let response = app.get_order(SAMPLE_UID).await?;
    let content_type = header(&response, "content-type");
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let conn = app.db_pool.get().await?;
    let stored: String = conn
        .query_one(
            "SELECT document::text FROM orders WHERE order_uid = $1",
            &[&SAMPLE_UID],
        )
        .await?
        .get(0);
    assert_eq!(
        stored.as_bytes(),
        &body[..],
        "the cache serves the stored bytes as they are"
    );
    Ok(())
}

#[actix_web::test]
async fn an_unknown_order_uid_is_404_with_a_json_error() -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;

    // Act
    let response = app.get_order("nosuchorder").await?;

    // Assert
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await?;
    assert_eq!(body["error"], "not_found");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("nosuchorder")),
        "{body}"
    );
    Ok(())
}

#[actix_web::test]
async fn an_order_uid_that_cannot_exist_is_400() -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;
    let too_long = "x".repeat(65);
    let cases = [
        ("bad%20id", "a space"),
        ("%3Cscript%3E", "markup"),
        (too_long.as_str(), "65 characters"),
        ("%C3%A4", "a non-ASCII letter"),
    ];

    for (uid, description) in cases {
        // Act
        let response = app.get_order(uid).await?;

        // Assert
        assert_eq!(
            response.status().as_u16(),
            400,
            "an order_uid with {description}"
        );
        let body: Value = response.json().await?;
        assert_eq!(
            body["error"], "invalid_order_uid",
            "an order_uid with {description}: {body}"
        );
    }
    Ok(())
}

#[actix_web::test]
async fn after_a_restart_the_cache_is_rebuilt_from_postgres_and_serves_the_same(
) -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;
    let mut rng = rand::rng();
    let other = order_service::domain::generator::valid_order_json(&mut rng);
    let other_uid = serde_json::from_slice::<Value>(&other)?["order_uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    app.publish(SAMPLE).await?;
    app.publish(other).await?;
    let before = (app.served(SAMPLE_UID).await?, app.served(&other_uid).await?);

    // Act
    let app = app.stop().await?.start().await?;

    // Assert: served at once, before any message could have been redelivered.
    for (uid, expected) in [(SAMPLE_UID, &before.0), (other_uid.as_str(), &before.1)] {
        let response = app.get_order(uid).await?;
        assert_eq!(
            response.status().as_u16(),
            200,
            "order {uid} after the restart"
        );
        assert_eq!(
            &response.bytes().await?,
            expected,
            "order {uid} serves the same bytes"
        );
    }
    assert_eq!(app.count("orders").await?, 2);
    Ok(())
}

#[actix_web::test]
async fn orders_and_dead_letters_are_listed_newest_first_with_paging() -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;
    let mut rng = rand::rng();
    let orders: Vec<Vec<u8>> = (0..3)
        .map(|_| order_service::domain::generator::valid_order_json(&mut rng))
        .collect();
    app.publish_all(orders).await?;
    app.publish(&b"{not json"[..]).await?;
    app.wait_for_rows("orders", 3).await?;
    app.wait_for_rows("rejected_messages", 1).await?;

    // Act
    let first_page: Vec<Value> = app.admin_get("/orders?limit=2").await?.json().await?;
    let last_id = first_page
        .last()
        .and_then(|o| o["id"].as_i64())
        .unwrap_or_default();
    let second_page: Vec<Value> = app
        .admin_get(&format!("/orders?limit=2&before={last_id}"))
        .await?
        .json()
        .await?;
    let rejected: Vec<Value> = app.admin_get("/rejected").await?.json().await?;

    // Assert
    assert_eq!(first_page.len(), 2);
    assert_eq!(second_page.len(), 1);
    let ids: Vec<i64> = first_page
        .iter()
        .chain(&second_page)
        .filter_map(|o| o["id"].as_i64())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["reason_class"], "malformed_json");
    assert_eq!(rejected[0]["payload_excerpt"], "{not json");
    Ok(())
}
