//! `GET /metrics`: the counters move with the right labels, and every metric the Grafana dashboard queries exists.

use std::collections::BTreeSet;

use order_service::config::SourceKind;
use order_service_test_support::metrics::{get, scrape, value};
use order_service_test_support::{eventually, spawn_app, spawn_app_with, SAMPLE, SAMPLE_UID, WAIT};
use serde_json::Value;

const DASHBOARD: &str = include_str!("../../dashboards/grafana/orders.json");

#[actix_web::test]
async fn pipeline_cache_and_http_metrics_count_what_happened() -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;

    // Act: one valid order, one message that is not JSON, one cache hit, one miss, one unknown path.
    app.publish(SAMPLE).await?;
    app.publish("this is not an order").await?;
    let served = app.served(SAMPLE_UID).await?;
    assert_eq!(app.get_order("nosuchorder").await?.status(), 404);
    assert_eq!(app.get("/no/such/path").await?.status(), 404);
    app.wait_for_acks(2).await?;
    // Each counter below is written before the answer that leads to the ack, so all have moved by now; the
    // readiness gauge needs the subscription up, which the acks also show.
    let m = scrape(&app).await?;

    // Assert
    let s = |name: &str| get(&m, &format!("order_service_{name}"), &[]);
    let with =
        |name: &str, labels: &[(&str, &str)]| get(&m, &format!("order_service_{name}"), labels);
    assert!(s("messages_received_total") >= 2.0);
    assert!(s("acks_total") >= 2.0);
    assert!(s("ack_duration_seconds_count") >= 2.0);
    assert_eq!(s("messages_not_acked_total"), 0.0);
    assert_eq!(s("orders_persisted_total"), 1.0);
    assert!(s("orders_validated_total") >= 1.0);
    assert!(with("orders_rejected_total", &[("reason", "malformed_json")]) >= 1.0);
    // Every reason class is exported before it first happens.
    assert_eq!(with("orders_rejected_total", &[("reason", "schema")]), 0.0);
    assert_eq!(
        with("orders_rejected_total", &[("reason", "conflict")]),
        0.0
    );
    assert!(
        s("commit_batch_messages_sum") >= 2.0,
        "both messages committed"
    );
    assert!(s("commit_duration_seconds_count") >= 1.0);
    assert_eq!(s("commit_failures_total"), 0.0);
    assert_eq!(s("cache_entries"), 1.0);
    assert_eq!(s("cache_bytes"), served.len() as f64);
    // `served` polls until the order is there, so it may have missed first; the 404 request missed once. A miss
    // right after the commit, before the order reached the cache, is answered by reading it through.
    let hits = with("cache_lookups_total", &[("result", "hit")]);
    let misses = with("cache_lookups_total", &[("result", "miss")]);
    let read_through = with("cache_read_throughs_total", &[("result", "found")]);
    assert_eq!(hits + read_through, 1.0);
    assert!(misses >= 1.0);
    assert_eq!(s("cache_restored_orders"), 0.0);
    assert_eq!(s("broker_connected"), 1.0);
    assert_eq!(s("ready"), 1.0);
    assert!(s("db_pool_connections") >= 1.0);
    let requests = |route: &str, status: &str| {
        with(
            "http_request_duration_seconds_count",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("/order/{order_uid}", "200"), 1.0);
    assert_eq!(requests("/order/{order_uid}", "404"), misses - read_through);
    assert_eq!(
        requests(order_service::telemetry::metrics::UNMATCHED_ROUTE, "404"),
        1.0
    );
    Ok(())
}

