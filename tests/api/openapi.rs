//! The OpenAPI documents (`GET /openapi.json` on each listener) against the running service: every registered route
//! is documented for a listener and every operation a listener documents answers there; each answer's status is one
//! the document lists for it, its content type one it names, and its body valid against the document's schema for
//! that status. Whatever only the admin listener documents answers 404 on the public one.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use jsonschema::{Registry, Validator};
use order_service_test_support::{header, spawn_app, TestApp, SAMPLE, SAMPLE_UID};
use serde_json::{json, Value};

/// Where the validators find the document; `$ref`s inside it resolve against this.
const DOCUMENT_URI: &str = "https://order-service.local/openapi.json";
/// The attribute macros actix-web registers routes with, lower case as in OpenAPI.
const METHODS: [&str; 8] = [
    "get", "post", "put", "delete", "patch", "head", "options", "trace",
];

/// One request and the status the test expects it to get.
#[derive(Clone)]
struct Case {
    method: &'static str,
    /// The documented path template it exercises.
    template: &'static str,
    path: String,
    if_none_match: Option<String>,
    status: u16,
}

impl Case {
    fn get(template: &'static str, path: impl Into<String>, status: u16) -> Case {
        Case {
            method: "get",
            template,
            path: path.into(),
            if_none_match: None,
            status,
        }
    }
}

/// `(method, path template)` of every operation in the document.
fn documented_operations(document: &Value) -> anyhow::Result<BTreeSet<(String, String)>> {
    let paths = document["paths"]
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("the document has no paths"))?;
    let mut operations = BTreeSet::new();
    for (path, item) in paths {
        for method in METHODS {
            if item.get(method).is_some() {
                operations.insert((method.to_owned(), path.clone()));
            }
        }
    }
    Ok(operations)
}

/// `(method, path template)` of every route declared in `src/` with actix-web's method macros (`#[get("/x")]`), or
/// registered by hand with a `// Route: METHOD /path` line beside it. Fails on any other way of registering a
/// route, which this scan could not see.
fn registered_routes() -> anyhow::Result<BTreeSet<(String, String)>> {
    let mut routes = BTreeSet::new();
    let mut files = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                files.push(entry?.path());
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path)?;
        // A route registered by hand (`register_service`) names itself on a line `// Route: GET /path`.
        anyhow::ensure!(
            !source.contains(".register_service(") || source.contains("// Route: "),
            "{} registers a service by hand without a `// Route: METHOD /path` line",
            path.display()
        );
        for (number, line) in source.lines().enumerate() {
            let line = line.trim();
            if let Some(route) = line.strip_prefix("// Route: ") {
                let (method, route) = route.split_once(' ').ok_or_else(|| {
                    anyhow::anyhow!("{}:{}: cannot read the route", path.display(), number + 1)
                })?;
                routes.insert((method.to_ascii_lowercase(), route.trim().to_owned()));
                continue;
            }
            if line.starts_with("//") {
                continue;
            }
            let place = format!("{}:{}", path.display(), number + 1);
            for other in [".route(\"", "web::resource(", "web::scope(", "#[route("] {
                anyhow::ensure!(
                    !line.contains(other),
                    "{place} registers a route with {other}: teach this test to read it"
                );
            }
            let Some(rest) = line.strip_prefix("#[") else {
                continue;
            };
            let Some((method, rest)) = rest.split_once("(\"") else {
                continue;
            };
            if !METHODS.contains(&method) {
                continue;
            }
            let (route, _) = rest
                .split_once('"')
                .ok_or_else(|| anyhow::anyhow!("{place}: cannot read the route"))?;
            routes.insert((method.to_owned(), route.to_owned()));
        }
    }
    Ok(routes)
}

/// Follows a `$ref` inside the document (`#/components/...`); other values come back as they are.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> anyhow::Result<&'a Value> {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .ok_or_else(|| anyhow::anyhow!("{reference} points outside the document"))?;
            document
                .pointer(pointer)
                .ok_or_else(|| anyhow::anyhow!("{reference} does not resolve"))
        }
        None => Ok(value),
    }
}

