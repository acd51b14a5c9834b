//! The engine: one thread that owns the protocol [`Endpoint`] and the forwarding databases.
//! It takes what workers cannot do alone (handshakes, frames for peers without a session,
//! learning, roaming) and the control API's requests, runs the timers, sends what the endpoint
//! emits, and republishes the workers' snapshot whenever anything they read changed.

use overlay_proto::consts::{TAG_LEN, TRANSPORT_HEADER_LEN};
use overlay_proto::wire::Inner;
use overlay_proto::{DatagramError, Encapsulated, Endpoint, Event, PeerId, Received};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, trace};

use crate::dataplane::frame::Mac;
use crate::dataplane::tables::{Loc, PeerEntry, Tables};
use crate::dataplane::{deliver, EngineMsg, Shared};
use crate::fdb::{Fdb, Learned};
use crate::membership::{ContainerEntry, NodeKey};

mod discovery;
mod members;
mod policy;
mod probe;
mod status;

pub(crate) use members::Members;

/// Requests from the control API.
#[derive(Debug)]
pub enum ControlMsg {
    /// A container was attached: its MAC and IP are local.
    AddLocal {
        /// Network index.
        net: usize,
        /// Container MAC.
        mac: Mac,
        /// Container IP.
        ip: IpAddr,
        /// Container name.
        name: String,
        /// Its labels (policy selectors, announced with it).
        labels: BTreeMap<String, String>,
    },
    /// A container was detached.
    RemoveLocal {
        /// Network index.
        net: usize,
        /// Container MAC.
        mac: Mac,
    },
    /// Report peers and counters.
    Status(tokio::sync::oneshot::Sender<crate::report::EngineStatus>),
    /// Replace the service instances our record announces.
    SetServices(Vec<crate::discovery::catalog::Announced>),
    /// Report the cluster-wide catalog (nodes, services with health).
    Catalog(tokio::sync::oneshot::Sender<crate::report::Catalog>),
    /// Which rule decides a flow, on this node's side(s).
    PolicyExplain {
        /// Network index.
        net: usize,
        /// Source: container name or address.
        from: String,
        /// Destination: container name or address.
        to: String,
        /// IP protocol number.
        proto: u8,
        /// Destination port (TCP/UDP).
        port: Option<u16>,
        /// The answer.
        reply: tokio::sync::oneshot::Sender<Result<crate::report::Explain, String>>,
    },
    /// Every network's policy with counters.
    PolicyStatus(tokio::sync::oneshot::Sender<Vec<crate::report::NetworkPolicy>>),
    /// New compiled policies, one per network (reload).
    SetPolicies(Vec<Arc<crate::policy::Compiled>>),
    /// New dial targets (seeds and static peers) after a reload.
    SetDialTargets(Vec<SocketAddr>),
    /// An overlay probe to a member (by name, public key or endpoint); answered with the RTT.
    Ping {
        /// The member.
        peer: String,
        /// The answer.
        reply: tokio::sync::oneshot::Sender<Result<crate::report::Pong, String>>,
    },
    /// Stop the engine.
    Stop,
}

/// Longest the engine sleeps between timer checks.
const TICK: Duration = Duration::from_millis(100);
/// Re-dial backoff bounds for static peers.
const DIAL_MIN: Duration = Duration::from_secs(1);
const DIAL_MAX: Duration = Duration::from_secs(30);

struct StaticPeer {
    addr: SocketAddr,
    next_dial: Instant,
    backoff: Duration,
    dialing: bool,
    /// Since when we dial it without an answer (`None`: reached, or not dialled yet).
    unanswered_since: Option<Instant>,
    /// Whether the operator was told that it does not answer (once per outage).
    warned: bool,
}

impl StaticPeer {
    fn new(addr: SocketAddr, now: Instant) -> Self {
        Self {
            addr,
            next_dial: now,
            backoff: DIAL_MIN,
            dialing: false,
            unanswered_since: None,
            warned: false,
        }
    }

