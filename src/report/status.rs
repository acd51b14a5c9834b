//! The answer to `weft status` (`GET /v1/status`): the node, its networks and containers, the
//! engine's view of members, sessions, counters, forwarding tables, policy and seeds, DNS and
//! health counts. `/metrics` renders from this same value and the status page reads its JSON.
//!
//! Shape kept from the untyped answer it replaced: a member this node never exchanged a packet
//! with has no session fields at all (not even `null`), which [`PeerStatus::session`] keeps by
//! being flattened and optional.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

use super::counters::{Counters, DnsSnapshot, LocalSnapshot, MembershipStats};
use super::policy::NetworkPolicy;
use crate::config::Encryption;

/// Everything `weft status --json` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// This node's name.
    pub node: String,
    /// Its networks, in configuration order.
    pub networks: Vec<NetworkStatus>,
    /// The engine's part.
    pub engine: EngineStatus,
    /// DNS replies by result.
    pub dns: DnsSnapshot,
    /// This node's service instances by health.
    pub services: HealthCounts,
    /// What the control socket and the HTTP listener refused.
    #[serde(default)]
    pub local: LocalSnapshot,
}

/// One network of this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// Network name.
    pub name: String,
    /// Its VNI.
    pub vni: u32,
    /// The whole overlay subnet.
    pub subnet: IpNet,
    /// This node's share of it, where its containers get addresses.
    pub node_subnet: IpNet,
    /// This node's address on the network's bridge.
    pub gateway: IpAddr,
    /// Every subnet of the network, one per family (`subnet` is the first: IPv4 on a
    /// dual-stack network).
    #[serde(default)]
    pub subnets: crate::family::Subnets,
    /// This node's share of each.
    #[serde(default)]
    pub node_subnets: crate::family::Subnets,
    /// This node's address on the bridge per family.
    #[serde(default)]
    pub gateways: crate::family::Addrs,
    /// Overlay MTU.
    pub mtu: u32,
    /// How its frames travel.
    pub encryption: Encryption,
    /// Containers attached here.
    pub containers: Vec<LocalContainer>,
}

/// A container attached on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalContainer {
    /// Container name.
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
    /// Its interface's MAC.
    pub mac: String,
    /// The network namespace it was attached with.
    pub netns: String,
    /// Host end of its veth pair.
    pub host_ifname: String,
    /// The runtime's container id (`CNI_CONTAINERID`), for containers the CNI plugin attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
}

/// A row of `weft networks --json`: a network with its FDB size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRow {
    /// The network.
    #[serde(flatten)]
    pub network: NetworkStatus,
    /// Entries in its forwarding database.
    pub fdb_entries: Option<usize>,
}

/// The engine's part of a status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineStatus {
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// Members alive.
    pub members_alive: usize,
    /// Members known.
    pub members: usize,
    /// Every member and every peer with a session.
    pub peers: Vec<PeerStatus>,
    /// Every protocol, data-plane and engine counter.
    pub counters: Counters,
    /// Per network: policy, rule hits, conntrack.
    pub policy: Vec<NetworkPolicy>,
    /// Forwarding database sizes, per network.
    pub fdb_entries: Vec<usize>,
    /// Forwarding database entries, per network.
    pub fdb: Vec<FdbTable>,
    /// The gossip layer's counters.
    pub membership: MembershipStats,
    /// Seeds and `[[peer]]` endpoints.
    pub seeds: Vec<SeedStatus>,
    /// MACs that more than one member announces: the first keeps it, the others are refused.
    #[serde(default)]
    pub conflicts: Vec<FdbConflict>,
    /// This node's certificate and the CAs it trusts, with their expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityStatus>,
    /// This node's underlay address as peers see it (reflexive: behind NAT, the mapping),
    /// newest first, with the peer that said so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen_as: Vec<SeenAs>,
}

/// This node's address as one peer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenAs {
    /// The address.
    pub address: std::net::SocketAddr,
    /// The peer's name.
    pub by: String,
}

/// This node's certificate and trusted CAs as the engine runs them (after any reload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityStatus {
    /// Its public key (base64).
    pub public_key: String,
    /// The certificate's end, seconds since the Unix epoch.
    pub cert_not_after: u64,
    /// The name of the CA that issued it.
    pub issuer: String,
    /// The trusted CAs, in `node.ca` order.
    pub cas: Vec<CaStatus>,
    /// The session ciphers this node offers (`[underlay] cipher` and the CPU).
    #[serde(default)]
    pub ciphers: String,
}

/// A trusted CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaStatus {
    /// Its name.
    pub name: String,
    /// Fingerprint of its public key (hex).
    pub fingerprint: String,
    /// Its end, seconds since the Unix epoch.
    pub not_after: u64,
}

/// A MAC two members claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbConflict {
    /// Network name.
    pub network: String,
    /// The MAC.
    pub mac: String,
    /// The member holding it (the first to announce it).
    pub owner: String,
    /// The address the holder announced with it.
    pub owner_ip: IpAddr,
    /// The member whose claim was refused.
    pub claimant: String,
    /// The address it announced with it.
    pub claimant_ip: IpAddr,
}

