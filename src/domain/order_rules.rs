//! The constraints of `schema/order.schema.json`, compiled to Rust over the typed order, for the fast path.
//!
//! Each object's rules are a table (`Object::properties`) that the check runs and that `declared` lists keyword by
//! keyword, so a test compares the tables with the schema file: an edit of the schema without an edit here fails
//! that test instead of letting through what the schema now refuses. Types, required fields and
//! `additionalProperties: false` are enforced by the reader (`typed_json`); they are declared here too.

use serde_json::{json, Value};

use super::formats;
use super::order::{Delivery, Item, Order, Payment};
use super::typed_json::Fields;

/// The draft the schema is written for: formats and keywords below follow its meaning.
#[cfg(test)]
const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";
/// The largest integer the schema takes for amounts and ids (2^53 - 1, exact in a double).
const MAX_SAFE: i64 = 9_007_199_254_740_991;

/// An object of the schema: its properties and the rule for each.
pub(crate) trait Object: Fields + Sized {
    /// The table. A function rather than a constant because the types borrow (`Order<'a>`), and a constant's type
    /// cannot name the lifetime of its impl; the table is a constant all the same (`const { .. }`), built at compile
    /// time.
    fn properties<'t>() -> &'t [Property<Self>]
    where
        Self: 't;
}

/// One property of an object and its rule.
pub(crate) struct Property<T> {
    pub name: &'static str,
    pub rule: Rule<T>,
}

pub(crate) enum Rule<T> {
    Text(fn(&T) -> &str, Text),
    Integer(fn(&T) -> i64, Integer),
    /// A nested object: `check` runs its table, `declare` lists it.
    Object {
        check: fn(&T) -> bool,
        declare: fn(&str, &mut Vec<Constraint>),
    },
    /// The array of items.
    Items(fn(&T) -> &[Item], Items),
}

/// A string's rules; lengths count code points, as JSON Schema does.
pub(crate) struct Text {
    min_length: Option<usize>,
    max_length: Option<usize>,
    pattern: Option<Pattern>,
    format: Option<Format>,
}

/// A regular expression of the schema and the code that matches what it matches.
pub(crate) struct Pattern {
    source: &'static str,
    matches: fn(&str) -> bool,
}

/// A `format` of the schema and the code that accepts (at most) what the jsonschema crate accepts.
pub(crate) struct Format {
    name: &'static str,
    accepts: fn(&str) -> bool,
}

pub(crate) struct Integer {
    minimum: i64,
    maximum: i64,
}

pub(crate) struct Items {
    min_items: usize,
    max_items: usize,
}

