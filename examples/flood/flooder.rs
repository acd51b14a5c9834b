//! The two floods of issue 15, item 7, shared by `examples/flood` (the flooders of
//! `benches/throughput.sh`'s weft-flood case) and `tests/flood_lab.rs` (which includes this
//! file with `#[path]`), so that neither the benchmark nor the test carries its own copy and
//! none of it ships in the `weft` binary: XX initiations with a correct mac1 and a new sender
//! index each, random bytes of random lengths up to [`GARBAGE_MAX`], and a paced sender.
//!
//! Pacing counts send attempts, not successes, so a full socket buffer slows nothing down into
//! a catch-up burst later; a late wake-up is made up for by at most [`CATCH_UP`] periods' worth.
//! Every flood ends when its stop flag is set or its time bound has passed, whichever is first.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest garbage datagram (and the shortest is one byte).
pub const GARBAGE_MAX: usize = 1400;
/// The pacing period: one burst per period.
const PERIOD: Duration = Duration::from_millis(10);
/// A burst after a late wake-up holds at most this many periods' worth of datagrams.
const CATCH_UP: u64 = 2;

/// What a flood sends.
pub enum Flood {
    /// XX initiations with a correct mac1 for the network whose CA has `ca_public`: they pass
    /// the workers' checks and cost the receiver a Noise attempt unless its per-source rate
    /// limit or half-open caps stop them first.
    Initiations {
        /// The network CA's public key (mac1's key is derived from it).
        ca_public: [u8; 32],
        /// The sender index of the next initiation.
        next_index: u32,
    },
    /// Random bytes of random lengths (1 to [`GARBAGE_MAX`]).
    Garbage(Rng),
}

impl Flood {
    /// A flood of initiations for the network of `ca_public`, sender indexes from 1 up.
    pub fn initiations(ca_public: [u8; 32]) -> Self {
        Self::Initiations { ca_public, next_index: 1 }
    }

    /// A flood of garbage from the generator seeded with `seed`.
    pub fn garbage(seed: u64) -> Self {
        Self::Garbage(Rng::new(seed))
    }

    /// Replaces `buf`'s contents with the flood's next datagram.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) {
        match self {
            Self::Initiations { ca_public, next_index } => {
                valid_looking_init(ca_public, *next_index, buf);
                // Index 0 means "none" on the wire; skip it when the counter wraps.
                *next_index = next_index.checked_add(1).unwrap_or(1);
            }
            Self::Garbage(rng) => {
                let len = 1 + (rng.next_u64() % GARBAGE_MAX as u64) as usize;
                buf.resize(len, 0);
                for chunk in buf.chunks_mut(8) {
                    chunk.copy_from_slice(&rng.next_u64().to_le_bytes()[..chunk.len()]);
                }
            }
        }
    }
}

/// How many datagrams a flood tried to send and how many its socket accepted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    /// `send_to` calls.
    pub attempted: u64,
    /// `send_to` calls that succeeded.
    pub accepted: u64,
}

/// Sends `flood`'s datagrams from `sock` to `to`, `per_sec` a second in bursts every 10 ms,
/// until `stop` is set or `max` has passed.
pub fn send_paced(
    sock: &UdpSocket,
    to: SocketAddr,
    per_sec: u64,
    flood: &mut Flood,
    stop: &AtomicBool,
    max: Duration,
) -> Tally {
    let started = Instant::now();
    let burst_cap = (per_sec * CATCH_UP * PERIOD.as_millis() as u64).div_ceil(1000);
    let mut tally = Tally::default();
    let mut buf = Vec::with_capacity(GARBAGE_MAX);
    // Datagrams sent or given up: what the pace is measured against.
    let mut paced = 0u64;
    let mut period = 0u32;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < max {
        let due = (u128::from(per_sec) * started.elapsed().as_micros() / 1_000_000) as u64;
        // What a late wake-up cannot make up for is given up, not owed.
        paced = paced.max(due.saturating_sub(burst_cap));
        for _ in paced..due {
            flood.next_into(&mut buf);
            tally.attempted += 1;
            // Send errors (a full socket buffer, a refused port) only thin the flood out.
            if sock.send_to(&buf, to).is_ok() {
                tally.accepted += 1;
            }
        }
        paced = paced.max(due);
        period += 1;
        if let Some(wait) = (started + PERIOD * period).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    tally
}

/// xorshift64*: enough randomness for garbage, with no dependency.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (a zero seed, which xorshift cannot leave, is replaced).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Writes into `buf` an XX initiation with sender index `sender_index` and a correct mac1 for
/// the network of `ca_public` (as `valid_looking_init` in the engine's tests).
fn valid_looking_init(ca_public: &[u8; 32], sender_index: u32, buf: &mut Vec<u8>) {
    use overlay_proto::wire::{HandshakePacket, HandshakeRepr, MessageType, Pattern};
    let noise = [0x42u8; 32];
    let repr = HandshakeRepr {
        kind: MessageType::HandshakeInit,
        pattern: Some(Pattern::Xx),
        sender_index,
        receiver_index: 0,
        noise: &noise,
    };
    buf.clear();
    buf.resize(repr.buffer_len(), 0);
    repr.emit(buf).expect("emit an initiation");
    let mut p = HandshakePacket::new_checked(&mut buf[..]).expect("a handshake packet");
    let mac1 = overlay_proto::fuzz_mac1(ca_public, p.mac1_input());
    p.set_mac1(&mac1);
}
