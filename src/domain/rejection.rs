use serde::{Deserialize, Serialize};

/// Why a message is not an order, coarsely: the label of `orders_rejected_total` and the `reason_class` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectClass {
    TooLarge,
    InvalidUtf8,
    MalformedJson,
    Schema,
    Inconsistent,
    /// Set by the persister: the order_uid is stored already, with other content.
    Conflict,
    /// Set by the persister: PostgreSQL refused to store the message, alone, every time it was tried.
    Storage,
}

impl RejectClass {
    pub const ALL: [RejectClass; 7] = [
        RejectClass::TooLarge,
        RejectClass::InvalidUtf8,
        RejectClass::MalformedJson,
        RejectClass::Schema,
        RejectClass::Inconsistent,
        RejectClass::Conflict,
        RejectClass::Storage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectClass::TooLarge => "too_large",
            RejectClass::InvalidUtf8 => "invalid_utf8",
            RejectClass::MalformedJson => "malformed_json",
            RejectClass::Schema => "schema",
            RejectClass::Inconsistent => "inconsistent",
            RejectClass::Conflict => "conflict",
            RejectClass::Storage => "storage",
        }
    }
}

/// One thing wrong with a message, at a JSON pointer into it ("" for the whole message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectReason {
    pub pointer: String,
    pub message: String,
}

/// How much of the offending value a shortened reason keeps (the value leads a validator's message).
const VALUE_PREFIX_CHARS: usize = 8;
/// How much of any later quoted text (the rule's own parameters: a pattern, a format) it keeps.
const RULE_TEXT_CHARS: usize = 40;
/// Longest pointer and message a shortened reason keeps.
const POINTER_CHARS: usize = 120;
const MESSAGE_CHARS: usize = 160;
/// Most reasons a log line names; the rest are counted.
const LOGGED_REASONS: usize = 5;

impl RejectReason {
    /// The reason for a log line or a listing: the pointer and the rule stay, the offending value is cut to a short
    /// prefix. The values are the message's own data (names, phones, addresses), and unshortened a reason can be
    /// several times the payload's size; the full reason stays in the dead letter, read by id.
    pub fn shortened(&self) -> RejectReason {
        RejectReason {
            pointer: cut(&self.pointer, POINTER_CHARS),
            message: cut(
                &shorten_property_names(&self.message)
                    .unwrap_or_else(|| shorten_values(&self.message)),
                MESSAGE_CHARS,
            ),
        }
    }
}

/// The validator's "Additional properties are not allowed ('<name>', '<name>' were unexpected)" (and its
/// "Unevaluated ..."), each name cut to `VALUE_PREFIX_CHARS`: a property name is whatever text the publisher
/// chose, as much the message's own data as a value. `None` for any other message.
fn shorten_property_names(message: &str) -> Option<String> {
    const OPEN: &str = "properties are not allowed (";
    let open = message.find(OPEN)? + OPEN.len();
    let close = ["' was unexpected)", "' were unexpected)"]
        .iter()
        .filter_map(|suffix| message.rfind(suffix))
        .max()?
        + 1;
    let names = message.get(open..close)?;
    let names = names.strip_prefix('\'')?.strip_suffix('\'')?;
    let cut_names: Vec<String> = names
        .split("', '")
        .map(|name| cut(name, VALUE_PREFIX_CHARS))
        .collect();
    Some(format!(
        "{}'{}'{}",
        &message[..open],
        cut_names.join("', '"),
        &message[close..]
    ))
}

/// The message with its leading JSON value (the instance a validator quotes first) cut to `VALUE_PREFIX_CHARS`
/// and every later quoted text to `RULE_TEXT_CHARS`.
fn shorten_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MESSAGE_CHARS * 2));
    let mut chars = message.char_indices().peekable();
    let mut first_value = true;
    // A value that leads the message unquoted (an object, an array, a number): cut to the first blank.
    if message.starts_with(['{', '[']) {
        let end = leading_json_end(message);
        out.push_str(&cut(&message[..end], VALUE_PREFIX_CHARS));
        chars = message[end..].char_indices().peekable();
        first_value = false;
        let rest = &message[end..];
        return out + &shorten_quoted(rest, &mut chars, first_value);
    }
    shorten_quoted(message, &mut chars, first_value)
}

