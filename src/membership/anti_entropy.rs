//! Record exchange: rumors, pulls, chunks, and the anti-entropy digest protocol.
//!
//! Digest protocol, per key range: a fingerprint that matches ends the exchange; one that
//! differs is answered with our item list if we hold few items, with our own fingerprint if
//! the sender holds few (so it answers with its list), else with the 16 sub-ranges' fingerprints.
//! An item list ends it: its receiver pulls what it lacks and pushes what the sender lacks.
//! Each step goes one nibble deeper or ends, so an exchange takes at most 17 round trips.
//!
//! Acceptance: a record for key K is taken from anyone, if K's owner signed it (see [`super::auth`]),
//! its version is above the one held and above K's tombstone; our own key's record never is (a
//! newer copy makes us bump ours).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::error::MembershipError;
use super::record::NodeKey;
#[cfg(test)]
use super::record::Record;
use super::wire::{self, Chunk, Msg, Notice, PullReq, Range, RangeId, SignedRecord, Summary, MAX_DEPTH};
use super::{Held, Live, MemberEvent, Membership, MembershipConfig, PendingPull};

/// Ranges holding at most this many items are exchanged as item lists.
pub(crate) const ITEMS_MAX: usize = 16;
/// Most records being pulled at once: notices of invented keys cannot grow the table beyond
/// it (a refused pull is asked again at the next notice or digest).
const MAX_PENDING_PULLS: usize = 16_384;
/// Record bytes one member may pull from us per second, and in one burst (a joining node
/// pulling thousands of records from its seed gets them within seconds).
const PULL_RATE: usize = 1 << 20;
const PULL_BURST: usize = 4 << 20;
/// Record bytes pushed in answer to one message (at least one record always goes).
const PUSH_BUDGET: usize = 256 * 1024;

impl Membership {
    pub(super) fn handle_digest(
        &mut self,
        now: Instant,
        from: NodeKey,
        ranges: Vec<Range>,
    ) -> Result<(), MembershipError> {
        let valid = |r: &Range| match &r.summary {
            Summary::Fingerprint { .. } => r.id.is_valid(),
            Summary::Items(items) => r.id.is_valid() && items.len() <= ITEMS_MAX,
        };
        if !ranges.iter().all(valid) {
            return Err(MembershipError::Invalid("digest range"));
        }
        let mut reply = Vec::new();
        let mut pulls = Vec::new();
        let mut budget = PUSH_BUDGET;
        for range in ranges {
            match range.summary {
                Summary::Fingerprint { fp, count } => {
                    let (my_fp, my_count) = self.set_summary(range.id);
                    if (my_fp, my_count) == (fp, count) {
                        continue;
                    }
                    if my_count as usize <= ITEMS_MAX || range.id.depth == MAX_DEPTH {
                        let mut items = self.set_items(range.id);
                        items.truncate(ITEMS_MAX);
                        reply.push(Range { id: range.id, summary: Summary::Items(items) });
                    } else if count as usize <= ITEMS_MAX {
                        let summary = Summary::Fingerprint { fp: my_fp, count: my_count };
                        reply.push(Range { id: range.id, summary });
                    } else {
                        for id in range.id.children() {
                            let (fp, count) = self.set_summary(id);
                            reply.push(Range { id, summary: Summary::Fingerprint { fp, count } });
                        }
                    }
                }
                Summary::Items(items) => {
                    self.reconcile(now, from, range.id, items, &mut pulls, &mut budget);
                }
            }
        }
        for m in wire::pack(reply, Msg::Digest) {
            self.send(from, m);
        }
        for m in wire::pack(pulls, Msg::Pull) {
            self.send(from, m);
        }
        Ok(())
    }

    /// The peer holds exactly `theirs` in `range`: pull what we lack, push what it lacks.
    fn reconcile(
        &mut self,
        now: Instant,
        from: NodeKey,
        range: RangeId,
        theirs: Vec<(NodeKey, u64)>,
        pulls: &mut Vec<PullReq>,
        budget: &mut usize,
    ) {
        let theirs: BTreeMap<NodeKey, u64> =
            theirs.into_iter().filter(|(k, _)| range.contains(k.prefix64())).collect();
        for (&key, &version) in &theirs {
            if key == self.own.key {
                self.bump_own_above(now, version);
            } else if self.version_plausible(now, version) && self.wants(now, &key, version) {
                let deadline = now + self.cfg.tick() * 10;
                self.pulls.insert(key, PendingPull { version, deadline, hot: false });
                pulls.push(PullReq { key, version, chunks: None });
            }
        }
        let lacking: Vec<NodeKey> = self
            .set_items(range)
            .into_iter()
            .filter(|(k, v)| theirs.get(k).is_none_or(|t| t < v))
            .map(|(k, _)| k)
            .collect();
        for key in lacking {
            if *budget == 0 {
                break;
            }
            let sent = self.push_record(from, key, None);
            *budget = budget.saturating_sub(sent);
        }
    }