/// One keyword of the schema as the fast check enforces it: the schema pointer of its subschema, the keyword, and
/// its value.
pub(crate) type Constraint = (String, &'static str, Value);

/// True when the order meets every constraint of the schema.
pub(crate) fn accepts<T: Object>(value: &T) -> bool {
    T::properties().iter().all(|p| p.rule.accepts(value))
}

/// Every constraint the fast check enforces, to compare with the schema's.
#[cfg(test)]
pub(crate) fn declared() -> Vec<Constraint> {
    let mut out = vec![(String::new(), "$schema", json!(DRAFT))];
    declare::<Order>("", &mut out);
    out
}

fn declare<T: Object>(pointer: &str, out: &mut Vec<Constraint>) {
    let mut required: Vec<&str> = T::FIELDS.to_vec();
    required.sort_unstable();
    let mut properties: Vec<&str> = T::properties().iter().map(|p| p.name).collect();
    properties.sort_unstable();
    out.push((pointer.into(), "type", json!("object")));
    out.push((pointer.into(), "additionalProperties", json!(false)));
    out.push((pointer.into(), "required", json!(required)));
    out.push((pointer.into(), "properties", json!(properties)));
    for property in T::properties() {
        property
            .rule
            .declare(&format!("{pointer}/properties/{}", property.name), out);
    }
}

impl<T> Rule<T> {
    fn accepts(&self, value: &T) -> bool {
        match self {
            Rule::Text(get, text) => text.accepts(get(value)),
            Rule::Integer(get, integer) => {
                (integer.minimum..=integer.maximum).contains(&get(value))
            }
            Rule::Object { check, .. } => check(value),
            Rule::Items(get, items) => {
                let list = get(value);
                (items.min_items..=items.max_items).contains(&list.len())
                    && list.iter().all(accepts)
            }
        }
    }

    fn declare(&self, pointer: &str, out: &mut Vec<Constraint>) {
        match self {
            Rule::Text(_, text) => {
                out.push((pointer.into(), "type", json!("string")));
                let keywords = [
                    ("minLength", text.min_length.map(|n| json!(n))),
                    ("maxLength", text.max_length.map(|n| json!(n))),
                    ("pattern", text.pattern.as_ref().map(|p| json!(p.source))),
                    ("format", text.format.as_ref().map(|f| json!(f.name))),
                ];
                for (keyword, value) in keywords {
                    if let Some(value) = value {
                        out.push((pointer.into(), keyword, value));
                    }
                }
            }
            Rule::Integer(_, integer) => {
                out.push((pointer.into(), "type", json!("integer")));
                out.push((pointer.into(), "minimum", json!(integer.minimum)));
                out.push((pointer.into(), "maximum", json!(integer.maximum)));
            }
            Rule::Object { declare, .. } => declare(pointer, out),
            Rule::Items(_, items) => {
                out.push((pointer.into(), "type", json!("array")));
                out.push((pointer.into(), "minItems", json!(items.min_items)));
                out.push((pointer.into(), "maxItems", json!(items.max_items)));
                declare::<Item>(&format!("{pointer}/items"), out);
            }
        }
    }
}

impl Text {
    fn accepts(&self, text: &str) -> bool {
        self.length_accepts(text)
            && self.pattern.as_ref().is_none_or(|p| (p.matches)(text))
            && self.format.as_ref().is_none_or(|f| (f.accepts)(text))
    }

    fn length_accepts(&self, text: &str) -> bool {
        // A code point takes one to four bytes in UTF-8, so the byte length bounds the count from both sides:
        // when both bounds hold, counting is not needed.
        let bytes = text.len();
        if self.max_length.is_none_or(|max| bytes <= max)
            && self.min_length.is_none_or(|min| bytes.div_ceil(4) >= min)
        {
            return true;
        }
        let length = text.chars().count();
        self.min_length.is_none_or(|min| length >= min)
            && self.max_length.is_none_or(|max| length <= max)
    }
}

const fn text(min_length: Option<usize>, max_length: usize) -> Text {
    Text {
        min_length,
        max_length: Some(max_length),
        pattern: None,
        format: None,
    }
}

const fn integer(maximum: i64) -> Integer {
    Integer {
        minimum: 0,
        maximum,
    }
}

const ORDER_UID: Pattern = Pattern {
    source: "^[A-Za-z0-9_-]{1,64}$",
    matches: |s| {
        (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    },
};

const PHONE: Pattern = Pattern {
    source: "^\\+?[0-9]{5,20}$",
    matches: |s| {
        let digits = s.strip_prefix('+').unwrap_or(s);
        (5..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    },
};

const CURRENCY: Pattern = Pattern {
    source: "^[A-Z]{3}$",
    matches: |s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()),
};

const DATE_TIME: Format = Format {
    name: "date-time",
    accepts: formats::is_date_time,
};

const EMAIL: Format = Format {
    name: "email",
    accepts: formats::is_plain_email,
};

impl Object for Order<'_> {
    fn properties<'t>() -> &'t [Property<Self>]
    where
        Self: 't,
    {
        const {
            &[
                Property {
                    name: "order_uid",
                    rule: Rule::Text(
                        |o| &o.order_uid,
                        Text {
                            min_length: None,
                            max_length: None,
                            pattern: Some(ORDER_UID),
                            format: None,
                        },
                    ),
                },
                Property {
                    name: "track_number",
                    rule: Rule::Text(|o| &o.track_number, text(Some(1), 64)),
                },
                Property {
                    name: "entry",
                    rule: Rule::Text(|o| &o.entry, text(Some(1), 32)),
                },
                Property {
                    name: "delivery",
                    rule: Rule::Object {
                        check: |o| accepts(&o.delivery),
                        declare: declare::<Delivery>,
                    },
                },
                Property {
                    name: "payment",
                    rule: Rule::Object {
                        check: |o| accepts(&o.payment),
                        declare: declare::<Payment>,
                    },
                },
                Property {
                    name: "items",
                    rule: Rule::Items(
                        |o| &o.items,
                        Items {
                            min_items: 1,
                            max_items: 1000,
                        },
                    ),
                },
                Property {
                    name: "locale",
                    rule: Rule::Text(|o| &o.locale, text(Some(2), 16)),
                },
                Property {
                    name: "internal_signature",
                    rule: Rule::Text(|o| &o.internal_signature, text(None, 512)),
                },
                Property {
                    name: "customer_id",
                    rule: Rule::Text(|o| &o.customer_id, text(Some(1), 64)),
                },
                Property {
                    name: "delivery_service",
                    rule: Rule::Text(|o| &o.delivery_service, text(Some(1), 64)),
                },
                Property {
                    name: "shardkey",
                    rule: Rule::Text(|o| &o.shardkey, text(Some(1), 16)),
                },
                Property {
                    name: "sm_id",
                    rule: Rule::Integer(|o| o.sm_id, integer(MAX_SAFE)),
                },
                Property {
                    name: "date_created",
                    rule: Rule::Text(
                        |o| &o.date_created,
                        Text {
                            min_length: None,
                            max_length: Some(40),
                            pattern: None,
                            format: Some(DATE_TIME),
                        },
                    ),
                },
                Property {
                    name: "oof_shard",
                    rule: Rule::Text(|o| &o.oof_shard, text(Some(1), 16)),
                },
            ]
        }
    }
}

impl Object for Delivery<'_> {
    fn properties<'t>() -> &'t [Property<Self>]
    where
        Self: 't,
    {
        const {
            &[
                Property {
                    name: "name",
                    rule: Rule::Text(|d| &d.name, text(Some(1), 256)),
                },
                Property {
                    name: "phone",
                    rule: Rule::Text(
                        |d| &d.phone,
                        Text {
                            min_length: Some(1),
                            max_length: Some(32),
                            pattern: Some(PHONE),
                            format: None,
                        },
                    ),
                },
                Property {
                    name: "zip",
                    rule: Rule::Text(|d| &d.zip, text(Some(1), 32)),
                },
                Property {
                    name: "city",
                    rule: Rule::Text(|d| &d.city, text(Some(1), 256)),
                },
                Property {
                    name: "address",
                    rule: Rule::Text(|d| &d.address, text(Some(1), 512)),
                },
                Property {
                    name: "region",
                    rule: Rule::Text(|d| &d.region, text(None, 256)),
                },
                Property {
                    name: "email",
                    rule: Rule::Text(
                        |d| &d.email,
                        Text {
                            min_length: Some(3),
                            max_length: Some(254),
                            pattern: None,
                            format: Some(EMAIL),
                        },
                    ),
                },
            ]
        }
    }
}

