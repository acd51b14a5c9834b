//! The Noise handshake through `snow`, and the payload each side sends inside it.
//!
//! Patterns: `Noise_IK_25519_ChaChaPoly_BLAKE2s` when the initiator knows the responder's
//! static key (from membership or an earlier session): one round trip, and the initiator's
//! identity and certificate travel encrypted under `es`. `Noise_XX_25519_ChaChaPoly_BLAKE2s`
//! for first contact with an address whose key is unknown (a seed or static peer): one and a
//! half round trips, both certificates encrypted. IX would give one round trip for first
//! contact too, but sends the initiator's certificate (name, groups, subnets) in clear text.
//!
//! The prologue binds every handshake to the network: `"weft v1" || the initiator's issuing
//! CA key` (see the endpoint's `Trust`).
//! Payload (inside Noise): `version(1) cert_len(2) cert timestamp(8) ciphers(1) features(1)`;
//! the timestamp (Unix nanoseconds, strictly increasing per initiator) lets a responder refuse
//! replayed IK inits; `ciphers` is the set of AEADs the sender offers ([`Ciphers`]), from which
//! both ends choose the same session cipher once both payloads are in; `features` what it
//! accepts beyond the base protocol ([`Features`]), of which a session uses what both state.
//! A version 2 payload (no `features` byte) states none; a version 1 payload (no `ciphers`
//! byte either, from a node before cipher negotiation) offers ChaCha20-Poly1305 only.

use snow::params::NoiseParams;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use std::sync::Mutex;

use crate::consts::MAX_CERT_LEN;
use crate::session::{Ciphers, Features};
use crate::wire::Pattern;

const PAYLOAD_VERSION: u8 = 3;
const IK: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
const XX: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";

/// Why a handshake step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Noise rejected the message (wrong key, tampered, out of order).
    #[error("noise: {0}")]
    Noise(String),
    /// The payload inside the Noise message is malformed.
    #[error("malformed handshake payload")]
    Payload,
}

impl From<snow::Error> for HandshakeError {
    fn from(e: snow::Error) -> Self {
        Self::Noise(e.to_string())
    }
}

/// The payload a side sends inside its Noise message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Payload {
    pub cert: Vec<u8>,
    pub timestamp: u64,
    pub ciphers: Ciphers,
    pub features: Features,
}

impl Payload {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(12 + self.cert.len());
        b.push(PAYLOAD_VERSION);
        b.extend_from_slice(&(self.cert.len() as u16).to_le_bytes());
        b.extend_from_slice(&self.cert);
        b.extend_from_slice(&self.timestamp.to_le_bytes());
        b.push(self.ciphers.bits());
        b.push(self.features.bits());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, HandshakeError> {
        // Bytes after the timestamp: none in version 1, `ciphers` in 2, `features` too in 3.
        let tail = match b.first() {
            Some(1) => 0,
            Some(2) => 1,
            Some(&PAYLOAD_VERSION) => 2,
            _ => return Err(HandshakeError::Payload),
        };
        if b.len() < 11 + tail {
            return Err(HandshakeError::Payload);
        }
        let n = u16::from_le_bytes([b[1], b[2]]) as usize;
        if n > MAX_CERT_LEN || b.len() != 3 + n + 8 + tail {
            return Err(HandshakeError::Payload);
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[3 + n..3 + n + 8]);
        let ciphers = if tail >= 1 { Ciphers::from_bits(b[3 + n + 8]) } else { Ciphers::CHACHA_ONLY };
        let features = if tail == 2 { Features::from_bits(b[3 + n + 9]) } else { Features::NONE };
        Ok(Self { cert: b[3..3 + n].to_vec(), timestamp: u64::from_le_bytes(ts), ciphers, features })
    }
}

/// Builds a snow handshake whose only randomness is `entropy` (drawn from the injected RNG).
pub(crate) fn build(
    pattern: Pattern,
    initiator: bool,
    local_secret: &[u8; 32],
    remote_public: Option<&[u8; 32]>,
    prologue: &[u8],
    entropy: [u8; 64],
) -> Result<snow::HandshakeState, HandshakeError> {
    let params: NoiseParams = match pattern {
        Pattern::Ik => IK,
        Pattern::Xx => XX,
    }
    .parse()
    .expect("static pattern names parse");
    let resolver = Box::new(InjectedRandom { entropy: Mutex::new(Some(entropy)) });
    let mut b =
        snow::Builder::with_resolver(params, resolver).local_private_key(local_secret)?.prologue(prologue)?;
    if let Some(k) = remote_public {
        b = b.remote_public_key(k)?;
    }
    Ok(if initiator { b.build_initiator()? } else { b.build_responder()? })
}

/// The X25519 public key of a static secret.
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret)).to_bytes()
}

