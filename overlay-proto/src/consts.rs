//! Size budgets and protocol timers, in one place so buffers and MTUs are derived, never guessed.
//!
//! Overhead of one encrypted frame on an IPv4 underlay:
//! `20 (IPv4) + 8 (UDP) + 16 (transport header) + 16 (Poly1305 tag) + 4 (inner header) = 64`
//! bytes in front of the 14-byte Ethernet header, so a 1500-byte underlay leaves
//! `1500 - 64 - 14 = 1422` bytes of overlay MTU (1402 on IPv6).

use std::time::Duration;

/// Length of the transport-data header: type, reserved, receiver index, counter.
pub const TRANSPORT_HEADER_LEN: usize = 16;
/// Length of the ChaCha20-Poly1305 authentication tag.
pub const TAG_LEN: usize = 16;
/// Length of the inner payload header (kind + 24-bit VNI or reserved bytes).
pub const INNER_HEADER_LEN: usize = 4;
/// Length of an untagged Ethernet header.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// IPv6 fixed header.
pub const IPV6_HEADER_LEN: usize = 40;
/// UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// Bytes an encrypted frame adds on top of the Ethernet frame, UDP payload only.
pub const TUNNEL_OVERHEAD: usize = TRANSPORT_HEADER_LEN + TAG_LEN + INNER_HEADER_LEN;
/// Largest Ethernet frame (header included) weft carries; bounds every frame buffer.
pub const MAX_FRAME_LEN: usize = 65_535 - IPV4_HEADER_LEN - UDP_HEADER_LEN - TUNNEL_OVERHEAD;
/// Largest UDP payload weft ever produces or accepts.
pub const MAX_DATAGRAM_LEN: usize = 65_535 - IPV4_HEADER_LEN - UDP_HEADER_LEN;
/// Largest Noise message inside a handshake datagram (certificates are far smaller).
pub const MAX_HANDSHAKE_NOISE_LEN: usize = 1_024;
/// Largest encoded certificate accepted.
pub const MAX_CERT_LEN: usize = 768;
/// Length of the MACs that close every handshake datagram.
pub const MAC_LEN: usize = 16;
/// Smallest plain VXLAN overlay MTU overhead: outer IPv4 + UDP + VXLAN header.
pub const VXLAN_OVERHEAD: usize = IPV4_HEADER_LEN + UDP_HEADER_LEN + 8;
/// The IANA VXLAN port.
pub const VXLAN_PORT: u16 = 4789;

/// Overlay (inner IP) MTU left by an underlay MTU when frames are encrypted.
pub const fn overlay_mtu(underlay_mtu: usize, ipv6_underlay: bool) -> usize {
    let ip = if ipv6_underlay { IPV6_HEADER_LEN } else { IPV4_HEADER_LEN };
    underlay_mtu.saturating_sub(ip + UDP_HEADER_LEN + TUNNEL_OVERHEAD + ETHERNET_HEADER_LEN)
}

/// Overlay MTU left by an underlay MTU in plain VXLAN mode (RFC 7348: 50 bytes on IPv4).
pub const fn vxlan_overlay_mtu(underlay_mtu: usize, ipv6_underlay: bool) -> usize {
    let ip = if ipv6_underlay { IPV6_HEADER_LEN } else { IPV4_HEADER_LEN };
    underlay_mtu.saturating_sub(ip + UDP_HEADER_LEN + 8 + ETHERNET_HEADER_LEN)
}

/// Initiate a new handshake once a session we initiated is this old (WireGuard's value).
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// A session older than this is never used again.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// Retry an unanswered handshake after this (plus jitter).
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Give up a handshake (and drop queued frames) after trying this long.
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// Send a keepalive when we received data and sent nothing for this long.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound of the random jitter added to handshake retries.
pub const MAX_JITTER: Duration = Duration::from_millis(333);
/// Initiate a new handshake after this many messages on one session.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// Never send or accept a counter at or above this.
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
/// Frames queued per peer while its handshake is in flight.
pub const MAX_QUEUED_PER_PEER: usize = 128;
/// How long a rotating cookie secret lives (WireGuard's value).
pub const COOKIE_SECRET_LIFETIME: Duration = Duration::from_secs(120);