#[actix_web::test]
async fn what_the_order_template_does_not_match_counts_as_unmatched() -> anyhow::Result<()> {
    // Arrange: the order route is a prefix (`/order`) that also sees these; the template `/order/{order_uid}` never
    // matched them, so they count as unmatched.
    let app = spawn_app().await?;
    let client = reqwest::Client::new();

    // Act
    for path in ["/order", "/order/", "/order/a/b"] {
        assert_eq!(app.get(path).await?.status(), 404, "GET {path}");
    }
    let delete = client
        .delete(format!("{}/order/x", app.address))
        .send()
        .await?;
    assert_eq!(delete.status(), 405, "DELETE /order/x");
    assert_eq!(app.get("/order/nosuchorder").await?.status(), 404);
    let m = scrape(&app).await?;

    // Assert
    let requests = |route: &str, status: &str| {
        value(
            &m,
            "order_service_http_request_duration_seconds_count",
            &[("route", route), ("status", status)],
        )
    };
    let unmatched = order_service::telemetry::metrics::UNMATCHED_ROUTE;
    assert_eq!(requests(unmatched, "404"), Some(3.0));
    assert_eq!(requests(unmatched, "405"), Some(1.0));
    assert_eq!(requests("/order/{order_uid}", "404"), Some(1.0));
    assert_eq!(requests("/order/{order_uid}", "405"), None);
    Ok(())
}

#[actix_web::test]
async fn a_restart_reports_the_orders_it_restored() -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;
    app.publish_sample().await?;
    app.wait_for_acks(1).await?;

    // Act
    let app = app.stop().await?.start().await?;
    let m = scrape(&app).await?;

    // Assert: the new instance has its own registry, restored one order, and counts from zero.
    assert_eq!(get(&m, "order_service_cache_restored_orders", &[]), 1.0);
    assert_eq!(get(&m, "order_service_cache_entries", &[]), 1.0);
    assert!(get(&m, "order_service_cache_restore_duration_seconds", &[]) > 0.0);
    assert_eq!(get(&m, "order_service_orders_persisted_total", &[]), 0.0);
    Ok(())
}

#[actix_web::test]
async fn a_missing_table_shows_as_retries_failures_redeliveries_and_unacked_messages(
) -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;
    app.execute("ALTER TABLE orders RENAME TO orders_sabotaged")
        .await?;

    // Act: the commit fails through its retries, the message is not acked and comes back after the ack wait.
    app.publish(SAMPLE).await?;
    let m = eventually(WAIT, "a failed commit and a redelivery", || async {
        let m = scrape(&app).await?;
        let n = |name: &str| value(&m, &format!("order_service_{name}"), &[]).unwrap_or(0.0);
        Ok(
            (n("messages_not_acked_total") >= 1.0 && n("messages_redelivered_total") >= 1.0)
                .then_some(m),
        )
    })
    .await?;
    app.execute("ALTER TABLE orders_sabotaged RENAME TO orders")
        .await?;

    // Assert
    let n = |name: &str| get(&m, &format!("order_service_{name}"), &[]);
    assert!(n("commit_retries_total") >= 1.0);
    assert!(n("commit_failures_total") >= 1.0);
    assert_eq!(n("orders_persisted_total"), 0.0);
    app.served(SAMPLE_UID).await?;
    Ok(())
}

/// Metric names in a PromQL expression: identifiers outside label matchers, ranges, strings and numbers that are
/// neither functions (followed by `(`), operators or aggregations, nor the labels of a `by`/`without`/`on`/`ignoring` list.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Aggregations may be followed by `by (...)` rather than `(`.
    const OPERATORS: [&str; 16] = [
        "bool", "and", "or", "unless", "offset", "sum", "min", "max", "avg", "count", "group",
        "stddev", "stdvar", "topk", "bottomk", "quantile",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let word_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let (mut i, mut braces, mut brackets) = (0, 0, 0);
    let (mut in_string, mut label_list_next) = (false, false);
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            in_string = c != '"';
        } else if c == '"' {
            in_string = true;
        } else if c == '{' || c == '}' {
            braces += if c == '{' { 1 } else { -1 };
        } else if c == '[' || c == ']' {
            brackets += if c == '[' { 1 } else { -1 };
        } else if c == '(' && label_list_next {
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            label_list_next = false;
        } else if c.is_ascii_digit() {
            // A number or a duration (`5m`): not a name.
            while i + 1 < chars.len() && (word_char(chars[i + 1]) || chars[i + 1] == '.') {
                i += 1;
            }
        } else if (c.is_ascii_alphabetic() || c == '_') && braces == 0 && brackets == 0 {
            let start = i;
            while i + 1 < chars.len() && word_char(chars[i + 1]) {
                i += 1;
            }
            let word: String = chars[start..=i].iter().collect();
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            if LABEL_LISTS.contains(&word.as_str()) {
                label_list_next = true;
            } else if next != Some(&'(') && !OPERATORS.contains(&word.as_str()) {
                names.insert(word);
            }
        }
        i += 1;
    }
    names
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{route="/x/{id}"}[1m]))) / on(x) b_total offset 5m > 1e3"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["a_bucket".to_owned(), "b_total".to_owned()])
    );
}

