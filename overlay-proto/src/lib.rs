//! weft's protocol, pure: wire format, certificates, Noise handshake, sessions and the
//! per-peer state machine. No sockets, files, threads or clocks: every input takes `now`,
//! randomness comes from an injected RNG, and every output is pulled by the caller.
//!
//! # Calling order
//! The owner of an [`Endpoint`] (a daemon's control thread, or a simulation) does:
//! 1. on a received datagram: [`Endpoint::handle_datagram`]`(now, from, buf)`; a
//!    [`Received::Payload`] names the peer and where the decrypted inner payload sits in `buf`
//!    (decode it with [`wire::Inner::parse`]);
//! 2. to send an inner payload: write it at `buf[16..]` and call
//!    [`Endpoint::encapsulate`]`(now, peer, buf, len)`: `Ready` means `buf[..len]` goes to
//!    `dst`; `Queued` means a handshake is under way and the payload will follow;
//! 3. after either, and after [`Endpoint::handle_timeout`]: drain [`Endpoint::poll_transmit`]
//!    (send in order), then [`Endpoint::poll_event`];
//! 4. sleep until [`Endpoint::poll_timeout`] (or the next datagram), then call
//!    [`Endpoint::handle_timeout`]`(now)`.
//!
//! A multi-threaded data plane may seal and open through the `Arc<`[`Session`]`>`s listed by
//! [`Endpoint::sessions`] (republished whenever [`Endpoint::generation`] changes) and hand only
//! handshake datagrams to the endpoint.
//!
//! # Handshake
//! Noise IK when the responder's key is known, Noise XX for first contact with an address
//! (see [`handshake`]); both through `snow`. Certificates ride inside the encrypted payloads;
//! the prologue binds the handshake to the network CA.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cert;
pub mod consts;
mod cookie;
pub mod counters;
pub mod endpoint;
pub mod handshake;
pub mod keys;
mod peer;
pub mod replay_window;
pub mod session;
pub mod stats;
pub mod wire;

pub use endpoint::{
    DatagramError, EncapError, Encapsulated, Endpoint, EndpointConfig, Event, PeerInfo, Received, Transmit,
};
pub use peer::{PeerId, Totals};
pub use session::{Cipher, Ciphers, Features, OpenError, SealError, Session};
pub use stats::{EndpointSnapshot, EndpointStats};

/// `mac1` over `data` (a handshake datagram up to its MACs) for the network whose CA has
/// `ca_public`: lets fuzzers and tests build handshake datagrams that reach the Noise layer.
#[doc(hidden)]
pub fn fuzz_mac1(ca_public: &[u8; 32], data: &[u8]) -> [u8; 16] {
    cookie::mac(&cookie::MacKeys::new(ca_public).mac1, data)
}
