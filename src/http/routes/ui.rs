//! The pages: the public lookup page and the operator page (lookup, recent orders, dead letters), each one HTML file
//! sharing a script and a stylesheet (plus the operator's own script), embedded in the binary (no CDN, works
//! offline). Each listener serves its own page at `/`.
//! The script and the styles are separate files so the Content-Security-Policy can forbid every inline script and
//! style: an order field that slipped into the page as markup could not run.

use std::borrow::Cow;
use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{get, web, HttpRequest, HttpResponse};
use bytes::Bytes;

use crate::http::routes::Listener;

/// Only this origin's script, styles and API; no inline code, no frames, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file with its validator, so a reload costs a 304 instead of the file.
struct Embedded {
    content_type: &'static str,
    body: Bytes,
    etag: String,
}

impl Embedded {
    fn new(content_type: &'static str, body: impl Into<Cow<'static, str>>) -> Embedded {
        // Bytes, so that each answer shares the one copy instead of copying a filled page.
        let body = match body.into() {
            Cow::Borrowed(text) => Bytes::from_static(text.as_bytes()),
            Cow::Owned(text) => Bytes::from(text),
        };
        Embedded {
            content_type,
            etag: format!("\"{:016x}\"", fnv1a(&body)),
            body,
        }
    }

    fn respond(&self, request: &HttpRequest) -> HttpResponse {
        let fresh = request
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == self.etag));
        let mut response = if fresh {
            HttpResponse::NotModified()
        } else {
            HttpResponse::Ok()
        };
        response
            .insert_header((
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            ))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            // Revalidate on every load: a new build's page never runs with an old script.
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header((header::ETAG, self.etag.as_str()));
        if self.content_type.starts_with("text/html") {
            response
                .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
                .insert_header((header::REFERRER_POLICY, "no-referrer"));
        }
        if fresh {
            response.finish()
        } else {
            response.body(self.body.clone())
        }
    }
}

/// FNV-1a: a cheap, stable content hash for the ETag (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Both pages share one shell (`ui/page.html`); each fills its `{{slot}}`s. Filled once, on first use.
const PAGE_SHELL: &str = include_str!("../ui/page.html");

/// The shell with every `{{name}}` replaced by its value.
fn page(slots: &[(&str, &str)]) -> String {
    slots
        .iter()
        .fold(PAGE_SHELL.to_owned(), |page, (name, value)| {
            page.replace(&format!("{{{{{name}}}}}"), value)
        })
}

fn public_page() -> String {
    page(&[
        ("title", "Orders"),
        ("scripts", ""),
        ("page", "public"),
        ("badge", ""),
        ("welcome", "Type an order id above."),
        ("panels", ""),
        ("aside", ""),
        ("footer", r#"<a href="/readyz">/readyz</a>"#),
    ])
}

fn operator_page() -> String {
    page(&[
        ("title", "Operator"),
        ("scripts", "<script src=\"/ui/admin.js\" defer></script>\n"),
        ("page", "operator"),
        ("badge", r#" <span class="badge">operator</span>"#),
        (
            "welcome",
            "Type an order id above, or pick one of the most recent orders.",
        ),
        ("panels", include_str!("../ui/operator-panels.html")),
        ("aside", include_str!("../ui/operator-aside.html")),
        ("footer", r#"<a href="/metrics">/metrics</a>"#),
    ])
}

static INDEX_HTML: LazyLock<Embedded> =
    LazyLock::new(|| Embedded::new("text/html; charset=utf-8", public_page()));
static ADMIN_HTML: LazyLock<Embedded> =
    LazyLock::new(|| Embedded::new("text/html; charset=utf-8", operator_page()));
static ADMIN_JS: LazyLock<Embedded> = LazyLock::new(|| {
    Embedded::new(
        "text/javascript; charset=utf-8",
        include_str!("../ui/admin.js"),
    )
});
static APP_JS: LazyLock<Embedded> = LazyLock::new(|| {
    Embedded::new(
        "text/javascript; charset=utf-8",
        include_str!("../ui/app.js"),
    )
});
static APP_CSS: LazyLock<Embedded> =
    LazyLock::new(|| Embedded::new("text/css; charset=utf-8", include_str!("../ui/app.css")));

/// The listener's page: the lookup page, or the operator page. Deep links (`/?id=...`) are handled by the script.
#[get("/")]
pub async fn index(request: HttpRequest, listener: web::Data<Listener>) -> HttpResponse {
    match **listener {
        Listener::Public => INDEX_HTML.respond(&request),
        Listener::Admin => ADMIN_HTML.respond(&request),
    }
}

/// The operator page's own script (admin listener only).
#[get("/ui/admin.js")]
pub async fn admin_js(request: HttpRequest) -> HttpResponse {
    ADMIN_JS.respond(&request)
}

/// The page's script.
#[get("/ui/app.js")]
pub async fn app_js(request: HttpRequest) -> HttpResponse {
    APP_JS.respond(&request)
}

/// The page's stylesheet.
#[get("/ui/app.css")]
pub async fn app_css(request: HttpRequest) -> HttpResponse {
    APP_CSS.respond(&request)
}

#[cfg(test)]
mod tests {
    use super::{operator_page, public_page};

    #[test]
    fn the_pages_load_nothing_from_other_origins_and_no_inline_code() {
        for page in [public_page(), operator_page()] {
            assert_page_is_safe(&page);
        }
        assert!(operator_page().contains(r#"<script src="/ui/admin.js" defer></script>"#));
        assert!(!public_page().contains("admin.js"));
    }

    #[test]
    fn every_slot_of_the_shell_is_filled_on_both_pages() {
        for page in [public_page(), operator_page()] {
            assert!(!page.contains("{{"), "a slot left unfilled: {page}");
        }
        assert!(operator_page().contains(r#"id="dead-letters""#));
        assert!(!public_page().contains(r#"id="dead-letters""#));
    }

    fn assert_page_is_safe(page: &str) {
        for forbidden in ["http://", "https://", "<style", "style="] {
            assert!(
                !page.contains(forbidden),
                "index.html contains {forbidden:?}"
            );
        }
        assert!(
            !page.match_indices(" on").any(|(at, _)| {
                let rest = &page[at + 3..];
                let name = rest.len()
                    - rest
                        .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                        .len();
                name > 0 && rest[name..].starts_with('=')
            }),
            "index.html has an inline event handler"
        );
        assert!(
            page.matches("<script").count() <= 2,
            "at most two external scripts"
        );
        assert!(page.contains(r#"<script src="/ui/app.js" defer></script>"#));
    }

    #[test]
    fn the_scripts_never_parse_data_as_html() {
        for script in [include_str!("../ui/app.js"), include_str!("../ui/admin.js")] {
            assert_script_is_safe(script);
        }
    }

    fn assert_script_is_safe(script: &str) {
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!script.contains(forbidden), "app.js uses {forbidden}");
        }
    }
}
