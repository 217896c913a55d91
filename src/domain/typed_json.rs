//! Reads JSON text straight into the typed `Order`, refusing everything `strict_json` refuses: a key twice,
//! integers beyond i64, NUL characters, trailing characters. Unknown fields and missing ones are refused too, as the
//! schema refuses them.
//!
//! Written out rather than derived: serde's derived `Deserialize` takes a JSON array where a struct is expected
//! (fields by position), which the schema does not; here every object must be a JSON object.
//!
//! A string without escapes is borrowed from `text` (serde_json hands it over as it stands in the input); one with
//! escapes is owned, as serde_json must unescape it.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::order::{Delivery, Item, Order, Payment};

/// `text` as an order, or the first thing that keeps it from being read as one.
pub(crate) fn parse(text: &str) -> Result<Order<'_>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let order = Order::read(&mut deserializer)?;
    deserializer.end()?;
    Ok(order)
}

/// The fields a JSON object of this type must hold, each exactly once, in the order the type serializes them.
pub trait Fields {
    const FIELDS: &'static [&'static str];
}

/// A type read strictly from JSON.
trait Strict<'de>: Sized {
    fn read<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error>;
}

/// Reads a `T` strictly where serde asks for a seed (a map value, an array element).
struct Seed<T>(PhantomData<T>);

impl<'de, T: Strict<'de>> DeserializeSeed<'de> for Seed<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        T::read(deserializer)
    }
}

impl<'de> Strict<'de> for i64 {
    /// serde_json refuses floats and integers beyond i64 here, as `strict_json` does.
    fn read<D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        i64::deserialize(deserializer)
    }
}

impl<'de> Strict<'de> for Cow<'de, str> {
    fn read<D: Deserializer<'de>>(deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string without NUL characters")
    }

    /// A string as it stands in the input: it holds no escape, and serde_json refuses a raw control character in a
    /// string, so it holds no NUL either.
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    /// A string serde_json unescaped: only an escape (`\u0000`) can have put a NUL in it.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        if v.contains('\0') {
            return Err(E::custom("string contains a NUL character"));
        }
        Ok(Cow::Owned(v.to_owned()))
    }
}

impl<'de, T: Strict<'de>> Strict<'de> for Vec<T> {
    fn read<D: Deserializer<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
        deserializer.deserialize_seq(ArrayVisitor(PhantomData))
    }
}

struct ArrayVisitor<T>(PhantomData<T>);

impl<'de, T: Strict<'de>> Visitor<'de> for ArrayVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Seed(PhantomData))? {
            items.push(item);
        }
        Ok(items)
    }
}

/// Implements `Fields` and `Strict` for a struct from the list of its fields, in the struct's order (`canonical`
/// reads it as the order the type serializes, and its tests fail otherwise). The struct literal at the end names
/// every field, so adding one to the type without adding it here does not compile.
macro_rules! strict_object {
    ($name:ident { $($field:ident),+ $(,)? }) => {
        impl Fields for $name<'_> {
            const FIELDS: &'static [&'static str] = &[$(stringify!($field)),+];
        }

        impl<'de> Strict<'de> for $name<'de> {
            fn read<D: Deserializer<'de>>(deserializer: D) -> Result<$name<'de>, D::Error> {
                #[allow(non_camel_case_types)]
                enum Field {
                    $($field),+
                }

                struct FieldVisitor;

                impl Visitor<'_> for FieldVisitor {
                    type Value = Field;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a field of ", stringify!($name)))
                    }

                    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                        match v {
                            $(stringify!($field) => Ok(Field::$field),)+
                            _ => Err(E::unknown_field(v, <$name<'static> as Fields>::FIELDS)),
                        }
                    }
                }

                struct FieldSeed;

                impl<'de> DeserializeSeed<'de> for FieldSeed {
                    type Value = Field;

                    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Field, D::Error> {
                        deserializer.deserialize_str(FieldVisitor)
                    }
                }

                struct ObjectVisitor;

                impl<'de> Visitor<'de> for ObjectVisitor {
                    type Value = $name<'de>;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a JSON object for ", stringify!($name)))
                    }

                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$name<'de>, A::Error> {
                        $(let mut $field = None;)+
                        while let Some(key) = map.next_key_seed(FieldSeed)? {
                            match key {
                                $(Field::$field => {
                                    if $field.is_some() {
                                        return Err(de::Error::duplicate_field(stringify!($field)));
                                    }
                                    $field = Some(map.next_value_seed(Seed(PhantomData))?);
                                })+
                            }
                        }
                        Ok($name {
                            $($field: $field.ok_or_else(|| de::Error::missing_field(stringify!($field)))?,)+
                        })
                    }
                }

                // `deserialize_map`, not `deserialize_struct`: serde_json takes only `{` here.
                deserializer.deserialize_map(ObjectVisitor)
            }
        }
    };
}

