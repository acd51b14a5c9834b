//! Lifeguard-style failure detection on top of foca's SWIM: every member that learns a
//! suspicion times it itself, with a timeout that starts long and shrinks as independent
//! confirmations arrive, scaled by our own health.
//!
//! - **First-hand failures.** When our probe of T fails (foca's `ProbeFailed`, or the engine's
//!   [`Membership::suspect_now`]), we tell T itself (so it refutes at once, Lifeguard's "buddy
//!   system") and [`WITNESSES`] random members. Each witness probes T directly (twice, half a
//!   probe RTT apart); if T answers neither within a probe RTT, the witness reports back to
//!   us: one independent confirmation. A message is authenticated per sender, so a member can confirm only once.
//! - **Dynamic timeout** (Lifeguard §IV-B): with `c` confirmations beyond the first suspecter,
//!   `timeout = max − (max − min) · log(c + 1) / log(k + 1)`, never below `min`, with
//!   `k` = [`WITNESSES`]. A crashed member is confirmed by every witness within a probe RTT or
//!   two and declared down after `min`; a member suspected through one lost packet gets no
//!   confirmation and the full `max`, time for its refutation to reach everyone.
//! - **Local health** (Lifeguard §IV-A): a score in `0..=MAX_HEALTH`, raised when our probe
//!   fails or we must refute a suspicion of ourselves, lowered when a check is answered and
//!   after each quiet probe period. Our check deadlines and suspicion timeouts are multiplied
//!   by `score + 1`: a node that is itself slow (CPU-starved, lossy link) suspects less.
//!
//! - **Probes that waited for a handshake** prove nothing. A message to a member we hold no
//!   session with waits for a handshake first (a node that just started has none; under load
//!   it took 2 s in a 100-daemon lab): a probe or check of it that fails meanwhile measured
//!   the handshake, not the member. The engine tells us ([`Membership::link_waiting`],
//!   [`Membership::link_up`]); such a failure of our own probe only tells the member (a live
//!   one refutes at once) and asks no witness, and a check waits for the handshake (up to
//!   [`HANDSHAKE_WAIT`], after which the member's silence counts) and probes again once it
//!   completes. A crashed member never completes a handshake, so it is found as before, by
//!   those that held a session with it and, [`HANDSHAKE_WAIT`] later, by the others.
//!
//! Invariants: `suspicions` only holds members foca holds as suspect at that identity and
//! incarnation (checked each tick, so refutations and verdicts end them); confirmations per
//! suspicion are bounded by the number of members; at most one check per member runs.

use std::time::{Duration, Instant};

use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::record::NodeKey;
use super::swim::SwimId;
use super::wire::Msg;
use super::Membership;

/// Members asked to confirm a first-hand failure; also Lifeguard's `k`.
pub(crate) const WITNESSES: usize = 3;
/// Highest local health score (Lifeguard's awareness multiplier is `score + 1`).
pub(crate) const MAX_HEALTH: u8 = 8;
/// Checks running at once; beyond it suspicion notes ask for no new check (bounded work for
/// notes a rogue member invents).
pub(crate) const MAX_CHECKS: usize = 64;
/// How long a handshake may take before a probe that waited for it counts as failed: one
/// unanswered handshake attempt (WireGuard's REKEY_TIMEOUT).
pub(crate) const HANDSHAKE_WAIT: Duration = Duration::from_secs(5);
/// How long a link's coming up is remembered: longer than any probe or check it may overlap.
const LINK_MEMORY: Duration = Duration::from_secs(10);
/// Times a check starts over because its target's session came up while it ran.
const MAX_CHECK_RESTARTS: u8 = 2;

/// Our transport session with a member, as the engine tells it. The simulator has no
/// sessions and tells nothing: every failed probe there is evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// Messages to it wait for a handshake begun then.
    Waiting(Instant),
    /// A handshake with it completed then.
    Up(Instant),
}

/// Whether a probe of a member that went unanswered is evidence against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Doubt {
    /// It is.
    None,
    /// It waited for a handshake still in flight, which counts as failed at this instant.
    Waiting(Instant),
    /// The session came up while it ran: the probe left late.
    Late,
}

