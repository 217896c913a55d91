use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// An order as the channel carries it. Field order follows the published model, so the canonical document we store
/// and serve reads like the input. Unknown fields are refused, as in the schema.
///
/// Its strings are `Cow`s: the fast path's reader (`typed_json`) borrows each from the message (`'a`) unless the JSON
/// string holds an escape, so reading an order allocates only its list of items. The derived `Deserialize` (the
/// reference path, from a `Value`) gives owned strings; either way the order compares and serializes the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order<'a> {
    pub order_uid: Cow<'a, str>,
    pub track_number: Cow<'a, str>,
    pub entry: Cow<'a, str>,
    pub delivery: Delivery<'a>,
    pub payment: Payment<'a>,
    pub items: Vec<Item<'a>>,
    pub locale: Cow<'a, str>,
    pub internal_signature: Cow<'a, str>,
    pub customer_id: Cow<'a, str>,
    pub delivery_service: Cow<'a, str>,
    pub shardkey: Cow<'a, str>,
    pub sm_id: i64,
    pub date_created: Cow<'a, str>,
    pub oof_shard: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery<'a> {
    pub name: Cow<'a, str>,
    pub phone: Cow<'a, str>,
    pub zip: Cow<'a, str>,
    pub city: Cow<'a, str>,
    pub address: Cow<'a, str>,
    pub region: Cow<'a, str>,
    pub email: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payment<'a> {
    pub transaction: Cow<'a, str>,
    pub request_id: Cow<'a, str>,
    pub currency: Cow<'a, str>,
    pub provider: Cow<'a, str>,
    pub amount: i64,
    pub payment_dt: i64,
    pub bank: Cow<'a, str>,
    pub delivery_cost: i64,
    pub goods_total: i64,
    pub custom_fee: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item<'a> {
    pub chrt_id: i64,
    pub track_number: Cow<'a, str>,
    pub price: i64,
    pub rid: Cow<'a, str>,
    pub name: Cow<'a, str>,
    pub sale: i64,
    pub size: Cow<'a, str>,
    pub total_price: i64,
    pub nm_id: i64,
    pub brand: Cow<'a, str>,
    pub status: i64,
}
