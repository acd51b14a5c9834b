//! TAP offloads in userspace: the virtio-net header, checksum completion, segmentation of the
//! TCP superframes the kernel hands us once TSO is on (TX), and coalescing of received TCP
//! segments back into superframes written with one GSO header (RX, GRO in userspace).
//!
//! Why: with `TUNSETOFFLOAD` (CSUM, TSO4, TSO6) a container's TCP stack sends 64 KiB
//! superframes through veth and bridge to our TAP without segmenting them, so one `read`
//! replaces ~45, and on the far side one `writev` of a coalesced superframe replaces ~45
//! writes and lets bridge, veth and the receiving TCP stack handle one packet instead of 45.
//! On the wire every datagram still carries one ordinary, MTU-sized Ethernet frame with valid
//! checksums, so a lost datagram costs one segment (not a superframe), plain VXLAN stays
//! interoperable with kernel VXLAN, and a peer without offloads reads the same bytes.
//!
//! Headers are read and rewritten through [`crate::packet`]'s views and checksummed with its
//! one checksum. Everything here is pure and bounds-checked: malformed headers give an error
//! or "not coalescable", never a panic, and nothing allocates after construction.

use std::io::IoSlice;

pub use crate::device::VNET_HDR_LEN;
use crate::packet::tcp::{self, flags, TcpPacket};
use crate::packet::{
    checksum, ethernet, ip_proto, ipv4, ipv6, EtherType, EthernetFrame, Ipv4Packet, Ipv6Packet,
};
use crate::plane::NetId;

/// What weft asks the kernel for (`TUNSETOFFLOAD`): checksum and TCP segmentation offload
/// (no UDP: the kernel segments UDP GSO before it reaches the TAP).
pub const TAP_OFFLOADS: u32 = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN` (a flag on the TCP types).
pub const GSO_ECN: u8 = 0x80;

/// Where the IP header of an untagged frame starts.
const L3: usize = ethernet::HEADER_LEN;
/// The largest IP packet a 16-bit length field describes.
const MAX_IP_PACKET: usize = u16::MAX as usize;
/// Where the TCP checksum lies in the TCP header (`csum_offset` of a GSO header).
pub const TCP_CSUM_OFFSET: u16 = tcp::field::CHECKSUM.start as u16;

/// Byte ranges of the virtio-net header's fields (`struct virtio_net_hdr`).
mod vnet_field {
    use crate::packet::Field;
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Field = 2..4;
    pub const GSO_SIZE: Field = 4..6;
    pub const CSUM_START: Field = 6..8;
    pub const CSUM_OFFSET: Field = 8..10;
}

/// The virtio-net header in front of every frame on an `IFF_VNET_HDR` TAP (native byte
/// order: the TAP is never switched to `TUNSETVNETLE`/`BE`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM` and friends.
    pub flags: u8,
    /// `GSO_*`.
    pub gso_type: u8,
    /// Length of the headers (the kernel's value is only a hint on reads).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts (the L4 header).
    pub csum_start: u16,
    /// Where in the L4 header the checksum goes.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads a header.
    pub fn parse(b: &[u8; VNET_HDR_LEN]) -> Self {
        let u = |f: crate::packet::Field| u16::from_ne_bytes([b[f.start], b[f.start + 1]]);
        Self {
            flags: b[vnet_field::FLAGS],
            gso_type: b[vnet_field::GSO_TYPE],
            hdr_len: u(vnet_field::HDR_LEN),
            gso_size: u(vnet_field::GSO_SIZE),
            csum_start: u(vnet_field::CSUM_START),
            csum_offset: u(vnet_field::CSUM_OFFSET),
        }
    }

    /// Writes a header.
    pub fn emit(&self, b: &mut [u8; VNET_HDR_LEN]) {
        b[vnet_field::FLAGS] = self.flags;
        b[vnet_field::GSO_TYPE] = self.gso_type;
        b[vnet_field::HDR_LEN].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[vnet_field::GSO_SIZE].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[vnet_field::CSUM_START].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[vnet_field::CSUM_OFFSET].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }
}

/// Why an offloaded frame from the TAP could not be taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// The checksum start/offset lie outside the frame.
    #[error("checksum start or offset outside the frame")]
    BadCsumOffsets,
    /// A GSO type weft does not ask for (UDP fragmentation or segmentation).
    #[error("GSO type not asked for")]
    UnsupportedGso,
    /// The headers of a TSO superframe are not Ethernet + IPv4/IPv6 + TCP.
    #[error("TSO superframe headers are not Ethernet, IP and TCP")]
    BadTsoHeaders,
}

/// Completes a checksum the kernel left partial (`F_NEEDS_CSUM`): the field at
/// `start + offset` holds the pseudo-header sum; the sum from `start` to the end is folded in.
pub fn complete_csum(frame: &mut [u8], start: u16, offset: u16) -> Result<(), OffloadError> {
    let (start, field) = (usize::from(start), usize::from(start) + usize::from(offset));
    if start >= frame.len() || field + 2 > frame.len() {
        return Err(OffloadError::BadCsumOffsets);
    }
    let c = checksum::finish_transport(checksum::sum(&frame[start..]));
    frame[field..field + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Sets the IP length field for a TCP segment of `tcp_len` bytes behind the IP header `ip`
/// (exactly the header), fixes an IPv4 header checksum, and returns the pseudo-header sum.
fn set_ip_length(ip: &mut [u8], v6: bool, tcp_len: usize) -> u16 {
    if v6 {
        let mut ip = Ipv6Packet::new_unchecked(ip);
        ip.set_payload_len(tcp_len as u16);
        ip.pseudo_header(ip_proto::TCP, tcp_len as u32)
    } else {
        let mut ip = Ipv4Packet::new_unchecked(ip);
        ip.set_total_len((ip.header_len() + tcp_len) as u16);
        ip.fill_checksum();
        ip.pseudo_header(ip_proto::TCP, tcp_len as u32)
    }
}

// ---- TX: segmentation ----

/// How a TSO superframe splits into MTU-sized segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tso {
    v6: bool,
    /// Offset of the IP header (after one VLAN tag, if any).
    l3: usize,
    /// Offset of the TCP header.
    l4: usize,
    /// Length of all headers (Ethernet + IP + TCP).
    hlen: usize,
    mss: usize,
    payload: usize,
}

impl Tso {
    /// Checks a superframe's headers against its virtio-net header.
    pub fn plan(frame: &[u8], h: &VnetHdr) -> Result<Self, OffloadError> {
        Self::plan_prefix(frame, frame.len(), h)
    }

    /// As [`Tso::plan`], for a superframe of `total` bytes of which `frame` is a prefix that
    /// holds at least all its headers (the rest may lie elsewhere: a scattered read).
    pub fn plan_prefix(frame: &[u8], total: usize, h: &VnetHdr) -> Result<Self, OffloadError> {
        let bad = |_| OffloadError::BadTsoHeaders;
        let v6 = match h.gso_type & !GSO_ECN {
            GSO_TCPV4 => false,
            GSO_TCPV6 => true,
            _ => return Err(OffloadError::UnsupportedGso),
        };
        // One 802.1Q tag is allowed (a VLAN device inside the container keeps TSO).
        let (ethertype, l3) = EthernetFrame::new_checked(frame).and_then(|e| e.network()).map_err(bad)?;
        let l4 = match (v6, ethertype) {
            (false, EtherType::IPV4) => {
                let ip = Ipv4Packet::new_checked(&frame[l3..]).map_err(bad)?;
                if ip.version() != 4 || ip.protocol() != ip_proto::TCP {
                    return Err(OffloadError::BadTsoHeaders);
                }
                l3 + ip.header_len()
            }
            (true, EtherType::IPV6) => {
                let ip = Ipv6Packet::new_checked(&frame[l3..]).map_err(bad)?;
                if ip.version() != 6 || ip.next_header() != ip_proto::TCP {
                    return Err(OffloadError::BadTsoHeaders);
                }
                l3 + ipv6::HEADER_LEN
            }
            _ => return Err(OffloadError::BadTsoHeaders),
        };
        let hlen = l4 + TcpPacket::new_checked(&frame[l4..]).map_err(bad)?.header_len();
        let mss = usize::from(h.gso_size);
        if hlen >= total || hlen > frame.len() || mss == 0 {
            return Err(OffloadError::BadTsoHeaders);
        }
        Ok(Self { v6, l3, l4, hlen, mss, payload: total - hlen })
    }

    /// Length of the headers every segment carries (Ethernet + IP + TCP).
    pub fn header_len(&self) -> usize {
        self.hlen
    }

    /// Payload bytes per segment (the last may carry fewer).
    pub fn mss(&self) -> usize {
        self.mss
    }

    /// Length of segment `i` (< `count()`), headers included.
    pub fn segment_len(&self, i: usize) -> usize {
        self.hlen + self.mss.min(self.payload - i * self.mss)
    }

    /// Number of segments.
    pub fn count(&self) -> usize {
        self.payload.div_ceil(self.mss)
    }

    /// Length of the largest segment (headers included).
    pub fn max_segment_len(&self) -> usize {
        self.hlen + self.mss.min(self.payload)
    }

    /// Writes segment `i` (< `count()`) of `frame` into `out` with complete, valid headers
    /// and checksums; returns its length. `out` must hold `max_segment_len()` bytes.
    pub fn segment(&self, frame: &[u8], i: usize, out: &mut [u8]) -> usize {
        let off = i * self.mss;
        let len = self.segment_len(i);
        let hlen = self.hlen;
        let out = &mut out[..len];
        out[..hlen].copy_from_slice(&frame[..hlen]);
        out[hlen..].copy_from_slice(&frame[hlen + off..off + len]);
        self.fix(i, out, false);
        len
    }

    /// Whether a peer's receive path can hand these segments to its kernel with a partial
    /// checksum (`Features::PARTIAL_CSUM`): it finds the TCP header of untagged frames with
    /// option-less IPv4 or IPv6 headers, as its GRO does.
    pub fn partial_csum_ok(&self) -> bool {
        self.l3 == L3 && (self.v6 || self.l4 - self.l3 == ipv4::HEADER_LEN)
    }

    /// Makes `seg` segment `i` (< `count()`): it holds exactly `segment_len(i)` bytes, the
    /// superframe's headers followed by the segment's payload; lengths, IPv4 ID, sequence
    /// number, flags and checksums are set here. With `partial_csum` the TCP checksum holds
    /// only the pseudo-header sum (for a peer that accepts it; see
    /// [`Tso::partial_csum_ok`]): the payload is not read at all.
    pub fn fix(&self, i: usize, seg: &mut [u8], partial_csum: bool) {
        let off = i * self.mss;
        let last = off + seg.len() - self.hlen == self.payload;
        let (l3, l4) = (self.l3, self.l4);
        let (ip, segment) = seg[l3..].split_at_mut(l4 - l3);
        if !self.v6 {
            let mut ip = Ipv4Packet::new_unchecked(&mut *ip);
            ip.set_ident(ip.ident().wrapping_add(i as u16));
        }
        let pseudo = set_ip_length(ip, self.v6, segment.len());
        let mut tcp = TcpPacket::new_unchecked(segment);
        tcp.set_seq_number(tcp.seq_number().wrapping_add(off as u32));
        let mut f = tcp.flags();
        if !last {
            f &= !(flags::FIN | flags::PSH);
        }
        if i > 0 {
            f &= !flags::CWR;
        }
        tcp.set_flags(f);
        if partial_csum {
            tcp.set_partial_checksum(pseudo);
        } else {
            tcp.fill_checksum(pseudo);
        }
    }
}

// ---- RX: coalescing ----

/// Most flows coalesced at once per batch.
const MAX_FLOWS: usize = 8;
/// Most segments merged into one superframe.
pub const MAX_SEGMENTS: usize = 64;

/// Where a received frame lies: `bufs[buf][start..start + len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    /// Buffer index.
    pub buf: usize,
    /// Frame start.
    pub start: usize,
    /// Frame length.
    pub len: usize,
    /// A TCP segment whose checksum holds only the pseudo-header sum (from a peer with
    /// `Features::PARTIAL_CSUM`): written with `F_NEEDS_CSUM` when not coalesced.
    pub partial_csum: bool,
}