    pub(super) fn handle_notices(&mut self, now: Instant, from: NodeKey, notices: Vec<Notice>) {
        let mut pulls = Vec::new();
        for Notice { key, version } in notices {
            if key == self.own.key {
                self.bump_own_above(now, version);
            } else if self.version_plausible(now, version) && self.wants(now, &key, version) {
                let deadline = now + self.cfg.tick() * 10;
                self.pulls.insert(key, PendingPull { version, deadline, hot: true });
                pulls.push(PullReq { key, version, chunks: None });
            }
        }
        for m in wire::pack(pulls, Msg::Pull) {
            self.send(from, m);
        }
    }

    pub(super) fn handle_pull(&mut self, now: Instant, from: NodeKey, reqs: Vec<PullReq>) {
        let mut budget = PUSH_BUDGET.min(self.pull_credit(now, from));
        for req in reqs {
            if budget == 0 {
                self.stats.pulls_throttled += 1;
                break;
            }
            let held = self.held_version(&req.key);
            if held.is_none_or(|v| v < req.version) {
                self.stats.pulls_unserved += 1;
                continue;
            }
            let chunks = req.chunks.filter(|_| held == Some(req.version));
            let sent = self.push_record(from, req.key, chunks.as_deref());
            budget = budget.saturating_sub(sent);
            self.spend_pull_credit(from, sent);
        }
    }

    /// Record bytes `from` may still pull from us now: a bucket of [`PULL_BURST`] bytes that
    /// refills at [`PULL_RATE`] per second, so one 1.2 KB pull cannot make us send a member
    /// 256 KiB again and again.
    fn pull_credit(&mut self, now: Instant, from: NodeKey) -> usize {
        let (at, credit) = self.pull_credit.entry(from).or_insert((now, PULL_BURST));
        let refill = now.saturating_duration_since(*at).as_secs_f64() * PULL_RATE as f64;
        *credit = (*credit as f64 + refill).min(PULL_BURST as f64) as usize;
        *at = now;
        *credit
    }

    /// Forgets credits that have refilled to the full burst (a fresh entry starts full), so
    /// the table holds only members that pulled a lot lately: while thousands of members join,
    /// each pulls a few records from many, and an entry per puller would cost every node an
    /// entry per member.
    pub(super) fn prune_pull_credit(&mut self, now: Instant) {
        if self.pull_credit.len() <= 256 {
            return;
        }
        self.pull_credit.retain(|_, (at, credit)| {
            let refill = now.saturating_duration_since(*at).as_secs_f64() * PULL_RATE as f64;
            (*credit as f64 + refill) < PULL_BURST as f64
        });
    }

    fn spend_pull_credit(&mut self, from: NodeKey, sent: usize) {
        if let Some((_, credit)) = self.pull_credit.get_mut(&from) {
            *credit = credit.saturating_sub(sent);
        }
    }

