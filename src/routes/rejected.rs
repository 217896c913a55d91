//! Dead letters: the listing, and the replay of one after its cause was fixed.

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::domain::RejectReason;
use crate::replay::{replay_dead_letter, ReplayError, ReplayPipeline, ReplayResult};
use crate::routes::error_response;
use crate::routes::pagination::{ListError, Page};
use crate::storage::listings::{self, DeadLetterListRow};
use crate::storage::Pool;

/// One dead letter, as `GET /rejected` lists it.
#[derive(Debug, Serialize)]
pub struct RejectedMessage {
    pub id: i64,
    /// `stan` or `jetstream`.
    pub source: String,
    /// The STAN channel or JetStream stream.
    pub channel: String,
    pub stan_sequence: i64,
    pub reason_class: String,
    pub reasons: Value,
    pub order_uid: Option<String>,
    pub received_at: DateTime<Utc>,
    pub payload_bytes: usize,
    /// The start of the payload as text (invalid UTF-8 replaced by U+FFFD).
    pub payload_excerpt: String,
    /// How often an operator replayed it, and what the latest replay gave.
    pub replay_count: i32,
    pub replayed_at: Option<DateTime<Utc>>,
    pub replay_outcome: Option<String>,
    pub replay_reason_class: Option<String>,
    pub replay_reasons: Option<Value>,
}

impl From<DeadLetterListRow> for RejectedMessage {
    fn from(row: DeadLetterListRow) -> Self {
        RejectedMessage {
            id: row.id,
            source: row.source,
            channel: row.channel,
            stan_sequence: row.stan_sequence,
            reason_class: row.reason_class,
            reasons: row.reasons,
            order_uid: row.order_uid,
            received_at: row.received_at,
            payload_bytes: usize::try_from(row.payload_length).unwrap_or(0),
            payload_excerpt: String::from_utf8_lossy(&row.payload_start).into_owned(),
            replay_count: row.replay_count,
            replayed_at: row.replayed_at,
            replay_outcome: row.replay_outcome,
            replay_reason_class: row.replay_reason_class,
            replay_reasons: row.replay_reasons,
        }
    }
}

/// Dead letters with their reasons, newest first.
#[get("/rejected")]
pub async fn list_rejected(
    page: web::Query<Page>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ListError> {
    let rejected: Vec<RejectedMessage> = listings::list_rejected(&pool, page.limit(), page.before)
        .await?
        .into_iter()
        .map(RejectedMessage::from)
        .collect();
    Ok(HttpResponse::Ok().json(rejected))
}

impl ResponseError for ReplayError {
    fn status_code(&self) -> StatusCode {
        match self {
            ReplayError::NotFound(_) => StatusCode::NOT_FOUND,
            ReplayError::OtherChannel { .. } => StatusCode::CONFLICT,
            ReplayError::Database(_) | ReplayError::Pipeline(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let code = match self {
            ReplayError::NotFound(_) => "not_found",
            ReplayError::OtherChannel { .. } => "other_channel",
            ReplayError::Database(_) | ReplayError::Pipeline(_) => "unavailable",
        };
        error_response(self.status_code(), code, self)
    }
}

/// The answer to a replay.
#[derive(Debug, Serialize)]
pub struct ReplayAnswer {
    pub id: i64,
    /// `persisted`, `duplicate` or `rejected`.
    pub outcome: &'static str,
    /// Set when rejected.
    pub reason_class: Option<&'static str>,
    pub reasons: Vec<RejectReason>,
}

impl From<ReplayResult> for ReplayAnswer {
    fn from(result: ReplayResult) -> Self {
        ReplayAnswer {
            id: result.id,
            outcome: result.outcome,
            reason_class: result.reason_class,
            reasons: result.reasons,
        }
    }
}

/// Sends a dead letter's raw bytes through the pipeline again and answers what became of it (see `crate::replay`).
#[post("/rejected/{id}/replay")]
pub async fn replay_rejected(
    id: web::Path<i64>,
    pool: web::Data<Pool>,
    pipeline: web::Data<ReplayPipeline>,
) -> Result<HttpResponse, ReplayError> {
    let result = replay_dead_letter(&pool, &pipeline, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(ReplayAnswer::from(result)))
}
