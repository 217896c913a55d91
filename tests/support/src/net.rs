//! Ports for processes a test starts itself (a private nats-server or PostgreSQL, chromedriver, Prometheus), and
//! reading an answer's headers.

use std::net::TcpListener;

/// A port nothing listens on right now. The OS picks it; another process may take it before ours binds it, which
/// is why the service itself binds port 0 where it can.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The value of header `name` in `response`, when it is there and is text.
pub fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}
