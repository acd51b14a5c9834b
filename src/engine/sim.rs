//! A deterministic simulation of whole nodes — engine, membership layer and protocol endpoint
//! each, exactly as the daemon builds them — on a fake network with a fake clock: seeded loss,
//! delay and reordering, partitions, restarts. No socket, no TAP, no root.
//!
//! Each node's data plane is modelled by what the workers do with the engine's outputs and the
//! published snapshot: a frame a container sends is looked up in the snapshot's FDB and handed
//! to the engine for its peer (or flooded), a delivered frame is recorded and its source MAC
//! learned as the workers would. Invariant checked on every step: after `handle_timeout(now)`
//! no engine asks to be woken at or before `now`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use overlay_proto::cert::{CaBundle, CaCert, CaKey, NodeCert, NodeCertRequest};
use overlay_proto::handshake::public_key;
use overlay_proto::keys::SecretKey;
use overlay_proto::wire::{Inner, Vni};
use overlay_proto::{Endpoint, EndpointConfig, PeerId};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::{Engine, Event, Members};
use crate::config::Encryption;
use crate::membership::{Membership, MembershipConfig, NodeKey, Record};
use crate::packet::ethernet::EthernetFrame;
use crate::packet::Mac;
use crate::plane::tables::{Loc, Tables};
use crate::plane::{LaneReceivers, Lanes, NetId, NetInfo, Shared, WorkerMsg};

/// The one network every simulated node serves.
pub const VNI: u32 = 42;
/// Wall-clock time at the start of every simulation (certificates are valid around it).
pub const WALL: Duration = Duration::from_secs(1_800_000_000);
/// Simulation step.
const STEP: Duration = Duration::from_millis(5);

/// Settings of a simulated network.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds keys, RNGs and the network's RNG.
    pub seed: u64,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Shortest one-way delay.
    pub delay_min: Duration,
    /// Longest one-way delay (uniform in between; datagrams reorder).
    pub delay_max: Duration,
    /// Every node's `[membership] max_members`.
    pub max_members: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            loss: 0.0,
            delay_min: Duration::from_millis(1),
            delay_max: Duration::from_millis(10),
            max_members: crate::config::DEFAULT_MAX_MEMBERS,
        }
    }
}

/// A frame a node's data plane wrote to its TAP.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The authenticated sender.
    pub peer: PeerId,
    /// The Ethernet frame.
    pub frame: Vec<u8>,
}

/// One simulated node.
pub struct SimNode {
    /// Its engine.
    pub engine: Engine,
    /// What its workers would share with the engine.
    pub shared: Arc<Shared>,
    /// Its underlay address.
    pub addr: SocketAddr,
    /// Its static secret (kept so that a restart keeps the identity).
    pub secret: [u8; 32],
    /// Its certificate.
    pub cert: NodeCert,
    /// False while crashed: it neither receives nor wakes.
    pub up: bool,
    /// Frames delivered to its TAP, oldest first.
    pub delivered: Vec<Delivered>,
    /// Frames the data plane's admission check refused, oldest first.
    pub refused: Vec<Delivered>,
    /// Events the harness does not consume (answered probes), oldest first.
    pub events: Vec<Event>,
    next_wake: Instant,
    /// The engine's ends of the workers' lanes.
    pub lanes: LaneReceivers,
}

