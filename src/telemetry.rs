//! Logging setup.

use crate::configuration::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; filter from RUST_LOG (default info). Safe to call twice (second call is a no-op).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
