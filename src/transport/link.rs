//! What one source's connection tells operators: the server it is on now, since when it has been without a
//! working connection, and (JetStream) the stream's replica count. The transports write it (async-nats reports its own disconnects and reconnects), the
//! subscriber writes it when it drops a connection and when messages flow again; metrics and readiness read it.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::Histogram;

/// One source's link to its broker.
#[derive(Debug)]
pub struct Link {
    state: Mutex<State>,
    /// Seconds from losing the connection to the next message or successful call, observed once per loss.
    recovery: Histogram,
}

#[derive(Debug, Default)]
struct State {
    /// `host:port` of the server the connection is on, without credentials; `None` while not connected.
    server: Option<String>,
    /// When the connection was lost, until messages flow or the broker answers again.
    lost_at: Option<Instant>,
    /// The JetStream stream's replica count, as found at connect.
    stream_replicas: Option<usize>,
}

impl Link {
    pub fn new(recovery: Histogram) -> Link {
        Link {
            state: Mutex::new(State::default()),
            recovery,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection is on `server` (`host:port`).
    pub fn connected(&self, server: String) {
        self.state().server = Some(server);
    }

    /// The connection is gone (the first loss counts; a second one before recovery does not restart the clock).
    pub fn lost(&self) {
        let mut state = self.state();
        state.server = None;
        state.lost_at.get_or_insert_with(Instant::now);
    }

    /// A message arrived or the broker answered: the loss, if any, is over.
    pub fn working(&self) {
        if let Some(lost_at) = self.state().lost_at.take() {
            self.recovery.observe(lost_at.elapsed().as_secs_f64());
        }
    }

    /// The JetStream stream has `replicas` replicas.
    pub fn stream_replicas(&self, replicas: usize) {
        self.state().stream_replicas = Some(replicas);
    }

    /// The JetStream stream's replica count, once connected.
    pub fn replicas(&self) -> Option<usize> {
        self.state().stream_replicas
    }

    /// The server the connection is on now.
    pub fn server(&self) -> Option<String> {
        self.state().server.clone()
    }

    /// How long the source has been without a working connection; `None` while it works.
    pub fn down_for(&self) -> Option<Duration> {
        self.state().lost_at.map(|lost_at| lost_at.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use prometheus::HistogramOpts;

    use super::*;

    #[test]
    fn a_loss_is_timed_once_until_the_link_works_again() {
        let histogram = Histogram::with_opts(HistogramOpts::new("h", "h")).expect("a histogram");
        let link = Link::new(histogram.clone());
        link.connected("a:4222".into());
        assert_eq!(link.server().as_deref(), Some("a:4222"));
        assert_eq!(link.down_for(), None);

        link.lost();
        let first = link.down_for().expect("down");
        link.lost();
        assert!(
            link.down_for().expect("still down") >= first,
            "the clock did not restart"
        );
        assert_eq!(link.server(), None);

        link.working();
        link.working();
        link.connected("b:4222".into());
        assert_eq!(link.down_for(), None);
        assert_eq!(link.server().as_deref(), Some("b:4222"));
        assert_eq!(histogram.get_sample_count(), 1);
    }
}
