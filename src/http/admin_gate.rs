//! The admin listener's gate (middleware on every admin route).
//!
//! - With `ADMIN_TOKEN` set, a request needs `Authorization: Bearer <token>`, compared in constant time so the
//!   answer's timing tells nothing about how much of a guess was right. The operator page and its script and
//!   styles are the exception: they hold no data, and a browser cannot attach the header to a page load; the page
//!   asks for the token and sends it with every request it makes.
//! - A state-changing request (anything but GET/HEAD) must say `Content-Type: application/json`, a type an HTML
//!   form cannot send and a cross-site script cannot send without a CORS preflight, which this listener never
//!   grants; a browser's `Sec-Fetch-Site: cross-site` is refused outright. So a page an operator visits cannot
//!   trigger a replay, with or without a token.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::http::routes::error_response;

/// The token the admin listener wants, if any (shared with the middleware through `app_data`).
#[derive(Clone)]
pub struct AdminToken(pub Option<Secret>);

/// Paths served without the token: the operator page's own files, which carry no data.
const OPEN_PATHS: &[&str] = &["/", "/ui/app.js", "/ui/app.css", "/ui/admin.js"];

/// The middleware (`actix_web::middleware::from_fn(admin_gate::gate)`).
pub async fn gate(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    if let Some(refusal) = refusal(&request) {
        let response = refusal.into_response();
        return Ok(request.into_response(response).map_into_right_body());
    }
    Ok(next.call(request).await?.map_into_left_body())
}

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    CrossSite,
    NotJson,
    NoToken,
    WrongToken,
}

impl Refusal {
    fn into_response(self) -> actix_web::HttpResponse {
        match self {
            Refusal::CrossSite => error_response(
                StatusCode::FORBIDDEN,
                "cross_site",
                "admin requests from another site are refused",
            ),
            Refusal::NotJson => error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "json_required",
                "state-changing admin requests need Content-Type: application/json",
            ),
            Refusal::NoToken | Refusal::WrongToken => {
                let mut response = error_response(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "this admin route needs Authorization: Bearer <ADMIN_TOKEN>",
                );
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"order-service admin\""),
                );
                response
            }
        }
    }
}

fn refusal(request: &ServiceRequest) -> Option<Refusal> {
    let headers = request.headers();
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes_state {
        let cross_site = headers
            .get("sec-fetch-site")
            .is_some_and(|site| site.as_bytes().eq_ignore_ascii_case(b"cross-site"));
        if cross_site {
            return Some(Refusal::CrossSite);
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Some(Refusal::NotJson);
        }
    }
    let expected = request
        .app_data::<web::Data<AdminToken>>()
        .and_then(|token| token.0.clone())?;
    if !changes_state && OPEN_PATHS.contains(&request.path()) {
        return None;
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .map(|value| value.as_bytes())
        .and_then(|value| bearer(value));
    match presented {
        None => Some(Refusal::NoToken),
        Some(token) if tokens_match(token, expected.expose().as_bytes()) => None,
        Some(_) => Some(Refusal::WrongToken),
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value[7..].trim_ascii())
}

/// Constant time in the token's content; only its length may leak, which the token's owner chooses.
fn tokens_match(presented: &[u8], expected: &[u8]) -> bool {
    !expected.is_empty() && presented.ct_eq(expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_header_yields_a_token() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bear"), None);
    }

    #[test]
    fn tokens_match_only_when_equal_and_never_when_empty() {
        assert!(tokens_match(b"s3cret", b"s3cret"));
        assert!(!tokens_match(b"s3cre", b"s3cret"));
        assert!(!tokens_match(b"s3cret!", b"s3cret"));
        assert!(!tokens_match(b"", b""));
    }
}
