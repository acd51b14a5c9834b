//! The firewall on the data path (see [`crate::policy`]): outbound when a frame from our
//! bridge leaves for a peer, inbound when a decrypted frame from an authenticated peer is about
//! to reach our bridge. Identities come from what this node trusts, never from the packet: the
//! sending peer's certificate (name, groups) and the containers members announced inside their
//! certified subnets, whose selector masks the engine precomputes in the tables snapshot. Per
//! frame there is a header parse, a conntrack lookup and, for a new flow, bit tests over the
//! compiled rules: no allocation, no lock but the conntrack shard's.

use overlay_proto::PeerId;

use super::tables::{ct_owner, Tables};
use super::{inc, Shared};
use crate::plane::{NetId, PerNet};
use crate::policy::{flow, Direction, Identity, Parsed, Verdict};

/// Seconds since the daemon started: the conntrack clock.
pub fn now_secs(shared: &Shared) -> u32 {
    shared.conntrack_secs(std::time::Instant::now())
}

/// Whether `frame` may pass. `dir` is relative to this host; `peer` is the authenticated
/// sender (inbound) or the peer the frame is sent to (outbound unicast; `None` when flooded).
pub fn allows(
    shared: &Shared,
    tables: &Tables,
    net: NetId,
    dir: Direction,
    frame: &[u8],
    peer: Option<PeerId>,
    now: u32,
) -> bool {
    let Some(p) = tables.nets.net(net).and_then(|n| n.policy.as_ref()) else { return true };
    let Some(ct) = shared.conntrack.net(net) else { return true };
    let f = match flow::parse(frame) {
        Parsed::Flow(f) => f,
        // ARP and neighbour discovery always pass; other ethertypes are not carried anyway.
        Parsed::AlwaysPass | Parsed::Other => return true,
        Parsed::Malformed => {
            inc(&shared.stats.drop_policy_malformed);
            return false;
        }
    };
    if ct.lookup(&f, now) {
        return true;
    }
    let (local_ip, remote_ip) = match dir {
        Direction::In => (f.dst, f.src),
        Direction::Out => (f.src, f.dst),
    };
    let local = p.local.get(&local_ip).copied().unwrap_or_else(|| {
        p.compiled.mask(&Identity { ip: Some(local_ip), node: Some(&p.me.0), groups: &p.me.1, labels: None })
    });
    let remote = match (p.remote.get(&remote_ip), peer) {
        // A container's labels count only from the member that owns its address.
        (Some((owner, m)), Some(sender)) if *owner == sender || dir == Direction::Out => *m,
        (Some((_, m)), None) => *m,
        (_, Some(sender)) => match tables.peers.get(&sender) {
            Some(e) => p.compiled.mask(&Identity {
                ip: Some(remote_ip),
                node: Some(&e.name),
                groups: &e.groups,
                labels: None,
            }),
            None => p.compiled.mask_ip_only(remote_ip),
        },
        (None, None) => p.compiled.mask_ip_only(remote_ip),
    };
    let d = p.compiled.decide(dir, f.proto, f.port(), remote, local);
    p.compiled.count(&d);
    if d.verdict == Verdict::Deny {
        inc(&shared.stats.drop_policy);
        return false;
    }
    let owner = peer.or_else(|| p.remote.get(&remote_ip).map(|(o, _)| *o)).map(ct_owner).unwrap_or(0);
    match ct.insert(&f, owner, now) {
        Ok(()) => true,
        Err(_) => {
            inc(&shared.stats.drop_conntrack_full);
            false
        }
    }
}
