//! The file store. Layout of its directory:
//!
//! ```text
//! LOCK                      held (flock) while a broker uses the directory
//! state.snap                one framed `Snapshot`: clients, subscriptions, queue groups
//! channels/<hex name>.log   framed `StoredMsg` records, append-only, oldest first
//! ```
//!
//! Messages are appended to their channel's log and written out (fsync too with `file_sync`)
//! before their PubAcks are sent. The snapshot is rewritten whole (temp file, then rename, so it
//! is always either the old or the new one) when clients or subscriptions come and go, and every
//! so often while deliveries and acks change positions. A torn record at the end of a log, left
//! by a crash, is cut off on load.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use bytes::Bytes;
use prost::Message;

use super::log::{frame, read_records, HEADER};
use super::{pb, Store};
use crate::channel::{Channel, StoredMsg};

const SNAPSHOT: &str = "state.snap";
const SNAPSHOT_TMP: &str = "state.snap.tmp";
const CHANNELS: &str = "channels";
const LOG_SUFFIX: &str = ".log";

/// What a previous broker left in the directory.
pub(crate) struct Recovered {
    /// None on first use of the directory.
    pub snapshot: Option<pb::Snapshot>,
    pub channels: Vec<(String, Channel)>,
}

pub(crate) struct FileStore {
    dir: PathBuf,
    sync: bool,
    logs: HashMap<String, BufWriter<File>>,
    unflushed: HashSet<String>,
    /// Records in each channel's log, live or dropped by the limits.
    records: HashMap<String, usize>,
    /// Holds the directory's lock for as long as the store lives.
    _lock: File,
    buffer: Vec<u8>,
}

impl FileStore {
    /// Opens (creating if needed) the store in `dir` and reads it back, applying the channel
    /// limits. Returns `None` while another broker holds the directory.
    pub fn open(
        dir: &Path,
        sync: bool,
        max_msgs: u64,
        max_bytes: u64,
    ) -> anyhow::Result<Option<(FileStore, Recovered)>> {
        fs::create_dir_all(dir.join(CHANNELS))
            .with_context(|| format!("Failed to create the store directory {}", dir.display()))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))
            .context("Failed to open the store's lock file")?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(error)) => {
                return Err(error).context("Failed to lock the store directory")
            }
        }
        let snapshot = read_snapshot(&dir.join(SNAPSHOT))?;
        let mut channels = Vec::new();
        let mut records = HashMap::new();
        let entries = fs::read_dir(dir.join(CHANNELS)).context("Failed to list channel logs")?;
        for entry in entries {
            let path = entry.context("Failed to list channel logs")?.path();
            let Some(name) = channel_name(&path) else {
                tracing::warn!(path = %path.display(), "Ignored a file that is not a channel log.");
                continue;
            };
            let channel = load_channel(&path, max_msgs, max_bytes)?;
            records.insert(name.clone(), channel.messages().count());
            channels.push((name, channel));
        }
        let store = FileStore {
            dir: dir.to_path_buf(),
            sync,
            logs: HashMap::new(),
            unflushed: HashSet::new(),
            records,
            _lock: lock,
            buffer: Vec::new(),
        };
        Ok(Some((store, Recovered { snapshot, channels })))
    }

    fn log_path(&self, channel: &str) -> PathBuf {
        self.dir
            .join(CHANNELS)
            .join(format!("{}{LOG_SUFFIX}", hex(channel.as_bytes())))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.sync {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl Store for FileStore {
    fn keeps_state(&self) -> bool {
        true
    }

    fn append(&mut self, channel: &str, msg: &StoredMsg) -> io::Result<()> {
        if !self.logs.contains_key(channel) {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path(channel))?;
            self.sync_dir(&self.dir.join(CHANNELS))?;
            self.logs
                .insert(channel.to_owned(), BufWriter::with_capacity(1 << 16, file));
        }
        let record = pb::StoredMsg {
            sequence: msg.seq,
            timestamp: msg.timestamp_ns,
            data: msg.data.to_vec(),
        };
        self.buffer.clear();
        frame(&record.encode_to_vec(), &mut self.buffer);
        if let Some(log) = self.logs.get_mut(channel) {
            log.write_all(&self.buffer)?;
        }
        self.unflushed.insert(channel.to_owned());
        *self.records.entry(channel.to_owned()).or_default() += 1;
        Ok(())
    }

    fn wants_compaction(&self, channel: &str, live: usize) -> bool {
        // Rewriting costs the live messages, so wait until at least as many dropped ones pile up.
        self.records
            .get(channel)
            .is_some_and(|records| *records >= 2 * live.max(512))
    }

    fn compact(
        &mut self,
        channel: &str,
        live: &mut dyn Iterator<Item = &StoredMsg>,
    ) -> io::Result<()> {
        // Closing the writer flushes what it buffered into the old log, which the rename then replaces.
        if let Some(mut log) = self.logs.remove(channel) {
            log.flush()?;
        }
        self.unflushed.remove(channel);
        let mut count = 0;
        rewrite_log(&self.log_path(channel), live.inspect(|_| count += 1))?;
        self.records.insert(channel.to_owned(), count);
        self.sync_dir(&self.dir.join(CHANNELS))
    }

    fn commit(&mut self) -> io::Result<()> {
        for channel in self.unflushed.drain() {
            if let Some(log) = self.logs.get_mut(&channel) {
                log.flush()?;
                if self.sync {
                    log.get_ref().sync_data()?;
                }
            }
        }
        Ok(())
    }

    fn save_snapshot(&mut self, snapshot: &pb::Snapshot) -> io::Result<()> {
        self.buffer.clear();
        frame(&snapshot.encode_to_vec(), &mut self.buffer);
        let tmp = self.dir.join(SNAPSHOT_TMP);
        let mut file = File::create(&tmp)?;
        file.write_all(&self.buffer)?;
        if self.sync {
            file.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join(SNAPSHOT))?;
        self.sync_dir(&self.dir)
    }
}

fn read_snapshot(path: &Path) -> anyhow::Result<Option<pb::Snapshot>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).context("Failed to read the store snapshot"),
    };
    // The snapshot is replaced by rename, never written in place, so a bad one is not a torn
    // write we could repair: refuse to start rather than silently forget every subscription.
    let (records, good) = read_records(&bytes);
    let [record] = records[..] else {
        bail!("The store snapshot {} is corrupt", path.display());
    };
    if good != bytes.len() {
        bail!("The store snapshot {} is corrupt", path.display());
    }
    let snapshot = pb::Snapshot::decode(record)
        .with_context(|| format!("The store snapshot {} is corrupt", path.display()))?;
    Ok(Some(snapshot))
}

