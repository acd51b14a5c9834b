//! The endpoint: all peers of one node, the demultiplexer from session index to peer, the
//! handshake responder, and the timers. Sans-IO, in the shape of `quinn-proto`:
//!
//! - inputs: [`Endpoint::handle_datagram`], [`Endpoint::encapsulate`],
//!   [`Endpoint::handle_timeout`], [`Endpoint::add_peer`], [`Endpoint::dial`];
//! - outputs, to drain after every input: [`Endpoint::poll_transmit`] (datagrams to send, in
//!   order), [`Endpoint::poll_event`] (peers up, dials done, handshakes failed), and
//!   [`Endpoint::poll_timeout`] (when to call `handle_timeout` next).
//!
//! Multi-threaded data planes seal and open with the `Arc<Session>`s from
//! [`Endpoint::sessions`] directly and leave handshakes and timers to the endpoint; the
//! endpoint reads the sessions' atomic timestamps, so it sees their traffic.
//!
//! Invariants: every index in `indices` names exactly one live session, initiation or pending
//! responder; a peer is known by its static key and has at most one initiation in flight.

use rand_core::RngCore;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cert::{CaBundle, CertError, NodeCert};
use crate::consts::*;
use crate::cookie::{mac, CookieJar, MacKeys};
use crate::handshake::{self, HandshakeError, Payload};
use crate::peer::{Due, FinishResend, Peer, PeerId, Totals, FINISH_RESEND};
use crate::session::{Cipher, Ciphers, Features, OpenError, SealError, Session};
use crate::stats::EndpointStats;
use crate::wire::{
    CookieReply, HandshakePacket, HandshakeRepr, Inner, MessageType, Pattern, TransportHeader, WireError,
};

/// What a node needs to take part.
#[derive(Clone)]
pub struct EndpointConfig {
    /// Our X25519 static secret.
    pub static_secret: crate::keys::SecretKey,
    /// Our certificate (its key must match `static_secret`).
    pub cert: NodeCert,
    /// The CAs we trust; our own certificate's issuer must be one of them.
    pub cas: CaBundle,
    /// The wall clock at some instant: certificate validity and init timestamps need Unix time.
    pub wall_clock: (Instant, Duration),
    /// Handshakes per second above which initiators must prove their address with a cookie.
    pub handshake_rate_limit: u32,
    /// Static keys that never complete a handshake.
    pub revoked: BTreeSet<[u8; 32]>,
    /// Most peers (distinct static keys) held at once; a handshake from a new key beyond it
    /// is refused (`DatagramError::PeersFull`) until the owner removes peers.
    pub max_peers: usize,
    /// The session ciphers we offer: a pair uses AES-256-GCM when both offer it,
    /// ChaCha20-Poly1305 otherwise, and fails the handshake with nothing in common.
    pub ciphers: Ciphers,
    /// What we accept beyond the base protocol ([`Features::ALL`] unless testing an older
    /// peer); a session uses what both sides state.
    pub features: Features,
}

/// Why the endpoint refused its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The certificate names another key.
    #[error("the certificate's public key does not match the private key")]
    KeyMismatch,
    /// Our own certificate does not verify against the CA.
    #[error("own certificate: {0}")]
    Cert(#[from] CertError),
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub dst: SocketAddr,
    /// UDP payload.
    pub payload: Vec<u8>,
}

/// Something the owner should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A handshake with `peer` completed.
    HandshakeCompleted {
        /// The peer.
        peer: PeerId,
    },
    /// A dial to an address reached a verified node.
    Dialed {
        /// The address dialled.
        addr: SocketAddr,
        /// The node found there.
        peer: PeerId,
    },
    /// A dial gave up after [`REKEY_ATTEMPT_TIME`].
    DialFailed {
        /// The address dialled.
        addr: SocketAddr,
    },
    /// A handshake with a known peer gave up; its queued frames were dropped.
    HandshakeFailed {
        /// The peer.
        peer: PeerId,
    },
    /// A peer's underlay address changed (roaming).
    EndpointChanged {
        /// The peer.
        peer: PeerId,
        /// Where it is now.
        addr: SocketAddr,
    },
}

/// What [`Endpoint::handle_datagram`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// An authenticated inner payload from `peer`, at `payload` inside the buffer.
    Payload {
        /// The sender.
        peer: PeerId,
        /// Where the plaintext is.
        payload: Range<usize>,
    },
    /// A handshake, cookie or keepalive message was consumed; drain `poll_transmit`.
    Consumed,
}

/// Why a datagram was dropped (each is also counted in [`EndpointStats`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// Could not be parsed.
    #[error("malformed: {0}")]
    Malformed(#[from] WireError),
    /// No session, initiation or pending handshake has this index.
    #[error("unknown receiver index")]
    UnknownIndex,
    /// Transport data refused.
    #[error("transport: {0}")]
    Open(#[from] OpenError),
    /// `mac1` wrong: not from a member of this network.
    #[error("bad mac1")]
    BadMac1,
    /// Under load and no valid cookie: a cookie reply was sent instead.
    #[error("under load, cookie requested")]
    CookieRequired,
    /// The Noise layer refused.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The peer's certificate was refused.
    #[error("certificate: {0}")]
    Cert(#[from] CertError),
    /// The certificate names another key than the one that ran the handshake.
    #[error("certificate key does not match the handshake key")]
    CertKeyMismatch,
    /// The key is revoked.
    #[error("revoked key")]
    Revoked,
    /// An IK init older than one already seen from that key.
    #[error("replayed handshake initiation")]
    ReplayedInit,
    /// Too many half-open XX handshakes.
    #[error("too many pending handshakes")]
    PendingFull,
    /// Too many half-open XX handshakes from this source address.
    #[error("too many pending handshakes from this address")]
    PendingSourceFull,
    /// A new key while `max_peers` peers are held.
    #[error("peer table full")]
    PeersFull,
    /// The peer offers no session cipher we offer.
    #[error("no cipher in common: we offer {ours}, the peer offers {theirs}")]
    NoCommonCipher {
        /// What we offer.
        ours: Ciphers,
        /// What the peer offers.
        theirs: Ciphers,
    },
}

/// Why a payload could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncapError {
    /// No such peer.
    #[error("unknown peer")]
    UnknownPeer,
    /// The peer has no known address.
    #[error("peer has no endpoint")]
    NoEndpoint,
    /// Sealing failed.
    #[error("seal: {0}")]
    Seal(#[from] SealError),
}

/// What [`Endpoint::encapsulate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encapsulated {
    /// `buf[..len]` is a datagram for `dst`.
    Ready {
        /// Destination.
        dst: SocketAddr,
        /// Datagram length.
        len: usize,
    },
    /// No usable session: the payload was queued and a handshake is under way.
    Queued,
}

/// A peer's public state.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Static key.
    pub key: [u8; 32],
    /// Verified certificate, once a handshake completed.
    pub cert: Option<Arc<NodeCert>>,
    /// Underlay address.
    pub endpoint: Option<SocketAddr>,
    /// Last completed handshake.
    pub last_handshake: Option<Instant>,
    /// Whether a session can send now.
    pub connected: bool,
    /// Since when data sent on the current session has had no authenticated reply (`None`:
    /// answered). A live peer answers within [`crate::consts::KEEPALIVE_TIMEOUT`] plus a
    /// round trip; much longer means it lost the session (it restarted) or is gone.
    pub unanswered_since: Option<Instant>,
    /// The current session's cipher.
    pub cipher: Option<Cipher>,
    /// When the handshake now in flight to this peer began (`None`: none in flight). Retries
    /// keep the first attempt's time, so this tells how long the peer has not answered.
    pub initiating_since: Option<Instant>,
    /// Traffic.
    pub totals: Totals,
}

