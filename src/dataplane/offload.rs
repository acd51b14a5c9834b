//! TAP offloads in userspace: the virtio-net header, Internet checksums, segmentation of the
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
//! Everything here is pure and bounds-checked: malformed headers give an error or "not
//! coalescable", never a panic, and nothing allocates after construction.

use std::io::IoSlice;

pub use crate::device::VNET_HDR_LEN;

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

const ETH_LEN: usize = overlay_proto::consts::ETHERNET_HEADER_LEN;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_CWR: u8 = 0x80;
const PROTO_TCP: u8 = 6;

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
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }

    /// Writes a header.
    pub fn emit(&self, b: &mut [u8; VNET_HDR_LEN]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }
}

// ---- checksums ----

/// The one's-complement sum of `b` read as big-endian 16-bit words (an odd last byte padded
/// with zero), folded to 16 bits, not complemented.
pub fn sum(b: &[u8]) -> u16 {
    // Native-endian 32-bit words into a 64-bit accumulator (no carry is lost below 2^32
    // words); one's-complement addition commutes with byte swapping, so the native sum is
    // swapped to big-endian at the end.
    let mut chunks = b.chunks_exact(4);
    let mut acc: u64 = chunks.by_ref().map(|c| u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))).sum();
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 4];
        tail[..rest.len()].copy_from_slice(rest);
        acc += u64::from(u32::from_ne_bytes(tail));
    }
    let native = fold64(acc);
    if cfg!(target_endian = "little") {
        native.swap_bytes()
    } else {
        native
    }
}

