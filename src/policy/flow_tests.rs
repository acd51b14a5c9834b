use super::*;
use proptest::prelude::*;
use std::net::Ipv6Addr;

const A4: [u8; 4] = [10, 42, 0, 2];
const B4: [u8; 4] = [10, 42, 0, 3];
const R4: [u8; 4] = [10, 42, 0, 1];

fn a6() -> [u8; 16] {
    "fd00::2".parse::<Ipv6Addr>().unwrap().octets()
}

fn b6() -> [u8; 16] {
    "fd00::3".parse::<Ipv6Addr>().unwrap().octets()
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// IPv4 header (no options) plus payload; `frag` is the flags/fragment-offset field.
fn ip4(proto: u8, src: [u8; 4], dst: [u8; 4], frag: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 1]);
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

fn ip6(next: u8, src: [u8; 16], dst: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0; 8]);
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    u
}

/// ICMP/ICMPv6 message: type, code, checksum 0, the 4-byte rest-of-header, then data.
fn icmp(ty: u8, code: u8, rest: [u8; 4], data: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(data);
    m
}

fn echo(ty: u8, id: u16) -> Vec<u8> {
    let id = id.to_be_bytes();
    icmp(ty, 0, [id[0], id[1], 0, 1], b"ping")
}

fn flow(frame: &[u8]) -> Flow {
    match parse(frame) {
        Parsed::Flow(f) => f,
        other => panic!("expected a flow, got {other:?}"),
    }
}

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(a.into())
}

fn v6(a: [u8; 16]) -> IpAddr {
    IpAddr::V6(a.into())
}

#[test]
fn ipv4_tcp_and_udp() {
    let f = flow(&eth(0x0800, &ip4(6, A4, B4, 0x4000, &tcp(40000, 5432, tcp_flags::SYN))));
    assert_eq!((f.src, f.dst, f.proto), (v4(A4), v4(B4), 6));
    assert_eq!((f.sport, f.dport, f.tcp_flags, f.fragment), (40000, 5432, tcp_flags::SYN, false));
    assert_eq!((f.icmp, f.port()), (None, Some(5432)));

    // Ethernet padding after a short UDP datagram is ignored.
    let mut frame = eth(0x0800, &ip4(17, A4, B4, 0, &udp(5353, 53, b"q")));
    frame.resize(60, 0);
    let f = flow(&frame);
    assert_eq!((f.proto, f.sport, f.dport, f.port()), (17, 5353, 53, Some(53)));
}

#[test]
fn ipv4_options_are_skipped() {
    let mut p = ip4(17, A4, B4, 0, &udp(1, 2, b""));
    p[0] = 0x46;
    p.splice(20..20, [1, 1, 1, 0]);
    p[2..4].copy_from_slice(&32u16.to_be_bytes());
    let f = flow(&eth(0x0800, &p));
    assert_eq!((f.sport, f.dport), (1, 2));
}

#[test]
fn ipv4_icmp_echo_uses_the_identifier_as_ports() {
    let f = flow(&eth(0x0800, &ip4(1, A4, B4, 0, &echo(8, 0x1234))));
    assert_eq!((f.sport, f.dport, f.port()), (0x1234, 0x1234, None));
    assert_eq!(f.icmp, Some(IcmpInfo { ty: 8, code: 0, kind: IcmpKind::EchoRequest }));
    let f = flow(&eth(0x0800, &ip4(1, B4, A4, 0, &echo(0, 0x1234))));
    assert_eq!(f.icmp.unwrap().kind, IcmpKind::EchoReply);
    let f = flow(&eth(0x0800, &ip4(1, B4, A4, 0, &icmp(13, 0, [0; 4], &[0; 12]))));
    assert_eq!((f.icmp.unwrap().kind, f.sport), (IcmpKind::Other, 0));
}

#[test]
fn ipv4_icmp_errors_carry_the_original_header() {
    // B's UDP datagram to A bounced: A's router tells B, quoting B's packet (cut after 8 bytes
    // of UDP; the quoted total length still says the full size).
    let original = ip4(17, B4, A4, 0, &udp(5000, 53, &[0; 100]));
    let quoted = &original[..28];
    for ty in [3, 11, 12] {
        let f = flow(&eth(0x0800, &ip4(1, R4, B4, 0, &icmp(ty, 3, [0; 4], quoted))));
        let inner = Embedded { src: v4(B4), dst: v4(A4), proto: 17, sport: 5000, dport: 53 };
        assert_eq!(f.icmp, Some(IcmpInfo { ty, code: 3, kind: IcmpKind::Error(inner) }));
    }
    // An error about an echo request quotes its identifier.
    let original = ip4(1, B4, A4, 0, &echo(8, 77));
    let f = flow(&eth(0x0800, &ip4(1, R4, B4, 0, &icmp(11, 0, [0; 4], &original[..28]))));
    let Some(IcmpInfo { kind: IcmpKind::Error(inner), .. }) = f.icmp else { panic!("error") };
    assert_eq!((inner.proto, inner.sport, inner.dport), (1, 77, 77));
    // A quote too short for the ports, or for the IP header, is malformed.
    assert_eq!(
        parse(&eth(0x0800, &ip4(1, R4, B4, 0, &icmp(3, 0, [0; 4], &original[..22])))),
        Parsed::Malformed
    );
    assert_eq!(
        parse(&eth(0x0800, &ip4(1, R4, B4, 0, &icmp(3, 0, [0; 4], &original[..19])))),
        Parsed::Malformed
    );
}

