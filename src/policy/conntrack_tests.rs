use super::*;
use crate::policy::flow::{IcmpInfo, IcmpKind};
use proptest::prelude::*;
use std::net::Ipv4Addr;
use std::sync::Arc;

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 42, 0, last))
}

fn flow(proto: u8, src: (u8, u16), dst: (u8, u16), tcp_flags: u8) -> Flow {
    Flow {
        src: addr(src.0),
        dst: addr(dst.0),
        proto,
        sport: src.1,
        dport: dst.1,
        tcp_flags,
        fragment: false,
        icmp: None,
    }
}

fn udp(src: (u8, u16), dst: (u8, u16)) -> Flow {
    flow(IPPROTO_UDP, src, dst, 0)
}

fn tcp(src: (u8, u16), dst: (u8, u16), flags: u8) -> Flow {
    flow(IPPROTO_TCP, src, dst, flags)
}

fn echo(src: u8, dst: u8, id: u16, kind: IcmpKind) -> Flow {
    let ty = if kind == IcmpKind::EchoRequest { 8 } else { 0 };
    Flow { icmp: Some(IcmpInfo { ty, code: 0, kind }), ..flow(IPPROTO_ICMP, (src, id), (dst, id), 0) }
}

/// An ICMP error from `from` to `to` about `about`.
fn error(from: u8, to: u8, about: &Flow) -> Flow {
    let inner = Embedded {
        src: about.src,
        dst: about.dst,
        proto: about.proto,
        sport: about.sport,
        dport: about.dport,
    };
    let icmp = Some(IcmpInfo { ty: 3, code: 3, kind: IcmpKind::Error(inner) });
    Flow { icmp, ..flow(IPPROTO_ICMP, (from, 0), (to, 0), 0) }
}

const A: u64 = 1;
const B: u64 = 2;

#[test]
fn a_reply_finds_its_original() {
    let ct = Conntrack::new(1024, 256);
    let query = udp((2, 40000), (3, 53));
    ct.insert(&query, A, 0).unwrap();
    assert!(ct.lookup(&udp((3, 53), (2, 40000)), 1), "reply");
    assert!(ct.lookup(&query, 1), "original again");
    assert!(!ct.lookup(&udp((3, 53), (2, 40001)), 1), "another port");
    assert!(!ct.lookup(&tcp((3, 53), (2, 40000), tcp_flags::ACK), 1), "another protocol");
    assert_eq!((ct.len(), ct.peer_len(A)), (1, 1));
    // Inserting a tracked flow again refreshes it and keeps one entry.
    ct.insert(&udp((3, 53), (2, 40000)), B, 2).unwrap();
    assert_eq!((ct.len(), ct.peer_len(A), ct.peer_len(B)), (1, 1, 0));
    assert_eq!(ct.stats().inserts, 1);
}

#[test]
fn entries_expire_and_packets_refresh_them() {
    let ct = Conntrack::new(1024, 256);
    let f = udp((2, 1000), (3, 2000));
    ct.insert(&f, A, 100).unwrap();
    assert!(ct.lookup(&f, 100 + UDP - 1));
    assert!(ct.lookup(&f, 100 + 2 * UDP - 2), "the previous lookup refreshed it");
    assert_eq!(ct.expire(100 + 3 * UDP), 1);
    assert!(!ct.lookup(&f, 100 + 3 * UDP));
    assert_eq!((ct.len(), ct.peer_len(A), ct.stats().expired), (0, 0, 1));

    // An expired entry found by lookup before the sweep is removed on the spot.
    ct.insert(&f, A, 0).unwrap();
    assert!(!ct.lookup(&f, UDP));
    assert_eq!((ct.len(), ct.peer_len(A)), (0, 0));
}

