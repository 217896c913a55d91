use std::fmt;

/// Longest order id we accept; matches `properties.order_uid.pattern` in `schema/order.schema.json`.
const MAX_LEN: usize = 64;

/// An order id: 1 to 64 ASCII letters, digits, `_` or `-`. The same rule as the schema, so the HTTP route can answer
/// 400 for ids that can never exist.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderUid(Box<str>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OrderUidError {
    #[error("order_uid is empty")]
    Empty,
    #[error("order_uid is longer than {MAX_LEN} characters")]
    TooLong,
    #[error("order_uid may only contain ASCII letters, digits, '_' and '-'")]
    InvalidCharacter,
}

impl OrderUid {
    pub fn parse(s: &str) -> Result<OrderUid, OrderUidError> {
        if s.is_empty() {
            return Err(OrderUidError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(OrderUidError::TooLong);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(OrderUidError::InvalidCharacter);
        }
        Ok(OrderUid(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_uid_parses() {
        assert_eq!(
            OrderUid::parse("b563feb7b2b84b6test").map(|u| u.to_string()),
            Ok("b563feb7b2b84b6test".into())
        );
    }

    #[test]
    fn bad_uids_are_refused_with_their_reason() {
        let cases = [
            ("", OrderUidError::Empty),
            ("a b", OrderUidError::InvalidCharacter),
            ("<script>", OrderUidError::InvalidCharacter),
            ("ä", OrderUidError::InvalidCharacter),
            (&"x".repeat(65), OrderUidError::TooLong),
        ];
        for (input, expected) in cases {
            assert_eq!(OrderUid::parse(input), Err(expected), "input {input:?}");
        }
    }
}
