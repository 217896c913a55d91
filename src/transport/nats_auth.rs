//! NATS credentials and TLS, for every NATS connection: ratsio's (STAN), and async-nats's (STAN's acks, and the
//! JetStream source's).
//!
//! One set of credentials serves both sources: `NATS_USER` / `NATS_PASSWORD` / `NATS_TOKEN` and `NATS_CA_FILE`,
//! unless the source's URL (`STAN_URL`, `NATS_URL`) carries its own (`nats://user:password@host`,
//! `nats://token@host`); the URL wins. They are taken out of the URL and handed to each client as options, so no
//! client ever logs or reports a URL that holds them (ratsio logs the URL it connects to, and does not read
//! credentials from it anyway).
//!
//! TLS: async-nats connections use it when `NATS_CA_FILE` is set or the URL says `tls://`. ratsio 0.4.1 cannot:
//! its TLS is a cargo feature built on native-tls with the system's roots only (no CA file), and it is not built
//! here. A STAN connection with TLS asked for is refused at start rather than silently made in plain text.

use std::path::PathBuf;

use ratsio::nats_client::NatsClientOptions;

use crate::config::{Settings, StanSettings};

/// How to authenticate to nats-server.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    UserPassword { user: String, password: String },
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::UserPassword { user, .. } => write!(f, "UserPassword({user}, ***)"),
            Credentials::Token(_) => f.write_str("Token(***)"),
        }
    }
}

/// Where and how to connect: the URL without credentials, the credentials, TLS.
#[derive(Debug, Clone)]
pub struct NatsTarget {
    /// Safe to log: no credentials.
    pub url: String,
    pub credentials: Credentials,
    /// Set when TLS is required; the CA file, when one was given.
    pub tls: Option<Option<PathBuf>>,
}

/// Why the NATS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NatsSettingsError {
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
}

impl NatsTarget {
    /// The STAN connections' target: `STAN_URL` and the shared credentials.
    pub fn from_settings(settings: &StanSettings) -> NatsTarget {
        NatsTarget::new(&settings.url, settings)
    }

    /// The JetStream connection's target: `NATS_URL` and the same shared credentials as STAN's.
    pub fn for_jetstream(settings: &Settings) -> NatsTarget {
        NatsTarget::new(&settings.jetstream.url, &settings.stan)
    }

    /// `url` without its credentials, and the credentials: the URL's, else the shared settings' (`NATS_USER`,
    /// `NATS_PASSWORD`, `NATS_TOKEN`, `NATS_CA_FILE`, which clap keeps with the STAN settings).
    fn new(url: &str, shared: &StanSettings) -> NatsTarget {
        let (url, from_url) = split_credentials(url);
        let credentials = match from_url {
            Credentials::None => {
                match (&shared.nats_user, &shared.nats_password, &shared.nats_token) {
                    (Some(user), password, _) => Credentials::UserPassword {
                        user: user.clone(),
                        password: password
                            .as_ref()
                            .map(|p| p.expose().to_owned())
                            .unwrap_or_default(),
                    },
                    (None, _, Some(token)) => Credentials::Token(token.expose().to_owned()),
                    _ => Credentials::None,
                }
            }
            credentials => credentials,
        };
        let tls_scheme = url.starts_with("tls://");
        let tls =
            (tls_scheme || shared.nats_ca_file.is_some()).then(|| shared.nats_ca_file.clone());
        NatsTarget {
            url,
            credentials,
            tls,
        }
    }

    /// ratsio's options: the URL without credentials, the credentials as fields.
    pub fn ratsio_options(&self) -> Result<NatsClientOptions, NatsSettingsError> {
        if self.tls.is_some() {
            return Err(NatsSettingsError::TlsUnsupportedByRatsio);
        }
        let mut options = NatsClientOptions {
            cluster_uris: vec![self.url.clone()].into(),
            ..Default::default()
        };
        match &self.credentials {
            Credentials::None => {}
            Credentials::UserPassword { user, password } => {
                ensure_json_safe(user, "user")?;
                ensure_json_safe(password, "password")?;
                options.username = user.clone();
                options.password = password.clone();
            }
            Credentials::Token(token) => {
                ensure_json_safe(token, "token")?;
                options.auth_token = token.clone();
            }
        }
        Ok(options)
    }

