//! Keeps secrets out of everything that leaves the process: log lines, error bodies, `/readyz`, metrics.
//!
//! Two layers, because neither alone is enough:
//! - by form: the password of a URL's user info (`scheme://user:password@host`, also with `/` or `@` inside the
//!   password), a NATS token in the user position (`nats://token@host`), and `password=`/`token=` parameters both
//!   in a URL's query and in libpq's key=value strings (`host=db password='a b'`);
//! - by value: every secret the settings hold is registered at start (`register`), so an error chain from
//!   tokio-postgres, ratsio or async-nats that repeats one in any shape we did not foresee is still masked.

use std::fmt;
use std::sync::{PoisonError, RwLock};

pub use crate::config::secret::MASK;
use crate::config::server_url::{self, UrlParts};

/// Parameter names whose values are secrets, in URL queries and key=value connection strings.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "sslpassword",
    "token",
    "auth_token",
];

/// Secrets known by value, registered once at start; never removed (tests run several services in one process).
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers secret values (passwords, tokens, whole URLs) to be masked wherever they appear. Empty strings are
/// ignored; the percent-decoded form of each is registered too.
pub fn register<I, S>(secrets: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut known = SECRETS.write().unwrap_or_else(PoisonError::into_inner);
    for secret in secrets {
        let secret = secret.as_ref();
        for form in [secret.to_owned(), server_url::decode(secret)] {
            if !form.is_empty() && !known.contains(&form) {
                known.push(form);
            }
        }
    }
    // Longest first, so a secret that contains another is masked whole.
    known.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret and every secret-shaped part (URL passwords, tokens, `password=` values)
/// replaced by `***`.
pub fn text(text: &str) -> String {
    let mut clean = text.to_owned();
    {
        let known = SECRETS.read().unwrap_or_else(PoisonError::into_inner);
        for secret in known.iter() {
            if clean.contains(secret.as_str()) {
                clean = clean.replace(secret.as_str(), MASK);
            }
        }
    }
    connection_string(&clean)
}

/// A connection string (URL or libpq key=value) with its secrets masked, by form only.
pub fn connection_string(input: &str) -> String {
    let without_parameters = secret_parameters(input);
    urls(&without_parameters)
}

/// Masks the values of `password=`-like parameters. In a URL (`?a=b&password=x`) a value ends at `&`, `#` or a
/// blank; in a key=value string at a blank, or it is quoted (`password='a b\'c'`, libpq's quoting).
fn secret_parameters(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if let Some(value_start) = secret_key_at(input, i) {
            out.push_str(&input[i..value_start]);
            out.push_str(MASK);
            i = value_end(input, value_start);
            continue;
        }
        let len = utf8_len(bytes[i]);
        out.push_str(&input[i..i + len]);
        i += len;
    }
    out
}

/// When a secret key followed by `=` starts at `at` (on a word boundary), where its value starts.
fn secret_key_at(input: &str, at: usize) -> Option<usize> {
    let bytes = input.as_bytes();
    if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
        return None;
    }
    let key_len = SECRET_KEYS.iter().find_map(|key| {
        let end = at + key.len();
        (input.len() >= end
            && input.is_char_boundary(end)
            && input[at..end].eq_ignore_ascii_case(key))
        .then_some(key.len())
    })?;
    let mut i = at + key_len;
    while i < bytes.len() && bytes[i] == b' ' {
        i += 1;
    }
    if bytes.get(i) != Some(&b'=') {
        return None;
    }
    i += 1;
    while i < bytes.len() && bytes[i] == b' ' {
        i += 1;
    }
    Some(i)
}

fn value_end(input: &str, start: usize) -> usize {
    let bytes = input.as_bytes();
    if bytes.get(start) == Some(&b'\'') {
        let mut i = start + 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'\'' => return i + 1,
                _ => i += 1,
            }
        }
        return bytes.len();
    }
    let mut i = start;
    while i < bytes.len() && !matches!(bytes[i], b'&' | b'#' | b' ' | b'\t' | b'\n' | b'"') {
        i += 1;
    }
    i
}

