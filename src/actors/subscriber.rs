//! `NatsSubscriber` owns one source's connection (a STAN durable queue subscription or a JetStream durable pull
//! consumer, see transport/) and every ack decision for it. One runs per source; they feed the same validator.
//!
//! In: deliveries from the broker; `StartSubscription` and `Drain` from startup. Out: one `ValidateBatch` to the
//! validator for each run of deliveries that were ready together (a lone delivery goes alone, at once). The answer
//! for each delivery decides its ack (STYLE.md §4):
//!
//! | answer                      | meaning                                    | ack?                       |
//! |-----------------------------|--------------------------------------------|----------------------------|
//! | `Ok(Outcome::Persisted)`    | committed                                  | yes, after the commit      |
//! | `Ok(Outcome::Duplicate)`    | stored before                              | yes                        |
//! | `Ok(Outcome::Rejected(_))`  | not an order, committed as a dead letter   | yes                        |
//! | `Err(PipelineError)`        | database or mailbox failure                | no: redelivered after ack wait |
//!
//! Connection care (see transport/stan.rs for the ratsio defects behind it): a lost connection, an ended
//! subscription or a failed probe drops the connection and connects afresh with backoff, through the whole server
//! list, resubscribing the durable; this repeats until it succeeds and never ends the process. For JetStream the
//! probe reads the consumer's state, which also gives its backlog; while a leader moves that read can fail, so
//! only `JETSTREAM_FAILED_PROBES` failures in a row drop the connection (async-nats reconnects by itself), as
//! `STAN_LATE_PINGS` late pings do for STAN. The
//! source's `Link` records the loss and, at the first message or answer after it, how long it lasted. A redelivery of a message still
//! in flight is skipped, so a slow database cannot multiply the work in flight.
//!
//! A lost STAN client id: when the probe finds that the broker no longer holds this connection as our client id's
//! registration (another process took the id over while this one stalled, or the broker forgot us), the instance
//! is not ready, says why, and connects afresh without the STAN close (which would remove the new holder). If the
//! broker refuses the id because a live process holds it, this instance gives up: `SubscriberStatus::failed`
//! answers, and the application exits with that reason.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::stream;
use prometheus::Histogram;
use tokio::sync::{mpsc, oneshot, watch};

use crate::actors::message_span::MessageSpan;
use crate::actors::persister::{all_failed, Outcome, PipelineError};
use crate::actors::validator::{Delivered, OrderValidator, ValidateBatch};
use crate::telemetry::error_chain::error_chain;
use crate::telemetry::metrics::Metrics;
use crate::transport::deadline::backoff;
use crate::transport::link::Link;
use crate::transport::{
    AckHandle, BrokerMessage, ConsumerLag, Origin, SourceConnection, SourceKind, Transport,
    TransportError,
};

/// Connect and subscribe; answers when the first subscription is up, or with why it is not.
#[derive(Message)]
#[rtype(result = "Result<(), TransportError>")]
pub struct StartSubscription;

/// Stop taking messages, let those in flight commit and be acked (for at most `deadline`), then close the
/// connection without unsubscribing the durable, and stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain {
    pub deadline: Duration,
}

/// Most deliveries taken from the subscription in one run: they travel down the pipeline in one message.
const DELIVERY_RUN: usize = 256;

/// Failed reads of a JetStream consumer's state in a row before the connection is dropped and made afresh.
const JETSTREAM_FAILED_PROBES: u32 = 3;
/// STAN pings in a row that time out before the connection is dropped: the ping shares ratsio's connection with
/// the deliveries, so under a heavy backlog one answer can come late. A ping that fails outright (a broken
/// connection, a replaced registration) drops it at once.
const STAN_LATE_PINGS: u32 = 2;

/// A delivery waiting for the pipeline's answer.
struct Awaiting {
    sequence: u64,
    ack: AckHandle,
    span: MessageSpan,
    /// When the delivery arrived, for the ack latency.
    received: Instant,
}

/// The pipeline's answers for a run of deliveries, one per delivery.
#[derive(Message)]
#[rtype(result = "()")]
struct Settle {
    generation: u64,
    deliveries: Vec<Awaiting>,
    results: Vec<Result<Outcome, PipelineError>>,
}

/// Acks went out, or failed: one result per sequence.
#[derive(Message)]
#[rtype(result = "()")]
struct Acked {
    generation: u64,
    results: Vec<(u64, Result<(), TransportError>)>,
}

