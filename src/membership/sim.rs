//! A deterministic simulated network of [`Membership`] nodes, for the tests and the
//! benchmark: a fake clock, a seeded RNG, links with configurable loss and delay, partitions,
//! crashes and restarts. Nothing here touches a socket or the real clock.
//!
//! Invariants checked on every step: no node emits a message over [`MAX_MESSAGE`], and after
//! `handle_timeout(now)` no node asks to be woken at or before `now` (a driver would spin).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::MAX_MESSAGE;
use super::{
    ContainerEntry, Held, MemberEvent, MemberState, Membership, MembershipConfig, MembershipStats, NodeKey,
    Record, RecordCache,
};

/// Settings of a simulated network.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds node keys, node RNGs and the network's RNG.
    pub seed: u64,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Shortest one-way delay.
    pub delay_min: Duration,
    /// Longest one-way delay (uniform in between; messages may reorder).
    pub delay_max: Duration,
    /// Every node's membership settings.
    pub membership: MembershipConfig,
    /// Models the engine's sessions: `Some(h)` makes the first message between two nodes wait
    /// for a handshake that takes between h/2 and h (its messages are held meanwhile, and
    /// both nodes are told as the engine tells them); one with a crashed node never completes.
    /// `None`: messages go at once and nodes hear nothing of sessions.
    pub handshake: Option<Duration>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            loss: 0.0,
            delay_min: Duration::from_millis(5),
            delay_max: Duration::from_millis(40),
            membership: MembershipConfig::default(),
            handshake: None,
        }
    }
}

/// One simulated node.
pub struct SimNode {
    /// Its state machine.
    pub m: Membership,
    /// Its key.
    pub key: NodeKey,
    /// False once crashed: it neither receives nor wakes.
    pub up: bool,
    generation: u64,
}

struct Packet {
    at: Instant,
    seq: u64,
    from: usize,
    to: usize,
    /// Empty: the handshake between `from` and `to` completes now (`SimConfig::handshake`).
    bytes: Vec<u8>,
}

impl PartialEq for Packet {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Packet {}
impl PartialOrd for Packet {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Packet {
    // Reversed: `BinaryHeap` is a max-heap and we want the earliest packet.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A session between two simulated nodes (`SimConfig::handshake`).
#[derive(Debug, Clone, Copy)]
struct SimLink {
    /// When its handshake began.
    began: Instant,
    /// When the handshake completes (or completed, or found a node down).
    at: Instant,
    /// Whether it completed.
    up: bool,
}

/// The simulated network and its nodes.
pub struct Sim {
    cfg: SimConfig,
    start: Instant,
    now: Instant,
    nodes: Vec<SimNode>,
    by_key: HashMap<NodeKey, usize>,
    net: BinaryHeap<Packet>,
    wake: BinaryHeap<std::cmp::Reverse<(Instant, usize, u64)>>,
    seq: u64,
    rng: SmallRng,
    groups: Option<Vec<u8>>,
    drop_from: HashMap<usize, usize>,
    restarts: u64,
    /// One copy of each record for all nodes (they all trust alike).
    records: RecordCache,
    /// Whether events are kept for [`Sim::take_events`].
    pub record_events: bool,
    events: Vec<(Duration, usize, MemberEvent)>,
    /// Sessions between node pairs (lower index first) when handshakes are modelled.
    links: HashMap<(usize, usize), SimLink>,
    /// Messages lost to loss, partitions or dead receivers.
    pub dropped: u64,
    /// Bytes sent, by message kind (the variant byte): SWIM, notices, pulls, chunks, digests,
    /// revocations, suspicion notes, probes, probe answers.
    pub bytes_by_kind: [u64; 9],
}

impl Sim {
    /// An empty network.
    pub fn new(cfg: SimConfig) -> Self {
        // Only the origin of the fake clock: nothing depends on its value.
        let start = Instant::now();
        let rng = SmallRng::seed_from_u64(cfg.seed ^ 0x5349_4d4e_4554);
        Self {
            cfg,
            start,
            now: start,
            nodes: Vec::new(),
            by_key: HashMap::new(),
            net: BinaryHeap::new(),
            wake: BinaryHeap::new(),
            seq: 0,
            rng,
            groups: None,
            drop_from: HashMap::new(),
            restarts: 0,
            records: RecordCache::default(),
            record_events: false,
            events: Vec::new(),
            links: HashMap::new(),
            dropped: 0,
            bytes_by_kind: [0; 9],
        }
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The current simulated instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// All nodes, by index.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &SimNode {
        &self.nodes[i]
    }

