//! The engine's answer to `weft status` / `weft peers`: members with their state, endpoint,
//! last handshake, traffic and container count, plus every counter.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::fdb::Fdb;
use super::Engine;
use crate::membership::MemberState;
use crate::plane::tables::Loc;
use crate::report::counters::{Counters, EngineCounters};
use crate::report::status::{
    CaStatus, EngineStatus, FdbConflict, FdbEntry, FdbTable, IdentityStatus, PeerSession, PeerState,
    PeerStatus, SeedState, SeedStatus,
};
use overlay_proto::PeerId;

/// Data unanswered for longer than this marks a session as not live in `weft peers`: a live
/// peer answers within the keepalive timeout (10 s) plus a round trip.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(11);

impl Engine {
    pub(super) fn status(&self, now: Instant) -> EngineStatus {
        let states: BTreeMap<[u8; 32], MemberState> =
            self.members.layer.members().into_iter().map(|(k, s)| (k.0, s)).collect();
        let mut seen = BTreeSet::new();
        let mut peers: Vec<PeerStatus> = Vec::new();
        for id in self.endpoint.peer_ids() {
            let Some(i) = self.endpoint.peer_info(id) else { continue };
            seen.insert(i.key);
            let record = self.members.layer.record(&crate::membership::NodeKey(i.key));
            let cert = i.cert.clone().or_else(|| self.members.certs.get(&id).cloned());
            // A session whose data has gone unanswered past the keepalive timeout is not live,
            // whatever keys we hold: the peer lost it (restarted) or is gone.
            let no_reply = i.unanswered_since.map(|t| now.saturating_duration_since(t));
            let live = i.connected && no_reply.is_none_or(|d| d <= STALE_AFTER);
            let state = match states.get(&i.key) {
                Some(s) => member_state(*s),
                None if live => PeerState::Connected,
                None => PeerState::Unknown,
            };
            // A relayed peer's endpoint is virtual: show the address it advertises, and the
            // relay as its path.
            let relay = self.relay_of(id);
            let path = match relay {
                Some(r) => {
                    Some(format!("via {}", self.members.certs.get(&r).map_or("?", |c| c.name.as_str())))
                }
                None => i.endpoint.map(|_| "direct".to_owned()),
            };
            let endpoint = match relay {
                Some(_) => record.map(|r| r.endpoint),
                None => i.endpoint,
            };
            peers.push(PeerStatus {
                name: cert.as_ref().map(|c| c.name.clone()).or_else(|| record.map(|r| r.name.clone())),
                public_key: crate::pki::encode_key(&i.key),
                state,
                endpoint,
                path,
                connected: live,
                containers: record.map(|r| r.containers.len()).unwrap_or(0),
                cert_not_after: cert.as_ref().map(|c| c.not_after),
                session: Some(PeerSession {
                    id: id.0,
                    no_reply_secs: no_reply.filter(|d| *d > STALE_AFTER).map(|d| d.as_secs_f64()),
                    last_handshake_secs_ago: i
                        .last_handshake
                        .map(|t| now.saturating_duration_since(t).as_secs_f64()),
                    cipher: i.cipher.map(|c| c.as_str().to_owned()),
                    subnets: cert.as_ref().map(|c| c.subnets.clone()),
                    groups: cert.as_ref().map(|c| c.groups.clone()),
                    rtt_ms: self.rtt.get(&id).filter(|_| live).map(|d| d.as_secs_f64() * 1000.0),
                    rx_bytes: i.totals.rx_bytes,
                    tx_bytes: i.totals.tx_bytes,
                    rx_packets: i.totals.rx_packets,
                    tx_packets: i.totals.tx_packets,
                }),
            });
        }
        // Members we know of but never exchanged a packet with directly.
        for (key, state) in &states {
            if seen.contains(key) {
                continue;
            }
            let record = self.members.layer.record(&crate::membership::NodeKey(*key));
            peers.push(PeerStatus {
                name: record.map(|r| r.name.clone()),
                public_key: crate::pki::encode_key(key),
                state: member_state(*state),
                endpoint: record.map(|r| r.endpoint),
                path: None,
                connected: false,
                containers: record.map(|r| r.containers.len()).unwrap_or(0),
                cert_not_after: record
                    .and_then(|r| overlay_proto::cert::NodeCert::decode(&r.cert).ok())
                    .map(|c| c.not_after),
                session: None,
            });
        }
        let counters = Counters {
            proto: self.shared.proto_stats.snapshot(),
            dataplane: self.shared.stats.snapshot(),
            engine: EngineCounters {
                records_refused: self.members.refused,
                mac_conflicts: self.fdbs.iter().map(Fdb::conflicts_refused).sum(),
                revocations_refused: self.members.revocations_refused,
                members_revoked: self.members.revoked.len() as u64,
            },
            relay: crate::report::counters::RelayCounters {
                peers_relayed: self.endpoint.peer_ids().filter(|p| self.relay_of(*p).is_some()).count()
                    as u64,
                ..self.paths.counters
            },
        };
        let fdb: Vec<usize> = self.fdbs.iter().map(Fdb::len).collect();
        let names: BTreeMap<PeerId, String> = self
            .endpoint
            .peer_ids()
            .filter_map(|id| {
                let i = self.endpoint.peer_info(id)?;
                let name = i
                    .cert
                    .map(|c| c.name.clone())
                    .or_else(|| self.members.certs.get(&id).map(|c| c.name.clone()))?;
                Some((id, name))
            })
            .collect();
        let tables: Vec<FdbTable> = self
            .shared
            .nets
            .iter()
            .zip(&self.fdbs)
            .map(|(n, f)| {
                let entries = f
                    .entries()
                    .map(|(mac, ip, loc, source)| {
                        let at = match loc {
                            Loc::Local => "local".to_owned(),
                            Loc::Peer(p) => names.get(&p).cloned().unwrap_or_else(|| p.to_string()),
                            Loc::Vtep(a) => a.to_string(),
                        };
                        FdbEntry { mac: crate::ipam::mac_string(&mac), ip, at, source }
                    })
                    .collect();
                FdbTable { network: n.name.clone(), entries }
            })
            .collect();
        let name_of = |p: &PeerId| names.get(p).cloned().unwrap_or_else(|| p.to_string());
        let conflicts = self
            .shared
            .nets
            .iter()
            .zip(&self.fdbs)
            .flat_map(|(n, f)| {
                f.conflicts().map(|c| FdbConflict {
                    network: n.name.clone(),
                    mac: crate::ipam::mac_string(&c.mac),
                    owner: name_of(&c.owner.0),
                    owner_ip: c.owner.1,
                    claimant: name_of(&c.claimant.0),
                    claimant_ip: c.claimant.1,
                })
            })
            .collect();
        let alive = states.values().filter(|s| matches!(s, MemberState::Alive)).count();
        EngineStatus {
            uptime_secs: now.saturating_duration_since(self.started).as_secs(),
            members_alive: alive,
            members: states.len(),
            peers,
            counters,
            policy: self.policy_status(),
            fdb_entries: fdb,
            fdb: tables,
            membership: self.members.layer.stats(),
            seeds: self.seeds_status(now),
            conflicts,
            identity: Some(self.identity_status()),
            seen_as: self
                .paths
                .seen_as
                .iter()
                .map(|(address, p)| crate::report::status::SeenAs { address: *address, by: name_of(p) })
                .collect(),
        }
    }
}

