//! The read-mostly snapshot every worker forwards with: sessions by index, peers by id, and
//! each network's forwarding database. The engine owns the mutable state and swaps in a whole
//! new snapshot (`arc_swap`) when something changes; workers load it once per batch, with no
//! lock and no allocation.

use ipnet::IpNet;
use overlay_proto::wire::Vni;
use overlay_proto::{PeerId, Session};
use std::collections::HashMap;

/// The hash map of the data path: foldhash, seeded per process (several times faster than
/// SipHash for these small keys, which are looked up several times per packet; the keys an
/// outsider can choose — MACs, IPs — only enter through bounded, authenticated learning).
pub type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::NetId;
use crate::packet::Mac;
use crate::policy::{Compiled, Mask};

/// Where a MAC lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    /// On this host's bridge (an attached container or the gateway).
    Local,
    /// Behind an encrypted peer.
    Peer(PeerId),
    /// Behind a plain VXLAN remote.
    Vtep(SocketAddr),
}

/// One peer, as workers need it.
#[derive(Debug, Clone)]
pub struct PeerEntry {
    /// Session to seal with (may be expired by now: `seal` says so).
    pub session: Option<Arc<Session>>,
    /// Where to send.
    pub endpoint: Option<SocketAddr>,
    /// Certified subnets: the only inner sources accepted from this peer.
    pub subnets: Arc<Vec<IpNet>>,
    /// Certified name (policy `node` selectors).
    pub name: Arc<str>,
    /// Certified groups (policy `groups` selectors).
    pub groups: Arc<Vec<String>>,
    /// The networks (VNIs) the member's verified record says it serves; `None` until its
    /// record arrives. Frames for other networks are refused.
    pub networks: Option<Arc<Vec<Vni>>>,
}

/// One network's tables.
#[derive(Debug, Clone, Default)]
pub struct NetTables {
    /// MAC → location.
    pub macs: Map<Mac, Loc>,
    /// IP → MAC (ARP suppression).
    pub ips: Map<IpAddr, Mac>,
    /// The firewall, when the network has a non-trivial policy.
    pub policy: Option<Arc<PolicyTables>>,
}

/// The whole snapshot.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// Receiving sessions by our index.
    pub sessions: Map<u32, (PeerId, Arc<Session>)>,
    /// Peers with a verified certificate.
    pub peers: Map<PeerId, PeerEntry>,
    /// Peers in a stable order, for flooding.
    pub flood: Vec<PeerId>,
    /// Per network, in configuration order.
    pub nets: Vec<NetTables>,
    /// VNI → network index.
    pub vnis: Map<Vni, NetId>,
    /// Members by underlay endpoint: only these may have a datagram on an unknown session
    /// passed on to the engine (as a notice, never the datagram).
    pub endpoints: Map<SocketAddr, PeerId>,
}

impl Tables {
    /// Network index of a VNI.
    pub fn net_of(&self, vni: Vni) -> Option<NetId> {
        self.vnis.get(&vni).copied()
    }
}

/// One network's policy, as workers need it.
#[derive(Debug, Clone)]
pub struct PolicyTables {
    /// The rules.
    pub compiled: Arc<Compiled>,
    /// Masks of our own containers (and gateway) by address.
    pub local: Map<IpAddr, Mask>,
    /// Masks of members' announced containers by address, with the member that owns them.
    pub remote: Map<IpAddr, (PeerId, Mask)>,
    /// Our node name and certificate groups (for local addresses that are not containers).
    pub me: Arc<(String, Vec<String>)>,
}

/// The conntrack owner id of a peer (0 stands for "no peer").
pub fn ct_owner(p: PeerId) -> u64 {
    u64::from(p.0) + 1
}