/// What a sink is given: one frame for network `net` as an I/O vector whose first slice is
/// the virtio-net header, standing for `frames` frames received.
pub trait Sink {
    /// Writes one frame.
    fn write(&mut self, net: NetId, iov: &[IoSlice<'_>], frames: usize);
    /// `n` (> 0) pure ACKs were left out since the last flush (see [`acks_more`]).
    fn acks_coalesced(&mut self, n: u64);
}

/// The parts of an untagged IPv4/IPv6 TCP segment that decide whether it can join another.
#[derive(Debug, Clone, Copy)]
struct TcpSeg {
    v6: bool,
    l4: usize,
    hlen: usize,
    /// Ethernet + IP total length (excludes Ethernet padding).
    frame_len: usize,
    seq: u32,
    flags: u8,
    payload: usize,
}

fn parse_tcp(f: &[u8]) -> Option<TcpSeg> {
    let eth = EthernetFrame::new_checked(f).ok()?;
    let (v6, l4, frame_len) = match eth.ethertype() {
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            // No options, TCP, not a fragment.
            let plain = ip.version() == 4 && ip.header_len() == ipv4::HEADER_LEN;
            if !plain || ip.protocol() != ip_proto::TCP || ip.is_fragment() {
                return None;
            }
            (false, L3 + ipv4::HEADER_LEN, L3 + usize::from(ip.total_len()))
        }
        EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.version() != 6 || ip.next_header() != ip_proto::TCP {
                return None;
            }
            (true, L3 + ipv6::HEADER_LEN, L3 + ipv6::HEADER_LEN + usize::from(ip.payload_len()))
        }
        _ => return None,
    };
    let tcp = TcpPacket::new_checked(f.get(l4..)?).ok()?;
    let hlen = l4 + tcp.header_len();
    if frame_len < hlen || frame_len > f.len() {
        return None;
    }
    Some(TcpSeg {
        v6,
        l4,
        hlen,
        frame_len,
        seq: tcp.seq_number(),
        flags: tcp.flags(),
        payload: frame_len - hlen,
    })
}

/// Only plain ACK (and PSH, which ends a superframe) segments with data are merged.
fn mergeable(t: &TcpSeg) -> bool {
    t.payload > 0 && t.flags & !flags::PSH == flags::ACK
}

/// A segment that only acknowledges: no data, no flag but ACK.
fn pure_ack(t: &TcpSeg) -> bool {
    t.payload == 0 && t.flags == flags::ACK
}

/// Whether the pure ACK `b` makes the pending pure ACK `a` of its connection (see
/// [`same_conn`]) redundant, so that only `b` need reach the stack: the same IP fields
/// (ECN bits included), sequence number, data offset and reserved bits, options of no kind
/// but NOP, EOL and timestamps (no SACK: duplicate and selective ACKs steer loss recovery),
/// and an acknowledgment number strictly after `a`'s (an equal one is a duplicate ACK or a
/// window update, both kept). `b`'s window and timestamps are the newer ones. This is the
/// conservative core of CAKE's ACK filter (`sch_cake.c`), applied only within one receive
/// batch.
fn acks_more(a: &[u8], b: &[u8], s: &TcpSeg, t: &TcpSeg) -> bool {
    use crate::packet::tcp::field as tcp;
    if !pure_ack(s) || !pure_ack(t) || s.hlen != t.hlen || s.seq != t.seq {
        return false;
    }
    let ip_same = same_ip_fields(a, b, s);
    let (ta, tb) = (&a[s.l4..s.hlen], &b[s.l4..s.hlen]);
    let ack = |h: &[u8]| u32::from_be_bytes(h[tcp::ACK_NUM].try_into().expect("4 bytes"));
    ip_same
        && ta[tcp::DATA_OFF] == tb[tcp::DATA_OFF]
        && (ack(tb).wrapping_sub(ack(ta)) as i32) > 0
        && only_timestamps(&ta[tcp::OPTIONS..])
        && only_timestamps(&tb[tcp::OPTIONS..])
}

/// Whether TCP options hold nothing but NOP, EOL and well-formed timestamps.
fn only_timestamps(mut opts: &[u8]) -> bool {
    const EOL: u8 = 0;
    const NOP: u8 = 1;
    const TIMESTAMPS: u8 = 8;
    while let Some(&kind) = opts.first() {
        match kind {
            EOL => return true,
            NOP => opts = &opts[1..],
            TIMESTAMPS if opts.get(1) == Some(&10) && opts.len() >= 10 => opts = &opts[10..],
            _ => return false,
        }
    }
    true
}

#[derive(Debug)]
struct Flow {
    net: NetId,
    first: Loc,
    seg: TcpSeg,
    /// Payload slices of the segments after the first: (buf, start, len).
    rest: Vec<(usize, usize, usize)>,
    next_seq: u32,
    total: usize,
    psh: bool,
    closed: bool,
    /// A pure ACK held (see [`acks_more`]), not a superframe.
    ack: bool,
}

