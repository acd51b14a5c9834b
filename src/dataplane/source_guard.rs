//! Local anti-spoofing (Docker's and Calico's, for weft): a frame read from our TAP comes from
//! this host's bridge — a local container, or the host itself — and leaves only if it speaks
//! as its sender is entitled to. Peers trust what our frames claim within our certified
//! subnets (and their policy labels a source by its address), so a container that put its
//! neighbour's address on its interface would otherwise be its neighbour everywhere else.
//!
//! For the frame's source MAC `m` and every address it uses as its own — the IPv4/IPv6 source
//! or ARP sender address, and the target of a neighbour advertisement, which binds that address
//! whatever the source:
//! - link-local and unspecified addresses are allowed: duplicate address detection, ARP probes
//!   and neighbour discovery need them, they bind nothing in the overlay, and on an encrypted
//!   network they never leave the host (no certificate covers them);
//! - `m` is a local lease: the address must be that lease's;
//! - `m` is a remote member's container (or behind a VXLAN remote): nothing from our bridge
//!   may use it;
//! - `m` is no lease's: it is the host's (the bridge's own MAC, which the kernel changes as
//!   ports come and go, so it cannot be pinned) or a made-up one. It may use no lease's address,
//!   and inside the network's subnet only the gateway's: the host talks to remote containers
//!   as its gateway, and an unleased address of our subnet would pass for this node itself.
//!
//! A link-layer address inside an ARP or neighbour discovery message must be `m`, and an
//! ARP, IPv4, IPv6 or neighbour discovery frame too odd to read is refused: what cannot be
//! read cannot be vouched for. Per frame: one header walk and at most three hash lookups, no
//! allocation.

use std::net::IpAddr;

use super::frame;
use super::tables::{Loc, NetTables};
use super::NetInfo;
use crate::packet::Mac;

/// Whether a frame read from network `info`'s TAP may leave, given its tables `nt`.
pub fn allows(nt: &NetTables, info: &NetInfo, f: &[u8]) -> bool {
    let Ok(c) = frame::sender_claims(f) else { return false };
    let lease = match nt.macs.get(&c.mac) {
        Some(Loc::Local) => Some(c.mac),
        Some(Loc::Peer(_) | Loc::Vtep(_)) => return false,
        None => None,
    };
    c.lladdr.is_none_or(|m| m == c.mac)
        && c.ip.is_none_or(|ip| may_use(nt, info, lease, ip))
        && c.advertised.is_none_or(|ip| may_use(nt, info, lease, ip.into()))
}

