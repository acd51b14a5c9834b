//! The SWIM side: our foca identity, the runtime that collects foca's output, and the glue
//! that turns it into transmits, timers and member events.
//!
//! Invariants: foca only sees packets whose header source is the authenticated sender; every
//! foca call is followed by `drain_swim`, so its output never waits for another input.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use foca::{Codec, Identity, Member, Notification, OwnedNotification, PostcardCodec, Runtime, Timer};
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};

use super::error::MembershipError;
use super::peers::WeakMap;
use super::record::NodeKey;
use super::wire::{Msg, RangeId, Summary};
use super::{Live, MemberEvent, Membership};

/// Our foca instance.
pub(crate) type Foca = foca::Foca<SwimId, SwimCodec, SmallRng, foca::NoCustomBroadcast>;

/// A node's SWIM identity. Members are deduplicated by key; of two identities with one key
/// the higher renewal wins, so a restarted node (renewal = its new starting record version)
/// or one rejoining after a false down (renewal + 1) replaces its old self.
///
/// A pointer to shared, immutable [`IdParts`]: foca keeps one per member, so a member
/// costs foca 16 bytes rather than 80, and the instances of one process that share an
/// [`IdCache`] (the simulator's thousands of nodes) hold each identity once. Encoded exactly as
/// `IdParts`.
#[derive(Clone)]
pub(crate) struct SwimId(Arc<IdParts>);

/// What a [`SwimId`] says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IdParts {
    pub key: NodeKey,
    /// Where the node was reachable when it took this identity (its record is newer).
    pub endpoint: SocketAddr,
    pub renewal: u64,
}

impl SwimId {
    pub(crate) fn new(key: NodeKey, endpoint: SocketAddr, renewal: u64) -> Self {
        Self(Arc::new(IdParts { key, endpoint, renewal }))
    }

    /// The same identity at another renewal.
    pub(crate) fn with_renewal(&self, renewal: u64) -> Self {
        Self::new(self.key, self.endpoint, renewal)
    }
}

impl std::ops::Deref for SwimId {
    type Target = IdParts;

    fn deref(&self) -> &IdParts {
        &self.0
    }
}

impl PartialEq for SwimId {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}
impl Eq for SwimId {}

impl std::fmt::Debug for SwimId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for SwimId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SwimId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IdParts::deserialize(d).map(|p| Self(Arc::new(p)))
    }
}

impl Identity for SwimId {
    type Addr = NodeKey;

    fn renew(&self) -> Option<Self> {
        Some(self.with_renewal(self.renewal.checked_add(1)?))
    }

    fn addr(&self) -> NodeKey {
        self.key
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.renewal > adversary.renewal
    }
}

/// Identities shared by the [`Membership`] instances of one process (see
/// [`super::RecordCache`], which carries one): an identity decoded by one instance is held by
/// all that decode it while any holds it.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdCache {
    ids: WeakMap<NodeKey, IdParts>,
}

impl IdCache {
    /// The shared copy of `id` (which becomes the shared one if there is none).
    fn intern(&self, id: SwimId) -> SwimId {
        match self.ids.get(&id.key) {
            Some(held) if *held == *id.0 => SwimId(held),
            _ => {
                self.ids.put(id.key, &id.0);
                id
            }
        }
    }
}

/// foca's wire codec (postcard, as `foca::PostcardCodec`) that hands decoded identities to an
/// [`IdCache`] when the instance shares one.
#[derive(Debug, Default)]
pub(crate) struct SwimCodec {
    pub(crate) ids: Option<IdCache>,
}

impl SwimCodec {
    fn shared(&self, id: SwimId) -> SwimId {
        match &self.ids {
            Some(cache) => cache.intern(id),
            None => id,
        }
    }
}

impl Codec<SwimId> for SwimCodec {
    type Error = postcard::Error;

