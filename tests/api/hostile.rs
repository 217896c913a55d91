//! What a hostile client or publisher tries: another site's page reaching the operator listener through DNS
//! rebinding, log lines forged from a message, a log flooded by malformed requests, HEAD, and the error shape of
//! whatever no route answers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use order_service_test_support::metrics::value;
use order_service_test_support::{
    eventually, header, prepare, spawn_app, TestApp, SAMPLE, SAMPLE_UID, WAIT,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::fault_harness::ServiceProcess;

/// A property name and an order_uid that would write a log line of their own and clear a terminal.
const FORGING: &str = "x\n2099-01-01T00:00:00Z ERROR order_service: FORGED \u{1b}[2J";

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
    let id = app.add_dead_letter().await?;
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

/// The JSON error body of a refusal, checked for its shape.
async fn error_code(response: reqwest::Response) -> anyhow::Result<String> {
    let what = format!("{} {}", response.status(), response.url());
    let content_type = header(&response, "content-type").unwrap_or_default();
    let nosniff = header(&response, "x-content-type-options").unwrap_or_default();
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
        app.replay_count(dead_letter).await?,
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
    let (taken, misdirected) = (StatusCode::OK, StatusCode::MISDIRECTED_REQUEST);
    for (host, expected) in [
        ("ops.internal", taken),
        ("ops.internal:8082", taken),
        ("ops2.internal", taken),
        ("OPS2.INTERNAL:1", taken),
        ("ops.internal.", misdirected),
        ("evil.ops.internal", misdirected),
        ("ops.internal:x", misdirected),
        ("0.0.0.0", misdirected),
    ] {
        let response = admin_request(&open, Method::GET, &path, host, None).await?;
        assert_eq!(response.status(), expected, "Host: {host}");
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
    let app = spawn_app().await?;

    // Act
    let listed = app
        .admin(Method::GET, "/rejected")
        .header("host", "admin.internal.example:8082")
        .send()
        .await?;
    let replay_from = |origin: &'static str| {
        app.admin(Method::POST, "/rejected/1/replay")
            .header("host", "admin.internal.example:8082")
            .header("origin", origin)
            .json(&json!({}))
            .send()
    };
    let foreign = replay_from("https://evil.example").await?;
    let own = replay_from("http://admin.internal.example:8082").await?;

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

/// Sends `request` as raw bytes to `address` (`http://host:port`) and reads until the service closes.
fn raw_exchange(address: &str, request: &[u8]) -> anyhow::Result<Vec<u8>> {
    let host_port = address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host_port)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(answer)
}

#[actix_web::test]
async fn a_property_name_or_order_uid_cannot_forge_a_line_of_the_human_log() -> anyhow::Result<()> {
    // Arrange: the binary with its human log format.
    let stopped = prepare().await?;
    let mut service =
        ServiceProcess::spawn_with(&stopped.settings, &[("LOG_FORMAT", "human".to_owned())])?;
    service.wait_ready().await?;
    let mut unknown_property: Value = serde_json::from_str(SAMPLE)?;
    unknown_property[FORGING] = json!(1);
    let mut forged_uid: Value = serde_json::from_str(SAMPLE)?;
    forged_uid["order_uid"] = json!(FORGING);

    // Act
    stopped
        .publish(serde_json::to_vec(&unknown_property)?)
        .await?;
    stopped.publish(serde_json::to_vec(&forged_uid)?).await?;
    eventually(WAIT, "two dead letters", || async {
        Ok(
            (order_service_test_support::count(&stopped.db_pool, "rejected_messages").await? == 2)
                .then_some(()),
        )
    })
    .await?;
    let listing = service.admin_get("/rejected").await?.text().await?;
    let (_, log) = service.terminate().await?;

    // Assert: nothing of the forgery starts a line or reaches the terminal raw; the property name is cut.
    assert!(
        log.contains("Rejected a message"),
        "the rejections were logged:\n{log}"
    );
    for line in log.lines() {
        assert!(!line.starts_with("2099-"), "a forged line:\n{log}");
    }
    assert!(
        !log.contains('\u{1b}'),
        "a raw escape character in the log:\n{log:?}"
    );
    assert!(
        log.contains(r"x\n2099-0"),
        "the property name, escaped and cut:\n{log}"
    );
    assert!(
        !log.contains("FORGED \\u001b"),
        "the property name is cut:\n{log}"
    );
    assert!(
        log.contains(r"x\n2099-01-01T00:00:00Z ERROR order_service: FORGED \u{1b}[2J"),
        "the order_uid in its span, escaped:\n{log}"
    );
    let listing: Value = serde_json::from_str(&listing)?;
    let reasons = listing
        .as_array()
        .and_then(|letters| letters.iter().find(|l| l["order_uid"] == SAMPLE_UID))
        .map(|letter| letter["reasons"].to_string())
        .ok_or_else(|| anyhow::anyhow!("no dead letter for the unknown property: {listing}"))?;
    assert!(
        reasons.contains("Additional properties") && !reasons.contains("FORGED"),
        "the listing cuts the property name: {reasons}"
    );
    Ok(())
}

#[actix_web::test]
async fn malformed_requests_are_counted_and_write_no_log_line() -> anyhow::Result<()> {
    // Arrange
    let stopped = prepare().await?;
    let mut service = ServiceProcess::spawn(&stopped.settings)?;
    service.wait_ready().await?;
    let scrape = || async {
        anyhow::Ok(
            value(
                &service.metrics().await?,
                "order_service_http_malformed_requests_total",
                &[],
            )
            .unwrap_or(0.0),
        )
    };
    let before = scrape().await?;
    let malformed: [&[u8]; 3] = [
        b"\x01\x02\x03\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nno colon here\r\n\r\n",
        b"GET /\x7f HTTP/9.9\r\n\r\n",
    ];
    let sent = 30;

    // Act: to both listeners.
    for round in 0..sent {
        let address = if round % 2 == 0 {
            &service.address
        } else {
            &service.admin_address
        };
        let answer = raw_exchange(address, malformed[round % malformed.len()])?;
        assert!(
            answer.starts_with(b"HTTP/1.1 400"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    let counted = eventually(WAIT, "the malformed requests to be counted", || async {
        let now = scrape().await?;
        Ok((now - before >= sent as f64).then_some(now - before))
    })
    .await?;
    let (_, log) = service.terminate().await?;

    // Assert
    assert_eq!(counted, sent as f64);
    assert!(log.contains("Serving."), "the log was captured:\n{log}");
    for line in log.lines() {
        assert!(
            !line.contains("actix_http") && !line.contains("parse error"),
            "a line per malformed request:\n{log}"
        );
    }
    Ok(())
}

#[actix_web::test]
async fn head_sends_the_headers_of_get_and_no_body_on_the_wire() -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;
    app.publish_sample().await?;

    for (address, path) in [
        (&app.address, "/healthz".to_owned()),
        (&app.address, format!("/order/{SAMPLE_UID}")),
        (&app.admin_address, "/".to_owned()),
    ] {
        // Act
        let request = |method: &str| {
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        };
        let head = raw_exchange(address, request("HEAD").as_bytes())?;
        let get = raw_exchange(address, request("GET").as_bytes())?;

        // Assert: the same status line and length; nothing after the headers.
        let head = String::from_utf8(head)?;
        let get = String::from_utf8(get)?;
        let (head_headers, head_body) = head.split_once("\r\n\r\n").unwrap_or((&head, ""));
        let (get_headers, get_body) = get.split_once("\r\n\r\n").unwrap_or((&get, ""));
        assert!(
            head_headers.starts_with("HTTP/1.1 200 OK"),
            "HEAD {path}: {head}"
        );
        assert_eq!(head_body, "", "HEAD {path}: a body");
        assert!(!get_body.is_empty(), "GET {path}");
        let length = |headers: &str| {
            headers.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_owned)
            })
        };
        assert_eq!(length(head_headers), length(get_headers), "HEAD {path}");
        assert_eq!(
            length(get_headers),
            Some(get_body.len().to_string()),
            "GET {path}"
        );
    }
    Ok(())
}
