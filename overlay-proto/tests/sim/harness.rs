//! A deterministic network simulation for [`Endpoint`]s: a fake clock (a fixed `Instant` plus a
//! simulated offset), a seeded RNG and a lossy, duplicating, reordering link, driven event by
//! event in time order. Nothing sleeps: a simulated hour runs in well under a second.
//!
//! Invariants the harness itself checks on every step (a violation panics, failing the test):
//! - after `handle_timeout(now)`, `poll_timeout()` is later than `now` (a driver that sleeps
//!   until `poll_timeout` would otherwise spin);
//! - a payload arrives at the node it was addressed to, from the peer whose key sent it.
//!
//! Application payloads are gossip inner payloads: `[2, 0, 0, 0] seq(8) from(2) to(2) padding`.
#![allow(dead_code)]

use overlay_proto::wire::{Inner, InnerKind};
use overlay_proto::{DatagramError, EncapError, Encapsulated, Endpoint, Event, PeerId, Received};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::identity::Network;

/// Inner payload length of one application payload.
pub const PAYLOAD_LEN: usize = 100;

/// What the link does to every datagram.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice (each copy with its own delay).
    pub dup: f64,
    /// Shortest one-way delay.
    pub delay_min: Duration,
    /// Longest one-way delay; a range wider than the send interval reorders.
    pub delay_max: Duration,
}

impl Link {
    /// No loss, no duplication, a fixed 1 ms delay.
    pub const PERFECT: Link = Link {
        loss: 0.0,
        dup: 0.0,
        delay_min: Duration::from_millis(1),
        delay_max: Duration::from_millis(1),
    };
}

/// One simulated node.
pub struct Node {
    /// The protocol endpoint under test.
    pub ep: Endpoint,
    /// Where the node currently sends from and receives at.
    pub addr: SocketAddr,
    /// Its static public key.
    pub key: [u8; 32],
    /// Every event it reported, with the simulated time.
    pub events: Vec<(Duration, Event)>,
    /// Application payloads received: `(sender node, seq)` to how many times.
    pub rx: HashMap<(usize, u64), u32>,
    /// Dropped datagrams by the reason `handle_datagram` gave.
    pub errors: BTreeMap<&'static str, u64>,
    /// Handshake-shaped or other non-payload datagrams consumed.
    pub consumed: u64,
    timer: Option<Duration>,
}

/// What `encapsulate` made of a payload: a datagram for a destination, or `None` (queued).
type Sealed = Option<(SocketAddr, Vec<u8>)>;

/// A datagram in flight.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Flight {
    /// Delivery time.
    pub at: Duration,
    /// Tie-breaker: launch order.
    pub id: u64,
    /// Source address.
    pub src: SocketAddr,
    /// Destination address.
    pub dst: SocketAddr,
    /// The UDP payload.
    pub data: Vec<u8>,
}

/// Network-level counters.
#[derive(Debug, Default, Clone)]
pub struct NetStats {
    /// Datagrams handed to the link.
    pub launched: u64,
    /// Lost by the link.
    pub lost: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Delivered to a node.
    pub delivered: u64,
    /// Addressed to nobody (e.g. a node's old address after it roamed).
    pub unroutable: u64,
}

/// A steady stream of numbered payloads from one node to another.
#[derive(Debug, Clone)]
pub struct Flow {
    from: usize,
    to: usize,
    interval: Duration,
    next: Duration,
    until: Duration,
}

/// One payload an application handed to `encapsulate`.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Sender node.
    pub from: usize,
    /// Receiver node.
    pub to: usize,
    /// Sequence number, unique per `(from, to)`.
    pub seq: u64,
    /// Simulated time of the call.
    pub at: Duration,
    /// Whether it was sealed at once (`false`: queued behind a handshake).
    pub ready: bool,
}

/// Decides which datagrams the link loses on purpose (true: lost).
pub type DropFilter = Box<dyn FnMut(&[u8]) -> bool>;

