//! `OrderPersister` owns the database pool and the group commit.
//!
//! In: `PersistBatch` from the validator: the checked messages of one run of deliveries (or one replayed dead
//! letter). Out: `CacheOrders` to every cache (through the `CacheGroup`) for orders that are new, and, once every
//! message of the run is settled, each one's `Outcome` (only after its transaction committed) as the answer, on
//! which the subscriber acks. A run is answered as a whole, so a delivery costs no message or channel of its own.
//!
//! Group commit: while one transaction is in flight, new messages accumulate; when it ends, everything accumulated
//! (up to the batch size) goes into the next transaction. One commit per batch instead of one per message, and no
//! timer: a lone message is committed at once. A batch is bounded by count (`BATCH_SIZE`) and by payload bytes
//! (`BATCH_MAX_BYTES`), and each transaction by a deadline.
//!
//! Poison isolation: a batch PostgreSQL refuses the same way twice is bisected, so its good halves commit and the
//! message to blame is found; that message is tried alone `STORE_MAX_ATTEMPTS` times, then kept as a dead letter
//! (class `storage`). If even the dead letter is refused, the message stays unacked and is reported, and its
//! redeliveries are answered at once for a while, so that it does not hold up the messages behind it. Failures that
//! say nothing about the rows (database down, lock waits) are retried and left unacked, never bisected.

mod policy;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::actors::message_span::MessageSpan;
use crate::actors::stall::PipelineHealth;
use crate::cache::{CacheGroup, CachedOrder, DocumentArena};
use crate::domain::{OrderUid, RejectClass, RejectReason, Rejection, ValidOrder};
use crate::storage::{self, DeadLetterRow, OrderRow, PersistError, Pool, Stored};
use crate::telemetry::error_chain::error_chain;
use crate::telemetry::metrics::Metrics;
use crate::transport::Origin;
use policy::{
    batch_len, pair_outcomes, plan_after_failure, Failure, FailurePlan, Kind, RetryPolicy, RETRY,
};

/// A valid order to store: what the database and the caches keep of it.
pub struct PersistOrder {
    pub columns: OrderColumns,
    /// The message as delivered, kept as a dead letter if the order turns out to be a conflict.
    pub raw: Bytes,
    pub origin: Origin,
    pub sequence: u64,
    /// A dead letter replayed by an operator, not a delivery: never taken for a copy of a delivery.
    pub replay: bool,
    pub span: MessageSpan,
}

/// What an order's row takes from the order itself: its uid, its document and the key columns. The typed order
/// borrows its strings from the message, so these few are copied out of it; the rest of it is dropped here, on the
/// thread that built it.
pub struct OrderColumns {
    pub uid: OrderUid,
    /// The canonical document, stored and served as-is.
    pub document: Bytes,
    pub track_number: String,
    pub customer_id: String,
    /// `None` when PostgreSQL could not represent the instant (the document keeps the text).
    pub date_created: Option<DateTime<Utc>>,
}

impl From<ValidOrder<'_>> for OrderColumns {
    fn from(order: ValidOrder<'_>) -> Self {
        let ValidOrder {
            uid,
            order,
            document,
            ..
        } = order;
        OrderColumns {
            uid,
            document,
            track_number: order.track_number.into_owned(),
            customer_id: order.customer_id.into_owned(),
            date_created: DateTime::parse_from_rfc3339(&order.date_created)
                .ok()
                .map(|d| d.with_timezone(&Utc)),
        }
    }
}

/// A message that is not an order, to store with its reasons (a dead letter).
pub struct PersistRejected {
    pub rejection: Rejection,
    pub raw: Bytes,
    pub origin: Origin,
    pub sequence: u64,
    /// A dead letter replayed by an operator, not a delivery: never taken for a copy of a delivery.
    pub replay: bool,
    pub span: MessageSpan,
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
    #[error("message {sequence} cannot be stored, not even as a dead letter: {error}")]
    Unstorable { sequence: u64, error: String },
    #[error("the persister's queue is full")]
    Overloaded,
}

/// The answer for `count` messages that all failed the same way (`PipelineError` is not `Clone`: it may hold an
/// error shared with others).
pub fn all_failed(
    count: usize,
    error: impl Fn() -> PipelineError,
) -> Vec<Result<Outcome, PipelineError>> {
    (0..count).map(|_| Err(error())).collect()
}