#[test]
fn tcp_timeouts_follow_the_handshake_and_fin() {
    let ct = Conntrack::new(1024, 256);
    let syn = tcp((2, 33000), (3, 80), tcp_flags::SYN);
    ct.insert(&syn, A, 0).unwrap();
    assert!(!ct.lookup(&syn, TCP_SYN), "an unanswered SYN lives {TCP_SYN} s");

    ct.insert(&syn, A, 1000).unwrap();
    assert!(ct.lookup(&tcp((3, 80), (2, 33000), tcp_flags::SYN | tcp_flags::ACK), 1001));
    assert!(ct.lookup(&tcp((2, 33000), (3, 80), tcp_flags::ACK), 1000 + TCP_ESTABLISHED));
    let fin = tcp((2, 33000), (3, 80), tcp_flags::FIN | tcp_flags::ACK);
    assert!(ct.lookup(&fin, 2000));
    assert!(
        ct.lookup(&tcp((3, 80), (2, 33000), tcp_flags::ACK), 2000 + TCP_CLOSING - 1),
        "closing stays closing"
    );
    assert!(!ct.lookup(&tcp((3, 80), (2, 33000), tcp_flags::ACK), 2000 + 2 * TCP_CLOSING));

    let rst = tcp((2, 33001), (3, 80), tcp_flags::ACK);
    ct.insert(&rst, A, 0).unwrap();
    assert!(ct.lookup(&tcp((3, 80), (2, 33001), tcp_flags::RST), 1));
    assert!(!ct.lookup(&rst, 1 + TCP_CLOSING));
}

#[test]
fn echo_replies_match_requests_from_the_other_side_only() {
    let ct = Conntrack::new(1024, 256);
    ct.insert(&echo(2, 3, 7, IcmpKind::EchoRequest), A, 0).unwrap();
    assert!(ct.lookup(&echo(3, 2, 7, IcmpKind::EchoReply), 1));
    assert!(ct.lookup(&echo(2, 3, 7, IcmpKind::EchoRequest), 2), "next ping of the same session");
    assert!(!ct.lookup(&echo(2, 3, 7, IcmpKind::EchoReply), 2), "reply in the request's direction");
    assert!(!ct.lookup(&echo(3, 2, 7, IcmpKind::EchoRequest), 2), "request from the other side");
    assert!(!ct.lookup(&echo(3, 2, 8, IcmpKind::EchoReply), 2), "another identifier");
    assert!(!ct.lookup(&echo(3, 2, 7, IcmpKind::EchoReply), 2 + ICMP_ECHO));
    // An unsolicited reply is not tracked even if allowed.
    ct.insert(&echo(4, 5, 1, IcmpKind::EchoReply), A, 0).unwrap();
    assert_eq!(ct.len(), 0);
}

#[test]
fn icmp_errors_are_related_to_the_flow_they_quote() {
    let ct = Conntrack::new(1024, 256);
    let f = udp((2, 5000), (3, 53));
    ct.insert(&f, A, 0).unwrap();
    assert!(ct.lookup(&error(1, 2, &f), 1), "router tells the sender");
    assert!(ct.lookup(&error(3, 2, &udp((2, 5000), (3, 53))), 1), "the destination tells the sender");
    assert!(ct.lookup(&error(1, 3, &udp((3, 53), (2, 5000))), 1), "about the reply, to its sender");
    assert!(!ct.lookup(&error(1, 3, &f), 1), "an error must go back to the quoted sender");
    assert!(!ct.lookup(&error(1, 2, &udp((2, 5001), (3, 53))), 1), "untracked quote");
    assert!(!ct.lookup(&error(1, 2, &f), UDP), "expired");
    let ping = echo(2, 3, 9, IcmpKind::EchoRequest);
    ct.insert(&ping, A, 0).unwrap();
    assert!(ct.lookup(&error(1, 2, &ping), 1), "error about an echo request");
    // Errors and other ICMP are not tracked themselves.
    let n = ct.len();
    ct.insert(&error(1, 2, &udp((9, 9), (8, 8))), A, 0).unwrap();
    let other = Flow {
        icmp: Some(IcmpInfo { ty: 13, code: 0, kind: IcmpKind::Other }),
        ..flow(IPPROTO_ICMP, (2, 0), (3, 0), 0)
    };
    ct.insert(&other, A, 0).unwrap();
    assert!(!ct.lookup(&other, 1));
    assert_eq!(ct.len(), n);
}

