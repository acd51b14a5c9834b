//! The engine: a state machine that owns the protocol [`Endpoint`], the membership layer and
//! the forwarding databases. It takes what workers cannot do alone (handshakes, frames for
//! peers without a session, learning, roaming) and the control API's requests, runs the
//! timers, and republishes the workers' snapshot whenever anything they read changed.
//!
//! It does no I/O and never reads the clock, like overlay-proto's `Endpoint`: inputs are
//! [`Engine::handle`] and [`Engine::handle_timeout`] (plus one method per control request),
//! each with `now`; outputs are pulled with [`Engine::poll_transmit`] (datagrams to send),
//! [`Engine::poll_event`] (frames to deliver, answered probes) and [`Engine::poll_timeout`].
//! After every input, drain transmits and events before the next one. The thread, socket, TAP
//! writes and channels live in [`driver`]; the simulation in `sim` drives several engines on a
//! fake network with a fake clock.

use overlay_proto::consts::INNER_HEADER_LEN;
use overlay_proto::consts::{TAG_LEN, TRANSPORT_HEADER_LEN};
use overlay_proto::wire::Inner;
use overlay_proto::{
    DatagramError, EncapError, Encapsulated, Endpoint, Event as ProtoEvent, PeerId, Received, Transmit,
};
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, trace};

use crate::membership::{ContainerEntry, NodeKey};
use crate::packet::Mac;
use crate::plane::tables::{Loc, PeerEntry, Tables};
use crate::plane::{NetId, PerNet};
use crate::plane::{Shared, WorkerMsg};
use fdb::{Fdb, Learned};
use seeds::StaticPeer;

mod discovery;
pub mod driver;
pub mod fdb;
mod members;
mod policy;
mod probe;
mod relay;
mod seeds;
#[cfg(test)]
mod sim;
mod status;
#[cfg(test)]
mod tests;

pub(crate) use members::{CertAuth, Members};
pub use probe::PingError;

/// What the engine asks its driver to do besides sending datagrams.
#[derive(Debug)]
pub enum Event {
    /// A frame from `peer` for network `net`: `buf[at..]` is the Ethernet frame, with room for
    /// the TAP's virtio-net header before it. The driver applies the data path's checks
    /// (source, policy) and writes it to the network's TAP.
    Deliver {
        /// The authenticated sender.
        peer: PeerId,
        /// Network index.
        net: NetId,
        /// Frame with headroom.
        buf: Vec<u8>,
        /// Where the frame starts.
        at: usize,
        /// A TCP segment whose checksum is partial (`Features::PARTIAL_CSUM`).
        partial_csum: bool,
    },
    /// A probe started with [`Engine::ping`] was answered, or timed out.
    Pinged {
        /// The id `ping` returned.
        id: u64,
        /// What came of it.
        result: Result<Pinged, PingError>,
    },
}

/// An answered probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Pinged {
    /// The member, as it was asked for.
    pub peer: String,
    /// Its underlay endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Round-trip time through the tunnel.
    pub rtt: Duration,
}

/// Longest the engine waits between timer passes (FDB ageing, publishing, seeds' state).
pub const TICK: Duration = Duration::from_millis(100);

/// At most one handshake per member per this long in answer to datagrams on unknown sessions
/// (a spoofed flood of them costs one handshake per member per period, never more).
const RESYNC_INTERVAL: Duration = Duration::from_secs(5);

/// The engine's state.
pub struct Engine {
    endpoint: Endpoint,
    shared: Arc<Shared>,
    /// `now` and the wall clock at the same moment (certificates are checked in wall time).
    wall: (Instant, Duration),
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    fdbs: Vec<Fdb>,
    statics: Vec<StaticPeer>,
    published: Option<u64>,
    dirty: bool,
    started: Instant,
    names: BTreeMap<PeerId, String>,
    members: Members,
    /// One entry per address: a dual-stack container is two, with one MAC.
    local_containers: BTreeMap<(NetId, Mac, IpAddr), ContainerEntry>,
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
    by_endpoint: BTreeMap<SocketAddr, PeerId>,
    /// When each member may next be re-handshaken for sending on an unknown session.
    resync_after: BTreeMap<PeerId, Instant>,
    /// Expiry warnings already logged for our certificate and each trusted CA (by CA key).
    expiry: BTreeMap<Option<[u8; 32]>, crate::pki::expiry::ExpiryWatch>,
    next_expiry_check: Instant,
    /// Relays and direct-path candidates.
    paths: relay::Paths,
}

/// How often the engine looks whether our certificate or a trusted CA nears its end.
const EXPIRY_CHECK: Duration = Duration::from_secs(60);