    fn reached(&mut self) {
        if self.warned {
            info!(seed = %self.addr, "seed answers again");
        }
        self.unanswered_since = None;
        self.warned = false;
    }
}

/// A seed (or `[[peer]]` endpoint) dialled this long without an answer is reported: a warning
/// in the log and `unreachable` in `weft status`.
const SEED_UNANSWERED: Duration = Duration::from_secs(10);

/// The engine's state.
pub struct Engine {
    endpoint: Endpoint,
    shared: Arc<Shared>,
    udp: UdpSocket,
    fdbs: Vec<Fdb>,
    statics: Vec<StaticPeer>,
    published: Option<u64>,
    dirty: bool,
    started: Instant,
    names: BTreeMap<PeerId, String>,
    members: Members,
    local_containers: BTreeMap<(usize, Mac), ContainerEntry>,
    /// Compiled policy per network (swapped whole on reload).
    policies: Vec<Arc<crate::policy::Compiled>>,
    /// Our certificate's name and groups.
    me: Arc<(String, Vec<String>)>,
    next_conntrack_sweep: Instant,
    probes: BTreeMap<u64, probe::Pending>,
    probe_seq: u64,
    /// Background RTT probes in flight: id → (peer, sent).
    rtt_probes: BTreeMap<u64, (PeerId, Instant)>,
    /// Last measured RTT per peer.
    rtt: BTreeMap<PeerId, Duration>,
    next_rtt_probe: Instant,
    /// Members by underlay endpoint (rebuilt with every snapshot), to recognise a member that
    /// sends on a session we do not have.
    by_endpoint: std::collections::HashMap<SocketAddr, PeerId>,
    /// When each member may next be re-handshaken for sending on an unknown session.
    resync_after: BTreeMap<PeerId, Instant>,
}

/// At most one handshake per member per this long in answer to datagrams on unknown sessions
/// (a spoofed flood of them costs one handshake per member per period, never more).
const RESYNC_INTERVAL: Duration = Duration::from_secs(5);

impl Engine {
    /// An engine that sends through `udp` (a clone of a worker socket).
    pub(crate) fn new(
        endpoint: Endpoint,
        shared: Arc<Shared>,
        udp: UdpSocket,
        static_peers: &[SocketAddr],
        members: Members,
    ) -> Self {
        let now = Instant::now();
        let fdbs = shared.nets.iter().map(|_| Fdb::default()).collect();
        let statics = static_peers.iter().map(|&addr| StaticPeer::new(addr, now)).collect();
        let mut e = Self {
            endpoint,
            shared,
            udp,
            fdbs,
            statics,
            published: None,
            dirty: true,
            started: now,
            names: BTreeMap::new(),
            members,
            local_containers: BTreeMap::new(),
            policies: Vec::new(),
            me: Arc::new((String::new(), Vec::new())),
            next_conntrack_sweep: now,
            probes: BTreeMap::new(),
            probe_seq: 0,
            rtt_probes: BTreeMap::new(),
            rtt: BTreeMap::new(),
            next_rtt_probe: now + probe::RTT_PERIOD,
            by_endpoint: Default::default(),
            resync_after: BTreeMap::new(),
        };
        // Workers must never see a snapshot without the networks.
        e.publish();
        e
    }

    /// Local entries known before the workers start (leases recovered after a restart).
    pub fn add_local(
        &mut self,
        net: usize,
        mac: Mac,
        ip: IpAddr,
        name: &str,
        labels: BTreeMap<String, String>,
    ) {
        let now = Instant::now();
        self.fdbs[net].add_local(mac, Some(ip), now);
        let vni = self.shared.nets[net].vni.get();
        self.local_containers.insert((net, mac), members::entry(vni, mac, ip, name, labels));
        self.announce_containers(now);
        self.dirty = true;
    }

