//! A test network's identity: one CA and deterministic node keys and certificates, so every
//! simulation, allocation test and benchmark builds the same nodes from a small index.
#![allow(dead_code)]

use overlay_proto::cert::{CaCert, CaKey, NodeCert, NodeCertRequest};
use overlay_proto::handshake::public_key;
use overlay_proto::{Endpoint, EndpointConfig};
use rand_chacha::rand_core::SeedableRng;
use std::time::{Duration, Instant};

/// Unix time (seconds) every test node believes it is at the simulation's base instant.
pub const WALL_CLOCK: u64 = 1_800_000_000;

/// A CA with its key, able to issue node certificates.
pub struct Network {
    /// The CA's signing key.
    pub key: CaKey,
    /// The CA certificate every member trusts.
    pub ca: CaCert,
}

impl Network {
    /// A network whose CA key is derived from `seed`.
    pub fn new(seed: u8) -> Self {
        let key = CaKey::from_seed(&[seed; 32]);
        let ca = key.self_sign("lab", 0, 3_000_000_000).expect("valid CA window");
        Self { key, ca }
    }

    /// A node certificate for `secret`, valid over `[not_before, not_after)`.
    pub fn cert(&self, i: u16, secret: &[u8; 32], not_before: u64, not_after: u64) -> NodeCert {
        self.key
            .sign(
                &self.ca,
                NodeCertRequest {
                    name: format!("h{i}"),
                    public_key: public_key(secret),
                    signing_key: [0; 32],
                    subnets: vec![format!("10.{}.{}.0/24", 42 + i / 256, i % 256).parse().unwrap()],
                    groups: vec!["sim".into()],
                    not_before,
                    not_after,
                },
            )
            .expect("valid certificate request")
    }

    /// The configuration of node `i`, whose wall clock reads [`WALL_CLOCK`] at `base`.
    pub fn config(&self, i: u16, base: Instant) -> EndpointConfig {
        let secret = secret(i);
        EndpointConfig {
            static_secret: overlay_proto::keys::SecretKey::from_bytes(secret),
            cert: self.cert(i, &secret, 1_000, 2_000_000_000),
            cas: overlay_proto::cert::CaBundle::single(self.ca.clone()),
            wall_clock: (base, Duration::from_secs(WALL_CLOCK)),
            handshake_rate_limit: 1_000_000,
            revoked: Default::default(),
            max_peers: 10_000,
            ciphers: overlay_proto::Ciphers::BOTH,
            features: overlay_proto::Features::ALL,
        }
    }

    /// Endpoint `i` with an RNG seeded from `seed` and `i`.
    pub fn endpoint(&self, i: u16, base: Instant, seed: u64) -> Endpoint {
        endpoint(self.config(i, base), seed.wrapping_mul(1_000_003).wrapping_add(u64::from(i)))
    }
}

/// An endpoint from a configuration, with a seeded RNG.
pub fn endpoint(cfg: EndpointConfig, seed: u64) -> Endpoint {
    Endpoint::new(cfg, Box::new(rand_chacha::ChaCha8Rng::seed_from_u64(seed))).expect("valid config")
}

/// Node `i`'s X25519 static secret (the index sits clear of the bits X25519 clamps).
pub fn secret(i: u16) -> [u8; 32] {
    let mut s = [0x5au8; 32];
    s[1..3].copy_from_slice(&i.to_le_bytes());
    s
}