/// How the persister batches and how long it tries.
#[derive(Debug, Clone, Copy)]
pub struct PersisterSettings {
    pub batch_size: usize,
    pub batch_max_bytes: usize,
    /// The deadline of one transaction.
    pub commit_deadline: Duration,
    /// Attempts of a message alone before it becomes a dead letter of class `storage`.
    pub store_max_attempts: u32,
    pub mailbox_capacity: usize,
}

/// A commit this slow is logged: it is half the default ack wait, so its messages may come back as redeliveries.
const SLOW_COMMIT: Duration = Duration::from_secs(1);
/// How long redeliveries of a message that cannot be stored are answered at once before it is tried again.
const UNSTORABLE_RETRY: Duration = Duration::from_secs(60);

/// One entry of a `PersistBatch`: what the validator made of a delivery (an order to store, or a dead letter).
pub enum BatchEntry {
    Order(Box<PersistOrder>),
    Rejected(PersistRejected),
}

/// Store these messages; answers one result per message, in order, once all of them are settled.
#[derive(Message)]
#[rtype(result = "Vec<Result<Outcome, PipelineError>>")]
pub struct PersistBatch(pub Vec<BatchEntry>);

/// Where a message's result goes: its place in the `PersistBatch` it came with.
#[derive(Debug, Clone, Copy)]
struct ReplyTo {
    batch: u64,
    index: usize,
}

/// The results of one `PersistBatch` so far; sent when the last one is in.
struct BatchReply {
    results: Vec<Option<Result<Outcome, PipelineError>>>,
    missing: usize,
    answer: oneshot::Sender<Vec<Result<Outcome, PipelineError>>>,
}

impl BatchEntry {
    fn span(&self) -> &MessageSpan {
        match self {
            BatchEntry::Order(o) => &o.span,
            BatchEntry::Rejected(r) => &r.span,
        }
    }

    fn is_replay(&self) -> bool {
        match self {
            BatchEntry::Order(o) => o.replay,
            BatchEntry::Rejected(r) => r.replay,
        }
    }

    /// The message's place in its source: what a copy delivered again shares with it.
    fn key(&self) -> (Origin, u64) {
        match self {
            BatchEntry::Order(o) => (o.origin.clone(), o.sequence),
            BatchEntry::Rejected(r) => (r.origin.clone(), r.sequence),
        }
    }

    fn sequence(&self) -> u64 {
        match self {
            BatchEntry::Order(o) => o.sequence,
            BatchEntry::Rejected(r) => r.sequence,
        }
    }

    /// What the message puts into a transaction: the payload, the document, the reasons.
    fn bytes(&self) -> usize {
        match self {
            BatchEntry::Order(o) => o.raw.len() + o.columns.document.len(),
            BatchEntry::Rejected(r) => {
                r.raw.len()
                    + r.rejection
                        .reasons
                        .iter()
                        .map(|reason| reason.pointer.len() + reason.message.len())
                        .sum::<usize>()
            }
        }
    }

    fn kind(&self) -> Kind {
        match self {
            BatchEntry::Order(_) => Kind::Order,
            BatchEntry::Rejected(r) => Kind::DeadLetter(r.rejection.class),
        }
    }
}

struct Pending {
    entry: BatchEntry,
    reply: ReplyTo,
}

/// What one transaction needs, shared by the batch's future.
struct Committer {
    pool: Pool,
    metrics: Arc<Metrics>,
    health: Arc<PipelineHealth>,
    deadline: Duration,
    store_max_attempts: u32,
}

pub struct OrderPersister {
    committer: Arc<Committer>,
    caches: CacheGroup,
    settings: PersisterSettings,
    pending: VecDeque<Pending>,
    /// The sequences in `pending`: a copy delivered again (by a newer connection) replaces the queued one.
    pending_sequences: HashSet<(Origin, u64)>,
    /// The batches not fully answered yet, by number.
    replies: HashMap<u64, BatchReply>,
    next_batch: u64,
    committing: bool,
    /// Messages that could not be stored even as dead letters, and since when.
    unstorable: HashMap<(Origin, u64), Instant>,
    /// The cached copies of committed documents, packed into shared chunks. The validator's document is a `Vec`
    /// grown by doubling (about 2 KiB held for a 1.3 KiB order); caching it as-is held that slack for ever.
    documents: DocumentArena,
}

