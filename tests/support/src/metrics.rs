//! Reading the service's `GET /metrics` (the Prometheus text format) in a test: scrape, then look a sample up.

use anyhow::Context;

use crate::app::TestApp;
use crate::net::header;

/// One sample of the text exposition: `name{label="value",...} value`.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses the text format (comments skipped). Label values may hold braces (`route="/order/{order_uid}"`).
pub fn parse_exposition(text: &str) -> anyhow::Result<Vec<Sample>> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let name_end = line
                .find(['{', ' '])
                .with_context(|| format!("no metric name in {line:?}"))?;
            let name = line[..name_end].to_owned();
            let mut labels = Vec::new();
            let mut rest = &line[name_end..];
            if let Some(mut body) = rest.strip_prefix('{') {
                while let Some((key, after)) = body.split_once("=\"") {
                    let end = after
                        .find('"')
                        .with_context(|| format!("an unclosed label value in {line:?}"))?;
                    labels.push((
                        key.trim_start_matches(',').to_owned(),
                        after[..end].to_owned(),
                    ));
                    body = &after[end + 1..];
                    if let Some(after_labels) = body.strip_prefix('}') {
                        body = after_labels;
                        break;
                    }
                }
                rest = body;
            }
            let value = rest
                .trim()
                .parse()
                .with_context(|| format!("no numeric value in {line:?}"))?;
            Ok(Sample {
                name,
                labels,
                value,
            })
        })
        .collect()
}

/// The samples named `name` whose labels include `labels`.
fn matching<'a>(
    samples: &'a [Sample],
    name: &'a str,
    labels: &'a [(&str, &str)],
) -> impl Iterator<Item = f64> + 'a {
    samples
        .iter()
        .filter(move |s| s.name == name)
        .filter(move |s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .map(|s| s.value)
}

/// The value of the one sample named `name` whose labels include `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = matching(samples, name, labels).collect();
    assert!(
        matching.len() <= 1,
        "{name} {labels:?} matches {} samples",
        matching.len()
    );
    matching.first().copied()
}

/// `value`, for a sample the test requires.
pub fn get(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    value(samples, name, labels).unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

/// The sum over every sample named `name` (every label set), or `None` when there is none.
pub fn sum(samples: &[Sample], name: &str) -> Option<f64> {
    matching(samples, name, &[]).reduce(|a, b| a + b)
}

/// The metrics of a service under test.
pub async fn scrape(app: &TestApp) -> anyhow::Result<Vec<Sample>> {
    scrape_at(&app.admin_address, &app.admin_token).await
}

/// The metrics of the service whose admin listener is at `admin_address` (`http://host:port`).
pub async fn scrape_at(admin_address: &str, token: &str) -> anyhow::Result<Vec<Sample>> {
    let response = reqwest::Client::new()
        .get(format!("{admin_address}/metrics"))
        .bearer_auth(token)
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 200,
        "GET /metrics: {}",
        response.status()
    );
    let content_type = header(&response, "content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "content type {content_type}"
    );
    parse_exposition(&response.text().await?)
}
