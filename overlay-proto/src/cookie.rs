//! Denial-of-service defences in front of the (expensive) Noise responder, after WireGuard:
//!
//! - `mac1` on every handshake datagram is keyed by a hash of the network CA's public key, so
//!   a datagram from anyone who does not know which network this is costs one BLAKE2s, no DH.
//! - Under load (more handshakes per second than configured), a responder answers with a
//!   cookie reply instead: a MAC of the source address under a secret that rotates every two
//!   minutes, sealed for the initiator. The initiator's next attempt carries `mac2` keyed by
//!   that cookie, which proves it can receive at its source address; only those are processed
//!   while the load lasts.

use blake2::digest::{FixedOutput, KeyInit, Update};
use blake2::{Blake2s256, Blake2sMac, Digest};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use std::net::SocketAddr;
use std::time::Instant;

use crate::consts::{COOKIE_SECRET_LIFETIME, MAC_LEN};
use crate::wire::CookieReply;

type Mac128 = Blake2sMac<blake2::digest::consts::U16>;

/// Computes a 16-byte keyed BLAKE2s MAC.
pub(crate) fn mac(key: &[u8], data: &[u8]) -> [u8; MAC_LEN] {
    let mut m = <Mac128 as KeyInit>::new_from_slice(key).expect("key of at most 32 bytes");
    Update::update(&mut m, data);
    m.finalize_fixed().into()
}

fn derive(label: &[u8], ca_public: &[u8; 32]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    Digest::update(&mut h, label);
    Digest::update(&mut h, ca_public);
    h.finalize().into()
}

/// Keys every member derives from the CA public key.
#[derive(Clone)]
pub(crate) struct MacKeys {
    pub mac1: [u8; 32],
    cookie_seal: [u8; 32],
}

impl MacKeys {
    pub fn new(ca_public: &[u8; 32]) -> Self {
        Self { mac1: derive(b"weft v1 mac1", ca_public), cookie_seal: derive(b"weft v1 cookie", ca_public) }
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.cookie_seal).expect("32-byte key"))
    }

    /// Seals `cookie` for the initiator, bound to the `mac1` of the message it answers.
    pub fn seal_cookie(
        &self,
        receiver_index: u32,
        nonce: [u8; 12],
        cookie: [u8; 16],
        mac1: &[u8; 16],
    ) -> CookieReply {
        let mut sealed_cookie = [0u8; 32];
        sealed_cookie[..16].copy_from_slice(&cookie);
        let tag = self
            .aead()
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(mac1),
                &mut sealed_cookie[..16],
            )
            .expect("16 bytes always seal");
        sealed_cookie[16..].copy_from_slice(tag.as_ref());
        CookieReply { receiver_index, nonce, sealed_cookie }
    }

    /// Opens a cookie reply; `None` if it does not authenticate against our last `mac1`.
    pub fn open_cookie(&self, reply: &CookieReply, mac1: &[u8; 16]) -> Option<[u8; 16]> {
        let mut buf = reply.sealed_cookie;
        let plain = self
            .aead()
            .open_in_place(Nonce::assume_unique_for_key(reply.nonce), Aad::from(mac1), &mut buf)
            .ok()?;
        plain.try_into().ok()
    }
}

/// The responder's side: rotating secret and the load meter that decides when to ask for cookies.
pub(crate) struct CookieJar {
    secret: [u8; 32],
    rotated: Option<Instant>,
    window_start: Option<Instant>,
    in_window: u32,
    limit_per_sec: u32,
}

impl CookieJar {
    pub fn new(limit_per_sec: u32) -> Self {
        Self { secret: [0; 32], rotated: None, window_start: None, in_window: 0, limit_per_sec }
    }

    /// Counts one handshake and says whether we are over the limit for this second.
    pub fn under_load(&mut self, now: Instant) -> bool {
        match self.window_start {
            Some(s) if now.saturating_duration_since(s).as_secs() < 1 => {}
            _ => {
                self.window_start = Some(now);
                self.in_window = 0;
            }
        }
        self.in_window = self.in_window.saturating_add(1);
        self.in_window > self.limit_per_sec
    }

    /// The cookie for `from`, rotating the secret with fresh randomness when it is old.
    pub fn cookie(&mut self, now: Instant, from: SocketAddr, fresh: impl FnOnce() -> [u8; 32]) -> [u8; 16] {
        let stale = self.rotated.is_none_or(|r| now.saturating_duration_since(r) >= COOKIE_SECRET_LIFETIME);
        if stale {
            self.secret = fresh();
            self.rotated = Some(now);
        }
        mac(&self.secret, &addr_bytes(from))
    }
}

fn addr_bytes(a: SocketAddr) -> [u8; 18] {
    let mut b = [0u8; 18];
    match a {
        SocketAddr::V4(v) => b[..4].copy_from_slice(&v.ip().octets()),
        SocketAddr::V6(v) => b[..16].copy_from_slice(&v.ip().octets()),
    }
    b[16..].copy_from_slice(&a.port().to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_roundtrip_binds_to_mac1() {
        let keys = MacKeys::new(&[7; 32]);
        let reply = keys.seal_cookie(9, [1; 12], [5; 16], &[3; 16]);
        assert_eq!(keys.open_cookie(&reply, &[3; 16]), Some([5; 16]));
        assert_eq!(keys.open_cookie(&reply, &[4; 16]), None);
        assert_eq!(MacKeys::new(&[8; 32]).open_cookie(&reply, &[3; 16]), None);
    }

    #[test]
    fn load_meter_and_rotation() {
        let now = Instant::now();
        let mut jar = CookieJar::new(2);
        assert!(!jar.under_load(now));
        assert!(!jar.under_load(now));
        assert!(jar.under_load(now));
        assert!(!jar.under_load(now + std::time::Duration::from_secs(1)));
        let a: SocketAddr = "10.0.0.1:5".parse().unwrap();
        let c1 = jar.cookie(now, a, || [1; 32]);
        assert_eq!(jar.cookie(now, a, || [2; 32]), c1);
        assert_ne!(jar.cookie(now + COOKIE_SECRET_LIFETIME, a, || [2; 32]), c1);
    }
}
