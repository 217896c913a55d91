use std::time::Duration;

use order_service::config::SourceKind;
use order_service_test_support::{
    base_database_url, connect, eventually, prepare_on, spawn_app, WAIT,
};
use serde_json::Value;
use stan_testkit::StoreKind;

use crate::fault_harness::PrivateNats;

#[actix_web::test]
async fn healthz_answers_200() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let response = app.get("/healthz").await?;
    assert_eq!(response.status().as_u16(), 200);
    Ok(())
}

#[actix_web::test]
async fn readyz_is_200_when_restored_connected_and_subscribed() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let response = app.get("/readyz").await?;
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}",
        response.text().await?
    );
    Ok(())
}

#[actix_web::test]
async fn readyz_is_503_with_the_reason_while_the_database_is_unreachable() -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;
    let database = app
        .db_pool
        .get()
        .await?
        .query_one("SELECT current_database()", &[])
        .await?
        .get::<_, String>(0);
    let admin = connect(&base_database_url()).await?;

    // Act: refuse new connections and end the existing ones.
    admin
        .batch_execute(&format!(
            r#"ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false;
               SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}';"#
        ))
        .await?;
    let body: Value = eventually(
        Duration::from_secs(20),
        "readyz to report the database",
        || async {
            let response = app.get("/readyz").await?;
            Ok(if response.status() == 503 {
                Some(response.json().await?)
            } else {
                None
            })
        },
    )
    .await?;
    admin
        .batch_execute(&format!(
            r#"ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true"#
        ))
        .await?;

    // Assert
    assert_eq!(body["error"], "not_ready");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("database")),
        "{body}"
    );
    eventually(Duration::from_secs(20), "readyz to recover", || async {
        Ok((app.get("/readyz").await?.status() == 200).then_some(()))
    })
    .await?;
    Ok(())
}

#[actix_web::test]
async fn public_readyz_names_no_identity_and_the_operator_detail_names_them_all(
) -> anyhow::Result<()> {
    // Arrange: a nats-server of the test's own, to take away.
    let mut nats = PrivateNats::start().await?;
    let app = prepare_on(&nats.url(), StoreKind::Memory, &[SourceKind::Stan])
        .await?
        .start()
        .await?;
    let stan = app.settings.stan.clone();
    let identities = [
        stan.client_id.as_str(),
        stan.durable_name.as_str(),
        stan.queue_group.as_str(),
    ];

    // Act: ready, then with the broker gone.
    let ready = app.get("/readyz").await?;
    let ready_status = ready.status();
    let ready = ready.text().await?;
    let ready_detail: Value = app.admin_get("/readyz/detail").await?.json().await?;
    nats.kill().await?;
    let not_ready = eventually(WAIT, "/readyz to report the broker", || async {
        let response = app.get("/readyz").await?;
        Ok(if response.status() == 503 {
            Some(response.json::<Value>().await?)
        } else {
            None
        })
    })
    .await?;
    let not_ready_detail: Value = app.admin_get("/readyz/detail").await?.json().await?;

    // Assert: the public answers say what, in words; the detail says as whom.
    assert_eq!(ready_status, 200, "{ready}");
    assert_eq!(
        not_ready["message"],
        "not consuming the STAN channel (broker unreachable or subscription down)",
        "{not_ready}"
    );
    for identity in identities {
        assert!(!ready.contains(identity), "{identity} in {ready}");
        assert!(
            !not_ready.to_string().contains(identity),
            "{identity} in {not_ready}"
        );
        assert!(
            ready_detail["sources"][0]["subscription"]
                .as_str()
                .is_some_and(|s| s.contains(identity)),
            "{identity} not in {ready_detail}"
        );
        assert!(
            not_ready_detail["reasons"][0]
                .as_str()
                .is_some_and(|s| s.contains(identity)),
            "{identity} not in {not_ready_detail}"
        );
    }
    assert_eq!(ready_detail["status"], "ready");
    assert_eq!(ready_detail["sources"][0]["consuming"], true);
    assert_eq!(not_ready_detail["status"], "not_ready");
    assert_eq!(not_ready_detail["sources"][0]["consuming"], false);
    Ok(())
}