impl OrderPersister {
    pub fn new(
        pool: Pool,
        caches: CacheGroup,
        settings: PersisterSettings,
        metrics: Arc<Metrics>,
        health: Arc<PipelineHealth>,
    ) -> OrderPersister {
        let documents = caches.document_arena();
        OrderPersister {
            committer: Arc::new(Committer {
                pool,
                metrics,
                health,
                deadline: settings.commit_deadline,
                store_max_attempts: settings.store_max_attempts,
            }),
            caches,
            settings: PersisterSettings {
                batch_size: settings.batch_size.max(1),
                ..settings
            },
            pending: VecDeque::new(),
            pending_sequences: HashSet::new(),
            replies: HashMap::new(),
            next_batch: 0,
            committing: false,
            unstorable: HashMap::new(),
            documents,
        }
    }

    /// Queues a batch's messages for the next transactions; the future answers when all of them are settled.
    fn enqueue(
        &mut self,
        entries: Vec<BatchEntry>,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Vec<Result<Outcome, PipelineError>>> {
        let count = entries.len();
        let (answer, answered) = oneshot::channel();
        let batch = self.next_batch;
        self.next_batch += 1;
        self.replies.insert(
            batch,
            BatchReply {
                results: (0..count).map(|_| None).collect(),
                missing: count,
                answer,
            },
        );
        for (index, entry) in entries.into_iter().enumerate() {
            let reply = ReplyTo { batch, index };
            // A replay shares its dead letter's sequence with the original delivery; it is never a copy of one.
            if !entry.is_replay() {
                if let Err(error) = self.admit(entry.key()) {
                    self.settle(reply, Err(error));
                    continue;
                }
            }
            self.pending.push_back(Pending { entry, reply });
        }
        if count == 0 {
            self.send_reply(batch);
        }
        self.commit_next(ctx);
        Box::pin(async move {
            answered
                .await
                .unwrap_or_else(|_| all_failed(count, || PipelineError::Dropped))
        })
    }

    /// Records one message's result; the batch is answered with its last.
    fn settle(&mut self, reply: ReplyTo, result: Result<Outcome, PipelineError>) {
        let Some(batch) = self.replies.get_mut(&reply.batch) else {
            return;
        };
        if let Some(slot @ None) = batch.results.get_mut(reply.index) {
            *slot = Some(result);
            batch.missing -= 1;
        }
        if batch.missing == 0 {
            self.send_reply(reply.batch);
        }
    }

    /// Answers a batch whose every result is in.
    fn send_reply(&mut self, batch: u64) {
        if let Some(reply) = self.replies.remove(&batch) {
            let results = reply
                .results
                .into_iter()
                .map(|result| result.unwrap_or(Err(PipelineError::Dropped)))
                .collect();
            // The subscriber may be gone (shutdown): then the messages are simply redelivered.
            let _ = reply.answer.send(results);
        }
    }

    /// Whether a delivery may join the queue. A message that cannot be stored is answered at once for a while; a copy
    /// from an older connection still waiting is replaced by the newer one, so reconnects cannot pile up copies (the
    /// old copy's answer would go to a subscription that is gone); a full queue leaves the message unacked.
    fn admit(&mut self, key: (Origin, u64)) -> Result<(), PipelineError> {
        if let Some(since) = self.unstorable.get(&key) {
            if since.elapsed() < UNSTORABLE_RETRY {
                return Err(PipelineError::Unstorable {
                    sequence: key.1,
                    error: "refused before; tried again later".into(),
                });
            }
            self.unstorable.remove(&key);
        }
        if !self.pending_sequences.insert(key.clone()) {
            let (replaced, kept): (VecDeque<Pending>, VecDeque<Pending>) =
                std::mem::take(&mut self.pending)
                    .into_iter()
                    .partition(|p| !p.entry.is_replay() && p.entry.key() == key);
            self.pending = kept;
            for old in replaced {
                self.settle(old.reply, Err(PipelineError::Dropped));
            }
        } else if self.pending.len() >= self.settings.mailbox_capacity.saturating_mul(2).max(1) {
            self.pending_sequences.remove(&key);
            return Err(PipelineError::Overloaded);
        }
        Ok(())
    }

    /// Starts a transaction with what has accumulated, unless one is in flight.
    fn commit_next(&mut self, ctx: &mut Context<Self>) {
        if self.committing || self.pending.is_empty() {
            return;
        }
        let count = batch_len(
            self.pending.iter().map(|p| p.entry.bytes()),
            self.settings.batch_size,
            self.settings.batch_max_bytes,
        );
        let batch: Vec<Pending> = self.pending.drain(..count).collect();
        for pending in batch.iter().filter(|p| !p.entry.is_replay()) {
            self.pending_sequences.remove(&pending.entry.key());
        }
        self.committing = true;
        let metrics = &self.committer.metrics;
        metrics.commit_batch_messages.observe(count as f64);
        let bytes: usize = batch.iter().map(|p| p.entry.bytes()).sum();
        metrics.commit_batch_bytes.observe(bytes as f64);
        let committer = self.committer.clone();
        let commit = async move {
            let entries: Vec<&BatchEntry> = batch.iter().map(|p| &p.entry).collect();
            let results = commit_isolating_bad_rows(&committer, &entries, None).await;
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
            .filter_map(|(pending, result)| match (&pending.entry, result) {
                (BatchEntry::Order(o), Ok(outcome @ (Outcome::Persisted | Outcome::Duplicate))) => {
                    Some(CachedOrder {
                        uid: Arc::from(o.columns.uid.as_str()),
                        document: cache_copy(&mut self.documents, &o.columns.document, *outcome),
                    })
                }
                _ => None,
            })
            .collect();
        if !new_orders.is_empty() {
            self.caches.cache_committed(new_orders.into());
        }
        let (metrics, health) = (&self.committer.metrics, &self.committer.health);
        for (pending, result) in batch.iter().zip(&results) {
            let (key, sequence) = (pending.entry.key(), pending.entry.sequence());
            match result {
                Ok(Outcome::Persisted) => metrics.orders_persisted.inc(),
                Ok(Outcome::Duplicate) => metrics.orders_duplicate.inc(),
                Ok(Outcome::Rejected(class)) => metrics.rejected(*class).inc(),
                Err(PipelineError::Unstorable { error, .. }) => {
                    self.unstorable.insert(key.clone(), Instant::now());
                    health.unstorable(sequence, error.clone());
                }
                Err(_) => {}
            }
            if result.is_ok() && self.unstorable.remove(&key).is_some() {
                health.stored(sequence);
            }
        }
        metrics
            .messages_unstorable
            .set(self.unstorable.len() as i64);
        for (pending, result) in batch.into_iter().zip(results) {
            self.settle(pending.reply, result);
        }
    }
}

impl Actor for OrderPersister {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.settings.mailbox_capacity);
    }
}

