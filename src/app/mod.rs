//! Wiring (z2p's `Application`): migrate, restore the cache from PostgreSQL, start the actors in reverse pipeline
//! order (caches, persister, validator, subscriber), bind, serve; and the graceful stop.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Arbiter};
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use bytes::Bytes;
use tokio::sync::watch;

use crate::actors::stall::{self, PipelineHealth};
use crate::actors::{
    Drain, NatsSubscriber, OrderCache, OrderPersister, OrderValidator, PersisterSettings,
    StartSubscription, SubscriberStatus,
};
use crate::cache::feed::{CacheFeedSink, ChangeFeed, FeedSettings};
use crate::cache::store::charge;
use crate::cache::{CacheGroup, CacheSettings, CachedOrder, DocumentArena, PostgresOrders};
use crate::config::{Settings, SourceKind};
use crate::domain::OrderSchema;
use crate::http::admin_gate::{self, AdminAccess};
use crate::http::readiness::{Readiness, SourceStatus};
use crate::http::request_metrics::HttpMetrics;
use crate::http::routes::{self, Listener};
use crate::http::{error_bodies, head_requests};
use crate::replay::ReplayPipeline;
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
/// Workers of the admin listener: operators and a Prometheus scrape, never the public load.
const ADMIN_WORKERS: usize = 1;

/// Asks a running application to stop gracefully, as SIGTERM does.
#[derive(Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }
}

/// A running service: HTTP is up, the cache is warm, the subscription is live.
pub struct Application {
    port: u16,
    admin_port: u16,
    server: ServerHandle,
    server_task: tokio::task::JoinHandle<std::io::Result<()>>,
    admin_server: ServerHandle,
    admin_task: tokio::task::JoinHandle<std::io::Result<()>>,
    subscribers: Vec<Addr<NatsSubscriber>>,
    validator_arbiter: Arbiter,
    readiness: Arc<Readiness>,
    shutdown: watch::Sender<bool>,
    feed: ChangeFeed,
}

impl Application {
    /// Builds and starts everything; returns once the service takes messages. Errors are startup errors.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        crate::config::redact::register(settings.secrets());
        settings
            .application
            .check_admin_exposure()
            .map_err(anyhow::Error::msg)?;
        let schema = OrderSchema::new(settings.application.max_message_bytes)
            .context("Failed to compile the order schema")?;
        let metrics = Arc::new(Metrics::new().context("Failed to register the metrics")?);
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

        let max_bytes = settings.application.cache_max_bytes;
        let mut feed_config: tokio_postgres::Config = settings
            .database
            .url
            .parse()
            .context("DATABASE_URL is not a valid PostgreSQL URL")?;
        // The feed's LISTEN connection is protected as the pool's are.
        let feed_tls = storage::tls::configure(&settings.database, &mut feed_config)?;
        let started = Instant::now();
        let (snapshot, feed_start) = restore_orders(&pool, max_bytes).await?;
        tracing::info!(orders = snapshot.len(), elapsed = ?started.elapsed(), "Restored the orders from PostgreSQL.");
        metrics
            .cache_restore_duration
            .set(started.elapsed().as_secs_f64());
        metrics.cache_restored_orders.set(snapshot.len() as i64);

