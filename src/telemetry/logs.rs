//! Logging and tracing (z2p's `get_subscriber` / `init_subscriber`), as human-readable or JSON lines.
//!
//! Each delivery gets a root span ("Process order", with source, channel, seq, redelivered and order_uid) that the
//! pipeline messages carry from actor to actor, so every line about one message can be found by its sequence number.
//! It is built only when a line is logged about the message (`crate::actors::MessageSpan`).
//!
//! Values in a line come from outside (a rejection reason quoting a message, an order_uid, a request path), so the
//! human format writes every field value and message through `EscapedFields`: a control character cannot start a
//! line of its own or drive the terminal of whoever tails the log. The JSON format's strings are escaped by serde.

use std::fmt::{Arguments, Debug, Write as _};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Registry};

use crate::config::LogFormat;

/// The log filter unless `RUST_LOG` says otherwise.
/// - `actix_http::h1::dispatcher`: one ERROR line per malformed request or broken connection, which anyone who can
///   reach the public port could write at will; malformed requests are counted instead
///   (`order_service_http_malformed_requests_total`).
/// - `tokio_postgres` stays at info whatever the rest is raised to: at debug it logs every statement's parameters,
///   which are whole orders.
pub const DEFAULT_LOG_FILTER: &str = "info,tokio_postgres=info,actix_http::h1::dispatcher=off";

/// Where actix-http logs a connection's errors, a request it could not parse among them.
const HTTP_DISPATCHER: &str = "actix_http::h1::dispatcher";

/// Requests actix-http could not parse (answered 400 or 431 before any route), in this process.
static MALFORMED_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Requests actix-http could not parse so far (the `order_service_http_malformed_requests_total` counter).
pub fn malformed_requests() -> u64 {
    MALFORMED_REQUESTS.load(Ordering::Relaxed)
}

/// A subscriber writing to `sink`, filtered by `RUST_LOG` or else by `env_filter` (e.g. `DEFAULT_LOG_FILTER`).
/// Generic over the sink so tests can pass `std::io::sink`. Whatever the filter, it counts malformed requests:
/// that layer has a filter of its own.
pub fn get_subscriber<Sink>(
    env_filter: &str,
    format: LogFormat,
    sink: Sink,
) -> Box<dyn Subscriber + Send + Sync>
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(env_filter));
    let registry = Registry::default().with(
        MalformedRequests.with_filter(Targets::new().with_target(HTTP_DISPATCHER, Level::ERROR)),
    );
    match format {
        // Colours only for a person at a terminal: a log file or a collector gets plain text.
        LogFormat::Human => Box::new(
            registry.with(
                fmt::layer()
                    .fmt_fields(EscapedFields)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(sink)
                    .with_filter(filter),
            ),
        ),
        LogFormat::Json => Box::new(
            registry.with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(sink)
                    .with_filter(filter),
            ),
        ),
    }
}

/// Installs `subscriber` as the global default, and routes the `log` records of libraries (ratsio) into it.
/// A second call is a no-op, so tests may call it freely.
pub fn init_subscriber(subscriber: Box<dyn Subscriber + Send + Sync>) {
    let _ = subscriber.try_init();
}

/// Counts actix-http's "stream error: request parse error: ..." events: actix-http tells the application nothing
/// else about a request it could not parse, and these events are the one place it names them.
struct MalformedRequests;

impl<S: Subscriber> Layer<S> for MalformedRequests {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut message = MessageText(String::new());
        event.record(&mut message);
        if message.0.contains("request parse error") {
            MALFORMED_REQUESTS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An event's message, as text.
struct MessageText(String);

impl Visit for MessageText {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

/// The human format's fields (events' and spans'): `name=value` separated by blanks, the message bare, as
/// tracing-subscriber's default writes them, but every value escaped by `Escaped`. Strings are quoted as the
/// default quotes them (`Debug`), values given with `%` are not.
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = EscapingVisitor {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'writer> {
    writer: Writer<'writer>,
    result: std::fmt::Result,
    first: bool,
}

impl EscapingVisitor<'_> {
    fn write(&mut self, field: &Field, value: Arguments<'_>) {
        let name = field.name();
        // A `log` record's metadata, which the line already shows as its target.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = if name == "message" {
            write!(self.writer, "{separator}")
                .and_then(|()| write!(Escaped(&mut self.writer), "{value}"))
        } else {
            write!(self.writer, "{separator}{name}=")
                .and_then(|()| write!(Escaped(&mut self.writer), "{value}"))
        };
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, format_args!("{value}"));
        } else {
            self.write(field, format_args!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.write(
            field,
            format_args!("{}", crate::telemetry::error_chain::error_chain(value)),
        );
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

/// A writer that passes text through with every control character escaped: `\n`, `\r`, `\t`, else `\u001b`
/// (JSON's spelling). Also the Unicode line and paragraph separators and the bidirectional controls, which can
/// make a line read otherwise than it is.
struct Escaped<W>(W);

impl<W: std::fmt::Write> std::fmt::Write for Escaped<W> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let mut start = 0;
        for (at, c) in text.char_indices() {
            if !needs_escape(c) {
                continue;
            }
            self.0.write_str(&text[start..at])?;
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{:04x}", u32::from(c))?,
            }
            start = at + c.len_utf8();
        }
        self.0.write_str(&text[start..])
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
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
        text(LogFormat::Json, f)
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    /// What the service's subscriber in `format`, filtered at `info`, wrote while `f` ran.
    pub(crate) fn text(format: LogFormat, f: impl FnOnce()) -> String {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = get_subscriber("info", format, move || sink.clone());
        tracing::subscriber::with_default(subscriber, f);
        let output = captured.0.lock().expect("not poisoned").clone();
        String::from_utf8(output).expect("UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use tracing::field;

    use super::capture::{json_lines, text};
    use crate::config::LogFormat;

    /// What a published message or a request can put into a field: a line of its own, and a terminal escape.
    const FORGED: &str = "x\n2099-01-01T00:00:00Z ERROR order_service: FORGED \u{1b}[2J\u{202e}";

    fn log_forged_values() {
        let span = tracing::info_span!(parent: None, "Process order", order_uid = field::Empty);
        span.record("order_uid", FORGED);
        span.in_scope(|| {
            tracing::warn!(reason = %FORGED, path = FORGED, error = &std::io::Error::other(FORGED) as &(dyn std::error::Error + 'static),
                "Rejected {FORGED}.");
        });
    }

    #[test]
    fn the_human_format_escapes_control_characters_in_every_value_and_the_message() {
        // Act
        let output = text(LogFormat::Human, log_forged_values);

        // Assert: one line, no escape character, and the value readable in its escaped form.
        assert_eq!(output.lines().count(), 1, "{output}");
        assert!(
            !output.contains('\u{1b}') && !output.contains('\u{202e}'),
            "{output:?}"
        );
        assert!(
            output.contains(r"x\n2099-01-01T00:00:00Z ERROR order_service: FORGED \u001b[2J\u202e"),
            "{output}"
        );
        // A string value is quoted, as `Debug` writes it; a `%` value and the message are bare.
        for field in [
            "reason=x\\n",
            "path=\"x\\n",
            "order_uid=\"x\\n",
            "error=x\\n",
            "Rejected x\\n",
        ] {
            assert!(output.contains(field), "{field} in {output}");
        }
    }

    #[test]
    fn the_json_format_stays_json_with_the_values_whole() {
        // Act
        let lines = json_lines(log_forged_values);

        // Assert
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["fields"]["reason"], FORGED);
        assert_eq!(lines[0]["span"]["order_uid"], FORGED);
    }

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
