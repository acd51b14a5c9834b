//! Inner payloads: what travels inside the ciphertext of a transport datagram.
//!
//! Layout: `kind(1) vni_or_reserved(3) body`. A frame carries its network's 24-bit VNI
//! (big-endian, as in VXLAN) and one Ethernet frame; gossip carries membership bytes;
//! keepalive has no body; probe and probe reply carry an 8-byte id. A frame of kind
//! [`InnerKind::FramePartialCsum`] is a TCP segment whose checksum field holds only the
//! pseudo-header sum; it is sent only to a peer whose session has
//! [`crate::Features::PARTIAL_CSUM`].

use super::{check_len, read_u64, WireError};
use crate::consts::{ETHERNET_HEADER_LEN, INNER_HEADER_LEN, MAX_FRAME_LEN};

/// A 24-bit VXLAN network identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vni(u32);

impl Vni {
    /// The largest VNI.
    pub const MAX: u32 = (1 << 24) - 1;

    /// A VNI, or `None` when `v` does not fit 24 bits.
    pub fn new(v: u32) -> Option<Self> {
        (v <= Self::MAX).then_some(Self(v))
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0
    }

    pub(crate) fn to_bytes(self) -> [u8; 3] {
        let b = self.0.to_be_bytes();
        [b[1], b[2], b[3]]
    }

    pub(crate) fn from_bytes(b: [u8; 3]) -> Self {
        Self(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }
}

impl std::fmt::Display for Vni {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Inner payload kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum InnerKind {
    /// An Ethernet frame of one network.
    Frame = 1,
    /// Membership bytes.
    Gossip = 2,
    /// Keeps a session confirmed and NAT mappings alive.
    Keepalive = 3,
    /// An overlay-level echo request.
    Probe = 4,
    /// The answer to a probe.
    ProbeReply = 5,
    /// An Ethernet frame whose TCP checksum is left partial (see the module doc).
    FramePartialCsum = 6,
}

/// A decoded inner payload borrowing its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inner<'a> {
    /// An Ethernet frame of network `vni`.
    Frame {
        /// The network.
        vni: Vni,
        /// The whole Ethernet frame, header included.
        frame: &'a [u8],
        /// Its TCP checksum holds only the pseudo-header sum (kind `FramePartialCsum`).
        partial_csum: bool,
    },
    /// Membership bytes.
    Gossip(&'a [u8]),
    /// No body.
    Keepalive,
    /// Echo request.
    Probe(u64),
    /// Echo reply.
    ProbeReply(u64),
}

impl<'a> Inner<'a> {
    /// Decodes a plaintext payload.
    pub fn parse(b: &'a [u8]) -> Result<Self, WireError> {
        check_len(b, INNER_HEADER_LEN)?;
        let body = &b[INNER_HEADER_LEN..];
        let reserved_zero = b[1..4] == [0, 0, 0];
        match b[0] {
            1 | 6 => {
                check_len(body, ETHERNET_HEADER_LEN).map_err(|_| WireError::Truncated {
                    len: b.len(),
                    need: INNER_HEADER_LEN + ETHERNET_HEADER_LEN,
                })?;
                if body.len() > MAX_FRAME_LEN {
                    return Err(WireError::Oversized { len: body.len(), max: MAX_FRAME_LEN });
                }
                let vni = Vni::from_bytes([b[1], b[2], b[3]]);
                Ok(Self::Frame { vni, frame: body, partial_csum: b[0] == 6 })
            }
            _ if !reserved_zero => Err(WireError::Reserved),
            2 => Ok(Self::Gossip(body)),
            3 if body.is_empty() => Ok(Self::Keepalive),
            4 | 5 if body.len() == 8 => {
                let id = read_u64(body, 0);
                Ok(if b[0] == 4 { Self::Probe(id) } else { Self::ProbeReply(id) })
            }
            3..=5 => Err(WireError::BadLength { field: body.len() }),
            t => Err(WireError::UnknownType(t)),
        }
    }

    /// The kind.
    pub fn kind(&self) -> InnerKind {
        match self {
            Self::Frame { partial_csum: false, .. } => InnerKind::Frame,
            Self::Frame { partial_csum: true, .. } => InnerKind::FramePartialCsum,
            Self::Gossip(_) => InnerKind::Gossip,
            Self::Keepalive => InnerKind::Keepalive,
            Self::Probe(_) => InnerKind::Probe,
            Self::ProbeReply(_) => InnerKind::ProbeReply,
        }
    }

