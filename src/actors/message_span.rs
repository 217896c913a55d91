//! `MessageSpan`: a message's root tracing span, opened only when a line is logged about the message.
//!
//! Why lazy: under the default `info` filter a real span per delivery is built by the registry, has its fields
//! formatted by the log layer, and is cloned, entered and closed at each actor, for every message, though almost
//! every message logs nothing. Its fields are kept here instead; the span is built from them the first time a line
//! needs it, so every line about a message still carries one span ("Process order") with the same fields.

use std::sync::{Arc, Mutex, PoisonError};

use tracing::{field, Span};

use crate::transport::Origin;

/// Shared by every actor that handles the message: an `order_uid` recorded by one is seen by the others' lines.
#[derive(Clone)]
pub struct MessageSpan(Arc<Inner>);

struct Inner {
    /// `None` for a span opened by its maker (a replay's).
    delivery: Option<MessagePlace>,
    state: Mutex<State>,
}

struct MessagePlace {
    origin: Origin,
    sequence: u64,
    redelivered: bool,
}

#[derive(Default)]
struct State {
    order_uid: Option<Box<str>>,
    span: Option<Span>,
}

impl MessageSpan {
    /// The span of a delivery: "Process order" with `source`, `channel`, `seq`, `redelivered` and `order_uid`.
    pub fn delivery(origin: &Origin, sequence: u64, redelivered: bool) -> MessageSpan {
        MessageSpan(Arc::new(Inner {
            delivery: Some(MessagePlace {
                origin: origin.clone(),
                sequence,
                redelivered,
            }),
            state: Mutex::default(),
        }))
    }

    /// A span its maker opened already (it has an `order_uid` field to record).
    pub fn opened(span: Span) -> MessageSpan {
        MessageSpan(Arc::new(Inner {
            delivery: None,
            state: Mutex::new(State {
                order_uid: None,
                span: Some(span),
            }),
        }))
    }

    /// Records the message's order_uid, in the span if it is open, else when it opens.
    pub fn record_uid(&self, uid: &str) {
        let mut state = self.state();
        if let Some(span) = &state.span {
            span.record("order_uid", uid);
        }
        state.order_uid = Some(uid.into());
    }

    /// The tracing span, built on first use: call it to log about the message, not on every message's path.
    pub fn open(&self) -> Span {
        let mut state = self.state();
        if let Some(span) = &state.span {
            return span.clone();
        }
        let span = match &self.0.delivery {
            Some(d) => tracing::info_span!(
                parent: None,
                "Process order",
                source = %d.origin.source,
                channel = %d.origin.name,
                seq = d.sequence,
                redelivered = d.redelivered,
                order_uid = field::Empty
            ),
            None => Span::none(),
        };
        if let Some(uid) = &state.order_uid {
            span.record("order_uid", &**uid);
        }
        state.span = Some(span.clone());
        span
    }

    /// Runs `f` inside the span: for the lines `f` logs.
    pub fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        self.open().in_scope(f)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceKind;
    use crate::telemetry::capture::json_lines;

    #[test]
    fn a_line_logged_later_carries_the_delivery_fields_and_the_uid_recorded_before_it_opened() {
        let lines = json_lines(|| {
            // Arrange: the subscriber makes the span, the validator records the uid, nothing has logged yet.
            let span =
                MessageSpan::delivery(&Origin::new(SourceKind::JetStream, "ORDERS"), 7, true);
            let validator_copy = span.clone();
            validator_copy.record_uid("b563feb7b2b84b6test");

            // Act: another actor logs about the message.
            span.in_scope(|| tracing::warn!("Message not stored; not acknowledged."));
        });

        let span = &lines[0]["span"];
        assert_eq!(span["name"], "Process order");
        assert_eq!(span["source"], "jetstream");
        assert_eq!(span["channel"], "ORDERS");
        assert_eq!(span["seq"], 7);
        assert_eq!(span["redelivered"], true);
        assert_eq!(span["order_uid"], "b563feb7b2b84b6test");
    }

    #[test]
    fn a_uid_recorded_after_the_span_opened_reaches_the_next_lines_and_explicit_parents_count() {
        let lines = json_lines(|| {
            let span = MessageSpan::delivery(&Origin::new(SourceKind::Stan, "orders"), 9, false);
            span.in_scope(|| tracing::warn!("first"));

            span.record_uid("later-uid");
            tracing::warn!(parent: &span.open(), "second");
        });

        assert_eq!(lines.len(), 2);
        assert!(lines[0]["span"].get("order_uid").is_none());
        assert_eq!(lines[1]["fields"]["message"], "second");
        assert_eq!(lines[1]["span"]["name"], "Process order");
        assert_eq!(lines[1]["span"]["seq"], 9);
        assert_eq!(lines[1]["span"]["order_uid"], "later-uid");
    }

    #[test]
    fn a_span_opened_by_its_maker_is_kept_and_gets_the_uid() {
        let lines = json_lines(|| {
            let span = MessageSpan::opened(tracing::info_span!(
                parent: None,
                "Replay dead letter",
                dead_letter_id = 3,
                order_uid = field::Empty
            ));
            span.record_uid("replayed-uid");
            span.in_scope(|| tracing::warn!("rejected again"));
        });

        assert_eq!(lines[0]["span"]["name"], "Replay dead letter");
        assert_eq!(lines[0]["span"]["dead_letter_id"], 3);
        assert_eq!(lines[0]["span"]["order_uid"], "replayed-uid");
    }

    #[test]
    fn a_line_below_the_filter_builds_no_span() {
        // Arrange
        let span = MessageSpan::delivery(&Origin::new(SourceKind::Stan, "orders"), 2, false);

        // Act: the pipeline's per-message debug line, under the default filter.
        let lines =
            json_lines(|| tracing::debug!(parent: &span.open(), "Committed; acknowledging."));

        // Assert: the macro evaluates its parent only for a line that is written.
        assert!(lines.is_empty());
        assert!(span.state().span.is_none());
    }

    #[test]
    fn no_span_is_built_for_a_message_that_logs_nothing() {
        // Arrange
        let span = MessageSpan::delivery(&Origin::new(SourceKind::Stan, "orders"), 1, false);

        // Act
        span.record_uid("quiet");

        // Assert
        assert!(span.state().span.is_none());
    }
}
