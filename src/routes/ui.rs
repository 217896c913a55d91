//! The order page: one HTML file, its script and its stylesheet, embedded in the binary (no CDN, works offline).
//! The script and the styles are separate files so the Content-Security-Policy can forbid every inline script and
//! style: an order field that slipped into the page as markup could not run.

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{get, HttpRequest, HttpResponse};

/// Only this origin's script, styles and API; no inline code, no frames, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file with its validator, so a reload costs a 304 instead of the file.
struct Embedded {
    content_type: &'static str,
    body: &'static str,
    etag: String,
}

impl Embedded {
    fn new(content_type: &'static str, body: &'static str) -> Embedded {
        Embedded {
            content_type,
            body,
            etag: format!("\"{:016x}\"", fnv1a(body.as_bytes())),
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
            response.body(self.body)
        }
    }
}

/// FNV-1a: a cheap, stable content hash for the ETag (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

static INDEX_HTML: LazyLock<Embedded> =
    LazyLock::new(|| Embedded::new("text/html; charset=utf-8", include_str!("../ui/index.html")));
static APP_JS: LazyLock<Embedded> = LazyLock::new(|| {
    Embedded::new(
        "text/javascript; charset=utf-8",
        include_str!("../ui/app.js"),
    )
});
static APP_CSS: LazyLock<Embedded> =
    LazyLock::new(|| Embedded::new("text/css; charset=utf-8", include_str!("../ui/app.css")));

/// The order page. Deep links (`/?id=...`) are handled by its script.
#[get("/")]
pub async fn index(request: HttpRequest) -> HttpResponse {
    INDEX_HTML.respond(&request)
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
    #[test]
    fn the_page_loads_nothing_from_other_origins_and_no_inline_code() {
        let page = include_str!("../ui/index.html");
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
        assert_eq!(page.matches("<script").count(), 1, "one external script");
        assert!(page.contains(r#"<script src="/ui/app.js" defer></script>"#));
    }

    #[test]
    fn the_script_never_parses_data_as_html() {
        let script = include_str!("../ui/app.js");
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
