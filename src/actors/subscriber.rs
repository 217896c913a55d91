//! `NatsSubscriber` owns one source's connection (a STAN durable queue subscription or a JetStream durable pull
//! consumer, see transport/) and every ack decision for it. One runs per source; they feed the same validator.
//!
//! In: deliveries from the broker; `StartSubscription` and `Drain` from startup. Out: `ValidateOrder` to the
//! validator for each delivery. The answer decides the ack (STYLE.md §4):
//!
//! | answer                      | meaning                                    | ack?                       |
//! |-----------------------------|--------------------------------------------|----------------------------|
//! | `Ok(Outcome::Persisted)`    | committed                                  | yes, after the commit      |
//! | `Ok(Outcome::Duplicate)`    | stored before                              | yes                        |
//! | `Ok(Outcome::Rejected(_))`  | not an order, committed as a dead letter   | yes                        |
//! | `Err(PipelineError)`        | database or mailbox failure                | no: redelivered after ack wait |
//!
//! Connection care (see transport/stan.rs for the ratsio defects behind it): a lost connection, an ended
//! subscription or a failed probe drops the connection and connects afresh with backoff, resubscribing the durable.
//! For JetStream the probe reads the consumer's state, which also gives its backlog. A redelivery of a message still
//! in flight is skipped, so a slow database cannot multiply the work in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::stream;
use prometheus::Histogram;
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tracing::{field, Instrument, Span};

use crate::actors::persister::{Outcome, PipelineError};
use crate::actors::validator::{OrderValidator, ValidateOrder};
use crate::error_chain::error_chain;
use crate::metrics::Metrics;
use crate::transport::{
    AckHandle, Connection, ConsumerLag, Delivery, Origin, SourceKind, Transport, TransportError,
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

/// The pipeline's answer for one delivery.
#[derive(Message)]
#[rtype(result = "()")]
struct Settle {
    generation: u64,
    sequence: u64,
    ack: AckHandle,
    result: Result<Outcome, PipelineError>,
    span: Span,
    /// When the delivery arrived, for the ack latency.
    received: Instant,
}

/// An ack went out, or failed.
#[derive(Message)]
#[rtype(result = "()")]
struct Acked {
    generation: u64,
    sequence: u64,
    result: Result<(), TransportError>,
}

/// What the subscription stream yields; the generation tells a current subscription from a replaced one.
enum Incoming {
    Delivery(u64, Box<Delivery>),
    Ended(u64),
}

/// Shared with readiness, tests and the metrics (read when scraped; see metrics.rs).
#[derive(Debug, Default)]
pub struct SubscriberStatus {
    subscribed: AtomicBool,
    problem: Mutex<Option<String>>,
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
    connection: Option<Arc<Connection>>,
    /// Bumped on every new subscription; answers and deliveries of older ones are stale.
    generation: u64,
    stream: Option<SpawnHandle>,
    /// Sequence -> generation of every message between delivery and ack decision (or ack).
    in_flight: HashMap<u64, u64>,
    failed_connects: u32,
    probing: bool,
    draining: bool,
    drained: Vec<oneshot::Sender<()>>,
}

impl NatsSubscriber {
    pub fn new(
        transport: Transport,
        validator: Addr<OrderValidator>,
        status: Arc<SubscriberStatus>,
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
            generation: 0,
            stream: None,
            in_flight: HashMap::new(),
            failed_connects: 0,
            probing: false,
            draining: false,
            drained: Vec::new(),
        }
    }

    /// Takes over a fresh subscription.
    fn install(
        &mut self,
        connection: Connection,
        deliveries: mpsc::UnboundedReceiver<Delivery>,
        ctx: &mut Context<Self>,
    ) {
        self.generation += 1;
        let generation = self.generation;
        let deliveries = stream::unfold(deliveries, |mut receiver| async move {
            receiver.recv().await.map(|delivery| (delivery, receiver))
        });
        let incoming = futures::StreamExt::chain(
            futures::StreamExt::map(deliveries, move |d| {
                Incoming::Delivery(generation, Box::new(d))
            }),
            stream::once(async move { Incoming::Ended(generation) }),
        );
        self.stream = Some(ctx.add_stream(incoming));
        self.connection = Some(Arc::new(connection));
        self.failed_connects = 0;
        self.status.set_up();
        tracing::info!(source = %self.origin.source, subscription = %self.transport.describe(), "Subscribed.");
    }

    /// Drops the connection and connects afresh after a backoff (ratsio's own reconnect cannot be trusted).
    fn reconnect(&mut self, reason: String, ctx: &mut Context<Self>) {
        tracing::warn!(source = %self.origin.source, %reason, "Lost the subscription; connecting afresh.");
        self.status.set_down(reason);
        self.status.reconnects.fetch_add(1, Ordering::Relaxed);
        if let Some(handle) = self.stream.take() {
            ctx.cancel_future(handle);
        }
        self.generation += 1;
        let old = self.connection.take();
        let delay = backoff(self.failed_connects);
        self.failed_connects = self.failed_connects.saturating_add(1);
        // The old registration goes first, or the broker would refuse the new one as a duplicate.
        let close_then_wait = async move {
            if let Some(old) = old {
                old.close().await;
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
        let transport = self.transport.clone();
        ctx.spawn(
            async move { transport.connect().await }
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok((connection, deliveries)) if !act.draining => {
                        act.install(connection, deliveries, ctx)
                    }
                    Ok((connection, _)) => {
                        actix::spawn(async move { connection.close().await });
                    }
                    Err(error) => act.reconnect(error.to_string(), ctx),
                }),
        );
    }

    fn take(&mut self, generation: u64, delivery: Delivery, ctx: &mut Context<Self>) {
        if self.draining || generation != self.generation {
            // Not acked: the broker redelivers it (to this instance after a restart, or to another member).
            return;
        }
        let received = Instant::now();
        self.status.delivered.fetch_add(1, Ordering::Relaxed);
        let Delivery {
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
            return;
        }
        self.in_flight.insert(sequence, generation);
        self.status
            .in_flight
            .store(self.in_flight.len() as u64, Ordering::Relaxed);
        let span = tracing::info_span!(
            parent: None,
            "Process order",
            source = %self.origin.source,
            channel = %self.origin.name,
            seq = sequence,
            redelivered,
            order_uid = field::Empty
        );
        let request = self.validator.send(ValidateOrder {
            payload,
            origin: self.origin.clone(),
            sequence,
            span: span.clone(),
        });
        let subscriber = ctx.address();
        // A task per message, not a future in this actor's context: actix polls every context future on each wake.
        actix::spawn(async move {
            let result = request
                .await
                .unwrap_or_else(|e| Err(PipelineError::from(e)));
            subscriber.do_send(Settle {
                generation,
                sequence,
                ack,
                result,
                span,
                received,
            });
        });
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
                        Ok(lag) => act.status.set_lag(lag),
                        Err(error) => {
                            if generation == act.generation && !act.draining {
                                act.status.set_lag(None);
                                act.reconnect(error.to_string(), ctx);
                            }
                        }
                    }
                }),
        );
    }
}

