//! The hostile-input suite: every kind of bad message we can think of gets a clear class and reason, never a panic;
//! plus properties over arbitrary bytes and mutations of the sample, and the differential test of the fast path
//! against the reference path.

use order_service::domain::generator;
use order_service::domain::{
    Delivery, Fields, Item, Order, OrderSchema, Payment, RejectClass, DEFAULT_MAX_BYTES,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};

const SAMPLE: &str = include_str!("fixtures/model.json");

fn schema() -> OrderSchema {
    OrderSchema::new(DEFAULT_MAX_BYTES).expect("the order schema compiles")
}

fn sample() -> Value {
    serde_json::from_str(SAMPLE).expect("the sample is JSON")
}

/// The sample with one change applied.
fn sample_with(change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value = sample();
    change(&mut value);
    value.to_string().into_bytes()
}

fn remove(path: &[&str]) -> Vec<u8> {
    let (last, parents) = path.split_last().expect("non-empty path");
    sample_with(|v| {
        let mut node = v;
        for p in parents {
            node = &mut node[*p];
        }
        node.as_object_mut().expect("object").remove(*last);
    })
}

#[test]
fn hostile_messages_are_rejected_with_their_reason() {
    let schema = schema();
    let long_string = "x".repeat(10_000);
    let cases: Vec<(&str, Vec<u8>, RejectClass, &str)> = vec![
        (
            "empty message",
            b"".to_vec(),
            RejectClass::MalformedJson,
            "EOF",
        ),
        (
            "whitespace only",
            b"  \n\t ".to_vec(),
            RejectClass::MalformedJson,
            "EOF",
        ),
        (
            "plain text",
            b"hello".to_vec(),
            RejectClass::MalformedJson,
            "expected",
        ),
        (
            "random bytes",
            vec![0xff, 0xfe, 0x00, 0x13],
            RejectClass::InvalidUtf8,
            "UTF-8",
        ),
        (
            "latin-1 text",
            b"{\"order_uid\":\"caf\xe9\"}".to_vec(),
            RejectClass::InvalidUtf8,
            "UTF-8",
        ),
        (
            "raw NUL byte",
            b"{\"a\":1}\0".to_vec(),
            RejectClass::MalformedJson,
            "trailing",
        ),
        (
            "escaped NUL in a string",
            sample_with(|v| v["entry"] = json!("WB\u{0}IL")),
            RejectClass::MalformedJson,
            "NUL",
        ),
        (
            "huge payload",
            vec![b' '; DEFAULT_MAX_BYTES + 1],
            RejectClass::TooLarge,
            "limit",
        ),
        (
            "deep nesting",
            ("[".repeat(10_000) + &"]".repeat(10_000)).into_bytes(),
            RejectClass::MalformedJson,
            "nested",
        ),
        (
            "integer beyond i64",
            SAMPLE
                .replace("\"sm_id\": 99", "\"sm_id\": 99999999999999999999")
                .into_bytes(),
            RejectClass::MalformedJson,
            "64-bit",
        ),
        (
            "u64 beyond i64",
            SAMPLE
                .replace("\"sm_id\": 99", "\"sm_id\": 18446744073709551615")
                .into_bytes(),
            RejectClass::MalformedJson,
            "64-bit",
        ),
        (
            "duplicate key",
            SAMPLE
                .replacen(
                    "\"entry\": \"WBIL\",",
                    "\"entry\": \"WBIL\", \"entry\": \"EVIL\",",
                    1,
                )
                .into_bytes(),
            RejectClass::MalformedJson,
            "duplicate key",
        ),
        (
            "trailing garbage",
            format!("{SAMPLE} trailing").into_bytes(),
            RejectClass::MalformedJson,
            "trailing",
        ),
        (
            "two documents",
            format!("{SAMPLE}{SAMPLE}").into_bytes(),
            RejectClass::MalformedJson,
            "trailing",
        ),
        (
            "byte order mark",
            format!("\u{feff}{SAMPLE}").into_bytes(),
            RejectClass::MalformedJson,
            "expected",
        ),
        (
            "truncated document",
            SAMPLE.as_bytes()[..SAMPLE.len() / 2].to_vec(),
            RejectClass::MalformedJson,
            "EOF",
        ),
        ("JSON null", b"null".to_vec(), RejectClass::Schema, "object"),
        (
            "array at top level",
            format!("[{SAMPLE}]").into_bytes(),
            RejectClass::Schema,
            "object",
        ),
        (
            "string at top level",
            b"\"order\"".to_vec(),
            RejectClass::Schema,
            "object",
        ),
        (
            "empty object",
            b"{}".to_vec(),
            RejectClass::Schema,
            "required",
        ),
        (
            "missing order_uid",
            remove(&["order_uid"]),
            RejectClass::Schema,
            "order_uid",
        ),
        (
            "missing delivery",
            remove(&["delivery"]),
            RejectClass::Schema,
            "delivery",
        ),
        (
            "missing payment",
            remove(&["payment"]),
            RejectClass::Schema,
            "payment",
        ),
        (
            "missing items",
            remove(&["items"]),
            RejectClass::Schema,
            "items",
        ),
        (
            "missing nested email",
            remove(&["delivery", "email"]),
            RejectClass::Schema,
            "email",
        ),
        (
            "missing item price",
            sample_with(|v| {
                v["items"][0].as_object_mut().expect("item").remove("price");
            }),
            RejectClass::Schema,
            "price",
        ),
        (
            "amount as string",
            sample_with(|v| v["payment"]["amount"] = json!("1817")),
            RejectClass::Schema,
            "integer",
        ),
        (
            "float where integer",
            sample_with(|v| v["payment"]["amount"] = json!(18.17)),
            RejectClass::Schema,
            "integer",
        ),
        (
            "negative amount",
            sample_with(|v| v["payment"]["amount"] = json!(-1)),
            RejectClass::Schema,
            "minimum",
        ),
        (
            "sale above 100",
            sample_with(|v| v["items"][0]["sale"] = json!(150)),
            RejectClass::Schema,
            "maximum",
        ),
        (
            "items not an array",
            sample_with(|v| v["items"] = json!({})),
            RejectClass::Schema,
            "array",
        ),
        (
            "empty items",
            sample_with(|v| v["items"] = json!([])),
            RejectClass::Schema,
            "items",
        ),
        (
            "too many items",
            sample_with(|v| {
                let item = v["items"][0].clone();
                v["items"] = Value::Array(vec![item; 1001]);
            }),
            RejectClass::Schema,
            "1000",
        ),
        (
            "unknown top-level field",
            sample_with(|v| v["admin"] = json!(true)),
            RejectClass::Schema,
            "admin",
        ),
        (
            "unknown nested field",
            sample_with(|v| v["payment"]["discount"] = json!(5)),
            RejectClass::Schema,
            "discount",
        ),
        (
            "bad date",
            sample_with(|v| v["date_created"] = json!("yesterday")),
            RejectClass::Schema,
            "date-time",
        ),
        (
            "bad email",
            sample_with(|v| v["delivery"]["email"] = json!("not-an-email")),
            RejectClass::Schema,
            "email",
        ),
        (
            "order_uid with markup",
            sample_with(|v| v["order_uid"] = json!("<script>alert(1)</script>")),
            RejectClass::Schema,
            "does not match",
        ),
        (
            "order_uid empty",
            sample_with(|v| v["order_uid"] = json!("")),
            RejectClass::Schema,
            "order_uid",
        ),
        (
            "very long name",
            sample_with(|v| v["delivery"]["name"] = json!(long_string)),
            RejectClass::Schema,
            "longer",
        ),
        (
            "lowercase currency",
            sample_with(|v| v["payment"]["currency"] = json!("usd")),
            RejectClass::Schema,
            "currency",
        ),
        (
            "goods_total differs from items",
            sample_with(|v| v["payment"]["goods_total"] = json!(318)),
            RejectClass::Inconsistent,
            "goods_total",
        ),
        (
            "amount differs from the parts",
            sample_with(|v| v["payment"]["amount"] = json!(1000)),
            RejectClass::Inconsistent,
            "amount",
        ),
    ];
    assert!(cases.len() >= 30);
    for (description, message, class, reason) in cases {
        match schema.validate(&message) {
            Ok(order) => panic!("{description}: accepted as order {}", order.uid),
            Err(rejection) => {
                assert_eq!(rejection.class, class, "{description}: {rejection}");
                assert!(
                    !rejection.reasons.is_empty(),
                    "{description}: no reason given"
                );
                let text = rejection.to_string();
                assert!(
                    text.contains(reason),
                    "{description}: expected {reason:?} in {text:?}"
                );
            }
        }
    }
}

