//! The engine's side of the firewall: compiled rules per network, and the selector masks of
//! every container it knows (ours from attach, members' from their verified records), put into
//! the workers' snapshot so the data path only tests bits.

use std::sync::Arc;
use std::time::Instant;
use tracing::info;

use super::Engine;
use crate::plane::tables::{ct_owner, Map, PolicyTables};
use crate::plane::{NetId, PerNet};
use crate::policy::{Compiled, Identity};
use crate::report::policy as report;

impl Engine {
    /// Installs the compiled policies (one per network) and who we are; republishes.
    pub fn set_policies(&mut self, policies: Vec<Arc<Compiled>>, name: &str, groups: &[String]) {
        self.policies = policies;
        self.me = Arc::new((name.to_owned(), groups.to_vec()));
        self.dirty = true;
    }

    /// Replaces the policies (a reload); tracked connections stay.
    pub(super) fn replace_policies(&mut self, policies: Vec<Arc<Compiled>>) {
        info!(networks = policies.len(), "policy replaced");
        self.policies = policies;
        self.dirty = true;
    }

    /// Ages out tracked connections (about once a second).
    pub(super) fn expire_conntrack(&mut self, now: Instant) {
        if now < self.next_conntrack_sweep {
            return;
        }
        self.next_conntrack_sweep = now + std::time::Duration::from_secs(1);
        let secs = self.shared.conntrack_secs(now);
        for ct in &self.shared.conntrack {
            ct.expire(secs);
        }
    }

    /// Forgets the tracked connections of a member that left.
    pub(super) fn forget_conntrack(&self, peer: overlay_proto::PeerId) {
        for ct in &self.shared.conntrack {
            ct.clear_peer(ct_owner(peer));
        }
    }

    /// Network `net`'s policy tables, or `None` when its policy lets everything through.
    pub(super) fn policy_tables(&self, net: NetId) -> Option<Arc<PolicyTables>> {
        let compiled = self.policies.net(net).filter(|c| !c.is_trivial())?;
        let info = self.shared.nets.net(net)?;
        let vni = info.vni.get();
        let me = &self.me;
        let mut local = Map::default();
        for gateway in info.gateway.iter() {
            let id = Identity { ip: Some(gateway), node: Some(&me.0), groups: &me.1, labels: None };
            local.insert(gateway, compiled.mask(&id));
        }
        for ((n, _, _), c) in &self.local_containers {
            if *n == net {
                let id =
                    Identity { ip: Some(c.ip), node: Some(&me.0), groups: &me.1, labels: Some(&c.labels) };
                local.insert(c.ip, compiled.mask(&id));
            }
        }
        let mut remote = Map::default();
        for r in self.members.layer.records() {
            let Some(peer) = self.endpoint.peer_by_key(&r.key.0) else { continue };
            let Some(cert) = self.members.certs.get(&peer) else { continue };
            if cert.public_key != r.key.0 || cert.name != r.name {
                continue;
            }
            for c in r.containers.iter().filter(|c| c.vni == vni && cert.may_source(c.ip)) {
                let id = Identity {
                    ip: Some(c.ip),
                    node: Some(&cert.name),
                    groups: &cert.groups,
                    labels: Some(&c.labels),
                };
                remote.insert(c.ip, (peer, compiled.mask(&id)));
            }
        }
        Some(Arc::new(PolicyTables { compiled: Arc::clone(compiled), local, remote, me: Arc::clone(me) }))
    }
}

/// Why `weft policy explain` has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    /// The network index is not one of ours.
    #[error("no such network")]
    NoSuchNetwork,
    /// Neither a container we know on the network nor an address.
    #[error("{who:?} is neither a known container on {network} nor an address")]
    Unknown {
        /// What was asked for.
        who: String,
        /// The network's name.
        network: String,
    },
    /// Both sides are on other nodes: this node enforces neither.
    #[error("neither side is on this node ({from}, {to}): ask the node of either side")]
    NotHere {
        /// The source, as resolved.
        from: String,
        /// The destination, as resolved.
        to: String,
    },
}

/// One side of an `explain` question, resolved from what this node knows.
struct Party {
    ip: std::net::IpAddr,
    node: String,
    groups: Vec<String>,
    labels: Option<std::collections::BTreeMap<String, String>>,
    local: bool,
    what: String,
}

impl Party {
    fn identity(&self) -> Identity<'_> {
        Identity {
            ip: Some(self.ip),
            node: Some(&self.node),
            groups: &self.groups,
            labels: self.labels.as_ref(),
        }
    }

    /// This side as the explain answer shows it.
    fn json(&self) -> report::Party {
        report::Party {
            ip: self.ip,
            node: self.node.clone(),
            groups: self.groups.clone(),
            labels: self.labels.clone(),
            local: self.local,
            what: self.what.clone(),
        }
    }
}

