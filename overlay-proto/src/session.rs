//! One direction-pair of transport keys from one handshake: ChaCha20-Poly1305 or AES-256-GCM
//! (ring; chosen per session in the handshake, see [`Cipher`]) with a 64-bit counter nonce, a
//! replay window, and the timestamps the timers need.
//!
//! A `Session` is `Sync`: data-plane workers seal and open through a shared `Arc<Session>`.
//! Sealing takes the next counter with one atomic add, so a counter is never used twice. The
//! replay window sits behind a mutex taken once per received packet; the kernel steers one
//! peer's 4-tuple to one worker socket (SO_REUSEPORT hash), so it is uncontended in practice.
//!
//! Buffer layout for both directions: `[header 16][payload][tag 16]`; encryption is in place.

use ring::aead::{Aad, Algorithm, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::consts::{REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME, TAG_LEN, TRANSPORT_HEADER_LEN};
use crate::replay_window::ReplayWindow;
use crate::wire::{InnerKind, TransportHeader, WireError};

/// A session's AEAD. Both have 32-byte keys, 96-bit nonces and 16-byte tags, so the wire
/// format and the overlay MTU are the same whichever a session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cipher {
    /// ChaCha20-Poly1305: fast everywhere, the only choice without hardware AES.
    ChaCha20Poly1305,
    /// AES-256-GCM: several times faster where the CPU has AES and carry-less multiply
    /// instructions (AES-NI/VAES with PCLMULQDQ, ARMv8 crypto extensions).
    Aes256Gcm,
}

impl Cipher {
    /// Its bit in a [`Ciphers`] set.
    const fn bit(self) -> u8 {
        match self {
            Cipher::ChaCha20Poly1305 => 1,
            Cipher::Aes256Gcm => 2,
        }
    }

    fn algorithm(self) -> &'static Algorithm {
        match self {
            Cipher::ChaCha20Poly1305 => &CHACHA20_POLY1305,
            Cipher::Aes256Gcm => &AES_256_GCM,
        }
    }

    /// Its name in configuration, status and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Cipher::ChaCha20Poly1305 => "chacha20poly1305",
            Cipher::Aes256Gcm => "aes-256-gcm",
        }
    }
}

impl std::fmt::Display for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ciphers a node offers in its handshakes: a pair uses AES-256-GCM when both offer it and
/// ChaCha20-Poly1305 otherwise; a pair with nothing in common does not complete a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ciphers(u8);

impl Ciphers {
    /// ChaCha20-Poly1305 only: what nodes before cipher negotiation used.
    pub const CHACHA_ONLY: Self = Self(Cipher::ChaCha20Poly1305.bit());
    /// AES-256-GCM only (`cipher = "aes-256-gcm"`).
    pub const AES_ONLY: Self = Self(Cipher::Aes256Gcm.bit());
    /// Both (`cipher = "auto"` on a CPU with hardware AES).
    pub const BOTH: Self = Self(Cipher::ChaCha20Poly1305.bit() | Cipher::Aes256Gcm.bit());

    /// The set as its wire byte.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The set a wire byte names (unknown bits ignored: a later version may add ciphers).
    pub fn from_bits(b: u8) -> Self {
        Self(b & Self::BOTH.0)
    }

    /// Whether `c` is in the set.
    pub fn contains(self, c: Cipher) -> bool {
        self.0 & c.bit() != 0
    }

    /// What a pair offering `self` and `theirs` uses, if anything.
    pub fn choose(self, theirs: Ciphers) -> Option<Cipher> {
        let both = Self(self.0 & theirs.0);
        [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305].into_iter().find(|c| both.contains(*c))
    }
}

impl std::fmt::Display for Ciphers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305]
            .into_iter()
            .filter(|c| self.contains(*c))
            .map(Cipher::as_str)
            .collect();
        f.write_str(if names.is_empty() { "none" } else { "" })?;
        f.write_str(&names.join(", "))
    }
}

/// Why a payload could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The session is too old or has used up its counters.
    #[error("session expired")]
    Expired,
    /// The buffer cannot hold header, payload and tag.
    #[error("buffer too small")]
    BufferTooSmall,
}

/// Why a transport datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Malformed header.
    #[error("malformed: {0}")]
    Malformed(#[from] WireError),
    /// The session is too old.
    #[error("session expired")]
    Expired,
    /// Counter already seen or older than the window.
    #[error("replayed or too old")]
    Replay,
    /// The AEAD tag did not verify.
    #[error("authentication failed")]
    Auth,
}

/// What a peer accepts beyond the base protocol, stated in the handshake (payload version 3;
/// older payloads state none). A session uses what both sides state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features(u8);

