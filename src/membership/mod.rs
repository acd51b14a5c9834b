//! Membership: who is in the cluster and what each member says about itself, as a sans-IO
//! state machine (no sockets, clock or threads: every input takes `now`, randomness comes
//! from a seed, output is pulled).
//!
//! Three mechanisms, one wire format ([`wire`]):
//! - **SWIM** failure detection and membership through `foca`, with identity
//!   `(key, endpoint, renewal)` deduplicated by key; a restarted or falsely-downed node comes
//!   back under a higher renewal.
//! - **Records**: each node owns one versioned [`Record`]. A change spreads as rumors
//!   (`key, version` notices pushed to random members for a few rounds); a receiver pulls the
//!   record, in chunks if it is large, from whoever told it, then spreads the rumor on.
//! - **Anti-entropy**: every `anti_entropy_period` a random member gets a digest of our record
//!   set; differing key ranges are narrowed down by fingerprints until item lists are
//!   exchanged and each side pushes what the other lacks. Convergence never depends on a
//!   lucky rumor.
//!
//! Joining: [`Membership::add_seed`] announces to a seed, retried with doubling backoff while we
//! have no members, then every `announce_period` (which merges split clusters).
//!
//! Calling order, as in quinn-proto: feed inputs ([`Membership::handle_message`] for each
//! authenticated membership datagram, [`Membership::add_seed`], [`Membership::update_own`]);
//! call [`Membership::handle_timeout`] when [`Membership::poll_timeout`] is reached; after any
//! input drain [`Membership::poll_transmit`] and [`Membership::poll_event`] until `None`.

mod anti_entropy;
mod auth;
mod config;
mod digest;
mod error;
mod peers;
mod reassembly;
mod record;
mod rumors;
pub mod sim;
mod suspicion;
mod swim;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tracing::warn;

pub use auth::{RecordAuth, TrustAll};
pub use config::MembershipConfig;
pub use error::MembershipError;
pub use peers::RecordCache;
pub use record::{ContainerEntry, NodeKey, Record};
pub use wire::MAX_MESSAGE;

use digest::DigestIndex;
use peers::{Held, Live, Peer};
use reassembly::Reassembly;
use rumors::Rumors;
use swim::{Foca, SwimCodec, SwimId, SwimOut};
use wire::{Msg, SignedRecord, WireRecord};

/// Most messages queued for sending; beyond it new ones are dropped (and counted).
const MAX_QUEUED: usize = 16_384;
/// Members a rumor round goes to.
const RUMOR_FANOUT: usize = 3;
/// Notices in one rumor round.
const MAX_NOTICES: usize = 24;
/// SWIM identities waiting to be vouched for; beyond it more are ignored (counted).
const MAX_PENDING_UP: usize = 1024;
/// Messages held for one identity waiting to be vouched for.
const MAX_HELD_PER_IDENTITY: usize = 4;
/// Received revocations waiting for the engine; beyond it more are dropped (they are only
/// ever relayed again, and the engine drains the queue after every message).
const MAX_REVOCATIONS_QUEUED: usize = 256;
/// Revocation entries of keys not yet banned here that one member may hand us per second, and
/// in one burst: each costs the engine a signature check, and a member that comes up gets the
/// whole list from every member at once.
const REVOCATION_RATE: f64 = 64.0;
const REVOCATION_BURST: f64 = 4096.0;

/// What we know of a member's liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Missed a probe; will be declared down unless it refutes.
    Suspect,
    /// Declared down; its record is removed after `dead_grace`.
    Down,
}

/// A change the engine must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberEvent {
    /// A member became reachable (first seen, or back).
    Up(NodeKey),
    /// Declared down by failure detection.
    Down(NodeKey),
    /// A newer record of that node arrived (or its first).
    RecordChanged(NodeKey),
    /// Record dropped after `dead_grace`.
    Removed(NodeKey),
}

/// Counters, for status output and tests; declared with their metrics in
/// [`crate::report::counters`].
pub use crate::report::counters::MembershipStats;

#[derive(Debug)]
struct Seed {
    endpoint: SocketAddr,
    next: Instant,
    backoff: Duration,
}

