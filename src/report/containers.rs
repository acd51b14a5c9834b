//! Answers of `weft attach` and `weft detach` (and the CNI plugin's ADD, which reads the
//! attach answer).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A container attached to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    /// Container name.
    pub name: String,
    /// Network name.
    pub network: String,
    /// Its address (on a dual-stack network the IPv4 one; `addresses` has both).
    pub ip: IpAddr,
    /// The network's prefix length.
    pub prefix: u8,
    /// Its gateway (this node's address on the network).
    pub gateway: IpAddr,
    /// Every address of the container, one per family of the network (IPv4 first), each
    /// with its prefix and gateway. Empty from a daemon older than dual-stack networks: then
    /// `ip`/`prefix`/`gateway` are the only address.
    #[serde(default)]
    pub addresses: Vec<AttachedAddr>,
    /// MAC of its interface.
    pub mac: String,
    /// Its MTU.
    pub mtu: u32,
    /// Host end of the veth pair.
    pub host_ifname: String,
    /// Its interface's name inside the namespace.
    pub ifname: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Name servers and search domains, when this node serves DNS.
    pub dns: Option<AttachedDns>,
    /// The resolv.conf written for its namespace, if any.
    pub resolv_conf: Option<String>,
}

impl Attached {
    /// The container's address with the network's prefix.
    pub fn cidr(&self) -> Option<IpNet> {
        IpNet::new(self.ip, self.prefix).ok()
    }

    /// Every address (one per family), also from a daemon that only filled `ip`.
    pub fn all_addresses(&self) -> Vec<AttachedAddr> {
        if self.addresses.is_empty() {
            vec![AttachedAddr { ip: self.ip, prefix: self.prefix, gateway: self.gateway }]
        } else {
            self.addresses.clone()
        }
    }
}

/// One address of an attached container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedAddr {
    /// The address.
    pub ip: IpAddr,
    /// The prefix length of the network's subnet of its family.
    pub prefix: u8,
    /// That family's gateway.
    pub gateway: IpAddr,
}

/// DNS settings for an attached container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedDns {
    /// Name servers (the gateway).
    pub nameservers: Vec<IpAddr>,
    /// Search domains.
    pub search: Vec<String>,
}

/// A container detached from a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detached {
    /// Container name.
    pub name: String,
    /// Network name.
    pub network: String,
    /// The address it had (the IPv4 one on a dual-stack network).
    pub ip: IpAddr,
    /// Every address it had, released together (one per family of the network).
    #[serde(default)]
    pub ips: Vec<IpAddr>,
}
