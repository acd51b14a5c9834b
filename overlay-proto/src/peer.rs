//! One remote node as the endpoint sees it: its identity, where it is, its sessions
//! (current / previous / next, so a rekey never drops a packet in flight), the handshake it
//! may have in flight, and frames queued while no session is usable.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use crate::cert::NodeCert;
use crate::consts::{
    KEEPALIVE_TIMEOUT, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME, REKEY_TIMEOUT,
};
use crate::session::Session;

/// A peer's handle inside one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u32);

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p{}", self.0)
    }
}

pub(crate) struct Peer {
    pub key: [u8; 32],
    pub cert: Option<Arc<NodeCert>>,
    pub endpoint: Option<SocketAddr>,
    pub current: Option<Arc<Session>>,
    pub previous: Option<Arc<Session>>,
    pub next: Option<Arc<Session>>,
    /// Local index of our handshake in flight.
    pub initiation: Option<u32>,
    pub queue: VecDeque<Vec<u8>>,
    pub last_handshake: Option<Instant>,
    /// Highest init timestamp accepted from this peer (IK replay defence).
    pub last_init_timestamp: u64,
    /// Highest init timestamp we sent.
    pub sent_init_timestamp: u64,
    /// Traffic of sessions already dropped.
    pub retired: Totals,
}

/// Traffic totals of a peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Bytes received (inner payload).
    pub rx_bytes: u64,
    /// Bytes sent (inner payload).
    pub tx_bytes: u64,
    /// Datagrams received.
    pub rx_packets: u64,
    /// Datagrams sent.
    pub tx_packets: u64,
}

/// Why the timers want a new handshake now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    Nothing,
    Keepalive,
    Handshake,
}

impl Peer {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            key,
            cert: None,
            endpoint: None,
            current: None,
            previous: None,
            next: None,
            initiation: None,
            queue: VecDeque::new(),
            last_handshake: None,
            last_init_timestamp: 0,
            sent_init_timestamp: 0,
            retired: Totals::default(),
        }
    }

    pub fn sessions(&self) -> impl Iterator<Item = &Arc<Session>> {
        self.current.iter().chain(self.previous.iter()).chain(self.next.iter())
    }

    /// The session to seal with, if one is usable at `now`.
    pub fn sending(&self, now: Instant) -> Option<&Arc<Session>> {
        self.current.as_ref().filter(|s| s.is_usable(now))
    }

    /// Installs a session we can send on at once; the old current stays for receiving.
    pub fn install_current(&mut self, s: Arc<Session>) -> Vec<u32> {
        let mut dropped = Vec::new();
        if let Some(old) = self.previous.take() {
            dropped.push(self.retire(&old));
        }
        self.previous = self.current.replace(s);
        dropped
    }

    /// Installs a responder session that must be confirmed before we send on it.
    pub fn install_next(&mut self, s: Arc<Session>) -> Vec<u32> {
        let mut dropped = Vec::new();
        if let Some(old) = self.next.replace(s) {
            dropped.push(self.retire(&old));
        }
        dropped
    }

    /// Promotes `next` once the peer used it.
    pub fn promote_next(&mut self) -> Vec<u32> {
        match self.next.take() {
            Some(n) => self.install_current(n),
            None => Vec::new(),
        }
    }

    /// Drops sessions past their lifetime; returns their indices.
    pub fn expire(&mut self, now: Instant) -> Vec<u32> {
        let mut dropped = Vec::new();
        for slot in [&mut self.current, &mut self.previous, &mut self.next] {
            if slot.as_ref().is_some_and(|s| s.age(now) >= REJECT_AFTER_TIME) {
                let s = slot.take().expect("checked above");
                self.retired.add(&s);
                dropped.push(s.local_index());
            }
        }
        dropped
    }

    fn retire(&mut self, s: &Session) -> u32 {
        self.retired.add(s);
        s.local_index()
    }

    pub fn totals(&self) -> Totals {
        let mut t = self.retired;
        for s in self.sessions() {
            t.add(s);
        }
        t
    }

    /// What the session timers ask for at `now` (WireGuard's rules).
    pub fn due(&self, now: Instant) -> Due {
        let Some(s) = self.current.as_ref() else { return Due::Nothing };
        if !s.is_usable(now) {
            return Due::Nothing;
        }
        let since = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t));
        let in_use = since(s.last_sent_data()).is_some_and(|d| d < KEEPALIVE_TIMEOUT);
        let age = s.age(now);
        let old = if s.is_initiator() {
            age >= REKEY_AFTER_TIME
        } else {
            age >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
        };
        if (old && in_use) || s.sent_messages() >= REKEY_AFTER_MESSAGES {
            return Due::Handshake;
        }
        if !s.is_confirmed() && age >= REKEY_TIMEOUT {
            return Due::Handshake;
        }
        let sent = s.last_sent();
        // Sent data and heard nothing back for a while: the peer may have lost our session.
        if let Some(sd) = s.last_sent_data() {
            let heard_after = s.last_received().is_some_and(|r| r >= sd);
            if !heard_after && now.saturating_duration_since(sd) >= KEEPALIVE_TIMEOUT + REKEY_TIMEOUT {
                return Due::Handshake;
            }
        }
        // Received data and sent nothing since: tell the peer we are alive.
        if let Some(rd) = s.last_received_data() {
            let sent_after = sent.is_some_and(|t| t >= rd);
            if !sent_after && now.saturating_duration_since(rd) >= KEEPALIVE_TIMEOUT {
                return Due::Keepalive;
            }
        }
        Due::Nothing
    }

    /// The earliest instant at which [`Peer::due`] may change its answer.
    pub fn next_deadline(&self) -> Option<Instant> {
        let s = self.current.as_ref()?;
        let c = s.created();
        let mut d = vec![c + REJECT_AFTER_TIME];
        d.push(
            c + if s.is_initiator() {
                REKEY_AFTER_TIME
            } else {
                REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
            },
        );
        if !s.is_confirmed() {
            d.push(c + REKEY_TIMEOUT);
        }
        if let Some(sd) = s.last_sent_data() {
            d.push(sd + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT);
        }
        if let Some(rd) = s.last_received_data() {
            d.push(rd + KEEPALIVE_TIMEOUT);
        }
        for o in self.previous.iter().chain(self.next.iter()) {
            d.push(o.created() + REJECT_AFTER_TIME);
        }
        d.into_iter().min()
    }
}

impl Totals {
    fn add(&mut self, s: &Session) {
        self.rx_bytes += s.stats.rx_bytes.load(Relaxed);
        self.tx_bytes += s.stats.tx_bytes.load(Relaxed);
        self.rx_packets += s.stats.rx_packets.load(Relaxed);
        self.tx_packets += s.stats.tx_packets.load(Relaxed);
    }
}