#[derive(Debug, Clone, Copy)]
struct PendingPull {
    version: u64,
    deadline: Instant,
    /// Pulled because of a rumor: spread the rumor on once the record is in.
    hot: bool,
}

/// One node's membership state machine.
pub struct Membership {
    cfg: MembershipConfig,
    auth: Box<dyn RecordAuth>,
    own: Record,
    own_wire: Vec<u8>,
    id: SwimId,
    foca: Foca,
    swim_out: SwimOut,
    swim_timers: BTreeMap<(Instant, u64), foca::Timer<SwimId>>,
    timer_seq: u64,
    swim_tuned: (u8, Duration),
    peers: BTreeMap<NodeKey, Peer>,
    tombstones: BTreeMap<NodeKey, (u64, Instant)>,
    removals: BTreeSet<(Instant, NodeKey)>,
    index: DigestIndex,
    /// Our own record's version as it stands in `index`.
    indexed_own: Option<u64>,
    rumors: Rumors,
    reassembly: Reassembly,
    pulls: BTreeMap<NodeKey, PendingPull>,
    seeds: BTreeMap<NodeKey, Seed>,
    undead_challenges: BTreeMap<NodeKey, Instant>,
    /// Suspicions we time ourselves, Lifeguard-style (see [`suspicion`]).
    suspicions: BTreeMap<NodeKey, suspicion::Suspicion>,
    /// Direct probes of suspects we run for whoever asked us to confirm.
    checks: BTreeMap<NodeKey, suspicion::Check>,
    /// Our transport session with members, as the engine tells it (see `link_waiting`).
    links: BTreeMap<NodeKey, suspicion::Link>,
    /// Our own health: slow or lossy here means slower to suspect others.
    health: suspicion::Health,
    transmits: VecDeque<(NodeKey, Vec<u8>)>,
    events: VecDeque<MemberEvent>,
    /// Keys revoked by the CA: no record of theirs is taken, nothing is sent to them, foca
    /// holds them down.
    banned: BTreeSet<NodeKey>,
    /// Revocations received, for the engine to verify.
    revocations_in: VecDeque<Vec<u8>>,
    /// Keys vouched for: a verified record of theirs, an authenticated message from them, or
    /// a seed the engine reached (kept after the member leaves: only certified nodes get in,
    /// and one that comes back is let in at once). Held as `Peer::admitted` for keys with an
    /// entry in `peers` and here for the others (never both). Only these are SWIM members here and only these are sent
    /// to; a SWIM identity that gossip alone brings waits in `pending_up`, so a member cannot
    /// invent identities that make every node handshake with addresses of its choosing.
    admitted: BTreeSet<NodeKey>,
    /// SWIM identities reported up before they were vouched for (bounded), with the messages
    /// for them held until they are (at most `MAX_HELD_PER_IDENTITY` each; sent when the
    /// identity is vouched for, dropped if it never is).
    pending_up: BTreeMap<NodeKey, (SwimId, Vec<Vec<u8>>)>,
    /// The sender of the SWIM packet being handled.
    swim_from: Option<NodeKey>,
    /// Each member's credit of record bytes it may pull from us (see `handle_pull`).
    pull_credit: BTreeMap<NodeKey, (Instant, usize)>,
    /// Each member's credit of new revocation entries it may hand us (see `take_revocations`).
    revocation_credit: BTreeMap<NodeKey, (Instant, f64)>,
    /// Records shared with the other instances of this process, if any (the simulator).
    record_cache: Option<RecordCache>,
    rng: SmallRng,
    foca_seed: u64,
    next_tick: Instant,
    next_anti_entropy: Instant,
    stats: MembershipStats,
    /// `now` and our record's version at start: versions are wall-clock millis << 16, so no
    /// honest version can be far above `start version + elapsed millis << 16`.
    version_clock: (Instant, u64),
}

/// How far ahead of our own clock a record version may claim to be (other hosts' clocks).
pub const VERSION_SKEW: Duration = Duration::from_secs(3600);