fn fold64(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// One's-complement addition of two folded sums.
pub fn add(a: u16, b: u16) -> u16 {
    fold64(u64::from(a) + u64::from(b))
}

/// The folded sum of the TCP/UDP pseudo-header for `proto` and an L4 length of `len`, with
/// the source and destination addresses taken from the IP header at `ip` (v4 or v6).
fn pseudo(ip: &[u8], v6: bool, proto: u8, len: u32) -> u16 {
    let addrs = if v6 { &ip[8..40] } else { &ip[12..20] };
    let mut s = sum(addrs);
    s = add(s, u16::from(proto));
    s = add(s, (len >> 16) as u16);
    add(s, len as u16)
}

/// Stores the complemented checksum (never 0, which means "none" for UDP over IPv4).
fn store_csum(field: &mut [u8], folded: u16) {
    let c = !folded;
    field.copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
}

/// Recomputes an IPv4 header checksum in place (`ip` is exactly the header).
fn ipv4_header_csum(ip: &mut [u8]) {
    ip[10..12].fill(0);
    let c = !sum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Why an offloaded frame from the TAP could not be taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadError {
    /// The checksum start/offset lie outside the frame.
    BadCsumOffsets,
    /// A GSO type weft does not ask for (UDP fragmentation or segmentation).
    UnsupportedGso,
    /// The headers of a TSO superframe are not Ethernet + IPv4/IPv6 + TCP.
    BadTsoHeaders,
}

/// Completes a checksum the kernel left partial (`F_NEEDS_CSUM`): the field at
/// `start + offset` holds the pseudo-header sum; the sum from `start` to the end is folded in.
pub fn complete_csum(frame: &mut [u8], start: u16, offset: u16) -> Result<(), OffloadError> {
    let (start, field) = (usize::from(start), usize::from(start) + usize::from(offset));
    if start >= frame.len() || field + 2 > frame.len() {
        return Err(OffloadError::BadCsumOffsets);
    }
    let s = sum(&frame[start..]);
    store_csum(&mut frame[field..field + 2], s);
    Ok(())
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
        let bad = OffloadError::BadTsoHeaders;
        let v6 = match h.gso_type & !GSO_ECN {
            GSO_TCPV4 => false,
            GSO_TCPV6 => true,
            _ => return Err(OffloadError::UnsupportedGso),
        };
        // One 802.1Q tag is allowed (a VLAN device inside the container keeps TSO).
        let l3 = if frame.get(12..14) == Some(&[0x81, 0x00]) { ETH_LEN + 4 } else { ETH_LEN };
        let l4 = match (v6, frame.get(l3 - 2..l3)) {
            (false, Some([0x08, 0x00])) => {
                let vihl = *frame.get(l3).ok_or(bad)?;
                if vihl >> 4 != 4 || vihl & 0x0f < 5 || frame.get(l3 + 9) != Some(&PROTO_TCP) {
                    return Err(bad);
                }
                l3 + usize::from(vihl & 0x0f) * 4
            }
            (true, Some([0x86, 0xdd])) => {
                if frame.get(l3).map(|b| b >> 4) != Some(6) || frame.get(l3 + 6) != Some(&PROTO_TCP) {
                    return Err(bad);
                }
                l3 + 40
            }
            _ => return Err(bad),
        };
        let doff = usize::from(*frame.get(l4 + 12).ok_or(bad)? >> 4) * 4;
        let hlen = l4 + doff;
        let mss = usize::from(h.gso_size);
        if doff < 20 || hlen >= frame.len() || mss == 0 {
            return Err(bad);
        }
        Ok(Self { v6, l3, l4, hlen, mss, payload: frame.len() - hlen })
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
        let seg = self.mss.min(self.payload - off);
        let last = off + seg == self.payload;
        let (l3, l4, hlen) = (self.l3, self.l4, self.hlen);
        out[..hlen].copy_from_slice(&frame[..hlen]);
        out[hlen..hlen + seg].copy_from_slice(&frame[hlen + off..hlen + off + seg]);
        let tcp_len = hlen - l4 + seg;
        if self.v6 {
            out[l3 + 4..l3 + 6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        } else {
            out[l3 + 2..l3 + 4].copy_from_slice(&((l4 - l3 + tcp_len) as u16).to_be_bytes());
            let id = u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]).wrapping_add(i as u16);
            out[l3 + 4..l3 + 6].copy_from_slice(&id.to_be_bytes());
            ipv4_header_csum(&mut out[l3..l4]);
        }
        let seq = u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]]);
        out[l4 + 4..l4 + 8].copy_from_slice(&seq.wrapping_add(off as u32).to_be_bytes());
        if !last {
            out[l4 + 13] &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            out[l4 + 13] &= !TCP_CWR;
        }
        out[l4 + 16..l4 + 18].fill(0);
        let s = add(pseudo(&out[l3..l4], self.v6, PROTO_TCP, tcp_len as u32), sum(&out[l4..hlen + seg]));
        store_csum(&mut out[l4 + 16..l4 + 18], s);
        hlen + seg
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
}

/// What a sink is given: one frame for network `net` as an I/O vector whose first slice is
/// the virtio-net header, standing for `frames` frames received.
pub trait Sink {
    /// Writes one frame.
    fn write(&mut self, net: usize, iov: &[IoSlice<'_>], frames: usize);
}

/// The parts of an IPv4/IPv6 TCP segment that decide whether it can join another.
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
    let (v6, l4, frame_len) = match f.get(12..14)? {
        [0x08, 0x00] => {
            let ip = f.get(ETH_LEN..ETH_LEN + 20)?;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            // No options, TCP, not a fragment (MF clear, offset 0).
            if ip[0] != 0x45 || ip[9] != PROTO_TCP || u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
                return None;
            }
            (false, ETH_LEN + 20, ETH_LEN + total)
        }
        [0x86, 0xdd] => {
            let ip = f.get(ETH_LEN..ETH_LEN + 40)?;
            if ip[0] >> 4 != 6 || ip[6] != PROTO_TCP {
                return None;
            }
            (true, ETH_LEN + 40, ETH_LEN + 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]])))
        }
        _ => return None,
    };
    let tcp = f.get(l4..l4 + 20)?;
    let hlen = l4 + usize::from(tcp[12] >> 4) * 4;
    if hlen < l4 + 20 || frame_len < hlen || frame_len > f.len() {
        return None;
    }
    Some(TcpSeg {
        v6,
        l4,
        hlen,
        frame_len,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        flags: tcp[13],
        payload: frame_len - hlen,
    })
}