/// Escapes one JSON pointer segment (RFC 6901).
fn pointer_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// A validator for the schema at `pointer` inside the document, formats checked.
fn validator_at(registry: &Registry<'_>, pointer: &str) -> anyhow::Result<Validator> {
    // Path templates hold braces, which a URI fragment may not.
    let fragment = pointer.replace('{', "%7B").replace('}', "%7D");
    jsonschema::options()
        .with_registry(registry)
        .should_validate_formats(true)
        .build(&json!({ "$ref": format!("{DOCUMENT_URI}#{fragment}") }))
        .map_err(|e| anyhow::anyhow!("the schema at {pointer} does not compile: {e}"))
}

/// Every `$ref` in the document points at something in it.
fn assert_every_reference_resolves(document: &Value, value: &Value) -> anyhow::Result<()> {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                if reference.starts_with('#') {
                    resolve(document, value)?;
                }
            }
            map.values()
                .try_for_each(|v| assert_every_reference_resolves(document, v))
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|v| assert_every_reference_resolves(document, v)),
        _ => Ok(()),
    }
}

/// A service with the sample order and one dead letter, so every documented route has something to answer.
async fn app_with_an_order_and_a_dead_letter() -> anyhow::Result<(TestApp, i64)> {
    let app = spawn_app().await?;
    app.publish(SAMPLE).await?;
    app.publish(&b"{not json"[..]).await?;
    app.served(SAMPLE_UID).await?;
    app.wait_for_rows("rejected_messages", 1).await?;
    let dead_letters: Vec<Value> = app.admin_get("/rejected").await?.json().await?;
    let dead_letter = dead_letters
        .first()
        .and_then(|d| d["id"].as_i64())
        .ok_or_else(|| anyhow::anyhow!("no dead letter listed"))?;
    Ok((app, dead_letter))
}

/// The document each listener serves.
async fn documents(app: &TestApp) -> anyhow::Result<(Value, Value)> {
    let public: Value = app.get("/openapi.json").await?.json().await?;
    let admin: Value = app.admin_get("/openapi.json").await?.json().await?;
    Ok((public, admin))
}

#[actix_web::test]
async fn every_registered_route_is_documented_and_every_documented_one_is_registered(
) -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;

    // Act
    let (public, admin) = documents(&app).await?;

    // Assert
    let documented: BTreeSet<_> = documented_operations(&public)?
        .union(&documented_operations(&admin)?)
        .cloned()
        .collect();
    let registered = registered_routes()?;
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unregistered: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty() && unregistered.is_empty(),
        "routes missing from schema/openapi.json: {undocumented:?}; documented but not in src/: {unregistered:?}"
    );
    for document in [&public, &admin] {
        assert_eq!(document["openapi"], "3.1.0");
        assert_every_reference_resolves(document, document)?;
    }
    let public_operations = documented_operations(&public)?;
    for admin_only in [
        "/orders",
        "/rejected",
        "/rejected/{id}",
        "/rejected/{id}/replay",
        "/metrics",
        "/readyz/detail",
    ] {
        assert!(
            !public_operations.iter().any(|(_, path)| path == admin_only),
            "the public document lists {admin_only}"
        );
    }
    Ok(())
}

