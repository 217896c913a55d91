//! Dead letters: the listing (reasons shortened, a short payload excerpt), one in full by id, and the replay of one
//! after its cause was fixed. All on the admin listener.

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::domain::RejectReason;
use crate::http::routes::error_response;
use crate::http::routes::pagination::{ListError, Page};
use crate::replay::{replay_dead_letter, ReplayError, ReplayPipeline, ReplayResult};
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

/// How much of a payload a listing shows: enough to recognise a message, too little to copy a customer's data.
const LISTED_EXCERPT_CHARS: usize = 64;

/// Dead letters, newest first: every reason shortened to its pointer, its rule and a prefix of the value, and the
/// first characters of the payload. `GET /rejected/{id}` has the rest.
#[get("/rejected")]
pub async fn list_rejected(
    page: web::Query<Page>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ListError> {
    let rejected: Vec<RejectedMessage> = listings::list_rejected(&pool, page.limit(), page.before)
        .await?
        .into_iter()
        .map(|row| RejectedMessage::from(row).shortened())
        .collect();
    Ok(HttpResponse::Ok().json(rejected))
}

/// One dead letter in full: every reason as recorded and the whole payload as text.
#[get("/rejected/{id}")]
pub async fn get_rejected(
    id: web::Path<i64>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ReplayError> {
    let id = id.into_inner();
    let row = listings::get_rejected(&pool, id)
        .await?
        .ok_or(ReplayError::NotFound(id))?;
    Ok(HttpResponse::Ok().json(RejectedMessage::from(row)))
}

impl RejectedMessage {
    /// The listing's form: reasons shortened (`RejectReason::shortened`), the payload cut to its first characters.
    fn shortened(mut self) -> RejectedMessage {
        self.reasons = shortened_reasons(&self.reasons);
        self.replay_reasons = self.replay_reasons.as_ref().map(shortened_reasons);
        if let Some((at, _)) = self
            .payload_excerpt
            .char_indices()
            .nth(LISTED_EXCERPT_CHARS)
        {
            self.payload_excerpt.truncate(at);
            self.payload_excerpt.push('…');
        }
        self
    }
}

/// The stored reasons (a JSON array of `{pointer, message}`), each shortened; anything else passes unchanged.
fn shortened_reasons(reasons: &Value) -> Value {
    match serde_json::from_value::<Vec<RejectReason>>(reasons.clone()) {
        Ok(parsed) => json!(parsed
            .iter()
            .map(RejectReason::shortened)
            .collect::<Vec<_>>()),
        Err(_) => reasons.clone(),
    }
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
