//! The per-frame work of the data path allocates nothing: TSO segmentation, GRO coalescing,
//! checksum completion, the policy's header parse and the frame queries and replies of
//! `dataplane::frame`, counted by a global allocator that counts per thread, only while that
//! thread's flag is on (tests run on parallel threads).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::IoSlice;

use weft::dataplane::frame;
use weft::dataplane::offload::{self, Gro, Loc, Sink, Tso, VnetHdr, GSO_TCPV4};
use weft::packet::{
    ethernet, ip_proto, tcp, EtherType, EthernetFrame, EthernetRepr, Ipv4Packet, Ipv4Repr, TcpPacket,
};
use weft::plane::NetId;

struct Counting;

thread_local! {
    /// Whether this thread is measuring.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Allocations this thread made while measuring.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches only const-initialised
// thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract for `layout` is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: `ptr` was allocated by `System` with `layout`, as the caller guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while running `f`.
fn allocations<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (ALLOCATIONS.with(Cell::get) - before, r)
}

const ROUNDS: usize = 200;
/// TCP payload per segment (a 1422-byte overlay MTU less IPv4 and TCP headers).
const MSS: u16 = 1402;
/// Bytes in front of a received frame (the tunnel headers it was decrypted behind).
const HEADROOM: usize = 20;
const L4: usize = ethernet::HEADER_LEN + weft::packet::ipv4::HEADER_LEN;

/// An Ethernet + IPv4 + TCP superframe with 60,000 bytes of payload.
fn superframe() -> Vec<u8> {
    let payload = 60_000usize;
    let mut f = vec![0u8; L4 + tcp::HEADER_LEN + payload];
    let eth = EthernetRepr {
        src_addr: [2, 0, 0, 0, 0, 1],
        dst_addr: [2, 0, 0, 0, 0, 2],
        ethertype: EtherType::IPV4,
    };
    eth.emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    let ip = Ipv4Repr {
        src_addr: [10, 42, 1, 2].into(),
        dst_addr: [10, 42, 2, 2].into(),
        protocol: ip_proto::TCP,
        payload_len: (tcp::HEADER_LEN + payload) as u16,
        hop_limit: 64,
        ident: 1,
        dont_frag: true,
    };
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut f[ethernet::HEADER_LEN..]));
    let mut t = TcpPacket::new_unchecked(&mut f[L4..]);
    t.set_src_port(40000);
    t.set_dst_port(5201);
    t.set_header_len(tcp::HEADER_LEN);
    t.set_flags(tcp::flags::ACK);
    f
}

struct Discard(usize);

impl Sink for Discard {
    fn write(&mut self, _net: NetId, iov: &[IoSlice<'_>], frames: usize) {
        self.0 += frames + iov.len();
    }
    fn acks_coalesced(&mut self, n: u64) {
        self.0 += n as usize;
    }
}

#[test]
fn tso_gro_and_checksum_completion_allocate_nothing() {
    let f = superframe();
    let h = VnetHdr { gso_type: GSO_TCPV4, gso_size: MSS, ..Default::default() };
    let plan = Tso::plan(&f, &h).expect("a valid superframe");
    let mut bufs: Vec<Vec<u8>> =
        (0..plan.count()).map(|_| vec![0u8; HEADROOM + plan.max_segment_len()]).collect();
    let mut lens = vec![0usize; plan.count()];
    let mut gro = Gro::default();
    let mut sink = Discard(0);
    let mut csum = f.clone();
    let (n, ()) = allocations(|| {
        for _ in 0..ROUNDS {
            let plan = Tso::plan(&f, &h).expect("a valid superframe");
            for i in 0..plan.count() {
                lens[i] = plan.segment(&f, i, &mut bufs[i][HEADROOM..]);
            }
            for (i, len) in lens.iter().enumerate() {
                gro.push(
                    &mut bufs,
                    NetId(0),
                    Loc { buf: i, start: HEADROOM, len: *len, partial_csum: false },
                    &mut sink,
                );
            }
            gro.flush(&mut bufs, &mut sink);
            offload::complete_csum(&mut csum, L4 as u16, tcp::field::CHECKSUM.start as u16)
                .expect("in the frame");
        }
    });
    assert!(sink.0 > 0);
    assert_eq!(n, 0, "{n} allocations in {ROUNDS} rounds of TSO, GRO and checksum completion");
}

#[test]
fn header_parsing_and_replies_allocate_nothing() {
    let f = superframe();
    let seg = &f[..L4 + tcp::HEADER_LEN + usize::from(MSS)];
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 8, 6, 0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 42, 1, 2]);
    arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 42, 2, 2]);
    let mut reply = [0u8; frame::ARP_REPLY_LEN];
    let mut too_big = [0u8; frame::TOO_BIG_REPLY_MAX];
    let gateway = "10.42.1.1".parse().unwrap();
    let (n, seen) = allocations(|| {
        let mut seen = 0;
        for _ in 0..ROUNDS {
            seen += usize::from(matches!(weft::policy::parse(seg), weft::policy::Parsed::Flow(_)));
            seen += usize::from(frame::source_ip(seg).is_some() && frame::dst_mac(seg).is_some());
            seen += usize::from(frame::arp_reply(&arp, [2, 0, 0, 0, 0, 9], &mut reply).is_some());
            seen += usize::from(frame::too_big_reply(&f, 1422, [2; 6], gateway, &mut too_big).is_some());
        }
        seen
    });
    assert_eq!(seen, 4 * ROUNDS);
    assert_eq!(n, 0, "{n} allocations in {ROUNDS} rounds of parsing and replies");
}

#[test]
fn the_counter_counts() {
    let (n, v) = allocations(|| vec![0u8; 10]);
    assert_eq!((n, v.len()), (1, 10));
}
