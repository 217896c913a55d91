//! Dead letters: the listing (reasons shortened, a short payload excerpt), one in full by id, and the replay of one
//! after its cause was fixed. All on the admin listener.

use std::sync::Arc;

use actix::{Addr, MailboxError};
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse, ResponseError};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};
use tracing::field;

use crate::actors::{OrderValidator, Outcome, PipelineError, ReplayMessage, Replayed};
use crate::db::{self, PersistError, Pool, ReplayRecord};
use crate::domain::{RejectClass, RejectReason};
use crate::routes::orders::{ListError, Page};
use crate::routes::{error_chain_fmt, error_response};

/// How much of a payload a listing shows: enough to recognise a message, too little to copy a customer's data.
const LISTED_EXCERPT_CHARS: usize = 64;

/// Dead letters, newest first: every reason shortened to its pointer, its rule and a prefix of the value, and the
/// first characters of the payload. `GET /rejected/{id}` has the rest.
#[get("/rejected")]
pub async fn list_rejected(
    page: web::Query<Page>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ListError> {
    let mut rejected = db::list_rejected(&pool, page.limit(), page.before).await?;
    for message in &mut rejected {
        message.reasons = shortened_reasons(&message.reasons);
        if let Some(replayed) = &message.replay_reasons {
            message.replay_reasons = Some(shortened_reasons(replayed));
        }
        message.payload_excerpt = excerpt(&message.payload_excerpt);
    }
    Ok(HttpResponse::Ok().json(rejected))
}

/// One dead letter in full: every reason as recorded and the whole payload as text.
#[get("/rejected/{id}")]
pub async fn get_rejected(
    id: web::Path<i64>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ReplayError> {
    let id = id.into_inner();
    let message = db::get_rejected(&pool, id)
        .await?
        .ok_or(ReplayError::NotFound(id))?;
    Ok(HttpResponse::Ok().json(message))
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

fn excerpt(text: &str) -> String {
    match text.char_indices().nth(LISTED_EXCERPT_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Where a replay enters the pipeline: the running validator, and the channel its persister writes for.
#[derive(Clone)]
pub struct ReplayPipeline {
    pub validator: Addr<OrderValidator>,
    pub channel: String,
}

#[derive(thiserror::Error)]
pub enum ReplayError {
    #[error("no dead letter with id {0}")]
    NotFound(i64),
    #[error(
        "dead letter {id} came from channel {channel:?}; this service consumes {ours:?} and replays only its own"
    )]
    OtherChannel {
        id: i64,
        channel: String,
        ours: String,
    },
    #[error("the database is unavailable")]
    Database(#[from] Arc<PersistError>),
    #[error("the pipeline is unavailable")]
    Pipeline(#[from] PipelineError),
}

impl From<PersistError> for ReplayError {
    fn from(error: PersistError) -> Self {
        ReplayError::Database(Arc::new(error))
    }
}

impl From<MailboxError> for ReplayError {
    fn from(error: MailboxError) -> Self {
        ReplayError::Pipeline(PipelineError::from(error))
    }
}

impl std::fmt::Debug for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        error_chain_fmt(self, f)
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

/// Sends a dead letter's raw bytes through the pipeline again (validate, persist, cache), as if STAN delivered it
/// anew, and answers what became of it. The dead letter stays and records the replay. Replaying is idempotent: a
/// stored order comes back `duplicate`, a message still invalid meets its own row (same channel, sequence and
/// bytes) and adds none.
#[post("/rejected/{id}/replay")]
pub async fn replay_rejected(
    id: web::Path<i64>,
    pool: web::Data<Pool>,
    pipeline: web::Data<ReplayPipeline>,
) -> Result<HttpResponse, ReplayError> {
    let id = id.into_inner();
    let dead_letter = db::get_dead_letter(&pool, id)
        .await?
        .ok_or(ReplayError::NotFound(id))?;
    if dead_letter.channel != pipeline.channel {
        // The persister writes for its own channel: a rejection would not meet this row but add another.
        return Err(ReplayError::OtherChannel {
            id,
            channel: dead_letter.channel,
            ours: pipeline.channel.clone(),
        });
    }
    let sequence = u64::try_from(dead_letter.stan_sequence).unwrap_or_default();
    let span = tracing::info_span!(
        parent: None,
        "Replay dead letter",
        dead_letter_id = id,
        seq = sequence,
        order_uid = field::Empty
    );
    let Replayed { outcome, reasons } = pipeline
        .validator
        .send(ReplayMessage {
            payload: Bytes::from(dead_letter.payload),
            sequence,
            span: span.clone(),
        })
        .await??;
    let answer = answer(id, outcome, reasons);
    db::record_replay(
        &pool,
        id,
        ReplayRecord {
            outcome: answer.outcome,
            reason_class: answer.reason_class,
            reasons: &answer.reasons,
        },
    )
    .await?;
    span.in_scope(|| tracing::info!(outcome = answer.outcome, "Replayed a dead letter."));
    Ok(HttpResponse::Ok().json(answer))
}

fn answer(id: i64, outcome: Outcome, mut reasons: Vec<RejectReason>) -> ReplayAnswer {
    let (outcome, reason_class) = match outcome {
        Outcome::Persisted => ("persisted", None),
        Outcome::Duplicate => ("duplicate", None),
        Outcome::Rejected(class) => {
            if reasons.is_empty() && class == RejectClass::Conflict {
                reasons.push(RejectReason {
                    pointer: "/order_uid".into(),
                    message:
                        "an order with this order_uid is stored with other content; the first \
                              version stays"
                            .into(),
                });
            }
            ("rejected", Some(class.as_str()))
        }
    };
    ReplayAnswer {
        id,
        outcome,
        reason_class,
        reasons,
    }
}
