//! The broker's state and every protocol decision, free of I/O: each call takes a decoded request and queues the
//! NATS publishes it causes in `out`, which the server loop sends in order (reply first, then deliveries).
//! New messages go to the store at once; clients and subscriptions reach it as snapshots (`snapshot.rs`), which
//! the server loop asks for through `commit` and `save_progress`.

mod snapshot;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use stan_proto::proto;

use crate::channel::{now_ns, Channel};
use crate::store::Store;

pub(crate) const ERR_DUPLICATE_CLIENT: &str = "stan: clientID already registered";
pub(crate) const ERR_INVALID_PUBLISH: &str = "stan: invalid publish request";
pub(crate) const ERR_INVALID_SUB: &str = "stan: invalid subscription request";
pub(crate) const ERR_DUPLICATE_DURABLE: &str = "stan: duplicate durable registration";
pub(crate) const ERR_UNKNOWN_CLIENT: &str = "stan: unknown clientID";
pub(crate) const ERR_INVALID_UNSUB: &str = "stan: invalid unsubscribe request";
pub(crate) const ERR_STORE: &str = "stan: unable to store message";

/// One NATS publish the server loop must send.
pub(crate) struct Out {
    pub subject: String,
    pub payload: Bytes,
}

/// The subjects this broker instance listens on: new ones on each start, unless a file store kept the instance.
#[derive(Debug, Clone)]
pub(crate) struct Subjects {
    /// Not a subject itself: clients find the others through `_STAN.discover.<cluster_id>`.
    pub cluster_id: String,
    /// Names this broker; the file store keeps it so restored clients keep their subjects.
    pub instance: String,
    pub pub_prefix: String,
    pub sub_requests: String,
    pub unsub_requests: String,
    pub close_requests: String,
    pub sub_close_requests: String,
    pub ping_requests: String,
    pub ack_prefix: String,
}

impl Subjects {
    pub fn new(cluster_id: &str, instance: &str) -> Subjects {
        Subjects {
            cluster_id: cluster_id.to_owned(),
            instance: instance.to_owned(),
            pub_prefix: format!("_STAN.pub.{instance}"),
            sub_requests: format!("_STAN.sub.{instance}"),
            unsub_requests: format!("_STAN.unsub.{instance}"),
            close_requests: format!("_STAN.close.{instance}"),
            sub_close_requests: format!("_STAN.subclose.{instance}"),
            ping_requests: format!("_STAN.ping.{instance}"),
            ack_prefix: format!("_STAN.ack.{instance}"),
        }
    }
}

struct Client {
    hb_inbox: String,
    conn_id: Vec<u8>,
    hb_failures: u32,
}

/// Durables are keyed by client id + durable name + channel (non-queue) or by "durable:group" + channel (queue).
type DurableKey = (String, String, String);
type GroupKey = (String, String);

struct Sub {
    client_id: String,
    channel: String,
    /// None while a durable is suspended (closed, or its client gone).
    inbox: Option<String>,
    ack_inbox: String,
    durable: Option<DurableKey>,
    group: Option<GroupKey>,
    max_in_flight: usize,
    ack_wait: Duration,
    /// Delivered, not yet acked: sequence -> redelivery deadline.
    pending: BTreeMap<u64, Instant>,
    /// Last sequence sent (unused by queue members: their group keeps it).
    last_sent: u64,
    /// Redeliveries so far per unacked sequence (unused by queue members: their group keeps them).
    redeliveries: HashMap<u64, u32>,
}

struct Group {
    members: Vec<u64>,
    next: usize,
    last_sent: u64,
    durable: bool,
    /// Unacked messages of members that left, waiting for a member with room.
    orphans: BTreeMap<u64, ()>,
    /// Redeliveries so far per unacked sequence, shared by the members.
    redeliveries: HashMap<u64, u32>,
}