impl Engine {
    /// Resolves a container name or an address on network `net`; a name only to its address
    /// of the family `v6` says, when given.
    fn party(&self, net: NetId, who: &str, v6: Option<bool>) -> Result<Party, ExplainError> {
        let named =
            |c: &crate::membership::ContainerEntry| c.name == who && v6.is_none_or(|v6| c.ip.is_ipv6() == v6);
        let info = self.shared.nets.net(net).ok_or(ExplainError::NoSuchNetwork)?;
        let vni = info.vni.get();
        let ip: Option<std::net::IpAddr> = who.parse().ok();
        let me = &self.me;
        if let Some(gateway) = ip.filter(|ip| info.gateway.has(ip)) {
            return Ok(Party {
                ip: gateway,
                node: me.0.clone(),
                groups: me.1.clone(),
                labels: None,
                local: true,
                what: "this node's gateway".into(),
            });
        }
        for ((n, _, _), c) in &self.local_containers {
            if *n == net && (named(c) || Some(c.ip) == ip) {
                return Ok(Party {
                    ip: c.ip,
                    node: me.0.clone(),
                    groups: me.1.clone(),
                    labels: Some(c.labels.clone()),
                    local: true,
                    what: format!("container {} on this node", c.name),
                });
            }
        }
        for r in self.members.layer.records() {
            let Some(peer) = self.endpoint.peer_by_key(&r.key.0) else { continue };
            let Some(cert) = self.members.certs.get(&peer) else { continue };
            for c in r.containers.iter().filter(|c| c.vni == vni && cert.may_source(c.ip)) {
                if named(c) || Some(c.ip) == ip {
                    return Ok(Party {
                        ip: c.ip,
                        node: cert.name.clone(),
                        groups: cert.groups.clone(),
                        labels: Some(c.labels.clone()),
                        local: false,
                        what: format!("container {} on {}", c.name, cert.name),
                    });
                }
            }
        }
        let ip =
            ip.ok_or_else(|| ExplainError::Unknown { who: who.to_owned(), network: info.name.clone() })?;
        if info.subnet.contains(&ip) {
            // An address of the network nobody announces: attribute it by certified subnet.
            for cert in self.members.certs.values() {
                if cert.may_source(ip) {
                    return Ok(Party {
                        ip,
                        node: cert.name.clone(),
                        groups: cert.groups.clone(),
                        labels: None,
                        local: false,
                        what: format!("an address of {}", cert.name),
                    });
                }
            }
        }
        Ok(Party {
            ip,
            node: String::new(),
            groups: Vec::new(),
            labels: None,
            local: false,
            what: "an address".into(),
        })
    }

    /// Which rule decides a flow from `from` to `to`, on the side(s) this node enforces.
    pub(super) fn explain(
        &self,
        net: NetId,
        from: &str,
        to: &str,
        proto: u8,
        port: Option<u16>,
    ) -> Result<report::Explain, ExplainError> {
        use crate::policy::{Direction, Verdict};
        let compiled = self.policies.net(net).ok_or(ExplainError::NoSuchNetwork)?;
        // A dual-stack container named on one side is taken at its address of the family the
        // other side (an address) or the protocol (ICMP, ICMPv6) implies.
        let family = |other: &str| {
            other.parse::<std::net::IpAddr>().ok().map(|ip| ip.is_ipv6()).or(match proto {
                58 => Some(true),
                1 => Some(false),
                _ => None,
            })
        };
        let party = |who: &str, other: &str| {
            self.party(net, who, family(other)).or_else(|_| self.party(net, who, None))
        };
        let (src, dst) = (party(from, to)?, party(to, from)?);
        if !src.local && !dst.local {
            return Err(ExplainError::NotHere { from: src.what, to: dst.what });
        }
        let mut checks = Vec::new();
        let mut verdict = Verdict::Allow;
        if src.local {
            let e = compiled.explain(Direction::Out, proto, port, &dst.identity(), &src.identity());
            if e.decision.verdict == Verdict::Deny {
                verdict = Verdict::Deny;
            }
            checks.push(report::ExplainCheck { direction: Direction::Out, explanation: e });
        }
        if dst.local {
            let e = compiled.explain(Direction::In, proto, port, &src.identity(), &dst.identity());
            if e.decision.verdict == Verdict::Deny {
                verdict = Verdict::Deny;
            }
            checks.push(report::ExplainCheck { direction: Direction::In, explanation: e });
        }
        let same_host = src.local && dst.local;
        let note = if same_host {
            Some("both sides are on this node: their bridge switches the traffic and the policy is not applied")
        } else if !src.local {
            Some("only this node's inbound side is shown; the sender's node applies its outbound rules too")
        } else if !dst.local {
            Some("only this node's outbound side is shown; the receiver's node applies its inbound rules too")
        } else {
            None
        };
        Ok(report::Explain {
            network: self.shared.nets[net].name.clone(),
            from: src.json(),
            to: dst.json(),
            proto,
            port,
            verdict,
            checks,
            note: note.map(str::to_owned),
        })
    }

    /// Every network's policy with its rule counters and tracked connections.
    pub(super) fn policy_status(&self) -> Vec<report::NetworkPolicy> {
        use crate::policy::Direction;
        self.policies
            .iter()
            .zip(&self.shared.nets)
            .zip(&self.shared.conntrack)
            .map(|((c, n), ct)| {
                let p = c.policy();
                report::NetworkPolicy {
                    network: n.name.clone(),
                    enforced: !c.is_trivial(),
                    policy: report::PolicyView {
                        inbound: p.default_verdict(Direction::In),
                        outbound: p.default_verdict(Direction::Out),
                        conntrack_max: p.conntrack_max(),
                        conntrack_per_peer: p.conntrack_per_peer(),
                        rules: p.rules().to_vec(),
                    },
                    hits: c
                        .hits()
                        .into_iter()
                        .map(|h| report::RuleHits {
                            name: h.name.to_owned(),
                            direction: h.direction,
                            verdict: h.verdict,
                            hits: h.hits,
                        })
                        .collect(),
                    conntrack: report::ConntrackReport { entries: ct.len(), stats: ct.stats() },
                }
            })
            .collect()
    }
}