struct InjectedRandom {
    entropy: Mutex<Option<[u8; 64]>>,
}

impl CryptoResolver for InjectedRandom {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let bytes = self.entropy.lock().ok()?.take()?;
        Some(Box::new(Prefetched { bytes, used: 0 }))
    }
    fn resolve_dh(&self, choice: &snow::params::DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// Randomness drawn in advance from the endpoint's RNG; a handshake needs 32 bytes (one
/// ephemeral key), and asking for more than was drawn is an error, never a weak fallback.
struct Prefetched {
    bytes: [u8; 64],
    used: usize,
}

impl Random for Prefetched {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        let end = self.used + dest.len();
        if end > self.bytes.len() {
            return Err(snow::Error::Rng);
        }
        dest.copy_from_slice(&self.bytes[self.used..end]);
        self.used = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_roundtrip_and_rejects() {
        let p =
            Payload { cert: vec![1, 2, 3], timestamp: 99, ciphers: Ciphers::BOTH, features: Features::ALL };
        let b = p.encode();
        assert_eq!(Payload::decode(&b), Ok(p.clone()));
        assert!(Payload::decode(&b[..b.len() - 3]).is_err());
        let mut v = b.clone();
        v[0] = 4;
        assert!(Payload::decode(&v).is_err(), "an unknown version");
        assert!(Payload::decode(&b[..b.len() - 1]).is_err(), "version 3 without its features byte");
        // Unknown feature bits (a later version's) are ignored.
        let mut later = b.clone();
        *later.last_mut().unwrap() = 0xff;
        assert_eq!(Payload::decode(&later).unwrap().features, Features::ALL);
        // A version 2 payload (no features byte) states none.
        let mut v2 = b[..b.len() - 1].to_vec();
        v2[0] = 2;
        let older = Payload::decode(&v2).expect("version 2 still reads");
        assert_eq!((older.ciphers, older.features), (Ciphers::BOTH, Features::NONE));
        assert!(Payload::decode(&v2[..v2.len() - 1]).is_err(), "version 2 without its ciphers byte");
        // A version 1 payload (no ciphers byte) offers ChaCha20-Poly1305 only.
        let mut v1 = b[..b.len() - 2].to_vec();
        v1[0] = 1;
        let old = Payload::decode(&v1).expect("version 1 still reads");
        assert_eq!((old.timestamp, old.ciphers, old.features), (99, Ciphers::CHACHA_ONLY, Features::NONE));
    }

    #[test]
    fn ik_and_xx_complete_with_matching_keys() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let bp = public_key(&b);
        let mut buf = [0u8; 512];
        let mut out = [0u8; 512];
        let mut i = build(Pattern::Ik, true, &a, Some(&bp), b"p", [3; 64]).unwrap();
        let mut r = build(Pattern::Ik, false, &b, None, b"p", [4; 64]).unwrap();
        let n = i.write_message(b"hi", &mut buf).unwrap();
        assert_eq!(r.read_message(&buf[..n], &mut out).unwrap(), 2);
        assert_eq!(r.get_remote_static().unwrap(), &public_key(&a)[..]);
        let n = r.write_message(b"yo", &mut buf).unwrap();
        i.read_message(&buf[..n], &mut out).unwrap();
        let (ik, rk) = (i.dangerously_get_raw_split(), r.dangerously_get_raw_split());
        assert_eq!(ik.0, rk.0);
        assert_eq!(ik.1, rk.1);

        let mut i = build(Pattern::Xx, true, &a, None, b"p", [5; 64]).unwrap();
        let mut r = build(Pattern::Xx, false, &b, None, b"p", [6; 64]).unwrap();
        let n = i.write_message(&[], &mut buf).unwrap();
        r.read_message(&buf[..n], &mut out).unwrap();
        let n = r.write_message(b"cert-b", &mut buf).unwrap();
        i.read_message(&buf[..n], &mut out).unwrap();
        assert_eq!(i.get_remote_static().unwrap(), &bp[..]);
        let n = i.write_message(b"cert-a", &mut buf).unwrap();
        r.read_message(&buf[..n], &mut out).unwrap();
        assert!(i.is_handshake_finished() && r.is_handshake_finished());
    }

    #[test]
    fn different_prologue_fails() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let mut buf = [0u8; 512];
        let mut out = [0u8; 512];
        let mut i = build(Pattern::Ik, true, &a, Some(&public_key(&b)), b"net1", [3; 64]).unwrap();
        let mut r = build(Pattern::Ik, false, &b, None, b"net2", [4; 64]).unwrap();
        let n = i.write_message(b"hi", &mut buf).unwrap();
        assert!(r.read_message(&buf[..n], &mut out).is_err());
    }
}