/// Only plain ACK (and PSH, which ends a superframe) segments with data are merged.
fn mergeable(t: &TcpSeg) -> bool {
    t.payload > 0 && t.flags & !TCP_PSH == TCP_ACK
}

#[derive(Debug)]
struct Flow {
    net: usize,
    first: Loc,
    seg: TcpSeg,
    /// Payload slices of the segments after the first: (buf, start, len).
    rest: Vec<(usize, usize, usize)>,
    next_seq: u32,
    total: usize,
    psh: bool,
    closed: bool,
}

/// Userspace GRO: merges consecutive segments of one TCP flow received in one batch into a
/// superframe written with a GSO header; writes everything else through unchanged. Frames are
/// never reordered within a flow. Call [`Gro::flush`] before the buffers are reused.
#[derive(Debug)]
pub struct Gro {
    flows: Vec<Flow>,
    active: usize,
}

impl Default for Gro {
    fn default() -> Self {
        let flow = || Flow {
            net: 0,
            first: Loc { buf: 0, start: 0, len: 0 },
            seg: TcpSeg { v6: false, l4: 0, hlen: 0, frame_len: 0, seq: 0, flags: 0, payload: 0 },
            rest: Vec::with_capacity(MAX_SEGMENTS),
            next_seq: 0,
            total: 0,
            psh: false,
            closed: false,
        };
        Self { flows: (0..MAX_FLOWS).map(|_| flow()).collect(), active: 0 }
    }
}

/// Whether two segments' headers agree everywhere GRO needs them to: addresses, ports, IP
/// fields other than length/ID/checksum, ack, data offset, window and TCP options.
fn same_flow(a: &[u8], b: &[u8], s: &TcpSeg) -> bool {
    let l3 = ETH_LEN;
    let ip_same = if s.v6 {
        a[l3..l3 + 4] == b[l3..l3 + 4] && a[l3 + 6..l3 + 40] == b[l3 + 6..l3 + 40]
    } else {
        a[l3..l3 + 2] == b[l3..l3 + 2]
            && a[l3 + 6..l3 + 10] == b[l3 + 6..l3 + 10]
            && a[l3 + 12..l3 + 20] == b[l3 + 12..l3 + 20]
    };
    let l4 = s.l4;
    // Ports; then ack; data offset; window; options (flags and checksum are left out).
    ip_same
        && a[..12] == b[..12]
        && a[l4..l4 + 4] == b[l4..l4 + 4]
        && a[l4 + 8..l4 + 13] == b[l4 + 8..l4 + 13]
        && a[l4 + 14..l4 + 16] == b[l4 + 14..l4 + 16]
        && a[l4 + 20..s.hlen] == b[l4 + 20..s.hlen]
}

