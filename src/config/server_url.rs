//! The one parser for URLs that may carry credentials, on the `url` crate: the NATS server lists (`STAN_URL`,
//! `NATS_URL`, one or more comma-separated entries), the secrets the settings register for redaction, and the
//! masking of URLs found in free text (redact.rs, which uses this module; this one uses none of redaction's).
//!
//! One rule is added by hand, because users write passwords as they are: the user info ends at the *last* `@`, so
//! a password may hold `/` or `@` unescaped (the `url` crate alone would take the `/` for the start of the path).
//! Percent-escapes in the user info are decoded.

use std::fmt;

use percent_encoding::percent_decode_str;

use crate::config::secret::{Secret, MASK};

/// Schemes whose user info without a `:` is a token (NATS: `nats://<token>@host`), not a user name.
const TOKEN_SCHEMES: &[&str] = &["nats", "tls", "ws", "wss"];

/// The schemes a NATS server entry may have: `nats://` (plain, or TLS when NATS_CA_FILE is set) and `tls://`.
const NATS_SCHEMES: &[&str] = &["nats", "tls"];

/// nats-server's client port, for an entry that names none.
const NATS_DEFAULT_PORT: u16 = 4222;

/// A URL cut where its credentials are, as written (nothing decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlParts<'a> {
    pub scheme: &'a str,
    /// Between `://` and the last `@`, when there is one.
    pub user_info: Option<&'a str>,
    /// After the user info: host, port, path and the rest.
    pub rest: &'a str,
}

/// What a URL's user info holds, as written (still percent-encoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserInfo<'a> {
    /// A user name without a password: no secret.
    User(&'a str),
    UserPassword {
        user: &'a str,
        password: &'a str,
    },
    /// A NATS token (`nats://<token>@host`).
    Token(&'a str),
}

impl<'a> UrlParts<'a> {
    /// `None` when `url` has no `scheme://`.
    pub fn split(url: &'a str) -> Option<UrlParts<'a>> {
        let (scheme, after) = url.split_once("://")?;
        let (user_info, rest) = match after.rsplit_once('@') {
            Some((user_info, rest)) => (Some(user_info), rest),
            None => (None, after),
        };
        Some(UrlParts {
            scheme,
            user_info,
            rest,
        })
    }

    /// The URL as written, with the secret of its user info (password or token) replaced by `***`.
    pub fn masked(&self) -> String {
        let user_info = match self.user_info() {
            Some(UserInfo::UserPassword { user, .. }) => format!("{user}:{MASK}@"),
            Some(UserInfo::Token(_)) => format!("{MASK}@"),
            Some(UserInfo::User(user)) => format!("{user}@"),
            None => String::new(),
        };
        format!("{}://{user_info}{}", self.scheme, self.rest)
    }

    /// The user info, read by the scheme's rules: a lone word is a token for NATS schemes, a user name otherwise.
    pub fn user_info(&self) -> Option<UserInfo<'a>> {
        let user_info = self.user_info?;
        Some(match user_info.split_once(':') {
            Some((user, password)) => UserInfo::UserPassword { user, password },
            None if TOKEN_SCHEMES.contains(&self.scheme.to_ascii_lowercase().as_str()) => {
                UserInfo::Token(user_info)
            }
            None => UserInfo::User(user_info),
        })
    }
}

impl UserInfo<'_> {
    /// The secret it holds (password or token), decoded; `None` for a bare user name.
    pub fn secret(&self) -> Option<String> {
        match self {
            UserInfo::User(_) => None,
            UserInfo::UserPassword { password, .. } => Some(decode(password)),
            UserInfo::Token(token) => Some(decode(token)),
        }
    }
}

/// `%40` -> `@`; an invalid escape stays as written.
pub fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// The credentials one NATS server entry carries, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsCredentials {
    None,
    UserPassword { user: String, password: Secret },
    Token(Secret),
}

/// One entry of a NATS server list: where the server is, and the credentials the entry carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// `nats` or `tls`.
    pub scheme: String,
    /// As the `url` crate writes it: an IPv6 address in brackets.
    pub host: String,
    pub port: u16,
    pub credentials: NatsCredentials,
}

impl ServerUrl {
    /// `host:port`, the address to dial.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn is_tls(&self) -> bool {
        self.scheme == "tls"
    }
}

