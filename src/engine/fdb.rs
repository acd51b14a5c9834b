//! The forwarding database the engine owns, per network: MAC → location and IP → MAC, from
//! attached containers (local), from frames received from authenticated peers (learned), and
//! from plain VXLAN remotes. Learned entries age out; a peer's entries leave with it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::packet::Mac;
use crate::plane::tables::{Loc, NetTables};
use crate::report::status::FdbSource;
use overlay_proto::PeerId;

/// Learned entries unused for this long are forgotten.
pub const LEARNED_TTL: Duration = Duration::from_secs(300);
/// Most learned MACs per network: one peer cannot exhaust memory by inventing MACs.
pub const MAX_LEARNED: usize = 16_384;

#[derive(Debug, Clone)]
struct Entry {
    loc: Loc,
    ip: Option<IpAddr>,
    seen: Instant,
    source: Source,
}

/// Where an entry came from, in order of authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Seen in a frame from an authenticated peer (or a VXLAN remote); ages out.
    Learned,
    /// Announced by its owner's membership record; lives as long as the record.
    Gossip,
    /// Attached on this host.
    Local,
}

/// One network's database.
#[derive(Debug, Default)]
pub struct Fdb {
    macs: BTreeMap<Mac, Entry>,
    learned: usize,
}

/// What a learn attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// Added or refreshed.
    Ok,
    /// The MAC belongs to someone else (local, or another peer): refused.
    Conflict,
    /// Table full.
    Full,
}

impl Fdb {
    /// Adds a local entry (attached container or gateway).
    pub fn add_local(&mut self, mac: Mac, ip: Option<IpAddr>, now: Instant) {
        if let Some(old) =
            self.macs.insert(mac, Entry { loc: Loc::Local, ip, seen: now, source: Source::Local })
        {
            if old.source == Source::Learned {
                self.learned -= 1;
            }
        }
    }

    /// Removes a local entry.
    pub fn remove_local(&mut self, mac: &Mac) {
        if self.macs.get(mac).is_some_and(|e| e.source == Source::Local) {
            self.macs.remove(mac);
        }
    }

    /// Learns `mac` (and its IP) behind `loc`. A MAC already bound elsewhere is not moved:
    /// the binding is what stops one peer from stealing another's traffic.
    pub fn learn(&mut self, mac: Mac, ip: Option<IpAddr>, loc: Loc, now: Instant) -> Learned {
        if let Some(e) = self.macs.get_mut(&mac) {
            if e.loc != loc {
                let stale =
                    e.source == Source::Learned && now.saturating_duration_since(e.seen) >= LEARNED_TTL;
                if !stale {
                    return Learned::Conflict;
                }
                e.loc = loc;
            }
            e.seen = now;
            if ip.is_some() {
                e.ip = ip;
            }
            return Learned::Ok;
        }
        if self.learned >= MAX_LEARNED {
            return Learned::Full;
        }
        self.learned += 1;
        self.macs.insert(mac, Entry { loc, ip, seen: now, source: Source::Learned });
        Learned::Ok
    }

    /// Replaces the entries `owner`'s membership record announces. They override learned
    /// entries (the owner's word beats what a frame suggested) but never local ones.
    pub fn set_announced(&mut self, owner: PeerId, entries: &[(Mac, IpAddr)], now: Instant) {
        self.macs.retain(|_, e| !(e.source == Source::Gossip && e.loc == Loc::Peer(owner)));
        for (mac, ip) in entries {
            match self.macs.get(mac).map(|e| e.source) {
                Some(Source::Local) => continue,
                Some(Source::Learned) => self.learned -= 1,
                _ => {}
            }
            self.macs.insert(
                *mac,
                Entry { loc: Loc::Peer(owner), ip: Some(*ip), seen: now, source: Source::Gossip },
            );
        }
    }

