//! `underlay.advertise`: the `IP:PORT` other members dial to reach this node, which goes into
//! its membership record. It must be an address they can reach, never `0.0.0.0`: a member
//! that learns a peer by gossip (not as its own seed) dials exactly what the peer advertised.
//!
//! The default is concrete, in this order: listen's IP when it is specified; else the source
//! address of the route to the first seed (a connected UDP socket's local address: the kernel
//! picks the route, no packet is sent) with listen's port; else the host's only global unicast
//! address. Parsing (`Config::parse`) is pure and leaves the last two [`AdvertiseFrom::Unresolved`];
//! [`resolve`] reads the host through [`HostAddrs`], which tests replace.

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// Where the advertised address came from (`weft check-config` prints it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdvertiseFrom {
    /// `underlay.advertise` in the file.
    Configured,
    /// `underlay.listen`'s IP, which is specified.
    Listen,
    /// The source address of the route to this seed.
    RouteTo(SocketAddr),
    /// The host's only global unicast address, on this interface.
    OnlyAddress(String),
    /// Not resolved yet: listen's IP is unspecified and host state decides ([`resolve`]).
    Unresolved,
}

impl fmt::Display for AdvertiseFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Configured => write!(f, "underlay.advertise"),
            Self::Listen => write!(f, "underlay.listen's address"),
            Self::RouteTo(seed) => write!(f, "the source address of the route to seed {seed}"),
            Self::OnlyAddress(ifname) => write!(f, "the host's only global address, on {ifname}"),
            Self::Unresolved => write!(f, "not resolved yet"),
        }
    }
}

/// What the default reads from the host.
pub trait HostAddrs {
    /// The source address the kernel would use to send to `to` (no packet is sent).
    fn route_source(&self, to: SocketAddr) -> Option<IpAddr>;
    /// `(interface, address)` of every interface that is up.
    fn addresses(&self) -> Vec<(String, IpAddr)>;
}

/// The running host.
pub struct System;

impl HostAddrs for System {
    fn route_source(&self, to: SocketAddr) -> Option<IpAddr> {
        let any: IpAddr =
            if to.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
        let socket = UdpSocket::bind((any, 0)).ok()?;
        socket.connect(to).ok()?;
        Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_unspecified())
    }

    fn addresses(&self) -> Vec<(String, IpAddr)> {
        crate::device::interface_addresses()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.up)
            .map(|a| (a.interface, a.address))
            .collect()
    }
}

/// The address to advertise when the file sets none and listen's IP is unspecified: from the
/// route to the first of `seeds` in listen's address family, else the host's only global
/// unicast address outside the overlay subnets (a weft bridge's gateway address is not an
/// underlay address). The error says what was tried and that `advertise` must be set.
pub fn resolve(
    listen: SocketAddr,
    seeds: &[SocketAddr],
    overlay: &[IpNet],
    host: &dyn HostAddrs,
) -> Result<(SocketAddr, AdvertiseFrom), String> {
    let same_family = |ip: &IpAddr| ip.is_ipv4() == listen.is_ipv4();
    let seed = seeds.iter().find(|s| same_family(&s.ip()));
    if let Some(seed) = seed {
        if let Some(ip) = host.route_source(*seed).filter(same_family) {
            return Ok((SocketAddr::new(ip, listen.port()), AdvertiseFrom::RouteTo(*seed)));
        }
    }
    let mut found: Vec<(String, IpAddr)> = Vec::new();
    for (ifname, ip) in host.addresses() {
        let usable = same_family(&ip) && is_global_unicast(ip) && !overlay.iter().any(|n| n.contains(&ip));
        if usable && !found.iter().any(|(_, seen)| *seen == ip) {
            found.push((ifname, ip));
        }
    }
    if let [(ifname, ip)] = found.as_slice() {
        return Ok((SocketAddr::new(*ip, listen.port()), AdvertiseFrom::OnlyAddress(ifname.clone())));
    }
    let tried_seed = match seed {
        Some(s) => format!("no route to seed {s}"),
        None => "no seed to route to".to_owned(),
    };
    let addresses = match found.as_slice() {
        [] => "no global address".to_owned(),
        many => format!(
            "{} global addresses ({})",
            many.len(),
            many.iter().map(|(i, a)| format!("{a} on {i}")).collect::<Vec<_>>().join(", ")
        ),
    };
    Err(format!(
        "listen is {listen}, which other members cannot dial, and no address to advertise \
         instead was found ({tried_seed}; the host has {addresses}): set advertise = \
         \"<this host's underlay IP>:{}\" under [underlay]",
        listen.port()
    ))
}

