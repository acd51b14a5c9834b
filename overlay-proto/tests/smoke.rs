//! Two endpoints meet over a perfect in-memory link: XX by address, then IK by key.

use overlay_proto::cert::{CaKey, NodeCertRequest};
use overlay_proto::handshake::public_key;
use overlay_proto::*;
use rand_chacha::rand_core::SeedableRng;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn node(ca: &CaKey, ca_cert: &overlay_proto::cert::CaCert, i: u8, now: Instant) -> Endpoint {
    let secret = [i; 32];
    let cert = ca
        .sign(
            ca_cert,
            NodeCertRequest {
                name: format!("h{i}"),
                public_key: public_key(&secret),
                signing_key: [0; 32],
                subnets: vec![format!("10.42.{i}.0/24").parse().unwrap()],
                groups: vec![],
                not_before: 1_000,
                not_after: 2_000_000_000,
            },
        )
        .unwrap();
    let cfg = EndpointConfig {
        static_secret: overlay_proto::keys::SecretKey::from_bytes(secret),
        cert,
        cas: overlay_proto::cert::CaBundle::single(ca_cert.clone()),
        wall_clock: (now, Duration::from_secs(1_800_000_000)),
        handshake_rate_limit: 1000,
        revoked: Default::default(),
        max_peers: 10_000,
        ciphers: overlay_proto::Ciphers::BOTH,
        features: overlay_proto::Features::ALL,
    };
    Endpoint::new(cfg, Box::new(rand_chacha::ChaCha8Rng::seed_from_u64(i as u64))).unwrap()
}

fn pump(
    now: Instant,
    a: &mut Endpoint,
    aa: SocketAddr,
    b: &mut Endpoint,
    ba: SocketAddr,
) -> Vec<(u8, Vec<u8>)> {
    let mut got = Vec::new();
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            moved = true;
            let mut d = t.payload;
            if let Ok(Received::Payload { payload, .. }) = b.handle_datagram(now, aa, &mut d) {
                got.push((1, d[payload].to_vec()));
            }
        }
        while let Some(t) = b.poll_transmit() {
            moved = true;
            let mut d = t.payload;
            if let Ok(Received::Payload { payload, .. }) = a.handle_datagram(now, ba, &mut d) {
                got.push((0, d[payload].to_vec()));
            }
        }
        if !moved {
            return got;
        }
    }
}

#[test]
fn dial_then_send_both_ways() {
    let now = Instant::now();
    let ca = CaKey::from_seed(&[9; 32]);
    let ca_cert = ca.self_sign("lab", 0, 3_000_000_000).unwrap();
    let (aa, ba): (SocketAddr, SocketAddr) = ("10.0.0.1:1".parse().unwrap(), "10.0.0.2:1".parse().unwrap());
    let mut a = node(&ca, &ca_cert, 1, now);
    let mut b = node(&ca, &ca_cert, 2, now);
    a.dial(now, ba);
    pump(now, &mut a, aa, &mut b, ba);
    let pb = a.peer_by_key(&b.public_key()).expect("a knows b after the dial");
    let pa = b.peer_by_key(&a.public_key()).expect("b knows a");
    let mut buf = [0u8; 100];
    buf[16..20].copy_from_slice(&[2, 0, 0, 0]);
    buf[20..25].copy_from_slice(b"hello");
    let r = a.encapsulate(now, pb, &mut buf, 9).unwrap();
    let Encapsulated::Ready { dst, len } = r else { panic!("{r:?}") };
    assert_eq!(dst, ba);
    let got = b.handle_datagram(now, aa, &mut buf[..len]).unwrap();
    assert_eq!(got, Received::Payload { peer: pa, payload: 16..25 });
    // b now sends back; then a rekeys over IK.
    let mut buf = [0u8; 100];
    buf[16..20].copy_from_slice(&[2, 0, 0, 0]);
    let r = b.encapsulate(now, pa, &mut buf, 4).unwrap();
    let Encapsulated::Ready { len, .. } = r else { panic!("{r:?}") };
    assert!(matches!(a.handle_datagram(now, ba, &mut buf[..len]).unwrap(), Received::Payload { .. }));
    let later = now + Duration::from_secs(1);
    a.connect(later, pb);
    pump(later, &mut a, aa, &mut b, ba);
    assert_eq!(a.stats().handshakes_completed.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(b.stats().handshakes_completed.load(std::sync::atomic::Ordering::Relaxed), 2);
}
