//! Like `responder`, but handshake-shaped datagrams are fixed up so they pass the cheap checks
//! and reach the Noise layer: the noise length field matches, mac1 is valid, and (on request)
//! the receiver index names a handshake the endpoint really has in flight. Also drives a real
//! second member, whose genuine datagrams the script can deliver, mutate or replay.
//!
//! Script ops (first byte, low 3 bits):
//! 0: handshake datagram `kind(1) flags(1) len(2) noise`: kind 1..=3, flags bit 0 = use an
//!    index the endpoint sent, bit 1 = pattern XX; mac1 computed;
//! 1: raw datagram `src(1) len(2) bytes`;
//! 2: advance `ms(2)` then run both endpoints' timers;
//! 3: deliver the member's next datagram to the endpoint, `flip(2)`: xor byte `flip % len`
//!    with 0x01 when flip's top bit is set;
//! 4: deliver the endpoint's next datagram to the member;
//! 5: replay the last datagram the member sent;
//! 6: the endpoint connects (IK) / the member dials, alternating;
//! 7: encapsulate `len(1)` bytes from the endpoint to the member and deliver it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay_proto::wire::{HandshakeRepr, MessageType, Pattern};
use overlay_proto::{fuzz_mac1, Endpoint, EndpointConfig, Received, Transmit};
use overlay_proto_fuzz::{addr, drain, endpoint, fixture, tick, Cursor, WALL_CLOCK};
use rand_chacha::rand_core::SeedableRng;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

fn member(base: Instant) -> Endpoint {
    let f = fixture();
    let cfg = EndpointConfig {
        static_secret: overlay_proto::keys::SecretKey::from_bytes(f.peer_secret),
        cert: f.peer_cert.clone(),
        cas: overlay_proto::cert::CaBundle::single(f.ca.clone()),
        wall_clock: (base, Duration::from_secs(WALL_CLOCK)),
        handshake_rate_limit: 1000,
        revoked: Default::default(),
        max_peers: 10_000,
        ciphers: overlay_proto::Ciphers::BOTH,
        features: overlay_proto::Features::ALL,
    };
    Endpoint::new(cfg, Box::new(rand_chacha::ChaCha8Rng::seed_from_u64(2))).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let base = Instant::now();
    let mut now = base;
    let mut ep = endpoint(base);
    let mut m = member(base);
    let (ep_addr, m_addr) = ("192.0.2.1:51820".parse().unwrap(), addr(0));
    let peer = ep.peer_ids().next().unwrap();
    let mut to_ep: VecDeque<Transmit> = VecDeque::new();
    let mut to_m: VecDeque<Transmit> = VecDeque::new();
    let mut sent_indices: Vec<u32> = Vec::new();
    let mut last_from_m: Option<Vec<u8>> = None;
    let mut flip = false;
    let mut c = Cursor(data);
    let mut buf = vec![0u8; 2048];
    while !c.is_empty() {
        match c.u8() & 7 {
            0 => {
                let kind = 1 + c.u8() % 3;
                let flags = c.u8();
                let n = usize::from(c.u16()) % 1024;
                let noise = c.take(n);
                let receiver_index = match (kind, sent_indices.last()) {
                    (1, _) => 0,
                    (_, Some(&i)) if flags & 1 != 0 => i,
                    _ => u32::from(flags),
                };
                let repr = HandshakeRepr {
                    kind: [
                        MessageType::HandshakeInit,
                        MessageType::HandshakeResponse,
                        MessageType::HandshakeFinish,
                    ][usize::from(kind - 1)],
                    pattern: (kind == 1).then_some(if flags & 2 != 0 { Pattern::Xx } else { Pattern::Ik }),
                    sender_index: 0x5eed_0000 | u32::from(flags),
                    receiver_index,
                    noise,
                };
                let mut d = vec![0u8; repr.buffer_len()];
                repr.emit(&mut d).unwrap();
                let mac_at = d.len() - 32;
                let mac1 = fuzz_mac1(&f.ca.public_key, &d[..mac_at]);
                d[mac_at..mac_at + 16].copy_from_slice(&mac1);
                let _ = ep.handle_datagram(now, addr(flags >> 2), &mut d);
            }
            1 => {
                let from = addr(c.u8());
                let n = usize::from(c.u16()) % 1500;
                let mut d = c.take(n).to_vec();
                let _ = ep.handle_datagram(now, from, &mut d);
            }
            2 => {
                now += Duration::from_millis(u64::from(c.u16()) * 8);
                tick(&mut ep, now);
                tick(&mut m, now);
            }
            3 => {
                let x = c.u16();
                if let Some(t) = to_ep.pop_front() {
                    let mut d = t.payload;
                    last_from_m = Some(d.clone());
                    if x & 0x8000 != 0 {
                        let i = usize::from(x) % d.len();
                        d[i] ^= 1;
                    }
                    let _ = ep.handle_datagram(now, m_addr, &mut d);
                }
            }
            4 => {
                if let Some(t) = to_m.pop_front() {
                    let mut d = t.payload;
                    let _ = m.handle_datagram(now, ep_addr, &mut d);
                }
            }
            5 => {
                if let Some(mut d) = last_from_m.clone() {
                    let _ = ep.handle_datagram(now, m_addr, &mut d);
                }
            }
            6 => {
                flip = !flip;
                if flip {
                    ep.connect(now, peer);
                } else {
                    m.dial(now, ep_addr);
                }
            }
            _ => {
                let n = usize::from(c.u8());
                let body = c.take(n);
                buf[16..16 + body.len()].copy_from_slice(body);
                if let Ok(overlay_proto::Encapsulated::Ready { len, .. }) =
                    ep.encapsulate(now, peer, &mut buf, body.len())
                {
                    let mut d = buf[..len].to_vec();
                    if let Ok(Received::Payload { payload, .. }) = m.handle_datagram(now, ep_addr, &mut d) {
                        assert_eq!(&d[payload], body, "the member reads what the endpoint sealed");
                    }
                }
            }
        }
        for t in drain(&mut ep) {
            if let Some(&b) = t.payload.first() {
                if (1..=3).contains(&b) && t.payload.len() >= 8 {
                    sent_indices.push(u32::from_le_bytes(t.payload[4..8].try_into().unwrap()));
                }
            }
            if t.dst == m_addr {
                to_m.push_back(t);
            }
        }
        to_ep.extend(drain(&mut m).into_iter().filter(|t| t.dst == ep_addr));
        if sent_indices.len() > 16 {
            sent_indices.remove(0);
        }
    }
});