struct Datagram {
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// The simulated network.
pub struct Sim {
    /// The nodes; node `i` lives at `10.200.0.(i+1):51820` with containers in `10.42.(i+1).0/24`.
    pub nodes: Vec<SimNode>,
    /// The current time.
    pub now: Instant,
    start: Instant,
    /// The network CA.
    pub ca: CaKey,
    /// Its certificate.
    pub ca_cert: CaCert,
    cfg: SimConfig,
    rng: SmallRng,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    in_flight: BTreeMap<u64, Datagram>,
    seq: u64,
    /// Node pairs that cannot reach each other (both directions).
    cut: BTreeSet<(usize, usize)>,
    /// Datagrams dropped by loss or partition.
    pub dropped: u64,
    /// Datagrams sent to addresses no node has, by sending node and address.
    pub unroutable: BTreeMap<(usize, SocketAddr), usize>,
}

impl Sim {
    /// `n` nodes; each dials node 0 as its seed (node 0 dials nobody).
    pub fn new(n: usize, cfg: SimConfig) -> Self {
        let ca = CaKey::from_seed(&[7; 32]);
        let ca_cert = ca.self_sign("sim", 0, WALL.as_secs() + 10 * 365 * 86_400).expect("CA");
        let start = crate::testing::clock_origin();
        let mut sim = Self {
            nodes: Vec::new(),
            now: start,
            start,
            ca,
            ca_cert,
            rng: SmallRng::seed_from_u64(cfg.seed),
            cfg,
            queue: BinaryHeap::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            cut: BTreeSet::new(),
            dropped: 0,
            unroutable: BTreeMap::new(),
        };
        for i in 0..n {
            let secret = secret_of(sim.cfg.seed, i);
            let cert = sim.sign(&format!("h{}", i + 1), &secret, &[subnet_of(i), subnet6_of(i)], &[]);
            let ca = sim.ca_cert.clone();
            let node = sim.build(i, secret, cert, ca);
            sim.nodes.push(node);
        }
        sim
    }

    /// A certificate from the network CA.
    pub fn sign(&self, name: &str, secret: &[u8; 32], subnets: &[&str], groups: &[&str]) -> NodeCert {
        sign_by((&self.ca, &self.ca_cert), name, secret, subnets, groups)
    }

    /// Gives node `i` a new key, certificate and trusted CAs, as `weft reload` does.
    pub fn set_identity(&mut self, i: usize, secret: [u8; 32], cert: NodeCert, cas: CaBundle) {
        let now = self.now;
        let r = self.nodes[i].engine.set_identity(now, SecretKey::from_bytes(secret), cert.clone(), cas);
        r.expect("the identity is taken");
        self.nodes[i].secret = secret;
        self.nodes[i].cert = cert;
        self.collect_after_input(i);
    }

    fn build(&mut self, i: usize, secret: [u8; 32], cert: NodeCert, ca: CaCert) -> SimNode {
        let ca = CaBundle::single(ca);
        let now = self.now;
        let wall = WALL + self.elapsed();
        let addr = addr_of(i);
        let rng_seed = self.rng.random::<u64>();
        let endpoint = Endpoint::new(
            EndpointConfig {
                static_secret: SecretKey::from_bytes(secret),
                cert: cert.clone(),
                cas: ca.clone(),
                wall_clock: (now, wall),
                handshake_rate_limit: 1000,
                revoked: Default::default(),
                max_peers: self.cfg.max_members,
                ciphers: overlay_proto::Ciphers::BOTH,
                features: overlay_proto::Features::ALL,
            },
            Box::new(<rand_chacha::ChaCha8Rng as rand_core::SeedableRng>::seed_from_u64(rng_seed)),
        )
        .expect("endpoint");
        let (tx, _) = sync_channel(1);
        let (lanes, lane_rx) = Lanes::new();
        let net = NetInfo {
            name: "sim".into(),
            vni: Vni::new(VNI).expect("vni"),
            mtu: 1400,
            // Dual stack: every node holds an IPv4 and an IPv6 subnet of the network.
            subnet: "10.42.0.0/16, fd42::/48".parse().expect("subnet"),
            gateway: crate::family::Addrs::collect([
                IpAddr::V4(Ipv4Addr::new(10, 42, i as u8 + 1, 1)),
                v6_of(i, 1),
            ])
            .expect("one gateway per family"),
            gateway_mac: [2, 0, 0, 0, i as u8 + 1, 1],
            encryption: Encryption::ChaCha20Poly1305,
            remotes: Vec::new(),
            remote_checksum: false,
        };
        let shared = Arc::new(Shared {
            tables: Default::default(),
            proto_stats: Arc::clone(endpoint.stats()),
            stats: Default::default(),
            nets: vec![net],
            taps: vec![Vec::new()],
            engine: tx,
            lanes,
            stop: AtomicBool::new(false),
            conntrack: vec![crate::policy::Conntrack::new(1024, 256)],
            epoch: now,
            busy_poll: Duration::ZERO,
            worker_nice: 0,
        });
        let own = Record {
            key: NodeKey(cert.public_key),
            name: cert.name.clone(),
            version: (wall.as_millis() as u64) << 16,
            endpoint: addr,
            cert: cert.encode(),
            networks: vec![VNI],
            containers: Vec::new(),
            services: Vec::new(),
        };
        let auth = super::members::CertAuth::new(ca.clone(), &SecretKey::from_bytes(secret), now, wall);
        let mcfg = MembershipConfig { max_members: self.cfg.max_members, ..MembershipConfig::default() };
        let layer = Membership::new(own, mcfg, Box::new(auth), rng_seed ^ 0x5eed, now);
        let members = Members::new(layer, ca, Default::default());
        let seeds = if i == 0 { Vec::new() } else { vec![addr_of(0)] };
        let mut engine = Engine::new(now, wall, endpoint, Arc::clone(&shared), &seeds, members);
        engine.set_policies(
            vec![Arc::new(crate::policy::Compiled::new(Default::default()))],
            &cert.name,
            &[],
        );
        SimNode {
            engine,
            shared,
            addr,
            secret,
            cert,
            up: true,
            delivered: Vec::new(),
            events: Vec::new(),
            next_wake: now,
            lanes: lane_rx,
            refused: Vec::new(),
        }
    }

    fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(self.start)
    }

    /// Advances the clock by `d`, delivering datagrams and running timers on the way.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += STEP;
            self.step();
        }
    }

    /// Runs until `done` holds (checked every step), for at most `limit`; whether it held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.now += STEP;
            self.step();
        }
        done(self)
    }

    fn step(&mut self) {
        let now = self.now;
        while let Some(Reverse((at, id))) = self.queue.peek().copied() {
            if at > now {
                break;
            }
            self.queue.pop();
            let Some(d) = self.in_flight.remove(&id) else { continue };
            let Some(i) = self.nodes.iter().position(|n| n.addr == d.to) else { continue };
            if !self.nodes[i].up {
                continue;
            }
            self.nodes[i].engine.handle(now, WorkerMsg::Datagram { from: d.from, bytes: d.bytes });
            self.collect_after_input(i);
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].up && now >= self.nodes[i].next_wake {
                self.nodes[i].engine.handle_timeout(now);
                let wake = self.nodes[i].engine.poll_timeout(now);
                assert!(
                    wake > now,
                    "node {i} asks to be woken at or before now: endpoint {:?} membership {:?} now {:?}",
                    self.nodes[i].engine.endpoint.poll_timeout().map(|t| t.duration_since(self.start)),
                    self.nodes[i].engine.members.layer.poll_timeout().map(|t| t.duration_since(self.start)),
                    now.duration_since(self.start)
                );
                self.nodes[i].next_wake = wake;
                self.collect(i);
            }
        }
    }

    /// Carries out node `i`'s outputs: datagrams onto the network, deliveries to its TAP.
    /// After an input (`poke`), the node's timer pass runs at the end of this step, as the
    /// driver runs it after every batch of inputs.
    fn collect_after_input(&mut self, i: usize) {
        self.nodes[i].next_wake = self.nodes[i].next_wake.min(self.now);
        self.collect(i);
    }

    fn collect(&mut self, i: usize) {
        let now = self.now;
        while let Some(t) = self.nodes[i].engine.poll_transmit() {
            let Some(j) = self.nodes.iter().position(|n| n.addr == t.dst) else {
                *self.unroutable.entry((i, t.dst)).or_default() += 1;
                continue;
            };
            if self.cut.contains(&(i.min(j), i.max(j))) || self.rng.random::<f64>() < self.cfg.loss {
                self.dropped += 1;
                continue;
            }
            let span = self.cfg.delay_max.saturating_sub(self.cfg.delay_min).as_micros() as u64;
            let delay = self.cfg.delay_min + Duration::from_micros(self.rng.random_range(0..=span));
            self.seq += 1;
            self.queue.push(Reverse((now + delay, self.seq)));
            self.in_flight
                .insert(self.seq, Datagram { from: self.nodes[i].addr, to: t.dst, bytes: t.payload });
        }
        while let Some(ev) = self.nodes[i].engine.poll_event() {
            match ev {
                Event::Deliver { peer, net, buf, at, .. } => {
                    let frame = buf[at..].to_vec();
                    // The workers' admission check (source, network, MAC binding, policy) runs
                    // as in the daemon; what it hands the engine (learning) is fed back.
                    let tables = self.nodes[i].shared.tables.load_full();
                    let admitted = crate::dataplane::admit(&self.nodes[i].shared, &tables, peer, net, &frame);
                    self.feed_worker_messages(i);
                    if admitted {
                        self.nodes[i].delivered.push(Delivered { peer, frame });
                    } else {
                        self.nodes[i].refused.push(Delivered { peer, frame });
                    }
                }
                other => self.nodes[i].events.push(other),
            }
        }
    }

    /// Hands node `i`'s engine what its workers queued for it (learned MACs).
    fn feed_worker_messages(&mut self, i: usize) {
        let now = self.now;
        loop {
            let lanes = &self.nodes[i].lanes;
            let Some(m) = lanes.session.try_recv().or_else(|_| lanes.preauth.try_recv()).ok() else { break };
            self.nodes[i].engine.handle(now, m);
        }
        self.nodes[i].next_wake = self.nodes[i].next_wake.min(now);
    }

    /// A container on node `i` sends `frame`: the workers' lookup in the published snapshot,
    /// then the engine seals it for the owner of the destination MAC, or for every member when
    /// the destination is unknown or broadcast. Returns the peers it was handed to.
    pub fn send_frame(&mut self, i: usize, frame: &[u8]) -> Vec<PeerId> {
        let tables: Arc<Tables> = self.nodes[i].shared.tables.load_full();
        let dst = EthernetFrame::new_checked(frame).expect("an Ethernet frame").dst_addr();
        let peers = match tables.nets[0].macs.get(&dst) {
            Some(Loc::Peer(p)) => vec![*p],
            Some(_) => Vec::new(),
            None => tables.flood.clone(),
        };
        let vni = Vni::new(VNI).expect("vni");
        for &peer in &peers {
            let mut payload = vec![0u8; Inner::Frame { vni, frame, partial_csum: false }.buffer_len()];
            Inner::Frame { vni, frame, partial_csum: false }.emit(&mut payload).expect("frame fits");
            let now = self.now;
            self.nodes[i].engine.handle(now, WorkerMsg::Unroutable { peer, payload });
            self.collect_after_input(i);
        }
        peers
    }

    /// Adds a node with this identity, trusting `ca`, at the next address; it dials node 0.
    pub fn add_node(&mut self, secret: [u8; 32], cert: NodeCert, ca: CaCert) -> usize {
        let i = self.nodes.len();
        let node = self.build(i, secret, cert, ca);
        self.nodes.push(node);
        i
    }

    /// Carries out every node's pending outputs after a test called an engine directly, and
    /// runs their timer passes at the next step (as the driver does after an input).
    pub fn collect_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.collect_after_input(i);
        }
    }

    /// Node `i` crashes: it loses every datagram until [`Sim::restart`].
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
    }

    /// Node `i` starts again with the same identity and fresh state (a daemon restart).
    pub fn restart(&mut self, i: usize) {
        let (secret, cert) = (self.nodes[i].secret, self.nodes[i].cert.clone());
        let ca = self.ca_cert.clone();
        self.nodes[i] = self.build(i, secret, cert, ca);
    }

    /// Cuts (or heals) the link between nodes `a` and `b`.
    pub fn set_cut(&mut self, a: usize, b: usize, cut: bool) {
        let k = (a.min(b), a.max(b));
        if cut {
            self.cut.insert(k);
        } else {
            self.cut.remove(&k);
        }
    }

    /// Node `i`'s published snapshot.
    pub fn tables(&self, i: usize) -> Arc<Tables> {
        self.nodes[i].shared.tables.load_full()
    }

    /// The peer id node `i` uses for node `j`, if it knows `j`.
    pub fn peer_id(&self, i: usize, j: usize) -> Option<PeerId> {
        self.nodes[i].engine.endpoint.peer_by_key(&self.nodes[j].cert.public_key)
    }

    /// Whether every up node sees every other up node alive.
    pub fn converged(&self) -> bool {
        let up: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].up).collect();
        up.iter().all(|&i| {
            let alive: BTreeSet<[u8; 32]> = self.nodes[i]
                .engine
                .members
                .layer
                .members()
                .into_iter()
                .filter(|(_, s)| matches!(s, crate::membership::MemberState::Alive))
                .map(|(k, _)| k.0)
                .collect();
            up.iter().filter(|&&j| j != i).all(|&j| alive.contains(&self.nodes[j].cert.public_key))
        })
    }

    /// Attaches a dual-stack container on node `i` with host part `host` of both its subnets
    /// (as the control server does: one `add_local` per address); returns its MAC and IPs.
    pub fn attach_dual(&mut self, i: usize, host: u8, name: &str) -> (Mac, IpAddr, IpAddr) {
        let (mac, v4) = self.attach(i, host, name);
        let v6 = v6_of(i, u16::from(host));
        let now = self.now;
        self.nodes[i].engine.add_local(now, NetId(0), mac, v6, name, BTreeMap::new());
        self.collect_after_input(i);
        (mac, v4, v6)
    }

    /// Attaches a container on node `i` with host part `host` of its subnet; returns its MAC
    /// and IP.
    pub fn attach(&mut self, i: usize, host: u8, name: &str) -> (Mac, IpAddr) {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 42, i as u8 + 1, host));
        let mac = crate::netlink::container::stable_mac(ip).expect("IPv4 MAC");
        let now = self.now;
        self.nodes[i].engine.add_local(now, NetId(0), mac, ip, name, BTreeMap::new());
        self.collect_after_input(i);
        (mac, ip)
    }
}

