//! The name table DNS answers from: built by the engine from every live member's record
//! (services with their health, containers, nodes) and swapped in whole (`arc_swap`) whenever
//! a record changes, so a query never waits on the engine and answers follow health at once.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// Transport of a service instance (`_NAME._tcp` / `_NAME._udp` in SRV names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// One instance of a service as DNS sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Its address.
    pub ip: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its transport.
    pub protocol: Protocol,
    /// SRV target, relative to the domain and lower case (`web1.container`, `h1.node`, or
    /// `10-42-1-5.addr`); it is always a key of [`Directory::hosts`].
    pub target: String,
    /// Passing its health check (or has none). Only healthy instances are answered.
    pub healthy: bool,
}

/// Everything under our domain, with names relative to it and lower case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    /// Service name (`web`) → its instances on every live node.
    pub services: BTreeMap<String, Vec<Instance>>,
    /// Other names (`h1.node`, `web1.container`, `10-42-1-5.addr`) → addresses.
    pub hosts: BTreeMap<String, Vec<IpAddr>>,
}

/// The `addr` label of an address: `10-42-1-5` for IPv4, 32 hex digits for IPv6.
pub fn addr_label(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}-{}-{}-{}", o[0], o[1], o[2], o[3])
        }
        IpAddr::V6(v6) => v6.octets().iter().map(|b| format!("{b:02x}")).collect(),
    }
}
