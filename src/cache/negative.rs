//! Order ids recently looked up in PostgreSQL and not found there, so that asking again costs no query.
//!
//! Bounded by two generations: inserts go to the current set; when it is full it becomes the previous one and the
//! oldest generation is dropped. O(1) per operation, no per-entry timestamps, and at most `capacity` ids kept.
//! An entry is removed when its order arrives (the feed or this instance's persister delivers it).

use std::collections::HashSet;
use std::sync::Arc;

pub struct NegativeCache {
    current: HashSet<Arc<str>>,
    previous: HashSet<Arc<str>>,
    generation: usize,
}

impl NegativeCache {
    /// Keeps between `capacity / 2` and `capacity` of the most recent ids.
    pub fn new(capacity: usize) -> NegativeCache {
        NegativeCache {
            current: HashSet::new(),
            previous: HashSet::new(),
            generation: (capacity / 2).max(1),
        }
    }

    pub fn insert(&mut self, uid: Arc<str>) {
        if self.current.len() >= self.generation {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(uid);
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.current.contains(uid) || self.previous.contains(uid)
    }

    /// Forgets `uid`: it is stored now.
    pub fn remove(&mut self, uid: &str) {
        if !self.is_empty() {
            self.current.remove(uid);
            self.previous.remove(uid);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_empty() && self.previous.is_empty()
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_remembered_until_removed() {
        let mut negative = NegativeCache::new(10);
        negative.insert("a".into());
        assert!(negative.contains("a"));
        negative.remove("a");
        assert!(!negative.contains("a"));
    }

    #[test]
    fn the_size_stays_within_the_capacity_and_the_newest_ids_are_kept() {
        let mut negative = NegativeCache::new(100);
        for i in 0..10_000 {
            negative.insert(i.to_string().into());
            assert!(negative.len() <= 100, "after {i} inserts");
        }
        for i in 9_950..10_000 {
            assert!(negative.contains(&i.to_string()), "{i} is recent");
        }
        assert!(!negative.contains("0"));
    }
}
