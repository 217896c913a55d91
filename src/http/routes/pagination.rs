//! What the listing routes share: the page asked for and the error they answer.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Deserialize;

use crate::http::routes::error_response;
use crate::storage::PersistError;
use crate::telemetry::error_chain::error_chain_fmt;

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