enum Owner {
    Peer(PeerId),
    Dial(SocketAddr),
}

struct Initiation {
    owner: Owner,
    hs: snow::HandshakeState,
    pattern: Pattern,
    dst: SocketAddr,
    started: Instant,
    retry_at: Instant,
    mac1: [u8; MAC_LEN],
    cookie: Option<[u8; 16]>,
}

struct PendingResponder {
    hs: snow::HandshakeState,
    remote_index: u32,
    created: Instant,
    /// The address it came from (its share of [`MAX_PENDING_PER_SOURCE`]).
    source: IpAddr,
}

enum Slot {
    Session(PeerId),
    Initiation(Box<Initiation>),
    Pending(Box<PendingResponder>),
}

/// Half-open XX handshakes held at once (each holds a Noise state until it completes or
/// [`REKEY_TIMEOUT`] passes).
pub const MAX_PENDING: usize = 1024;
/// Half-open XX handshakes one source address may hold: one address cannot take the table
/// that every first contact needs (1024 / 5 s would be ~205 initiations/s, far below any rate
/// limit).
pub const MAX_PENDING_PER_SOURCE: usize = 8;
/// Half-open handshakes above which every XX initiation must carry a cookie (proof that its
/// sender receives at its address), whatever the handshake rate: many spoofed sources, each
/// under its own cap, cannot fill the table either.
pub const PENDING_COOKIE_THRESHOLD: usize = MAX_PENDING / 4;
const NOISE_BUF: usize = MAX_HANDSHAKE_NOISE_LEN;

/// What one trusted CA gives the handshake: the Noise prologue `"weft v1" || CA key` and the
/// mac1 and cookie keys derived from the CA key.
///
/// An initiator binds its handshake to the CA that issued its own certificate; a responder
/// finds that CA by trying the mac1 of each CA it trusts (at most
/// [`MAX_TRUSTED_CAS`](crate::cert::MAX_TRUSTED_CAS) keyed
/// BLAKE2s runs over ~150 bytes, before any Diffie-Hellman or rate limit) and answers under it.
/// So nodes whose bundles overlap meet whichever of them initiates, while a node whose issuer
/// left a bundle is dropped at mac1, as cheaply as a stranger. Binding to a network name
/// instead would cost one mac1 per datagram but needs a name configured everywhere and lets
/// every weft network with the same name past the cheap check.
struct Trust {
    prologue: Vec<u8>,
    macs: MacKeys,
}

impl Trust {
    fn new(ca_key: [u8; 32]) -> Self {
        let mut prologue = b"weft v1".to_vec();
        prologue.extend_from_slice(&ca_key);
        Self { prologue, macs: MacKeys::new(&ca_key) }
    }
}

/// The trust list for `cas`, the issuer of `cert` first (what our initiations use).
fn trust_for(cert: &NodeCert, cas: &CaBundle) -> Vec<Trust> {
    let mut keys: Vec<[u8; 32]> = cas.iter().map(|c| c.public_key).collect();
    keys.sort_by_key(|k| *k != cert.issuer);
    keys.into_iter().map(Trust::new).collect()
}

/// All peers of one node.
pub struct Endpoint {
    cfg: EndpointConfig,
    /// One entry per trusted CA, our certificate's issuer first.
    trust: Vec<Trust>,
    cert_bytes: Vec<u8>,
    jar: CookieJar,
    rng: Box<dyn RngCore + Send>,
    peers: BTreeMap<PeerId, Peer>,
    by_key: BTreeMap<[u8; 32], PeerId>,
    next_peer: u32,
    indices: HashMap<u32, Slot>,
    pending: usize,
    /// Half-open handshakes per source address (no entry at zero; at most `pending` entries).
    pending_by_source: HashMap<IpAddr, usize>,
    dials: BTreeMap<SocketAddr, u32>,
    /// Cookies received per destination, kept across handshake retries.
    cookies: BTreeMap<SocketAddr, ([u8; 16], Instant)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    generation: u64,
    /// The latest `now` the timers ran at: thresholds up to it have been acted on.
    timers_ran: Option<Instant>,
    stats: Arc<EndpointStats>,
}

