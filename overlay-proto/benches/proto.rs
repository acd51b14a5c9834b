//! Criterion benchmarks of the pure parts: seal+open throughput, the endpoint's data path,
//! full handshakes (IK and XX) and the replay window. Short measurement times keep
//! `cargo bench -p overlay-proto` to about a minute.

#[path = "../tests/sim/identity.rs"]
mod identity;

use criterion::measurement::WallTime;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use overlay_proto::consts::{MAX_DATAGRAM_LEN, TAG_LEN, TRANSPORT_HEADER_LEN};
use overlay_proto::replay_window::ReplayWindow;
use overlay_proto::{Encapsulated, Endpoint, PeerId, Received, Session};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const A: &str = "10.0.0.1:51820";
const B: &str = "10.0.0.2:51820";

fn quick<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(20);
    g
}

/// Delivers every datagram between `a` (at `aa`) and `b` (at `ba`) until both are quiet.
fn pump(now: Instant, a: &mut Endpoint, aa: SocketAddr, b: &mut Endpoint, ba: SocketAddr) {
    loop {
        let mut moved = false;
        while let Some(mut t) = a.poll_transmit() {
            moved = true;
            let _ = b.handle_datagram(now, aa, &mut t.payload);
        }
        while let Some(mut t) = b.poll_transmit() {
            moved = true;
            let _ = a.handle_datagram(now, ba, &mut t.payload);
        }
        while a.poll_event().is_some() || b.poll_event().is_some() {}
        if !moved {
            return;
        }
    }
}

fn endpoints(now: Instant) -> (Endpoint, Endpoint, SocketAddr, SocketAddr) {
    let net = identity::Network::new(1);
    (net.endpoint(1, now, 1), net.endpoint(2, now, 1), A.parse().unwrap(), B.parse().unwrap())
}

fn seal_open(c: &mut Criterion) {
    let mut g = quick(c, "seal_open");
    let now = Instant::now();
    for (name, len) in [("1420B", 1420), ("64KiB", MAX_DATAGRAM_LEN - TRANSPORT_HEADER_LEN - TAG_LEN)] {
        let a = Session::new(now, 1, 2, true, true, &[1; 32], &[2; 32]);
        let b = Session::new(now, 2, 1, false, true, &[2; 32], &[1; 32]);
        let mut buf = vec![0x42u8; TRANSPORT_HEADER_LEN + len + TAG_LEN];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let n = a.seal(now, &mut buf, len).unwrap();
                b.open(now, black_box(&mut buf[..n])).unwrap()
            })
        });
    }
    g.finish();
}

fn endpoint_data_path(c: &mut Criterion) {
    let mut g = quick(c, "endpoint_encap_decap");
    let now = Instant::now();
    let (mut a, mut b, aa, ba) = endpoints(now);
    let pb: PeerId = a.add_peer(b.public_key(), Some(ba));
    a.connect(now, pb);
    pump(now, &mut a, aa, &mut b, ba);
    let len = 1420;
    let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + len + TAG_LEN];
    buf[TRANSPORT_HEADER_LEN] = 2;
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function("1420B", |bench| {
        bench.iter(|| {
            buf[TRANSPORT_HEADER_LEN + 1..TRANSPORT_HEADER_LEN + 4].fill(0);
            let Ok(Encapsulated::Ready { len: n, .. }) = a.encapsulate(now, pb, &mut buf, len) else {
                panic!("no session")
            };
            let r = b.handle_datagram(now, aa, &mut buf[..n]);
            assert!(matches!(r, Ok(Received::Payload { .. })));
        })
    });
    g.finish();
}

fn handshakes(c: &mut Criterion) {
    let mut g = quick(c, "handshake");
    g.throughput(Throughput::Elements(1));
    let start = Instant::now();
    let (mut a, mut b, aa, ba) = endpoints(start);
    let pb = a.add_peer(b.public_key(), Some(ba));
    let mut now = start;
    g.bench_function("ik", |bench| {
        bench.iter(|| {
            now += Duration::from_micros(10);
            a.connect(now, pb);
            pump(now, &mut a, aa, &mut b, ba);
        })
    });
    let (mut a, mut b, aa, ba) = endpoints(start);
    let mut now = start;
    g.bench_function("xx", |bench| {
        bench.iter(|| {
            now += Duration::from_micros(10);
            a.dial(now, ba);
            pump(now, &mut a, aa, &mut b, ba);
        })
    });
    let done = |e: &Endpoint| e.stats().handshakes_completed.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(done(&a), done(&b), "every XX handshake completed on both sides");
    g.finish();
}

fn replay_window(c: &mut Criterion) {
    let mut g = quick(c, "replay_window");
    g.throughput(Throughput::Elements(1));
    let mut w = ReplayWindow::new();
    let mut counter = 0u64;
    g.bench_function("in_order", |bench| {
        bench.iter(|| {
            counter += 1;
            w.update(black_box(counter))
        })
    });
    // Each step jumps ahead by 4 and fills one gap 3 behind: half the updates are late arrivals.
    let mut w = ReplayWindow::new();
    let mut counter = 8u64;
    let mut late = false;
    g.bench_function("reordered", |bench| {
        bench.iter(|| {
            late = !late;
            if late {
                w.update(black_box(counter - 3))
            } else {
                counter += 4;
                w.update(black_box(counter))
            }
        })
    });
    g.finish();
}

criterion_group!(benches, seal_open, endpoint_data_path, handshakes, replay_window);
criterion_main!(benches);
