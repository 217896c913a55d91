use actix::{Addr, MailboxError};
use actix_web::http::StatusCode;
use actix_web::{get, web, HttpResponse, ResponseError};

use crate::actors::{GetOrder, OrderCache};
use crate::domain::{OrderUid, OrderUidError};
use crate::routes::error_body;

#[derive(Debug, thiserror::Error)]
pub enum GetOrderError {
    #[error("{0}")]
    InvalidUid(#[from] OrderUidError),
    #[error("no order with order_uid {0:?}")]
    NotFound(String),
    #[error("the cache is unavailable")]
    Unavailable(#[from] MailboxError),
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
        HttpResponse::build(self.status_code()).json(error_body(code, self))
    }
}

/// The order's JSON as stored, straight from the cache.
#[get("/order/{order_uid}")]
pub async fn get_order(
    path: web::Path<String>,
    cache: web::Data<Addr<OrderCache>>,
) -> Result<HttpResponse, GetOrderError> {
    let uid = OrderUid::parse(&path)?;
    match cache.send(GetOrder(uid.as_str().to_owned())).await? {
        Some(document) => Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(document)),
        None => Err(GetOrderError::NotFound(uid.to_string())),
    }
}