/// "I, the sender, could not reach `id` at `incarnation`": a first-hand suspicion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SuspectNote {
    pub id: SwimId,
    pub incarnation: foca::Incarnation,
}

/// A suspicion we time.
#[derive(Debug, Clone)]
pub(crate) struct Suspicion {
    pub id: SwimId,
    pub incarnation: foca::Incarnation,
    pub since: Instant,
    /// Members (ourselves included) that failed to reach it first-hand.
    pub confirmers: Vec<NodeKey>,
    /// When we last probed it ourselves because its timeout passed with no confirmation.
    pub looked: Option<Instant>,
}

/// A direct probe of a suspect, on behalf of whoever asked.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    nonce: u64,
    started: Instant,
    deadline: Instant,
    resent: bool,
    restarts: u8,
    asker: Option<NodeKey>,
    note: SuspectNote,
}

/// Our own health score and when it last rose.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Health {
    pub score: u8,
    last_change: Option<Instant>,
}

impl Health {
    pub(crate) fn new() -> Self {
        Self { score: 0, last_change: None }
    }

    fn worse(&mut self, now: Instant) {
        self.score = (self.score + 1).min(MAX_HEALTH);
        self.last_change = Some(now);
    }

    fn better(&mut self, now: Instant) {
        self.score = self.score.saturating_sub(1);
        self.last_change = Some(now);
    }

    /// The multiplier on our timeouts.
    pub(crate) fn factor(&self) -> u32 {
        u32::from(self.score) + 1
    }
}

impl Membership {
    /// The data plane saw `key`'s session stop answering (or another first-hand sign it is
    /// gone): treated like a failed probe of ours — `key` is suspected now, told so, and
    /// witnesses are asked to confirm. Does nothing for a member that is not up.
    pub fn suspect_now(&mut self, now: Instant, key: NodeKey) {
        if let Some(id) = self.current_id(&key) {
            self.first_hand_failure(now, id);
        }
    }

    /// Authenticated traffic from `key` arrived (any kind, data plane included): it is alive
    /// from here, so a check of it ends and we withdraw our own confirmation of it.
    pub fn heard_from(&mut self, now: Instant, key: NodeKey) {
        if self.checks.remove(&key).is_some() {
            self.health.better(now);
        }
        let own = self.own.key;
        if let Some(s) = self.suspicions.get_mut(&key) {
            s.confirmers.retain(|k| *k != own);
        }
    }

    /// Messages to `key` wait for a handshake with it that began at `since` (the engine has
    /// no session to send them on). Until the handshake completes, or has gone unanswered for
    /// [`HANDSHAKE_WAIT`], a probe of `key` that fails is no evidence against it.
    pub fn link_waiting(&mut self, key: NodeKey, since: Instant) {
        if key == self.own.key || !self.is_admitted(&key) {
            return;
        }
        if !matches!(self.links.get(&key), Some(Link::Waiting(_))) {
            self.links.insert(key, Link::Waiting(since));
        }
    }

    /// A handshake with `key` completed: messages to it go out now. A check of it that waited
    /// for the handshake probes again, so that it measures `key` and not the handshake.
    pub fn link_up(&mut self, now: Instant, key: NodeKey) {
        if key == self.own.key || !self.is_admitted(&key) {
            return;
        }
        let waited = matches!(self.links.insert(key, Link::Up(now)), Some(Link::Waiting(_)));
        if waited {
            self.restart_check(now, key);
        }
    }

    /// Whether a probe of `key` sent at `sent` and unanswered at `now` is evidence.
    fn link_doubt(&self, now: Instant, key: &NodeKey, sent: Instant) -> Doubt {
        match self.links.get(key) {
            Some(Link::Waiting(t)) if now.saturating_duration_since(*t) < HANDSHAKE_WAIT => {
                Doubt::Waiting(*t + HANDSHAKE_WAIT)
            }
            Some(Link::Up(t)) if *t > sent => Doubt::Late,
            _ => Doubt::None,
        }
    }