/// The simulation.
pub struct Sim {
    /// The instant simulated time counts from.
    pub base: Instant,
    /// Simulated time.
    pub now: Duration,
    /// The link every datagram crosses.
    pub link: Link,
    /// The nodes, by index.
    pub nodes: Vec<Node>,
    /// Network counters.
    pub net: NetStats,
    /// Every payload handed to `encapsulate`, in order.
    pub sent: Vec<Sent>,
    /// When set, every datagram launched is also recorded here.
    pub tap: Option<Vec<Flight>>,
    /// The network's identity (to build more nodes).
    pub network: Network,
    /// When set, datagrams for which it returns true are lost (besides the link's own loss).
    pub drop_if: Option<DropFilter>,
    rng: ChaCha8Rng,
    seed: u64,
    flights: BinaryHeap<Reverse<Flight>>,
    next_id: u64,
    flows: Vec<Flow>,
    seqs: HashMap<(usize, usize), u64>,
    routes: HashMap<SocketAddr, usize>,
}

/// The address node `i` starts at.
pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([192, 0, 2 + (i / 250) as u8, 1 + (i % 250) as u8], 51820))
}

impl Sim {
    /// `n` members of one network on `link`, everything derived from `seed`.
    pub fn new(n: usize, link: Link, seed: u64) -> Self {
        Self::with_ciphers(n, link, seed, overlay_proto::Ciphers::BOTH)
    }

