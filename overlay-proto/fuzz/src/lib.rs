//! Fixtures shared by the fuzz targets: one network (CA), one node under test with fixed keys,
//! a known peer, a handful of source addresses, and a cursor that reads fuzz input as a script.

use overlay_proto::cert::{CaCert, CaKey, NodeCert, NodeCertRequest};
use overlay_proto::handshake::public_key;
use overlay_proto::{Endpoint, EndpointConfig};
use rand_chacha::rand_core::SeedableRng;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Unix time the node under test believes it is at the fuzz run's base instant.
pub const WALL_CLOCK: u64 = 1_800_000_000;

/// The fixed identities.
pub struct Fixture {
    /// The network CA.
    pub ca: CaCert,
    /// The node under test.
    pub secret: [u8; 32],
    /// Its certificate.
    pub cert: NodeCert,
    /// A second member, known to the node under test.
    pub peer_secret: [u8; 32],
    /// The second member's certificate.
    pub peer_cert: NodeCert,
}

/// The fixture, built once per process (signing is slow next to one fuzz iteration).
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = CaKey::from_seed(&[7; 32]);
        let ca = key.self_sign("fuzz", 0, 3_000_000_000).unwrap();
        let cert = |i: u8, secret: &[u8; 32]| {
            key.sign(
                &ca,
                NodeCertRequest {
                    name: format!("n{i}"),
                    public_key: public_key(secret),
                    signing_key: [0; 32],
                    subnets: vec![format!("10.42.{i}.0/24").parse().unwrap()],
                    groups: vec!["fuzz".into()],
                    not_before: 1_000,
                    not_after: 2_000_000_000,
                },
            )
            .unwrap()
        };
        let (secret, peer_secret) = ([0x11; 32], [0x22; 32]);
        Fixture { cert: cert(1, &secret), peer_cert: cert(2, &peer_secret), ca, secret, peer_secret }
    })
}

/// Source addresses the fuzzer picks from (the known peer's is the first).
pub const ADDRS: [&str; 4] = ["192.0.2.2:51820", "192.0.2.3:51820", "[2001:db8::3]:51820", "198.51.100.9:1"];

/// Address `i` of [`ADDRS`].
pub fn addr(i: u8) -> SocketAddr {
    ADDRS[usize::from(i) % ADDRS.len()].parse().unwrap()
}

/// The node under test, with the known peer added at `addr(0)`; a low handshake rate limit so
/// the cookie path is reachable too.
pub fn endpoint(base: Instant) -> Endpoint {
    let f = fixture();
    let cfg = EndpointConfig {
        static_secret: overlay_proto::keys::SecretKey::from_bytes(f.secret),
        cert: f.cert.clone(),
        cas: overlay_proto::cert::CaBundle::single(f.ca.clone()),
        wall_clock: (base, Duration::from_secs(WALL_CLOCK)),
        handshake_rate_limit: 4,
        revoked: Default::default(),
        max_peers: 10_000,
        ciphers: overlay_proto::Ciphers::BOTH,
        features: overlay_proto::Features::ALL,
    };
    let mut ep = Endpoint::new(cfg, Box::new(rand_chacha::ChaCha8Rng::seed_from_u64(1))).unwrap();
    ep.add_peer(f.peer_cert.public_key, Some(addr(0)));
    ep
}

/// Reads fuzz input front to back; short reads give zeros / empty slices, never panics.
pub struct Cursor<'a>(pub &'a [u8]);

impl<'a> Cursor<'a> {
    /// Whether input is left.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One byte.
    pub fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | u16::from(self.u8()) << 8
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// Drains every output of `ep`, checking what must always hold; returns the transmits.
pub fn drain(ep: &mut Endpoint) -> Vec<overlay_proto::Transmit> {
    let mut out = Vec::new();
    while let Some(t) = ep.poll_transmit() {
        assert!(!t.payload.is_empty() && t.payload.len() <= overlay_proto::consts::MAX_DATAGRAM_LEN);
        out.push(t);
    }
    while ep.poll_event().is_some() {}
    out
}

/// Runs the timers at `now` and checks the next deadline is later (a past one would spin).
pub fn tick(ep: &mut Endpoint, now: Instant) {
    ep.handle_timeout(now);
    if let Some(t) = ep.poll_timeout() {
        assert!(t > now, "poll_timeout in the past after handle_timeout");
    }
}