/// Userspace GRO: merges consecutive segments of one TCP flow received in one batch into a
/// superframe written with a GSO header, and of consecutive pure ACKs of one connection in
/// one batch writes only the last (see [`acks_more`]); writes everything else through
/// unchanged. Frames are never reordered within a flow. Call [`Gro::flush`] before the
/// buffers are reused.
#[derive(Debug)]
pub struct Gro {
    flows: Vec<Flow>,
    active: usize,
    /// Pure ACKs left out since the last flush, because a later one of their connection
    /// made them redundant (told to the sink at the flush).
    acks_coalesced: u64,
}

impl Default for Gro {
    fn default() -> Self {
        let flow = || Flow {
            net: NetId(0),
            first: Loc { buf: 0, start: 0, len: 0, partial_csum: false },
            seg: TcpSeg { v6: false, l4: 0, hlen: 0, frame_len: 0, seq: 0, flags: 0, payload: 0 },
            rest: Vec::with_capacity(MAX_SEGMENTS),
            next_seq: 0,
            total: 0,
            psh: false,
            closed: false,
            ack: false,
        };
        Self { flows: (0..MAX_FLOWS).map(|_| flow()).collect(), active: 0, acks_coalesced: 0 }
    }
}

/// Whether two segments belong to one TCP connection on one link: the same MACs, addresses
/// and ports. Both were parsed with the same `v6` and `l4`.
fn same_conn(a: &[u8], b: &[u8], s: &TcpSeg) -> bool {
    use crate::packet::{ipv4::field as ip4, ipv6::field as ip6, tcp::field as tcp};
    let addrs = if s.v6 {
        L3 + ip6::SRC_ADDR.start..L3 + ip6::DST_ADDR.end
    } else {
        L3 + ip4::SRC_ADDR.start..L3 + ip4::DST_ADDR.end
    };
    let ports = s.l4 + tcp::SRC_PORT.start..s.l4 + tcp::DST_PORT.end;
    a[..ethernet::field::ETHERTYPE.start] == b[..ethernet::field::ETHERTYPE.start]
        && a[addrs.clone()] == b[addrs]
        && a[ports.clone()] == b[ports]
}

/// Whether two frames' IP headers (parsed as `s`) agree but for length, ID and checksum: the
/// traffic class or TOS (ECN bits included), flow label, flags, hop limit or TTL, protocol.
fn same_ip_fields(a: &[u8], b: &[u8], s: &TcpSeg) -> bool {
    use crate::packet::{ipv4::field as ip4, ipv6::field as ip6};
    let (ia, ib) = (&a[L3..s.l4], &b[L3..s.l4]);
    if s.v6 {
        ia[ip6::VER_TC_FLOW] == ib[ip6::VER_TC_FLOW]
            && ia[ip6::NXT_HDR..ip6::SRC_ADDR.start] == ib[ip6::NXT_HDR..ip6::SRC_ADDR.start]
    } else {
        ia[ip4::VER_IHL..ip4::LENGTH.start] == ib[ip4::VER_IHL..ip4::LENGTH.start]
            && ia[ip4::FLG_OFF.start..ip4::CHECKSUM.start] == ib[ip4::FLG_OFF.start..ip4::CHECKSUM.start]
    }
}

/// Whether a segment of a pending superframe's connection (see [`same_conn`], which has
/// compared MACs, addresses and ports) agrees with it everywhere else GRO needs: the IP
/// fields other than length, ID and checksum, ack, data offset, window and TCP options
/// (sequence number, flags and checksum are left out). Both hold `s.hlen` header bytes.
fn same_flow(a: &[u8], b: &[u8], s: &TcpSeg) -> bool {
    use crate::packet::tcp::field as tcp;
    let ip_same = same_ip_fields(a, b, s);
    let (ta, tb) = (&a[s.l4..s.hlen], &b[s.l4..s.hlen]);
    ip_same
        && ta[tcp::ACK_NUM.start..=tcp::DATA_OFF] == tb[tcp::ACK_NUM.start..=tcp::DATA_OFF]
        && ta[tcp::WIN_SIZE] == tb[tcp::WIN_SIZE]
        && ta[tcp::OPTIONS..] == tb[tcp::OPTIONS..]
}

impl Gro {
    /// Takes the frame at `at` (in `bufs`), for network `net`: merges it into a pending
    /// superframe, starts one, or writes it out (after whatever of its flow is pending).
    pub fn push<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        bufs: &mut [B],
        net: NetId,
        at: Loc,
        sink: &mut impl Sink,
    ) {
        let frame = &bufs[at.buf].as_ref()[at.start..at.start + at.len];
        let Some(t) = parse_tcp(frame) else {
            return write_frame(bufs, net, at, sink);
        };
        // The pending superframe of this connection, if any. A segment of it that cannot
        // join (its timestamp, ack or window moved on, or a gap) has that superframe written
        // first: one connection never has two pending, so nothing is written out of order.
        let found = self.flows[..self.active].iter().position(|f| {
            f.net == net
                && f.seg.v6 == t.v6
                && same_conn(&bufs[f.first.buf].as_ref()[f.first.start..], frame, &t)
        });
        if let Some(i) = found {
            let f = &mut self.flows[i];
            if f.ack {
                if acks_more(&bufs[f.first.buf].as_ref()[f.first.start..], frame, &f.seg, &t) {
                    f.first = at;
                    f.seg = t;
                    self.acks_coalesced += 1;
                    return;
                }
                self.flush_one(bufs, i, sink);
                return self.start(bufs, net, at, t, sink);
            }
            let fits = !f.closed
                && f.seg.hlen == t.hlen
                && same_flow(&bufs[f.first.buf].as_ref()[f.first.start..], frame, &t)
                && mergeable(&t)
                && t.seq == f.next_seq
                && t.payload <= f.seg.payload
                && f.rest.len() + 1 < MAX_SEGMENTS
                && f.seg.hlen - L3 + f.total + t.payload <= MAX_IP_PACKET;
            if fits {
                f.rest.push((at.buf, at.start + t.hlen, t.payload));
                f.next_seq = t.seq.wrapping_add(t.payload as u32);
                f.total += t.payload;
                // A short segment or PSH ends the superframe, as in the kernel's GRO.
                f.closed = t.payload < f.seg.payload || t.flags & flags::PSH != 0;
                f.psh |= t.flags & flags::PSH != 0;
                return;
            }
            self.flush_one(bufs, i, sink);
        }
        self.start(bufs, net, at, t, sink);
    }

    /// A segment with nothing of its connection pending: held as a superframe's first or a
    /// pure ACK, or written out.
    fn start<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        bufs: &mut [B],
        net: NetId,
        at: Loc,
        t: TcpSeg,
        sink: &mut impl Sink,
    ) {
        let ack = pure_ack(&t);
        if !ack && !mergeable(&t) {
            return write_frame(bufs, net, at, sink);
        }
        if self.active == MAX_FLOWS {
            self.flush_one(bufs, 0, sink);
        }
        let f = &mut self.flows[self.active];
        self.active += 1;
        f.net = net;
        // A held ACK is written as it came (with its Ethernet padding, if any).
        f.first = if ack { at } else { Loc { len: t.frame_len, ..at } };
        f.seg = t;
        f.rest.clear();
        f.next_seq = t.seq.wrapping_add(t.payload as u32);
        f.total = t.payload;
        f.psh = t.flags & flags::PSH != 0;
        f.closed = f.psh || ack;
        f.ack = ack;
    }

    /// Writes every pending superframe, in the order they were started.
    pub fn flush<B: AsRef<[u8]> + AsMut<[u8]>>(&mut self, bufs: &mut [B], sink: &mut impl Sink) {
        while self.active > 0 {
            self.flush_one(bufs, 0, sink);
        }
        if self.acks_coalesced > 0 {
            sink.acks_coalesced(std::mem::take(&mut self.acks_coalesced));
        }
    }

    fn flush_one<B: AsRef<[u8]> + AsMut<[u8]>>(&mut self, bufs: &mut [B], i: usize, sink: &mut impl Sink) {
        let f = &mut self.flows[i];
        if f.rest.is_empty() {
            write_frame(bufs, f.net, f.first, sink);
        } else {
            let s = f.seg;
            let Loc { buf, start, .. } = f.first;
            let headers = &mut bufs[buf].as_mut()[start..start + s.hlen];
            let (ip, tcp) = headers[L3..].split_at_mut(s.l4 - L3);
            let pseudo = set_ip_length(ip, s.v6, s.hlen - s.l4 + f.total);
            let mut tcp = TcpPacket::new_unchecked(tcp);
            if f.psh {
                tcp.set_flags(tcp.flags() | flags::PSH);
            }
            tcp.set_partial_checksum(pseudo);
            let h = VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: if s.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
                hdr_len: s.hlen as u16,
                gso_size: s.payload as u16,
                csum_start: s.l4 as u16,
                csum_offset: TCP_CSUM_OFFSET,
            };
            let mut head = [0u8; VNET_HDR_LEN];
            h.emit(&mut head);
            let mut iov = [IoSlice::new(&[]); MAX_SEGMENTS + 1];
            iov[0] = IoSlice::new(&head);
            iov[1] = IoSlice::new(&bufs[buf].as_ref()[start..start + s.frame_len]);
            for (slot, &(b, at, len)) in iov[2..].iter_mut().zip(&f.rest) {
                *slot = IoSlice::new(&bufs[b].as_ref()[at..at + len]);
            }
            let n = 1 + f.rest.len();
            sink.write(f.net, &iov[..n + 1], n);
        }
        // Keep the pending flows in arrival order: the later ones move down one place.
        self.flows[i..self.active].rotate_left(1);
        self.active -= 1;
    }
}

