//! `GET /openapi.json`: the OpenAPI 3.1 description of the HTTP API (`schema/openapi.json`). In the repository the
//! order body is a `$ref` to `schema/order.schema.json` beside it; the served document carries that schema inline,
//! so a client needs nothing else. `tests/api/openapi.rs` keeps it true.

use std::sync::LazyLock;

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::{get, HttpResponse};
use serde_json::Value;

use crate::routes::error_response;

const OPENAPI: &str = include_str!("../../schema/openapi.json");
const ORDER_SCHEMA: &str = include_str!("../../schema/order.schema.json");

/// Built once; both inputs are compiled in, so an error here is a broken build (a unit test catches it).
static DOCUMENT: LazyLock<Result<String, String>> = LazyLock::new(served_document);

/// The document as served: `components.schemas.Order` replaced by the order schema itself.
pub fn served_document() -> Result<String, String> {
    let mut document: Value =
        serde_json::from_str(OPENAPI).map_err(|e| format!("schema/openapi.json: {e}"))?;
    let order: Value =
        serde_json::from_str(ORDER_SCHEMA).map_err(|e| format!("schema/order.schema.json: {e}"))?;
    let slot = document
        .pointer_mut("/components/schemas/Order")
        .ok_or("schema/openapi.json has no components.schemas.Order")?;
    *slot = order;
    serde_json::to_string(&document).map_err(|e| e.to_string())
}

/// The OpenAPI document.
#[get("/openapi.json")]
pub async fn openapi_document() -> HttpResponse {
    match &*DOCUMENT {
        Ok(document) => HttpResponse::Ok()
            .insert_header(ContentType::json())
            .body(document.as_str()),
        Err(error) => error_response(StatusCode::INTERNAL_SERVER_ERROR, "unexpected", error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_document_carries_the_order_schema_inline() {
        let document: Value = served_document()
            .and_then(|d| serde_json::from_str(&d).map_err(|e| e.to_string()))
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(
            document["components"]["schemas"]["Order"]["title"], "Order",
            "the order schema, not the $ref"
        );
    }
}
