//! Handshake datagrams and the cookie reply.
//!
//! Handshake layout (init, response and finish share it):
//! `type(1) pattern(1) noise_len(2) sender_index(4) receiver_index(4) noise(noise_len) mac1(16) mac2(16)`.
//! `receiver_index` is zero in an init. `mac1` covers everything before it and proves the sender
//! knows the network's CA key; `mac2` covers everything before it and proves the sender can
//! receive at its source address (it is zero unless the responder sent a cookie).
//!
//! Cookie reply layout: `type(1) reserved(3) receiver_index(4) nonce(12) sealed_cookie(32)`.

use super::{check_len, read_u32, MessageType, WireError};
use crate::consts::{MAC_LEN, MAX_HANDSHAKE_NOISE_LEN};

const HEADER_LEN: usize = 12;
/// Longest handshake datagram (the largest Noise message with header and MACs): anything
/// longer is refused before it is queued anywhere.
pub const MAX_HANDSHAKE_LEN: usize = HEADER_LEN + MAX_HANDSHAKE_NOISE_LEN + 2 * MAC_LEN;
/// Total length of a cookie reply.
pub const COOKIE_REPLY_LEN: usize = 8 + 12 + 32;

/// A checked view of a handshake datagram.
#[derive(Debug, Clone, Copy)]
pub struct HandshakePacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> HandshakePacket<T> {
    /// Validates lengths, type and reserved fields; afterwards no accessor can panic.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        check_len(b, HEADER_LEN + 2 * MAC_LEN)?;
        let kind = MessageType::of(b)?;
        if !matches!(
            kind,
            MessageType::HandshakeInit | MessageType::HandshakeResponse | MessageType::HandshakeFinish
        ) {
            return Err(WireError::UnknownType(b[0]));
        }
        let noise_len = u16::from_le_bytes([b[2], b[3]]) as usize;
        if noise_len > MAX_HANDSHAKE_NOISE_LEN {
            return Err(WireError::Oversized { len: noise_len, max: MAX_HANDSHAKE_NOISE_LEN });
        }
        if b.len() != HEADER_LEN + noise_len + 2 * MAC_LEN {
            return Err(WireError::BadLength { field: noise_len });
        }
        match kind {
            MessageType::HandshakeInit => {
                if Pattern::from_u8(b[1]).is_none() {
                    return Err(WireError::BadField("pattern"));
                }
                if read_u32(b, 8) != 0 {
                    return Err(WireError::Reserved);
                }
            }
            _ if b[1] != 0 => return Err(WireError::Reserved),
            _ => {}
        }
        Ok(Self { buf })
    }

    /// Which handshake message this is.
    pub fn kind(&self) -> MessageType {
        match self.buf.as_ref()[0] {
            1 => MessageType::HandshakeInit,
            2 => MessageType::HandshakeResponse,
            _ => MessageType::HandshakeFinish,
        }
    }

    /// The Noise pattern an init asks for (`None` on later messages).
    pub fn pattern(&self) -> Option<Pattern> {
        Pattern::from_u8(self.buf.as_ref()[1])
    }

    /// The sender's session index.
    pub fn sender_index(&self) -> u32 {
        read_u32(self.buf.as_ref(), 4)
    }

    /// The receiver's session index (zero in an init).
    pub fn receiver_index(&self) -> u32 {
        read_u32(self.buf.as_ref(), 8)
    }

    /// The Noise handshake message.
    pub fn noise(&self) -> &[u8] {
        let b = self.buf.as_ref();
        &b[HEADER_LEN..b.len() - 2 * MAC_LEN]
    }

    /// The bytes `mac1` covers.
    pub fn mac1_input(&self) -> &[u8] {
        let b = self.buf.as_ref();
        &b[..b.len() - 2 * MAC_LEN]
    }

    /// The bytes `mac2` covers.
    pub fn mac2_input(&self) -> &[u8] {
        let b = self.buf.as_ref();
        &b[..b.len() - MAC_LEN]
    }

    /// The first MAC.
    pub fn mac1(&self) -> [u8; MAC_LEN] {
        let b = self.buf.as_ref();
        let mut m = [0u8; MAC_LEN];
        m.copy_from_slice(&b[b.len() - 2 * MAC_LEN..b.len() - MAC_LEN]);
        m
    }

    /// The second MAC.
    pub fn mac2(&self) -> [u8; MAC_LEN] {
        let b = self.buf.as_ref();
        let mut m = [0u8; MAC_LEN];
        m.copy_from_slice(&b[b.len() - MAC_LEN..]);
        m
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> HandshakePacket<T> {
    /// Writes `mac1`.
    pub fn set_mac1(&mut self, mac: &[u8; MAC_LEN]) {
        let b = self.buf.as_mut();
        let n = b.len();
        b[n - 2 * MAC_LEN..n - MAC_LEN].copy_from_slice(mac);
    }

    /// Writes `mac2`.
    pub fn set_mac2(&mut self, mac: &[u8; MAC_LEN]) {
        let b = self.buf.as_mut();
        let n = b.len();
        b[n - MAC_LEN..].copy_from_slice(mac);
    }
}

/// The Noise pattern an initiator chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// `Noise_IK`: the responder's static key is known (1 round trip).
    Ik = 1,
    /// `Noise_XX`: first contact with a node whose key is unknown (1.5 round trips).
    Xx = 2,
}