impl Object for Payment<'_> {
    fn properties<'t>() -> &'t [Property<Self>]
    where
        Self: 't,
    {
        const {
            &[
                Property {
                    name: "transaction",
                    rule: Rule::Text(|p| &p.transaction, text(Some(1), 64)),
                },
                Property {
                    name: "request_id",
                    rule: Rule::Text(|p| &p.request_id, text(None, 128)),
                },
                Property {
                    name: "currency",
                    rule: Rule::Text(
                        |p| &p.currency,
                        Text {
                            min_length: Some(3),
                            max_length: Some(3),
                            pattern: Some(CURRENCY),
                            format: None,
                        },
                    ),
                },
                Property {
                    name: "provider",
                    rule: Rule::Text(|p| &p.provider, text(Some(1), 64)),
                },
                Property {
                    name: "amount",
                    rule: Rule::Integer(|p| p.amount, integer(MAX_SAFE)),
                },
                Property {
                    name: "payment_dt",
                    rule: Rule::Integer(|p| p.payment_dt, integer(MAX_SAFE)),
                },
                Property {
                    name: "bank",
                    rule: Rule::Text(|p| &p.bank, text(Some(1), 64)),
                },
                Property {
                    name: "delivery_cost",
                    rule: Rule::Integer(|p| p.delivery_cost, integer(MAX_SAFE)),
                },
                Property {
                    name: "goods_total",
                    rule: Rule::Integer(|p| p.goods_total, integer(MAX_SAFE)),
                },
                Property {
                    name: "custom_fee",
                    rule: Rule::Integer(|p| p.custom_fee, integer(MAX_SAFE)),
                },
            ]
        }
    }
}

