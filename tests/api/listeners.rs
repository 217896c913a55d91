//! The two listeners: the public one serves lookups only and answers 404 for every admin path; the admin one wants
//! the token, refuses what a cross-site page could send, and refuses to start exposed without a token.

use order_service_test_support::{prepare, spawn_app, start_error, TestApp, SAMPLE, SAMPLE_UID};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Every admin operation, with a path that exists (the dead letter `id`).
fn admin_paths(dead_letter: i64) -> Vec<(Method, String)> {
    vec![
        (Method::GET, "/orders".into()),
        (Method::GET, "/rejected".into()),
        (Method::GET, format!("/rejected/{dead_letter}")),
        (Method::POST, format!("/rejected/{dead_letter}/replay")),
        (Method::GET, "/metrics".into()),
        (Method::GET, "/ui/admin.js".into()),
    ]
}

async fn app_with_a_dead_letter() -> anyhow::Result<(TestApp, i64)> {
    let app = spawn_app().await?;
    let id = app.add_dead_letter().await?;
    Ok((app, id))
}

#[actix_web::test]
async fn the_public_listener_answers_404_for_every_admin_path() -> anyhow::Result<()> {
    // Arrange
    let (app, dead_letter) = app_with_a_dead_letter().await?;
    let client = reqwest::Client::new();

    for (method, path) in admin_paths(dead_letter) {
        // Act: even with the token and a JSON body.
        let response = client
            .request(method.clone(), format!("{}{path}", app.address))
            .bearer_auth(&app.admin_token)
            .json(&json!({}))
            .send()
            .await?;

        // Assert
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
    assert_eq!(app.replay_count(dead_letter).await?, 0);
    assert_eq!(app.get_order("nosuchorder").await?.status(), 404);
    assert_eq!(app.get("/healthz").await?.status(), 200);
    Ok(())
}

#[actix_web::test]
async fn the_admin_listener_wants_the_token_on_every_route_but_its_page_files() -> anyhow::Result<()>
{
    // Arrange
    let (app, dead_letter) = app_with_a_dead_letter().await?;
    let client = reqwest::Client::new();

    for (method, path) in admin_paths(dead_letter) {
        if path.starts_with("/ui/") {
            continue;
        }
        let url = format!("{}{path}", app.admin_address);

        // Act
        let without = client
            .request(method.clone(), &url)
            .json(&json!({}))
            .send()
            .await?;
        let wrong = client
            .request(method.clone(), &url)
            .bearer_auth(format!("{}x", app.admin_token))
            .json(&json!({}))
            .send()
            .await?;
        let right = app
            .admin(method.clone(), &path)
            .json(&json!({}))
            .send()
            .await?;

        // Assert
        assert_eq!(
            without.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
        assert!(
            without.headers().contains_key("www-authenticate"),
            "{method} {path}"
        );
        let body: Value = without.json().await?;
        assert_eq!(body["error"], "unauthorized", "{method} {path}");
        assert_eq!(
            wrong.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path} with a wrong token"
        );
        assert_eq!(
            right.status(),
            StatusCode::OK,
            "{method} {path} with the token"
        );
    }
    for page in ["/", "/ui/app.js", "/ui/admin.js", "/ui/app.css"] {
        let response = reqwest::get(format!("{}{page}", app.admin_address)).await?;
        assert_eq!(response.status(), StatusCode::OK, "{page} holds no data");
    }
    Ok(())
}

#[actix_web::test]
async fn a_replay_a_cross_site_page_could_send_is_refused() -> anyhow::Result<()> {
    // Arrange
    let (app, dead_letter) = app_with_a_dead_letter().await?;
    let path = format!("/rejected/{dead_letter}/replay");

    // Act: what an HTML form can send (even if the token leaked), and what a browser marks as cross-site.
    let form = app
        .admin(Method::POST, &path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=b")
        .send()
        .await?;
    let bare = app.admin(Method::POST, &path).send().await?;
    let cross_site = app
        .admin(Method::POST, &path)
        .header("sec-fetch-site", "cross-site")
        .json(&json!({}))
        .send()
        .await?;

    // Assert
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(form.json::<Value>().await?["error"], "json_required");
    assert_eq!(bare.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    assert_eq!(cross_site.json::<Value>().await?["error"], "cross_site");
    assert_eq!(
        app.replay_count(dead_letter).await?,
        0,
        "nothing was replayed"
    );
    Ok(())
}

#[actix_web::test]
async fn an_admin_listener_beyond_loopback_without_a_token_refuses_to_start() -> anyhow::Result<()>
{
    // Arrange
    let mut stopped = prepare().await?;
    stopped.settings.application.admin_addr = "0.0.0.0:0".into();
    stopped.settings.application.admin_token = None;

    // Act
    let error = start_error(
        stopped.start().await,
        "the service started with its admin routes open to the network",
    )?;

    // Assert
    assert!(
        error.contains("ADMIN_ADDR 0.0.0.0:0") && error.contains("ADMIN_TOKEN"),
        "{error}"
    );
    Ok(())
}

#[actix_web::test]
async fn a_graceful_stop_stops_both_listeners() -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;
    let (public, admin) = (app.address.clone(), app.admin_address.clone());
    assert_eq!(
        reqwest::get(format!("{public}/healthz")).await?.status(),
        200
    );
    assert_eq!(reqwest::get(format!("{admin}/")).await?.status(), 200);

    // Act
    app.stop().await?;

    // Assert
    for base in [public, admin] {
        assert!(
            reqwest::get(format!("{base}/")).await.is_err(),
            "{base} still answers"
        );
    }
    Ok(())
}

#[actix_web::test]
async fn the_listing_shortens_reasons_and_the_full_dead_letter_is_read_by_id() -> anyhow::Result<()>
{
    // Arrange: an order whose e-mail fails the schema; the value is a customer's data.
    let app = spawn_app().await?;
    let mut order: Value = serde_json::from_str(SAMPLE)?;
    let email = "jane.private-person@example.invalid but not an e-mail";
    order["delivery"]["email"] = json!(email);
    app.publish(serde_json::to_vec(&order)?).await?;
    app.wait_for_rows("rejected_messages", 1).await?;

    // Act
    let listing: Value = app.admin_get("/rejected").await?.json().await?;
    let id = listing[0]["id"].as_i64().unwrap_or_default();
    let full: Value = app
        .admin_get(&format!("/rejected/{id}"))
        .await?
        .json()
        .await?;

    // Assert
    let listed = listing[0].to_string();
    assert!(!listed.contains("jane.private-person"), "{listed}");
    assert!(
        listing[0]["reasons"]
            .as_array()
            .is_some_and(|reasons| reasons.iter().any(|r| r["pointer"] == "/delivery/email")),
        "the pointer stays: {listed}"
    );
    assert!(full.to_string().contains(email), "{full}");
    assert_eq!(full["payload_bytes"], serde_json::to_vec(&order)?.len());
    assert!(full["payload_excerpt"]
        .as_str()
        .is_some_and(|payload| payload.contains(SAMPLE_UID)));
    let missing = app.admin_get(&format!("/rejected/{}", id + 1000)).await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    Ok(())
}
