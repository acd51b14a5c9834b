//! ICMP for IPv4 (RFC 792) and IPv6 (RFC 4443), which share one 8-byte header layout: type,
//! code, checksum and four bytes whose meaning depends on the type (echo identifier and
//! sequence number, next-hop MTU, packet-too-big MTU), followed by data (for errors: the
//! start of the packet the error is about).
//!
//! Invariants: a checked [`IcmpPacket`] holds the whole 8-byte header, so every accessor is
//! infallible; the checksum helpers sum the whole buffer, so for them the view must span the
//! message exactly. The Reprs cover the messages the data path reads or writes itself.

use super::{checksum, get_u16, get_u32, set_u16, set_u32, Error};

/// Length of the header (type, code, checksum, four type-specific bytes).
pub const HEADER_LEN: usize = 8;

/// Byte ranges of the header fields.
pub mod field {
    use crate::packet::Field;
    /// Message type.
    pub const TYPE: usize = 0;
    /// Message code.
    pub const CODE: usize = 1;
    /// Checksum (over the message; for ICMPv6 also over the pseudo-header).
    pub const CHECKSUM: Field = 2..4;
    /// The four type-specific bytes.
    pub const REST: Field = 4..8;
    /// Echo identifier.
    pub const ECHO_IDENT: Field = 4..6;
    /// Echo sequence number.
    pub const ECHO_SEQ: Field = 6..8;
    /// ICMPv4 "fragmentation needed": the next-hop MTU (RFC 1191).
    pub const NEXT_HOP_MTU: Field = 6..8;
    /// ICMPv6 "packet too big": the MTU.
    pub const MTU: Field = 4..8;
    /// Where the data starts.
    pub const DATA: usize = 8;
}

/// ICMPv4 message types and codes.
pub mod v4 {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 12;
    /// Destination unreachable code: fragmentation needed and DF set.
    pub const CODE_FRAG_NEEDED: u8 = 4;
}

/// ICMPv6 message types.
pub mod v6 {
    /// Destination unreachable.
    pub const DEST_UNREACHABLE: u8 = 1;
    /// Packet too big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Router solicitation, the first neighbour-discovery type.
    pub const ROUTER_SOLICIT: u8 = 133;
    /// Redirect, the last neighbour-discovery type.
    pub const REDIRECT: u8 = 137;

    /// Error messages have types below 128 (RFC 4443 §2.1).
    #[inline]
    pub fn is_error(ty: u8) -> bool {
        ty < ECHO_REQUEST
    }
}

/// A view of an ICMP or ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
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

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum field.
    #[inline]
    pub fn checksum_field(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier (meaningful for echo messages).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (meaningful for echo messages).
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// Next-hop MTU (meaningful for ICMPv4 "fragmentation needed").
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// MTU (meaningful for ICMPv6 "packet too big").
    #[inline]
    pub fn mtu(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::MTU)
    }

    /// Whether the checksum is correct, given the pseudo-header sum (0 for ICMPv4).
    #[inline]
    pub fn verify_checksum(&self, pseudo_header: u16) -> bool {
        checksum::verify(checksum::add(pseudo_header, checksum::sum(self.buffer.as_ref())))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> IcmpPacket<&'a T> {
    /// The data after the header.
    #[inline]
    pub fn data(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::DATA..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    /// Sets type and code.
    #[inline]
    pub fn set_msg_type_and_code(&mut self, ty: u8, code: u8) {
        let b = self.buffer.as_mut();
        b[field::TYPE] = ty;
        b[field::CODE] = code;
    }

    /// Sets the four type-specific bytes.
    #[inline]
    pub fn set_rest(&mut self, rest: u32) {
        set_u32(self.buffer.as_mut(), field::REST, rest);
    }

    /// The data after the header, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }

    /// Computes and stores the checksum over the whole buffer, given the pseudo-header sum
    /// (0 for ICMPv4).
    #[inline]
    pub fn fill_checksum(&mut self, pseudo_header: u16) {
        let b = self.buffer.as_mut();
        set_u16(b, field::CHECKSUM, 0);
        let c = checksum::finish(checksum::add(pseudo_header, checksum::sum(b)));
        set_u16(b, field::CHECKSUM, c);
    }
}

/// An ICMPv4 message the data path reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr {
    /// Echo request.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
    },
    /// Echo reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
    },
    /// Destination unreachable, fragmentation needed and DF set (RFC 1191).
    FragNeeded {
        /// The next-hop MTU.
        mtu: u16,
    },
}

