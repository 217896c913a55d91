//! `OrderPersister` owns the database pool and the group commit.
//!
//! In: `PersistOrder` and `PersistRejected` from the validator. Out: `CacheOrders` to every cache (through the
//! `CacheGroup`) for orders that are new, and, only after their transaction committed, each message's `Outcome`
//! as the answer, on which the subscriber acks.
//!
//! Group commit: while one transaction is in flight, new messages accumulate; when it ends, everything accumulated
//! (up to the batch size) goes into the next transaction. One commit per batch instead of one per message, and no
//! timer: a lone message is committed at once.

mod policy;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use tracing::Span;

use crate::actors::cache::{CacheGroup, CachedOrder, DocumentArena};
use crate::domain::{RejectClass, RejectReason, Rejection, ValidOrder};
use crate::error_chain::error_chain;
use crate::metrics::Metrics;
use crate::storage::{self, DeadLetterRow, OrderRow, PersistError, Pool, Stored};
use crate::transport::Origin;
use policy::{pair_outcomes, plan_after_failure, FailurePlan, Kind, RETRY};

/// Store a valid order.
#[derive(Message)]
#[rtype(result = "Result<Outcome, PipelineError>")]
pub struct PersistOrder {
    pub order: ValidOrder,
    /// The message as delivered, kept as a dead letter if the order turns out to be a conflict.
    pub raw: Bytes,
    pub origin: Origin,
    pub sequence: u64,
    pub span: Span,
}

/// Store a message that is not an order, with its reasons (a dead letter).
#[derive(Message)]
#[rtype(result = "Result<Outcome, PipelineError>")]
pub struct PersistRejected {
    pub rejection: Rejection,
    pub raw: Bytes,
    pub origin: Origin,
    pub sequence: u64,
    pub span: Span,
}

/// What became of a message. Every variant is committed, so every variant is acked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new order, committed and cached.
    Persisted,
    /// The same order was stored before (a redelivery or a re-publish).
    Duplicate,
    /// Not an order (or a conflicting version of one): committed as a dead letter.
    Rejected(RejectClass),
}