/// What the subscription stream yields; the generation tells a current subscription from a replaced one.
enum Incoming {
    /// The deliveries that were ready together, at most `DELIVERY_RUN`.
    Deliveries(u64, Vec<BrokerMessage>),
    Ended(u64),
}

/// Shared with readiness, tests and the metrics (read when scraped; see metrics.rs).
#[derive(Debug, Default)]
pub struct SubscriberStatus {
    subscribed: AtomicBool,
    problem: Mutex<Option<String>>,
    /// Why the subscriber gave up for good, once it has.
    fatal: watch::Sender<Option<String>>,
    /// Deliveries taken from the broker (redeliveries included).
    pub delivered: AtomicU64,
    /// Deliveries the broker marked as redelivered.
    pub redelivered: AtomicU64,
    /// Messages between delivery and ack (or the decision not to ack).
    pub in_flight: AtomicU64,
    /// Acks sent.
    pub acked: AtomicU64,
    /// Acks that failed to send.
    pub ack_failures: AtomicU64,
    /// Messages left unacknowledged because the pipeline failed.
    pub not_acked: AtomicU64,
    /// Redeliveries skipped because the same message was still in flight.
    pub skipped_in_flight: AtomicU64,
    /// Connections replaced after a loss.
    pub reconnects: AtomicU64,
    /// The JetStream consumer's backlog at the last probe (STAN tells none).
    lag: Mutex<Option<ConsumerLag>>,
}

impl SubscriberStatus {
    /// `Ok` while subscribed, else why not.
    pub fn check(&self) -> Result<(), String> {
        if self.subscribed.load(Ordering::Acquire) {
            return Ok(());
        }
        let problem = self
            .problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Err(problem.unwrap_or_else(|| "not subscribed yet".into()))
    }

    fn set_up(&self) {
        *self.problem.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.subscribed.store(true, Ordering::Release);
    }

    fn set_down(&self, problem: String) {
        self.subscribed.store(false, Ordering::Release);
        *self.problem.lock().unwrap_or_else(PoisonError::into_inner) = Some(problem);
    }

    fn give_up(&self, problem: String) {
        self.set_down(problem.clone());
        self.fatal.send_replace(Some(problem));
    }

    /// Answers once the subscriber has given up for good, with why; the application then stops.
    pub async fn failed(&self) -> String {
        let mut fatal = self.fatal.subscribe();
        let problem = fatal
            .wait_for(Option::is_some)
            .await
            .map(|problem| problem.clone());
        match problem {
            Ok(Some(problem)) => problem,
            // The sender lives as long as `self`, so it cannot close while we wait.
            _ => std::future::pending().await,
        }
    }

    /// The consumer's backlog as last read, if the source tells.
    pub fn lag(&self) -> Option<ConsumerLag> {
        *self.lag.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_lag(&self, lag: Option<ConsumerLag>) {
        *self.lag.lock().unwrap_or_else(PoisonError::into_inner) = lag;
    }
}

pub struct NatsSubscriber {
    transport: Transport,
    origin: Origin,
    validator: Addr<OrderValidator>,
    status: Arc<SubscriberStatus>,
    ack_duration: Histogram,
    /// Deliveries per message, observed on each delivery when the source counts them.
    delivery_attempts: Histogram,
    connection: Option<Arc<SourceConnection>>,
    link: Arc<Link>,
    /// Probes failed in a row on the current connection.
    failed_probes: u32,
    /// Bumped on every new subscription; answers and deliveries of older ones are stale.
    generation: u64,
    stream: Option<SpawnHandle>,
    /// Sequence -> generation of every message between delivery and ack decision (or ack).
    in_flight: HashMap<u64, u64>,
    failed_connects: u32,
    /// The broker stopped holding our connection as our client id's registration; cleared by the next subscription.
    replaced: bool,
    probing: bool,
    draining: bool,
    drained: Vec<oneshot::Sender<()>>,
}

impl NatsSubscriber {
    pub fn new(
        transport: Transport,
        validator: Addr<OrderValidator>,
        status: Arc<SubscriberStatus>,
        link: Arc<Link>,
        metrics: &Metrics,
    ) -> Self {
        let origin = transport.origin();
        NatsSubscriber {
            delivery_attempts: metrics.delivery_attempts(origin.source),
            transport,
            origin,
            validator,
            status,
            ack_duration: metrics.ack_duration.clone(),
            connection: None,
            link,
            failed_probes: 0,
            generation: 0,
            stream: None,
            in_flight: HashMap::new(),
            failed_connects: 0,
            replaced: false,
            probing: false,
            draining: false,
            drained: Vec::new(),
        }
    }

