//! Running a nats-server of our own: free ports to put it on, and a shell wrapper that ends it
//! once our end of the wrapper's stdin pipe closes. The kernel closes that pipe however this
//! process ends (even SIGKILL), so no server outlives the tests, without unsafe code or a
//! signal-handling dependency. Used by `nats_server` (one private server) and `nats_cluster`.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use anyhow::Context;

/// `count` distinct ports that were free a moment ago on 127.0.0.1. The probe sockets stay open
/// until all are chosen, so the OS cannot hand out the same port twice.
pub(crate) fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))))
        .collect::<Result<Vec<_>, _>>()
        .context("Failed to bind probe sockets to find free ports")?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

/// Runs `sh -c script binary args...` (so `$0` is the binary) with its stdin on a pipe, and returns
/// the wrapper with our end of that pipe, the lifeline: `script` must end the server when it closes.
pub(crate) fn spawn_with_lifeline(
    script: &str,
    binary: &Path,
    args: &[String],
    stdout: Stdio,
    stderr: Stdio,
) -> anyhow::Result<(Child, ChildStdin)> {
    let mut wrapper = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(binary)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("Failed to spawn {}", binary.display()))?;
    let lifeline = wrapper
        .stdin
        .take()
        .context("The nats-server wrapper has no stdin pipe")?;
    Ok((wrapper, lifeline))
}
