//! UDP headers (RFC 768).
//!
//! Invariants: a checked [`UdpPacket`] holds the 8-byte header, so every accessor is
//! infallible; the length field is not required to match the buffer, and
//! [`UdpPacket::payload`] is bounded by both. The checksum helpers sum the whole buffer, so
//! for them the view must span the datagram exactly.

use super::{checksum, get_u16, set_u16, Error};

/// Length of the header.
pub const HEADER_LEN: usize = 8;

/// Byte ranges of the header fields.
pub mod field {
    use crate::packet::Field;
    /// Source port.
    pub const SRC_PORT: Field = 0..2;
    /// Destination port.
    pub const DST_PORT: Field = 2..4;
    /// Length of header and payload.
    pub const LENGTH: Field = 4..6;
    /// Checksum (0: none, over IPv4).
    pub const CHECKSUM: Field = 6..8;
}

/// A view of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// A view without checks: only for buffers known to hold [`HEADER_LEN`] bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// A view of a buffer that holds the whole header.
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

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field (header and payload).
    #[inline]
    pub fn len_field(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The checksum field.
    #[inline]
    pub fn checksum_field(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload, as far as both the length field and the buffer go.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[HEADER_LEN..usize::from(self.len_field()).clamp(HEADER_LEN, b.len())]
    }

    /// Whether the checksum is correct, given the pseudo-header sum of the IP header.
    #[inline]
    pub fn verify_checksum(&self, pseudo_header: u16) -> bool {
        checksum::verify(checksum::add(pseudo_header, checksum::sum(self.buffer.as_ref())))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len_field(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Computes and stores the checksum over the whole buffer, given the pseudo-header sum.
    #[inline]
    pub fn fill_checksum(&mut self, pseudo_header: u16) {
        let b = self.buffer.as_mut();
        set_u16(b, field::CHECKSUM, 0);
        let c = checksum::finish_transport(checksum::add(pseudo_header, checksum::sum(b)));
        set_u16(b, field::CHECKSUM, c);
    }
}

/// The value of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length the header announces.
    pub payload_len: u16,
}

impl UdpRepr {
    /// Reads a header; a length field below the header's own length is `Malformed`.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(p: &UdpPacket<T>) -> Result<Self, Error> {
        let payload_len = p.len_field().checked_sub(HEADER_LEN as u16).ok_or(Error::Malformed)?;
        Ok(Self { src_port: p.src_port(), dst_port: p.dst_port(), payload_len })
    }

    /// Bytes the header takes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into a view that spans exactly header and payload (already in
    /// place), and fills the checksum from the pseudo-header sum. `payload_len` must leave
    /// the length within 65,535.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut UdpPacket<T>, pseudo_header: u16) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len_field((HEADER_LEN as u16).saturating_add(self.payload_len));
        p.fill_checksum(pseudo_header);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 5353 → 53, "q", checksum for the pseudo-header sum 0.
    const DATAGRAM: [u8; 9] = [0x14, 0xe9, 0x00, 0x35, 0x00, 0x09, 0x79, 0xd8, b'q'];

    #[test]
    fn reads_a_datagram() {
        let mut b = DATAGRAM.to_vec();
        b.extend_from_slice(&[0, 0, 0]); // padding
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(UdpRepr::parse(&p), Ok(UdpRepr { src_port: 5353, dst_port: 53, payload_len: 1 }));
        assert_eq!(p.payload(), b"q");
        assert!(p.verify_checksum(0), "zero padding does not change the sum");
        for n in 0..HEADER_LEN {
            assert_eq!(UdpPacket::new_checked(&b[..n]), Err(Error::Truncated));
        }
        let mut bad = DATAGRAM;
        bad[5] = 7;
        let p = UdpPacket::new_checked(&bad[..]).unwrap();
        assert_eq!((UdpRepr::parse(&p), p.payload()), (Err(Error::Malformed), &[][..]));
    }

    #[test]
    fn emits_into_a_dirty_buffer() {
        let mut buf = [0xa5u8; 9];
        buf[8] = b'q';
        let r = UdpRepr { src_port: 5353, dst_port: 53, payload_len: 1 };
        r.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), 0);
        assert_eq!(buf, DATAGRAM);
        assert!(UdpPacket::new_checked(&buf[..]).unwrap().verify_checksum(0));
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = UdpPacket::new_checked(&b[..]) {
                let _ = (p.src_port(), p.dst_port(), p.payload(), p.verify_checksum(7), UdpRepr::parse(&p));
            }
        }

        #[test]
        fn parse_emit_round_trips(
            src_port in any::<u16>(), dst_port in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64), pseudo in any::<u16>(),
        ) {
            let r = UdpRepr { src_port, dst_port, payload_len: payload.len() as u16 };
            let mut buf = vec![0xa5u8; HEADER_LEN];
            buf.extend_from_slice(&payload);
            r.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), pseudo);
            let p = UdpPacket::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum(pseudo));
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(UdpRepr::parse(&p), Ok(r));
        }
    }
}
