//! NATS credentials and TLS, for every NATS connection: ratsio's (STAN), and async-nats's (STAN's acks, and the
//! JetStream source's).
//!
//! A source's URL (`STAN_URL`, `NATS_URL`) is a comma-separated list of the servers of one NATS cluster, parsed by
//! `config::server_url`; both clients get the whole list and move to another server when theirs is lost.
//!
//! One set of credentials serves both sources: `NATS_USER` / `NATS_PASSWORD` / `NATS_TOKEN` and `NATS_CA_FILE`,
//! unless the entries of the source's list carry their own (`nats://user:password@host`, `nats://token@host`);
//! those win. They are taken out of the URLs and handed to each client as options, so no client ever logs or
//! reports a URL that holds them (ratsio logs the URL it connects to, and does not read credentials from it anyway).
//!
//! TLS: async-nats connections use it when `NATS_CA_FILE` is set or an entry says `tls://`. ratsio 0.4.1 cannot:
//! its TLS is a cargo feature built on native-tls with the system's roots only (no CA file), and it is not built
//! here. A STAN connection with TLS asked for is refused at start rather than silently made in plain text.

use std::path::PathBuf;

use std::sync::Arc;

use async_nats::{Event, ServerAddr, ServerInfo};
use ratsio::nats_client::NatsClientOptions;

pub use crate::config::server_url::NatsCredentials as Credentials;
use crate::config::server_url::{self, ServerListError, ServerUrl};
use crate::config::{Settings, StanSettings};
use crate::transport::link::Link;

/// Where and how to connect: the servers without credentials, the credentials, TLS.
#[derive(Debug, Clone)]
pub struct NatsTarget {
    /// Safe to log: no credentials.
    pub servers: Vec<ServerUrl>,
    pub credentials: Credentials,
    /// Set when TLS is required; the CA file, when one was given.
    pub tls: Option<Option<PathBuf>>,
}

/// Why the NATS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NatsSettingsError {
    #[error("{setting}: {error}")]
    ServerList {
        setting: &'static str,
        error: ServerListError,
    },
    #[error(
        "TLS to nats-server was asked for (NATS_CA_FILE or a tls:// STAN_URL), but ratsio, the STAN client, cannot \
         use TLS: connect to a nats-server port without TLS on a trusted network, or use the JetStream source"
    )]
    TlsUnsupportedByRatsio,
    #[error(
        "the NATS {what} holds a '\"' or a '\\': ratsio sends credentials unescaped in JSON and would send a broken \
         CONNECT; choose one without these characters"
    )]
    UnsafeForRatsio { what: &'static str },
    #[error("{server} is not an address async-nats accepts: {message}")]
    Address { server: String, message: String },
}

impl NatsTarget {
    /// The STAN connections' target: `STAN_URL` and the shared credentials.
    pub fn from_settings(settings: &StanSettings) -> Result<NatsTarget, NatsSettingsError> {
        NatsTarget::new("STAN_URL", settings.url.expose(), settings)
    }

    /// The JetStream connection's target: `NATS_URL` and the same shared credentials as STAN's.
    pub fn for_jetstream(settings: &Settings) -> Result<NatsTarget, NatsSettingsError> {
        NatsTarget::new("NATS_URL", settings.jetstream.url.expose(), &settings.stan)
    }

    /// The servers of `list`, and the credentials: those its entries carry, else the shared settings'
    /// (`NATS_USER`, `NATS_PASSWORD`, `NATS_TOKEN`, `NATS_CA_FILE`, which clap keeps with the STAN settings).
    fn new(
        setting: &'static str,
        list: &str,
        shared: &StanSettings,
    ) -> Result<NatsTarget, NatsSettingsError> {
        let servers = server_url::parse_server_list(list)
            .map_err(|error| NatsSettingsError::ServerList { setting, error })?;
        let carried = servers
            .iter()
            .map(|server| &server.credentials)
            .find(|credentials| **credentials != Credentials::None)
            .cloned();
        let credentials = carried.unwrap_or_else(|| {
            match (&shared.nats_user, &shared.nats_password, &shared.nats_token) {
                (Some(user), password, _) => Credentials::UserPassword {
                    user: user.clone(),
                    password: password.clone().unwrap_or_default(),
                },
                (None, _, Some(token)) => Credentials::Token(token.clone()),
                _ => Credentials::None,
            }
        });
        let tls_scheme = servers.iter().any(ServerUrl::is_tls);
        let tls =
            (tls_scheme || shared.nats_ca_file.is_some()).then(|| shared.nats_ca_file.clone());
        Ok(NatsTarget {
            servers,
            credentials,
            tls,
        })
    }

