//! Criterion benchmarks of the per-byte and per-frame work of the data path: the Internet
//! checksum over a 64 KiB TCP superframe, splitting that superframe into MTU-sized segments
//! (TSO in userspace), coalescing the segments back into one superframe (GRO in userspace),
//! and the policy's header parse of one frame. Short measurement times keep
//! `cargo bench --bench datapath` to well under a minute.

use criterion::measurement::WallTime;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use std::io::IoSlice;
use std::time::Duration;
use weft::dataplane::offload::{self, Gro, Loc, Sink, Tso, VnetHdr, GSO_TCPV4};
use weft::packet::checksum;
use weft::plane::NetId;

/// TCP payload bytes per segment: a 1422-byte overlay MTU less 20 (IPv4) and 32 (TCP with
/// timestamps).
const MSS: usize = 1370;
/// Ethernet + IPv4 + TCP (with 12 bytes of options) in front of the payload.
const HEADERS: usize = 14 + 20 + 32;
/// Payload of the largest superframe an IPv4 TSO frame can carry.
const PAYLOAD: usize = 65_535 - 20 - 32;

fn quick<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    g
}

/// An Ethernet + IPv4 + TCP superframe as a container's stack hands it to the TAP under TSO.
fn superframe() -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = (20 + 32 + PAYLOAD) as u16;
    let t = total.to_be_bytes();
    f.extend_from_slice(&[0x45, 0, t[0], t[1], 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 42, 1, 2, 10, 42, 2, 2]);
    f.extend_from_slice(&[
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 77, 0x80, 0x10, 0x01, 0xf4, 0, 0, 0, 0,
    ]);
    f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    f.extend((0..PAYLOAD).map(|i| (i * 7 + 3) as u8));
    assert_eq!(f.len(), HEADERS + PAYLOAD);
    f
}

fn tso_header() -> VnetHdr {
    VnetHdr { gso_type: GSO_TCPV4, gso_size: MSS as u16, ..Default::default() }
}

fn checksum(c: &mut Criterion) {
    let mut g = quick(c, "checksum");
    let f = superframe();
    for len in [1500, f.len()] {
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("{len}B"), |b| b.iter(|| checksum::sum(black_box(&f[..len]))));
    }
    g.finish();
}

fn tso(c: &mut Criterion) {
    let mut g = quick(c, "tso_split");
    let f = superframe();
    let h = tso_header();
    let plan = Tso::plan(&f, &h).expect("a valid superframe");
    let mut out = vec![0u8; plan.max_segment_len()];
    g.throughput(Throughput::Bytes(f.len() as u64));
    g.bench_function("64KiB", |b| {
        b.iter(|| {
            let plan = Tso::plan(black_box(&f), &h).expect("a valid superframe");
            let mut n = 0;
            for i in 0..plan.count() {
                n += plan.segment(&f, i, &mut out);
            }
            n
        })
    });
    g.finish();
}

/// Counts what GRO writes, as a TAP would take it: bytes and writes.
#[derive(Default)]
struct Count(usize, usize);

impl Sink for Count {
    fn write(&mut self, _net: NetId, iov: &[IoSlice<'_>], _frames: usize) {
        self.0 += iov.iter().map(|s| s.len()).sum::<usize>();
        self.1 += 1;
    }
    fn acks_coalesced(&mut self, _n: u64) {}
}

fn gro(c: &mut Criterion) {
    let mut g = quick(c, "gro_coalesce");
    let f = superframe();
    let plan = Tso::plan(&f, &tso_header()).expect("a valid superframe");
    // Each segment sits in its own receive buffer after 20 bytes of tunnel headers.
    let mut bufs: Vec<Vec<u8>> = (0..plan.count())
        .map(|i| {
            let mut out = vec![0u8; 20 + plan.max_segment_len()];
            let n = plan.segment(&f, i, &mut out[20..]);
            out.truncate(20 + n);
            out
        })
        .collect();
    // GRO rewrites the first segment's headers into the superframe's; restored each round.
    let first = bufs[0][..20 + HEADERS].to_vec();
    let mut gro = Gro::default();
    let mut round = move |bufs: &mut [Vec<u8>]| {
        bufs[0][..20 + HEADERS].copy_from_slice(&first);
        let mut sink = Count::default();
        for i in 0..bufs.len() {
            let len = bufs[i].len() - 20;
            gro.push(bufs, NetId(0), Loc { buf: i, start: 20, len, partial_csum: false }, &mut sink);
        }
        gro.flush(bufs, &mut sink);
        sink
    };
    let once = round(&mut bufs);
    assert_eq!((once.0, once.1), (offload::VNET_HDR_LEN + f.len(), 1), "one superframe out");
    g.throughput(Throughput::Bytes(f.len() as u64));
    g.bench_function("64KiB", |b| b.iter(|| round(&mut bufs).0));
    g.finish();
}

fn flow_parse(c: &mut Criterion) {
    let mut g = quick(c, "flow_parse");
    let f = superframe();
    let seg = &f[..HEADERS + MSS];
    g.throughput(Throughput::Elements(1));
    g.bench_function("ipv4_tcp", |b| b.iter(|| weft::policy::parse(black_box(seg))));
    g.finish();
}

criterion_group!(benches, checksum, tso, gro, flow_parse);
criterion_main!(benches);