#[test]
fn valid_variants_are_accepted_and_flagged_where_the_policy_says() {
    let schema = schema();
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        ("the sample", SAMPLE.as_bytes().to_vec(), vec![]),
        ("compact sample", sample().to_string().into_bytes(), vec![]),
        (
            "markup in a name stays data",
            sample_with(|v| v["delivery"]["name"] = json!("<b>bold</b>")),
            vec![],
        ),
        (
            "other transaction id",
            sample_with(|v| v["payment"]["transaction"] = json!("other")),
            vec!["transaction_mismatch"],
        ),
        (
            "item with its own track number",
            sample_with(|v| v["items"][0]["track_number"] = json!("OTHER")),
            vec!["item_track_number_mismatch"],
        ),
        (
            "item total off the sale",
            sample_with(|v| {
                v["items"][0]["total_price"] = json!(300);
                v["payment"]["goods_total"] = json!(300);
                v["payment"]["amount"] = json!(1800);
            }),
            vec!["item_total_mismatch"],
        ),
    ];
    for (description, message, expected_flags) in cases {
        let order = schema
            .validate(&message)
            .unwrap_or_else(|rejection| panic!("{description}: rejected: {rejection}"));
        let flags: Vec<&str> = order.flags.iter().map(|f| f.as_str()).collect();
        assert_eq!(flags, expected_flags, "{description}");
        let served: Value = serde_json::from_slice(&order.document).expect("document is JSON");
        let input: Value = serde_json::from_slice(&message).expect("input is JSON");
        assert_eq!(
            served, input,
            "{description}: the document equals the input"
        );
    }
}

