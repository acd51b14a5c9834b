//! Connection tracking: flows the rules allowed, so their replies (and ICMP errors about them)
//! pass without asking the rules again.
//!
//! Shared by the data-plane workers through `&self`. Entries live in [`SHARDS`] (at most)
//! `Mutex<HashMap>` shards, each preallocated for its share of `max` (plus slack), keyed by the
//! direction-independent 5-tuple (lower endpoint first), so a reply finds what its original
//! created. Invariants, kept exact under concurrency: `len()` equals the number of entries,
//! never exceeds `max`, and each peer's count equals its entries and never exceeds `per_peer`.
//! Every change to the counts happens while holding the `peers` lock (taken after a shard lock,
//! never before), so the limit checks and the counts cannot race.
//!
//! Timeouts (seconds, refreshed by each packet of the flow):
//! [`TCP_ESTABLISHED`] 600, [`TCP_CLOSING`] 10 after FIN/RST, [`TCP_SYN`] 30 while only a SYN
//! was seen, [`UDP`] 180, [`ICMP_ECHO`] 30, [`OTHER`] 120. Time is the caller's `now`.

use super::flow::{tcp_flags, Embedded, Flow, IcmpKind};
use super::rules::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Most shards (fewer for small tables, so each shard holds a useful share).
pub const SHARDS: usize = 64;
/// TCP connection that has seen more than a SYN.
pub const TCP_ESTABLISHED: u32 = 600;
/// TCP connection after a FIN or RST.
pub const TCP_CLOSING: u32 = 10;
/// TCP connection that has seen only a SYN.
pub const TCP_SYN: u32 = 30;
/// UDP flow.
pub const UDP: u32 = 180;
/// ICMP/ICMPv6 echo (keyed by identifier).
pub const ICMP_ECHO: u32 = 30;
/// Any other IP protocol (keyed by addresses alone).
pub const OTHER: u32 = 120;

/// Why [`Conntrack::insert`] refused a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    /// The whole table holds `max` flows.
    #[error("connection table full")]
    Table,
    /// This peer holds its `per_peer` share.
    #[error("connection table share of this peer full")]
    Peer,
}

use crate::report::counters::ConntrackCounters;
/// Counters since creation, for status and metrics; declared with their metrics in
/// [`crate::report::counters`].
pub use crate::report::counters::ConntrackStats;

/// The connection table.
#[derive(Debug)]
pub struct Conntrack {
    shards: Box<[Mutex<HashMap<Key, Entry>>]>,
    hasher: RandomState,
    /// Entries per peer; a peer with none has no slot, so this is bounded by `max`.
    peers: Mutex<HashMap<u64, usize>>,
    len: AtomicUsize,
    max: usize,
    per_peer: usize,
    counters: ConntrackCounters,
}

impl Conntrack {
    /// A table for at most `max` flows, at most `per_peer` of them owned by one peer.
    pub fn new(max: usize, per_peer: usize) -> Self {
        let n = (max / 64).clamp(1, SHARDS).next_power_of_two();
        let share = max.div_ceil(n);
        let capacity = share + share / 8 + 8;
        Conntrack {
            shards: (0..n).map(|_| Mutex::new(HashMap::with_capacity(capacity))).collect(),
            hasher: RandomState::new(),
            peers: Mutex::new(HashMap::with_capacity(256)),
            len: AtomicUsize::new(0),
            max,
            per_peer,
            counters: ConntrackCounters::default(),
        }
    }