    /// Takes over a fresh subscription.
    fn install(
        &mut self,
        connection: SourceConnection,
        deliveries: mpsc::UnboundedReceiver<BrokerMessage>,
        ctx: &mut Context<Self>,
    ) {
        self.generation += 1;
        let generation = self.generation;
        let deliveries = stream::unfold(deliveries, |mut receiver| async move {
            receiver.recv().await.map(|delivery| (delivery, receiver))
        });
        let incoming = futures::StreamExt::chain(
            futures::StreamExt::map(
                futures::StreamExt::ready_chunks(deliveries, DELIVERY_RUN),
                move |run| Incoming::Deliveries(generation, run),
            ),
            stream::once(async move { Incoming::Ended(generation) }),
        );
        self.stream = Some(ctx.add_stream(incoming));
        self.connection = Some(Arc::new(connection));
        self.failed_connects = 0;
        self.failed_probes = 0;
        self.replaced = false;
        self.status.set_up();
        tracing::info!(source = %self.origin.source, subscription = %self.transport.describe(),
            server = self.link.server().unwrap_or_default(), "Subscribed.");
    }

    /// Drops the connection and connects afresh after a backoff (ratsio's own reconnect cannot be trusted).
    fn reconnect(&mut self, reason: String, ctx: &mut Context<Self>) {
        tracing::warn!(source = %self.origin.source, %reason, "Lost the subscription; connecting afresh.");
        self.status.set_down(reason);
        self.status.reconnects.fetch_add(1, Ordering::Relaxed);
        self.link.lost();
        if let Some(handle) = self.stream.take() {
            ctx.cancel_future(handle);
        }
        self.generation += 1;
        let old = self.connection.take();
        let replaced = self.replaced;
        let delay = backoff(self.failed_connects);
        self.failed_connects = self.failed_connects.saturating_add(1);
        // The old registration goes first, or the broker would refuse the new one as a duplicate; unless it is no
        // longer ours, and a close would remove the process that holds our id now.
        let close_then_wait = async move {
            match old {
                Some(old) if replaced => old.abandon().await,
                Some(old) => old.close().await,
                None => {}
            }
            tokio::time::sleep(delay).await;
        };
        ctx.spawn(
            close_then_wait
                .into_actor(self)
                .map(|_, act, ctx| act.open(ctx)),
        );
    }

