//! Reads what the firewall needs from an Ethernet frame: addresses, protocol, ports, TCP
//! flags, ICMP kind, and for ICMP errors the header of the packet they are about.
//!
//! Never panics and never allocates: every read goes through a bounds-checked accessor and a
//! truncated header becomes [`Parsed::Malformed`]. IPv4 options and IPv6 extension headers
//! (hop-by-hop, routing, destination options, fragment; at most [`MAX_EXT_HEADERS`]) are
//! skipped. 802.1Q-tagged frames are [`Parsed::Other`].

use super::rules::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Most IPv6 extension headers walked before a packet counts as malformed.
pub const MAX_EXT_HEADERS: usize = 8;

/// TCP header flag bits, as in [`Flow::tcp_flags`].
pub mod tcp_flags {
    /// No more data from the sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers (connection start).
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// The acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
}

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
    let Some(ethertype) = be16(frame, 12) else { return Parsed::Malformed };
    let payload = frame.get(ETH_HEADER..).unwrap_or_default();
    let parsed = match ethertype {
        ETHERTYPE_IPV4 => ipv4(payload),
        ETHERTYPE_IPV6 => ipv6(payload),
        ETHERTYPE_ARP => Some(Parsed::AlwaysPass),
        _ => Some(Parsed::Other),
    };
    parsed.unwrap_or(Parsed::Malformed)
}

const ETH_HEADER: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_ARP: u16 = 0x0806;

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DEST_OPTS: u8 = 60;

/// An IP header with its payload (bounded by the header's length field and the frame).
struct Ip<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    /// Non-first fragment.
    fragment: bool,
    payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn byte(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}

fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn ipv4(p: &[u8]) -> Option<Parsed> {
    let ip = ipv4_header(p)?;
    let mut flow = Flow::new(&ip);
    if ip.fragment {
        return Some(Parsed::Flow(flow));
    }
    match ip.proto {
        IPPROTO_ICMP => {
            let (ty, code) = (byte(ip.payload, 0)?, byte(ip.payload, 1)?);
            let kind = match ty {
                8 => IcmpKind::EchoRequest,
                0 => IcmpKind::EchoReply,
                3 | 11 | 12 => IcmpKind::Error(embedded(ipv4_header(ip.payload.get(8..)?)?)?),
                _ => IcmpKind::Other,
            };
            flow.icmp_info(ip.payload, ty, code, kind)?;
        }
        _ => flow.transport(ip.payload)?,
    }
    Some(Parsed::Flow(flow))
}

fn ipv6(p: &[u8]) -> Option<Parsed> {
    let ip = ipv6_header(p)?;
    let mut flow = Flow::new(&ip);
    if ip.fragment {
        return Some(Parsed::Flow(flow));
    }
    match ip.proto {
        IPPROTO_ICMPV6 => {
            let (ty, code) = (byte(ip.payload, 0)?, byte(ip.payload, 1)?);
            let kind = match ty {
                133..=137 => return Some(Parsed::AlwaysPass),
                128 => IcmpKind::EchoRequest,
                129 => IcmpKind::EchoReply,
                1..=4 => IcmpKind::Error(embedded(ipv6_header(ip.payload.get(8..)?)?)?),
                _ => IcmpKind::Other,
            };
            flow.icmp_info(ip.payload, ty, code, kind)?;
        }
        _ => flow.transport(ip.payload)?,
    }
    Some(Parsed::Flow(flow))
}

impl Flow {
    fn new(ip: &Ip<'_>) -> Self {
        Flow {
            src: ip.src,
            dst: ip.dst,
            proto: ip.proto,
            sport: 0,
            dport: 0,
            tcp_flags: 0,
            fragment: ip.fragment,
            icmp: None,
        }
    }

