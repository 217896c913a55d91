mod health_check;
mod orders;

pub use health_check::{healthz, readyz};
pub use orders::get_order;

/// The error body of every route: `{"error": "<code>", "message": "<text>"}`.
pub(crate) fn error_body(code: &str, message: impl std::fmt::Display) -> serde_json::Value {
    serde_json::json!({ "error": code, "message": message.to_string() })
}
