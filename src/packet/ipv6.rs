//! IPv6 headers (RFC 8200): the fixed header, the extension headers in front of the
//! upper-layer header (hop-by-hop, routing, destination options, fragment), and the walk
//! across them.
//!
//! Invariants: a checked [`Ipv6Packet`] holds the 40-byte fixed header; its payload is bounded
//! by the payload-length field and the buffer (a zero length, a jumbogram, means "what is
//! there"). [`Ipv6Packet::upper_layer`] walks at most [`MAX_EXT_HEADERS`] extension headers,
//! each checked whole before it is skipped, so a chain of any length or shape costs bounded
//! work and never reads past the buffer.

use std::net::Ipv6Addr;

use super::{checksum, get_array, get_u16, ip_proto, set_u16, Error};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;
/// The smallest MTU every IPv6 link has; ICMPv6 errors fit in it.
pub const MIN_MTU: usize = 1280;
/// Most extension headers walked before a packet is refused.
pub const MAX_EXT_HEADERS: usize = 8;
/// Length of a fragment header.
pub const FRAGMENT_HEADER_LEN: usize = 8;

/// Byte ranges of the fixed header's fields.
pub mod field {
    use crate::packet::Field;
    /// Version, traffic class and flow label.
    pub const VER_TC_FLOW: Field = 0..4;
    /// Payload length (extension headers included).
    pub const LENGTH: Field = 4..6;
    /// Next header.
    pub const NXT_HDR: usize = 6;
    /// Hop limit.
    pub const HOP_LIMIT: usize = 7;
    /// Source address.
    pub const SRC_ADDR: Field = 8..24;
    /// Destination address.
    pub const DST_ADDR: Field = 24..40;
}

/// Byte ranges of the extension headers' fields.
pub mod ext_field {
    use crate::packet::Field;
    /// Next header (every extension header).
    pub const NXT_HDR: usize = 0;
    /// Length in 8-byte units, not counting the first 8 (options-format headers).
    pub const LENGTH: usize = 1;
    /// Fragment offset in 8-byte units (high 13 bits) and the M flag (fragment header).
    pub const FRAG_OFF_M: Field = 2..4;
    /// Identification (fragment header).
    pub const FRAG_IDENT: Field = 4..8;
}

