//! Raw bytes from the channel to a `ValidOrder` or a `Rejection`, by two paths.
//!
//! The reference path is the verdict of record: strict JSON into a `Value` (`strict_json`), the compiled JSON
//! Schema from `schema/order.schema.json`, the typed order, the consistency rules. It explains every rejection with
//! the schema's own reasons, and it costs allocations for every node of the `Value` plus a schema walk.
//!
//! Almost every message is a valid order, so a fast path runs first: the bytes read once, straight into the typed
//! `Order` (`typed_json`), the schema's constraints as compiled Rust over it (`order_rules`, `formats`), the
//! consistency rules, the canonical document. If it accepts, that is the answer; if any step fails, it answers
//! nothing and the reference path runs unchanged, so rejections keep their exact reasons. The fast path may refuse
//! more than the schema (a float `1.0`, an unusual address), never less: what it accepts, the reference path
//! accepts with the same order, document and flags. Tests hold it to that: one compares its tables with the schema
//! file keyword by keyword, and a differential property test runs both paths over hostile mutations of orders.

use std::sync::Arc;

use bytes::Bytes;
use jsonschema::Validator;
use serde_json::Value;

use super::canonical;
use super::consistency::{self, FlagRule};
use super::order::Order;
use super::order_rules;
use super::order_uid::OrderUid;
use super::rejection::{RejectClass, RejectReason, Rejection};
use super::strict_json;
use super::typed_json;

/// The order schema, one file shared by the service, the tests and the generator.
pub const SCHEMA_JSON: &str = include_str!("../../schema/order.schema.json");
/// Messages above this size are refused before parsing (configurable with MAX_MESSAGE_BYTES).
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the order schema is not valid JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("the order schema does not compile: {0}")]
    Invalid(String),
}

/// Longest reason message kept: longer ones keep their start and their end (where the rule is named), with an
/// ellipsis for the quoted value between.
const REASON_MAX_BYTES: usize = 1024;
/// Most reasons kept per message.
const MAX_REASONS: usize = 64;

/// `text` cut to about `REASON_MAX_BYTES`, its start and its end kept.
fn cut(text: String) -> String {
    if text.len() <= REASON_MAX_BYTES {
        return text;
    }
    let mut head = REASON_MAX_BYTES / 2;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - REASON_MAX_BYTES / 2;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}…{}", &text[..head], &text[tail..])
}

/// A message that passed every check, ready to store and serve. The order borrows its strings from the message
/// (`'a`); keep what outlives the message by copying it out.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidOrder<'a> {
    pub uid: OrderUid,
    pub order: Order<'a>,
    /// The canonical JSON (the typed order serialized once): stored as-is and served as-is.
    pub document: Bytes,
    pub flags: Vec<FlagRule>,
}

/// The compiled schema plus the checks around it. Built once; cheap to share (`Clone` is an `Arc` copy).
#[derive(Clone)]
pub struct OrderSchema {
    validator: Arc<Validator>,
    max_bytes: usize,
}

impl OrderSchema {
    pub fn new(max_bytes: usize) -> Result<OrderSchema, SchemaError> {
        let schema: Value = serde_json::from_str(SCHEMA_JSON)?;
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| SchemaError::Invalid(e.to_string()))?;
        Ok(OrderSchema {
            validator: Arc::new(validator),
            max_bytes,
        })
    }

    /// Every schema violation of `value`, each with its JSON pointer.
    /// Every schema error, each message cut to `REASON_MAX_BYTES` and at most `MAX_REASONS` of them: the messages
    /// quote the offending values, so uncut they would hold several copies of a large payload in memory (the payload
    /// itself is kept with the dead letter).
    fn schema_reasons(&self, value: &Value) -> Vec<RejectReason> {
        self.validator
            .iter_errors(value)
            .take(MAX_REASONS)
            .map(|e| RejectReason {
                pointer: cut(e.instance_path().to_string()),
                message: cut(e.to_string()),
            })
            .collect()
    }

    /// Turns raw bytes from the channel into an order, or into every reason it is not one. Never panics; time and
    /// memory are bounded by the size limit and the nesting limit.
    pub fn validate<'a>(&self, raw: &'a [u8]) -> Result<ValidOrder<'a>, Rejection> {
        let text = self.admit(raw)?;
        match accept_fast(text) {
            Some(order) => Ok(order),
            None => self.validate_by_reference(text),
        }
    }

    /// `validate` by the reference path alone: what `validate` must always answer. For tests and benchmarks.
    pub fn validate_reference<'a>(&self, raw: &'a [u8]) -> Result<ValidOrder<'a>, Rejection> {
        self.validate_by_reference(self.admit(raw)?)
    }

    /// The fast path alone: the order when it accepts the message, `None` when the reference path would have to
    /// decide. For tests and benchmarks.
    pub fn accept_fast<'a>(&self, raw: &'a [u8]) -> Option<ValidOrder<'a>> {
        accept_fast(self.admit(raw).ok()?)
    }

    /// The checks both paths share: the size limit and UTF-8.
    fn admit<'a>(&self, raw: &'a [u8]) -> Result<&'a str, Rejection> {
        if raw.len() > self.max_bytes {
            return Err(Rejection::whole(
                RejectClass::TooLarge,
                format!(
                    "message is {} bytes, the limit is {}",
                    raw.len(),
                    self.max_bytes
                ),
            ));
        }
        std::str::from_utf8(raw).map_err(|e| {
            Rejection::whole(
                RejectClass::InvalidUtf8,
                format!("message is not UTF-8: {e}"),
            )
        })
    }

    /// The reference path: strict JSON, the JSON Schema, the typed order, the consistency rules.
    fn validate_by_reference<'a>(&self, text: &'a str) -> Result<ValidOrder<'a>, Rejection> {
        let value = strict_json::parse(text).map_err(|e| {
            Rejection::whole(
                RejectClass::MalformedJson,
                format!("message is not acceptable JSON: {e}"),
            )
        })?;
        let order_uid = value
            .get("order_uid")
            .and_then(Value::as_str)
            .map(|s| s.chars().take(128).collect::<String>());

        // `is_valid` stops at the first failure and builds no error: the cheap check for what is almost always valid.
        if !self.validator.is_valid(&value) {
            return Err(Rejection {
                class: RejectClass::Schema,
                reasons: self.schema_reasons(&value),
                order_uid,
            });
        }

        // The schema guarantees the shape, so this only fails if schema and type disagree: still a rejection, not a panic.
        let order: Order = serde_json::from_value(value).map_err(|e| Rejection {
            class: RejectClass::Schema,
            reasons: vec![RejectReason {
                pointer: String::new(),
                message: format!("does not match the order type: {e}"),
            }],
            order_uid: order_uid.clone(),
        })?;
        let (reasons, flags) = consistency::check(&order);
        if !reasons.is_empty() {
            return Err(Rejection {
                class: RejectClass::Inconsistent,
                reasons,
                order_uid,
            });
        }
        let uid = OrderUid::parse(&order.order_uid).map_err(|e| Rejection {
            class: RejectClass::Schema,
            reasons: vec![RejectReason {
                pointer: "/order_uid".into(),
                message: e.to_string(),
            }],
            order_uid: order_uid.clone(),
        })?;
        let document = serde_json::to_vec(&order)
            .map_err(|e| Rejection::whole(RejectClass::Schema, e.to_string()))?;
        Ok(ValidOrder {
            uid,
            order,
            document: Bytes::from(document),
            flags,
        })
    }
}