    /// Forgets links that came up long ago and handshakes long given up (the engine tells a
    /// handshake still in flight again, with its first attempt's time).
    pub(super) fn forget_old_links(&mut self, now: Instant) {
        let keep = LINK_MEMORY.max(HANDSHAKE_WAIT);
        self.links.retain(|_, l| match l {
            Link::Waiting(t) | Link::Up(t) => now.saturating_duration_since(*t) < keep,
        });
    }

    /// Our local health score (0 = healthy; see the module doc).
    pub fn health_score(&self) -> u8 {
        self.health.score
    }

    /// The identity foca holds for `key`, if it is alive or suspect.
    pub(super) fn current_id(&self, key: &NodeKey) -> Option<SwimId> {
        let m = self.foca.member(key)?;
        (m.state() != foca::State::Down).then(|| m.id().clone())
    }

    /// Our probe of `id` failed: confirm our suspicion, tell it, ask witnesses.
    pub(super) fn first_hand_failure(&mut self, now: Instant, id: SwimId) {
        let key = id.key;
        if key == self.own.key || self.banned.contains(&key) {
            return;
        }
        let Some(m) = self.foca.member(&key).filter(|m| *m.id() == id && m.state() != foca::State::Down)
        else {
            return;
        };
        let note = SuspectNote { id, incarnation: m.incarnation() };
        let window = now.checked_sub(self.cfg.probe_period).unwrap_or(now);
        if self.link_doubt(now, &key, window) != Doubt::None {
            // The probe waited for a handshake: no evidence. Foca suspects it all the same;
            // told, a live member refutes that as soon as the handshake lets the note through.
            // Our own check measures it once the handshake is done (or has failed), and asks
            // witnesses if it fails: a crashed member is not left to gossip alone.
            tracing::debug!(suspect = %key, "probe failed while the session was not up; no evidence");
            self.stats.probes_inconclusive += 1;
            self.send(key, Msg::Suspect(note.clone()).encode());
            if !self.checks.contains_key(&key) && self.checks.len() < MAX_CHECKS {
                self.start_check(now, None, note);
            }
            return;
        }
        tracing::debug!(suspect = %key, health = self.health.score, "first-hand failure");
        self.health.worse(now);
        if !self.confirm(now, &note, self.own.key) {
            return;
        }
        let msg = Msg::Suspect(note.clone()).encode();
        self.send(key, msg.clone());
        let witnesses = self.random_up_members_except(WITNESSES, &key);
        for w in witnesses {
            self.send(w, msg.clone());
        }
    }

    /// A suspicion note from `from`.
    pub(super) fn handle_suspect(&mut self, now: Instant, from: NodeKey, note: SuspectNote) {
        if note.id.key == self.own.key {
            self.refute(now, from, &note);
            return;
        }
        let key = note.id.key;
        let Some(m) = self.foca.member(&key) else { return };
        if *m.id() != note.id || m.state() == foca::State::Down || m.incarnation() > note.incarnation {
            return;
        }
        if !self.confirm(now, &note, from) {
            return;
        }
        let own = self.own.key;
        let already = self.suspicions.get(&key).is_some_and(|s| s.confirmers.contains(&own));
        if !already && !self.checks.contains_key(&key) && self.checks.len() < MAX_CHECKS {
            self.start_check(now, Some(from), note);
        }
    }

    /// Someone suspects us: refute through foca (a higher incarnation, gossiped), and answer
    /// the suspecter directly so its timer stops without waiting for the gossip.
    fn refute(&mut self, now: Instant, from: NodeKey, note: &SuspectNote) {
        if note.id != self.id {
            return;
        }
        self.health.worse(now);
        let suspect = foca::Member::new(note.id.clone(), note.incarnation, foca::State::Suspect);
        if let Err(e) = self.foca.apply_many(std::iter::once(suspect), true, &mut self.swim_out) {
            tracing::trace!(error = %e, "SWIM apply");
        }
        if let Some(to) = self.current_id(&from) {
            if let Err(e) = self.foca.announce(to, &mut self.swim_out) {
                tracing::trace!(error = %e, "SWIM announce");
            }
        }
        self.drain_swim(now);
    }

