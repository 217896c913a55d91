//! The documents of one cache, by order_uid, with an optional bound on their bytes.
//!
//! Without a bound it is a plain map: the hit path stays one hash lookup, as before the bound existed. With a bound
//! it is CLOCK (second chance): a hit sets the entry's reference bit; to make room the hand sweeps the entries,
//! clearing set bits and evicting the first entry whose bit is clear. That keeps the orders read since the hand last
//! passed, at the cost of one bit per entry and no list to reorder on a hit (LRU would move an entry on every hit).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

/// What an entry is charged against the bound besides its document: its order_uid and about the size of its map
/// entry and slot (pointers, lengths, the reference bit).
pub const ENTRY_OVERHEAD: usize = 64;

/// The bytes one order is charged against the bound.
pub fn charge(uid: &str, document: &Bytes) -> usize {
    document.len() + uid.len() + ENTRY_OVERHEAD
}

/// What an insert did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// The order was not cached and now is.
    pub added: bool,
    /// Entries evicted to make room.
    pub evicted: usize,
}

pub enum DocumentStore {
    Unbounded {
        orders: HashMap<Arc<str>, Bytes>,
        document_bytes: usize,
    },
    Bounded(Clock),
}

impl DocumentStore {
    /// `max_bytes: None` keeps every order.
    pub fn new(max_bytes: Option<usize>, capacity: usize) -> DocumentStore {
        match max_bytes {
            None => DocumentStore::Unbounded {
                orders: HashMap::with_capacity(capacity),
                document_bytes: 0,
            },
            Some(max_bytes) => DocumentStore::Bounded(Clock {
                index: HashMap::new(),
                slots: Vec::new(),
                hand: 0,
                charged: 0,
                document_bytes: 0,
                max_bytes,
            }),
        }
    }

    /// The document, marking it as recently used.
    pub fn get(&mut self, uid: &str) -> Option<Bytes> {
        match self {
            DocumentStore::Unbounded { orders, .. } => orders.get(uid).cloned(),
            DocumentStore::Bounded(clock) => clock.get(uid),
        }
    }

    pub fn contains(&self, uid: &str) -> bool {
        match self {
            DocumentStore::Unbounded { orders, .. } => orders.contains_key(uid),
            DocumentStore::Bounded(clock) => clock.index.contains_key(uid),
        }
    }

