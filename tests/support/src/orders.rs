//! The sample order and reading an order's uid.

use anyhow::Context;
use serde_json::Value;

/// The canonical sample order.
pub const SAMPLE: &str = include_str!("../../fixtures/model.json");
pub const SAMPLE_UID: &str = "b563feb7b2b84b6test";

/// The sample order under another order_uid (the same length keeps the same size).
pub fn sample_with_uid(uid: &str) -> String {
    SAMPLE.replace(SAMPLE_UID, uid)
}

/// Another version of the sample (another delivery city) under the same order_uid: a conflict once the sample is
/// stored.
pub fn sample_changed() -> anyhow::Result<String> {
    let mut changed: Value = serde_json::from_str(SAMPLE)?;
    changed["delivery"]["city"] = "Elsewhere".into();
    Ok(changed.to_string())
}

/// The `order_uid` of a JSON message.
pub fn uid_of(message: &[u8]) -> anyhow::Result<String> {
    let value: Value = serde_json::from_slice(message).context("The message is not JSON")?;
    value["order_uid"]
        .as_str()
        .map(str::to_owned)
        .context("The message has no order_uid")
}