pub(crate) struct State {
    subjects: Subjects,
    max_msgs: u64,
    max_bytes: u64,
    clients: HashMap<String, Client>,
    channels: HashMap<String, Channel>,
    subs: HashMap<u64, Sub>,
    durables: HashMap<DurableKey, u64>,
    groups: HashMap<GroupKey, Group>,
    by_ack_inbox: HashMap<String, u64>,
    next_sub_id: u64,
    pub out: Vec<Out>,
    store: Box<dyn Store>,
    /// Clients or subscriptions came or went: the snapshot must be saved before replies go out.
    structure_changed: bool,
    /// Deliveries or acks moved positions: the snapshot may be saved later.
    progress_changed: bool,
}

fn encode(msg: &impl Message) -> Bytes {
    Bytes::from(msg.encode_to_vec())
}

impl State {
    pub fn new(subjects: Subjects, max_msgs: u64, max_bytes: u64, store: Box<dyn Store>) -> State {
        State {
            subjects,
            max_msgs,
            max_bytes,
            clients: HashMap::new(),
            channels: HashMap::new(),
            subs: HashMap::new(),
            durables: HashMap::new(),
            groups: HashMap::new(),
            by_ack_inbox: HashMap::new(),
            next_sub_id: 1,
            out: Vec::new(),
            store,
            structure_changed: false,
            progress_changed: false,
        }
    }

    /// Makes everything decided so far durable; the server loop calls it before sending `out`.
    pub fn commit(&mut self) -> io::Result<()> {
        self.store.commit()?;
        if self.structure_changed {
            self.save_snapshot()?;
        }
        Ok(())
    }

    /// Saves positions moved by deliveries and acks; losing them in a crash only means redeliveries.
    pub fn save_progress(&mut self) -> io::Result<()> {
        if self.structure_changed || self.progress_changed {
            self.save_snapshot()?;
        }
        Ok(())
    }

    /// Saves the snapshot whether or not anything changed.
    pub fn save_snapshot(&mut self) -> io::Result<()> {
        if self.store.keeps_state() {
            let snapshot = self.snapshot();
            self.store.save_snapshot(&snapshot)?;
        }
        self.structure_changed = false;
        self.progress_changed = false;
        Ok(())
    }

    fn send(&mut self, subject: &str, msg: &impl Message) {
        self.out.push(Out {
            subject: subject.to_owned(),
            payload: encode(msg),
        });
    }

    /// The heartbeat inbox of a registered client, to probe before a duplicate connect is refused or replaces it.
    pub fn hb_inbox(&self, client_id: &str) -> Option<String> {
        self.clients.get(client_id).map(|c| c.hb_inbox.clone())
    }

    /// Clients and their heartbeat inboxes, for the heartbeat round.
    pub fn heartbeat_targets(&self) -> Vec<(String, String)> {
        self.clients
            .iter()
            .map(|(id, c)| (id.clone(), c.hb_inbox.clone()))
            .collect()
    }

    /// Registers a client. `old_alive` is the outcome of the heartbeat probe when the id was taken.
    pub fn connect(
        &mut self,
        reply: &str,
        req: proto::ConnectRequest,
        old_alive: bool,
        hb_secs: i32,
    ) {
        let mut response = proto::ConnectResponse::default();
        if req.client_id.is_empty() || req.heartbeat_inbox.is_empty() {
            response.error = "stan: invalid connection request".into();
        } else if self.clients.contains_key(&req.client_id) && old_alive {
            response.error = ERR_DUPLICATE_CLIENT.into();
        } else {
            self.remove_client(&req.client_id);
            self.structure_changed = true;
            self.clients.insert(
                req.client_id.clone(),
                Client {
                    hb_inbox: req.heartbeat_inbox,
                    conn_id: req.conn_id,
                    hb_failures: 0,
                },
            );
            let s = &self.subjects;
            response = proto::ConnectResponse {
                pub_prefix: s.pub_prefix.clone(),
                sub_requests: s.sub_requests.clone(),
                unsub_requests: s.unsub_requests.clone(),
                close_requests: s.close_requests.clone(),
                sub_close_requests: s.sub_close_requests.clone(),
                ping_requests: s.ping_requests.clone(),
                ping_interval: if req.ping_interval > 0 {
                    req.ping_interval
                } else {
                    hb_secs.max(1)
                },
                ping_max_out: if req.ping_max_out > 0 {
                    req.ping_max_out
                } else {
                    3
                },
                protocol: 1,
                ..Default::default()
            };
        }
        self.send(reply, &response);
    }