/// Shown without any credentials: `nats://host:port`. Safe to log.
impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Why a server list cannot be used. Every message names the entry with its secrets masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerListError {
    #[error("the server list is empty")]
    Empty,
    #[error(
        "entry {position} of the server list is empty (two commas in a row, or one at an end)"
    )]
    EmptyEntry { position: usize },
    #[error("entry {position} of the server list, {entry:?}, is not a valid URL: {reason}")]
    Invalid {
        position: usize,
        entry: String,
        reason: String,
    },
    #[error(
        "entry {position} of the server list, {entry:?}, has scheme {scheme:?}: a NATS server entry is nats:// or \
         tls://"
    )]
    Scheme {
        position: usize,
        entry: String,
        scheme: String,
    },
    #[error(
        "entry {position} of the server list, {entry:?}, names no host, or holds a path, query or fragment; an entry \
         is scheme://[credentials@]host[:port]"
    )]
    NotAServer { position: usize, entry: String },
    #[error(
        "the entries of the server list carry different credentials (entries {first} and {second}); a client sends \
         one set to every server of a cluster: give them to every entry alike, or once in NATS_USER/NATS_PASSWORD \
         or NATS_TOKEN"
    )]
    MixedCredentials { first: usize, second: usize },
}

/// Parses a comma-separated list of NATS servers (`nats://a:4222, nats://u:p@b:4222,tls://c`). Blanks around each
/// entry are ignored; an entry without a scheme is taken as `nats://`, without a port as 4222. Positions in errors
/// count from 1.
pub fn parse_server_list(list: &str) -> Result<Vec<ServerUrl>, ServerListError> {
    if list.trim().is_empty() {
        return Err(ServerListError::Empty);
    }
    let servers = list
        .split(',')
        .enumerate()
        .map(|(index, entry)| parse_server(index + 1, entry.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut carried = servers
        .iter()
        .enumerate()
        .filter(|(_, server)| server.credentials != NatsCredentials::None);
    if let Some((first, first_server)) = carried.next() {
        if let Some((second, _)) =
            carried.find(|(_, server)| server.credentials != first_server.credentials)
        {
            return Err(ServerListError::MixedCredentials {
                first: first + 1,
                second: second + 1,
            });
        }
    }
    Ok(servers)
}

fn parse_server(position: usize, entry: &str) -> Result<ServerUrl, ServerListError> {
    if entry.is_empty() {
        return Err(ServerListError::EmptyEntry { position });
    }
    let with_scheme;
    let entry = if entry.contains("://") {
        entry
    } else {
        with_scheme = format!("nats://{entry}");
        &with_scheme
    };
    let Some(parts) = UrlParts::split(entry) else {
        // Not reached: the entry has a scheme by now, so there is no user info to hide either.
        return Err(ServerListError::NotAServer {
            position,
            entry: entry.to_owned(),
        });
    };
    let shown = || masked_entry(&parts);
    let scheme = parts.scheme.to_ascii_lowercase();
    if !NATS_SCHEMES.contains(&scheme.as_str()) {
        return Err(ServerListError::Scheme {
            position,
            entry: shown(),
            scheme,
        });
    }
    let url = url::Url::parse(&format!("{scheme}://{}", parts.rest)).map_err(|error| {
        ServerListError::Invalid {
            position,
            entry: shown(),
            reason: error.to_string(),
        }
    })?;
    let host = match url.host_str() {
        Some(host) if !host.is_empty() => host.to_owned(),
        _ => {
            return Err(ServerListError::NotAServer {
                position,
                entry: shown(),
            })
        }
    };
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(ServerListError::NotAServer {
            position,
            entry: shown(),
        });
    }
    let credentials = match parts.user_info() {
        None => NatsCredentials::None,
        Some(UserInfo::UserPassword { user, password }) => NatsCredentials::UserPassword {
            user: decode(user),
            password: Secret::new(decode(password)),
        },
        Some(UserInfo::Token(token)) => NatsCredentials::Token(Secret::new(decode(token))),
        // Not reached for NATS schemes, whose lone word is a token.
        Some(UserInfo::User(user)) => NatsCredentials::UserPassword {
            user: decode(user),
            password: Secret::default(),
        },
    };
    Ok(ServerUrl {
        scheme,
        host,
        port: url.port().unwrap_or(NATS_DEFAULT_PORT),
        credentials,
    })
}

/// An entry for an error message: its user info's secret masked, and its query (a NATS entry has none, but
/// `?token=` may be written there) masked whole.
fn masked_entry(parts: &UrlParts<'_>) -> String {
    let mut shown = parts.masked();
    if let Some(query) = shown.find('?') {
        shown.truncate(query + 1);
        shown.push_str(MASK);
    }
    shown
}

/// The list for log lines, `--help`-style answers and `/readyz`: each entry without credentials.
pub fn display_list(servers: &[ServerUrl]) -> String {
    servers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The secret of every entry of a list, for redaction; entries that do not parse are read lexically, so their
/// secrets are masked too.
pub fn list_secrets(list: &str) -> Vec<String> {
    list.split(',')
        .filter_map(|entry| UrlParts::split(entry.trim())?.user_info()?.secret())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_password(user: &str, password: &str) -> NatsCredentials {
        NatsCredentials::UserPassword {
            user: user.into(),
            password: password.into(),
        }
    }

    #[test]
    fn each_form_of_an_entry_parses_to_its_server_and_credentials() {
        let cases = [
            (
                "plain",
                "nats://h:4222",
                "nats://h:4222",
                NatsCredentials::None,
            ),
            (
                "no port",
                "nats://h",
                "nats://h:4222",
                NatsCredentials::None,
            ),
            (
                "no scheme",
                "h:5222",
                "nats://h:5222",
                NatsCredentials::None,
            ),
            (
                "user and password, escaped and raw @ and /",
                "nats://u:p%40ss/w@rd@h:4222",
                "nats://h:4222",
                user_password("u", "p@ss/w@rd"),
            ),
            (
                "token",
                "nats://t0k3n@h:4222",
                "nats://h:4222",
                NatsCredentials::Token("t0k3n".into()),
            ),
            (
                "tls entry with a token",
                "tls://t0k3n@h:4443",
                "tls://h:4443",
                NatsCredentials::Token("t0k3n".into()),
            ),
            (
                "IPv6",
                "nats://[::1]:4222",
                "nats://[::1]:4222",
                NatsCredentials::None,
            ),
            (
                "upper-case scheme",
                "NATS://h:1",
                "nats://h:1",
                NatsCredentials::None,
            ),
        ];
        for (form, entry, shown, credentials) in cases {
            let servers = parse_server_list(entry).unwrap_or_else(|e| panic!("{form}: {e}"));
            assert_eq!(servers.len(), 1, "{form}");
            assert_eq!(servers[0].to_string(), shown, "{form}");
            assert_eq!(servers[0].credentials, credentials, "{form}");
        }
    }

    #[test]
    fn a_list_takes_blanks_around_its_entries_and_keeps_their_order() {
        let servers = parse_server_list(" nats://u:pw@a:1 ,nats://u:pw@b:2,  tls://u:pw@c:3 ")
            .expect("parses");
        assert_eq!(
            display_list(&servers),
            "nats://a:1,nats://b:2,tls://c:3",
            "shown without the credentials"
        );
        assert!(servers
            .iter()
            .all(|server| server.credentials == user_password("u", "pw")));
        assert_eq!(servers[1].address(), "b:2");
        assert!(servers[2].is_tls());
    }

    #[test]
    fn a_bad_entry_is_refused_by_position_with_its_secret_masked() {
        let cases = [
            ("nats://a:1,,nats://b:2", "entry 2", "empty"),
            (
                "nats://a:1,nats://u:s3cret@b:99999",
                "entry 2",
                "not a valid URL",
            ),
            (
                "nats://a:1,http://u:s3cret@b:80",
                "entry 2",
                "scheme \"http\"",
            ),
            (
                "nats://u:s3cret@a:1/path",
                "entry 1",
                "no host, or holds a path",
            ),
            ("nats://a:1,nats://u:s3cret@", "entry 2", "names no host"),
            (
                "nats://u:s3cret@a:1,nats://v:other@b:2",
                "entries 1 and 2",
                "different credentials",
            ),
        ];
        for (list, names, says) in cases {
            let error = parse_server_list(list).expect_err(list).to_string();
            assert!(error.contains(names), "{list}: {error}");
            assert!(error.contains(says), "{list}: {error}");
            assert!(!error.contains("s3cret"), "{list}: {error}");
        }
        assert_eq!(parse_server_list(" "), Err(ServerListError::Empty));
    }

    #[test]
    fn entries_without_credentials_may_sit_beside_entries_with_them() {
        let servers = parse_server_list("nats://t@a:1,nats://b:2").expect("parses");
        assert_eq!(servers[0].credentials, NatsCredentials::Token("t".into()));
        assert_eq!(servers[1].credentials, NatsCredentials::None);
    }

    #[test]
    fn the_secrets_of_every_entry_are_found_even_in_a_list_that_does_not_parse() {
        assert_eq!(
            list_secrets("nats://u:p%2Fw@a:1, nats://tok@b:2, nats://c:3,http://u:x@y:99999"),
            ["p/w", "tok", "x"]
        );
        assert_eq!(
            list_secrets("postgres://app@db/orders"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn user_info_follows_the_scheme() {
        let parts = |url| UrlParts::split(url).expect("a URL").user_info();
        assert_eq!(parts("postgres://app@db/x"), Some(UserInfo::User("app")));
        assert_eq!(parts("nats://tok@h"), Some(UserInfo::Token("tok")));
        assert_eq!(
            parts("postgres://a:b/c@d@h"),
            Some(UserInfo::UserPassword {
                user: "a",
                password: "b/c@d"
            })
        );
        assert_eq!(parts("nats://h"), None);
    }
}
