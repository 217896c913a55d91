//! The in-memory cache of documents, below the `OrderCache` actor (src/actors/cache.rs) that owns one per HTTP
//! worker: the messages a member answers (`messages`), the registry that broadcasts commits to every member and
//! warms them (`group`), the documents with their optional byte bound (`store`), the chunks their copies are packed
//! into (`arena`), the orders restored at start in one index all members share (`restored`), the read-through source of misses (`source`), the ids known not to be stored (`negative`), the
//! coalescing of misses into batched lookups (`misses`), and the change feed's follower (`feed`).
//!
//! Uses `storage`, `telemetry`, `domain` and actix's message types; never the actors above it.

pub mod arena;
pub mod feed;
pub mod group;
pub mod messages;
pub mod misses;
pub mod negative;
pub mod restored;
pub mod source;
pub mod store;

pub use arena::DocumentArena;
pub use group::{CacheGroup, CacheSettings};
pub use messages::{CacheOrders, CachedOrder, ExportOrders, GetOrder, LookupError, WarmCache};
pub use misses::MissQueue;
pub use negative::NegativeCache;
pub use restored::{Restore, RestoredOrders};
pub use source::{OrderSource, PostgresOrders};
pub use store::{DocumentStore, Inserted};
