//! The contract between the engine thread and everything that talks to it: the messages
//! workers and the control API send it ([`EngineMsg`]), the read-mostly [`tables::Tables`]
//! snapshot it publishes for the workers, the counters both sides bump, and the static facts
//! of each network. Engine and data plane both depend on this module, never on each other.
//!
//! Three bounded queues reach the engine, so that no kind of work can starve another: the
//! control channel ([`EngineMsg`], blocking sends from the control API), the session lane
//! (authenticated work from workers: gossip, learning, roaming, frames awaiting a session)
//! and the pre-auth lane (handshake datagrams, at most [`MAX_HANDSHAKE_LEN`](overlay_proto::wire::MAX_HANDSHAKE_LEN) bytes each, and
//! unknown-session notices, rate-limited per source address by the workers). Workers never
//! block: a full lane drops and counts. A worker that queued something sends one
//! [`EngineMsg::Wake`] unless one is already pending.

pub mod path;
pub mod tables;

use arc_swap::ArcSwap;
use overlay_proto::wire::Vni;
use overlay_proto::{EndpointStats, PeerId};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::AcqRel, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use crate::config::Encryption;
use crate::device::Tap;
use crate::packet::Mac;

/// A network: its index in configuration order into every per-network table (`Shared::nets`,
/// `taps` and `conntrack`, `Tables::nets`, the engine's FDBs and policies), so an index of one
/// kind of thing cannot be used for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetId(pub usize);

impl NetId {
    /// Every network of a node with `count` networks.
    pub fn all(count: usize) -> impl Iterator<Item = NetId> {
        (0..count).map(NetId)
    }
}

impl std::fmt::Display for NetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "net{}", self.0)
    }
}

/// Per-network tables are vectors in configuration order, indexed by [`NetId`].
pub trait PerNet<T> {
    /// The entry of network `id`, if there is one.
    fn net(&self, id: NetId) -> Option<&T>;
    /// The entry of network `id`, mutably.
    fn net_mut(&mut self, id: NetId) -> Option<&mut T>;
}

impl<T> PerNet<T> for [T] {
    fn net(&self, id: NetId) -> Option<&T> {
        self.get(id.0)
    }

    fn net_mut(&mut self, id: NetId) -> Option<&mut T> {
        self.get_mut(id.0)
    }
}

impl<T> std::ops::Index<NetId> for Vec<T> {
    type Output = T;

    fn index(&self, id: NetId) -> &T {
        &self[id.0]
    }
}

impl<T> std::ops::IndexMut<NetId> for Vec<T> {
    fn index_mut(&mut self, id: NetId) -> &mut T {
        &mut self[id.0]
    }
}

/// What workers hand the engine: everything that is not a steady-state frame.
#[derive(Debug)]
pub enum WorkerMsg {
    /// A datagram for the protocol endpoint: from workers, a handshake or cookie reply of at
    /// most [`MAX_HANDSHAKE_LEN`](overlay_proto::wire::MAX_HANDSHAKE_LEN) bytes (the simulation hands it every datagram).
    Datagram {
        /// Source.
        from: SocketAddr,
        /// Bytes.
        bytes: Vec<u8>,
    },
    /// Transport data on a session the workers do not hold, from a member's endpoint: only
    /// the source, never the datagram (the engine publishes every session before its peer can
    /// use it, so such a datagram is stale or forged; the member may have lost our session).
    UnknownSession {
        /// Source.
        from: SocketAddr,
    },
    /// An inner payload (header included) for a peer without a usable session.
    Unroutable {
        /// Destination peer.
        peer: PeerId,
        /// Inner payload.
        payload: Vec<u8>,
    },
    /// A MAC (and IP) seen behind a peer or VTEP.
    Learn {
        /// The network.
        net: NetId,
        /// Source MAC.
        mac: Mac,
        /// Source IP.
        ip: Option<IpAddr>,
        /// Where it lives.
        loc: tables::Loc,
    },
    /// A decrypted inner payload that is not a frame (gossip, probe).
    Inner {
        /// The sender.
        peer: PeerId,
        /// The inner payload.
        bytes: Vec<u8>,
    },
    /// An authenticated packet from a new address.
    Roamed {
        /// The peer.
        peer: PeerId,
        /// Its new address.
        addr: SocketAddr,
    },
}

/// Messages on the engine's control channel.
#[derive(Debug)]
pub enum EngineMsg {
    /// Workers queued work in a lane (see [`Lanes`]).
    Wake,
    /// A request from the control API (sent blocking: never dropped).
    Control(ControlMsg),
}

/// Room in the session lane (authenticated work from workers).
pub const SESSION_QUEUE: usize = 4096;
/// Room in the pre-auth lane (handshakes, unknown-session notices): at most
/// `PREAUTH_QUEUE` handshake datagrams bytes (~1 MiB) wait there.
pub const PREAUTH_QUEUE: usize = 1024;

/// The workers' ends of the engine's two lanes.
pub struct Lanes {
    session: SyncSender<WorkerMsg>,
    preauth: SyncSender<WorkerMsg>,
    /// Set when a wake-up is pending on the control channel; the engine clears it before it
    /// drains the lanes.
    wake: AtomicBool,
}

