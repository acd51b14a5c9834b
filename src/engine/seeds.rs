//! Seeds and `[[peer]]` endpoints: addresses the engine dials (Noise XX, since their keys
//! are not known yet) until a session is up, with exponential backoff after a dial gives up,
//! and reports as unreachable after [`SEED_UNANSWERED`] without an answer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::{debug, info};

use super::Engine;

/// Re-dial backoff bounds for static peers.
const DIAL_MIN: Duration = Duration::from_secs(1);
const DIAL_MAX: Duration = Duration::from_secs(30);

/// One dial target and its backoff state.
pub(super) struct StaticPeer {
    pub addr: SocketAddr,
    next_dial: Instant,
    backoff: Duration,
    pub dialing: bool,
    /// Since when we dial it without an answer (`None`: reached, or not dialled yet).
    pub unanswered_since: Option<Instant>,
    /// Whether the operator was told that it does not answer (once per outage).
    warned: bool,
}

impl StaticPeer {
    pub fn new(addr: SocketAddr, now: Instant) -> Self {
        Self {
            addr,
            next_dial: now,
            backoff: DIAL_MIN,
            dialing: false,
            unanswered_since: None,
            warned: false,
        }
    }

    fn reached(&mut self) {
        if self.warned {
            info!(seed = %self.addr, "seed answers again");
        }
        self.unanswered_since = None;
        self.warned = false;
    }
}

/// A seed (or `[[peer]]` endpoint) dialled this long without an answer is reported: a warning
/// in the log and `unreachable` in `weft status`.
pub(super) const SEED_UNANSWERED: Duration = Duration::from_secs(10);

impl Engine {
    /// Replaces the static dial targets (reload): new ones are dialled now, removed ones are
    /// no longer redialled; sessions already up are untouched.
    pub fn set_dial_targets(&mut self, now: Instant, targets: &[SocketAddr]) {
        self.statics.retain(|s| targets.contains(&s.addr));
        for &addr in targets {
            if !self.statics.iter().any(|s| s.addr == addr) {
                self.statics.push(StaticPeer::new(addr, now));
            }
        }
    }

    pub(super) fn dial_statics(&mut self, now: Instant) {
        let connected: Vec<SocketAddr> = self
            .endpoint
            .peer_ids()
            .filter_map(|p| self.endpoint.peer_info(p))
            .filter(|i| i.connected)
            .filter_map(|i| i.endpoint)
            .collect();
        for s in &mut self.statics {
            if connected.contains(&s.addr) {
                s.backoff = DIAL_MIN;
                s.reached();
                continue;
            }
            let since = *s.unanswered_since.get_or_insert(now);
            if !s.warned && now.saturating_duration_since(since) >= SEED_UNANSWERED {
                s.warned = true;
                tracing::warn!(
                    seed = %s.addr,
                    "seed does not answer after {} s of handshake attempts; check membership.seeds \
                     (another node's underlay IP:PORT) and that UDP reaches it",
                    SEED_UNANSWERED.as_secs()
                );
            }
            if !s.dialing && now >= s.next_dial {
                debug!(addr = %s.addr, "dialing static peer");
                self.endpoint.dial(now, s.addr);
                s.dialing = true;
            }
        }
    }

    pub(super) fn static_done(&mut self, addr: SocketAddr, ok: bool, now: Instant) {
        if let Some(s) = self.statics.iter_mut().find(|s| s.addr == addr) {
            s.dialing = false;
            if ok {
                s.reached();
                s.backoff = DIAL_MIN;
                s.next_dial = now + DIAL_MIN;
            } else {
                s.next_dial = now + s.backoff;
                s.backoff = (s.backoff * 2).min(DIAL_MAX);
            }
        }
    }
}
