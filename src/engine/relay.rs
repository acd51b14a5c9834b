//! Paths between members: relays and NAT traversal.
//!
//! A member whose handshake goes unanswered for [`RELAY_AFTER`] (no direct path: a firewall,
//! a NAT) is moved onto a relay: a member that offers to relay (`[relay] enable`, told in
//! [`Inner::PathInfo`]), reaches it, and that we reach directly. Its address at the protocol
//! endpoint becomes a virtual one ([`path::via`]), so the endpoint's handshakes and sessions
//! with it go on unchanged and end to end; only their datagrams travel wrapped:
//!
//! - out: a datagram for `via(R, P)` is sent to R inside our session with R as
//!   [`Inner::RelayTo`] `{to: P's key}`;
//! - at the relay: R checks both ends are members and passes the datagram on to P inside its
//!   session with P as [`Inner::RelayFrom`] `{from: our key, seen: our address as R sees
//!   it}`, never looking inside;
//! - in: P hands the datagram to its endpoint as if it came from `via(R, us)`, so its
//!   endpoint roams our session onto the relay too.
//!
//! While relayed, every [`PUNCH_EVERY`] each side sends a keepalive on the end-to-end session
//! straight to the other's advertised address and to its address as the relay sees it (its
//! reflexive address, the NAT's mapping): when one gets through (the block was lifted, or both
//! NATs opened a mapping for the other), the receiver's endpoint roams the session to the
//! direct path, answers on it, and the other side roams too. No new handshake, so TCP flows
//! inside do not notice.

use overlay_proto::wire::{Inner, TransportHeader, PATH_RELAYS};
use overlay_proto::{DatagramError, Features, PeerId, Received, Transmit};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};
use tracing::{debug, info, trace};

use super::Engine;
use crate::config::Relay;
use crate::membership::NodeKey;
use crate::plane::path;
use crate::report::counters::RelayCounters;

/// A member whose handshake has gone unanswered this long is tried through a relay (after the
/// first retry, so one lost datagram never moves a path).
pub(super) const RELAY_AFTER: Duration = Duration::from_secs(6);
/// A session whose data has gone unanswered this long has lost its path: a live peer answers
/// within the keepalive timeout (10 s) plus a round trip.
const SILENT_AFTER: Duration = Duration::from_secs(11);
/// How often paths are reviewed.
const PASS_EVERY: Duration = Duration::from_secs(1);
/// While relayed, how often the direct candidates are tried.
pub(super) const PUNCH_EVERY: Duration = Duration::from_secs(3);
/// Most reflexive addresses kept per peer (and for ourselves).
const MAX_SEEN: usize = 4;
/// A session that moved to a direct path this recently stays there when relayed datagrams
/// still arrive (they were in flight, or the other side has not moved yet).
const HOLD_DIRECT: Duration = Duration::from_secs(10);

/// What the engine keeps about paths.
#[derive(Default)]
pub(crate) struct Paths {
    /// `[relay]`.
    pub cfg: Relay,
    /// Peers that said they relay.
    pub(super) offers: BTreeSet<PeerId>,
    /// Our own address as peers see it, newest first: (address, who saw it).
    pub(crate) seen_as: Vec<(SocketAddr, PeerId)>,
    /// Each peer's addresses as relays saw them, newest first: direct candidates.
    candidates: BTreeMap<PeerId, Vec<SocketAddr>>,
    /// Peers moved onto a relay: when, and the relays tried since the direct path failed.
    moved: BTreeMap<PeerId, (Instant, Vec<PeerId>)>,
    next_pass: Option<Instant>,
    /// Peers told our path info on their current session. A responder cannot send until the
    /// initiator's first data confirms the session, so a handshake's end is not always a
    /// moment to tell: each pass tells those not told yet, and a new handshake or a change
    /// of `[relay] enable` (`Engine::set_relay`) has everyone told again.
    pub(super) told: BTreeSet<PeerId>,
    next_punch: BTreeMap<PeerId, Instant>,
    /// When each peer's session last moved onto a direct path.
    direct_at: BTreeMap<PeerId, Instant>,
    /// Relayed bytes this node may still pass on (`[relay] max_mbit`), refilled over time.
    budget: f64,
    refilled: Option<Instant>,
    /// Counters.
    pub counters: RelayCounters,
}

