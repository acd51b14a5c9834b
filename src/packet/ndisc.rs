//! IPv6 neighbour discovery (RFC 4861): neighbour solicitations and advertisements, the two
//! messages that bind an IPv6 address to a link-layer address (IPv6's ARP), read and written
//! on top of the ICMPv6 header of [`super::icmp`].
//!
//! Invariants: a checked [`NdiscPacket`] holds the ICMPv6 header and the 16-byte target
//! address, so those accessors are infallible. The options after them are walked by
//! [`NdiscPacket::options`], which checks each option's length against the buffer and refuses
//! a zero length (RFC 4861 §4.6), so a walk costs at most one step per 8 bytes and never reads
//! past the buffer. [`NdiscRepr::parse`] accepts only code 0 and Ethernet-sized link-layer
//! address options, and refuses a message that names two different link-layer addresses
//! (stacks disagree on which one counts, so neither can be vouched for).

use std::net::Ipv6Addr;

use super::ethernet::Mac;
use super::{get_array, icmp, Error};

/// Length of a solicitation or advertisement without options.
pub const HEADER_LEN: usize = 24;
/// Length of a link-layer address option carrying an Ethernet address.
pub const LLADDR_OPTION_LEN: usize = 8;

/// Byte ranges of the fields after the ICMPv6 type, code and checksum.
pub mod field {
    use crate::packet::Field;
    /// Advertisement flags (router, solicited, override) in the high bits; reserved after.
    pub const FLAGS: usize = 4;
    /// The reserved bytes after the flags (a solicitation reserves all four).
    pub const RESERVED: Field = 4..8;
    /// Target address.
    pub const TARGET: Field = 8..24;
    /// Where the options start.
    pub const OPTIONS: usize = 24;
}

/// ICMPv6 types of the messages here.
pub mod kind {
    /// Neighbour solicitation.
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbour advertisement.
    pub const NEIGHBOR_ADVERT: u8 = 136;
}

/// Option types.
pub mod option {
    /// Source link-layer address (meaningful in a solicitation).
    pub const SOURCE_LLADDR: u8 = 1;
    /// Target link-layer address (meaningful in an advertisement).
    pub const TARGET_LLADDR: u8 = 2;
}

/// Advertisement flags (the high bits of [`field::FLAGS`]).
pub mod flags {
    /// The sender is a router.
    pub const ROUTER: u8 = 0x80;
    /// The advertisement answers a solicitation.
    pub const SOLICITED: u8 = 0x40;
    /// The advertisement overrides a cached link-layer address.
    pub const OVERRIDE: u8 = 0x20;
    /// Every flag bit.
    pub const ALL: u8 = ROUTER | SOLICITED | OVERRIDE;
}

/// A view of a neighbour solicitation or advertisement (the whole ICMPv6 message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdiscPacket<T: AsRef<[u8]>> {
    buffer: T,
}

/// One option: its type and its bytes after the type and length octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdiscOption<'a> {
    /// Option type.
    pub kind: u8,
    /// The bytes after the type and length octets (`8 * length - 2` of them).
    pub data: &'a [u8],
}

/// The options of a message, in order; an error ends the walk.
#[derive(Debug, Clone)]
pub struct NdiscOptions<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NdiscOptions<'a> {
    type Item = Result<NdiscOption<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = std::mem::take(&mut self.rest);
        let (&kind, &units) = match rest {
            [] => return None,
            [kind, units, ..] => (kind, units),
            [_] => return Some(Err(Error::Truncated)),
        };
        let len = usize::from(units) * 8;
        if len == 0 {
            return Some(Err(Error::Malformed));
        }
        if len > rest.len() {
            return Some(Err(Error::Truncated));
        }
        self.rest = &rest[len..];
        Some(Ok(NdiscOption { kind, data: &rest[2..len] }))
    }
}

impl<T: AsRef<[u8]>> NdiscPacket<T> {
    /// A view without checks: only for buffers known to hold [`HEADER_LEN`] bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// A view of a buffer that holds the header and the target address.
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

    /// ICMPv6 message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[icmp::field::TYPE]
    }

    /// ICMPv6 message code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[icmp::field::CODE]
    }

    /// Advertisement flags ([`flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS] & flags::ALL
    }

    /// Target address: the address asked about (solicitation) or advertised (advertisement).
    #[inline]
    pub fn target_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(get_array::<16>(self.buffer.as_ref(), field::TARGET))
    }

    /// The options after the target address.
    #[inline]
    pub fn options(&self) -> NdiscOptions<'_> {
        NdiscOptions { rest: &self.buffer.as_ref()[field::OPTIONS..] }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NdiscPacket<T> {
    /// Sets the advertisement flags and clears the reserved bits.
    #[inline]
    pub fn set_flags(&mut self, f: u8) {
        let b = self.buffer.as_mut();
        b[field::RESERVED].fill(0);
        b[field::FLAGS] = f & flags::ALL;
    }

    /// Sets the target address.
    #[inline]
    pub fn set_target_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::TARGET].copy_from_slice(&a.octets());
    }
}