    /// Whether `f` belongs to a live tracked flow, in either direction; refreshes it.
    /// An ICMP error is related if it returns to the sender of a tracked flow's packet; an echo
    /// reply matches only a tracked request from the other side. Non-first fragments and other
    /// ICMP messages are never tracked.
    pub fn lookup(&self, f: &Flow, now: u32) -> bool {
        if let Some(IcmpKind::Error(inner)) = f.icmp.map(|i| i.kind) {
            return self.related(f, &inner, now);
        }
        let Some((key, from_low)) = key_of(f) else { return false };
        let mut shard = self.shard(&key);
        let Some(e) = shard.get_mut(&key) else { return false };
        if e.expiry <= now {
            if let Some(e) = shard.remove(&key) {
                self.forget(e.peer, 1);
                self.counters.expired.fetch_add(1, Ordering::Relaxed);
            }
            return false;
        }
        match f.icmp.map(|i| i.kind) {
            Some(IcmpKind::EchoRequest) if from_low != e.origin_low => return false,
            Some(IcmpKind::EchoReply) if from_low == e.origin_low => return false,
            _ => {}
        }
        e.state = e.state.next(f.tcp_flags);
        e.expiry = now.saturating_add(e.state.timeout());
        true
    }

    /// Tracks a flow the rules allowed, owned by `peer` (the remote node). A flow already
    /// tracked is refreshed. Untrackable packets (non-first fragments, echo replies, ICMP errors
    /// and other ICMP messages) are accepted and not stored.
    pub fn insert(&self, f: &Flow, peer: u64, now: u32) -> Result<(), Full> {
        let Some((key, origin_low)) = key_of(f) else { return Ok(()) };
        if matches!(f.icmp.map(|i| i.kind), Some(IcmpKind::EchoReply)) {
            return Ok(());
        }
        let state = State::initial(f);
        let entry = Entry { peer, expiry: now.saturating_add(state.timeout()), state, origin_low };
        let mut shard = self.shard(&key);
        let mut peers = self.peers();
        if let Some(e) = shard.get_mut(&key) {
            if e.expiry > now {
                e.state = e.state.next(f.tcp_flags);
                e.expiry = now.saturating_add(e.state.timeout());
                return Ok(());
            }
            let old = e.peer;
            shard.remove(&key);
            self.forget_locked(&mut peers, old, 1);
            self.counters.expired.fetch_add(1, Ordering::Relaxed);
        }
        if !self.has_room(&peers, peer) {
            self.evict_expired(&mut shard, &mut peers, now);
        }
        if peers.get(&peer).copied().unwrap_or(0) >= self.per_peer {
            self.counters.peer_full.fetch_add(1, Ordering::Relaxed);
            return Err(Full::Peer);
        }
        if self.len.load(Ordering::Relaxed) >= self.max {
            self.counters.table_full.fetch_add(1, Ordering::Relaxed);
            return Err(Full::Table);
        }
        *peers.entry(peer).or_insert(0) += 1;
        self.len.fetch_add(1, Ordering::Relaxed);
        shard.insert(key, entry);
        self.counters.inserts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Tracked flows (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flows owned by `peer`.
    pub fn peer_len(&self, peer: u64) -> usize {
        self.peers().get(&peer).copied().unwrap_or(0)
    }

    /// Removes every expired entry (call about once a second); returns how many.
    pub fn expire(&self, now: u32) -> usize {
        let mut total = 0;
        for s in self.shards.iter() {
            let mut shard = lock(s);
            let mut peers = self.peers();
            total += self.evict_expired(&mut shard, &mut peers, now);
        }
        total
    }

    /// Removes every entry owned by `peer` (the node went away); returns how many.
    pub fn clear_peer(&self, peer: u64) -> usize {
        let mut total = 0;
        for s in self.shards.iter() {
            let mut shard = lock(s);
            let before = shard.len();
            shard.retain(|_, e| e.peer != peer);
            let removed = before - shard.len();
            if removed > 0 {
                self.forget(peer, removed);
                total += removed;
            }
        }
        total
    }

    /// Counters since creation.
    pub fn stats(&self) -> ConntrackStats {
        self.counters.snapshot()
    }
}

/// Direction-independent 5-tuple: the lower `(address, port)` endpoint first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    low: (IpAddr, u16),
    high: (IpAddr, u16),
    proto: u8,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    peer: u64,
    expiry: u32,
    state: State,
    /// Whether the packet that created the entry came from `Key::low`.
    origin_low: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    TcpSyn,
    TcpEstablished,
    TcpClosing,
    Udp,
    Echo,
    Other,
}

impl State {
    fn initial(f: &Flow) -> State {
        match f.proto {
            IPPROTO_TCP if f.tcp_flags & (tcp_flags::FIN | tcp_flags::RST) != 0 => State::TcpClosing,
            IPPROTO_TCP if f.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN => State::TcpSyn,
            IPPROTO_TCP => State::TcpEstablished,
            IPPROTO_UDP => State::Udp,
            IPPROTO_ICMP | IPPROTO_ICMPV6 => State::Echo,
            _ => State::Other,
        }
    }

