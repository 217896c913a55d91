//! HTTP routes. Every error answers `{"error": "<code>", "message": "<text>"}`.
//!
//! One file per resource. Uses the parts below `http` (the cache actor, replay, storage's listings, telemetry,
//! domain) and `http`'s own readiness and metrics; `app` mounts `configure_public` and `configure_admin`.

mod health_check;
mod metrics;
mod openapi;
mod orders;
mod pagination;
mod rejected;
mod ui;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

pub use health_check::{healthz, readyz, readyz_detail};
pub use metrics::get_metrics;
pub use openapi::{allowed_methods, openapi_document};
pub use orders::{
    list_orders, order_uid_segment, GetOrderError, GetOrderRoute, OrderSummary, GET_ORDER,
    ORDER_ROUTE,
};
pub use pagination::{ListError, Page};
pub use rejected::{get_rejected, list_rejected, replay_rejected, RejectedMessage, ReplayAnswer};
pub use ui::{admin_js, app_css, app_js, index, CONTENT_SECURITY_POLICY};

/// Which listener a request came in on (in `app_data`): the page and the OpenAPI document differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `HTTP_ADDR`: anyone may reach it.
    Public,
    /// `ADMIN_ADDR`: operators, behind `admin_gate::gate`.
    Admin,
}

impl Listener {
    /// The name used for it in the OpenAPI document's `x-listeners`.
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Public => "public",
            Listener::Admin => "admin",
        }
    }
}

/// What both listeners have: the query and path error answers, the JSON 404 for any other path, the order lookup.
fn configure_common(cfg: &mut web::ServiceConfig) -> &mut web::ServiceConfig {
    cfg.app_data(query_config())
        .app_data(path_config())
        .default_service(web::to(unmatched))
        .service(GetOrderRoute)
}

/// The routes of the public listener: order lookups, the lookup page, health. Nothing here lists, changes or
/// counts anything; every admin path answers 404.
pub fn configure_public(cfg: &mut web::ServiceConfig) {
    configure_common(cfg)
        .service(healthz)
        .service(readyz)
        .service(openapi_document)
        .service(index)
        .service(app_js)
        .service(app_css);
}

/// The routes of the admin listener: the listings, dead letters and their replay, metrics and the operator page,
/// plus the order lookup the operator page uses.
pub fn configure_admin(cfg: &mut web::ServiceConfig) {
    configure_common(cfg)
        .service(list_orders)
        .service(list_rejected)
        .service(get_rejected)
        .service(replay_rejected)
        .service(get_metrics)
        .service(readyz_detail)
        .service(openapi_document)
        .service(index)
        .service(app_js)
        .service(admin_js)
        .service(app_css);
}

/// A query string that does not parse gets the same JSON error body as every other error.
fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _| {
        let response = error_response(StatusCode::BAD_REQUEST, "invalid_query", &error);
        actix_web::error::InternalError::from_response(error, response).into()
    })
}

/// A path parameter that does not parse (`/rejected/abc`, an id beyond 64 bits) is a 400 with the shared body. The
/// message does not quote the input: actix-web's own does, whole.
fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|error, _| {
        let response = error_response(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "a path parameter does not parse (an id is a 64-bit integer)",
        );
        actix_web::error::InternalError::from_response(error, response).into()
    })
}

/// What no route matched: 405 with `Allow` when the path exists with other methods on this listener, else 404.
async fn unmatched(request: HttpRequest, listener: web::Data<Listener>) -> HttpResponse {
    unmatched_answer(**listener, request.path())
}

/// The answer of `unmatched` for `path` on `listener`.
pub(crate) fn unmatched_answer(listener: Listener, path: &str) -> HttpResponse {
    match allowed_methods(listener, path) {
        Some(methods) => {
            let mut response = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("this path takes {methods} only"),
            );
            if let Ok(value) = header::HeaderValue::from_str(methods) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            response
        }
        None => error_response(StatusCode::NOT_FOUND, "not_found", "no such resource"),
    }
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
    HttpResponse::build(status)
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .json(ErrorBody {
            error: code,
            message: message.to_string(),
        })
}
