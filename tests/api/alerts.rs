//! The alert rules under `dashboards/prometheus/`: valid for Prometheus, and each fires on the series meant to fire
//! it and not on the others (`alerts.test.yml`, run by Debian's promtool).

use std::path::Path;

use crate::fault_harness::temp_dir;
use crate::prometheus_harness::promtool;

/// Where `dashboards/prometheus.yml` reads the admin token (docker-compose writes it there at start).
const TOKEN_FILE: &str = "/prometheus/admin_token";

const DASHBOARDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards");

#[test]
fn the_alert_rules_and_the_prometheus_config_pass_promtools_checks() -> anyhow::Result<()> {
    // Act
    let rules = promtool(
        &Path::new(DASHBOARDS).join("prometheus"),
        &["check", "rules", "alerts.yml"],
    )?;
    // promtool wants the token file the config names: a copy of the config names one the test makes.
    let shipped = std::fs::read_to_string(Path::new(DASHBOARDS).join("prometheus.yml"))?;
    assert!(
        shipped.contains(&format!("credentials_file: {TOKEN_FILE}")),
        "{shipped}"
    );
    assert!(
        shipped.contains("app:8082"),
        "scrapes the admin listener: {shipped}"
    );
    let dir = temp_dir("promtool")?;
    std::fs::create_dir_all(dir.path().join("prometheus"))?;
    std::fs::copy(
        Path::new(DASHBOARDS).join("prometheus/alerts.yml"),
        dir.path().join("prometheus/alerts.yml"),
    )?;
    let token = dir.path().join("admin_token");
    std::fs::write(&token, "test-token")?;
    std::fs::write(
        dir.path().join("prometheus.yml"),
        shipped.replace(TOKEN_FILE, &token.display().to_string()),
    )?;
    let config = promtool(dir.path(), &["check", "config", "prometheus.yml"])?;

    // Assert: promtool exits non-zero on an error, which `promtool` turns into Err; the counts show the rules
    // file was the one read.
    assert!(rules.contains("SUCCESS: 6 rules found"), "{rules}");
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