fn shorten_quoted(
    text: &str,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    mut first_value: bool,
) -> String {
    let mut out = String::new();
    while let Some((start, c)) = chars.next() {
        // Only double quotes: JSON values are quoted with them; an apostrophe is prose.
        if c != '"' {
            out.push(c);
            continue;
        }
        // A quoted string: find its end, honouring backslash escapes.
        let mut end = text.len();
        let mut escaped = false;
        for (i, inner) in chars.by_ref() {
            match inner {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if inner == c => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let limit = if first_value {
            VALUE_PREFIX_CHARS
        } else {
            RULE_TEXT_CHARS
        };
        first_value = false;
        out.push(c);
        out.push_str(&cut(&text[start + 1..end], limit));
        if end < text.len() {
            out.push(c);
        }
    }
    out
}

/// Where a leading `{...}` or `[...]` ends (brackets balanced outside strings), or the whole text.
fn leading_json_end(text: &str) -> usize {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '{' | '[' if !in_string => depth += 1,
            '}' | ']' if !in_string => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    text.len()
}

/// At most `limit` characters; a cut shows as `…`.
fn cut(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A message that is not an order, with every reason we found. Stored as a dead letter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    pub class: RejectClass,
    pub reasons: Vec<RejectReason>,
    /// The order_uid, when the message had a readable one.
    pub order_uid: Option<String>,
}

impl Rejection {
    pub(crate) fn whole(class: RejectClass, message: impl Into<String>) -> Rejection {
        Rejection {
            class,
            reasons: vec![RejectReason {
                pointer: String::new(),
                message: message.into(),
            }],
            order_uid: None,
        }
    }
}

/// A rejection as a log line carries it: the class, and the first reasons shortened (`RejectReason::shortened`).
pub struct RejectionSummary<'a>(&'a Rejection);

impl Rejection {
    /// What a log line may say about this rejection.
    pub fn summary(&self) -> RejectionSummary<'_> {
        RejectionSummary(self)
    }
}

impl std::fmt::Display for RejectionSummary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rejection = self.0;
        write!(f, "{}", rejection.class.as_str())?;
        for reason in rejection.reasons.iter().take(LOGGED_REASONS) {
            let short = reason.shortened();
            let pointer = if short.pointer.is_empty() {
                "/"
            } else {
                &short.pointer
            };
            write!(f, "; {pointer}: {}", short.message)?;
        }
        let more = rejection.reasons.len().saturating_sub(LOGGED_REASONS);
        if more > 0 {
            write!(f, "; and {more} more")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.class.as_str())?;
        for reason in &self.reasons {
            write!(
                f,
                "; {}: {}",
                if reason.pointer.is_empty() {
                    "/"
                } else {
                    &reason.pointer
                },
                reason.message
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(pointer: &str, message: &str) -> RejectReason {
        RejectReason {
            pointer: pointer.into(),
            message: message.into(),
        }
    }

    #[test]
    fn a_shortened_reason_keeps_the_pointer_and_the_rule_and_cuts_the_value() {
        let cases = [
            (
                r#""alice.smith@example.com" is not a "email""#,
                r#""alice.sm…" is not a "email""#,
            ),
            (
                r#""+7 912 345 67 89" does not match "^\+[0-9]{7,15}$""#,
                r#""+7 912 3…" does not match "^\+[0-9]{7,15}$""#,
            ),
            (
                r#"{"name":"Alice Smith","phone":"+79123456789"} is not of type "string""#,
                r#"{"name":… is not of type "string""#,
            ),
            (
                "goods_total 10 differs from the sum of items' total_price 12",
                "goods_total 10 differs from the sum of items' total_price 12",
            ),
        ];
        for (message, expected) in cases {
            let short = reason("/delivery/email", message).shortened();
            assert_eq!(short.pointer, "/delivery/email");
            assert_eq!(short.message, expected, "{message}");
        }
    }

    #[test]
    fn unexpected_property_names_are_cut_like_values() {
        let cases = [
            (
                "Additional properties are not allowed ('x\n2099-01-01T00:00:00Z ERROR' was unexpected)",
                "Additional properties are not allowed ('x\n2099-0…' was unexpected)",
            ),
            (
                "Additional properties are not allowed ('secret_name', 'ok' were unexpected)",
                "Additional properties are not allowed ('secret_n…', 'ok' were unexpected)",
            ),
            (
                "Unevaluated properties are not allowed ('jane.doe@example' was unexpected)",
                "Unevaluated properties are not allowed ('jane.doe…' was unexpected)",
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(
                reason("", message).shortened().message,
                expected,
                "{message}"
            );
        }
    }

    #[test]
    fn a_huge_reason_is_bounded() {
        let message = format!(
            "\"{}\" is too long and {}",
            "x".repeat(100_000),
            "y ".repeat(10_000)
        );
        let short = reason("/a", &message).shortened();
        assert!(
            short.message.chars().count() <= MESSAGE_CHARS + 1,
            "{}",
            short.message.len()
        );
        assert!(!short.message.contains("xxxxxxxxx"));
    }

    #[test]
    fn the_log_summary_names_the_class_and_counts_what_it_leaves_out() {
        let rejection = Rejection {
            class: RejectClass::Schema,
            reasons: (0..7)
                .map(|i| {
                    reason(
                        &format!("/items/{i}/name"),
                        r#""Secret Name" is longer than 3 characters"#,
                    )
                })
                .collect(),
            order_uid: None,
        };

        let summary = rejection.summary().to_string();

        assert!(
            summary.starts_with("schema; /items/0/name: \"Secret N…\""),
            "{summary}"
        );
        assert!(summary.ends_with("; and 2 more"), "{summary}");
        assert!(!summary.contains("Secret Name"), "{summary}");
    }
}