    /// Ports and flags of TCP/UDP; nothing for other protocols.
    fn transport(&mut self, l4: &[u8]) -> Option<()> {
        match self.proto {
            IPPROTO_TCP => {
                // The fixed TCP header is 20 bytes; anything shorter is a truncated (or evasive
                // tiny first fragment) packet.
                l4.get(..20)?;
                (self.sport, self.dport) = (be16(l4, 0)?, be16(l4, 2)?);
                self.tcp_flags = byte(l4, 13)?;
            }
            IPPROTO_UDP => {
                l4.get(..8)?;
                (self.sport, self.dport) = (be16(l4, 0)?, be16(l4, 2)?);
            }
            _ => {}
        }
        Some(())
    }

    /// Records an ICMP message; echo messages carry their identifier as both ports.
    fn icmp_info(&mut self, msg: &[u8], ty: u8, code: u8, kind: IcmpKind) -> Option<()> {
        msg.get(..8)?;
        if matches!(kind, IcmpKind::EchoRequest | IcmpKind::EchoReply) {
            let id = be16(msg, 4)?;
            (self.sport, self.dport) = (id, id);
        }
        self.icmp = Some(IcmpInfo { ty, code, kind });
        Some(())
    }
}

/// The packet inside an ICMP error: ports (or echo identifier) when present and not a
/// non-first fragment. Its transport header may be cut after 8 bytes, so only ports are read.
fn embedded(ip: Ip<'_>) -> Option<Embedded> {
    let (mut sport, mut dport) = (0, 0);
    if !ip.fragment {
        match (ip.proto, byte(ip.payload, 0)) {
            (IPPROTO_TCP | IPPROTO_UDP, _) => (sport, dport) = (be16(ip.payload, 0)?, be16(ip.payload, 2)?),
            (IPPROTO_ICMP, Some(8 | 0)) | (IPPROTO_ICMPV6, Some(128 | 129)) => {
                let id = be16(ip.payload, 4)?;
                (sport, dport) = (id, id);
            }
            _ => {}
        }
    }
    Some(Embedded { src: ip.src, dst: ip.dst, proto: ip.proto, sport, dport })
}

fn ipv4_header(p: &[u8]) -> Option<Ip<'_>> {
    let first = byte(p, 0)?;
    if first >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    let total = usize::from(be16(p, 2)?);
    if header_len < 20 || total < header_len {
        return None;
    }
    let frag = be16(p, 6)?;
    // Within an ICMP error the original datagram is cut short; in a frame the total length
    // may also be less than what follows (Ethernet padding). Either way read what is there.
    let end = total.min(p.len());
    Some(Ip {
        src: IpAddr::V4(Ipv4Addr::from(array::<4>(p, 12)?)),
        dst: IpAddr::V4(Ipv4Addr::from(array::<4>(p, 16)?)),
        proto: byte(p, 9)?,
        fragment: frag & 0x1fff != 0,
        payload: p.get(header_len..end)?,
    })
}

fn ipv6_header(p: &[u8]) -> Option<Ip<'_>> {
    if byte(p, 0)? >> 4 != 6 {
        return None;
    }
    let payload_len = usize::from(be16(p, 4)?);
    let src = IpAddr::V6(Ipv6Addr::from(array::<16>(p, 8)?));
    let dst = IpAddr::V6(Ipv6Addr::from(array::<16>(p, 24)?));
    let rest = p.get(40..)?;
    // A zero payload length is a jumbogram (hop-by-hop option); read what is there.
    let mut body = if payload_len == 0 { rest } else { rest.get(..payload_len.min(rest.len()))? };
    let mut next = byte(p, 6)?;
    // One turn more than headers allowed, to read the protocol after the last one.
    for _ in 0..=MAX_EXT_HEADERS {
        match next {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                let len = (usize::from(byte(body, 1)?) + 1) * 8;
                next = byte(body, 0)?;
                body = body.get(len..)?;
            }
            IPV6_FRAGMENT => {
                let offset = be16(body, 2)? >> 3;
                next = byte(body, 0)?;
                body = body.get(8..)?;
                if offset != 0 {
                    return Some(Ip { src, dst, proto: next, fragment: true, payload: body });
                }
            }
            _ => return Some(Ip { src, dst, proto: next, fragment: false, payload: body }),
        }
    }
    None
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
