//! The steady-state data path allocates nothing: `Session::seal`/`open`, and the endpoint's
//! `encapsulate`/`handle_datagram` with the outputs drained as the calling order asks, counted
//! by a global allocator that counts per thread, only while that thread's flag is on.

#[path = "sim/identity.rs"]
mod identity;

use overlay_proto::consts::{TAG_LEN, TRANSPORT_HEADER_LEN};
use overlay_proto::{Encapsulated, Endpoint, PeerId, Received};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Counting;

thread_local! {
    /// Whether this thread is measuring.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Allocations this thread made while measuring (tests run on parallel threads).
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

const PAYLOAD: usize = 1420;
const ROUNDS: usize = 10_000;
const A: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)), 1);
const B: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)), 1);

/// Two endpoints with a completed IK handshake; returns each one's id for the other.
fn pair(now: Instant) -> (Endpoint, Endpoint, PeerId, PeerId) {
    pair_with(now, overlay_proto::Ciphers::BOTH)
}

/// [`pair`], both offering `ciphers`.
fn pair_with(now: Instant, ciphers: overlay_proto::Ciphers) -> (Endpoint, Endpoint, PeerId, PeerId) {
    let net = identity::Network::new(1);
    let ep = |i: u16| {
        let mut cfg = net.config(i, now);
        cfg.ciphers = ciphers;
        identity::endpoint(cfg, 1)
    };
    let (mut a, mut b) = (ep(1), ep(2));
    let pb = a.add_peer(b.public_key(), Some(B));
    a.connect(now, pb);
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            moved = true;
            let _ = b.handle_datagram(now, A, &mut t.payload.clone());
        }
        while let Some(t) = b.poll_transmit() {
            moved = true;
            let _ = a.handle_datagram(now, B, &mut t.payload.clone());
        }
        if !moved {
            break;
        }
    }
    let pa = b.peer_by_key(&a.public_key()).expect("handshake completed");
    (a, b, pb, pa)
}

fn fill(buf: &mut [u8], i: usize) {
    buf[TRANSPORT_HEADER_LEN] = 2;
    buf[TRANSPORT_HEADER_LEN + 1..TRANSPORT_HEADER_LEN + 4].fill(0);
    buf[TRANSPORT_HEADER_LEN + 4..TRANSPORT_HEADER_LEN + 12].copy_from_slice(&(i as u64).to_le_bytes());
}

#[test]
fn session_seal_and_open_allocate_nothing() {
    for ciphers in [overlay_proto::Ciphers::BOTH, overlay_proto::Ciphers::CHACHA_ONLY] {
        seal_and_open_allocate_nothing(ciphers);
    }
}

/// With each session cipher.
fn seal_and_open_allocate_nothing(ciphers: overlay_proto::Ciphers) {
    let now = Instant::now();
    let (a, b, pb, _) = pair_with(now, ciphers);
    let tx = a.sending_session(now, pb).expect("a can send").0.clone();
    assert_eq!(Some(tx.cipher()), ciphers.choose(ciphers));
    let rx =
        b.sessions().find(|(idx, _, _)| *idx == tx.remote_index()).expect("b holds the session").2.clone();
    let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + PAYLOAD + TAG_LEN];
    let (n, opened) = allocations(|| {
        let mut opened = 0;
        for i in 0..ROUNDS {
            let t = now + Duration::from_micros(i as u64);
            fill(&mut buf, i);
            let len = tx.seal(t, &mut buf, PAYLOAD).expect("seal");
            let r = rx.open(t, &mut buf[..len]).expect("open");
            opened += usize::from(r.len() == PAYLOAD && buf[r.start + 4] == (i as u8));
        }
        opened
    });
    assert_eq!(opened, ROUNDS);
    assert_eq!(n, 0, "{n} allocations in {ROUNDS} seal+open pairs ({})", tx.cipher());
}

/// One payload from `a` to `b` through the endpoints, outputs drained as the calling order asks;
/// returns whether it arrived and how many transmits and events came out.
fn round(
    buf: &mut [u8],
    i: usize,
    t: Instant,
    a: &mut Endpoint,
    b: &mut Endpoint,
    to: PeerId,
    from: SocketAddr,
) -> (bool, usize) {
    fill(buf, i);
    let Ok(Encapsulated::Ready { len, .. }) = a.encapsulate(t, to, buf, PAYLOAD) else {
        panic!("no session")
    };
    let ok = matches!(b.handle_datagram(t, from, &mut buf[..len]), Ok(Received::Payload { .. }));
    let mut outputs = 0;
    for e in [a, b] {
        while let Some(x) = e.poll_transmit() {
            outputs += 1;
            std::hint::black_box(x);
        }
        while let Some(x) = e.poll_event() {
            outputs += 1;
            std::hint::black_box(x);
        }
        std::hint::black_box(e.poll_timeout());
    }
    (ok, outputs)
}

#[test]
fn endpoint_data_path_allocates_nothing() {
    let start = Instant::now();
    let (mut a, mut b, pb, pa) = pair(start);
    let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + PAYLOAD + TAG_LEN];
    // Warm up: b's first receive promotes its responder session and sets the draining list up.
    for i in 0..4 {
        let t = start + Duration::from_millis(i as u64);
        assert!(round(&mut buf, i, t, &mut a, &mut b, pb, A).0);
        assert!(round(&mut buf, i, t, &mut b, &mut a, pa, B).0);
    }
    let t0 = start + Duration::from_millis(10);
    let (n, (delivered, outputs)) = allocations(|| {
        let (mut delivered, mut outputs) = (0, 0);
        for i in 0..ROUNDS {
            let t = t0 + Duration::from_micros(100 * i as u64);
            for (ok, out) in
                [round(&mut buf, i, t, &mut a, &mut b, pb, A), round(&mut buf, i, t, &mut b, &mut a, pa, B)]
            {
                delivered += usize::from(ok);
                outputs += out;
            }
        }
        (delivered, outputs)
    });
    assert_eq!((delivered, outputs), (2 * ROUNDS, 0), "steady state: payloads in, nothing else out");
    assert_eq!(n, 0, "{n} allocations in {} encapsulate+handle_datagram pairs", 2 * ROUNDS);
}

#[test]
fn the_counter_counts() {
    let (n, v) = allocations(|| vec![0u8; 10]);
    assert_eq!((n, v.len()), (1, 10));
}
