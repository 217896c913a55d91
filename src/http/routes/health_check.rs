use actix_web::{get, http::StatusCode, web, HttpResponse};
use serde_json::{json, Map, Value};

use crate::http::readiness::{Readiness, SourceStatus};
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
                .map(|s| Value::Object(source_summary(s)))
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
            let mut fields = source_summary(s);
            fields.extend([
                ("subscription".to_owned(), json!(s.subscription)),
                ("servers".to_owned(), json!(s.servers)),
                ("server".to_owned(), json!(s.link.server())),
                ("stream_replicas".to_owned(), json!(s.link.replicas())),
                ("consuming".to_owned(), json!(s.status.check().is_ok())),
            ]);
            Value::Object(fields)
        })
        .collect();
    HttpResponse::Ok().json(json!({ "status": status, "reasons": reasons, "sources": sources }))
}

/// What both views say of a source: its kind, and its consumer's backlog as last read (null for STAN).
fn source_summary(source: &SourceStatus) -> Map<String, Value> {
    let lag = source.status.lag();
    Map::from_iter([
        ("source".to_owned(), json!(source.origin.source.as_str())),
        ("consumer_pending".to_owned(), json!(lag.map(|l| l.pending))),
        (
            "consumer_ack_pending".to_owned(),
            json!(lag.map(|l| l.ack_pending)),
        ),
    ])
}
