//! Replaying a dead letter (`POST /rejected/{id}/replay`) through the running pipeline.

use std::process::Command;

use order_service::config::SourceKind;
use order_service_test_support::{
    prepare_with, sample_changed, spawn_app, spawn_app_with, TestApp, SAMPLE, SAMPLE_UID,
};
use serde_json::Value;

for_each_source!(
    a_dead_letter_replayed_after_its_cause_is_fixed_is_stored_and_served,
    a_dead_letter_still_invalid_is_rejected_again_with_its_reasons_and_adds_no_row,
);

/// The id of the newest dead letter, through `GET /rejected`.
async fn newest_dead_letter(app: &TestApp) -> anyhow::Result<i64> {
    let listing: Value = app.admin_get("/rejected?limit=1").await?.json().await?;
    listing[0]["id"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("no dead letter listed: {listing}"))
}

async fn replay(app: &TestApp, id: i64) -> anyhow::Result<(u16, Value)> {
    let response = app
        .admin(reqwest::Method::POST, &format!("/rejected/{id}/replay"))
        .json(&serde_json::json!({}))
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

/// `(replay_count, replay_outcome, replay_reason_class)` of a dead letter.
async fn replay_record(
    app: &TestApp,
    id: i64,
) -> anyhow::Result<(i32, Option<String>, Option<String>)> {
    let conn = app.db_pool.get().await?;
    let row = conn
        .query_one(
            "SELECT replay_count, replay_outcome, replay_reason_class FROM rejected_messages WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

async fn a_dead_letter_replayed_after_its_cause_is_fixed_is_stored_and_served(
    source: SourceKind,
) -> anyhow::Result<()> {
    // Arrange: a size limit below the sample's size makes it a dead letter...
    let mut stopped = prepare_with(&[source]).await?;
    stopped.settings.application.max_message_bytes = 256;
    let app = stopped.start().await?;
    app.publish(SAMPLE).await?;
    app.wait_for_rows("rejected_messages", 1).await?;
    // ...and the operator fixes the cause: a restart with the default limit.
    let mut stopped = app.stop().await?;
    stopped.settings.application.max_message_bytes = 1024 * 1024;
    let app = stopped.start().await?;
    let id = newest_dead_letter(&app).await?;

    // Act
    let (status, body) = replay(&app, id).await?;

    // Assert
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "persisted", "{body}");
    let served: Value = serde_json::from_slice(&app.served(SAMPLE_UID).await?)?;
    assert_eq!(served, serde_json::from_str::<Value>(SAMPLE)?);
    assert_eq!(app.count("orders").await?, 1);
    assert_eq!(
        app.count("rejected_messages").await?,
        1,
        "the dead letter stays as the record"
    );
    assert_eq!(
        replay_record(&app, id).await?,
        (1, Some("persisted".into()), None)
    );
    let listing: Value = app.admin_get("/rejected").await?.json().await?;
    assert_eq!(listing[0]["replay_outcome"], "persisted", "{listing}");
    assert_eq!(listing[0]["source"], source.as_str(), "{listing}");

    // A second replay finds the order stored.
    let (status, body) = replay(&app, id).await?;
    assert_eq!((status, &body["outcome"]), (200, &"duplicate".into()));
    assert_eq!(app.count("orders").await?, 1);
    assert_eq!(
        replay_record(&app, id).await?,
        (2, Some("duplicate".into()), None)
    );
    Ok(())
}

async fn a_dead_letter_still_invalid_is_rejected_again_with_its_reasons_and_adds_no_row(
    source: SourceKind,
) -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app_with(&[source]).await?;
    app.publish(&b"{\"order_uid\": \"abc\", oops"[..]).await?;
    app.wait_for_rows("rejected_messages", 1).await?;
    let id = newest_dead_letter(&app).await?;

    for attempt in 1..=2 {
        // Act
        let (status, body) = replay(&app, id).await?;

        // Assert
        assert_eq!(status, 200, "attempt {attempt}: {body}");
        assert_eq!(body["outcome"], "rejected", "attempt {attempt}: {body}");
        assert_eq!(
            body["reason_class"], "malformed_json",
            "attempt {attempt}: {body}"
        );
        assert!(
            body["reasons"][0]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "attempt {attempt}: {body}"
        );
        assert_eq!(
            app.count("rejected_messages").await?,
            1,
            "attempt {attempt}"
        );
        assert_eq!(
            replay_record(&app, id).await?,
            (
                attempt,
                Some("rejected".into()),
                Some("malformed_json".into())
            )
        );
    }
    assert_eq!(app.count("orders").await?, 0);
    Ok(())
}

#[actix_web::test]
async fn a_replayed_conflict_stays_a_conflict_and_the_first_version_stays() -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;
    let first = app.publish_sample().await?;
    app.publish(sample_changed()?).await?;
    app.wait_for_rows("rejected_messages", 1).await?;
    let id = newest_dead_letter(&app).await?;

    // Act
    let (status, body) = replay(&app, id).await?;

    // Assert
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["outcome"], &body["reason_class"]),
        (&"rejected".into(), &"conflict".into()),
        "{body}"
    );
    assert_eq!(app.count("rejected_messages").await?, 1);
    assert_eq!(app.count("orders").await?, 1);
    assert_eq!(app.get_order(SAMPLE_UID).await?.bytes().await?, first);
    Ok(())
}

