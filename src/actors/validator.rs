//! `OrderValidator` owns the compiled order schema.
//!
//! In: `ValidateBatch` from a subscriber (the deliveries that were ready together) and `ReplayMessage` from the
//! replay route. Out: one `PersistBatch` to the persister with each message checked, a typed valid order or the raw
//! message with every reason; the persister's answer is the answer. What fails validation never reaches the cache.
//! It runs on an arbiter of its own, so parsing never delays the other actors.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use tracing::Instrument;

use crate::actors::message_span::MessageSpan;
use crate::actors::persister::{
    all_failed, BatchEntry, OrderColumns, OrderPersister, Outcome, PersistBatch, PersistOrder,
    PersistRejected, PipelineError,
};
use crate::domain::{OrderSchema, RejectReason};
use crate::telemetry::metrics::Metrics;
use crate::transport::Origin;

/// One delivered message to check.
pub struct Delivered {
    pub payload: Bytes,
    pub sequence: u64,
    /// The delivery's root span.
    pub span: MessageSpan,
}

/// Check delivered messages from one source and see each stored, as an order or as a dead letter; answers one
/// outcome per message, in order.
#[derive(Message)]
#[rtype(result = "Vec<Result<Outcome, PipelineError>>")]
pub struct ValidateBatch {
    /// The source and channel or stream they came from, which a dead letter records.
    pub origin: Origin,
    pub messages: Vec<Delivered>,
}

/// Run a dead letter through the pipeline again, exactly as a delivery (an operator's replay, from
/// `POST /rejected/{id}/replay`); answers the outcome and, if it is rejected again, why.
#[derive(Message)]
#[rtype(result = "Result<Replayed, PipelineError>")]
pub struct ReplayMessage {
    pub payload: Bytes,
    /// The dead letter's own origin and sequence: a new rejection meets its row instead of adding one.
    pub origin: Origin,
    pub sequence: u64,
    pub span: MessageSpan,
}

/// What a replay gave. `reasons` are the validator's when it rejected the message again, else empty (a conflict's
/// reasons are found by the persister, which answers only the class).
#[derive(Debug)]
pub struct Replayed {
    pub outcome: Outcome,
    pub reasons: Vec<RejectReason>,
}

pub struct OrderValidator {
    schema: OrderSchema,
    persister: Addr<OrderPersister>,
    mailbox_capacity: usize,
    metrics: Arc<Metrics>,
}

impl OrderValidator {
    /// `mailbox_capacity` should cover what may be in flight, so senders rarely wait.
    pub fn new(
        schema: OrderSchema,
        persister: Addr<OrderPersister>,
        mailbox_capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        OrderValidator {
            schema,
            persister,
            mailbox_capacity,
            metrics,
        }
    }
}

impl Actor for OrderValidator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl OrderValidator {
    /// Validates one message into what the persister stores. With `keep_reasons` (a replay, whose caller shows them)
    /// it also returns a copy of a rejection's reasons; a delivery does not pay for that copy.
    fn check(
        &self,
        payload: Bytes,
        origin: Origin,
        sequence: u64,
        span: MessageSpan,
        keep_reasons: bool,
    ) -> (Vec<RejectReason>, BatchEntry) {
        let mut reasons = Vec::new();
        let entry = match self.schema.validate(&payload) {
            Ok(order) => {
                span.record_uid(order.uid.as_str());
                self.metrics.orders_validated.inc();
                for rule in &order.flags {
                    self.metrics.flagged(*rule).inc();
                }
                if !order.flags.is_empty() {
                    tracing::debug!(parent: &span.open(), flags = ?order.flags,
                        "Accepted an order with flagged inconsistencies.");
                }
                // The order borrows from the payload: its columns are copied out before the payload moves on.
                BatchEntry::Order(Box::new(PersistOrder {
                    columns: OrderColumns::from(order),
                    raw: payload,
                    origin,
                    sequence,
                    replay: keep_reasons,
                    span,
                }))
            }
            Err(rejection) => {
                if let Some(uid) = &rejection.order_uid {
                    span.record_uid(uid.as_str());
                }
                span.in_scope(|| {
                    tracing::warn!(reason = %rejection.summary(), "Rejected a message that is not a valid order.")
                });
                if keep_reasons {
                    reasons.clone_from(&rejection.reasons);
                }
                BatchEntry::Rejected(PersistRejected {
                    rejection,
                    raw: payload,
                    origin,
                    sequence,
                    replay: keep_reasons,
                    span,
                })
            }
        };
        (reasons, entry)
    }
}

impl Handler<ValidateBatch> for OrderValidator {
    type Result = ResponseFuture<Vec<Result<Outcome, PipelineError>>>;

    /// Validates each message, then hands them all to the persister in one message and answers with its outcomes.
    fn handle(&mut self, msg: ValidateBatch, _: &mut Self::Context) -> Self::Result {
        let count = msg.messages.len();
        let entries = msg
            .messages
            .into_iter()
            .map(|m| {
                self.check(m.payload, msg.origin.clone(), m.sequence, m.span, false)
                    .1
            })
            .collect();
        let request = self.persister.send(PersistBatch(entries));
        Box::pin(async move {
            request
                .await
                .unwrap_or_else(|error| all_failed(count, || PipelineError::Mailbox(error)))
        })
    }
}

impl Handler<ReplayMessage> for OrderValidator {
    type Result = ResponseFuture<Result<Replayed, PipelineError>>;

    /// The same path as a delivery; the answer adds the reasons of a new rejection.
    fn handle(&mut self, msg: ReplayMessage, _: &mut Self::Context) -> Self::Result {
        let (reasons, entry) = self.check(
            msg.payload,
            msg.origin,
            msg.sequence,
            msg.span.clone(),
            true,
        );
        let request = self.persister.send(PersistBatch(vec![entry]));
        Box::pin(
            async move {
                let outcome = request
                    .await?
                    .pop()
                    .unwrap_or(Err(PipelineError::Dropped))?;
                Ok(Replayed { outcome, reasons })
            }
            .instrument(msg.span.open()),
        )
    }
}