    /// Removes a client: its durables are suspended, everything else it had is deleted.
    pub fn remove_client(&mut self, client_id: &str) -> bool {
        let existed = self.clients.remove(client_id).is_some();
        self.structure_changed |= existed;
        let ids: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, s)| s.client_id == client_id && s.inbox.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.end_sub(id, false);
        }
        existed
    }

    pub fn heartbeat_result(&mut self, client_id: &str, alive: bool, fail_count: u32) {
        let Some(client) = self.clients.get_mut(client_id) else {
            return;
        };
        if alive {
            client.hb_failures = 0;
            return;
        }
        client.hb_failures += 1;
        if client.hb_failures >= fail_count {
            tracing::info!(
                client_id,
                "Removing a client that stopped answering heartbeats."
            );
            self.remove_client(client_id);
        }
    }

    pub fn ping(&mut self, reply: &str, req: proto::Ping) {
        let known = self.clients.values().any(|c| c.conn_id == req.conn_id);
        let error = if known {
            String::new()
        } else {
            "client has been replaced or is no longer registered".into()
        };
        self.send(reply, &proto::PingResponse { error });
    }

    pub fn close(&mut self, reply: &str, req: proto::CloseRequest) {
        let error = if self.remove_client(&req.client_id) {
            String::new()
        } else {
            ERR_UNKNOWN_CLIENT.into()
        };
        self.send(reply, &proto::CloseResponse { error });
    }

    pub fn publish(&mut self, reply: &str, msg: proto::PubMsg) {
        if !self.clients.contains_key(&msg.client_id) || msg.subject.is_empty() {
            self.send(
                reply,
                &proto::PubAck {
                    guid: msg.guid,
                    error: ERR_INVALID_PUBLISH.into(),
                },
            );
            return;
        }
        let (max_msgs, max_bytes) = (self.max_msgs, self.max_bytes);
        let channel = self
            .channels
            .entry(msg.subject.clone())
            .or_insert_with(Channel::new);
        let stored = channel.next_message(Bytes::from(msg.data));
        // The store sees the message before the channel does, so a failed write changes nothing.
        let error = match self.store.append(&msg.subject, &stored) {
            Ok(()) => {
                channel.push(stored, max_msgs, max_bytes);
                let live = channel.messages().len();
                if self.store.wants_compaction(&msg.subject, live) {
                    // A failed compaction leaves the old log in place, still complete: nothing is lost.
                    if let Err(error) = self.store.compact(&msg.subject, &mut channel.messages()) {
                        tracing::warn!(%error, channel = %msg.subject, "Failed to compact a channel log.");
                    }
                }
                String::new()
            }
            Err(error) => {
                tracing::error!(%error, channel = %msg.subject, "Failed to store a message.");
                ERR_STORE.into()
            }
        };
        self.send(
            reply,
            &proto::PubAck {
                guid: msg.guid,
                error,
            },
        );
        self.pump_channel(&msg.subject);
    }

    pub fn subscribe(&mut self, reply: &str, req: proto::SubscriptionRequest) {
        match self.try_subscribe(req) {
            Ok(id) => {
                let ack_inbox = self
                    .subs
                    .get(&id)
                    .map(|s| s.ack_inbox.clone())
                    .unwrap_or_default();
                self.send(
                    reply,
                    &proto::SubscriptionResponse {
                        ack_inbox,
                        error: String::new(),
                    },
                );
                self.resend_pending(id);
                self.pump_sub(id);
            }
            Err(error) => self.send(
                reply,
                &proto::SubscriptionResponse {
                    ack_inbox: String::new(),
                    error: error.into(),
                },
            ),
        }
    }

    fn try_subscribe(&mut self, req: proto::SubscriptionRequest) -> Result<u64, &'static str> {
        if !self.clients.contains_key(&req.client_id) {
            return Err(ERR_UNKNOWN_CLIENT);
        }
        if req.subject.is_empty()
            || req.inbox.is_empty()
            || req.ack_wait_in_secs < 1
            || req.max_in_flight < 1
            || req.durable_name.contains(':')
        {
            return Err(ERR_INVALID_SUB);
        }
        let ack_wait = Duration::from_secs(u64::try_from(req.ack_wait_in_secs).unwrap_or(1));
        let max_in_flight = usize::try_from(req.max_in_flight).unwrap_or(1);
        let channel = self
            .channels
            .entry(req.subject.clone())
            .or_insert_with(Channel::new);
        let start_after = start_position(channel, &req);
        let durable = (!req.durable_name.is_empty()).then(|| {
            if req.q_group.is_empty() {
                (
                    req.client_id.clone(),
                    req.durable_name.clone(),
                    req.subject.clone(),
                )
            } else {
                (
                    String::new(),
                    format!("{}:{}", req.durable_name, req.q_group),
                    req.subject.clone(),
                )
            }
        });

        // A suspended non-queue durable resumes where it stopped.
        if let (Some(key), true) = (&durable, req.q_group.is_empty()) {
            if let Some(&id) = self.durables.get(key) {
                let sub = self.subs.get_mut(&id).ok_or(ERR_INVALID_SUB)?;
                if sub.inbox.is_some() {
                    return Err(ERR_DUPLICATE_DURABLE);
                }
                sub.inbox = Some(req.inbox);
                sub.max_in_flight = max_in_flight;
                sub.ack_wait = ack_wait;
                self.structure_changed = true;
                return Ok(id);
            }
        }

        let id = self.next_sub_id;
        self.next_sub_id += 1;
        self.structure_changed = true;
        let ack_inbox = format!("{}.{id}", self.subjects.ack_prefix);
        let group = (!req.q_group.is_empty()).then(|| {
            let name = durable
                .as_ref()
                .map_or_else(|| req.q_group.clone(), |d| d.1.clone());
            (req.subject.clone(), name)
        });
        if let Some(key) = &group {
            let entry = self.groups.entry(key.clone()).or_insert_with(|| Group {
                members: Vec::new(),
                next: 0,
                last_sent: start_after,
                durable: durable.is_some(),
                orphans: BTreeMap::new(),
                redeliveries: HashMap::new(),
            });
            entry.members.push(id);
        } else if let Some(key) = &durable {
            self.durables.insert(key.clone(), id);
        }
        self.by_ack_inbox.insert(ack_inbox.clone(), id);
        self.subs.insert(
            id,
            Sub {
                client_id: req.client_id,
                channel: req.subject,
                inbox: Some(req.inbox),
                ack_inbox,
                durable: if group.is_some() { None } else { durable },
                group,
                max_in_flight,
                ack_wait,
                pending: BTreeMap::new(),
                last_sent: start_after,
                redeliveries: HashMap::new(),
            },
        );
        Ok(id)
    }

    /// `close` suspends durables (UnsubscribeRequest on subCloseRequests); otherwise the subscription is deleted.
    pub fn unsubscribe(&mut self, reply: &str, req: proto::UnsubscribeRequest, close: bool) {
        let found = self
            .subs
            .iter()
            .find(|(_, s)| {
                s.client_id == req.client_id
                    && (s.ack_inbox == req.inbox || s.inbox.as_deref() == Some(req.inbox.as_str()))
            })
            .map(|(id, _)| *id);
        let error = match found {
            Some(id) => {
                self.end_sub(id, !close);
                String::new()
            }
            None => ERR_INVALID_UNSUB.into(),
        };
        self.send(
            reply,
            &proto::SubscriptionResponse {
                ack_inbox: String::new(),
                error,
            },
        );
    }

    /// Ends an active subscription: deletes it when `delete` or not durable, else suspends it.
    fn end_sub(&mut self, id: u64, delete: bool) {
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        self.structure_changed = true;
        if let Some(key) = sub.group.clone() {
            let pending = std::mem::take(&mut sub.pending);
            let ack_inbox = sub.ack_inbox.clone();
            self.subs.remove(&id);
            self.by_ack_inbox.remove(&ack_inbox);
            let Some(group) = self.groups.get_mut(&key) else {
                return;
            };
            group.members.retain(|m| *m != id);
            group.orphans.extend(pending.keys().map(|seq| (*seq, ())));
            if group.members.is_empty() && (delete || !group.durable) {
                self.groups.remove(&key);
            } else {
                self.pump_group(&key);
            }
            return;
        }
        if sub.durable.is_some() && !delete {
            sub.inbox = None;
            return;
        }
        if let Some(sub) = self.subs.remove(&id) {
            self.by_ack_inbox.remove(&sub.ack_inbox);
            if let Some(key) = sub.durable {
                self.durables.remove(&key);
            }
        }
    }

    pub fn ack(&mut self, ack_inbox: &str, ack: proto::Ack) {
        let Some(&id) = self.by_ack_inbox.get(ack_inbox) else {
            return;
        };
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        if sub.pending.remove(&ack.sequence).is_some() {
            self.progress_changed = true;
            sub.redeliveries.remove(&ack.sequence);
            if let Some(group) = sub.group.as_ref().and_then(|key| self.groups.get_mut(key)) {
                group.redeliveries.remove(&ack.sequence);
            }
        }
        self.pump_sub(id);
    }

    /// Redelivers every expired pending message, flagged `redelivered`.
    pub fn redeliver_expired(&mut self, now: Instant) {
        let expired: Vec<(u64, u64)> = self
            .subs
            .iter()
            .filter(|(_, s)| s.inbox.is_some())
            .flat_map(|(id, s)| {
                s.pending
                    .iter()
                    .filter(|(_, d)| **d <= now)
                    .map(move |(seq, _)| (*id, *seq))
            })
            .collect();
        for (id, seq) in expired {
            let target = self.redelivery_target(id);
            if target != id {
                if let Some(sub) = self.subs.get_mut(&id) {
                    sub.pending.remove(&seq);
                }
            }
            self.deliver(target, seq, true, now);
        }
    }

    /// Queue members hand expired messages to the next member, so a stuck member does not hold them forever.
    fn redelivery_target(&mut self, id: u64) -> u64 {
        let Some(key) = self.subs.get(&id).and_then(|s| s.group.clone()) else {
            return id;
        };
        let Some(group) = self.groups.get_mut(&key) else {
            return id;
        };
        let active: Vec<u64> = group.members.iter().copied().filter(|m| *m != id).collect();
        if active.is_empty() {
            return id;
        }
        group.next = (group.next + 1) % active.len();
        active[group.next]
    }

    /// A resumed durable gets its unacked messages again at once; their ack deadlines stay as they were, so a new
    /// ack wait applies to new deliveries only. A deadline that passed while the durable was away (or that a
    /// restart reset) moves one ack wait ahead, so the message is not sent twice in a row.
    fn resend_pending(&mut self, id: u64) {
        let pending: Vec<(u64, Instant)> = self
            .subs
            .get(&id)
            .map(|s| {
                s.pending
                    .iter()
                    .map(|(seq, deadline)| (*seq, *deadline))
                    .collect()
            })
            .unwrap_or_default();
        let now = Instant::now();
        for (seq, deadline) in pending {
            self.deliver(id, seq, true, now);
            if let Some(entry) = self.subs.get_mut(&id).and_then(|s| s.pending.get_mut(&seq)) {
                if deadline > now {
                    *entry = deadline;
                }
            }
        }
    }

    fn pump_channel(&mut self, channel: &str) {
        let mut ids: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, s)| s.channel == channel && s.group.is_none() && s.inbox.is_some())
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            self.pump_sub(id);
        }
        let groups: Vec<GroupKey> = self
            .groups
            .keys()
            .filter(|k| k.0 == channel)
            .cloned()
            .collect();
        for key in groups {
            self.pump_group(&key);
        }
    }

    fn pump_sub(&mut self, id: u64) {
        let Some(sub) = self.subs.get(&id) else {
            return;
        };
        if let Some(key) = sub.group.clone() {
            self.pump_group(&key);
            return;
        }
        let now = Instant::now();
        loop {
            let Some(sub) = self.subs.get(&id) else {
                return;
            };
            let Some(channel) = self.channels.get(&sub.channel) else {
                return;
            };
            if sub.inbox.is_none() || sub.pending.len() >= sub.max_in_flight {
                return;
            }
            let next = (sub.last_sent + 1).max(channel.first_seq);
            if next > channel.last_seq {
                return;
            }
            if let Some(sub) = self.subs.get_mut(&id) {
                sub.last_sent = next;
            }
            self.deliver(id, next, false, now);
        }
    }

    fn pump_group(&mut self, key: &GroupKey) {
        let now = Instant::now();
        loop {
            let Some(group) = self.groups.get(key) else {
                return;
            };
            let Some(channel) = self.channels.get(&key.0) else {
                return;
            };
            let orphan = group.orphans.keys().next().copied();
            let seq = match orphan {
                Some(seq) => seq,
                None => {
                    let next = (group.last_sent + 1).max(channel.first_seq);
                    if next > channel.last_seq {
                        return;
                    }
                    next
                }
            };
            let count = group.members.len();
            let member = (0..count).map(|i| (group.next + i) % count).find(|&i| {
                self.subs
                    .get(&group.members[i])
                    .is_some_and(|s| s.inbox.is_some() && s.pending.len() < s.max_in_flight)
            });
            let Some(index) = member else { return };
            let id = group.members[index];
            if let Some(group) = self.groups.get_mut(key) {
                group.next = (index + 1) % count;
                match orphan {
                    Some(seq) => {
                        group.orphans.remove(&seq);
                    }
                    None => group.last_sent = seq,
                }
            }
            self.deliver(id, seq, orphan.is_some(), now);
        }
    }

    /// Sends one stored message to a subscription and (re)starts its ack timer. Messages dropped by the channel
    /// limits are forgotten.
    fn deliver(&mut self, id: u64, seq: u64, redelivered: bool, now: Instant) {
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        let Some(inbox) = sub.inbox.clone() else {
            return;
        };
        let Some(stored) = self.channels.get(&sub.channel).and_then(|c| c.get(seq)) else {
            sub.pending.remove(&seq);
            sub.redeliveries.remove(&seq);
            if let Some(group) = sub.group.as_ref().and_then(|key| self.groups.get_mut(key)) {
                group.redeliveries.remove(&seq);
            }
            return;
        };
        sub.pending.insert(seq, now + sub.ack_wait);
        self.progress_changed = true;
        // Counted per sequence like nats-streaming-server 0.17+ does (clients expose it, e.g. getRedeliveryCount()),
        // on the group for queue members so a message handed to another member keeps counting.
        let redelivery_count = if redelivered {
            let counts = match sub.group.as_ref().and_then(|key| self.groups.get_mut(key)) {
                Some(group) => &mut group.redeliveries,
                None => &mut sub.redeliveries,
            };
            let count = counts.entry(seq).or_insert(0);
            // Skips 0 if it ever wraps, as the real server does.
            *count = count.wrapping_add(1).max(1);
            *count
        } else {
            0
        };
        let msg = proto::MsgProto {
            sequence: seq,
            subject: sub.channel.clone(),
            data: stored.data.to_vec(),
            timestamp: stored.timestamp_ns,
            redelivered,
            redelivery_count,
            ..Default::default()
        };
        self.out.push(Out {
            subject: inbox,
            payload: encode(&msg),
        });
    }
}

/// The last sequence considered already sent for a new subscription.
fn start_position(channel: &Channel, req: &proto::SubscriptionRequest) -> u64 {
    let before_first = channel.first_seq - 1;
    match proto::StartPosition::try_from(req.start_position)
        .unwrap_or(proto::StartPosition::NewOnly)
    {
        proto::StartPosition::NewOnly => channel.last_seq,
        proto::StartPosition::LastReceived => channel.last_seq.saturating_sub(1).max(before_first),
        proto::StartPosition::TimeDeltaStart => {
            channel.first_since(now_ns().saturating_sub(req.start_time_delta)) - 1
        }
        proto::StartPosition::SequenceStart => req
            .start_sequence
            .saturating_sub(1)
            .max(before_first)
            .min(channel.last_seq),
        proto::StartPosition::First => before_first,
    }
}
