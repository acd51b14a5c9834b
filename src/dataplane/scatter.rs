//! Where a frame read from the TAP lands in the send arena, so that it is sent from where it
//! was read, without a copy in userspace.
//!
//! The virtio-net header goes to a buffer of its own (the bytes before a slot belong to the
//! datagram before it). A small frame is read straight into its arena slot, behind the room
//! for the tunnel (or VXLAN) header. A TSO superframe is read *pre-segmented*: one `readv`
//! puts the headers and the first segment's payload into the first slot and each further
//! `mss` bytes of payload into the next slot, behind a gap left for that segment's headers
//! (and the tag of the one before). The layout guesses the superframe's header length and
//! MSS from the previous one (a flow keeps both); segmentation then only writes headers into
//! the gaps. A frame the guess does not fit (another flow, a frame longer than the first
//! piece) is gathered into the spill buffer and segmented by copying, as before.
//!
//! Pure arithmetic over offsets: the worker does the I/O.

use std::io::IoSliceMut;
use std::ops::Range;

use super::offload::VNET_HDR_LEN;

/// Smallest MSS read pre-segmented (smaller ones would need too many pieces).
pub const MIN_SCATTER_MSS: usize = 512;
/// Longest header run (Ethernet, one VLAN tag, IP, TCP) read pre-segmented.
pub const MAX_SCATTER_HEADERS: usize = 160;
/// Most bytes one TAP read returns (virtio-net header and a 64 KiB superframe).
pub const MAX_READ: usize = VNET_HDR_LEN + 65_536;
/// Most I/O vector entries a layout uses (the header buffer, the arena pieces and the spill
/// buffer).
pub const MAX_IOV: usize = MAX_READ / MIN_SCATTER_MSS + 3;

/// One read's layout, relative to the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The slot of the first (or only) frame.
    pub at: usize,
    /// Where a frame starts in its slot (after the tunnel or VXLAN header).
    pub fo: usize,
    /// Frame bytes the first piece holds.
    pub first: usize,
    /// Distance between two segments' slots (one whole datagram).
    pub stride: usize,
    /// Where a further segment's payload starts in its slot (`fo` + header length).
    pub hole: usize,
    /// Payload bytes per further piece (the MSS).
    pub seg: usize,
    /// Further arena pieces.
    pub more: usize,
}

impl Layout {
    /// Only the first slot: a frame of up to `first` bytes lands there, anything longer
    /// continues in the spill buffer.
    pub fn single(at: usize, fo: usize, first: usize) -> Self {
        Self { at, fo, first, stride: 0, hole: 0, seg: 0, more: 0 }
    }

    /// Pre-segmented for superframes with `hlen` bytes of headers and `mss` bytes of payload
    /// per segment; `tail` is what a datagram carries after its frame (the AEAD tag). `None`
    /// when the guess is out of range (then use [`Layout::single`]).
    pub fn segmented(at: usize, fo: usize, hlen: usize, mss: usize, tail: usize) -> Option<Self> {
        let first = hlen + mss;
        // The guess comes from a container's superframe: any MSS a virtio-net header can
        // name (up to 65,535) must give a layout or `None`, never an overflow.
        if mss < MIN_SCATTER_MSS || hlen == 0 || hlen > MAX_SCATTER_HEADERS || first > MAX_READ - VNET_HDR_LEN
        {
            return None;
        }
        // Enough pieces for the largest read.
        let more = (MAX_READ - VNET_HDR_LEN - first).div_ceil(mss);
        Some(Self { at, fo, first, stride: fo + first + tail, hole: fo + hlen, seg: mss, more })
    }

    /// Whether further segments are read into their own slots.
    pub fn is_segmented(&self) -> bool {
        self.more > 0
    }

    /// Arena bytes from `at` the layout may touch, given `slot_len` bytes of room per slot.
    pub fn arena_len(&self, slot_len: usize) -> usize {
        self.more * self.stride + slot_len
    }

    /// Read bytes (virtio-net header included) the arena pieces hold; the rest spill.
    pub fn capacity(&self) -> usize {
        VNET_HDR_LEN + self.first + self.more * self.seg
    }

    /// Arena range of piece `j` (`0..=more`): the first holds the frame's start.
    pub fn piece(&self, j: usize) -> Range<usize> {
        if j == 0 {
            self.at + self.fo..self.at + self.fo + self.first
        } else {
            let start = self.at + j * self.stride + self.hole;
            start..start + self.seg
        }
    }

    /// Where segment `i`'s frame starts in the arena.
    pub fn frame_at(&self, i: usize) -> usize {
        self.at + i * self.stride + self.fo
    }

