//! The endpoint fed a script of arbitrary datagrams from a few source addresses, with time
//! passing and timers running in between. Script ops (first byte, low 2 bits):
//! 0: datagram `src(1) len(2) bytes`; 1: advance `ms(2)` then `handle_timeout`;
//! 2: encapsulate `len(1)` bytes to the known peer; 3: dial `src(1)`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay_proto_fuzz::{addr, drain, endpoint, tick, Cursor};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let base = Instant::now();
    let mut now = base;
    let mut ep = endpoint(base);
    let peer = ep.peer_ids().next().unwrap();
    let mut c = Cursor(data);
    let mut buf = vec![0u8; 2048];
    while !c.is_empty() {
        match c.u8() & 3 {
            0 => {
                let from = addr(c.u8());
                let n = usize::from(c.u16()) % 1500;
                let mut d = c.take(n).to_vec();
                let _ = ep.handle_datagram(now, from, &mut d);
            }
            1 => {
                now += Duration::from_millis(u64::from(c.u16()) * 8);
                tick(&mut ep, now);
            }
            2 => {
                let n = usize::from(c.u8());
                let body = c.take(n);
                buf[16..16 + body.len()].copy_from_slice(body);
                let _ = ep.encapsulate(now, peer, &mut buf, body.len());
            }
            _ => ep.dial(now, addr(c.u8())),
        }
        drain(&mut ep);
    }
});
