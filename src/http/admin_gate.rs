//! The admin listener's gate (middleware on every admin route).
//!
//! - Without `ADMIN_TOKEN`, or with `ADMIN_ALLOWED_HOSTS` set, a request must name this listener by one of its host
//!   names (`Host`, and the authority of an absolute-form target): localhost, 127.0.0.1, [::1] or a name in
//!   `ADMIN_ALLOWED_HOSTS`, with or without the port; any other answers 421. Without the check, a web page whose
//!   name its owner points at 127.0.0.1 after the page has loaded (DNS rebinding) is same-origin with the
//!   listener, and its script could read every dead letter and trigger replays. With a token and no list, any
//!   `Host` is taken: operators reach the listener by whatever name their network gives it, and the token is
//!   what protects it.
//! - With `ADMIN_TOKEN` set, a request needs `Authorization: Bearer <token>`, compared in constant time so the
//!   answer's timing tells nothing about how much of a guess was right. The operator page and its script and
//!   styles are the exception (for GET and HEAD): they hold no data, and a browser cannot attach the header to a
//!   page load; the page asks for the token and sends it with every request it makes.
//! - A state-changing request (anything but GET, HEAD, OPTIONS) must say `Content-Type: application/json`, a type
//!   an HTML form cannot send and a cross-site script cannot send without a CORS preflight, which this listener
//!   never grants. A browser's `Sec-Fetch-Site: cross-site`, and an `Origin` whose host this listener does not
//!   answer for (or, where any `Host` is taken, one that is not the request's own), are refused outright. So a
//!   page an operator visits cannot trigger a replay, with or without a token.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use subtle::ConstantTimeEq;

use crate::config::{ApplicationSettings, Secret};
use crate::http::routes::error_response;

/// The host names the admin listener always answers for: the loopback names a local operator uses.
const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

/// What the gate wants of a request (shared with the middleware through `app_data`).
#[derive(Clone)]
pub struct AdminAccess {
    /// `None` when `ADMIN_TOKEN` is unset or empty.
    token: Option<Secret>,
    /// The host names taken, lower case and without port; `None`: any (a token and no `ADMIN_ALLOWED_HOSTS`).
    hosts: Option<Vec<String>>,
}

impl AdminAccess {
    pub fn new(settings: &ApplicationSettings) -> AdminAccess {
        let token = settings
            .admin_token
            .clone()
            .filter(|token| !token.expose().is_empty());
        let listed: Vec<String> = settings
            .admin_allowed_hosts
            .iter()
            .map(|name| name.trim())
            .filter(|name| !name.is_empty())
            .map(|name| host_of(name).unwrap_or(name).to_ascii_lowercase())
            .collect();
        let hosts = (token.is_none() || !listed.is_empty()).then(|| {
            LOOPBACK_HOSTS
                .iter()
                .map(|name| (*name).to_owned())
                .chain(listed)
                .collect()
        });
        AdminAccess { token, hosts }
    }

    /// True when `authority` (`host` or `host:port`) names a host this listener answers for.
    fn answers_for(&self, authority: &str) -> bool {
        match (&self.hosts, host_of(authority)) {
            (None, Some(_)) => true,
            (Some(hosts), Some(host)) => hosts.iter().any(|h| h.eq_ignore_ascii_case(host)),
            (_, None) => false,
        }
    }
}

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
    OtherHost,
    CrossSite,
    NotJson,
    NoToken,
    WrongToken,
}

