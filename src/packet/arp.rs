//! ARP for IPv4 over Ethernet (RFC 826), the only kind weft answers or checks.
//!
//! Invariants: a checked [`ArpPacket`] holds at least [`PACKET_LEN`] bytes, so the fixed
//! Ethernet/IPv4 field layout can be read whatever the hardware and protocol fields say;
//! [`ArpRepr::parse`] accepts only Ethernet/IPv4 requests and replies.

use std::net::Ipv4Addr;

use super::ethernet::{EtherType, Mac};
use super::{get_array, get_u16, set_u16, Error};

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// The hardware type of Ethernet.
pub const HARDWARE_ETHERNET: u16 = 1;

/// Byte ranges of the fields (Ethernet/IPv4 layout).
pub mod field {
    use crate::packet::Field;
    /// Hardware type.
    pub const HTYPE: Field = 0..2;
    /// Protocol type (an EtherType).
    pub const PTYPE: Field = 2..4;
    /// Hardware address length.
    pub const HLEN: usize = 4;
    /// Protocol address length.
    pub const PLEN: usize = 5;
    /// Operation.
    pub const OPER: Field = 6..8;
    /// Sender hardware address.
    pub const SHA: Field = 8..14;
    /// Sender protocol address.
    pub const SPA: Field = 14..18;
    /// Target hardware address.
    pub const THA: Field = 18..24;
    /// Target protocol address.
    pub const TPA: Field = 24..28;
}

/// An ARP operation weft knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOperation {
    /// Who has the target address?
    Request,
    /// The sender address is at the sender MAC.
    Reply,
}

impl ArpOperation {
    /// The operation field's value.
    #[inline]
    pub const fn code(self) -> u16 {
        match self {
            Self::Request => 1,
            Self::Reply => 2,
        }
    }
}

/// A view of an ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// A view without checks: only for buffers known to hold [`PACKET_LEN`] bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// A view of a buffer that holds a whole Ethernet/IPv4-sized packet.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self { buffer })
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type.
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type.
    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        EtherType(get_u16(self.buffer.as_ref(), field::PTYPE))
    }

    /// Hardware address length.
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length.
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// The raw operation field.
    #[inline]
    pub fn operation(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::OPER)
    }

    /// Sender MAC.
    #[inline]
    pub fn sender_mac(&self) -> Mac {
        get_array(self.buffer.as_ref(), field::SHA)
    }

    /// Sender IPv4 address.
    #[inline]
    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::SPA))
    }

    /// Target MAC.
    #[inline]
    pub fn target_mac(&self) -> Mac {
        get_array(self.buffer.as_ref(), field::THA)
    }

    /// Target IPv4 address.
    #[inline]
    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::TPA))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets hardware and protocol type and address lengths to Ethernet/IPv4's.
    #[inline]
    pub fn set_ethernet_ipv4(&mut self) {
        let b = self.buffer.as_mut();
        set_u16(b, field::HTYPE, HARDWARE_ETHERNET);
        set_u16(b, field::PTYPE, EtherType::IPV4.0);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
    }

    /// Sets the operation.
    #[inline]
    pub fn set_operation(&mut self, op: ArpOperation) {
        set_u16(self.buffer.as_mut(), field::OPER, op.code());
    }

    /// Sets the sender MAC and IPv4 address.
    #[inline]
    pub fn set_sender(&mut self, mac: Mac, ip: Ipv4Addr) {
        let b = self.buffer.as_mut();
        b[field::SHA].copy_from_slice(&mac);
        b[field::SPA].copy_from_slice(&ip.octets());
    }

    /// Sets the target MAC and IPv4 address.
    #[inline]
    pub fn set_target(&mut self, mac: Mac, ip: Ipv4Addr) {
        let b = self.buffer.as_mut();
        b[field::THA].copy_from_slice(&mac);
        b[field::TPA].copy_from_slice(&ip.octets());
    }
}

