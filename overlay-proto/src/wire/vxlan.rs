//! The plain RFC 7348 VXLAN header, for `encryption = "none"` networks that interoperate with
//! kernel VXLAN endpoints: `flags(1, I bit = 0x08) reserved(3) vni(3) reserved(1)`, with the
//! remote checksum offload extension (draft-herbert-vxlan-rco, Linux `remcsumtx`/`remcsumrx`):
//! flag bit C (0x20 of the second byte) says the last byte carries where the inner transport
//! checksum starts (its 7 low bits: the start divided by two, counted from the inner Ethernet
//! header) and which it is (bit 0x80: UDP, else TCP). The checksum field then holds only the
//! pseudo-header sum, as a kernel's partial checksum does; the outer UDP checksum covers the
//! whole datagram.

use super::{check_len, Vni, WireError};

/// Length of the VXLAN header.
pub const VXLAN_HEADER_LEN: usize = 8;

/// The RCO flag in the second byte of the header.
const RCO_FLAG: u8 = 0x20;
/// In the last byte: the checksum is UDP's (offset 6), not TCP's (offset 16).
const RCO_UDP: u8 = 0x80;
/// Offset of the checksum field in a UDP header.
const UDP_CSUM_OFFSET: u16 = 6;
/// Offset of the checksum field in a TCP header.
const TCP_CSUM_OFFSET: u16 = 16;

/// Remote checksum offload data: the inner checksum was left partial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rco {
    start: u8,
    udp: bool,
}

impl Rco {
    /// A partial checksum at `offset` (6: UDP, 16: TCP) behind `start` (from the inner
    /// Ethernet header); `None` when the header cannot say it (an odd start or one past 254,
    /// another offset).
    pub fn new(start: usize, offset: u16) -> Option<Self> {
        let udp = match offset {
            UDP_CSUM_OFFSET => true,
            TCP_CSUM_OFFSET => false,
            _ => return None,
        };
        if !start.is_multiple_of(2) || start > 0x7f << 1 {
            return None;
        }
        Some(Self { start: (start >> 1) as u8, udp })
    }

    /// Where the checksummed part starts, from the inner Ethernet header.
    pub fn start(&self) -> usize {
        usize::from(self.start) << 1
    }

    /// Offset of the checksum field from [`Rco::start`].
    pub fn offset(&self) -> u16 {
        if self.udp {
            UDP_CSUM_OFFSET
        } else {
            TCP_CSUM_OFFSET
        }
    }
}

/// A VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanHeader {
    /// The network identifier.
    pub vni: Vni,
    /// Remote checksum offload: the frame's transport checksum is partial.
    pub rco: Option<Rco>,
}

impl VxlanHeader {
    /// Parses the header; the I flag must be set. Reserved bits are ignored on receipt, as
    /// RFC 7348 asks, but for the RCO flag and the byte it gives meaning to.
    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        check_len(b, VXLAN_HEADER_LEN)?;
        if b[0] & 0x08 == 0 {
            return Err(WireError::BadField("vxlan I flag"));
        }
        let rco = (b[1] & RCO_FLAG != 0).then_some(Rco { start: b[7] & 0x7f, udp: b[7] & RCO_UDP != 0 });
        Ok(Self { vni: Vni::from_bytes([b[4], b[5], b[6]]), rco })
    }

    /// Writes the header.
    pub fn emit(&self, b: &mut [u8; VXLAN_HEADER_LEN]) {
        *b = [0x08, 0, 0, 0, 0, 0, 0, 0];
        b[4..7].copy_from_slice(&self.vni.to_bytes());
        if let Some(r) = self.rco {
            b[1] = RCO_FLAG;
            b[7] = r.start | if r.udp { RCO_UDP } else { 0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_bytes() {
        let mut b = [0xa5u8; 8];
        VxlanHeader { vni: Vni::new(42).unwrap(), rco: None }.emit(&mut b);
        assert_eq!(b, [0x08, 0, 0, 0, 0, 0, 42, 0]);
        assert!(VxlanHeader::parse(&[0, 0, 0, 0, 0, 0, 42, 0]).is_err());
        assert!(VxlanHeader::parse(&[8, 0, 0]).is_err());
    }

    /// The bytes Linux writes with `remcsumtx` (`vxlan_build_skb`: `VXLAN_HF_RCO`, start >> 1
    /// in the low 7 bits of the VNI word, `VXLAN_RCO_UDP`) for TCP over untagged IPv4 (the TCP
    /// header at 14 + 20) and UDP over IPv6 (14 + 40).
    #[test]
    fn remote_checksum_offload_as_linux_writes_it() {
        let mut b = [0u8; 8];
        let tcp4 = Rco::new(34, 16).unwrap();
        VxlanHeader { vni: Vni::new(0x010203).unwrap(), rco: Some(tcp4) }.emit(&mut b);
        assert_eq!(b, [0x08, 0x20, 0, 0, 0x01, 0x02, 0x03, 17]);
        let h = VxlanHeader::parse(&b).unwrap();
        assert_eq!((h.vni.get(), h.rco.map(|r| (r.start(), r.offset()))), (0x010203, Some((34, 16))));
        let udp6 = VxlanHeader::parse(&[0x08, 0x20, 0, 0, 0, 0, 7, 0x80 | 27]).unwrap();
        assert_eq!(udp6.rco.map(|r| (r.start(), r.offset())), Some((54, 6)));
        // Reserved bits other than RCO's are still ignored, and a VNI's last byte is no RCO
        // data without the flag.
        let plain = VxlanHeader::parse(&[0x0c, 0x40, 1, 1, 0, 0, 7, 0x91]).unwrap();
        assert_eq!((plain.vni.get(), plain.rco), (7, None));
        // What the header cannot carry.
        assert_eq!(Rco::new(35, 16), None);
        assert_eq!(Rco::new(256, 16), None);
        assert_eq!(Rco::new(34, 4), None);
        assert!(Rco::new(254, 6).is_some());
    }

    proptest! {
        #[test]
        fn roundtrip(v in 0..=Vni::MAX, start in 0usize..300, udp in any::<bool>()) {
            let rco = Rco::new(start, if udp { 6 } else { 16 });
            for rco in [None, rco] {
                let h = VxlanHeader { vni: Vni::new(v).unwrap(), rco };
                let mut b = [0u8; 8];
                h.emit(&mut b);
                prop_assert_eq!(VxlanHeader::parse(&b), Ok(h));
            }
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = VxlanHeader::parse(&bytes);
        }
    }
}