#[actix_web::test]
async fn replaying_an_unknown_dead_letter_is_404_and_one_from_a_channel_no_longer_consumed_meets_its_own_row(
) -> anyhow::Result<()> {
    // Arrange: a dead letter kept from a STAN channel this instance does not consume (as after a move to JetStream).
    let app = spawn_app_with(&[SourceKind::JetStream]).await?;
    app.execute(
        "INSERT INTO rejected_messages
             (id, source, channel, stan_sequence, payload, payload_sha256, reason_class, reasons)
         VALUES (77, 'stan', 'some-other-channel', 1, 'x', sha256('x'), 'malformed_json', '[]')",
    )
    .await?;

    // Act
    let (unknown_status, unknown) = replay(&app, 12345).await?;
    let (other_status, other) = replay(&app, 77).await?;

    // Assert
    assert_eq!(
        (unknown_status, &unknown["error"]),
        (404, &"not_found".into()),
        "{unknown}"
    );
    assert_eq!(
        (other_status, &other["outcome"]),
        (200, &"rejected".into()),
        "{other}"
    );
    assert_eq!(
        app.count("rejected_messages").await?,
        1,
        "the replay meets its own row under its own source and channel"
    );
    assert_eq!(
        replay_record(&app, 77).await?,
        (1, Some("rejected".into()), Some("malformed_json".into()))
    );
    Ok(())
}

/// Runs `order-service replay <id>` against the app; returns (exit success, stdout, stderr).
async fn replay_command(app: &TestApp, id: i64) -> anyhow::Result<(bool, String, String)> {
    let (address, token) = (app.admin_address.clone(), app.admin_token.clone());
    // Off the test's thread: the pipeline's actors run on it and must answer while the command waits.
    let output = actix_web::rt::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_order-service"))
            .args(["replay", &id.to_string(), "--service-url", &address])
            .env("ADMIN_TOKEN", token)
            .env("DATABASE_URL", "postgres://unused@127.0.0.1:1/unused")
            .output()
    })
    .await??;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[actix_web::test]
async fn the_replay_subcommand_prints_the_outcome_and_fails_on_an_unknown_id() -> anyhow::Result<()>
{
    // Arrange
    let app = spawn_app().await?;
    app.publish(&b"not an order"[..]).await?;
    app.wait_for_rows("rejected_messages", 1).await?;
    let id = newest_dead_letter(&app).await?;

    // Act
    let (replayed, stdout, stderr) = replay_command(&app, id).await?;
    let (unknown, _, unknown_stderr) = replay_command(&app, id + 1000).await?;

    // Assert
    assert!(replayed, "{stderr}");
    let answer: Value = serde_json::from_str(stdout.trim())?;
    assert_eq!(
        (&answer["outcome"], &answer["reason_class"]),
        (&"rejected".into(), &"malformed_json".into()),
        "{answer}"
    );
    assert_eq!(replay_record(&app, id).await?.0, 1);
    assert!(!unknown, "an unknown id fails");
    assert!(
        unknown_stderr.contains("404") && unknown_stderr.contains("not_found"),
        "{unknown_stderr}"
    );
    Ok(())
}