#[actix_web::test]
async fn every_documented_operation_answers_as_documented() -> anyhow::Result<()> {
    // Arrange
    let (app, dead_letter) = app_with_an_order_and_a_dead_letter().await?;
    let (public, admin) = documents(&app).await?;
    let page_etag = header(&app.get("/").await?, "etag").context("GET / answered no ETag")?;
    let admin_page_etag =
        header(&app.admin_get("/").await?, "etag").context("the operator page answered no ETag")?;
    let lookups = vec![
        Case::get("/order/{order_uid}", format!("/order/{SAMPLE_UID}"), 200),
        Case::get("/order/{order_uid}", "/order/nosuchorder", 404),
        Case::get("/order/{order_uid}", "/order/bad%20id", 400),
        Case::get("/ui/app.js", "/ui/app.js", 200),
        Case::get("/ui/app.css", "/ui/app.css", 200),
        Case::get("/openapi.json", "/openapi.json", 200),
        Case::get("/", "/", 200),
        Case::get("/", format!("/?id={SAMPLE_UID}"), 200),
    ];
    let mut public_cases = lookups.clone();
    public_cases.extend([
        Case {
            if_none_match: Some(page_etag),
            ..Case::get("/", "/", 304)
        },
        Case::get("/healthz", "/healthz", 200),
        Case::get("/readyz", "/readyz", 200),
    ]);
    let mut admin_cases = lookups;
    admin_cases.extend([
        Case {
            if_none_match: Some(admin_page_etag),
            ..Case::get("/", "/", 304)
        },
        Case::get("/ui/admin.js", "/ui/admin.js", 200),
        Case::get("/orders", "/orders?limit=1", 200),
        Case::get("/orders", "/orders?limit=many", 400),
        Case::get("/orders", "/orders", 401),
        Case::get("/rejected", "/rejected", 200),
        Case::get("/rejected", "/rejected?before=last", 400),
        Case::get("/rejected/{id}", format!("/rejected/{dead_letter}"), 200),
        Case::get(
            "/rejected/{id}",
            format!("/rejected/{}", dead_letter + 1_000_000),
            404,
        ),
        Case::get("/rejected/{id}", format!("/rejected/{dead_letter}"), 401),
        Case {
            method: "post",
            template: "/rejected/{id}/replay",
            path: format!("/rejected/{dead_letter}/replay"),
            if_none_match: None,
            status: 200,
        },
        Case {
            method: "post",
            template: "/rejected/{id}/replay",
            path: format!("/rejected/{}/replay", dead_letter + 1_000_000),
            if_none_match: None,
            status: 404,
        },
        Case {
            method: "post",
            template: "/rejected/{id}/replay",
            path: format!("/rejected/{dead_letter}/replay"),
            if_none_match: None,
            status: 415,
        },
        // Again, now that the dead letter records a replay.
        Case::get("/rejected", "/rejected", 200),
        Case::get("/metrics", "/metrics", 200),
        Case::get("/metrics", "/metrics", 401),
        Case::get("/readyz/detail", "/readyz/detail", 200),
        Case::get("/readyz/detail", "/readyz/detail", 401),
    ]);

    // Act + Assert
    check_listener(&app.address, None, &public, public_cases).await?;
    check_listener(
        &app.admin_address,
        Some(&app.admin_token),
        &admin,
        admin_cases,
    )
    .await?;
    let admin_only: BTreeSet<_> = documented_operations(&admin)?
        .difference(&documented_operations(&public)?)
        .cloned()
        .collect();
    let client = reqwest::Client::new();
    for (method, template) in admin_only {
        let path = template.replace("{id}", &dead_letter.to_string());
        let response = client
            .request(
                method.to_uppercase().parse()?,
                format!("{}{path}", app.address),
            )
            .json(&json!({}))
            .send()
            .await?;
        assert_eq!(
            response.status(),
            404,
            "{method} {path} on the public listener"
        );
    }
    Ok(())
}

/// Sends each case to the listener at `base` and checks the answer against that listener's `document`. A case
/// expecting 401 goes without the token, one expecting 415 without a JSON body; the others carry both.
async fn check_listener(
    base: &str,
    token: Option<&str>,
    document: &Value,
    cases: Vec<Case>,
) -> anyhow::Result<()> {
    let registry = Registry::new()
        .add(DOCUMENT_URI, document.clone())?
        .prepare()?;
    let exercised: BTreeSet<(String, String)> = cases
        .iter()
        .map(|c| (c.method.to_owned(), c.template.to_owned()))
        .collect();
    assert_eq!(
        exercised,
        documented_operations(document)?,
        "each operation {base} documents needs a request in this test"
    );
    let client = reqwest::Client::new();

    for case in cases {
        let what = format!("{} {base}{}", case.method.to_uppercase(), case.path);

        // Act
        let mut request = client.request(
            case.method.to_uppercase().parse()?,
            format!("{base}{}", case.path),
        );
        if let Some(tag) = &case.if_none_match {
            request = request.header("if-none-match", tag);
        }
        if let (Some(token), false) = (token, case.status == 401) {
            request = request.bearer_auth(token);
        }
        if case.method == "post" && case.status != 415 {
            request = request.json(&json!({}));
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned());
        let body = response.bytes().await?;

        // Assert: the status expected, and documented for the operation.
        assert_eq!(
            status,
            case.status,
            "{what}: {}",
            String::from_utf8_lossy(&body)
        );
        let status_key = status.to_string();
        let response_pointer = match document["paths"][case.template][case.method]["responses"]
            [&status_key]["$ref"]
            .as_str()
        {
            Some(reference) => reference.trim_start_matches('#').to_owned(),
            None => format!(
                "/paths/{}/{}/responses/{status_key}",
                pointer_segment(case.template),
                case.method
            ),
        };
        let documented = document
            .pointer(&response_pointer)
            .ok_or_else(|| anyhow::anyhow!("{what}: status {status} is not documented"))?;

        // Assert: a documented content type, and a body valid against its schema.
        let Some(contents) = documented.get("content").and_then(Value::as_object) else {
            assert!(body.is_empty(), "{what}: a body where none is documented");
            continue;
        };
        let media_type = content_type.ok_or_else(|| anyhow::anyhow!("{what}: no content-type"))?;
        anyhow::ensure!(
            contents.contains_key(&media_type),
            "{what}: content-type {media_type} is not among {:?}",
            contents.keys().collect::<Vec<_>>()
        );
        let instance = if media_type == "application/json" {
            serde_json::from_slice(&body)?
        } else {
            Value::String(String::from_utf8(body.to_vec())?)
        };
        let pointer = format!(
            "{response_pointer}/content/{}/schema",
            pointer_segment(&media_type)
        );
        let validator = validator_at(&registry, &pointer)?;
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{what}: {errors:?}\n{instance}");
    }
    Ok(())
}

