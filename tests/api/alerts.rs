//! The alert rules under `dashboards/prometheus/`: valid for Prometheus, and each fires on the series meant to fire
//! it and not on the others (`alerts.test.yml`, run by Debian's promtool).

use std::path::Path;

use crate::prometheus_harness::promtool;

const DASHBOARDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards");

#[test]
fn the_alert_rules_and_the_prometheus_config_pass_promtools_checks() -> anyhow::Result<()> {
    // Act
    let rules = promtool(
        &Path::new(DASHBOARDS).join("prometheus"),
        &["check", "rules", "alerts.yml"],
    )?;
    let config = promtool(
        Path::new(DASHBOARDS),
        &["check", "config", "prometheus.yml"],
    )?;

    // Assert: promtool exits non-zero on an error, which `promtool` turns into Err; the counts show the rules
    // file was the one read.
    assert!(rules.contains("SUCCESS: 5 rules found"), "{rules}");
    assert!(config.contains("1 rule files found"), "{config}");
    Ok(())
}

#[test]
fn each_alert_fires_on_its_condition_and_stays_silent_otherwise() -> anyhow::Result<()> {
    // Act
    let output = promtool(
        &Path::new(DASHBOARDS).join("prometheus"),
        &["test", "rules", "alerts.test.yml"],
    )?;

    // Assert
    assert!(output.contains("SUCCESS"), "{output}");
    Ok(())
}
