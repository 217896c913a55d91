//! The Grafana dashboard against a real Prometheus: Prometheus scrapes a service that has ingested valid and
//! invalid orders and answered lookups, then every panel's query runs through Prometheus' HTTP API and must return
//! data.

use anyhow::Context;
use order_service::config::SourceKind;
use order_service::domain::generator;
use order_service_test_support::{spawn_app_with, SAMPLE, SAMPLE_UID};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

use crate::prometheus_harness::Prometheus;

const DASHBOARD: &str = include_str!("../../dashboards/grafana/orders.json");

/// The window Grafana's interval variables stand for here: wide enough to hold the test's scrapes.
const FIXED_WINDOW: &str = "1m";

/// Every (panel title, query) of the dashboard, rows' nested panels included.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("untitled").to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                queries.push((title.clone(), expr.to_owned()));
            }
        }
        queries.extend(panel_queries(&panel));
    }
    queries
}

/// The query with Grafana's interval variables replaced by a fixed window; an error for any other variable,
/// which the test could not fill in.
fn with_fixed_intervals(expr: &str) -> anyhow::Result<String> {
    let mut query = expr.to_owned();
    for variable in ["__rate_interval", "__interval", "__range"] {
        query = query
            .replace(&format!("${{{variable}}}"), FIXED_WINDOW)
            .replace(&format!("${variable}"), FIXED_WINDOW);
    }
    anyhow::ensure!(
        !query.contains('$'),
        "{expr:?} uses a Grafana variable this test does not know"
    );
    Ok(query)
}

#[test]
fn grafana_interval_variables_become_the_fixed_window() {
    let cases = [
        ("rate(x[$__rate_interval])", "rate(x[1m])"),
        ("increase(x[${__range}])", "increase(x[1m])"),
        ("sum(x)", "sum(x)"),
    ];
    for (expr, expected) in cases {
        assert_eq!(
            with_fixed_intervals(expr).expect("known"),
            expected,
            "{expr}"
        );
    }
    assert!(with_fixed_intervals("x{instance=~\"$instance\"}").is_err());
}

#[actix_web::test]
async fn every_dashboard_panel_returns_data_from_a_real_prometheus() -> anyhow::Result<()> {
    // Arrange: Prometheus scrapes the service once before the traffic, so every rate has samples on both sides.
    let dashboard: Value = serde_json::from_str(DASHBOARD).context("the dashboard is JSON")?;
    let queries = panel_queries(&dashboard);
    assert!(
        queries.len() >= 10,
        "the dashboard has its queries: {queries:?}"
    );
    // Both sources: some panels are JetStream's.
    let app = spawn_app_with(&[SourceKind::Stan, SourceKind::JetStream]).await?;
    let prometheus = Prometheus::scraping(
        app.admin_address.trim_start_matches("http://"),
        &app.admin_token,
    )
    .await?;
    prometheus.wait_for_scrapes(1.0).await?;

    let mut rng = StdRng::seed_from_u64(11);
    let mut messages = vec![SAMPLE.as_bytes().to_vec()];
    messages.extend((0..20).map(|_| generator::valid_order_json(&mut rng)));
    messages.extend((0..5).map(|_| generator::invalid_message(&mut rng).1));
    for publisher in &app.publishers {
        publisher.publish_all(&messages).await?;
    }
    app.wait_for_acks(2 * 26).await?;
    app.served(SAMPLE_UID).await?;
    assert_eq!(app.get_order("nosuchorder").await?.status(), 404);
    prometheus.wait_for_scrapes(2.0).await?;

    // Act
    let mut empty = Vec::new();
    for (panel, expr) in &queries {
        let query = with_fixed_intervals(expr)?;
        if prometheus.query(&query).await?.is_empty() {
            empty.push(format!("{panel}: {query}"));
        }
    }

    // Assert: every panel has data, and it is this service's: Prometheus saw all 21 valid orders committed.
    assert!(
        empty.is_empty(),
        "panels without data from Prometheus:\n{}",
        empty.join("\n")
    );
    let persisted = prometheus
        .value("max(order_service_orders_persisted_total)")
        .await?;
    assert_eq!(persisted, Some(21.0));
    Ok(())
}
