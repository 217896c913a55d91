//! The schema migrations against a real PostgreSQL: concurrent starts, the upgrade from the hand-written runner's
//! `schema_migrations`, and an applied migration whose file changed.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeZone, Utc};
use order_service::storage::{self, Pool};
use order_service_test_support::{empty_database, migrated_database};
use serde_json::Value;

/// The files in `migrations/`, as refinery names them (`V1__create_orders`), in version order.
fn migration_files() -> Vec<(i32, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let mut files: Vec<(i32, String)> = std::fs::read_dir(dir)
        .expect("migrations directory")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            let stem = name.strip_suffix(".sql")?;
            let version = stem.strip_prefix('V')?.split_once("__")?.0.parse().ok()?;
            Some((version, stem.to_owned()))
        })
        .collect();
    files.sort();
    files
}

/// `(version, name, applied_on, checksum)` of every row of refinery's history.
async fn history(pool: &Pool) -> anyhow::Result<Vec<(i32, String, String, String)>> {
    let conn = pool.get().await?;
    let rows = conn
        .query(
            "SELECT version, name, applied_on, checksum FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// Every row of `orders` and `rejected_messages` as JSON keyed by column, to compare before and after.
async fn table_contents(pool: &Pool) -> anyhow::Result<Vec<Value>> {
    let conn = pool.get().await?;
    let rows = conn
        .query(
            // The document as its text: V6 turned the column from json to text, which must keep every byte.
            "SELECT to_jsonb(o) || jsonb_build_object('document', o.document::text) FROM orders o
             UNION ALL SELECT to_jsonb(r) FROM rejected_messages r",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The rows as sorted text, each keeping only the columns in `columns`: a later migration may add a column (with its
/// default), which is not a change of the data that was there.
fn only_columns(rows: &[Value], columns: &BTreeSet<String>) -> Vec<String> {
    let mut texts: Vec<String> = rows
        .iter()
        .map(|row| {
            let mut row = row.clone();
            if let Value::Object(map) = &mut row {
                map.retain(|column, _| columns.contains(column));
            }
            row.to_string()
        })
        .collect();
    texts.sort();
    texts
}

#[actix_web::test]
async fn two_instances_migrating_a_fresh_database_at_once_both_succeed_and_each_migration_runs_once(
) -> anyhow::Result<()> {
    // Arrange: two pools, as two instances would have.
    let database = empty_database().await?;
    let first = storage::build_pool(&database).await?;
    let second = storage::build_pool(&database).await?;

    // Act
    let (a, b) = tokio::join!(storage::migrate(&first), storage::migrate(&second));

    // Assert
    let (a, b) = (a?, b?);
    let mut applied: Vec<String> = a.applied.into_iter().chain(b.applied).collect();
    applied.sort_by_key(|name| migration_files().iter().position(|(_, f)| f == name));
    let expected: Vec<String> = migration_files().into_iter().map(|(_, f)| f).collect();
    assert_eq!(
        applied, expected,
        "every migration applied once, by one of them"
    );
    let recorded: Vec<i32> = history(&first).await?.iter().map(|r| r.0).collect();
    let versions: Vec<i32> = migration_files().iter().map(|(v, _)| *v).collect();
    assert_eq!(recorded, versions);
    Ok(())
}

#[actix_web::test]
async fn a_database_made_by_the_old_runner_is_upgraded_without_reapplying_anything_or_touching_data(
) -> anyhow::Result<()> {
    // Arrange: what the hand-written runner left: its two migrations, its table and its rows, and some data.
    let pool = storage::build_pool(&empty_database().await?).await?;
    let created = Utc
        .with_ymd_and_hms(2024, 3, 1, 12, 0, 0)
        .single()
        .expect("a time");
    let replays_added = Utc
        .with_ymd_and_hms(2024, 4, 2, 8, 30, 15)
        .single()
        .expect("a time");
    {
        let conn = pool.get().await?;
        conn.batch_execute(include_str!("../../migrations/V1__create_orders.sql"))
            .await?;
        conn.batch_execute(include_str!(
            "../../migrations/V2__record_dead_letter_replays.sql"
        ))
        .await?;
        conn.batch_execute(
            "CREATE TABLE schema_migrations (
                 version    text        PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
        for (version, at) in [
            ("20240101000000_create_orders", created),
            ("20240102000000_record_dead_letter_replays", replays_added),
        ] {
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[&version, &at],
            )
            .await?;
        }
        conn.batch_execute(
            r#"INSERT INTO orders (order_uid, document, track_number, customer_id, date_created, stan_sequence)
               VALUES ('old-order-1', '{"order_uid": "old-order-1", "spaced" : [1, 2]}', 'TRACK1', 'c1', '2024-03-01T10:00:00Z', 7),
                      ('old-order-2', '{"order_uid":"old-order-2"}', 'TRACK2', 'c2', NULL, 8);
               INSERT INTO rejected_messages (channel, stan_sequence, payload, payload_sha256, reason_class, reasons)
               VALUES ('orders', 9, '\x7b', sha256('\x7b'), 'malformed_json', '[]');"#,
        )
        .await?;
    }
    let before = table_contents(&pool).await?;

    // Act
    let report = storage::migrate(&pool).await?;

    // Assert
    assert_eq!(
        report.adopted,
        ["V1__create_orders", "V2__record_dead_letter_replays"],
        "the old runner's migrations are recorded, not applied"
    );
    let later: Vec<String> = migration_files()
        .into_iter()
        .filter(|(version, _)| *version > 2)
        .map(|(_, name)| name)
        .collect();
    assert_eq!(
        report.applied, later,
        "only migrations newer than the old runner's run"
    );
    let columns: BTreeSet<String> = before
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|row| row.keys().cloned())
        .collect();
    let after = table_contents(&pool).await?;
    assert_eq!(
        only_columns(&after, &columns),
        only_columns(&before, &columns),
        "the data is untouched"
    );
    assert!(
        after
            .iter()
            .filter(|row| row.get("reason_class").is_some())
            .all(|row| row["source"] == "stan"),
        "dead letters from before V4 are STAN's: {after:?}"
    );
    let history = history(&pool).await?;
    let applied_on: Vec<DateTime<Utc>> = history[..2]
        .iter()
        .map(|row| DateTime::parse_from_rfc3339(&row.2).map(|t| t.with_timezone(&Utc)))
        .collect::<Result<_, _>>()?;
    assert_eq!(
        applied_on,
        [created, replays_added],
        "the original times are kept"
    );

    let again = storage::migrate(&pool).await?;
    assert!(
        again.adopted.is_empty() && again.applied.is_empty(),
        "a second start does nothing: {again:?}"
    );
    Ok(())
}

#[actix_web::test]
async fn an_applied_migration_whose_file_changed_is_refused_with_its_name() -> anyhow::Result<()> {
    // Arrange: a migrated database whose history says V1 had other content.
    let pool = storage::build_pool(&empty_database().await?).await?;
    storage::migrate(&pool).await?;
    pool.get()
        .await?
        .execute(
            "UPDATE refinery_schema_history SET checksum = '1' WHERE version = 1",
            &[],
        )
        .await?;

    // Act
    let refused = storage::migrate(&pool).await;

    // Assert
    let error = format!("{:#}", refused.expect_err("an edited migration is refused"));
    assert!(
        error.contains("V1__create_orders") && error.contains("changed"),
        "the error names the migration and says why: {error}"
    );
    Ok(())
}

#[actix_web::test]
async fn the_migrate_command_prints_each_migration_it_applies_then_that_none_is_left(
) -> anyhow::Result<()> {
    // Arrange
    let database = empty_database().await?;
    let run = || {
        let url = database.url.expose().to_owned();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_order-service"))
                .arg("migrate")
                .env("DATABASE_URL", url)
                .output()
        })
    };

    // Act
    let first = run().await??;
    let second = run().await??;

    // Assert
    assert!(first.status.success() && second.status.success());
    let expected: String = migration_files()
        .into_iter()
        .map(|(_, name)| format!("applied {name}\n"))
        .collect();
    assert_eq!(String::from_utf8(first.stdout)?, expected);
    assert_eq!(String::from_utf8(second.stdout)?, "no migration to apply\n");
    Ok(())
}

#[actix_web::test]
async fn every_column_of_orders_has_the_small_statistics_target_so_each_analysis_reads_a_small_sample(
) -> anyhow::Result<()> {
    // Arrange: the schema as the migrations leave it.
    let (_url, pool) = migrated_database().await?;
    let conn = pool.get().await?;

    // Act: each column's own target; -1 means the server's default (100: a sample of 30,000 rows).
    let rows = conn
        .query(
            "SELECT attname::text, attstattarget::int4 FROM pg_attribute
             WHERE attrelid = 'orders'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[],
        )
        .await?;

    // Assert: an analysis samples 300 rows per point of the largest target, so one column left at the default
    // would bring back the sample V8 made ten times smaller.
    assert!(!rows.is_empty(), "orders has columns");
    for row in &rows {
        let (column, target): (String, i32) = (row.try_get(0)?, row.try_get(1)?);
        assert!(
            (0..=10).contains(&target),
            "column {column} of orders has statistics target {target}, not 10 or less (V8)"
        );
    }
    Ok(())
}