impl Membership {
    /// Starts with our own record; its `version` (the engine passes unix-millis << 16) is the
    /// starting point, so a restarted node's record and identity win over its old ones.
    /// `auth` signs our record and judges every other one before it is believed.
    pub fn new(
        own: Record,
        cfg: MembershipConfig,
        auth: Box<dyn RecordAuth>,
        rng_seed: u64,
        now: Instant,
    ) -> Self {
        let id = SwimId::new(own.key, own.endpoint, own.version);
        let swim_cfg = cfg.swim_config(1);
        let swim_tuned = (swim_cfg.max_transmissions.get(), swim_cfg.suspect_to_down_after);
        let foca_rng = SmallRng::seed_from_u64(rng_seed ^ 0x666f_6361_5357_494d);
        let foca = Foca::new(id.clone(), swim_cfg, foca_rng, SwimCodec::default());
        let mut rng = SmallRng::seed_from_u64(rng_seed);
        let next_anti_entropy = now + jitter(&mut rng, cfg.anti_entropy_period);
        let mut m = Self {
            next_tick: now + cfg.tick(),
            cfg,
            auth,
            own_wire: Vec::new(),
            own: own.clone(),
            id,
            foca,
            swim_out: SwimOut::default(),
            swim_timers: BTreeMap::new(),
            timer_seq: 0,
            swim_tuned,
            peers: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            removals: BTreeSet::new(),
            index: DigestIndex::new(),
            indexed_own: None,
            rumors: Rumors::default(),
            reassembly: Reassembly::default(),
            pulls: BTreeMap::new(),
            seeds: BTreeMap::new(),
            undead_challenges: BTreeMap::new(),
            suspicions: BTreeMap::new(),
            checks: BTreeMap::new(),
            links: BTreeMap::new(),
            health: suspicion::Health::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            banned: BTreeSet::new(),
            revocations_in: VecDeque::new(),
            admitted: BTreeSet::new(),
            pending_up: BTreeMap::new(),
            swim_from: None,
            pull_credit: BTreeMap::new(),
            revocation_credit: BTreeMap::new(),
            record_cache: None,
            rng,
            foca_seed: rng_seed ^ 0x666f_6361_5357_494d,
            next_anti_entropy,
            stats: MembershipStats::default(),
            version_clock: (now, own.version),
        };
        m.set_own(own);
        m
    }

    /// Judges records with `auth` from now on, and signs ours with it (a reload of the
    /// node's certificate or CAs; the key stays).
    pub fn set_auth(&mut self, auth: Box<dyn RecordAuth>) {
        self.auth = auth;
    }

    /// Replaces our own record's contents (containers, endpoint, ...): bumps its version and
    /// spreads it. The key cannot change.
    pub fn update_own(&mut self, _now: Instant, f: impl FnOnce(&mut Record)) {
        let mut r = self.own.clone();
        f(&mut r);
        r.key = self.own.key;
        r.version = r.version.max(self.own.version + 1);
        self.set_own(r);
    }

    /// Our key changed (a reload with a new key file): our record moves to `key` with `cert`,
    /// signed with `auth` at a version above the old one, and foca declares the old identity
    /// down and gossips the new one. Members that take the new record drop the old identity at
    /// once (same name, older record: see the engine's `apply_record`).
    pub fn change_key(&mut self, now: Instant, key: NodeKey, cert: Vec<u8>, auth: Box<dyn RecordAuth>) {
        if key == self.own.key {
            self.set_auth(auth);
            self.update_own(now, |r| r.cert = cert);
            return;
        }
        self.auth = auth;
        let old = self.own.key;
        self.index.update(old, self.indexed_own.take(), None);
        self.rumors.forget(&old);
        let mut r = self.own.clone();
        r.key = key;
        r.cert = cert;
        r.version = self.own.version + 1;
        let id = SwimId::new(key, r.endpoint, r.version);
        if let Err(e) = self.foca.change_identity(id.clone(), &mut self.swim_out) {
            tracing::debug!(error = %e, "SWIM identity change");
        }
        self.id = id;
        self.set_own(r);
        self.drain_swim(now);
    }

