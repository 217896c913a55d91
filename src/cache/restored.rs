//! The orders restored from PostgreSQL at start, in one index that every cache member reads: each order's uid and
//! document are copied once, side by side, into large chunks, and a hash table maps the uid to its slot.
//!
//! Why shared: a map per HTTP worker cost an `Arc<str>` and a map entry per order per worker (over 100 bytes an
//! order with three members), and each member spent its own pass over the snapshot before the service was ready.
//! The index is immutable once built, so members read it without a lock; what arrives later (commits, the feed,
//! read-throughs) goes to each member's own store. Every member keeps its lookups: it holds a handle to this index
//! next to its store and answers from both.
//!
//! With a cache bound the index is not used (it stays empty): a member evicts on its own, and a chunk lives while
//! any of its documents is cached, so an eviction would free nothing.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use bytes::Bytes;
use hashbrown::HashTable;

use crate::cache::messages::CachedOrder;
use crate::cache::store::charge;
use crate::storage::feed::FeedStart;
use crate::storage::{self, PersistError, Pool};

/// What PostgreSQL held at start, as the cache group takes it.
pub struct Restore {
    /// Without a bound, every stored order, for all members to share; empty with one.
    pub shared: RestoredOrders,
    /// With a bound, the newest orders that fit it, oldest first, for each member's own store: its CLOCK hand
    /// starts at the oldest, so new orders evict old ones first.
    pub each: Vec<CachedOrder>,
    /// Where the change feed starts.
    pub feed_start: FeedStart,
}