    /// The deterministic key of node `i`.
    pub fn key_of(&self, i: usize) -> NodeKey {
        let mut k = [0u8; 32];
        let mut s = self.cfg.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64);
        for word in k.chunks_exact_mut(8) {
            s = splitmix(s);
            word.copy_from_slice(&s.to_le_bytes());
        }
        NodeKey(k)
    }

    /// The underlay endpoint of node `i`.
    pub fn endpoint_of(i: usize) -> SocketAddr {
        let ip = Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
        SocketAddr::new(IpAddr::V4(ip), 7946)
    }

    /// A record version as the engine would make it: wall-clock millis << 16, later for later
    /// restarts.
    fn version_now(&mut self) -> u64 {
        self.restarts += 1;
        ((self.elapsed().as_millis() as u64 + 1_000_000) << 16) + self.restarts
    }

    /// A small record for node `i`, with one container.
    pub fn record_for(&self, i: usize, version: u64) -> Record {
        let container = ContainerEntry {
            vni: 1,
            mac: [2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8],
            ip: IpAddr::V4(Ipv4Addr::new(10, 42, (i >> 8) as u8, i as u8)),
            name: format!("c{i}"),
            labels: Default::default(),
        };
        Record {
            key: self.key_of(i),
            name: format!("node-{i}"),
            version,
            endpoint: Self::endpoint_of(i),
            cert: vec![i as u8; 64],
            networks: vec![1],
            containers: vec![container],
            services: Vec::new(),
        }
    }

    /// Adds a node that knows only `seed` (if any); returns its index.
    pub fn add_node(&mut self, seed: Option<usize>) -> usize {
        let i = self.nodes.len();
        let key = self.key_of(i);
        let version = self.version_now();
        let record = self.record_for(i, version);
        let mut m = Membership::new(
            record,
            self.cfg.membership.clone(),
            Box::new(super::TrustAll),
            self.cfg.seed ^ (i as u64) << 20,
            self.now,
        );
        m.share_records(self.records.clone());
        self.nodes.push(SimNode { m, key, up: true, generation: 0 });
        self.by_key.insert(key, i);
        if let Some(s) = seed {
            let seed_key = self.key_of(s);
            self.with_node(i, |m, now| m.add_seed(now, seed_key, Self::endpoint_of(s)));
        } else {
            self.after(i);
        }
        i
    }

    /// Adds `n` nodes that start as one formed cluster, one after another over `over`: each is
    /// handed every other one's record (and with it its SWIM identity) as anti-entropy would
    /// have delivered it, rather than joining through a seed. Forming n nodes by joins costs
    /// about n² messages (hours at 10,000 nodes in one process); everything after this runs
    /// the protocol. Returns the new nodes' indices.
    pub fn add_formed(&mut self, n: usize, over: Duration) -> std::ops::Range<usize> {
        let first = self.nodes.len();
        for _ in 0..n {
            self.add_node(None);
        }
        let held: Vec<Arc<Held>> = self.nodes[first..]
            .iter()
            .map(|node| {
                let m = &node.m;
                let h =
                    Arc::new(Held { record: m.own.clone(), id: m.id.clone(), signed: m.own_wire.clone() });
                self.records.put(&h);
                h
            })
            .collect();
        let gap = over / n.max(1) as u32;
        for i in first..first + n {
            self.with_node(i, |m, now| {
                for (j, h) in held.iter().enumerate() {
                    if first + j != i {
                        m.preload(now, h.clone());
                    }
                }
            });
            self.run_for(gap);
        }
        first..first + n
    }

