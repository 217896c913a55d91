//! Where the broker keeps what must outlive it. `State` keeps everything in memory and tells its
//! store about each new message and, when asked, hands it a snapshot of clients and
//! subscriptions; the memory store ignores both, the file store writes them to disk.

mod file;
mod log;

use std::io;

pub(crate) use file::{FileStore, Recovered};

use crate::channel::StoredMsg;

/// The file store's own protobuf records (package `store`), generated from `store.proto` (next to this file).
#[allow(clippy::all, missing_docs)]
pub(crate) mod pb {
    include!(concat!(env!("OUT_DIR"), "/store.rs"));
}

/// What a store must do for `State`.
pub(crate) trait Store: Send {
    /// Whether snapshots are kept at all; when false `State` does not build them.
    fn keeps_state(&self) -> bool;
    /// Records a message just appended to `channel`. It may be buffered until `commit`.
    fn append(&mut self, channel: &str, msg: &StoredMsg) -> io::Result<()>;
    /// Makes every appended message durable; called before their PubAcks go out.
    fn commit(&mut self) -> io::Result<()>;
    /// Replaces the saved clients and subscriptions, atomically.
    fn save_snapshot(&mut self, snapshot: &pb::Snapshot) -> io::Result<()>;
    /// Whether so many of `channel`'s stored messages were dropped by the limits that `compact` pays off.
    fn wants_compaction(&self, _channel: &str, _live: usize) -> bool {
        false
    }
    /// Keeps only `live`, the messages `channel` still holds, atomically; commits what was appended before.
    fn compact(
        &mut self,
        _channel: &str,
        _live: &mut dyn Iterator<Item = &StoredMsg>,
    ) -> io::Result<()> {
        Ok(())
    }
}

/// Keeps nothing: a restart starts empty.
pub(crate) struct MemoryStore;

impl Store for MemoryStore {
    fn keeps_state(&self) -> bool {
        false
    }

    fn append(&mut self, _channel: &str, _msg: &StoredMsg) -> io::Result<()> {
        Ok(())
    }

    fn commit(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn save_snapshot(&mut self, _snapshot: &pb::Snapshot) -> io::Result<()> {
        Ok(())
    }
}