    fn start_check(&mut self, now: Instant, asker: Option<NodeKey>, note: SuspectNote) {
        let key = note.id.key;
        let nonce: u64 = self.rng.random();
        let deadline = now + self.cfg.probe_rtt() / 2 * self.health.factor();
        let check = Check { nonce, started: now, deadline, resent: false, restarts: 0, asker, note };
        self.checks.insert(key, check);
        self.send(key, Msg::Probe(nonce).encode());
    }

    /// Starts `key`'s check over (its session came up while it ran), unless it did so often;
    /// whether it did.
    fn restart_check(&mut self, now: Instant, key: NodeKey) -> bool {
        let deadline = now + self.cfg.probe_rtt() / 2 * self.health.factor();
        let Some(c) = self.checks.get_mut(&key).filter(|c| c.restarts < MAX_CHECK_RESTARTS) else {
            return false;
        };
        c.restarts += 1;
        c.started = now;
        c.deadline = deadline;
        c.resent = false;
        let nonce = c.nonce;
        self.send(key, Msg::Probe(nonce).encode());
        true
    }

    /// A direct probe: answer it.
    pub(super) fn handle_probe(&mut self, from: NodeKey, nonce: u64) {
        self.send(from, Msg::ProbeAck(nonce).encode());
    }

    /// Adds `by` to the confirmers of `note`'s suspicion (started if new); false if `by`
    /// already confirmed it.
    fn confirm(&mut self, now: Instant, note: &SuspectNote, by: NodeKey) -> bool {
        let s = self.track_suspicion(now, &note.id, note.incarnation);
        if s.confirmers.contains(&by) {
            return false;
        }
        s.confirmers.push(by);
        true
    }

    /// The suspicion of `id` at `incarnation` we time, started now if new (or if it replaces
    /// one of an older identity or incarnation).
    pub(super) fn track_suspicion(
        &mut self,
        now: Instant,
        id: &SwimId,
        incarnation: foca::Incarnation,
    ) -> &mut Suspicion {
        let fresh =
            || Suspicion { id: id.clone(), incarnation, since: now, confirmers: Vec::new(), looked: None };
        let s = self.suspicions.entry(id.key).or_insert_with(fresh);
        if s.id != *id || s.incarnation < incarnation {
            *s = fresh();
        }
        s
    }

