//! The real `order-service` binary: startup errors and the graceful stop on SIGTERM.

use std::process::{Command, Stdio};

use order_service::configuration::SourceKind;

use crate::fault_harness::{temp_path, wait_for_exit, ServiceProcess};
use crate::helpers::{eventually, prepare_with, SAMPLE, SAMPLE_UID, WAIT};

for_each_source!(sigterm_stops_gracefully_and_the_durable_survives_for_the_next_start);

const BINARY: &str = env!("CARGO_BIN_EXE_order-service");

#[actix_web::test]
async fn an_unreachable_database_is_a_one_line_error_and_a_non_zero_exit() -> anyhow::Result<()> {
    // Arrange
    let log = temp_path("log");

    // Act
    let mut child = Command::new(BINARY)
        .env(
            "DATABASE_URL",
            "postgres://someone:hunter2@127.0.0.1:1/nowhere",
        )
        .env("HTTP_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let status = wait_for_exit(&mut child).await?;

    // Assert
    let stderr = std::fs::read_to_string(&log)?;
    let _ = std::fs::remove_file(&log);
    assert!(!status.success(), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("order-service: ") && last.contains("127.0.0.1:1"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the password stays out of the output: {stderr}"
    );
    Ok(())
}

async fn sigterm_stops_gracefully_and_the_durable_survives_for_the_next_start(
    source: SourceKind,
) -> anyhow::Result<()> {
    // Arrange
    let stopped = prepare_with(&[source]).await?;
    let service = ServiceProcess::spawn(&stopped.settings)?;
    let order_url = format!("{}/order/{SAMPLE_UID}", service.address);
    stopped.publish(SAMPLE).await?;
    eventually(WAIT, "the binary to serve the sample", || async {
        Ok(match reqwest::get(&order_url).await {
            Ok(response) if response.status() == 200 => Some(()),
            _ => None,
        })
    })
    .await?;

    // Act
    let (status, stderr) = service.terminate().await?;

    // Assert
    assert!(status.success(), "exit status {status:?}: {stderr}");
    let closed = match source {
        SourceKind::Stan => "Closed the STAN connection",
        SourceKind::JetStream => "Closed the JetStream connection",
    };
    assert!(stderr.contains(closed), "{stderr}");
    // Published while nothing runs: the durable (not unsubscribed) delivers it to the next start.
    let mut rng = rand::rng();
    let later = order_service::generator::valid_order_json(&mut rng);
    let later_uid = serde_json::from_slice::<serde_json::Value>(&later)?["order_uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    stopped.publish(later).await?;
    let app = stopped.start().await?;
    app.served(&later_uid).await?;
    assert_eq!(app.count("orders").await?, 2);
    Ok(())
}
