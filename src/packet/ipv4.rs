//! IPv4 headers (RFC 791), options included.
//!
//! Invariants: a checked [`Ipv4Packet`] holds its whole header (IHL ≥ 5 words, all of them in
//! the buffer), so every accessor is infallible. The total-length field is *not* required to
//! match the buffer: [`Ipv4Packet::payload`] is bounded by both, because frames carry
//! Ethernet padding and ICMP errors quote packets cut short. Checksums are only computed and
//! checked on request ([`Ipv4Packet::fill_checksum`], [`Ipv4Packet::verify_checksum`]).

use std::net::Ipv4Addr;

use super::{checksum, get_array, get_u16, set_u16, Error};

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

/// Byte ranges of the header fields.
pub mod field {
    use crate::packet::Field;
    /// Version (high nibble) and header length in 32-bit words (IHL, low nibble).
    pub const VER_IHL: usize = 0;
    /// DSCP and ECN.
    pub const DSCP_ECN: usize = 1;
    /// Total length (header and payload).
    pub const LENGTH: Field = 2..4;
    /// Identification.
    pub const IDENT: Field = 4..6;
    /// Flags (reserved, DF, MF) and fragment offset in 8-byte units.
    pub const FLG_OFF: Field = 6..8;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol of the payload.
    pub const PROTOCOL: usize = 9;
    /// Header checksum.
    pub const CHECKSUM: Field = 10..12;
    /// Source address.
    pub const SRC_ADDR: Field = 12..16;
    /// Destination address.
    pub const DST_ADDR: Field = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// A view without checks: only for buffers known to hold the header its IHL announces.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// A view of a buffer that holds the whole header (options included).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let p = Self { buffer };
        if p.header_len() < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if p.buffer.as_ref().len() < p.header_len() {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (4 for IPv4; checked by [`Ipv4Repr::parse`], not by the view).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Total length field (header and payload).
    #[inline]
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// Don't fragment.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    /// More fragments follow.
    #[inline]
    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in 8-byte units (non-zero: not the first fragment).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK
    }