    /// Forgets everything learned or announced behind `peer`.
    pub fn forget_peer(&mut self, peer: PeerId) {
        let learned =
            self.macs.values().filter(|e| e.loc == Loc::Peer(peer) && e.source == Source::Learned).count();
        self.macs.retain(|_, e| e.loc != Loc::Peer(peer));
        self.learned -= learned;
    }

    /// Drops learned entries older than [`LEARNED_TTL`].
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.macs.len();
        self.macs.retain(|_, e| {
            e.source != Source::Learned || now.saturating_duration_since(e.seen) < LEARNED_TTL
        });
        let gone = before - self.macs.len();
        self.learned -= gone;
        gone > 0
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.macs.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.macs.is_empty()
    }

    /// Every entry as (MAC, IP, location, how it was learned), for status output.
    pub fn entries(&self) -> impl Iterator<Item = (Mac, Option<IpAddr>, Loc, FdbSource)> + '_ {
        self.macs.iter().map(|(m, e)| {
            let source = match e.source {
                Source::Learned => FdbSource::Learned,
                Source::Gossip => FdbSource::Announced,
                Source::Local => FdbSource::Local,
            };
            (*m, e.ip, e.loc, source)
        })
    }

    /// The snapshot workers read.
    pub fn tables(&self) -> NetTables {
        let mut t = NetTables::default();
        for (mac, e) in &self.macs {
            t.macs.insert(*mac, e.loc);
            if let Some(ip) = e.ip {
                t.ips.insert(ip, *mac);
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_conflicts_and_expiry() {
        let now = crate::testing::clock_origin();
        let mut f = Fdb::default();
        let (a, b) = (Loc::Peer(PeerId(1)), Loc::Peer(PeerId(2)));
        f.add_local([1; 6], Some("10.42.1.2".parse().unwrap()), now);
        assert_eq!(f.learn([1; 6], None, a, now), Learned::Conflict);
        assert_eq!(f.learn([2; 6], Some("10.42.2.2".parse().unwrap()), a, now), Learned::Ok);
        assert_eq!(f.learn([2; 6], None, b, now), Learned::Conflict);
        assert_eq!(f.tables().ips.len(), 2);
        assert_eq!(f.learn([2; 6], None, b, now + LEARNED_TTL), Learned::Ok, "stale entries may move");
        f.forget_peer(PeerId(2));
        assert_eq!(f.len(), 1);
        f.learn([3; 6], None, a, now);
        assert!(f.expire(now + LEARNED_TTL));
        assert_eq!(f.len(), 1, "local entries never expire");
    }

    #[test]
    fn announced_entries_override_learned_and_leave_with_their_owner() {
        let now = crate::testing::clock_origin();
        let mut f = Fdb::default();
        let ip: IpAddr = "10.42.2.2".parse().unwrap();
        f.add_local([1; 6], None, now);
        f.learn([2; 6], None, Loc::Peer(PeerId(1)), now);
        f.set_announced(PeerId(2), &[([2; 6], ip), ([1; 6], ip)], now);
        let t = f.tables();
        assert_eq!(t.macs[&[2; 6]], Loc::Peer(PeerId(2)), "the owner's word wins over learning");
        assert_eq!(t.macs[&[1; 6]], Loc::Local, "never over a local container");
        assert!(!f.expire(now + LEARNED_TTL), "announced entries do not age");
        f.set_announced(PeerId(2), &[], now);
        assert_eq!(f.len(), 1);
        f.set_announced(PeerId(2), &[([3; 6], ip)], now);
        f.forget_peer(PeerId(2));
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn bounded() {
        let now = crate::testing::clock_origin();
        let mut f = Fdb::default();
        for i in 0..MAX_LEARNED as u32 {
            let b = i.to_be_bytes();
            assert_eq!(f.learn([2, 0, b[0], b[1], b[2], b[3]], None, Loc::Peer(PeerId(1)), now), Learned::Ok);
        }
        assert_eq!(f.learn([4; 6], None, Loc::Peer(PeerId(1)), now), Learned::Full);
    }
}