/// Reads a channel log, cuts off a torn or corrupt tail, and rewrites the log when the limits
/// dropped messages from it (the log otherwise only grows).
fn load_channel(path: &Path, max_msgs: u64, max_bytes: u64) -> anyhow::Result<Channel> {
    let bytes =
        fs::read(path).with_context(|| format!("Failed to read the log {}", path.display()))?;
    let (records, mut good) = read_records(&bytes);
    let mut channel = Channel::new();
    let mut offset = 0;
    let mut count = 0u64;
    for record in records {
        let decoded = pb::StoredMsg::decode(record);
        match decoded {
            Ok(msg) if msg.sequence > channel.last_seq => {
                let msg = StoredMsg {
                    seq: msg.sequence,
                    timestamp_ns: msg.timestamp,
                    data: Bytes::from(msg.data),
                };
                channel.push(msg, max_msgs, max_bytes);
                offset += HEADER + record.len();
                count += 1;
            }
            _ => {
                good = offset;
                break;
            }
        }
    }
    if good < bytes.len() {
        tracing::warn!(
            path = %path.display(),
            kept_bytes = good,
            dropped_bytes = bytes.len() - good,
            "Cut a torn record off the end of a channel log."
        );
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("Failed to open {} to repair it", path.display()))?;
        file.set_len(good as u64)
            .with_context(|| format!("Failed to truncate {}", path.display()))?;
        file.sync_all()
            .with_context(|| format!("Failed to sync {}", path.display()))?;
    }
    let kept = channel.messages().count() as u64;
    if kept < count {
        rewrite_log(path, channel.messages())
            .with_context(|| format!("Failed to compact {}", path.display()))?;
    }
    Ok(channel)
}

