//! `OrderValidator` owns the compiled order schema.
//!
//! In: `ValidateOrder` from the subscriber. Out: `PersistOrder` (a typed, valid order) or `PersistRejected` (the raw
//! message and every reason) to the persister; the persister's answer is the answer to `ValidateOrder`. What fails
//! validation never reaches the cache. It runs on an arbiter of its own, so parsing never delays the other actors.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use tracing::{Instrument, Span};

use crate::actors::persister::{
    OrderPersister, Outcome, PersistOrder, PersistRejected, PipelineError,
};
use crate::domain::{OrderSchema, RejectReason};
use crate::metrics::Metrics;
use crate::transport::Origin;

/// Check one delivered message and see it stored, as an order or as a dead letter.
#[derive(Message)]
#[rtype(result = "Result<Outcome, PipelineError>")]
pub struct ValidateOrder {
    pub payload: Bytes,
    /// The source and channel or stream it came from, which a dead letter records.
    pub origin: Origin,
    pub sequence: u64,
    /// The delivery's root span.
    pub span: Span,
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
    pub span: Span,
}

/// What a replay gave. `reasons` are the validator's when it rejected the message again, else empty (a conflict's
/// reasons are found by the persister, which answers only the class).
#[derive(Debug)]
pub struct Replayed {
    pub outcome: Outcome,
    pub reasons: Vec<RejectReason>,
}

/// What the pipeline answers for one message, once its outcome is committed.
type Answer = ResponseFuture<Result<Outcome, PipelineError>>;

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
    /// Validates, then hands the message to the persister; the future answers with its outcome. With
    /// `keep_reasons` (a replay, whose caller shows them) it also returns a copy of a rejection's reasons; a STAN
    /// delivery does not pay for that copy.
    fn dispatch(
        &self,
        payload: Bytes,
        origin: Origin,
        sequence: u64,
        span: Span,
        keep_reasons: bool,
    ) -> (Vec<RejectReason>, Answer) {
        let mut reasons = Vec::new();
        let answer: Answer = span.in_scope(|| match self.schema.validate(&payload) {
            Ok(order) => {
                Span::current().record("order_uid", order.uid.as_str());
                self.metrics.orders_validated.inc();
                for rule in &order.flags {
                    self.metrics.flagged(*rule).inc();
                }
                if !order.flags.is_empty() {
                    tracing::debug!(flags = ?order.flags, "Accepted an order with flagged inconsistencies.");
                }
                let request = self.persister.send(PersistOrder {
                    order,
                    raw: payload,
                    origin,
                    sequence,
                    replay: keep_reasons,
                    span: span.clone(),
                });
                let answer: Answer = Box::pin(async move { request.await? });
                answer
            }
            Err(rejection) => {
                if let Some(uid) = &rejection.order_uid {
                    Span::current().record("order_uid", uid.as_str());
                }
                tracing::warn!(reason = %rejection.summary(), "Rejected a message that is not a valid order.");
                if keep_reasons {
                    reasons.clone_from(&rejection.reasons);
                }
                let request = self.persister.send(PersistRejected {
                    rejection,
                    raw: payload,
                    origin,
                    sequence,
                    replay: keep_reasons,
                    span: span.clone(),
                });
                Box::pin(async move { request.await? })
            }
        });
        (reasons, Box::pin(answer.instrument(span)))
    }
}

impl Handler<ValidateOrder> for OrderValidator {
    type Result = ResponseFuture<Result<Outcome, PipelineError>>;

    /// Validates, then hands the message to the persister and answers with its outcome.
    fn handle(&mut self, msg: ValidateOrder, _: &mut Self::Context) -> Self::Result {
        self.dispatch(msg.payload, msg.origin, msg.sequence, msg.span, false)
            .1
    }
}

impl Handler<ReplayMessage> for OrderValidator {
    type Result = ResponseFuture<Result<Replayed, PipelineError>>;

    /// The same path as `ValidateOrder`; the answer adds the reasons of a new rejection.
    fn handle(&mut self, msg: ReplayMessage, _: &mut Self::Context) -> Self::Result {
        let (reasons, answer) =
            self.dispatch(msg.payload, msg.origin, msg.sequence, msg.span, true);
        Box::pin(async move {
            Ok(Replayed {
                outcome: answer.await?,
                reasons,
            })
        })
    }
}
