//! Logging and tracing (z2p's `get_subscriber` / `init_subscriber`), as human-readable or JSON lines.
//!
//! Each delivery gets a root span ("Process order", with source, channel, seq, redelivered and order_uid) that the
//! pipeline messages carry from actor to actor, so every line about one message can be found by its sequence number.
//! It is built only when a line is logged about the message (`crate::actors::MessageSpan`).

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Registry};

use crate::config::LogFormat;

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
        // Colours only for a person at a terminal: a log file or a collector gets plain text.
        LogFormat::Human => Box::new(
            registry.with(
                fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(sink),
            ),
        ),
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

/// What tests read back from the log layer.
#[cfg(test)]
pub(crate) mod capture {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;

    use super::get_subscriber;
    use crate::config::LogFormat;

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The JSON lines logged while `f` ran under the service's JSON subscriber filtered at `info`.
    pub(crate) fn json_lines(f: impl FnOnce()) -> Vec<Value> {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = get_subscriber("info", LogFormat::Json, move || sink.clone());
        tracing::subscriber::with_default(subscriber, f);
        let output =
            String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("UTF-8");
        output
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use tracing::field;

    use super::capture::json_lines;

    #[test]
    fn json_lines_carry_the_message_span_with_its_later_recorded_order_uid() {
        // Act: the span as the subscriber opens it; the validator records order_uid later.
        let lines = json_lines(|| {
            let span = tracing::info_span!(parent: None, "Process order", channel = %"orders", seq = 7u64,
                order_uid = field::Empty);
            span.record("order_uid", "b563feb7b2b84b6test");
            span.in_scope(|| tracing::warn!(reason = "schema", "Rejected a message."));
        });

        // Assert
        let line = &lines[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["fields"]["message"], "Rejected a message.");
        assert_eq!(line["fields"]["reason"], "schema");
        assert_eq!(line["span"]["name"], "Process order");
        assert_eq!(line["span"]["channel"], "orders");
        assert_eq!(line["span"]["seq"], 7);
        assert_eq!(line["span"]["order_uid"], "b563feb7b2b84b6test");
    }
}
