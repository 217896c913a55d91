//! PostgreSQL failover under the service: a primary and its synchronous standby made by the test (`initdb`,
//! `pg_basebackup -R`), the service given both in one URL with `target_session_attrs=read-write`, the primary
//! stopped as a crash would mid-ingest and the standby promoted. The pool, the change feed and the read-through all
//! reach the new primary on their own.
//!
//! The feed's (xid, id) cursor stays valid across the promotion: the standby replays every transaction id from the
//! WAL, so once promoted it hands out ids above every one it replayed. With a synchronous standby, every row the
//! feed ever read was flushed there before its transaction ended (a commit waiting for the standby is still running
//! to other sessions), so the cursor is never ahead of the new primary, and the first orders it commits lie after
//! the cursor.

use std::time::Duration;

use order_service_test_support::metrics::{get, scrape};
use order_service_test_support::{
    connect, eventually, insert_directly, prepare_on_database, TestApp, WAIT,
};

use crate::fault_harness::{
    assert_accounted_for, assert_serves_every_stored_order, wait_for_stored_rows, Corpus,
    ThrowawayPostgres,
};

/// How long the service may take to store everything once the standby is promoted.
const RECOVERY: Duration = Duration::from_secs(40);

/// An order the test commits on the new primary right after the promotion (19 characters, as the sample's).
const AFTER_PROMOTION: &str = "afterthepromotion01";

#[actix_web::test]
async fn after_the_primary_stops_mid_ingest_and_its_synchronous_standby_is_promoted_every_order_is_stored_once_and_followed(
) -> anyhow::Result<()> {
    // Arrange: the pair, the service's role and database (created once the standby streams synchronously, so they
    // are on both), and two instances on the pair's URL: one consumes, the other has no messages of its own and
    // learns every order from its change feed only.
    let primary = ThrowawayPostgres::start_primary()?;
    let standby = ThrowawayPostgres::standby_of(&primary)?;
    let admin = connect(&primary.url()).await?;
    eventually(WAIT, "the standby to stream synchronously", || async {
        let states = admin
            .query("SELECT sync_state FROM pg_stat_replication", &[])
            .await?;
        Ok(states
            .iter()
            .any(|row| row.get::<_, String>(0) == "sync")
            .then_some(()))
    })
    .await?;
    // Two statements: CREATE DATABASE cannot run in the implicit transaction of a multi-statement query.
    admin.batch_execute("CREATE ROLE orders LOGIN").await?;
    admin
        .batch_execute("CREATE DATABASE orders OWNER orders")
        .await?;
    let url = format!(
        "postgres://orders@127.0.0.1:{},127.0.0.1:{}/orders?target_session_attrs=read-write",
        primary.port(),
        standby.port()
    );
    let consumer = prepare_on_database(&url).await?.start().await?;
    let follower = prepare_on_database(&url).await?.start().await?;
    let mut corpus = Corpus::new(71, 2000, 0, 0, 0)?;
    let total = corpus.messages.len() as i64;
    // Half the corpus before the crash and half after it: the crash falls mid-ingest however fast this machine
    // stores, and orders are committed after the promotion.
    let (before_crash, after_crash) = corpus.messages.split_at(corpus.messages.len() / 2);
    consumer.publish_all(before_crash.to_vec()).await?;
    wait_for_stored_rows(&consumer.db_pool, total / 3).await?;

    // Act: stop the primary as a crash would; read the newest transaction id the standby replayed; promote it; at
    // once commit one order on the new primary behind the service's back.
    primary.crash()?;
    consumer.publish_all(after_crash.to_vec()).await?;
    let standby_client = connect(&standby.url_of("orders")).await?;
    let replayed = newest_replayed_xid(&standby_client).await?;
    standby.promote()?;
    insert_directly(&standby_client, AFTER_PROMOTION).await?;
    corpus.valid_uids.insert(AFTER_PROMOTION.to_owned());

    // Assert: every order once on the new primary, served by the consumer as stored.
    assert_accounted_for(&consumer.db_pool, &consumer.address, &corpus, RECOVERY).await?;
    let row = standby_client
        .query_one(
            "SELECT xid::text::int8 FROM orders WHERE order_uid = $1",
            &[&AFTER_PROMOTION],
        )
        .await?;
    let after_promotion: i64 = row.get(0);
    assert!(
        after_promotion > replayed,
        "the new primary's first transaction id ({after_promotion}) does not follow the replayed ones ({replayed})"
    );
    let committed_after: i64 = standby_client
        .query_one(
            "SELECT count(*) FROM orders WHERE xid::text::int8 > $1",
            &[&replayed],
        )
        .await?
        .get(0);
    assert!(
        committed_after > 1,
        "the primary stopped after the ingest: only {committed_after} order(s) were committed after the promotion"
    );
    // The follower cached every order, including those committed after the promotion, from its feed alone: no
    // request reached it, and it never read PostgreSQL for a miss.
    let stored = corpus.valid_uids.len() as f64;
    let metrics = eventually(
        RECOVERY,
        "the follower's feed to cache every order",
        || async {
            let metrics = scrape(&follower).await?;
            Ok((get(&metrics, "order_service_cache_entries", &[]) == stored).then_some(metrics))
        },
    )
    .await?;
    let follower_metric = |name: &str| get(&metrics, &format!("order_service_{name}"), &[]);
    assert!(follower_metric("feed_reconnects_total") >= 1.0);
    assert_eq!(follower_metric("cache_read_through_queries_total"), 0.0);
    for app in [&consumer, &follower] {
        wait_ready(app).await?;
    }
    assert_serves_every_stored_order(&follower.db_pool, &follower.address).await?;
    Ok(())
}

/// The newest transaction id among the orders a standby stores, once it has replayed all the WAL it received (its
/// primary is gone, so nothing more arrives).
async fn newest_replayed_xid(client: &tokio_postgres::Client) -> anyhow::Result<i64> {
    eventually(WAIT, "the standby to replay what it received", || async {
        let row = client
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()",
                &[],
            )
            .await?;
        Ok(row.get::<_, bool>(0).then_some(()))
    })
    .await?;
    Ok(client
        .query_one("SELECT coalesce(max(xid::text::int8), 0) FROM orders", &[])
        .await?
        .get(0))
}

/// Waits until `/readyz` answers 200.
async fn wait_ready(app: &TestApp) -> anyhow::Result<()> {
    eventually(
        WAIT,
        &format!("{}/readyz to be ready", app.address),
        || async { Ok((app.get("/readyz").await?.status() == 200).then_some(())) },
    )
    .await
}
