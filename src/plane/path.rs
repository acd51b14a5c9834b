//! Relayed paths as addresses. The protocol endpoint knows a peer by one underlay address and
//! moves it to wherever authenticated traffic last came from (roaming). A peer reached through
//! a relay gets a *virtual* address that names the relay and the peer: `100::/64` (RFC 6666,
//! the discard-only prefix, which no underlay packet can come from or go to), the relay's
//! `PeerId` in bits 64..96 and the peer's in bits 96..128, port 0. So the endpoint's own
//! roaming moves a session onto a relay and back to the direct path, without a new handshake
//! and without the endpoint knowing relays exist (Tailscale's magicsock does the same with
//! its magic DERP addresses).
//!
//! Nothing is ever sent to a virtual address: the engine wraps datagrams for one into the
//! relay's session, workers hand frames for a relayed peer to the engine, and the workers drop
//! datagrams that claim to come from `100::/64`.

use overlay_proto::PeerId;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The first 64 bits of every virtual address.
const PREFIX: [u16; 4] = [0x0100, 0, 0, 0];

/// The virtual address of `peer` reached through `relay`.
pub fn via(relay: PeerId, peer: PeerId) -> SocketAddr {
    let [a, b] = [(relay.0 >> 16) as u16, relay.0 as u16];
    let [c, d] = [(peer.0 >> 16) as u16, peer.0 as u16];
    let [p0, p1, p2, p3] = PREFIX;
    SocketAddr::new(IpAddr::V6(Ipv6Addr::new(p0, p1, p2, p3, a, b, c, d)), 0)
}

/// Whether `ip` is in the virtual prefix (a datagram from there is forged).
pub fn is_virtual_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.segments()[..4] == PREFIX,
        IpAddr::V4(_) => false,
    }
}

/// `(relay, peer)` of a virtual address; `None` for a real one.
pub fn relayed(addr: SocketAddr) -> Option<(PeerId, PeerId)> {
    let IpAddr::V6(v6) = addr.ip() else { return None };
    if !is_virtual_ip(addr.ip()) {
        return None;
    }
    let s = v6.segments();
    let relay = (u32::from(s[4]) << 16) | u32::from(s[5]);
    let peer = (u32::from(s[6]) << 16) | u32::from(s[7]);
    Some((PeerId(relay), PeerId(peer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_addresses_roundtrip_and_real_ones_are_not_virtual() {
        for (r, p) in [(0, 1), (7, 3), (u32::MAX, 0x1234_5678)] {
            let a = via(PeerId(r), PeerId(p));
            assert_eq!(relayed(a), Some((PeerId(r), PeerId(p))));
            assert!(is_virtual_ip(a.ip()));
        }
        for real in
            ["10.0.0.1:51820", "[2001:db8::1]:51820", "[::1]:1", "[100:0:0:1::1]:5", "[::ffff:1.2.3.4]:9"]
        {
            let a: SocketAddr = real.parse().unwrap();
            assert_eq!(relayed(a), None, "{real}");
        }
    }
}