        let workers = settings
            .application
            .http_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1);
        let cache_settings = CacheSettings {
            max_bytes,
            source: Arc::new(PostgresOrders(pool.clone())),
        };
        let caches = CacheGroup::new(snapshot, workers, cache_settings, &metrics);
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
        let replay = ReplayPipeline {
            validator: validator.clone(),
        };

        let transports = transports(&settings)?;
        let mut sources = Vec::with_capacity(transports.len());
        for transport in &transports {
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
        let readiness = Arc::new(Readiness::new(
            sources.clone(),
            health.clone(),
            pool.clone(),
            Duration::from_secs(settings.application.stall_after_secs),
        ));
        actix_web::rt::spawn(stall::watch(
            health,
            sources.iter().map(|source| source.status.clone()).collect(),
            Duration::from_secs(settings.application.stall_after_secs),
            metrics.pipeline_stalled.clone(),
        ));
        let listener = TcpListener::bind(&settings.application.http_addr)
            .with_context(|| format!("Failed to bind {}", settings.application.http_addr))?;
        let admin_listener =
            TcpListener::bind(&settings.application.admin_addr).with_context(|| {
                format!(
                    "Failed to bind the admin listener {}",
                    settings.application.admin_addr
                )
            })?;
        let port = listener.local_addr()?.port();
        let admin_port = admin_listener.local_addr()?.port();
        let shared = HttpShared {
            caches: caches.clone(),
            pool: web::Data::new(pool),
            readiness: web::Data::from(readiness.clone()),
            replay: web::Data::new(replay),
            metrics: web::Data::from(metrics.clone()),
            admin_access: web::Data::new(AdminAccess::new(&settings.application)),
        };
        let server = run_public(listener, workers, &shared)?;
        let admin = run_admin(admin_listener, &shared)?;
        let server_handle = server.handle();
        let admin_handle = admin.handle();
        let server_task = actix_web::rt::spawn(server);
        let admin_task = actix_web::rt::spawn(admin);
        let stop_http = || async {
            server_handle.stop(false).await;
            admin_handle.stop(false).await;
        };
        let workers = workers + ADMIN_WORKERS;

        // Every worker's cache must hold the snapshot before the first new message can reach it.
        if tokio::time::timeout(WARM_DEADLINE, caches.wait_until_warm(workers))
            .await
            .is_err()
        {
            stop_http().await;
            validator_arbiter.stop();
            anyhow::bail!(
                "Only {} of {workers} HTTP workers loaded the cache within {WARM_DEADLINE:?}",
                caches.warmed_members()
            );
        }
        readiness.cache_restored();

        // After every member is warm, so each sees every batch; from the restore's snapshot, so nothing is missed.
        let feed = ChangeFeed::start(
            FeedSettings {
                config: feed_config,
                tls: feed_tls,
                catch_up_interval: Duration::from_secs(
                    settings.application.feed_catch_up_interval_secs,
                ),
            },
            feed_start,
            metrics.clone(),
            CacheFeedSink::new(caches.clone()),
        );

        // One subscriber per source, all feeding the same validator.
        let mut subscribers = Vec::with_capacity(transports.len());
        for (transport, source) in transports.into_iter().zip(sources) {
            let subscription = source.subscription.clone();
            let subscriber = NatsSubscriber::new(
                transport,
                validator.clone(),
                source.status,
                source.link,
                &metrics,
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
                feed.stop();
                stop_http().await;
                validator_arbiter.stop();
                return Err(error);
            }
        }
        tracing::info!(port, admin_port, workers, "Serving.");
        let (shutdown, _) = watch::channel(false);
        Ok(Application {
            port,
            admin_port,
            server: server_handle,
            server_task,
            admin_server: admin_handle,
            admin_task,
            subscribers,
            validator_arbiter,
            readiness,
            shutdown,
            feed,
        })
    }

    /// The public listener's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin listener's port.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// A handle that stops the application gracefully, as SIGINT/SIGTERM do.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    pub fn readiness(&self) -> Arc<Readiness> {
        self.readiness.clone()
    }

    /// Runs until SIGINT, SIGTERM or the shutdown handle, then stops in order: stop taking messages, let those in
    /// flight commit and be acked, close the STAN connection (the durable stays), stop HTTP. When the subscriber
    /// gives up (another live process holds our client id), it stops the same way and answers why.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let mut shutdown = self.shutdown.subscribe();
        let statuses: Vec<Arc<SubscriberStatus>> = self
            .readiness
            .subscribers
            .iter()
            .map(|source| source.status.clone())
            .collect();
        let mut gave_up = None;
        let server_ended = tokio::select! {
            result = &mut self.server_task => Some(result),
            result = &mut self.admin_task => Some(result),
            signal = shutdown_signal() => {
                tracing::info!(signal, "Stopping gracefully.");
                None
            }
            _ = shutdown.wait_for(|stop| *stop) => {
                tracing::info!("Stopping gracefully.");
                None
            }
            problem = any_gave_up(&statuses) => {
                tracing::error!(%problem, "Stopping: the subscriber gave up.");
                gave_up = Some(problem);
                None
            }
        };
        drain_all(&self.subscribers).await;
        self.feed.stop();
        self.server.stop(true).await;
        self.admin_server.stop(true).await;
        self.validator_arbiter.stop();
        // A task that already ended (and answered `server_ended`) is not polled again.
        let (public, admin) = match server_ended {
            Some(result) if self.server_task.is_finished() => (result, self.admin_task.await),
            Some(result) => (self.server_task.await, result),
            None => (self.server_task.await, self.admin_task.await),
        };
        for result in [public, admin] {
            result
                .context("The HTTP server task failed")?
                .context("The HTTP server failed")?;
        }
        tracing::info!("Stopped.");
        match gave_up {
            Some(problem) => Err(anyhow::anyhow!(problem)),
            None => Ok(()),
        }
    }
}