/// How the TCP or UDP checksum of a received plain VXLAN frame stands ([`check_transport`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// It verifies, is absent (UDP over IPv4 with 0), or is not one weft judges (a tagged
    /// frame, a fragment, another protocol, a truncated header): passed on as it is.
    Complete,
    /// The field holds only the pseudo-header sum: the sender said so (remote checksum
    /// offload), or a kernel sender left it partial for the device and a veth underlay
    /// carried it to us unfinished. The outer UDP checksum covered the frame. `start` is the
    /// transport header and `offset` the field's place in it, both as found in the frame.
    Partial { start: usize, offset: u16 },
    /// Neither, or a partial checksum claimed anywhere but at the frame's own TCP or UDP
    /// checksum: the frame was damaged, or its sender wants bytes of ours rewritten.
    Corrupt,
}

/// The TCP or UDP header of an untagged, unfragmented IPv4 or IPv6 frame, found from its own
/// headers: (protocol, transport header, end of the IP packet, checksum field offset,
/// source and destination addresses).
fn transport(f: &[u8]) -> Option<(u8, usize, usize, u16, std::ops::Range<usize>)> {
    let eth = EthernetFrame::new_checked(f).ok()?;
    let (proto, start, end, addrs) = match eth.ethertype() {
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.version() != 4 || ip.is_fragment() {
                return None;
            }
            let addrs = L3 + ipv4::field::SRC_ADDR.start..L3 + ipv4::field::DST_ADDR.end;
            (ip.protocol(), L3 + ip.header_len(), L3 + usize::from(ip.total_len()), addrs)
        }
        EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            let start = L3 + ipv6::HEADER_LEN;
            let addrs = L3 + ipv6::field::SRC_ADDR.start..L3 + ipv6::field::DST_ADDR.end;
            (ip.next_header(), start, start + usize::from(ip.payload_len()), addrs)
        }
        _ => return None,
    };
    let offset = match proto {
        ip_proto::TCP => TCP_CSUM_OFFSET,
        ip_proto::UDP => crate::packet::udp::field::CHECKSUM.start as u16,
        _ => return None,
    };
    (end <= f.len() && start + usize::from(offset) + 2 <= end).then_some((proto, start, end, offset, addrs))
}

/// Judges the TCP or UDP checksum of a received frame (see [`Received`]). `claimed`: the
/// partial checksum's start and offset a remote checksum offload header names, taken only
/// where they are the frame's own transport checksum.
pub fn check_transport(f: &[u8], claimed: Option<(usize, u16)>) -> Received {
    let Some((proto, start, end, offset, addrs)) = transport(f) else {
        return if claimed.is_some() { Received::Corrupt } else { Received::Complete };
    };
    if let Some(c) = claimed {
        return if c == (start, offset) { Received::Partial { start, offset } } else { Received::Corrupt };
    }
    let field = start + usize::from(offset);
    let value = u16::from_be_bytes([f[field], f[field + 1]]);
    if proto == ip_proto::UDP && value == 0 && addrs.len() == 8 {
        return Received::Complete;
    }
    let pseudo = checksum::pseudo_header(&f[addrs], proto, (end - start) as u32);
    if checksum::verify(checksum::add(pseudo, checksum::sum(&f[start..end]))) {
        Received::Complete
    } else if value == pseudo {
        Received::Partial { start, offset }
    } else {
        Received::Corrupt
    }
}

/// Where the TCP header of a segment that [`Tso::partial_csum_ok`] accepted starts: behind an
/// untagged Ethernet header and an IPv6 or option-less IPv4 header.
pub fn untagged_l4(frame: &[u8]) -> usize {
    let v6 = EthernetFrame::new_checked(frame).is_ok_and(|e| e.ethertype() == EtherType::IPV6);
    L3 + if v6 { ipv6::HEADER_LEN } else { ipv4::HEADER_LEN }
}

/// Whether a checksum left partial at `offset` behind `start` (remote checksum offload) is the
/// TCP checksum of `frame` where GRO and [`write_frame`] find it: such a frame can go to the
/// kernel with `F_NEEDS_CSUM` as it is.
pub fn is_partial_tcp_at(frame: &[u8], start: usize, offset: u16) -> bool {
    offset == TCP_CSUM_OFFSET && parse_tcp(frame).is_some_and(|t| t.l4 == start)
}