#[actix_web::test]
async fn the_schemas_refuse_what_the_service_never_sends() -> anyhow::Result<()> {
    // Arrange: the validators must be able to fail, or the test above proves nothing.
    let app = spawn_app().await?;
    let document: Value = app.admin_get("/openapi.json").await?.json().await?;
    let registry = Registry::new().add(DOCUMENT_URI, document)?.prepare()?;
    let order = validator_at(&registry, "/components/schemas/Order")?;
    let error = validator_at(&registry, "/components/schemas/Error")?;
    let summary = validator_at(&registry, "/components/schemas/OrderSummary")?;
    let mut sample: Value = serde_json::from_str(SAMPLE)?;

    // Act + Assert
    assert!(order.is_valid(&sample), "the sample is an order");
    sample["payment"]["currency"] = json!("dollars");
    assert!(!order.is_valid(&sample), "a currency that is no ISO code");
    assert!(
        !error.is_valid(&json!({ "error": "not_found" })),
        "an error without its message"
    );
    assert!(
        !summary.is_valid(&json!({
            "id": 1, "order_uid": "x", "track_number": "t", "customer_id": "c",
            "date_created": "yesterday", "stan_sequence": 1, "ingested_at": "2024-01-01T00:00:00Z"
        })),
        "a date that is no date-time"
    );
    Ok(())
}

/// `path` with its parameters filled in: the sample order, the dead letter.
fn concrete(template: &str, dead_letter: i64) -> String {
    template
        .replace("{order_uid}", SAMPLE_UID)
        .replace("{id}", &dead_letter.to_string())
}