    fn open(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        let (transport, link) = (self.transport.clone(), self.link.clone());
        ctx.spawn(
            async move { transport.connect(&link).await }
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok((connection, deliveries)) if !act.draining => {
                        act.install(connection, deliveries, ctx)
                    }
                    Ok((connection, _)) => {
                        actix::spawn(async move { connection.close().await });
                    }
                    Err(error) if act.replaced && error.is_refused() => act.give_up(&error),
                    Err(error) => act.reconnect(error.to_string(), ctx),
                }),
        );
    }

    /// The broker holds our client id for another connection: reconnect, and find out whether that one is alive.
    fn replaced(&mut self, error: &TransportError, ctx: &mut Context<Self>) {
        tracing::error!(subscription = %self.transport.describe(), error = %error,
            "Lost the client id; connecting afresh, and stopping if a live process holds it.");
        self.replaced = true;
        self.reconnect(format!("{error}; connecting afresh"), ctx);
    }

    /// Another live process holds our client id: this instance is the stale one and stops.
    fn give_up(&mut self, refused: &TransportError) {
        let problem = format!(
            "{}: the client id was taken over by another process while this one did not answer the broker, and \
             that process is alive: {refused}",
            self.transport.describe()
        );
        tracing::error!(%problem, "Giving up the subscription.");
        self.status.give_up(problem);
    }

    /// Sends a run of deliveries down the pipeline, as one message, and settles each with its answer.
    fn take(&mut self, generation: u64, run: Vec<BrokerMessage>, ctx: &mut Context<Self>) {
        if self.draining || generation != self.generation {
            // Not acked: the broker redelivers them (to this instance after a restart, or to another member).
            return;
        }
        let received = Instant::now();
        self.link.working();
        let mut messages = Vec::with_capacity(run.len());
        let mut awaiting = Vec::with_capacity(run.len());
        for delivery in run {
            if let Some((message, waiting)) = self.admit(generation, delivery, received) {
                messages.push(message);
                awaiting.push(waiting);
            }
        }
        if messages.is_empty() {
            return;
        }
        self.status
            .in_flight
            .store(self.in_flight.len() as u64, Ordering::Relaxed);
        let request = self.validator.send(ValidateBatch {
            origin: self.origin.clone(),
            messages,
        });
        let subscriber = ctx.address();
        // A task per run, not a future in this actor's context: actix polls every context future on each wake.
        actix::spawn(async move {
            let results = request
                .await
                .unwrap_or_else(|error| all_failed(awaiting.len(), || PipelineError::from(error)));
            subscriber.do_send(Settle {
                generation,
                deliveries: awaiting,
                results,
            });
        });
    }

    /// Counts a delivery and takes it in flight, unless its first delivery is still in flight.
    fn admit(
        &mut self,
        generation: u64,
        delivery: BrokerMessage,
        received: Instant,
    ) -> Option<(Delivered, Awaiting)> {
        self.status.delivered.fetch_add(1, Ordering::Relaxed);
        let BrokerMessage {
            payload,
            sequence,
            redelivered,
            delivery_count,
            ack,
        } = delivery;
        if redelivered {
            self.status.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(count) = delivery_count {
            self.delivery_attempts.observe(count as f64);
        }
        if self.in_flight.get(&sequence) == Some(&generation) {
            // Its first delivery is still being processed and will settle it; do not double the work in flight.
            self.status
                .skipped_in_flight
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.in_flight.insert(sequence, generation);
        let span = MessageSpan::delivery(&self.origin, sequence, redelivered);
        let message = Delivered {
            payload,
            sequence,
            span: span.clone(),
        };
        let waiting = Awaiting {
            sequence,
            ack,
            span,
            received,
        };
        Some((message, waiting))
    }

    fn forget(&mut self, sequence: u64, generation: u64) {
        if self.in_flight.get(&sequence) == Some(&generation) {
            self.in_flight.remove(&sequence);
            self.status
                .in_flight
                .store(self.in_flight.len() as u64, Ordering::Relaxed);
        }
        self.notify_if_drained();
    }

    fn notify_if_drained(&mut self) {
        if self.draining && self.in_flight.is_empty() {
            for waiter in self.drained.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    /// How many probes in a row may fail like `error` before the connection is dropped.
    fn probes_tolerated(&self, error: &TransportError) -> u32 {
        match self.origin.source {
            SourceKind::JetStream => JETSTREAM_FAILED_PROBES,
            SourceKind::Stan if error.is_timeout() => STAN_LATE_PINGS,
            SourceKind::Stan => 1,
        }
    }

    fn probe(&mut self, ctx: &mut Context<Self>) {
        let Some(connection) = self.connection.clone() else {
            return;
        };
        if self.probing || self.draining {
            return;
        }
        self.probing = true;
        let generation = self.generation;
        ctx.spawn(
            async move { connection.probe().await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.probing = false;
                    match result {
                        Ok(lag) => {
                            act.failed_probes = 0;
                            act.status.set_lag(lag);
                        }
                        Err(error) if generation != act.generation || act.draining => {
                            tracing::debug!(%error, "A probe of a replaced connection failed.");
                        }
                        Err(error) if error.is_replaced() => {
                            act.status.set_lag(None);
                            act.replaced(&error, ctx);
                        }
                        Err(error) if act.failed_probes + 1 < act.probes_tolerated(&error) => {
                            act.failed_probes += 1;
                            tracing::warn!(%error, failed = act.failed_probes,
                                "A probe of the broker connection failed; trying again at the next probe.");
                        }
                        Err(error) => {
                            act.status.set_lag(None);
                            act.reconnect(error.to_string(), ctx);
                        }
                    }
                }),
        );
    }
}

impl Actor for NatsSubscriber {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(interval) = self.transport.probe_interval() {
            ctx.run_interval(interval, |act, ctx| act.probe(ctx));
        }
    }
}

impl Handler<StartSubscription> for NatsSubscriber {
    type Result = ResponseActFuture<Self, Result<(), TransportError>>;

    /// The first connection: its failure is the caller's (a startup error), later ones are retried here.
    fn handle(&mut self, _: StartSubscription, _: &mut Self::Context) -> Self::Result {
        let (transport, link) = (self.transport.clone(), self.link.clone());
        Box::pin(
            async move { transport.connect(&link).await }
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok((connection, deliveries)) => {
                        act.install(connection, deliveries, ctx);
                        Ok(())
                    }
                    Err(error) => {
                        ctx.stop();
                        Err(error)
                    }
                }),
        )
    }
}