/// A member or peer as this node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its name (from its certificate or record), when known.
    pub name: Option<String>,
    /// Its public key (base64).
    pub public_key: String,
    /// Its state.
    pub state: PeerState,
    /// Its underlay endpoint (for a relayed peer, the address it advertises).
    pub endpoint: Option<SocketAddr>,
    /// How packets reach it: `direct`, or `via NAME` (a relay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Whether a session with it is live.
    pub connected: bool,
    /// Containers its record announces.
    pub containers: usize,
    /// Its certificate's end, seconds since the Unix epoch, when its certificate is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_not_after: Option<u64>,
    /// What this node knows from exchanging packets with it (absent for members never met).
    #[serde(flatten)]
    pub session: Option<PeerSession>,
}

/// A peer's session-level facts: only for peers this node exchanged packets with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerSession {
    /// The endpoint's peer index.
    pub id: u32,
    /// Seconds data sent to it has gone unanswered, once past the keepalive timeout.
    pub no_reply_secs: Option<f64>,
    /// Seconds since the last completed handshake.
    pub last_handshake_secs_ago: Option<f64>,
    /// The current session's cipher (`aes-256-gcm`, `chacha20poly1305`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// Subnets its certificate lets it source.
    pub subnets: Option<Vec<IpNet>>,
    /// Its certificate's groups.
    pub groups: Option<Vec<String>>,
    /// Last measured round trip through its tunnel, while live.
    pub rtt_ms: Option<f64>,
    /// Inner payload bytes received from it.
    pub rx_bytes: u64,
    /// Inner payload bytes sent to it.
    pub tx_bytes: u64,
    /// Datagrams received from it.
    pub rx_packets: u64,
    /// Datagrams sent to it.
    pub tx_packets: u64,
}

/// A member's or peer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    /// A member answering probes.
    Alive,
    /// A member that missed a probe.
    Suspect,
    /// A member declared down.
    Down,
    /// Not (yet) a member, but a live session.
    Connected,
    /// Neither a member nor a live session.
    Unknown,
}

impl PeerState {
    /// The word status output uses.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Alive => "alive",
            PeerState::Suspect => "suspect",
            PeerState::Down => "down",
            PeerState::Connected => "connected",
            PeerState::Unknown => "unknown",
        }
    }
}

/// One network's forwarding database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbTable {
    /// Network name.
    pub network: String,
    /// Its entries.
    pub entries: Vec<FdbEntry>,
}

/// One forwarding database entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntry {
    /// MAC address.
    pub mac: String,
    /// IP address bound to it, when known.
    pub ip: Option<IpAddr>,
    /// Where it lives: `local`, a peer's name, or a VTEP address.
    pub at: String,
    /// How it was learned.
    pub source: FdbSource,
}

/// How a forwarding database entry was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FdbSource {
    /// From traffic.
    Learned,
    /// From a member's record.
    Announced,
    /// A container attached here.
    Local,
}

/// A seed or `[[peer]]` endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedStatus {
    /// Its address.
    pub address: SocketAddr,
    /// Whether it answers.
    pub state: SeedState,
    /// Seconds dialled without an answer.
    pub unanswered_secs: Option<u64>,
}

/// Whether a seed answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeedState {
    /// A session with it is up.
    Connected,
    /// Being dialled.
    Dialing,
    /// Dialled for 10 s or more without an answer.
    Unreachable,
}

impl SeedState {
    /// The word status output uses.
    pub fn as_str(self) -> &'static str {
        match self {
            SeedState::Connected => "connected",
            SeedState::Dialing => "dialing",
            SeedState::Unreachable => "unreachable",
        }
    }
}