    /// `n` nodes that all offer `ciphers` (every pair then uses the same session cipher).
    pub fn with_ciphers(n: usize, link: Link, seed: u64, ciphers: overlay_proto::Ciphers) -> Self {
        let mut sim = Self {
            base: Instant::now(),
            now: Duration::ZERO,
            link,
            nodes: Vec::new(),
            net: NetStats::default(),
            sent: Vec::new(),
            tap: None,
            network: Network::new(7),
            drop_if: None,
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            flights: BinaryHeap::new(),
            next_id: 0,
            flows: Vec::new(),
            seqs: HashMap::new(),
            routes: HashMap::new(),
        };
        for i in 0..n {
            let mut cfg = sim.network.config(i as u16, sim.base);
            cfg.ciphers = ciphers;
            let ep = super::identity::endpoint(cfg, seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
            sim.add_node(ep, addr(i));
        }
        sim
    }

    /// Adds a node (possibly of another network) at `at`; returns its index.
    pub fn add_node(&mut self, ep: Endpoint, at: SocketAddr) -> usize {
        let i = self.nodes.len();
        let key = ep.public_key();
        let timer = ep.poll_timeout().map(|t| t.saturating_duration_since(self.base));
        self.nodes.push(Node {
            ep,
            addr: at,
            key,
            events: Vec::new(),
            rx: HashMap::new(),
            errors: BTreeMap::new(),
            consumed: 0,
            timer,
        });
        assert!(self.routes.insert(at, i).is_none(), "address {at} taken");
        i
    }

    /// Node `i` restarts: a fresh endpoint with the same identity and address, which knows no
    /// peers and no sessions (what a daemon restart or crash leaves).
    pub fn restart(&mut self, i: usize) {
        let ep = self.network.endpoint(i as u16, self.base, self.seed ^ (self.now.as_nanos() as u64));
        let n = &mut self.nodes[i];
        n.ep = ep;
        n.timer = None;
    }

    /// The current simulated instant.
    pub fn instant(&self) -> Instant {
        self.base + self.now
    }

    /// Node `i`'s id for node `j`, if it knows `j`.
    pub fn peer(&self, i: usize, j: usize) -> Option<PeerId> {
        self.nodes[i].ep.peer_by_key(&self.nodes[j].key)
    }

    /// Tells node `i` node `j`'s key and address (no handshake yet).
    pub fn introduce(&mut self, i: usize, j: usize) -> PeerId {
        let (key, at) = (self.nodes[j].key, self.nodes[j].addr);
        self.nodes[i].ep.add_peer(key, Some(at))
    }

    /// Node `i` starts an IK handshake with `j` (introducing them first).
    pub fn connect(&mut self, i: usize, j: usize) {
        let p = self.introduce(i, j);
        let now = self.instant();
        self.nodes[i].ep.connect(now, p);
        self.drain(i);
    }

    /// Node `i` starts an XX handshake with whoever is at node `j`'s address.
    pub fn dial(&mut self, i: usize, j: usize) {
        let (now, at) = (self.instant(), self.nodes[j].addr);
        self.nodes[i].ep.dial(now, at);
        self.drain(i);
    }

    /// Node `i` moves to a new address: it sends from there, and only there reaches it.
    pub fn roam(&mut self, i: usize, to: SocketAddr) {
        let old = self.nodes[i].addr;
        self.routes.remove(&old);
        assert!(self.routes.insert(to, i).is_none(), "address {to} taken");
        self.nodes[i].addr = to;
    }

    /// Puts `data` on the wire from `src` to `dst`, bypassing the link's loss and delay.
    pub fn inject(&mut self, src: SocketAddr, dst: SocketAddr, data: Vec<u8>) {
        let id = self.next_id;
        self.next_id += 1;
        self.flights.push(Reverse(Flight { at: self.now, id, src, dst, data }));
    }

    /// Sends `per_sec` payloads per second from `from` to `to` during `[start, until)`.
    pub fn add_flow(&mut self, from: usize, to: usize, per_sec: u32, start: Duration, until: Duration) {
        let interval = Duration::from_secs(1) / per_sec;
        self.flows.push(Flow { from, to, interval, next: start, until });
    }

    /// Hands one numbered payload from `from` to `to` to `encapsulate` and puts the datagram on
    /// the link (or leaves it queued in the endpoint).
    pub fn send(&mut self, from: usize, to: usize) -> Result<Encapsulated, EncapError> {
        let (seq, sealed) = self.encapsulate(from, to)?;
        let r = match sealed {
            Some((dst, datagram)) => {
                let len = datagram.len();
                let src = self.nodes[from].addr;
                self.launch(src, dst, datagram);
                Encapsulated::Ready { dst, len }
            }
            None => Encapsulated::Queued,
        };
        self.sent.push(Sent { from, to, seq, at: self.now, ready: matches!(r, Encapsulated::Ready { .. }) });
        self.drain(from);
        Ok(r)
    }

    /// Seals the next numbered payload from `from` to `to` without sending it (nor counting it
    /// as sent): returns its sequence number, destination and datagram.
    pub fn craft(&mut self, from: usize, to: usize) -> (u64, SocketAddr, Vec<u8>) {
        let (seq, sealed) = self.encapsulate(from, to).expect("a known peer");
        let (dst, datagram) = sealed.expect("a usable session");
        (seq, dst, datagram)
    }

    /// Builds the next payload and calls `encapsulate`; `None` means it was queued.
    fn encapsulate(&mut self, from: usize, to: usize) -> Result<(u64, Sealed), EncapError> {
        let peer = self.peer(from, to).ok_or(EncapError::UnknownPeer)?;
        let seq = *self.seqs.entry((from, to)).and_modify(|s| *s += 1).or_insert(1);
        let mut buf = vec![0u8; 16 + PAYLOAD_LEN + 16];
        let p = &mut buf[16..16 + PAYLOAD_LEN];
        p[0] = InnerKind::Gossip as u8;
        p[4..12].copy_from_slice(&seq.to_le_bytes());
        p[12..14].copy_from_slice(&(from as u16).to_le_bytes());
        p[14..16].copy_from_slice(&(to as u16).to_le_bytes());
        let now = self.instant();
        Ok(match self.nodes[from].ep.encapsulate(now, peer, &mut buf, PAYLOAD_LEN)? {
            Encapsulated::Ready { dst, len } => {
                buf.truncate(len);
                (seq, Some((dst, buf)))
            }
            Encapsulated::Queued => (seq, None),
        })
    }

    /// Hands `data` from `src` straight to node `i` (no link), recording a payload and
    /// draining the node as a delivery would.
    pub fn receive(
        &mut self,
        i: usize,
        src: SocketAddr,
        mut data: Vec<u8>,
    ) -> Result<Received, DatagramError> {
        let now = self.instant();
        let r = self.nodes[i].ep.handle_datagram(now, src, &mut data);
        match &r {
            Ok(Received::Payload { peer, payload }) => self.record(i, *peer, &data[payload.clone()]),
            Ok(Received::Consumed) => self.nodes[i].consumed += 1,
            Err(e) => *self.nodes[i].errors.entry(error_kind(e)).or_default() += 1,
        }
        self.drain(i);
        r
    }

    /// Runs everything due before simulated time `end`, then sets the clock to `end`.
    pub fn run_until(&mut self, end: Duration) {
        self.run_while(end, |_| true);
    }

    /// Runs for `d` more simulated time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until `done` holds (checked after every step) or up to `end`; returns when it held.
    pub fn run_until_cond(&mut self, end: Duration, mut done: impl FnMut(&Sim) -> bool) -> Option<Duration> {
        let mut at = None;
        self.run_while(end, |s| {
            if done(s) {
                at = Some(s.now);
                false
            } else {
                true
            }
        });
        at
    }

    fn run_while(&mut self, end: Duration, mut go_on: impl FnMut(&Sim) -> bool) {
        if !go_on(self) {
            return;
        }
        loop {
            match self.next_event() {
                Some(t) if t < end => {
                    self.now = self.now.max(t);
                    self.step();
                    if !go_on(self) {
                        return;
                    }
                }
                _ => {
                    self.now = self.now.max(end);
                    return;
                }
            }
        }
    }

    fn next_event(&self) -> Option<Duration> {
        let net = self.flights.peek().map(|f| f.0.at);
        let timers = self.nodes.iter().filter_map(|n| n.timer);
        let flows = self.flows.iter().filter(|f| f.next < f.until).map(|f| f.next);
        net.into_iter().chain(timers).chain(flows).min()
    }

    /// Processes everything due at `now`: deliveries, then timers, then application sends.
    fn step(&mut self) {
        while self.flights.peek().is_some_and(|f| f.0.at <= self.now) {
            let Reverse(f) = self.flights.pop().expect("peeked");
            self.deliver(f);
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].timer.is_some_and(|t| t <= self.now) {
                let now = self.instant();
                self.nodes[i].ep.handle_timeout(now);
                self.drain(i);
                if let Some(t) = self.nodes[i].ep.poll_timeout() {
                    assert!(
                        t > now,
                        "node {i}: poll_timeout() is {:?} after handle_timeout at {:?}: a driver would spin",
                        t.saturating_duration_since(self.base),
                        self.now
                    );
                }
            }
        }
        for k in 0..self.flows.len() {
            while self.flows[k].next <= self.now && self.flows[k].next < self.flows[k].until {
                let Flow { from, to, interval, .. } = self.flows[k];
                self.flows[k].next += interval;
                let _ = self.send(from, to);
            }
        }
    }

