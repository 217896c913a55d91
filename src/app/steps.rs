//! The steps of `Application::build`, in the order it takes them; each one does one thing and says so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Arbiter};
use anyhow::Context;

use crate::actors::stall::{self, PipelineHealth};
use crate::actors::{
    Drain, NatsSubscriber, OrderPersister, OrderValidator, PersisterSettings, StartSubscription,
    SubscriberStatus,
};
use crate::cache::feed::{CacheFeedSink, ChangeFeed, FeedSettings};
use crate::cache::restored::Restore;
use crate::cache::{self, CacheGroup, CacheSettings, PostgresOrders};
use crate::config::{redact, Settings, SourceKind};
use crate::domain::OrderSchema;
use crate::http::readiness::{Readiness, SourceStatus};
use crate::storage::feed::FeedStart;
use crate::storage::{self, Pool};
use crate::telemetry::error_chain::error_chain;
use crate::telemetry::metrics::Metrics;
use crate::transport::jetstream::ConsumerSettings;
use crate::transport::link::Link;
use crate::transport::nats_auth::NatsTarget;
use crate::transport::stan::StanSource;
use crate::transport::Transport;

/// How long a graceful stop waits for messages in flight to commit and be acked.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// How long the HTTP workers may take to start and load the restored orders into their caches.
const WARM_DEADLINE: Duration = Duration::from_secs(120);

/// Registers the secrets for redaction, then refuses an admin listener open to the network without a token.
pub(super) fn check_settings(settings: &Settings) -> anyhow::Result<()> {
    redact::register(settings.secrets());
    settings
        .application
        .check_admin_exposure()
        .map_err(anyhow::Error::msg)
}

/// The pool (its gauges registered), with the migrations applied.
pub(super) async fn connect_storage(
    settings: &Settings,
    metrics: &Metrics,
) -> anyhow::Result<Pool> {
    let pool = storage::build_pool(&settings.database).await?;
    metrics
        .watch(&[], storage::pool_readings(&pool))
        .context("Failed to register the pool metrics")?;
    let migrations = storage::migrate(&pool).await?;
    for migration in &migrations.adopted {
        tracing::info!(%migration, "Recorded a migration applied before refinery in its history.");
    }
    for migration in &migrations.applied {
        tracing::info!(%migration, "Applied a migration.");
    }
    Ok(pool)
}

/// The change feed's own connection: its LISTEN connection is protected as the pool's are.
pub(super) fn feed_settings(settings: &Settings) -> anyhow::Result<FeedSettings> {
    let mut config: tokio_postgres::Config = settings
        .database
        .url
        .expose()
        .parse()
        .context("DATABASE_URL is not a valid PostgreSQL URL")?;
    let tls = storage::tls::configure(&settings.database, &mut config)?;
    Ok(FeedSettings {
        config,
        tls,
        catch_up_interval: Duration::from_secs(settings.application.feed_catch_up_interval_secs),
    })
}

/// Restores the stored orders (with a bound, the newest that fit) into the index every worker's cache reads, and
/// says where the change feed starts.
pub(super) async fn restore_cache(
    pool: &Pool,
    settings: &Settings,
    metrics: &Metrics,
) -> anyhow::Result<Restore> {
    let started = Instant::now();
    let restore = cache::restored::restore(pool, settings.application.cache_max_bytes)
        .await
        .map_err(|e| anyhow::anyhow!("Failed to restore the orders: {}", error_chain(&e)))?;
    tracing::info!(orders = restore.len(), elapsed = ?started.elapsed(), "Restored the orders from PostgreSQL.");
    metrics
        .cache_restore_duration
        .set(started.elapsed().as_secs_f64());
    metrics.cache_restored_orders.set(restore.len() as i64);
    Ok(restore)
}

/// The public listener's workers: HTTP_WORKERS, else one per CPU.
pub(super) fn http_workers(settings: &Settings) -> usize {
    settings
        .application
        .http_workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1)
}

/// The group of per-worker caches, reading the restored orders' shared index, reading misses through from PostgreSQL.
pub(super) fn cache_group(
    restore: Restore,
    workers: usize,
    settings: &Settings,
    pool: &Pool,
    metrics: &Metrics,
) -> CacheGroup {
    let cache_settings = CacheSettings {
        max_bytes: settings.application.cache_max_bytes,
        source: Arc::new(PostgresOrders(pool.clone())),
    };
    CacheGroup::restored(restore, workers, cache_settings, metrics)
}

/// The pipeline behind the subscribers: the persister, then the validator on an arbiter of its own.
pub(super) struct Pipeline {
    pub validator: Addr<OrderValidator>,
    validator_arbiter: Arbiter,
    health: Arc<PipelineHealth>,
}

impl Pipeline {
    pub fn stop(&self) {
        self.validator_arbiter.stop();
    }
}

/// Starts the persister and the validator, in reverse pipeline order.
pub(super) fn start_pipeline(
    settings: &Settings,
    schema: OrderSchema,
    pool: &Pool,
    caches: &CacheGroup,
    metrics: &Arc<Metrics>,
) -> Pipeline {
    // Each source may have this many messages in flight.
    let in_flight = usize::try_from(settings.stan.max_in_flight).unwrap_or(1024)
        * settings.distinct_sources().len().max(1);
    let health = Arc::new(PipelineHealth::default());
    let persister = OrderPersister::new(
        pool.clone(),
        caches.clone(),
        PersisterSettings {
            batch_size: settings.database.batch_size,
            batch_max_bytes: settings.database.batch_max_bytes,
            commit_deadline: settings.database.commit_deadline(),
            store_max_attempts: settings.database.store_max_attempts,
            mailbox_capacity: in_flight,
        },
        metrics.clone(),
        health.clone(),
    )
    .start();
    let validator_arbiter = Arbiter::new();
    let validator_metrics = metrics.clone();
    let validator = OrderValidator::start_in_arbiter(&validator_arbiter.handle(), move |_| {
        OrderValidator::new(schema, persister, in_flight, validator_metrics)
    });
    Pipeline {
        validator,
        validator_arbiter,
        health,
    }
}

