//! The cluster-wide catalog (`weft services`, `GET /v1/catalog/…`): every live member with its
//! containers, and every service's instances with their health, as the engine believes them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::discovery::directory::Protocol;

/// Nodes and services of the whole network.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Catalog {
    /// This node first, then every live member whose certificate vouches for its record.
    pub nodes: Vec<CatalogNode>,
    /// Instances by service name.
    pub services: BTreeMap<String, Vec<CatalogInstance>>,
}

/// One node of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogNode {
    /// Node name.
    pub name: String,
    /// Its membership state.
    pub state: NodeState,
    /// Its underlay address.
    pub address: IpAddr,
    /// Its underlay endpoint.
    pub endpoint: SocketAddr,
    /// Its containers (those its certificate lets it source).
    pub containers: Vec<CatalogContainer>,
    /// How many service instances it announces.
    pub services: usize,
}

/// A node's membership state in the catalog (down nodes are left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Answering probes (and this node itself).
    Alive,
    /// Missed a probe.
    Suspect,
}

/// A container a node announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogContainer {
    /// Container name.
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
    /// Its network's name, when this node serves that network.
    pub network: Option<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// One instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogInstance {
    /// The node that owns it.
    pub node: String,
    /// Its network's name, when this node serves that network.
    pub network: Option<String>,
    /// Its address.
    pub ip: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its transport.
    pub protocol: Protocol,
    /// Its tags.
    pub tags: Vec<String>,
    /// The container it runs in, if any.
    pub container: Option<String>,
    /// Its health check's state.
    pub health: Health,
}

/// A service instance's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Passing its check, or without one.
    Passing,
    /// Failing its check.
    Critical,
    /// Its container is not attached yet (only on the owning node).
    Pending,
}

impl Health {
    /// The word status output uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Passing => "passing",
            Health::Critical => "critical",
            Health::Pending => "pending",
        }
    }
}

/// One service in `GET /v1/catalog/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSummary {
    /// Its instances.
    pub instances: usize,
    /// Those passing.
    pub passing: usize,
    /// Every tag of its instances, sorted, once each.
    pub tags: Vec<String>,
}

impl ServiceSummary {
    /// The summary of `instances`.
    pub fn of(instances: &[CatalogInstance]) -> Self {
        let mut tags: Vec<String> = instances.iter().flat_map(|i| i.tags.iter().cloned()).collect();
        tags.sort();
        tags.dedup();
        ServiceSummary {
            instances: instances.len(),
            passing: instances.iter().filter(|i| i.health == Health::Passing).count(),
            tags,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_keeps_its_published_shape() {
        let i = CatalogInstance {
            node: "h1".into(),
            network: Some("default".into()),
            ip: "10.42.1.2".parse().unwrap(),
            port: 8080,
            protocol: Protocol::Tcp,
            tags: vec!["v2".into(), "v1".into()],
            container: None,
            health: Health::Critical,
        };
        let v = serde_json::to_value(&i).unwrap();
        assert_eq!(v["ip"], "10.42.1.2");
        assert_eq!(v["protocol"], "tcp");
        assert_eq!(v["health"], "critical");
        assert!(v["container"].is_null());
        let s = ServiceSummary::of(&[i.clone(), CatalogInstance { health: Health::Passing, ..i }]);
        assert_eq!(s, ServiceSummary { instances: 2, passing: 1, tags: vec!["v1".into(), "v2".into()] });
    }
}