/// 200 ms doubling up to 10 s, with jitter so that several instances do not reconnect in step.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(200)
        .saturating_mul(1 << failures.min(6))
        .min(Duration::from_secs(10));
    base.mul_f64(rand::rng().random_range(0.8..1.2))
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
        let transport = self.transport.clone();
        Box::pin(
            async move { transport.connect().await }
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
            Incoming::Delivery(generation, delivery) => self.take(generation, *delivery, ctx),
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

    /// The ack decision.
    fn handle(&mut self, msg: Settle, ctx: &mut Self::Context) {
        let Settle {
            generation,
            sequence,
            ack,
            result,
            span,
            received,
        } = msg;
        let _entered = span.enter();
        match result {
            Ok(outcome) if generation == self.generation => {
                tracing::debug!(?outcome, "Committed; acknowledging.");
                let subscriber = ctx.address();
                let ack_duration = self.ack_duration.clone();
                actix::spawn(
                    async move {
                        let result = ack.ack().await;
                        if result.is_ok() {
                            ack_duration.observe(received.elapsed().as_secs_f64());
                        }
                        subscriber.do_send(Acked {
                            generation,
                            sequence,
                            result,
                        });
                    }
                    .instrument(span.clone()),
                );
            }
            Ok(_) => {
                // Its subscription was replaced: an ack through it would go nowhere. The message comes back on the
                // new subscription and is found stored.
                self.forget(sequence, generation);
            }
            // Do not acknowledge on failure; the message will be redelivered.
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "Message not stored; not acknowledged.");
                self.status.not_acked.fetch_add(1, Ordering::Relaxed);
                self.forget(sequence, generation);
            }
        }
    }
}

impl Handler<Acked> for NatsSubscriber {
    type Result = ();

    /// The message has left our hands.
    fn handle(&mut self, msg: Acked, _: &mut Self::Context) {
        match msg.result {
            Ok(()) => {
                self.status.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.status.ack_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, seq = msg.sequence,
                    "Failed to acknowledge; the message will be redelivered and found stored.");
            }
        }
        self.forget(msg.sequence, msg.generation);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) <= Duration::from_millis(240));
        assert!(backoff(3) >= Duration::from_millis(1280));
        assert!(backoff(100) <= Duration::from_secs(12));
    }
}