/// One transport per configured source, in the order given. A malformed server list stops the start here, with
/// the entry named and its secrets masked.
pub(super) fn transports(settings: &Settings) -> anyhow::Result<Vec<Transport>> {
    settings
        .distinct_sources()
        .into_iter()
        .map(|source| {
            Ok(match source {
                SourceKind::Stan => Transport::Stan(StanSource {
                    settings: settings.stan.clone(),
                    nats: NatsTarget::from_settings(&settings.stan)?,
                }),
                SourceKind::JetStream => {
                    Transport::JetStream(ConsumerSettings::from_settings(settings)?)
                }
            })
        })
        .collect()
}

/// Each source's status and broker link, registered in the metrics and logged with its servers.
pub(super) fn watch_sources(
    transports: &[Transport],
    metrics: &Metrics,
) -> anyhow::Result<Vec<SourceStatus>> {
    let mut sources = Vec::with_capacity(transports.len());
    for transport in transports {
        let source = transport.origin().source;
        let status = Arc::new(SubscriberStatus::default());
        let link = Arc::new(Link::new(metrics.broker_recovery(source)));
        metrics
            .watch(&[("source", source.as_str())], status.readings(source))
            .context("Failed to register the subscriber metrics")?;
        let read = link.clone();
        let read_down = link.clone();
        let read_replicas = link.clone();
        metrics
            .watch_link(
                source,
                move || read.server(),
                move || read_down.down_for(),
                move || read_replicas.replicas(),
            )
            .context("Failed to register the broker link metrics")?;
        tracing::info!(%source, servers = %transport.servers(), "Broker servers.");
        sources.push(SourceStatus {
            origin: transport.origin(),
            subscription: transport.describe(),
            servers: transport.servers(),
            status,
            link,
        });
    }
    Ok(sources)
}

/// What `/readyz` reads, and the stall watch that sets the `pipeline_stalled` gauge.
pub(super) fn watch_readiness(
    settings: &Settings,
    sources: &[SourceStatus],
    pipeline: &Pipeline,
    pool: &Pool,
    metrics: &Metrics,
) -> Arc<Readiness> {
    let stall_after = Duration::from_secs(settings.application.stall_after_secs);
    let readiness = Arc::new(Readiness::new(
        sources.to_vec(),
        pipeline.health.clone(),
        pool.clone(),
        stall_after,
    ));
    actix_web::rt::spawn(stall::watch(
        pipeline.health.clone(),
        sources.iter().map(|source| source.status.clone()).collect(),
        stall_after,
        metrics.pipeline_stalled.clone(),
    ));
    readiness
}

/// Every worker's cache must hold the snapshot before the first new message can reach it.
pub(super) async fn wait_until_warm(caches: &CacheGroup, workers: usize) -> anyhow::Result<()> {
    if tokio::time::timeout(WARM_DEADLINE, caches.wait_until_warm(workers))
        .await
        .is_err()
    {
        anyhow::bail!(
            "Only {} of {workers} HTTP workers loaded the cache within {WARM_DEADLINE:?}",
            caches.warmed_members()
        );
    }
    Ok(())
}

/// The change feed, started after every member is warm, so each sees every batch; from the restore's snapshot, so
/// nothing is missed.
pub(super) fn start_feed(
    settings: FeedSettings,
    start: FeedStart,
    caches: &CacheGroup,
    metrics: &Arc<Metrics>,
) -> ChangeFeed {
    ChangeFeed::start(
        settings,
        start,
        metrics.clone(),
        CacheFeedSink::new(caches.clone()),
    )
}

/// One subscriber per source, all feeding the same validator. When one cannot subscribe, those started are
/// drained and the error says which subscription failed.
pub(super) async fn start_subscribers(
    transports: Vec<Transport>,
    sources: Vec<SourceStatus>,
    pipeline: &Pipeline,
    metrics: &Metrics,
) -> anyhow::Result<Vec<Addr<NatsSubscriber>>> {
    let mut subscribers = Vec::with_capacity(transports.len());
    for (transport, source) in transports.into_iter().zip(sources) {
        let subscription = source.subscription.clone();
        let subscriber = NatsSubscriber::new(
            transport,
            pipeline.validator.clone(),
            source.status,
            source.link,
            metrics,
        )
        .start();
        let failure = match subscriber.send(StartSubscription).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(
                anyhow::Error::from(error)
                    .context(format!("Failed to subscribe to {subscription}")),
            ),
            Err(error) => Some(anyhow::Error::from(error).context("The subscriber stopped")),
        };
        subscribers.push(subscriber);
        if let Some(error) = failure {
            drain_all(&subscribers).await;
            return Err(error);
        }
    }
    Ok(subscribers)
}

/// Drains every subscriber at once (each lets its messages in flight commit and be acked, then closes).
pub(super) async fn drain_all(subscribers: &[Addr<NatsSubscriber>]) {
    let drains = subscribers.iter().map(|subscriber| {
        subscriber.send(Drain {
            deadline: DRAIN_DEADLINE,
        })
    });
    for result in futures::future::join_all(drains).await {
        if result.is_err() {
            tracing::warn!("A subscriber was already stopped.");
        }
    }
}