    fn encode_header(&mut self, header: &foca::Header<SwimId>, buf: impl BufMut) -> Result<(), Self::Error> {
        PostcardCodec.encode_header(header, buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<foca::Header<SwimId>, Self::Error> {
        let mut header: foca::Header<SwimId> = PostcardCodec.decode_header(buf)?;
        header.src = self.shared(header.src);
        Ok(header)
    }

    fn encode_member(&mut self, member: &Member<SwimId>, buf: impl BufMut) -> Result<(), Self::Error> {
        PostcardCodec.encode_member(member, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<SwimId>, Self::Error> {
        let m: Member<SwimId> = PostcardCodec.decode_member(buf)?;
        Ok(Member::new(self.shared(m.id().clone()), m.incarnation(), m.state()))
    }
}

/// Collects what foca asks for during one call.
#[derive(Default)]
pub(crate) struct SwimOut {
    sends: Vec<(SwimId, Vec<u8>)>,
    timers: Vec<(Duration, Timer<SwimId>)>,
    notes: Vec<OwnedNotification<SwimId>>,
}

impl SwimOut {
    fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.timers.is_empty() && self.notes.is_empty()
    }
}

impl Runtime<SwimId> for SwimOut {
    fn notify(&mut self, notification: Notification<'_, SwimId>) {
        self.notes.push(notification.to_owned());
    }

    fn send_to(&mut self, to: SwimId, data: &[u8]) {
        self.sends.push((to, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<SwimId>, after: Duration) {
        self.timers.push((after, event));
    }
}

impl Membership {
    /// A foca packet from `from` (already authenticated by the engine).
    pub(super) fn handle_swim(
        &mut self,
        now: Instant,
        from: NodeKey,
        packet: &[u8],
    ) -> Result<(), MembershipError> {
        let (header, _) = postcard::take_from_bytes::<foca::Header<SwimId>>(packet)?;
        if header.src.key != from {
            return Err(MembershipError::Spoofed);
        }
        if header.message == foca::Message::TurnUndead && !self.confirm_turn_undead(now, header.src) {
            return Ok(());
        }
        let result = self.foca.handle_data(packet, &mut self.swim_out);
        self.swim_from = Some(from);
        self.drain_swim(now);
        self.swim_from = None;
        Ok(result?)
    }

    /// foca 2.0 also tells a member it is down when the suspicion timer fires after the member
    /// refuted it, and obeying would renew our identity for nothing. So a first "you are down"
    /// only makes us announce to its sender: one that really holds us down answers that with
    /// another, which we then believe.
    fn confirm_turn_undead(&mut self, now: Instant, src: SwimId) -> bool {
        let key = src.key;
        if self.undead_challenges.get(&key).is_some_and(|deadline| *deadline > now) {
            self.undead_challenges.remove(&key);
            return true;
        }
        self.stats.turn_undead_challenged += 1;
        self.undead_challenges.insert(key, now + self.cfg.probe_period * 2);
        if let Err(e) = self.foca.announce(src, &mut self.swim_out) {
            tracing::trace!(error = %e, "SWIM announce");
        }
        self.drain_swim(now);
        false
    }

    /// Runs foca's timers due at `now`.
    pub(super) fn run_swim_timers(&mut self, now: Instant) {
        while let Some(entry) = self.swim_timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            if let Err(e) = self.foca.handle_timer(timer, &mut self.swim_out) {
                tracing::trace!(error = %e, "SWIM timer");
            }
            self.drain_swim(now);
        }
    }

    /// Turns foca's collected output into transmits, timers and events.
    pub(super) fn drain_swim(&mut self, now: Instant) {
        while !self.swim_out.is_empty() {
            let out = std::mem::take(&mut self.swim_out);
            for (after, timer) in out.timers {
                self.timer_seq += 1;
                self.swim_timers.insert((now + after, self.timer_seq), timer);
            }
            for (to, data) in out.sends {
                self.send(to.key, Msg::Swim(data).encode());
            }
            for note in out.notes {
                self.on_swim_note(now, note);
            }
        }
    }

    pub(super) fn on_swim_note(&mut self, now: Instant, note: OwnedNotification<SwimId>) {
        match note {
            OwnedNotification::MemberUp(id) if self.banned.contains(&id.key) => {
                // Gossip from a member that has not heard of the revocation yet.
                tracing::debug!(key = %id.key, "revoked member reported up; ignored");
            }
            OwnedNotification::MemberUp(id) if !self.is_admitted(&id.key) => {
                if self.pending_up.len() < super::MAX_PENDING_UP || self.pending_up.contains_key(&id.key) {
                    // Whoever told us of it most likely holds its record: ask for it, so a
                    // real member is vouched for within a round trip.
                    if let Some(from) = self.swim_from.filter(|f| *f != id.key) {
                        let req = super::wire::PullReq { key: id.key, version: 0, chunks: None };
                        self.send(from, Msg::Pull(vec![req]).encode());
                    }
                    match self.pending_up.get_mut(&id.key) {
                        Some(entry) => entry.0 = id,
                        None => {
                            self.pending_up.insert(id.key, (id, Vec::new()));
                        }
                    }
                } else {
                    self.stats.identities_unvouched += 1;
                }
            }
            OwnedNotification::MemberUp(id) if !self.has_room(&id.key) => {
                // Admitted once, gone since, and the table filled up meanwhile.
                self.stats.members_full += 1;
            }
            OwnedNotification::MemberUp(id) => {
                let key = id.key;
                let came_up = self.touch_peer(key, |p| p.set_live(Live::Up) != Live::Up);
                if came_up {
                    self.events.push_back(MemberEvent::Up(key));
                }
            }
            OwnedNotification::MemberDown(id) if !self.peers.contains_key(&id.key) => {
                self.pending_up.remove(&id.key);
            }
            OwnedNotification::MemberDown(id) => {
                let key = id.key;
                let at = self.seconds_since_start(now);
                self.touch_peer(key, |p| p.set_live(Live::Down(at)));
                self.removals.insert((now + self.cfg.dead_grace, key));
                self.events.push_back(MemberEvent::Down(key));
                // Pass the news on now rather than at the next gossip tick: each hop of the
                // epidemic then costs a network delay instead of up to a tick, which at
                // 10,000 nodes (7 hops) is most of the time it takes to reach everyone. Downs
                // are rare, so this is a few messages per node per failure.
                if let Err(e) = self.foca.gossip(&mut self.swim_out) {
                    tracing::trace!(error = %e, "SWIM gossip");
                }
            }
            OwnedNotification::Rename(..) => {
                // foca holds the identity; `Peer` keeps only what is ours.
            }
            OwnedNotification::Rejoin(id) => {
                // We were declared down and renewed our identity: a newer record tells the
                // cluster which identity is current.
                tracing::debug!(renewal = id.renewal, "rejoined under a renewed identity");
                self.id = id;
                let mut r = self.own.clone();
                r.version = (r.version + 1).max(self.id.renewal);
                self.set_own(r);
            }
            OwnedNotification::MemberSuspect(id, incarnation) => {
                self.track_suspicion(now, &id, incarnation);
            }
            OwnedNotification::ProbeFailed(_, id) => self.first_hand_failure(now, id),
            OwnedNotification::Active | OwnedNotification::Idle | OwnedNotification::Defunct => {
                tracing::debug!(?note, "SWIM connection state");
            }
        }
    }

    /// Tells foca about an identity learned from a record, unless it knows it or a newer one.
    pub(super) fn learn_identity(&mut self, now: Instant, id: &super::swim::SwimId) {
        if id.key == self.own.key || self.banned.contains(&id.key) {
            return;
        }
        let known = self.foca.member(&id.key).map(|m| m.id());
        if known.is_some_and(|k| k.renewal >= id.renewal) {
            return;
        }
        let update = std::iter::once(Member::alive(id.clone()));
        if let Err(e) = self.foca.apply_many(update, false, &mut self.swim_out) {
            tracing::trace!(error = %e, "SWIM apply");
        }
        self.drain_swim(now);
    }

    /// Announces to a seed and offers it our digest.
    pub(super) fn announce_to_seed(&mut self, now: Instant, key: NodeKey) {
        let Some(endpoint) = self.seeds.get(&key).map(|s| s.endpoint) else { return };
        let known = self.foca.member(&key).map(|m| m.id().clone());
        let dst = known.unwrap_or_else(|| SwimId::new(key, endpoint, 0));
        if let Err(e) = self.foca.announce(dst, &mut self.swim_out) {
            tracing::trace!(error = %e, "SWIM announce");
        }
        self.drain_swim(now);
        self.send_digest_root(key);
    }

    /// Sends `to` the root fingerprint of our record set.
    pub(super) fn send_digest_root(&mut self, to: NodeKey) {
        let (fp, count) = self.set_summary(RangeId::ROOT);
        let range = super::wire::Range { id: RangeId::ROOT, summary: Summary::Fingerprint { fp, count } };
        self.send(to, Msg::Digest(vec![range]).encode());
    }

    /// Adjusts foca's dissemination count and suspicion timeout to the cluster size.
    pub(super) fn retune_swim(&mut self) {
        let cfg = self.cfg.swim_config(self.foca.num_members() + 1);
        let tuned = (cfg.max_transmissions.get(), cfg.suspect_to_down_after);
        if tuned != self.swim_tuned && self.foca.set_config(cfg).is_ok() {
            self.swim_tuned = tuned;
        }
    }
}

#[cfg(test)]
impl Membership {
    /// A rogue's tool for tests: makes this node's foca believe in a member `key` at
    /// `endpoint`, which it then gossips like any other.
    pub(crate) fn invent_identity(&mut self, now: Instant, key: NodeKey, endpoint: SocketAddr) {
        let id = SwimId::new(key, endpoint, 1);
        if let Err(e) = self.foca.apply_many(std::iter::once(Member::alive(id)), false, &mut self.swim_out) {
            tracing::trace!(error = %e, "SWIM apply");
        }
        self.drain_swim(now);
    }
}
