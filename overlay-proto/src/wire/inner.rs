//! Inner payloads: what travels inside the ciphertext of a transport datagram.
//!
//! Layout: `kind(1) vni_or_reserved(3) body`. A frame carries its network's 24-bit VNI
//! (big-endian, as in VXLAN) and one Ethernet frame; gossip carries membership bytes;
//! keepalive has no body; probe and probe reply carry an 8-byte id. A frame of kind
//! [`InnerKind::FramePartialCsum`] is a TCP segment whose checksum field holds only the
//! pseudo-header sum; it is sent only to a peer whose session has
//! [`crate::Features::PARTIAL_CSUM`].
//!
//! Relaying: a node that cannot reach a member directly sends a whole datagram of its
//! end-to-end session with that member to a relay inside their own session, as
//! [`Inner::RelayTo`] (`to(32)` the member's static key, then the datagram); the relay passes
//! it on inside its session with the member as [`Inner::RelayFrom`] (`from(32)` the sender's
//! key, `seen(18)` the sender's underlay address as the relay sees it — IPv6 or IPv4-mapped
//! address and big-endian port — then the datagram). The relay only ever handles the
//! end-to-end ciphertext. [`Inner::PathInfo`] (`flags(1) seen(18)`) tells a peer its own
//! address as the sender sees it (a reflexive address, STUN-style) and whether the sender
//! relays ([`PATH_RELAYS`]).

use super::{check_len, read_u64, WireError};
use crate::consts::{ETHERNET_HEADER_LEN, INNER_HEADER_LEN, MAX_DATAGRAM_LEN, MAX_FRAME_LEN};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Encoded length of an underlay address in relay payloads (IPv6 or IPv4-mapped, then port).
pub const ADDR_LEN: usize = 18;
/// [`Inner::PathInfo`] flag: the sender relays for its peers.
pub const PATH_RELAYS: u8 = 1;
/// Longest datagram a relay payload carries: it must itself fit a datagram with the relay
/// header, the outer transport header and the tag.
pub const MAX_RELAYED_LEN: usize = MAX_DATAGRAM_LEN - crate::consts::TUNNEL_OVERHEAD - 32 - ADDR_LEN;
/// Shortest datagram worth relaying (a transport header and a tag).
pub const MIN_RELAYED_LEN: usize = crate::consts::TRANSPORT_HEADER_LEN + crate::consts::TAG_LEN;

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
    /// A datagram for the relay to pass on.
    RelayTo = 7,
    /// A datagram a relay passes on.
    RelayFrom = 8,
    /// The receiver's address as the sender sees it, and whether the sender relays.
    PathInfo = 9,
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
    /// To the relay: pass `datagram` on to the member with static key `to`.
    RelayTo {
        /// The final receiver's static key.
        to: [u8; 32],
        /// A whole datagram of the sender's session with that member.
        datagram: &'a [u8],
    },
    /// From the relay: `datagram` came from the member with static key `from`, whose
    /// underlay address the relay sees as `seen`.
    RelayFrom {
        /// The sender's static key (as the relay's session with it authenticates it).
        from: [u8; 32],
        /// The sender's address as the relay sees it.
        seen: SocketAddr,
        /// The datagram, as the sender sealed it.
        datagram: &'a [u8],
    },
    /// The receiver's own address as the sender sees it, and the sender's [`PATH_RELAYS`].
    PathInfo {
        /// Flags.
        flags: u8,
        /// The receiver's address, as seen.
        seen: SocketAddr,
    },
}

/// Encodes an underlay address as [`ADDR_LEN`] bytes.
pub fn emit_addr(a: SocketAddr, out: &mut [u8; ADDR_LEN]) {
    let ip = match a.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    out[..16].copy_from_slice(&ip.octets());
    out[16..].copy_from_slice(&a.port().to_be_bytes());
}

/// Decodes an address written by [`emit_addr`].
pub fn parse_addr(b: &[u8; ADDR_LEN]) -> SocketAddr {
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&b[..16]);
    let ip = Ipv6Addr::from(ip);
    let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
    SocketAddr::new(ip, u16::from_be_bytes([b[16], b[17]]))
}

