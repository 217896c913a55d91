//! Every 4xx and 5xx of both listeners answers `{"error": "<code>", "message": "<text>"}` as `application/json`,
//! with `X-Content-Type-Options: nosniff` (middleware on both listeners). The routes build that body themselves
//! (`routes::error_response`); this catches what actix-web answers on its own (an extractor's refusal, a
//! payload error, a handler's `Err` without a JSON body), so no error reaches a client as text or empty.

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::HttpResponse;

use crate::http::routes::error_response;

/// The middleware: `App::new().wrap(error_bodies::json_errors())`. actix-web's `ErrorHandlers` calls `json_body`
/// for 4xx and 5xx answers only, and passes the others on without boxing their future or their body.
pub fn json_errors<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(json_body)
}

/// An error answer as `{"error", "message"}` JSON with `nosniff`; a JSON body that a route built is kept.
fn json_body<B: MessageBody>(
    response: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    // Inside the app, a handler's or an extractor's `Err` is already a response here (actix-web's route turns it
    // into one).
    let status = response.status();
    let (request, response) = response.into_parts();
    let mut response = if is_json(&response) {
        response.map_into_left_body()
    } else {
        replace_body(response, status).map_into_right_body()
    };
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(
        request, response,
    )))
}

fn is_json<B>(response: &HttpResponse<B>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// The shared body for `status`, keeping the answer's other headers (`Allow`, `WWW-Authenticate`, ...). The old
/// body is dropped unread: actix-web's own texts quote the request (`can not parse "<input>" to a i64`).
fn replace_body<B>(old: HttpResponse<B>, status: StatusCode) -> HttpResponse {
    let mut response = error_response(status, &code(status), message(status));
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    response
}

/// `not_found`, `method_not_allowed`, ...: the status's reason in snake case.
fn code(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("error")
        .chars()
        .filter_map(|c| match c {
            ' ' | '-' => Some('_'),
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "no such resource",
        StatusCode::METHOD_NOT_ALLOWED => {
            "this resource does not take that method; Allow lists those it takes"
        }
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large",
        StatusCode::BAD_REQUEST => "the request is not valid",
        status if status.is_server_error() => {
            "the service failed to answer; the cause is in its log"
        }
        _ => status
            .canonical_reason()
            .unwrap_or("the request was refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_is_the_reason_in_snake_case() {
        assert_eq!(code(StatusCode::NOT_FOUND), "not_found");
        assert_eq!(code(StatusCode::METHOD_NOT_ALLOWED), "method_not_allowed");
        assert_eq!(code(StatusCode::URI_TOO_LONG), "uri_too_long");
    }
}