    /// Part of a fragmented datagram (more fragments follow, or not the first).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The header checksum field.
    #[inline]
    pub fn checksum_field(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::SRC_ADDR))
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// The header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// Whether the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(checksum::sum(self.header()))
    }

    /// The folded pseudo-header sum for an upper-layer `protocol` message of `length` bytes.
    #[inline]
    pub fn pseudo_header(&self, protocol: u8, length: u32) -> u16 {
        let addrs = &self.buffer.as_ref()[field::SRC_ADDR.start..field::DST_ADDR.end];
        checksum::pseudo_header(addrs, protocol, length)
    }

    /// Where the payload ends: the total length, within `[header_len, buffer length]`.
    #[inline]
    fn payload_end(&self) -> usize {
        let b = self.buffer.as_ref();
        usize::from(self.total_len()).clamp(self.header_len(), b.len())
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv4Packet<&'a T> {
    /// The payload as far as both the total length and the buffer go.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let b = self.buffer.as_ref();
        &b[self.header_len()..self.payload_end()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and a header length of `header_len` bytes (a multiple of 4, ≤ 60).
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets DSCP and ECN.
    #[inline]
    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    /// Sets the flags and fragment offset to "unfragmented", with DF as given.
    #[inline]
    pub fn set_unfragmented(&mut self, dont_frag: bool) {
        set_u16(self.buffer.as_mut(), field::FLG_OFF, if dont_frag { FLAG_DF } else { 0 });
    }

    /// Sets the time to live.
    #[inline]
    pub fn set_hop_limit(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol.
    #[inline]
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    /// Computes and stores the header checksum.
    #[inline]
    pub fn fill_checksum(&mut self) {
        let n = self.header_len();
        let b = self.buffer.as_mut();
        set_u16(b, field::CHECKSUM, 0);
        let c = checksum::finish(checksum::sum(&b[..n]));
        set_u16(b, field::CHECKSUM, c);
    }

    /// The payload as far as both the total length and the buffer go, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), self.payload_end());
        &mut self.buffer.as_mut()[start..end]
    }
}

/// The value of an unfragmented IPv4 header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: u8,
    /// Payload length the header announces (a quoted packet's payload may be cut).
    pub payload_len: u16,
    /// Time to live.
    pub hop_limit: u8,
    /// Identification.
    pub ident: u16,
    /// Don't fragment.
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Reads a header (options are skipped); fragments are `Unsupported`. The checksum is
    /// not checked.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Self, Error> {
        let total = usize::from(p.total_len());
        if p.version() != 4 || total < p.header_len() {
            return Err(Error::Malformed);
        }
        if p.is_fragment() {
            return Err(Error::Unsupported);
        }
        Ok(Self {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: (total - p.header_len()) as u16,
            hop_limit: p.hop_limit(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
        })
    }

    /// Bytes the header takes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header, checksum included, into a view of at least [`HEADER_LEN`] bytes.
    /// `payload_len` must leave the total within 65,535 bytes.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Ipv4Packet<T>) {
        p.set_version_and_header_len(HEADER_LEN);
        p.set_dscp_ecn(0);
        p.set_total_len((HEADER_LEN as u16).saturating_add(self.payload_len));
        p.set_ident(self.ident);
        p.set_unfragmented(self.dont_frag);
        p.set_hop_limit(self.hop_limit);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 192.168.0.1 → 192.168.0.199, UDP, DF, TTL 64, 0x73 bytes, checksum b861.
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0,
        0xa8, 0x00, 0xc7,
    ];

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(192, 168, 0, 1),
            dst_addr: Ipv4Addr::new(192, 168, 0, 199),
            protocol: 17,
            payload_len: 0x73 - 20,
            hop_limit: 64,
            ident: 0,
            dont_frag: true,
        }
    }

    #[test]
    fn reads_a_header() {
        let mut b = HEADER.to_vec();
        b.extend_from_slice(&[1, 2, 3]);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.version(), p.header_len(), p.total_len(), p.checksum_field()), (4, 20, 0x73, 0xb861));
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment() && p.verify_checksum());
        assert_eq!(p.payload(), &[1, 2, 3], "cut short: as far as the buffer goes");
        assert_eq!(Ipv4Repr::parse(&p), Ok(repr()));
    }

    #[test]
    fn emits_into_a_dirty_buffer() {
        let mut buf = [0xa5u8; 22];
        repr().emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..20], &HEADER);
        assert_eq!(&buf[20..], &[0xa5, 0xa5]);
    }

    #[test]
    fn options_padding_and_fragments() {
        let mut b = HEADER.to_vec();
        b[0] = 0x46;
        b[2..4].copy_from_slice(&26u16.to_be_bytes());
        b.extend_from_slice(&[1, 1, 1, 0, 9, 9, 0, 0, 0]); // one option word, payload, padding
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.header_len(), p.payload()), (24, &[9, 9][..]));
        b[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_fragment() && p.frag_offset() == 0, "first fragment");
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::Unsupported));
        b[6..8].copy_from_slice(&185u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap().frag_offset(), 185);
    }

    #[test]
    fn inconsistent_headers_are_refused() {
        for n in 0..HEADER_LEN {
            assert_eq!(Ipv4Packet::new_checked(&HEADER[..n]), Err(Error::Truncated));
        }
        let mut b = HEADER;
        b[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(Error::Malformed), "IHL below 5");
        b[0] = 0x46;
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(Error::Truncated), "options cut");
        let mut b = HEADER;
        b[0] = 0x65;
        assert_eq!(Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap()), Err(Error::Malformed));
        let mut b = HEADER;
        b[2..4].copy_from_slice(&10u16.to_be_bytes());
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!((Ipv4Repr::parse(&p), p.payload()), (Err(Error::Malformed), &[][..]));
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Ipv4Packet::new_checked(&b[..]) {
                let _ = (p.src_addr(), p.dst_addr(), p.protocol(), p.frag_offset(), p.verify_checksum());
                let _ = (p.payload(), p.pseudo_header(6, 20), Ipv4Repr::parse(&p));
                let mut c = b.clone();
                let mut q = Ipv4Packet::new_checked(&mut c[..]).unwrap();
                q.fill_checksum();
                let _ = q.payload_mut();
                prop_assert!(Ipv4Packet::new_checked(&c[..]).unwrap().verify_checksum());
            }
        }

        #[test]
        fn parse_emit_round_trips(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), protocol in any::<u8>(),
            payload_len in 0u16..=65_515, hop_limit in any::<u8>(), ident in any::<u16>(), dont_frag in any::<bool>(),
        ) {
            let r = Ipv4Repr { src_addr: src.into(), dst_addr: dst.into(), protocol, payload_len, hop_limit, ident, dont_frag };
            let mut buf = [0xa5u8; HEADER_LEN];
            r.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
            let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(Ipv4Repr::parse(&p), Ok(r));
        }
    }
}
