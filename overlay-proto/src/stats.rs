//! Endpoint-wide counters: every dropped datagram is counted by reason. Atomics, so data-plane
//! workers and the endpoint can share one `Arc<EndpointStats>`. Each counter is declared once
//! (with [`counters!`](crate::counters!)), with the Prometheus metric the daemon exports it as.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::counters::{Family, Metric};

use crate::cert::CertError;
use crate::endpoint::DatagramError;
use crate::session::OpenError;

/// Dropped datagrams and frames, by reason (shared with the daemon's own drop counters).
pub const DROPS: Family = Family::new("weft_drops", "Datagrams and frames dropped, by reason", "reason");
/// Handshakes completed (`result="ok"`) or failed, by reason.
pub const HANDSHAKES: Family =
    Family::new("weft_handshakes", "Handshakes completed (result=ok) or failed, by reason", "result");

crate::counters! {
    /// Counters of one endpoint.
    pub struct EndpointStats;
    /// A copy of [`EndpointStats`], as status answers carry it.
    pub struct EndpointSnapshot;
    {
        /// Datagrams that did not parse.
        malformed => DROPS.label("malformed"),
        /// Datagrams for an index we do not have.
        unknown_index => DROPS.label("unknown_session"),
        /// Replayed or too-old counters.
        replay => DROPS.label("replay"),
        /// AEAD failures (forged or corrupted).
        auth => DROPS.label("auth"),
        /// Datagrams for expired sessions.
        expired => DROPS.label("expired_session"),
        /// Handshakes with a bad mac1 (not from this network).
        bad_mac1 => DROPS.label("bad_mac1"),
        /// Handshakes answered with a cookie reply.
        cookies_sent => Metric::new("weft_cookie_replies", "Cookie replies sent while under handshake load"),
        /// Noise failures.
        noise => HANDSHAKES.label("noise"),
        /// Certificates from another CA.
        cert_foreign_ca => HANDSHAKES.label("foreign_ca"),
        /// Expired or not yet valid certificates.
        cert_expired => HANDSHAKES.label("cert_expired"),
        /// Other certificate failures (bad signature, malformed, key mismatch).
        cert_invalid => HANDSHAKES.label("cert_invalid"),
        /// Revoked keys.
        revoked => HANDSHAKES.label("revoked"),
        /// Replayed handshake initiations.
        replayed_init => HANDSHAKES.label("replayed_init"),
        /// Half-open handshakes refused for lack of room.
        pending_full => HANDSHAKES.label("pending_full"),
        /// Half-open handshakes refused because their source address holds its share.
        pending_source_full => HANDSHAKES.label("pending_source_full"),
        /// Handshakes from new keys refused because the peer table was full.
        peers_full => HANDSHAKES.label("peers_full"),
        /// Handshakes refused because the peer offers no session cipher we offer.
        no_common_cipher => HANDSHAKES.label("no_common_cipher"),
        /// Handshakes we started (retries included).
        handshakes_initiated =>
            Metric::new("weft_handshakes_initiated", "Handshake initiations sent, retries included"),
        /// Handshakes completed.
        handshakes_completed => HANDSHAKES.label("ok"),
        /// Handshakes given up.
        handshake_timeouts => HANDSHAKES.label("timeout"),
        /// Queued payloads dropped (queue full or handshake failed).
        queue_dropped => DROPS.label("handshake_queue"),
    }
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
            DatagramError::PendingSourceFull => Self::inc(&self.pending_source_full),
            DatagramError::PeersFull => Self::inc(&self.peers_full),
            DatagramError::NoCommonCipher { .. } => Self::inc(&self.no_common_cipher),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Snapshot;

    /// The names `weft status --json` has always shown (`engine.counters`); renaming one
    /// breaks scripts, so it must be a deliberate edit here too.
    #[test]
    fn json_names_are_the_published_ones() {
        let v = serde_json::to_value(EndpointSnapshot::from_fn(|_| 1)).unwrap();
        let names: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = [
            "malformed",
            "unknown_index",
            "replay",
            "auth",
            "expired",
            "bad_mac1",
            "cookies_sent",
            "noise",
            "cert_foreign_ca",
            "cert_expired",
            "cert_invalid",
            "revoked",
            "replayed_init",
            "pending_full",
            "pending_source_full",
            "peers_full",
            "no_common_cipher",
            "handshakes_initiated",
            "handshakes_completed",
            "handshake_timeouts",
            "queue_dropped",
        ];
        want.sort_unstable();
        assert_eq!(names, want);
        assert!(v.as_object().unwrap().values().all(|n| n.as_u64() == Some(1)));
    }

    #[test]
    fn a_counted_drop_shows_in_the_snapshot_and_its_reading() {
        let s = EndpointStats::default();
        s.count(&DatagramError::UnknownIndex);
        s.count(&DatagramError::Revoked);
        let snap = s.snapshot();
        assert_eq!((snap.unknown_index, snap.revoked), (1, 1));
        let read: Vec<_> = snap
            .readings()
            .filter(|r| r.value > 0)
            .map(|r| (r.counter.metric.name, r.counter.metric.label))
            .collect();
        assert_eq!(
            read,
            [
                ("weft_drops", Some(("reason", "unknown_session"))),
                ("weft_handshakes", Some(("result", "revoked")))
            ]
        );
    }
}