    /// Runs `f` on node `i` at the current instant, then collects its output.
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut Membership, Instant) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.nodes[i].m, now);
        self.after(i);
        r
    }

    /// Stops node `i`: it neither receives nor wakes until restarted.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
    }

    /// Replaces node `i` by a fresh instance with the same key and a newer version, knowing
    /// only `seed`.
    pub fn restart(&mut self, i: usize, seed: usize) {
        let version = self.version_now();
        let record = self.record_for(i, version);
        let rng_seed = self.cfg.seed ^ (i as u64) << 20 ^ self.restarts;
        let mut m = Membership::new(
            record,
            self.cfg.membership.clone(),
            Box::new(super::TrustAll),
            rng_seed,
            self.now,
        );
        m.share_records(self.records.clone());
        self.links.retain(|&(a, b), _| a != i && b != i);
        let node = &mut self.nodes[i];
        node.m = m;
        node.up = true;
        let seed_key = self.key_of(seed);
        self.with_node(i, |m, now| m.add_seed(now, seed_key, Self::endpoint_of(seed)));
    }

    /// Splits the network: nodes in different groups cannot reach each other.
    pub fn partition(&mut self, group_of: impl Fn(usize) -> u8) {
        self.groups = Some((0..self.nodes.len()).map(group_of).collect());
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.groups = None;
    }

    /// Changes the loss probability.
    pub fn set_loss(&mut self, loss: f64) {
        self.cfg.loss = loss;
    }

    /// Loses the next `n` messages node `i` sends.
    pub fn drop_next_from(&mut self, i: usize, n: usize) {
        self.drop_from.insert(i, n);
    }

    /// Events recorded since the last call (when `record_events` is on).
    pub fn take_events(&mut self) -> Vec<(Duration, usize, MemberEvent)> {
        std::mem::take(&mut self.events)
    }

    /// Sum of every node's counters.
    pub fn total_stats(&self) -> MembershipStats {
        let mut t = MembershipStats::default();
        for n in &self.nodes {
            t += n.m.stats();
        }
        t
    }

    /// Whether node `i` lists every other running node as alive, holding its latest record.
    pub fn sees_all(&self, i: usize) -> bool {
        self.sees_all_as(i, &[MemberState::Alive])
    }

    /// Whether node `i` lists every other running node in one of `states`, holding its latest
    /// record.
    pub fn sees_all_as(&self, i: usize, states: &[MemberState]) -> bool {
        let me = &self.nodes[i].m;
        self.nodes.iter().enumerate().filter(|(j, n)| *j != i && n.up).all(|(_, n)| {
            me.member_state_of(&n.key).is_some_and(|s| states.contains(&s))
                && me.record(&n.key).map(|r| r.version) == Some(n.m.own().version)
        })
    }

    /// Whether every running node sees every other one alive (see [`Sim::sees_all`]).
    pub fn converged(&self) -> bool {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].up).all(|i| self.sees_all(i))
    }

    /// Like [`Sim::converged`], but a member under suspicion counts as up. Under heavy loss
    /// some probe always fails somewhere, so a cluster-wide instant with no suspect is rare.
    pub fn converged_up(&self) -> bool {
        let up = [MemberState::Alive, MemberState::Suspect];
        (0..self.nodes.len()).filter(|i| self.nodes[*i].up).all(|i| self.sees_all_as(i, &up))
    }

    /// Whether no running node has rumors left to spread (the formation burst is over).
    pub fn quiet(&self) -> bool {
        self.nodes.iter().filter(|n| n.up).all(|n| n.m.rumors.is_empty())
    }

    /// Runs until `pred` holds (checked every `step`) or `max` passes; returns the time taken.
    pub fn run_until_pred(
        &mut self,
        max: Duration,
        step: Duration,
        mut pred: impl FnMut(&mut Sim) -> bool,
    ) -> Option<Duration> {
        let begin = self.now;
        loop {
            if pred(self) {
                return Some(self.now - begin);
            }
            if self.now - begin >= max {
                return None;
            }
            self.run_for(step);
        }
    }

    /// Advances simulated time by `d`.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            let next_packet = self.net.peek().map(|p| p.at);
            let next_wake = self.wake.peek().map(|w| w.0 .0);
            let t = match (next_packet, next_wake) {
                (Some(p), Some(w)) => p.min(w),
                (Some(t), None) | (None, Some(t)) => t,
                (None, None) => break,
            };
            if t > until {
                break;
            }
            self.now = t;
            if next_packet == Some(t) {
                let p = self.net.pop().expect("peeked");
                if p.bytes.is_empty() {
                    self.link_up(t, p.from, p.to);
                    continue;
                }
                if !self.nodes[p.to].up {
                    self.dropped += 1;
                    continue;
                }
                let from = self.nodes[p.from].key;
                let _ = self.nodes[p.to].m.handle_message(t, from, &p.bytes);
                self.after(p.to);
            } else {
                let std::cmp::Reverse((_, i, generation)) = self.wake.pop().expect("peeked");
                if generation != self.nodes[i].generation || !self.nodes[i].up {
                    continue;
                }
                self.nodes[i].m.handle_timeout(t);
                let next = self.nodes[i].m.poll_timeout();
                assert!(next.is_none_or(|n| n > t), "node {i} asks to wake at or before now");
                self.after(i);
            }
        }
        self.now = until;
    }

    /// Collects node `i`'s transmits and events and re-arms its wakeup.
    fn after(&mut self, i: usize) {
        while let Some((to, _endpoint, bytes)) = self.nodes[i].m.poll_transmit() {
            assert!(bytes.len() <= MAX_MESSAGE, "node {i} sent {} bytes", bytes.len());
            self.transmit(i, to, bytes);
        }
        while let Some(ev) = self.nodes[i].m.poll_event() {
            if self.record_events {
                self.events.push((self.now - self.start, i, ev));
            }
        }
        if let Some(t) = self.nodes[i].m.poll_timeout() {
            let node = &mut self.nodes[i];
            node.generation += 1;
            self.wake.push(std::cmp::Reverse((t.max(self.now), i, node.generation)));
        }
    }

    fn transmit(&mut self, from: usize, to: NodeKey, bytes: Vec<u8>) {
        if let Some(slot) = bytes.get(1).and_then(|k| self.bytes_by_kind.get_mut(usize::from(*k))) {
            *slot += bytes.len() as u64;
        }
        let Some(&to) = self.by_key.get(&to) else {
            self.dropped += 1;
            return;
        };
        if let Some(n) = self.drop_from.get_mut(&from) {
            if *n > 0 {
                *n -= 1;
                self.dropped += 1;
                return;
            }
        }
        let cut = self.groups.as_ref().is_some_and(|g| g.get(from) != g.get(to));
        if cut || self.rng.random_bool(self.cfg.loss) {
            self.dropped += 1;
            return;
        }
        let ready = match self.cfg.handshake {
            Some(h) => match self.session(from, to, h) {
                Some(ready) => ready,
                None => {
                    self.dropped += 1;
                    return;
                }
            },
            None => self.now,
        };
        let span = self.cfg.delay_max.saturating_sub(self.cfg.delay_min);
        let delay = self.cfg.delay_min + span.mul_f64(self.rng.random_range(0.0..1.0));
        self.seq += 1;
        self.net.push(Packet { at: ready.max(self.now) + delay, seq: self.seq, from, to, bytes });
    }

    /// When the session between `from` and `to` is (or will be) up, starting its handshake if
    /// there is none; `None` if it never will (the handshake met a crashed node). Tells `from`
    /// that its message waits, as the engine does.
    fn session(&mut self, from: usize, to: usize, handshake: Duration) -> Option<Instant> {
        let pair = (from.min(to), from.max(to));
        let now = self.now;
        let link = match self.links.get(&pair) {
            Some(link) => *link,
            None => {
                let at = now + handshake.mul_f64(self.rng.random_range(0.5..1.0));
                self.seq += 1;
                self.net.push(Packet { at, seq: self.seq, from, to, bytes: Vec::new() });
                let link = SimLink { began: now, at, up: false };
                self.links.insert(pair, link);
                link
            }
        };
        if !link.up {
            let key = self.nodes[to].key;
            self.nodes[from].m.link_waiting(key, link.began);
        }
        (link.up || link.at > now).then_some(link.at)
    }

    /// The handshake between `a` and `b` completes at `t`, unless one of them is down.
    fn link_up(&mut self, t: Instant, a: usize, b: usize) {
        let pair = (a.min(b), a.max(b));
        if !(self.nodes[a].up && self.nodes[b].up) {
            return;
        }
        if let Some(link) = self.links.get_mut(&pair) {
            link.up = true;
        }
        for (x, y) in [(a, b), (b, a)] {
            let key = self.nodes[y].key;
            self.nodes[x].m.link_up(t, key);
            self.after(x);
        }
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
