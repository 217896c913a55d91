//! The pipeline, one actor per job, started in reverse order (caches, persister, validator, subscriber):
//!
//! ```text
//!  STAN ──> NatsSubscriber ──ValidateOrder──> OrderValidator ──PersistOrder / PersistRejected──> OrderPersister
//!             │  ▲                                                                                │ group commit
//!             │  └──────────── Result<Outcome, PipelineError> ◄─────────────────────────────────┤ (PostgreSQL)
//!             │ ack only after the outcome came back (see subscriber.rs)                          │ CacheOrders
//!             ▼                                                                                   ▼
//!         the broker                                       HTTP worker ──GetOrder──> OrderCache (one per worker)
//! ```
//!
//! One `NatsSubscriber` runs per source (STAN, JetStream: see `crate::transport`); all of them feed the one validator.
//! Each delivery carries its tracing span ("Process order") through every message.

pub mod cache;
pub mod persister;
pub mod subscriber;
pub mod validator;

pub use cache::{CacheGroup, CachedOrder, DocumentArena, LocalCache, OrderCache};
pub use persister::{OrderPersister, Outcome, PersisterSettings, PipelineError};
pub use subscriber::{Drain, NatsSubscriber, StartSubscription, SubscriberStatus};
pub use validator::{OrderValidator, ReplayMessage, Replayed, ValidateOrder};