#[test]
fn fragments_are_not_tracked() {
    let ct = Conntrack::new(1024, 256);
    let frag = Flow { fragment: true, sport: 0, dport: 0, ..udp((2, 1), (3, 2)) };
    ct.insert(&frag, A, 0).unwrap();
    assert_eq!(ct.len(), 0);
    ct.insert(&udp((2, 1), (3, 2)), A, 0).unwrap();
    assert!(!ct.lookup(&frag, 1));
}

#[test]
fn the_table_is_bounded_and_expired_entries_make_room() {
    let ct = Conntrack::new(64, 64);
    for port in 0..64 {
        ct.insert(&udp((2, port), (3, 53)), A + u64::from(port % 3), 0).unwrap();
    }
    assert_eq!(ct.insert(&udp((2, 64), (3, 53)), B, 1), Err(Full::Table));
    assert_eq!((ct.len(), ct.stats().table_full), (64, 1));
    // Without waiting for the sweep, an insert into a full table evicts what has expired.
    assert_eq!(ct.insert(&udp((2, 64), (3, 53)), B, UDP), Ok(()));
    assert_eq!((ct.len(), ct.peer_len(B), ct.peer_len(A)), (1, 1, 0));
}

#[test]
fn one_peer_cannot_exhaust_the_table() {
    let ct = Conntrack::new(128, 32);
    for port in 0..32 {
        ct.insert(&udp((2, port), (3, 53)), A, 0).unwrap();
    }
    assert_eq!(ct.insert(&udp((2, 1000), (3, 53)), A, 0), Err(Full::Peer));
    assert_eq!(ct.stats().peer_full, 1);
    for port in 0..32 {
        ct.insert(&udp((4, port), (3, 53)), B, 0).unwrap();
    }
    assert_eq!((ct.peer_len(A), ct.peer_len(B), ct.len()), (32, 32, 64));
}

#[test]
fn clear_peer_releases_its_share() {
    let ct = Conntrack::new(1024, 16);
    for port in 0..16 {
        ct.insert(&udp((2, port), (3, 53)), A, 0).unwrap();
        ct.insert(&udp((4, port), (3, 53)), B, 0).unwrap();
    }
    assert_eq!(ct.clear_peer(A), 16);
    assert_eq!((ct.len(), ct.peer_len(A), ct.peer_len(B)), (16, 0, 16));
    assert!(!ct.lookup(&udp((2, 0), (3, 53)), 1));
    assert!(ct.lookup(&udp((4, 0), (3, 53)), 1));
    ct.insert(&udp((2, 0), (3, 53)), A, 1).unwrap();
    assert_eq!(ct.clear_peer(99), 0);
}

#[test]
fn concurrent_inserts_keep_counts_exact() {
    let ct = Arc::new(Conntrack::new(4096, 1500));
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let ct = Arc::clone(&ct);
            std::thread::spawn(move || {
                let mut ok = 0;
                for i in 0..2000u16 {
                    let f = udp((t, i), (100 + (i % 7) as u8, 53));
                    // Peers overlap between threads, so per-peer limits race too.
                    if ct.insert(&f, u64::from(i % 3), 0).is_ok() {
                        ok += 1;
                        assert!(ct.lookup(&f, 1));
                    }
                }
                ok
            })
        })
        .collect();
    let ok: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let per_peer: Vec<usize> = (0..3).map(|p| ct.peer_len(p)).collect();
    assert_eq!(ok, 4096, "exactly the table's worth: {per_peer:?}");
    assert_eq!(ct.len(), ok);
    assert_eq!(per_peer.iter().sum::<usize>(), ok);
    assert!(per_peer.iter().all(|&n| n <= 1500), "{per_peer:?}");
    let s = ct.stats();
    assert_eq!(s.inserts as usize, ok);
    assert_eq!((s.table_full + s.peer_full) as usize, 8000 - ok);

    let sweepers: Vec<_> = (0..3u64)
        .map(|p| {
            let ct = Arc::clone(&ct);
            std::thread::spawn(move || ct.clear_peer(p))
        })
        .collect();
    let cleared: usize = sweepers.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!((cleared, ct.len()), (ok, 0));
}

