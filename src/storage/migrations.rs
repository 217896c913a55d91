//! The schema migrations, applied at start (and by `order-service migrate`) under an advisory lock.

use std::collections::HashSet;

use anyhow::Context;

use crate::error_chain::error_chain;
use crate::storage::Pool;

/// Migrations in the order they apply; a unit test checks this list against `migrations/`.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "20240101000000_create_orders",
        include_str!("../../migrations/20240101000000_create_orders.sql"),
    ),
    (
        "20240102000000_record_dead_letter_replays",
        include_str!("../../migrations/20240102000000_record_dead_letter_replays.sql"),
    ),
];

/// Serializes concurrent `migrate` runs (several instances starting at once).
const MIGRATION_LOCK: i64 = 0x6f72_6465_7273; // "orders"

/// Applies the pending migrations in one transaction, under an advisory lock; returns the versions applied.
pub async fn migrate(pool: &Pool) -> anyhow::Result<Vec<&'static str>> {
    let mut conn = pool
        .get()
        .await
        .context("Failed to get a database connection")?;
    let tx = conn.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("Failed to take the migration lock")?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    text        PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .context("Failed to create schema_migrations")?;
    let applied: HashSet<String> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut newly_applied = Vec::new();
    for (version, sql) in MIGRATIONS {
        if applied.contains(*version) {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| anyhow::anyhow!("Migration {version} failed: {}", error_chain(&e)))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await?;
        newly_applied.push(*version);
    }
    tx.commit()
        .await
        .context("Failed to commit the migrations")?;
    Ok(newly_applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let mut files: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
                .expect("migrations directory")
                .filter_map(|entry| entry.ok())
                .filter_map(|entry| entry.file_name().into_string().ok())
                .filter_map(|name| name.strip_suffix(".sql").map(str::to_owned))
                .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|(version, _)| *version).collect();
        assert_eq!(listed, files);
    }
}