/// A neighbour solicitation or advertisement with the link-layer address it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdiscRepr {
    /// "Who has `target_addr`?" (from `::` during duplicate address detection).
    NeighborSolicit {
        /// The address asked about.
        target_addr: Ipv6Addr,
        /// The asker's link-layer address (source link-layer option).
        lladdr: Option<Mac>,
    },
    /// "`target_addr` is at `lladdr`".
    NeighborAdvert {
        /// [`flags`] bits.
        flags: u8,
        /// The address advertised.
        target_addr: Ipv6Addr,
        /// Its link-layer address (target link-layer option).
        lladdr: Option<Mac>,
    },
}

impl NdiscRepr {
    /// Reads a solicitation or an advertisement; other types are `Unsupported`, a code other
    /// than 0, a zero-length option, a link-layer option not 8 bytes long or a second one
    /// naming another address are `Malformed`. Options the message does not use are skipped.
    /// The checksum is not checked.
    pub fn parse<T: AsRef<[u8]>>(p: &NdiscPacket<T>) -> Result<Self, Error> {
        let lladdr_kind = match p.msg_type() {
            kind::NEIGHBOR_SOLICIT => option::SOURCE_LLADDR,
            kind::NEIGHBOR_ADVERT => option::TARGET_LLADDR,
            _ => return Err(Error::Unsupported),
        };
        if p.msg_code() != 0 {
            return Err(Error::Malformed);
        }
        let mut lladdr: Option<Mac> = None;
        for o in p.options() {
            let o = o?;
            if o.kind != lladdr_kind {
                continue;
            }
            let mac: Mac = o.data.try_into().map_err(|_| Error::Malformed)?;
            if lladdr.is_some_and(|m| m != mac) {
                return Err(Error::Malformed);
            }
            lladdr = Some(mac);
        }
        let target_addr = p.target_addr();
        Ok(match lladdr_kind {
            option::SOURCE_LLADDR => Self::NeighborSolicit { target_addr, lladdr },
            _ => Self::NeighborAdvert { flags: p.flags(), target_addr, lladdr },
        })
    }