fn relayed(datagram: &[u8]) -> Result<&[u8], WireError> {
    if datagram.len() < MIN_RELAYED_LEN {
        return Err(WireError::BadLength { field: datagram.len() });
    }
    if datagram.len() > MAX_RELAYED_LEN {
        return Err(WireError::Oversized { len: datagram.len(), max: MAX_RELAYED_LEN });
    }
    Ok(datagram)
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
            7 if body.len() >= 32 => {
                let (to, datagram) = body.split_at(32);
                Ok(Self::RelayTo { to: to.try_into().expect("32 bytes"), datagram: relayed(datagram)? })
            }
            8 if body.len() >= 32 + ADDR_LEN => {
                let (from, rest) = body.split_at(32);
                let (seen, datagram) = rest.split_at(ADDR_LEN);
                Ok(Self::RelayFrom {
                    from: from.try_into().expect("32 bytes"),
                    seen: parse_addr(seen.try_into().expect("address")),
                    datagram: relayed(datagram)?,
                })
            }
            9 if body.len() == 1 + ADDR_LEN => Ok(Self::PathInfo {
                flags: body[0],
                seen: parse_addr(body[1..].try_into().expect("address")),
            }),
            7..=9 => Err(WireError::BadLength { field: body.len() }),
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
            Self::RelayTo { .. } => InnerKind::RelayTo,
            Self::RelayFrom { .. } => InnerKind::RelayFrom,
            Self::PathInfo { .. } => InnerKind::PathInfo,
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
                Self::RelayTo { datagram, .. } => 32 + datagram.len(),
                Self::RelayFrom { datagram, .. } => 32 + ADDR_LEN + datagram.len(),
                Self::PathInfo { .. } => 1 + ADDR_LEN,
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
            Self::RelayTo { to, datagram } => {
                relayed(datagram).map_err(|_| WireError::BadField("datagram"))?;
                let body = &mut buf[INNER_HEADER_LEN..n];
                body[..32].copy_from_slice(to);
                body[32..].copy_from_slice(datagram);
            }
            Self::RelayFrom { from, seen, datagram } => {
                relayed(datagram).map_err(|_| WireError::BadField("datagram"))?;
                let body = &mut buf[INNER_HEADER_LEN..n];
                body[..32].copy_from_slice(from);
                emit_addr(*seen, (&mut body[32..32 + ADDR_LEN]).try_into().expect("address"));
                body[32 + ADDR_LEN..].copy_from_slice(datagram);
            }
            Self::PathInfo { flags, seen } => {
                let body = &mut buf[INNER_HEADER_LEN..n];
                body[0] = *flags;
                emit_addr(*seen, (&mut body[1..]).try_into().expect("address"));
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
        assert_eq!(Inner::parse(&[10, 0, 0, 0]), Err(WireError::UnknownType(10)));
        assert!(Vni::new(1 << 24).is_none());
    }

    #[test]
    fn relay_payloads_known_bytes_and_bounds() {
        let d = [0x5au8; 40];
        let seen: SocketAddr = "192.0.2.7:51820".parse().unwrap();
        let v = Inner::RelayFrom { from: [7; 32], seen, datagram: &d };
        let mut buf = vec![0u8; v.buffer_len()];
        assert_eq!(v.emit(&mut buf).unwrap(), 4 + 32 + 18 + 40);
        assert_eq!(&buf[..4], &[8, 0, 0, 0]);
        assert_eq!(&buf[36..54], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7, 0xca, 0x6c]);
        assert_eq!(Inner::parse(&buf), Ok(v));
        // Too short to be a datagram, reserved bits, a truncated key.
        let short = Inner::RelayTo { to: [1; 32], datagram: &d[..31] };
        assert_eq!(short.emit(&mut [0u8; 128]), Err(WireError::BadField("datagram")));
        let mut raw = vec![7u8, 0, 0, 0];
        raw.extend_from_slice(&[1; 32]);
        raw.extend_from_slice(&d[..31]);
        assert_eq!(Inner::parse(&raw), Err(WireError::BadLength { field: 31 }));
        raw[2] = 1;
        assert_eq!(Inner::parse(&raw), Err(WireError::Reserved));
        assert_eq!(Inner::parse(&[7, 0, 0, 0, 1, 2]), Err(WireError::BadLength { field: 2 }));
        assert_eq!(Inner::parse(&[9, 0, 0, 0, 1]), Err(WireError::BadLength { field: 1 }));
        let v6: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        let mut a = [0u8; ADDR_LEN];
        emit_addr(v6, &mut a);
        assert_eq!(parse_addr(&a), v6);
    }

    fn inner_strategy() -> impl Strategy<Value = (u8, u32, Vec<u8>, u64)> {
        (1u8..=9, 0..=Vni::MAX, proptest::collection::vec(any::<u8>(), 32..600), any::<u64>())
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
                5 => Inner::ProbeReply(id),
                7 => Inner::RelayTo { to: [id as u8; 32], datagram: &body },
                8 => Inner::RelayFrom {
                    from: [vni as u8; 32],
                    seen: SocketAddr::new(IpAddr::from([id as u8, 1, 2, 3]), vni as u16),
                    datagram: &body,
                },
                _ => Inner::PathInfo {
                    flags: id as u8,
                    seen: SocketAddr::new(IpAddr::from([id as u16; 8]), vni as u16),
                },
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
