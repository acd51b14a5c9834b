//! TCP headers (RFC 9293): ports, sequence numbers, flags and options, as the firewall reads
//! them and as TSO segmentation and GRO coalescing rewrite them.
//!
//! Invariants: a checked [`TcpPacket`] holds its whole header (data offset ≥ 5 words, options
//! included), so every accessor is infallible. The view spans one segment exactly: the
//! checksum helpers sum the whole buffer. [`quoted_ports`] reads the ports of a header of
//! which only the first 8 bytes may be present, as in an ICMP error.

use super::{checksum, get_u16, get_u32, set_u16, set_u32, Error};

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Bytes of the original transport header an ICMP error must quote (RFC 792).
pub const QUOTED_LEN: usize = 8;

/// Byte ranges of the header fields.
pub mod field {
    use crate::packet::Field;
    /// Source port.
    pub const SRC_PORT: Field = 0..2;
    /// Destination port.
    pub const DST_PORT: Field = 2..4;
    /// Sequence number.
    pub const SEQ_NUM: Field = 4..8;
    /// Acknowledgment number.
    pub const ACK_NUM: Field = 8..12;
    /// Data offset in 32-bit words (high nibble).
    pub const DATA_OFF: usize = 12;
    /// Flags ([`super::flags`]).
    pub const FLAGS: usize = 13;
    /// Window.
    pub const WIN_SIZE: Field = 14..16;
    /// Checksum.
    pub const CHECKSUM: Field = 16..18;
    /// Urgent pointer.
    pub const URGENT: Field = 18..20;
    /// Where options start (they end at the data offset).
    pub const OPTIONS: usize = 20;
}

/// TCP header flag bits.
pub mod flags {
    /// No more data from the sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers (connection start).
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push buffered data to the application.
    pub const PSH: u8 = 0x08;
    /// The acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
    /// The urgent pointer is significant.
    pub const URG: u8 = 0x20;
    /// ECN echo.
    pub const ECE: u8 = 0x40;
    /// Congestion window reduced.
    pub const CWR: u8 = 0x80;
}

/// The source and destination port of a TCP or UDP header quoted in an ICMP error: both
/// protocols put them in the first 4 of the [`QUOTED_LEN`] bytes that must be there.
#[inline]
pub fn quoted_ports(quote: &[u8]) -> Result<(u16, u16), Error> {
    if quote.len() < QUOTED_LEN {
        return Err(Error::Truncated);
    }
    Ok((get_u16(quote, field::SRC_PORT), get_u16(quote, field::DST_PORT)))
}