#[test]
fn ipv4_fragments() {
    // First fragment (more-fragments set, offset 0): ports are there.
    let f = flow(&eth(0x0800, &ip4(17, A4, B4, 0x2000, &udp(1000, 2000, &[0; 64]))));
    assert_eq!((f.fragment, f.sport, f.dport), (false, 1000, 2000));
    // Later fragment: whatever the payload looks like, ports are unknown.
    let f = flow(&eth(0x0800, &ip4(17, A4, B4, 0x2000 | 185, &udp(1000, 2000, &[0; 64]))));
    assert_eq!((f.fragment, f.sport, f.dport, f.port()), (true, 0, 0, None));
    let f = flow(&eth(0x0800, &ip4(6, A4, B4, 3, &[0; 4])));
    assert!(f.fragment);
}

#[test]
fn ipv6_tcp_udp_and_extension_headers() {
    let f = flow(&eth(0x86dd, &ip6(6, a6(), b6(), &tcp(1, 443, tcp_flags::ACK | tcp_flags::FIN))));
    assert_eq!((f.src, f.dst, f.proto, f.sport, f.dport), (v6(a6()), v6(b6()), 6, 1, 443));
    assert_eq!(f.tcp_flags, tcp_flags::ACK | tcp_flags::FIN);

    // hop-by-hop (8 bytes) -> destination options (16 bytes) -> UDP.
    let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0];
    ext.extend_from_slice(&[17, 1, 1, 12]);
    ext.extend_from_slice(&[0; 12]);
    ext.extend_from_slice(&udp(546, 547, b"dhcp"));
    let f = flow(&eth(0x86dd, &ip6(0, a6(), b6(), &ext)));
    assert_eq!((f.proto, f.sport, f.dport), (17, 546, 547));

    // Fragment header: the first fragment has ports, a later one does not.
    let frag = |offset: u16| {
        let mut p = vec![17, 0];
        p.extend_from_slice(&((offset << 3) | 1).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 9]);
        p.extend_from_slice(&udp(7, 8, &[0; 16]));
        p
    };
    let f = flow(&eth(0x86dd, &ip6(44, a6(), b6(), &frag(0))));
    assert_eq!((f.fragment, f.proto, f.sport, f.dport), (false, 17, 7, 8));
    let f = flow(&eth(0x86dd, &ip6(44, a6(), b6(), &frag(100))));
    assert_eq!((f.fragment, f.proto, f.sport, f.dport), (true, 17, 0, 0));
}

#[test]
fn ipv6_extension_walk_is_bounded() {
    let chain = |k: usize| {
        let mut p = Vec::new();
        for i in 0..k {
            let next = if i + 1 == k { 17 } else { 60 };
            p.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]);
        }
        p.extend_from_slice(&udp(1, 2, b""));
        eth(0x86dd, &ip6(60, a6(), b6(), &p))
    };
    let f = flow(&chain(MAX_EXT_HEADERS));
    assert_eq!((f.proto, f.sport, f.dport), (17, 1, 2));
    assert_eq!(parse(&chain(MAX_EXT_HEADERS + 1)), Parsed::Malformed);
}

