//! The plain RFC 7348 VXLAN header, for `encryption = "none"` networks that interoperate with
//! kernel VXLAN endpoints: `flags(1, I bit = 0x08) reserved(3) vni(3) reserved(1)`.

use super::{check_len, Vni, WireError};

/// Length of the VXLAN header.
pub const VXLAN_HEADER_LEN: usize = 8;

/// A VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanHeader {
    /// The network identifier.
    pub vni: Vni,
}

impl VxlanHeader {
    /// Parses the header; the I flag must be set. Reserved bits are ignored on receipt, as
    /// RFC 7348 asks.
    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        check_len(b, VXLAN_HEADER_LEN)?;
        if b[0] & 0x08 == 0 {
            return Err(WireError::BadField("vxlan I flag"));
        }
        Ok(Self { vni: Vni::from_bytes([b[4], b[5], b[6]]) })
    }

    /// Writes the header.
    pub fn emit(&self, b: &mut [u8; VXLAN_HEADER_LEN]) {
        *b = [0x08, 0, 0, 0, 0, 0, 0, 0];
        b[4..7].copy_from_slice(&self.vni.to_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_bytes() {
        let mut b = [0xa5u8; 8];
        VxlanHeader { vni: Vni::new(42).unwrap() }.emit(&mut b);
        assert_eq!(b, [0x08, 0, 0, 0, 0, 0, 42, 0]);
        assert!(VxlanHeader::parse(&[0, 0, 0, 0, 0, 0, 42, 0]).is_err());
        assert!(VxlanHeader::parse(&[8, 0, 0]).is_err());
    }

    proptest! {
        #[test]
        fn roundtrip(v in 0..=Vni::MAX) {
            let h = VxlanHeader { vni: Vni::new(v).unwrap() };
            let mut b = [0u8; 8];
            h.emit(&mut b);
            prop_assert_eq!(VxlanHeader::parse(&b), Ok(h));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = VxlanHeader::parse(&bytes);
        }
    }
}
