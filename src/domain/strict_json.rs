//! JSON parsing that refuses what serde_json lets through silently: duplicate keys (it keeps the last one, so two
//! readers could see two different orders), integers beyond i64, NUL characters, and deep nesting.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Deeper documents are refused before parsing; an order is 3 levels deep.
pub(crate) const MAX_DEPTH: usize = 32;

/// Parses `text` into a `Value`, or says in one sentence why it is not acceptable JSON.
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    check_depth(text.as_bytes())?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = StrictValue::deserialize_from(&mut deserializer).map_err(|e| e.to_string())?;
    deserializer
        .end()
        .map_err(|e| format!("trailing characters after the JSON document: {e}"))?;
    Ok(value)
}

/// A byte scan for `[`/`{` nesting outside strings: cheap, and bounds the recursion of the parser below.
fn check_depth(bytes: &[u8]) -> Result<(), String> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

struct StrictValue;

impl StrictValue {
    fn deserialize_from<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictValue)
    }
}

impl<'de> de::DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictValue)
    }
}

fn check_string<E: de::Error>(s: &str) -> Result<(), E> {
    if s.contains('\0') {
        return Err(E::custom("string contains a NUL character"));
    }
    Ok(())
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        if i64::try_from(v).is_err() {
            return Err(E::custom(format!(
                "integer {v} is beyond the 64-bit signed range"
            )));
        }
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // Integers too large for u64 arrive here as floats; those are out of range too.
        if v.fract() == 0.0 && v.abs() >= 9.223_372_036_854_776e18 {
            return Err(E::custom(format!(
                "number {v} is beyond the 64-bit signed range"
            )));
        }
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        check_string(v)?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        check_string(&v)?;
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            check_string(&key)?;
            let value = map.next_value_seed(StrictValue)?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_serde_json_accepts_silently() {
        let cases = [
            (r#"{"a":1,"a":2}"#, "duplicate key"),
            (r#"{"a":9223372036854775808}"#, "64-bit"),
            (r#"{"a":1e30}"#, "64-bit"),
            (r#"{"a":"x\u0000y"}"#, "NUL"),
            (r#"{"a":1} x"#, "trailing"),
        ];
        for (input, expected) in cases {
            let error = parse(input).expect_err(input);
            assert!(error.contains(expected), "{input}: {error}");
        }
    }

    #[test]
    fn depth_is_bounded_before_parsing() {
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).is_err_and(|e| e.contains("nested")));
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
        // Brackets inside strings do not count.
        assert!(parse(&format!("{{\"a\":\"{}\"}}", "[".repeat(100))).is_ok());
    }
}
