use actix_web::{get, http::StatusCode, web, HttpResponse};
use serde_json::{json, Value};

use crate::http::readiness::Readiness;
use crate::http::routes::error_response;

/// The process is alive.
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready to take messages and serve: cache restored, database reachable, every source subscribed. 200 names what each
/// source consumes (and a JetStream consumer's backlog as last read); 503 says why not.
#[get("/readyz")]
pub async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    match readiness.check().await {
        Ok(()) => {
            let sources: Vec<Value> = readiness
                .subscribers
                .iter()
                .map(|s| {
                    let lag = s.status.lag();
                    json!({
                        "source": s.origin.source.as_str(),
                        "subscription": s.subscription,
                        "servers": s.servers,
                        "server": s.link.server(),
                        "stream_replicas": s.link.replicas(),
                        "consumer_pending": lag.map(|l| l.pending),
                        "consumer_ack_pending": lag.map(|l| l.ack_pending),
                    })
                })
                .collect();
            HttpResponse::Ok().json(json!({ "status": "ready", "sources": sources }))
        }
        Err(reasons) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            reasons.join("; "),
        ),
    }
}
