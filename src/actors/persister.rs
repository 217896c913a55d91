//! OrderPersister owns the database pool. It receives `PersistOrder` and `PersistRejected` from the validator,
//! commits, tells the cache about new orders, and only then answers: the subscriber acks on that answer.

use actix::prelude::*;
use bytes::Bytes;

use crate::actors::cache::{CacheOrder, OrderCache};
use crate::db::{self, Pool, PoolError, Stored};
use crate::domain::{Rejection, ValidOrder};

/// What happened to a message; every variant is committed, so every variant is acked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Persisted,
    Duplicate,
    Rejected(&'static str),
}

/// A transient failure: the message is not acked and comes back after the ack wait.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("database error: {0}")]
    Database(#[from] PoolError),
    #[error("pipeline actor unavailable: {0}")]
    Mailbox(#[from] MailboxError),
}

/// Store a valid order.
#[derive(Message)]
#[rtype(result = "Result<Outcome, PipelineError>")]
pub struct PersistOrder {
    pub order: ValidOrder,
    pub raw: Bytes,
    pub seq: u64,
}

/// Store a dead letter.
#[derive(Message)]
#[rtype(result = "Result<Outcome, PipelineError>")]
pub struct PersistRejected {
    pub rejection: Rejection,
    pub raw: Bytes,
    pub seq: u64,
}

pub struct OrderPersister {
    pool: Pool,
    channel: String,
    cache: Addr<OrderCache>,
}

impl OrderPersister {
    pub fn new(pool: Pool, channel: String, cache: Addr<OrderCache>) -> OrderPersister {
        OrderPersister {
            pool,
            channel,
            cache,
        }
    }
}

impl Actor for OrderPersister {
    type Context = Context<Self>;
}

impl Handler<PersistOrder> for OrderPersister {
    type Result = ResponseFuture<Result<Outcome, PipelineError>>;

    /// Commits the order, then caches it, then answers.
    fn handle(&mut self, msg: PersistOrder, _: &mut Self::Context) -> Self::Result {
        let (pool, channel, cache) = (self.pool.clone(), self.channel.clone(), self.cache.clone());
        Box::pin(async move {
            let stored = db::insert_order(&pool, &msg.order, &channel, msg.seq, &msg.raw).await?;
            Ok(match stored {
                Stored::Inserted => {
                    cache.do_send(CacheOrder {
                        uid: msg.order.uid.as_str().into(),
                        document: msg.order.document,
                    });
                    Outcome::Persisted
                }
                Stored::Duplicate => Outcome::Duplicate,
                Stored::Conflict => {
                    tracing::warn!(order_uid = %msg.order.uid, seq = msg.seq, "Rejected an order_uid seen before with other content.");
                    Outcome::Rejected("conflict")
                }
            })
        })
    }
}

impl Handler<PersistRejected> for OrderPersister {
    type Result = ResponseFuture<Result<Outcome, PipelineError>>;

    /// Commits the dead letter with its reasons, then answers.
    fn handle(&mut self, msg: PersistRejected, _: &mut Self::Context) -> Self::Result {
        let (pool, channel) = (self.pool.clone(), self.channel.clone());
        Box::pin(async move {
            db::insert_rejected(&pool, &msg.rejection, &channel, msg.seq, &msg.raw).await?;
            tracing::warn!(error = %msg.rejection, seq = msg.seq, "Rejected a message.");
            Ok(Outcome::Rejected(msg.rejection.class.as_str()))
        })
    }
}
