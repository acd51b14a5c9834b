//! What a node says about itself: its key, its record and the container entries in it.
//!
//! A record is owned by one node and versioned by it; everyone else only relays it. Versions
//! are compared, never merged: the highest version of a node's record wins everywhere.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// A node's identity: its X25519 static public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeKey(pub [u8; 32]);

/// Byte order, as the derived order would be, but settled by the first 8 bytes in one integer
/// comparison almost always: every member table is ordered by key, and a byte-wise `memcmp`
/// per step of each look-up was a tenth of a 2,000-node simulation's time.
impl Ord for NodeKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.prefix64().cmp(&other.prefix64()).then_with(|| self.0[8..].cmp(&other.0[8..]))
    }
}

impl PartialOrd for NodeKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

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

#[cfg(test)]
mod tests {
    use super::NodeKey;
    use proptest::prelude::*;

    proptest! {
        /// The digest tree and every ordered table rely on keys ordering as their bytes do.
        #[test]
        fn keys_order_as_their_bytes(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), same in 0usize..32) {
            let mut c = a;
            c[same..].copy_from_slice(&b[same..]);
            for (x, y) in [(a, b), (a, c), (c, a), (a, a)] {
                prop_assert_eq!(NodeKey(x).cmp(&NodeKey(y)), x.cmp(&y));
            }
        }
    }
}
