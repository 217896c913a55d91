//! `OrderValidator` owns the compiled order schema.
//!
//! In: `ValidateOrder` from the subscriber. Out: `PersistOrder` (a typed, valid order) or `PersistRejected` (the raw
//! message and every reason) to the persister; the persister's answer is the answer to `ValidateOrder`. What fails
//! validation never reaches the cache. It runs on an arbiter of its own, so parsing never delays the other actors.

use actix::prelude::*;
use bytes::Bytes;
use tracing::{Instrument, Span};

use crate::actors::persister::{
    OrderPersister, Outcome, PersistOrder, PersistRejected, PipelineError,
};
use crate::domain::OrderSchema;

/// Check one delivered message and see it stored, as an order or as a dead letter.
#[derive(Message)]
#[rtype(result = "Result<Outcome, PipelineError>")]
pub struct ValidateOrder {
    pub payload: Bytes,
    pub sequence: u64,
    /// The delivery's root span.
    pub span: Span,
}

pub struct OrderValidator {
    schema: OrderSchema,
    persister: Addr<OrderPersister>,
    mailbox_capacity: usize,
}

impl OrderValidator {
    /// `mailbox_capacity` should cover what may be in flight, so senders rarely wait.
    pub fn new(
        schema: OrderSchema,
        persister: Addr<OrderPersister>,
        mailbox_capacity: usize,
    ) -> Self {
        OrderValidator {
            schema,
            persister,
            mailbox_capacity,
        }
    }
}

impl Actor for OrderValidator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<ValidateOrder> for OrderValidator {
    type Result = ResponseFuture<Result<Outcome, PipelineError>>;

    /// Validates, then hands the message to the persister and answers with its outcome.
    fn handle(&mut self, msg: ValidateOrder, _: &mut Self::Context) -> Self::Result {
        let ValidateOrder {
            payload,
            sequence,
            span,
        } = msg;
        let answer: Self::Result = span.in_scope(|| match self.schema.validate(&payload) {
            Ok(order) => {
                Span::current().record("order_uid", order.uid.as_str());
                if !order.flags.is_empty() {
                    tracing::debug!(flags = ?order.flags, "Accepted an order with flagged inconsistencies.");
                }
                let request = self.persister.send(PersistOrder {
                    order,
                    raw: payload,
                    sequence,
                    span: span.clone(),
                });
                let answer: Self::Result = Box::pin(async move { request.await? });
                answer
            }
            Err(rejection) => {
                if let Some(uid) = &rejection.order_uid {
                    Span::current().record("order_uid", uid.as_str());
                }
                tracing::warn!(reason = %rejection, "Rejected a message that is not a valid order.");
                let request = self.persister.send(PersistRejected {
                    rejection,
                    raw: payload,
                    sequence,
                    span: span.clone(),
                });
                Box::pin(async move { request.await? })
            }
        });
        Box::pin(answer.instrument(span))
    }
}
