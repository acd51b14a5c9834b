//! Just enough Ethernet, ARP, IPv4 and IPv6 to forward, suppress ARP, check sources and answer
//! oversize frames with ICMP. Every accessor is bounds-checked: a short or odd frame yields
//! `None`, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A MAC address.
pub type Mac = [u8; 6];

/// EtherType IPv4.
pub const ETH_IPV4: u16 = 0x0800;
/// EtherType ARP.
pub const ETH_ARP: u16 = 0x0806;
/// EtherType IPv6.
pub const ETH_IPV6: u16 = 0x86dd;

/// Destination MAC.
pub fn dst_mac(f: &[u8]) -> Option<Mac> {
    f.get(0..6)?.try_into().ok()
}

/// Source MAC.
pub fn src_mac(f: &[u8]) -> Option<Mac> {
    f.get(6..12)?.try_into().ok()
}

/// EtherType.
pub fn ethertype(f: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(f.get(12..14)?.try_into().ok()?))
}

/// Broadcast or multicast destination.
pub fn is_multicast(m: &Mac) -> bool {
    m[0] & 1 == 1
}

/// The source IP the frame claims: IPv4/IPv6 source, or the ARP sender address.
pub fn source_ip(f: &[u8]) -> Option<IpAddr> {
    match ethertype(f)? {
        ETH_IPV4 => Some(IpAddr::V4(ipv4_at(f, 26)?)),
        ETH_ARP => Some(IpAddr::V4(ipv4_at(f, 28)?)),
        ETH_IPV6 => Some(IpAddr::V6(ipv6_at(f, 22)?)),
        _ => None,
    }
}

fn ipv4_at(f: &[u8], at: usize) -> Option<Ipv4Addr> {
    let b: [u8; 4] = f.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

fn ipv6_at(f: &[u8], at: usize) -> Option<Ipv6Addr> {
    let b: [u8; 16] = f.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(b))
}

