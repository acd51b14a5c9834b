//! What the data plane asks of a frame and the frames it writes itself, on top of
//! [`crate::packet`]: the destination and source MAC, the source address a frame claims and
//! everything else it says about its sender (for anti-spoofing: ARP sender, neighbour
//! advertisement target, link-layer address options), ARP requests and the replies that
//! suppress them, and the ICMP "fragmentation needed" / ICMPv6 "packet too big" answers to
//! oversize frames.
//!
//! Every query goes through a checked view, so a short or odd frame yields `None` (or an
//! error), never a panic; every reply is emitted by the packet module's Reprs into the
//! caller's buffer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::family::Addrs;

pub use crate::packet::ethernet::is_multicast;
use crate::packet::ndisc::{self, NdiscPacket, NdiscRepr};
use crate::packet::{
    arp, ethernet, icmp, ip_proto, ipv4, ipv6, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetFrame,
    EthernetRepr, IcmpPacket, Icmpv4Repr, Icmpv6Repr, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
};
use crate::packet::{Error, Mac};

/// Length of an ARP reply frame.
pub const ARP_REPLY_LEN: usize = ethernet::HEADER_LEN + arp::PACKET_LEN;
/// Most bytes [`too_big_reply`] writes: an ICMPv6 error fills the IPv6 minimum MTU.
pub const TOO_BIG_REPLY_MAX: usize = ethernet::HEADER_LEN + ipv6::MIN_MTU;

/// Hop limit of the ICMP errors we originate.
const HOP_LIMIT: u8 = 64;

/// Destination MAC.
pub fn dst_mac(f: &[u8]) -> Option<Mac> {
    EthernetFrame::new_checked(f).ok().map(|e| e.dst_addr())
}

/// Source MAC.
pub fn src_mac(f: &[u8]) -> Option<Mac> {
    EthernetFrame::new_checked(f).ok().map(|e| e.src_addr())
}

/// The source IP the frame claims: IPv4/IPv6 source, or the ARP sender address.
pub fn source_ip(f: &[u8]) -> Option<IpAddr> {
    let eth = EthernetFrame::new_checked(f).ok()?;
    match eth.ethertype() {
        EtherType::IPV4 => Some(Ipv4Packet::new_checked(eth.payload()).ok()?.src_addr().into()),
        EtherType::ARP => Some(ArpPacket::new_checked(eth.payload()).ok()?.sender_ip().into()),
        EtherType::IPV6 => Some(Ipv6Packet::new_checked(eth.payload()).ok()?.src_addr().into()),
        _ => None,
    }
}

/// Everything a frame says about who sent it: the addresses it uses as its own. A local
/// container may use only its lease's (see [`super::source_guard`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderClaims {
    /// Ethernet source.
    pub mac: Mac,
    /// Source address: IPv4 or IPv6 source, or ARP sender address.
    pub ip: Option<IpAddr>,
    /// The address a neighbour advertisement advertises (its target): what it binds, whatever
    /// its source.
    pub advertised: Option<Ipv6Addr>,
    /// The link-layer address the message binds to its sender inside it: ARP sender MAC, a
    /// solicitation's source or an advertisement's target link-layer option.
    pub lladdr: Option<Mac>,
}