impl Engine {
    /// An engine that publishes into `shared.tables`; `wall` is the wall-clock time at `now`.
    pub(crate) fn new(
        now: Instant,
        wall: Duration,
        endpoint: Endpoint,
        shared: Arc<Shared>,
        static_peers: &[SocketAddr],
        members: Members,
    ) -> Self {
        let fdbs = shared.nets.iter().map(|_| Fdb::default()).collect();
        let statics = static_peers.iter().map(|&addr| StaticPeer::new(addr, now)).collect();
        let mut e = Self {
            endpoint,
            shared,
            wall: (now, wall),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
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
            by_endpoint: BTreeMap::new(),
            resync_after: BTreeMap::new(),
            expiry: BTreeMap::new(),
            next_expiry_check: now,
            paths: relay::Paths::default(),
        };
        // Workers must never see a snapshot without the networks.
        e.publish(now);
        e
    }

    /// Applies the `[relay]` settings.
    pub fn set_relay(&mut self, cfg: crate::config::Relay) {
        if cfg.enable != self.paths.cfg.enable {
            // Everyone is told the change at the next path pass.
            self.paths.told.clear();
        }
        self.paths.cfg = cfg;
    }

    /// A container attached on this host (or recovered from its lease at start): its MAC and
    /// IP are local, and our record announces it. Called once per address of a dual-stack
    /// container: the record then lists it twice, same MAC, one IP each.
    pub fn add_local(
        &mut self,
        now: Instant,
        net: NetId,
        mac: Mac,
        ip: IpAddr,
        name: &str,
        labels: BTreeMap<String, String>,
    ) {
        let Some(info) = self.shared.nets.net(net) else { return };
        let vni = info.vni.get();
        self.fdbs[net].add_local(mac, Some(ip), now);
        self.local_containers.insert((net, mac, ip), members::entry(vni, mac, ip, name, labels));
        self.announce_containers(now);
        self.dirty = true;
    }

    /// A container was detached.
    pub fn remove_local(&mut self, now: Instant, net: NetId, mac: &Mac) {
        if let Some(f) = self.fdbs.net_mut(net) {
            f.remove_local(mac);
            self.local_containers.retain(|(n, m, _), _| (*n, m) != (net, mac));
            self.announce_containers(now);
            self.dirty = true;
        }
    }