impl Features {
    /// Nothing beyond the base protocol.
    pub const NONE: Self = Self(0);
    /// Frames may arrive with their TCP checksum left partial (the field holds only the
    /// pseudo-header sum; inner kind [`crate::wire::InnerKind::FramePartialCsum`]). The AEAD
    /// already protects the frame, so the sender skips summing its payload and the receiver
    /// hands the frame to its kernel as checksum-partial, as a local TCP stack would have.
    pub const PARTIAL_CSUM: Self = Self(1);
    /// The peer understands path payloads ([`crate::wire::InnerKind::RelayTo`],
    /// [`crate::wire::InnerKind::RelayFrom`], [`crate::wire::InnerKind::PathInfo`]): it may be
    /// asked to relay, relayed to, and told its reflexive address.
    pub const PATHS: Self = Self(2);
    /// Everything this version implements.
    pub const ALL: Self = Self(Self::PARTIAL_CSUM.0 | Self::PATHS.0);

    /// The set as its wire byte.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The set a wire byte names (unknown bits ignored: a later version may add features).
    pub fn from_bits(b: u8) -> Self {
        Self(b & Self::ALL.0)
    }

    /// Whether every feature of `f` is in the set.
    pub fn contains(self, f: Features) -> bool {
        self.0 & f.0 == f.0
    }

    /// What both sets hold.
    pub fn common(self, other: Features) -> Self {
        Self(self.0 & other.0)
    }
}

/// Keys, counters and timestamps of one session.
pub struct Session {
    local_index: u32,
    remote_index: u32,
    initiator: bool,
    created: Instant,
    cipher: Cipher,
    features: Features,
    send_key: LessSafeKey,
    recv_key: LessSafeKey,
    send_counter: AtomicU64,
    replay: Mutex<ReplayWindow>,
    stamps: Stamps,
    confirmed: AtomicBool,
    /// Traffic counters.
    pub stats: SessionStats,
}

/// Traffic through one session.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Payload bytes sealed.
    pub tx_bytes: AtomicU64,
    /// Datagrams sealed.
    pub tx_packets: AtomicU64,
    /// Payload bytes opened.
    pub rx_bytes: AtomicU64,
    /// Datagrams opened.
    pub rx_packets: AtomicU64,
}

/// Nanoseconds since `created`, plus one so that zero means "never".
#[derive(Default)]
struct Stamps {
    sent: AtomicU64,
    sent_data: AtomicU64,
    /// The first data sent after the last authenticated receive (zero once answered):
    /// WireGuard's "no reply to our data" timer starts here, not at the latest send, so a
    /// steady stream into a peer that lost the session still triggers a new handshake.
    unanswered: AtomicU64,
    recv: AtomicU64,
    recv_data: AtomicU64,
    /// The first data received after our last send (zero once we sent anything): a keepalive
    /// is owed [`crate::consts::KEEPALIVE_TIMEOUT`] after it, however steady the stream.
    owed: AtomicU64,
}

impl Session {
    /// A ChaCha20-Poly1305 session from the two 32-byte keys of a Noise split. `confirmed`:
    /// the peer is known to hold the keys already (otherwise the first authenticated receive
    /// confirms it).
    pub fn new(
        now: Instant,
        local_index: u32,
        remote_index: u32,
        initiator: bool,
        confirmed: bool,
        send_key: &[u8; 32],
        recv_key: &[u8; 32],
    ) -> Self {
        let keys = (send_key, recv_key);
        Self::with_cipher(
            now,
            (local_index, remote_index),
            initiator,
            confirmed,
            keys,
            Cipher::ChaCha20Poly1305,
        )
    }

    /// A session using `cipher`, from the (send, receive) keys of a Noise split, for the
    /// (local, remote) indices.
    pub fn with_cipher(
        now: Instant,
        (local_index, remote_index): (u32, u32),
        initiator: bool,
        confirmed: bool,
        (send_key, recv_key): (&[u8; 32], &[u8; 32]),
        cipher: Cipher,
    ) -> Self {
        let key = |k: &[u8; 32]| {
            LessSafeKey::new(UnboundKey::new(cipher.algorithm(), k).expect("32-byte key is valid"))
        };
        Self {
            local_index,
            remote_index,
            initiator,
            cipher,
            features: Features::NONE,
            created: now,
            send_key: key(send_key),
            recv_key: key(recv_key),
            send_counter: AtomicU64::new(0),
            replay: Mutex::new(ReplayWindow::new()),
            stamps: Stamps::default(),
            confirmed: AtomicBool::new(confirmed),
            stats: SessionStats::default(),
        }
    }