/// What a frame (untagged or under one 802.1Q tag) claims about its sender. An IPv4, IPv6 or
/// ARP frame whose headers cannot be read, and an ARP or neighbour discovery message too odd to
/// check (not Ethernet/IPv4 ARP, malformed options, two link-layer addresses), is an error:
/// its sender cannot be vouched for. Other ethertypes claim no address.
pub fn sender_claims(f: &[u8]) -> Result<SenderClaims, Error> {
    let eth = EthernetFrame::new_checked(f)?;
    let (ethertype, at) = eth.network()?;
    let body = &f[at..];
    let mut c = SenderClaims { mac: eth.src_addr(), ip: None, advertised: None, lladdr: None };
    match ethertype {
        EtherType::IPV4 => c.ip = Some(Ipv4Packet::new_checked(body)?.src_addr().into()),
        EtherType::ARP => {
            let arp = ArpRepr::parse(&ArpPacket::new_checked(body)?)?;
            c.ip = Some(arp.sender_ip.into());
            c.lladdr = Some(arp.sender_mac);
        }
        EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(body)?;
            c.ip = Some(ip.src_addr().into());
            if let Some(nd) = neighbour_message(&ip)? {
                match NdiscRepr::parse(&nd)? {
                    NdiscRepr::NeighborSolicit { lladdr, .. } => c.lladdr = lladdr,
                    NdiscRepr::NeighborAdvert { target_addr, lladdr, .. } => {
                        c.advertised = Some(target_addr);
                        c.lladdr = lladdr;
                    }
                }
            }
        }
        _ => {}
    }
    Ok(c)
}

/// The target of an (untagged) neighbour advertisement: the address it binds to a link-layer
/// address. Read from the fixed part alone, so odd options do not hide it.
pub fn advertised_target(f: &[u8]) -> Option<Ipv6Addr> {
    let eth = EthernetFrame::new_checked(f).ok()?;
    if eth.ethertype() != EtherType::IPV6 {
        return None;
    }
    let nd = neighbour_message(&Ipv6Packet::new_checked(eth.payload()).ok()?).ok()??;
    (nd.msg_type() == ndisc::kind::NEIGHBOR_ADVERT).then(|| nd.target_addr())
}

/// The neighbour solicitation or advertisement an IPv6 packet carries, if it carries one
/// (a later fragment carries none: RFC 6980 forbids fragmented neighbour discovery).
fn neighbour_message<'a>(ip: &Ipv6Packet<&'a [u8]>) -> Result<Option<NdiscPacket<&'a [u8]>>, Error> {
    let upper = ip.upper_layer()?;
    let is_nd = upper.protocol == ip_proto::ICMPV6
        && !upper.fragment
        && matches!(
            upper.payload.first(),
            Some(&(ndisc::kind::NEIGHBOR_SOLICIT | ndisc::kind::NEIGHBOR_ADVERT))
        );
    if !is_nd {
        return Ok(None);
    }
    NdiscPacket::new_checked(upper.payload).map(Some)
}

