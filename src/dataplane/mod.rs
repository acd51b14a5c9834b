//! The data plane: worker threads that each own one UDP socket (SO_REUSEPORT) and one queue
//! of every network's TAP, and forward frames between them through the sessions of the
//! current [`tables::Tables`] snapshot. Anything that is not a steady-state frame (handshakes,
//! frames for peers without a session, table changes) goes to the engine over a bounded
//! channel; when that channel is full the item is dropped and counted, never blocked on.

mod batch;
pub mod filter;
pub mod frame;
pub mod offload;
pub mod tables;
mod worker;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use overlay_proto::wire::Vni;
use overlay_proto::{EndpointStats, PeerId};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use crate::config::Encryption;
use crate::device::Tap;
use frame::Mac;
pub use worker::{deliver, run_worker};

/// Messages from workers (and the control API) to the engine.
#[derive(Debug)]
pub enum EngineMsg {
    /// A datagram the workers do not handle (handshake, cookie, unknown session).
    Datagram {
        /// Source.
        from: SocketAddr,
        /// Bytes.
        bytes: Vec<u8>,
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
        /// Network index.
        net: usize,
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
    /// A request from the control API (sent blocking: never dropped).
    Control(crate::engine::ControlMsg),
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
    /// The flat subnet.
    pub subnet: IpNet,
    /// Our gateway address on the bridge.
    pub gateway: IpAddr,
    /// The bridge's MAC (source of ICMP errors we generate).
    pub gateway_mac: Mac,
    /// Encrypted or plain VXLAN.
    pub encryption: Encryption,
    /// Plain VXLAN remotes (flood targets).
    pub remotes: Vec<SocketAddr>,
}

/// Data-plane counters (drops by reason, frames each way), declared with their metrics in
/// [`crate::report::counters`] so that status answers can carry their snapshot.
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
    /// To the engine.
    pub engine: SyncSender<EngineMsg>,
    /// Set to stop the workers.
    pub stop: AtomicBool,
    /// Connection tracking per network (survives policy reloads).
    pub conntrack: Vec<crate::policy::Conntrack>,
    /// Start of the conntrack clock.
    pub epoch: std::time::Instant,
    /// How long a worker keeps polling after handling packets before it sleeps.
    pub busy_poll: std::time::Duration,
}

impl Shared {
    /// Sends to the engine without blocking; counts a drop when the channel is full.
    pub fn to_engine(&self, msg: EngineMsg) {
        if self.engine.try_send(msg).is_err() {
            self.stats.drop_queue_full.fetch_add(1, Relaxed);
        }
    }
}

/// Adds one to a counter.
pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}