impl Icmpv4Repr {
    /// Reads one of the messages above; any other type or code is `Unsupported`. The
    /// checksum is not checked.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(p: &IcmpPacket<T>) -> Result<Self, Error> {
        match (p.msg_type(), p.msg_code()) {
            (v4::ECHO_REQUEST, 0) => Ok(Self::EchoRequest { ident: p.echo_ident(), seq: p.echo_seq() }),
            (v4::ECHO_REPLY, 0) => Ok(Self::EchoReply { ident: p.echo_ident(), seq: p.echo_seq() }),
            (v4::DEST_UNREACHABLE, v4::CODE_FRAG_NEEDED) => Ok(Self::FragNeeded { mtu: p.next_hop_mtu() }),
            _ => Err(Error::Unsupported),
        }
    }

    /// Bytes the message takes with `data_len` bytes of data.
    #[inline]
    pub const fn buffer_len(&self, data_len: usize) -> usize {
        HEADER_LEN + data_len
    }

    /// Writes the message with `data` and its checksum into a view of at least
    /// [`Self::buffer_len`] bytes (bytes after it are left alone).
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut IcmpPacket<T>, data: &[u8]) {
        let (ty, code, rest) = match *self {
            Self::EchoRequest { ident, seq } => {
                (v4::ECHO_REQUEST, 0, u32::from(ident) << 16 | u32::from(seq))
            }
            Self::EchoReply { ident, seq } => (v4::ECHO_REPLY, 0, u32::from(ident) << 16 | u32::from(seq)),
            Self::FragNeeded { mtu } => (v4::DEST_UNREACHABLE, v4::CODE_FRAG_NEEDED, u32::from(mtu)),
        };
        emit(p, ty, code, rest, data, 0);
    }
}

/// An ICMPv6 message the data path reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Repr {
    /// Echo request.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
    },
    /// Echo reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
    },
    /// Packet too big.
    PacketTooBig {
        /// The MTU of the next hop.
        mtu: u32,
    },
}

impl Icmpv6Repr {
    /// Reads one of the messages above; any other type or code is `Unsupported`. The
    /// checksum is not checked.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(p: &IcmpPacket<T>) -> Result<Self, Error> {
        match (p.msg_type(), p.msg_code()) {
            (v6::ECHO_REQUEST, 0) => Ok(Self::EchoRequest { ident: p.echo_ident(), seq: p.echo_seq() }),
            (v6::ECHO_REPLY, 0) => Ok(Self::EchoReply { ident: p.echo_ident(), seq: p.echo_seq() }),
            (v6::PACKET_TOO_BIG, 0) => Ok(Self::PacketTooBig { mtu: p.mtu() }),
            _ => Err(Error::Unsupported),
        }
    }

    /// Bytes the message takes with `data_len` bytes of data.
    #[inline]
    pub const fn buffer_len(&self, data_len: usize) -> usize {
        HEADER_LEN + data_len
    }

    /// Writes the message with `data` and its checksum (over the pseudo-header whose folded
    /// sum is given, see [`super::Ipv6Packet::pseudo_header`]) into a view of at least
    /// [`Self::buffer_len`] bytes (bytes after it are left alone).
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut IcmpPacket<T>, data: &[u8], pseudo_header: u16) {
        let (ty, rest) = match *self {
            Self::EchoRequest { ident, seq } => (v6::ECHO_REQUEST, u32::from(ident) << 16 | u32::from(seq)),
            Self::EchoReply { ident, seq } => (v6::ECHO_REPLY, u32::from(ident) << 16 | u32::from(seq)),
            Self::PacketTooBig { mtu } => (v6::PACKET_TOO_BIG, mtu),
        };
        emit(p, ty, 0, rest, data, pseudo_header);
    }
}

