//! The change feed module against a real PostgreSQL: commits out of id order, and a killed LISTEN connection.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use order_service::cache::feed::{ChangeFeed, FeedOrder, FeedSettings, FeedSink, APPLICATION_NAME};
use order_service::config::SslMode;
use order_service::storage::feed::{self as storage_feed, FeedCursor};
use order_service::storage::restore::restore;
use order_service::storage::tls;
use order_service::telemetry::metrics::Metrics;
use order_service_test_support::{connect, eventually, insert_directly, migrated_database, WAIT};

/// A catch-up interval no test waits for: whatever arrives, arrives through a notification or a reconnection.
const NEVER: Duration = Duration::from_secs(3600);

/// Keeps what the feed delivers, in order.
struct Collect(Rc<RefCell<Vec<(FeedCursor, String)>>>);

impl FeedSink for Collect {
    fn wants(&mut self, _: &str) -> bool {
        true
    }

    fn deliver(&mut self, orders: Vec<FeedOrder>) {
        self.0
            .borrow_mut()
            .extend(orders.into_iter().map(|order| (order.cursor, order.uid)));
    }
}

/// A feed on a fresh database, from its restore, collecting what it delivers as (cursor, order_uid).
struct FollowedDatabase {
    url: String,
    feed: ChangeFeed,
    metrics: Arc<Metrics>,
    delivered: Rc<RefCell<Vec<(FeedCursor, String)>>>,
}

impl FollowedDatabase {
    async fn start() -> anyhow::Result<FollowedDatabase> {
        let (url, pool) = migrated_database().await?;
        let start = restore(&pool, false, |_, _| true).await?;
        let metrics = Arc::new(Metrics::new()?);
        let delivered = Rc::new(RefCell::new(Vec::new()));
        let mut config: tokio_postgres::Config = url.parse()?;
        let tls = tls::configure_mode(SslMode::Disable, None, &mut config)?;
        let feed = ChangeFeed::start(
            FeedSettings {
                config,
                tls,
                catch_up_interval: NEVER,
            },
            start,
            metrics.clone(),
            Collect(delivered.clone()),
        );
        let followed = FollowedDatabase {
            url,
            feed,
            metrics,
            delivered,
        };
        followed.wait_until_listening().await?;
        Ok(followed)
    }

    async fn wait_until_listening(&self) -> anyhow::Result<()> {
        eventually(WAIT, "the feed to listen and read once", || async {
            Ok((self.metrics.feed_connected.get() == 1 && self.reads() > 0).then_some(()))
        })
        .await
    }

    fn reads(&self) -> u64 {
        self.feed.status.reads.load(Ordering::SeqCst)
    }

    fn uids(&self) -> Vec<String> {
        self.delivered
            .borrow()
            .iter()
            .map(|(_, uid)| uid.clone())
            .collect()
    }

    async fn wait_for(&self, uids: &[&str]) -> anyhow::Result<()> {
        eventually(WAIT, &format!("the feed to deliver {uids:?}"), || async {
            let delivered = self.uids();
            Ok(uids
                .iter()
                .all(|uid| delivered.iter().any(|d| d == uid))
                .then_some(()))
        })
        .await
    }
}

#[actix_web::test]
async fn a_row_whose_transaction_commits_after_a_later_row_is_delivered_too() -> anyhow::Result<()>
{
    // Arrange: two transactions; the first inserts first (the lower id), the second inserts and commits.
    let db = FollowedDatabase::start().await?;
    let first = connect(&db.url).await?;
    let second = connect(&db.url).await?;
    first.batch_execute("BEGIN").await?;
    insert_directly(&first, "earlyidcommitslate1").await?;
    second.batch_execute("BEGIN").await?;
    insert_directly(&second, "lateridcommitsfirst").await?;
    second.batch_execute("COMMIT").await?;

    // Act: the feed reads after that commit (its notification wakes it; two reads ensure one started after it),
    // then the first transaction commits.
    let reads = db.reads();
    eventually(WAIT, "two feed reads after the commit", || async {
        Ok((db.reads() >= reads + 2).then_some(()))
    })
    .await?;
    let before_first_commit = db.uids();
    first.batch_execute("COMMIT").await?;
    db.wait_for(&["earlyidcommitslate1", "lateridcommitsfirst"])
        .await?;

    // Assert: a cursor over ids would have passed the lower id while its transaction was open and skipped it; the
    // feed held the committed row back until the older transaction ended, then delivered both, once, in order.
    assert!(
        before_first_commit.is_empty(),
        "nothing may be delivered past an open older transaction: {before_first_commit:?}"
    );
    let delivered = db.delivered.borrow().clone();
    let uids: Vec<&str> = delivered.iter().map(|(_, uid)| uid.as_str()).collect();
    assert_eq!(uids, ["earlyidcommitslate1", "lateridcommitsfirst"]);
    assert!(
        delivered[0].0.id < delivered[1].0.id,
        "the row committed last has the lower id: {delivered:?}"
    );
    Ok(())
}

