use std::time::Duration;

use serde_json::Value;

use crate::helpers::{eventually, spawn_app, SAMPLE};

const WAIT: Duration = Duration::from_secs(15);

/// Waits until GET /order/{uid} answers 200 and returns the body as JSON.
async fn served(app: &crate::helpers::TestApp, uid: &str) -> anyhow::Result<Value> {
    eventually(WAIT, &format!("order {uid} to be served"), || async {
        let response = app.get_order(uid).await?;
        Ok(if response.status() == 200 {
            Some(response.json::<Value>().await?)
        } else {
            None
        })
    })
    .await
}

#[actix_web::test]
async fn published_sample_is_served_equal_to_what_was_published() -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;

    // Act
    app.publish(SAMPLE).await?;
    let body = served(&app, "b563feb7b2b84b6test").await?;

    // Assert
    let sample: Value = serde_json::from_str(SAMPLE)?;
    assert_eq!(body, sample);
    let response = app.get_order("b563feb7b2b84b6test").await?;
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    assert_eq!(app.count("orders").await?, 1);
    Ok(())
}

#[actix_web::test]
async fn unknown_ids_get_404_and_impossible_ids_get_400_with_a_json_error() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let cases = [
        ("nosuchorder", 404, "not_found"),
        ("bad%20id", 400, "invalid_order_uid"),
        (&"x".repeat(65), 400, "invalid_order_uid"),
    ];
    for (uid, status, code) in cases {
        let response = app.get_order(uid).await?;
        assert_eq!(response.status().as_u16(), status, "{uid}");
        let body: Value = response.json().await?;
        assert_eq!(body["error"], code, "{uid}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{uid}: {body}"
        );
    }
    Ok(())
}

#[actix_web::test]
async fn invalid_messages_become_dead_letters_and_never_reach_the_cache() -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;
    let mut inconsistent: Value = serde_json::from_str(SAMPLE)?;
    inconsistent["payment"]["amount"] = 1.into();

    // Act
    app.publish(&b"not json at all"[..]).await?;
    app.publish(inconsistent.to_string()).await?;
    eventually(WAIT, "two dead letters", || async {
        Ok((app.count("rejected_messages").await? == 2).then_some(()))
    })
    .await?;

    // Assert
    let conn = app.db_pool.get().await?;
    let rows = conn
        .query(
            "SELECT reason_class, payload FROM rejected_messages ORDER BY stan_sequence",
            &[],
        )
        .await?;
    let classes: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(classes, ["malformed_json", "inconsistent"]);
    let first_payload: Vec<u8> = rows[0].get(1);
    assert_eq!(first_payload, b"not json at all", "the raw bytes are kept");
    assert_eq!(app.get_order("b563feb7b2b84b6test").await?.status(), 404);
    assert_eq!(app.count("orders").await?, 0);
    Ok(())
}

#[actix_web::test]
async fn the_same_order_published_twice_is_stored_once_and_other_content_is_a_conflict(
) -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;
    let mut changed: Value = serde_json::from_str(SAMPLE)?;
    changed["delivery"]["city"] = "Elsewhere".into();

    // Act
    app.publish(SAMPLE).await?;
    served(&app, "b563feb7b2b84b6test").await?;
    app.publish(SAMPLE).await?;
    app.publish(changed.to_string()).await?;
    eventually(WAIT, "the conflict dead letter", || async {
        Ok((app.count("rejected_messages").await? == 1).then_some(()))
    })
    .await?;

    // Assert
    assert_eq!(app.count("orders").await?, 1);
    let body = served(&app, "b563feb7b2b84b6test").await?;
    assert_eq!(
        body["delivery"]["city"], "Kiryat Mozkin",
        "the first version stays"
    );
    let conn = app.db_pool.get().await?;
    let class: String = conn
        .query_one("SELECT reason_class FROM rejected_messages", &[])
        .await?
        .get(0);
    assert_eq!(class, "conflict");
    Ok(())
}

#[actix_web::test]
async fn a_thousand_random_orders_are_all_served() -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;
    let mut rng = rand::rng();
    let orders: Vec<Value> = (0..1000)
        .map(|_| order_service::generator::valid_order(&mut rng))
        .collect();

    // Act
    let pending: Vec<_> = orders
        .iter()
        .map(|o| {
            app.publisher
                .publish_pipelined(&app.settings.stan_channel, o.to_string().into())
        })
        .collect();
    for publish in pending {
        publish.await?;
    }
    eventually(Duration::from_secs(60), "1000 stored orders", || async {
        Ok((app.count("orders").await? == 1000).then_some(()))
    })
    .await?;

    // Assert
    for order in &orders {
        let uid = order["order_uid"].as_str().unwrap_or_default();
        assert_eq!(&served(&app, uid).await?, order, "order {uid}");
    }
    Ok(())
}

#[actix_web::test]
async fn after_a_restart_the_cache_is_rebuilt_and_messages_published_while_down_are_taken(
) -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;
    let sample: Value = serde_json::from_str(SAMPLE)?;
    let mut rng = rand::rng();
    let while_down = order_service::generator::valid_order(&mut rng);
    let while_down_uid = while_down["order_uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    app.publish(SAMPLE).await?;
    served(&app, "b563feb7b2b84b6test").await?;

    // Act
    let app = app
        .restart_with(vec![while_down.to_string().into()])
        .await?;

    // Assert
    assert_eq!(
        served(&app, "b563feb7b2b84b6test").await?,
        sample,
        "restored from PostgreSQL"
    );
    assert_eq!(
        &served(&app, &while_down_uid).await?,
        &while_down,
        "published while the service was down"
    );
    assert_eq!(app.count("orders").await?, 2);
    Ok(())
}