/// Writes header and data into the first `HEADER_LEN + data.len()` bytes and checksums them.
#[inline]
fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
    p: &mut IcmpPacket<T>,
    ty: u8,
    code: u8,
    rest: u32,
    data: &[u8],
    pseudo: u16,
) {
    let mut msg = IcmpPacket::new_unchecked(&mut p.buffer.as_mut()[..HEADER_LEN + data.len()]);
    msg.set_msg_type_and_code(ty, code);
    msg.set_rest(rest);
    msg.data_mut().copy_from_slice(data);
    msg.fill_checksum(pseudo);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// ICMPv4 echo request, identifier 0x1234, sequence 1, data "ping".
    const ECHO: [u8; 12] = [8, 0, 0x06, 0xfa, 0x12, 0x34, 0x00, 0x01, b'p', b'i', b'n', b'g'];

    #[test]
    fn reads_an_echo_request() {
        let p = IcmpPacket::new_checked(&ECHO[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p), Ok(Icmpv4Repr::EchoRequest { ident: 0x1234, seq: 1 }));
        assert_eq!(p.data(), b"ping");
        assert!(p.verify_checksum(0));
        for n in 0..HEADER_LEN {
            assert_eq!(IcmpPacket::new_checked(&ECHO[..n]), Err(Error::Truncated));
        }
    }

    #[test]
    fn emits_into_a_dirty_buffer() {
        let mut buf = [0xa5u8; 14];
        Icmpv4Repr::EchoRequest { ident: 0x1234, seq: 1 }
            .emit(&mut IcmpPacket::new_unchecked(&mut buf[..]), b"ping");
        assert_eq!(&buf[..12], &ECHO);
        assert_eq!(&buf[12..], &[0xa5, 0xa5], "bytes after the message are not touched");
        let mut buf = [0xa5u8; 10];
        Icmpv4Repr::FragNeeded { mtu: 1422 }.emit(&mut IcmpPacket::new_unchecked(&mut buf[..]), &[0x45, 0]);
        assert_eq!(buf, [3, 4, 0xb2, 0x6d, 0, 0, 0x05, 0x8e, 0x45, 0]);
        let mut buf = [0xa5u8; 8];
        Icmpv6Repr::PacketTooBig { mtu: 1402 }.emit(&mut IcmpPacket::new_unchecked(&mut buf[..]), &[], 0);
        assert_eq!(buf, [2, 0, 0xf8, 0x85, 0, 0, 0x05, 0x7a]);
    }

    #[test]
    fn other_messages_are_unsupported() {
        let unreachable = [3, 1, 0, 0, 0, 0, 0, 0];
        let p = IcmpPacket::new_checked(&unreachable[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p), Err(Error::Unsupported));
        assert_eq!(Icmpv6Repr::parse(&p), Err(Error::Unsupported), "ICMPv6 time exceeded");
        assert!(v6::is_error(v6::PARAM_PROBLEM) && !v6::is_error(v6::ECHO_REQUEST));
    }

    fn v4_repr() -> impl Strategy<Value = Icmpv4Repr> {
        prop_oneof![
            any::<(u16, u16)>().prop_map(|(ident, seq)| Icmpv4Repr::EchoRequest { ident, seq }),
            any::<(u16, u16)>().prop_map(|(ident, seq)| Icmpv4Repr::EchoReply { ident, seq }),
            any::<u16>().prop_map(|mtu| Icmpv4Repr::FragNeeded { mtu }),
        ]
    }

    fn v6_repr() -> impl Strategy<Value = Icmpv6Repr> {
        prop_oneof![
            any::<(u16, u16)>().prop_map(|(ident, seq)| Icmpv6Repr::EchoRequest { ident, seq }),
            any::<(u16, u16)>().prop_map(|(ident, seq)| Icmpv6Repr::EchoReply { ident, seq }),
            any::<u32>().prop_map(|mtu| Icmpv6Repr::PacketTooBig { mtu }),
        ]
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = IcmpPacket::new_checked(&b[..]) {
                let _ = (p.echo_ident(), p.echo_seq(), p.mtu(), p.next_hop_mtu(), p.data(), p.verify_checksum(0));
                let _ = (Icmpv4Repr::parse(&p), Icmpv6Repr::parse(&p));
            }
        }

        #[test]
        fn v4_parse_emit_round_trips(r in v4_repr(), data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = vec![0xa5u8; r.buffer_len(data.len())];
            r.emit(&mut IcmpPacket::new_unchecked(&mut buf[..]), &data);
            let p = IcmpPacket::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum(0));
            prop_assert_eq!((Icmpv4Repr::parse(&p), p.data()), (Ok(r), &data[..]));
        }

        #[test]
        fn v6_parse_emit_round_trips(r in v6_repr(), data in proptest::collection::vec(any::<u8>(), 0..64), pseudo in any::<u16>()) {
            let mut buf = vec![0xa5u8; r.buffer_len(data.len())];
            r.emit(&mut IcmpPacket::new_unchecked(&mut buf[..]), &data, pseudo);
            let p = IcmpPacket::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum(pseudo));
            prop_assert_eq!((Icmpv6Repr::parse(&p), p.data()), (Ok(r), &data[..]));
        }
    }
}
