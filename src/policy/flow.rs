//! Reads what the firewall needs from an Ethernet frame: addresses, protocol, ports, TCP
//! flags, ICMP kind, and for ICMP errors the header of the packet they are about, through
//! the checked views of [`crate::packet`].
//!
//! Never panics and never allocates: a header that its view refuses (truncated, or with a
//! length field that contradicts it) makes the frame [`Parsed::Malformed`]. IPv4 options and
//! IPv6 extension headers (hop-by-hop, routing, destination options, fragment; at most
//! [`MAX_EXT_HEADERS`]) are skipped. 802.1Q-tagged frames are [`Parsed::Other`]. An ICMP
//! error must quote the first 8 bytes of the transport header it is about (RFC 792).

use std::net::IpAddr;

use super::rules::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use crate::packet::icmp::{v4, v6};
use crate::packet::{
    tcp, EtherType, EthernetFrame, IcmpPacket, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
};

/// Most IPv6 extension headers walked before a packet counts as malformed.
pub use crate::packet::ipv6::MAX_EXT_HEADERS;

/// TCP header flag bits, as in [`Flow::tcp_flags`].
pub use crate::packet::tcp::flags as tcp_flags;

/// What a frame is, for the firewall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// An IPv4 or IPv6 packet.
    Flow(Flow),
    /// ARP or IPv6 neighbour/router discovery (ICMPv6 133..=137): never filtered.
    AlwaysPass,
    /// Not IP (including 802.1Q-tagged frames); the caller decides.
    Other,
    /// A header is truncated or inconsistent.
    Malformed,
}

/// The firewall's view of one IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number (after IPv6 extension headers).
    pub proto: u8,
    /// TCP/UDP source port; the identifier for ICMP echo; else 0.
    pub sport: u16,
    /// TCP/UDP destination port; the identifier for ICMP echo; else 0.
    pub dport: u16,
    /// TCP flags ([`tcp_flags`]); 0 for other protocols.
    pub tcp_flags: u8,
    /// A non-first fragment: the transport header is elsewhere, ports are 0.
    pub fragment: bool,
    /// ICMP/ICMPv6 type, code and meaning.
    pub icmp: Option<IcmpInfo>,
}

/// An ICMP or ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpInfo {
    /// Type.
    pub ty: u8,
    /// Code.
    pub code: u8,
    /// What it means for connection tracking.
    pub kind: IcmpKind,
}

/// The meaning of an ICMP message for connection tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpKind {
    /// Echo request (ICMP 8, ICMPv6 128); its identifier is in both ports.
    EchoRequest,
    /// Echo reply (ICMP 0, ICMPv6 129); its identifier is in both ports.
    EchoReply,
    /// An error (ICMP 3, 11, 12; ICMPv6 1..=4) about the embedded packet.
    Error(Embedded),
    /// Anything else.
    Other,
}

/// The start of the packet an ICMP error is about, as it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedded {
    /// Its source (normally the receiver of the error).
    pub src: IpAddr,
    /// Its destination.
    pub dst: IpAddr,
    /// Its IP protocol.
    pub proto: u8,
    /// Its source port, or echo identifier; else 0.
    pub sport: u16,
    /// Its destination port, or echo identifier; else 0.
    pub dport: u16,
}

impl Flow {
    /// The destination port rules look at: TCP/UDP, not a non-first fragment.
    pub fn port(&self) -> Option<u16> {
        let l4 = self.proto == IPPROTO_TCP || self.proto == IPPROTO_UDP;
        (l4 && !self.fragment).then_some(self.dport)
    }
}

/// Parses an Ethernet frame (destination, source, EtherType, payload; no FCS).
pub fn parse(frame: &[u8]) -> Parsed {
    let Ok(eth) = EthernetFrame::new_checked(frame) else { return Parsed::Malformed };
    let parsed = match eth.ethertype() {
        EtherType::IPV4 => ipv4(eth.payload()),
        EtherType::IPV6 => ipv6(eth.payload()),
        EtherType::ARP => Some(Parsed::AlwaysPass),
        _ => Some(Parsed::Other),
    };
    parsed.unwrap_or(Parsed::Malformed)
}

/// An IP header with its payload (bounded by the header's length field and the frame).
struct Ip<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    /// Non-first fragment.
    fragment: bool,
    payload: &'a [u8],
}

fn ipv4(p: &[u8]) -> Option<Parsed> {
    let ip = ipv4_header(p)?;
    if ip.fragment {
        return Some(Parsed::Flow(Flow::new(&ip, Transport::default(), None)));
    }
    let (t, icmp) = match ip.proto {
        IPPROTO_ICMP => {
            let msg = IcmpPacket::new_checked(ip.payload).ok()?;
            let kind = match msg.msg_type() {
                v4::ECHO_REQUEST => IcmpKind::EchoRequest,
                v4::ECHO_REPLY => IcmpKind::EchoReply,
                v4::DEST_UNREACHABLE | v4::TIME_EXCEEDED | v4::PARAM_PROBLEM => {
                    IcmpKind::Error(embedded(ipv4_header(msg.data())?)?)
                }
                _ => IcmpKind::Other,
            };
            icmp_info(&msg, kind)
        }
        proto => (transport(proto, ip.payload)?, None),
    };
    Some(Parsed::Flow(Flow::new(&ip, t, icmp)))
}