    /// The I/O vector of a read: the virtio-net header into `hdr`, the arena pieces in
    /// order, then `spill` from [`Layout::capacity`] on. Returns how many entries of `iov` it
    /// filled.
    pub fn iovecs<'a>(
        &self,
        hdr: &'a mut [u8; VNET_HDR_LEN],
        arena: &'a mut [u8],
        spill: &'a mut [u8],
        iov: &mut [IoSliceMut<'a>; MAX_IOV],
    ) -> usize {
        iov[0] = IoSliceMut::new(hdr);
        let mut rest = arena;
        let mut pos = 0;
        for j in 0..=self.more {
            let r = self.piece(j);
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.start - pos);
            let (piece, after) = tail.split_at_mut(r.len());
            iov[1 + j] = IoSliceMut::new(piece);
            rest = after;
            pos = r.end;
        }
        let spill_from = self.capacity().min(spill.len());
        iov[self.more + 2] = IoSliceMut::new(&mut spill[spill_from..]);
        self.more + 3
    }

    /// Copies the first `n` read bytes that landed in `hdr` and the arena into `spill` (where
    /// the bytes beyond [`Layout::capacity`] already are), so that `spill[..n]` holds the
    /// whole read.
    pub fn gather(&self, hdr: &[u8; VNET_HDR_LEN], arena: &[u8], n: usize, spill: &mut [u8]) {
        let mut off = VNET_HDR_LEN.min(n);
        spill[..off].copy_from_slice(&hdr[..off]);
        for j in 0..=self.more {
            if off >= n {
                break;
            }
            let r = self.piece(j);
            let len = r.len().min(n - off);
            spill[off..off + len].copy_from_slice(&arena[r.start..r.start + len]);
            off += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FO: usize = 20;
    const ARENA: usize = 4 * 65_536;

    /// Reads `data` through the layout's I/O vector as the kernel would (in order, each
    /// entry filled before the next), then gathers it back.
    fn read_and_gather(l: &Layout, data: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut arena = vec![0u8; ARENA];
        let mut spill = vec![0u8; MAX_READ];
        let mut hdr = [0u8; VNET_HDR_LEN];
        {
            let mut iov: [IoSliceMut<'_>; MAX_IOV] = std::array::from_fn(|_| IoSliceMut::new(&mut []));
            let n = l.iovecs(&mut hdr, &mut arena, &mut spill, &mut iov);
            let mut off = 0;
            for v in iov[..n].iter_mut() {
                let len = v.len().min(data.len() - off);
                v[..len].copy_from_slice(&data[off..off + len]);
                off += len;
            }
            assert_eq!(off, data.len(), "the vector holds the whole read");
        }
        l.gather(&hdr, &arena, data.len(), &mut spill);
        (arena, spill)
    }

    #[test]
    fn a_segmented_layout_holds_the_largest_read_and_leaves_room_for_headers() {
        for (hlen, mss, tail) in [(54, 1368, 16), (74, 1348, 0), (160, 512, 16), (66, 65_000, 16)] {
            let l = Layout::segmented(1000, FO, hlen, mss, tail).unwrap();
            assert!(l.capacity() >= MAX_READ, "{hlen}/{mss}");
            assert!(l.more + 3 <= MAX_IOV);
            assert!(1000 + l.arena_len(1600) <= ARENA, "fits the arena");
            // Pieces are in order and disjoint, and each further one sits after its slot's
            // headers, with the previous datagram's tail between.
            for j in 1..=l.more {
                assert!(l.piece(j - 1).end + tail + FO + hlen <= l.piece(j).start);
                assert_eq!(l.piece(j).start - hlen, l.frame_at(j));
            }
            assert_eq!(l.piece(0).end, l.frame_at(0) + hlen + mss);
        }
        assert_eq!(Layout::segmented(0, FO, 54, 100, 16), None, "MSS too small");
        assert_eq!(Layout::segmented(0, FO, 200, 1400, 16), None, "headers too long");
        for mss in [65_400, 65_482, 65_483, 65_535] {
            if let Some(l) = Layout::segmented(0, FO, 54, mss, 16) {
                assert!(l.capacity() >= MAX_READ && l.more <= 1, "MSS {mss}");
            }
        }
        assert_eq!(Layout::segmented(0, FO, 54, 65_535, 16), None, "more than one read holds");
    }

    #[test]
    fn what_is_read_can_be_gathered_back_in_order() {
        let data: Vec<u8> = (0..MAX_READ).map(|i| (i * 7 + i / 251) as u8).collect();
        // A slot at the arena's start, and one after another datagram (whose bytes, right
        // before the slot, a read must not touch).
        for l in [
            Layout::single(0, 8, 1436),
            Layout::single(64, FO, 1436),
            Layout::segmented(0, 8, 66, 1356, 0).unwrap(),
            Layout::segmented(64, FO, 66, 1356, 16).unwrap(),
        ] {
            for n in [VNET_HDR_LEN + 60, VNET_HDR_LEN + 1436, VNET_HDR_LEN + 1437, 30_000, MAX_READ] {
                let (arena, spill) = read_and_gather(&l, &data[..n]);
                assert_eq!(&spill[..n], &data[..n], "{l:?} {n}");
                assert!(arena[..l.at + l.fo].iter().all(|&b| b == 0), "nothing before the frame is written");
                // Segment i's payload is where the layout says.
                if l.is_segmented() && n > l.capacity() / 2 {
                    let i = 3;
                    let at = l.frame_at(i) + 66;
                    let from = VNET_HDR_LEN + 66 + i * 1356;
                    assert!(arena[l.frame_at(i) - l.fo..l.frame_at(i)].iter().all(|&b| b == 0), "gaps stay");
                    assert_eq!(&arena[at..at + 1356], &data[from..from + 1356]);
                }
            }
        }
    }
}
