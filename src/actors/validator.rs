//! OrderValidator owns the compiled schema. It receives `ValidateOrder` from the subscriber and hands the message
//! on to the persister as an order or as a dead letter; what fails validation never reaches the cache.

use actix::prelude::*;
use bytes::Bytes;

use crate::actors::persister::{
    OrderPersister, Outcome, PersistOrder, PersistRejected, PipelineError,
};
use crate::domain::OrderSchema;

/// Check one delivered message and see it stored.
#[derive(Message)]
#[rtype(result = "Result<Outcome, PipelineError>")]
pub struct ValidateOrder {
    pub payload: Bytes,
    pub seq: u64,
}

pub struct OrderValidator {
    schema: OrderSchema,
    persister: Addr<OrderPersister>,
}

impl OrderValidator {
    pub fn new(schema: OrderSchema, persister: Addr<OrderPersister>) -> OrderValidator {
        OrderValidator { schema, persister }
    }
}

impl Actor for OrderValidator {
    type Context = Context<Self>;
}

impl Handler<ValidateOrder> for OrderValidator {
    type Result = ResponseFuture<Result<Outcome, PipelineError>>;

    fn handle(&mut self, msg: ValidateOrder, _: &mut Self::Context) -> Self::Result {
        match self.schema.validate(&msg.payload) {
            Ok(order) => {
                let request = self.persister.send(PersistOrder {
                    order,
                    raw: msg.payload,
                    seq: msg.seq,
                });
                Box::pin(async move { request.await? })
            }
            Err(rejection) => {
                let request = self.persister.send(PersistRejected {
                    rejection,
                    raw: msg.payload,
                    seq: msg.seq,
                });
                Box::pin(async move { request.await? })
            }
        }
    }
}