    /// Runs checks past their deadline: a second probe, then a confirmation to the asker.
    pub(super) fn run_checks(&mut self, now: Instant) {
        let due: Vec<NodeKey> =
            self.checks.iter().filter(|(_, c)| c.deadline <= now).map(|(k, _)| *k).collect();
        for key in due {
            let Some(c) = self.checks.get_mut(&key) else { continue };
            if !c.resent {
                c.resent = true;
                c.deadline = now + self.cfg.probe_rtt() / 2 * self.health.factor();
                let nonce = c.nonce;
                self.send(key, Msg::Probe(nonce).encode());
                continue;
            }
            let started = c.started;
            match self.link_doubt(now, &key, started) {
                Doubt::None => {}
                Doubt::Waiting(until) => {
                    // `link_up` probes again; the handshake's failure is the verdict.
                    let until = until.max(now + self.cfg.tick());
                    if let Some(c) = self.checks.get_mut(&key) {
                        if c.deadline < until {
                            c.deadline = until;
                            self.stats.probes_inconclusive += 1;
                        }
                    }
                    continue;
                }
                Doubt::Late if self.restart_check(now, key) => {
                    self.stats.probes_inconclusive += 1;
                    continue;
                }
                Doubt::Late => {}
            }
            let Some(c) = self.checks.remove(&key) else { continue };
            let still = self
                .foca
                .member(&key)
                .is_some_and(|m| *m.id() == c.note.id && m.state() != foca::State::Down);
            if !still || !self.confirm(now, &c.note, self.own.key) {
                continue;
            }
            tracing::debug!(suspect = %key, asker = ?c.asker, "check unanswered; confirming");
            let msg = Msg::Suspect(c.note.clone()).encode();
            match c.asker {
                Some(asker) => self.send(asker, msg.clone()),
                // A check of our own (our probe waited for a handshake, or a suspicion timed
                // out unconfirmed): now a first-hand failure, so witnesses are asked.
                None => {
                    for w in self.random_up_members_except(WITNESSES, &key) {
                        self.send(w, msg.clone());
                    }
                }
            }
            self.send(key, msg);
        }
        if self.health.score > 0
            && self
                .health
                .last_change
                .is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.probe_period)
        {
            self.health.better(now);
        }
    }

    /// When the next check is due.
    pub(super) fn next_check(&self) -> Option<Instant> {
        self.checks.values().map(|c| c.deadline).min()
    }

    /// Lifeguard's timeout for a suspicion with `confirmers` first-hand suspecters.
    pub(super) fn suspicion_timeout(&self, confirmers: usize) -> Duration {
        let n = self.foca.num_members() + 1;
        let (min, max) = (self.cfg.suspicion_min(), self.cfg.suspicion_max(n));
        let c = confirmers.saturating_sub(1) as f64;
        let k = WITNESSES as f64;
        let frac = ((c + 1.0).ln() / (k + 1.0).ln()).min(1.0);
        max.saturating_sub((max.saturating_sub(min)).mul_f64(frac)).max(min) * self.health.factor()
    }

    /// Declares down every suspicion whose timeout passed; forgets those foca no longer holds
    /// (refuted, renewed, or already down).
    pub(super) fn expire_suspicions(&mut self, now: Instant) {
        let foca = &self.foca;
        self.suspicions.retain(|key, s| {
            foca.member(key).is_some_and(|m| {
                *m.id() == s.id && m.state() == foca::State::Suspect && m.incarnation() == s.incarnation
            })
        });
        let max = self.suspicion_timeout(0);
        let due: Vec<NodeKey> = self
            .suspicions
            .iter()
            .filter(|(_, s)| {
                now.saturating_duration_since(s.since) >= self.suspicion_timeout(s.confirmers.len())
            })
            .map(|(k, _)| *k)
            .collect();
        let mut expired = Vec::new();
        for key in due {
            let Some(s) = self.suspicions.get_mut(&key) else { continue };
            if !s.confirmers.is_empty() {
                expired.push(foca::Member::new(s.id.clone(), s.incarnation, foca::State::Down));
                continue;
            }
            // Nobody failed to reach it first-hand (or we heard from it since): a suspicion
            // of gossip alone, whose refutation may still be on its way (it crosses new
            // handshakes when the member just started). Look ourselves before any verdict:
            // a check, and a note that has a live member refute. A failed check confirms,
            // and the next pass declares it down; an answered one waits for the refutation
            // and looks again after another `max`.
            if self.checks.contains_key(&key)
                || s.looked.is_some_and(|t| now.saturating_duration_since(t) < max)
            {
                continue;
            }
            if self.checks.len() >= MAX_CHECKS {
                expired.push(foca::Member::new(s.id.clone(), s.incarnation, foca::State::Down));
                continue;
            }
            s.looked = Some(now);
            let note = SuspectNote { id: s.id.clone(), incarnation: s.incarnation };
            tracing::debug!(suspect = %key, "suspicion timed out unconfirmed; checking it ourselves");
            self.send(key, Msg::Suspect(note.clone()).encode());
            self.start_check(now, None, note);
        }
        if expired.is_empty() {
            return;
        }
        for m in &expired {
            if let Some(s) = self.suspicions.get(&m.id().key) {
                tracing::debug!(
                    suspect = %m.id().key,
                    confirmers = s.confirmers.len(),
                    after = ?now.saturating_duration_since(s.since),
                    health = self.health.score,
                    "suspicion expired; down"
                );
            }
            self.suspicions.remove(&m.id().key);
            self.checks.remove(&m.id().key);
        }
        self.stats.suspicions_expired += expired.len() as u64;
        if let Err(e) = self.foca.apply_many(expired.into_iter(), true, &mut self.swim_out) {
            tracing::trace!(error = %e, "SWIM apply");
        }
    }
}
