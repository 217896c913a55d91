//! What a hostile client or publisher tries: another site's page reaching the operator listener through DNS
//! rebinding, log lines forged from a message, a log flooded by malformed requests, HEAD, and the error shape of
//! whatever no route answers.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{prepare, TestApp};

/// A service whose admin listener has no token (its default), with `ADMIN_ALLOWED_HOSTS` as given, and one dead
/// letter (its id).
async fn tokenless_app_with_a_dead_letter(
    allowed_hosts: &[&str],
) -> anyhow::Result<(TestApp, i64)> {
    let mut stopped = prepare().await?;
    stopped.settings.application.admin_token = None;
    stopped.settings.application.admin_allowed_hosts =
        allowed_hosts.iter().map(|h| (*h).to_owned()).collect();
    let app = stopped.start().await?;
    app.publish(&b"{not json"[..]).await?;
    app.wait_for_rows("rejected_messages", 1).await?;
    let id: i64 = app
        .db_pool
        .get()
        .await?
        .query_one("SELECT id FROM rejected_messages", &[])
        .await?
        .get(0);
    Ok((app, id))
}

/// An admin request with the given `Host` (and `Origin`, when given), as a browser on that page would send it.
async fn admin_request(
    app: &TestApp,
    method: Method,
    path: &str,
    host: &str,
    origin: Option<&str>,
) -> anyhow::Result<reqwest::Response> {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", app.admin_address))
        .header("host", host)
        .header("sec-fetch-site", "same-origin")
        .json(&json!({}));
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    Ok(request.send().await?)
}

async fn replay_count(app: &TestApp, id: i64) -> anyhow::Result<i32> {
    let conn = app.db_pool.get().await?;
    Ok(conn
        .query_one(
            "SELECT replay_count FROM rejected_messages WHERE id = $1",
            &[&id],
        )
        .await?
        .get(0))
}

/// The JSON error body of a refusal, checked for its shape.
async fn error_code(response: reqwest::Response) -> anyhow::Result<String> {
    let what = format!("{} {}", response.status(), response.url());
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let nosniff = response
        .headers()
        .get("x-content-type-options")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await?;
    anyhow::ensure!(
        content_type.starts_with("application/json"),
        "{what}: {content_type}"
    );
    anyhow::ensure!(
        nosniff == "nosniff",
        "{what}: X-Content-Type-Options {nosniff:?}"
    );
    anyhow::ensure!(body["message"].is_string(), "{what}: {body}");
    body["error"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("{what}: no error code in {body}"))
}

#[actix_web::test]
async fn a_rebound_host_name_reaches_nothing_on_the_tokenless_admin_listener() -> anyhow::Result<()>
{
    // Arrange
    let (app, dead_letter) = tokenless_app_with_a_dead_letter(&[]).await?;
    let port = app
        .admin_address
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let evil = format!("rebind.evil.example:{port}");
    let evil_origin = format!("http://{evil}");
    let replay = format!("/rejected/{dead_letter}/replay");

    // Act: the page at rebind.evil.example, once its name resolves to 127.0.0.1.
    let replayed = admin_request(&app, Method::POST, &replay, &evil, Some(&evil_origin)).await?;
    let read = admin_request(
        &app,
        Method::GET,
        &format!("/rejected/{dead_letter}"),
        &evil,
        None,
    )
    .await?;
    let metrics = admin_request(&app, Method::GET, "/metrics", &evil, None).await?;
    let page = admin_request(&app, Method::GET, "/", &evil, None).await?;
    // A loopback Host, but posted from the other site's page.
    let loopback = format!("127.0.0.1:{port}");
    let cross_origin =
        admin_request(&app, Method::POST, &replay, &loopback, Some(&evil_origin)).await?;
    let null_origin = admin_request(&app, Method::POST, &replay, &loopback, Some("null")).await?;

    // Assert
    for response in [replayed, read, metrics, page] {
        assert_eq!(
            response.status(),
            StatusCode::MISDIRECTED_REQUEST,
            "{}",
            response.url()
        );
        assert_eq!(error_code(response).await?, "misdirected");
    }
    for response in [cross_origin, null_origin] {
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(error_code(response).await?, "cross_site");
    }
    assert_eq!(
        replay_count(&app, dead_letter).await?,
        0,
        "nothing was replayed"
    );
    for host in [
        loopback.clone(),
        format!("localhost:{port}"),
        "LOCALHOST".into(),
        "[::1]".into(),
    ] {
        let response = admin_request(
            &app,
            Method::GET,
            &format!("/rejected/{dead_letter}"),
            &host,
            None,
        )
        .await?;
        assert_eq!(response.status(), StatusCode::OK, "Host: {host}");
    }
    let same_origin = format!("http://{loopback}");
    let replayed =
        admin_request(&app, Method::POST, &replay, &loopback, Some(&same_origin)).await?;
    assert_eq!(
        replayed.status(),
        StatusCode::OK,
        "{}",
        replayed.text().await?
    );
    Ok(())
}

