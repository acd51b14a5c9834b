//! `weft ping PEER`: an overlay-level probe (inner kind Probe, answered by the peer's engine
//! with ProbeReply) through the same encrypted session as data, so its round trip is the
//! tunnel's, crypto and both daemons included. The engine keeps the pending probes and answers
//! the control request when the reply arrives or the probe times out.

use overlay_proto::consts::{TAG_LEN, TRANSPORT_HEADER_LEN};
use overlay_proto::wire::Inner;
use overlay_proto::{Encapsulated, PeerId};
use std::time::{Duration, Instant};

use super::Engine;
use crate::report::Pong;

/// How long a probe waits for its reply.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most probes in flight.
const MAX_PENDING: usize = 64;
/// How often every connected peer's RTT is measured.
pub(super) const RTT_PERIOD: Duration = Duration::from_secs(5);
/// Most peers probed per period (the rest keep their last figure).
const MAX_RTT_PEERS: usize = 256;

/// A probe waiting for its reply.
pub(super) struct Pending {
    peer: PeerId,
    name: String,
    sent: Instant,
    reply: tokio::sync::oneshot::Sender<Result<Pong, String>>,
}

impl Engine {
    /// Sends a probe to the member named `name` (or with that public key or endpoint).
    pub(super) fn ping(
        &mut self,
        now: Instant,
        name: &str,
        reply: tokio::sync::oneshot::Sender<Result<Pong, String>>,
    ) {
        let found = self.endpoint.peer_ids().find(|&id| {
            let Some(i) = self.endpoint.peer_info(id) else { return false };
            let cert = i.cert.clone().or_else(|| self.members.certs.get(&id).cloned());
            cert.is_some_and(|c| c.name == name)
                || crate::pki::encode_key(&i.key) == name
                || i.endpoint.is_some_and(|e| e.to_string() == name)
        });
        let Some(peer) = found else {
            let _ = reply.send(Err(format!("no member named {name:?}")));
            return;
        };
        if self.probes.len() >= MAX_PENDING {
            let _ = reply.send(Err("too many probes in flight".into()));
            return;
        }
        self.probe_seq = self.probe_seq.wrapping_add(1);
        let id = self.probe_seq;
        let mut out = [0u8; TRANSPORT_HEADER_LEN + 12 + TAG_LEN];
        let Ok(n) = Inner::Probe(id).emit(&mut out[TRANSPORT_HEADER_LEN..]) else { return };
        match self.endpoint.encapsulate(now, peer, &mut out, n) {
            Ok(Encapsulated::Ready { dst, len }) => self.send(dst, &out[..len]),
            // Queued behind a handshake: sent when the session is up (the wait counts).
            Ok(Encapsulated::Queued) => {}
            Err(e) => {
                let _ = reply.send(Err(format!("cannot reach {name}: {e}")));
                return;
            }
        }
        self.probes.insert(id, Pending { peer, name: name.to_owned(), sent: now, reply });
    }

    /// Probes every connected peer every [`RTT_PERIOD`], so status (and the status page) can
    /// show each link's round-trip time.
    pub(super) fn probe_peers(&mut self, now: Instant) {
        if now < self.next_rtt_probe {
            return;
        }
        self.next_rtt_probe = now + RTT_PERIOD;
        self.rtt_probes.retain(|_, (_, sent)| now.saturating_duration_since(*sent) < PROBE_TIMEOUT);
        let connected: Vec<PeerId> = self
            .endpoint
            .peer_ids()
            .filter(|&p| self.endpoint.peer_info(p).is_some_and(|i| i.connected))
            .collect();
        for peer in connected.into_iter().take(MAX_RTT_PEERS) {
            self.probe_seq = self.probe_seq.wrapping_add(1);
            let id = self.probe_seq;
            let mut out = [0u8; TRANSPORT_HEADER_LEN + 12 + TAG_LEN];
            let Ok(n) = Inner::Probe(id).emit(&mut out[TRANSPORT_HEADER_LEN..]) else { return };
            if let Ok(Encapsulated::Ready { dst, len }) = self.endpoint.encapsulate(now, peer, &mut out, n) {
                self.send(dst, &out[..len]);
                self.rtt_probes.insert(id, (peer, now));
            }
        }
    }

    /// A probe reply from `peer`.
    pub(super) fn probe_reply(&mut self, now: Instant, peer: PeerId, id: u64) {
        if let Some((p, sent)) = self.rtt_probes.get(&id).copied() {
            if p == peer {
                self.rtt_probes.remove(&id);
                self.rtt.insert(peer, now.saturating_duration_since(sent));
            }
            return;
        }
        if self.probes.get(&id).is_some_and(|p| p.peer == peer) {
            if let Some(p) = self.probes.remove(&id) {
                let rtt = now.saturating_duration_since(p.sent);
                let endpoint = self.endpoint.peer_info(peer).and_then(|i| i.endpoint);
                let _ = p.reply.send(Ok(Pong { peer: p.name, endpoint, rtt_ms: rtt.as_secs_f64() * 1000.0 }));
            }
        }
    }

    /// Answers probes that waited too long.
    pub(super) fn expire_probes(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .probes
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.sent) >= PROBE_TIMEOUT)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(p) = self.probes.remove(&id) {
                let _ = p.reply.send(Err(format!("no reply from {} within {PROBE_TIMEOUT:?}", p.name)));
            }
        }
    }
}