/// A view of an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// The upper-layer header after the extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer<'a> {
    /// Its protocol (the last next-header value).
    pub protocol: u8,
    /// A non-first fragment: `payload` is fragment data, not the protocol's header.
    pub fragment: bool,
    /// Everything after the extension headers, within the packet's payload.
    pub payload: &'a [u8],
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// A view without checks: only for buffers known to hold [`HEADER_LEN`] bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// A view of a buffer that holds the whole fixed header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self { buffer })
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (6 for IPv6; checked by [`Ipv6Repr::parse`], not by the view).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW.start] >> 4
    }

    /// Payload length field.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Next header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(get_array::<16>(self.buffer.as_ref(), field::SRC_ADDR))
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(get_array::<16>(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// The folded pseudo-header sum for an upper-layer `protocol` message of `length` bytes.
    #[inline]
    pub fn pseudo_header(&self, protocol: u8, length: u32) -> u16 {
        let addrs = &self.buffer.as_ref()[field::SRC_ADDR.start..field::DST_ADDR.end];
        checksum::pseudo_header(addrs, protocol, length)
    }

    /// Where the payload ends: after the payload length, or the buffer, whichever is first.
    #[inline]
    fn payload_end(&self) -> usize {
        let len = self.buffer.as_ref().len();
        match usize::from(self.payload_len()) {
            0 => len,
            n => (HEADER_LEN + n).min(len),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv6Packet<&'a T> {
    /// The payload (extension headers included) as far as the length field and buffer go.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.payload_end()]
    }

    /// Walks the extension headers to the upper-layer header. A chain longer than
    /// [`MAX_EXT_HEADERS`] is `Unsupported`; a cut header is `Truncated`.
    pub fn upper_layer(&self) -> Result<UpperLayer<'a>, Error> {
        let mut next = self.next_header();
        let mut body = self.payload();
        // One turn more than headers allowed, to read the protocol after the last one.
        for _ in 0..=MAX_EXT_HEADERS {
            match next {
                ip_proto::HOP_BY_HOP | ip_proto::IPV6_ROUTING | ip_proto::IPV6_DEST_OPTS => {
                    let h = Ipv6ExtHeader::new_checked(body)?;
                    next = h.next_header();
                    body = &body[h.header_len()..];
                }
                ip_proto::IPV6_FRAGMENT => {
                    let h = Ipv6FragmentHeader::new_checked(body)?;
                    next = h.next_header();
                    body = &body[FRAGMENT_HEADER_LEN..];
                    if h.frag_offset() != 0 {
                        return Ok(UpperLayer { protocol: next, fragment: true, payload: body });
                    }
                }
                protocol => return Ok(UpperLayer { protocol, fragment: false, payload: body }),
            }
        }
        Err(Error::Unsupported)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version 6, with traffic class and flow label 0.
    #[inline]
    pub fn set_version(&mut self) {
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&[0x60, 0, 0, 0]);
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, next: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = next;
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    /// The payload as far as the length field and buffer go, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.payload_end();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// A view of an options-format extension header (hop-by-hop, routing, destination options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6ExtHeader<T> {
    /// A view of a buffer that holds the whole header its length field announces.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() <= ext_field::LENGTH {
            return Err(Error::Truncated);
        }
        let h = Self { buffer };
        if h.buffer.as_ref().len() < h.header_len() {
            return Err(Error::Truncated);
        }
        Ok(h)
    }

    /// Next header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[ext_field::NXT_HDR]
    }

    /// Length of this header in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        (usize::from(self.buffer.as_ref()[ext_field::LENGTH]) + 1) * 8
    }
}

/// A view of a fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6FragmentHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6FragmentHeader<T> {
    /// A view of a buffer that holds the whole header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() < FRAGMENT_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self { buffer })
    }

    /// Next header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[ext_field::NXT_HDR]
    }

    /// Fragment offset in 8-byte units (non-zero: not the first fragment).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        get_u16(self.buffer.as_ref(), ext_field::FRAG_OFF_M) >> 3
    }

    /// More fragments follow.
    #[inline]
    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), ext_field::FRAG_OFF_M) & 1 != 0
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u32 {
        super::get_u32(self.buffer.as_ref(), ext_field::FRAG_IDENT)
    }
}