impl Handler<PersistBatch> for OrderPersister {
    type Result = ResponseFuture<Vec<Result<Outcome, PipelineError>>>;

    /// Queues the messages for the next transactions; answers once every one of them is committed or failed.
    fn handle(
        &mut self,
        PersistBatch(entries): PersistBatch,
        ctx: &mut Self::Context,
    ) -> Self::Result {
        self.enqueue(entries, ctx)
    }
}

/// The copy of a stored document the caches keep. A new order's goes into the shared arena chunk; a duplicate's is
/// most likely held by the caches already and dropped by them, so it gets an allocation of its own, freed with it,
/// instead of a piece of a chunk its neighbours would pin.
fn cache_copy(arena: &mut DocumentArena, document: &[u8], outcome: Outcome) -> Bytes {
    match outcome {
        Outcome::Persisted => arena.copy(document),
        _ => Bytes::copy_from_slice(document),
    }
}

/// Commits `entries`, isolating what PostgreSQL refuses: a batch refused the same way twice is bisected (`known` is
/// the refusal its parent met, so a half refused the same way splits at once), a lone message is tried alone and
/// kept as a dead letter if it is still refused.
fn commit_isolating_bad_rows<'a>(
    committer: &'a Committer,
    entries: &'a [&'a BatchEntry],
    known: Option<Failure>,
) -> BoxFuture<'a, Vec<Result<Outcome, PipelineError>>> {
    Box::pin(async move {
        if let [entry] = entries {
            return vec![commit_alone(committer, entry).await];
        }
        let (error, failure) = match commit_with_retry(committer, entries, RETRY, known).await {
            Ok(outcomes) => return outcomes.into_iter().map(Ok).collect(),
            Err(failed) => failed,
        };
        match plan_after_failure(&failure, entries.len()) {
            FailurePlan::Bisect => {
                tracing::warn!(error = %error_chain(&error), messages = entries.len(),
                    "PostgreSQL refused a batch twice; committing its halves apart to find the message to blame.");
                let (left, right) = entries.split_at(entries.len() / 2);
                let mut results =
                    commit_isolating_bad_rows(committer, left, Some(failure.clone())).await;
                results.extend(commit_isolating_bad_rows(committer, right, Some(failure)).await);
                results
            }
            FailurePlan::DeadLetter(_) | FailurePlan::FailAll => {
                let error = Arc::new(error);
                entries
                    .iter()
                    .map(|_| Err(PipelineError::Persist(error.clone())))
                    .collect()
            }
        }
    })
}

