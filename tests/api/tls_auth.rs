//! TLS and authentication to the dependencies, against servers of the test's own: a PostgreSQL cluster with
//! `ssl=on` and a certificate made here (openssl CLI), and nats-servers (with JetStream) that require a user and
//! password, a token, or TLS, for the STAN source and for the JetStream source.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use async_nats::jetstream;
use order_service::config::{Secret, Settings, SourceKind, SslMode};
use order_service::storage;
use order_service::transport::nats_auth::NatsTarget;
use order_service_test_support::{
    free_port, prepare, prepare_on, start_error, TestApp, SAMPLE, SAMPLE_UID,
};
use serde_json::Value;
use stan_testkit::StoreKind;
use tempfile::TempDir;

use crate::fault_harness::{temp_dir, PrivateNats, ThrowawayPostgres};

/// A CA, a server certificate it signs (for 127.0.0.1 and localhost) and its key, and a second, unrelated CA.
struct Certificates {
    ca: PathBuf,
    other_ca: PathBuf,
    server_certificate: PathBuf,
    server_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("Failed to run openssl (Debian package openssl)")?;
    anyhow::ensure!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn make_certificates(dir: &Path) -> anyhow::Result<Certificates> {
    std::fs::create_dir_all(dir)?;
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=order-service test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ],
        )?;
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    )?;
    // PostgreSQL refuses a key others may read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )?;
    }
    Ok(Certificates {
        ca: dir.join("ca.crt"),
        other_ca: dir.join("other-ca.crt"),
        server_certificate: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    })
}

/// A PostgreSQL cluster with TLS on, and the certificates (the CA outside the cluster's directory).
fn postgres_with_tls() -> anyhow::Result<(ThrowawayPostgres, TempDir, Certificates)> {
    let cas = temp_dir("ca")?;
    let mut made = None;
    let postgres = ThrowawayPostgres::start_with_tls(|dir| {
        let certificates = make_certificates(&dir.join("tls"))?;
        let paths = (
            certificates.server_certificate.clone(),
            certificates.server_key.clone(),
        );
        made = Some(certificates);
        Ok(paths)
    })?;
    let certificates = made.context("no certificates made")?;
    let ca = cas.path().join("ca.crt");
    let other_ca = cas.path().join("other-ca.crt");
    std::fs::copy(&certificates.ca, &ca)?;
    std::fs::copy(&certificates.other_ca, &other_ca)?;
    Ok((
        postgres,
        cas,
        Certificates {
            ca,
            other_ca,
            ..certificates
        },
    ))
}

#[actix_web::test]
async fn the_service_connects_to_postgres_with_verify_full_and_the_ca() -> anyhow::Result<()> {
    // Arrange
    let (postgres, _cas, certificates) = postgres_with_tls()?;
    let mut stopped = prepare().await?;
    stopped.settings.database.url = postgres.url().into();
    stopped.settings.database.ssl_mode = SslMode::VerifyFull;
    stopped.settings.database.ca_file = Some(certificates.ca.clone());
    stopped.db_pool = storage::build_pool(&stopped.settings.database).await?;
    storage::migrate(&stopped.db_pool).await?;

    // Act
    let app = stopped.start().await?;
    app.publish_sample().await?;

    // Assert: the service's own connections are encrypted.
    let conn = app.db_pool.get().await?;
    let encrypted: bool = conn
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?
        .get(0);
    assert!(encrypted, "the connection is not encrypted");
    let unencrypted: i64 = conn
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.backend_type = 'client backend' AND NOT s.ssl",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(unencrypted, 0, "every client connection uses TLS");
    Ok(())
}