    /// Shares verified records with the other instances using `cache` (see [`RecordCache`]:
    /// only between instances that trust alike).
    /// Call it before any input: foca starts afresh, decoding identities through the cache.
    pub fn share_records(&mut self, cache: RecordCache) {
        debug_assert_eq!(self.foca.num_members(), 0, "share_records after members joined");
        let rng = SmallRng::seed_from_u64(self.foca_seed);
        let codec = SwimCodec { ids: Some(cache.ids.clone()) };
        self.foca = Foca::new(self.id.clone(), self.cfg.swim_config(1), rng, codec);
        self.record_cache = Some(cache);
    }

    /// Our own record.
    pub fn own(&self) -> &Record {
        &self.own
    }

    /// A seed reached: the engine dialled `endpoint` and the handshake told us its `key`.
    /// Announces to it now, again with doubling backoff while we have no members, then every
    /// `announce_period`.
    pub fn add_seed(&mut self, now: Instant, key: NodeKey, endpoint: SocketAddr) {
        if key == self.own.key {
            return;
        }
        let backoff = self.cfg.probe_period.min(self.cfg.seed_backoff_max);
        self.seeds.insert(key, Seed { endpoint, next: now + backoff, backoff });
        self.admit(now, key);
        self.announce_to_seed(now, key);
    }

