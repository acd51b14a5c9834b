//! Endpoint-wide counters: every dropped datagram is counted by reason. Atomics, so data-plane
//! workers and the endpoint can share one `Arc<EndpointStats>`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::cert::CertError;
use crate::endpoint::DatagramError;
use crate::session::OpenError;

/// Counters of one endpoint.
#[derive(Debug, Default)]
pub struct EndpointStats {
    /// Datagrams that did not parse.
    pub malformed: AtomicU64,
    /// Datagrams for an index we do not have.
    pub unknown_index: AtomicU64,
    /// Replayed or too-old counters.
    pub replay: AtomicU64,
    /// AEAD failures (forged or corrupted).
    pub auth: AtomicU64,
    /// Datagrams for expired sessions.
    pub expired: AtomicU64,
    /// Handshakes with a bad mac1 (not from this network).
    pub bad_mac1: AtomicU64,
    /// Handshakes answered with a cookie reply.
    pub cookies_sent: AtomicU64,
    /// Noise failures.
    pub noise: AtomicU64,
    /// Certificates from another CA.
    pub cert_foreign_ca: AtomicU64,
    /// Expired or not yet valid certificates.
    pub cert_expired: AtomicU64,
    /// Other certificate failures (bad signature, malformed, key mismatch).
    pub cert_invalid: AtomicU64,
    /// Revoked keys.
    pub revoked: AtomicU64,
    /// Replayed handshake initiations.
    pub replayed_init: AtomicU64,
    /// Half-open handshakes refused for lack of room.
    pub pending_full: AtomicU64,
    /// Handshakes we started (retries included).
    pub handshakes_initiated: AtomicU64,
    /// Handshakes completed.
    pub handshakes_completed: AtomicU64,
    /// Handshakes given up.
    pub handshake_timeouts: AtomicU64,
    /// Queued payloads dropped (queue full or handshake failed).
    pub queue_dropped: AtomicU64,
}

impl EndpointStats {
    /// Adds one.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// Adds `n`.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// Counts an open failure from a data-plane worker.
    pub fn count_open(&self, e: &OpenError) {
        Self::inc(match e {
            OpenError::Malformed(_) => &self.malformed,
            OpenError::Expired => &self.expired,
            OpenError::Replay => &self.replay,
            OpenError::Auth => &self.auth,
        });
    }

    /// Counts a dropped datagram by reason.
    pub fn count(&self, e: &DatagramError) {
        match e {
            DatagramError::Open(o) => self.count_open(o),
            DatagramError::Cert(c) => Self::inc(match c {
                CertError::ForeignCa => &self.cert_foreign_ca,
                CertError::Expired { .. } | CertError::NotYetValid { .. } => &self.cert_expired,
                _ => &self.cert_invalid,
            }),
            DatagramError::Malformed(_) => Self::inc(&self.malformed),
            DatagramError::UnknownIndex => Self::inc(&self.unknown_index),
            DatagramError::BadMac1 => Self::inc(&self.bad_mac1),
            DatagramError::CookieRequired => {}
            DatagramError::Handshake(_) => Self::inc(&self.noise),
            DatagramError::CertKeyMismatch => Self::inc(&self.cert_invalid),
            DatagramError::Revoked => Self::inc(&self.revoked),
            DatagramError::ReplayedInit => Self::inc(&self.replayed_init),
            DatagramError::PendingFull => Self::inc(&self.pending_full),
        }
    }

    /// Every counter with its name, for metrics export.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let v = |c: &AtomicU64| c.load(Relaxed);
        vec![
            ("malformed", v(&self.malformed)),
            ("unknown_index", v(&self.unknown_index)),
            ("replay", v(&self.replay)),
            ("auth", v(&self.auth)),
            ("expired", v(&self.expired)),
            ("bad_mac1", v(&self.bad_mac1)),
            ("cookies_sent", v(&self.cookies_sent)),
            ("noise", v(&self.noise)),
            ("cert_foreign_ca", v(&self.cert_foreign_ca)),
            ("cert_expired", v(&self.cert_expired)),
            ("cert_invalid", v(&self.cert_invalid)),
            ("revoked", v(&self.revoked)),
            ("replayed_init", v(&self.replayed_init)),
            ("pending_full", v(&self.pending_full)),
            ("handshakes_initiated", v(&self.handshakes_initiated)),
            ("handshakes_completed", v(&self.handshakes_completed)),
            ("handshake_timeouts", v(&self.handshake_timeouts)),
            ("queue_dropped", v(&self.queue_dropped)),
        ]
    }
}