impl Paths {
    /// Whether `len` more bytes fit the relay's rate cap at `now` (a token bucket holding one
    /// second of the cap).
    fn spend(&mut self, now: Instant, len: usize) -> bool {
        if self.cfg.max_mbit == 0 {
            return true;
        }
        let rate = f64::from(self.cfg.max_mbit) * 125_000.0;
        let elapsed = self.refilled.map_or(1.0, |t| now.saturating_duration_since(t).as_secs_f64());
        self.budget = (self.budget + elapsed * rate).min(rate);
        self.refilled = Some(now);
        if self.budget < len as f64 {
            return false;
        }
        self.budget -= len as f64;
        true
    }

    fn note(list: &mut Vec<SocketAddr>, addr: SocketAddr) {
        list.retain(|a| *a != addr);
        list.insert(0, addr);
        list.truncate(MAX_SEEN);
    }

    /// Forgets what is known of a peer that went away.
    pub(crate) fn forget(&mut self, peer: PeerId) {
        self.offers.remove(&peer);
        self.candidates.remove(&peer);
        self.moved.remove(&peer);
        self.next_punch.remove(&peer);
        self.direct_at.remove(&peer);
        self.told.remove(&peer);
        self.seen_as.retain(|(_, p)| *p != peer);
    }
}

/// A usable underlay address: not virtual, not unspecified, not port 0.
fn real(a: SocketAddr) -> Option<SocketAddr> {
    (path::relayed(a).is_none() && !a.ip().is_unspecified() && a.port() != 0).then_some(a)
}

impl Engine {
    /// Queues a datagram the endpoint (or the engine) wants sent; one for a relayed peer is
    /// wrapped for its relay.
    pub(super) fn queue_transmit(&mut self, now: Instant, t: Transmit) {
        match path::relayed(t.dst) {
            None => self.transmits.push_back(t),
            Some((relay, peer)) => self.send_via(now, relay, peer, &t.payload),
        }
    }

    /// Sends `datagram` (of our session with `peer`) to `relay` to pass on.
    fn send_via(&mut self, now: Instant, relay: PeerId, peer: PeerId, datagram: &[u8]) {
        let relay_direct = self.endpoint.peer_info(relay).and_then(|i| i.endpoint).and_then(real);
        let Some(to) = self.endpoint.peer_info(peer).map(|i| i.key) else { return };
        if relay_direct.is_none() || datagram.len() > overlay_proto::wire::MAX_RELAYED_LEN {
            // Relays are never chained, and a relay we lost is replaced by the next pass.
            self.paths.counters.relay_refused += 1;
            return;
        }
        match self.send_inner(now, relay, &Inner::RelayTo { to, datagram }) {
            Ok(()) => self.paths.counters.relay_sent += 1,
            Err(e) => trace!(%relay, %e, "relayed datagram not sent"),
        }
    }

    /// As a relay: `from` asks us to pass `datagram` on to the member with key `to`.
    pub(super) fn relay_to(&mut self, now: Instant, from: PeerId, to: [u8; 32], datagram: &[u8]) {
        let refuse = |e: &mut Engine, why: &str| {
            e.paths.counters.relay_refused += 1;
            trace!(%from, why, "relay request refused");
        };
        if !self.paths.cfg.enable {
            return refuse(self, "relaying is off");
        }
        // Both ends must be members (verified records), neither down, and both reached
        // directly: a relay passes on between members only, and never to another relay.
        let Some(info) = self.endpoint.peer_info(from) else { return };
        let Some(seen) = info.endpoint.and_then(real) else { return refuse(self, "sender not direct") };
        let Some(target) = self.endpoint.peer_by_key(&to) else { return refuse(self, "unknown receiver") };
        let member = |e: &Engine, p: PeerId| e.members.certs.contains_key(&p) && !e.members.down.contains(&p);
        if target == from || !member(self, from) || !member(self, target) {
            return refuse(self, "not between two live members");
        }
        if self.endpoint.peer_info(target).and_then(|i| i.endpoint).and_then(real).is_none() {
            return refuse(self, "receiver not direct");
        }
        if !self.paths.spend(now, datagram.len()) {
            self.paths.counters.relay_capped += 1;
            return;
        }
        match self.send_inner(now, target, &Inner::RelayFrom { from: info.key, seen, datagram }) {
            Ok(()) => {
                self.paths.counters.relay_forwarded += 1;
                self.paths.counters.relay_forwarded_bytes += datagram.len() as u64;
            }
            Err(e) => trace!(%target, %e, "relayed datagram not passed on"),
        }
    }