    /// The state after a packet with these TCP flags (a closing connection stays closing).
    fn next(self, flags: u8) -> State {
        match self {
            State::TcpSyn | State::TcpEstablished if flags & (tcp_flags::FIN | tcp_flags::RST) != 0 => {
                State::TcpClosing
            }
            State::TcpSyn if flags & tcp_flags::ACK != 0 => State::TcpEstablished,
            s => s,
        }
    }

    fn timeout(self) -> u32 {
        match self {
            State::TcpSyn => TCP_SYN,
            State::TcpEstablished => TCP_ESTABLISHED,
            State::TcpClosing => TCP_CLOSING,
            State::Udp => UDP,
            State::Echo => ICMP_ECHO,
            State::Other => OTHER,
        }
    }
}

fn canonical(a: (IpAddr, u16), b: (IpAddr, u16), proto: u8) -> (Key, bool) {
    if a <= b {
        (Key { low: a, high: b, proto }, true)
    } else {
        (Key { low: b, high: a, proto }, false)
    }
}

/// The key of a trackable packet and whether it travels from the low endpoint.
fn key_of(f: &Flow) -> Option<(Key, bool)> {
    if f.fragment {
        return None;
    }
    match f.icmp.map(|i| i.kind) {
        Some(IcmpKind::EchoRequest | IcmpKind::EchoReply) | None => {}
        Some(IcmpKind::Error(_) | IcmpKind::Other) => return None,
    }
    Some(canonical((f.src, f.sport), (f.dst, f.dport), f.proto))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something did, the counts are still sound.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Conntrack {
    fn shard(&self, key: &Key) -> MutexGuard<'_, HashMap<Key, Entry>> {
        // `shards.len()` is a power of two; use the high bits, the shard map hashes on its own.
        let h = self.hasher.hash_one(key);
        let i = (h >> 32) as usize & (self.shards.len() - 1);
        lock(&self.shards[i])
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<u64, usize>> {
        lock(&self.peers)
    }

    fn has_room(&self, peers: &HashMap<u64, usize>, peer: u64) -> bool {
        peers.get(&peer).copied().unwrap_or(0) < self.per_peer && self.len.load(Ordering::Relaxed) < self.max
    }

    /// An ICMP error is related when it goes back to the sender of a tracked flow's packet.
    fn related(&self, f: &Flow, inner: &Embedded, now: u32) -> bool {
        if f.dst != inner.src {
            return false;
        }
        let (key, _) = canonical((inner.src, inner.sport), (inner.dst, inner.dport), inner.proto);
        self.shard(&key).get(&key).is_some_and(|e| e.expiry > now)
    }

    fn evict_expired(
        &self,
        shard: &mut HashMap<Key, Entry>,
        peers: &mut HashMap<u64, usize>,
        now: u32,
    ) -> usize {
        let before = shard.len();
        shard.retain(|_, e| {
            let live = e.expiry > now;
            if !live {
                self.forget_locked(peers, e.peer, 1);
            }
            live
        });
        let removed = before - shard.len();
        self.counters.expired.fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    fn forget(&self, peer: u64, n: usize) {
        let mut peers = self.peers();
        self.forget_locked(&mut peers, peer, n);
    }

    fn forget_locked(&self, peers: &mut HashMap<u64, usize>, peer: u64, n: usize) {
        if let Some(c) = peers.get_mut(&peer) {
            *c = c.saturating_sub(n);
            if *c == 0 {
                peers.remove(&peer);
            }
        }
        self.len.fetch_sub(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "conntrack_tests.rs"]
mod tests;
