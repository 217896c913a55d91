//! Logging and tracing (z2p's `get_subscriber` / `init_subscriber`), as human-readable or JSON lines.
//!
//! Each delivery gets a root span ("Process order", with channel, seq and order_uid) that the pipeline messages
//! carry from actor to actor, so every line about one message can be found by its sequence number.

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Registry};

use crate::configuration::LogFormat;

/// A subscriber writing to `sink`, filtered by `RUST_LOG` or else by `env_filter` (e.g. "info").
/// Generic over the sink so tests can pass `std::io::sink`.
pub fn get_subscriber<Sink>(
    env_filter: &str,
    format: LogFormat,
    sink: Sink,
) -> Box<dyn Subscriber + Send + Sync>
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(env_filter));
    let registry = Registry::default().with(filter);
    match format {
        LogFormat::Human => Box::new(registry.with(fmt::layer().with_writer(sink))),
        LogFormat::Json => Box::new(
            registry.with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(sink),
            ),
        ),
    }
}

/// Installs `subscriber` as the global default, and routes the `log` records of libraries (ratsio) into it.
/// A second call is a no-op, so tests may call it freely.
pub fn init_subscriber(subscriber: Box<dyn Subscriber + Send + Sync>) {
    let _ = subscriber.try_init();
}
