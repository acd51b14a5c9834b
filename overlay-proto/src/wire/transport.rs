//! Transport data header: `type(1) reserved(3) receiver_index(4) counter(8)`, followed by the
//! ChaCha20-Poly1305 ciphertext of an inner payload and its 16-byte tag. The 16 header bytes
//! are the AEAD's associated data, so none of them can be altered undetected.

use super::{check_len, read_u32, read_u64, MessageType, WireError};
use crate::consts::{MAX_DATAGRAM_LEN, TAG_LEN, TRANSPORT_HEADER_LEN};

/// Parsed transport header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportHeader {
    /// The receiver's session index.
    pub receiver_index: u32,
    /// The sender's per-session message counter (also the AEAD nonce).
    pub counter: u64,
}

impl TransportHeader {
    /// Parses the header of a transport datagram and checks the datagram can hold a tag.
    pub fn parse(datagram: &[u8]) -> Result<Self, WireError> {
        check_len(datagram, TRANSPORT_HEADER_LEN + TAG_LEN)?;
        if datagram.len() > MAX_DATAGRAM_LEN {
            return Err(WireError::Oversized { len: datagram.len(), max: MAX_DATAGRAM_LEN });
        }
        if datagram[0] != MessageType::Transport as u8 {
            return Err(WireError::UnknownType(datagram[0]));
        }
        if datagram[1..4] != [0, 0, 0] {
            return Err(WireError::Reserved);
        }
        Ok(Self { receiver_index: read_u32(datagram, 4), counter: read_u64(datagram, 8) })
    }

    /// Writes the header into the first [`TRANSPORT_HEADER_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8; TRANSPORT_HEADER_LEN]) {
        buf[0] = MessageType::Transport as u8;
        buf[1..4].fill(0);
        buf[4..8].copy_from_slice(&self.receiver_index.to_le_bytes());
        buf[8..16].copy_from_slice(&self.counter.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_bytes() {
        let mut buf = [0xa5u8; TRANSPORT_HEADER_LEN];
        TransportHeader { receiver_index: 0x0403_0201, counter: 0x0c0b_0a09_0807_0605 }.emit(&mut buf);
        assert_eq!(buf, [5, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    }

    #[test]
    fn rejects_short_reserved_and_foreign() {
        let mut d = [0u8; 32];
        d[0] = 5;
        assert!(TransportHeader::parse(&d).is_ok());
        assert!(matches!(TransportHeader::parse(&d[..31]), Err(WireError::Truncated { .. })));
        d[2] = 1;
        assert_eq!(TransportHeader::parse(&d), Err(WireError::Reserved));
        d[2] = 0;
        d[0] = 1;
        assert_eq!(TransportHeader::parse(&d), Err(WireError::UnknownType(1)));
    }

    proptest! {
        #[test]
        fn roundtrip(receiver_index: u32, counter: u64) {
            let h = TransportHeader { receiver_index, counter };
            let mut buf = [0u8; 32];
            let mut head = [0u8; TRANSPORT_HEADER_LEN];
            h.emit(&mut head);
            buf[..16].copy_from_slice(&head);
            prop_assert_eq!(TransportHeader::parse(&buf), Ok(h));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = TransportHeader::parse(&bytes);
        }
    }
}