impl Endpoint {
    /// A new endpoint; checks that our own certificate matches our key and the CA.
    pub fn new(cfg: EndpointConfig, rng: Box<dyn RngCore + Send>) -> Result<Self, ConfigError> {
        if cfg.static_secret.public_key() != cfg.cert.public_key {
            return Err(ConfigError::KeyMismatch);
        }
        let unix = cfg.wall_clock.1.as_secs();
        cfg.cas.verify_node(&cfg.cert, unix)?;
        Ok(Self {
            trust: trust_for(&cfg.cert, &cfg.cas),
            cert_bytes: cfg.cert.encode(),
            jar: CookieJar::new(cfg.handshake_rate_limit),
            rng,
            peers: BTreeMap::new(),
            by_key: BTreeMap::new(),
            next_peer: 0,
            indices: HashMap::new(),
            pending: 0,
            pending_by_source: HashMap::new(),
            dials: BTreeMap::new(),
            cookies: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            generation: 0,
            timers_ran: None,
            stats: Arc::new(EndpointStats::default()),
            cfg,
        })
    }

    /// The session ciphers we offer.
    pub fn ciphers(&self) -> Ciphers {
        self.cfg.ciphers
    }

    /// Our certificate, as running.
    pub fn cert(&self) -> &NodeCert {
        &self.cfg.cert
    }

    /// Drop and handshake counters, shareable with data-plane workers.
    pub fn stats(&self) -> &Arc<EndpointStats> {
        &self.stats
    }