/// The fast path: `None` as soon as any step fails. Its steps mirror the reference path's, so an order it accepts is
/// the order the reference path would build, and its document the same bytes.
fn accept_fast(text: &str) -> Option<ValidOrder<'_>> {
    let order = typed_json::parse(text).ok()?;
    if !order_rules::accepts(&order) {
        return None;
    }
    let (reasons, flags) = consistency::check(&order);
    if !reasons.is_empty() {
        return None;
    }
    let uid = OrderUid::parse(&order.order_uid).ok()?;
    let document = if canonical::is_canonical(text) {
        Bytes::copy_from_slice(text.as_bytes())
    } else {
        // The document is about as long as the message: one allocation instead of a doubling series.
        let mut document = Vec::with_capacity(text.len());
        serde_json::to_writer(&mut document, &order).ok()?;
        Bytes::from(document)
    };
    Some(ValidOrder {
        uid,
        order,
        document,
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../schema/examples/order.valid.json");

    #[test]
    fn reasons_quoting_a_large_value_are_cut() {
        // Arrange: a huge order_uid, quoted by every rule it breaks.
        let schema = OrderSchema::new(DEFAULT_MAX_BYTES).expect("schema compiles");
        let message = format!(r#"{{"order_uid": "{}"}}"#, "é".repeat(200_000));

        // Act
        let rejection = schema.validate(message.as_bytes()).expect_err("invalid");

        // Assert
        let held: usize = rejection.reasons.iter().map(|r| r.message.len()).sum();
        assert!(!rejection.reasons.is_empty());
        assert!(rejection.reasons.len() <= MAX_REASONS);
        assert!(
            held <= MAX_REASONS * (REASON_MAX_BYTES + '…'.len_utf8()),
            "{held} bytes of reasons"
        );
    }

    #[test]
    fn the_sample_is_valid_and_its_document_equals_the_input() {
        let schema = OrderSchema::new(DEFAULT_MAX_BYTES).expect("schema compiles");
        let order = schema.validate(SAMPLE.as_bytes()).expect("sample is valid");
        assert_eq!(order.uid.as_str(), "b563feb7b2b84b6test");
        let served: Value = serde_json::from_slice(&order.document).expect("document is JSON");
        let input: Value = serde_json::from_str(SAMPLE).expect("sample is JSON");
        assert_eq!(served, input);
        assert!(
            order.flags.is_empty(),
            "sample raises no flag: {:?}",
            order.flags
        );
    }

    #[test]
    fn every_schema_error_is_reported_with_its_pointer() {
        let schema = OrderSchema::new(DEFAULT_MAX_BYTES).expect("schema compiles");
        let mut value: Value = serde_json::from_str(SAMPLE).expect("sample is JSON");
        value["items"][0]["sale"] = 150.into();
        value["payment"]["amount"] = (-1).into();
        let rejection = schema
            .validate(value.to_string().as_bytes())
            .expect_err("invalid");
        assert_eq!(rejection.class, RejectClass::Schema);
        let pointers: Vec<&str> = rejection
            .reasons
            .iter()
            .map(|r| r.pointer.as_str())
            .collect();
        assert!(pointers.contains(&"/items/0/sale"), "{pointers:?}");
        assert!(pointers.contains(&"/payment/amount"), "{pointers:?}");
        assert_eq!(rejection.order_uid.as_deref(), Some("b563feb7b2b84b6test"));
    }
}
