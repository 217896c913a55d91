//! The default STAN client id: `order-service-<host name>`. A container's host name is its own and survives its
//! restarts, so replicas started with `docker compose up --scale` get distinct ids without per-replica settings,
//! and each keeps its id across restarts (a restart then replaces its dead predecessor at once).

/// What every default client id starts with; also the whole id when no host name can be found.
const PREFIX: &str = "order-service";

/// `order-service-<host name>`, with the characters STAN refuses in a client id replaced by `-`.
pub fn default_client_id() -> String {
    from_host_name(host_name().as_deref())
}

/// The kernel's host name (the container's own in a container), else `$HOSTNAME`.
fn host_name() -> Option<String> {
    // Read from /proc rather than through gethostname(2): no unsafe code for one string. Off Linux, shells and
    // container runtimes set HOSTNAME.
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
}

fn from_host_name(host: Option<&str>) -> String {
    let host = host.map(str::trim).unwrap_or_default();
    if host.is_empty() {
        return PREFIX.to_owned();
    }
    let sanitized: String = host
        .chars()
        .map(|c| {
            // nats-streaming-server accepts only these in a client id.
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{PREFIX}-{sanitized}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_become_client_ids_stan_accepts() {
        let cases = [
            (
                Some("3f2a9c0d1e4b"),
                "order-service-3f2a9c0d1e4b",
                "a container id",
            ),
            (
                Some("web-1.example.org\n"),
                "order-service-web-1-example-org",
                "a domain name with a newline",
            ),
            (
                Some("Höst name"),
                "order-service-H-st-name",
                "non-ASCII and a space",
            ),
            (Some("  "), "order-service", "blank"),
            (None, "order-service", "no host name at all"),
        ];
        for (host, expected, description) in cases {
            assert_eq!(from_host_name(host), expected, "{description}");
        }
    }

    #[test]
    fn the_default_is_stable_within_one_host() {
        assert_eq!(default_client_id(), default_client_id());
        assert!(default_client_id().starts_with(PREFIX));
    }
}
