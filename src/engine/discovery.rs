//! The engine's side of service discovery: our announced instances go into our record; every
//! live member's verified record feeds the [`Directory`] DNS answers from and the catalog the
//! registry API and `weft services` show. A member's instances are believed only at addresses
//! its certificate lets it source (or its own underlay address), as for its containers.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use tracing::debug;

use super::Engine;
use crate::discovery::catalog::{self, Announced};
use crate::discovery::directory::{addr_label, Directory, Instance};
use crate::membership::{MemberState, Record};
use crate::report::catalog::{Catalog, CatalogContainer, CatalogInstance, CatalogNode, Health, NodeState};
use overlay_proto::cert::NodeCert;

/// One member as discovery sees it.
struct Node<'a> {
    record: &'a Record,
    /// The member's verified certificate (none for ourselves).
    cert: Option<&'a Arc<NodeCert>>,
    state: NodeState,
    services: Vec<Announced>,
    /// Where the node is: our own advertised address, or the underlay address a member's
    /// authenticated traffic comes from (none before any) — never the endpoint a member's
    /// record merely declares, which could be a victim's address.
    address: Option<IpAddr>,
}

impl Engine {
    /// Replaces the instances our record announces.
    pub(super) fn set_services(&mut self, now: Instant, list: Vec<Announced>) {
        let bytes = catalog::encode(&list);
        if self.members.layer.own().services != bytes {
            self.members.layer.update_own(now, |r| r.services = bytes);
            self.members.directory_dirty = true;
        }
    }

    /// Our record and every live member's whose certificate vouches for it, with their
    /// instances filtered to what the certificate allows.
    fn discovery_nodes(&self) -> Vec<Node<'_>> {
        let own = self.members.layer.own();
        let states: BTreeMap<_, _> = self.members.layer.members().into_iter().collect();
        let mut nodes = vec![Node {
            record: own,
            cert: None,
            state: NodeState::Alive,
            services: decode_lenient(own, None),
            address: Some(own.endpoint.ip()),
        }];
        for r in self.members.layer.records() {
            let Some(peer) = self.endpoint.peer_by_key(&r.key.0) else { continue };
            let Some(cert) = self.members.certs.get(&peer) else { continue };
            if cert.public_key != r.key.0 || cert.name != r.name || self.members.down.contains(&peer) {
                continue;
            }
            let state = match states.get(&r.key) {
                Some(MemberState::Suspect) => NodeState::Suspect,
                Some(MemberState::Down) => continue,
                _ => NodeState::Alive,
            };
            // Host-mode instances are believed at the address the member's authenticated
            // traffic comes from, never at the endpoint its record declares (a member could
            // declare a victim's address there and announce services "at home").
            let seen_at = self.endpoint.peer_info(peer).and_then(|i| i.endpoint).map(|e| e.ip());
            let services = decode_lenient(r, Some((cert, seen_at)));
            nodes.push(Node { record: r, cert: Some(cert), state, services, address: seen_at });
        }
        nodes
    }

    /// Rebuilds and publishes the DNS directory if anything it reads changed.
    pub(super) fn publish_directory(&mut self) {
        if !std::mem::take(&mut self.members.directory_dirty) {
            return;
        }
        let mut d = Directory::default();
        for n in self.discovery_nodes() {
            let node_name = n.record.name.to_ascii_lowercase();
            if let Some(address) = n.address {
                push_host(&mut d, format!("{node_name}.node"), address);
            }
            for c in n.record.containers.iter().filter(|c| n.cert.is_none_or(|cert| cert.may_source(c.ip))) {
                push_host(&mut d, format!("{}.container", c.name.to_ascii_lowercase()), c.ip);
            }
            for s in n.services {
                let target = match &s.container {
                    Some(c) => format!("{}.container", c.to_ascii_lowercase()),
                    None => format!("{}.addr", addr_label(s.ip)),
                };
                push_host(&mut d, target.clone(), s.ip);
                d.services.entry(s.name.clone()).or_default().push(Instance {
                    ip: s.ip,
                    port: s.port,
                    protocol: s.protocol,
                    target,
                    healthy: s.healthy,
                });
            }
        }
        for list in d.services.values_mut() {
            list.sort_by_key(|a| (a.ip, a.port));
            list.dedup();
        }
        self.members.directory.store(Arc::new(d));
    }

    /// The cluster-wide catalog: nodes and every service's instances with their health.
    pub(super) fn catalog(&self) -> Catalog {
        let vni_name: BTreeMap<u32, &str> =
            self.shared.nets.iter().map(|n| (n.vni.get(), n.name.as_str())).collect();
        let network = |vni: u32| vni_name.get(&vni).map(|n| (*n).to_owned());
        let mut catalog = Catalog::default();
        for n in self.discovery_nodes() {
            catalog.nodes.push(CatalogNode {
                name: n.record.name.clone(),
                state: n.state,
                address: n.address.unwrap_or(n.record.endpoint.ip()),
                endpoint: n.record.endpoint,
                containers: n
                    .record
                    .containers
                    .iter()
                    .filter(|c| n.cert.is_none_or(|cert| cert.may_source(c.ip)))
                    .map(|c| CatalogContainer {
                        name: c.name.clone(),
                        ip: c.ip,
                        network: network(c.vni),
                        labels: c.labels.clone(),
                    })
                    .collect(),
                services: n.services.len(),
            });
            for s in n.services {
                catalog.services.entry(s.name.clone()).or_default().push(CatalogInstance {
                    node: n.record.name.clone(),
                    network: network(s.vni),
                    ip: s.ip,
                    port: s.port,
                    protocol: s.protocol,
                    tags: s.tags,
                    container: s.container,
                    health: if s.healthy { Health::Passing } else { Health::Critical },
                });
            }
        }
        catalog
    }
}

fn push_host(d: &mut Directory, name: String, ip: IpAddr) {
    let v = d.hosts.entry(name).or_default();
    if !v.contains(&ip) {
        v.push(ip);
    }
}

/// A record's instances; for other members only those at addresses its certificate allows,
/// or at the underlay address its authenticated traffic comes from (`seen_at`). An
/// undecodable list counts as empty.
fn decode_lenient(r: &Record, owner: Option<(&Arc<NodeCert>, Option<IpAddr>)>) -> Vec<Announced> {
    match catalog::decode(&r.services) {
        Ok(list) => list
            .into_iter()
            .filter(|s| owner.is_none_or(|(c, seen_at)| catalog::believable(&c.subnets, seen_at, s.ip)))
            .collect(),
        Err(e) => {
            debug!(node = %r.name, %e, "services of a member refused");
            Vec::new()
        }
    }
}
