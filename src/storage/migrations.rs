//! The schema migrations (`migrations/V{n}__{name}.sql`), run by refinery at start and by `order-service migrate`.
//!
//! refinery records what ran, when, and a checksum of each file in `refinery_schema_history`, and refuses to start
//! when a file that already ran was edited. What it does not do is serialize two instances starting together, so the
//! run holds a PostgreSQL advisory lock. Databases made before refinery carry the hand-written runner's
//! `schema_migrations` table instead; their history is carried over once, under the same lock, so nothing runs twice.

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use refinery::error::Kind;
use refinery::{AsyncMigrate, Migration, Runner};
use tokio_postgres::Client;

use crate::storage::Pool;
use crate::telemetry::error_chain::error_chain;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Serializes concurrent `migrate` runs (several instances starting at once).
const MIGRATION_LOCK: i64 = 0x6f72_6465_7273; // "orders"

/// refinery's history table (its default name, set explicitly because the carry-over writes to it too).
const HISTORY_TABLE: &str = "refinery_schema_history";

/// The versions the hand-written runner recorded in `schema_migrations`, and the refinery version of each file.
const LEGACY_VERSIONS: &[(&str, i32)] = &[
    ("20240101000000_create_orders", 1),
    ("20240102000000_record_dead_letter_replays", 2),
];

/// What a run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Migrations the old runner had applied, now recorded in refinery's history (`V1__create_orders`, …).
    pub adopted: Vec<String>,
    /// Migrations applied by this run.
    pub applied: Vec<String>,
}

/// Applies the pending migrations under an advisory lock (each in its own transaction, as refinery does).
pub async fn migrate(pool: &Pool) -> anyhow::Result<MigrationReport> {
    let mut conn = pool
        .get()
        .await
        .context("Failed to get a database connection")?;
    // A session lock: refinery opens and commits its own transactions, so a transaction-scoped lock cannot span them.
    conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("Failed to take the migration lock")?;
    let result = migrate_locked(&mut conn).await;
    // Released on every path: the connection goes back to the pool, and a held lock would block the next run.
    let unlocked = conn
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let report = result?;
    unlocked.context("Failed to release the migration lock")?;
    Ok(report)
}

async fn migrate_locked(client: &mut Client) -> anyhow::Result<MigrationReport> {
    let runner = runner();
    let adopted = adopt_legacy_history(client, runner.get_migrations()).await?;
    let report = runner.run_async(client).await.map_err(refused)?;
    let applied = report
        .applied_migrations()
        .iter()
        .map(ToString::to_string)
        .collect();
    Ok(MigrationReport { adopted, applied })
}

/// refinery's error, with what to do when an applied migration was edited.
fn refused(error: refinery::Error) -> anyhow::Error {
    match error.kind() {
        Kind::DivergentVersion(_, file) => anyhow::anyhow!(
            "Migration {file} was applied and its file changed since (the checksum differs from the one in \
             {HISTORY_TABLE}); restore the file as it was and put the change in a new migration"
        ),
        Kind::MissingVersion(migration) => anyhow::anyhow!(
            "Migration {migration} is recorded in {HISTORY_TABLE} but has no file here (or its file was never \
             applied while a later one was); this build does not match the database"
        ),
        _ => anyhow::anyhow!("Failed to apply the migrations: {}", error_chain(&error)),
    }
}

fn runner() -> Runner {
    let mut runner = embedded::migrations::runner()
        .set_abort_divergent(true)
        .set_abort_missing(true);
    runner.set_migration_table_name(HISTORY_TABLE);
    runner
}

/// When the database has the old runner's `schema_migrations` and no refinery history yet, records each migration
/// it applied in refinery's history (with its checksum and original time), in one transaction, so refinery applies
/// only what is new. Returns the migrations recorded.
async fn adopt_legacy_history(
    client: &mut Client,
    migrations: &[Migration],
) -> anyhow::Result<Vec<String>> {
    let tx = client.transaction().await?;
    let tables = tx
        .query_one(
            "SELECT to_regclass('schema_migrations') IS NOT NULL, to_regclass($1) IS NOT NULL",
            &[&HISTORY_TABLE],
        )
        .await
        .context("Failed to look for the migration tables")?;
    let (legacy, history): (bool, bool) = (tables.try_get(0)?, tables.try_get(1)?);
    if !legacy || history {
        return Ok(Vec::new());
    }
    let rows = tx
        .query(
            "SELECT version, applied_at FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .context("Failed to read schema_migrations")?;
    tx.batch_execute(&<Client as AsyncMigrate>::assert_migrations_table_query(
        HISTORY_TABLE,
    ))
    .await
    .context("Failed to create the migration history table")?;
    let mut adopted = Vec::with_capacity(rows.len());
    for row in rows {
        let legacy_version: String = row.try_get(0)?;
        let applied_at: DateTime<Utc> = row.try_get(1)?;
        let migration = legacy_migration(&legacy_version, migrations)?;
        tx.execute(
            &format!(
                "INSERT INTO {HISTORY_TABLE} (version, name, applied_on, checksum) VALUES ($1, $2, $3, $4)"
            ),
            &[
                &migration.version(),
                &migration.name(),
                // refinery stores and parses RFC 3339 text.
                &applied_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                &migration.checksum().to_string(),
            ],
        )
        .await
        .with_context(|| format!("Failed to record {migration} in the migration history"))?;
        adopted.push(migration.to_string());
    }
    tx.commit()
        .await
        .context("Failed to commit the migration history")?;
    Ok(adopted)
}

/// The embedded migration the old runner knew as `legacy_version`.
fn legacy_migration<'a>(
    legacy_version: &str,
    migrations: &'a [Migration],
) -> anyhow::Result<&'a Migration> {
    let version = LEGACY_VERSIONS
        .iter()
        .find(|(legacy, _)| *legacy == legacy_version)
        .map(|(_, version)| *version)
        .with_context(|| {
            format!("schema_migrations lists {legacy_version}, which this version does not know")
        })?;
    migrations
        .iter()
        .find(|m| m.version() == version)
        .with_context(|| format!("migration V{version} (was {legacy_version}) is not embedded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded() {
        // Arrange
        let mut files: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
                .expect("migrations directory")
                .filter_map(|entry| entry.ok())
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect();
        files.sort();

        // Act
        let mut embedded: Vec<String> = runner()
            .get_migrations()
            .iter()
            .map(|m| format!("{m}.sql"))
            .collect();
        embedded.sort();

        // Assert
        assert_eq!(embedded, files, "a file refinery skipped is misnamed");
    }

    #[test]
    fn every_legacy_version_maps_to_the_embedded_file_of_the_same_name() {
        let runner = runner();
        for (legacy, version) in LEGACY_VERSIONS {
            let migration = legacy_migration(legacy, runner.get_migrations()).expect(legacy);
            assert_eq!(migration.version(), *version, "{legacy}");
            assert!(
                legacy.ends_with(&format!("_{}", migration.name())),
                "{legacy} is not {migration}"
            );
        }
    }

    #[test]
    fn an_unknown_legacy_version_is_refused_by_name() {
        let runner = runner();
        let error = legacy_migration("20990101000000_from_the_future", runner.get_migrations())
            .expect_err("an unknown version");
        assert!(
            error.to_string().contains("20990101000000_from_the_future"),
            "{error}"
        );
    }
}
