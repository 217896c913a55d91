//! Copies of documents packed into large shared chunks: one allocation per megabyte instead of one per order, so a
//! million cached orders cost little more than their JSON. With a bound the chunks are not used: a chunk lives
//! while any of its documents is cached, so evicting a document would free nothing.

use bytes::{Bytes, BytesMut};

pub struct DocumentArena {
    chunk: BytesMut,
    packed: bool,
    /// Bytes of every chunk allocated so far: what the arena has cost, for tests and accounting.
    allocated: usize,
}

/// Size of one arena chunk.
const ARENA_CHUNK: usize = 1 << 20;

impl DocumentArena {
    pub fn new() -> DocumentArena {
        DocumentArena {
            chunk: BytesMut::new(),
            packed: true,
            allocated: 0,
        }
    }

    /// Packed into chunks without a cache bound, one allocation per document with one.
    pub fn for_bound(max_bytes: Option<usize>) -> DocumentArena {
        DocumentArena {
            chunk: BytesMut::new(),
            packed: max_bytes.is_none(),
            allocated: 0,
        }
    }

    /// Bytes of every chunk allocated so far.
    pub fn allocated_bytes(&self) -> usize {
        self.allocated
    }

    /// A `Bytes` with a copy of `document`, sharing its chunk with its neighbours when packed.
    pub fn copy(&mut self, document: &[u8]) -> Bytes {
        if !self.packed {
            return Bytes::copy_from_slice(document);
        }
        if self.chunk.capacity() - self.chunk.len() < document.len() {
            let size = ARENA_CHUNK.max(document.len());
            self.chunk = BytesMut::with_capacity(size);
            self.allocated += size;
        }
        self.chunk.extend_from_slice(document);
        self.chunk.split().freeze()
    }
}

impl Default for DocumentArena {
    fn default() -> Self {
        DocumentArena::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arena_returns_exact_copies() {
        let mut arena = DocumentArena::new();
        let big = vec![7u8; ARENA_CHUNK + 1];
        let copies: Vec<Bytes> = [&b"one"[..], &b"two!"[..], &big, &b""[..]]
            .iter()
            .map(|d| arena.copy(d))
            .collect();
        assert_eq!(copies[0], &b"one"[..]);
        assert_eq!(copies[1], &b"two!"[..]);
        assert_eq!(copies[2], big);
        assert!(copies[3].is_empty());
    }
}
