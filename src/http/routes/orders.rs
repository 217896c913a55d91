//! One order from the cache, and the listing of stored orders.

use actix_web::http::StatusCode;
use actix_web::{get, http::header::ContentType, web, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::actors::LocalCache;
use crate::cache::LookupError;
use crate::domain::{OrderUid, OrderUidError};
use crate::http::routes::error_response;
use crate::http::routes::pagination::{ListError, Page};
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

/// The order's JSON from this worker's cache, exactly as stored: no serialization per request. A miss is read from
/// PostgreSQL (the cache answers when it has), so an order committed by any instance is served here.
#[get("/order/{order_uid}")]
pub async fn get_order(
    path: web::Path<String>,
    cache: web::Data<LocalCache>,
) -> Result<HttpResponse, GetOrderError> {
    let uid = OrderUid::parse(&path)?;
    match cache.get(uid.clone()).await? {
        Some(document) => Ok(HttpResponse::Ok()
            .insert_header(ContentType::json())
            .body(document)),
        None => Err(GetOrderError::NotFound(uid)),
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