impl StreamHandler<Incoming> for NatsSubscriber {
    /// A delivery goes down the pipeline; the end of the subscription means the connection is gone.
    fn handle(&mut self, item: Incoming, ctx: &mut Self::Context) {
        match item {
            Incoming::Deliveries(generation, run) => self.take(generation, run, ctx),
            Incoming::Ended(generation) if generation == self.generation && !self.draining => {
                self.reconnect("the subscription ended".into(), ctx)
            }
            Incoming::Ended(_) => {}
        }
    }

    /// Subscriptions come and go; the actor stays.
    fn finished(&mut self, _: &mut Self::Context) {}
}

impl Handler<Settle> for NatsSubscriber {
    type Result = ();

    /// The ack decisions: what is committed is acked, in one task for the run.
    fn handle(&mut self, msg: Settle, ctx: &mut Self::Context) {
        let Settle {
            generation,
            deliveries,
            results,
        } = msg;
        let mut to_ack = Vec::with_capacity(deliveries.len());
        for (delivery, result) in deliveries.into_iter().zip(results) {
            match result {
                Ok(outcome) if generation == self.generation => {
                    tracing::debug!(parent: &delivery.span.open(), ?outcome, "Committed; acknowledging.");
                    to_ack.push(delivery);
                }
                Ok(_) => {
                    // Its subscription was replaced: an ack through it would go nowhere. The message comes back on
                    // the new subscription and is found stored.
                    self.forget(delivery.sequence, generation);
                }
                // Do not acknowledge on failure; the message will be redelivered.
                Err(error) => {
                    delivery.span.in_scope(|| {
                        tracing::warn!(error = %error_chain(&error), "Message not stored; not acknowledged.")
                    });
                    self.status.not_acked.fetch_add(1, Ordering::Relaxed);
                    self.forget(delivery.sequence, generation);
                }
            }
        }
        if to_ack.is_empty() {
            return;
        }
        let subscriber = ctx.address();
        let ack_duration = self.ack_duration.clone();
        actix::spawn(async move {
            let mut results = Vec::with_capacity(to_ack.len());
            for delivery in to_ack {
                let result = delivery.ack.ack().await;
                if result.is_ok() {
                    ack_duration.observe(delivery.received.elapsed().as_secs_f64());
                }
                results.push((delivery.sequence, result));
            }
            subscriber.do_send(Acked {
                generation,
                results,
            });
        });
    }
}

impl Handler<Acked> for NatsSubscriber {
    type Result = ();

    /// The messages have left our hands.
    fn handle(&mut self, msg: Acked, _: &mut Self::Context) {
        for (sequence, result) in msg.results {
            match result {
                Ok(()) => {
                    self.status.acked.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    self.status.ack_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, seq = sequence,
                        "Failed to acknowledge; the message will be redelivered and found stored.");
                }
            }
            self.forget(sequence, msg.generation);
        }
    }
}

impl Handler<Drain> for NatsSubscriber {
    type Result = ResponseActFuture<Self, ()>;

    /// Graceful stop.
    fn handle(&mut self, msg: Drain, ctx: &mut Self::Context) -> Self::Result {
        self.draining = true;
        self.status.set_down("shutting down".into());
        if let Some(handle) = self.stream.take() {
            ctx.cancel_future(handle);
        }
        let (done, drained) = oneshot::channel();
        self.drained.push(done);
        self.notify_if_drained();
        let in_flight = self.in_flight.len();
        Box::pin(
            async move {
                if tokio::time::timeout(msg.deadline, drained).await.is_err() {
                    tracing::warn!(
                        in_flight,
                        "Stopped waiting for messages in flight; they will be redelivered."
                    );
                }
            }
            .into_actor(self)
            .then(|_, act, _| {
                let connection = act.connection.take();
                let origin = act.origin.clone();
                async move {
                    if let Some(connection) = connection {
                        connection.close().await;
                        match origin.source {
                            SourceKind::Stan => tracing::info!(%origin,
                                "Closed the STAN connection; the durable subscription stays."),
                            SourceKind::JetStream => tracing::info!(%origin,
                                "Closed the JetStream connection; the durable consumer stays."),
                        }
                    }
                }
                .into_actor(act)
            })
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}