    /// Encoded length.
    pub fn buffer_len(&self) -> usize {
        INNER_HEADER_LEN
            + match self {
                Self::Frame { frame, .. } => frame.len(),
                Self::Gossip(g) => g.len(),
                Self::Keepalive => 0,
                Self::Probe(_) | Self::ProbeReply(_) => 8,
            }
    }

    /// Writes the payload into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let n = self.buffer_len();
        check_len(buf, n)?;
        let mut head = [0u8; INNER_HEADER_LEN];
        head[0] = self.kind() as u8;
        match self {
            Self::Frame { vni, frame, .. } => {
                if frame.len() < ETHERNET_HEADER_LEN || frame.len() > MAX_FRAME_LEN {
                    return Err(WireError::BadField("frame"));
                }
                head[1..4].copy_from_slice(&vni.to_bytes());
                buf[INNER_HEADER_LEN..n].copy_from_slice(frame);
            }
            Self::Gossip(g) => buf[INNER_HEADER_LEN..n].copy_from_slice(g),
            Self::Keepalive => {}
            Self::Probe(id) | Self::ProbeReply(id) => {
                buf[INNER_HEADER_LEN..n].copy_from_slice(&id.to_le_bytes())
            }
        }
        buf[..INNER_HEADER_LEN].copy_from_slice(&head);
        Ok(n)
    }

    /// Writes only a frame header, for a frame already in place after it.
    pub fn emit_frame_header(vni: Vni, partial_csum: bool, head: &mut [u8; INNER_HEADER_LEN]) {
        head[0] = if partial_csum { InnerKind::FramePartialCsum } else { InnerKind::Frame } as u8;
        head[1..4].copy_from_slice(&vni.to_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_bytes() {
        let frame = [0x11u8; 14];
        let mut buf = [0xa5u8; 20];
        let n = Inner::Frame { vni: Vni::new(0x0a0b0c).unwrap(), frame: &frame, partial_csum: false }
            .emit(&mut buf)
            .unwrap();
        assert_eq!(n, 18);
        assert_eq!(&buf[..4], &[1, 0x0a, 0x0b, 0x0c]);
        assert_eq!(buf[18], 0xa5);
        let mut head = [0u8; 4];
        Inner::emit_frame_header(Vni::new(0x0a0b0c).unwrap(), true, &mut head);
        assert_eq!(head, [6, 0x0a, 0x0b, 0x0c]);
        let mut k = [0xa5u8; 4];
        Inner::Keepalive.emit(&mut k).unwrap();
        assert_eq!(k, [3, 0, 0, 0]);
    }

    #[test]
    fn rejects() {
        assert!(Inner::parse(&[1, 0, 0, 1, 0]).is_err()); // frame shorter than Ethernet
        assert_eq!(Inner::parse(&[3, 0, 0, 0, 9]), Err(WireError::BadLength { field: 1 }));
        assert_eq!(Inner::parse(&[3, 0, 1, 0]), Err(WireError::Reserved));
        assert_eq!(Inner::parse(&[9, 0, 0, 0]), Err(WireError::UnknownType(9)));
        assert!(Vni::new(1 << 24).is_none());
    }

    fn inner_strategy() -> impl Strategy<Value = (u8, u32, Vec<u8>, u64)> {
        (1u8..=6, 0..=Vni::MAX, proptest::collection::vec(any::<u8>(), 14..600), any::<u64>())
    }

    proptest! {
        #[test]
        fn roundtrip((kind, vni, body, id) in inner_strategy()) {
            let v = match kind {
                1 => Inner::Frame { vni: Vni::new(vni).unwrap(), frame: &body, partial_csum: false },
                6 => Inner::Frame { vni: Vni::new(vni).unwrap(), frame: &body, partial_csum: true },
                2 => Inner::Gossip(&body),
                3 => Inner::Keepalive,
                4 => Inner::Probe(id),
                _ => Inner::ProbeReply(id),
            };
            let mut buf = vec![0u8; v.buffer_len()];
            v.emit(&mut buf).unwrap();
            prop_assert_eq!(Inner::parse(&buf), Ok(v));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Inner::parse(&bytes);
        }
    }
}
