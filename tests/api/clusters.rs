//! The service on a NATS cluster: three real nats-server processes (testkit's `NatsCluster`), one of them SIGKILLed
//! mid-ingest. JetStream: the service creates its stream with `JS_REPLICAS=3`; the node leading the stream, or the
//! one leading its consumer, dies. STAN: the dev broker sits on node 1 and the service is given nodes 2 and 3; node
//! 2, the one under the service, dies. Each time every order is stored exactly once, the service never exits, and
//! `/readyz` is ready again.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;
use async_nats::HeaderMap;
use futures::StreamExt;
use order_service::config::SourceKind;
use order_service_test_support::{eventually, prepare_on, sample_with_uid, start_error, TestApp};
use serde_json::Value;
use stan_testkit::nats_cluster::{consumer_leader, stream_leader, NatsCluster};
use stan_testkit::StoreKind;
use tokio::time::Instant;

/// Orders per test: enough that the kill lands mid-ingest, few enough to keep the test short.
const ORDERS: usize = 2000;
/// The kill comes once this many are stored.
const KILL_AFTER: i64 = 400;
/// For the whole ingest, a failover included.
const DEADLINE: Duration = Duration::from_secs(120);

/// Which leader of the JetStream cluster the test kills.
#[derive(Debug, Clone, Copy)]
enum Leader {
    Stream,
    Consumer,
}

#[actix_web::test]
async fn jetstream_at_three_replicas_stores_every_order_once_when_the_stream_leader_dies(
) -> anyhow::Result<()> {
    jetstream_cluster_loses(Leader::Stream).await
}

#[actix_web::test]
async fn jetstream_at_three_replicas_stores_every_order_once_when_the_consumer_leader_dies(
) -> anyhow::Result<()> {
    jetstream_cluster_loses(Leader::Consumer).await
}

async fn jetstream_cluster_loses(leader: Leader) -> anyhow::Result<()> {
    // Arrange: the service gets the whole cluster and creates its stream at three replicas.
    let mut cluster = NatsCluster::start(3).await?;
    let urls = cluster.urls();
    let mut stopped = prepare_on(&urls[0], StoreKind::Memory, &[SourceKind::Stan]).await?;
    stopped.settings.sources = vec![SourceKind::JetStream];
    stopped.settings.jetstream.url = urls.join(",").into();
    stopped.settings.jetstream.replicas = 3;
    let (stream, subject, consumer) = {
        let js = &stopped.settings.jetstream;
        (js.stream.clone(), js.subject.clone(), js.consumer.clone())
    };
    let app = stopped.start().await?;
    let client = cluster.client().await?;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client.clone());
    let replicas = js
        .get_stream(&stream)
        .await?
        .cached_info()
        .config
        .num_replicas;
    assert_eq!(replicas, 3, "the service created the stream at JS_REPLICAS");
    let uids: Vec<String> = (0..ORDERS).map(|i| format!("cluster-js-{i:05}")).collect();

    // Act: publish, and kill the leader once part of the orders is stored.
    let publishing = actix_web::rt::spawn(publish_each_once(js.clone(), subject, uids));
    wait_for_stored(&app, KILL_AFTER).await?;
    let victim = match leader {
        Leader::Stream => stream_leader(&client, &stream).await?,
        Leader::Consumer => consumer_leader(&client, &stream, &consumer).await?,
    };
    let index = cluster
        .index_of(&victim)
        .with_context(|| format!("{victim} is not a node of the cluster"))?;
    cluster.kill(index)?;
    publishing.await??;

    // Assert
    wait_for_stored(&app, ORDERS as i64).await?;
    let in_stream = js.get_stream(&stream).await?.cached_info().state.messages;
    assert_eq!(
        in_stream, ORDERS as u64,
        "every order is in the stream once ({leader:?} leader {victim} killed)"
    );
    assert_eq!(app.count("orders").await?, ORDERS as i64);
    assert_eq!(app.count("rejected_messages").await?, 0);
    let ready = wait_until_ready(&app).await?;
    assert!(app.is_running(), "the service never exits");
    assert_eq!(ready["sources"][0]["stream_replicas"], 3, "{ready}");
    Ok(())
}