/// Every `expr` in the dashboard, with its panel title.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(!targets.is_empty(), "panel {title:?} queries nothing");
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL expr");
            queries.push((title.clone(), expr.to_owned()));
        }
    }
    queries
}

#[actix_web::test]
async fn every_metric_the_dashboard_queries_exists() -> anyhow::Result<()> {
    // Arrange: both sources (some panels are JetStream's); a valid order, a rejected one and a lookup, so that every
    // labelled family has a child.
    let app = spawn_app_with(&[SourceKind::Stan, SourceKind::JetStream]).await?;
    for publisher in &app.publishers {
        publisher.publish(SAMPLE).await?;
        publisher.publish("{").await?;
    }
    app.served(SAMPLE_UID).await?;
    app.wait_for_acks(4).await?;

    // Act
    let exported: BTreeSet<String> = eventually(WAIT, "a scrape", || async {
        Ok(Some(
            scrape(&app)
                .await?
                .into_iter()
                .map(|s| s.name)
                .collect::<BTreeSet<_>>(),
        ))
    })
    .await?;

    // Assert
    let queries = dashboard_queries();
    assert!(
        queries.len() >= 10,
        "the dashboard has {} queries",
        queries.len()
    );
    for (title, expr) in queries {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "panel {title:?}: no metric in {expr}");
        for name in names {
            assert!(
                exported.contains(&name),
                "panel {title:?} queries {name}, which /metrics does not export"
            );
        }
    }
    Ok(())
}

#[actix_web::test]
async fn a_jetstream_message_that_keeps_failing_storage_shows_its_delivery_attempts_and_the_consumer_backlog(
) -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app_with(&[SourceKind::JetStream]).await?;
    app.execute("ALTER TABLE orders RENAME TO orders_sabotaged")
        .await?;
    let js = [("source", "jetstream")];

    // Act: JetStream delivers it again after every ack wait, counting the deliveries.
    app.publish(SAMPLE).await?;
    let m = eventually(WAIT, "a third delivery and the backlog read", || async {
        let m = scrape(&app).await?;
        let third = value(
            &m,
            "order_service_message_delivery_attempts_bucket",
            &[("source", "jetstream"), ("le", "2")],
        )
        .zip(value(
            &m,
            "order_service_message_delivery_attempts_count",
            &js,
        ))
        .is_some_and(|(up_to_two, all)| all - up_to_two >= 1.0);
        let ack_pending = value(&m, "order_service_consumer_ack_pending_messages", &js);
        Ok((third && ack_pending == Some(1.0)).then_some(m))
    })
    .await?;
    app.execute("ALTER TABLE orders_sabotaged RENAME TO orders")
        .await?;

    // Assert
    assert!(get(&m, "order_service_messages_redelivered_total", &js) >= 2.0);
    assert!(get(&m, "order_service_messages_not_acked_total", &js) >= 1.0);
    assert_eq!(get(&m, "order_service_acks_total", &js), 0.0);
    assert_eq!(get(&m, "order_service_consumer_pending_messages", &js), 0.0);
    app.served(SAMPLE_UID).await?;
    eventually(WAIT, "the backlog to be empty", || async {
        let m = scrape(&app).await?;
        Ok(
            (value(&m, "order_service_consumer_ack_pending_messages", &js) == Some(0.0))
                .then_some(()),
        )
    })
    .await?;
    Ok(())
}
