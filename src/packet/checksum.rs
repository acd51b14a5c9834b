//! The Internet checksum (RFC 1071): the only implementation in weft, used by every header
//! view, by TSO segmentation, GRO coalescing and checksum offload.
//!
//! Invariants: [`sum`] is the one's-complement sum of the data read as big-endian 16-bit
//! words (an odd last byte padded with zero), folded to 16 bits and *not* complemented, so
//! partial sums compose: `sum(a ‖ b) == add(sum(a), sum(b))` whenever `a` has even length.
//! A checksum field holds the complement ([`finish`], [`finish_transport`]); data that
//! includes a correct checksum field sums to `0xffff` ([`verify`]). Nothing allocates.

/// The folded, uncomplemented one's-complement sum of `data` (see the module doc).
pub fn sum(data: &[u8]) -> u16 {
    // Native-endian 32-bit words into 64-bit accumulators (no carry is lost below 2^32
    // words); one's-complement addition commutes with byte swapping, so the native sum is
    // swapped to big-endian at the end.
    let acc = if data.len() >= WIDE { wide_sum(data) } else { native_sum(data) };
    let native = fold(acc);
    if cfg!(target_endian = "little") {
        native.swap_bytes()
    } else {
        native
    }
}

/// From this length on, [`sum`] takes the widest vector unit the CPU has: the payload of every
/// TCP segment is summed once by the plain sender and once by each receiver, and AVX2 does it
/// in well under half the time of the SSE2 baseline (`cargo bench --bench datapath --
/// checksum`: 1,500 bytes in 48 against 130 ns on a Xeon here). Headers and pseudo-headers
/// (8–60 bytes) stay on the inlined loop: at 20 bytes the dispatch cost more than it saved.
const WIDE: usize = 128;

/// [`native_sum`] compiled for each of `targets` and picked once at run time by CPU feature
/// detection (the `multiversion` crate: no `unsafe` of ours). The macro puts the body in a
/// block of its own, hence the `allow`.
#[allow(unused_braces)]
#[multiversion::multiversion(targets("x86_64+avx2"))]
fn wide_sum(data: &[u8]) -> u64 {
    native_sum(data)
}

/// The 64-bit sum of `data` as native-endian 32-bit words, a short tail zero-padded; the
/// compiler vectorises the loop for whatever target it is compiled for.
#[inline(always)]
fn native_sum(data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(4);
    let mut acc: u64 = chunks.by_ref().map(|c| u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))).sum();
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 4];
        tail[..rest.len()].copy_from_slice(rest);
        acc += u64::from(u32::from_ne_bytes(tail));
    }
    acc
}

/// One's-complement addition of two folded sums.
#[inline]
pub fn add(a: u16, b: u16) -> u16 {
    fold(u64::from(a) + u64::from(b))
}

/// The folded sum of a TCP/UDP/ICMPv6 pseudo-header: `addrs` is the source and destination
/// address back to back (8 bytes for IPv4, 32 for IPv6), `length` the upper-layer length.
#[inline]
pub fn pseudo_header(addrs: &[u8], protocol: u8, length: u32) -> u16 {
    let s = add(sum(addrs), u16::from(protocol));
    add(add(s, (length >> 16) as u16), length as u16)
}

/// The value a checksum field holds for data (with the field zeroed) summing to `folded`.
#[inline]
pub fn finish(folded: u16) -> u16 {
    !folded
}

/// As [`finish`], but never 0: a computed 0 is sent as `0xffff` (RFC 768), because 0 in a
/// UDP-over-IPv4 checksum field means "no checksum". Used for every TCP and UDP checksum.
#[inline]
pub fn finish_transport(folded: u16) -> u16 {
    match !folded {
        0 => 0xffff,
        c => c,
    }
}

/// Whether the folded sum of data that includes its checksum field says the data is intact.
#[inline]
pub fn verify(folded: u16) -> bool {
    folded == 0xffff
}

#[inline]
fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071 read literally: 16-bit big-endian words, end-around carry after each.
    fn textbook(b: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for c in b.chunks(2) {
            acc += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn known_answers() {
        // RFC 1071 §3's example: the sum of 0001 f203 f4f5 f6f7 is ddf2.
        assert_eq!(sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0xddf2);
        assert_eq!(sum(&[]), 0);
        // Odd lengths: the last byte is the high half of a zero-padded word.
        assert_eq!(sum(&[0x01]), 0x0100);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(sum(&[0xff, 0xff, 0x00, 0x01, 0x80]), 0x8001);
        assert_eq!(
            sum(&[0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67]),
            textbook(&[0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67])
        );
        // A real IPv4 header (checksum b861) verifies, and its checksum is recomputed.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01,
            0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert!(verify(sum(&h)));
        h[10..12].fill(0);
        assert_eq!(finish(sum(&h)), 0xb861);
    }

    #[test]
    fn carries_are_not_lost() {
        // 0xffff words: any number of them folds to 0xffff (one's-complement negative zero).
        for n in [1, 2, 3, 1000, 40_000] {
            assert_eq!(sum(&vec![0xff; 2 * n]), 0xffff, "{n} words");
        }
        assert_eq!(add(0xffff, 0x0001), 0x0001);
        assert_eq!(add(0x8000, 0x8000), 0x0001);
    }

    #[test]
    fn pseudo_header_matches_the_laid_out_bytes() {
        let addrs = [10, 42, 1, 2, 10, 42, 2, 2];
        let mut laid_out = addrs.to_vec();
        laid_out.extend_from_slice(&[0, 6, 0x05, 0xdc]);
        assert_eq!(pseudo_header(&addrs, 6, 1500), sum(&laid_out));
        let v6 = [0xfdu8; 32];
        let mut laid_out = v6.to_vec();
        laid_out.extend_from_slice(&[0, 1, 0, 8, 0, 0, 0, 58]);
        assert_eq!(pseudo_header(&v6, 58, 0x1_0008), sum(&laid_out));
    }

    #[test]
    fn transport_checksums_are_never_zero() {
        assert_eq!(finish(0xffff), 0);
        assert_eq!(finish_transport(0xffff), 0xffff);
        assert_eq!(finish_transport(0x1234), !0x1234);
    }

    proptest! {
        #[test]
        fn sum_is_the_textbook_sum(b in proptest::collection::vec(any::<u8>(), 0..3000)) {
            prop_assert_eq!(sum(&b), textbook(&b));
        }

        /// The vector unit's sum (AVX2 where the CPU has it) is the portable loop's, at every
        /// length and alignment (`sum_is_the_textbook_sum` checks the dispatch around it).
        #[test]
        fn the_wide_sum_is_the_portable_sum(
            b in proptest::collection::vec(any::<u8>(), 0..9000),
            skip in 0usize..64,
        ) {
            let b = &b[skip.min(b.len())..];
            prop_assert_eq!(wide_sum(b), native_sum(b));
        }

        #[test]
        fn partial_sums_compose_at_even_offsets(
            b in proptest::collection::vec(any::<u8>(), 0..600),
            cut in 0usize..300,
        ) {
            let cut = (cut * 2).min(b.len() & !1);
            prop_assert_eq!(add(sum(&b[..cut]), sum(&b[cut..])), sum(&b));
        }

        #[test]
        fn a_filled_checksum_verifies(mut b in proptest::collection::vec(any::<u8>(), 2..600), at in 0usize..300) {
            let at = (at * 2).min(b.len() - 2) & !1;
            b[at..at + 2].fill(0);
            let c = finish_transport(sum(&b));
            b[at..at + 2].copy_from_slice(&c.to_be_bytes());
            prop_assert!(verify(sum(&b)));
        }
    }
}