/// Whether the sender — the local lease with MAC `lease`, or the host when `None` — may use
/// `ip` as its own.
fn may_use(nt: &NetTables, info: &NetInfo, lease: Option<Mac>, ip: IpAddr) -> bool {
    if frame::is_link_local(&ip) {
        return true;
    }
    let owner = nt.ips.get(&ip);
    match lease {
        Some(mac) => owner == Some(&mac),
        None => owner.is_none() && (info.gateway.has(&ip) || !info.subnet.contains(&ip)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Encryption;
    use crate::packet::ndisc::{self, NdiscPacket, NdiscRepr};
    use crate::packet::{
        ethernet, ip_proto, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr,
        IcmpPacket, Icmpv4Repr, Icmpv6Repr, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
    };
    use overlay_proto::wire::Vni;
    use overlay_proto::PeerId;
    use std::net::{Ipv4Addr, Ipv6Addr};

    // Host A: containers a1 and a2 (local leases); b1 lives behind peer B.
    const A1: Mac = [2, 0, 0, 0, 1, 2];
    const A2: Mac = [2, 0, 0, 0, 1, 3];
    const B1: Mac = [2, 0, 0, 0, 2, 2];
    /// The bridge's MAC: in no table.
    const HOST: Mac = [2, 0xbb, 0, 0, 0, 1];
    /// A MAC a rogue container made up.
    const MADE_UP: Mac = [2, 0xee, 0, 0, 0, 9];

    struct Net {
        nt: NetTables,
        info: NetInfo,
        ip: fn(Mac) -> IpAddr,
    }

    fn v4(m: Mac) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 42, m[4], m[5]))
    }

    fn v6(m: Mac) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0xfd42, 0, u16::from(m[4]), 0, 0, 0, 0, u16::from(m[5])))
    }

    /// Host A's view of a network whose addresses `ip` makes (gateway: `ip(.., 1)`).
    fn net(ip: fn(Mac) -> IpAddr, subnet: &str) -> Net {
        let mut nt = NetTables::default();
        for (mac, loc) in [(A1, Loc::Local), (A2, Loc::Local), (B1, Loc::Peer(PeerId(7)))] {
            nt.macs.insert(mac, loc);
            nt.ips.insert(ip(mac), mac);
        }
        let info = NetInfo {
            name: "default".into(),
            vni: Vni::new(42).unwrap(),
            mtu: 1400,
            subnet: subnet.parse().unwrap(),
            gateway: crate::family::Addrs::one(ip([0, 0, 0, 0, 1, 1])),
            gateway_mac: HOST,
            encryption: Encryption::ChaCha20Poly1305,
            remotes: Vec::new(),
            remote_checksum: false,
        };
        Net { nt, info, ip }
    }

    fn net4() -> Net {
        net(v4, "10.42.0.0/16")
    }

    fn net6() -> Net {
        net(v6, "fd42::/32")
    }

    impl Net {
        fn allows(&self, f: &[u8]) -> bool {
            allows(&self.nt, &self.info, f)
        }

        fn gateway(&self) -> IpAddr {
            self.info.gateway.first().unwrap()
        }
    }

    fn eth(src: Mac, dst: Mac, ethertype: EtherType, payload_len: usize) -> Vec<u8> {
        let mut f = vec![0u8; ethernet::HEADER_LEN + payload_len];
        EthernetRepr { src_addr: src, dst_addr: dst, ethertype }
            .emit(&mut EthernetFrame::new_unchecked(&mut f));
        f
    }

    /// An echo request from `src_mac`/`src` to `dst`.
    fn ping(src_mac: Mac, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let echo = [0u8; 8];
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let msg = Icmpv4Repr::EchoRequest { ident: 1, seq: 1 };
                let len = msg.buffer_len(echo.len());
                let mut f = eth(src_mac, B1, EtherType::IPV4, 20 + len);
                let mut ip = Ipv4Packet::new_unchecked(&mut f[ethernet::HEADER_LEN..]);
                Ipv4Repr {
                    src_addr: s,
                    dst_addr: d,
                    protocol: ip_proto::ICMP,
                    payload_len: len as u16,
                    hop_limit: 64,
                    ident: 0,
                    dont_frag: true,
                }
                .emit(&mut ip);
                msg.emit(&mut IcmpPacket::new_unchecked(ip.payload_mut()), &echo);
                f
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let msg = Icmpv6Repr::EchoRequest { ident: 1, seq: 1 };
                let mut f = ipv6(src_mac, s, d, msg.buffer_len(echo.len()));
                let mut ip = Ipv6Packet::new_unchecked(&mut f[ethernet::HEADER_LEN..]);
                let pseudo = ip.pseudo_header(ip_proto::ICMPV6, msg.buffer_len(echo.len()) as u32);
                msg.emit(&mut IcmpPacket::new_unchecked(ip.payload_mut()), &echo, pseudo);
                f
            }
            _ => unreachable!("one family"),
        }
    }

    fn ipv6(src_mac: Mac, src: Ipv6Addr, dst: Ipv6Addr, payload_len: usize) -> Vec<u8> {
        let mut f = eth(src_mac, [0x33, 0x33, 0, 0, 0, 1], EtherType::IPV6, 40 + payload_len);
        Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: ip_proto::ICMPV6,
            payload_len: payload_len as u16,
            hop_limit: 255,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut f[ethernet::HEADER_LEN..]));
        f
    }

    fn arp(op: ArpOperation, src_mac: Mac, sender_mac: Mac, sender: IpAddr, target: IpAddr) -> Vec<u8> {
        let (IpAddr::V4(sender_ip), IpAddr::V4(target_ip)) = (sender, target) else { unreachable!("IPv4") };
        let mut f = eth(src_mac, [0xff; 6], EtherType::ARP, 28);
        let target_mac = if op == ArpOperation::Reply { B1 } else { [0; 6] };
        ArpRepr { operation: op, sender_mac, sender_ip, target_mac, target_ip }
            .emit(&mut ArpPacket::new_unchecked(&mut f[ethernet::HEADER_LEN..]));
        f
    }

    /// A neighbour solicitation or advertisement from `src_mac`/`src`.
    fn nd(src_mac: Mac, src: IpAddr, repr: NdiscRepr) -> Vec<u8> {
        let IpAddr::V6(src) = src else { unreachable!("IPv6") };
        let mut f = ipv6(src_mac, src, "ff02::1".parse().unwrap(), repr.buffer_len());
        let mut ip = Ipv6Packet::new_unchecked(&mut f[ethernet::HEADER_LEN..]);
        let pseudo = ip.pseudo_header(ip_proto::ICMPV6, repr.buffer_len() as u32);
        repr.emit(&mut NdiscPacket::new_unchecked(ip.payload_mut()), pseudo);
        f
    }

    fn advert(target: IpAddr, lladdr: Option<Mac>) -> NdiscRepr {
        let IpAddr::V6(target_addr) = target else { unreachable!("IPv6") };
        NdiscRepr::NeighborAdvert { flags: ndisc::flags::OVERRIDE, target_addr, lladdr }
    }

    fn solicit(target: IpAddr, lladdr: Option<Mac>) -> NdiscRepr {
        let IpAddr::V6(target_addr) = target else { unreachable!("IPv6") };
        NdiscRepr::NeighborSolicit { target_addr, lladdr }
    }

    fn link_local(m: Mac) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(m[5])))
    }

    #[test]
    fn containers_speak_as_their_lease() {
        for n in [net4(), net6()] {
            let ip = n.ip;
            assert!(n.allows(&ping(A1, ip(A1), ip(B1))), "a1 as itself");
            assert!(n.allows(&ping(A2, ip(A2), ip(B1))), "a2 as itself");
        }
        let n = net4();
        let ip = n.ip;
        let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        for (what, f) in [
            ("request", arp(ArpOperation::Request, A1, A1, ip(A1), ip(B1))),
            ("reply", arp(ArpOperation::Reply, A1, A1, ip(A1), ip(B1))),
            ("gratuitous", arp(ArpOperation::Request, A1, A1, ip(A1), ip(A1))),
            ("probe", arp(ArpOperation::Request, A1, A1, unspecified, ip(A1))),
            ("probe for a taken address", arp(ArpOperation::Request, A1, A1, unspecified, ip(A2))),
        ] {
            assert!(n.allows(&f), "ARP {what}");
        }
        let n = net6();
        let ip = n.ip;
        let dad = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        for (what, f) in [
            ("advertisement", nd(A1, ip(A1), advert(ip(A1), Some(A1)))),
            ("advertisement without option", nd(A1, ip(A1), advert(ip(A1), None))),
            ("link-local advertisement", nd(A1, link_local(A1), advert(link_local(A1), Some(A1)))),
            ("solicitation", nd(A1, ip(A1), solicit(ip(B1), Some(A1)))),
            ("link-local solicitation", nd(A1, link_local(A1), solicit(ip(A2), Some(A1)))),
            ("DAD", nd(A1, dad, solicit(ip(A1), None))),
        ] {
            assert!(n.allows(&f), "ND {what}");
        }
    }

    #[test]
    fn the_host_speaks_as_its_gateway() {
        for n in [net4(), net6()] {
            let ip = n.ip;
            assert!(n.allows(&ping(HOST, n.gateway(), ip(B1))), "the host pings a remote container");
        }
        let n = net4();
        let ip = n.ip;
        assert!(n.allows(&arp(ArpOperation::Request, HOST, HOST, n.gateway(), ip(B1))));
        assert!(n.allows(&arp(ArpOperation::Reply, HOST, HOST, n.gateway(), ip(A1))));
        let n = net6();
        assert!(n.allows(&nd(HOST, n.gateway(), advert(n.gateway(), Some(HOST)))));
        assert!(n.allows(&nd(HOST, link_local(HOST), solicit((n.ip)(B1), Some(HOST)))));
        // Outside the network's subnet the receivers decide (an encrypted peer refuses it).
        let outside = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        assert!(net4().allows(&ping(HOST, outside, v4(B1))));
    }

    #[test]
    fn other_ethertypes_claim_no_address() {
        let n = net4();
        assert!(n.allows(&eth(A1, [0xff; 6], EtherType(0x88cc), 46)), "LLDP from a lease");
        assert!(n.allows(&eth(HOST, [0xff; 6], EtherType(0x88cc), 46)), "LLDP from the host");
    }

    #[test]
    fn rogue_container_using_a_remote_containers_mac_is_refused() {
        let n = net4();
        let outside = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        // Whatever the frame carries: nothing behind a peer is on our bridge.
        assert!(!n.allows(&eth(B1, [0xff; 6], EtherType(0x88cc), 46)), "LLDP");
        assert!(!n.allows(&ping(B1, outside, v4(A2))), "an address outside the network");
        assert!(!n.allows(&ping(B1, v4(B1), v4(A2))), "with its address too");
    }

    #[test]
    fn rogue_container_using_its_neighbours_ip_is_refused() {
        for n in [net4(), net6()] {
            let ip = n.ip;
            assert!(!n.allows(&ping(A1, ip(A2), ip(B1))), "a1's MAC with a2's address");
            assert!(!n.allows(&ping(A1, ip(B1), ip(A2))), "a1's MAC with a remote container's address");
            assert!(!n.allows(&ping(A1, n.gateway(), ip(B1))), "a1's MAC with the gateway's address");
            assert!(!n.allows(&ping(A1, ip([0, 0, 0, 0, 1, 99]), ip(B1))), "an unleased address");
        }
        let outside = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        assert!(!net4().allows(&ping(A1, outside, v4(B1))), "an address outside the network");
    }

    #[test]
    fn rogue_container_using_its_neighbours_mac_is_refused() {
        for n in [net4(), net6()] {
            let ip = n.ip;
            assert!(!n.allows(&ping(A2, ip(A1), ip(B1))), "a2's MAC with a1's address");
            assert!(!n.allows(&ping(B1, ip(A1), ip(A2))), "a remote container's MAC with a1's address");
            assert!(!n.allows(&ping(B1, ip(B1), ip(A2))), "a remote container's MAC and address");
            assert!(!n.allows(&ping(MADE_UP, ip(A1), ip(B1))), "a made-up MAC with a1's address");
            assert!(!n.allows(&ping(HOST, ip(A1), ip(B1))), "the host's MAC with a1's address");
        }
    }

    #[test]
    fn rogue_container_with_a_made_up_mac_and_an_unleased_address_is_refused() {
        for n in [net4(), net6()] {
            let ip = n.ip;
            // It would pass for this node itself at the receivers (node name and groups).
            assert!(!n.allows(&ping(MADE_UP, ip([0, 0, 0, 0, 1, 99]), ip(B1))));
            assert!(!n.allows(&ping(MADE_UP, ip([0, 0, 0, 0, 3, 99]), ip(B1))), "another host's range");
        }
    }

    #[test]
    fn rogue_arp_reply_claiming_its_neighbours_ip_is_refused() {
        let n = net4();
        let ip = n.ip;
        for (what, f) in [
            ("reply for a2's address", arp(ArpOperation::Reply, A1, A1, ip(A2), ip(B1))),
            ("reply for b1's address", arp(ArpOperation::Reply, A1, A1, ip(B1), ip(A2))),
            ("gratuitous for a2's address", arp(ArpOperation::Request, A1, A1, ip(A2), ip(A2))),
            ("request as a2", arp(ArpOperation::Request, A1, A1, ip(A2), ip(B1))),
            ("reply for the gateway's address", arp(ArpOperation::Reply, A1, A1, n.gateway(), ip(B1))),
            ("own address bound to a2's MAC", arp(ArpOperation::Reply, A1, A2, ip(A1), ip(B1))),
            ("a2's MAC and address inside", arp(ArpOperation::Reply, A1, A2, ip(A2), ip(B1))),
        ] {
            assert!(!n.allows(&f), "ARP {what}");
        }
    }

    #[test]
    fn rogue_nd_advertisement_claiming_its_neighbours_address_is_refused() {
        let n = net6();
        let ip = n.ip;
        for (what, f) in [
            ("a2's address from a1's", nd(A1, ip(A1), advert(ip(A2), Some(A1)))),
            ("a2's address from link-local", nd(A1, link_local(A1), advert(ip(A2), Some(A1)))),
            ("b1's address from link-local", nd(A1, link_local(A1), advert(ip(B1), None))),
            ("the gateway's address", nd(A1, link_local(A1), advert(n.gateway(), Some(A1)))),
            ("own address at a2's MAC", nd(A1, ip(A1), advert(ip(A1), Some(A2)))),
            ("a solicitation binding a2's MAC", nd(A1, ip(A1), solicit(ip(B1), Some(A2)))),
            ("a solicitation as a2", nd(A1, ip(A2), solicit(ip(B1), Some(A1)))),
            ("the host advertising a1", nd(HOST, n.gateway(), advert(ip(A1), Some(HOST)))),
        ] {
            assert!(!n.allows(&f), "ND {what}");
        }
        // Two target link-layer options: stacks differ on which one counts.
        let mut f = nd(A1, ip(A1), advert(ip(A1), Some(A1)));
        f.extend_from_slice(&[ndisc::option::TARGET_LLADDR, 1, 2, 0, 0, 0, 1, 3]);
        let len = (f.len() - ethernet::HEADER_LEN - 40) as u16;
        Ipv6Packet::new_unchecked(&mut f[ethernet::HEADER_LEN..]).set_payload_len(len);
        assert!(!n.allows(&f), "a second, different target link-layer option");
    }

    #[test]
    fn rogue_frames_under_a_vlan_tag_or_cut_short_are_refused() {
        let n = net4();
        let ip = n.ip;
        let tag = |f: Vec<u8>| {
            let mut t = f[..12].to_vec();
            t.extend_from_slice(&[0x81, 0x00, 0, 5]);
            t.extend_from_slice(&f[12..]);
            t
        };
        assert!(n.allows(&tag(ping(A1, ip(A1), ip(B1)))), "tagged, as itself");
        assert!(!n.allows(&tag(ping(A1, ip(A2), ip(B1)))), "tagged, as a2");
        let f = ping(A1, ip(A2), ip(B1));
        assert!(!n.allows(&f[..ethernet::HEADER_LEN + 10]), "an IPv4 header cut short");
        let mut rarp = arp(ArpOperation::Request, A1, A1, ip(A1), ip(B1));
        rarp[ethernet::HEADER_LEN + 7] = 3;
        assert!(!n.allows(&rarp), "an ARP operation we cannot check");
    }
}