impl Refusal {
    fn into_response(self) -> actix_web::HttpResponse {
        match self {
            Refusal::OtherHost => error_response(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected",
                "this admin listener answers only for localhost, 127.0.0.1, [::1] and the names in \
                 ADMIN_ALLOWED_HOSTS",
            ),
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
    let Some(access) = request.app_data::<web::Data<AdminAccess>>() else {
        // Wiring error: refuse rather than serve the admin routes unguarded.
        return Some(Refusal::NoToken);
    };
    let headers = request.headers();
    let host = single_host(request);
    if access.hosts.is_some() && !host.is_some_and(|host| access.answers_for(host)) {
        return Some(Refusal::OtherHost);
    }
    let method = request.method();
    let changes_state = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state && from_another_site(request, access, host) {
        return Some(Refusal::CrossSite);
    }
    if let Some(expected) = &access.token {
        let page_load =
            matches!(*method, Method::GET | Method::HEAD) && OPEN_PATHS.contains(&request.path());
        if !page_load {
            let presented = headers
                .get(header::AUTHORIZATION)
                .map(|value| value.as_bytes())
                .and_then(|value| bearer(value));
            match presented {
                None => return Some(Refusal::NoToken),
                Some(token) if tokens_match(token, expected.expose().as_bytes()) => {}
                Some(_) => return Some(Refusal::WrongToken),
            }
        }
    }
    if changes_state {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Some(Refusal::NotJson);
        }
    }
    None
}

/// The one host the request names: its `Host` header, which must agree with the authority of an absolute-form
/// target (`GET http://host/path`). `None` for no `Host`, several, or a disagreement.
fn single_host(request: &ServiceRequest) -> Option<&str> {
    let mut values = request.headers().get_all(header::HOST);
    let host = values.next().and_then(|value| value.to_str().ok());
    if values.next().is_some() {
        return None;
    }
    match (host, request.uri().authority()) {
        (Some(host), Some(authority)) if !host.eq_ignore_ascii_case(authority.as_str()) => None,
        (Some(host), _) => Some(host),
        // HTTP/2 carries the authority in the target only.
        (None, authority) => authority.map(|authority| authority.as_str()),
    }
}

/// True when a browser says the request comes from another site: `Sec-Fetch-Site: cross-site`, or an `Origin`
/// whose host this listener does not answer for (or, where any host is taken, that is not the request's own).
fn from_another_site(request: &ServiceRequest, access: &AdminAccess, host: Option<&str>) -> bool {
    let headers = request.headers();
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    if cross_site {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    // `Origin: null` (a sandboxed frame, a file) and anything unreadable name no host: refused.
    let Some(authority) = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .map(|(_, authority)| authority)
    else {
        return true;
    };
    match (&access.hosts, host.and_then(host_of), host_of(authority)) {
        (Some(_), _, _) => !access.answers_for(authority),
        (None, Some(own), Some(theirs)) => !own.eq_ignore_ascii_case(theirs),
        (None, _, _) => true,
    }
}

/// The host of `host[:port]` or `[v6]:port`, or `None` when it is not of that form.
fn host_of(authority: &str) -> Option<&str> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        (host, rest.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    let after_bracket_ok =
        !authority.starts_with('[') || authority.len() == host.len() || port.is_some();
    (!host.is_empty() && port_ok && after_bracket_ok).then_some(host)
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
    use clap::Parser;

    use super::*;

    #[test]
    fn only_a_bearer_header_yields_a_token() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bear"), None);
    }

    #[test]
    fn host_of_takes_a_host_with_or_without_its_port() {
        let cases = [
            ("localhost", Some("localhost")),
            ("localhost:8082", Some("localhost")),
            ("[::1]", Some("[::1]")),
            ("[::1]:8082", Some("[::1]")),
            ("127.0.0.1:8082", Some("127.0.0.1")),
            ("localhost:", None),
            ("localhost:80:80", None),
            ("localhost:http", None),
            ("[::1]x", None),
            ("::1", None),
            ("", None),
        ];
        for (authority, expected) in cases {
            assert_eq!(host_of(authority), expected, "{authority}");
        }
    }

    #[test]
    fn without_a_token_only_loopback_names_and_the_listed_ones_are_answered() {
        let settings = |token: Option<&str>, hosts: &[&str]| ApplicationSettings {
            admin_token: token.map(Secret::new),
            admin_allowed_hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            ..crate::config::Cli::try_parse_from(["order-service"])
                .expect("defaults parse")
                .settings
                .application
        };
        let open = AdminAccess::new(&settings(None, &["Ops.Internal:9000"]));
        for host in [
            "localhost",
            "LOCALHOST:8082",
            "127.0.0.1:1",
            "[::1]:8082",
            "ops.internal",
            "ops.internal:1",
        ] {
            assert!(open.answers_for(host), "{host}");
        }
        for host in [
            "rebind.evil.example:8082",
            "localhost.",
            "127.0.0.2",
            "0.0.0.0",
            "ops.internal.evil",
        ] {
            assert!(!open.answers_for(host), "{host}");
        }
        let token_only = AdminAccess::new(&settings(Some("t"), &[]));
        assert!(token_only.answers_for("admin.anywhere:8082"));
        let token_and_list = AdminAccess::new(&settings(Some("t"), &["ops.internal"]));
        assert!(!token_and_list.answers_for("admin.anywhere:8082"));
        assert!(token_and_list.answers_for("ops.internal:8082"));
    }

    #[test]
    fn tokens_match_only_when_equal_and_never_when_empty() {
        assert!(tokens_match(b"s3cret", b"s3cret"));
        assert!(!tokens_match(b"s3cre", b"s3cret"));
        assert!(!tokens_match(b"s3cret!", b"s3cret"));
        assert!(!tokens_match(b"", b""));
    }
}