    /// Adds an order unless its uid is cached: orders are static, so the first document stays. `referenced` says
    /// whether it was just asked for (a read-through) rather than merely committed.
    pub fn insert(&mut self, uid: Arc<str>, document: Bytes, referenced: bool) -> Inserted {
        match self {
            DocumentStore::Unbounded {
                orders,
                document_bytes,
            } => match orders.entry(uid) {
                Entry::Vacant(entry) => {
                    *document_bytes += document.len();
                    entry.insert(document);
                    Inserted {
                        added: true,
                        evicted: 0,
                    }
                }
                Entry::Occupied(_) => Inserted::default(),
            },
            DocumentStore::Bounded(clock) => clock.insert(uid, document, referenced),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            DocumentStore::Unbounded { orders, .. } => orders.len(),
            DocumentStore::Bounded(clock) => clock.slots.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the cached documents.
    pub fn document_bytes(&self) -> usize {
        match self {
            DocumentStore::Unbounded { document_bytes, .. } => *document_bytes,
            DocumentStore::Bounded(clock) => clock.document_bytes,
        }
    }

    /// Every entry (reference counts only, no document copies).
    pub fn entries(&self) -> Vec<(Arc<str>, Bytes)> {
        match self {
            DocumentStore::Unbounded { orders, .. } => orders
                .iter()
                .map(|(uid, document)| (uid.clone(), document.clone()))
                .collect(),
            DocumentStore::Bounded(clock) => clock
                .slots
                .iter()
                .map(|slot| (slot.uid.clone(), slot.document.clone()))
                .collect(),
        }
    }
}

/// The bounded store: entries in a vector the hand sweeps, and an index from uid to slot.
pub struct Clock {
    index: HashMap<Arc<str>, usize>,
    slots: Vec<Slot>,
    hand: usize,
    /// Bytes charged against `max_bytes` (see `charge`).
    charged: usize,
    document_bytes: usize,
    max_bytes: usize,
}

struct Slot {
    uid: Arc<str>,
    document: Bytes,
    referenced: bool,
}

impl Clock {
    fn get(&mut self, uid: &str) -> Option<Bytes> {
        let slot = &mut self.slots[*self.index.get(uid)?];
        slot.referenced = true;
        Some(slot.document.clone())
    }

    fn insert(&mut self, uid: Arc<str>, document: Bytes, referenced: bool) -> Inserted {
        if self.index.contains_key(&uid) {
            return Inserted::default();
        }
        let cost = charge(&uid, &document);
        if cost > self.max_bytes {
            // It could only be kept by emptying the cache: serve it, but do not keep it.
            return Inserted::default();
        }
        let mut evicted = 0;
        while self.charged + cost > self.max_bytes {
            self.evict_one();
            evicted += 1;
        }
        self.charged += cost;
        self.document_bytes += document.len();
        self.index.insert(uid.clone(), self.slots.len());
        self.slots.push(Slot {
            uid,
            document,
            referenced,
        });
        Inserted {
            added: true,
            evicted,
        }
    }

    /// Sweeps from the hand: a set bit buys the entry one more round, a clear one is evicted. Ends within two
    /// rounds. Only called while something is charged, so `slots` is not empty.
    fn evict_one(&mut self) {
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let slot = &mut self.slots[self.hand];
            if slot.referenced {
                slot.referenced = false;
                self.hand += 1;
                continue;
            }
            let removed = self.slots.swap_remove(self.hand);
            self.index.remove(&removed.uid);
            if let Some(moved) = self.slots.get(self.hand) {
                // The last entry took the evicted one's place; the hand looks at it next.
                self.index.insert(moved.uid.clone(), self.hand);
            }
            self.charged -= charge(&removed.uid, &removed.document);
            self.document_bytes -= removed.document.len();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(len: usize) -> Bytes {
        Bytes::from(vec![b'x'; len])
    }

    /// Room for exactly `n` orders with one-letter uids and `len`-byte documents.
    fn bounded_for(n: usize, len: usize) -> DocumentStore {
        DocumentStore::new(Some(n * (len + 1 + ENTRY_OVERHEAD)), 0)
    }

    #[test]
    fn without_a_bound_nothing_is_evicted_and_the_first_document_stays() {
        let mut store = DocumentStore::new(None, 0);
        for uid in ["a", "b", "c"] {
            assert!(store.insert(uid.into(), document(10), false).added);
        }
        assert!(!store.insert("a".into(), document(99), false).added);
        assert_eq!(store.len(), 3);
        assert_eq!(store.document_bytes(), 30);
        assert_eq!(store.get("a").map(|d| d.len()), Some(10));
    }

    #[test]
    fn a_full_bounded_store_evicts_an_entry_not_read_since_the_hand_passed() {
        // Arrange: room for three; "a" and "c" are read, "b" is not.
        let mut store = bounded_for(3, 10);
        for uid in ["a", "b", "c"] {
            store.insert(uid.into(), document(10), false);
        }
        store.get("a");
        store.get("c");

        // Act
        let inserted = store.insert("d".into(), document(10), false);

        // Assert
        assert_eq!(
            inserted,
            Inserted {
                added: true,
                evicted: 1
            }
        );
        assert!(!store.contains("b"), "the unread entry is the one evicted");
        for uid in ["a", "c", "d"] {
            assert!(store.contains(uid), "{uid} stays");
        }
        assert_eq!(store.document_bytes(), 30);
    }

    #[test]
    fn entries_read_again_survive_a_stream_of_new_orders() {
        // Arrange: room for ten; "hot" is read between every insert.
        let mut store = bounded_for(10, 10);
        store.insert("hot".into(), document(8), true);
        let mut evicted = 0;

        // Act
        for i in 0..1000 {
            store.get("hot");
            evicted += store
                .insert(format!("{i:03}").into(), document(8), false)
                .evicted;
        }

        // Assert
        assert!(store.contains("hot"));
        assert!(store.len() <= 10);
        assert_eq!(evicted, 1000 + 1 - store.len());
    }

    #[test]
    fn when_every_entry_was_read_the_hand_clears_them_and_still_makes_room() {
        let mut store = bounded_for(2, 10);
        store.insert("a".into(), document(10), true);
        store.insert("b".into(), document(10), true);
        let inserted = store.insert("c".into(), document(10), true);
        assert_eq!(inserted.evicted, 1);
        assert_eq!(store.len(), 2);
        assert!(store.contains("c"));
    }

    #[test]
    fn a_document_larger_than_the_bound_is_not_kept_and_evicts_nothing() {
        let mut store = bounded_for(2, 10);
        store.insert("a".into(), document(10), false);
        let inserted = store.insert("b".into(), document(1000), true);
        assert_eq!(inserted, Inserted::default());
        assert!(store.contains("a"));
        assert!(!store.contains("b"));
    }

    #[test]
    fn the_index_follows_entries_moved_by_an_eviction() {
        // Evicting from the middle moves the last entry into the hole; every remaining uid must still resolve to
        // its own document.
        let mut store = bounded_for(4, 3);
        for (uid, body) in [("a", b"aaa"), ("b", b"bbb"), ("c", b"ccc"), ("d", b"ddd")] {
            store.insert(uid.into(), Bytes::from_static(body), false);
        }
        store.get("a");
        store.insert("e".into(), Bytes::from_static(b"eee"), false);
        for uid in ["a", "c", "d", "e"] {
            let expected = uid.repeat(3);
            assert_eq!(
                store.get(uid).as_deref(),
                Some(expected.as_bytes()),
                "uid {uid}"
            );
        }
        assert!(!store.contains("b"));
    }
}