impl Engine {
    /// Our certificate and trusted CAs, as running.
    fn identity_status(&self) -> IdentityStatus {
        let cert = self.endpoint.cert();
        let cas = &self.members.cas;
        IdentityStatus {
            public_key: crate::pki::encode_key(&cert.public_key),
            cert_not_after: cert.not_after,
            issuer: cas.get(&cert.issuer).map_or_else(|| "?".to_owned(), |c| c.name.clone()),
            cas: cas
                .iter()
                .map(|c| CaStatus {
                    name: c.name.clone(),
                    fingerprint: crate::pki::fingerprint(&c.public_key),
                    not_after: c.not_after,
                })
                .collect(),
            ciphers: self.endpoint.ciphers().to_string(),
        }
    }

    /// Seeds and `[[peer]]` endpoints: `connected`, `dialing`, or `unreachable` after
    /// [`super::seeds::SEED_UNANSWERED`] without an answer.
    fn seeds_status(&self, now: Instant) -> Vec<SeedStatus> {
        self.statics
            .iter()
            .map(|s| {
                let waited = s.unanswered_since.map(|t| now.saturating_duration_since(t));
                let state = match waited {
                    None => SeedState::Connected,
                    Some(w) if w >= super::seeds::SEED_UNANSWERED => SeedState::Unreachable,
                    Some(_) => SeedState::Dialing,
                };
                SeedStatus { address: s.addr, state, unanswered_secs: waited.map(|w| w.as_secs()) }
            })
            .collect()
    }
}

/// A member's state as status reports it.
fn member_state(s: MemberState) -> PeerState {
    match s {
        MemberState::Alive => PeerState::Alive,
        MemberState::Suspect => PeerState::Suspect,
        MemberState::Down => PeerState::Down,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_states_keep_their_status_words() {
        for s in [MemberState::Alive, MemberState::Suspect, MemberState::Down] {
            assert_eq!(member_state(s).as_str(), format!("{s:?}").to_lowercase());
        }
    }
}
