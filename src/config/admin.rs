//! The admin listener's exposure policy, checked once at start: an admin listener other hosts can reach needs a
//! token. (Which requests pass, once it runs, is the HTTP layer's admin gate.)

use std::net::SocketAddr;

use crate::config::ApplicationSettings;

impl ApplicationSettings {
    /// Refuses an admin listener reachable from other hosts without a token: it would hand every order and the
    /// replay to anyone on the network.
    pub fn check_admin_exposure(&self) -> Result<(), String> {
        let has_token = self
            .admin_token
            .as_ref()
            .is_some_and(|t| !t.expose().is_empty());
        if has_token || is_loopback(&self.admin_addr) {
            return Ok(());
        }
        Err(format!(
            "ADMIN_ADDR {} is not a loopback address and ADMIN_TOKEN is not set: the admin routes (every order, \
             dead letters, replay, metrics) would be open to the network. Set ADMIN_TOKEN, or bind ADMIN_ADDR to \
             127.0.0.1",
            self.admin_addr
        ))
    }
}

/// True for `127.x.x.x:port`, `[::1]:port` and `localhost:port`.
fn is_loopback(addr: &str) -> bool {
    match addr.parse::<SocketAddr>() {
        Ok(socket) => socket.ip().is_loopback(),
        Err(_) => addr
            .rsplit_once(':')
            .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::config::Cli;

    #[test]
    fn an_admin_listener_beyond_loopback_needs_a_token() {
        let cases = [
            ("127.0.0.1:8082", None, true),
            ("[::1]:8082", None, true),
            ("localhost:8082", None, true),
            ("0.0.0.0:8082", None, false),
            ("10.1.2.3:8082", Some(""), false),
            ("0.0.0.0:8082", Some("t0ken"), true),
        ];
        for (addr, token, allowed) in cases {
            let mut args = vec!["order-service", "--admin-addr", addr];
            if let Some(token) = token {
                args.extend(["--admin-token", token]);
            }
            let cli = Cli::try_parse_from(args).expect("parses");
            let verdict = cli.settings.application.check_admin_exposure();
            assert_eq!(
                verdict.is_ok(),
                allowed,
                "{addr} with {token:?}: {verdict:?}"
            );
            if let Err(message) = verdict {
                assert!(message.contains("ADMIN_TOKEN"), "{message}");
            }
        }
    }
}