    /// async-nats options: credentials, and TLS with the CA file when asked for.
    pub fn async_nats_options(&self) -> async_nats::ConnectOptions {
        let mut options = match &self.credentials {
            Credentials::None => async_nats::ConnectOptions::new(),
            Credentials::UserPassword { user, password } => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Credentials::Token(token) => async_nats::ConnectOptions::with_token(token.clone()),
        };
        if let Some(ca_file) = &self.tls {
            options = options.require_tls(true);
            if let Some(ca_file) = ca_file {
                options = options.add_root_certificates(ca_file.clone());
            }
        }
        options
    }

    /// The URL async-nats connects to: `tls://` is spelled `nats://` with TLS required in the options.
    pub fn async_nats_url(&self) -> String {
        match self.url.strip_prefix("tls://") {
            Some(rest) => format!("nats://{rest}"),
            None => self.url.clone(),
        }
    }
}

fn ensure_json_safe(value: &str, what: &'static str) -> Result<(), NatsSettingsError> {
    if value.contains(['"', '\\']) {
        return Err(NatsSettingsError::UnsafeForRatsio { what });
    }
    Ok(())
}

/// `nats://user:pass@host:4222` -> (`nats://host:4222`, user and password); a user info without `:` is a token.
/// The password may hold `/` or `@`: the user info ends at the last `@`. Percent-escapes are decoded.
fn split_credentials(url: &str) -> (String, Credentials) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), Credentials::None);
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return (url.to_owned(), Credentials::None);
    };
    let credentials = match userinfo.split_once(':') {
        Some((user, password)) => Credentials::UserPassword {
            user: percent_decode(user),
            password: percent_decode(password),
        },
        None => Credentials::Token(percent_decode(userinfo)),
    };
    (format!("{scheme}://{host}"), credentials)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
        ];
        for (url, bare, credentials) in cases {
            let target = target(&["--stan-url", url]);
            assert_eq!(target.url, bare, "{url}");
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
    fn the_jetstream_target_takes_nats_url_and_the_shared_credentials_and_tls() {
        let jetstream = |args: &[&str]| {
            let mut all = vec!["order-service"];
            all.extend_from_slice(args);
            NatsTarget::for_jetstream(&Cli::try_parse_from(all).expect("parses").settings)
        };
        let shared = jetstream(&[
            "--stan-url",
            "nats://stan:4222",
            "--nats-url",
            "tls://js:4222",
            "--nats-user",
            "u",
            "--nats-password",
            "p",
            "--nats-ca-file",
            "/ca.pem",
        ]);
        assert_eq!(shared.url, "tls://js:4222");
        assert_eq!(shared.async_nats_url(), "nats://js:4222");
        assert_eq!(
            shared.credentials,
            Credentials::UserPassword {
                user: "u".into(),
                password: "p".into()
            }
        );
        assert_eq!(shared.tls, Some(Some(PathBuf::from("/ca.pem"))));
        let own = jetstream(&["--nats-url", "nats://t0k3n@js:4222", "--nats-user", "u"]);
        assert_eq!(own.url, "nats://js:4222");
        assert_eq!(own.credentials, Credentials::Token("t0k3n".into()));
    }

    #[test]
    fn ratsio_gets_credentials_as_fields_and_refuses_tls_and_unsafe_characters() {
        let options = target(&["--stan-url", "nats://u:p@h:4222"])
            .ratsio_options()
            .expect("plain user and password");
        assert_eq!(
            (options.username.as_str(), options.password.as_str()),
            ("u", "p")
        );
        assert_eq!(options.cluster_uris, UriVec::from("nats://h:4222"));
        assert!(matches!(
            target(&["--stan-url", "tls://h:4222"]).ratsio_options(),
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
