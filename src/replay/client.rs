//! `order-service replay <id>`: asks the running service to replay one dead letter (`POST /rejected/{id}/replay`)
//! and returns its answer. The running service does the work, so an order that is stored lands in its cache too; an
//! offline replay could not reach that cache.

use std::time::Duration;

use anyhow::Context;
use reqwest::{Client, Url};

/// How long the whole exchange (connect, send, read the answer) may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Replays dead letter `id` through the admin listener at `service_url` (`http://host:port`, optionally with a path
/// prefix), with the admin token when there is one; returns the JSON answer, or an error carrying the service's
/// answer when it is not a success.
pub async fn replay(service_url: &str, id: i64, token: Option<&str>) -> anyhow::Result<String> {
    let url = replay_url(service_url, id)?;
    let client = Client::builder()
        .timeout(TIMEOUT)
        .build()
        .context("Failed to build the HTTP client")?;
    // The admin listener takes state-changing requests only as JSON (see admin_auth.rs).
    let mut request = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body("{}");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("Failed to reach the service at {url}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("Failed to read the answer of {url} ({status})"))?;
    anyhow::ensure!(
        status.is_success(),
        "POST {url} answered {status}: {}",
        body.trim()
    );
    Ok(body)
}

/// `http://host:port/prefix` -> `http://host:port/prefix/rejected/{id}/replay`.
fn replay_url(service_url: &str, id: i64) -> anyhow::Result<Url> {
    let base = Url::parse(service_url)
        .with_context(|| format!("{service_url:?} is not a URL (expected http://host:port)"))?;
    // The service speaks plain HTTP on loopback or a private network; no TLS is built in.
    anyhow::ensure!(
        base.scheme() == "http",
        "{service_url:?} is not an http:// URL"
    );
    anyhow::ensure!(
        base.host_str().is_some_and(|host| !host.is_empty()),
        "{service_url:?} has no host"
    );
    let prefix = base.path().trim_end_matches('/');
    base.join(&format!("{prefix}/rejected/{id}/replay"))
        .with_context(|| format!("{service_url:?} cannot take the replay path"))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::thread::JoinHandle;

    use super::*;

    /// A one-connection HTTP server on a free loopback port: reads one request, answers `response` verbatim and
    /// keeps the connection open until the client closes it, so a client that ignored the body's framing would
    /// hang rather than pass. Returns its base URL and the request line and headers it received.
    fn serve_once(response: &'static str) -> (String, JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("has an address"));
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accepts the client");
            stream
                .set_read_timeout(Some(TIMEOUT))
                .expect("sets a read timeout");
            let request = read_head(&stream);
            (&stream)
                .write_all(response.as_bytes())
                .expect("writes the answer");
            // Waits for the client to close: the answer's framing alone must end the read.
            let mut rest = Vec::new();
            let _ = (&stream).read_to_end(&mut rest);
            request
        });
        (url, server)
    }

    /// Waits for the server thread off the runtime's thread, so the runtime can still close the client's
    /// connection (the server reads until that close).
    async fn request_seen(server: JoinHandle<String>) -> String {
        tokio::task::spawn_blocking(move || server.join().expect("the server thread ends"))
            .await
            .expect("the waiting task ends")
    }

    fn read_head(stream: &TcpStream) -> String {
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("reads the request");
            if line == "\r\n" || line.is_empty() {
                return head;
            }
            head.push_str(&line);
        }
    }

    #[test]
    fn replay_urls_keep_the_services_path_prefix() {
        let cases = [
            (
                "http://127.0.0.1:8081",
                "http://127.0.0.1:8081/rejected/7/replay",
            ),
            ("http://svc:80/", "http://svc/rejected/7/replay"),
            (
                "http://svc:8081/api/",
                "http://svc:8081/api/rejected/7/replay",
            ),
        ];
        for (service_url, expected) in cases {
            assert_eq!(
                replay_url(service_url, 7).expect("a valid URL").as_str(),
                expected,
                "{service_url}"
            );
        }
    }

    #[test]
    fn urls_that_are_not_plain_http_are_refused() {
        for service_url in ["https://svc", "svc:8081", "http://", "ftp://svc/"] {
            assert!(
                replay_url(service_url, 1).is_err(),
                "{service_url} should be refused"
            );
        }
    }

    #[tokio::test]
    async fn a_content_length_answer_is_read_to_its_length() {
        // Arrange
        let (url, server) = serve_once(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n{\"outcome\":\"stored\"}",
        );

        // Act
        let answer = replay(&url, 42, Some("t0ken"))
            .await
            .expect("the replay succeeds");

        // Assert: answered, and asked as the admin listener wants: the token, and JSON.
        assert_eq!(answer, r#"{"outcome":"stored"}"#);
        let request = request_seen(server).await;
        assert!(
            request.starts_with("POST /rejected/42/replay HTTP/1.1\r\n"),
            "request: {request}"
        );
        let lower = request.to_ascii_lowercase();
        assert!(
            lower.contains("authorization: bearer t0ken\r\n"),
            "request: {request}"
        );
        assert!(
            lower.contains("content-type: application/json\r\n"),
            "request: {request}"
        );
    }

    #[tokio::test]
    async fn a_chunked_answer_is_put_back_together() {
        // Arrange
        let (url, server) = serve_once(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
             b\r\n{\"outcome\":\r\n9\r\n\"stored\"}\r\n0\r\n\r\n",
        );

        // Act
        let answer = replay(&url, 3, None).await.expect("the replay succeeds");

        // Assert
        assert_eq!(answer, r#"{"outcome":"stored"}"#);
        request_seen(server).await;
    }

    #[tokio::test]
    async fn a_refusal_shows_the_status_and_the_services_json_error() {
        // Arrange
        let (url, server) = serve_once(
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 37\r\n\r\n\
             {\"error\":\"no dead letter with id 9\"}\n",
        );

        // Act
        let error = replay(&url, 9, None).await.expect_err("a 404 is an error");

        // Assert
        let message = format!("{error:#}");
        assert!(message.contains("404 Not Found"), "{message}");
        assert!(
            message.contains(r#"{"error":"no dead letter with id 9"}"#),
            "{message}"
        );
        request_seen(server).await;
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_url() {
        // Arrange: a port that was free a moment ago and has no listener now.
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds a loopback port");
        let address = listener.local_addr().expect("has an address");
        drop(listener);
        let url = format!("http://{address}");

        // Act
        let error = replay(&url, 1, None).await.expect_err("nobody listens");

        // Assert
        let message = format!("{error:#}");
        assert!(
            message.contains(&format!("{url}/rejected/1/replay")),
            "{message}"
        );
        assert!(
            message.to_lowercase().contains("connection refused"),
            "{message}"
        );
    }
}
