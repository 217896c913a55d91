//! One order from the cache, and the listing of stored orders.

use std::borrow::Cow;

use actix_web::dev::{fn_service, AppService, HttpServiceFactory, ResourceDef};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::ErrorInternalServerError;
use actix_web::http::header::{HeaderValue, CONTENT_TYPE};
use actix_web::http::{Method, StatusCode};
use actix_web::{get, web, Error, HttpRequest, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use percent_encoding::percent_decode_str;
use serde::Serialize;

use crate::actors::LocalCache;
use crate::cache::LookupError;
use crate::domain::{OrderUid, OrderUidError};
use crate::http::routes::pagination::{ListError, Page};
use crate::http::routes::{error_response, unmatched_answer, Listener};
use crate::storage::listings::{self, OrderListRow};
use crate::storage::Pool;
use crate::telemetry::error_chain::error_chain_fmt;

#[derive(thiserror::Error)]
pub enum GetOrderError {
    #[error("{0}")]
    InvalidUid(#[from] OrderUidError),
    #[error("no order with order_uid {0}")]
    NotFound(OrderUid),
    #[error("the order could not be looked up")]
    Unavailable(#[from] LookupError),
}

impl std::fmt::Debug for GetOrderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        error_chain_fmt(self, f)
    }
}

impl ResponseError for GetOrderError {
    fn status_code(&self) -> StatusCode {
        match self {
            GetOrderError::InvalidUid(_) => StatusCode::BAD_REQUEST,
            GetOrderError::NotFound(_) => StatusCode::NOT_FOUND,
            GetOrderError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let code = match self {
            GetOrderError::InvalidUid(_) => "invalid_order_uid",
            GetOrderError::NotFound(_) => "not_found",
            GetOrderError::Unavailable(_) => "unavailable",
        };
        error_response(self.status_code(), code, self)
    }
}

/// The order route's path template: what the OpenAPI document and the request metrics call it.
pub const ORDER_ROUTE: &str = "/order/{order_uid}";
/// The order route's name (`HttpRequest::match_name`).
pub const GET_ORDER: &str = "get_order";

/// `GET /order/{order_uid}`, registered by hand rather than with `#[get]`: actix-web matches a template with a
/// parameter by running a regular expression on every request, and this is the route under load. Here the router
/// compares a fixed prefix, and the handler takes the uid from the one segment below it. Whatever else reaches the
/// prefix (another method, `/order`, `/order/`, `/order/a/b`) gets what the default service answers, as it did
/// when the template did not match.
// Route: GET /order/{order_uid}
pub struct GetOrderRoute;

impl HttpServiceFactory for GetOrderRoute {
    fn register(self, config: &mut AppService) {
        let mut pattern = ResourceDef::prefix("/order");
        pattern.set_name(GET_ORDER);
        config.register_service(pattern, None, fn_service(get_order), None);
    }
}

/// The uid segment when `request` is a lookup this route answers (`GET` or `HEAD` of `/order/<one segment>`), as
/// the template `/order/{order_uid}` would have matched it (on the percent-decoded path, the segment still encoded).
pub fn order_uid_segment(request: &HttpRequest) -> Option<&str> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return None;
    }
    let segment = request.match_info().unprocessed().strip_prefix('/')?;
    (!segment.is_empty() && !segment.contains('/')).then_some(segment)
}

/// The order's JSON from this worker's cache, exactly as stored: no serialization per request. A miss is read from
/// PostgreSQL (the cache answers when it has), so an order committed by any instance is served here.
async fn get_order(request: ServiceRequest) -> Result<ServiceResponse, Error> {
    let (request, _) = request.into_parts();
    let response = match order_uid_segment(&request) {
        Some(segment) => match look_up(&request, segment).await {
            Ok(response) => response,
            Err(error) => HttpResponse::from_error(error),
        },
        None => match request.app_data::<web::Data<Listener>>() {
            Some(listener) => unmatched_answer(***listener, request.path()),
            None => HttpResponse::from_error(ErrorInternalServerError("no Listener in app_data")),
        },
    };
    Ok(ServiceResponse::new(request, response))
}

async fn look_up(request: &HttpRequest, segment: &str) -> Result<HttpResponse, Error> {
    // The segment is decoded as `web::Path<String>` decodes one; a uid has nothing to decode, so this is rare.
    let decoded = if segment.contains('%') {
        percent_decode_str(segment).decode_utf8_lossy()
    } else {
        Cow::Borrowed(segment)
    };
    let uid = OrderUid::parse(&decoded).map_err(GetOrderError::from)?;
    let cache = request
        .app_data::<web::Data<LocalCache>>()
        .ok_or_else(|| ErrorInternalServerError("no LocalCache in app_data"))?;
    match cache.get(uid).await.map_err(GetOrderError::from)? {
        // A static header value: `ContentType::json()` would format and copy it for every answer.
        Some(document) => Ok(HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
            .body(document)),
        // The uid went to the cache; parsed once more, it names the order in the error.
        None => Err(GetOrderError::NotFound(
            OrderUid::parse(&decoded).map_err(GetOrderError::from)?,
        )
        .into()),
    }
}

/// One stored order, without its document, as `GET /orders` lists it.
#[derive(Debug, Serialize)]
pub struct OrderSummary {
    pub id: i64,
    pub order_uid: String,
    pub track_number: String,
    pub customer_id: String,
    pub date_created: Option<DateTime<Utc>>,
    pub stan_sequence: i64,
    pub ingested_at: DateTime<Utc>,
}

impl From<OrderListRow> for OrderSummary {
    fn from(row: OrderListRow) -> Self {
        OrderSummary {
            id: row.id,
            order_uid: row.order_uid,
            track_number: row.track_number,
            customer_id: row.customer_id,
            date_created: row.date_created,
            stan_sequence: row.stan_sequence,
            ingested_at: row.ingested_at,
        }
    }
}

/// Stored orders without their documents, newest first.
#[get("/orders")]
pub async fn list_orders(
    page: web::Query<Page>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ListError> {
    let orders: Vec<OrderSummary> = listings::list_orders(&pool, page.limit(), page.before)
        .await?
        .into_iter()
        .map(OrderSummary::from)
        .collect();
    Ok(HttpResponse::Ok().json(orders))
}