/// The engine's ends of the lanes.
pub struct LaneReceivers {
    /// Authenticated work.
    pub session: Receiver<WorkerMsg>,
    /// Handshakes and unknown-session notices.
    pub preauth: Receiver<WorkerMsg>,
}

impl Lanes {
    /// Two lanes of [`SESSION_QUEUE`] and [`PREAUTH_QUEUE`] messages.
    pub fn new() -> (Lanes, LaneReceivers) {
        let (session, session_rx) = sync_channel(SESSION_QUEUE);
        let (preauth, preauth_rx) = sync_channel(PREAUTH_QUEUE);
        (
            Lanes { session, preauth, wake: AtomicBool::new(false) },
            LaneReceivers { session: session_rx, preauth: preauth_rx },
        )
    }

    /// The engine is about to drain the lanes: later work needs a new wake-up.
    pub fn woken(&self) {
        self.wake.store(false, Relaxed);
    }
}

/// Requests from the control API to the engine.
#[derive(Debug)]
pub enum ControlMsg {
    /// A container was attached: its MAC and IP are local.
    AddLocal {
        /// The network.
        net: NetId,
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
        /// The network.
        net: NetId,
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
        /// The network.
        net: NetId,
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
    /// Revocations loaded from `node.revocations` (verified against the CA).
    Revoke(Vec<overlay_proto::cert::Revocation>),
    /// A reloaded key, certificate and CA bundle (checked against each other already).
    SetIdentity(Box<NewIdentity>),
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

/// What [`ControlMsg::SetIdentity`] carries.
#[derive(Debug)]
pub struct NewIdentity {
    /// The key.
    pub secret: overlay_proto::keys::SecretKey,
    /// Its certificate.
    pub cert: overlay_proto::cert::NodeCert,
    /// The CAs to trust.
    pub cas: overlay_proto::cert::CaBundle,
    /// Whether the engine took it.
    pub reply: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// Static facts about one network the workers need.
#[derive(Debug, Clone)]
pub struct NetInfo {
    /// Name.
    pub name: String,
    /// VNI.
    pub vni: Vni,
    /// Overlay MTU.
    pub mtu: u32,
    /// The flat subnet, one per family of the network.
    pub subnet: crate::family::Subnets,
    /// Our gateway addresses on the bridge, one per family of the network.
    pub gateway: crate::family::Addrs,
    /// The bridge's MAC (source of ICMP errors we generate).
    pub gateway_mac: Mac,
    /// Encrypted or plain VXLAN.
    pub encryption: Encryption,
    /// Plain VXLAN remotes (flood targets).
    pub remotes: Vec<SocketAddr>,
    /// Plain VXLAN: TCP segments leave with remote checksum offload (`network.remote_checksum`).
    pub remote_checksum: bool,
}

/// Data-plane counters: declared with the other counter groups in
/// [`crate::report::counters`], since status answers carry their snapshot.
pub use crate::report::counters::DataplaneStats;

/// State shared by workers and the engine.
pub struct Shared {
    /// The current snapshot.
    pub tables: ArcSwap<tables::Tables>,
    /// Protocol counters.
    pub proto_stats: Arc<EndpointStats>,
    /// Data-plane counters.
    pub stats: DataplaneStats,
    /// Networks, in configuration order.
    pub nets: Vec<NetInfo>,
    /// TAP queues: `taps[net][worker]`.
    pub taps: Vec<Vec<Arc<Tap>>>,
    /// To the engine: its control channel (wake-ups only, from workers).
    pub engine: SyncSender<EngineMsg>,
    /// To the engine: the workers' lanes.
    pub lanes: Lanes,
    /// Set to stop the workers.
    pub stop: AtomicBool,
    /// Connection tracking per network (survives policy reloads).
    pub conntrack: Vec<crate::policy::Conntrack>,
    /// Start of the conntrack clock.
    pub epoch: std::time::Instant,
    /// How long a worker keeps polling after handling packets before it sleeps.
    pub busy_poll: std::time::Duration,
    /// Nice value each worker thread sets for itself (`underlay.worker_nice`).
    pub worker_nice: i32,
}

impl Shared {
    /// The conntrack clock at `now`: whole seconds since the daemon started.
    pub fn conntrack_secs(&self, now: std::time::Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.epoch).as_secs()).unwrap_or(u32::MAX)
    }

    /// Queues authenticated work for the engine without blocking; counts a drop when the
    /// session lane is full.
    pub fn to_engine(&self, msg: WorkerMsg) {
        self.queue(&self.lanes.session, msg, &self.stats.drop_queue_full);
    }

    /// Queues a handshake datagram or an unknown-session notice for the engine without
    /// blocking; counts a drop when the pre-auth lane is full.
    pub fn preauth_to_engine(&self, msg: WorkerMsg) {
        self.queue(&self.lanes.preauth, msg, &self.stats.drop_preauth_queue_full);
    }

    fn queue(&self, lane: &SyncSender<WorkerMsg>, msg: WorkerMsg, full: &AtomicU64) {
        if lane.try_send(msg).is_err() {
            inc(full);
            return;
        }
        if !self.lanes.wake.swap(true, AcqRel) {
            // Full only while the engine is busy with this channel: it drains the lanes anyway.
            let _ = self.engine.try_send(EngineMsg::Wake);
        }
    }
}

/// Adds one to a counter.
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}
