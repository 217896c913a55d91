//! Wiring (z2p's `Application`): the start as a short list of named steps (steps.rs: check the settings, connect
//! and migrate storage, restore the cache, start the pipeline, watch the sources, bind and serve (servers.rs),
//! start the change feed and the subscribers), and the graceful stop.
//!
//! The top part: it may use every other part, and none uses it.

mod servers;
mod steps;

use std::sync::Arc;

use actix::Addr;
use anyhow::Context;
use tokio::sync::watch;

use crate::actors::{NatsSubscriber, SubscriberStatus};
use crate::cache::feed::ChangeFeed;
use crate::config::Settings;
use crate::domain::OrderSchema;
use crate::http::readiness::Readiness;
use crate::telemetry::metrics::Metrics;
use servers::{HttpShared, Servers};
use steps::Pipeline;

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
    servers: Servers,
    subscribers: Vec<Addr<NatsSubscriber>>,
    pipeline: Pipeline,
    readiness: Arc<Readiness>,
    shutdown: watch::Sender<bool>,
    feed: ChangeFeed,
}

impl Application {
    /// Builds and starts everything; returns once the service takes messages. Errors are startup errors.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        steps::check_settings(&settings)?;
        let schema = OrderSchema::new(settings.application.max_message_bytes)
            .context("Failed to compile the order schema")?;
        let metrics = Arc::new(Metrics::new().context("Failed to register the metrics")?);
        let pool = steps::connect_storage(&settings, &metrics).await?;
        let feed_settings = steps::feed_settings(&settings)?;
        let restore = steps::restore_cache(&pool, &settings, &metrics).await?;
        let feed_start = restore.feed_start.clone();
        let workers = steps::http_workers(&settings);
        let caches = steps::cache_group(restore, workers, &settings, &pool, &metrics);
        let pipeline = steps::start_pipeline(&settings, schema, &pool, &caches, &metrics);
        let transports = steps::transports(&settings)?;
        let sources = steps::watch_sources(&transports, &metrics)?;
        let readiness = steps::watch_readiness(&settings, &sources, &pipeline, &pool, &metrics);
        let servers = Servers::bind_and_run(
            &settings,
            workers,
            HttpShared::new(&settings, &caches, pool, &readiness, &pipeline, &metrics),
        )?;
        let workers = workers + servers::ADMIN_WORKERS;
        if let Err(error) = steps::wait_until_warm(&caches, workers).await {
            servers.stop().await;
            pipeline.stop();
            return Err(error);
        }
        readiness.cache_restored();
        let feed = steps::start_feed(feed_settings, feed_start, &caches, &metrics);
        let subscribers =
            match steps::start_subscribers(transports, sources, &pipeline, &metrics).await {
                Ok(subscribers) => subscribers,
                Err(error) => {
                    feed.stop();
                    servers.stop().await;
                    pipeline.stop();
                    return Err(error);
                }
            };
        let (port, admin_port) = (servers.port, servers.admin_port);
        tracing::info!(port, admin_port, workers, "Serving.");
        let (shutdown, _) = watch::channel(false);
        Ok(Application {
            servers,
            subscribers,
            pipeline,
            readiness,
            shutdown,
            feed,
        })
    }

    /// The public listener's port.
    pub fn port(&self) -> u16 {
        self.servers.port
    }

    /// The admin listener's port.
    pub fn admin_port(&self) -> u16 {
        self.servers.admin_port
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
            result = &mut self.servers.public_task => Some(result),
            result = &mut self.servers.admin_task => Some(result),
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
        steps::drain_all(&self.subscribers).await;
        self.feed.stop();
        self.servers.public.stop(true).await;
        self.servers.admin.stop(true).await;
        self.pipeline.stop();
        let (public, admin) = self.servers.join(server_ended).await;
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

/// Answers once any subscriber has given up for good, with why.
async fn any_gave_up(statuses: &[Arc<SubscriberStatus>]) -> String {
    if statuses.is_empty() {
        return std::future::pending().await;
    }
    futures::future::select_all(statuses.iter().map(|status| Box::pin(status.failed())))
        .await
        .0
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
