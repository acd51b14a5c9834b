//! One remote node as the endpoint sees it: its identity, where it is, its sessions
//! (current / previous / next, so a rekey never drops a packet in flight), the handshake it
//! may have in flight, and frames queued while no session is usable.
//!
//! A session pushed out of the three slots is not dropped at once: it drains (receive only)
//! until [`DRAIN_GRACE`] after its last use, because the peer may still be sending on it. When
//! both sides initiate at once (common: both have traffic when they first meet) each side's
//! sending session can be the other's `previous`, and the next rekey would otherwise drop
//! packets already in flight.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cert::NodeCert;
use crate::consts::{
    KEEPALIVE_TIMEOUT, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME, REKEY_TIMEOUT,
};
use crate::session::Session;

/// A peer's handle inside one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u32);

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p{}", self.0)
    }
}

pub(crate) struct Peer {
    pub key: [u8; 32],
    pub cert: Option<Arc<NodeCert>>,
    pub endpoint: Option<SocketAddr>,
    pub current: Option<Arc<Session>>,
    pub previous: Option<Arc<Session>>,
    pub next: Option<Arc<Session>>,
    /// Local index of our handshake in flight.
    pub initiation: Option<u32>,
    pub queue: VecDeque<Vec<u8>>,
    pub last_handshake: Option<Instant>,
    /// Highest init timestamp accepted from this peer (IK replay defence).
    pub last_init_timestamp: u64,
    /// Highest init timestamp we sent.
    pub sent_init_timestamp: u64,
    /// Sessions displaced from the slots, still opened for packets in flight (oldest first).
    pub draining: Vec<Arc<Session>>,
    /// Traffic of sessions already dropped.
    pub retired: Totals,
    /// Our XX finish, repeated until the responder proves it completed the handshake: while
    /// it is set, payloads wait in `queue` instead of going out on a session the responder
    /// may never have (a lost finish once cost up to five seconds of data).
    pub finish: Option<FinishResend>,
}

/// An XX finish awaiting confirmation.
pub(crate) struct FinishResend {
    /// Local index of the session it completes.
    pub index: u32,
    /// The datagram, sent again as it was.
    pub datagram: Vec<u8>,
    /// When to send it again.
    pub next: Instant,
}

/// How often an unconfirmed XX finish is repeated (at most until [`REKEY_TIMEOUT`], after
/// which the timers start an IK handshake instead).
pub(crate) const FINISH_RESEND: Duration = Duration::from_millis(250);

/// How long a displaced session stays receivable after its last use: a peer still sending on
/// it switches within a round trip of our first packet on the new session.
pub(crate) const DRAIN_GRACE: Duration = REKEY_TIMEOUT;
/// Most sessions draining at once (a peer cannot make us hold more keys by re-handshaking).
const MAX_DRAINING: usize = 4;

/// Traffic totals of a peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Bytes received (inner payload).
    pub rx_bytes: u64,
    /// Bytes sent (inner payload).
    pub tx_bytes: u64,
    /// Datagrams received.
    pub rx_packets: u64,
    /// Datagrams sent.
    pub tx_packets: u64,
}

/// Why the timers want a new handshake now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    Nothing,
    Keepalive,
    Handshake,
}

