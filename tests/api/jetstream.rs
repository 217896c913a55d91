//! What only the JetStream source has: the stream created where allowed (and a clear error where not), a durable
//! consumer shared by several instances, both sources at once during a migration, and a client we did not write
//! (the official Python client, nats-py) publishing with JetStream publish.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::Ordering;

use async_nats::jetstream;
use order_service::app::Application;
use order_service::config::SourceKind;
use order_service::domain::generator;
use order_service_test_support::{
    eventually, prepare_with, spawn_app_with, start_error, uid_of, StreamGuard, SAMPLE, SAMPLE_UID,
    WAIT,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

#[actix_web::test]
async fn a_missing_stream_is_created_with_file_storage_on_the_subject_and_consumed_from_its_start(
) -> anyhow::Result<()> {
    // Arrange: settings for a stream nobody created yet.
    let mut stopped = prepare_with(&[SourceKind::Stan]).await?;
    stopped.settings.sources = vec![SourceKind::JetStream];
    let js = stopped.settings.jetstream.clone();
    let _cleanup = StreamGuard::new(js.url.expose(), &js.stream);

    // Act
    let app = Application::build(stopped.settings.clone()).await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let running = actix_web::rt::spawn(app.run_until_stopped());

    // Assert: the stream is there, as configured, and takes orders.
    let context = jetstream::new(async_nats::connect(js.url.expose()).await?);
    let mut stream = context.get_stream(&js.stream).await?;
    let config = stream.info().await?.config.clone();
    assert_eq!(config.subjects, vec![js.subject.clone()]);
    assert_eq!(config.storage, jetstream::stream::StorageType::File);
    context
        .publish(js.subject.clone(), SAMPLE.into())
        .await?
        .await?;
    eventually(WAIT, "the sample to be served", || async {
        let response = reqwest::get(format!("{address}/order/{SAMPLE_UID}")).await?;
        Ok((response.status() == 200).then_some(()))
    })
    .await?;
    running.abort();
    Ok(())
}

#[actix_web::test]
async fn without_leave_to_create_it_a_missing_stream_is_a_start_up_error_naming_it(
) -> anyhow::Result<()> {
    // Arrange
    let mut stopped = prepare_with(&[SourceKind::Stan]).await?;
    stopped.settings.sources = vec![SourceKind::JetStream];
    stopped.settings.jetstream.create_stream = false;
    let stream = stopped.settings.jetstream.stream.clone();

    // Act
    let started = Application::build(stopped.settings.clone()).await;

    // Assert
    let error = start_error(started, "the service started without its stream")?;
    assert!(
        error.contains(&stream) && error.contains("does not exist"),
        "{error}"
    );
    Ok(())
}

#[actix_web::test]
async fn two_instances_share_the_durable_consumer_and_each_order_is_stored_once(
) -> anyhow::Result<()> {
    // Arrange: a second instance on the same database, stream and consumer.
    let app = spawn_app_with(&[SourceKind::JetStream]).await?;
    let second = Application::build(app.settings.clone()).await?;
    let second_status = second.readiness().subscriber();
    let second_running = actix_web::rt::spawn(second.run_until_stopped());
    let mut rng = StdRng::seed_from_u64(61);
    let orders: Vec<Vec<u8>> = (0..2000)
        .map(|_| generator::valid_order_json(&mut rng))
        .collect();

    // Act
    app.publish_all(orders.clone()).await?;
    app.wait_for_rows("orders", orders.len() as i64).await?;

    // Assert
    let first_took = app.status.delivered.load(Ordering::Relaxed);
    let second_took = second_status.delivered.load(Ordering::Relaxed);
    assert!(
        first_took > 0 && second_took > 0,
        "JetStream balanced nothing: {first_took} and {second_took} deliveries"
    );
    assert_eq!(app.count("rejected_messages").await?, 0);
    second_running.abort();
    Ok(())
}

#[actix_web::test]
async fn with_both_sources_the_same_orders_published_to_both_are_each_stored_once(
) -> anyhow::Result<()> {
    // Arrange: a publisher moving from the STAN channel to the JetStream subject re-sends what it is unsure of.
    let app = spawn_app_with(&[SourceKind::Stan, SourceKind::JetStream]).await?;
    let mut rng = StdRng::seed_from_u64(62);
    let orders: Vec<Vec<u8>> = (0..300)
        .map(|_| generator::valid_order_json(&mut rng))
        .collect();
    let garbage = b"not an order".to_vec();
    let mut messages = orders.clone();
    messages.push(garbage.clone());

    // Act
    let (stan, js) = (&app.publishers[0], &app.publishers[1]);
    futures::try_join!(stan.publish_all(&messages), js.publish_all(&messages))?;
    app.wait_for_acks(2 * messages.len() as u64).await?;

    // Assert: each order once, served; the garbage once per source, each dead letter naming its source.
    assert_eq!(app.count("orders").await?, orders.len() as i64);
    for order in &orders {
        app.served(&uid_of(order)?).await?;
    }
    let conn = app.db_pool.get().await?;
    let sources: BTreeSet<String> = conn
        .query(
            "SELECT source FROM rejected_messages WHERE payload = $1",
            &[&garbage],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        sources,
        BTreeSet::from(["jetstream".to_owned(), "stan".to_owned()])
    );
    assert_eq!(app.count("rejected_messages").await?, 2);
    for status in &app.statuses {
        assert!(
            status.acked.load(Ordering::Relaxed) >= messages.len() as u64,
            "each source acked every message it carried"
        );
    }
    Ok(())
}

/// The Python of the virtualenv `scripts/nats-py.sh` makes, or `$NATS_PY_PYTHON`.
fn nats_py_python() -> anyhow::Result<std::path::PathBuf> {
    let python = std::env::var_os("NATS_PY_PYTHON").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".data/nats-py/bin/python"),
        std::path::PathBuf::from,
    );
    anyhow::ensure!(
        python.is_file(),
        "the official NATS Python client is not installed ({} is missing): run scripts/nats-py.sh",
        python.display()
    );
    Ok(python)
}

#[actix_web::test]
async fn an_order_published_by_the_official_python_client_with_jetstream_publish_is_stored_once(
) -> anyhow::Result<()> {
    // Arrange
    let python = nats_py_python()?;
    let app = spawn_app_with(&[SourceKind::JetStream]).await?;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/jetstream_publish.py"
    );
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/model.json");
    let publish = || {
        Command::new(&python)
            .args([script, "--url", app.settings.jetstream.url.expose()])
            .args(["--subject", &app.settings.jetstream.subject])
            .args(["--file", sample, "--msg-id", SAMPLE_UID])
            .output()
    };

    // Act: published twice with the same Nats-Msg-Id, as a publisher retrying after a lost ack would.
    let first = publish()?;
    let second = publish()?;

    // Assert
    for (output, duplicate) in [(&first, "duplicate=False"), (&second, "duplicate=True")] {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains(duplicate),
            "nats-py: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let served: Value = serde_json::from_slice(&app.served(SAMPLE_UID).await?)?;
    assert_eq!(served, serde_json::from_str::<Value>(SAMPLE)?);
    app.wait_for_acks(1).await?;
    assert_eq!(app.count("orders").await?, 1);
    let redelivered = app.status.redelivered.load(Ordering::Relaxed);
    assert_eq!(
        app.delivered() - redelivered,
        1,
        "the stream dropped the re-send within its duplicate window ({redelivered} redeliveries)"
    );
    Ok(())
}
