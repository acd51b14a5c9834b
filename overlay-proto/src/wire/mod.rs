//! Wire format: typed views over byte buffers, one per message kind, plus the inner payload
//! kinds carried inside the ciphertext and the plain RFC 7348 VXLAN header.
//!
//! Every outer datagram starts with a one-byte message type. All integers are little-endian
//! except the VNI, which is big-endian as in VXLAN. A view's checked constructor validates every
//! length once, so no accessor can panic afterwards.

mod handshake;
mod inner;
mod transport;
mod vxlan;

pub use handshake::{
    CookieReply, HandshakePacket, HandshakeRepr, Pattern, COOKIE_REPLY_LEN, MAX_HANDSHAKE_LEN,
};
pub use inner::{
    emit_addr, parse_addr, Inner, InnerKind, Vni, ADDR_LEN, MAX_RELAYED_LEN, MIN_RELAYED_LEN, PATH_RELAYS,
};
pub use transport::TransportHeader;
pub use vxlan::{Rco, VxlanHeader, VXLAN_HEADER_LEN};

/// Why a datagram or payload could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is empty.
    #[error("empty datagram")]
    Empty,
    /// The first byte names no message kind we know.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// The buffer is shorter than its kind requires.
    #[error("truncated: {len} bytes, need at least {need}")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The buffer is longer than its kind allows.
    #[error("oversized: {len} bytes, at most {max}")]
    Oversized {
        /// Bytes present.
        len: usize,
        /// Bytes allowed.
        max: usize,
    },
    /// A length field disagrees with the buffer.
    #[error("length field {field} disagrees with the datagram")]
    BadLength {
        /// The length field's value.
        field: usize,
    },
    /// Reserved bits are not zero.
    #[error("reserved bits set")]
    Reserved,
    /// A field holds a value outside its range.
    #[error("bad value in field {0}")]
    BadField(&'static str),
}

/// The outer message kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    /// First handshake message (Noise IK message 1 or XX message 1).
    HandshakeInit = 1,
    /// Second handshake message.
    HandshakeResponse = 2,
    /// Third handshake message (XX only).
    HandshakeFinish = 3,
    /// Cookie reply: the responder is under load and wants proof of the source address.
    CookieReply = 4,
    /// Encrypted transport data.
    Transport = 5,
}

impl MessageType {
    /// Classifies a datagram by its first byte.
    pub fn of(datagram: &[u8]) -> Result<Self, WireError> {
        match datagram.first() {
            None => Err(WireError::Empty),
            Some(1) => Ok(Self::HandshakeInit),
            Some(2) => Ok(Self::HandshakeResponse),
            Some(3) => Ok(Self::HandshakeFinish),
            Some(4) => Ok(Self::CookieReply),
            Some(5) => Ok(Self::Transport),
            Some(&t) => Err(WireError::UnknownType(t)),
        }
    }
}

pub(crate) fn check_len(buf: &[u8], need: usize) -> Result<(), WireError> {
    if buf.len() < need {
        Err(WireError::Truncated { len: buf.len(), need })
    } else {
        Ok(())
    }
}

pub(crate) fn read_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

pub(crate) fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_kind_and_rejects_others() {
        assert_eq!(MessageType::of(&[]), Err(WireError::Empty));
        for t in 1..=5u8 {
            assert_eq!(MessageType::of(&[t]).map(|m| m as u8), Ok(t));
        }
        assert_eq!(MessageType::of(&[0]), Err(WireError::UnknownType(0)));
        assert_eq!(MessageType::of(&[9, 1, 2]), Err(WireError::UnknownType(9)));
    }
}
