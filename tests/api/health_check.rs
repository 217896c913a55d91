use std::time::Duration;

use serde_json::Value;

use crate::helpers::{eventually, spawn_app};

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
    let admin = tokio_postgres::connect(
        &std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        tokio_postgres::NoTls,
    )
    .await?;
    actix_web::rt::spawn(admin.1);
    let admin = admin.0;

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
