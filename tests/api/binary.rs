//! The real `order-service` binary: startup errors, the graceful stop on SIGTERM, and no secret in its output.

use std::process::{Command, ExitStatus, Stdio};

use order_service::config::SourceKind;
use order_service_test_support::{eventually, prepare_on, prepare_with, SAMPLE, SAMPLE_UID, WAIT};
use stan_testkit::StoreKind;

use crate::fault_harness::{temp_file, wait_for_exit, PrivateNats, ServiceProcess};

for_each_source!(sigterm_stops_gracefully_and_the_durable_survives_for_the_next_start);

const BINARY: &str = env!("CARGO_BIN_EXE_order-service");

/// Runs the binary with these environment variables until it exits on its own; answers its status and stderr.
async fn run_until_exit(env: &[(&str, &str)]) -> anyhow::Result<(ExitStatus, String)> {
    let log = temp_file("log")?;
    let mut child = Command::new(BINARY)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log.reopen()?)
        .spawn()?;
    let status = wait_for_exit(&mut child).await?;
    Ok((status, std::fs::read_to_string(log.path())?))
}

#[actix_web::test]
async fn an_unreachable_database_is_a_one_line_error_and_a_non_zero_exit() -> anyhow::Result<()> {
    // Act
    let (status, stderr) = run_until_exit(&[
        (
            "DATABASE_URL",
            "postgres://someone:hunter2@127.0.0.1:1/nowhere",
        ),
        ("HTTP_ADDR", "127.0.0.1:0"),
    ])
    .await?;

    // Assert
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
    stopped.publish(SAMPLE).await?;
    service.served(SAMPLE_UID).await?;

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
    let later = order_service::domain::generator::valid_order_json(&mut rng);
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

#[actix_web::test]
async fn a_database_password_in_any_form_stays_out_of_the_output() -> anyhow::Result<()> {
    let forms = [
        (
            "URL",
            "postgres://someone:pw1x/pw2y@pw3z@127.0.0.1:1/nowhere",
            "pw1x/pw2y@pw3z",
        ),
        (
            "query parameter",
            "postgres://someone@127.0.0.1:1/nowhere?password=hunter2-query",
            "hunter2-query",
        ),
        (
            "key=value",
            "host=127.0.0.1 port=1 user=someone password=hunter2-kv dbname=nowhere",
            "hunter2-kv",
        ),
        (
            "key=value, quoted",
            "host=127.0.0.1 port=1 user=someone password='qq7k qq8m' dbname=nowhere",
            "qq7k qq8m",
        ),
    ];
    for (form, url, secret) in forms {
        // Act
        let (status, stderr) = run_until_exit(&[
            ("DATABASE_URL", url),
            ("HTTP_ADDR", "127.0.0.1:0"),
            ("ADMIN_ADDR", "127.0.0.1:0"),
            ("RUST_LOG", "debug"),
        ])
        .await?;

        // Assert
        assert!(!status.success(), "{form}: {stderr}");
        assert!(
            stderr.contains("127.0.0.1"),
            "{form}: the host stays: {stderr}"
        );
        for part in secret.split(['/', '@', ' ']) {
            assert!(
                !stderr.contains(part),
                "{form}: {part:?} in the output: {stderr}"
            );
        }
    }
    Ok(())
}

#[actix_web::test]
async fn secrets_in_database_and_nats_urls_reach_no_log_line_answer_or_metric() -> anyhow::Result<()>
{
    // Arrange: a nats-server that wants a password, and a database URL with one (the test cluster trusts
    // local connections, so a password it was not asked for does no harm).
    let nats_password = format!("nats-secret-{}", uuid::Uuid::new_v4().simple());
    // The dev broker and the publisher take no credentials: nats-server lets them in as another user.
    let mut nats = PrivateNats::start_with_config(&format!(
        "authorization {{ users = [
             {{ user: order, password: \"{nats_password}\" }},
             {{ user: testkit, password: \"{}\" }}
         ] }}
         no_auth_user: testkit",
        uuid::Uuid::new_v4().simple()
    ))
    .await?;
    let nats_address = nats.host_port();
    let mut stopped = prepare_on(&nats.url(), StoreKind::Memory, &[SourceKind::Stan]).await?;
    stopped.settings.stan.url = format!("nats://order:{nats_password}@{nats_address}").into();
    let configured: tokio_postgres::Config = stopped.settings.database.url.expose().parse()?;
    let database_password = match configured.get_password() {
        Some(password) => String::from_utf8_lossy(password).into_owned(),
        None => {
            let password = format!("db-secret-{}", uuid::Uuid::new_v4().simple());
            let separator = if stopped.settings.database.url.expose().contains('?') {
                '&'
            } else {
                '?'
            };
            let with_password = format!(
                "{}{separator}password={password}",
                stopped.settings.database.url.expose()
            );
            stopped.settings.database.url = with_password.into();
            password
        }
    };
    let secrets = [nats_password.as_str(), database_password.as_str()];
    let mut service =
        ServiceProcess::spawn_with(&stopped.settings, &[("RUST_LOG", "debug".to_owned())])?;
    service.wait_ready().await?;
    stopped.publish(SAMPLE).await?;
    stopped.publish(&b"{not json"[..]).await?;
    let client = reqwest::Client::new();
    service.served(SAMPLE_UID).await?;

    // Act: every answer that could carry a secret, healthy and then with the broker gone.
    let mut answers = Vec::new();
    for url in [
        format!("{}/readyz", service.address),
        format!("{}/order/bad%20id", service.address),
        format!("{}/openapi.json", service.address),
    ] {
        answers.push(client.get(url).send().await?.text().await?);
    }
    for path in ["/metrics", "/orders?limit=x", "/rejected", "/openapi.json"] {
        answers.push(service.admin_get(path).await?.text().await?);
    }
    nats.kill().await?;
    let not_ready = eventually(WAIT, "/readyz to report the broker", || async {
        let response = client
            .get(format!("{}/readyz", service.address))
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        Ok((status == 503 && body.contains("broker")).then_some(body))
    })
    .await?;
    let (_, log) = service.terminate().await?;

    // Assert
    assert!(
        !not_ready.contains(&nats_address),
        "/readyz names the dependency, not its address: {not_ready}"
    );
    for secret in secrets {
        for answer in answers.iter().chain([&not_ready]) {
            assert!(
                !answer.contains(secret),
                "an answer holds a secret: {answer}"
            );
        }
        assert!(!log.contains(secret), "the log holds a secret:\n{log}");
    }
    assert!(log.contains("Serving."), "the log was captured:\n{log}");
    Ok(())
}

#[test]
fn help_says_the_default_client_id_is_derived_from_the_host_name() -> anyhow::Result<()> {
    // Act
    let output = Command::new(BINARY)
        .arg("--help")
        .env_remove("STAN_CLIENT_ID")
        .output()?;

    // Assert
    let help = String::from_utf8(output.stdout)?;
    assert!(output.status.success(), "{help}");
    let expected = order_service::config::client_id::default_client_id();
    assert!(
        help.contains("`order-service-<host name>`")
            && help.contains(&format!("[default: {expected}]")),
        "{help}"
    );
    Ok(())
}