/// Unspecified or link-local: an address no certificate can vouch for.
pub fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_unspecified() || a.is_link_local(),
        IpAddr::V6(a) => a.is_unspecified() || (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// An ARP request for IPv4 over Ethernet: (sender MAC, sender IP, target IP).
pub fn arp_request(f: &[u8]) -> Option<(Mac, Ipv4Addr, Ipv4Addr)> {
    let eth = EthernetFrame::new_checked(f).ok()?;
    if eth.ethertype() != EtherType::ARP {
        return None;
    }
    let req = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()?;
    (req.operation == ArpOperation::Request).then_some((req.sender_mac, req.sender_ip, req.target_ip))
}

/// Writes the ARP reply "`target_ip` is at `target_mac`" for a request into `out`.
pub fn arp_reply(req: &[u8], target_mac: Mac, out: &mut [u8; ARP_REPLY_LEN]) -> Option<()> {
    let (sender_mac, sender_ip, target_ip) = arp_request(req)?;
    let mut eth = EthernetFrame::new_unchecked(&mut out[..]);
    EthernetRepr { src_addr: target_mac, dst_addr: sender_mac, ethertype: EtherType::ARP }.emit(&mut eth);
    let reply = ArpRepr {
        operation: ArpOperation::Reply,
        sender_mac: target_mac,
        sender_ip: target_ip,
        target_mac: sender_mac,
        target_ip: sender_ip,
    };
    reply.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    Some(())
}

/// For an IPv4 frame with DF set (or any IPv6 frame) too big for `mtu`, builds the ICMP
/// "fragmentation needed" / ICMPv6 "packet too big" frame to send back to its source.
/// `gateway` holds the addresses the error comes from, one per family of the network (a frame
/// of a family it lacks gets no answer). Returns the frame length written to `out`
/// (at most [`TOO_BIG_REPLY_MAX`]).
pub fn too_big_reply(f: &[u8], mtu: u16, gateway_mac: Mac, gateway: Addrs, out: &mut [u8]) -> Option<usize> {
    let eth = EthernetFrame::new_checked(f).ok()?;
    let reply_eth = |ethertype| EthernetRepr { src_addr: gateway_mac, dst_addr: eth.src_addr(), ethertype };
    match (eth.ethertype(), gateway.v4(), gateway.v6()) {
        (EtherType::IPV4, Some(IpAddr::V4(gw)), _) => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            let is_icmp_error =
                ip.protocol() == ip_proto::ICMP && ip.payload().first() == Some(&icmp::v4::DEST_UNREACHABLE);
            if !ip.dont_frag() || is_icmp_error {
                return None; // fragmentable, or itself an ICMP error
            }
            // RFC 792: the original IP header and the first 8 bytes of its payload.
            let quoted = eth.payload();
            let quote = &quoted[..(ip.header_len() + icmp::HEADER_LEN).min(quoted.len())];
            let message = Icmpv4Repr::FragNeeded { mtu };
            let ip_repr = Ipv4Repr {
                src_addr: gw,
                dst_addr: ip.src_addr(),
                protocol: ip_proto::ICMP,
                payload_len: message.buffer_len(quote.len()) as u16,
                hop_limit: HOP_LIMIT,
                ident: 0,
                dont_frag: false,
            };
            let n = ethernet::HEADER_LEN + ipv4::HEADER_LEN + message.buffer_len(quote.len());
            let mut frame = EthernetFrame::new_unchecked(out.get_mut(..n)?);
            reply_eth(EtherType::IPV4).emit(&mut frame);
            let mut ip_out = Ipv4Packet::new_unchecked(frame.payload_mut());
            ip_repr.emit(&mut ip_out);
            message.emit(&mut IcmpPacket::new_unchecked(ip_out.payload_mut()), quote);
            Some(n)
        }
        (EtherType::IPV6, _, Some(IpAddr::V6(gw))) => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            let is_icmp_error = ip.next_header() == ip_proto::ICMPV6
                && ip.payload().first().is_some_and(|t| icmp::v6::is_error(*t));
            if is_icmp_error {
                return None; // never answer an ICMPv6 error with another
            }
            // RFC 4443: as much of the packet as fits in the minimum MTU.
            let quoted = eth.payload();
            let quote = &quoted[..quoted.len().min(ipv6::MIN_MTU - ipv6::HEADER_LEN - icmp::HEADER_LEN)];
            let message = Icmpv6Repr::PacketTooBig { mtu: u32::from(mtu) };
            let ip_repr = Ipv6Repr {
                src_addr: gw,
                dst_addr: ip.src_addr(),
                next_header: ip_proto::ICMPV6,
                payload_len: message.buffer_len(quote.len()) as u16,
                hop_limit: HOP_LIMIT,
            };
            let n = ethernet::HEADER_LEN + ipv6::HEADER_LEN + message.buffer_len(quote.len());
            let mut frame = EthernetFrame::new_unchecked(out.get_mut(..n)?);
            reply_eth(EtherType::IPV6).emit(&mut frame);
            let mut ip_out = Ipv6Packet::new_unchecked(frame.payload_mut());
            ip_repr.emit(&mut ip_out);
            let pseudo = ip_out.pseudo_header(ip_proto::ICMPV6, u32::from(ip_repr.payload_len));
            message.emit(&mut IcmpPacket::new_unchecked(ip_out.payload_mut()), quote, pseudo);
            Some(n)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::checksum;
    use std::net::Ipv6Addr;

    const L3: usize = ethernet::HEADER_LEN;

    fn addrs(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn arp_req() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 42, 1, 2]);
        f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 42, 2, 2]);
        f
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn arp_request_and_reply() {
        let f = arp_req();
        let (smac, sip, tip) = arp_request(&f).unwrap();
        assert_eq!(
            (smac, sip, tip),
            ([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 42, 1, 2), Ipv4Addr::new(10, 42, 2, 2))
        );
        assert_eq!(source_ip(&f), Some(IpAddr::V4(sip)));
        let mut out = [0xa5u8; ARP_REPLY_LEN];
        arp_reply(&f, [2, 0, 0, 0, 0, 9], &mut out).unwrap();
        let expect = [
            &[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 9, 8, 6][..], // to the asker, from the owner
            &[0, 1, 8, 0, 6, 4, 0, 2],                       // Ethernet/IPv4 reply
            &[2, 0, 0, 0, 0, 9, 10, 42, 2, 2],               // 10.42.2.2 is at …:09
            &[2, 0, 0, 0, 0, 1, 10, 42, 1, 2],               // to the asker
        ]
        .concat();
        assert_eq!(&out[..], &expect[..]);
        assert_eq!(arp_request(&out), None, "a reply is not a request");
    }

    /// An ND message in an IPv6 frame from 02:00:00:00:00:02 (fd00::2), checksum unset.
    fn nd_frame(repr: NdiscRepr, extra: &[u8]) -> Vec<u8> {
        let mut nd = vec![0xa5; repr.buffer_len()];
        repr.emit(&mut NdiscPacket::new_unchecked(&mut nd[..]), 0);
        nd.extend_from_slice(extra);
        ipv6_frame(ip_proto::ICMPV6, &nd)
    }

    #[test]
    fn sender_claims_of_each_kind() {
        let me = [2, 0, 0, 0, 0, 2];
        let claims = |ip: Option<IpAddr>, advertised: Option<Ipv6Addr>, lladdr: Option<Mac>| {
            Ok(SenderClaims { mac: me, ip, advertised, lladdr })
        };
        let mut f = arp_req();
        f[6..12].copy_from_slice(&me);
        assert_eq!(
            sender_claims(&f),
            claims(source_ip(&f), None, Some([2, 0, 0, 0, 0, 1])),
            "its sender MAC"
        );
        let src = Some(IpAddr::V6(addrs("fd00::2")));
        assert_eq!(sender_claims(&ipv6_frame(17, &[0; 8])), claims(src, None, None));
        let advert = NdiscRepr::NeighborAdvert { flags: 0, target_addr: addrs("fd00::9"), lladdr: Some(me) };
        assert_eq!(sender_claims(&nd_frame(advert, &[])), claims(src, Some(addrs("fd00::9")), Some(me)));
        let solicit = NdiscRepr::NeighborSolicit { target_addr: addrs("fd00::9"), lladdr: Some(me) };
        assert_eq!(
            sender_claims(&nd_frame(solicit, &[])),
            claims(src, None, Some(me)),
            "its target is asked for"
        );
        // Under a VLAN tag, the same.
        let plain = nd_frame(advert, &[]);
        let tagged = [&plain[..12], &[0x81, 0, 0, 7], &plain[12..]].concat();
        assert_eq!(sender_claims(&tagged), sender_claims(&plain));
        // Other ethertypes claim no address.
        let mut lldp = plain.clone();
        lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
        assert_eq!(sender_claims(&lldp), claims(None, None, None));
    }

    #[test]
    fn rogue_frames_too_odd_to_vouch_for_are_errors_but_show_their_target() {
        let me = [2, 0, 0, 0, 0, 2];
        let advert = NdiscRepr::NeighborAdvert { flags: 0, target_addr: addrs("fd00::9"), lladdr: Some(me) };
        // A second target link-layer option naming another MAC.
        let f = nd_frame(advert, &[ndisc::option::TARGET_LLADDR, 1, 2, 0, 0, 0, 0, 9]);
        assert_eq!(sender_claims(&f), Err(Error::Malformed));
        assert_eq!(advertised_target(&f), Some(addrs("fd00::9")), "the target is in the fixed part");
        let zero = nd_frame(advert, &[ndisc::option::TARGET_LLADDR, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            (sender_claims(&zero), advertised_target(&zero)),
            (Err(Error::Malformed), Some(addrs("fd00::9")))
        );
        let solicit =
            nd_frame(NdiscRepr::NeighborSolicit { target_addr: addrs("fd00::9"), lladdr: None }, &[]);
        assert_eq!(advertised_target(&solicit), None, "a solicitation advertises nothing");
        let short = &nd_frame(advert, &[])[..L3 + ipv6::HEADER_LEN + 20];
        assert_eq!(sender_claims(short), Err(Error::Truncated));
        assert_eq!(advertised_target(short), None);
        let mut cut_ip = arp_req();
        cut_ip[12..14].copy_from_slice(&[8, 0]);
        assert!(sender_claims(&cut_ip[..L3 + 10]).is_err(), "an IPv4 header cut short");
        let mut rarp = arp_req();
        rarp[L3 + 7] = 3;
        assert_eq!(sender_claims(&rarp), Err(Error::Unsupported));
    }

    #[test]
    fn short_frames_are_none() {
        for n in 0..ARP_REPLY_LEN {
            let f = &arp_req()[..n];
            let _ = (dst_mac(f), src_mac(f), source_ip(f), arp_request(f));
            assert_eq!(arp_request(f), None);
        }
        assert_eq!(source_ip(&arp_req()[..30]), None);
    }

    /// A frame with a 60-byte IPv4 TCP packet (one option word, DF), quoted after the ICMP
    /// header: the reply's bytes as the previous hand-written builder produced them.
    #[test]
    fn icmp_frag_needed_known_answer() {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0];
        let mut ip = vec![
            0x46, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0xab, 0xcd, 10, 42, 1, 2, 10, 42, 2, 2, 1, 1, 1, 0,
        ];
        ip.extend((0..60u8).map(|i| i.wrapping_mul(37)));
        let total = (ip.len() as u16).to_be_bytes();
        ip[2..4].copy_from_slice(&total);
        f.extend_from_slice(&ip);
        let mut out = [0xa5u8; TOO_BIG_REPLY_MAX];
        let n = too_big_reply(&f, 1422, [2, 0, 0, 0, 0, 9], "10.42.1.1".parse().unwrap(), &mut out).unwrap();
        let expect = hex(concat!(
            "020000000002020000000009",
            "0800",                                     // to the sender, from the gateway
            "4500003c000000004001646b0a2a01010a2a0102", // 10.42.1.1 → 10.42.1.2, ICMP
            "03049c660000058e",                         // fragmentation needed, MTU 1422
            "46000054123440004006abcd0a2a01020a2a020201010100",
            "00254a6f94b9de03", // the quote
        ));
        assert_eq!(&out[..n], &expect[..]);
        assert!(out[n..].iter().all(|b| *b == 0xa5), "nothing written past the reply");
        // Without DF: no reply; nor to an ICMP error.
        let mut no_df = f.clone();
        Ipv4Packet::new_unchecked(&mut no_df[L3..]).set_unfragmented(false);
        assert_eq!(too_big_reply(&no_df, 1422, [0; 6], "10.42.1.1".parse().unwrap(), &mut out), None);
        let mut error = f.clone();
        let mut ip = Ipv4Packet::new_unchecked(&mut error[L3..]);
        ip.set_protocol(ip_proto::ICMP);
        IcmpPacket::new_unchecked(ip.payload_mut()).set_msg_type_and_code(icmp::v4::DEST_UNREACHABLE, 1);
        assert_eq!(too_big_reply(&error, 1422, [0; 6], "10.42.1.1".parse().unwrap(), &mut out), None);
    }

    fn ipv6_frame(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd, 0x60, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        f.extend_from_slice(&[next, 64]);
        f.extend_from_slice(&addrs("fd00::2").octets());
        f.extend_from_slice(&addrs("fd00::3").octets());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn icmpv6_packet_too_big_known_answer() {
        let payload: Vec<u8> = (0..108u8).map(|i| i.wrapping_mul(91)).collect();
        let f = ipv6_frame(17, &payload);
        let mut out = [0xa5u8; TOO_BIG_REPLY_MAX];
        let n =
            too_big_reply(&f, 1402, [2, 0, 0, 0, 0, 9], Addrs::one(IpAddr::V6(addrs("fd00::1"))), &mut out)
                .unwrap();
        let mut expect = hex(concat!(
            "020000000002020000000009",
            "86dd", // to the sender, from the gateway
            "60000000009c3a40",
            "fd000000000000000000000000000001",
            "fd000000000000000000000000000002",
            "02001d500000057a", // packet too big, MTU 1402
        ));
        expect.extend_from_slice(&f[L3..]);
        assert_eq!(&out[..n], &expect[..]);
        let ip = Ipv6Packet::new_checked(&out[L3..n]).unwrap();
        let pseudo = ip.pseudo_header(ip_proto::ICMPV6, u32::from(ip.payload_len()));
        assert!(IcmpPacket::new_checked(ip.payload()).unwrap().verify_checksum(pseudo));
    }

    #[test]
    fn icmpv6_quotes_are_cut_to_the_minimum_mtu() {
        let payload: Vec<u8> = (0..1500u32).map(|i| (i * 13) as u8).collect();
        let f = ipv6_frame(6, &payload);
        let mut out = [0u8; TOO_BIG_REPLY_MAX];
        let n =
            too_big_reply(&f, 1402, [2, 0, 0, 0, 0, 9], Addrs::one(IpAddr::V6(addrs("fd00::1"))), &mut out)
                .unwrap();
        assert_eq!(n, TOO_BIG_REPLY_MAX);
        let head = L3 + ipv6::HEADER_LEN + icmp::HEADER_LEN;
        assert_eq!(
            &out[..head],
            &hex(concat!(
                "020000000002020000000009",
                "86dd",
                "6000000004d83a40",
                "fd000000000000000000000000000001",
                "fd000000000000000000000000000002",
                "02005cd40000057a",
            ))[..]
        );
        assert_eq!(out[..n].iter().map(|b| u64::from(*b)).sum::<u64>(), 154_040);
        // An ICMPv6 error is never answered; an echo request is.
        let error = ipv6_frame(58, &[icmp::v6::DEST_UNREACHABLE, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            too_big_reply(&error, 1402, [0; 6], Addrs::one(IpAddr::V6(addrs("fd00::1"))), &mut out),
            None
        );
        let echo = ipv6_frame(58, &[icmp::v6::ECHO_REQUEST, 0, 0, 0, 0, 0, 0, 0]);
        assert!(
            too_big_reply(&echo, 1402, [0; 6], Addrs::one(IpAddr::V6(addrs("fd00::1"))), &mut out).is_some()
        );
        assert_eq!(
            too_big_reply(&echo, 1402, [0; 6], "10.42.1.1".parse().unwrap(), &mut out),
            None,
            "family"
        );
    }

    #[test]
    fn ipv4_reply_checksums_verify() {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0];
        let mut ip = vec![0x45, 0, 5, 0xdc, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 42, 1, 2, 10, 42, 2, 2];
        ip.extend_from_slice(&[0u8; 1480]);
        f.extend_from_slice(&ip);
        let mut out = [0u8; 200];
        let n = too_big_reply(&f, 1422, [2, 0, 0, 0, 0, 9], "10.42.1.1".parse().unwrap(), &mut out).unwrap();
        let quote = ipv4::HEADER_LEN + crate::packet::tcp::QUOTED_LEN;
        assert_eq!(n, ethernet::HEADER_LEN + ipv4::HEADER_LEN + icmp::HEADER_LEN + quote);
        let ip = Ipv4Packet::new_checked(&out[L3..n]).unwrap();
        assert!(ip.verify_checksum());
        assert!(checksum::verify(checksum::sum(ip.payload())));
        let msg = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(Icmpv4Repr::parse(&msg), Ok(Icmpv4Repr::FragNeeded { mtu: 1422 }));
    }
}