    /// Bytes the message takes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        match self {
            Self::NeighborSolicit { lladdr: Some(_), .. } | Self::NeighborAdvert { lladdr: Some(_), .. } => {
                HEADER_LEN + LLADDR_OPTION_LEN
            }
            _ => HEADER_LEN,
        }
    }

    /// Writes the message and its checksum (over the pseudo-header whose folded sum is given,
    /// see [`super::Ipv6Packet::pseudo_header`]) into the first [`Self::buffer_len`] bytes of
    /// a view at least that long (bytes after it are left alone).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut NdiscPacket<T>, pseudo_header: u16) {
        let len = self.buffer_len();
        let (ty, f, target, lladdr) = match *self {
            Self::NeighborSolicit { target_addr, lladdr } => {
                (kind::NEIGHBOR_SOLICIT, 0, target_addr, lladdr.map(|m| (option::SOURCE_LLADDR, m)))
            }
            Self::NeighborAdvert { flags, target_addr, lladdr } => {
                (kind::NEIGHBOR_ADVERT, flags, target_addr, lladdr.map(|m| (option::TARGET_LLADDR, m)))
            }
        };
        let mut msg = NdiscPacket::new_unchecked(&mut p.buffer.as_mut()[..len]);
        msg.set_flags(f);
        msg.set_target_addr(target);
        let b = msg.into_inner();
        if let Some((kind, mac)) = lladdr {
            let o = &mut b[field::OPTIONS..field::OPTIONS + LLADDR_OPTION_LEN];
            o[0] = kind;
            o[1] = (LLADDR_OPTION_LEN / 8) as u8;
            o[2..].copy_from_slice(&mac);
        }
        let mut icmp = icmp::IcmpPacket::new_unchecked(b);
        icmp.set_msg_type_and_code(ty, 0);
        icmp.fill_checksum(pseudo_header);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// "fd00::3 is at 02:00:00:00:00:03" (solicited, override), checksum over pseudo-header 0.
    const ADVERT: [u8; 32] = [
        136, 0, 0x16, 0xf7, 0x60, 0, 0, 0, // type, code, checksum, S and O flags
        0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, // target
        2, 1, 2, 0, 0, 0, 0, 3, // target link-layer address
    ];

    fn advert() -> NdiscRepr {
        NdiscRepr::NeighborAdvert {
            flags: flags::SOLICITED | flags::OVERRIDE,
            target_addr: "fd00::3".parse().unwrap(),
            lladdr: Some([2, 0, 0, 0, 0, 3]),
        }
    }

    #[test]
    fn reads_an_advertisement() {
        let p = NdiscPacket::new_checked(&ADVERT[..]).unwrap();
        assert_eq!(NdiscRepr::parse(&p), Ok(advert()));
        assert!(icmp::IcmpPacket::new_checked(&ADVERT[..]).unwrap().verify_checksum(0));
        for n in 0..HEADER_LEN {
            assert_eq!(NdiscPacket::new_checked(&ADVERT[..n]), Err(Error::Truncated));
        }
    }

    #[test]
    fn emits_into_a_dirty_buffer() {
        let mut buf = [0xa5u8; 34];
        advert().emit(&mut NdiscPacket::new_unchecked(&mut buf[..]), 0);
        assert_eq!(&buf[..32], &ADVERT);
        assert_eq!(&buf[32..], &[0xa5, 0xa5], "bytes after the message are not touched");
        let dad = NdiscRepr::NeighborSolicit { target_addr: "fd00::3".parse().unwrap(), lladdr: None };
        let mut buf = [0xa5u8; 24];
        dad.emit(&mut NdiscPacket::new_unchecked(&mut buf[..]), 0);
        assert_eq!(&buf[..8], &[135, 0, 0x7b, 0xfb, 0, 0, 0, 0]);
    }

    #[test]
    fn a_solicitation_carries_the_source_option_and_skips_others() {
        let mut m = ADVERT.to_vec();
        m[0] = kind::NEIGHBOR_SOLICIT;
        // A target option in a solicitation means nothing; a nonce option (14) is skipped.
        m.extend_from_slice(&[14, 1, 9, 9, 9, 9, 9, 9, 1, 1, 2, 0, 0, 0, 0, 7]);
        let p = NdiscPacket::new_checked(&m[..]).unwrap();
        assert_eq!(
            NdiscRepr::parse(&p),
            Ok(NdiscRepr::NeighborSolicit {
                target_addr: "fd00::3".parse().unwrap(),
                lladdr: Some([2, 0, 0, 0, 0, 7])
            })
        );
    }

    #[test]
    fn odd_messages_are_refused() {
        let parse = |m: &[u8]| NdiscRepr::parse(&NdiscPacket::new_checked(m).unwrap());
        let with = |extra: &[u8]| [&ADVERT[..], extra].concat();
        assert_eq!(parse(&with(&[2, 0, 0, 0, 0, 0, 0, 0])), Err(Error::Malformed), "zero-length option");
        assert_eq!(parse(&with(&[2, 1, 2, 0])), Err(Error::Truncated), "cut option");
        assert_eq!(parse(&with(&[2])), Err(Error::Truncated), "a lone type octet");
        assert_eq!(parse(&with(&[2, 1, 2, 0, 0, 0, 0, 9])), Err(Error::Malformed), "two addresses");
        assert_eq!(parse(&with(&[2, 1, 2, 0, 0, 0, 0, 3])), Ok(advert()), "the same one twice");
        let mut long = ADVERT.to_vec();
        long[25] = 2;
        long.extend_from_slice(&[0; 8]);
        assert_eq!(parse(&long), Err(Error::Malformed), "a 16-byte link-layer option");
        let mut coded = ADVERT;
        coded[1] = 1;
        assert_eq!(parse(&coded), Err(Error::Malformed), "code 1");
        let mut redirect = ADVERT;
        redirect[0] = 137;
        assert_eq!(parse(&redirect), Err(Error::Unsupported));
    }

    fn repr() -> impl Strategy<Value = NdiscRepr> {
        let mac = proptest::option::of(any::<Mac>());
        prop_oneof![
            (any::<[u8; 16]>(), mac.clone())
                .prop_map(|(t, lladdr)| NdiscRepr::NeighborSolicit { target_addr: t.into(), lladdr }),
            (any::<u8>(), any::<[u8; 16]>(), mac).prop_map(|(f, t, lladdr)| NdiscRepr::NeighborAdvert {
                flags: f & flags::ALL,
                target_addr: t.into(),
                lladdr
            }),
        ]
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(b in proptest::collection::vec(any::<u8>(), 0..80), ty in prop_oneof![Just(135u8), Just(136), any::<u8>()]) {
            let mut b = b;
            if let Some(t) = b.first_mut() {
                *t = ty;
            }
            if let Ok(p) = NdiscPacket::new_checked(&b[..]) {
                let _ = (p.flags(), p.target_addr(), p.options().count(), NdiscRepr::parse(&p));
                prop_assert!(p.options().count() <= b.len() / 8 + 1, "the walk is bounded");
            }
        }

        #[test]
        fn parse_emit_round_trips(r in repr(), pseudo in any::<u16>()) {
            let mut buf = vec![0xa5u8; r.buffer_len()];
            r.emit(&mut NdiscPacket::new_unchecked(&mut buf[..]), pseudo);
            prop_assert!(icmp::IcmpPacket::new_checked(&buf[..]).unwrap().verify_checksum(pseudo));
            prop_assert_eq!(NdiscRepr::parse(&NdiscPacket::new_checked(&buf[..]).unwrap()), Ok(r));
        }
    }
}