    /// Bytes from an authenticated member.
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: NodeKey,
        bytes: &[u8],
    ) -> Result<(), MembershipError> {
        self.stats.messages_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        if from == self.own.key {
            self.stats.malformed += 1;
            return Err(MembershipError::FromOurselves);
        }
        if self.banned.contains(&from) {
            return Err(MembershipError::Banned);
        }
        self.admit(now, from);
        self.heard_from(now, from);
        let result = Msg::decode(bytes).and_then(|msg| match msg {
            Msg::Swim(packet) => self.handle_swim(now, from, &packet),
            Msg::Notices(notices) => {
                self.handle_notices(now, from, notices);
                Ok(())
            }
            Msg::Pull(reqs) => {
                self.handle_pull(now, from, reqs);
                Ok(())
            }
            Msg::Chunk(chunk) => self.handle_chunk(now, from, chunk),
            Msg::Digest(ranges) => self.handle_digest(now, from, ranges),
            Msg::Revocations(list) => {
                self.take_revocations(now, from, list);
                Ok(())
            }
            Msg::Suspect(note) => {
                self.handle_suspect(now, from, note);
                Ok(())
            }
            Msg::Probe(nonce) => {
                self.handle_probe(from, nonce);
                Ok(())
            }
            Msg::ProbeAck(_) => Ok(()),
        });
        if let Err(e) = &result {
            match e {
                MembershipError::Swim(_) => self.stats.swim_errors += 1,
                MembershipError::Spoofed => self.stats.spoofed += 1,
                MembershipError::Forged(_) => self.stats.records_forged += 1,
                MembershipError::Banned => {}
                _ => self.stats.malformed += 1,
            }
            tracing::debug!(peer = %from, error = %e, "membership message refused");
        }
        result
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.run_swim_timers(now);
        self.run_checks(now);
        if now >= self.next_tick {
            self.next_tick = now + self.cfg.tick();
            self.tick(now);
        }
        if now >= self.next_anti_entropy {
            self.next_anti_entropy = now + jitter(&mut self.rng, self.cfg.anti_entropy_period);
            if let Some(to) = self.random_up_members(1).pop() {
                self.send_digest_root(to);
            }
        }
        self.run_seeds(now);
    }

    /// When `handle_timeout` must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let swim = self.swim_timers.keys().next().map(|(t, _)| *t);
        let seeds = self.seeds.values().map(|s| s.next).min();
        [Some(self.next_tick), Some(self.next_anti_entropy), swim, seeds, self.next_check()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Next message: (to, the endpoint to use if known, bytes ≤ [`MAX_MESSAGE`]).
    pub fn poll_transmit(&mut self) -> Option<(NodeKey, Option<SocketAddr>, Vec<u8>)> {
        let Some((to, bytes)) = self.transmits.pop_front() else {
            shrink_drained(&mut self.transmits);
            return None;
        };
        self.stats.messages_out += 1;
        self.stats.bytes_out += bytes.len() as u64;
        Some((to, self.endpoint_of(&to), bytes))
    }

    /// Next event for the engine.
    pub fn poll_event(&mut self) -> Option<MemberEvent> {
        let ev = self.events.pop_front();
        if ev.is_none() {
            shrink_drained(&mut self.events);
        }
        ev
    }

    /// Every member we know of but ourselves, in key order.
    pub fn members(&self) -> Vec<(NodeKey, MemberState)> {
        self.peers.iter().filter_map(|(k, p)| Some((*k, self.member_state(k, p.live())?))).collect()
    }

    /// What we know of `key`'s liveness (`None`: not a member here).
    pub fn member_state_of(&self, key: &NodeKey) -> Option<MemberState> {
        self.member_state(key, self.peers.get(key)?.live())
    }

    fn member_state(&self, key: &NodeKey, live: Live) -> Option<MemberState> {
        match live {
            Live::Unknown => None,
            Live::Down(_) => Some(MemberState::Down),
            Live::Up if self.foca.member(key).is_some_and(|m| m.state() == foca::State::Suspect) => {
                Some(MemberState::Suspect)
            }
            Live::Up => Some(MemberState::Alive),
        }
    }

    /// The latest record we hold of `key` (our own for our key), whatever its liveness.
    pub fn record(&self, key: &NodeKey) -> Option<&Record> {
        if *key == self.own.key {
            return Some(&self.own);
        }
        self.peers.get(key)?.held.as_ref().map(|h| &h.record)
    }

    /// Records of alive-or-suspect members (not dead or removed), ourselves excluded.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.peers
            .values()
            .filter(|p| p.live() == Live::Up)
            .filter_map(|p| p.held.as_ref().map(|h| &h.record))
    }

    /// The CA revoked `key`: its record goes now (the engine gets `Removed`), no record of it
    /// is taken again, nothing is sent to it, and foca holds it down so nobody probes it.
    pub fn ban(&mut self, now: Instant, key: NodeKey) {
        if key == self.own.key || !self.banned.insert(key) {
            return;
        }
        self.expel(now, key);
    }

    /// `key`'s certificate is no longer accepted here (a reload dropped its CA): its record
    /// goes now (the engine gets `Removed`) and foca holds it down. Unlike [`Self::ban`], a
    /// newer record with a certificate we accept lets it in again.
    pub fn expel(&mut self, now: Instant, key: NodeKey) {
        if key == self.own.key {
            return;
        }
        if let Some(h) = self.peers.get(&key).and_then(|p| p.held.as_ref()) {
            self.tombstones.insert(key, (h.record.version, now + self.cfg.dead_grace * 10));
        }
        let down: Vec<_> = self
            .foca
            .member(&key)
            .map(|m| foca::Member::new(m.id().clone(), m.incarnation(), foca::State::Down))
            .into_iter()
            .collect();
        if let Err(e) = self.foca.apply_many(down.into_iter(), true, &mut self.swim_out) {
            tracing::trace!(error = %e, "SWIM apply");
        }
        self.drain_swim(now);
        if self.peers.contains_key(&key) {
            self.touch_peer(key, |p| p.held = None);
            self.peers.remove(&key);
        }
        self.pulls.remove(&key);
        self.rumors.forget(&key);
        self.admitted.remove(&key);
        self.pending_up.remove(&key);
        self.events.push_back(MemberEvent::Removed(key));
    }

    /// `key` is vouched for (see `admitted`): a SWIM identity of it waiting is let in.
    pub(crate) fn admit(&mut self, now: Instant, key: NodeKey) {
        if key == self.own.key || self.banned.contains(&key) || self.is_admitted(&key) {
            return;
        }
        if !self.has_room(&key) {
            self.stats.members_full += 1;
            return;
        }
        match self.peers.get_mut(&key) {
            Some(p) => p.admitted = true,
            None => {
                self.admitted.insert(key);
            }
        }
        if self.admitted.len() > self.cfg.max_members.saturating_mul(2) {
            // Keys of members long gone: they are vouched for again when they come back.
            let peers = &self.peers;
            self.admitted.retain(|k| *k == key || peers.contains_key(k));
        }
        if let Some((id, held)) = self.pending_up.remove(&key) {
            self.on_swim_note(now, foca::OwnedNotification::MemberUp(id));
            for bytes in held {
                self.send(key, bytes);
            }
        }
    }

    /// Whether `key` may take a place among the members: it holds one, or fewer than
    /// `max_members` (ourselves included) are known. A certificate is enough to become a
    /// member, so the count is what bounds the state another member's CA mistakes can cost.
    pub(super) fn has_room(&self, key: &NodeKey) -> bool {
        *key == self.own.key || self.peers.contains_key(key) || self.peers.len() + 1 < self.cfg.max_members
    }

    /// Whether `key` is vouched for (see `admitted`).
    pub(super) fn is_admitted(&self, key: &NodeKey) -> bool {
        self.peers.get(key).is_some_and(|p| p.admitted) || self.admitted.contains(key)
    }

    /// Forgets `key`'s entry; a member vouched for stays so (it is let in at once if it
    /// comes back).
    pub(super) fn drop_peer(&mut self, key: &NodeKey) {
        if self.peers.remove(key).is_some_and(|p| p.admitted) {
            self.admitted.insert(*key);
        }
        self.links.remove(key);
    }

    /// Whether `key` was banned.
    pub fn is_banned(&self, key: &NodeKey) -> bool {
        self.banned.contains(key)
    }

    /// Sends encoded revocations to `to`, or to every member that is up.
    pub fn send_revocations(&mut self, to: Option<NodeKey>, list: Vec<Vec<u8>>) {
        let targets = match to {
            Some(k) => vec![k],
            None => self.peers.iter().filter(|(_, p)| p.live() == Live::Up).map(|(k, _)| *k).collect(),
        };
        let msgs = wire::pack(list, Msg::Revocations);
        for t in targets {
            for m in &msgs {
                self.send(t, m.clone());
            }
        }
    }

    /// Next revocation received from a member (unverified: the engine checks the CA's
    /// signature).
    pub fn poll_revocation(&mut self) -> Option<Vec<u8>> {
        self.revocations_in.pop_front()
    }

    /// Queues revocation entries from `from` for the engine to verify: those of keys already
    /// banned here are dropped unread (relays repeat them), the rest spend `from`'s credit
    /// (a bucket of [`REVOCATION_BURST`] entries refilled at [`REVOCATION_RATE`] per second);
    /// beyond it, or beyond the queue, they are dropped and counted.
    fn take_revocations(&mut self, now: Instant, from: NodeKey, list: Vec<Vec<u8>>) {
        let (at, credit) = self.revocation_credit.entry(from).or_insert((now, REVOCATION_BURST));
        let refill = now.saturating_duration_since(*at).as_secs_f64() * REVOCATION_RATE;
        *credit = (*credit + refill).min(REVOCATION_BURST);
        *at = now;
        for bytes in list {
            let known = overlay_proto::cert::Revocation::decode(&bytes)
                .is_ok_and(|r| self.banned.contains(&NodeKey(r.public_key)));
            if known {
                continue;
            }
            if *credit < 1.0 || self.revocations_in.len() >= MAX_REVOCATIONS_QUEUED {
                self.stats.revocations_throttled += 1;
                continue;
            }
            *credit -= 1.0;
            self.revocations_in.push_back(bytes);
        }
    }

    /// Counters.
    pub fn stats(&self) -> MembershipStats {
        self.stats
    }

    fn set_own(&mut self, own: Record) {
        self.own = own;
        let wr = WireRecord { id: self.id.clone(), record: self.own.clone() };
        self.own_wire = SignedRecord::encode(&wr, self.auth.as_ref());
        if self.own_wire.len() > self.cfg.max_record_len {
            self.stats.own_record_too_large += 1;
            warn!(
                len = self.own_wire.len(),
                max = self.cfg.max_record_len,
                "own membership record too large"
            );
        }
        let key = self.own.key;
        self.index.update(key, self.indexed_own, Some(self.own.version));
        self.indexed_own = Some(self.own.version);
        let rounds = MembershipConfig::rumor_rounds(self.foca.num_members() + 1);
        self.rumors.add(key, self.own.version, rounds);
    }

    /// Whether `version` could have been made by an honest clock by `now` (within
    /// [`VERSION_SKEW`]); a version beyond that (a "version bomb" that would freeze a record
    /// at the top of the range) is refused and counted.
    fn version_plausible(&mut self, now: Instant, version: u64) -> bool {
        let (at, start) = self.version_clock;
        let millis = (now.saturating_duration_since(at) + VERSION_SKEW).as_millis();
        let limit = start.saturating_add(u64::try_from(millis).unwrap_or(u64::MAX).saturating_mul(1 << 16));
        let ok = version <= limit;
        if !ok {
            self.stats.versions_refused += 1;
        }
        ok
    }

    /// Our record was seen at `version` elsewhere (an earlier run of ours): move above it.
    fn bump_own_above(&mut self, now: Instant, version: u64) {
        if version <= self.own.version || !self.version_plausible(now, version) {
            return;
        }
        let Some(next) = version.checked_add(1) else { return };
        if self.id.renewal <= version {
            let new_id = self.id.with_renewal(next);
            if self.foca.change_identity(new_id.clone(), &mut self.swim_out).is_ok() {
                self.id = new_id;
            }
        }
        let mut r = self.own.clone();
        r.version = next;
        self.set_own(r);
    }

    fn tick(&mut self, now: Instant) {
        if !self.rumors.is_empty() {
            let targets = self.random_up_members(RUMOR_FANOUT);
            if !targets.is_empty() {
                let msgs = wire::pack(self.rumors.take_round(MAX_NOTICES), Msg::Notices);
                for to in targets {
                    for m in &msgs {
                        self.send(to, m.clone());
                    }
                }
            }
        }
        let (asks, dropped) = self.reassembly.sweep(now, self.cfg.tick() * 2);
        self.stats.reassemblies_dropped += dropped;
        for (from, req) in asks {
            self.send(from, Msg::Pull(vec![req]).encode());
        }
        self.pulls.retain(|_, p| p.deadline > now);
        while let Some(&(at, key)) = self.removals.first() {
            if at > now {
                break;
            }
            self.removals.pop_first();
            self.remove_if_dead(now, key);
        }
        self.prune_pull_credit(now);
        self.tombstones.retain(|_, (_, until)| *until > now);
        self.undead_challenges.retain(|_, deadline| *deadline > now);
        self.retune_swim();
        self.forget_old_links(now);
        self.expire_suspicions(now);
        self.drain_swim(now);
    }

    fn remove_if_dead(&mut self, now: Instant, key: NodeKey) {
        let Some(p) = self.peers.get(&key) else { return };
        let Live::Down(at) = p.live() else { return };
        if self.version_clock.0 + Duration::from_secs(u64::from(at)) + self.cfg.dead_grace > now {
            return;
        }
        if let Some(h) = &p.held {
            self.tombstones.insert(key, (h.record.version, now + self.cfg.dead_grace * 10));
        }
        self.drop_peer(&key);
        self.pull_credit.remove(&key);
        self.revocation_credit.remove(&key);
        self.events.push_back(MemberEvent::Removed(key));
    }

    fn run_seeds(&mut self, now: Instant) {
        let due: Vec<NodeKey> = self.seeds.iter().filter(|(_, s)| s.next <= now).map(|(k, _)| *k).collect();
        for key in due {
            self.announce_to_seed(now, key);
            let joined = self.foca.num_members() > 0;
            let initial = self.cfg.probe_period.min(self.cfg.seed_backoff_max);
            let period = jitter(&mut self.rng, self.cfg.announce_period);
            if let Some(s) = self.seeds.get_mut(&key) {
                s.backoff = if joined { initial } else { (s.backoff * 2).min(self.cfg.seed_backoff_max) };
                s.next = now + if joined { period } else { s.backoff };
            }
        }
    }

    /// `now` as `Live::Down` holds it: whole seconds since we started, rounded down.
    pub(super) fn seconds_since_start(&self, now: Instant) -> u32 {
        let secs = now.saturating_duration_since(self.version_clock.0).as_secs();
        u32::try_from(secs).unwrap_or(u32::MAX)
    }

    /// Applies `f` to `key`'s entry (created if absent), keeping the digest index in step.
    fn touch_peer<R>(&mut self, key: NodeKey, f: impl FnOnce(&mut Peer) -> R) -> R {
        let admitted = &mut self.admitted;
        let p = self.peers.entry(key).or_insert_with(|| Peer::new(admitted.remove(&key)));
        let before = p.set_version();
        let r = f(p);
        let after = p.set_version();
        self.index.update(key, before, after);
        r
    }

    /// The anti-entropy set's items in `range`, in key order: held records of members not
    /// known to be down, and our own.
    pub(super) fn set_items(&self, range: wire::RangeId) -> Vec<(NodeKey, u64)> {
        let (lo, hi) = range.prefix_bounds();
        let lo = digest::key_at(lo);
        let iter = match hi {
            Some(hi) => self.peers.range(lo..digest::key_at(hi)),
            None => self.peers.range(lo..),
        };
        let mut items: Vec<(NodeKey, u64)> = iter.filter_map(|(k, p)| Some((*k, p.set_version()?))).collect();
        if let Some(v) = self.indexed_own.filter(|_| range.contains(self.own.key.prefix64())) {
            let at = items.partition_point(|(k, _)| *k < self.own.key);
            items.insert(at, (self.own.key, v));
        }
        items
    }

    /// Fingerprint and count of the anti-entropy set's items in `range`.
    pub(super) fn set_summary(&self, range: wire::RangeId) -> (u64, u32) {
        self.index.summary(range).unwrap_or_else(|| digest::fold(self.set_items(range).into_iter()))
    }

    /// Up to `n` distinct random alive-or-suspect members other than `not`.
    fn random_up_members_except(&mut self, n: usize, not: &NodeKey) -> Vec<NodeKey> {
        let mut out = self.random_up_members(n + 1);
        out.retain(|k| k != not);
        out.truncate(n);
        out
    }

    /// Up to `n` distinct random alive-or-suspect members (drawn from foca's list, whose
    /// active members are ours once vouched for).
    fn random_up_members(&mut self, n: usize) -> Vec<NodeKey> {
        let peers = &self.peers;
        let is_up = |m: &foca::Member<SwimId>| peers.get(&m.id().key).is_some_and(|p| p.live() == Live::Up);
        let mut chosen = Vec::with_capacity(n);
        self.foca.sample_members(n, &mut self.rng, is_up, &mut chosen);
        chosen.into_iter().map(|m| m.id().key).collect()
    }

    fn send(&mut self, to: NodeKey, bytes: Vec<u8>) {
        if to == self.own.key || self.banned.contains(&to) {
            return;
        }
        if !self.is_admitted(&to) {
            match self.pending_up.get_mut(&to) {
                Some((_, held)) if held.len() < MAX_HELD_PER_IDENTITY => held.push(bytes),
                _ => self.stats.unvouched_sends_dropped += 1,
            }
            return;
        }
        if self.transmits.len() >= MAX_QUEUED {
            self.stats.transmit_dropped += 1;
            return;
        }
        self.transmits.push_back((to, bytes));
    }

    fn endpoint_of(&self, key: &NodeKey) -> Option<SocketAddr> {
        let peer = self.peers.get(key);
        let from_record = peer.and_then(|p| p.held.as_ref()).map(|h| h.record.endpoint);
        let from_id = self.foca.member(key).map(|m| m.id().endpoint);
        from_record.or(from_id).or_else(|| self.seeds.get(key).map(|s| s.endpoint))
    }
}

/// Gives back the room of a drained queue that a burst grew (a node that learned thousands
/// of members at once), so it is not held for good: the simulator keeps thousands of nodes.
fn shrink_drained<T>(q: &mut VecDeque<T>) {
    if q.capacity() > 1024 {
        q.shrink_to(64);
    }
}

/// `period` scaled by a random factor in [0.75, 1.25), so nodes do not synchronise.
fn jitter(rng: &mut SmallRng, period: Duration) -> Duration {
    period.mul_f64(rng.random_range(0.75..1.25)).max(Duration::from_millis(1))
}
