//! Makes sure a nats-server is reachable for tests and tools.
//!
//! Order of preference: `$NATS_URL`, then the machine's server on the default port, then a
//! private `nats-server` spawned once for this process and stopped when the process exits.

use std::env;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tokio::time::{sleep, timeout, Instant};

/// The URL of the machine's default nats-server.
const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
/// How long a single probe (TCP connect + INFO line) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a spawned server may take to accept connections.
const STARTUP_DEADLINE: Duration = Duration::from_secs(10);
/// Where Debian installs the binary; `/usr/sbin` is often missing from a user's PATH.
const WELL_KNOWN_PATHS: [&str; 2] = ["/usr/sbin/nats-server", "/usr/local/bin/nats-server"];

/// The URL of the server spawned by this process, if any.
static SPAWNED_URL: OnceCell<String> = OnceCell::const_new();
/// Keeps the spawned server's guard alive until the process exits.
static SPAWNED_GUARD: Mutex<Option<SpawnedServer>> = Mutex::new(None);

/// URL of a reachable nats-server: `$NATS_URL` if set, else `nats://127.0.0.1:4222` if it answers,
/// else spawns `nats-server -a 127.0.0.1 -p <free port>` (kept for the life of the process) and
/// returns its URL.
pub async fn ensure_nats_server() -> anyhow::Result<String> {
    if let Ok(url) = env::var("NATS_URL") {
        if !url.trim().is_empty() {
            return Ok(url);
        }
    }
    if answers_like_nats("127.0.0.1:4222").await {
        return Ok(DEFAULT_URL.to_string());
    }
    SPAWNED_URL
        .get_or_try_init(spawn_private_server)
        .await
        .cloned()
}

/// True if `addr` accepts a TCP connection and greets with a NATS `INFO` line.
pub(crate) async fn answers_like_nats(addr: &str) -> bool {
    let probe = async {
        let stream = TcpStream::connect(addr).await.ok()?;
        let mut first_line = String::new();
        BufReader::new(stream)
            .read_line(&mut first_line)
            .await
            .ok()?;
        Some(first_line.starts_with("INFO "))
    };
    matches!(timeout(PROBE_TIMEOUT, probe).await, Ok(Some(true)))
}

/// Spawns a server on a free port and waits until it greets; retries once if the port was taken
/// between choosing it and the server binding it.
async fn spawn_private_server() -> anyhow::Result<String> {
    let binary = find_nats_server()?;
    let mut last_error = None;
    for _attempt in 0..2 {
        let port = free_port()?;
        let server = SpawnedServer::start(&binary, port)?;
        let addr = format!("127.0.0.1:{port}");
        match wait_until_ready(&addr).await {
            Ok(()) => {
                if let Ok(mut guard) = SPAWNED_GUARD.lock() {
                    *guard = Some(server);
                }
                tracing::info!(%addr, "Started a private nats-server.");
                return Ok(format!("nats://{addr}"));
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("nats-server did not start")))
}

/// Polls the address until it greets like NATS or the startup deadline passes.
async fn wait_until_ready(addr: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    while Instant::now() < deadline {
        if answers_like_nats(addr).await {
            return Ok(());
        }
        sleep(Duration::from_millis(50)).await;
    }
    bail!("nats-server did not accept connections on {addr} within {STARTUP_DEADLINE:?}")
}

/// Finds `nats-server` on PATH or in the places Debian and manual installs put it.
pub(crate) fn find_nats_server() -> anyhow::Result<PathBuf> {
    let on_path = env::var_os("PATH")
        .map(|paths| {
            env::split_paths(&paths)
                .map(|dir| dir.join("nats-server"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(WELL_KNOWN_PATHS.iter().map(PathBuf::from))
        .find(|candidate| candidate.is_file())
        .context(
            "No nats-server is reachable at 127.0.0.1:4222, NATS_URL is not set and no nats-server \
             binary was found on PATH or in /usr/sbin: install it: apt-get install nats-server",
        )
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .context("Failed to bind a probe socket to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A nats-server running under a small shell wrapper that kills it when our end of its stdin
/// pipe closes. The kernel closes that pipe however this process ends (even SIGKILL), so the
/// server never outlives the tests, without unsafe code or a signal-handling dependency.
struct SpawnedServer {
    _wrapper: Child,
    _lifeline: ChildStdin,
}

impl SpawnedServer {
    fn start(binary: &Path, port: u16) -> anyhow::Result<SpawnedServer> {
        let script = r#""$0" -a 127.0.0.1 -p "$1" & server=$!; read -r _; kill "$server""#;
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(binary)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("Failed to spawn {}", binary.display()))?;
        let lifeline = wrapper
            .stdin
            .take()
            .context("The nats-server wrapper has no stdin pipe")?;
        Ok(SpawnedServer {
            _wrapper: wrapper,
            _lifeline: lifeline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ensure_nats_server_returns_a_url_that_answers_like_nats() -> anyhow::Result<()> {
        // Act
        let url = ensure_nats_server().await?;

        // Assert
        let addr = url.trim_start_matches("nats://");
        assert!(
            answers_like_nats(addr).await,
            "{url} does not greet like NATS"
        );
        Ok(())
    }

    #[tokio::test]
    async fn private_server_is_spawned_once_and_answers() -> anyhow::Result<()> {
        // Arrange
        if find_nats_server().is_err() {
            eprintln!("Skipping: no nats-server binary on this machine.");
            return Ok(());
        }

        // Act
        let first = SPAWNED_URL.get_or_try_init(spawn_private_server).await?;
        let second = SPAWNED_URL.get_or_try_init(spawn_private_server).await?;

        // Assert
        assert_eq!(first, second, "one private server per process");
        assert!(answers_like_nats(first.trim_start_matches("nats://")).await);
        Ok(())
    }
}