/// Unspecified or link-local: an address no certificate can vouch for.
pub fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_unspecified() || a.is_link_local(),
        IpAddr::V6(a) => a.is_unspecified() || (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// An ARP request for IPv4 over Ethernet: (sender MAC, sender IP, target IP).
pub fn arp_request(f: &[u8]) -> Option<(Mac, Ipv4Addr, Ipv4Addr)> {
    if ethertype(f)? != ETH_ARP || f.get(14..22)? != [0, 1, 8, 0, 6, 4, 0, 1] {
        return None;
    }
    Some((f.get(22..28)?.try_into().ok()?, ipv4_at(f, 28)?, ipv4_at(f, 38)?))
}

/// Writes the ARP reply "`target_ip` is at `target_mac`" for a request into `out` (42 bytes).
pub fn arp_reply(req: &[u8], target_mac: Mac, out: &mut [u8; 42]) -> Option<()> {
    let (sender_mac, sender_ip, target_ip) = arp_request(req)?;
    out[0..6].copy_from_slice(&sender_mac);
    out[6..12].copy_from_slice(&target_mac);
    out[12..14].copy_from_slice(&ETH_ARP.to_be_bytes());
    out[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    out[22..28].copy_from_slice(&target_mac);
    out[28..32].copy_from_slice(&target_ip.octets());
    out[32..38].copy_from_slice(&sender_mac);
    out[38..42].copy_from_slice(&sender_ip.octets());
    Some(())
}

/// For an IPv4 frame with DF set (or any IPv6 frame) too big for `mtu`, builds the ICMP
/// "fragmentation needed" / ICMPv6 "packet too big" frame to send back to its source.
/// `gateway` is the address the error comes from. Returns the frame length written to `out`.
pub fn too_big_reply(f: &[u8], mtu: u16, gateway_mac: Mac, gateway: IpAddr, out: &mut [u8]) -> Option<usize> {
    match (ethertype(f)?, gateway) {
        (ETH_IPV4, IpAddr::V4(gw)) => {
            let ip = f.get(14..)?;
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let df = ip.get(6)? & 0x40 != 0;
            if !df || ihl < 20 || ip.get(9) == Some(&1) && ip.get(ihl) == Some(&3) {
                return None; // fragmentable, malformed, or itself an ICMP error
            }
            let quote = &ip[..(ihl + 8).min(ip.len())];
            let total = 20 + 8 + quote.len();
            let n = 14 + total;
            let out = out.get_mut(..n)?;
            out[0..6].copy_from_slice(f.get(6..12)?);
            out[6..12].copy_from_slice(&gateway_mac);
            out[12..14].copy_from_slice(&ETH_IPV4.to_be_bytes());
            let h = &mut out[14..34];
            h.copy_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            h[12..16].copy_from_slice(&gw.octets());
            h[16..20].copy_from_slice(ip.get(12..16)?);
            let c = checksum(&[h]);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            let icmp = &mut out[34..n];
            icmp[..8].copy_from_slice(&[3, 4, 0, 0, 0, 0, 0, 0]);
            icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
            icmp[8..].copy_from_slice(quote);
            let c = checksum(&[icmp]);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            Some(n)
        }
        (ETH_IPV6, IpAddr::V6(gw)) => {
            let ip = f.get(14..)?;
            if ip.get(6) == Some(&58) && ip.get(40).is_some_and(|t| *t < 128) {
                return None; // never answer an ICMPv6 error with another
            }
            let quote = &ip[..ip.len().min(1280 - 48)];
            let plen = 8 + quote.len();
            let n = 14 + 40 + plen;
            let out = out.get_mut(..n)?;
            out[0..6].copy_from_slice(f.get(6..12)?);
            out[6..12].copy_from_slice(&gateway_mac);
            out[12..14].copy_from_slice(&ETH_IPV6.to_be_bytes());
            let src = ip.get(8..24)?;
            let h = &mut out[14..54];
            h.fill(0);
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
            h[6] = 58;
            h[7] = 64;
            h[8..24].copy_from_slice(&gw.octets());
            h[24..40].copy_from_slice(src);
            let mut pseudo = [0u8; 40];
            pseudo[..32].copy_from_slice(&h[8..40]);
            pseudo[32..36].copy_from_slice(&(plen as u32).to_be_bytes());
            pseudo[39] = 58;
            let icmp = &mut out[54..n];
            icmp[..8].copy_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
            icmp[4..8].copy_from_slice(&u32::from(mtu).to_be_bytes());
            icmp[8..].copy_from_slice(quote);
            let c = checksum(&[&pseudo, icmp]);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            Some(n)
        }
        _ => None,
    }
}

/// The Internet checksum over several slices.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for p in parts {
        let mut chunks = p.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arp_req() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 42, 1, 2]);
        f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 42, 2, 2]);
        f
    }

    #[test]
    fn arp_request_and_reply() {
        let f = arp_req();
        let (smac, sip, tip) = arp_request(&f).unwrap();
        assert_eq!(
            (smac, sip, tip),
            ([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 42, 1, 2), Ipv4Addr::new(10, 42, 2, 2))
        );
        assert_eq!(source_ip(&f), Some(IpAddr::V4(sip)));
        let mut out = [0u8; 42];
        arp_reply(&f, [2, 0, 0, 0, 0, 9], &mut out).unwrap();
        assert_eq!(&out[0..6], &smac);
        assert_eq!(&out[20..22], &[0, 2]);
        assert_eq!(&out[28..32], &[10, 42, 2, 2]);
        assert_eq!(arp_request(&out), None, "a reply is not a request");
    }

    #[test]
    fn short_frames_are_none() {
        for n in 0..42 {
            let f = &arp_req()[..n];
            let _ = (dst_mac(f), src_mac(f), ethertype(f), source_ip(f), arp_request(f));
        }
        assert_eq!(source_ip(&arp_req()[..30]), None);
    }

    #[test]
    fn icmp_frag_needed_checksums_verify() {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0];
        let mut ip = vec![0x45, 0, 5, 0xdc, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 42, 1, 2, 10, 42, 2, 2];
        ip.extend_from_slice(&[0u8; 1480]);
        f.extend_from_slice(&ip);
        let mut out = [0u8; 200];
        let n = too_big_reply(&f, 1422, [2, 0, 0, 0, 0, 9], "10.42.1.1".parse().unwrap(), &mut out).unwrap();
        assert_eq!(n, 14 + 20 + 8 + 28);
        assert_eq!(checksum(&[&out[14..34]]), 0);
        assert_eq!(checksum(&[&out[34..n]]), 0);
        assert_eq!(&out[34..36], &[3, 4]);
        assert_eq!(u16::from_be_bytes([out[40], out[41]]), 1422);
        // Without DF: no reply.
        f[14 + 6] = 0;
        assert_eq!(too_big_reply(&f, 1422, [0; 6], "10.42.1.1".parse().unwrap(), &mut out), None);
    }
}