/// A transient failure: the message is not acked and comes back after the ack wait.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("failed to store the message")]
    Persist(#[from] Arc<PersistError>),
    #[error("a pipeline actor is unavailable")]
    Mailbox(#[from] MailboxError),
    #[error("the persister stopped before answering")]
    Dropped,
}

/// A commit this slow is logged: it is half the default ack wait, so its messages may come back as redeliveries.
const SLOW_COMMIT: Duration = Duration::from_secs(1);

enum Item {
    Order(Box<PersistOrder>),
    Rejected(PersistRejected),
}

impl Item {
    fn span(&self) -> &Span {
        match self {
            Item::Order(o) => &o.span,
            Item::Rejected(r) => &r.span,
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Item::Order(_) => Kind::Order,
            Item::Rejected(r) => Kind::DeadLetter(r.rejection.class),
        }
    }
}

struct Pending {
    item: Item,
    reply: oneshot::Sender<Result<Outcome, PipelineError>>,
}

pub struct OrderPersister {
    pool: Pool,
    caches: CacheGroup,
    metrics: Arc<Metrics>,
    batch_size: usize,
    mailbox_capacity: usize,
    pending: VecDeque<Pending>,
    committing: bool,
    /// The cached copies of committed documents, packed into shared chunks. The validator's document is a `Vec`
    /// grown by doubling (about 2 KiB held for a 1.3 KiB order); caching it as-is held that slack for ever.
    documents: DocumentArena,
}

impl OrderPersister {
    pub fn new(
        pool: Pool,
        caches: CacheGroup,
        batch_size: usize,
        mailbox_capacity: usize,
        metrics: Arc<Metrics>,
    ) -> OrderPersister {
        let documents = caches.document_arena();
        OrderPersister {
            pool,
            caches,
            metrics,
            batch_size: batch_size.max(1),
            mailbox_capacity,
            pending: VecDeque::new(),
            committing: false,
            documents,
        }
    }

    fn enqueue(
        &mut self,
        item: Item,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<Outcome, PipelineError>> {
        let (reply, answer) = oneshot::channel();
        self.pending.push_back(Pending { item, reply });
        self.commit_next(ctx);
        Box::pin(async move { answer.await.unwrap_or(Err(PipelineError::Dropped)) })
    }

    /// Starts a transaction with what has accumulated, unless one is in flight.
    fn commit_next(&mut self, ctx: &mut Context<Self>) {
        if self.committing || self.pending.is_empty() {
            return;
        }
        let count = self.pending.len().min(self.batch_size);
        let batch: Vec<Pending> = self.pending.drain(..count).collect();
        self.committing = true;
        self.metrics.commit_batch_messages.observe(count as f64);
        let pool = self.pool.clone();
        let metrics = self.metrics.clone();
        let commit = async move {
            let items: Vec<&Item> = batch.iter().map(|p| &p.item).collect();
            let results = commit_isolating_bad_rows(&pool, &items, &metrics).await;
            (batch, results)
        };
        // One future at a time in this context: the batch, not each message.
        ctx.spawn(commit.into_actor(self).map(|(batch, results), act, ctx| {
            act.committing = false;
            act.answer(batch, results);
            act.commit_next(ctx);
        }));
    }

    /// Caches the stored orders, then answers every message of the batch.
    fn answer(&mut self, batch: Vec<Pending>, results: Vec<Result<Outcome, PipelineError>>) {
        // Duplicates too: a commit whose answer was lost (the connection dropped after COMMIT reached the server)
        // counts as failed, and the redelivery then finds the order stored; without this it would never be
        // cached. The cache keeps the first document of an order_uid, so a duplicate it holds already is a no-op.
        let new_orders: Vec<CachedOrder> = batch
            .iter()
            .zip(&results)
            .filter_map(|(pending, result)| match (&pending.item, result) {
                (Item::Order(o), Ok(Outcome::Persisted | Outcome::Duplicate)) => {
                    Some(CachedOrder {
                        uid: Arc::from(o.order.uid.as_str()),
                        document: self.documents.copy(&o.order.document),
                    })
                }
                _ => None,
            })
            .collect();
        if !new_orders.is_empty() {
            self.caches.cache_committed(new_orders.into());
        }
        for result in &results {
            match result {
                Ok(Outcome::Persisted) => self.metrics.orders_persisted.inc(),
                Ok(Outcome::Duplicate) => self.metrics.orders_duplicate.inc(),
                Ok(Outcome::Rejected(class)) => self.metrics.rejected(*class).inc(),
                Err(_) => {}
            }
        }
        for (pending, result) in batch.into_iter().zip(results) {
            // The subscriber may be gone (shutdown): then the message is simply redelivered.
            let _ = pending.reply.send(result);
        }
    }
}

impl Actor for OrderPersister {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<PersistOrder> for OrderPersister {
    type Result = ResponseFuture<Result<Outcome, PipelineError>>;

    /// Queues the order for the next transaction; answers after it committed.
    fn handle(&mut self, msg: PersistOrder, ctx: &mut Self::Context) -> Self::Result {
        self.enqueue(Item::Order(Box::new(msg)), ctx)
    }
}

impl Handler<PersistRejected> for OrderPersister {
    type Result = ResponseFuture<Result<Outcome, PipelineError>>;

    /// Queues the dead letter for the next transaction; answers after it committed.
    fn handle(&mut self, msg: PersistRejected, ctx: &mut Self::Context) -> Self::Result {
        self.enqueue(Item::Rejected(msg), ctx)
    }
}

/// Commits `items` in one transaction. If PostgreSQL refuses the data itself (a value it cannot store), retrying the
/// batch would fail forever and take the innocent messages with it: each message is then committed on its own,
/// and one that still fails is kept as a dead letter instead.
async fn commit_isolating_bad_rows(
    pool: &Pool,
    items: &[&Item],
    metrics: &Metrics,
) -> Vec<Result<Outcome, PipelineError>> {
    let error = match commit_with_retry(pool, items, metrics).await {
        Ok(outcomes) => return outcomes.into_iter().map(Ok).collect(),
        Err(error) => error,
    };
    match plan_after_failure(error.is_data_error(), items.len()) {
        FailurePlan::CommitEachAlone => {
            let mut results = Vec::with_capacity(items.len());
            for item in items {
                results.push(commit_alone(pool, item, metrics).await);
            }
            results
        }
        FailurePlan::DeadLetter => {
            let mut results = Vec::with_capacity(items.len());
            for item in items {
                results.push(store_refused(pool, item, &error).await);
            }
            results
        }
        FailurePlan::FailAll => {
            let error = Arc::new(error);
            items
                .iter()
                .map(|_| Err(PipelineError::Persist(error.clone())))
                .collect()
        }
    }
}

/// One message of a refused batch, in a transaction of its own.
async fn commit_alone(
    pool: &Pool,
    item: &Item,
    metrics: &Metrics,
) -> Result<Outcome, PipelineError> {
    match commit_with_retry(pool, &[item], metrics).await {
        Ok(mut outcomes) => outcomes.pop().ok_or(PipelineError::Dropped),
        Err(error) => match plan_after_failure(error.is_data_error(), 1) {
            FailurePlan::DeadLetter => store_refused(pool, item, &error).await,
            FailurePlan::CommitEachAlone | FailurePlan::FailAll => {
                Err(PipelineError::from(Arc::new(error)))
            }
        },
    }
}

/// Keeps an order PostgreSQL refused as a dead letter (class `schema`), with the database's reason.
async fn store_refused(
    pool: &Pool,
    item: &Item,
    error: &PersistError,
) -> Result<Outcome, PipelineError> {
    let Item::Order(order) = item else {
        return Err(PipelineError::Persist(Arc::new(PersistError::Vanished(
            "a dead letter the database refused".into(),
        ))));
    };
    let reasons = [RejectReason {
        pointer: String::new(),
        message: format!("PostgreSQL refused the order: {}", error_chain(error)),
    }];
    let row = DeadLetterRow {
        source: order.origin.source.as_str(),
        channel: &order.origin.name,
        sequence: order.sequence,
        payload: &order.raw,
        class: RejectClass::Schema,
        reasons: &reasons,
        order_uid: Some(order.order.uid.as_str()),
    };
    order.span.in_scope(
        || tracing::warn!(reason = %reasons[0].shortened().message, "Rejected an order the database refused."),
    );
    storage::store_batch(pool, &[], &[row])
        .await
        .map(|_| Outcome::Rejected(RejectClass::Schema))
        .map_err(|e| PipelineError::from(Arc::new(e)))
}

/// One transaction, retried with backoff on failure, a bounded number of times.
async fn commit_with_retry(
    pool: &Pool,
    items: &[&Item],
    metrics: &Metrics,
) -> Result<Vec<Outcome>, PersistError> {
    let orders: Vec<OrderRow> = items
        .iter()
        .filter_map(|item| match item {
            Item::Order(o) => Some(order_row(o)),
            Item::Rejected(_) => None,
        })
        .collect();
    let dead_letters: Vec<DeadLetterRow> = items
        .iter()
        .filter_map(|item| match item {
            Item::Rejected(r) => Some(DeadLetterRow {
                source: r.origin.source.as_str(),
                channel: &r.origin.name,
                sequence: r.sequence,
                payload: &r.raw,
                class: r.rejection.class,
                reasons: &r.rejection.reasons,
                order_uid: r.rejection.order_uid.as_deref(),
            }),
            Item::Order(_) => None,
        })
        .collect();
    let mut attempt = 1;
    let stored = loop {
        let started = Instant::now();
        let error = match storage::store_batch(pool, &orders, &dead_letters).await {
            Ok(stored) => {
                let took = started.elapsed();
                metrics.commit_duration.observe(took.as_secs_f64());
                if took >= SLOW_COMMIT {
                    tracing::warn!(seconds = took.as_secs_f64(), messages = items.len(),
                        "A commit was slow; messages unacknowledged longer than the ack wait are redelivered.");
                }
                break stored;
            }
            Err(error) => error,
        };
        match RETRY.after_failure(attempt, error.is_data_error()) {
            Some(delay) => {
                metrics.commit_retries.inc();
                tracing::warn!(error = %error_chain(&error), attempt, messages = items.len(),
                    "Failed to commit a batch; retrying.");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            None => {
                metrics.commit_failures.inc();
                tracing::error!(error = %error_chain(&error), attempt, messages = items.len(),
                    "Failed to commit a batch; its messages stay unacknowledged.");
                return Err(error);
            }
        }
    };
    outcomes(items, &stored)
}

fn order_row(o: &PersistOrder) -> OrderRow<'_> {
    let order = &o.order.order;
    OrderRow {
        uid: o.order.uid.as_str(),
        document: &o.order.document,
        track_number: &order.track_number,
        customer_id: &order.customer_id,
        date_created: DateTime::parse_from_rfc3339(&order.date_created)
            .ok()
            .map(|d| d.with_timezone(&Utc)),
        source: o.origin.source.as_str(),
        channel: &o.origin.name,
        sequence: o.sequence,
        raw: &o.raw,
    }
}

/// Each item's outcome (see `policy::pair_outcomes`); conflicts are logged in their message's span.
fn outcomes(items: &[&Item], stored: &[Stored]) -> Result<Vec<Outcome>, PersistError> {
    let kinds: Vec<Kind> = items.iter().map(|item| item.kind()).collect();
    let outcomes = pair_outcomes(&kinds, stored).map_err(|i| match items[i] {
        Item::Order(o) => PersistError::Vanished(o.order.uid.to_string()),
        Item::Rejected(_) => PersistError::Vanished("a dead letter".into()),
    })?;
    let conflicts = items
        .iter()
        .filter(|item| matches!(item, Item::Order(_)))
        .zip(stored);
    for (item, result) in conflicts {
        if let Stored::Conflict(rejection) = result {
            item.span().in_scope(|| {
                tracing::warn!(reason = %rejection.summary(),
                    "Rejected an order whose order_uid is stored with other content.")
            });
        }
    }
    Ok(outcomes)
}