/// An Ethernet/IPv4 ARP request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// Request or reply.
    pub operation: ArpOperation,
    /// Sender MAC.
    pub sender_mac: Mac,
    /// Sender IPv4 address.
    pub sender_ip: Ipv4Addr,
    /// Target MAC (zero in a request).
    pub target_mac: Mac,
    /// Target IPv4 address.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Reads an Ethernet/IPv4 request or reply; anything else is `Unsupported`.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<Self, Error> {
        let ethernet_ipv4 = p.hardware_type() == HARDWARE_ETHERNET
            && p.protocol_type() == EtherType::IPV4
            && p.hardware_len() == 6
            && p.protocol_len() == 4;
        let operation = match p.operation() {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            _ => return Err(Error::Unsupported),
        };
        if !ethernet_ipv4 {
            return Err(Error::Unsupported);
        }
        Ok(Self {
            operation,
            sender_mac: p.sender_mac(),
            sender_ip: p.sender_ip(),
            target_mac: p.target_mac(),
            target_ip: p.target_ip(),
        })
    }

    /// Bytes the packet takes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet into a view of at least [`Self::buffer_len`] bytes.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut ArpPacket<T>) {
        p.set_ethernet_ipv4();
        p.set_operation(self.operation);
        p.set_sender(self.sender_mac, self.sender_ip);
        p.set_target(self.target_mac, self.target_ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// "Who has 10.42.2.2? Tell 10.42.1.2 (02:00:00:00:00:01)".
    const REQUEST: [u8; 28] = [
        0, 1, 8, 0, 6, 4, 0, 1, // Ethernet, IPv4, 6, 4, request
        2, 0, 0, 0, 0, 1, 10, 42, 1, 2, // sender
        0, 0, 0, 0, 0, 0, 10, 42, 2, 2, // target
    ];

    fn request() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            sender_mac: [2, 0, 0, 0, 0, 1],
            sender_ip: Ipv4Addr::new(10, 42, 1, 2),
            target_mac: [0; 6],
            target_ip: Ipv4Addr::new(10, 42, 2, 2),
        }
    }

    #[test]
    fn reads_a_request() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(ArpRepr::parse(&p), Ok(request()));
        assert_eq!((p.sender_ip(), p.target_mac()), (Ipv4Addr::new(10, 42, 1, 2), [0; 6]));
    }

    #[test]
    fn emits_into_a_dirty_buffer() {
        let mut buf = [0xa5u8; 30];
        request().emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..28], &REQUEST);
        assert_eq!(&buf[28..], &[0xa5, 0xa5]);
    }

    #[test]
    fn other_kinds_and_short_packets_are_refused() {
        for n in 0..PACKET_LEN {
            assert_eq!(ArpPacket::new_checked(&REQUEST[..n]), Err(Error::Truncated));
        }
        let unsupported = |at: usize, v: u8| {
            let mut b = REQUEST;
            b[at] = v;
            ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap())
        };
        assert_eq!(unsupported(1, 6), Err(Error::Unsupported), "IEEE 802 hardware");
        assert_eq!(unsupported(2, 0x86), Err(Error::Unsupported), "not IPv4");
        assert_eq!(unsupported(4, 8), Err(Error::Unsupported), "hardware length");
        assert_eq!(unsupported(5, 16), Err(Error::Unsupported), "protocol length");
        assert_eq!(unsupported(7, 3), Err(Error::Unsupported), "RARP request");
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = ArpPacket::new_checked(&b[..]) {
                let _ = (p.sender_mac(), p.sender_ip(), p.target_mac(), p.target_ip(), ArpRepr::parse(&p));
            }
        }

        #[test]
        fn parse_emit_round_trips(
            reply in any::<bool>(),
            sm in any::<Mac>(), si in any::<[u8; 4]>(), tm in any::<Mac>(), ti in any::<[u8; 4]>(),
        ) {
            let operation = if reply { ArpOperation::Reply } else { ArpOperation::Request };
            let r = ArpRepr { operation, sender_mac: sm, sender_ip: si.into(), target_mac: tm, target_ip: ti.into() };
            let mut buf = [0xa5u8; PACKET_LEN];
            r.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
            prop_assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()), Ok(r));
        }
    }
}