/// Not loopback, link-local, unspecified, multicast or broadcast.
fn is_global_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            !(v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || link_local)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host with fixed routes and addresses.
    struct Fake {
        route: Option<IpAddr>,
        addrs: Vec<(&'static str, &'static str)>,
    }

    impl HostAddrs for Fake {
        fn route_source(&self, _to: SocketAddr) -> Option<IpAddr> {
            self.route
        }
        fn addresses(&self) -> Vec<(String, IpAddr)> {
            self.addrs.iter().map(|(i, a)| (i.to_string(), a.parse().unwrap())).collect()
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const ANY: &str = "0.0.0.0:51820";

    #[test]
    fn route_to_the_first_seed_wins_over_host_addresses() {
        let host = Fake { route: Some("10.200.0.2".parse().unwrap()), addrs: vec![("eth0", "192.0.2.7")] };
        let got = resolve(sa(ANY), &[sa("10.200.0.1:51820")], &[], &host).unwrap();
        assert_eq!(got, (sa("10.200.0.2:51820"), AdvertiseFrom::RouteTo(sa("10.200.0.1:51820"))));
    }

    #[test]
    fn route_lookup_on_the_real_host_sends_nothing_and_finds_loopback() {
        // Connecting a UDP socket only picks a route; 127.0.0.1 always has one.
        let got = resolve(sa("0.0.0.0:4000"), &[sa("127.0.0.1:9")], &[], &System).unwrap();
        assert_eq!(got, (sa("127.0.0.1:4000"), AdvertiseFrom::RouteTo(sa("127.0.0.1:9"))));
        // The real host's address list is readable (loopback, at least, when up).
        let _ = System.addresses();
    }

    #[test]
    fn seeds_of_the_other_family_are_skipped() {
        let host = Fake { route: Some("2001:db8::2".parse().unwrap()), addrs: vec![("eth0", "192.0.2.7")] };
        let got = resolve(sa(ANY), &[sa("[2001:db8::1]:51820")], &[], &host).unwrap();
        assert_eq!(got, (sa("192.0.2.7:51820"), AdvertiseFrom::OnlyAddress("eth0".into())));
    }

    #[test]
    fn only_global_address_ignores_loopback_link_local_and_overlay() {
        let host = Fake {
            route: None,
            addrs: vec![
                ("lo", "127.0.0.1"),
                ("lo", "::1"),
                ("eth0", "169.254.3.4"),
                ("eth0", "fe80::1"),
                ("eth0", "2001:db8::5"),
                ("weft-default", "10.42.1.1"),
                ("eth0", "10.200.0.3"),
            ],
        };
        let overlay = ["10.42.0.0/16".parse().unwrap()];
        let got = resolve(sa(ANY), &[], &overlay, &host).unwrap();
        assert_eq!(got, (sa("10.200.0.3:51820"), AdvertiseFrom::OnlyAddress("eth0".into())));
        // The IPv6 listener picks the one global IPv6 address.
        let got = resolve(sa("[::]:7000"), &[], &overlay, &host).unwrap();
        assert_eq!(got.0, sa("[2001:db8::5]:7000"));
    }

    #[test]
    fn no_route_and_no_single_address_is_an_error_that_says_to_set_advertise() {
        let two = Fake { route: None, addrs: vec![("eth0", "192.0.2.7"), ("eth1", "198.51.100.7")] };
        let e = resolve(sa(ANY), &[sa("203.0.113.1:51820")], &[], &two).unwrap_err();
        assert!(e.contains("no route to seed 203.0.113.1:51820"), "{e}");
        assert!(e.contains("2 global addresses (192.0.2.7 on eth0, 198.51.100.7 on eth1)"), "{e}");
        assert!(e.contains("set advertise = \"<this host's underlay IP>:51820\""), "{e}");
        let none = Fake { route: None, addrs: vec![("lo", "127.0.0.1")] };
        let e = resolve(sa(ANY), &[], &[], &none).unwrap_err();
        assert!(e.contains("no seed to route to") && e.contains("no global address"), "{e}");
    }
}