    /// The session with the features both sides stated.
    pub fn with_features(mut self, features: Features) -> Self {
        self.features = features;
        self
    }

    /// The features both sides stated (what the peer accepts from us).
    pub fn features(&self) -> Features {
        self.features
    }

    /// The AEAD this session seals and opens with.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Our index: peers put it in the datagrams they send us.
    pub fn local_index(&self) -> u32 {
        self.local_index
    }

    /// The peer's index: we put it in the datagrams we send.
    pub fn remote_index(&self) -> u32 {
        self.remote_index
    }

    /// Whether we sent the handshake initiation of this session.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// When the session was created.
    pub fn created(&self) -> Instant {
        self.created
    }

    /// Age at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.created)
    }

    /// Whether the peer has proven it holds the keys (we received on this session).
    pub fn is_confirmed(&self) -> bool {
        self.confirmed.load(Relaxed)
    }

    /// Counters used so far for sending.
    pub fn sent_messages(&self) -> u64 {
        self.send_counter.load(Relaxed)
    }

    /// Whether the session may still seal and open at `now`.
    pub fn is_usable(&self, now: Instant) -> bool {
        self.age(now) < REJECT_AFTER_TIME && self.sent_messages() < REJECT_AFTER_MESSAGES
    }

    /// Seals `buf[16..16 + payload_len]` in place, writing the header before it and the tag
    /// after it; returns the datagram length (`payload_len + 32`).
    pub fn seal(&self, now: Instant, buf: &mut [u8], payload_len: usize) -> Result<usize, SealError> {
        let total = TRANSPORT_HEADER_LEN + payload_len + TAG_LEN;
        if buf.len() < total {
            return Err(SealError::BufferTooSmall);
        }
        if self.age(now) >= REJECT_AFTER_TIME {
            return Err(SealError::Expired);
        }
        let counter = self.send_counter.fetch_add(1, Relaxed);
        if counter >= REJECT_AFTER_MESSAGES {
            self.send_counter.store(REJECT_AFTER_MESSAGES, Relaxed);
            return Err(SealError::Expired);
        }
        let (head, rest) = buf.split_at_mut(TRANSPORT_HEADER_LEN);
        let head: &mut [u8; TRANSPORT_HEADER_LEN] = head.try_into().expect("split at header length");
        TransportHeader { receiver_index: self.remote_index, counter }.emit(head);
        let data = payload_len > 0 && rest[0] != InnerKind::Keepalive as u8;
        let (payload, tail) = rest.split_at_mut(payload_len);
        let tag = self
            .send_key
            .seal_in_place_separate_tag(nonce(counter), Aad::from(&head[..]), payload)
            .map_err(|_| SealError::BufferTooSmall)?;
        tail[..TAG_LEN].copy_from_slice(tag.as_ref());
        let t = self.stamp(now);
        self.stamps.sent.store(t, Relaxed);
        if self.stamps.owed.load(Relaxed) != 0 {
            self.stamps.owed.store(0, Relaxed);
        }
        if data {
            self.stamps.sent_data.store(t, Relaxed);
            if self.stamps.unanswered.load(Relaxed) == 0 {
                self.stamps.unanswered.store(t, Relaxed);
            }
        }
        self.stats.tx_packets.fetch_add(1, Relaxed);
        self.stats.tx_bytes.fetch_add(payload_len as u64, Relaxed);
        Ok(total)
    }

    /// Authenticates and decrypts a transport datagram in place; returns the range of the
    /// payload inside `datagram`. The counter is recorded only after authentication.
    pub fn open(&self, now: Instant, datagram: &mut [u8]) -> Result<Range<usize>, OpenError> {
        let header = TransportHeader::parse(datagram)?;
        if self.age(now) >= REJECT_AFTER_TIME {
            return Err(OpenError::Expired);
        }
        if !self.lock_replay().check(header.counter) {
            return Err(OpenError::Replay);
        }
        let (head, body) = datagram.split_at_mut(TRANSPORT_HEADER_LEN);
        let plain = self
            .recv_key
            .open_in_place(nonce(header.counter), Aad::from(&head[..]), body)
            .map_err(|_| OpenError::Auth)?;
        let len = plain.len();
        let data = len > 0 && plain[0] != InnerKind::Keepalive as u8;
        if !self.lock_replay().update(header.counter) {
            return Err(OpenError::Replay);
        }
        self.confirmed.store(true, Relaxed);
        let t = self.stamp(now);
        self.stamps.recv.store(t, Relaxed);
        if self.stamps.unanswered.load(Relaxed) != 0 {
            self.stamps.unanswered.store(0, Relaxed);
        }
        if data {
            self.stamps.recv_data.store(t, Relaxed);
            if self.stamps.owed.load(Relaxed) == 0 {
                self.stamps.owed.store(t, Relaxed);
            }
        }
        self.stats.rx_packets.fetch_add(1, Relaxed);
        self.stats.rx_bytes.fetch_add(len as u64, Relaxed);
        Ok(TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len)
    }

    /// When we last sent anything (`None`: never).
    pub fn last_sent(&self) -> Option<Instant> {
        self.instant(self.stamps.sent.load(Relaxed))
    }

    /// When we last sent a non-keepalive payload.
    pub fn last_sent_data(&self) -> Option<Instant> {
        self.instant(self.stamps.sent_data.load(Relaxed))
    }

    /// When we started waiting for a reply: the first data sent since the last authenticated
    /// receive (`None`: nothing unanswered).
    pub fn unanswered_since(&self) -> Option<Instant> {
        self.instant(self.stamps.unanswered.load(Relaxed))
    }

    /// The first data received since we last sent anything (`None`: we answered).
    pub fn reply_owed_since(&self) -> Option<Instant> {
        self.instant(self.stamps.owed.load(Relaxed))
    }

    /// When we last received anything authenticated.
    pub fn last_received(&self) -> Option<Instant> {
        self.instant(self.stamps.recv.load(Relaxed))
    }

    /// When we last received a non-keepalive payload.
    pub fn last_received_data(&self) -> Option<Instant> {
        self.instant(self.stamps.recv_data.load(Relaxed))
    }

    fn lock_replay(&self) -> std::sync::MutexGuard<'_, ReplayWindow> {
        // A poisoned window is still a valid window: no panic can leave it half-updated.
        self.replay.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Our data sent since `since` counts as answered: the peer spoke on another of its
    /// sessions with us. Leaves a newer unanswered mark (set by a concurrent send) alone.
    pub(crate) fn answered_elsewhere(&self, since: Instant) {
        let mark = self.stamps.unanswered.load(Relaxed);
        if self.instant(mark).is_some_and(|u| u <= since) {
            let _ = self.stamps.unanswered.compare_exchange(mark, 0, Relaxed, Relaxed);
        }
    }

    fn stamp(&self, now: Instant) -> u64 {
        u64::try_from(self.age(now).as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    fn instant(&self, stamp: u64) -> Option<Instant> {
        (stamp != 0).then(|| self.created + Duration::from_nanos(stamp - 1))
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("initiator", &self.initiator)
            .finish_non_exhaustive()
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    const CIPHERS: [Cipher; 2] = [Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm];

    fn pair(now: Instant) -> (Session, Session) {
        let a = Session::new(now, 1, 2, true, true, &[1; 32], &[2; 32]);
        let b = Session::new(now, 2, 1, false, false, &[2; 32], &[1; 32]);
        (a, b)
    }

    fn pair_with(now: Instant, cipher: Cipher) -> (Session, Session) {
        let a = Session::with_cipher(now, (1, 2), true, true, (&[1; 32], &[2; 32]), cipher);
        let b = Session::with_cipher(now, (2, 1), false, false, (&[2; 32], &[1; 32]), cipher);
        (a, b)
    }

    proptest! {
        /// With either cipher: any payload comes back as sealed, any flipped bit after the
        /// header's type is refused without burning the counter, and a session of the other
        /// cipher cannot open it.
        #[test]
        fn either_cipher_round_trips_and_refuses_flips_and_the_other_cipher(
            payload in proptest::collection::vec(any::<u8>(), 1..1500),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
            aes in any::<bool>(),
        ) {
            let now = Instant::now();
            let cipher = CIPHERS[usize::from(aes)];
            let (a, b) = pair_with(now, cipher);
            let (_, other) = pair_with(now, CIPHERS[usize::from(!aes)]);
            let mut buf = vec![0u8; 16 + payload.len() + 16];
            buf[16..16 + payload.len()].copy_from_slice(&payload);
            let n = a.seal(now, &mut buf, payload.len()).unwrap();
            let sealed = buf.clone();
            let mut flipped = sealed.clone();
            let at = 8 + flip.index(n - 8);
            flipped[at] ^= 1 << bit;
            prop_assert!(b.open(now, &mut flipped[..n]).is_err());
            let mut foreign = sealed.clone();
            prop_assert_eq!(other.open(now, &mut foreign[..n]), Err(OpenError::Auth));
            let r = b.open(now, &mut buf[..n]).unwrap();
            prop_assert_eq!(&buf[r], &payload[..]);
        }
    }

    #[test]
    fn seal_then_open_in_place() {
        for cipher in CIPHERS {
            seal_then_open_with(cipher);
        }
    }

    fn seal_then_open_with(cipher: Cipher) {
        let now = Instant::now();
        let (a, b) = pair_with(now, cipher);
        assert_eq!((a.cipher(), b.cipher()), (cipher, cipher));
        let mut buf = [0xa5u8; 16 + 5 + 16 + 3];
        buf[16..21].copy_from_slice(b"hello");
        let n = a.seal(now, &mut buf, 5).unwrap();
        assert_eq!(n, 37);
        assert_eq!(buf[37], 0xa5, "seal writes nothing past the tag");
        let r = b.open(now, &mut buf[..n]).unwrap();
        assert_eq!(&buf[r], b"hello");
        assert!(b.is_confirmed());
    }

    #[test]
    fn rejects_replay_bitflip_and_expiry() {
        for cipher in CIPHERS {
            rejects_replay_bitflip_and_expiry_with(cipher);
        }
    }

    fn rejects_replay_bitflip_and_expiry_with(cipher: Cipher) {
        let now = Instant::now();
        let (a, b) = pair_with(now, cipher);
        let mut buf = [0u8; 64];
        let n = a.seal(now, &mut buf, 10).unwrap();
        let copy = buf;
        b.open(now, &mut buf[..n]).unwrap();
        let mut again = copy;
        assert_eq!(b.open(now, &mut again[..n]), Err(OpenError::Replay));
        let n2 = a.seal(now, &mut buf, 10).unwrap();
        for i in 8..n2 {
            let mut flipped = buf;
            flipped[i] ^= 0x40;
            assert!(b.open(now, &mut flipped[..n2]).is_err(), "flip at {i}");
        }
        assert!(b.open(now, &mut buf[..n2]).is_ok(), "a failed forgery does not burn the counter");
        let late = now + REJECT_AFTER_TIME;
        assert_eq!(a.seal(late, &mut buf, 10), Err(SealError::Expired));
        assert_eq!(b.open(late, &mut buf[..n2]), Err(OpenError::Expired));
        assert_eq!(a.seal(now, &mut buf[..40], 10), Err(SealError::BufferTooSmall));
    }

    #[test]
    fn stamps_separate_keepalives_from_data() {
        let now = Instant::now();
        let (a, b) = pair(now);
        let mut buf = [0u8; 64];
        buf[16] = InnerKind::Keepalive as u8;
        let n = a.seal(now + Duration::from_secs(1), &mut buf, 4).unwrap();
        b.open(now + Duration::from_secs(2), &mut buf[..n]).unwrap();
        assert_eq!(a.last_sent(), Some(now + Duration::from_secs(1)));
        assert_eq!(a.last_sent_data(), None);
        assert_eq!(b.last_received(), Some(now + Duration::from_secs(2)));
        assert_eq!(b.last_received_data(), None);
        assert_eq!(a.unanswered_since(), None, "a keepalive asks for no reply");
    }

    #[test]
    fn unanswered_counts_from_the_first_data_after_the_last_receive() {
        let now = Instant::now();
        let (a, b) = pair(now);
        let s = |n| now + Duration::from_secs(n);
        let mut buf = [0u8; 64];
        buf[16] = InnerKind::Frame as u8;
        for t in 1..=5 {
            a.seal(s(t), &mut buf, 4).unwrap();
        }
        assert_eq!(a.unanswered_since(), Some(s(1)), "later sends do not restart the timer");
        let n = b.seal(s(6), &mut buf, 4).unwrap();
        a.open(s(6), &mut buf[..n]).unwrap();
        assert_eq!(a.unanswered_since(), None, "any authenticated packet answers");
        buf[16] = InnerKind::Frame as u8;
        a.seal(s(7), &mut buf, 4).unwrap();
        assert_eq!(a.unanswered_since(), Some(s(7)));
        // The receiving side owes a reply from the first data it got since it last sent.
        let n = a.seal(s(8), &mut buf, 4).unwrap();
        b.open(s(8), &mut buf[..n]).unwrap();
        buf[16] = InnerKind::Frame as u8;
        let n = a.seal(s(9), &mut buf, 4).unwrap();
        b.open(s(9), &mut buf[..n]).unwrap();
        assert_eq!(b.reply_owed_since(), Some(s(8)));
        buf[16] = InnerKind::Keepalive as u8;
        b.seal(s(10), &mut buf, 4).unwrap();
        assert_eq!(b.reply_owed_since(), None, "any send pays the debt");
    }
}