/// A node certificate from `ca` (key and certificate), valid for a year around [`WALL`].
pub fn sign_by(
    ca: (&CaKey, &CaCert),
    name: &str,
    secret: &[u8; 32],
    subnets: &[&str],
    groups: &[&str],
) -> NodeCert {
    let req = NodeCertRequest {
        name: name.to_owned(),
        public_key: public_key(secret),
        signing_key: SecretKey::from_bytes(*secret).record_signing_key().public_key(),
        subnets: subnets.iter().map(|s| s.parse().expect("subnet")).collect(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        not_before: WALL.as_secs() - 3600,
        not_after: WALL.as_secs() + 365 * 86_400,
    };
    ca.0.sign(ca.1, req).expect("sign")
}

/// An IPv4/UDP frame from `src` to `dst` (MACs and addresses), with a small payload.
pub fn udp_frame(src: (Mac, IpAddr), dst: (Mac, IpAddr), payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.1, dst.1) else { panic!("IPv4 only") };
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&d.octets());
    let udp_len = (8 + payload.len()) as u16;
    f.extend_from_slice(&[0x30, 0x39, 0x30, 0x39, (udp_len >> 8) as u8, udp_len as u8, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Node `i`'s underlay address.
pub fn addr_of(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 200, 0, i as u8 + 1)), 51820)
}

/// Node `i`'s container subnet.
pub fn subnet_of(i: usize) -> &'static str {
    Box::leak(format!("10.42.{}.0/24", i + 1).into_boxed_str())
}

/// Node `i`'s IPv6 container subnet.
pub fn subnet6_of(i: usize) -> &'static str {
    Box::leak(format!("fd42:0:0:{}::/64", i + 1).into_boxed_str())
}

/// Address `host` of node `i`'s IPv6 container subnet.
pub fn v6_of(i: usize, host: u16) -> IpAddr {
    IpAddr::V6(std::net::Ipv6Addr::new(0xfd42, 0, 0, i as u16 + 1, 0, 0, 0, host))
}

/// Node `i`'s static secret for simulation seed `seed`.
pub fn secret_of(seed: u64, i: usize) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..16].copy_from_slice(&(i as u64).to_le_bytes());
    s[31] = 0x40;
    s
}
