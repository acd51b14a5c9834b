//! The engine's answer to `weft status` / `weft peers`: members with their state, endpoint,
//! last handshake, traffic and container count, plus every counter.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::fdb::Fdb;
use super::Engine;
use crate::membership::MemberState;
use crate::plane::tables::Loc;
use overlay_proto::PeerId;

/// Data unanswered for longer than this marks a session as not live in `weft peers`: a live
/// peer answers within the keepalive timeout (10 s) plus a round trip.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(11);

impl Engine {
    pub(super) fn status(&self, now: Instant) -> Value {
        let states: BTreeMap<[u8; 32], MemberState> =
            self.members.layer.members().into_iter().map(|(k, s)| (k.0, s)).collect();
        let mut seen = BTreeSet::new();
        let mut peers: Vec<Value> = Vec::new();
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
                Some(s) => format!("{s:?}").to_lowercase(),
                None if live => "connected".into(),
                None => "unknown".into(),
            };
            peers.push(json!({
                "id": id.0,
                "name": cert.as_ref().map(|c| c.name.clone()).or_else(|| record.map(|r| r.name.clone())),
                "public_key": crate::pki::encode_key(&i.key),
                "state": state,
                "endpoint": i.endpoint.map(|e| e.to_string()),
                "connected": live,
                "no_reply_secs": no_reply.filter(|d| *d > STALE_AFTER).map(|d| d.as_secs_f64()),
                "last_handshake_secs_ago": i.last_handshake.map(|t| now.saturating_duration_since(t).as_secs_f64()),
                "containers": record.map(|r| r.containers.len()).unwrap_or(0),
                "subnets": cert.as_ref().map(|c| c.subnets.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
                "groups": cert.as_ref().map(|c| c.groups.clone()),
                "rtt_ms": self.rtt.get(&id).filter(|_| live).map(|d| d.as_secs_f64() * 1000.0),
                "rx_bytes": i.totals.rx_bytes,
                "tx_bytes": i.totals.tx_bytes,
                "rx_packets": i.totals.rx_packets,
                "tx_packets": i.totals.tx_packets,
            }));
        }
        // Members we know of but never exchanged a packet with directly.
        for (key, state) in &states {
            if seen.contains(key) {
                continue;
            }
            let record = self.members.layer.record(&crate::membership::NodeKey(*key));
            peers.push(json!({
                "name": record.map(|r| r.name.clone()),
                "public_key": crate::pki::encode_key(key),
                "state": format!("{state:?}").to_lowercase(),
                "endpoint": record.map(|r| r.endpoint.to_string()),
                "connected": false,
                "containers": record.map(|r| r.containers.len()).unwrap_or(0),
            }));
        }
        let mut counters: BTreeMap<&str, u64> =
            self.shared.proto_stats.snapshot().into_iter().chain(self.shared.stats.snapshot()).collect();
        counters.insert("records_refused", self.members.refused);
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
        let tables: Vec<Value> = self
            .shared
            .nets
            .iter()
            .zip(&self.fdbs)
            .map(|(n, f)| {
                let entries: Vec<Value> = f
                    .entries()
                    .map(|(mac, ip, loc, source)| {
                        let at = match loc {
                            Loc::Local => "local".to_owned(),
                            Loc::Peer(p) => names.get(&p).cloned().unwrap_or_else(|| p.to_string()),
                            Loc::Vtep(a) => a.to_string(),
                        };
                        json!({"mac": crate::ipam::mac_string(&mac), "ip": ip.map(|i| i.to_string()), "at": at, "source": source})
                    })
                    .collect();
                json!({"network": n.name, "entries": entries})
            })
            .collect();
        let alive = states.values().filter(|s| matches!(s, MemberState::Alive)).count();
        json!({
            "uptime_secs": now.saturating_duration_since(self.started).as_secs(),
            "members_alive": alive,
            "members": states.len(),
            "peers": peers,
            "counters": counters,
            "policy": self.policy_status(),
            "fdb_entries": fdb,
            "fdb": tables,
            "membership": membership_json(&self.members.layer.stats()),
            "seeds": self.seeds_status(now),
        })
    }
}

impl Engine {
    /// Seeds and `[[peer]]` endpoints: `connected`, `dialing`, or `unreachable` after
    /// [`super::seeds::SEED_UNANSWERED`] without an answer.
    fn seeds_status(&self, now: Instant) -> Vec<Value> {
        self.statics
            .iter()
            .map(|s| {
                let waited = s.unanswered_since.map(|t| now.saturating_duration_since(t));
                let state = match waited {
                    None => "connected",
                    Some(w) if w >= super::seeds::SEED_UNANSWERED => "unreachable",
                    Some(_) => "dialing",
                };
                json!({
                    "address": s.addr.to_string(),
                    "state": state,
                    "unanswered_secs": waited.map(|w| w.as_secs()),
                })
            })
            .collect()
    }
}

/// The membership counters as a JSON object; destructured so that a new counter cannot be
/// forgotten here.
fn membership_json(s: &crate::membership::MembershipStats) -> Value {
    let crate::membership::MembershipStats {
        messages_in,
        bytes_in,
        messages_out,
        bytes_out,
        malformed,
        spoofed,
        swim_errors,
        records_accepted,
        chunks_stale,
        reassemblies_dropped,
        pulls_unserved,
        transmit_dropped,
        own_record_too_large,
        turn_undead_challenged,
        suspicions_expired,
    } = *s;
    json!({
        "messages_in": messages_in,
        "bytes_in": bytes_in,
        "messages_out": messages_out,
        "bytes_out": bytes_out,
        "malformed": malformed,
        "spoofed": spoofed,
        "swim_errors": swim_errors,
        "records_accepted": records_accepted,
        "chunks_stale": chunks_stale,
        "reassemblies_dropped": reassemblies_dropped,
        "pulls_unserved": pulls_unserved,
        "transmit_dropped": transmit_dropped,
        "own_record_too_large": own_record_too_large,
        "turn_undead_challenged": turn_undead_challenged,
        "suspicions_expired": suspicions_expired,
    })
}

#[cfg(test)]
mod tests {
    use crate::membership::MembershipStats;

    #[test]
    fn membership_counters_are_plain_json_numbers() {
        let s = MembershipStats {
            messages_in: 7,
            bytes_out: 1500,
            turn_undead_challenged: 1,
            ..Default::default()
        };
        let v = super::membership_json(&s);
        assert_eq!(v["messages_in"], 7);
        assert_eq!(v["bytes_out"], 1500);
        assert_eq!(v["turn_undead_challenged"], 1);
        assert_eq!(v.as_object().map(|o| o.len()), Some(15));
        assert!(v.as_object().unwrap().values().all(|n| n.is_u64()), "{v}");
    }
}