#[actix_web::test]
async fn a_wrong_ca_or_a_missing_one_is_refused_with_a_clear_error() -> anyhow::Result<()> {
    // Arrange
    let (postgres, _cas, certificates) = postgres_with_tls()?;
    let mut settings = prepare().await?.settings.database;
    settings.url = postgres.url().into();
    settings.ssl_mode = SslMode::VerifyFull;

    // Act
    settings.ca_file = Some(certificates.other_ca.clone());
    let wrong = storage::build_pool(&settings).await.map(|_| ());
    settings.ca_file = None;
    let missing = storage::build_pool(&settings).await.map(|_| ());
    settings.ssl_mode = SslMode::Require;
    let encrypt_only = storage::build_pool(&settings).await;

    // Assert
    let wrong = format!("{:#}", wrong.err().context("a wrong CA was accepted")?);
    assert!(
        wrong.contains("Failed to connect to PostgreSQL") && wrong.contains("certificate"),
        "{wrong}"
    );
    let missing = format!(
        "{:#}",
        missing.err().context("verify-full ran without a CA")?
    );
    assert!(missing.contains("DB_CA_FILE"), "{missing}");
    let pool = encrypt_only?;
    let encrypted: bool = pool
        .get()
        .await?
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?
        .get(0);
    assert!(encrypted, "require encrypts even without a CA");
    Ok(())
}