/// One message in a transaction of its own, `STORE_MAX_ATTEMPTS` times; still refused, it becomes a dead letter.
async fn commit_alone(committer: &Committer, entry: &BatchEntry) -> Result<Outcome, PipelineError> {
    let alone = RetryPolicy::alone(committer.store_max_attempts);
    match commit_with_retry(committer, &[entry], alone, None).await {
        Ok(mut outcomes) => outcomes.pop().ok_or(PipelineError::Dropped),
        Err((error, failure)) => match plan_after_failure(&failure, 1) {
            FailurePlan::DeadLetter(class) => store_refused(committer, entry, class, &error).await,
            FailurePlan::Bisect | FailurePlan::FailAll => Err(PipelineError::from(Arc::new(error))),
        },
    }
}

/// Keeps a message PostgreSQL refused as a dead letter of `class`, with the database's reason. If that is refused
/// too, the message is unstorable: reported, and left unacked.
async fn store_refused(
    committer: &Committer,
    entry: &BatchEntry,
    class: RejectClass,
    error: &PersistError,
) -> Result<Outcome, PipelineError> {
    let reasons = [RejectReason {
        pointer: String::new(),
        message: format!("PostgreSQL refused the message: {}", error_chain(error)),
    }];
    let (payload, order_uid, origin) = match entry {
        BatchEntry::Order(o) => (&o.raw, Some(o.columns.uid.as_str()), &o.origin),
        BatchEntry::Rejected(r) => (&r.raw, r.rejection.order_uid.as_deref(), &r.origin),
    };
    let sequence = entry.sequence();
    let row = DeadLetterRow {
        source: origin.source.as_str(),
        channel: &origin.name,
        sequence,
        payload,
        class,
        reasons: &reasons,
        order_uid,
    };
    let stored = tokio::time::timeout(
        committer.deadline,
        storage::store_batch(&committer.pool, &[], &[row]),
    )
    .await
    .unwrap_or(Err(PersistError::Deadline(committer.deadline)));
    let span = entry.span().open();
    let _entered = span.enter();
    match stored {
        Ok(_) => {
            committer.health.committed();
            tracing::warn!(reason = %reasons[0].shortened().message, class = class.as_str(),
                "Kept a message the database refused as a dead letter.");
            Ok(Outcome::Rejected(class))
        }
        Err(dead_letter_error) => {
            let error = error_chain(&dead_letter_error);
            tracing::error!(seq = sequence, %error, first_error = %reasons[0].shortened().message,
                "Cannot store a message, not even as a dead letter; it stays unacknowledged.");
            Err(PipelineError::Unstorable { sequence, error })
        }
    }
}