impl Object for Item<'_> {
    fn properties<'t>() -> &'t [Property<Self>]
    where
        Self: 't,
    {
        const {
            &[
                Property {
                    name: "chrt_id",
                    rule: Rule::Integer(|i| i.chrt_id, integer(MAX_SAFE)),
                },
                Property {
                    name: "track_number",
                    rule: Rule::Text(|i| &i.track_number, text(Some(1), 64)),
                },
                Property {
                    name: "price",
                    rule: Rule::Integer(|i| i.price, integer(MAX_SAFE)),
                },
                Property {
                    name: "rid",
                    rule: Rule::Text(|i| &i.rid, text(Some(1), 64)),
                },
                Property {
                    name: "name",
                    rule: Rule::Text(|i| &i.name, text(Some(1), 256)),
                },
                Property {
                    name: "sale",
                    rule: Rule::Integer(|i| i.sale, integer(100)),
                },
                Property {
                    name: "size",
                    rule: Rule::Text(|i| &i.size, text(None, 32)),
                },
                Property {
                    name: "total_price",
                    rule: Rule::Integer(|i| i.total_price, integer(MAX_SAFE)),
                },
                Property {
                    name: "nm_id",
                    rule: Rule::Integer(|i| i.nm_id, integer(MAX_SAFE)),
                },
                Property {
                    name: "brand",
                    rule: Rule::Text(|i| &i.brand, text(None, 256)),
                },
                Property {
                    name: "status",
                    rule: Rule::Integer(|i| i.status, integer(999)),
                },
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use jsonschema::Validator;
    use proptest::prelude::*;
    use serde_json::Map;

    use super::*;
    use crate::domain::validation::SCHEMA_JSON;

    /// Keywords that only annotate: they constrain nothing.
    const ANNOTATIONS: [&str; 3] = ["$id", "title", "description"];

    /// Every keyword of the schema at `pointer`, as the fast check declares it: structural keywords
    /// (`properties`, `items`) are walked into and `properties` and `required` are compared as sorted name lists.
    fn walk(pointer: &str, schema: &Map<String, Value>, out: &mut Vec<(String, String, Value)>) {
        for (keyword, value) in schema {
            match keyword.as_str() {
                k if ANNOTATIONS.contains(&k) => {}
                "properties" => {
                    let properties = value.as_object().expect("properties is an object");
                    let mut names: Vec<&String> = properties.keys().collect();
                    names.sort_unstable();
                    out.push((pointer.into(), keyword.clone(), json!(names)));
                    for (name, subschema) in properties {
                        let subschema = subschema.as_object().expect("a subschema is an object");
                        walk(&format!("{pointer}/properties/{name}"), subschema, out);
                    }
                }
                "items" => {
                    let subschema = value.as_object().expect("items is a subschema");
                    walk(&format!("{pointer}/items"), subschema, out);
                }
                "required" => {
                    let mut names: Vec<&str> = value
                        .as_array()
                        .expect("required is an array")
                        .iter()
                        .map(|n| n.as_str().expect("a required name is a string"))
                        .collect();
                    names.sort_unstable();
                    out.push((pointer.into(), keyword.clone(), json!(names)));
                }
                _ => out.push((pointer.into(), keyword.clone(), value.clone())),
            }
        }
    }

    #[test]
    fn the_fast_check_enforces_every_constraint_of_the_schema_file_and_no_other() {
        // Arrange
        let schema: Value = serde_json::from_str(SCHEMA_JSON).expect("the schema is JSON");
        let mut in_schema = Vec::new();
        walk("", schema.as_object().expect("an object"), &mut in_schema);
        let in_schema: BTreeSet<(String, String, String)> = in_schema
            .into_iter()
            .map(|(p, k, v)| (p, k, v.to_string()))
            .collect();

        // Act
        let in_fast_check: BTreeSet<(String, String, String)> = declared()
            .into_iter()
            .map(|(p, k, v)| (p, k.to_owned(), v.to_string()))
            .collect();

        // Assert
        let missing: Vec<_> = in_schema.difference(&in_fast_check).collect();
        let extra: Vec<_> = in_fast_check.difference(&in_schema).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "in the schema, not in the fast check: {missing:#?}\nin the fast check, not in the schema: {extra:#?}"
        );
    }

    #[test]
    fn each_table_names_the_fields_the_reader_reads() {
        fn names<T: Object>() -> (Vec<&'static str>, &'static [&'static str]) {
            (T::properties().iter().map(|p| p.name).collect(), T::FIELDS)
        }
        for (table, fields) in [
            names::<Order>(),
            names::<Delivery>(),
            names::<Payment>(),
            names::<Item>(),
        ] {
            assert_eq!(table, fields);
        }
    }

    fn pattern_validator(source: &str) -> Validator {
        jsonschema::validator_for(&json!({"pattern": source})).expect("the pattern compiles")
    }

    /// Strings near the three patterns: their alphabets, a plus, stray characters and a trailing newline.
    fn pattern_like() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z0-9_-]{0,66}",
            "\\+?[0-9]{3,22}",
            "[A-Za-z]{2,4}",
            "[A-Z0-9+ _\n-]{0,8}",
            "[A-Za-z0-9_-]{1,10}\n",
            ".{0,12}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn each_pattern_matches_what_its_regular_expression_matches(text in pattern_like()) {
            for pattern in [ORDER_UID, PHONE, CURRENCY] {
                let regex = pattern_validator(pattern.source);
                prop_assert_eq!(
                    (pattern.matches)(&text),
                    regex.is_valid(&Value::String(text.clone())),
                    "{} on {:?}", pattern.source, text
                );
            }
        }
    }
}