    /// From relay `relay`: `datagram` came from the member with key `from`, seen at `seen`.
    pub(super) fn relay_from(
        &mut self,
        now: Instant,
        relay: PeerId,
        from: [u8; 32],
        seen: SocketAddr,
        datagram: &[u8],
    ) {
        let Some(sender) = self.endpoint.peer_by_key(&from) else {
            self.paths.counters.relay_refused += 1;
            return;
        };
        if !self.paths.cfg.use_relays
            || !self.acceptable_relay(relay)
            || sender == relay
            || !self.members.certs.contains_key(&sender)
        {
            self.paths.counters.relay_refused += 1;
            return;
        }
        // Transport data names its session: it must be the named sender's, so a relay cannot
        // pass one member's datagrams off as another's (and move that one's path).
        if let Ok(h) = TransportHeader::parse(datagram) {
            let tables = self.shared.tables.load();
            if tables.sessions.get(&h.receiver_index).is_some_and(|(p, _)| *p != sender) {
                self.paths.counters.relay_refused += 1;
                return;
            }
        }
        if let Some(seen) = real(seen) {
            Paths::note(self.paths.candidates.entry(sender).or_default(), seen);
        }
        let via = path::via(relay, sender);
        let mut buf = datagram.to_vec();
        let direct = self.endpoint.peer_info(sender).and_then(|i| i.endpoint).and_then(real);
        let result = self.endpoint.handle_datagram(now, via, &mut buf);
        // A path that just became direct again is kept: the endpoint roamed to the relay only
        // because a datagram sent that way before the move arrived late.
        let recent = self
            .paths
            .direct_at
            .get(&sender)
            .is_some_and(|t| now.saturating_duration_since(*t) < HOLD_DIRECT);
        if let (Some(direct), true) = (direct, recent) {
            self.endpoint.note_roamed(sender, direct);
        }
        match result {
            Ok(Received::Payload { peer, payload }) if peer == sender => {
                self.paths.counters.relay_received += 1;
                match Inner::parse(&buf[payload.clone()]) {
                    Ok(Inner::RelayTo { .. } | Inner::RelayFrom { .. }) => {
                        self.paths.counters.relay_refused += 1
                    }
                    _ => self.inner(now, peer, buf, payload),
                }
            }
            Ok(Received::Payload { .. }) => self.paths.counters.relay_refused += 1,
            Ok(Received::Consumed) => self.paths.counters.relay_received += 1,
            Err(DatagramError::UnknownIndex) => {
                // The sender holds a session we do not (we restarted): handshake back the
                // way it came, unless our own path to it works.
                let stuck = self
                    .endpoint
                    .peer_info(sender)
                    .is_some_and(|i| !i.connected || i.initiating_since.is_some());
                if stuck && self.resync_after.get(&sender).is_none_or(|t| now >= *t) {
                    self.resync_after.insert(sender, now + super::RESYNC_INTERVAL);
                    self.endpoint.note_roamed(sender, via);
                    self.endpoint.connect(now, sender);
                }
            }
            Err(e) => trace!(%sender, %e, "relayed datagram dropped"),
        }
    }

    /// The endpoint moved `peer`'s session to `addr` (roaming, or a path change of ours).
    ///
    /// A move to a direct address starts a HOLD_DIRECT hold unless one is running: the hold's
    /// own moves back to direct (a relayed datagram arriving during it) must not extend it, or
    /// a side whose direct path is dead would hold it for as long as relayed traffic arrives
    /// and answer into the void (a reach_lab transfer stalled that way in CI).
    pub(super) fn path_changed(&mut self, now: Instant, peer: PeerId, addr: SocketAddr) {
        if real(addr).is_some() {
            let holding = self
                .paths
                .direct_at
                .get(&peer)
                .is_some_and(|t| now.saturating_duration_since(*t) < HOLD_DIRECT);
            if !holding {
                self.paths.direct_at.insert(peer, now);
            }
        }
    }

    /// `peer` tells us how it sees our address and whether it relays.
    pub(super) fn path_info(&mut self, peer: PeerId, flags: u8, seen: SocketAddr) {
        if flags & PATH_RELAYS != 0 {
            self.paths.offers.insert(peer);
        } else {
            self.paths.offers.remove(&peer);
        }
        if let Some(seen) = real(seen) {
            self.paths.seen_as.retain(|(a, p)| *a != seen && *p != peer);
            self.paths.seen_as.insert(0, (seen, peer));
            self.paths.seen_as.truncate(MAX_SEEN);
        }
    }

