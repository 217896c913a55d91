//! HTTP routes. Every error answers `{"error": "<code>", "message": "<text>"}`.

mod health_check;
mod orders;
mod rejected;

use actix_web::{web, HttpResponse};
use serde::Serialize;

pub use health_check::{healthz, readyz};
pub use orders::{get_order, list_orders, GetOrderError, ListError};
pub use rejected::list_rejected;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_order)
        .service(list_orders)
        .service(list_rejected)
        .service(healthz)
        .service(readyz);
}

/// The error body of every route.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub message: String,
}

/// Builds an error response with the shared body.
pub(crate) fn error_response(
    status: actix_web::http::StatusCode,
    code: &str,
    message: impl ToString,
) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        error: code,
        message: message.to_string(),
    })
}

/// `Debug` for route errors (z2p): the whole cause chain goes to the logs, clients get an opaque message.
pub fn error_chain_fmt(
    e: &impl std::error::Error,
    f: &mut std::fmt::Formatter<'_>,
) -> std::fmt::Result {
    writeln!(f, "{e}")?;
    let mut current = e.source();
    while let Some(cause) = current {
        writeln!(f, "Caused by:\n\t{cause}")?;
        current = cause.source();
    }
    Ok(())
}