    /// The servers for log lines, `/readyz` and errors: `nats://a:4222,nats://b:4222`, no credentials.
    pub fn display(&self) -> String {
        server_url::display_list(&self.servers)
    }

    /// ratsio's options: every server without credentials, the credentials as fields.
    pub fn ratsio_options(&self) -> Result<NatsClientOptions, NatsSettingsError> {
        if self.tls.is_some() {
            return Err(NatsSettingsError::TlsUnsupportedByRatsio);
        }
        let mut options = NatsClientOptions {
            cluster_uris: self
                .servers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .into(),
            ..Default::default()
        };
        match &self.credentials {
            Credentials::None => {}
            Credentials::UserPassword { user, password } => {
                ensure_json_safe(user, "user")?;
                ensure_json_safe(password.expose(), "password")?;
                options.username = user.clone();
                options.password = password.expose().to_owned();
            }
            Credentials::Token(token) => {
                ensure_json_safe(token.expose(), "token")?;
                options.auth_token = token.expose().to_owned();
            }
        }
        Ok(options)
    }

    /// async-nats options: credentials, and TLS with the CA file when asked for.
    pub fn async_nats_options(&self) -> async_nats::ConnectOptions {
        let mut options = match &self.credentials {
            Credentials::None => async_nats::ConnectOptions::new(),
            Credentials::UserPassword { user, password } => {
                async_nats::ConnectOptions::with_user_and_password(
                    user.clone(),
                    password.expose().to_owned(),
                )
            }
            Credentials::Token(token) => {
                async_nats::ConnectOptions::with_token(token.expose().to_owned())
            }
        };
        if let Some(ca_file) = &self.tls {
            options = options.require_tls(true);
            if let Some(ca_file) = ca_file {
                options = options.add_root_certificates(ca_file.clone());
            }
        }
        options
    }

    /// `async_nats_options` that also tell `link` when the connection drops. Servers are tried in the order given,
    /// as ratsio does, so that a STAN source's two connections normally sit on the same node.
    pub fn async_nats_options_for(&self, link: &Arc<Link>) -> async_nats::ConnectOptions {
        let link = link.clone();
        self.async_nats_options()
            .retain_servers_order()
            .event_callback(move |event| {
                if matches!(event, Event::Disconnected) {
                    link.disconnected();
                }
                async {}
            })
    }

    /// The entry of the list a connection is on, `host:port`, from what the server says of itself. A server that
    /// listens on every address (`0.0.0.0`) is named by its port among the entries, else by its own name.
    pub fn server_of(&self, info: &ServerInfo) -> String {
        let unspecified = matches!(info.host.as_str(), "" | "0.0.0.0" | "::" | "[::]");
        if !unspecified {
            return format!("{}:{}", info.host, info.port);
        }
        let mut by_port = self
            .servers
            .iter()
            .filter(|server| server.port == info.port);
        match (by_port.next(), by_port.next()) {
            (Some(server), None) => server.address(),
            _ => format!("{}:{}", info.server_name, info.port),
        }
    }

    /// The servers async-nats connects to: `tls://` is spelled `nats://` with TLS required in the options.
    pub fn async_nats_servers(&self) -> Result<Vec<ServerAddr>, NatsSettingsError> {
        self.servers
            .iter()
            .map(|server| {
                format!("nats://{}", server.address())
                    .parse::<ServerAddr>()
                    .map_err(|error| NatsSettingsError::Address {
                        server: server.to_string(),
                        message: error.to_string(),
                    })
            })
            .collect()
    }
}

