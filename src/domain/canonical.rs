//! Whether a message is already its order's canonical document, so the fast path can store the message's own bytes
//! instead of serializing the order again.
//!
//! The canonical document is what `serde_json` writes for the typed `Order`: no blanks, the fields in the type's
//! order, integers without a sign on zero, strings escaped only where they must be (`\"`, `\\`, the short forms
//! `\b \f \n \r \t`, other control characters as `\u00xx` in lower case; everything else as the character itself).
//! Publishers that print a struct or an object in the model's order (`serde_json`, JavaScript's `JSON.stringify`,
//! the order generator) write exactly that, so for them one scan of the bytes replaces a serialization.
//!
//! The scan knows nothing of the order's rules: it is asked only about text `typed_json::parse` has read as an
//! order, so every object holds exactly its type's fields and every number is an i64. Given that, it accepts only
//! text the serializer would write byte for byte; anything else (a blank, a field out of order, `\/`) answers `false`
//! and the order is serialized as before.

use super::order::{Delivery, Item, Order, Payment};
use super::typed_json::Fields;

/// The field lists of the order's object types. Their first fields differ, so an object's first key names its list.
const FIELD_LISTS: [&[&str]; 4] = [
    Order::FIELDS,
    Delivery::FIELDS,
    Payment::FIELDS,
    Item::FIELDS,
];

/// Deepest nesting in an order: the order, its items, an item.
const MAX_DEPTH: usize = 3;

/// An open object or array.
#[derive(Clone, Copy)]
enum Open {
    /// An object: its field list (known from its first key) and how many of its keys were seen.
    Object(Option<&'static [&'static str]>, usize),
    Array,
}

/// True only if serializing the order `text` was read as writes `text` again, byte for byte. `text` must be what
/// `typed_json::parse` accepted.
pub(crate) fn is_canonical(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut open = [Open::Array; MAX_DEPTH];
    let mut depth = 0;
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        at += 1;
        match byte {
            b'{' | b'[' => {
                if depth == MAX_DEPTH {
                    return false;
                }
                open[depth] = match byte {
                    b'{' => Open::Object(None, 0),
                    _ => Open::Array,
                };
                depth += 1;
            }
            b'}' | b']' => {
                let Some(top) = depth.checked_sub(1) else {
                    return false;
                };
                let closed = match open[top] {
                    Open::Object(fields, seen) => {
                        byte == b'}' && fields.map_or(0, <[&str]>::len) == seen
                    }
                    Open::Array => byte == b']',
                };
                if !closed {
                    return false;
                }
                depth = top;
                continue;
            }
            b',' => {}
            b'"' => {
                // A value: keys are read where an object starts or goes on (below).
                let Some(end) = string_end(bytes, at) else {
                    return false;
                };
                at = end + 1;
                continue;
            }
            // An integer `-0` would be written as `0`. serde_json reads `-0` as a float, which the typed parse
            // refuses, so this does not arise today; it is checked so that the answer does not rest on that.
            b'-' if bytes.get(at) == Some(&b'0') => return false,
            b' ' | b'\t' | b'\n' | b'\r' => return false,
            b'0'..=b'9' => {
                at += bytes[at..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                continue;
            }
            _ => continue,
        }
        // After `{`, `[` or `,`: in an object, the next key must follow at once, written as the serializer writes it.
        let Some(Open::Object(fields, seen)) = depth.checked_sub(1).map(|top| &mut open[top])
        else {
            continue;
        };
        if byte == b'{' && bytes.get(at) == Some(&b'}') {
            continue;
        }
        let rest = &bytes[at..];
        let list = match fields {
            Some(list) => *list,
            None => match FIELD_LISTS
                .iter()
                .find(|list| list.first().is_some_and(|key| is_key(rest, key)))
            {
                Some(list) => {
                    *fields = Some(*list);
                    *list
                }
                None => return false,
            },
        };
        match list.get(*seen) {
            Some(key) if is_key(rest, key) => {
                *seen += 1;
                at += key.len() + 3;
            }
            _ => return false,
        }
    }
    depth == 0
}

/// Whether `rest` starts with `key` written as a key: `"key":`.
fn is_key(rest: &[u8], key: &str) -> bool {
    let key = key.as_bytes();
    rest.len() > key.len() + 2
        && rest[0] == b'"'
        && &rest[1..=key.len()] == key
        && rest[key.len() + 1] == b'"'
        && rest[key.len() + 2] == b':'
}

