//! The two HTTP listeners: the public one (order lookups, the lookup page, health) and the admin one (listings,
//! dead letters, replay, metrics, the operator page, behind the admin gate). Both are bound here, so a test can ask
//! for port 0 and read the port taken (z2p).

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use tokio::task::{JoinError, JoinHandle};

use crate::actors::OrderCache;
use crate::app::steps::Pipeline;
use crate::cache::CacheGroup;
use crate::config::Settings;
use crate::http::admin_gate::{self, AdminAccess};
use crate::http::readiness::Readiness;
use crate::http::request_metrics::HttpMetrics;
use crate::http::routes::{self, Listener};
use crate::http::{error_bodies, head_requests};
use crate::replay::ReplayPipeline;
use crate::storage::Pool;
use crate::telemetry::metrics::Metrics;

/// Workers of the admin listener: operators and a Prometheus scrape, never the public load.
pub(super) const ADMIN_WORKERS: usize = 1;

/// What a server task answers when it ends.
type ServerResult = Result<std::io::Result<()>, JoinError>;

/// What both listeners share: the actors and state started once, before either server.
#[derive(Clone)]
pub(super) struct HttpShared {
    caches: CacheGroup,
    pool: web::Data<Pool>,
    readiness: web::Data<Readiness>,
    replay: web::Data<ReplayPipeline>,
    metrics: web::Data<Metrics>,
    admin_access: web::Data<AdminAccess>,
}

impl HttpShared {
    pub fn new(
        settings: &Settings,
        caches: &CacheGroup,
        pool: Pool,
        readiness: &Arc<Readiness>,
        pipeline: &Pipeline,
        metrics: &Arc<Metrics>,
    ) -> HttpShared {
        HttpShared {
            caches: caches.clone(),
            pool: web::Data::new(pool),
            readiness: web::Data::from(readiness.clone()),
            replay: web::Data::new(ReplayPipeline {
                validator: pipeline.validator.clone(),
            }),
            metrics: web::Data::from(metrics.clone()),
            admin_access: web::Data::new(AdminAccess::new(&settings.application)),
        }
    }
}

/// Both listeners, running.
pub(super) struct Servers {
    pub port: u16,
    pub admin_port: u16,
    pub public: ServerHandle,
    pub public_task: JoinHandle<std::io::Result<()>>,
    pub admin: ServerHandle,
    pub admin_task: JoinHandle<std::io::Result<()>>,
}

impl Servers {
    /// Binds both listeners and starts serving on them.
    pub fn bind_and_run(
        settings: &Settings,
        workers: usize,
        shared: HttpShared,
    ) -> anyhow::Result<Servers> {
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
        let public = run_public(listener, workers, shared.clone())?;
        let admin = run_admin(admin_listener, shared)?;
        Ok(Servers {
            port,
            admin_port,
            public: public.handle(),
            admin: admin.handle(),
            public_task: actix_web::rt::spawn(public),
            admin_task: actix_web::rt::spawn(admin),
        })
    }

    /// Stops both at once, for a start that failed after they were up.
    pub async fn stop(&self) {
        self.public.stop(false).await;
        self.admin.stop(false).await;
    }

    /// Both tasks' results, once stopped; `ended` is the one that already ended (and answered), which is not
    /// polled again.
    pub async fn join(&mut self, ended: Option<ServerResult>) -> (ServerResult, ServerResult) {
        match ended {
            Some(result) if self.public_task.is_finished() => {
                (result, (&mut self.admin_task).await)
            }
            Some(result) => ((&mut self.public_task).await, result),
            None => ((&mut self.public_task).await, (&mut self.admin_task).await),
        }
    }
}

/// The public listener: order lookups, the lookup page, health.
fn run_public(listener: TcpListener, workers: usize, shared: HttpShared) -> anyhow::Result<Server> {
    let listener_kind = web::Data::new(Listener::Public);
    let server = HttpServer::new(move || {
        // Runs once on each worker thread: this worker's own cache actor (see actors/cache.rs for why).
        let cache = web::Data::new(OrderCache::start_local_member(&shared.caches));
        App::new()
            .wrap(error_bodies::json_errors())
            .wrap(head_requests::HeadAsGet)
            .wrap(HttpMetrics::new(&shared.metrics))
            .app_data(cache)
            .app_data(shared.readiness.clone())
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
fn run_admin(listener: TcpListener, shared: HttpShared) -> anyhow::Result<Server> {
    let listener_kind = web::Data::new(Listener::Admin);
    let server = HttpServer::new(move || {
        let cache = web::Data::new(OrderCache::start_local_member(&shared.caches));
        App::new()
            .wrap(from_fn(admin_gate::gate))
            .wrap(error_bodies::json_errors())
            .wrap(head_requests::HeadAsGet)
            .wrap(HttpMetrics::new(&shared.metrics))
            .app_data(shared.admin_access.clone())
            .app_data(cache)
            .app_data(shared.pool.clone())
            .app_data(shared.readiness.clone())
            .app_data(shared.replay.clone())
            .app_data(shared.metrics.clone())
            .app_data(listener_kind.clone())
            .configure(routes::configure_admin)
    })
    .workers(ADMIN_WORKERS)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}