    fn deliver(&mut self, f: Flight) {
        let Some(&i) = self.routes.get(&f.dst) else {
            self.net.unroutable += 1;
            return;
        };
        self.net.delivered += 1;
        let _ = self.receive(i, f.src, f.data);
    }

    fn record(&mut self, i: usize, peer: PeerId, plain: &[u8]) {
        let Ok(Inner::Gossip(body)) = Inner::parse(plain) else {
            panic!("node {i}: unexpected payload {plain:?}")
        };
        let seq = u64::from_le_bytes(body[..8].try_into().unwrap());
        let from = u16::from_le_bytes([body[8], body[9]]) as usize;
        let to = u16::from_le_bytes([body[10], body[11]]) as usize;
        assert_eq!(to, i, "payload for node {to} delivered to node {i}");
        let key = self.nodes[i].ep.peer_info(peer).expect("payload from a known peer").key;
        assert_eq!(key, self.nodes[from].key, "node {i}: payload of node {from} attributed to {peer}");
        *self.nodes[i].rx.entry((from, seq)).or_default() += 1;
    }

    /// Moves node `i`'s transmits onto the link and records its events.
    pub fn drain(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].ep.poll_transmit() {
            let src = self.nodes[i].addr;
            self.launch(src, t.dst, t.payload);
        }
        while let Some(e) = self.nodes[i].ep.poll_event() {
            self.nodes[i].events.push((self.now, e));
        }
        self.nodes[i].timer = self.nodes[i].ep.poll_timeout().map(|t| t.saturating_duration_since(self.base));
    }

    fn launch(&mut self, src: SocketAddr, dst: SocketAddr, data: Vec<u8>) {
        self.net.launched += 1;
        if let Some(tap) = &mut self.tap {
            tap.push(Flight { at: self.now, id: self.next_id, src, dst, data: data.clone() });
        }
        let dropped = self.drop_if.as_mut().is_some_and(|f| f(&data));
        if dropped || self.chance(self.link.loss) {
            self.net.lost += 1;
            return;
        }
        if self.chance(self.link.dup) {
            self.net.duplicated += 1;
            let at = self.now + self.delay();
            let id = self.next_id;
            self.next_id += 1;
            self.flights.push(Reverse(Flight { at, id, src, dst, data: data.clone() }));
        }
        let at = self.now + self.delay();
        let id = self.next_id;
        self.next_id += 1;
        self.flights.push(Reverse(Flight { at, id, src, dst, data }));
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < p
    }

    fn delay(&mut self) -> Duration {
        let (lo, hi) = (self.link.delay_min.as_nanos() as u64, self.link.delay_max.as_nanos() as u64);
        Duration::from_nanos(lo + if hi > lo { self.rng.next_u64() % (hi - lo + 1) } else { 0 })
    }

    /// Datagrams still on the wire.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }

    /// How many `HandshakeCompleted` events node `i` reported.
    pub fn handshakes(&self, i: usize) -> usize {
        self.nodes[i].events.iter().filter(|(_, e)| matches!(e, Event::HandshakeCompleted { .. })).count()
    }

    /// Whether `i` has a session it can send to `j` on.
    pub fn connected(&self, i: usize, j: usize) -> bool {
        self.peer(i, j).and_then(|p| self.nodes[i].ep.peer_info(p)).is_some_and(|p| p.connected)
    }

    /// Whether `i` can send to `j` on a session `j` is known to hold (confirmed by a packet
    /// received on it, or by an IK response).
    pub fn established(&self, i: usize, j: usize) -> bool {
        let now = self.instant();
        self.peer(i, j)
            .and_then(|p| self.nodes[i].ep.sending_session(now, p))
            .is_some_and(|(s, _)| s.is_confirmed())
    }

    /// Payloads from `from` to `to` as `(sent, delivered at least once, delivered more than once)`,
    /// counting only those sent in `[since, until)`.
    pub fn tally(&self, from: usize, to: usize, since: Duration, until: Duration) -> (u64, u64, u64) {
        let (mut sent, mut got, mut dup) = (0, 0, 0);
        for s in self.sent.iter().filter(|s| s.from == from && s.to == to && s.at >= since && s.at < until) {
            sent += 1;
            match self.nodes[to].rx.get(&(from, s.seq)) {
                Some(1) => got += 1,
                Some(_) => {
                    got += 1;
                    dup += 1
                }
                None => {}
            }
        }
        (sent, got, dup)
    }

    /// Payloads delivered more than once, over all nodes.
    pub fn duplicates(&self) -> u64 {
        self.nodes.iter().flat_map(|n| n.rx.values()).filter(|&&c| c > 1).count() as u64
    }
}

/// A short name for a drop reason, to tally drops per node.
pub fn error_kind(e: &DatagramError) -> &'static str {
    use overlay_proto::OpenError;
    match e {
        DatagramError::Malformed(_) => "malformed",
        DatagramError::UnknownIndex => "unknown_index",
        DatagramError::Open(OpenError::Replay) => "replay",
        DatagramError::Open(OpenError::Auth) => "auth",
        DatagramError::Open(OpenError::Expired) => "expired",
        DatagramError::Open(OpenError::Malformed(_)) => "malformed",
        DatagramError::BadMac1 => "bad_mac1",
        DatagramError::CookieRequired => "cookie_required",
        DatagramError::Handshake(_) => "noise",
        DatagramError::Cert(_) => "cert",
        DatagramError::CertKeyMismatch => "cert_key_mismatch",
        DatagramError::Revoked => "revoked",
        DatagramError::ReplayedInit => "replayed_init",
        DatagramError::PendingFull => "pending_full",
        DatagramError::PendingSourceFull => "pending_source_full",
        DatagramError::PeersFull => "peers_full",
        DatagramError::NoCommonCipher { .. } => "no_common_cipher",
    }
}