/// A JSON value of bounded size, to mutate the sample with.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_and_rejections_carry_reasons(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Err(rejection) = schema().validate(&bytes) {
            prop_assert!(!rejection.reasons.is_empty());
        }
    }

    #[test]
    fn mutated_samples_never_panic(key in "[a-z_]{1,16}", replacement in any_json(), nested in any::<bool>()) {
        let message = sample_with(|v| {
            let target = if nested { &mut v["payment"] } else { v };
            target[key.as_str()] = replacement;
        });
        match schema().validate(&message) {
            Ok(order) => {
                let served: Value = serde_json::from_slice(&order.document).expect("document is JSON");
                let input: Value = serde_json::from_slice(&message).expect("input is JSON");
                prop_assert_eq!(served, input);
            }
            Err(rejection) => prop_assert!(!rejection.reasons.is_empty()),
        }
    }
}

// The fast path against the reference path (see `src/domain/validation.rs`): what the fast path accepts, the
// reference path accepts with the same order, document and flags, and `validate` answers as the reference path does.

fn generated(seed: u64) -> Value {
    let order = generator::valid_order(&mut StdRng::seed_from_u64(seed));
    serde_json::to_value(order).expect("an order is JSON")
}

#[test]
fn valid_orders_take_the_fast_path() {
    // Arrange
    let schema = schema();
    let mut messages = vec![
        ("the sample".to_owned(), SAMPLE.as_bytes().to_vec()),
        (
            "the compact sample".to_owned(),
            sample().to_string().into_bytes(),
        ),
        (
            "a flagged order".to_owned(),
            sample_with(|v| v["items"][0]["track_number"] = json!("OTHER")),
        ),
    ];
    messages.extend((0..200).map(|seed| {
        (
            format!("generated order {seed}"),
            generated(seed).to_string().into_bytes(),
        )
    }));

    for (description, message) in messages {
        // Act
        let fast = schema.accept_fast(&message);

        // Assert
        let fast = fast.unwrap_or_else(|| panic!("{description}: not accepted by the fast path"));
        assert_eq!(
            Ok(fast),
            schema.validate_reference(&message),
            "{description}: the reference path answers otherwise"
        );
    }
}

