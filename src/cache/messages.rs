//! The messages a cache member handles, and what they carry: the group (`group.rs`) sends them, the `OrderCache`
//! actor (src/actors/cache.rs) answers them. They live here, below the actor, so that the group can address members
//! as `Recipient`s without knowing the actor.

use std::sync::Arc;

use actix::{MailboxError, Message};
use bytes::Bytes;

use crate::domain::OrderUid;
use crate::storage::PersistError;

/// Look up one order's JSON: `Ok(None)` when PostgreSQL does not hold it either.
#[derive(Message)]
#[rtype(result = "Result<Option<Bytes>, LookupError>")]
pub struct GetOrder(pub OrderUid);

/// Remember orders that were just committed (by this instance or, through the feed, by any).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CacheOrders(pub Arc<[CachedOrder]>);

/// Load what PostgreSQL held at start.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WarmCache(pub Arc<[CachedOrder]>);

/// Every cached order, to warm a member that joins late (an HTTP worker restarted after a panic).
#[derive(Message)]
#[rtype(result = "Arc<[CachedOrder]>")]
pub struct ExportOrders;

/// One order as the cache keeps it.
#[derive(Debug, Clone)]
pub struct CachedOrder {
    pub uid: Arc<str>,
    pub document: Bytes,
}

/// A lookup that could not be answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    #[error("the cache is unavailable")]
    Mailbox(#[from] MailboxError),
    #[error("PostgreSQL could not be asked for the order")]
    Database(#[source] Arc<PersistError>),
    #[error("the cache stopped before answering")]
    Dropped,
}