/// Replaces a log with `msgs`: written to a temporary file, synced, then renamed over the log.
fn rewrite_log<'a>(path: &Path, msgs: impl Iterator<Item = &'a StoredMsg>) -> io::Result<()> {
    let mut bytes = Vec::new();
    for msg in msgs {
        let record = pb::StoredMsg {
            sequence: msg.seq,
            timestamp: msg.timestamp_ns,
            data: msg.data.to_vec(),
        };
        frame(&record.encode_to_vec(), &mut bytes);
    }
    let tmp = path.with_extension("compact");
    let mut file = File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// Channel names go into file names hex-encoded, so any subject is a safe file name.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn channel_name(path: &Path) -> Option<String> {
    let stem = path.file_name()?.to_str()?.strip_suffix(LOG_SUFFIX)?;
    if stem.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..stem.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(stem.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(channel: &Channel, data: &'static [u8]) -> StoredMsg {
        channel.next_message(Bytes::from_static(data))
    }

    /// Appends `payloads` to channel `name` of a new file store in `dir`, commits and closes the
    /// store; returns the channel as written.
    fn write_committed(
        dir: &Path,
        name: &str,
        payloads: &[&'static [u8]],
    ) -> anyhow::Result<Channel> {
        let mut channel = Channel::new();
        let (mut store, _) = FileStore::open(dir, false, 0, 0)?.expect("unlocked");
        for data in payloads {
            let m = msg(&channel, data);
            store.append(name, &m)?;
            channel.push(m, 0, 0);
        }
        store.commit()?;
        Ok(channel)
    }

    #[test]
    fn messages_survive_a_reopen_and_a_torn_tail_is_cut_off() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let channel = write_committed(dir.path(), "orders.x", &[b"a", b"b"])?;
        let log = fs::read_dir(dir.path().join(CHANNELS))?
            .next()
            .expect("one log")?
            .path();
        let mut bytes = fs::read(&log)?;
        let intact = bytes.len();
        bytes.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
        fs::write(&log, &bytes)?;

        let (_, recovered) = FileStore::open(dir.path(), false, 0, 0)?.expect("unlocked");

        let [(name, restored)] = &recovered.channels[..] else {
            panic!("expected one channel");
        };
        assert_eq!(name, "orders.x");
        let restored: Vec<(u64, i64, Bytes)> = restored
            .messages()
            .map(|m| (m.seq, m.timestamp_ns, m.data.clone()))
            .collect();
        let original: Vec<(u64, i64, Bytes)> = channel
            .messages()
            .map(|m| (m.seq, m.timestamp_ns, m.data.clone()))
            .collect();
        assert_eq!(restored, original);
        assert_eq!(
            fs::metadata(&log)?.len() as usize,
            intact,
            "torn tail cut off"
        );
        Ok(())
    }

    #[test]
    fn a_second_store_on_a_locked_directory_waits() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let first = FileStore::open(dir.path(), false, 0, 0)?;
        assert!(first.is_some());
        assert!(FileStore::open(dir.path(), false, 0, 0)?.is_none());
        drop(first);
        assert!(FileStore::open(dir.path(), false, 0, 0)?.is_some());
        Ok(())
    }

    #[test]
    fn limits_apply_on_load_and_compact_the_log() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        write_committed(dir.path(), "c", &[b"1", b"2", b"3", b"4"])?;

        let (_, recovered) = FileStore::open(dir.path(), false, 2, 0)?.expect("unlocked");
        let (_, again) = FileStore::open(dir.path(), false, 0, 0)?.expect("unlocked");

        for (what, channels) in [("limited", recovered), ("compacted", again)] {
            let sequences: Vec<u64> = channels.channels[0].1.messages().map(|m| m.seq).collect();
            assert_eq!(sequences, vec![3, 4], "{what}");
        }
        Ok(())
    }

    #[test]
    fn logs_of_limited_channels_are_compacted_while_running() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut channel = Channel::new();
        let (mut store, _) = FileStore::open(dir.path(), false, 0, 0)?.expect("unlocked");
        let mut compactions = 0;
        for _ in 0..3000 {
            let m = msg(&channel, b"payload");
            store.append("c", &m)?;
            channel.push(m, 10, 0);
            if store.wants_compaction("c", channel.messages().len()) {
                store.compact("c", &mut channel.messages())?;
                compactions += 1;
            }
        }
        store.commit()?;
        drop(store);

        // No limits on reopening: everything still in the log comes back.
        let (_, recovered) = FileStore::open(dir.path(), false, 0, 0)?.expect("unlocked");

        // Rewrites at the 1024th record (keeping 1015..=1024) and 1014 appends later (keeping 2029..=2038).
        assert_eq!(compactions, 2);
        let sequences: Vec<u64> = recovered.channels[0].1.messages().map(|m| m.seq).collect();
        assert_eq!(sequences, (2029..=3000).collect::<Vec<u64>>());
        Ok(())
    }
}