    /// Our static public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.cfg.cert.public_key
    }

    /// Bumped whenever a session, a peer or an endpoint address changes: republish snapshots.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Replaces our static key, certificate and trusted CAs (a live reload of the node's PKI):
    /// handshakes from now on use them; half-open ones we answered under the old identity are
    /// dropped. Sessions already up carry on until [`Endpoint::rehandshake_all`] replaces
    /// them. Refused, changing nothing, if the key and certificate do not match or the bundle
    /// does not vouch for the certificate now.
    pub fn set_identity(
        &mut self,
        now: Instant,
        static_secret: crate::keys::SecretKey,
        cert: NodeCert,
        cas: CaBundle,
    ) -> Result<(), ConfigError> {
        if static_secret.public_key() != cert.public_key {
            return Err(ConfigError::KeyMismatch);
        }
        cas.verify_node(&cert, self.unix_nanos(now) / 1_000_000_000)?;
        self.trust = trust_for(&cert, &cas);
        self.cert_bytes = cert.encode();
        self.cfg.static_secret = static_secret;
        self.cfg.cert = cert;
        self.cfg.cas = cas;
        let pending: Vec<u32> =
            self.indices.iter().filter(|(_, s)| matches!(s, Slot::Pending(_))).map(|(i, _)| *i).collect();
        for idx in pending {
            if let Some(Slot::Pending(p)) = self.indices.remove(&idx) {
                self.release_pending(p.source);
            }
        }
        Ok(())
    }

    /// Starts a new handshake with every peer we hold a session with, and restarts the
    /// handshakes in flight (after [`Endpoint::set_identity`]): traffic goes on over the old
    /// sessions until the new ones are up, as at a rekey, so flows inside see no reset.
    pub fn rehandshake_all(&mut self, now: Instant) {
        let mut in_flight: Vec<u32> =
            self.indices.iter().filter(|(_, s)| matches!(s, Slot::Initiation(_))).map(|(i, _)| *i).collect();
        in_flight.sort_unstable();
        let mut ids = BTreeSet::new();
        for idx in in_flight {
            let Some(Slot::Initiation(i)) = self.indices.remove(&idx) else { continue };
            self.clear_initiation(&i.owner, idx);
            match i.owner {
                Owner::Dial(addr) => self.start_initiation(now, i.owner, Pattern::Xx, addr, None, i.started),
                Owner::Peer(p) => {
                    ids.insert(p);
                }
            }
        }
        ids.extend(self.peers.iter().filter(|(_, p)| p.current.is_some()).map(|(id, _)| *id));
        for id in ids {
            self.connect(now, id);
        }
    }

    /// Replaces the revocation list; sessions of newly revoked keys are dropped at once.
    pub fn set_revoked(&mut self, revoked: BTreeSet<[u8; 32]>) {
        let gone: Vec<PeerId> = revoked.iter().filter_map(|k| self.by_key.get(k).copied()).collect();
        self.cfg.revoked = revoked;
        for p in gone {
            self.remove_peer(p);
        }
    }

    /// Adds (or finds) the peer with static key `key`, optionally at `endpoint`.
    pub fn add_peer(&mut self, key: [u8; 32], endpoint: Option<SocketAddr>) -> PeerId {
        let id = self.peer_for_key(key);
        if let (Some(e), Some(p)) = (endpoint, self.peers.get_mut(&id)) {
            if p.endpoint.is_none() {
                p.endpoint = Some(e);
                self.generation += 1;
            }
        }
        id
    }

    /// Forgets a peer and all its sessions.
    pub fn remove_peer(&mut self, id: PeerId) {
        if let Some(p) = self.peers.remove(&id) {
            self.by_key.remove(&p.key);
            for s in p.sessions() {
                self.indices.remove(&s.local_index());
            }
            if let Some(i) = p.initiation {
                self.indices.remove(&i);
            }
            self.generation += 1;
        }
    }

    /// Looks a peer up by static key.
    pub fn peer_by_key(&self, key: &[u8; 32]) -> Option<PeerId> {
        self.by_key.get(key).copied()
    }

    /// A peer's public state.
    pub fn peer_info(&self, id: PeerId) -> Option<PeerInfo> {
        let p = self.peers.get(&id)?;
        Some(PeerInfo {
            key: p.key,
            cert: p.cert.clone(),
            endpoint: p.endpoint,
            last_handshake: p.last_handshake,
            connected: p.current.is_some(),
            unanswered_since: p.current.as_ref().and_then(|s| s.unanswered_since()),
            cipher: p.current.as_ref().map(|s| s.cipher()),
            initiating_since: p.initiation.and_then(|i| match self.indices.get(&i) {
                Some(Slot::Initiation(i)) => Some(i.started),
                _ => None,
            }),
            totals: p.totals(),
        })
    }

    /// All peer ids, in order.
    pub fn peer_ids(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers.keys().copied()
    }

    /// Every live session as `(local index, peer, session)`, for data-plane lookup tables.
    pub fn sessions(&self) -> impl Iterator<Item = (u32, PeerId, &Arc<Session>)> + '_ {
        self.peers.iter().flat_map(|(id, p)| p.sessions().map(move |s| (s.local_index(), *id, s)))
    }

    /// The session and address to send to `peer` with now, if any.
    pub fn sending_session(&self, now: Instant, peer: PeerId) -> Option<(&Arc<Session>, SocketAddr)> {
        let p = self.peers.get(&peer)?;
        Some((p.sending(now)?, p.endpoint?))
    }

    /// Records that `peer` sent an authenticated packet from `addr` (data planes that open
    /// sessions themselves report roaming through this).
    pub fn note_roamed(&mut self, peer: PeerId, addr: SocketAddr) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if p.endpoint != Some(addr) {
                p.endpoint = Some(addr);
                self.generation += 1;
                self.events.push_back(Event::EndpointChanged { peer, addr });
            }
        }
    }

    /// Has the handshake in flight to `peer` (if any) sent again at the next timer pass, to
    /// the peer's address now: after the owner moved the peer to another path.
    pub fn retry_handshake(&mut self, now: Instant, peer: PeerId) {
        let Some(idx) = self.peers.get(&peer).and_then(|p| p.initiation) else { return };
        if let Some(Slot::Initiation(i)) = self.indices.get_mut(&idx) {
            i.retry_at = i.retry_at.min(now);
        }
    }

    /// Starts (or keeps) an XX handshake with whoever listens at `addr`.
    pub fn dial(&mut self, now: Instant, addr: SocketAddr) {
        if self.dials.contains_key(&addr) {
            return;
        }
        self.start_initiation(now, Owner::Dial(addr), Pattern::Xx, addr, None, now);
    }

    /// Starts a handshake with `peer` unless one is in flight.
    pub fn connect(&mut self, now: Instant, peer: PeerId) {
        let Some(p) = self.peers.get(&peer) else { return };
        if p.initiation.is_some() {
            return;
        }
        let Some(dst) = p.endpoint else { return };
        let key = p.key;
        self.start_initiation(now, Owner::Peer(peer), Pattern::Ik, dst, Some(key), now);
    }

    /// Seals the inner payload at `buf[16..16 + payload_len]` for `peer` (leave 16 bytes of
    /// room after it for the tag). Without a usable session the payload is queued (bounded,
    /// oldest dropped first) and a handshake starts.
    pub fn encapsulate(
        &mut self,
        now: Instant,
        peer: PeerId,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<Encapsulated, EncapError> {
        let p = self.peers.get_mut(&peer).ok_or(EncapError::UnknownPeer)?;
        let dst = p.endpoint.ok_or(EncapError::NoEndpoint)?;
        if let Some(s) = p.sending(now) {
            let len = s.seal(now, buf, payload_len)?;
            let rekey = s.is_initiator() && s.age(now) >= REKEY_AFTER_TIME;
            if rekey {
                self.connect(now, peer);
            }
            return Ok(Encapsulated::Ready { dst, len });
        }
        let end = TRANSPORT_HEADER_LEN + payload_len;
        if buf.len() < end {
            return Err(SealError::BufferTooSmall.into());
        }
        if p.queue.len() >= MAX_QUEUED_PER_PEER {
            p.queue.pop_front();
            EndpointStats::inc(&self.stats.queue_dropped);
        }
        p.queue.push_back(buf[TRANSPORT_HEADER_LEN..end].to_vec());
        // Behind an unconfirmed XX finish the session is there, only not yet proven.
        if p.finish.is_none() {
            self.connect(now, peer);
        }
        Ok(Encapsulated::Queued)
    }

    /// Processes one received datagram (decrypted in place).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Result<Received, DatagramError> {
        let r = self.dispatch(now, from, buf);
        if let Err(e) = &r {
            self.stats.count(e);
        }
        r
    }

    fn dispatch(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Result<Received, DatagramError> {
        match MessageType::of(buf)? {
            MessageType::Transport => self.handle_transport(now, from, buf),
            MessageType::CookieReply => self.handle_cookie(now, CookieReply::parse(buf)?),
            _ => {
                let packet = HandshakePacket::new_checked(&*buf)?;
                let input = packet.mac1_input();
                let trust = self
                    .trust
                    .iter()
                    .position(|t| mac(&t.macs.mac1, input) == packet.mac1())
                    .ok_or(DatagramError::BadMac1)?;
                match packet.kind() {
                    MessageType::HandshakeInit => self.handle_init(now, from, &packet, trust),
                    MessageType::HandshakeResponse => self.handle_response(now, from, &packet),
                    _ => self.handle_finish(now, from, &packet),
                }
            }
        }
    }

    /// Runs the timers: handshake retries and give-ups, keepalives, rekeys, session expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.timers_ran = Some(self.timers_ran.map_or(now, |r| r.max(now)));
        let mut retry = Vec::new();
        let mut expired_pending = Vec::new();
        for (&idx, slot) in &self.indices {
            match slot {
                Slot::Initiation(i) if now >= i.retry_at => retry.push(idx),
                Slot::Pending(p) if now.saturating_duration_since(p.created) >= REKEY_TIMEOUT => {
                    expired_pending.push(idx)
                }
                _ => {}
            }
        }
        retry.sort_unstable();
        expired_pending.sort_unstable();
        for idx in expired_pending {
            if let Some(Slot::Pending(p)) = self.indices.remove(&idx) {
                self.release_pending(p.source);
            }
        }
        for idx in retry {
            let Some(Slot::Initiation(i)) = self.indices.remove(&idx) else { continue };
            self.clear_initiation(&i.owner, idx);
            if now.saturating_duration_since(i.started) >= REKEY_ATTEMPT_TIME {
                EndpointStats::inc(&self.stats.handshake_timeouts);
                match i.owner {
                    Owner::Dial(addr) => self.events.push_back(Event::DialFailed { addr }),
                    Owner::Peer(peer) => {
                        if let Some(p) = self.peers.get_mut(&peer) {
                            EndpointStats::add(&self.stats.queue_dropped, p.queue.len() as u64);
                            p.queue.clear();
                        }
                        self.events.push_back(Event::HandshakeFailed { peer });
                    }
                }
            } else {
                let key = match i.owner {
                    Owner::Peer(p) => self.peers.get(&p).map(|p| p.key),
                    Owner::Dial(_) => None,
                };
                let dst = match i.owner {
                    Owner::Peer(p) => self.peers.get(&p).and_then(|p| p.endpoint).unwrap_or(i.dst),
                    Owner::Dial(a) => a,
                };
                self.start_initiation(now, i.owner, i.pattern, dst, key, i.started);
            }
        }
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            let Some(p) = self.peers.get_mut(&id) else { continue };
            let mut dropped = p.expire(now);
            // A data plane opened a packet on the responder session: the peer holds its keys.
            if p.next.as_ref().is_some_and(|n| n.is_confirmed()) {
                dropped.extend(p.promote_next());
                self.generation += 1;
            }
            let mut confirmed_finish = false;
            let mut finish_unanswered = false;
            if let Some(f) = p.finish.as_mut() {
                let current = p.current.as_ref().filter(|s| s.local_index() == f.index);
                match current {
                    // The responder never took our finish (it refused us): stop resending;
                    // the unconfirmed session is due for a new handshake, and the payloads
                    // wait for that one.
                    Some(s) if !s.is_confirmed() && s.age(now) >= REKEY_TIMEOUT => finish_unanswered = true,
                    Some(s) if !s.is_confirmed() => {
                        if now >= f.next {
                            if let Some(dst) = p.endpoint {
                                self.transmits.push_back(Transmit { dst, payload: f.datagram.clone() });
                            }
                            f.next = now + FINISH_RESEND;
                        }
                    }
                    // Confirmed, or replaced by another handshake: payloads may go.
                    _ => confirmed_finish = true,
                }
            }
            if confirmed_finish || finish_unanswered {
                p.finish = None;
                self.generation += 1;
            }
            let due = p.due(now);
            if !dropped.is_empty() {
                self.generation += 1;
                for idx in dropped {
                    self.indices.remove(&idx);
                }
            }
            if confirmed_finish {
                self.flush_queue(now, id);
            }
            match due {
                Due::Nothing => {}
                Due::Keepalive => self.send_keepalive(now, id),
                Due::Handshake => self.connect(now, id),
            }
        }
    }

    /// When [`Endpoint::handle_timeout`] should run next; always later than the last
    /// `handle_timeout`'s `now`, so sleeping until it never spins.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let slots = self.indices.values().filter_map(|s| match s {
            Slot::Initiation(i) => Some(i.retry_at),
            Slot::Pending(p) => Some(p.created + REKEY_TIMEOUT),
            Slot::Session(_) => None,
        });
        slots.chain(self.peers.values().filter_map(|p| p.next_deadline(self.timers_ran))).min()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- internals ----

    fn unix_nanos(&self, now: Instant) -> u64 {
        let (at, wall) = self.cfg.wall_clock;
        let t = if now >= at { wall + (now - at) } else { wall.saturating_sub(at - now) };
        u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
    }

    fn peer_for_key(&mut self, key: [u8; 32]) -> PeerId {
        if let Some(id) = self.by_key.get(&key) {
            return *id;
        }
        let id = PeerId(self.next_peer);
        self.next_peer += 1;
        self.peers.insert(id, Peer::new(key));
        self.by_key.insert(key, id);
        self.generation += 1;
        id
    }

    fn new_index(&mut self) -> u32 {
        loop {
            let i = self.rng.next_u32();
            if i != 0 && !self.indices.contains_key(&i) {
                return i;
            }
        }
    }

    fn entropy(&mut self) -> [u8; 64] {
        let mut e = [0u8; 64];
        self.rng.fill_bytes(&mut e);
        e
    }

    fn jitter(&mut self) -> Duration {
        Duration::from_millis(u64::from(self.rng.next_u32()) % (MAX_JITTER.as_millis() as u64 + 1))
    }

    fn clear_initiation(&mut self, owner: &Owner, idx: u32) {
        match owner {
            Owner::Peer(p) => {
                if let Some(p) = self.peers.get_mut(p) {
                    if p.initiation == Some(idx) {
                        p.initiation = None;
                    }
                }
            }
            Owner::Dial(a) => {
                if self.dials.get(a) == Some(&idx) {
                    self.dials.remove(a);
                }
            }
        }
    }

    fn start_initiation(
        &mut self,
        now: Instant,
        owner: Owner,
        pattern: Pattern,
        dst: SocketAddr,
        key: Option<[u8; 32]>,
        started: Instant,
    ) {
        let entropy = self.entropy();
        let Ok(mut hs) = handshake::build(
            pattern,
            true,
            self.cfg.static_secret.as_bytes(),
            key.as_ref(),
            &self.trust[0].prologue,
            entropy,
        ) else {
            return;
        };
        let idx = self.new_index();
        let payload = match pattern {
            // IK carries our certificate in message 1; XX sends it in message 3.
            Pattern::Ik => {
                let ts = match owner {
                    Owner::Peer(p) => {
                        let unix = self.unix_nanos(now);
                        let peer = self.peers.get_mut(&p).expect("initiation for a live peer");
                        peer.sent_init_timestamp = unix.max(peer.sent_init_timestamp + 1);
                        peer.sent_init_timestamp
                    }
                    Owner::Dial(_) => self.unix_nanos(now),
                };
                Payload {
                    cert: self.cert_bytes.clone(),
                    timestamp: ts,
                    ciphers: self.cfg.ciphers,
                    features: self.cfg.features,
                }
                .encode()
            }
            Pattern::Xx => Vec::new(),
        };
        let mut noise = [0u8; NOISE_BUF];
        let Ok(n) = hs.write_message(&payload, &mut noise) else { return };
        let repr = HandshakeRepr {
            kind: MessageType::HandshakeInit,
            pattern: Some(pattern),
            sender_index: idx,
            receiver_index: 0,
            noise: &noise[..n],
        };
        let cookie = self
            .cookies
            .get(&dst)
            .filter(|(_, t)| now.saturating_duration_since(*t) < COOKIE_SECRET_LIFETIME)
            .map(|c| c.0);
        let (datagram, mac1) = self.seal_handshake(&repr, cookie, 0);
        self.transmits.push_back(Transmit { dst, payload: datagram });
        match owner {
            Owner::Peer(p) => {
                if let Some(peer) = self.peers.get_mut(&p) {
                    peer.initiation = Some(idx);
                }
            }
            Owner::Dial(a) => {
                self.dials.insert(a, idx);
            }
        }
        let retry_at = now + REKEY_TIMEOUT + self.jitter();
        let i = Initiation { owner, hs, pattern, dst, started, retry_at, mac1, cookie };
        self.indices.insert(idx, Slot::Initiation(Box::new(i)));
        EndpointStats::inc(&self.stats.handshakes_initiated);
    }

    /// Emits a handshake datagram with mac1 under `self.trust[trust]` (and mac2 when we hold
    /// a cookie for the peer).
    fn seal_handshake(
        &self,
        repr: &HandshakeRepr<'_>,
        cookie: Option<[u8; 16]>,
        trust: usize,
    ) -> (Vec<u8>, [u8; MAC_LEN]) {
        let mut d = vec![0u8; repr.buffer_len()];
        repr.emit(&mut d).expect("buffer sized by buffer_len");
        let mut p = HandshakePacket::new_checked(&mut d[..]).expect("just emitted");
        let mac1 = mac(&self.trust[trust].macs.mac1, p.mac1_input());
        p.set_mac1(&mac1);
        if let Some(c) = cookie {
            let mac2 = mac(&c, p.mac2_input());
            p.set_mac2(&mac2);
        }
        (d, mac1)
    }

    /// Verifies the peer's certificate payload against the key Noise authenticated, and picks
    /// the session cipher from what both offer.
    fn verify_payload(
        &self,
        now: Instant,
        payload: &[u8],
        remote_static: Option<&[u8]>,
    ) -> Result<(NodeCert, u64, Cipher, Features), DatagramError> {
        let payload = Payload::decode(payload)?;
        let (ours, theirs) = (self.cfg.ciphers, payload.ciphers);
        let cipher = ours.choose(theirs).ok_or(DatagramError::NoCommonCipher { ours, theirs })?;
        let cert = NodeCert::decode(&payload.cert)?;
        self.cfg.cas.verify_node(&cert, self.unix_nanos(now) / 1_000_000_000)?;
        if remote_static != Some(&cert.public_key[..]) {
            return Err(DatagramError::CertKeyMismatch);
        }
        if self.cfg.revoked.contains(&cert.public_key) {
            return Err(DatagramError::Revoked);
        }
        if !self.by_key.contains_key(&cert.public_key) && self.peers.len() >= self.cfg.max_peers {
            return Err(DatagramError::PeersFull);
        }
        Ok((cert, payload.timestamp, cipher, self.cfg.features.common(payload.features)))
    }

    /// Whether the initiation may proceed: under handshake load (rate, or half-open pressure
    /// for XX) only with a valid cookie; otherwise a cookie reply is sent.
    fn check_load(
        &mut self,
        now: Instant,
        from: SocketAddr,
        packet: &HandshakePacket<&[u8]>,
        half_open: bool,
        trust: usize,
    ) -> Result<(), DatagramError> {
        let rate = self.jar.under_load(now);
        let pressure = half_open && self.pending >= PENDING_COOKIE_THRESHOLD;
        if !rate && !pressure {
            return Ok(());
        }
        let mut fresh = [0u8; 32];
        self.rng.fill_bytes(&mut fresh);
        let cookie = self.jar.cookie(now, from, || fresh);
        if mac(&cookie, packet.mac2_input()) == packet.mac2() {
            return Ok(());
        }
        let mut nonce = [0u8; 12];
        self.rng.fill_bytes(&mut nonce);
        let reply = self.trust[trust].macs.seal_cookie(packet.sender_index(), nonce, cookie, &packet.mac1());
        self.transmits.push_back(Transmit { dst: from, payload: reply.emit().to_vec() });
        EndpointStats::inc(&self.stats.cookies_sent);
        Err(DatagramError::CookieRequired)
    }

    /// One half-open handshake from `source` is gone (completed, failed or expired).
    fn release_pending(&mut self, source: IpAddr) {
        self.pending -= 1;
        if let Some(n) = self.pending_by_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.pending_by_source.remove(&source);
            }
        }
    }

    /// An initiation whose mac1 is under `self.trust[trust]`: the initiator's issuer, which
    /// the handshake (prologue) and our answers are bound to.
    fn handle_init(
        &mut self,
        now: Instant,
        from: SocketAddr,
        packet: &HandshakePacket<&[u8]>,
        trust: usize,
    ) -> Result<Received, DatagramError> {
        let pattern = packet.pattern().ok_or(WireError::BadField("pattern"))?;
        self.check_load(now, from, packet, pattern == Pattern::Xx, trust)?;
        if pattern == Pattern::Xx {
            if self.pending_by_source.get(&from.ip()).is_some_and(|n| *n >= MAX_PENDING_PER_SOURCE) {
                return Err(DatagramError::PendingSourceFull);
            }
            if self.pending >= MAX_PENDING {
                return Err(DatagramError::PendingFull);
            }
        }
        let entropy = self.entropy();
        let mut hs = handshake::build(
            pattern,
            false,
            self.cfg.static_secret.as_bytes(),
            None,
            &self.trust[trust].prologue,
            entropy,
        )?;
        let mut plain = [0u8; NOISE_BUF];
        let n = hs.read_message(packet.noise(), &mut plain).map_err(HandshakeError::from)?;
        let idx = self.new_index();
        let mut noise = [0u8; NOISE_BUF];
        match pattern {
            Pattern::Xx => {
                let ours = Payload {
                    cert: self.cert_bytes.clone(),
                    timestamp: self.unix_nanos(now),
                    ciphers: self.cfg.ciphers,
                    features: self.cfg.features,
                }
                .encode();
                let m = hs.write_message(&ours, &mut noise).map_err(HandshakeError::from)?;
                let repr = HandshakeRepr {
                    kind: MessageType::HandshakeResponse,
                    pattern: None,
                    sender_index: idx,
                    receiver_index: packet.sender_index(),
                    noise: &noise[..m],
                };
                let (d, _) = self.seal_handshake(&repr, None, trust);
                self.transmits.push_back(Transmit { dst: from, payload: d });
                let p = PendingResponder {
                    hs,
                    remote_index: packet.sender_index(),
                    created: now,
                    source: from.ip(),
                };
                self.indices.insert(idx, Slot::Pending(Box::new(p)));
                self.pending += 1;
                *self.pending_by_source.entry(from.ip()).or_insert(0) += 1;
            }
            Pattern::Ik => {
                let (cert, ts, cipher, features) =
                    self.verify_payload(now, &plain[..n], hs.get_remote_static())?;
                let id = self.peer_for_key(cert.public_key);
                let peer = self.peers.get_mut(&id).expect("just looked up");
                if ts <= peer.last_init_timestamp {
                    return Err(DatagramError::ReplayedInit);
                }
                let ours = Payload {
                    cert: self.cert_bytes.clone(),
                    timestamp: 0,
                    ciphers: self.cfg.ciphers,
                    features: self.cfg.features,
                }
                .encode();
                let m = hs.write_message(&ours, &mut noise).map_err(HandshakeError::from)?;
                let peer = self.peers.get_mut(&id).expect("just looked up");
                peer.last_init_timestamp = ts;
                let repr = HandshakeRepr {
                    kind: MessageType::HandshakeResponse,
                    pattern: None,
                    sender_index: idx,
                    receiver_index: packet.sender_index(),
                    noise: &noise[..m],
                };
                let (d, _) = self.seal_handshake(&repr, None, trust);
                self.transmits.push_back(Transmit { dst: from, payload: d });
                let (i_to_r, r_to_i) = hs.dangerously_get_raw_split();
                let indices = (idx, packet.sender_index());
                let s = Session::with_cipher(now, indices, false, false, (&r_to_i, &i_to_r), cipher)
                    .with_features(features);
                let s = Arc::new(s);
                self.established(now, id, from, cert, s, false);
            }
        }
        Ok(Received::Consumed)
    }

    fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        packet: &HandshakePacket<&[u8]>,
    ) -> Result<Received, DatagramError> {
        let idx = packet.receiver_index();
        if !matches!(self.indices.get(&idx), Some(Slot::Initiation(_))) {
            return Err(DatagramError::UnknownIndex);
        }
        let Some(Slot::Initiation(mut init)) = self.indices.remove(&idx) else {
            unreachable!("checked above")
        };
        let mut plain = [0u8; NOISE_BUF];
        let n = match init.hs.read_message(packet.noise(), &mut plain) {
            Ok(n) => n,
            Err(e) => {
                // A forged response must not cancel our handshake: keep waiting for the real one.
                self.indices.insert(idx, Slot::Initiation(init));
                return Err(HandshakeError::from(e).into());
            }
        };
        let verified = self.verify_payload(now, &plain[..n], init.hs.get_remote_static());
        let (cert, _, cipher, features) = match verified {
            Ok(v) => v,
            Err(e) => {
                self.clear_initiation(&init.owner, idx);
                return Err(e);
            }
        };
        self.clear_initiation(&init.owner, idx);
        let mut finish = None;
        let confirmed = match init.pattern {
            Pattern::Ik => true,
            Pattern::Xx => {
                let ours = Payload {
                    cert: self.cert_bytes.clone(),
                    timestamp: self.unix_nanos(now),
                    ciphers: self.cfg.ciphers,
                    features: self.cfg.features,
                }
                .encode();
                let mut noise = [0u8; NOISE_BUF];
                let m = init.hs.write_message(&ours, &mut noise).map_err(HandshakeError::from)?;
                let repr = HandshakeRepr {
                    kind: MessageType::HandshakeFinish,
                    pattern: None,
                    sender_index: idx,
                    receiver_index: packet.sender_index(),
                    noise: &noise[..m],
                };
                let (d, _) = self.seal_handshake(&repr, None, 0);
                self.transmits.push_back(Transmit { dst: from, payload: d.clone() });
                finish = Some(d);
                false
            }
        };
        let (i_to_r, r_to_i) = init.hs.dangerously_get_raw_split();
        let indices = (idx, packet.sender_index());
        let s = Session::with_cipher(now, indices, true, confirmed, (&i_to_r, &r_to_i), cipher);
        let s = Arc::new(s.with_features(features));
        let id = self.peer_for_key(cert.public_key);
        if let (Some(datagram), Some(p)) = (finish, self.peers.get_mut(&id)) {
            // Payloads wait until the responder shows it has the session (see Peer::finish).
            p.finish = Some(FinishResend { index: idx, datagram, next: now + FINISH_RESEND });
        }
        if let Owner::Dial(addr) = init.owner {
            self.events.push_back(Event::Dialed { addr, peer: id });
        }
        self.established(now, id, from, cert, s, true);
        Ok(Received::Consumed)
    }

    fn handle_finish(
        &mut self,
        now: Instant,
        from: SocketAddr,
        packet: &HandshakePacket<&[u8]>,
    ) -> Result<Received, DatagramError> {
        let idx = packet.receiver_index();
        if let Some(Slot::Session(id)) = self.indices.get(&idx) {
            return self.repeated_finish(now, *id, idx, packet.sender_index());
        }
        // Check both indices before taking the entry: a finish that names the wrong
        // initiator must not cancel the half-open handshake (snow's state cannot be restored
        // after a failed read, so only an on-path observer, who could drop packets anyway,
        // can still cancel it).
        if !matches!(self.indices.get(&idx), Some(Slot::Pending(p)) if p.remote_index == packet.sender_index())
        {
            return Err(DatagramError::UnknownIndex);
        }
        let Some(Slot::Pending(mut p)) = self.indices.remove(&idx) else { unreachable!("checked above") };
        self.release_pending(p.source);
        let mut plain = [0u8; NOISE_BUF];
        let n = p.hs.read_message(packet.noise(), &mut plain).map_err(HandshakeError::from)?;
        let (cert, _, cipher, features) = self.verify_payload(now, &plain[..n], p.hs.get_remote_static())?;
        let (i_to_r, r_to_i) = p.hs.dangerously_get_raw_split();
        let indices = (idx, p.remote_index);
        let s = Session::with_cipher(now, indices, false, true, (&r_to_i, &i_to_r), cipher);
        let s = Arc::new(s.with_features(features));
        let id = self.peer_for_key(cert.public_key);
        self.established(now, id, from, cert, s, true);
        Ok(Received::Consumed)
    }

    /// A finish for a session we already completed: the initiator repeats it because our
    /// confirming keepalive was lost. Answer with another keepalive on that session (to the
    /// peer's known endpoint, never to the datagram's source, so a replay reflects nothing).
    fn repeated_finish(
        &mut self,
        now: Instant,
        id: PeerId,
        idx: u32,
        sender_index: u32,
    ) -> Result<Received, DatagramError> {
        let p = self.peers.get(&id).ok_or(DatagramError::UnknownIndex)?;
        let s = p
            .sessions()
            .find(|s| s.local_index() == idx && s.remote_index() == sender_index && !s.is_initiator())
            .filter(|s| s.age(now) < REKEY_TIMEOUT)
            .cloned()
            .ok_or(DatagramError::UnknownIndex)?;
        let dst = p.endpoint.ok_or(DatagramError::UnknownIndex)?;
        let mut buf = [0u8; TRANSPORT_HEADER_LEN + INNER_HEADER_LEN + TAG_LEN];
        let n = Inner::Keepalive.emit(&mut buf[TRANSPORT_HEADER_LEN..]).expect("room for a keepalive");
        if let Ok(len) = s.seal(now, &mut buf, n) {
            self.transmits.push_back(Transmit { dst, payload: buf[..len].to_vec() });
        }
        Ok(Received::Consumed)
    }

    /// Installs a fresh session and flushes what waited for it.
    fn established(
        &mut self,
        now: Instant,
        id: PeerId,
        from: SocketAddr,
        cert: NodeCert,
        s: Arc<Session>,
        sendable: bool,
    ) {
        let idx = s.local_index();
        let peer = self.peers.get_mut(&id).expect("established for a live peer");
        peer.cert = Some(Arc::new(cert));
        peer.endpoint = Some(from);
        peer.last_handshake = Some(now);
        let dropped = if sendable { peer.install_current(s) } else { peer.install_next(s) };
        for d in dropped {
            self.indices.remove(&d);
        }
        self.indices.insert(idx, Slot::Session(id));
        self.generation += 1;
        EndpointStats::inc(&self.stats.handshakes_completed);
        self.events.push_back(Event::HandshakeCompleted { peer: id });
        if sendable {
            self.flush_or_keepalive(now, id);
        }
    }

    fn flush_or_keepalive(&mut self, now: Instant, id: PeerId) {
        let Some(p) = self.peers.get_mut(&id) else { return };
        if p.finish.is_some() {
            // Nothing goes out before the responder confirms; the finish itself is enough.
            return;
        }
        if p.queue.is_empty() {
            self.send_keepalive(now, id);
            return;
        }
        self.flush_queue(now, id);
    }

    /// Sends what waited for a session.
    fn flush_queue(&mut self, now: Instant, id: PeerId) {
        let Some(p) = self.peers.get_mut(&id) else { return };
        let queued: Vec<Vec<u8>> = p.queue.drain(..).collect();
        for payload in queued {
            let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + payload.len() + TAG_LEN];
            buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + payload.len()].copy_from_slice(&payload);
            if let Ok(Encapsulated::Ready { dst, len }) = self.encapsulate(now, id, &mut buf, payload.len()) {
                buf.truncate(len);
                self.transmits.push_back(Transmit { dst, payload: buf });
            }
        }
    }

    fn send_keepalive(&mut self, now: Instant, id: PeerId) {
        let mut buf = [0u8; TRANSPORT_HEADER_LEN + INNER_HEADER_LEN + TAG_LEN];
        let n = Inner::Keepalive.emit(&mut buf[TRANSPORT_HEADER_LEN..]).expect("room for a keepalive");
        let Some(p) = self.peers.get(&id) else { return };
        let (Some(s), Some(dst)) = (p.sending(now), p.endpoint) else { return };
        if let Ok(len) = s.seal(now, &mut buf, n) {
            self.transmits.push_back(Transmit { dst, payload: buf[..len].to_vec() });
        }
    }

    fn handle_cookie(&mut self, now: Instant, reply: CookieReply) -> Result<Received, DatagramError> {
        let Some(Slot::Initiation(i)) = self.indices.get(&reply.receiver_index) else {
            return Err(DatagramError::UnknownIndex);
        };
        // Sealed under our issuer's cookie key, unless a reload changed the issuer meanwhile.
        let cookie = self
            .trust
            .iter()
            .find_map(|t| t.macs.open_cookie(&reply, &i.mac1))
            .ok_or(DatagramError::Open(OpenError::Auth))?;
        self.cookies.insert(i.dst, (cookie, now));
        if let Some(Slot::Initiation(i)) = self.indices.get_mut(&reply.receiver_index) {
            i.cookie = Some(cookie);
        }
        Ok(Received::Consumed)
    }

    fn handle_transport(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Result<Received, DatagramError> {
        let header = TransportHeader::parse(buf)?;
        let Some(Slot::Session(id)) = self.indices.get(&header.receiver_index) else {
            return Err(DatagramError::UnknownIndex);
        };
        let id = *id;
        let peer = self.peers.get_mut(&id).ok_or(DatagramError::UnknownIndex)?;
        let s = peer
            .sessions()
            .find(|s| s.local_index() == header.receiver_index)
            .cloned()
            .ok_or(DatagramError::UnknownIndex)?;
        let range = s.open(now, buf)?;
        let finish_confirmed = peer.finish.as_ref().is_some_and(|f| f.index == s.local_index());
        if finish_confirmed {
            peer.finish = None;
            self.generation += 1;
        }
        if peer.next.as_ref().is_some_and(|n| Arc::ptr_eq(n, &s)) {
            for d in peer.promote_next() {
                self.indices.remove(&d);
            }
            self.generation += 1;
        }
        if peer.endpoint != Some(from) {
            peer.endpoint = Some(from);
            self.generation += 1;
            self.events.push_back(Event::EndpointChanged { peer: id, addr: from });
        }
        if finish_confirmed {
            self.flush_queue(now, id);
        }
        if buf.get(range.start) == Some(&(crate::wire::InnerKind::Keepalive as u8)) {
            return Ok(Received::Consumed);
        }
        Ok(Received::Payload { peer: id, payload: range })
    }
}