/// Checks the shared error body, its content type and `nosniff`; answers the error code.
async fn error_shape(what: &str, response: reqwest::Response) -> anyhow::Result<String> {
    let headers = response.headers().clone();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let body = response.bytes().await?;
    let text = String::from_utf8_lossy(&body);
    anyhow::ensure!(
        header("content-type").starts_with("application/json"),
        "{what}: content-type {:?}: {text}",
        header("content-type")
    );
    anyhow::ensure!(
        header("x-content-type-options") == "nosniff",
        "{what}: no nosniff"
    );
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| anyhow::anyhow!("{what}: not JSON ({e}): {text}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("{what}: {text}"))?;
    anyhow::ensure!(
        object.len() == 2 && value["message"].is_string(),
        "{what}: not the error shape: {text}"
    );
    value["error"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("{what}: {text}"))
}

#[actix_web::test]
async fn every_documented_route_answers_head_a_wrong_method_and_a_bad_parameter_in_one_shape(
) -> anyhow::Result<()> {
    // Arrange
    let (app, dead_letter) = app_with_an_order_and_a_dead_letter().await?;
    let (public, admin) = documents(&app).await?;
    let client = reqwest::Client::new();

    for (base, token, document) in [
        (&app.address, None, &public),
        (&app.admin_address, Some(&app.admin_token), &admin),
    ] {
        let operations = documented_operations(document)?;
        let templates: BTreeSet<&String> = operations.iter().map(|(_, t)| t).collect();
        for template in templates {
            let methods: BTreeSet<&str> = operations
                .iter()
                .filter(|(_, t)| t == template)
                .map(|(m, _)| m.as_str())
                .collect();
            let path = concrete(template, dead_letter);
            let send = |method: reqwest::Method, path: String| {
                let mut request = client
                    .request(method, format!("{base}{path}"))
                    .json(&json!({}));
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                request.send()
            };

            // HEAD where GET is: same status and headers, no body.
            if methods.contains("get") && template != "/rejected/{id}/replay" {
                let get = send(reqwest::Method::GET, path.clone()).await?;
                let head = send(reqwest::Method::HEAD, path.clone()).await?;
                let what = format!("HEAD {base}{path}");
                assert_eq!(head.status(), get.status(), "{what}");
                // The date moves, and so does the length of what changes between two requests (metrics, lag);
                // `connection` is about the connection, not the resource.
                let comparable = |response: &reqwest::Response| -> BTreeSet<(String, String)> {
                    response
                        .headers()
                        .iter()
                        .filter(|(name, _)| {
                            !["date", "content-length", "connection"].contains(&name.as_str())
                        })
                        .map(|(name, value)| {
                            (
                                name.to_string(),
                                String::from_utf8_lossy(value.as_bytes()).into(),
                            )
                        })
                        .collect()
                };
                assert_eq!(comparable(&head), comparable(&get), "{what}");
                assert!(
                    head.headers().contains_key("content-length"),
                    "{what}: the length of the body GET would send"
                );
                assert!(head.bytes().await?.is_empty(), "{what}: a body");
            }

            // A method the path does not take: 405 with Allow, in the error shape.
            let wrong = ["delete", "put", "patch"]
                .into_iter()
                .find(|m| !methods.contains(m))
                .ok_or_else(|| anyhow::anyhow!("{template} takes every method"))?;
            let response = send(wrong.to_uppercase().parse()?, path.clone()).await?;
            let what = format!("{} {base}{path}", wrong.to_uppercase());
            assert_eq!(response.status(), 405, "{what}");
            let mut expected_allow: Vec<String> =
                methods.iter().map(|m| m.to_uppercase()).collect();
            if methods.contains("get") {
                expected_allow.push("HEAD".into());
            }
            let allow: BTreeSet<String> = response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect();
            assert_eq!(
                allow,
                expected_allow.into_iter().collect::<BTreeSet<_>>(),
                "{what}: Allow"
            );
            assert_eq!(error_shape(&what, response).await?, "method_not_allowed");

            // A bad parameter: a 400 that does not echo it; and a path below the route: a 404.
            let method = if methods.contains("get") {
                reqwest::Method::GET
            } else {
                reqwest::Method::POST
            };
            for (template_part, bad) in [
                ("{id}", "abc"),
                ("{id}", "99999999999999999999"),
                ("{order_uid}", "bad%20id%3Cscript%3E"),
            ] {
                if !template.contains(template_part) {
                    continue;
                }
                let bad_path = concrete(&template.replace(template_part, bad), dead_letter);
                let what = format!("{method} {base}{bad_path}");
                let response = send(method.clone(), bad_path.clone()).await?;
                assert_eq!(response.status(), 400, "{what}");
                let code = error_shape(&what, response).await?;
                assert!(code.starts_with("invalid"), "{what}: {code}");
            }
            let below = format!("{}/nosuch/deeper", path.trim_end_matches('/'));
            let what = format!("{method} {base}{below}");
            let response = send(method.clone(), below).await?;
            assert_eq!(response.status(), 404, "{what}");
            assert_eq!(error_shape(&what, response).await?, "not_found");

            // OPTIONS without the token: the admin listener wants it first.
            if token.is_some() {
                let response = client
                    .request(reqwest::Method::OPTIONS, format!("{base}{path}"))
                    .send()
                    .await?;
                let what = format!("OPTIONS {base}{path}");
                assert_eq!(response.status(), 401, "{what}");
                assert_eq!(error_shape(&what, response).await?, "unauthorized");
            }
        }
    }
    Ok(())
}
