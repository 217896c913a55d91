use serde::Serialize;

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectReason {
    pub pointer: String,
    pub message: String,
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