/// A nats-server that wants a user and password from the service (`order`), and lets the dev broker and the
/// publisher, which take no credentials, in as another user (`no_auth_user`). Its monitoring port tells who logged
/// in as whom. Answers the server, the password and the monitoring address.
async fn nats_with_users() -> anyhow::Result<(PrivateNats, String, String)> {
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let monitor = format!("127.0.0.1:{}", free_port()?);
    let nats = PrivateNats::start_with_config(&format!(
        "http: \"{monitor}\"
         authorization {{ users = [
             {{ user: order, password: \"{password}\" }},
             {{ user: testkit, password: \"{}\" }}
         ] }}
         no_auth_user: testkit",
        uuid::Uuid::new_v4().simple()
    ))
    .await?;
    Ok((nats, password, monitor))
}

/// How many client connections are logged in as `user`.
async fn connections_of(monitor: &str, user: &str) -> anyhow::Result<usize> {
    let connz: Value = reqwest::get(format!("http://{monitor}/connz?auth=true"))
        .await?
        .json()
        .await?;
    Ok(connz["connections"].as_array().map_or(0, |all| {
        all.iter().filter(|c| c["authorized_user"] == user).count()
    }))
}

#[actix_web::test]
async fn the_service_and_its_ack_connection_log_in_to_nats_with_a_user_and_password(
) -> anyhow::Result<()> {
    // Arrange
    let (nats, password, monitor) = nats_with_users().await?;
    let mut stopped = prepare_on(&nats.url(), StoreKind::Memory, &[SourceKind::Stan]).await?;
    stopped.settings.stan.url = format!("nats://order:{password}@{}", nats.host_port()).into();

    // Act
    let app = stopped.start().await?;
    app.publish_sample().await?;

    // Assert: the order came through ratsio's connection and its ack went out on async-nats's, both as `order`.
    app.wait_for_acks(1).await?;
    assert_eq!(connections_of(&monitor, "order").await?, 2);
    Ok(())
}

#[actix_web::test]
async fn a_wrong_nats_password_is_a_clear_error_without_the_password() -> anyhow::Result<()> {
    // Arrange
    let (nats, password, _monitor) = nats_with_users().await?;
    let wrong = format!("wrong-{}", uuid::Uuid::new_v4().simple());
    let mut stopped = prepare_on(&nats.url(), StoreKind::Memory, &[SourceKind::Stan]).await?;
    stopped.settings.stan.url = format!("nats://order:{wrong}@{}", nats.host_port()).into();

    // Act
    let error = start_error(
        stopped.start().await,
        "the service started with a wrong password",
    )?;

    // Assert
    assert_login_refused(&error, &nats, &[&wrong, &password]);
    Ok(())
}

#[actix_web::test]
async fn a_nats_token_from_the_settings_logs_the_ack_connection_in_and_a_wrong_one_is_refused(
) -> anyhow::Result<()> {
    // Arrange: a server that wants a token. The dev broker cannot log in to it, so this checks the connection the
    // service makes with async-nats; ratsio gets the same token (see nats_auth's unit tests).
    let token = format!("tok-{}", uuid::Uuid::new_v4().simple());
    let nats =
        PrivateNats::start_with_config(&format!("authorization {{ token: \"{token}\" }}")).await?;
    let mut settings = prepare().await?.settings;
    settings.stan.url = nats.url().into();

    // Act
    settings.stan.nats_token = Some(Secret::new(token.clone()));
    let target = NatsTarget::from_settings(&settings.stan)?;
    let right = target
        .async_nats_options()
        .connect(target.async_nats_servers()?)
        .await;
    settings.stan.nats_token = Some(Secret::new(format!("{token}x")));
    let target = NatsTarget::from_settings(&settings.stan)?;
    let wrong = target
        .async_nats_options()
        .connect(target.async_nats_servers()?)
        .await;

    // Assert
    right.context("the right token")?.flush().await?;
    let wrong = wrong
        .err()
        .context("a wrong token was accepted")?
        .to_string();
    assert!(wrong.contains("authorization violation"), "{wrong}");
    Ok(())
}

#[actix_web::test]
async fn async_nats_connections_use_tls_with_the_ca_and_refuse_another_ca() -> anyhow::Result<()> {
    // Arrange
    let (nats, _dir, certificates) = nats_with_tls().await?;
    let mut settings = prepare().await?.settings;
    settings.stan.url = nats.url().into();

    // Act
    settings.stan.nats_ca_file = Some(certificates.ca.clone());
    let target = NatsTarget::from_settings(&settings.stan)?;
    let trusted = target
        .async_nats_options()
        .connect(target.async_nats_servers()?)
        .await;
    settings.stan.nats_ca_file = Some(certificates.other_ca.clone());
    let target = NatsTarget::from_settings(&settings.stan)?;
    let untrusted = target
        .async_nats_options()
        .connect(target.async_nats_servers()?)
        .await;
    // ratsio cannot do TLS: the service says so at start instead of connecting in plain text.
    settings.stan.nats_ca_file = Some(certificates.ca.clone());
    let mut stopped = prepare().await?;
    stopped.settings.stan = settings.stan.clone();
    let service = stopped.start().await;

    // Assert
    let client = trusted.context("TLS with the right CA")?;
    client.flush().await?;
    assert!(
        untrusted.is_err(),
        "a server signed by another CA was trusted"
    );
    let refusal = start_error(
        service,
        "the STAN connection started although ratsio cannot use TLS",
    )?;
    assert!(
        refusal.contains("ratsio") && refusal.contains("TLS"),
        "{refusal}"
    );
    Ok(())
}

/// A nats-server (with JetStream) that takes TLS connections only, with a certificate of `make_certificates`; the
/// directory holds the certificates and goes with the test.
async fn nats_with_tls() -> anyhow::Result<(PrivateNats, TempDir, Certificates)> {
    let dir = temp_dir("nats-tls")?;
    let certificates = make_certificates(dir.path())?;
    let nats = PrivateNats::start_with_config(&format!(
        "tls {{ cert_file: \"{}\", key_file: \"{}\" }}",
        certificates.server_certificate.display(),
        certificates.server_key.display()
    ))
    .await?;
    Ok((nats, dir, certificates))
}

/// A start-up error for a refused login, as the operator must read it: the server's refusal and address, and none of
/// the secrets.
fn assert_login_refused(error: &str, nats: &PrivateNats, secrets: &[&str]) {
    assert!(error.contains("authorization violation"), "{error}");
    assert!(
        error.contains(&nats.host_port()),
        "names the server: {error}"
    );
    for secret in secrets {
        assert!(!error.contains(secret), "{error}");
    }
}

/// The service consuming JetStream only, with `configure` pointing it at a test's private nats-server; the database
/// (and the STAN settings, unused) come from `prepare`. The service creates its stream there.
async fn jetstream_app(configure: impl FnOnce(&mut Settings)) -> anyhow::Result<TestApp> {
    let mut stopped = prepare().await?;
    stopped.settings.sources = vec![SourceKind::JetStream];
    configure(&mut stopped.settings);
    stopped.start().await
}

/// `jetstream_app`'s start-up error, as the operator reads it.
async fn jetstream_start_error(configure: impl FnOnce(&mut Settings)) -> anyhow::Result<String> {
    start_error(jetstream_app(configure).await, "the service started")
}

/// The JetStream source against `nats`: with `accepted` it ingests the sample that `publisher` (connected once
/// the service runs) publishes, with `refused` it does not start. Answers whether the sample was served, and the
/// refusal as the operator reads it.
async fn ingests_then_refuses<E>(
    nats: &PrivateNats,
    accepted: impl FnOnce(&mut Settings),
    publisher: impl Future<Output = Result<async_nats::Client, E>>,
    refused: impl FnOnce(&mut Settings),
) -> anyhow::Result<(anyhow::Result<()>, String)>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let app = jetstream_app(|settings| {
        settings.jetstream.url = nats.url().into();
        accepted(settings);
    })
    .await?;
    publish_sample(publisher.await?, &app).await?;
    let served = app.served(SAMPLE_UID).await.map(drop);
    let refusal = jetstream_start_error(|settings| {
        settings.jetstream.url = nats.url().into();
        refused(settings);
    })
    .await?;
    Ok((served, refusal))
}

/// Publishes the sample on the service's subject through `client`, confirmed by JetStream.
async fn publish_sample(client: async_nats::Client, app: &TestApp) -> anyhow::Result<()> {
    jetstream::new(client)
        .publish(app.settings.jetstream.subject.clone(), SAMPLE.into())
        .await?
        .await?;
    Ok(())
}

#[actix_web::test]
async fn the_jetstream_source_logs_in_with_the_nats_user_and_password_and_serves_what_it_ingests(
) -> anyhow::Result<()> {
    // Arrange
    let (nats, password, monitor) = nats_with_users().await?;

    // Act: NATS_USER and NATS_PASSWORD, the settings STAN uses too.
    let app = jetstream_app(|settings| {
        settings.jetstream.url = nats.url().into();
        settings.stan.nats_user = Some("order".into());
        settings.stan.nats_password = Some(Secret::new(password.clone()));
    })
    .await?;
    // The publisher comes in as the server's user without a password.
    publish_sample(async_nats::connect(nats.url()).await?, &app).await?;
    app.served(SAMPLE_UID).await?;

    // Assert: the one connection the service made is logged in as `order`.
    assert_eq!(connections_of(&monitor, "order").await?, 1);
    Ok(())
}

#[actix_web::test]
async fn a_wrong_password_in_nats_url_is_a_clear_start_up_error_without_the_password(
) -> anyhow::Result<()> {
    // Arrange
    let (nats, password, _monitor) = nats_with_users().await?;
    let wrong = format!("wrong-{}", uuid::Uuid::new_v4().simple());

    // Act
    let error = jetstream_start_error(|settings| {
        settings.jetstream.url = format!("nats://order:{wrong}@{}", nats.host_port()).into();
    })
    .await?;

    // Assert
    assert_login_refused(&error, &nats, &[&wrong, &password]);
    Ok(())
}

#[actix_web::test]
async fn the_jetstream_source_logs_in_with_the_nats_token_and_a_wrong_one_is_refused(
) -> anyhow::Result<()> {
    // Arrange
    let token = format!("tok-{}", uuid::Uuid::new_v4().simple());
    let wrong = format!("wrong-{}", uuid::Uuid::new_v4().simple());
    let nats =
        PrivateNats::start_with_config(&format!("authorization {{ token: \"{token}\" }}")).await?;

    // Act
    let (served, refused) = ingests_then_refuses(
        &nats,
        |settings| settings.stan.nats_token = Some(Secret::new(token.clone())),
        async_nats::ConnectOptions::with_token(token.clone()).connect(nats.url()),
        |settings| settings.stan.nats_token = Some(Secret::new(wrong.clone())),
    )
    .await?;

    // Assert
    served?;
    assert!(refused.contains("authorization violation"), "{refused}");
    assert!(
        !refused.contains(&wrong) && !refused.contains(&token),
        "{refused}"
    );
    Ok(())
}

#[actix_web::test]
async fn the_jetstream_source_connects_over_tls_with_the_nats_ca_and_refuses_another_ca(
) -> anyhow::Result<()> {
    // Arrange: a server that takes TLS connections only.
    let (nats, _dir, certificates) = nats_with_tls().await?;

    // Act
    let (served, refused) = ingests_then_refuses(
        &nats,
        |settings| settings.stan.nats_ca_file = Some(certificates.ca.clone()),
        async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(certificates.ca.clone())
            .connect(nats.url()),
        |settings| settings.stan.nats_ca_file = Some(certificates.other_ca.clone()),
    )
    .await?;

    // Assert
    served?;
    assert!(
        refused.contains(&nats.host_port()) && refused.contains("certificate"),
        "{refused}"
    );
    Ok(())
}