#[derive(Debug, Clone)]
enum Op {
    Insert { src: u8, port: u16, peer: u64 },
    Lookup { src: u8, port: u16, reply: bool },
    Advance(u32),
    Expire,
    ClearPeer(u64),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, 0u16..24, 0u64..3).prop_map(|(src, port, peer)| Op::Insert { src, port, peer }),
        3 => (0u8..4, 0u16..24, any::<bool>()).prop_map(|(src, port, reply)| Op::Lookup { src, port, reply }),
        2 => (0u32..120).prop_map(Op::Advance),
        1 => Just(Op::Expire),
        1 => (0u64..3).prop_map(Op::ClearPeer),
    ]
}

proptest! {
    /// Against a plain map: same answers, same counts (one shard, so eviction is global).
    #[test]
    fn behaves_like_a_simple_model(ops in proptest::collection::vec(arb_op(), 1..200)) {
        let (max, per_peer) = (64, 24);
        let ct = Conntrack::new(max, per_peer);
        let mut model: HashMap<(u8, u16), (u64, u32)> = HashMap::new();
        let mut now = 0u32;
        let server = (200, 53);
        for op in ops {
            match op {
                Op::Insert { src, port, peer } => {
                    let got = ct.insert(&udp((src, port), server), peer, now);
                    let key = (src, port);
                    let want = match model.get(&key) {
                        Some(&(owner, exp)) if exp > now => {
                            model.insert(key, (owner, now + UDP));
                            Ok(())
                        }
                        _ => {
                            model.remove(&key);
                            let count = |m: &HashMap<(u8, u16), (u64, u32)>| m.values().filter(|e| e.0 == peer).count();
                            if count(&model) >= per_peer || model.len() >= max {
                                model.retain(|_, e| e.1 > now);
                            }
                            if count(&model) >= per_peer {
                                Err(Full::Peer)
                            } else if model.len() >= max {
                                Err(Full::Table)
                            } else {
                                model.insert(key, (peer, now + UDP));
                                Ok(())
                            }
                        }
                    };
                    prop_assert_eq!(got, want);
                }
                Op::Lookup { src, port, reply } => {
                    let f = if reply { udp(server, (src, port)) } else { udp((src, port), server) };
                    let got = ct.lookup(&f, now);
                    let want = match model.get_mut(&(src, port)) {
                        Some(e) if e.1 > now => {
                            e.1 = now + UDP;
                            true
                        }
                        Some(_) => {
                            model.remove(&(src, port));
                            false
                        }
                        None => false,
                    };
                    prop_assert_eq!(got, want);
                }
                Op::Advance(s) => now += s,
                Op::Expire => {
                    let before = model.len();
                    model.retain(|_, e| e.1 > now);
                    prop_assert_eq!(ct.expire(now), before - model.len());
                }
                Op::ClearPeer(p) => {
                    let before = model.len();
                    model.retain(|_, e| e.0 != p);
                    prop_assert_eq!(ct.clear_peer(p), before - model.len());
                }
            }
            prop_assert_eq!(ct.len(), model.len());
            for p in 0..3 {
                prop_assert_eq!(ct.peer_len(p), model.values().filter(|e| e.0 == p).count());
            }
        }
    }
}
