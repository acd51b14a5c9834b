//! Per-source token buckets in front of the engine's pre-auth lane: a worker admits handshake
//! datagrams (and unknown-session notices) from one source address at [`RATE`] per second
//! with bursts of [`BURST`], so one address cannot fill the lane that every first contact
//! needs. A legitimate node sends a handful per peer per rekey interval.
//!
//! Invariants: fixed memory ([`SLOTS`] buckets, allocated once), no allocation per datagram;
//! addresses are hashed with a per-process seed onto the buckets, so colliding addresses share
//! one budget but an outsider cannot choose whose budget it spends.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::Instant;

/// Sustained datagrams per second admitted from one source address (per worker).
pub const RATE: f32 = 50.0;
/// Datagrams one source address may send at once after a quiet spell.
pub const BURST: f32 = 100.0;
/// Buckets per worker.
pub const SLOTS: usize = 1024;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f32,
    last: Instant,
}

/// The buckets of one worker.
pub struct PreauthLimiter {
    buckets: Box<[Bucket]>,
    hasher: foldhash::fast::RandomState,
}

impl PreauthLimiter {
    /// Full buckets at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            buckets: vec![Bucket { tokens: BURST, last: now }; SLOTS].into_boxed_slice(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// Whether one more datagram from `source` may go to the engine at `now` (takes a token).
    pub fn allow(&mut self, now: Instant, source: IpAddr) -> bool {
        let slot = (self.hasher.hash_one(source) as usize) % SLOTS;
        let b = &mut self.buckets[slot];
        let elapsed = now.saturating_duration_since(b.last).as_secs_f32();
        b.tokens = (b.tokens + elapsed * RATE).min(BURST);
        b.last = b.last.max(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rogue_source_over_its_rate_is_cut_off_while_others_pass() {
        let t0 = Instant::now();
        let mut l = PreauthLimiter::new(t0);
        let flooder: IpAddr = "10.200.0.66".parse().unwrap();
        let passed = (0..10_000).filter(|_| l.allow(t0, flooder)).count();
        assert_eq!(passed, BURST as usize, "a burst, then nothing");
        let other: IpAddr = "10.200.0.7".parse().unwrap();
        // Another address shares the flooder's bucket only by a 1 in SLOTS chance (seeded).
        let others = ["10.200.0.7", "10.200.0.8", "10.200.0.9"].map(|a| a.parse::<IpAddr>().unwrap());
        assert!(others.iter().any(|a| l.allow(t0, *a)), "{other} passes");
        // One second later the flooder has earned RATE more.
        let t1 = t0 + Duration::from_secs(1);
        let passed = (0..10_000).filter(|_| l.allow(t1, flooder)).count();
        assert_eq!(passed, RATE as usize);
    }
}
