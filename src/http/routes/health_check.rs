use actix_web::{get, http::StatusCode, web, HttpResponse};
use serde_json::{json, Value};

use crate::http::readiness::Readiness;
use crate::http::routes::error_response;

/// The process is alive.
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready to take messages and serve: cache restored, database reachable, every source subscribed. 200 names each
/// source's kind (and a JetStream consumer's backlog as last read); 503 says why not. Neither names an identity
/// (client id, durable, queue group, consumer): those are in the operator listener's `/readyz/detail`.
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
                        "consumer_pending": lag.map(|l| l.pending),
                        "consumer_ack_pending": lag.map(|l| l.ack_pending),
                    })
                })
                .collect();
            HttpResponse::Ok().json(json!({ "status": "ready", "sources": sources }))
        }
        Err(reasons) => {
            let reasons: Vec<&str> = reasons.iter().map(|r| r.public.as_str()).collect();
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                reasons.join("; "),
            )
        }
    }
}

/// The operator's view of readiness (admin listener): always 200, with `status`, every reason in full and what
/// each source consumes as whom, whether it is consuming, and a JetStream consumer's backlog.
#[get("/readyz/detail")]
pub async fn readyz_detail(readiness: web::Data<Readiness>) -> HttpResponse {
    let (status, reasons) = match readiness.check().await {
        Ok(()) => ("ready", Vec::new()),
        Err(reasons) => ("not_ready", reasons.into_iter().map(|r| r.detail).collect()),
    };
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
                "consuming": s.status.check().is_ok(),
                "consumer_pending": lag.map(|l| l.pending),
                "consumer_ack_pending": lag.map(|l| l.ack_pending),
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({ "status": status, "reasons": reasons, "sources": sources }))
}
