use actix_web::{get, http::StatusCode, web, HttpResponse};
use serde_json::json;

use crate::readiness::Readiness;
use crate::routes::error_response;

/// The process is alive.
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready to take messages and serve: cache restored, database reachable, subscription up. 503 says why not.
#[get("/readyz")]
pub async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    match readiness.check().await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Err(reasons) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            reasons.join("; "),
        ),
    }
}