/// The value of an IPv6 fixed header (traffic class and flow label 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header.
    pub next_header: u8,
    /// Payload length the header announces.
    pub payload_len: u16,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// Reads a fixed header; a version other than 6 is `Malformed`.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Result<Self, Error> {
        if p.version() != 6 {
            return Err(Error::Malformed);
        }
        Ok(Self {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: p.payload_len(),
            hop_limit: p.hop_limit(),
        })
    }

    /// Bytes the header takes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into a view of at least [`HEADER_LEN`] bytes.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Ipv6Packet<T>) {
        p.set_version();
        p.set_payload_len(self.payload_len);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// fd00::2 → fd00::3, UDP, hop limit 64, 8 bytes of payload.
    const HEADER: [u8; 40] = [
        0x60, 0, 0, 0, 0, 8, 17, 64, //
        0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, //
        0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3,
    ];

    fn repr() -> Ipv6Repr {
        Ipv6Repr {
            src_addr: "fd00::2".parse().unwrap(),
            dst_addr: "fd00::3".parse().unwrap(),
            next_header: 17,
            payload_len: 8,
            hop_limit: 64,
        }
    }

    fn packet(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = HEADER.to_vec();
        b[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        b[6] = next;
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn reads_a_header() {
        let mut b = packet(17, &[1, 2, 3, 4, 5, 6, 7, 8]);
        b.extend_from_slice(&[0, 0]); // padding
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&p), Ok(repr()));
        assert_eq!(p.payload(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        let u = p.upper_layer().unwrap();
        assert_eq!((u.protocol, u.fragment, u.payload.len()), (17, false, 8));
        for n in 0..HEADER_LEN {
            assert_eq!(Ipv6Packet::new_checked(&b[..n]), Err(Error::Truncated));
        }
    }

    #[test]
    fn emits_into_a_dirty_buffer() {
        let mut buf = [0xa5u8; 42];
        repr().emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..40], &HEADER);
        assert_eq!(&buf[40..], &[0xa5, 0xa5]);
    }

    #[test]
    fn walks_extension_headers() {
        // hop-by-hop (8 bytes) → destination options (16 bytes) → UDP.
        let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0, 17, 1, 1, 12];
        ext.extend_from_slice(&[0; 12]);
        ext.extend_from_slice(&[2, 34, 2, 35, 0, 8, 0, 0]);
        let b = packet(0, &ext);
        let u = Ipv6Packet::new_checked(&b[..]).unwrap().upper_layer().unwrap();
        assert_eq!((u.protocol, u.fragment, u.payload), (17, false, &ext[24..]));
        // Fragments: the first has the upper-layer header, a later one does not.
        for (offset, later) in [(0u16, false), (100, true)] {
            let mut f = vec![17, 0];
            f.extend_from_slice(&((offset << 3) | 1).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 9, 7, 7]);
            let b = packet(44, &f);
            let u = Ipv6Packet::new_checked(&b[..]).unwrap().upper_layer().unwrap();
            assert_eq!((u.protocol, u.fragment, u.payload), (17, later, &[7, 7][..]));
            let h = Ipv6FragmentHeader::new_checked(&f[..]).unwrap();
            assert_eq!((h.frag_offset(), h.more_frags(), h.ident()), (offset, true, 9));
        }
        // A cut extension header.
        let b = packet(0, &[17, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Ipv6Packet::new_checked(&b[..]).unwrap().upper_layer(), Err(Error::Truncated));
    }

    #[test]
    fn the_walk_is_bounded() {
        let chain = |k: usize| {
            let mut p = Vec::new();
            for i in 0..k {
                p.extend_from_slice(&[if i + 1 == k { 17 } else { 60 }, 0, 0, 0, 0, 0, 0, 0]);
            }
            packet(60, &p)
        };
        let b = chain(MAX_EXT_HEADERS);
        assert_eq!(Ipv6Packet::new_checked(&b[..]).unwrap().upper_layer().map(|u| u.protocol), Ok(17));
        let b = chain(MAX_EXT_HEADERS + 1);
        assert_eq!(Ipv6Packet::new_checked(&b[..]).unwrap().upper_layer(), Err(Error::Unsupported));
    }

    #[test]
    fn a_jumbogram_payload_is_what_is_there() {
        let mut b = packet(17, &[1, 2, 3]);
        b[4..6].fill(0);
        assert_eq!(Ipv6Packet::new_checked(&b[..]).unwrap().payload(), &[1, 2, 3]);
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(b in proptest::collection::vec(any::<u8>(), 0..200), next in prop_oneof![Just(0u8), Just(43), Just(44), Just(60), any::<u8>()]) {
            let mut b = b;
            if b.len() > field::NXT_HDR {
                b[field::NXT_HDR] = next;
            }
            if let Ok(p) = Ipv6Packet::new_checked(&b[..]) {
                let _ = (p.src_addr(), p.dst_addr(), p.payload(), p.upper_layer(), Ipv6Repr::parse(&p), p.pseudo_header(6, 1));
            }
        }

        #[test]
        fn parse_emit_round_trips(
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), next_header in any::<u8>(),
            payload_len in any::<u16>(), hop_limit in any::<u8>(),
        ) {
            let r = Ipv6Repr { src_addr: src.into(), dst_addr: dst.into(), next_header, payload_len, hop_limit };
            let mut buf = [0xa5u8; HEADER_LEN];
            r.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Ipv6Repr::parse(&Ipv6Packet::new_checked(&buf[..]).unwrap()), Ok(r));
        }
    }
}