#[actix_web::test]
async fn after_its_listen_connection_is_terminated_the_feed_reconnects_and_misses_nothing(
) -> anyhow::Result<()> {
    // Arrange
    let db = FollowedDatabase::start().await?;
    let client = connect(&db.url).await?;
    insert_directly(&client, "beforetheterminate1").await?;
    db.wait_for(&["beforetheterminate1"]).await?;

    // Act: kill the feed's backend, commit while it is down (or reconnecting), then once more after.
    let terminated = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1 AND datname = current_database()",
            &[&APPLICATION_NAME],
        )
        .await?;
    insert_directly(&client, "whilethefeedisdown1").await?;
    db.wait_for(&["whilethefeedisdown1"]).await?;
    eventually(WAIT, "the feed to listen again", || async {
        Ok((db.metrics.feed_connected.get() == 1).then_some(()))
    })
    .await?;
    insert_directly(&client, "afterthereconnect01").await?;
    db.wait_for(&["afterthereconnect01"]).await?;

    // Assert: one backend was killed, the feed reconnected, and every order arrived once. With a catch-up interval
    // of an hour, the last one can only have come through the renewed LISTEN.
    assert_eq!(terminated.len(), 1, "one feed connection to terminate");
    assert!(terminated[0].get::<_, bool>(0));
    assert!(db.metrics.feed_reconnects.get() >= 1);
    assert_eq!(
        db.uids(),
        [
            "beforetheterminate1",
            "whilethefeedisdown1",
            "afterthereconnect01"
        ]
    );
    Ok(())
}

#[actix_web::test]
async fn the_feed_starts_at_the_restore_snapshot_and_neither_misses_nor_repeats_an_order(
) -> anyhow::Result<()> {
    // Arrange: one order stored before the restore, one committed after it.
    let (url, pool) = migrated_database().await?;
    let client = connect(&url).await?;
    insert_directly(&client, "storedbeforerestore").await?;
    let mut restored = Vec::new();
    let start = restore(&pool, false, |uid, _| {
        restored.push(uid.to_owned());
        true
    })
    .await?;
    insert_directly(&client, "committedafterwards").await?;

    // Act: read until the later order is readable (a transaction of another test, anywhere in the cluster, can
    // hold it back for a moment).
    let rows = eventually(WAIT, "the later order to be readable", || async {
        let mut conn = pool.get().await?;
        let rows =
            storage_feed::read_after(&mut conn, start.cursor, Some(&start.snapshot), 100).await?;
        Ok(rows
            .iter()
            .any(|row| row.uid == "committedafterwards")
            .then_some(rows))
    })
    .await?;

    // Assert: the later order is read, the restored one is not read again (even when a transaction of another
    // test, anywhere in the cluster, held the snapshot's xmin below it).
    assert_eq!(restored, ["storedbeforerestore"]);
    let uids: Vec<&str> = rows.iter().map(|row| row.uid.as_str()).collect();
    assert_eq!(uids, ["committedafterwards"]);
    Ok(())
}

#[actix_web::test]
async fn the_feed_queries_scan_the_cursor_index_even_when_planned_without_their_parameters(
) -> anyhow::Result<()> {
    // Arrange: enough orders, with statistics, for a sequential scan to be a choice; plans made as PostgreSQL makes
    // them for a statement prepared once per connection, after a few runs (a generic plan).
    let (url, _pool) = migrated_database().await?;
    let client = connect(&url).await?;
    client
        .batch_execute(
            "INSERT INTO orders (order_uid, document, track_number, customer_id, stan_sequence)
                 SELECT 'generic' || g, '{}', 'track', 'customer', g FROM generate_series(1, 20000) g;
             ANALYZE orders;
             SET plan_cache_mode = force_generic_plan;",
        )
        .await?;
    let queries = [
        ("read_after", storage_feed::READ_AFTER, "(0, 0, 1000, NULL)"),
        ("has_rows_after", storage_feed::HAS_ROWS_AFTER, "(0, 0)"),
    ];

    for (name, sql, arguments) in queries {
        // Act
        client
            .batch_execute(&format!("PREPARE {name} AS {sql}"))
            .await?;
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN EXECUTE {name}{arguments}"), &[])
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;

        // Assert: a wake-up of the feed reads from its cursor on, not the whole table.
        let plan = plan.join("\n");
        assert!(
            plan.contains("using orders_xid_id_idx") && !plan.contains("Seq Scan"),
            "{name} is not an index scan on (xid, id):\n{plan}"
        );
    }
    Ok(())
}
