//! NatsSubscriber owns the STAN subscription and every ack decision. Each delivery goes to the validator as
//! `ValidateOrder`; the message is acked only when the answer says it was committed (stored, duplicate or dead
//! letter). On an error it is not acked, and STAN redelivers it after the ack wait.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use ratsio::{StanClient, StanMessage};
use tracing::Instrument;

use crate::actors::persister::Outcome;
use crate::actors::validator::{OrderValidator, ValidateOrder};
use crate::broker;

/// Close the STAN connection (without unsubscribing the durable) and stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSubscriber;

pub struct NatsSubscriber {
    client: Arc<StanClient>,
    validator: Addr<OrderValidator>,
}

impl NatsSubscriber {
    /// Starts the actor on a subscription made by `broker::subscribe`.
    pub fn start_with<S>(
        client: Arc<StanClient>,
        messages: S,
        validator: Addr<OrderValidator>,
    ) -> Addr<NatsSubscriber>
    where
        S: futures::Stream<Item = StanMessage> + Unpin + 'static,
    {
        NatsSubscriber::create(|ctx| {
            ctx.add_stream(messages);
            NatsSubscriber { client, validator }
        })
    }
}

impl Actor for NatsSubscriber {
    type Context = Context<Self>;
}

impl StreamHandler<StanMessage> for NatsSubscriber {
    fn handle(&mut self, message: StanMessage, ctx: &mut Self::Context) {
        let span = tracing::info_span!(parent: None, "Process order", seq = message.sequence, redelivered = message.redelivered);
        let request = self.validator.send(ValidateOrder {
            payload: Bytes::from(message.payload.clone()),
            seq: message.sequence,
        });
        let client = self.client.clone();
        ctx.spawn(
            async move {
                match request.await {
                    Ok(Ok(outcome)) => {
                        if let Err(error) = broker::ack(&client, message).await {
                            tracing::warn!(%error, "Failed to ack; the message will be redelivered and found stored.");
                        } else if outcome == Outcome::Persisted {
                            tracing::debug!("Order persisted and acked.");
                        }
                    }
                    // Do not acknowledge on failure; the message will be redelivered.
                    Ok(Err(error)) => tracing::warn!(%error, "Message not stored; not acked."),
                    Err(error) => tracing::warn!(%error, "Pipeline unavailable; not acked."),
                }
            }
            .instrument(span)
            .into_actor(self),
        );
    }

    fn finished(&mut self, _: &mut Self::Context) {
        tracing::warn!("The STAN subscription ended.");
    }
}

impl Handler<StopSubscriber> for NatsSubscriber {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: StopSubscriber, _: &mut Self::Context) -> Self::Result {
        let client = self.client.clone();
        Box::pin(
            async move { broker::close(&client).await }
                .into_actor(self)
                .map(|_, _, ctx| ctx.stop()),
        )
    }
}