impl Pattern {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Ik),
            2 => Some(Self::Xx),
            _ => None,
        }
    }
}

/// The value of a handshake datagram, for emitting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRepr<'a> {
    /// Init, response or finish.
    pub kind: MessageType,
    /// The pattern (inits only).
    pub pattern: Option<Pattern>,
    /// The sender's session index.
    pub sender_index: u32,
    /// The receiver's session index (zero in an init).
    pub receiver_index: u32,
    /// The Noise message.
    pub noise: &'a [u8],
}

impl<'a> HandshakeRepr<'a> {
    /// Reads the value out of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &'a HandshakePacket<T>) -> Self {
        Self {
            kind: p.kind(),
            pattern: p.pattern(),
            sender_index: p.sender_index(),
            receiver_index: p.receiver_index(),
            noise: p.noise(),
        }
    }

    /// Encoded length, MACs included.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.noise.len() + 2 * MAC_LEN
    }

    /// Writes the datagram into `buf[..buffer_len()]` with zeroed MACs; returns the length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let n = self.buffer_len();
        if self.noise.len() > MAX_HANDSHAKE_NOISE_LEN {
            return Err(WireError::Oversized { len: self.noise.len(), max: MAX_HANDSHAKE_NOISE_LEN });
        }
        check_len(buf, n)?;
        buf[0] = self.kind as u8;
        buf[1] = match (self.kind, self.pattern) {
            (MessageType::HandshakeInit, Some(p)) => p as u8,
            (MessageType::HandshakeInit, None) => return Err(WireError::BadField("pattern")),
            _ => 0,
        };
        buf[2..4].copy_from_slice(&(self.noise.len() as u16).to_le_bytes());
        buf[4..8].copy_from_slice(&self.sender_index.to_le_bytes());
        let receiver = if self.kind == MessageType::HandshakeInit { 0 } else { self.receiver_index };
        buf[8..12].copy_from_slice(&receiver.to_le_bytes());
        buf[HEADER_LEN..HEADER_LEN + self.noise.len()].copy_from_slice(self.noise);
        buf[n - 2 * MAC_LEN..n].fill(0);
        Ok(n)
    }
}

/// A cookie reply: an encrypted cookie the initiator must MAC its next attempt with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieReply {
    /// The initiator's session index from the message that triggered the reply.
    pub receiver_index: u32,
    /// AEAD nonce.
    pub nonce: [u8; 12],
    /// The 16-byte cookie sealed with its 16-byte tag.
    pub sealed_cookie: [u8; 32],
}

