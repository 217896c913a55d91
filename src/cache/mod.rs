//! The data structures behind `OrderCache` (src/actors/cache.rs), free of actors and I/O so that each is tested on
//! its own: the documents with their optional byte bound (`store`), the ids known not to be stored (`negative`),
//! and the coalescing of misses into batched lookups (`misses`).

pub mod feed;
pub mod misses;
pub mod negative;
pub mod store;

pub use misses::MissQueue;
pub use negative::NegativeCache;
pub use store::{DocumentStore, Inserted};
