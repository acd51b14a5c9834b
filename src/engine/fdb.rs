//! The forwarding database the engine owns, per network: MAC → location and IP → MAC, from
//! attached containers (local), from frames received from authenticated peers (learned), and
//! from plain VXLAN remotes. Learned entries age out; a peer's entries leave with it. A MAC
//! holds at most one IP per family: a dual-stack container's two addresses share its MAC.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::family::Addrs;
use crate::packet::Mac;
use crate::plane::tables::{Loc, NetTables};
use crate::report::status::FdbSource;
use overlay_proto::PeerId;

/// Learned entries unused for this long are forgotten.
pub const LEARNED_TTL: Duration = Duration::from_secs(300);
/// Most learned MACs per network: one peer cannot exhaust memory by inventing MACs.
pub const MAX_LEARNED: usize = 16_384;
/// Most learned MACs behind one peer: a member inventing MACs of its own subnet leaves room
/// for everyone else's.
pub const MAX_LEARNED_PER_PEER: usize = MAX_LEARNED / 4;

#[derive(Debug, Clone)]
struct Entry {
    loc: Loc,
    ips: Addrs,
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

/// A member's record announcing a MAC (with its IPs, one per family).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Claim {
    owner: PeerId,
    ips: Addrs,
}

/// One network's database.
#[derive(Debug, Default)]
pub struct Fdb {
    macs: BTreeMap<Mac, Entry>,
    learned: usize,
    /// Learned entries behind each peer.
    learned_by: BTreeMap<PeerId, usize>,
    /// Every member's announced MACs, in the order they were first claimed. The first
    /// claimant owns a MAC; a later one is a conflict (refused, counted, shown in status) and
    /// takes over only when the owner withdraws it (a container that moved hosts), so a member
    /// cannot take a MAC another member announced.
    claims: BTreeMap<Mac, Vec<Claim>>,
    /// Claims refused because another member held the MAC.
    conflicts: u64,
}

