//! The one parser for the frames weft carries on its overlay: typed views over Ethernet (with
//! at most one 802.1Q tag), ARP, IPv4, IPv6 (with its extension headers), TCP, UDP,
//! ICMPv4/ICMPv6 and IPv6 neighbour discovery, in the shape of smoltcp's `wire` module, and
//! the one Internet checksum.
//!
//! Each header has a view, `XPacket<T: AsRef<[u8]>>`, whose fields are named byte ranges in a
//! public `field` module. `new_checked` verifies once that the buffer holds the whole header
//! and that the header's own length fields are consistent with it; after that no accessor or
//! setter can panic, whatever the bytes (until a setter rewrites a header-length field, which
//! only emitters do, into buffers they sized). `new_unchecked` is for buffers the caller has
//! already sized, as when emitting. A `Repr` is the validated value of a header: `parse` reads
//! it from a checked view, `emit` writes it into a view of at least `buffer_len()` bytes.
//! Payload accessors are bounded by the header's length field *and* the buffer, so Ethernet
//! padding is never payload and a header quoted (cut short) inside an ICMP error still parses.
//!
//! Nothing here allocates, reads a clock, or panics on peer input.
#![warn(missing_docs)]

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod ndisc;
pub mod tcp;
pub mod udp;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr, Mac};
pub use icmp::{IcmpPacket, Icmpv4Repr, Icmpv6Repr};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use ndisc::{NdiscPacket, NdiscRepr};
pub use tcp::TcpPacket;
pub use udp::{UdpPacket, UdpRepr};

/// Why bytes are not the header they were read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the header does.
    #[error("truncated header")]
    Truncated,
    /// A version or length field contradicts the header it is in.
    #[error("malformed header")]
    Malformed,
    /// A well-formed header of a kind this module does not represent.
    #[error("unsupported header")]
    Unsupported,
}

/// IP protocol numbers (the IPv4 protocol field, the IPv6 next-header field).
pub mod ip_proto {
    /// IPv6 hop-by-hop options.
    pub const HOP_BY_HOP: u8 = 0;
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 routing header.
    pub const IPV6_ROUTING: u8 = 43;
    /// IPv6 fragment header.
    pub const IPV6_FRAGMENT: u8 = 44;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 destination options.
    pub const IPV6_DEST_OPTS: u8 = 60;
}

/// A header field as a byte range.
pub type Field = core::ops::Range<usize>;

/// Reads a big-endian `u16` from the two bytes of `field`.
#[inline]
fn get_u16(b: &[u8], field: Field) -> u16 {
    let s = &b[field];
    u16::from_be_bytes([s[0], s[1]])
}

/// Reads a big-endian `u32` from the four bytes of `field`.
#[inline]
fn get_u32(b: &[u8], field: Field) -> u32 {
    let s = &b[field];
    u32::from_be_bytes([s[0], s[1], s[2], s[3]])
}

/// Writes `v` big-endian into the two bytes of `field`.
#[inline]
fn set_u16(b: &mut [u8], field: Field, v: u16) {
    b[field].copy_from_slice(&v.to_be_bytes());
}

/// Writes `v` big-endian into the four bytes of `field`.
#[inline]
fn set_u32(b: &mut [u8], field: Field, v: u32) {
    b[field].copy_from_slice(&v.to_be_bytes());
}

/// Reads the `N` bytes of `field` (which must be `N` long) as an array.
#[inline]
fn get_array<const N: usize>(b: &[u8], field: Field) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[field]);
    out
}
