use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{get, http::header::ContentType, web, HttpResponse, ResponseError};
use serde::Deserialize;

use crate::actors::cache::LookupError;
use crate::actors::LocalCache;
use crate::db::{self, PersistError, Pool};
use crate::domain::{OrderUid, OrderUidError};
use crate::routes::{error_chain_fmt, error_response};

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

/// `?limit=N&before=ID`: newest first, `before` is the `id` of the last row of the previous page.
#[derive(Debug, Deserialize)]
pub struct Page {
    pub limit: Option<i64>,
    pub before: Option<i64>,
}

/// Rows per page unless asked, and at most.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 1000;

impl Page {
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }
}

#[derive(thiserror::Error)]
pub enum ListError {
    #[error("the database is unavailable")]
    Database(#[from] Arc<PersistError>),
}

impl From<PersistError> for ListError {
    fn from(error: PersistError) -> Self {
        ListError::Database(Arc::new(error))
    }
}

impl std::fmt::Debug for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        error_chain_fmt(self, f)
    }
}

impl ResponseError for ListError {
    fn status_code(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }

    fn error_response(&self) -> HttpResponse {
        error_response(self.status_code(), "unavailable", self)
    }
}

/// Stored orders without their documents, newest first.
#[get("/orders")]
pub async fn list_orders(
    page: web::Query<Page>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ListError> {
    let orders = db::list_orders(&pool, page.limit(), page.before).await?;
    Ok(HttpResponse::Ok().json(orders))
}
