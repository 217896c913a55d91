//! The pipeline, one actor per job, started in reverse order (caches, persister, validator, subscriber):
//!
//! ```text
//!  STAN ──> NatsSubscriber ──ValidateBatch──> OrderValidator ──PersistBatch──> OrderPersister
//!             │  ▲                                                               │ group commit
//!             │  └──── Vec<Result<Outcome, PipelineError>> ◄────────────────────┤ (PostgreSQL)
//!             │ ack only after the outcome came back (see subscriber.rs)         │ CacheOrders
//!             ▼                                                                  ▼
//!         the broker                      HTTP worker ──GetOrder──> OrderCache (one per worker)
//! ```
//!
//! One `NatsSubscriber` runs per source (STAN, JetStream: see `crate::transport`); all of them feed the one validator.
//! Deliveries that arrive together travel together: one `ValidateBatch`, one `PersistBatch` and one answer for
//! all of them, so the cost of a message between actors is paid per run of deliveries, not per delivery (a lone
//! delivery is a run of one and waits for nothing). Each delivery carries its tracing span ("Process order"), built
//! only if a line is logged about it (`MessageSpan`).
//!
//! Uses `cache`, `storage`, `transport`, `telemetry`, `config` and `domain`; `replay`, `http` and `app` use it.

pub mod cache;
pub mod message_span;
pub mod persister;
pub mod stall;
pub mod subscriber;
pub mod validator;

pub use cache::{LocalCache, OrderCache};
pub use message_span::MessageSpan;
pub use persister::{OrderPersister, Outcome, PersisterSettings, PipelineError};
pub use subscriber::{Drain, NatsSubscriber, StartSubscription, SubscriberStatus};
pub use validator::{Delivered, OrderValidator, ReplayMessage, Replayed, ValidateBatch};