/// Lengths around every `minLength` and `maxLength` of the schema.
const LENGTHS: [usize; 28] = [
    0, 1, 2, 3, 4, 5, 15, 16, 17, 19, 20, 21, 31, 32, 33, 39, 40, 41, 63, 64, 65, 128, 129, 254,
    255, 256, 257, 513,
];

/// Characters of one to four bytes in UTF-8, and some the strict reading refuses or that look like separators.
const CHARS: [char; 12] = [
    'a', 'Z', '7', '-', '_', 'é', '€', '😀', '\0', '\n', '\u{feff}', '\u{2028}',
];

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        (prop::sample::select(&LENGTHS[..]), prop::sample::select(&CHARS[..]))
            .prop_map(|(n, c)| c.to_string().repeat(n)),
        "[A-Za-z0-9_-]{0,66}",
        "\\+?[0-9]{3,22}",
        "[A-Za-z]{2,4}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,3})?([Zz]|[+-][0-9]{2}:[0-9]{2})?",
        "(20[0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T(2[0-3]|[01][0-9]):([0-5][0-9]):(60|[0-5][0-9])(Z|[+-]0[0-9]:[03]0)",
        "[a-z0-9.+_-]{0,10}@[a-z0-9.-]{0,12}",
        "(\"[a-z @]{0,4}\"|[a-z]{1,4}|[a-z]{1,3} <[a-z]{1,3})@(\\[[0-9.]{7,11}\\]|xn--[a-z0-9]{1,6}|[a-z]{1,4}\\.[a-z]{2}>?)",
        ".{0,24}",
    ]
}

/// Numbers around every `minimum` and `maximum` of the schema, beyond i64 and u64, and non-integers.
fn hostile_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            json!(-1),
            json!(0),
            json!(1),
            json!(99),
            json!(100),
            json!(101),
            json!(998),
            json!(999),
            json!(1000),
            json!(9_007_199_254_740_991_i64),
            json!(9_007_199_254_740_992_i64),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1.0),
            json!(0.5),
            json!(-0.0),
            json!(1e300),
        ]),
        any::<i64>().prop_map(Value::from),
    ]
}

fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => hostile_string().prop_map(Value::from),
        3 => hostile_number(),
        1 => prop::sample::select(vec![
            Value::Null,
            json!(true),
            json!([]),
            json!({}),
            json!(["a"]),
            json!({"a": 1}),
        ]),
        1 => any_json(),
    ]
}

/// Numbers and other values written as raw text: valid JSON the `Value` printer never writes, and invalid JSON.
const RAW_TOKENS: [&str; 14] = [
    "-0",
    "1E2",
    "1e0",
    "0.0",
    "100e-2",
    "1.5e3",
    "00",
    "+1",
    ".5",
    "NaN",
    "\"\\ud800\"",
    "\"\\u00e9\"",
    "\"a\\/b\"",
    "\"\\u0000\"",
];