    /// A handshake with `peer` completed: it is told our path info again, now if we can send.
    pub(super) fn handshake_done(&mut self, now: Instant, peer: PeerId) {
        self.paths.told.remove(&peer);
        self.send_path_info(now, peer);
    }

    /// Tells `peer` (when it understands) its address as we see it and whether we relay,
    /// unless we cannot send to it yet.
    fn send_path_info(&mut self, now: Instant, peer: PeerId) {
        if !self.speaks_paths(now, peer) {
            return;
        }
        let seen = self
            .endpoint
            .peer_info(peer)
            .and_then(|i| i.endpoint)
            .and_then(real)
            .unwrap_or(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0));
        let flags = if self.paths.cfg.enable { PATH_RELAYS } else { 0 };
        if self.send_inner(now, peer, &Inner::PathInfo { flags, seen }).is_ok() {
            self.paths.told.insert(peer);
        }
    }

    /// Whether our current session with `peer` carries path payloads.
    fn speaks_paths(&self, now: Instant, peer: PeerId) -> bool {
        self.endpoint.sending_session(now, peer).is_some_and(|(s, _)| s.features().contains(Features::PATHS))
    }

    /// Whether we use `relay` as a relay: it offers, and carries a required group if any.
    fn acceptable_relay(&self, relay: PeerId) -> bool {
        let groups = &self.paths.cfg.groups;
        groups.is_empty()
            || self.members.certs.get(&relay).is_some_and(|c| c.groups.iter().any(|g| groups.contains(g)))
    }

    /// The relay to use for `peer` now, other than those in `tried`: a live member that
    /// offers, we reach directly with a session that carries path payloads, the lowest RTT
    /// first.
    fn pick_relay(&self, now: Instant, peer: PeerId, tried: &[PeerId]) -> Option<PeerId> {
        self.paths
            .offers
            .iter()
            .copied()
            .filter(|r| *r != peer && !tried.contains(r) && self.acceptable_relay(*r))
            .filter(|r| self.members.certs.contains_key(r) && !self.members.down.contains(r))
            .filter(|r| {
                let info = self.endpoint.peer_info(*r);
                info.is_some_and(|i| i.connected && i.endpoint.and_then(real).is_some())
            })
            .filter(|r| self.speaks_paths(now, *r))
            .min_by_key(|r| (self.rtt.get(r).copied().unwrap_or(Duration::MAX), *r))
    }

    /// The path pass: moves members that do not answer directly onto a relay (or the next
    /// relay, or back to their advertised address when no relay is left), and punches.
    /// Whether a handshake was moved (it is due at once: run the endpoint's timers again).
    pub(super) fn review_paths(&mut self, now: Instant) -> bool {
        if self.paths.next_pass.is_some_and(|t| now < t) {
            return false;
        }
        self.paths.next_pass = Some(now + PASS_EVERY);
        let untold: Vec<PeerId> = self.endpoint.peer_ids().filter(|p| !self.paths.told.contains(p)).collect();
        for peer in untold {
            self.send_path_info(now, peer);
        }
        let peers: Vec<PeerId> = self.members.certs.keys().copied().collect();
        self.paths.moved.retain(|p, _| peers.contains(p));
        let mut moved = false;
        for peer in peers {
            if self.members.down.contains(&peer) {
                continue;
            }
            let Some(info) = self.endpoint.peer_info(peer) else { continue };
            let Some(at) = info.endpoint else { continue };
            // The path is dead when the session's data has gone unanswered for SILENT_AFTER (the
            // session then moves as it is, keys and all), or a handshake has gone unanswered for
            // RELAY_AFTER and so has the data (a handshake alone may be a rekey on a working
            // path).
            let waited = |t: Option<Instant>, d| t.is_some_and(|t| now.saturating_duration_since(t) >= d);
            let dead = (info.connected && waited(info.unanswered_since, SILENT_AFTER))
                || (waited(info.initiating_since, RELAY_AFTER)
                    && (!info.connected || waited(info.unanswered_since, RELAY_AFTER)));
            trace!(
                %peer, %at, connected = info.connected, dead,
                unanswered = ?info.unanswered_since.map(|t| now.saturating_duration_since(t)),
                initiating = ?info.initiating_since.map(|t| now.saturating_duration_since(t)),
                "path review"
            );
            match path::relayed(at) {
                None => {
                    if dead && self.paths.cfg.use_relays {
                        moved |= self.move_to_relay(now, peer, Vec::new());
                    }
                }
                Some((relay, _)) => {
                    let (since, tried) = self.paths.moved.get(&peer).cloned().unwrap_or((now, vec![relay]));
                    let relay_gone = !self.paths.offers.contains(&relay)
                        || self.members.down.contains(&relay)
                        || !self.members.certs.contains_key(&relay);
                    let relay_fails = dead && now.saturating_duration_since(since) >= RELAY_AFTER;
                    if relay_gone || relay_fails {
                        let mut tried = tried;
                        tried.push(relay);
                        moved |= self.move_to_relay(now, peer, tried);
                    } else if info.connected {
                        self.punch(now, peer);
                    }
                }
            }
        }
        moved
    }

    /// Moves `peer` onto the best relay not in `tried`, or back to its advertised address;
    /// whether its address changed.
    fn move_to_relay(&mut self, now: Instant, peer: PeerId, tried: Vec<PeerId>) -> bool {
        let name = self.members.certs.get(&peer).map(|c| c.name.clone()).unwrap_or_default();
        let to = match self.pick_relay(now, peer, &tried) {
            Some(relay) => {
                let via = self.members.certs.get(&relay).map(|c| c.name.clone()).unwrap_or_default();
                info!(peer = %name, relay = %via, "no direct path; relaying");
                self.paths.moved.insert(peer, (now, tried));
                self.paths.next_punch.insert(peer, now + PUNCH_EVERY);
                Some(path::via(relay, peer))
            }
            None => {
                self.paths.moved.remove(&peer);
                if !tried.is_empty() {
                    debug!(peer = %name, "no relay left; trying the direct path again");
                }
                self.advertised(peer)
            }
        };
        let current = self.endpoint.peer_info(peer).and_then(|i| i.endpoint);
        match to {
            Some(to) if Some(to) != current => {
                self.endpoint.note_roamed(peer, to);
                self.endpoint.retry_handshake(now, peer);
                self.dirty = true;
                true
            }
            _ => false,
        }
    }

    /// The address `peer`'s record advertises.
    fn advertised(&self, peer: PeerId) -> Option<SocketAddr> {
        let key = self.endpoint.peer_info(peer)?.key;
        self.members.layer.record(&NodeKey(key)).map(|r| r.endpoint).and_then(real)
    }

    /// Sends a keepalive on `peer`'s end-to-end session straight to each direct candidate:
    /// its advertised address and its addresses as relays saw them.
    fn punch(&mut self, now: Instant, peer: PeerId) {
        if self.paths.next_punch.get(&peer).is_some_and(|t| now < *t) {
            return;
        }
        self.paths.next_punch.insert(peer, now + PUNCH_EVERY);
        let mut targets: Vec<SocketAddr> = self.advertised(peer).into_iter().collect();
        for c in self.paths.candidates.get(&peer).into_iter().flatten() {
            if !targets.contains(c) {
                targets.push(*c);
            }
        }
        let Some((session, _)) = self.endpoint.sending_session(now, peer) else { return };
        let session = std::sync::Arc::clone(session);
        for dst in targets {
            // A probe, so that the peer answers at once (on the path it came by, where its
            // endpoint just moved us), and we move too.
            use overlay_proto::consts::{INNER_HEADER_LEN, TAG_LEN, TRANSPORT_HEADER_LEN};
            self.probe_seq = self.probe_seq.wrapping_add(1);
            let probe = Inner::Probe(self.probe_seq);
            let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + probe.buffer_len() + TAG_LEN];
            let Ok(n) = probe.emit(&mut buf[TRANSPORT_HEADER_LEN..]) else { continue };
            debug_assert_eq!(n, INNER_HEADER_LEN + 8);
            if let Ok(len) = session.seal(now, &mut buf, n) {
                buf.truncate(len);
                self.transmits.push_back(Transmit { dst, payload: buf });
                self.rtt_probes.insert(self.probe_seq, (peer, now));
                self.paths.counters.relay_punches += 1;
            }
        }
    }

    /// The relay `peer` is reached through, if any.
    pub(crate) fn relay_of(&self, peer: PeerId) -> Option<PeerId> {
        let at = self.endpoint.peer_info(peer)?.endpoint?;
        path::relayed(at).map(|(relay, _)| relay)
    }
}