/// Masks the user info of every `scheme://user:password@host` in `input` (read by `server_url`'s rules). A URL ends at
/// the next blank, quote, bracket or comma.
fn urls(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(found) = rest.find("://") {
        let scheme_start = rest[..found]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let after = found + 3;
        let end = rest[after..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ','))
            .map_or(rest.len(), |i| after + i);
        out.push_str(&rest[..scheme_start]);
        let url = &rest[scheme_start..end];
        match UrlParts::split(url) {
            Some(parts) => out.push_str(&parts.masked()),
            None => out.push_str(url),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A URL or connection string that may carry credentials (`DATABASE_URL`, `STAN_URL`, `NATS_URL`): `Debug`
/// shows it with its secrets masked by form, as `connection_string` does. clap builds it with `From<String>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL with its credentials, for the one place that connects with it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its secrets masked, for log lines and error messages.
    pub fn redacted(&self) -> String {
        connection_string(&self.0)
    }
}

impl From<String> for SecretUrl {
    fn from(value: String) -> SecretUrl {
        SecretUrl(value)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every form the issue names, and what must remain visible for the line to stay useful.
    #[test]
    fn every_connection_string_form_loses_its_secret_and_keeps_its_host() {
        let cases = [
            (
                "URL with a password",
                "postgres://app:s3cret@db:5432/orders",
                "postgres://app:***@db:5432/orders",
            ),
            (
                "password with / and @",
                "postgres://app:s3/cr@et@db:5432/orders",
                "postgres://app:***@db:5432/orders",
            ),
            (
                "password as a query parameter",
                "postgres://app@db:5432/orders?sslmode=disable&password=s3cret&x=1",
                "postgres://app@db:5432/orders?sslmode=disable&password=***&x=1",
            ),
            (
                "key=value string",
                "host=db port=5432 user=app password=s3cret dbname=orders",
                "host=db port=5432 user=app password=*** dbname=orders",
            ),
            (
                "key=value string, quoted password with a blank and a quote",
                r"host=db password='s3 c\'ret' dbname=orders",
                "host=db password=*** dbname=orders",
            ),
            (
                "key=value string, blanks around =",
                "host=db password = s3cret dbname=orders",
                "host=db password = *** dbname=orders",
            ),
            (
                "NATS URL with user and password",
                "nats://order:s3cret@nats:4222",
                "nats://order:***@nats:4222",
            ),
            (
                "NATS URL with a token",
                "nats://s3cret@nats:4222",
                "nats://***@nats:4222",
            ),
            (
                "NATS URL with a token, tls scheme",
                "tls://s3cret@nats:4222",
                "tls://***@nats:4222",
            ),
            (
                "URL inside an error message",
                "cannot reach nats-server at nats://u:s3cret@nats:4222: refused",
                "cannot reach nats-server at nats://u:***@nats:4222: refused",
            ),
            (
                "no secret at all",
                "postgres://app@db/orders",
                "postgres://app@db/orders",
            ),
        ];
        for (form, input, expected) in cases {
            assert_eq!(connection_string(input), expected, "{form}");
            assert!(!connection_string(input).contains("s3"), "{form}");
        }
    }

    #[test]
    fn words_that_merely_end_in_a_secret_key_are_left_alone() {
        assert_eq!(
            connection_string("bypass=1 compass = north"),
            "bypass=1 compass = north"
        );
    }

    #[test]
    fn a_registered_secret_is_masked_in_any_shape_and_percent_decoded() {
        // Arrange
        register(["pw-%2Fregistered-7c1e"]);

        // Act
        let plain = text("server said: bad password pw-%2Fregistered-7c1e for user");
        let decoded = text("auth failed (pw-/registered-7c1e)");

        // Assert
        assert_eq!(plain, "server said: bad password *** for user");
        assert_eq!(decoded, "auth failed (***)");
    }

    #[test]
    fn a_secret_url_debugs_without_its_password() {
        let url = SecretUrl::from("postgres://app:s3cret@db/orders?password=s3cret".to_owned());
        assert_eq!(
            format!("{url:?}"),
            r#""postgres://app:***@db/orders?password=***""#
        );
        assert!(url.expose().contains("s3cret"));
    }

    #[test]
    fn non_ascii_text_survives() {
        assert_eq!(text("größe password=ü ok"), "größe password=*** ok");
    }
}
