//! `GET /openapi.json`: the OpenAPI 3.1 description of the HTTP API (`schema/openapi.json`). In the repository the
//! order body is a `$ref` to `schema/order.schema.json` beside it; the served document carries that schema inline,
//! so a client needs nothing else. Each operation names the listeners that serve it (`x-listeners`); each listener
//! serves only its own operations. `tests/api/openapi.rs` keeps it true for both.

use std::sync::LazyLock;

use actix_web::dev::ResourceDef;
use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::{get, web, HttpResponse};
use serde_json::Value;

use crate::http::routes::{error_response, Listener};

const OPENAPI: &str = include_str!("../../../schema/openapi.json");
const ORDER_SCHEMA: &str = include_str!("../../../schema/order.schema.json");

/// Built once; both inputs are compiled in, so an error here is a broken build (a unit test catches it).
static PUBLIC: LazyLock<Result<String, String>> =
    LazyLock::new(|| served_document(Listener::Public));
static ADMIN: LazyLock<Result<String, String>> = LazyLock::new(|| served_document(Listener::Admin));

/// Each path the listener documents, with the methods it takes there (`GET` implies `HEAD`): the `Allow` of a 405.
/// The document is the route table here because `tests/api/openapi.rs` keeps it equal to the registered routes.
static PUBLIC_METHODS: LazyLock<Vec<(ResourceDef, String)>> =
    LazyLock::new(|| methods_by_path(Listener::Public));
static ADMIN_METHODS: LazyLock<Vec<(ResourceDef, String)>> =
    LazyLock::new(|| methods_by_path(Listener::Admin));

/// The methods `path` takes on `listener` (`"GET, HEAD"`), or `None` when no route has that path.
pub fn allowed_methods(listener: Listener, path: &str) -> Option<&'static str> {
    let table = match listener {
        Listener::Public => &*PUBLIC_METHODS,
        Listener::Admin => &*ADMIN_METHODS,
    };
    table
        .iter()
        .find(|(pattern, _)| pattern.is_match(path))
        .map(|(_, methods)| methods.as_str())
}

fn methods_by_path(listener: Listener) -> Vec<(ResourceDef, String)> {
    let Ok(document) = serde_json::from_str::<Value>(OPENAPI) else {
        return Vec::new();
    };
    let Some(paths) = document["paths"].as_object() else {
        return Vec::new();
    };
    paths
        .iter()
        .filter_map(|(path, item)| {
            let mut methods = Vec::new();
            for (method, operation) in item.as_object()? {
                if serves(operation, listener) {
                    methods.push(method.to_ascii_uppercase());
                    if method == "get" {
                        methods.push("HEAD".to_owned());
                    }
                }
            }
            // Path templates are actix-web's (`{id}` is one segment).
            (!methods.is_empty()).then(|| (ResourceDef::new(path.as_str()), methods.join(", ")))
        })
        .collect()
}

/// The document as `listener` serves it: its own operations only, `components.schemas.Order` replaced by the order
/// schema itself.
pub fn served_document(listener: Listener) -> Result<String, String> {
    let mut document: Value =
        serde_json::from_str(OPENAPI).map_err(|e| format!("schema/openapi.json: {e}"))?;
    let order: Value =
        serde_json::from_str(ORDER_SCHEMA).map_err(|e| format!("schema/order.schema.json: {e}"))?;
    let slot = document
        .pointer_mut("/components/schemas/Order")
        .ok_or("schema/openapi.json has no components.schemas.Order")?;
    *slot = order;
    let paths = document
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .ok_or("schema/openapi.json has no paths")?;
    for item in paths.values_mut() {
        if let Some(operations) = item.as_object_mut() {
            operations.retain(|_, operation| serves(operation, listener));
        }
    }
    paths.retain(|_, item| item.as_object().is_some_and(|ops| !ops.is_empty()));
    serde_json::to_string(&document).map_err(|e| e.to_string())
}

/// True when the operation's `x-listeners` names `listener`.
fn serves(operation: &Value, listener: Listener) -> bool {
    operation["x-listeners"]
        .as_array()
        .is_some_and(|names| names.iter().any(|name| name == listener.as_str()))
}

/// The OpenAPI document of the listener asked.
#[get("/openapi.json")]
pub async fn openapi_document(listener: web::Data<Listener>) -> HttpResponse {
    let document = match **listener {
        Listener::Public => &*PUBLIC,
        Listener::Admin => &*ADMIN,
    };
    match document {
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
        let document: Value = served_document(Listener::Public)
            .and_then(|d| serde_json::from_str(&d).map_err(|e| e.to_string()))
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(
            document["components"]["schemas"]["Order"]["title"], "Order",
            "the order schema, not the $ref"
        );
    }

    #[test]
    fn allowed_methods_follow_the_document_per_listener() {
        assert_eq!(
            allowed_methods(Listener::Admin, "/rejected/12/replay"),
            Some("POST")
        );
        assert_eq!(
            allowed_methods(Listener::Public, "/order/abc"),
            Some("GET, HEAD")
        );
        assert_eq!(
            allowed_methods(Listener::Public, "/rejected/12/replay"),
            None
        );
        assert_eq!(allowed_methods(Listener::Public, "/order/a/b"), None);
    }

    #[test]
    fn each_listener_documents_only_its_own_operations() {
        let paths = |listener| -> Vec<String> {
            let document: Value = served_document(listener)
                .and_then(|d| serde_json::from_str(&d).map_err(|e| e.to_string()))
                .unwrap_or_else(|error| panic!("{error}"));
            document["paths"]
                .as_object()
                .map(|paths| paths.keys().cloned().collect())
                .unwrap_or_default()
        };
        let public = paths(Listener::Public);
        let admin = paths(Listener::Admin);
        assert!(
            public.contains(&"/order/{order_uid}".to_owned()),
            "{public:?}"
        );
        for admin_only in ["/orders", "/rejected", "/rejected/{id}/replay", "/metrics"] {
            assert!(
                !public.contains(&admin_only.to_owned()),
                "{admin_only} in {public:?}"
            );
            assert!(
                admin.contains(&admin_only.to_owned()),
                "{admin_only} not in {admin:?}"
            );
        }
    }
}