/// A view of a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// A view without checks: only for buffers known to hold the header its data offset
    /// announces.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// A view of a buffer that holds the whole header (options included).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() < HEADER_LEN {
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes (the data offset).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// Flags ([`flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Window.
    #[inline]
    pub fn window_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    /// The checksum field.
    #[inline]
    pub fn checksum_field(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The options.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// The data after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum is correct, given the pseudo-header sum of the IP header.
    #[inline]
    pub fn verify_checksum(&self, pseudo_header: u16) -> bool {
        checksum::verify(checksum::add(pseudo_header, checksum::sum(self.buffer.as_ref())))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, seq: u32) {
        set_u32(self.buffer.as_mut(), field::SEQ_NUM, seq);
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, ack: u32) {
        set_u32(self.buffer.as_mut(), field::ACK_NUM, ack);
    }

    /// Sets the header length in bytes (a multiple of 4, ≤ 60).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DATA_OFF] = ((len / 4) as u8) << 4;
    }

    /// Sets the flags.
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the window.
    #[inline]
    pub fn set_window_len(&mut self, window: u16) {
        set_u16(self.buffer.as_mut(), field::WIN_SIZE, window);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, at: u16) {
        set_u16(self.buffer.as_mut(), field::URGENT, at);
    }

    /// Computes and stores the checksum over the whole buffer, given the pseudo-header sum.
    #[inline]
    pub fn fill_checksum(&mut self, pseudo_header: u16) {
        let b = self.buffer.as_mut();
        set_u16(b, field::CHECKSUM, 0);
        let c = checksum::finish_transport(checksum::add(pseudo_header, checksum::sum(b)));
        set_u16(b, field::CHECKSUM, c);
    }

    /// Leaves the checksum for the device to complete (`CHECKSUM_PARTIAL`): the field holds
    /// the pseudo-header sum, uncomplemented.
    #[inline]
    pub fn set_partial_checksum(&mut self, pseudo_header: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, pseudo_header);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 40000 → 5201, seq ffffff00, ack 77, ACK|PSH, window 500, one timestamp option, "hi";
    /// checksum for the pseudo-header sum 0x1234.
    fn segment() -> Vec<u8> {
        let mut b = vec![
            0x9c, 0x40, 0x14, 0x51, 0xff, 0xff, 0xff, 0x00, 0, 0, 0, 77, 0x80, 0x18, 0x01, 0xf4, 0, 0, 0, 0,
        ];
        b.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        b.extend_from_slice(b"hi");
        b
    }

    #[test]
    fn reads_a_segment() {
        let b = segment();
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number()),
            (40000, 5201, 0xffff_ff00, 77)
        );
        assert_eq!(
            (p.header_len(), p.flags(), p.window_len(), p.urgent_at()),
            (32, flags::ACK | flags::PSH, 500, 0)
        );
        assert_eq!((p.options().len(), p.payload()), (12, &b"hi"[..]));
        assert_eq!(quoted_ports(&b[..8]), Ok((40000, 5201)));
        assert_eq!(quoted_ports(&b[..7]), Err(Error::Truncated));
    }

    #[test]
    fn checksums_fill_and_verify() {
        let mut b = segment();
        let mut p = TcpPacket::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(0x1234);
        // By hand: the pseudo-header sum plus every word of the segment, complemented.
        let mut zeroed = segment();
        zeroed[16..18].fill(0);
        let expect = !checksum::add(0x1234, checksum::sum(&zeroed));
        assert_eq!(p.checksum_field(), expect);
        assert!(p.verify_checksum(0x1234) && !p.verify_checksum(0x1235));
        p.set_partial_checksum(0xbeef);
        assert_eq!(&b[16..18], &[0xbe, 0xef]);
    }

    #[test]
    fn emits_fields_into_a_dirty_buffer() {
        let mut buf = [0xa5u8; 22];
        let mut p = TcpPacket::new_unchecked(&mut buf[..]);
        p.set_src_port(40000);
        p.set_dst_port(5201);
        p.set_seq_number(0xffff_ff00);
        p.set_ack_number(77);
        p.set_header_len(20);
        p.set_flags(flags::ACK | flags::PSH);
        p.set_window_len(500);
        p.set_urgent_at(0);
        p.fill_checksum(0);
        let mut expect = segment()[..20].to_vec();
        expect[field::DATA_OFF] = 0x50;
        assert_eq!(&buf[..16], &expect[..16]);
        assert!(TcpPacket::new_checked(&buf[..]).unwrap().verify_checksum(0));
        assert_eq!(&buf[20..], &[0xa5, 0xa5]);
    }

    #[test]
    fn inconsistent_headers_are_refused() {
        let b = segment();
        for n in 0..32 {
            assert_eq!(TcpPacket::new_checked(&b[..n]), Err(Error::Truncated), "{n} bytes");
        }
        let mut b = segment();
        b[12] = 0x40;
        assert_eq!(TcpPacket::new_checked(&b[..]), Err(Error::Malformed), "data offset below 5");
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(b in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = quoted_ports(&b);
            if let Ok(p) = TcpPacket::new_checked(&b[..]) {
                let _ = (p.seq_number(), p.ack_number(), p.flags(), p.options(), p.payload(), p.verify_checksum(0));
                let mut c = b.clone();
                let mut q = TcpPacket::new_checked(&mut c[..]).unwrap();
                q.fill_checksum(0x4321);
                prop_assert!(q.verify_checksum(0x4321));
            }
        }
    }
}
