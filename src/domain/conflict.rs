//! The conflict diff: how a second version of an order_uid differs from the stored one.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::domain::RejectReason;

/// Most differences listed in one conflict dead letter.
const MAX_DIFFERENCES: usize = 32;

/// `None` when the documents are the same order; otherwise the JSON pointers where the new one differs.
pub fn compare_documents(stored: &[u8], new: &[u8]) -> Option<Vec<RejectReason>> {
    if stored == new {
        return None;
    }
    // Byte-different documents may still be equal JSON (an older serializer): compare the values.
    let (Ok(stored), Ok(new)) = (
        serde_json::from_slice::<Value>(stored),
        serde_json::from_slice::<Value>(new),
    ) else {
        return Some(vec![conflict_reason(String::new())]);
    };
    if stored == new {
        return None;
    }
    let mut pointers = Vec::new();
    collect_differences(&stored, &new, String::new(), &mut pointers);
    Some(pointers.into_iter().map(conflict_reason).collect())
}

fn conflict_reason(pointer: String) -> RejectReason {
    RejectReason {
        pointer,
        message: "differs from the order stored under this order_uid; the first version stays"
            .into(),
    }
}

fn collect_differences(stored: &Value, new: &Value, pointer: String, out: &mut Vec<String>) {
    if out.len() >= MAX_DIFFERENCES || stored == new {
        return;
    }
    match (stored, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let (x, y) = (
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                );
                collect_differences(x, y, format!("{pointer}/{}", escape_pointer(key)), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                collect_differences(x, y, format!("{pointer}/{i}"), out);
            }
        }
        _ => out.push(pointer),
    }
}

/// RFC 6901 escaping of one pointer segment.
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_documents_are_duplicates_even_if_formatted_differently() {
        assert_eq!(compare_documents(br#"{"a":1}"#, br#"{"a":1}"#), None);
        assert_eq!(
            compare_documents(br#"{"a":1,"b":2}"#, br#"{ "b": 2, "a": 1 }"#),
            None
        );
    }

    #[test]
    fn conflicts_name_every_differing_pointer() {
        let reasons = compare_documents(
            br#"{"a":1,"d":{"city":"X","zip":"1"},"items":[{"p":1}]}"#,
            br#"{"a":1,"d":{"city":"Y","zip":"1"},"items":[{"p":2}],"e/x":0}"#,
        )
        .expect("a conflict");
        let pointers: Vec<&str> = reasons.iter().map(|r| r.pointer.as_str()).collect();
        assert_eq!(pointers, ["/d/city", "/e~1x", "/items/0/p"]);
    }
}