impl CookieReply {
    /// Parses a cookie reply.
    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        check_len(b, COOKIE_REPLY_LEN)?;
        if b.len() != COOKIE_REPLY_LEN {
            return Err(WireError::Oversized { len: b.len(), max: COOKIE_REPLY_LEN });
        }
        if b[0] != MessageType::CookieReply as u8 {
            return Err(WireError::UnknownType(b[0]));
        }
        if b[1..4] != [0, 0, 0] {
            return Err(WireError::Reserved);
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&b[8..20]);
        let mut sealed_cookie = [0u8; 32];
        sealed_cookie.copy_from_slice(&b[20..52]);
        Ok(Self { receiver_index: read_u32(b, 4), nonce, sealed_cookie })
    }

    /// Encodes the reply.
    pub fn emit(&self) -> [u8; COOKIE_REPLY_LEN] {
        let mut b = [0u8; COOKIE_REPLY_LEN];
        b[0] = MessageType::CookieReply as u8;
        b[4..8].copy_from_slice(&self.receiver_index.to_le_bytes());
        b[8..20].copy_from_slice(&self.nonce);
        b[20..52].copy_from_slice(&self.sealed_cookie);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_bytes_of_an_init() {
        let repr = HandshakeRepr {
            kind: MessageType::HandshakeInit,
            pattern: Some(Pattern::Xx),
            sender_index: 7,
            receiver_index: 0,
            noise: &[0xee; 3],
        };
        let mut buf = [0xa5u8; 64];
        let n = repr.emit(&mut buf).unwrap();
        assert_eq!(n, 12 + 3 + 32);
        assert_eq!(&buf[..15], &[1, 2, 3, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0xee, 0xee, 0xee]);
        assert!(buf[15..n].iter().all(|&b| b == 0));
        assert_eq!(buf[n], 0xa5);
    }

    #[test]
    fn rejects_bad_inputs() {
        let repr = HandshakeRepr {
            kind: MessageType::HandshakeResponse,
            pattern: None,
            sender_index: 1,
            receiver_index: 2,
            noise: &[1, 2, 3, 4],
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf).unwrap();
        assert!(HandshakePacket::new_checked(&buf[..]).is_ok());
        assert!(HandshakePacket::new_checked(&buf[..buf.len() - 1]).is_err());
        let mut longer = buf.clone();
        longer.push(0);
        assert_eq!(HandshakePacket::new_checked(&longer[..]).unwrap_err(), WireError::BadLength { field: 4 });
        buf[1] = 1;
        assert_eq!(HandshakePacket::new_checked(&buf[..]).unwrap_err(), WireError::Reserved);
        buf[0] = 1;
        buf[1] = 9;
        assert_eq!(HandshakePacket::new_checked(&buf[..]).unwrap_err(), WireError::BadField("pattern"));
        buf[0] = 5;
        assert!(HandshakePacket::new_checked(&buf[..]).is_err());
    }

    #[test]
    fn cookie_reply_known_bytes() {
        let c = CookieReply { receiver_index: 1, nonce: [2; 12], sealed_cookie: [3; 32] };
        let b = c.emit();
        assert_eq!(&b[..8], &[4, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(CookieReply::parse(&b), Ok(c));
        assert!(CookieReply::parse(&b[..51]).is_err());
    }

    fn kind_strategy() -> impl Strategy<Value = (MessageType, Option<Pattern>)> {
        prop_oneof![
            Just((MessageType::HandshakeInit, Some(Pattern::Ik))),
            Just((MessageType::HandshakeInit, Some(Pattern::Xx))),
            Just((MessageType::HandshakeResponse, None)),
            Just((MessageType::HandshakeFinish, None)),
        ]
    }

    proptest! {
        #[test]
        fn roundtrip((kind, pattern) in kind_strategy(), sender_index: u32, receiver: u32,
                     noise in proptest::collection::vec(any::<u8>(), 0..MAX_HANDSHAKE_NOISE_LEN),
                     mac1: [u8; 16], mac2: [u8; 16]) {
            let receiver_index = if kind == MessageType::HandshakeInit { 0 } else { receiver };
            let repr = HandshakeRepr { kind, pattern, sender_index, receiver_index, noise: &noise };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut buf).unwrap();
            let mut p = HandshakePacket::new_checked(&mut buf[..]).unwrap();
            p.set_mac1(&mac1);
            p.set_mac2(&mac2);
            let p = HandshakePacket::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(HandshakeRepr::parse(&p), repr);
            prop_assert_eq!(p.mac1(), mac1);
            prop_assert_eq!(p.mac2(), mac2);
        }

        #[test]
        fn cookie_roundtrip(receiver_index: u32, nonce: [u8; 12], a: [u8; 16], b: [u8; 16]) {
            let mut sealed_cookie = [0u8; 32];
            sealed_cookie[..16].copy_from_slice(&a);
            sealed_cookie[16..].copy_from_slice(&b);
            let c = CookieReply { receiver_index, nonce, sealed_cookie };
            prop_assert_eq!(CookieReply::parse(&c.emit()), Ok(c));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            if let Ok(p) = HandshakePacket::new_checked(&bytes[..]) {
                let _ = (p.noise(), p.mac1(), p.mac2(), p.kind(), p.sender_index());
            }
            let _ = CookieReply::parse(&bytes);
        }
    }
}