/// Writes one frame unchanged: with an all-zero virtio-net header, or for a TCP segment whose
/// checksum is partial, one that asks the kernel to treat it so (`F_NEEDS_CSUM`). The TCP
/// header is found here, never taken from the sender; a partial segment it cannot find stays
/// unmarked, and the kernel drops it for its checksum.
pub fn write_frame<B: AsRef<[u8]> + AsMut<[u8]>>(bufs: &mut [B], net: NetId, at: Loc, sink: &mut impl Sink) {
    let frame = &bufs[at.buf].as_ref()[at.start..at.start + at.len];
    let mut head = [0u8; VNET_HDR_LEN];
    if at.partial_csum {
        if let Some(t) = parse_tcp(frame) {
            let h = VnetHdr {
                flags: F_NEEDS_CSUM,
                csum_start: t.l4 as u16,
                csum_offset: TCP_CSUM_OFFSET,
                ..Default::default()
            };
            h.emit(&mut head);
        }
    }
    sink.write(net, &[IoSlice::new(&head), IoSlice::new(frame)], 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{EthernetRepr, Ipv4Repr, Ipv6Repr};
    use proptest::prelude::*;

    /// Where the TCP header of an untagged IPv4 frame without options starts.
    const L4_V4: usize = L3 + ipv4::HEADER_LEN;
    /// Bytes in front of a received frame (the tunnel headers it was decrypted behind).
    const HEADROOM: usize = 20;

    /// A TCP segment's checksum verifies against its IP header's pseudo-header.
    fn tcp_csum_ok(f: &[u8]) -> bool {
        let t = parse_tcp(f).expect("tcp");
        let len = (t.frame_len - t.l4) as u32;
        let pseudo = if t.v6 {
            Ipv6Packet::new_checked(&f[L3..]).unwrap().pseudo_header(ip_proto::TCP, len)
        } else {
            Ipv4Packet::new_checked(&f[L3..]).unwrap().pseudo_header(ip_proto::TCP, len)
        };
        TcpPacket::new_checked(&f[t.l4..t.frame_len]).unwrap().verify_checksum(pseudo)
    }

    fn ipv4_csum_ok(f: &[u8]) -> bool {
        Ipv4Packet::new_checked(&f[L3..]).unwrap().verify_checksum()
    }

    /// An Ethernet + IP + TCP (with 12 bytes of timestamp-like options) superframe carrying
    /// `payload`, with the TCP checksum left as the kernel hands it over (not computed).
    fn superframe(v6: bool, payload: &[u8], tcp_flags: u8) -> Vec<u8> {
        const TCP_LEN: usize = tcp::HEADER_LEN + 12;
        let ip_len = if v6 { ipv6::HEADER_LEN } else { ipv4::HEADER_LEN };
        let mut f = vec![0u8; L3 + ip_len + TCP_LEN];
        f.extend_from_slice(payload);
        let ethertype = if v6 { EtherType::IPV6 } else { EtherType::IPV4 };
        let eth = EthernetRepr { src_addr: [2, 0, 0, 0, 0, 1], dst_addr: [2, 0, 0, 0, 0, 2], ethertype };
        eth.emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
        let tcp_len = (TCP_LEN + payload.len()) as u16;
        if v6 {
            let ip = Ipv6Repr {
                src_addr: "fd00::1".parse().unwrap(),
                dst_addr: "fd00::2".parse().unwrap(),
                next_header: ip_proto::TCP,
                payload_len: tcp_len,
                hop_limit: 64,
            };
            ip.emit(&mut Ipv6Packet::new_unchecked(&mut f[L3..]));
        } else {
            let ip = Ipv4Repr {
                src_addr: [10, 42, 1, 2].into(),
                dst_addr: [10, 42, 2, 2].into(),
                protocol: ip_proto::TCP,
                payload_len: tcp_len,
                hop_limit: 64,
                ident: 0xfff0,
                dont_frag: true,
            };
            ip.emit(&mut Ipv4Packet::new_unchecked(&mut f[L3..]));
        }
        let mut t = TcpPacket::new_unchecked(&mut f[L3 + ip_len..]);
        t.set_src_port(40000);
        t.set_dst_port(5201);
        t.set_seq_number(0xffff_ff00);
        t.set_ack_number(77);
        t.set_header_len(TCP_LEN);
        t.set_flags(tcp_flags);
        t.set_window_len(500);
        f[L3 + ip_len + tcp::field::OPTIONS..][..12].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        f
    }

    /// The TCP view of an untagged IPv4 frame without options.
    fn tcp_v4(f: &mut [u8]) -> TcpPacket<&mut [u8]> {
        TcpPacket::new_unchecked(&mut f[L4_V4..])
    }

    /// What was written, and the pure ACKs left out.
    struct Collect(Vec<(NetId, Vec<u8>, usize)>, u64);
    impl Sink for Collect {
        fn write(&mut self, net: NetId, iov: &[IoSlice<'_>], frames: usize) {
            self.0.push((net, iov.iter().flat_map(|s| s.iter().copied()).collect(), frames));
        }
        fn acks_coalesced(&mut self, n: u64) {
            self.1 += n;
        }
    }

    /// Segments a superframe and lays each segment out as a received buffer would hold it
    /// (after [`HEADROOM`] bytes).
    fn segments(f: &[u8], mss: u16, v6: bool) -> Vec<Vec<u8>> {
        let h =
            VnetHdr { gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 }, gso_size: mss, ..Default::default() };
        let plan = Tso::plan(f, &h).unwrap();
        (0..plan.count())
            .map(|i| {
                let mut out = vec![0u8; HEADROOM + plan.max_segment_len()];
                let n = plan.segment(f, i, &mut out[HEADROOM..]);
                out.truncate(HEADROOM + n);
                out
            })
            .collect()
    }

    /// Pushes every frame of `bufs` (each behind HEADROOM) through a fresh GRO for `net`
    /// and flushes it; returns what was written.
    fn gro_all(bufs: &mut [Vec<u8>], net: NetId) -> Collect {
        let mut gro = Gro::default();
        let mut sink = Collect(Vec::new(), 0);
        push_all(&mut gro, bufs, net, &mut sink);
        gro.flush(bufs, &mut sink);
        sink
    }

    /// Pushes every frame of `bufs` (each behind HEADROOM) through `gro` for `net`, unflushed.
    fn push_all(gro: &mut Gro, bufs: &mut [Vec<u8>], net: NetId, sink: &mut Collect) {
        for i in 0..bufs.len() {
            let len = bufs[i].len() - HEADROOM;
            gro.push(bufs, net, Loc { buf: i, start: HEADROOM, len, partial_csum: false }, sink);
        }
    }

    #[test]
    fn vnet_header_round_trips() {
        let h =
            VnetHdr { flags: 1, gso_type: 4, hdr_len: 86, gso_size: 1368, csum_start: 54, csum_offset: 16 };
        let mut b = [0xa5u8; VNET_HDR_LEN];
        h.emit(&mut b);
        assert_eq!(VnetHdr::parse(&b), h);
        let native = |v: u16| v.to_ne_bytes();
        let expect = [[1, 4], native(86), native(1368), native(54), native(16)].concat();
        assert_eq!(&b[..], &expect[..]);
    }

    #[test]
    fn segmentation_gives_valid_segments_that_add_up() {
        for v6 in [false, true] {
            let payload: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
            let f = superframe(v6, &payload, flags::ACK | flags::PSH | flags::CWR);
            let segs = segments(&f, 1368, v6);
            assert_eq!(segs.len(), 4);
            let mut got = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                let s = &s[HEADROOM..];
                let t = parse_tcp(s).unwrap();
                assert!(tcp_csum_ok(s), "segment {i} checksum");
                assert!(v6 || ipv4_csum_ok(s), "segment {i} IPv4 header checksum");
                assert_eq!(t.seq, 0xffff_ff00u32.wrapping_add(1368 * i as u32), "sequence wraps");
                assert_eq!(t.flags & flags::PSH != 0, i == 3, "PSH only on the last");
                assert_eq!(t.flags & flags::CWR != 0, i == 0, "CWR only on the first");
                if !v6 {
                    let ident = Ipv4Packet::new_checked(&s[L3..]).unwrap().ident();
                    assert_eq!(ident, 0xfff0u16.wrapping_add(i as u16));
                }
                got.extend_from_slice(&s[t.hlen..t.frame_len]);
            }
            assert_eq!(got, payload);
        }
    }

    /// What the worker does with a superframe read pre-segmented (`super::scatter`): the
    /// payload lands in each slot behind a gap, the headers are copied into the gaps and fixed
    /// there. Every segment must equal the one segmentation by copying makes.
    #[test]
    fn segments_fixed_where_they_were_read_equal_copied_segments() {
        use super::super::scatter::Layout;
        for (v6, len, mss, fo, tail) in
            [(false, 60_000, 1356, 20, 16), (true, 4_000, 1336, 8, 0), (false, 1_357, 1356, 20, 16)]
        {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let f = superframe(v6, &payload, flags::ACK | flags::PSH | flags::FIN);
            let h = VnetHdr {
                gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
                gso_size: mss,
                ..Default::default()
            };
            let plan = Tso::plan(&f, &h).unwrap();
            let l = Layout::segmented(64, fo, plan.header_len(), plan.mss(), tail).unwrap();
            // The read: the frame's bytes, piece after piece.
            let mut arena = vec![0u8; 64 + l.arena_len(2000)];
            let mut off = 0;
            for j in 0..=l.more {
                let r = l.piece(j);
                let n = r.len().min(f.len() - off);
                arena[r.start..r.start + n].copy_from_slice(&f[off..off + n]);
                off += n;
            }
            assert_eq!(off, f.len());
            let headers = f[..plan.header_len()].to_vec();
            for i in (0..plan.count()).rev() {
                let at = l.frame_at(i);
                let n = plan.segment_len(i);
                arena[at..at + plan.header_len()].copy_from_slice(&headers);
                plan.fix(i, &mut arena[at..at + n], false);
                let mut copied = vec![0u8; plan.max_segment_len()];
                let m = plan.segment(&f, i, &mut copied);
                assert_eq!(&arena[at..at + n], &copied[..m], "segment {i} of {len} bytes, v6 {v6}");
                assert!(tcp_csum_ok(&arena[at..at + n]));
            }
        }
    }

    /// A segment whose checksum a peer left partial (`Features::PARTIAL_CSUM`) is written
    /// with `F_NEEDS_CSUM` at the TCP header we found, and completing it as the kernel does
    /// gives a valid segment; a frame we find no TCP header in is written unmarked (and its
    /// kernel checks its checksum); a full-checksum segment is written unmarked.
    #[test]
    fn partial_checksum_segments_are_written_for_the_kernel_to_finish() {
        for v6 in [false, true] {
            let f = superframe(v6, &[7u8; 3000], flags::ACK);
            let h = VnetHdr {
                gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
                gso_size: 1400,
                ..Default::default()
            };
            let plan = Tso::plan(&f, &h).unwrap();
            assert!(plan.partial_csum_ok());
            let mut seg = vec![0u8; plan.max_segment_len()];
            let n = plan.segment(&f, 0, &mut seg);
            seg.truncate(n);
            plan.fix(0, &mut seg, true);
            assert!(!tcp_csum_ok(&seg), "the payload is not summed");
            for (partial, marked) in [(true, true), (false, false)] {
                let mut bufs = [seg.clone()];
                let mut sink = Collect(Vec::new(), 0);
                write_frame(
                    &mut bufs,
                    NetId(0),
                    Loc { buf: 0, start: 0, len: n, partial_csum: partial },
                    &mut sink,
                );
                let (_, out, _) = &sink.0[0];
                let h = VnetHdr::parse(out[..VNET_HDR_LEN].try_into().unwrap());
                assert_eq!(h.flags == F_NEEDS_CSUM, marked);
                if marked {
                    let l4 = if v6 { L3 + ipv6::HEADER_LEN } else { L4_V4 };
                    assert_eq!(
                        (h.csum_start as usize, h.csum_offset, h.gso_type),
                        (l4, TCP_CSUM_OFFSET, GSO_NONE)
                    );
                    let mut done = out[VNET_HDR_LEN..].to_vec();
                    complete_csum(&mut done, h.csum_start, h.csum_offset).unwrap();
                    assert!(tcp_csum_ok(&done));
                }
            }
        }
        // Not TCP (an ARP-sized frame of zeroes): unmarked, whatever the sender said.
        let mut bufs = [vec![0u8; 60]];
        let mut sink = Collect(Vec::new(), 0);
        write_frame(&mut bufs, NetId(0), Loc { buf: 0, start: 0, len: 60, partial_csum: true }, &mut sink);
        assert_eq!(sink.0[0].1[..VNET_HDR_LEN], [0; VNET_HDR_LEN]);
    }

    #[test]
    fn vlan_tagged_superframes_are_segmented() {
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let plain = superframe(false, &payload, flags::ACK);
        let at = ethernet::field::ETHERTYPE.start;
        let mut f = plain[..at].to_vec();
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        f.extend_from_slice(&plain[at..]);
        let h = VnetHdr { gso_type: GSO_TCPV4, gso_size: 1000, ..Default::default() };
        let plan = Tso::plan(&f, &h).unwrap();
        let mut got = Vec::new();
        for i in 0..plan.count() {
            let mut out = vec![0u8; plan.max_segment_len()];
            let n = plan.segment(&f, i, &mut out);
            // Untag to check the segment with the untagged helpers.
            let mut u = out[..at].to_vec();
            u.extend_from_slice(&out[at + ethernet::VLAN_TAG_LEN..n]);
            assert!(tcp_csum_ok(&u) && ipv4_csum_ok(&u), "segment {i}");
            got.extend_from_slice(&u[parse_tcp(&u).unwrap().hlen..]);
        }
        assert_eq!(got, payload);
    }

    #[test]
    fn tso_plan_rejects_what_it_cannot_split() {
        let f = superframe(false, &[1; 3000], flags::ACK);
        let h = |t, mss| VnetHdr { gso_type: t, gso_size: mss, ..Default::default() };
        assert_eq!(Tso::plan(&f, &h(3, 1000)), Err(OffloadError::UnsupportedGso));
        assert_eq!(Tso::plan(&f, &h(GSO_TCPV6, 1000)), Err(OffloadError::BadTsoHeaders));
        assert_eq!(Tso::plan(&f, &h(GSO_TCPV4, 0)), Err(OffloadError::BadTsoHeaders));
        assert_eq!(Tso::plan(&f[..60], &h(GSO_TCPV4, 1000)), Err(OffloadError::BadTsoHeaders));
        assert!(Tso::plan(&f, &h(GSO_TCPV4 | GSO_ECN, 1000)).is_ok());
        let mut no_data = superframe(false, &[], flags::ACK);
        assert_eq!(Tso::plan(&no_data, &h(GSO_TCPV4, 1000)), Err(OffloadError::BadTsoHeaders));
        tcp_v4(&mut no_data).set_header_len(16);
        assert_eq!(Tso::plan(&no_data, &h(GSO_TCPV4, 1000)), Err(OffloadError::BadTsoHeaders));
        assert_eq!(complete_csum(&mut f.clone(), L4_V4 as u16, 4000), Err(OffloadError::BadCsumOffsets));
    }

    #[test]
    fn partial_checksums_are_completed() {
        let mut f = superframe(false, &[9; 700], flags::ACK);
        let tcp_len = (f.len() - L4_V4) as u32;
        let p = Ipv4Packet::new_checked(&f[L3..]).unwrap().pseudo_header(ip_proto::TCP, tcp_len);
        tcp_v4(&mut f).set_partial_checksum(p);
        complete_csum(&mut f, L4_V4 as u16, TCP_CSUM_OFFSET).unwrap();
        assert!(tcp_csum_ok(&f));
    }

    /// Received checksums are told apart: verified, partial (a kernel sender's, unfinished
    /// by veth: the field holds the pseudo-header sum) and damaged; a UDP-over-IPv4 checksum
    /// of 0 is none, and what weft does not judge passes.
    #[test]
    fn received_checksums_are_judged() {
        for v6 in [false, true] {
            let l4 = if v6 { L3 + ipv6::HEADER_LEN } else { L4_V4 };
            let mut f =
                segments(&superframe(v6, &[7; 900], flags::ACK), 1400, v6).remove(0).split_off(HEADROOM);
            assert_eq!(check_transport(&f, None), Received::Complete, "v6 {v6}");
            f[l4 + 40] ^= 1;
            assert_eq!(check_transport(&f, None), Received::Corrupt, "v6 {v6}");
            f[l4 + 40] ^= 1;
            let len = (f.len() - l4) as u32;
            let p = if v6 {
                Ipv6Packet::new_checked(&f[L3..]).unwrap().pseudo_header(ip_proto::TCP, len)
            } else {
                Ipv4Packet::new_checked(&f[L3..]).unwrap().pseudo_header(ip_proto::TCP, len)
            };
            TcpPacket::new_unchecked(&mut f[l4..]).set_partial_checksum(p);
            assert_eq!(check_transport(&f, None), Received::Partial { start: l4, offset: TCP_CSUM_OFFSET });
            assert!(is_partial_tcp_at(&f, l4, TCP_CSUM_OFFSET));
            // UDP: the same frame as protocol 17 with a UDP header's checksum at 6.
            let mut u = f.clone();
            if v6 {
                Ipv6Packet::new_unchecked(&mut u[L3..]).set_next_header(ip_proto::UDP);
            } else {
                let mut ip = Ipv4Packet::new_unchecked(&mut u[L3..]);
                ip.set_protocol(ip_proto::UDP);
                ip.fill_checksum();
            }
            u[l4 + 6..l4 + 8].fill(0);
            let want = if v6 { Received::Corrupt } else { Received::Complete };
            assert_eq!(check_transport(&u, None), want, "UDP checksum 0, v6 {v6}");
            let p = if v6 {
                Ipv6Packet::new_checked(&u[L3..]).unwrap().pseudo_header(ip_proto::UDP, len)
            } else {
                Ipv4Packet::new_checked(&u[L3..]).unwrap().pseudo_header(ip_proto::UDP, len)
            };
            u[l4 + 6..l4 + 8].copy_from_slice(&p.to_be_bytes());
            assert_eq!(check_transport(&u, None), Received::Partial { start: l4, offset: 6 });
            assert!(!is_partial_tcp_at(&u, l4, 6));
            complete_csum(&mut u, l4 as u16, 6).unwrap();
            assert_eq!(check_transport(&u, None), Received::Complete, "completed UDP, v6 {v6}");
            // Truncated or cut short: not judged.
            assert_eq!(check_transport(&f[..l4 + 10], None), Received::Complete);
            assert_eq!(check_transport(&f[..10], None), Received::Complete);
        }
    }

    /// A remote checksum offload header is believed only where it names the frame's own TCP
    /// or UDP checksum: a rogue remote pointing it at the IP header would otherwise have us
    /// write a sum of its choosing over addresses or ports the policy has already judged.
    #[test]
    fn rogue_remote_checksum_offload_naming_other_bytes_is_refused() {
        for v6 in [false, true] {
            let l4 = if v6 { L3 + ipv6::HEADER_LEN } else { L4_V4 };
            let f = segments(&superframe(v6, &[7; 900], flags::ACK), 1400, v6).remove(0).split_off(HEADROOM);
            let own = Received::Partial { start: l4, offset: TCP_CSUM_OFFSET };
            assert_eq!(check_transport(&f, Some((l4, TCP_CSUM_OFFSET))), own, "v6 {v6}");
            for claim in [(L3, TCP_CSUM_OFFSET), (L3 + 8, 6), (l4, 6), (l4 + 2, TCP_CSUM_OFFSET), (254, 6)] {
                assert_eq!(check_transport(&f, Some(claim)), Received::Corrupt, "v6 {v6}, claim {claim:?}");
            }
            // A frame weft finds no transport checksum in takes no claim at all.
            let mut arp = f.clone();
            arp[12..14].copy_from_slice(&[0x08, 0x06]);
            assert_eq!(check_transport(&arp, Some((l4, TCP_CSUM_OFFSET))), Received::Corrupt);
            assert_eq!(check_transport(&arp, None), Received::Complete);
        }
    }

    #[test]
    fn segments_coalesce_back_into_one_superframe() {
        for v6 in [false, true] {
            let payload: Vec<u8> = (0..6000u32).map(|i| (i * 13 % 256) as u8).collect();
            let f = superframe(v6, &payload, flags::ACK | flags::PSH);
            let mut bufs = segments(&f, 1400, v6);
            let mut gro = Gro::default();
            let mut sink = Collect(Vec::new(), 0);
            push_all(&mut gro, &mut bufs, NetId(3), &mut sink);
            assert!(sink.0.is_empty(), "held until flushed");
            gro.flush(&mut bufs, &mut sink);
            assert_eq!(sink.0.len(), 1);
            let (net, out, frames) = &sink.0[0];
            assert_eq!((*net, *frames), (NetId(3), 5));
            let h = VnetHdr::parse(out[..VNET_HDR_LEN].try_into().unwrap());
            assert_eq!(h.gso_type, if v6 { GSO_TCPV6 } else { GSO_TCPV4 });
            assert_eq!((h.flags, h.gso_size, h.csum_offset), (F_NEEDS_CSUM, 1400, TCP_CSUM_OFFSET));
            let sf = &out[VNET_HDR_LEN..];
            let t = parse_tcp(sf).unwrap();
            assert_eq!((h.hdr_len as usize, h.csum_start as usize), (t.hlen, t.l4));
            assert_eq!(&sf[t.hlen..], &payload[..], "payload intact and in order");
            assert_eq!(t.flags, flags::ACK | flags::PSH);
            assert!(v6 || ipv4_csum_ok(sf));
            // The partial checksum: completing it gives a segment that verifies.
            let mut done = sf.to_vec();
            complete_csum(&mut done, t.l4 as u16, TCP_CSUM_OFFSET).unwrap();
            assert!(tcp_csum_ok(&done));
        }
    }

    #[test]
    fn gaps_other_flows_and_control_segments_are_not_merged_across() {
        let payload = vec![5u8; 4000];
        let f = superframe(false, &payload, flags::ACK);
        let segs = segments(&f, 1000, false);
        // Order: s0, s2 (gap), a FIN of the flow, a non-TCP frame, s3.
        let mut fin = segs[1].clone();
        let mut t = tcp_v4(&mut fin[HEADROOM..]);
        t.set_flags(t.flags() | flags::FIN);
        let arp = {
            let mut a = vec![0u8; HEADROOM + L3 + crate::packet::arp::PACKET_LEN];
            EthernetFrame::new_unchecked(&mut a[HEADROOM..]).set_ethertype(EtherType::ARP);
            a
        };
        let mut bufs = vec![segs[0].clone(), segs[2].clone(), fin, arp, segs[3].clone()];
        let sink = gro_all(&mut bufs, NetId(0));
        let frames: Vec<usize> = sink.0.iter().map(|s| s.2).collect();
        assert_eq!(frames.iter().sum::<usize>(), 5, "every frame written once");
        // s0 alone (s2 does not follow it), then s2 flushed by the FIN, the FIN, the ARP,
        // and s3 (after the FIN's flow was written, s3 starts anew).
        assert_eq!(sink.0[0].1[VNET_HDR_LEN..], segs[0][HEADROOM..]);
        assert!(sink.0.iter().all(|s| s.1[..VNET_HDR_LEN] == [0; VNET_HDR_LEN]), "nothing merged");
    }

    #[test]
    fn many_flows_stay_in_order_within_each() {
        // Interleave 10 flows (more than MAX_FLOWS) of 3 segments each.
        let mut bufs = Vec::new();
        let mut expect = Vec::new();
        for flow in 0..10u8 {
            let payload: Vec<u8> = (0..3000u32).map(|i| (i as u8) ^ flow).collect();
            let mut f = superframe(false, &payload, flags::ACK);
            tcp_v4(&mut f).set_src_port(u16::from(flow));
            expect.push(payload);
            bufs.push(segments(&f, 1000, false));
        }
        let mut flat = Vec::new();
        for i in 0..3 {
            for b in &bufs {
                flat.push(b[i].clone());
            }
        }
        let sink = gro_all(&mut flat, NetId(1));
        let mut got: Vec<Vec<u8>> = vec![Vec::new(); 10];
        for (_, out, _) in &sink.0 {
            let sf = &out[VNET_HDR_LEN..];
            let t = parse_tcp(sf).unwrap();
            let flow = TcpPacket::new_checked(&sf[t.l4..]).unwrap().src_port();
            got[usize::from(flow)].extend_from_slice(&sf[t.hlen..]);
        }
        assert_eq!(got, expect);
    }

    #[test]
    fn a_connection_whose_headers_change_mid_batch_is_written_in_order() {
        // One connection, 6 segments; from the 4th on its TCP timestamp (or ack, or window)
        // changes, as it does every millisecond of a transfer. Those segments cannot join the
        // pending superframe, and the kernel's TCP must still get every byte in order:
        // reordering costs a spurious retransmission and a congestion window cut.
        type Change = fn(&mut [u8]);
        let changes: [(&str, Change); 3] = [
            ("timestamp", |h| h[tcp::HEADER_LEN + 7] = 9),
            ("ack", |h| TcpPacket::new_unchecked(h).set_ack_number(78)),
            ("window", |h| TcpPacket::new_unchecked(h).set_window_len(501)),
        ];
        for (what, change) in changes {
            let payload: Vec<u8> = (0..6000u32).map(|i| (i * 7 % 251) as u8).collect();
            let f = superframe(false, &payload, flags::ACK);
            let mut bufs = segments(&f, 1000, false);
            for b in &mut bufs[3..] {
                change(&mut b[HEADROOM + L4_V4..][..tcp::HEADER_LEN + 12]);
            }
            let sink = gro_all(&mut bufs, NetId(1));
            let mut got = Vec::new();
            for (_, out, _) in &sink.0 {
                let sf = &out[VNET_HDR_LEN..];
                got.extend_from_slice(&sf[parse_tcp(sf).unwrap().hlen..]);
            }
            assert!(got == payload, "{what}: the payload was not written in order");
            assert_eq!(sink.0.len(), 2, "{what}: two superframes, split where the headers change");
        }
    }

    /// A pure ACK of the test connection acknowledging `ack`, with `tcp_flags` and, when
    /// `sack`, a SACK block where the timestamps were, behind HEADROOM.
    fn ack_frame(v6: bool, ack: u32, tcp_flags: u8, sack: bool) -> Vec<u8> {
        let mut f = superframe(v6, b"", tcp_flags);
        let l4 = untagged_l4(&f);
        TcpPacket::new_unchecked(&mut f[l4..]).set_ack_number(ack);
        if sack {
            f[l4 + tcp::field::OPTIONS..][..12].copy_from_slice(&[1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        }
        [vec![0u8; HEADROOM], f].concat()
    }

    /// The acknowledgment numbers of what was written, as (ack, frames).
    fn acks_written(sink: &Collect) -> Vec<u32> {
        sink.0
            .iter()
            .map(|(_, f, _)| {
                let f = &f[VNET_HDR_LEN..];
                TcpPacket::new_checked(&f[untagged_l4(f)..]).unwrap().ack_number()
            })
            .collect()
    }

    #[test]
    fn of_a_run_of_pure_acks_only_the_last_is_written() {
        for v6 in [false, true] {
            let mut bufs: Vec<_> = [10, 20, 30, 40].map(|a| ack_frame(v6, a, flags::ACK, false)).into();
            let mut gro = Gro::default();
            let mut sink = Collect(Vec::new(), 0);
            push_all(&mut gro, &mut bufs, NetId(0), &mut sink);
            assert!(sink.0.is_empty(), "held until the batch ends");
            gro.flush(&mut bufs, &mut sink);
            assert_eq!(acks_written(&sink), [40]);
            assert_eq!(sink.1, 3);
            // Written as it came.
            assert_eq!(&sink.0[0].1[VNET_HDR_LEN..], &bufs[3][HEADROOM..]);
        }
    }

    #[test]
    fn acks_that_steer_loss_recovery_or_congestion_control_are_all_written() {
        let cases: [(&str, [Vec<u8>; 3]); 5] = [
            ("duplicate ACKs", [10, 10, 10].map(|a| ack_frame(false, a, flags::ACK, false))),
            ("SACK", [10, 20, 30].map(|a| ack_frame(false, a, flags::ACK, true))),
            ("ECN echo", [10, 20, 30].map(|a| ack_frame(false, a, flags::ACK | flags::ECE, false))),
            ("going back", [30, 20, 10].map(|a| ack_frame(false, a, flags::ACK, false))),
            ("FIN", [10, 20, 30].map(|a| ack_frame(false, a, flags::ACK | flags::FIN, false))),
        ];
        for (what, bufs) in cases {
            let mut bufs = bufs.to_vec();
            let sink = gro_all(&mut bufs, NetId(0));
            assert_eq!(sink.0.len(), 3, "{what}: every ACK written");
        }
        // An ECN-marked ACK (CE in the IP header) does not stand for an unmarked one.
        let mut bufs = vec![ack_frame(false, 10, flags::ACK, false), ack_frame(false, 20, flags::ACK, false)];
        bufs[1][HEADROOM + L3 + 1] |= 3; // the ECN field of the second byte
        assert_eq!(gro_all(&mut bufs, NetId(0)).0.len(), 2, "ECN bits differ");
    }

    #[test]
    fn an_ack_is_left_out_only_for_a_later_one_of_its_own_connection_and_network() {
        // Another port, another source address, another network: nothing is left out.
        let mut other_port = ack_frame(false, 20, flags::ACK, false);
        TcpPacket::new_unchecked(&mut other_port[HEADROOM + L4_V4..]).set_src_port(40001);
        let mut other_src = ack_frame(false, 20, flags::ACK, false);
        Ipv4Packet::new_unchecked(&mut other_src[HEADROOM + L3..]).set_src_addr([10, 42, 9, 9].into());
        for later in [other_port, other_src] {
            let mut bufs = vec![ack_frame(false, 10, flags::ACK, false), later];
            assert_eq!(acks_written(&gro_all(&mut bufs, NetId(0))), [10, 20]);
        }
        let mut bufs = vec![ack_frame(false, 10, flags::ACK, false), ack_frame(false, 20, flags::ACK, false)];
        let mut gro = Gro::default();
        let mut sink = Collect(Vec::new(), 0);
        for (i, net) in [NetId(0), NetId(1)].into_iter().enumerate() {
            let len = bufs[i].len() - HEADROOM;
            gro.push(&mut bufs, net, Loc { buf: i, start: HEADROOM, len, partial_csum: false }, &mut sink);
        }
        gro.flush(&mut bufs, &mut sink);
        assert_eq!(acks_written(&sink), [10, 20]);
        assert_eq!(sink.1, 0);
    }

    #[test]
    fn a_held_ack_is_written_before_data_of_its_connection() {
        let mut data = superframe(false, &[7u8; 100], flags::ACK);
        tcp_v4(&mut data).set_ack_number(25);
        let mut bufs = vec![
            ack_frame(false, 10, flags::ACK, false),
            ack_frame(false, 20, flags::ACK, false),
            [vec![0u8; HEADROOM], data].concat(),
            ack_frame(false, 30, flags::ACK, false),
        ];
        let sink = gro_all(&mut bufs, NetId(0));
        assert_eq!(acks_written(&sink), [20, 25, 30]);
    }

    proptest! {
        #[test]
        fn gro_never_panics_and_writes_every_frame(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..20),
            tcp in any::<bool>(),
        ) {
            let mut bufs: Vec<Vec<u8>> = frames.iter().map(|f| {
                let mut b = vec![0u8; 10];
                if tcp && f.len() > 60 {
                    // Make some of them parse as IPv4/TCP so the merge paths run.
                    let mut g = f.clone();
                    EthernetFrame::new_unchecked(&mut g[..]).set_ethertype(EtherType::IPV4);
                    let total = (g.len() - L3) as u16;
                    let mut ip = Ipv4Packet::new_unchecked(&mut g[L3..]);
                    ip.set_version_and_header_len(ipv4::HEADER_LEN);
                    ip.set_protocol(ip_proto::TCP);
                    ip.set_unfragmented(false);
                    ip.set_total_len(total);
                    b.extend_from_slice(&g);
                } else {
                    b.extend_from_slice(f);
                }
                b
            }).collect();
            let mut gro = Gro::default();
            let mut sink = Collect(Vec::new(), 0);
            for i in 0..bufs.len() {
                let len = bufs[i].len() - 10;
                gro.push(&mut bufs, NetId(0), Loc { buf: i, start: 10, len, partial_csum: false }, &mut sink);
            }
            gro.flush(&mut bufs, &mut sink);
            // Every frame is written, but for pure ACKs a later one made redundant.
            let written = sink.0.iter().map(|s| s.2).sum::<usize>();
            prop_assert_eq!(written as u64 + sink.1, bufs.len() as u64);
        }

        /// Exactly the pure ACKs whose connection's next frame is a pure ACK acknowledging
        /// more (neither with SACK or any flag but ACK) are left out; everything else is
        /// written, in order within each connection.
        #[test]
        fn gro_leaves_out_exactly_the_superseded_acks(
            frames in proptest::collection::vec((0u16..2, 0u8..4, 0u32..6), 1..40),
        ) {
            // kind 0, 1: a pure ACK; 2: with SACK; 3: a data segment (PSH, so never merged).
            let mut bufs: Vec<Vec<u8>> = frames.iter().enumerate().map(|(i, &(conn, kind, ack))| {
                let payload: &[u8] = if kind == 3 { b"data" } else { b"" };
                let fl = if kind == 3 { flags::ACK | flags::PSH } else { flags::ACK };
                let mut f = superframe(false, payload, fl);
                Ipv4Packet::new_unchecked(&mut f[L3..]).set_ident(i as u16);
                let mut t = tcp_v4(&mut f);
                t.set_src_port(40000 + conn);
                // Around the wrap: acknowledgment numbers compare as serial numbers.
                t.set_ack_number(ack.wrapping_sub(3));
                if kind == 2 {
                    f[L4_V4 + tcp::field::OPTIONS..][..12].copy_from_slice(&[1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
                }
                [vec![0u8; HEADROOM], f].concat()
            }).collect();
            let plain_ack = |k: u8| k < 2;
            let expect: Vec<u16> = (0..frames.len()).filter(|&i| {
                let (conn, kind, ack) = frames[i];
                let next = frames[i + 1..].iter().find(|f| f.0 == conn);
                !(plain_ack(kind)
                    && next.is_some_and(|&(_, k, a)| plain_ack(k) && a > ack))
            }).map(|i| i as u16).collect();
            let mut gro = Gro::default();
            let mut sink = Collect(Vec::new(), 0);
            push_all(&mut gro, &mut bufs, NetId(0), &mut sink);
            gro.flush(&mut bufs, &mut sink);
            let mut got: Vec<u16> = sink.0.iter().map(|(_, f, n)| {
                assert_eq!(*n, 1);
                Ipv4Packet::new_checked(&f[VNET_HDR_LEN + L3..]).unwrap().ident()
            }).collect();
            for conn in 0..2 {
                let mine = |ids: &[u16]| -> Vec<u16> {
                    ids.iter().copied().filter(|&i| frames[usize::from(i)].0 == conn).collect()
                };
                prop_assert_eq!(mine(&got), mine(&expect));
            }
            got.sort_unstable();
            prop_assert_eq!(got, expect.clone());
            prop_assert_eq!(sink.1 as usize, frames.len() - expect.len());
        }

        #[test]
        fn tso_never_panics(f in proptest::collection::vec(any::<u8>(), 0..400), mss in 0u16..2000, t in 0u8..6) {
            let h = VnetHdr { gso_type: t, gso_size: mss, ..Default::default() };
            if let Ok(p) = Tso::plan(&f, &h) {
                let mut out = vec![0u8; p.max_segment_len()];
                for i in 0..p.count() {
                    p.segment(&f, i, &mut out);
                }
            }
        }

        #[test]
        fn tso_segments_always_verify(payload in proptest::collection::vec(any::<u8>(), 1..5000), mss in 1u16..2000, v6 in any::<bool>()) {
            let f = superframe(v6, &payload, flags::ACK);
            let mut got = Vec::new();
            for s in segments(&f, mss, v6) {
                let s = &s[HEADROOM..];
                prop_assert!(tcp_csum_ok(s) && (v6 || ipv4_csum_ok(s)));
                got.extend_from_slice(&s[parse_tcp(s).unwrap().hlen..]);
            }
            prop_assert_eq!(got, payload);
        }
    }
}