    /// One message from a worker.
    pub fn handle(&mut self, now: Instant, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Datagram { from, mut bytes } => {
                match self.endpoint.handle_datagram(now, from, &mut bytes) {
                    Ok(Received::Payload { peer, payload }) => self.inner(now, peer, bytes, payload),
                    Ok(Received::Consumed) => {}
                    Err(DatagramError::UnknownIndex) => self.unknown_session(now, from),
                    Err(e) => trace!(%e, "datagram dropped"),
                }
            }
            WorkerMsg::Unroutable { peer, payload } => {
                let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + payload.len() + TAG_LEN];
                buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + payload.len()].copy_from_slice(&payload);
                if let Err(e) = self.seal(now, peer, buf, payload.len()) {
                    trace!(%peer, %e, "unroutable frame dropped");
                }
            }
            WorkerMsg::Inner { peer, bytes } => {
                let len = bytes.len();
                self.inner(now, peer, bytes, 0..len);
            }
            WorkerMsg::Learn { net, mac, ip, loc } => {
                if let Some(f) = self.fdbs.net_mut(net) {
                    match f.learn(mac, ip, loc, now) {
                        Learned::Ok => self.dirty = true,
                        Learned::Conflict | Learned::Full => {
                            crate::plane::inc(&self.shared.stats.drop_spoof);
                        }
                    }
                }
            }
            WorkerMsg::UnknownSession { from } => {
                overlay_proto::EndpointStats::inc(&self.shared.proto_stats.unknown_index);
                self.unknown_session(now, from);
            }
            WorkerMsg::Roamed { peer, addr } => self.endpoint.note_roamed(peer, addr),
        }
        self.drain(now);
        // A session made by this input is in the workers' table before anything we send can
        // make its peer use it: workers may then drop transport data on unknown indices
        // themselves, as stale or forged.
        if self.published != Some(self.endpoint.generation()) {
            self.publish(now);
        }
    }

    /// The timer pass: protocol and membership timers, seeds, probes, ageing, and publishing
    /// the snapshot and the DNS directory when they changed. The driver runs it after every
    /// batch of inputs too, so what a batch changed reaches the workers at once.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
        self.members.layer.handle_timeout(now);
        self.dial_statics(now);
        self.drain(now);
        for f in &mut self.fdbs {
            if f.expire(now) {
                self.dirty = true;
            }
        }
        self.publish_if_changed(now);
        self.publish_directory();
        self.expire_conntrack(now);
        self.expire_probes(now);
        self.probe_peers(now);
        if self.review_paths(now) {
            self.endpoint.handle_timeout(now);
        }
        if now >= self.next_expiry_check {
            self.next_expiry_check = now + EXPIRY_CHECK;
            for w in self.expiry_warnings(now) {
                tracing::warn!("{w}");
            }
        }
        self.drain(now);
    }

    /// Warnings due at `now` about our certificate's or a trusted CA's end (30, 7 and 1 days
    /// before it, and once ended): each once per certificate, again after a restart, and
    /// afresh for a renewed one.
    pub(crate) fn expiry_warnings(&mut self, now: Instant) -> Vec<String> {
        use crate::pki::expiry::{describe, Warning};
        let unix = self.unix_secs(now);
        let cert = self.endpoint.cert();
        let mut subjects = vec![(None, format!("this node's certificate ({:?})", cert.name), cert.not_after)];
        for ca in self.members.cas.iter() {
            subjects.push((Some(ca.public_key), format!("trusted CA {:?}", ca.name), ca.not_after));
        }
        self.expiry.retain(|k, _| subjects.iter().any(|(s, _, _)| s == k));
        let mut out = Vec::new();
        for (key, what, not_after) in subjects {
            let Some(w) = self.expiry.entry(key).or_default().poll(unix, not_after) else { continue };
            let todo = match (key, w) {
                (None, Warning::Expired) => {
                    "members refuse it now: renew it (`weft ca sign --renew`) and `weft reload`"
                }
                (None, _) => "renew it (`weft ca sign --renew`) and `weft reload`",
                (Some(_), Warning::Expired) => "it vouches for no one now",
                (Some(_), _) => "certificates it issued end with it: rotate to a new CA before then",
            };
            out.push(format!("{what} {}; {todo}", describe(unix, not_after)));
        }
        out
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing for the driver to do.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] is next due: the earliest protocol or membership timer,
    /// and at most [`TICK`] after `now` for the engine's own periodic work.
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        [self.endpoint.poll_timeout(), self.members.layer.poll_timeout()]
            .into_iter()
            .flatten()
            .fold(now + TICK, Instant::min)
    }

    /// Wall-clock seconds at `now`.
    fn unix_secs(&self, now: Instant) -> u64 {
        unix_secs(self.wall, now)
    }

    /// Seals the inner payload at `buf[TRANSPORT_HEADER_LEN..][..len]` for `peer` and queues
    /// the datagram (or the endpoint queues the payload behind a handshake).
    fn seal(&mut self, now: Instant, peer: PeerId, mut buf: Vec<u8>, len: usize) -> Result<(), EncapError> {
        match self.endpoint.encapsulate(now, peer, &mut buf, len)? {
            Encapsulated::Ready { dst, len } => {
                buf.truncate(len);
                self.queue_transmit(now, Transmit { dst, payload: buf });
            }
            Encapsulated::Queued => {}
        }
        Ok(())
    }

    /// Emits `inner` into a fresh datagram buffer and seals it for `peer`.
    fn send_inner(&mut self, now: Instant, peer: PeerId, inner: &Inner<'_>) -> Result<(), EncapError> {
        let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + inner.buffer_len() + TAG_LEN];
        let Ok(len) = inner.emit(&mut buf[TRANSPORT_HEADER_LEN..]) else {
            // Every inner payload the engine makes fits the buffer sized for it.
            return Ok(());
        };
        self.seal(now, peer, buf, len)
    }

    /// An inner payload the engine decrypted (or a worker handed over): `buf[range]`.
    fn inner(&mut self, now: Instant, peer: PeerId, buf: Vec<u8>, range: std::ops::Range<usize>) {
        match Inner::parse(&buf[range.clone()]) {
            Ok(Inner::Frame { vni, partial_csum, .. }) => {
                // A frame on a session the workers did not know yet: publish, then deliver.
                self.publish_if_changed(now);
                let at = range.start + INNER_HEADER_LEN;
                if let Some(net) = self.shared.nets.iter().position(|n| n.vni == vni).map(NetId) {
                    if at >= crate::device::VNET_HDR_LEN {
                        let mut buf = buf;
                        buf.truncate(range.end);
                        self.events.push_back(Event::Deliver { peer, net, buf, at, partial_csum });
                    }
                }
            }
            Ok(Inner::Probe(id)) => {
                let _ = self.send_inner(now, peer, &Inner::ProbeReply(id));
            }
            Ok(Inner::ProbeReply(id)) => self.probe_reply(now, peer, id),
            Ok(Inner::Gossip(bytes)) => {
                let bytes = bytes.to_vec();
                self.gossip_in(now, peer, &bytes);
            }
            // `buf` is ours, not the engine's: the datagram is passed on (or opened, in a copy of
            // its own) straight from it.
            Ok(Inner::RelayTo { to, datagram }) => self.relay_to(now, peer, to, datagram),
            Ok(Inner::RelayFrom { from, seen, datagram }) => self.relay_from(now, peer, from, seen, datagram),
            Ok(Inner::PathInfo { flags, seen }) => self.path_info(peer, flags, seen),
            Ok(other) => trace!(%peer, kind = ?other.kind(), "inner payload ignored"),
            Err(e) => trace!(%peer, %e, "bad inner payload"),
        }
    }

    /// Collects what the endpoint and the membership layer want sent, and acts on what they
    /// report.
    fn drain(&mut self, now: Instant) {
        self.flush_members(now);
        while let Some(t) = self.endpoint.poll_transmit() {
            self.queue_transmit(now, t);
        }
        while let Some(e) = self.endpoint.poll_event() {
            match e {
                ProtoEvent::Dialed { addr, peer } => {
                    self.static_done(addr, true, now);
                    debug!(%addr, %peer, "dial reached a member");
                    if let Some(info) = self.endpoint.peer_info(peer) {
                        self.members.layer.add_seed(now, NodeKey(info.key), addr);
                    }
                }
                ProtoEvent::DialFailed { addr } => {
                    self.static_done(addr, false, now);
                    debug!(%addr, "dial failed; backing off");
                }
                ProtoEvent::HandshakeCompleted { peer } => {
                    if let Some(info) = self.endpoint.peer_info(peer) {
                        self.members.layer.link_up(now, NodeKey(info.key));
                        if let Some(c) = info.cert {
                            if self.names.insert(peer, c.name.clone()).is_none() {
                                info!(peer = %c.name, "peer up");
                            }
                        }
                    }
                    self.handshake_done(now, peer);
                }
                ProtoEvent::HandshakeFailed { peer } => debug!(%peer, "handshake gave up"),
                ProtoEvent::EndpointChanged { peer, addr } => {
                    debug!(%peer, %addr, "peer roamed");
                    self.path_changed(now, peer, addr);
                }
            }
        }
        // A seed reached above hands membership a first member to talk to.
        self.flush_members(now);
        while let Some(t) = self.endpoint.poll_transmit() {
            self.queue_transmit(now, t);
        }
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

    fn publish_if_changed(&mut self, now: Instant) {
        if self.dirty || self.published != Some(self.endpoint.generation()) {
            self.publish(now);
        }
    }

    fn publish(&mut self, now: Instant) {
        let mut t = Tables::default();
        for (i, n) in self.shared.nets.iter().enumerate() {
            t.vnis.insert(n.vni, NetId(i));
        }
        for (idx, peer, s) in self.endpoint.sessions() {
            t.sessions.insert(idx, (peer, Arc::clone(s)));
        }
        self.by_endpoint.clear();
        self.resync_after.retain(|_, t| *t > now);
        for id in self.endpoint.peer_ids().collect::<Vec<_>>() {
            let Some(info) = self.endpoint.peer_info(id) else { continue };
            let relayed = info.endpoint.is_some_and(|e| crate::plane::path::relayed(e).is_some());
            if let Some(e) = info.endpoint {
                self.by_endpoint.insert(e, id);
                if !relayed {
                    t.endpoints.insert(e, id);
                }
            }
            // The handshake's certificate, or (before any session) the member record's.
            let Some(cert) = info.cert.or_else(|| self.members.certs.get(&id).cloned()) else { continue };
            // Workers hand frames for a relayed peer to the engine, which wraps them.
            let session = match relayed {
                true => None,
                false => self.endpoint.sending_session(now, id).map(|(s, _)| Arc::clone(s)),
            };
            t.peers.insert(
                id,
                PeerEntry {
                    session,
                    endpoint: info.endpoint,
                    subnets: Arc::new(cert.subnets.clone()),
                    name: Arc::from(cert.name.as_str()),
                    groups: Arc::new(cert.groups.clone()),
                    networks: self.members.networks.get(&id).cloned(),
                },
            );
            if !self.members.down.contains(&id) {
                t.flood.push(id);
            }
        }
        t.nets = self.fdbs.iter().map(Fdb::tables).collect();
        for (net, nt) in t.nets.iter_mut().enumerate() {
            nt.policy = self.policy_tables(NetId(net));
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

/// Seconds since the Unix epoch at `now`, given the wall-clock time `wall` at instant `at`.
pub(crate) fn unix_secs((at, wall): (Instant, Duration), now: Instant) -> u64 {
    match now.checked_duration_since(at) {
        Some(d) => (wall + d).as_secs(),
        None => wall.saturating_sub(at.saturating_duration_since(now)).as_secs(),
    }
}