impl Peer {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            key,
            cert: None,
            endpoint: None,
            current: None,
            previous: None,
            next: None,
            initiation: None,
            queue: VecDeque::new(),
            last_handshake: None,
            last_init_timestamp: 0,
            sent_init_timestamp: 0,
            draining: Vec::new(),
            retired: Totals::default(),
            finish: None,
        }
    }

    pub fn sessions(&self) -> impl Iterator<Item = &Arc<Session>> {
        self.current.iter().chain(self.previous.iter()).chain(self.next.iter()).chain(self.draining.iter())
    }

    /// The session to seal with, if one is usable at `now`: never an XX initiator's session
    /// before the responder confirmed it (see [`Peer::finish`]).
    pub fn sending(&self, now: Instant) -> Option<&Arc<Session>> {
        self.current.as_ref().filter(|s| s.is_usable(now) && s.is_confirmed())
    }

    /// Installs a session we can send on at once; the old current stays for receiving.
    pub fn install_current(&mut self, s: Arc<Session>) -> Vec<u32> {
        let mut dropped = Vec::new();
        if let Some(old) = self.previous.take() {
            self.displace(old, &mut dropped);
        }
        self.previous = self.current.replace(s);
        dropped
    }

    /// Installs a responder session that must be confirmed before we send on it.
    pub fn install_next(&mut self, s: Arc<Session>) -> Vec<u32> {
        let mut dropped = Vec::new();
        if let Some(old) = self.next.replace(s) {
            self.displace(old, &mut dropped);
        }
        dropped
    }

    /// Promotes `next` once the peer used it.
    pub fn promote_next(&mut self) -> Vec<u32> {
        match self.next.take() {
            Some(n) => self.install_current(n),
            None => Vec::new(),
        }
    }

    /// Drops sessions past their lifetime and drained sessions past their grace; returns
    /// their indices.
    pub fn expire(&mut self, now: Instant) -> Vec<u32> {
        let mut dropped = Vec::new();
        for slot in [&mut self.current, &mut self.previous, &mut self.next] {
            if slot.as_ref().is_some_and(|s| s.age(now) >= REJECT_AFTER_TIME) {
                let s = slot.take().expect("checked above");
                self.retired.add(&s);
                dropped.push(s.local_index());
            }
        }
        let retired = &mut self.retired;
        self.draining.retain(|s| {
            let keep = now < drained_at(s);
            if !keep {
                retired.add(s);
                dropped.push(s.local_index());
            }
            keep
        });
        dropped
    }

    /// Moves a session out of the slots into the draining list, dropping the oldest drainer
    /// beyond [`MAX_DRAINING`].
    fn displace(&mut self, s: Arc<Session>, dropped: &mut Vec<u32>) {
        self.draining.push(s);
        if self.draining.len() > MAX_DRAINING {
            let old = self.draining.remove(0);
            self.retired.add(&old);
            dropped.push(old.local_index());
        }
    }

    pub fn totals(&self) -> Totals {
        let mut t = self.retired;
        for s in self.sessions() {
            t.add(s);
        }
        t
    }

    /// What the session timers ask for at `now` (WireGuard's rules).
    pub fn due(&self, now: Instant) -> Due {
        let Some(s) = self.current.as_ref() else { return Due::Nothing };
        if !s.is_usable(now) {
            return Due::Nothing;
        }
        let since = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t));
        let in_use = since(s.last_sent_data()).is_some_and(|d| d < KEEPALIVE_TIMEOUT);
        let age = s.age(now);
        let old = if s.is_initiator() {
            age >= REKEY_AFTER_TIME
        } else {
            age >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
        };
        if (old && in_use) || s.sent_messages() >= REKEY_AFTER_MESSAGES {
            return Due::Handshake;
        }
        if !s.is_confirmed() && age >= REKEY_TIMEOUT {
            return Due::Handshake;
        }
        // Any authenticated packet from the peer answers our data, whichever of our sessions
        // it arrived on (WireGuard keeps this timer per peer). After simultaneous handshakes
        // the two sides can send on different sessions, each the other's `previous`: replies
        // then never land on the session we send on, and a per-session timer re-handshaked
        // such a pair 15 s after it formed, however busy the tunnel.
        if let Some(u) = s.unanswered_since() {
            if let Some(heard) = self.sessions().filter_map(|x| x.last_received()).filter(|&r| r >= u).max() {
                s.answered_elsewhere(heard);
            }
        }
        // Sent data and heard nothing back for a while: the peer may have lost our session
        // (it restarted). Counted from the first unanswered send, so steady traffic into a
        // black hole does not keep pushing the deadline out.
        if s.unanswered_since().is_some_and(|u| now.saturating_duration_since(u) >= NO_REPLY_TIMEOUT) {
            return Due::Handshake;
        }
        // Received data and sent nothing since: tell the peer we are alive, counted from the
        // first such receive so that a steady one-way stream still gets its keepalives.
        if s.reply_owed_since().is_some_and(|o| now.saturating_duration_since(o) >= KEEPALIVE_TIMEOUT) {
            return Due::Keepalive;
        }
        Due::Nothing
    }

    /// The earliest instant at which [`Peer::due`] may change its answer, given that the timers
    /// last ran at `ran`. A threshold at or before `ran` was already acted on (or found nothing
    /// to do) and is not returned again: a past deadline would make a driver that sleeps until
    /// it spin. Allocation-free, since drivers poll it after every datagram.
    pub fn next_deadline(&self, ran: Option<Instant>) -> Option<Instant> {
        let mut next = None;
        for s in self.current.iter().chain(self.previous.iter()).chain(self.next.iter()) {
            next = earliest(next, s.created() + REJECT_AFTER_TIME);
        }
        for s in &self.draining {
            next = earliest(next, drained_at(s));
        }
        let Some(s) = self.current.as_ref() else { return next };
        let c = s.created();
        let rekey_at = c + if s.is_initiator() {
            REKEY_AFTER_TIME
        } else {
            REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
        };
        let thresholds = [
            Some(rekey_at),
            (!s.is_confirmed()).then(|| c + REKEY_TIMEOUT),
            s.unanswered_since().map(|u| u + NO_REPLY_TIMEOUT),
            s.reply_owed_since().map(|o| o + KEEPALIVE_TIMEOUT),
        ];
        for t in thresholds.into_iter().flatten() {
            if ran.is_none_or(|r| t > r) {
                next = earliest(next, t);
            }
        }
        if let Some(f) = &self.finish {
            next = earliest(next, f.next);
        }
        // An old session that was idle when its threshold passed rekeys once it carries data
        // again; data sealed by workers through `Arc<Session>` is only seen by looking.
        if let Some(r) = ran.filter(|&r| rekey_at <= r && self.initiation.is_none()) {
            next = earliest(next, r + OLD_SESSION_POLL);
        }
        next
    }
}