#[derive(Debug, Clone)]
enum Mutation {
    /// A node replaced by a value.
    Replace(prop::sample::Index, Value),
    /// A node replaced by raw text.
    Raw(prop::sample::Index, &'static str),
    /// A node replaced by a string written with `\u` escapes only.
    Escaped(prop::sample::Index, String),
    /// A node removed.
    Remove(prop::sample::Index),
    /// A field added to an object.
    Extra(prop::sample::Index, String, Value),
    /// A field written twice in its object, the second time with this value.
    Duplicate(prop::sample::Index, Value),
    /// A field's key written with `\u` escapes only.
    EscapedKey(prop::sample::Index),
    /// The items array as this many copies of its first item.
    Items(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<prop::sample::Index>;
    prop_oneof![
        6 => (at(), hostile_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        1 => (at(), prop::sample::select(&RAW_TOKENS[..])).prop_map(|(i, t)| Mutation::Raw(i, t)),
        1 => (at(), hostile_string()).prop_map(|(i, s)| Mutation::Escaped(i, s)),
        1 => at().prop_map(Mutation::Remove),
        1 => (at(), "[a-z_]{1,12}|order_uid|name|email|sale", hostile_value())
            .prop_map(|(i, k, v)| Mutation::Extra(i, k, v)),
        1 => (at(), hostile_value()).prop_map(|(i, v)| Mutation::Duplicate(i, v)),
        1 => at().prop_map(Mutation::EscapedKey),
        1 => prop::sample::select(vec![0_usize, 2, 5, 999, 1000, 1001]).prop_map(Mutation::Items),
    ]
}

/// A message being built: a JSON value in which marker strings stand for raw text.
struct Draft {
    value: Value,
    raw: Vec<(String, String)>,
}

impl Draft {
    /// A marker string to put into the value, to be written as `raw`.
    fn mark(&mut self, raw: String) -> String {
        let marker = format!("@@raw{}@@", self.raw.len());
        self.raw.push((marker.clone(), raw));
        marker
    }

    /// Pointers to every node below the root, and whether each is an object's field.
    fn nodes(&self) -> Vec<(String, bool)> {
        fn walk(value: &Value, at: &str, out: &mut Vec<(String, bool)>) {
            match value {
                Value::Object(map) => {
                    for (key, child) in map {
                        let pointer = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                        out.push((pointer.clone(), true));
                        walk(child, &pointer, out);
                    }
                }
                Value::Array(items) => {
                    for (i, child) in items.iter().enumerate() {
                        let pointer = format!("{at}/{i}");
                        out.push((pointer.clone(), false));
                        walk(child, &pointer, out);
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&self.value, "", &mut out);
        out
    }

    /// The parent of the node at `pointer`, and the node's key in it.
    fn parent(&mut self, pointer: &str) -> Option<(&mut Value, String)> {
        let (parent, key) = pointer.rsplit_once('/')?;
        let key = key.replace("~1", "/").replace("~0", "~");
        Some((self.value.pointer_mut(parent)?, key))
    }

    fn apply(&mut self, mutation: Mutation) {
        let nodes = self.nodes();
        let pick = |i: &prop::sample::Index| (!nodes.is_empty()).then(|| i.get(&nodes).clone());
        match mutation {
            Mutation::Replace(i, value) => {
                if let Some((pointer, _)) = pick(&i) {
                    if let Some(node) = self.value.pointer_mut(&pointer) {
                        *node = value;
                    }
                }
            }
            Mutation::Raw(i, token) => {
                if let Some((pointer, _)) = pick(&i) {
                    let marker = self.mark(token.to_owned());
                    if let Some(node) = self.value.pointer_mut(&pointer) {
                        *node = Value::String(marker);
                    }
                }
            }
            Mutation::Escaped(i, text) => {
                if let Some((pointer, _)) = pick(&i) {
                    let marker = self.mark(escaped(&text));
                    if let Some(node) = self.value.pointer_mut(&pointer) {
                        *node = Value::String(marker);
                    }
                }
            }
            Mutation::Remove(i) => {
                if let Some((pointer, _)) = pick(&i) {
                    match self.parent(&pointer) {
                        Some((Value::Object(map), key)) => {
                            map.remove(&key);
                        }
                        Some((Value::Array(items), key)) => {
                            if let Ok(index) = key.parse::<usize>() {
                                items.remove(index);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Mutation::Extra(i, key, value) => {
                let objects: Vec<String> = std::iter::once(String::new())
                    .chain(nodes.iter().map(|(p, _)| p.clone()))
                    .filter(|p| self.value.pointer(p).is_some_and(Value::is_object))
                    .collect();
                let target = i.get(&objects).clone();
                if let Some(Value::Object(map)) = self.value.pointer_mut(&target) {
                    map.insert(key, value);
                }
            }
            Mutation::Duplicate(i, value) => {
                if let Some((pointer, true)) = pick(&i) {
                    let marker_key = self.raw.len();
                    if let Some((Value::Object(map), key)) = self.parent(&pointer) {
                        let raw = Value::String(key).to_string();
                        let marker = format!("@@raw{marker_key}@@");
                        map.insert(marker.clone(), value);
                        self.raw.push((marker, raw));
                    }
                }
            }
            Mutation::EscapedKey(i) => {
                if let Some((pointer, true)) = pick(&i) {
                    let marker = format!("@@raw{}@@", self.raw.len());
                    if let Some((Value::Object(map), key)) = self.parent(&pointer) {
                        if let Some(value) = map.remove(&key) {
                            map.insert(marker.clone(), value);
                            self.raw.push((marker, escaped(&key)));
                        }
                    }
                }
            }
            Mutation::Items(count) => {
                if let Some(Value::Array(items)) = self.value.pointer_mut("/items") {
                    if let Some(first) = items.first().cloned() {
                        *items = vec![first; count];
                    }
                }
            }
        }
    }

    /// Makes the amounts add up again where they are integers, so more mutants reach the checks after consistency.
    fn repair(&mut self) {
        let items_total = self
            .value
            .pointer("/items")
            .and_then(Value::as_array)
            .and_then(|items| {
                items.iter().try_fold(0_i64, |sum, item| {
                    sum.checked_add(item.get("total_price")?.as_i64()?)
                })
            });
        let Some(goods_total) = items_total else {
            return;
        };
        let parts = ["/payment/delivery_cost", "/payment/custom_fee"]
            .map(|p| self.value.pointer(p).and_then(Value::as_i64));
        if let Some(node) = self.value.pointer_mut("/payment/goods_total") {
            *node = json!(goods_total);
        }
        if let [Some(delivery_cost), Some(custom_fee)] = parts {
            let amount = goods_total
                .checked_add(delivery_cost)
                .and_then(|a| a.checked_add(custom_fee));
            if let (Some(amount), Some(node)) = (amount, self.value.pointer_mut("/payment/amount"))
            {
                *node = json!(amount);
            }
        }
    }

    fn text(&self, layout: Layout) -> String {
        let mut text = match layout {
            Layout::Sorted => self.value.to_string(),
            Layout::Pretty => serde_json::to_string_pretty(&self.value).expect("a value prints"),
            Layout::FieldOrder => {
                let mut out = String::new();
                write_in_field_order(&self.value, Order::FIELDS, &mut out);
                out
            }
        };
        for (marker, raw) in &self.raw {
            text = text.replace(&format!("\"{marker}\""), raw);
        }
        text
    }
}

/// How a draft is written out.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// Compact, keys sorted (how `Value` prints).
    Sorted,
    /// Indented, keys sorted.
    Pretty,
    /// Compact, known fields in the model's order and others after them: what publishers that print the model write,
    /// and what the fast path stores as it came.
    FieldOrder,
}

/// Writes `value` compactly, the keys of each object ordered by `fields` (the list for its place in an order), keys
/// not in the list after them.
fn write_in_field_order(value: &Value, fields: &[&str], out: &mut String) {
    match value {
        Value::Object(map) => {
            let rank = |key: &str| {
                fields
                    .iter()
                    .position(|f| *f == key)
                    .unwrap_or(fields.len())
            };
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|key| rank(key));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                let inner: &[&str] = match key.as_str() {
                    "delivery" => Delivery::FIELDS,
                    "payment" => Payment::FIELDS,
                    "items" => Item::FIELDS,
                    _ => &[],
                };
                write_in_field_order(&map[key], inner, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_in_field_order(item, fields, out);
            }
            out.push(']');
        }
        _ => out.push_str(&value.to_string()),
    }
}

/// `text` as a JSON string with every character written as a `\u` escape (surrogate pairs beyond the BMP).
fn escaped(text: &str) -> String {
    let units: String = text
        .encode_utf16()
        .map(|unit| format!("\\u{unit:04x}"))
        .collect();
    format!("\"{units}\"")
}

/// How the whole message is framed around the JSON: mostly not at all, sometimes with blanks, rarely with what
/// makes it something else than one JSON object.
fn framing() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop_oneof![
        8 => Just(("", "")),
        2 => Just((" \n\t", "\r\n ")),
        1 => prop::sample::select(vec![("", " x"), ("\u{feff}", ""), ("", "{}"), ("[", "]")]),
    ]
}

/// Asserts what the fast path must hold to for one message.
fn assert_fast_path_agrees(schema: &OrderSchema, message: &[u8]) -> Result<(), TestCaseError> {
    let reference = schema.validate_reference(message);
    if let Some(fast) = schema.accept_fast(message) {
        prop_assert_eq!(
            Ok(fast),
            reference.clone(),
            "the fast path accepted what the reference path answers otherwise: {}",
            String::from_utf8_lossy(message)
        );
    }
    prop_assert_eq!(schema.validate(message), reference);
    Ok(())
}

/// Strings that probe the patterns and formats of the schema.
const PROBES: [&str; 34] = [
    "+12345",
    "12345",
    "+1234",
    "1234",
    "++12345",
    "+12345678901234567890",
    "+123456789012345678901",
    "12345 ",
    "١٢٣٤٥",
    "USD",
    "usd",
    "US",
    "USDD",
    "ÜSD",
    "abc_DEF-123",
    "abc.def",
    "test@gmail.com",
    "a@b",
    "a.b+c@d-e.fg",
    "\"q\"@example.com",
    "A <a@example.com>",
    "a@[127.0.0.1]",
    "a@xn--nxasmq6b.com",
    "é@example.com",
    "a@example.com.",
    "a..b@example.com",
    "2021-11-26T06:22:19Z",
    "2021-11-26t06:22:19.5+03:00",
    "2021-11-26 06:22:19Z",
    "2021-02-29T06:22:19Z",
    "2016-12-31T23:59:60Z",
    "2016-12-31T23:59:60+01:00",
    "2021-11-26T06:22:19",
    "2021-11-26T06:22:19.123456789012345678901234Z",
];

/// Pointers to every leaf (string, number, ...) of `value`.
fn leaves(value: &Value, at: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => map
            .iter()
            .for_each(|(key, child)| leaves(child, &format!("{at}/{key}"), out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, child)| leaves(child, &format!("{at}/{i}"), out)),
        _ => out.push(at.to_owned()),
    }
}

#[test]
fn every_field_at_its_boundaries_answers_as_on_the_reference_path() {
    // Arrange: strings of every boundary length in characters of one to four bytes (and NUL), the probes, the
    // boundary numbers and the other types; an order of two items, so a second item is probed too.
    let schema = schema();
    let mut values: Vec<Value> = Vec::new();
    for n in LENGTHS {
        for c in ['a', '7', 'é', '😀', '\0'] {
            values.push(c.to_string().repeat(n).into());
        }
    }
    values.extend(PROBES.map(Value::from));
    values.extend(
        [
            -1_i64,
            0,
            1,
            100,
            101,
            999,
            1000,
            9_007_199_254_740_991,
            9_007_199_254_740_992,
        ]
        .map(Value::from),
    );
    values.extend([
        json!(1.0),
        json!(u64::MAX),
        Value::Null,
        json!(true),
        json!([]),
        json!({}),
    ]);
    let base = (0..)
        .map(generated)
        .find(|order| {
            order["items"]
                .as_array()
                .is_some_and(|items| items.len() == 2)
        })
        .expect("the generator makes two-item orders");
    let mut pointers = Vec::new();
    leaves(&base, "", &mut pointers);

    for pointer in &pointers {
        for value in &values {
            let mut draft = Draft {
                value: base.clone(),
                raw: Vec::new(),
            };
            if let Some(node) = draft.value.pointer_mut(pointer) {
                *node = value.clone();
            }
            // Item totals and fees are probed with the sums made to add up again, so they reach the schema's bounds.
            if !["/payment/goods_total", "/payment/amount"].contains(&pointer.as_str()) {
                draft.repair();
            }

            // Act and Assert
            for layout in [Layout::Sorted, Layout::FieldOrder] {
                if let Err(failure) =
                    assert_fast_path_agrees(&schema, draft.text(layout).as_bytes())
                {
                    panic!("{pointer} = {value}, {layout:?}: {failure}");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn the_fast_path_never_accepts_what_the_reference_path_refuses(
        seed in prop::option::weighted(0.7, any::<u64>()),
        mutations in prop::collection::vec(mutation(), 0..4),
        repair in any::<bool>(),
        layout in prop::sample::select(vec![Layout::Sorted, Layout::Pretty, Layout::FieldOrder]),
        framing in framing(),
    ) {
        // Arrange
        let mut draft = Draft { value: seed.map_or_else(sample, generated), raw: Vec::new() };
        for mutation in mutations {
            draft.apply(mutation);
        }
        if repair {
            draft.repair();
        }
        let message = format!("{}{}{}", framing.0, draft.text(layout), framing.1).into_bytes();

        // Act and Assert
        assert_fast_path_agrees(&schema(), &message)?;
    }
}
