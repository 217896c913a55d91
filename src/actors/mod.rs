//! The pipeline, one actor per job:
//!
//! ```text
//! STAN --> NatsSubscriber --ValidateOrder--> OrderValidator --PersistOrder/PersistRejected--> OrderPersister
//!              ^   (ack only after the outcome comes back)                                    |  CacheOrder
//!              +----------------------------- Outcome <---------------------------------------+--> OrderCache <-- GetOrder (HTTP)
//! ```

pub mod cache;
pub mod persister;
pub mod subscriber;
pub mod validator;

pub use cache::{CacheOrder, GetOrder, OrderCache};
pub use persister::{OrderPersister, Outcome, PipelineError};
pub use subscriber::{NatsSubscriber, StopSubscriber};
pub use validator::{OrderValidator, ValidateOrder};