impl Restore {
    /// Orders restored.
    pub fn len(&self) -> usize {
        self.shared.len() + self.each.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads the stored orders from one snapshot: all of them into the shared index, or with `max_bytes` (one
/// member's bound, see `charge`) the newest that fit.
pub async fn restore(pool: &Pool, max_bytes: Option<usize>) -> Result<Restore, PersistError> {
    let Some(max_bytes) = max_bytes else {
        let expected = storage::restore::estimated_orders(pool).await?;
        let mut shared = RestoredOrdersBuilder::new(expected);
        let feed_start = storage::restore::restore(pool, false, |uid, document| {
            // An order too large to index is left to the read-through.
            shared.push(uid, document);
            true
        })
        .await?;
        return Ok(Restore {
            shared: shared.finish(),
            each: Vec::new(),
            feed_start,
        });
    };
    let mut each = Vec::new();
    let mut charged = 0;
    let feed_start = storage::restore::restore(pool, true, |uid, document| {
        let document = Bytes::copy_from_slice(document);
        charged += charge(uid, &document);
        if charged > max_bytes {
            return false;
        }
        each.push(CachedOrder {
            uid: Arc::from(uid),
            document,
        });
        true
    })
    .await?;
    each.reverse();
    Ok(Restore {
        shared: RestoredOrders::empty(),
        each,
        feed_start,
    })
}

/// Size of one chunk; a larger order gets a chunk of its own size.
const CHUNK: usize = 1 << 20;

/// Where one order lies: its uid at `offset` of chunk `chunk`, its document right after.
#[derive(Clone, Copy)]
struct Slot {
    chunk: u32,
    offset: u32,
    uid_len: u32,
    document_len: u32,
}

/// The restored orders; see the module's head.
pub struct RestoredOrders {
    chunks: Vec<Bytes>,
    slots: Vec<Slot>,
    /// Indexes into `slots`, hashed by uid.
    table: HashTable<u32>,
    /// Keyed per process: the uids come from outside, so their hashes must not be predictable.
    hasher: RandomState,
    document_bytes: usize,
}

impl RestoredOrders {
    pub fn empty() -> RestoredOrders {
        RestoredOrdersBuilder::new(0).finish()
    }

    /// The order's document: a reference to its chunk, no copy.
    pub fn get(&self, uid: &str) -> Option<Bytes> {
        let slot = self.find(uid)?;
        let start = slot.offset as usize + slot.uid_len as usize;
        Some(self.chunks[slot.chunk as usize].slice(start..start + slot.document_len as usize))
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.find(uid).is_some()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes of the documents (not their uids or the index).
    pub fn document_bytes(&self) -> usize {
        self.document_bytes
    }

    /// About the bytes of the index: slots and hash table (a bucket per 7/8 of an entry, a control byte each),
    /// without the chunks.
    pub fn index_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.table.capacity() * 8 / 7 * (std::mem::size_of::<u32>() + 1)
    }

    fn find(&self, uid: &str) -> Option<&Slot> {
        let hash = self.hasher.hash_one(uid.as_bytes());
        let index = self.table.find(hash, |&i| {
            uid_in(&self.chunks, &[], &self.slots[i as usize]) == uid.as_bytes()
        })?;
        Some(&self.slots[*index as usize])
    }
}

/// The uid bytes of `slot`: in its frozen chunk, or in `filling` (the chunk a builder is still filling).
fn uid_in<'a>(chunks: &'a [Bytes], filling: &'a [u8], slot: &Slot) -> &'a [u8] {
    let chunk = chunks.get(slot.chunk as usize).map_or(filling, |c| &c[..]);
    let start = slot.offset as usize;
    &chunk[start..start + slot.uid_len as usize]
}

/// Fills a `RestoredOrders` in the order the rows arrive.
pub struct RestoredOrdersBuilder {
    /// Full chunks, frozen.
    chunks: Vec<Bytes>,
    /// The chunk being filled; frozen whole when the next order does not fit.
    filling: Vec<u8>,
    slots: Vec<Slot>,
    table: HashTable<u32>,
    hasher: RandomState,
    document_bytes: usize,
}

impl RestoredOrdersBuilder {
    /// `expected`: about how many orders will come (the table and the slots are sized for them once).
    pub fn new(expected: usize) -> RestoredOrdersBuilder {
        RestoredOrdersBuilder {
            chunks: Vec::new(),
            filling: Vec::new(),
            slots: Vec::with_capacity(expected),
            table: HashTable::with_capacity(expected),
            hasher: RandomState::new(),
            document_bytes: 0,
        }
    }

    /// Adds an order; a uid already added keeps its first document. False if it could not be indexed (more than
    /// 4 GiB in one order, or 2^32 orders), which a validated order never reaches.
    pub fn push(&mut self, uid: &str, document: &[u8]) -> bool {
        let hash = self.hasher.hash_one(uid.as_bytes());
        let chunks = &self.chunks;
        let slots = &self.slots;
        let filling = &self.filling;
        let seen = self.table.find(hash, |&i| {
            uid_in(chunks, filling, &slots[i as usize]) == uid.as_bytes()
        });
        if seen.is_some() {
            return true;
        }
        let size = uid.len() + document.len();
        if self.filling.capacity() - self.filling.len() < size {
            self.freeze_filling();
            self.filling = Vec::with_capacity(CHUNK.max(size));
        }
        let (Ok(chunk), Ok(offset), Ok(uid_len), Ok(document_len), Ok(index)) = (
            u32::try_from(self.chunks.len()),
            u32::try_from(self.filling.len()),
            u32::try_from(uid.len()),
            u32::try_from(document.len()),
            u32::try_from(self.slots.len()),
        ) else {
            return false;
        };
        self.filling.extend_from_slice(uid.as_bytes());
        self.filling.extend_from_slice(document);
        self.slots.push(Slot {
            chunk,
            offset,
            uid_len,
            document_len,
        });
        let hasher = &self.hasher;
        let (chunks, filling, slots) = (&self.chunks, &self.filling, &self.slots);
        self.table.insert_unique(hash, index, |&i| {
            hasher.hash_one(uid_in(chunks, filling, &slots[i as usize]))
        });
        self.document_bytes += document.len();
        true
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn finish(mut self) -> RestoredOrders {
        self.freeze_filling();
        self.slots.shrink_to_fit();
        RestoredOrders {
            chunks: self.chunks,
            slots: self.slots,
            table: self.table,
            hasher: self.hasher,
            document_bytes: self.document_bytes,
        }
    }

    fn freeze_filling(&mut self) {
        if !self.filling.is_empty() {
            self.chunks
                .push(Bytes::from(std::mem::take(&mut self.filling)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_order_is_found_with_its_exact_document_and_the_first_document_stays() {
        // Arrange: small orders, one larger than a chunk, and a uid given twice.
        let big = vec![b'7'; CHUNK + 3];
        let mut builder = RestoredOrdersBuilder::new(2);
        for i in 0..5_000 {
            assert!(builder.push(&format!("order{i:05}"), format!("{{\"n\":{i}}}").as_bytes()));
        }
        builder.push("big", &big);
        builder.push("order00007", b"second");

        // Act
        let restored = builder.finish();

        // Assert
        assert_eq!(restored.len(), 5_001);
        for i in 0..5_000 {
            let expected = format!("{{\"n\":{i}}}");
            assert_eq!(
                restored.get(&format!("order{i:05}")).as_deref(),
                Some(expected.as_bytes()),
                "order {i}"
            );
        }
        assert_eq!(restored.get("big").as_deref(), Some(&big[..]));
        assert_eq!(
            restored.get("order0000"),
            None,
            "a prefix of a uid is not a uid"
        );
        assert!(!restored.contains("unknown"));
        assert_eq!(
            restored.document_bytes(),
            (0..5_000)
                .map(|i| format!("{{\"n\":{i}}}").len())
                .sum::<usize>()
                + big.len()
        );
    }

    #[test]
    fn a_lookup_shares_the_chunk_instead_of_copying() {
        let mut builder = RestoredOrdersBuilder::new(0);
        builder.push("a", b"{}");
        let restored = builder.finish();
        let (first, second) = (restored.get("a"), restored.get("a"));
        assert_eq!(
            first.as_deref().map(<[u8]>::as_ptr),
            second.as_deref().map(<[u8]>::as_ptr)
        );
    }

    #[test]
    fn the_index_costs_well_under_100_bytes_an_order() {
        let n = 100_000;
        let mut builder = RestoredOrdersBuilder::new(n);
        for i in 0..n {
            builder.push(&format!("b563feb7b2b84b6test{i:06}"), b"{}");
        }
        let restored = builder.finish();
        let per_order = restored.index_bytes() / n;
        assert!(per_order <= 40, "{per_order} B an order");
    }
}
