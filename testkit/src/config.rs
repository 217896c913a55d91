use std::path::PathBuf;
use std::time::Duration;

/// Where the broker keeps channels and subscription state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// Everything is lost when the broker stops.
    Memory,
    /// Channels, messages, clients and subscriptions are kept in this directory and restored by the next broker
    /// started on it (see the crate docs).
    File(PathBuf),
}

/// How a broker runs; the defaults are those of nats-streaming-server 0.25.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub cluster_id: String,
    pub nats_url: String,
    pub store: StoreKind,
    /// File store only: fsync before each PubAck (and snapshot), not just write to the OS. Without it a broker
    /// crash loses nothing acknowledged; a machine crash may. Off by default, unlike the real server, for speed.
    pub file_sync: bool,
    /// Per channel; 0 means unlimited. The oldest messages are dropped first.
    pub max_msgs: u64,
    pub max_bytes: u64,
    pub hb_interval: Duration,
    pub hb_timeout: Duration,
    pub hb_fail_count: u32,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            cluster_id: "test-cluster".into(),
            nats_url: "nats://127.0.0.1:4222".into(),
            store: StoreKind::Memory,
            file_sync: false,
            max_msgs: 0,
            max_bytes: 0,
            hb_interval: Duration::from_secs(30),
            hb_timeout: Duration::from_secs(10),
            hb_fail_count: 10,
        }
    }
}
