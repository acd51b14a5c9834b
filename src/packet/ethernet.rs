//! Ethernet II frames (destination, source, EtherType, payload; no FCS), with at most one
//! 802.1Q VLAN tag, and the MAC address type used across weft.
//!
//! Invariants: a checked [`EthernetFrame`] holds at least [`HEADER_LEN`] bytes, so every
//! accessor is infallible; [`EthernetFrame::network`] alone looks past an 802.1Q tag and
//! reports a cut tag as an error instead of reading beyond the buffer.

use super::{get_array, get_u16, set_u16, Error};

/// A MAC address.
pub type Mac = [u8; 6];

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of one 802.1Q tag (TCI and the inner EtherType).
pub const VLAN_TAG_LEN: usize = 4;

// The size budgets in overlay-proto are derived from the same header.
const _: () = assert!(HEADER_LEN == overlay_proto::consts::ETHERNET_HEADER_LEN);

/// Byte ranges of the header fields.
pub mod field {
    use crate::packet::Field;
    /// Destination MAC.
    pub const DESTINATION: Field = 0..6;
    /// Source MAC.
    pub const SOURCE: Field = 6..12;
    /// EtherType (or the 802.1Q TPID).
    pub const ETHERTYPE: Field = 12..14;
    /// 802.1Q tag control information (priority, DEI, VLAN id), when tagged.
    pub const VLAN_TCI: Field = 14..16;
    /// The EtherType after an 802.1Q tag.
    pub const VLAN_ETHERTYPE: Field = 16..18;
}

/// An EtherType.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: Self = Self(0x0800);
    /// ARP.
    pub const ARP: Self = Self(0x0806);
    /// An 802.1Q VLAN tag follows.
    pub const VLAN: Self = Self(0x8100);
    /// IPv6.
    pub const IPV6: Self = Self(0x86dd);
}

/// Broadcast or multicast: the group bit of the first octet is set.
#[inline]
pub fn is_multicast(mac: &Mac) -> bool {
    mac[0] & 1 == 1
}

