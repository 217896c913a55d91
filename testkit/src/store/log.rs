//! Record framing for the file store: `[len: u32 LE][crc32 of payload: u32 LE][payload]`.
//!
//! A crash (SIGKILL, power loss) can leave the last record of an append-only file half written;
//! the reader stops at the first record that is short or fails its checksum and reports how many
//! bytes were good, so the caller can cut the torn tail off.

/// Bytes of framing before each payload.
pub(crate) const HEADER: usize = 8;

/// Appends one framed record to `out`.
pub(crate) fn frame(payload: &[u8], out: &mut Vec<u8>) {
    // Payloads are single NATS messages (at most a few MiB), far below u32::MAX.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The intact records at the start of `bytes`, and the length of the prefix they fill.
pub(crate) fn read_records(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        records.push(payload);
        at += HEADER + len;
    }
    (records, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_or_corrupt_tail_is_left_out() {
        let mut bytes = Vec::new();
        frame(b"one", &mut bytes);
        frame(b"two", &mut bytes);
        let intact = bytes.len();
        frame(b"three", &mut bytes);

        for cut in intact..bytes.len() {
            let (records, good) = read_records(&bytes[..cut]);
            assert_eq!(records, vec![&b"one"[..], &b"two"[..]], "cut at {cut}");
            assert_eq!(good, intact, "cut at {cut}");
        }
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert_eq!(
            read_records(&bytes).1,
            intact,
            "a flipped byte fails the checksum"
        );
    }
}