    pub(super) fn handle_chunk(
        &mut self,
        now: Instant,
        from: NodeKey,
        chunk: Chunk,
    ) -> Result<(), MembershipError> {
        let (key, version) = (chunk.key, chunk.version);
        if key == self.own.key {
            self.bump_own_above(now, version);
            return Ok(());
        }
        if !self.version_plausible(now, version) {
            return Ok(());
        }
        if !self.is_newer(&key, version) {
            self.stats.chunks_stale += 1;
            return Ok(());
        }
        if !self.has_room(&key) {
            self.stats.members_full += 1;
            return Ok(());
        }
        let bytes = match self.reassembly.insert(now, from, chunk, self.cfg.max_record_len) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(()),
            Err(what) => return Err(MembershipError::Invalid(what)),
        };
        if let Some(held) = self.record_cache.as_ref().and_then(|c| c.get(key, version, &bytes)) {
            self.accept_record(now, held);
            return Ok(());
        }
        let (signed, wr) = SignedRecord::decode(&bytes)?;
        if wr.record.key != key || wr.id.key != key || wr.record.version != version {
            return Err(MembershipError::Invalid("record does not match its chunks"));
        }
        self.auth
            .verify(now, &wr.record, &signed.body, &signed.signature)
            .map_err(MembershipError::Forged)?;
        let held = Arc::new(Held { record: wr.record, id: wr.id, signed: bytes });
        if let Some(c) = &self.record_cache {
            c.put(&held);
        }
        self.accept_record(now, held);
        Ok(())
    }

    /// Takes `held` (verified, not our own) as if anti-entropy had just delivered it, so
    /// without a rumor: how the simulator starts a cluster that is already formed.
    pub(super) fn preload(&mut self, now: Instant, held: Arc<Held>) {
        let key = held.record.key;
        if key != self.own.key && self.is_newer(&key, held.record.version) && self.has_room(&key) {
            self.accept_record(now, held);
        }
    }

    fn accept_record(&mut self, now: Instant, held: Arc<Held>) {
        let key = held.record.key;
        let version = held.record.version;
        self.tombstones.remove(&key);
        // News that came as a rumor is spread on; what anti-entropy repaired is old news.
        let mut hot = false;
        if let Some(p) = self.pulls.get(&key).filter(|p| p.version <= version).copied() {
            hot = p.hot;
            self.pulls.remove(&key);
        }
        self.reassembly.forget_upto(&key, version);
        let id = held.id.clone();
        self.touch_peer(key, |p| p.held = Some(held));
        self.admit(now, key);
        self.stats.records_accepted += 1;
        self.learn_identity(now, &id);
        if self.peers.get(&key).is_some_and(|p| p.live() == Live::Unknown) {
            // foca holds this identity as down: the last words of a dead node, arriving late.
            // Keeping them would only gossip a zombie around.
            self.touch_peer(key, |p| p.held = None);
            self.drop_peer(&key);
            self.tombstones.insert(key, (version, now + self.cfg.dead_grace * 10));
            return;
        }
        if hot {
            let rounds = MembershipConfig::rumor_rounds(self.foca.num_members() + 1);
            self.rumors.add(key, version, rounds);
        }
        self.events.push_back(MemberEvent::RecordChanged(key));
    }

    /// Sends `to` the chunks (all, or `only`) of the record we hold for `key`; returns bytes.
    fn push_record(&mut self, to: NodeKey, key: NodeKey, only: Option<&[u16]>) -> usize {
        let msgs = if key == self.own.key {
            if self.own_wire.len() > self.cfg.max_record_len {
                return 0;
            }
            wire::chunk_record(key, self.own.version, &self.own_wire, only)
        } else {
            let Some(h) = self.peers.get(&key).and_then(|p| p.held.as_ref()) else { return 0 };
            if h.signed.len() > self.cfg.max_record_len {
                return 0;
            }
            wire::chunk_record(key, h.record.version, &h.signed, only)
        };
        let mut sent = 0;
        for m in msgs {
            sent += m.len();
            self.send(to, m);
        }
        sent
    }

    /// The version of `key`'s record we hold (our own included), whatever its liveness.
    fn held_version(&self, key: &NodeKey) -> Option<u64> {
        if *key == self.own.key {
            return Some(self.own.version);
        }
        self.peers.get(key)?.held.as_ref().map(|h| h.record.version)
    }

    /// Whether `version` of `key` would be news: above what we hold and its tombstone.
    fn is_newer(&self, key: &NodeKey, version: u64) -> bool {
        !self.banned.contains(key)
            && self.held_version(key).is_none_or(|v| version > v)
            && self.tombstones.get(key).is_none_or(|(v, _)| version > *v)
    }

    /// Whether to pull `version` of `key` now: news, and not already being fetched.
    fn wants(&self, now: Instant, key: &NodeKey, version: u64) -> bool {
        (self.pulls.len() < MAX_PENDING_PULLS || self.pulls.contains_key(key))
            && self.has_room(key)
            && self.is_newer(key, version)
            && !self.pulls.get(key).is_some_and(|p| p.version >= version && p.deadline > now)
            && !self.reassembly.in_progress(key, version)
    }
}

#[cfg(test)]
impl Membership {
    /// A rogue's tool for tests: the chunk messages of `key`'s record as this node holds it,
    /// altered by `f`, with the owner's signature kept (`resign` false) or replaced by this
    /// node's own (`resign` true).
    pub(crate) fn forged_record(
        &self,
        key: &NodeKey,
        resign: bool,
        f: impl FnOnce(&mut Record),
    ) -> Vec<Vec<u8>> {
        let held = self.peers.get(key).and_then(|p| p.held.as_ref()).expect("a record of that node");
        let (signed, mut wr) = SignedRecord::decode(&held.signed).expect("a held record decodes");
        f(&mut wr.record);
        let body = postcard::to_allocvec(&wr).expect("in-memory encoding cannot fail");
        let signature = if resign { self.auth.sign(&body) } else { signed.signature };
        let bytes = postcard::to_allocvec(&SignedRecord { body, signature }).expect("in-memory encoding");
        wire::chunk_record(*key, wr.record.version, &bytes, None)
    }
}