strict_object!(Order {
    order_uid,
    track_number,
    entry,
    delivery,
    payment,
    items,
    locale,
    internal_signature,
    customer_id,
    delivery_service,
    shardkey,
    sm_id,
    date_created,
    oof_shard,
});

strict_object!(Delivery {
    name,
    phone,
    zip,
    city,
    address,
    region,
    email,
});

strict_object!(Payment {
    transaction,
    request_id,
    currency,
    provider,
    amount,
    payment_dt,
    bank,
    delivery_cost,
    goods_total,
    custom_fee,
});

strict_object!(Item {
    chrt_id,
    track_number,
    price,
    rid,
    name,
    sale,
    size,
    total_price,
    nm_id,
    brand,
    status,
});

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    const SAMPLE: &str = include_str!("../../schema/examples/order.valid.json");

    /// The sample as compact JSON with `from` replaced by `to` (once).
    fn sample_replacing(from: &str, to: &str) -> String {
        let compact = serde_json::from_str::<Value>(SAMPLE)
            .expect("the sample is JSON")
            .to_string();
        assert!(compact.contains(from), "the sample holds {from}");
        compact.replacen(from, to, 1)
    }

    #[test]
    fn the_sample_reads_as_the_derived_deserialize_reads_it() {
        // Arrange
        let derived: Order = serde_json::from_str(SAMPLE).expect("derived read");

        // Act
        let strict = parse(SAMPLE).expect("strict read");

        // Assert
        assert_eq!(strict, derived);
    }

    #[test]
    fn what_strict_json_refuses_is_refused_here_too() {
        let cases = [
            (
                "a key twice",
                sample_replacing(r#""entry":"WBIL","#, r#""entry":"WBIL","entry":"EVIL","#),
                "duplicate field",
            ),
            (
                "a nested key twice",
                sample_replacing(r#""sale":30,"#, r#""sale":30,"sale":31,"#),
                "duplicate field",
            ),
            (
                "an integer beyond i64",
                sample_replacing(r#""sm_id":99"#, r#""sm_id":9223372036854775808"#),
                "invalid value",
            ),
            (
                "a float",
                sample_replacing(r#""sm_id":99"#, r#""sm_id":99.0"#),
                "invalid type",
            ),
            (
                "an escaped NUL",
                sample_replacing(r#""entry":"WBIL""#, r#""entry":"WB\u0000IL""#),
                "NUL",
            ),
            (
                "a raw NUL",
                sample_replacing(r#""entry":"WBIL""#, "\"entry\":\"WB\0IL\""),
                "control character",
            ),
            (
                "trailing characters",
                sample_replacing("", "") + " x",
                "trailing",
            ),
            (
                "an unknown field",
                sample_replacing(r#""entry":"WBIL","#, r#""entry":"WBIL","admin":true,"#),
                "unknown field",
            ),
            (
                "a missing field",
                sample_replacing(r#""entry":"WBIL","#, ""),
                "missing field",
            ),
        ];
        for (description, text, expected) in cases {
            // Act
            let error = parse(&text).expect_err(description).to_string();

            // Assert
            assert!(error.contains(expected), "{description}: {error}");
        }
    }

    #[test]
    fn strings_are_borrowed_from_the_text_unless_they_hold_an_escape() {
        // Arrange
        let text = sample_replacing(r#""entry":"WBIL""#, r#""entry":"W\"BIL""#);

        // Act
        let order = parse(&text).expect("an order");

        // Assert
        assert_eq!(order.entry, r#"W"BIL"#);
        assert!(matches!(order.entry, Cow::Owned(_)), "escaped: owned");
        let plain = [
            &order.order_uid,
            &order.date_created,
            &order.delivery.email,
            &order.payment.currency,
            &order.items[0].name,
        ];
        for text in plain {
            assert!(matches!(text, Cow::Borrowed(_)), "{text} is borrowed");
        }
    }

    #[test]
    fn an_array_of_field_values_is_not_an_order_although_derive_takes_it() {
        // Arrange: the sample's payment as an array of its values, in field order.
        let sample: Value = serde_json::from_str(SAMPLE).expect("the sample is JSON");
        let payment = &sample["payment"];
        let by_position: Vec<&Value> = Payment::FIELDS.iter().map(|f| &payment[*f]).collect();
        let text = sample_replacing(
            &payment.to_string(),
            &serde_json::to_string(&by_position).expect("values serialize"),
        );

        // Act
        let derived = serde_json::from_str::<Order>(&text);
        let strict = parse(&text);

        // Assert
        assert!(derived.is_ok(), "derive reads fields by position");
        assert!(strict.is_err_and(|e| e.to_string().contains("invalid type: sequence")));
    }
}