/// The index of the quote that closes the string whose first character is at `from`, if every escape in it is the
/// one the serializer writes.
fn string_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        // Eight bytes at a time while none is a quote or a backslash, then byte by byte.
        while let Some(&word) = bytes.get(at..).and_then(|rest| rest.first_chunk::<8>()) {
            let word = u64::from_le_bytes(word);
            if holds_byte(word, b'"') || holds_byte(word, b'\\') {
                break;
            }
            at += 8;
        }
        at += bytes
            .get(at..)?
            .iter()
            .position(|&b| b == b'"' || b == b'\\')?;
        if bytes.get(at) == Some(&b'"') {
            return Some(at);
        }
        // A backslash: the escape it starts.
        at += match *bytes.get(at + 1)? {
            b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
            b'u' if is_written_as_u_escape(bytes.get(at + 2..at + 6)?) => 6,
            _ => return None,
        };
    }
}

/// Whether any of the eight bytes of `word` is `byte` (the classic test for a zero byte, applied to `word ^ byte`s).
fn holds_byte(word: u64, byte: u8) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero_where_equal = word ^ (ONES * u64::from(byte));
    zero_where_equal.wrapping_sub(ONES) & !zero_where_equal & HIGHS != 0
}

/// Whether the four hex digits of a `\u` escape are the serializer's: a control character without a short form,
/// in lower case.
fn is_written_as_u_escape(digits: &[u8]) -> bool {
    let [b'0', b'0', high @ (b'0' | b'1'), low] = *digits else {
        return false;
    };
    let low = match low {
        b'0'..=b'9' => low - b'0',
        b'a'..=b'f' => low - b'a' + 10,
        _ => return false,
    };
    let code = ((high - b'0') << 4) | low;
    !matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::typed_json;

    const SAMPLE: &str = include_str!("../../schema/examples/order.valid.json");

    /// The sample as the serializer writes it.
    fn canonical_sample() -> String {
        let order = typed_json::parse(SAMPLE).expect("the sample is an order");
        serde_json::to_string(&order).expect("an order serializes")
    }

    /// Asserts the scan's answer for `text` and, where it says canonical, that it is right.
    fn assert_scan(text: &str, expected: bool, description: &str) {
        let order = typed_json::parse(text).expect(description);
        let written = serde_json::to_string(&order).expect("an order serializes");
        assert_eq!(is_canonical(text), expected, "{description}: {text}");
        assert_eq!(
            written == text,
            expected,
            "{description}: the serializer writes {written}"
        );
    }

    #[test]
    fn what_the_serializer_writes_is_canonical() {
        assert_scan(&canonical_sample(), true, "the sample");
    }

    #[test]
    fn escapes_are_canonical_exactly_where_the_serializer_writes_them() {
        let cases = [
            (r#"q\"q"#, true),
            (r#"b\\s"#, true),
            (r#"\b\f\n\r\t"#, true),
            (r#"\u0001\u001f\u000b"#, true),
            (r#"\u001F"#, false),
            (r#"\u0008"#, false),
            (r#"\u000a"#, false),
            (r#"\u0041"#, false),
            (r#"\u00e9"#, false),
            (r#"\/"#, false),
            ("é😀\u{7f}\u{2028}", true),
        ];
        let sample = canonical_sample();
        for (written, expected) in cases {
            let text = sample.replacen(r#""entry":"WBIL""#, &format!(r#""entry":"{written}""#), 1);
            assert_scan(&text, expected, written);
        }
    }

    #[test]
    fn blanks_and_fields_out_of_order_are_not_canonical() {
        let sample = canonical_sample();
        let cases = [
            ("a blank after a colon", sample.replacen(":", ": ", 1)),
            ("a newline at the end", format!("{sample}\n")),
            ("a blank at the start", format!(" {sample}")),
            (
                "two fields swapped",
                sample.replacen(
                    r#""track_number":"WBILMTESTTRACK","entry":"WBIL""#,
                    r#""entry":"WBIL","track_number":"WBILMTESTTRACK""#,
                    1,
                ),
            ),
            (
                "two fields of an item swapped",
                sample.replacen(r#""sale":30,"size":"0""#, r#""size":"0","sale":30"#, 1),
            ),
            (
                "a key escaped",
                sample.replacen(r#""locale""#, r#""\u006cocale""#, 1),
            ),
        ];
        for (description, text) in cases {
            assert_ne!(
                text, sample,
                "{description}: the sample holds what is replaced"
            );
            assert_scan(&text, false, description);
        }
    }

    #[test]
    fn minus_zero_is_not_canonical_though_no_order_holds_it_today() {
        let text = canonical_sample().replacen(r#""status":202"#, r#""status":-0"#, 1);
        assert!(
            typed_json::parse(&text).is_err(),
            "serde_json reads -0 as a float"
        );
        assert!(!is_canonical(&text));
    }

    #[test]
    fn negative_numbers_are_canonical() {
        let text = canonical_sample().replacen(r#""status":202"#, r#""status":-7"#, 1);
        assert_scan(&text, true, "a negative status");
    }
}