/// A MAC two members claim: who holds it and who was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The MAC.
    pub mac: Mac,
    /// Its holder (the first to announce it) and the IP it announced.
    pub owner: (PeerId, IpAddr),
    /// A later claimant and the IP it announced.
    pub claimant: (PeerId, IpAddr),
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
    /// Adds a local entry (attached container or gateway), or another family's address to
    /// it (a dual-stack container is added once per address).
    pub fn add_local(&mut self, mac: Mac, ip: Option<IpAddr>, now: Instant) {
        let mut ips = match self.macs.get(&mac) {
            Some(e) if e.source == Source::Local => e.ips,
            _ => Addrs::default(),
        };
        if let Some(ip) = ip {
            ips.set(ip);
        }
        if let Some(old) =
            self.macs.insert(mac, Entry { loc: Loc::Local, ips, seen: now, source: Source::Local })
        {
            if old.source == Source::Learned {
                self.count_out(old.loc);
            }
        }
    }

    fn count_in(&mut self, loc: Loc) {
        self.learned += 1;
        if let Loc::Peer(p) = loc {
            *self.learned_by.entry(p).or_default() += 1;
        }
    }

    fn count_out(&mut self, loc: Loc) {
        self.learned -= 1;
        if let Loc::Peer(p) = loc {
            if let Some(n) = self.learned_by.get_mut(&p) {
                *n -= 1;
                if *n == 0 {
                    self.learned_by.remove(&p);
                }
            }
        }
    }

    fn peer_full(&self, loc: Loc) -> bool {
        matches!(loc, Loc::Peer(p) if self.learned_by.get(&p).is_some_and(|n| *n >= MAX_LEARNED_PER_PEER))
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
        if let Some(e) = self.macs.get(&mac) {
            let old = e.loc;
            if old != loc {
                let stale =
                    e.source == Source::Learned && now.saturating_duration_since(e.seen) >= LEARNED_TTL;
                if !stale {
                    return Learned::Conflict;
                }
                if self.peer_full(loc) {
                    return Learned::Full;
                }
                self.count_out(old);
                self.count_in(loc);
            }
            if let Some(e) = self.macs.get_mut(&mac) {
                e.loc = loc;
                e.seen = now;
                if let Some(ip) = ip {
                    e.ips.set(ip);
                }
            }
            return Learned::Ok;
        }
        if self.learned >= MAX_LEARNED || self.peer_full(loc) {
            return Learned::Full;
        }
        self.count_in(loc);
        let ips = ip.map(Addrs::one).unwrap_or_default();
        self.macs.insert(mac, Entry { loc, ips, seen: now, source: Source::Learned });
        Learned::Ok
    }

    /// Replaces the entries `owner`'s membership record announces. They override learned
    /// entries (the owner's word beats what a frame suggested) but never local ones.
    /// A MAC another member announced first stays with it: the claim waits (see `claims`).
    /// A MAC listed twice with addresses of both families (a dual-stack container) holds both.
    pub fn set_announced(&mut self, owner: PeerId, entries: &[(Mac, IpAddr)], now: Instant) {
        let mut new: BTreeMap<Mac, Addrs> = BTreeMap::new();
        for &(mac, ip) in entries {
            new.entry(mac).or_default().set(ip);
        }
        let mut touched = self.withdraw(owner, |mac| !new.contains_key(mac));
        for (&mac, &ips) in &new {
            let list = self.claims.entry(mac).or_default();
            match list.iter_mut().find(|c| c.owner == owner) {
                Some(c) => c.ips = ips,
                None => {
                    list.push(Claim { owner, ips });
                    if list.len() > 1 {
                        self.conflicts += 1;
                    }
                }
            }
            touched.push(mac);
        }
        for mac in touched {
            self.settle(mac, now);
        }
    }

    /// Removes `owner`'s claims of the MACs `gone` selects; returns those MACs.
    fn withdraw(&mut self, owner: PeerId, gone: impl Fn(&Mac) -> bool) -> Vec<Mac> {
        let mut touched = Vec::new();
        for (mac, list) in &mut self.claims {
            if gone(mac) && list.iter().any(|c| c.owner == owner) {
                list.retain(|c| c.owner != owner);
                touched.push(*mac);
            }
        }
        self.claims.retain(|_, l| !l.is_empty());
        touched
    }

    /// Points `mac`'s entry at its first claimant (or removes the announced entry when nobody
    /// claims it any more); local entries are never replaced.
    fn settle(&mut self, mac: Mac, now: Instant) {
        let source = self.macs.get(&mac).map(|e| e.source);
        if source == Some(Source::Local) {
            return;
        }
        match self.claims.get(&mac).and_then(|l| l.first()).copied() {
            Some(Claim { owner, ips }) => {
                let e = Entry { loc: Loc::Peer(owner), ips, seen: now, source: Source::Gossip };
                if let Some(old) = self.macs.insert(mac, e).filter(|old| old.source == Source::Learned) {
                    self.count_out(old.loc);
                }
            }
            None if source == Some(Source::Gossip) => {
                self.macs.remove(&mac);
            }
            None => {}
        }
    }

    /// Forgets everything learned or announced behind `peer`; a MAC it held passes to the
    /// next member that claims it.
    pub fn forget_peer(&mut self, peer: PeerId, now: Instant) {
        let touched = self.withdraw(peer, |_| true);
        let learned =
            self.macs.values().filter(|e| e.loc == Loc::Peer(peer) && e.source == Source::Learned).count();
        self.macs.retain(|_, e| e.loc != Loc::Peer(peer));
        self.learned -= learned;
        self.learned_by.remove(&peer);
        for mac in touched {
            self.settle(mac, now);
        }
    }

    /// Claims refused because another member held the MAC, since start.
    pub fn conflicts_refused(&self) -> u64 {
        self.conflicts
    }

    /// The MACs more than one member claims now.
    pub fn conflicts(&self) -> impl Iterator<Item = Conflict> + '_ {
        self.claims.iter().filter(|(_, l)| l.len() > 1).flat_map(|(mac, l)| {
            l[1..].iter().filter_map(move |c| {
                Some(Conflict {
                    mac: *mac,
                    owner: (l[0].owner, l[0].ips.first()?),
                    claimant: (c.owner, c.ips.first()?),
                })
            })
        })
    }

    /// Drops learned entries older than [`LEARNED_TTL`].
    pub fn expire(&mut self, now: Instant) -> bool {
        let old: Vec<(Mac, Loc)> = self
            .macs
            .iter()
            .filter(|(_, e)| {
                e.source == Source::Learned && now.saturating_duration_since(e.seen) >= LEARNED_TTL
            })
            .map(|(m, e)| (*m, e.loc))
            .collect();
        for (mac, loc) in &old {
            self.macs.remove(mac);
            self.count_out(*loc);
        }
        !old.is_empty()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.macs.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.macs.is_empty()
    }

    /// Every entry as (MAC, IP, location, how it was learned), for status output: one per
    /// address of the MAC (a dual-stack container shows twice), or one without an address.
    pub fn entries(&self) -> impl Iterator<Item = (Mac, Option<IpAddr>, Loc, FdbSource)> + '_ {
        self.macs.iter().flat_map(|(m, e)| {
            let source = match e.source {
                Source::Learned => FdbSource::Learned,
                Source::Gossip => FdbSource::Announced,
                Source::Local => FdbSource::Local,
            };
            let ips: Vec<Option<IpAddr>> =
                if e.ips.is_empty() { vec![None] } else { e.ips.iter().map(Some).collect() };
            ips.into_iter().map(move |ip| (*m, ip, e.loc, source))
        })
    }

    /// The snapshot workers read.
    pub fn tables(&self) -> NetTables {
        let mut t = NetTables::default();
        for (mac, e) in &self.macs {
            t.macs.insert(*mac, e.loc);
            for ip in e.ips.iter() {
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
        f.forget_peer(PeerId(2), now);
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
        f.forget_peer(PeerId(2), now);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn rogue_claim_of_a_mac_another_member_announced_is_refused_until_the_owner_withdraws_it() {
        let now = crate::testing::clock_origin();
        let mut f = Fdb::default();
        let (owner, rogue) = (PeerId(1), PeerId(2));
        let (theirs, mine): (IpAddr, IpAddr) = ("10.42.1.2".parse().unwrap(), "10.42.2.9".parse().unwrap());
        f.set_announced(owner, &[([7; 6], theirs)], now);
        // The rogue lists the victim's MAC with an address of its own subnet.
        f.set_announced(rogue, &[([7; 6], mine), ([8; 6], mine)], now);
        let t = f.tables();
        assert_eq!(t.macs[&[7; 6]], Loc::Peer(owner), "the MAC stays with its first owner");
        assert_eq!(t.ips.get(&theirs), Some(&[7; 6]));
        assert_eq!(t.macs[&[8; 6]], Loc::Peer(rogue), "its own MAC is its own");
        assert_eq!(f.conflicts_refused(), 1);
        let c: Vec<Conflict> = f.conflicts().collect();
        assert_eq!(c, [Conflict { mac: [7; 6], owner: (owner, theirs), claimant: (rogue, mine) }]);
        // Re-announcing changes nothing and is not counted again.
        f.set_announced(rogue, &[([7; 6], mine), ([8; 6], mine)], now);
        assert_eq!(f.conflicts_refused(), 1);
        // A container that moved: the first owner withdraws it, the next claimant takes over.
        f.set_announced(owner, &[], now);
        assert_eq!(f.tables().macs[&[7; 6]], Loc::Peer(rogue));
        assert_eq!(f.conflicts().count(), 0);
        f.forget_peer(rogue, now);
        assert!(f.is_empty());
    }

    #[test]
    fn rogue_peer_inventing_macs_fills_only_its_share_of_the_learned_table() {
        let now = crate::testing::clock_origin();
        let mut f = Fdb::default();
        let (rogue, honest) = (Loc::Peer(PeerId(1)), Loc::Peer(PeerId(2)));
        let mac = |i: u32| [0x02, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8, 1];
        let refused =
            (0..MAX_LEARNED as u32).filter(|&i| f.learn(mac(i), None, rogue, now) == Learned::Full).count();
        assert_eq!(refused, MAX_LEARNED - MAX_LEARNED_PER_PEER);
        assert_eq!(f.learn([0x02, 9, 9, 9, 9, 9], None, honest, now), Learned::Ok, "room for an honest peer");
        f.forget_peer(PeerId(1), now);
        assert_eq!(f.len(), 1);
        assert_eq!(f.learn(mac(0), None, rogue, now), Learned::Ok, "its share is free again");
        assert!(f.expire(now + LEARNED_TTL));
        assert!(f.is_empty());
        assert!(f.learned_by.is_empty() && f.learned == 0, "the counts follow the table");
    }

    #[test]
    fn bounded() {
        let now = crate::testing::clock_origin();
        let mut f = Fdb::default();
        for i in 0..MAX_LEARNED as u32 {
            let b = i.to_be_bytes();
            let peer = Loc::Peer(PeerId(i % 4));
            assert_eq!(f.learn([2, 0, b[0], b[1], b[2], b[3]], None, peer, now), Learned::Ok);
        }
        assert_eq!(
            f.learn([4; 6], None, Loc::Peer(PeerId(9)), now),
            Learned::Full,
            "the whole table is full"
        );
    }
}