impl Gro {
    /// Takes the frame at `at` (in `bufs`), for network `net`: merges it into a pending
    /// superframe, starts one, or writes it out (after whatever of its flow is pending).
    pub fn push<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        bufs: &mut [B],
        net: usize,
        at: Loc,
        sink: &mut impl Sink,
    ) {
        let frame = &bufs[at.buf].as_ref()[at.start..at.start + at.len];
        let Some(t) = parse_tcp(frame) else {
            return write_one(bufs, net, at, sink);
        };
        let found = self.flows[..self.active].iter().position(|f| {
            f.net == net
                && f.seg.v6 == t.v6
                && f.seg.hlen == t.hlen
                && same_flow(&bufs[f.first.buf].as_ref()[f.first.start..], frame, &t)
        });
        if let Some(i) = found {
            let f = &mut self.flows[i];
            let fits = !f.closed
                && mergeable(&t)
                && t.seq == f.next_seq
                && t.payload <= f.seg.payload
                && f.rest.len() + 1 < MAX_SEGMENTS
                && f.seg.hlen - ETH_LEN + f.total + t.payload <= 65_535;
            if fits {
                f.rest.push((at.buf, at.start + t.hlen, t.payload));
                f.next_seq = t.seq.wrapping_add(t.payload as u32);
                f.total += t.payload;
                // A short segment or PSH ends the superframe, as in the kernel's GRO.
                f.closed = t.payload < f.seg.payload || t.flags & TCP_PSH != 0;
                f.psh |= t.flags & TCP_PSH != 0;
                return;
            }
            self.flush_one(bufs, i, sink);
        }
        if !mergeable(&t) {
            return write_one(bufs, net, at, sink);
        }
        if self.active == MAX_FLOWS {
            self.flush_one(bufs, 0, sink);
        }
        let f = &mut self.flows[self.active];
        self.active += 1;
        f.net = net;
        f.first = Loc { len: t.frame_len, ..at };
        f.seg = t;
        f.rest.clear();
        f.next_seq = t.seq.wrapping_add(t.payload as u32);
        f.total = t.payload;
        f.psh = t.flags & TCP_PSH != 0;
        f.closed = f.psh;
    }

    /// Writes every pending superframe.
    pub fn flush<B: AsRef<[u8]> + AsMut<[u8]>>(&mut self, bufs: &mut [B], sink: &mut impl Sink) {
        while self.active > 0 {
            self.flush_one(bufs, self.active - 1, sink);
        }
    }

    fn flush_one<B: AsRef<[u8]> + AsMut<[u8]>>(&mut self, bufs: &mut [B], i: usize, sink: &mut impl Sink) {
        let f = &mut self.flows[i];
        if f.rest.is_empty() {
            write_one(bufs, f.net, f.first, sink);
        } else {
            let s = f.seg;
            let Loc { buf, start, .. } = f.first;
            let b = bufs[buf].as_mut();
            let (l3, l4) = (ETH_LEN, s.l4);
            let tcp_len = s.hlen - l4 + f.total;
            if s.v6 {
                b[start + l3 + 4..start + l3 + 6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
            } else {
                b[start + l3 + 2..start + l3 + 4]
                    .copy_from_slice(&((l4 - l3 + tcp_len) as u16).to_be_bytes());
                ipv4_header_csum(&mut b[start + l3..start + l4]);
            }
            if f.psh {
                b[start + l4 + 13] |= TCP_PSH;
            }
            // CHECKSUM_PARTIAL: the field holds the pseudo-header sum, uncomplemented.
            let p = pseudo(&b[start + l3..start + l4], s.v6, PROTO_TCP, tcp_len as u32);
            b[start + l4 + 16..start + l4 + 18].copy_from_slice(&p.to_be_bytes());
            let h = VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: if s.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
                hdr_len: s.hlen as u16,
                gso_size: s.payload as u16,
                csum_start: l4 as u16,
                csum_offset: 16,
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

/// Writes one frame unchanged, with an all-zero virtio-net header.
fn write_one<B: AsRef<[u8]> + AsMut<[u8]>>(bufs: &mut [B], net: usize, at: Loc, sink: &mut impl Sink) {
    let frame = &bufs[at.buf].as_ref()[at.start..at.start + at.len];
    sink.write(net, &[IoSlice::new(&[0; VNET_HDR_LEN]), IoSlice::new(frame)], 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_sum(b: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for c in b.chunks(2) {
            let w = u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
            acc += w;
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// A TCP segment's checksum verifies (sum over pseudo-header and segment is 0xffff).
    fn tcp_csum_ok(f: &[u8]) -> bool {
        let t = parse_tcp(f).expect("tcp");
        let tcp_len = (t.frame_len - t.l4) as u32;
        add(pseudo(&f[ETH_LEN..t.l4], t.v6, PROTO_TCP, tcp_len), sum(&f[t.l4..t.frame_len])) == 0xffff
    }

    fn ipv4_csum_ok(f: &[u8]) -> bool {
        sum(&f[ETH_LEN..ETH_LEN + 20]) == 0xffff
    }

    /// An Ethernet + IP + TCP (with 12 bytes of timestamp-like options) superframe carrying
    /// `payload`, with the TCP checksum left partial as the kernel hands it over.
    fn superframe(v6: bool, payload: &[u8], flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        let tcp_len = 32 + payload.len();
        if v6 {
            f[12..14].copy_from_slice(&[0x86, 0xdd]);
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
            ip[6] = PROTO_TCP;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            ip[24..40].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            f.extend_from_slice(&ip);
        } else {
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&0xfff0u16.to_be_bytes());
            ip[6] = 0x40;
            ip[8] = 64;
            ip[9] = PROTO_TCP;
            ip[12..16].copy_from_slice(&[10, 42, 1, 2]);
            ip[16..20].copy_from_slice(&[10, 42, 2, 2]);
            ipv4_header_csum(&mut ip);
            f.extend_from_slice(&ip);
        }
        let mut tcp = [0u8; 32];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&0xffff_ff00u32.to_be_bytes());
        tcp[8..12].copy_from_slice(&77u32.to_be_bytes());
        tcp[12] = 8 << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&500u16.to_be_bytes());
        tcp[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        f.extend_from_slice(&tcp);
        f.extend_from_slice(payload);
        f
    }

    struct Collect(Vec<(usize, Vec<u8>, usize)>);
    impl Sink for Collect {
        fn write(&mut self, net: usize, iov: &[IoSlice<'_>], frames: usize) {
            self.0.push((net, iov.iter().flat_map(|s| s.iter().copied()).collect(), frames));
        }
    }

    /// Segments a superframe and lays each segment out as a received buffer would hold it.
    fn segments(f: &[u8], mss: u16, v6: bool) -> Vec<Vec<u8>> {
        let h =
            VnetHdr { gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 }, gso_size: mss, ..Default::default() };
        let plan = Tso::plan(f, &h).unwrap();
        (0..plan.count())
            .map(|i| {
                let mut out = vec![0u8; 20 + plan.max_segment_len()];
                let n = plan.segment(f, i, &mut out[20..]);
                out.truncate(20 + n);
                out
            })
            .collect()
    }

    #[test]
    fn sum_matches_the_textbook_definition() {
        let b: Vec<u8> = (0..1001u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in [0, 1, 2, 3, 4, 5, 63, 1000, 1001] {
            assert_eq!(sum(&b[..n]), naive_sum(&b[..n]), "length {n}");
        }
    }

    #[test]
    fn vnet_header_round_trips() {
        let h =
            VnetHdr { flags: 1, gso_type: 4, hdr_len: 86, gso_size: 1368, csum_start: 54, csum_offset: 16 };
        let mut b = [0u8; VNET_HDR_LEN];
        h.emit(&mut b);
        assert_eq!(VnetHdr::parse(&b), h);
    }

    #[test]
    fn segmentation_gives_valid_segments_that_add_up() {
        for v6 in [false, true] {
            let payload: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
            let f = superframe(v6, &payload, TCP_ACK | TCP_PSH | TCP_CWR);
            let segs = segments(&f, 1368, v6);
            assert_eq!(segs.len(), 4);
            let mut got = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                let s = &s[20..];
                let t = parse_tcp(s).unwrap();
                assert!(tcp_csum_ok(s), "segment {i} checksum");
                assert!(v6 || ipv4_csum_ok(s), "segment {i} IPv4 header checksum");
                assert_eq!(t.seq, 0xffff_ff00u32.wrapping_add(1368 * i as u32), "sequence wraps");
                assert_eq!(t.flags & TCP_PSH != 0, i == 3, "PSH only on the last");
                assert_eq!(t.flags & TCP_CWR != 0, i == 0, "CWR only on the first");
                if !v6 {
                    assert_eq!(u16::from_be_bytes([s[18], s[19]]), 0xfff0u16.wrapping_add(i as u16));
                }
                got.extend_from_slice(&s[t.hlen..t.frame_len]);
            }
            assert_eq!(got, payload);
        }
    }

    #[test]
    fn vlan_tagged_superframes_are_segmented() {
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let plain = superframe(false, &payload, TCP_ACK);
        let mut f = plain[..12].to_vec();
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        f.extend_from_slice(&plain[12..]);
        let h = VnetHdr { gso_type: GSO_TCPV4, gso_size: 1000, ..Default::default() };
        let plan = Tso::plan(&f, &h).unwrap();
        let mut got = Vec::new();
        for i in 0..plan.count() {
            let mut out = vec![0u8; plan.max_segment_len()];
            let n = plan.segment(&f, i, &mut out);
            // Untag to check the segment with the untagged helpers.
            let mut u = out[..12].to_vec();
            u.extend_from_slice(&out[16..n]);
            assert!(tcp_csum_ok(&u) && ipv4_csum_ok(&u), "segment {i}");
            got.extend_from_slice(&u[66..]);
        }
        assert_eq!(got, payload);
    }

    #[test]
    fn tso_plan_rejects_what_it_cannot_split() {
        let f = superframe(false, &[1; 3000], TCP_ACK);
        let h = |t, mss| VnetHdr { gso_type: t, gso_size: mss, ..Default::default() };
        assert_eq!(Tso::plan(&f, &h(3, 1000)), Err(OffloadError::UnsupportedGso));
        assert_eq!(Tso::plan(&f, &h(GSO_TCPV6, 1000)), Err(OffloadError::BadTsoHeaders));
        assert_eq!(Tso::plan(&f, &h(GSO_TCPV4, 0)), Err(OffloadError::BadTsoHeaders));
        assert_eq!(Tso::plan(&f[..60], &h(GSO_TCPV4, 1000)), Err(OffloadError::BadTsoHeaders));
        assert!(Tso::plan(&f, &h(GSO_TCPV4 | GSO_ECN, 1000)).is_ok());
        assert_eq!(complete_csum(&mut f.clone(), 34, 4000), Err(OffloadError::BadCsumOffsets));
    }

    #[test]
    fn partial_checksums_are_completed() {
        let mut f = superframe(false, &[9; 700], TCP_ACK);
        let tcp_len = f.len() - 34;
        let p = pseudo(&f[14..34], false, PROTO_TCP, tcp_len as u32);
        f[50..52].copy_from_slice(&p.to_be_bytes());
        complete_csum(&mut f, 34, 16).unwrap();
        assert!(tcp_csum_ok(&f));
    }

    #[test]
    fn segments_coalesce_back_into_one_superframe() {
        for v6 in [false, true] {
            let payload: Vec<u8> = (0..6000u32).map(|i| (i * 13 % 256) as u8).collect();
            let f = superframe(v6, &payload, TCP_ACK | TCP_PSH);
            let mut bufs = segments(&f, 1400, v6);
            let mut gro = Gro::default();
            let mut sink = Collect(Vec::new());
            for i in 0..bufs.len() {
                let len = bufs[i].len() - 20;
                gro.push(&mut bufs, 3, Loc { buf: i, start: 20, len }, &mut sink);
            }
            assert!(sink.0.is_empty(), "held until flushed");
            gro.flush(&mut bufs, &mut sink);
            assert_eq!(sink.0.len(), 1);
            let (net, out, frames) = &sink.0[0];
            assert_eq!((*net, *frames), (3, 5));
            let h = VnetHdr::parse(out[..10].try_into().unwrap());
            assert_eq!(h.gso_type, if v6 { GSO_TCPV6 } else { GSO_TCPV4 });
            assert_eq!((h.flags, h.gso_size, h.csum_offset), (F_NEEDS_CSUM, 1400, 16));
            let sf = &out[10..];
            let t = parse_tcp(sf).unwrap();
            assert_eq!((h.hdr_len as usize, h.csum_start as usize), (t.hlen, t.l4));
            assert_eq!(&sf[t.hlen..], &payload[..], "payload intact and in order");
            assert_eq!(t.flags, TCP_ACK | TCP_PSH);
            assert!(v6 || ipv4_csum_ok(sf));
            // The partial checksum: completing it gives a segment that verifies.
            let mut done = sf.to_vec();
            complete_csum(&mut done, t.l4 as u16, 16).unwrap();
            assert!(tcp_csum_ok(&done));
        }
    }

    #[test]
    fn gaps_other_flows_and_control_segments_are_not_merged_across() {
        let payload = vec![5u8; 4000];
        let f = superframe(false, &payload, TCP_ACK);
        let segs = segments(&f, 1000, false);
        // Order: s0, s2 (gap), a FIN of the flow, a non-TCP frame, s3.
        let mut fin = segs[1].clone();
        fin[20 + 14 + 20 + 13] |= TCP_FIN;
        let arp = {
            let mut a = vec![0u8; 20 + 42];
            a[20 + 12..20 + 14].copy_from_slice(&[0x08, 0x06]);
            a
        };
        let mut bufs = vec![segs[0].clone(), segs[2].clone(), fin, arp, segs[3].clone()];
        let mut gro = Gro::default();
        let mut sink = Collect(Vec::new());
        for i in 0..bufs.len() {
            let len = bufs[i].len() - 20;
            gro.push(&mut bufs, 0, Loc { buf: i, start: 20, len }, &mut sink);
        }
        gro.flush(&mut bufs, &mut sink);
        let frames: Vec<usize> = sink.0.iter().map(|s| s.2).collect();
        assert_eq!(frames.iter().sum::<usize>(), 5, "every frame written once");
        // s0 alone (s2 does not follow it), then s2 flushed by the FIN, the FIN, the ARP,
        // and s3 (after the FIN's flow was written, s3 starts anew).
        assert_eq!(sink.0[0].1[10..], segs[0][20..]);
        assert!(sink.0.iter().all(|s| s.1[..10] == [0; 10]), "nothing merged");
    }

    #[test]
    fn many_flows_stay_in_order_within_each() {
        // Interleave 10 flows (more than MAX_FLOWS) of 3 segments each.
        let mut bufs = Vec::new();
        let mut expect = Vec::new();
        for flow in 0..10u8 {
            let payload: Vec<u8> = (0..3000u32).map(|i| (i as u8) ^ flow).collect();
            let mut f = superframe(false, &payload, TCP_ACK);
            f[14 + 20 + 1] = flow; // source port
            expect.push(payload);
            bufs.push(segments(&f, 1000, false));
        }
        let mut flat = Vec::new();
        for i in 0..3 {
            for b in &bufs {
                flat.push(b[i].clone());
            }
        }
        let mut gro = Gro::default();
        let mut sink = Collect(Vec::new());
        for i in 0..flat.len() {
            let len = flat[i].len() - 20;
            gro.push(&mut flat, 1, Loc { buf: i, start: 20, len }, &mut sink);
        }
        gro.flush(&mut flat, &mut sink);
        let mut got: Vec<Vec<u8>> = vec![Vec::new(); 10];
        for (_, out, _) in &sink.0 {
            let t = parse_tcp(&out[10..]).unwrap();
            got[usize::from(out[10 + 14 + 20 + 1])].extend_from_slice(&out[10 + t.hlen..]);
        }
        assert_eq!(got, expect);
    }

    proptest! {
        #[test]
        fn sum_is_the_textbook_sum(b in proptest::collection::vec(any::<u8>(), 0..3000)) {
            prop_assert_eq!(sum(&b), naive_sum(&b));
        }

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
                    g[12] = 0x08; g[13] = 0; g[14] = 0x45; g[23] = PROTO_TCP; g[20] = 0; g[21] = 0;
                    let total = (g.len() - 14) as u16;
                    g[16..18].copy_from_slice(&total.to_be_bytes());
                    b.extend_from_slice(&g);
                } else {
                    b.extend_from_slice(f);
                }
                b
            }).collect();
            let mut gro = Gro::default();
            let mut sink = Collect(Vec::new());
            for i in 0..bufs.len() {
                let len = bufs[i].len() - 10;
                gro.push(&mut bufs, 0, Loc { buf: i, start: 10, len }, &mut sink);
            }
            gro.flush(&mut bufs, &mut sink);
            prop_assert_eq!(sink.0.iter().map(|s| s.2).sum::<usize>(), bufs.len());
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
    }
}
