//! The hostile-input suite: every kind of bad message we can think of gets a clear class and reason, never a panic;
//! plus properties over arbitrary bytes and mutations of the sample.

use order_service::domain::{OrderSchema, RejectClass, DEFAULT_MAX_BYTES};
use proptest::prelude::*;
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
