//! An error with its causes, for logs: tokio-postgres, bb8 and actix put the useful part (the server's message,
//! the refused connection) in the source, not in the top-level `Display`.

use std::error::Error as StdError;
use std::fmt;

/// The error and its causes, outermost first.
fn causes<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&e| e.source())
}

/// The error and its causes on one line ("a: b: c"), for log fields and startup errors. A cause whose text the line
/// holds already is left out: some libraries (async-nats) repeat their source in their own message. Secrets are
/// masked (`redact::text`): a library's error may repeat a URL or a password it was given.
pub fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = String::new();
    for cause in causes(error).map(|e| e.to_string()) {
        if text.is_empty() {
            text = cause;
        } else if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    crate::config::redact::text(&text)
}

/// `Debug` for route errors (z2p's `error_chain_fmt`): the whole cause chain goes to the logs, one cause a line,
/// while clients get the opaque `Display`.
pub fn error_chain_fmt(
    error: &(dyn StdError + 'static),
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    let mut chain = causes(error).map(|e| crate::config::redact::text(&e.to_string()));
    if let Some(outer) = chain.next() {
        writeln!(f, "{outer}")?;
    }
    for cause in chain {
        writeln!(f, "Caused by:\n\t{cause}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    struct Shown<'a>(&'a Outer);

    impl fmt::Debug for Shown<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            error_chain_fmt(self.0, f)
        }
    }

    #[test]
    fn the_one_line_chain_joins_every_cause() {
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("connect failed: inner")]
    struct Repeating(#[source] Inner);

    #[test]
    fn a_cause_the_message_repeats_is_not_repeated() {
        assert_eq!(error_chain(&Repeating(Inner)), "connect failed: inner");
    }

    #[test]
    fn the_debug_chain_lists_each_cause_on_its_own_line() {
        assert_eq!(
            format!("{:?}", Shown(&Outer(Inner))),
            "outer\nCaused by:\n\tinner\n"
        );
    }
}
