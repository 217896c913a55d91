//! Wiring: database, cache restore, actors (in reverse pipeline order), then HTTP.

use std::net::TcpListener;

use actix::{Actor, Addr};
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::actors::{NatsSubscriber, OrderCache, OrderPersister, OrderValidator, StopSubscriber};
use crate::configuration::Settings;
use crate::domain::OrderSchema;
use crate::{broker, db, routes};

pub struct Application {
    port: u16,
    server: Server,
    subscriber: Addr<NatsSubscriber>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let schema = OrderSchema::new(settings.max_message_bytes)
            .context("Failed to load the order schema")?;
        let pool = db::connect(&settings.database_url, settings.db_pool_size).await?;
        db::migrate(&pool).await?;
        // The cache is complete before any new message is taken.
        let orders = db::load_orders(&pool).await?;
        tracing::info!(orders = orders.len(), "Restored the cache from PostgreSQL.");
        let cache = OrderCache::new(orders).start();
        let persister =
            OrderPersister::new(pool, settings.stan_channel.clone(), cache.clone()).start();
        let validator = OrderValidator::new(schema, persister).start();
        let (client, messages) = broker::subscribe(&settings).await?;
        let subscriber = NatsSubscriber::start_with(client, messages, validator);

        let listener = TcpListener::bind(settings.http_addr)
            .with_context(|| format!("Failed to bind {}", settings.http_addr))?;
        let port = listener.local_addr()?.port();
        let cache = web::Data::new(cache);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(cache.clone())
                .service(routes::get_order)
                .service(routes::healthz)
                .service(routes::readyz)
        })
        .listen(listener)?
        .run();
        tracing::info!(port, channel = %settings.stan_channel, "Serving.");
        Ok(Application {
            port,
            server,
            subscriber,
        })
    }

    /// Stops HTTP gracefully (what SIGTERM does); `run_until_stopped` then closes the STAN connection.
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs until SIGINT/SIGTERM (actix-web handles both), then closes the STAN connection without unsubscribing.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let result = self.server.await;
        let _ = self.subscriber.send(StopSubscriber).await;
        result.context("HTTP server failed")
    }
}