/// This node's service instances by health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCounts {
    /// Passing their check (or without one).
    pub passing: u64,
    /// Failing it.
    pub critical: u64,
    /// Waiting for their container.
    pub pending: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn met() -> PeerStatus {
        PeerStatus {
            name: Some("h2".into()),
            public_key: "k".into(),
            state: PeerState::Alive,
            endpoint: Some("10.200.0.2:51820".parse().unwrap()),
            path: Some("direct".into()),
            connected: true,
            containers: 1,
            cert_not_after: None,
            session: Some(PeerSession {
                id: 3,
                no_reply_secs: None,
                last_handshake_secs_ago: Some(1.5),
                cipher: None,
                subnets: Some(vec!["10.42.2.0/24".parse().unwrap()]),
                groups: Some(vec![]),
                rtt_ms: Some(0.25),
                rx_bytes: 100,
                tx_bytes: 50,
                rx_packets: 1,
                tx_packets: 1,
            }),
        }
    }

    #[test]
    fn a_peer_never_met_has_no_session_fields_and_a_met_one_has_them_all() {
        let never =
            PeerStatus { session: None, connected: false, state: PeerState::Suspect, path: None, ..met() };
        let v = serde_json::to_value(&never).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["connected", "containers", "endpoint", "name", "public_key", "state"]);
        assert_eq!(v["state"], "suspect");
        assert_eq!(serde_json::from_value::<PeerStatus>(v).unwrap(), never);
        let v = serde_json::to_value(met()).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 17, "{v}");
        assert_eq!(v["path"], "direct");
        assert!(v["no_reply_secs"].is_null() && v["id"] == 3 && v["endpoint"] == "10.200.0.2:51820", "{v}");
        assert_eq!(v["subnets"][0], "10.42.2.0/24");
        assert_eq!(serde_json::from_value::<PeerStatus>(v).unwrap(), met());
    }

    /// A status as the untyped engine wrote it (README's table, with one of everything):
    /// it must read into the types and write back as the very same JSON.
    #[test]
    fn a_whole_status_keeps_its_published_shape() {
        use crate::report::counters::{Counters, DnsSnapshot, LocalSnapshot, MembershipStats};
        use overlay_proto::counters::Snapshot;
        let counters = serde_json::to_value(Counters::default()).unwrap();
        let membership = serde_json::to_value(MembershipStats::from_fn(|_| 2)).unwrap();
        let dns = serde_json::to_value(DnsSnapshot::from_fn(|_| 3)).unwrap();
        let local = serde_json::to_value(LocalSnapshot::from_fn(|_| 4)).unwrap();
        let text = serde_json::json!({
            "node": "h1",
            "networks": [{
                "name": "default", "vni": 42, "subnet": "10.42.0.0/16", "node_subnet": "10.42.1.0/24",
                "gateway": "10.42.1.1", "subnets": ["10.42.0.0/16"], "node_subnets": ["10.42.1.0/24"],
                "gateways": ["10.42.1.1"], "mtu": 1420, "encryption": "chacha20poly1305",
                "containers": [{"name": "c1", "ip": "10.42.1.2", "mac": "02:00:0a:2a:01:02",
                                "netns": "c1", "host_ifname": "wv0a0b0c0d"},
                               {"name": "pod-a", "ip": "10.42.1.3", "mac": "02:00:0a:2a:01:03",
                                "netns": "/var/run/netns/cni-1", "host_ifname": "wv0a0b0c0e",
                                "container_id": "c0ffee"}],
            }],
            "engine": {
                "uptime_secs": 12, "members_alive": 1, "members": 2,
                "peers": [
                    {"id": 0, "name": "h2", "public_key": "k2", "state": "alive", "endpoint": "10.200.0.2:51820",
                     "connected": true, "no_reply_secs": null, "last_handshake_secs_ago": 3.5, "containers": 1,
                     "subnets": ["10.42.2.0/24"], "groups": ["web"], "rtt_ms": 0.4,
                     "rx_bytes": 10, "tx_bytes": 20, "rx_packets": 1, "tx_packets": 2},
                    {"name": "h3", "public_key": "k3", "state": "suspect", "endpoint": "10.200.0.3:51820",
                     "connected": false, "containers": 0},
                ],
                "counters": counters,
                "policy": [{
                    "network": "default", "enforced": true,
                    "policy": {"inbound": "deny", "outbound": "allow", "conntrack_max": 1024,
                               "conntrack_per_peer": 256, "rules": [{
                        "name": "web-to-db", "direction": "in", "action": "allow", "proto": "tcp",
                        "ports": {"lo": 5432, "hi": 5432},
                        "from": {"match": {"groups": [], "labels": {"app": "web"}, "cidrs": [], "node": null}},
                        "to": "any",
                    }]},
                    "hits": [{"name": "web-to-db", "direction": "in", "verdict": "allow", "hits": 4},
                             {"name": "default-in", "direction": "in", "verdict": "deny", "hits": 1}],
                    "conntrack": {"entries": 2, "stats": {"inserts": 5, "table_full": 0, "peer_full": 0, "expired": 3}},
                }],
                "fdb_entries": [2],
                "fdb": [{"network": "default", "entries": [
                    {"mac": "02:00:0a:2a:01:02", "ip": "10.42.1.2", "at": "local", "source": "local"},
                    {"mac": "02:00:0a:2a:02:02", "ip": null, "at": "h2", "source": "learned"},
                ]}],
                "membership": membership,
                "seeds": [{"address": "10.200.0.2:51820", "state": "dialing", "unanswered_secs": 4},
                          {"address": "10.200.0.3:51820", "state": "connected", "unanswered_secs": null}],
                "conflicts": [],
            },
            "dns": dns,
            "services": {"passing": 1, "critical": 0, "pending": 2},
            "local": local,
        });
        let status: Status = serde_json::from_value(text.clone()).unwrap();
        assert_eq!(serde_json::to_value(&status).unwrap(), text);
        assert_eq!(status.engine.peers[1].session, None);
        assert_eq!(status.engine.seeds[0].state, SeedState::Dialing);
    }
}