#[actix_web::test]
async fn stan_over_a_nats_cluster_moves_to_the_next_node_and_stores_every_order_once(
) -> anyhow::Result<()> {
    // Arrange: the broker on node 1; the service given nodes 2 and 3, so it starts on node 2.
    let mut cluster = NatsCluster::start(3).await?;
    let urls = cluster.urls();
    let mut stopped = prepare_on(&urls[0], StoreKind::Memory, &[SourceKind::Stan]).await?;
    stopped.settings.stan.url = format!("{}, {}", urls[1], urls[2]).into();
    let app = stopped.start().await?;
    let (node2, node3) = (host_port(&urls[1])?, host_port(&urls[2])?);
    let ready = wait_until_ready(&app).await?;
    assert_eq!(ready["sources"][0]["server"], node2.as_str(), "{ready}");
    assert_eq!(
        ready["sources"][0]["servers"],
        format!("{},{}", urls[1], urls[2]).as_str()
    );
    let messages: Vec<Vec<u8>> = (0..ORDERS)
        .map(|i| sample_with_uid(&format!("cluster-stan-{i:05}")).into_bytes())
        .collect();

    // Act: kill node 2 mid-ingest.
    let publisher = app.publisher.clone();
    let publishing = actix_web::rt::spawn(async move { publisher.publish_all(&messages).await });
    wait_for_stored(&app, KILL_AFTER).await?;
    cluster.kill(1)?;
    publishing.await??;

    // Assert: on node 3, subscribed again, every order stored once.
    wait_for_stored(&app, ORDERS as i64).await?;
    assert_eq!(app.count("orders").await?, ORDERS as i64);
    assert_eq!(app.count("rejected_messages").await?, 0);
    let ready = eventually(DEADLINE, "readyz naming node 3", || async {
        let ready = wait_until_ready(&app).await?;
        Ok((ready["sources"][0]["server"] == node3.as_str()).then_some(ready))
    })
    .await?;
    assert!(app.is_running(), "the service never exits: {ready}");
    assert!(
        app.status
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1,
        "the subscriber connected afresh"
    );
    Ok(())
}

/// Publishes one order per uid with `Nats-Msg-Id` set to it, retrying each until JetStream acknowledges it: through
/// another node once the client has moved there, the stream dropping the duplicates within its window.
async fn publish_each_once(
    js: jetstream::Context,
    subject: String,
    uids: Vec<String>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(uids)
        .map(|uid| {
            let (js, subject) = (js.clone(), subject.clone());
            async move {
                loop {
                    let mut headers = HeaderMap::new();
                    headers.insert("Nats-Msg-Id", uid.as_str());
                    let payload = sample_with_uid(&uid).into_bytes();
                    let error = match js
                        .publish_with_headers(subject.clone(), headers, payload.into())
                        .await
                    {
                        Ok(ack) => match ack.await {
                            Ok(_) => return Ok(()),
                            Err(error) => error,
                        },
                        Err(error) => error,
                    };
                    if Instant::now() > deadline {
                        return Err(anyhow::Error::from(error)
                            .context(format!("JetStream never acknowledged order {uid}")));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn wait_for_stored(app: &TestApp, at_least: i64) -> anyhow::Result<()> {
    eventually(DEADLINE, &format!("{at_least} orders stored"), || async {
        Ok((app.count("orders").await? >= at_least).then_some(()))
    })
    .await
}

/// Once the public `/readyz` answers 200, the operator's `/readyz/detail`, which names the servers (the public
/// answer names no identity or address).
async fn wait_until_ready(app: &TestApp) -> anyhow::Result<Value> {
    eventually(DEADLINE, "/readyz to answer 200", || async {
        let response = app.get("/readyz").await?;
        if response.status() != 200 {
            return Ok(None);
        }
        let detail = app.admin_get("/readyz/detail").await?;
        Ok(Some(detail.json::<Value>().await?))
    })
    .await
}

/// `nats://127.0.0.1:4222` -> `127.0.0.1:4222`.
fn host_port(url: &str) -> anyhow::Result<String> {
    url.strip_prefix("nats://")
        .map(str::to_owned)
        .with_context(|| format!("{url} is not a nats:// URL"))
}

#[actix_web::test]
async fn a_replica_count_beyond_the_cluster_is_a_clear_start_up_error() -> anyhow::Result<()> {
    // Arrange: the machine's single nats-server, which cannot hold three replicas.
    let mut stopped = order_service_test_support::prepare().await?;
    stopped.settings.sources = vec![SourceKind::JetStream];
    stopped.settings.jetstream.replicas = 3;

    // Act
    let error = start_error(
        stopped.start().await,
        "the service started with a stream of 3 replicas on one server",
    )?;

    // Assert
    assert!(
        error.contains("cannot be created with 3 replicas"),
        "{error}"
    );
    assert!(error.contains("Set JS_REPLICAS"), "{error}");
    Ok(())
}

#[actix_web::test]
async fn a_malformed_server_list_entry_is_refused_at_start_by_position_without_its_secret(
) -> anyhow::Result<()> {
    // Arrange
    let mut stopped = order_service_test_support::prepare().await?;
    let good = stopped.settings.stan.url.expose().to_owned();
    stopped.settings.stan.url = format!("{good},nats://order:s3cret@127.0.0.1:99999").into();

    // Act
    let error = start_error(
        stopped.start().await,
        "the service started with a malformed STAN_URL entry",
    )?;

    // Assert
    assert!(error.contains("STAN_URL: entry 2"), "{error}");
    assert!(
        error.contains("nats://order:***@127.0.0.1:99999"),
        "{error}"
    );
    assert!(!error.contains("s3cret"), "{error}");
    Ok(())
}