/// One transport per configured source, in the order given. A malformed server list stops the start here, with
/// the entry named and its secrets masked.
fn transports(settings: &Settings) -> anyhow::Result<Vec<Transport>> {
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

/// Answers once any subscriber has given up for good, with why.
async fn any_gave_up(statuses: &[Arc<SubscriberStatus>]) -> String {
    if statuses.is_empty() {
        return std::future::pending().await;
    }
    futures::future::select_all(statuses.iter().map(|status| Box::pin(status.failed())))
        .await
        .0
}

/// Drains every subscriber at once (each lets its messages in flight commit and be acked, then closes).
async fn drain_all(subscribers: &[Addr<NatsSubscriber>]) {
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

/// Streams the stored orders into one snapshot, documents packed into shared chunks (unless bounded), and returns
/// where the change feed starts. With a bound, the newest orders that fit in it.
async fn restore_orders(
    pool: &Pool,
    max_bytes: Option<usize>,
) -> anyhow::Result<(Arc<[CachedOrder]>, FeedStart)> {
    let mut arena = DocumentArena::for_bound(max_bytes);
    let mut orders = Vec::new();
    let mut charged = 0;
    let start = storage::restore::restore(pool, max_bytes.is_some(), |uid, document| {
        if let Some(max_bytes) = max_bytes {
            let document = Bytes::copy_from_slice(document);
            charged += charge(uid, &document);
            if charged > max_bytes {
                return false;
            }
            orders.push(CachedOrder {
                uid: Arc::from(uid),
                document,
            });
            return true;
        }
        orders.push(CachedOrder {
            uid: Arc::from(uid),
            document: arena.copy(document),
        });
        true
    })
    .await
    .map_err(|e| anyhow::anyhow!("Failed to restore the orders: {}", error_chain(&e)))?;
    Ok((orders.into(), start))
}

/// What both listeners share: the actors and state started once, before either server.
struct HttpShared {
    caches: CacheGroup,
    pool: web::Data<Pool>,
    readiness: web::Data<Readiness>,
    replay: web::Data<ReplayPipeline>,
    metrics: web::Data<Metrics>,
    admin_access: web::Data<AdminAccess>,
}

/// The public listener: order lookups, the lookup page, health.
fn run_public(
    listener: TcpListener,
    workers: usize,
    shared: &HttpShared,
) -> anyhow::Result<Server> {
    let HttpShared {
        caches,
        readiness,
        metrics,
        ..
    } = shared;
    let (caches, readiness, metrics) = (caches.clone(), readiness.clone(), metrics.clone());
    let listener_kind = web::Data::new(Listener::Public);
    let server = HttpServer::new(move || {
        // Runs once on each worker thread: this worker's own cache actor (see actors/cache.rs for why).
        let cache = web::Data::new(OrderCache::start_local_member(&caches));
        App::new()
            .wrap(error_bodies::json_errors())
            .wrap(head_requests::HeadAsGet)
            .wrap(HttpMetrics::new(&metrics))
            .app_data(cache)
            .app_data(readiness.clone())
            .app_data(listener_kind.clone())
            .configure(routes::configure_public)
    })
    .workers(workers)
    // Each response is one write: never hold one back for Nagle's algorithm (nginx sets the same on keep-alive).
    .tcp_nodelay(true)
    // We handle the signals: HTTP stops last, after the subscriber drained.
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

/// The admin listener: listings, dead letters, replay, metrics, the operator page; behind the admin gate.
fn run_admin(listener: TcpListener, shared: &HttpShared) -> anyhow::Result<Server> {
    let HttpShared {
        caches,
        pool,
        readiness,
        replay,
        metrics,
        admin_access,
    } = shared;
    let (caches, pool, readiness, replay, metrics, admin_access) = (
        caches.clone(),
        pool.clone(),
        readiness.clone(),
        replay.clone(),
        metrics.clone(),
        admin_access.clone(),
    );
    let listener_kind = web::Data::new(Listener::Admin);
    let server = HttpServer::new(move || {
        let cache = web::Data::new(OrderCache::start_local_member(&caches));
        App::new()
            .wrap(from_fn(admin_gate::gate))
            .wrap(error_bodies::json_errors())
            .wrap(head_requests::HeadAsGet)
            .wrap(HttpMetrics::new(&metrics))
            .app_data(admin_access.clone())
            .app_data(cache)
            .app_data(pool.clone())
            .app_data(readiness.clone())
            .app_data(replay.clone())
            .app_data(metrics.clone())
            .app_data(listener_kind.clone())
            .configure(routes::configure_admin)
    })
    .workers(ADMIN_WORKERS)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

/// The name of the signal that asked us to stop.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