fn ensure_json_safe(value: &str, what: &'static str) -> Result<(), NatsSettingsError> {
    if value.contains(['"', '\\']) {
        return Err(NatsSettingsError::UnsafeForRatsio { what });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use ratsio::nats_client::UriVec;

    use super::*;
    use crate::config::Cli;

    fn target(args: &[&str]) -> NatsTarget {
        let mut all = vec!["order-service"];
        all.extend_from_slice(args);
        NatsTarget::from_settings(&Cli::try_parse_from(all).expect("parses").settings.stan)
            .expect("a valid server list")
    }

    #[test]
    fn credentials_leave_the_url_in_every_form() {
        let cases = [
            ("nats://h:4222", "nats://h:4222", Credentials::None),
            (
                "nats://u:p%40ss/w@rd@h:4222",
                "nats://h:4222",
                Credentials::UserPassword {
                    user: "u".into(),
                    password: "p@ss/w@rd".into(),
                },
            ),
            (
                "nats://t0k3n@h:4222",
                "nats://h:4222",
                Credentials::Token("t0k3n".into()),
            ),
            (
                "nats://t0k3n@a:4222, nats://b:4223",
                "nats://a:4222,nats://b:4223",
                Credentials::Token("t0k3n".into()),
            ),
        ];
        for (url, bare, credentials) in cases {
            let target = target(&["--stan-url", url]);
            assert_eq!(target.display(), bare, "{url}");
            assert_eq!(target.credentials, credentials, "{url}");
        }
    }

    #[test]
    fn settings_supply_credentials_the_url_does_not_have() {
        let with_user = target(&["--nats-user", "u", "--nats-password", "p"]);
        assert_eq!(
            with_user.credentials,
            Credentials::UserPassword {
                user: "u".into(),
                password: "p".into()
            }
        );
        let with_token = target(&["--nats-token", "t"]);
        assert_eq!(with_token.credentials, Credentials::Token("t".into()));
    }

    #[test]
    fn a_malformed_list_is_refused_naming_the_setting_and_the_entry_without_its_secret() {
        let cli = Cli::try_parse_from([
            "order-service",
            "--nats-url",
            "nats://a:4222,nats://u:s3cret@b:4222:1",
        ])
        .expect("parses");
        let error = NatsTarget::for_jetstream(&cli.settings)
            .expect_err("a bad entry")
            .to_string();
        assert!(error.starts_with("NATS_URL: entry 2"), "{error}");
        assert!(error.contains("nats://u:***@b:4222:1"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn the_jetstream_target_takes_nats_url_and_the_shared_credentials_and_tls() {
        let jetstream = |args: &[&str]| {
            let mut all = vec!["order-service"];
            all.extend_from_slice(args);
            NatsTarget::for_jetstream(&Cli::try_parse_from(all).expect("parses").settings)
                .expect("a valid server list")
        };
        let shared = jetstream(&[
            "--stan-url",
            "nats://stan:4222",
            "--nats-url",
            "tls://js:4222,nats://js2:4222",
            "--nats-user",
            "u",
            "--nats-password",
            "p",
            "--nats-ca-file",
            "/ca.pem",
        ]);
        assert_eq!(shared.display(), "tls://js:4222,nats://js2:4222");
        let servers: Vec<String> = shared
            .async_nats_servers()
            .expect("addresses")
            .iter()
            .map(|server| format!("{}:{}", server.host(), server.port()))
            .collect();
        assert_eq!(servers, ["js:4222", "js2:4222"]);
        assert_eq!(
            shared.credentials,
            Credentials::UserPassword {
                user: "u".into(),
                password: "p".into()
            }
        );
        assert_eq!(shared.tls, Some(Some(PathBuf::from("/ca.pem"))));
        let own = jetstream(&["--nats-url", "nats://t0k3n@js:4222", "--nats-user", "u"]);
        assert_eq!(own.display(), "nats://js:4222");
        assert_eq!(own.credentials, Credentials::Token("t0k3n".into()));
    }

    #[test]
    fn ratsio_gets_every_server_and_the_credentials_as_fields_and_refuses_tls_and_unsafe_characters(
    ) {
        let options = target(&["--stan-url", "nats://u:p@h:4222,nats://u:p@i:4223"])
            .ratsio_options()
            .expect("plain user and password");
        assert_eq!(
            (options.username.as_str(), options.password.as_str()),
            ("u", "p")
        );
        assert_eq!(
            options.cluster_uris,
            UriVec::from(vec!["nats://h:4222".to_owned(), "nats://i:4223".to_owned()])
        );
        assert!(matches!(
            target(&["--stan-url", "nats://h:4222,tls://i:4222"]).ratsio_options(),
            Err(NatsSettingsError::TlsUnsupportedByRatsio)
        ));
        assert!(matches!(
            target(&["--nats-ca-file", "/ca.pem"]).ratsio_options(),
            Err(NatsSettingsError::TlsUnsupportedByRatsio)
        ));
        assert!(matches!(
            target(&["--stan-url", "nats://u:p\"q@h:4222"]).ratsio_options(),
            Err(NatsSettingsError::UnsafeForRatsio { what: "password" })
        ));
    }

    #[test]
    fn debug_output_hides_the_credentials() {
        let debug = format!("{:?}", target(&["--stan-url", "nats://u:s3cret@h:4222"]));
        assert!(!debug.contains("s3cret"), "{debug}");
    }
}