#[actix_web::test]
async fn admin_allowed_hosts_adds_names_and_still_applies_with_a_token() -> anyhow::Result<()> {
    // Arrange: one listener without a token, one with a token; both list ops.internal.
    let (open, dead_letter) =
        tokenless_app_with_a_dead_letter(&["ops.internal", "Ops2.Internal:9000"]).await?;
    let mut stopped = prepare().await?;
    stopped.settings.application.admin_allowed_hosts = vec!["ops.internal".into()];
    let guarded = stopped.start().await?;
    let path = format!("/rejected/{dead_letter}");

    // Act + Assert
    for host in [
        "ops.internal",
        "ops.internal:8082",
        "ops2.internal",
        "OPS2.INTERNAL:1",
    ] {
        let response = admin_request(&open, Method::GET, &path, host, None).await?;
        assert_eq!(response.status(), StatusCode::OK, "Host: {host}");
    }
    for host in [
        "ops.internal.",
        "evil.ops.internal",
        "ops.internal:x",
        "0.0.0.0",
    ] {
        let response = admin_request(&open, Method::GET, &path, host, None).await?;
        assert_eq!(
            response.status(),
            StatusCode::MISDIRECTED_REQUEST,
            "Host: {host}"
        );
    }
    let listed = guarded
        .admin(Method::GET, "/rejected")
        .header("host", "ops.internal:8082")
        .send()
        .await?;
    assert_eq!(listed.status(), StatusCode::OK);
    let other = guarded
        .admin(Method::GET, "/rejected")
        .header("host", "admin.elsewhere:8082")
        .send()
        .await?;
    assert_eq!(other.status(), StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(error_code(other).await?, "misdirected");
    Ok(())
}

#[actix_web::test]
async fn with_a_token_and_no_host_list_any_host_is_taken_but_a_foreign_origin_is_not(
) -> anyhow::Result<()> {
    // Arrange: the helpers' service has a token and no ADMIN_ALLOWED_HOSTS.
    let app = crate::helpers::spawn_app().await?;

    // Act
    let listed = app
        .admin(Method::GET, "/rejected")
        .header("host", "admin.internal.example:8082")
        .send()
        .await?;
    let foreign = app
        .admin(Method::POST, "/rejected/1/replay")
        .header("host", "admin.internal.example:8082")
        .header("origin", "https://evil.example")
        .json(&json!({}))
        .send()
        .await?;
    let own = app
        .admin(Method::POST, "/rejected/1/replay")
        .header("host", "admin.internal.example:8082")
        .header("origin", "http://admin.internal.example:8082")
        .json(&json!({}))
        .send()
        .await?;

    // Assert
    assert_eq!(listed.status(), StatusCode::OK);
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(foreign).await?, "cross_site");
    assert_eq!(
        own.status(),
        StatusCode::NOT_FOUND,
        "past the gate: no dead letter 1"
    );
    Ok(())
}
