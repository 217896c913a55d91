//! Turning clients, subscriptions and queue groups into the file store's snapshot and back.
//!
//! Ack deadlines are not saved: after a restart every unacked message counts as expired, so
//! active subscriptions get it again at once (flagged redelivered), as the real server does on
//! recovery; a suspended durable gets it when it resumes.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::{Client, Group, State, Sub};
use crate::channel::Channel;
use crate::store::pb;

impl State {
    pub(super) fn snapshot(&self) -> pb::Snapshot {
        let clients = self
            .clients
            .iter()
            .map(|(id, c)| pb::ClientState {
                client_id: id.clone(),
                hb_inbox: c.hb_inbox.clone(),
                conn_id: c.conn_id.clone(),
            })
            .collect();
        let subs = self
            .subs
            .iter()
            .map(|(id, s)| {
                let (durable_client, durable_name) = s
                    .durable
                    .as_ref()
                    .map(|(client, name, _)| (client.clone(), name.clone()))
                    .unwrap_or_default();
                pb::SubState {
                    id: *id,
                    client_id: s.client_id.clone(),
                    channel: s.channel.clone(),
                    inbox: s.inbox.clone().unwrap_or_default(),
                    ack_inbox: s.ack_inbox.clone(),
                    durable: s.durable.is_some(),
                    durable_client,
                    durable_name,
                    queued: s.group.is_some(),
                    group_name: s.group.as_ref().map(|g| g.1.clone()).unwrap_or_default(),
                    max_in_flight: s.max_in_flight as u64,
                    ack_wait_ms: u64::try_from(s.ack_wait.as_millis()).unwrap_or(u64::MAX),
                    pending: s.pending.keys().copied().collect(),
                    last_sent: s.last_sent,
                }
            })
            .collect();
        let groups = self
            .groups
            .iter()
            .map(|((channel, name), g)| pb::GroupState {
                channel: channel.clone(),
                name: name.clone(),
                members: g.members.clone(),
                next: g.next as u64,
                last_sent: g.last_sent,
                durable: g.durable,
                orphans: g.orphans.keys().copied().collect(),
            })
            .collect();
        pb::Snapshot {
            cluster_id: self.subjects.cluster_id.clone(),
            instance: self.subjects.instance.clone(),
            next_sub_id: self.next_sub_id,
            clients,
            subs,
            groups,
            channels: self.channels.keys().cloned().collect(),
        }
    }

    /// Fills a new state with what the store recovered. Called once, before any request.
    pub fn restore(&mut self, snapshot: Option<pb::Snapshot>, channels: Vec<(String, Channel)>) {
        self.channels.extend(channels);
        let Some(snapshot) = snapshot else {
            return;
        };
        for name in snapshot.channels {
            self.channels.entry(name).or_insert_with(Channel::new);
        }
        for c in snapshot.clients {
            self.clients.insert(
                c.client_id,
                Client {
                    hb_inbox: c.hb_inbox,
                    conn_id: c.conn_id,
                    hb_failures: 0,
                },
            );
        }
        let now = Instant::now();
        for s in snapshot.subs {
            let durable = s
                .durable
                .then(|| (s.durable_client, s.durable_name, s.channel.clone()));
            let group = s.queued.then(|| (s.channel.clone(), s.group_name));
            if let (Some(key), None) = (&durable, &group) {
                self.durables.insert(key.clone(), s.id);
            }
            self.by_ack_inbox.insert(s.ack_inbox.clone(), s.id);
            self.next_sub_id = self.next_sub_id.max(s.id + 1);
            self.subs.insert(
                s.id,
                Sub {
                    client_id: s.client_id,
                    channel: s.channel,
                    inbox: Some(s.inbox).filter(|inbox| !inbox.is_empty()),
                    ack_inbox: s.ack_inbox,
                    durable,
                    group,
                    max_in_flight: usize::try_from(s.max_in_flight).unwrap_or(1).max(1),
                    ack_wait: Duration::from_millis(s.ack_wait_ms.max(1)),
                    pending: s.pending.into_iter().map(|seq| (seq, now)).collect(),
                    last_sent: s.last_sent,
                    // Counts are not stored: like the real server's, they start again after a restart.
                    redeliveries: HashMap::new(),
                },
            );
        }
        for g in snapshot.groups {
            let members: Vec<u64> = g
                .members
                .into_iter()
                .filter(|m| self.subs.contains_key(m))
                .collect();
            let next = usize::try_from(g.next).unwrap_or(0);
            self.groups.insert(
                (g.channel, g.name),
                Group {
                    next: if members.is_empty() {
                        0
                    } else {
                        next % members.len()
                    },
                    members,
                    last_sent: g.last_sent,
                    durable: g.durable,
                    orphans: g
                        .orphans
                        .into_iter()
                        .map(|seq| (seq, ()))
                        .collect::<BTreeMap<_, _>>(),
                    redeliveries: HashMap::new(),
                },
            );
        }
        self.next_sub_id = self.next_sub_id.max(snapshot.next_sub_id);
    }
}