/// One transaction, retried with backoff on failure, a bounded number of times (see `RetryPolicy`). Each attempt
/// has the commit deadline. The error comes back with what it means.
async fn commit_with_retry(
    committer: &Committer,
    entries: &[&BatchEntry],
    policy: RetryPolicy,
    known: Option<Failure>,
) -> Result<Vec<Outcome>, (PersistError, Failure)> {
    let Committer {
        pool,
        metrics,
        health,
        deadline,
        ..
    } = committer;
    let orders: Vec<OrderRow> = entries
        .iter()
        .filter_map(|entry| match entry {
            BatchEntry::Order(o) => Some(order_row(o)),
            BatchEntry::Rejected(_) => None,
        })
        .collect();
    let dead_letters: Vec<DeadLetterRow> = entries
        .iter()
        .filter_map(|entry| match entry {
            BatchEntry::Rejected(r) => Some(DeadLetterRow {
                source: r.origin.source.as_str(),
                channel: &r.origin.name,
                sequence: r.sequence,
                payload: &r.raw,
                class: r.rejection.class,
                reasons: &r.rejection.reasons,
                order_uid: r.rejection.order_uid.as_deref(),
            }),
            BatchEntry::Order(_) => None,
        })
        .collect();
    let mut attempt = 1;
    let mut previous = known;
    let stored = loop {
        let started = Instant::now();
        let attempted = tokio::time::timeout(
            *deadline,
            storage::store_batch(pool, &orders, &dead_letters),
        )
        .await
        .unwrap_or(Err(PersistError::Deadline(*deadline)));
        let error = match attempted {
            Ok(stored) => {
                let took = started.elapsed();
                metrics.commit_duration.observe(took.as_secs_f64());
                health.committed();
                if took >= SLOW_COMMIT {
                    tracing::warn!(seconds = took.as_secs_f64(), messages = entries.len(),
                        "A commit was slow; messages unacknowledged longer than the ack wait are redelivered.");
                }
                break stored;
            }
            Err(error) => error,
        };
        let failure = failure_of(&error);
        if !failure.is_persistent() {
            health.failed(failure.cause());
        }
        match policy.after_failure(attempt, &failure, previous.as_ref()) {
            Some(delay) => {
                metrics.commit_retries.inc();
                tracing::warn!(error = %error_chain(&error), attempt, messages = entries.len(),
                    "Failed to commit a batch; retrying.");
                tokio::time::sleep(delay).await;
                attempt += 1;
                previous = Some(failure);
            }
            None => {
                metrics.commit_failures.inc();
                tracing::error!(error = %error_chain(&error), attempt, messages = entries.len(),
                    "Failed to commit a batch; giving up on this attempt.");
                return Err((error, failure));
            }
        }
    };
    outcomes(entries, &stored).map_err(|error| (error, Failure::Unreachable))
}

/// What a storage error means for the decisions; a passed deadline says as little about the rows as no answer.
fn failure_of(error: &PersistError) -> Failure {
    Failure::classify(error.code().map(|code| code.code()))
}

fn order_row(o: &PersistOrder) -> OrderRow<'_> {
    let columns = &o.columns;
    OrderRow {
        uid: columns.uid.as_str(),
        document: &columns.document,
        track_number: &columns.track_number,
        customer_id: &columns.customer_id,
        date_created: columns.date_created,
        source: o.origin.source.as_str(),
        channel: &o.origin.name,
        sequence: o.sequence,
        raw: &o.raw,
    }
}

/// Each entry's outcome (see `policy::pair_outcomes`); conflicts are logged in their message's span.
fn outcomes(entries: &[&BatchEntry], stored: &[Stored]) -> Result<Vec<Outcome>, PersistError> {
    let kinds: Vec<Kind> = entries.iter().map(|entry| entry.kind()).collect();
    let outcomes = pair_outcomes(&kinds, stored).map_err(|i| match entries[i] {
        BatchEntry::Order(o) => PersistError::Vanished(o.columns.uid.to_string()),
        BatchEntry::Rejected(_) => PersistError::Vanished("a dead letter".into()),
    })?;
    let conflicts = entries
        .iter()
        .filter(|entry| matches!(entry, BatchEntry::Order(_)))
        .zip(stored);
    for (entry, result) in conflicts {
        if let Stored::Conflict(rejection) = result {
            entry.span().in_scope(|| {
                tracing::warn!(reason = %rejection.summary(),
                    "Rejected an order whose order_uid is stored with other content.")
            });
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_duplicates_do_not_grow_the_arena() {
        // Arrange
        let mut arena = DocumentArena::new();
        let document = vec![b' '; 900 * 1024];
        let first = cache_copy(&mut arena, &document, Outcome::Persisted);
        let after_first = arena.allocated_bytes();

        // Act
        let duplicates: Vec<Bytes> = (0..100)
            .map(|_| cache_copy(&mut arena, &document, Outcome::Duplicate))
            .collect();

        // Assert
        assert_eq!(arena.allocated_bytes(), after_first);
        assert_eq!(first, document);
        assert!(duplicates.iter().all(|copy| copy == &document));
    }

    #[test]
    fn new_orders_share_arena_chunks() {
        let mut arena = DocumentArena::new();
        for _ in 0..100 {
            cache_copy(&mut arena, &[b'x'; 1024], Outcome::Persisted);
        }
        assert_eq!(arena.allocated_bytes(), 1 << 20);
    }
}
