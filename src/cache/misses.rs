//! Coalescing of cache misses into batched lookups, so that unknown ids cost bounded database work.
//!
//! Every uid waits once, however many requests ask for it. A lookup query takes every uid queued so far (up to
//! `max_batch`); while `max_in_flight` queries run, new misses queue for the next one. So one cache makes at most
//! `max_in_flight` queries at a time whatever the request rate: the rate grows into larger batches, not into more
//! queries.

use std::collections::HashMap;
use std::sync::Arc;

pub struct MissQueue<W> {
    /// Every uid with waiters, queued or in a query.
    waiting: HashMap<Arc<str>, Vec<W>>,
    /// Waiting uids not yet in a query, oldest first.
    queued: Vec<Arc<str>>,
    in_flight: usize,
    max_in_flight: usize,
    max_batch: usize,
}

impl<W> MissQueue<W> {
    pub fn new(max_in_flight: usize, max_batch: usize) -> MissQueue<W> {
        MissQueue {
            waiting: HashMap::new(),
            queued: Vec::new(),
            in_flight: 0,
            max_in_flight: max_in_flight.max(1),
            max_batch: max_batch.max(1),
        }
    }

    /// Adds a waiter for `uid`; the uid is queued unless it already waits (queued or in a query).
    pub fn wait(&mut self, uid: &str, waiter: W) {
        match self.waiting.get_mut(uid) {
            Some(waiters) => waiters.push(waiter),
            None => {
                let uid: Arc<str> = Arc::from(uid);
                self.queued.push(uid.clone());
                self.waiting.insert(uid, vec![waiter]);
            }
        }
    }

    /// The uids of the next query, if one may start now; the caller must call `finished` when it ends.
    pub fn next_batch(&mut self) -> Option<Vec<Arc<str>>> {
        if self.queued.is_empty() || self.in_flight >= self.max_in_flight {
            return None;
        }
        let count = self.queued.len().min(self.max_batch);
        self.in_flight += 1;
        Some(self.queued.drain(..count).collect())
    }

    /// The waiters of one uid of a query that ended.
    pub fn take_waiters(&mut self, uid: &str) -> Vec<W> {
        self.waiting.remove(uid).unwrap_or_default()
    }

    /// A query ended (after its waiters were taken).
    pub fn finished(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Uids waiting, queued or in a query.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_waiters_of_one_uid_make_one_lookup() {
        let mut queue = MissQueue::new(1, 100);
        for waiter in 0..50 {
            queue.wait("a", waiter);
        }
        assert_eq!(queue.next_batch(), Some(vec![Arc::from("a")]));
        assert_eq!(queue.take_waiters("a"), (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn misses_during_a_query_wait_for_one_next_query() {
        // Arrange: one query in flight.
        let mut queue = MissQueue::new(1, 100);
        queue.wait("a", 0);
        let first = queue.next_batch().expect("a query may start");

        // Act: misses arrive while it runs, one uid twice.
        for (i, uid) in ["b", "c", "b", "d"].iter().enumerate() {
            queue.wait(uid, i + 1);
        }
        let while_busy = queue.next_batch();
        for uid in &first {
            queue.take_waiters(uid);
        }
        queue.finished();
        let second = queue.next_batch();

        // Assert
        assert_eq!(while_busy, None, "no second query while one is in flight");
        let expected: Vec<Arc<str>> = vec!["b".into(), "c".into(), "d".into()];
        assert_eq!(second, Some(expected));
        assert_eq!(queue.take_waiters("b"), vec![1, 3]);
    }

    #[test]
    fn a_uid_already_in_a_query_is_not_queued_again() {
        let mut queue = MissQueue::new(2, 100);
        queue.wait("a", 0);
        let _first = queue.next_batch();
        queue.wait("a", 1);
        assert_eq!(queue.next_batch(), None, "nothing new to look up");
        assert_eq!(queue.take_waiters("a"), vec![0, 1]);
    }

    #[test]
    fn batches_are_capped_and_queries_in_flight_are_capped() {
        let mut queue = MissQueue::new(2, 3);
        for i in 0..10 {
            queue.wait(&i.to_string(), i);
        }
        assert_eq!(queue.next_batch().map(|b| b.len()), Some(3));
        assert_eq!(queue.next_batch().map(|b| b.len()), Some(3));
        assert_eq!(queue.next_batch(), None);
        assert_eq!(queue.in_flight(), 2);
        queue.finished();
        assert_eq!(queue.next_batch().map(|b| b.len()), Some(3));
        assert_eq!(queue.waiting(), 10);
    }
}