    /// Runs until a `Stop` arrives or every sender is gone.
    pub fn run(mut self, rx: Receiver<EngineMsg>) {
        self.publish();
        loop {
            let now = Instant::now();
            let next =
                [self.endpoint.poll_timeout(), self.members.layer.poll_timeout()].into_iter().flatten().min();
            let wait = next.map(|t| t.saturating_duration_since(now)).unwrap_or(TICK).min(TICK);
            match rx.recv_timeout(wait) {
                Ok(EngineMsg::Control(ControlMsg::Stop)) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Drain what queued up meanwhile before the (comparatively) slow timer pass.
            for _ in 0..256 {
                match rx.try_recv() {
                    Ok(EngineMsg::Control(ControlMsg::Stop)) => return,
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            self.endpoint.handle_timeout(now);
            self.members.layer.handle_timeout(now);
            self.dial_statics(now);
            self.flush_members(now);
            self.flush(now);
            self.publish_directory();
            self.expire_conntrack(now);
            self.expire_probes(now);
            self.probe_peers(now);
        }
    }

    fn handle(&mut self, msg: EngineMsg) {
        let now = Instant::now();
        match msg {
            EngineMsg::Datagram { from, mut bytes } => {
                match self.endpoint.handle_datagram(now, from, &mut bytes) {
                    Ok(Received::Payload { peer, payload }) => self.inner(now, peer, &mut bytes, payload),
                    Ok(Received::Consumed) => {}
                    Err(DatagramError::UnknownIndex) => self.unknown_session(now, from),
                    Err(e) => trace!(%e, "datagram dropped"),
                }
            }
            EngineMsg::Unroutable { peer, payload } => {
                let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + payload.len() + TAG_LEN];
                buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + payload.len()].copy_from_slice(&payload);
                match self.endpoint.encapsulate(now, peer, &mut buf, payload.len()) {
                    Ok(Encapsulated::Ready { dst, len }) => self.send(dst, &buf[..len]),
                    Ok(Encapsulated::Queued) => {}
                    Err(e) => trace!(%peer, %e, "unroutable frame dropped"),
                }
            }
            EngineMsg::Inner { peer, bytes } => {
                let mut b = bytes;
                let len = b.len();
                self.inner(now, peer, &mut b, 0..len);
            }
            EngineMsg::Learn { net, mac, ip, loc } => {
                if let Some(f) = self.fdbs.get_mut(net) {
                    match f.learn(mac, ip, loc, now) {
                        Learned::Ok => self.dirty = true,
                        Learned::Conflict | Learned::Full => {
                            crate::dataplane::inc(&self.shared.stats.drop_spoof);
                        }
                    }
                }
            }
            EngineMsg::Roamed { peer, addr } => self.endpoint.note_roamed(peer, addr),
            EngineMsg::Control(c) => self.control(now, c),
        }
    }

    /// An inner payload the engine decrypted (or a worker handed over).
    fn inner(&mut self, now: Instant, peer: PeerId, buf: &mut [u8], range: std::ops::Range<usize>) {
        match Inner::parse(&buf[range.clone()]) {
            Ok(Inner::Frame { vni, .. }) => {
                // A frame on a session the workers did not know yet: publish, then deliver.
                self.publish_if_changed();
                let tables = self.shared.tables.load();
                if let Some(net) = tables.net_of(vni) {
                    if range.start + 4 >= crate::device::VNET_HDR_LEN {
                        deliver(&self.shared, &tables, peer, net, 0, &mut buf[..range.end], range.start + 4);
                    }
                }
            }
            Ok(Inner::Probe(id)) => {
                let mut out = [0u8; TRANSPORT_HEADER_LEN + 12 + TAG_LEN];
                let n =
                    Inner::ProbeReply(id).emit(&mut out[TRANSPORT_HEADER_LEN..]).expect("room for a probe");
                if let Ok(Encapsulated::Ready { dst, len }) =
                    self.endpoint.encapsulate(now, peer, &mut out, n)
                {
                    self.send(dst, &out[..len]);
                }
            }
            Ok(Inner::ProbeReply(id)) => self.probe_reply(now, peer, id),
            Ok(Inner::Gossip(bytes)) => {
                let bytes = bytes.to_vec();
                self.gossip_in(now, peer, &bytes);
            }
            Ok(other) => trace!(%peer, kind = ?other.kind(), "inner payload ignored"),
            Err(e) => trace!(%peer, %e, "bad inner payload"),
        }
    }

    fn control(&mut self, now: Instant, c: ControlMsg) {
        match c {
            ControlMsg::AddLocal { net, mac, ip, name, labels } => {
                if net < self.fdbs.len() {
                    self.add_local(net, mac, ip, &name, labels);
                }
            }
            ControlMsg::RemoveLocal { net, mac } => {
                if let Some(f) = self.fdbs.get_mut(net) {
                    f.remove_local(&mac);
                    self.local_containers.remove(&(net, mac));
                    self.announce_containers(now);
                    self.dirty = true;
                }
            }
            ControlMsg::Status(reply) => {
                let _ = reply.send(self.status(now));
            }
            ControlMsg::SetServices(list) => self.set_services(now, list),
            ControlMsg::Catalog(reply) => {
                self.publish_directory();
                let _ = reply.send(self.catalog());
            }
            ControlMsg::PolicyExplain { net, from, to, proto, port, reply } => {
                let _ = reply.send(self.explain(net, &from, &to, proto, port));
            }
            ControlMsg::PolicyStatus(reply) => {
                let _ = reply.send(self.policy_status());
            }
            ControlMsg::SetPolicies(p) => self.replace_policies(p),
            ControlMsg::SetDialTargets(targets) => self.set_dial_targets(now, &targets),
            ControlMsg::Ping { peer, reply } => self.ping(now, &peer, reply),
            ControlMsg::Stop => {}
        }
    }

    /// Replaces the static dial targets (reload): new ones are dialled now, removed ones are
    /// no longer redialled; sessions already up are untouched.
    fn set_dial_targets(&mut self, now: Instant, targets: &[SocketAddr]) {
        self.statics.retain(|s| targets.contains(&s.addr));
        for &addr in targets {
            if !self.statics.iter().any(|s| s.addr == addr) {
                self.statics.push(StaticPeer::new(addr, now));
            }
        }
    }

    fn dial_statics(&mut self, now: Instant) {
        let connected: Vec<SocketAddr> = self
            .endpoint
            .peer_ids()
            .filter_map(|p| self.endpoint.peer_info(p))
            .filter(|i| i.connected)
            .filter_map(|i| i.endpoint)
            .collect();
        for s in &mut self.statics {
            if connected.contains(&s.addr) {
                s.backoff = DIAL_MIN;
                s.reached();
                continue;
            }
            let since = *s.unanswered_since.get_or_insert(now);
            if !s.warned && now.saturating_duration_since(since) >= SEED_UNANSWERED {
                s.warned = true;
                tracing::warn!(
                    seed = %s.addr,
                    "seed does not answer after {} s of handshake attempts; check membership.seeds \
                     (another node's underlay IP:PORT) and that UDP reaches it",
                    SEED_UNANSWERED.as_secs()
                );
            }
            if !s.dialing && now >= s.next_dial {
                debug!(addr = %s.addr, "dialing static peer");
                self.endpoint.dial(now, s.addr);
                s.dialing = true;
            }
        }
    }

    fn flush(&mut self, now: Instant) {
        while let Some(t) = self.endpoint.poll_transmit() {
            self.send(t.dst, &t.payload);
        }
        while let Some(e) = self.endpoint.poll_event() {
            match e {
                Event::Dialed { addr, peer } => {
                    self.static_done(addr, true, now);
                    debug!(%addr, %peer, "dial reached a member");
                    if let Some(info) = self.endpoint.peer_info(peer) {
                        self.members.layer.add_seed(now, NodeKey(info.key), addr);
                    }
                }
                Event::DialFailed { addr } => {
                    self.static_done(addr, false, now);
                    debug!(%addr, "dial failed; backing off");
                }
                Event::HandshakeCompleted { peer } => {
                    if let Some(c) = self.endpoint.peer_info(peer).and_then(|i| i.cert) {
                        if self.names.insert(peer, c.name.clone()).is_none() {
                            info!(peer = %c.name, "peer up");
                        }
                    }
                }
                Event::HandshakeFailed { peer } => debug!(%peer, "handshake gave up"),
                Event::EndpointChanged { peer, addr } => debug!(%peer, %addr, "peer roamed"),
            }
        }
        for f in &mut self.fdbs {
            if f.expire(now) {
                self.dirty = true;
            }
        }
        self.publish_if_changed();
    }

    /// A datagram for a session we do not hold came from `from`. When that is a member's
    /// endpoint, the member still sends on a session from before our restart (or one we
    /// dropped): start a handshake with it now instead of leaving it to its no-reply timer
    /// (15 s), so a restarted node is reachable again within a round trip of learning the
    /// member.
    fn unknown_session(&mut self, now: Instant, from: SocketAddr) {
        let Some(&peer) = self.by_endpoint.get(&from) else {
            trace!(%from, "datagram for an unknown session from a stranger");
            return;
        };
        if self.resync_after.get(&peer).is_some_and(|t| now < *t) {
            return;
        }
        self.resync_after.insert(peer, now + RESYNC_INTERVAL);
        debug!(%peer, "member sends on a session we do not hold; handshaking");
        self.endpoint.connect(now, peer);
    }

    fn static_done(&mut self, addr: SocketAddr, ok: bool, now: Instant) {
        if let Some(s) = self.statics.iter_mut().find(|s| s.addr == addr) {
            s.dialing = false;
            if ok {
                s.reached();
                s.backoff = DIAL_MIN;
                s.next_dial = now + DIAL_MIN;
            } else {
                s.next_dial = now + s.backoff;
                s.backoff = (s.backoff * 2).min(DIAL_MAX);
            }
        }
    }

    fn send(&self, dst: SocketAddr, bytes: &[u8]) {
        if self.udp.send_to(bytes, dst).is_err() {
            crate::dataplane::inc(&self.shared.stats.io_errors);
        }
    }

    fn publish_if_changed(&mut self) {
        if self.dirty || self.published != Some(self.endpoint.generation()) {
            self.publish();
        }
    }

    fn publish(&mut self) {
        let now = Instant::now();
        let mut t = Tables::default();
        for (i, n) in self.shared.nets.iter().enumerate() {
            t.vnis.insert(n.vni, i);
        }
        for (idx, peer, s) in self.endpoint.sessions() {
            t.sessions.insert(idx, (peer, Arc::clone(s)));
        }
        self.by_endpoint.clear();
        self.resync_after.retain(|_, t| *t > now);
        for id in self.endpoint.peer_ids().collect::<Vec<_>>() {
            let Some(info) = self.endpoint.peer_info(id) else { continue };
            if let Some(e) = info.endpoint {
                self.by_endpoint.insert(e, id);
            }
            // The handshake's certificate, or (before any session) the member record's.
            let Some(cert) = info.cert.or_else(|| self.members.certs.get(&id).cloned()) else { continue };
            let session = self.endpoint.sending_session(now, id).map(|(s, _)| Arc::clone(s));
            t.peers.insert(
                id,
                PeerEntry {
                    session,
                    endpoint: info.endpoint,
                    subnets: Arc::new(cert.subnets.clone()),
                    name: Arc::from(cert.name.as_str()),
                    groups: Arc::new(cert.groups.clone()),
                },
            );
            if !self.members.down.contains(&id) {
                t.flood.push(id);
            }
        }
        t.nets = self.fdbs.iter().map(Fdb::tables).collect();
        for (net, nt) in t.nets.iter_mut().enumerate() {
            nt.policy = self.policy_tables(net);
        }
        // Entries behind peers we no longer know would black-hole traffic: drop them.
        for nt in &mut t.nets {
            nt.macs.retain(|_, l| !matches!(l, Loc::Peer(p) if !t.peers.contains_key(p)));
        }
        self.shared.tables.store(Arc::new(t));
        self.published = Some(self.endpoint.generation());
        self.dirty = false;
    }
}
