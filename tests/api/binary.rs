//! The real `order-service` binary: startup errors and the graceful stop on SIGTERM.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::helpers::{eventually, prepare, SAMPLE, SAMPLE_UID, WAIT};

const BINARY: &str = env!("CARGO_BIN_EXE_order-service");

fn log_file() -> PathBuf {
    std::env::temp_dir().join(format!(
        "order-service-{}.log",
        uuid::Uuid::new_v4().simple()
    ))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_for_exit(child: &mut Child) -> anyhow::Result<ExitStatus> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the process did not exit within {WAIT:?}"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[actix_web::test]
async fn an_unreachable_database_is_a_one_line_error_and_a_non_zero_exit() -> anyhow::Result<()> {
    // Arrange
    let log = log_file();

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

#[actix_web::test]
async fn sigterm_stops_gracefully_and_the_durable_survives_for_the_next_start() -> anyhow::Result<()>
{
    // Arrange
    let stopped = prepare().await?;
    let (settings, log, port) = (stopped.settings.clone(), log_file(), free_port()?);
    let mut child = Command::new(BINARY)
        .env("DATABASE_URL", &settings.database.url)
        .env("STAN_URL", &settings.stan.url)
        .env("STAN_CLUSTER_ID", &settings.stan.cluster_id)
        .env("STAN_CHANNEL", &settings.stan.channel)
        .env("STAN_CLIENT_ID", &settings.stan.client_id)
        .env("STAN_ACK_WAIT", "1")
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("HTTP_WORKERS", "2")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let order_url = format!("http://127.0.0.1:{port}/order/{SAMPLE_UID}");
    stopped.publish(SAMPLE).await?;
    eventually(WAIT, "the binary to serve the sample", || async {
        Ok(match reqwest::get(&order_url).await {
            Ok(response) if response.status() == 200 => Some(()),
            _ => None,
        })
    })
    .await?;

    // Act
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let status = wait_for_exit(&mut child).await?;

    // Assert
    let stderr = std::fs::read_to_string(&log)?;
    let _ = std::fs::remove_file(&log);
    assert!(killed.success());
    assert!(status.success(), "exit status {status:?}: {stderr}");
    assert!(stderr.contains("Closed the STAN connection"), "{stderr}");
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
