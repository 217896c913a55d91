//! A secret setting (a password, a token) in a type whose `Debug` never shows it, so a settings value can derive
//! `Debug` and be logged whole. The value leaves only through `expose`, at the one place that sends it.
//!
//! Hand-written rather than the `secrecy` crate: the settings need `Clone`, `PartialEq` and clap's `From<String>`, and
//! zeroing memory on drop (what `secrecy` adds) buys nothing while clap keeps its own copy of every argument.

use std::fmt;

/// What a secret is replaced with wherever it would be shown.
pub const MASK: &str = "***";

/// A password or token: `Debug` shows `***`. clap builds it with `From<String>`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_mask_and_expose_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), MASK);
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(***)");
        assert_eq!(secret.expose(), "hunter2");
    }
}