fn ipv6(p: &[u8]) -> Option<Parsed> {
    let ip = ipv6_header(p)?;
    if ip.fragment {
        return Some(Parsed::Flow(Flow::new(&ip, Transport::default(), None)));
    }
    let (t, icmp) = match ip.proto {
        IPPROTO_ICMPV6 => {
            let msg = IcmpPacket::new_checked(ip.payload).ok()?;
            let kind = match msg.msg_type() {
                v6::ROUTER_SOLICIT..=v6::REDIRECT => return Some(Parsed::AlwaysPass),
                v6::ECHO_REQUEST => IcmpKind::EchoRequest,
                v6::ECHO_REPLY => IcmpKind::EchoReply,
                v6::DEST_UNREACHABLE..=v6::PARAM_PROBLEM => {
                    IcmpKind::Error(embedded(ipv6_header(msg.data())?)?)
                }
                _ => IcmpKind::Other,
            };
            icmp_info(&msg, kind)
        }
        proto => (transport(proto, ip.payload)?, None),
    };
    Some(Parsed::Flow(Flow::new(&ip, t, icmp)))
}

/// Ports (or echo identifier) and TCP flags of a transport header; 0 where they do not
/// apply. Returned by value so the flow is built in registers, in one go.
#[derive(Debug, Default, Clone, Copy)]
struct Transport {
    sport: u16,
    dport: u16,
    tcp_flags: u8,
}

impl Flow {
    #[inline]
    fn new(ip: &Ip<'_>, t: Transport, icmp: Option<IcmpInfo>) -> Self {
        Flow {
            src: ip.src,
            dst: ip.dst,
            proto: ip.proto,
            sport: t.sport,
            dport: t.dport,
            tcp_flags: t.tcp_flags,
            fragment: ip.fragment,
            icmp,
        }
    }
}

/// Ports and flags of TCP/UDP; nothing for other protocols.
#[inline]
fn transport(proto: u8, l4: &[u8]) -> Option<Transport> {
    Some(match proto {
        IPPROTO_TCP => {
            // The whole TCP header must be there; anything shorter is a truncated (or evasive
            // tiny first fragment) packet.
            let t = TcpPacket::new_checked(l4).ok()?;
            Transport { sport: t.src_port(), dport: t.dst_port(), tcp_flags: t.flags() }
        }
        IPPROTO_UDP => {
            let u = UdpPacket::new_checked(l4).ok()?;
            Transport { sport: u.src_port(), dport: u.dst_port(), tcp_flags: 0 }
        }
        _ => Transport::default(),
    })
}

/// An ICMP message's info; echo messages carry their identifier as both ports.
#[inline]
fn icmp_info(msg: &IcmpPacket<&[u8]>, kind: IcmpKind) -> (Transport, Option<IcmpInfo>) {
    let mut t = Transport::default();
    if matches!(kind, IcmpKind::EchoRequest | IcmpKind::EchoReply) {
        (t.sport, t.dport) = (msg.echo_ident(), msg.echo_ident());
    }
    (t, Some(IcmpInfo { ty: msg.msg_type(), code: msg.msg_code(), kind }))
}

/// The packet inside an ICMP error: ports (or echo identifier) when not a non-first fragment.
/// Its TCP, UDP or ICMP header must be quoted for 8 bytes (RFC 792) and may be cut after
/// them, so only ports and identifiers are read.
fn embedded(ip: Ip<'_>) -> Option<Embedded> {
    let (mut sport, mut dport) = (0, 0);
    if !ip.fragment {
        match ip.proto {
            IPPROTO_TCP | IPPROTO_UDP => (sport, dport) = tcp::quoted_ports(ip.payload).ok()?,
            IPPROTO_ICMP | IPPROTO_ICMPV6 => {
                let msg = IcmpPacket::new_checked(ip.payload).ok()?;
                let echo = match ip.proto {
                    IPPROTO_ICMP => matches!(msg.msg_type(), v4::ECHO_REQUEST | v4::ECHO_REPLY),
                    _ => matches!(msg.msg_type(), v6::ECHO_REQUEST | v6::ECHO_REPLY),
                };
                if echo {
                    (sport, dport) = (msg.echo_ident(), msg.echo_ident());
                }
            }
            _ => {}
        }
    }
    Some(Embedded { src: ip.src, dst: ip.dst, proto: ip.proto, sport, dport })
}

fn ipv4_header(p: &[u8]) -> Option<Ip<'_>> {
    let ip = Ipv4Packet::new_checked(p).ok()?;
    if ip.version() != 4 || usize::from(ip.total_len()) < ip.header_len() {
        return None;
    }
    // Within an ICMP error the original datagram is cut short; in a frame the total length
    // may also be less than what follows (Ethernet padding). The view reads what is there.
    Some(Ip {
        src: ip.src_addr().into(),
        dst: ip.dst_addr().into(),
        proto: ip.protocol(),
        fragment: ip.frag_offset() != 0,
        payload: ip.payload(),
    })
}

fn ipv6_header(p: &[u8]) -> Option<Ip<'_>> {
    let ip = Ipv6Packet::new_checked(p).ok()?;
    if ip.version() != 6 {
        return None;
    }
    let upper = ip.upper_layer().ok()?;
    Some(Ip {
        src: ip.src_addr().into(),
        dst: ip.dst_addr().into(),
        proto: upper.protocol,
        fragment: upper.fragment,
        payload: upper.payload,
    })
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
