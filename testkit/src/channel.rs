//! One channel's messages, in memory, with the per-channel limits applied on every append.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

#[derive(Debug, Clone)]
pub(crate) struct StoredMsg {
    pub seq: u64,
    pub timestamp_ns: i64,
    pub data: Bytes,
}

/// Sequences start at 1; `first_seq..=last_seq` are stored (empty when `first_seq > last_seq`).
#[derive(Debug)]
pub(crate) struct Channel {
    msgs: VecDeque<StoredMsg>,
    bytes: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Channel {
    pub fn new() -> Channel {
        Channel {
            msgs: VecDeque::new(),
            bytes: 0,
            first_seq: 1,
            last_seq: 0,
        }
    }

    /// The message `data` becomes when appended now: the next sequence, stamped with the time.
    pub fn next_message(&self, data: Bytes) -> StoredMsg {
        StoredMsg {
            seq: self.last_seq + 1,
            timestamp_ns: now_ns(),
            data,
        }
    }

    /// Appends a message and drops the oldest ones beyond the limits (0 = unlimited). Returns its sequence.
    #[cfg(test)]
    pub fn append(&mut self, data: Bytes, max_msgs: u64, max_bytes: u64) -> u64 {
        let msg = self.next_message(data);
        self.push(msg, max_msgs, max_bytes);
        self.last_seq
    }

    /// Stores `msg`, whose sequence must be above `last_seq` (a restored log may start anywhere),
    /// then drops the oldest messages beyond the limits (0 = unlimited), always keeping the newest.
    pub fn push(&mut self, msg: StoredMsg, max_msgs: u64, max_bytes: u64) {
        if self.msgs.is_empty() {
            self.first_seq = msg.seq;
        }
        self.last_seq = msg.seq;
        self.bytes += msg.data.len() as u64;
        self.msgs.push_back(msg);
        while self.msgs.len() > 1
            && ((max_msgs > 0 && self.msgs.len() as u64 > max_msgs)
                || (max_bytes > 0 && self.bytes > max_bytes))
        {
            if let Some(dropped) = self.msgs.pop_front() {
                self.bytes -= dropped.data.len() as u64;
                self.first_seq = dropped.seq + 1;
            }
        }
    }

    /// The stored messages, oldest first.
    pub fn messages(&self) -> impl ExactSizeIterator<Item = &StoredMsg> {
        self.msgs.iter()
    }

    pub fn get(&self, seq: u64) -> Option<&StoredMsg> {
        if seq < self.first_seq || seq > self.last_seq {
            return None;
        }
        self.msgs.get(usize::try_from(seq - self.first_seq).ok()?)
    }

    /// The first stored sequence whose timestamp is at or after `since_ns`, or `last_seq + 1` if none.
    pub fn first_since(&self, since_ns: i64) -> u64 {
        self.msgs
            .iter()
            .find(|m| m.timestamp_ns >= since_ns)
            .map_or(self.last_seq + 1, |m| m.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_drop_the_oldest_messages() {
        let mut channel = Channel::new();
        for i in 0..5u8 {
            channel.append(Bytes::from(vec![i; 10]), 3, 0);
        }
        assert_eq!((channel.first_seq, channel.last_seq), (3, 5));
        assert!(channel.get(2).is_none());
        assert_eq!(channel.get(3).map(|m| m.data[0]), Some(2));

        let mut by_bytes = Channel::new();
        for _ in 0..5 {
            by_bytes.append(Bytes::from(vec![0; 10]), 0, 25);
        }
        assert_eq!((by_bytes.first_seq, by_bytes.last_seq), (4, 5));
    }
}
