//! What a node says about itself: its key, its record and the container entries in it.
//!
//! A record is owned by one node and versioned by it; everyone else only relays it. Versions
//! are compared, never merged: the highest version of a node's record wins everywhere.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// A node's identity: its X25519 static public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeKey(pub [u8; 32]);

impl NodeKey {
    /// The first 8 bytes as a big-endian integer: the key's position in the digest tree.
    pub(crate) fn prefix64(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b)
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({self})")
    }
}

/// A short hex prefix: enough to tell nodes apart in logs, not the whole key.
impl fmt::Display for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

/// A container as other nodes must know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerEntry {
    /// The network (VXLAN-style id) the container is attached to.
    pub vni: u32,
    /// Its MAC address.
    pub mac: [u8; 6],
    /// Its address inside the network.
    pub ip: IpAddr,
    /// Its name.
    pub name: String,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
}

/// What one node says about itself; owned and versioned by that node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The owner.
    pub key: NodeKey,
    /// The owner's name.
    pub name: String,
    /// Strictly increasing per node, also across restarts (the engine starts it at
    /// unix-millis << 16).
    pub version: u64,
    /// Underlay address to reach the owner.
    pub endpoint: SocketAddr,
    /// The owner's encoded certificate (verified by the engine; opaque here).
    pub cert: Vec<u8>,
    /// VNIs the owner serves.
    pub networks: Vec<u32>,
    /// The owner's containers.
    pub containers: Vec<ContainerEntry>,
    /// Opaque bytes for service discovery, carried faithfully.
    pub services: Vec<u8>,
}