/// A view of an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// A view without checks: only for buffers known to hold [`HEADER_LEN`] bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// A view of a buffer that holds at least a whole untagged header.
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

    /// Destination MAC.
    #[inline]
    pub fn dst_addr(&self) -> Mac {
        get_array(self.buffer.as_ref(), field::DESTINATION)
    }

    /// Source MAC.
    #[inline]
    pub fn src_addr(&self) -> Mac {
        get_array(self.buffer.as_ref(), field::SOURCE)
    }

    /// The EtherType field (`EtherType::VLAN` for a tagged frame).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType(get_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// The VLAN id of a tagged frame whose tag is complete.
    #[inline]
    pub fn vlan_id(&self) -> Option<u16> {
        let b = self.buffer.as_ref();
        (self.ethertype() == EtherType::VLAN && b.len() >= HEADER_LEN + VLAN_TAG_LEN)
            .then(|| get_u16(b, field::VLAN_TCI) & 0x0fff)
    }

    /// The EtherType after at most one 802.1Q tag, and the offset where the header it names
    /// starts (`HEADER_LEN`, or `HEADER_LEN + VLAN_TAG_LEN` when tagged; never past the end).
    #[inline]
    pub fn network(&self) -> Result<(EtherType, usize), Error> {
        let b = self.buffer.as_ref();
        match self.ethertype() {
            EtherType::VLAN if b.len() < HEADER_LEN + VLAN_TAG_LEN => Err(Error::Truncated),
            EtherType::VLAN => Ok((EtherType(get_u16(b, field::VLAN_ETHERTYPE)), HEADER_LEN + VLAN_TAG_LEN)),
            ethertype => Ok((ethertype, HEADER_LEN)),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> EthernetFrame<&'a T> {
    /// Everything after the untagged header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC.
    #[inline]
    pub fn set_dst_addr(&mut self, mac: Mac) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&mac);
    }

    /// Sets the source MAC.
    #[inline]
    pub fn set_src_addr(&mut self, mac: Mac) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&mac);
    }

    /// Sets the EtherType field.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.0);
    }

    /// Everything after the untagged header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// The value of an untagged Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Source MAC.
    pub src_addr: Mac,
    /// Destination MAC.
    pub dst_addr: Mac,
    /// EtherType.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a checked frame (any header is a valid one).
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Self {
        Self { src_addr: frame.src_addr(), dst_addr: frame.dst_addr(), ethertype: frame.ethertype() }
    }

    /// Bytes the header takes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into a frame of at least [`Self::buffer_len`] bytes.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ARP_BROADCAST: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination
        0x02, 0, 0, 0, 0, 0x01, // source
        0x08, 0x06, // ARP
        0xaa, 0xbb, // payload
    ];

    #[test]
    fn reads_a_frame() {
        let f = EthernetFrame::new_checked(&ARP_BROADCAST[..]).unwrap();
        assert_eq!(f.dst_addr(), [0xff; 6]);
        assert_eq!(f.src_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.ethertype(), EtherType::ARP);
        assert_eq!(f.network(), Ok((EtherType::ARP, HEADER_LEN)));
        assert_eq!(f.vlan_id(), None);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
        assert!(is_multicast(&f.dst_addr()) && !is_multicast(&f.src_addr()));
        let r = EthernetRepr::parse(&f);
        assert_eq!(
            r,
            EthernetRepr { src_addr: [2, 0, 0, 0, 0, 1], dst_addr: [0xff; 6], ethertype: EtherType::ARP }
        );
    }

    #[test]
    fn looks_past_one_vlan_tag() {
        let f = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0x00, 0x20, 0x07, 0x86, 0xdd, 0x60];
        let v = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(v.ethertype(), EtherType::VLAN);
        assert_eq!(v.vlan_id(), Some(7), "priority bits are not the id");
        assert_eq!(v.network(), Ok((EtherType::IPV6, HEADER_LEN + VLAN_TAG_LEN)));
        // A tag cut short is an error, never a read past the end.
        let cut = EthernetFrame::new_checked(&f[..17]).unwrap();
        assert_eq!((cut.network(), cut.vlan_id()), (Err(Error::Truncated), None));
    }

    #[test]
    fn short_buffers_are_refused() {
        for n in 0..HEADER_LEN {
            assert_eq!(EthernetFrame::new_checked(&ARP_BROADCAST[..n]), Err(Error::Truncated), "{n} bytes");
        }
        assert!(EthernetFrame::new_checked(&ARP_BROADCAST[..HEADER_LEN]).unwrap().payload().is_empty());
    }

    #[test]
    fn emits_into_a_dirty_buffer() {
        let r = EthernetRepr { src_addr: [2, 0, 0, 0, 0, 1], dst_addr: [0xff; 6], ethertype: EtherType::ARP };
        let mut buf = [0xa5u8; 16];
        r.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..14], &ARP_BROADCAST[..14]);
        assert_eq!(&buf[14..], &[0xa5, 0xa5], "the payload is not touched");
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(f) = EthernetFrame::new_checked(&b[..]) {
                let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.vlan_id(), f.payload(), EthernetRepr::parse(&f));
                if let Ok((_, at)) = f.network() {
                    prop_assert!(at <= b.len());
                }
            }
        }

        #[test]
        fn parse_emit_round_trips(src in any::<Mac>(), dst in any::<Mac>(), ethertype in any::<u16>()) {
            let r = EthernetRepr { src_addr: src, dst_addr: dst, ethertype: EtherType(ethertype) };
            let mut buf = [0xa5u8; HEADER_LEN];
            r.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
            prop_assert_eq!(EthernetRepr::parse(&EthernetFrame::new_checked(&buf[..]).unwrap()), r);
        }
    }
}
