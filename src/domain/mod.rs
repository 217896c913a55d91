//! What an order is, and how raw bytes from the channel become one (or a reasoned rejection).
//!
//! No I/O, and no other part of the crate: the bottom layer, which every part may use.

mod canonical;
mod conflict;
mod consistency;
mod formats;
pub mod generator;
mod order;
mod order_rules;
mod order_uid;
mod rejection;
mod strict_json;
mod typed_json;
mod validation;

pub use conflict::compare_documents;
pub use consistency::FlagRule;
pub use order::{Delivery, Item, Order, Payment};
pub use order_uid::{OrderUid, OrderUidError};
pub use rejection::{RejectClass, RejectReason, Rejection};
pub use typed_json::Fields;
pub use validation::{OrderSchema, SchemaError, ValidOrder, DEFAULT_MAX_BYTES};
