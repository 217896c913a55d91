//! `order-service replay <id>`: asks the running service to replay one dead letter (`POST /rejected/{id}/replay`)
//! and returns its answer. The running service does the work, so an order that is stored lands in its cache too; an
//! offline replay could not reach that cache. One request needs no HTTP client crate: this is plain HTTP/1.1 over a
//! TCP stream, `Connection: close`, read to the end.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Context;

/// How long connecting, sending and reading the answer may each take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Replays dead letter `id` through the admin listener at `service_url` (`http://host:port`), with the admin token
/// when there is one; returns the JSON answer, or an error with the service's answer when it is not 200.
pub async fn replay(service_url: &str, id: i64, token: Option<&str>) -> anyhow::Result<String> {
    let (authority, prefix) = split_url(service_url)?;
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    // The admin listener takes state-changing requests only as JSON (see admin_auth.rs).
    let request = format!(
        "POST {prefix}/rejected/{id}/replay HTTP/1.1\r\nHost: {authority}\r\n{authorization}\
         Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let target = authority.clone();
    let response = tokio::task::spawn_blocking(move || exchange(&target, &request))
        .await
        .context("The request task failed")?
        .with_context(|| format!("Failed to reach the service at {service_url}"))?;
    let (status, body) = parse_response(&response)?;
    anyhow::ensure!(
        status == 200,
        "the service answered {status}: {}",
        body.trim()
    );
    Ok(body)
}

/// `http://host:port/prefix` -> (`host:port`, `/prefix`).
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url:?} is not an http:// URL"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    anyhow::ensure!(!authority.is_empty(), "{url:?} has no host");
    let prefix = path.trim_end_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("/{prefix}")
    };
    Ok((authority.to_owned(), prefix))
}

fn exchange(authority: &str, request: &str) -> std::io::Result<Vec<u8>> {
    let address = std::net::ToSocketAddrs::to_socket_addrs(authority)?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{authority} resolves to no address")))?;
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

/// The status code and the body of a `Connection: close` response with a `Content-Length` body.
fn parse_response(response: &[u8]) -> anyhow::Result<(u16, String)> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("The service's answer has no header end")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| {
            format!(
                "The service's answer has no status: {:?}",
                head.lines().next()
            )
        })?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_prefix() {
        let cases = [
            ("http://127.0.0.1:8081", ("127.0.0.1:8081", "")),
            ("http://svc:80/", ("svc:80", "")),
            ("http://svc:80/api/", ("svc:80", "/api")),
        ];
        for (url, (authority, prefix)) in cases {
            assert_eq!(
                split_url(url).expect("splits"),
                (authority.to_owned(), prefix.to_owned()),
                "{url}"
            );
        }
        assert!(split_url("https://svc").is_err());
        assert!(split_url("http:///x").is_err());
    }

    #[test]
    fn responses_give_their_status_and_body() {
        let (status, body) =
            parse_response(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}")
                .expect("parses");
        assert_eq!((status, body.as_str()), (404, "{}"));
        assert!(parse_response(b"garbage").is_err());
    }
}