#[test]
fn icmpv6_echo_errors_and_neighbour_discovery() {
    let f = flow(&eth(0x86dd, &ip6(58, a6(), b6(), &echo(128, 9))));
    assert_eq!((f.icmp.unwrap().kind, f.sport, f.dport), (IcmpKind::EchoRequest, 9, 9));
    let f = flow(&eth(0x86dd, &ip6(58, b6(), a6(), &echo(129, 9))));
    assert_eq!(f.icmp.unwrap().kind, IcmpKind::EchoReply);

    let original = ip6(6, a6(), b6(), &tcp(33000, 80, tcp_flags::ACK));
    for ty in 1..=4 {
        let f = flow(&eth(0x86dd, &ip6(58, b6(), a6(), &icmp(ty, 0, [0, 0, 5, 0], &original))));
        let inner = Embedded { src: v6(a6()), dst: v6(b6()), proto: 6, sport: 33000, dport: 80 };
        assert_eq!(f.icmp.unwrap().kind, IcmpKind::Error(inner), "type {ty}");
    }
    for ty in 133..=137 {
        assert_eq!(
            parse(&eth(0x86dd, &ip6(58, a6(), b6(), &icmp(ty, 0, [0; 4], &[0; 16])))),
            Parsed::AlwaysPass
        );
    }
    // MLD is not neighbour discovery.
    let f = flow(&eth(0x86dd, &ip6(58, a6(), b6(), &icmp(143, 0, [0; 4], &[0; 16]))));
    assert_eq!(f.icmp.unwrap().kind, IcmpKind::Other);
}

#[test]
fn non_ip_frames() {
    assert_eq!(parse(&eth(0x0806, &[0; 28])), Parsed::AlwaysPass);
    assert_eq!(parse(&eth(0x8100, &[0, 1, 0x08, 0x00])), Parsed::Other);
    assert_eq!(parse(&eth(0x88cc, &[])), Parsed::Other);
    assert_eq!(parse(&[0; 13]), Parsed::Malformed);
}

#[test]
fn truncated_or_inconsistent_headers_are_malformed() {
    let frame = eth(0x0800, &ip4(6, A4, B4, 0, &tcp(1, 2, 0)));
    for len in 0..frame.len() {
        assert_eq!(parse(&frame[..len]), Parsed::Malformed, "cut at {len}");
    }
    let frame = eth(0x86dd, &ip6(17, a6(), b6(), &udp(1, 2, b"")));
    for len in 0..frame.len() {
        assert_eq!(parse(&frame[..len]), Parsed::Malformed, "cut at {len}");
    }
    let mut bad = ip4(17, A4, B4, 0, &udp(1, 2, b""));
    bad[0] = 0x44;
    assert_eq!(parse(&eth(0x0800, &bad)), Parsed::Malformed, "IHL below 5");
    bad[0] = 0x65;
    assert_eq!(parse(&eth(0x0800, &bad)), Parsed::Malformed, "version 6 in an IPv4 frame");
    let mut bad = ip4(17, A4, B4, 0, &udp(1, 2, b""));
    bad[2..4].copy_from_slice(&10u16.to_be_bytes());
    assert_eq!(parse(&eth(0x0800, &bad)), Parsed::Malformed, "total length below header");
}

#[test]
fn tcp_headers_must_be_whole_and_quotes_must_hold_eight_bytes() {
    // A data offset below 5 words, or options running past the packet.
    let mut t = tcp(1, 2, tcp_flags::SYN);
    t[tcp::field::DATA_OFF] = 0x40;
    assert_eq!(parse(&eth(0x0800, &ip4(6, A4, B4, 0, &t))), Parsed::Malformed);
    t[tcp::field::DATA_OFF] = 0x60;
    assert_eq!(parse(&eth(0x0800, &ip4(6, A4, B4, 0, &t))), Parsed::Malformed);
    // An error quoting fewer than the 8 bytes of the transport header RFC 792 asks for.
    let original = ip4(17, B4, A4, 0, &udp(5000, 53, &[0; 100]));
    for cut in [24, 27] {
        let err = eth(0x0800, &ip4(1, R4, B4, 0, &icmp(3, 3, [0; 4], &original[..cut])));
        assert_eq!(parse(&err), Parsed::Malformed, "quote of {} transport bytes", cut - 20);
    }
}

fn ip_prefixes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(eth(0x0800, &ip4(6, A4, B4, 0, &[]))),
        Just(eth(0x0800, &ip4(17, A4, B4, 0, &[]))),
        Just(eth(0x0800, &ip4(1, A4, B4, 0, &[3, 0, 0, 0, 0, 0, 0, 0, 0x45]))),
        Just(eth(0x86dd, &ip6(0, a6(), b6(), &[]))),
        Just(eth(0x86dd, &ip6(44, a6(), b6(), &[]))),
        Just(eth(0x86dd, &ip6(58, a6(), b6(), &[1, 0, 0, 0, 0, 0, 0, 0, 0x60]))),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_real_headers_never_panic(
        prefix in ip_prefixes(),
        bytes in proptest::collection::vec(any::<u8>(), 0..160),
    ) {
        let mut frame = prefix;
        frame.extend_from_slice(&bytes);
        let _ = parse(&frame);
        // Length fields claiming more than is there must not matter either.
        if frame.len() > 20 {
            frame[16] = 0xff;
            frame[17] = 0xff;
            frame[18] = 0xff;
            let _ = parse(&frame);
        }
    }
}
