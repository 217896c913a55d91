//! HTTP routes. Every error answers `{"error": "<code>", "message": "<text>"}`.

mod health_check;
mod metrics;
mod openapi;
mod orders;
mod pagination;
mod rejected;
mod ui;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Serialize;

pub use health_check::{healthz, readyz};
pub use metrics::get_metrics;
pub use openapi::openapi_document;
pub use orders::{get_order, list_orders, GetOrderError, OrderSummary};
pub use pagination::{ListError, Page};
pub use rejected::{list_rejected, replay_rejected, RejectedMessage, ReplayAnswer};
pub use ui::{app_css, app_js, index, CONTENT_SECURITY_POLICY};

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // A query string that does not parse gets the same JSON error body as every other error.
    let query = web::QueryConfig::default().error_handler(|error, _| {
        let response = error_response(StatusCode::BAD_REQUEST, "invalid_query", &error);
        actix_web::error::InternalError::from_response(error, response).into()
    });
    cfg.app_data(query)
        .service(get_order)
        .service(list_orders)
        .service(list_rejected)
        .service(replay_rejected)
        .service(healthz)
        .service(readyz)
        .service(get_metrics)
        .service(openapi_document)
        .service(index)
        .service(app_js)
        .service(app_css);
}

/// The error body of every route.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub message: String,
}

/// Builds an error response with the shared body.
pub(crate) fn error_response(
    status: StatusCode,
    code: &str,
    message: impl ToString,
) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        error: code,
        message: message.to_string(),
    })
}