/// Data sent without any authenticated reply for this long starts a new handshake
/// (WireGuard's KEEPALIVE_TIMEOUT + REKEY_TIMEOUT: a live peer answers data within the
/// keepalive timeout even when it has nothing to say).
pub(crate) const NO_REPLY_TIMEOUT: Duration =
    Duration::from_secs(KEEPALIVE_TIMEOUT.as_secs() + REKEY_TIMEOUT.as_secs());

/// How often the timers look at an old, idle session for new traffic that calls for a rekey
/// (at most until it expires, [`REJECT_AFTER_TIME`] after creation).
const OLD_SESSION_POLL: Duration = Duration::from_secs(1);

/// When a draining session is dropped: [`DRAIN_GRACE`] after its last use, or at expiry.
fn drained_at(s: &Session) -> Instant {
    let used = [s.last_sent(), s.last_received()].into_iter().flatten().fold(s.created(), Instant::max);
    (used + DRAIN_GRACE).min(s.created() + REJECT_AFTER_TIME)
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl Totals {
    fn add(&mut self, s: &Session) {
        self.rx_bytes += s.stats.rx_bytes.load(Relaxed);
        self.tx_bytes += s.stats.tx_bytes.load(Relaxed);
        self.rx_packets += s.stats.rx_packets.load(Relaxed);
        self.tx_packets += s.stats.tx_packets.load(Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consts::{TAG_LEN, TRANSPORT_HEADER_LEN};

    fn session(now: Instant, idx: u32, initiator: bool) -> Arc<Session> {
        Arc::new(Session::new(now, idx, idx + 100, initiator, true, &[1; 32], &[2; 32]))
    }

    fn indices(p: &Peer) -> Vec<u32> {
        let mut v: Vec<u32> = p.sessions().map(|s| s.local_index()).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn displaced_sessions_keep_receiving_until_their_grace_ends() {
        let now = Instant::now();
        let mut p = Peer::new([1; 32]);
        for i in 1..=3 {
            assert!(p.install_current(session(now, i, true)).is_empty());
        }
        assert_eq!(indices(&p), [1, 2, 3], "1 drains, 2 is previous, 3 current");
        let ms = Duration::from_millis(1);
        assert!(p.expire(now + DRAIN_GRACE - ms).is_empty());
        // Used again (the peer still sends on it): the grace restarts from that use.
        let mut buf = [0u8; 64];
        p.draining[0].seal(now + 2 * DRAIN_GRACE - ms, &mut buf, 4).unwrap();
        assert!(p.expire(now + 2 * DRAIN_GRACE).is_empty());
        assert_eq!(p.expire(now + 3 * DRAIN_GRACE), [1]);
        assert_eq!(indices(&p), [2, 3]);
        assert_eq!(p.totals().tx_packets, 1, "a dropped session's traffic stays counted");
        // At most MAX_DRAINING at once: the oldest goes first.
        let mut dropped = Vec::new();
        for i in 4..=4 + MAX_DRAINING as u32 {
            dropped.extend(p.install_current(session(now, i, true)));
        }
        assert_eq!(dropped, [2]);
        assert_eq!(p.draining.len(), MAX_DRAINING);
    }

    #[test]
    fn a_reply_on_another_session_of_the_peer_answers_our_data() {
        let now = Instant::now();
        let at = |secs| now + Duration::from_secs(secs);
        let mut p = Peer::new([1; 32]);
        let previous = session(now, 1, true);
        p.install_current(previous.clone());
        let current = session(now, 2, false);
        p.install_current(current.clone());
        // The peer's end of our previous session: the one it sends on.
        let theirs = Session::new(now, 101, 1, false, true, &[2; 32], &[1; 32]);
        let data = |s: &Session, t| {
            let mut buf = [0u8; 64];
            buf[TRANSPORT_HEADER_LEN] = 2;
            s.seal(t, &mut buf, 4).unwrap();
            buf
        };
        data(&current, at(1));
        let mut reply = data(&theirs, at(2));
        previous.open(at(2), &mut reply[..TRANSPORT_HEADER_LEN + 4 + TAG_LEN]).unwrap();
        assert_eq!(p.due(at(30)), Due::Nothing, "answered on the previous session");
        // Data the peer never answers still starts a handshake.
        data(&current, at(40));
        assert_eq!(p.due(at(40) + NO_REPLY_TIMEOUT), Due::Handshake);
    }

    #[test]
    fn deadlines_are_always_after_the_last_timer_run() {
        let now = Instant::now();
        let mut p = Peer::new([1; 32]);
        let s = session(now, 1, true);
        p.install_current(s.clone());
        let mut buf = [0u8; 64];
        buf[TRANSPORT_HEADER_LEN] = 2;
        s.seal(now + Duration::from_secs(1), &mut buf, 4).unwrap();
        for secs in 0..200 {
            let ran = now + Duration::from_secs(secs);
            p.expire(ran); // what handle_timeout does before anyone polls again
            if let Some(d) = p.next_deadline(Some(ran)) {
                assert!(d > ran, "deadline {d:?} not after the run at {secs} s");
            }
        }
        // Past its rekey age and idle: looked at again shortly, not at a stale instant.
        let mut p = Peer::new([1; 32]);
        p.install_current(session(now, 2, true));
        let ran = now + REKEY_AFTER_TIME + Duration::from_secs(10);
        assert_eq!(p.next_deadline(Some(ran)), Some(ran + OLD_SESSION_POLL));
        p.initiation = Some(7);
        assert_eq!(p.next_deadline(Some(ran)), Some(now + REJECT_AFTER_TIME), "the retry timer covers it");
    }
}
