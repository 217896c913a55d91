//! Replaying a dead letter: its raw bytes go through the running pipeline again (validate, persist, cache), as if
//! its source (STAN or JetStream) delivered them anew, and the dead letter records what became of them. `POST /rejected/{id}/replay` calls
//! this; the CLI `order-service replay` calls that route, so the work always happens in the service whose caches
//! must see a stored order.
//!
//! Uses `actors` (the validator it sends to), `transport`, `storage`, `telemetry` and `domain`; `http` uses it.

pub mod client;

use std::sync::Arc;

use actix::{Addr, MailboxError};
use bytes::Bytes;
use tracing::field;

use crate::actors::{MessageSpan, OrderValidator, Outcome, PipelineError, ReplayMessage, Replayed};
use crate::domain::{RejectClass, RejectReason};
use crate::storage::dead_letters::{self, ReplayRecord};
use crate::storage::{PersistError, Pool};
use crate::telemetry::error_chain::error_chain_fmt;
use crate::transport::{Origin, SourceKind};

/// Where a replay enters the pipeline: the running validator.
#[derive(Clone)]
pub struct ReplayPipeline {
    pub validator: Addr<OrderValidator>,
}

#[derive(thiserror::Error)]
pub enum ReplayError {
    #[error("no dead letter with id {0}")]
    NotFound(i64),
    #[error("dead letter {id} came from source {kind:?}, which this service does not know")]
    OtherChannel { id: i64, kind: String },
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

/// What became of a replayed dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayResult {
    pub id: i64,
    /// `persisted`, `duplicate` or `rejected`.
    pub outcome: &'static str,
    /// Set when rejected.
    pub reason_class: Option<&'static str>,
    pub reasons: Vec<RejectReason>,
}

/// Replays dead letter `id` and records the outcome on it. The dead letter stays. Replaying is idempotent: a stored
/// order comes back `duplicate`, a message still invalid meets its own row (same source, channel, sequence and
/// bytes) and adds none.
pub async fn replay_dead_letter(
    pool: &Pool,
    pipeline: &ReplayPipeline,
    id: i64,
) -> Result<ReplayResult, ReplayError> {
    let dead_letter = dead_letters::get_dead_letter(pool, id)
        .await?
        .ok_or(ReplayError::NotFound(id))?;
    // The replay carries the dead letter's own origin and sequence, whichever sources this instance consumes now (a
    // STAN dead letter replays after a move to JetStream): a new rejection meets this row instead of adding one.
    let Some(origin) = origin_of(&dead_letter.source, &dead_letter.channel) else {
        return Err(ReplayError::OtherChannel {
            id,
            kind: dead_letter.source,
        });
    };
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
            origin,
            sequence,
            span: MessageSpan::opened(span.clone()),
        })
        .await??;
    let result = replay_result(id, outcome, reasons);
    dead_letters::record_replay(
        pool,
        id,
        ReplayRecord {
            outcome: result.outcome,
            reason_class: result.reason_class,
            reasons: &result.reasons,
        },
    )
    .await?;
    span.in_scope(|| tracing::info!(outcome = result.outcome, "Replayed a dead letter."));
    Ok(result)
}

/// The origin a dead letter recorded; `None` for a source this build does not know.
fn origin_of(source: &str, channel: &str) -> Option<Origin> {
    let source = [SourceKind::Stan, SourceKind::JetStream]
        .into_iter()
        .find(|kind| kind.as_str() == source)?;
    Some(Origin::new(source, channel))
}

fn replay_result(id: i64, outcome: Outcome, mut reasons: Vec<RejectReason>) -> ReplayResult {
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
    ReplayResult {
        id,
        outcome,
        reason_class,
        reasons,
    }
}
