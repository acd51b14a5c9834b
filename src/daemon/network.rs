//! Host-side network objects of the daemon: per network a bridge `weft-<name>` holding the
//! gateway address and a multi-queue TAP `weft-<name>-t` enslaved to it; the UDP sockets;
//! and their removal.

use anyhow::{Context, Result};
use ipnet::IpNet;
use overlay_proto::cert::NodeCert;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use tracing::{info, warn};

use crate::config::{Config, Encryption, Network};
use crate::device::Tap;
use crate::family::{Addrs, Subnets};
use crate::ipam::Lease;
use crate::ipam::Leases;
use crate::netlink::Netlink;
use crate::packet::Mac;
use crate::plane::NetId;
use crate::plane::NetInfo;

/// What `bring_up` made.
pub struct Up {
    /// Per network facts.
    pub nets: Vec<NetInfo>,
    /// The node's container subnets per network (one per family of the network).
    pub pools: Vec<Subnets>,
    /// TAP queues, `[net][worker]`.
    pub taps: Vec<Vec<Arc<Tap>>>,
    /// Bridges this run created (not adopted): the only links a failed start may remove.
    pub created: Vec<String>,
}

/// The node's container subnets in network `n`, one per family of the network (from the
/// certificate), and their gateway addresses; `None` when the certificate lacks one of the
/// families or a subnet is too small for a gateway.
pub fn node_pool(n: &Network, cert: &NodeCert) -> Option<(Subnets, Addrs)> {
    let (mut pools, mut gateways) = (Subnets::default(), Addrs::default());
    for family in n.subnet.iter() {
        let pool = *cert.subnets.iter().find(|s| family.contains(*s))?;
        pools.set(pool);
        gateways.set(gateway_of(pool)?);
    }
    Some((pools, gateways))
}

/// The gateway address of a node subnet: its first host address. For IPv6 that is the one
/// after the all-zero address, which is the subnet-router anycast address (RFC 4291 2.6.1)
/// and no host's to hold.
pub fn gateway_of(pool: IpNet) -> Option<IpAddr> {
    match pool {
        IpNet::V4(p) => p.hosts().next().map(IpAddr::V4),
        IpNet::V6(p) if p.prefix_len() <= 126 => {
            Some(IpAddr::V6(std::net::Ipv6Addr::from(u128::from(p.network()) + 1)))
        }
        IpNet::V6(_) => None,
    }
}

/// Creates (or adopts) each network's bridge and TAP. On failure, removes the bridges it
/// created itself and nothing else.
pub async fn bring_up(nl: &Netlink, cfg: &Config, cert: &NodeCert) -> Result<Up> {
    let mut up = Up { nets: Vec::new(), pools: Vec::new(), taps: Vec::new(), created: Vec::new() };
    match bring_up_into(&mut up, nl, cfg, cert).await {
        Ok(()) => Ok(up),
        Err(e) => {
            remove_created(nl, &up.created).await;
            Err(e)
        }
    }
}

async fn bring_up_into(up: &mut Up, nl: &Netlink, cfg: &Config, cert: &NodeCert) -> Result<()> {
    for n in &cfg.networks {
        let (pool, gateway) = node_pool(n, cert).context("node subnet too small for a gateway")?;
        let gateway_nets: Vec<IpNet> =
            gateway.iter().filter_map(|g| IpNet::new(g, n.subnet.for_ip(&g)?.prefix_len()).ok()).collect();
        if nl.link_index(&n.bridge()).await?.is_none() {
            up.created.push(n.bridge());
        }
        let bridge = nl.ensure_bridge(&n.bridge()).await?;
        nl.set_mtu(bridge, n.mtu).await?;
        for g in gateway_nets {
            nl.add_address(bridge, g).await?;
        }
        let queues = Tap::open_queues(&n.tap(), cfg.underlay.workers)?;
        if cfg.underlay.offload {
            // Superframes instead of 1500-byte frames (see dataplane::offload); a kernel that
            // refuses leaves the TAP as it was, which only costs speed.
            if let Err(e) = queues[0].set_offload(crate::dataplane::offload::TAP_OFFLOADS) {
                tracing::warn!(network = %n.name, %e, "TAP offloads unavailable; frames stay MTU-sized");
            }
        }
        let tap = nl.link_index(&n.tap()).await?.context("TAP vanished after creation")?;
        // The TAP accepts any frame the bridge hands it, so that the daemon, not the bridge,
        // meets a too-big frame, and can answer it with ICMP instead of a silent drop.
        nl.set_mtu(tap, crate::device::PORT_MTU).await?;
        nl.set_master(tap, bridge).await?;
        nl.set_up(tap).await?;
        nl.set_up(bridge).await?;
        let gateway_mac = nl.mac(bridge).await?;
        info!(network = %n.name, bridge = %n.bridge(), gateway = %gateway, mtu = n.mtu, "network up");
        up.nets.push(NetInfo {
            name: n.name.clone(),
            vni: n.vni,
            mtu: n.mtu,
            subnet: n.subnet,
            gateway,
            gateway_mac,
            encryption: n.encryption,
            remotes: n.remotes.clone(),
            remote_checksum: n.remote_checksum,
        });
        up.pools.push(pool);
        up.taps.push(queues.into_iter().map(Arc::new).collect());
    }
    Ok(())
}

/// Removes bridges this run created (a failed start).
pub async fn remove_created(nl: &Netlink, bridges: &[String]) {
    for b in bridges {
        if let Err(e) = nl.delete_link(b).await {
            warn!(%e, bridge = %b, "cannot remove bridge");
        }
    }
}

/// Keeps leases whose host veth still exists (a crash left them running) and drops the rest.
/// Returns the local FDB entries to restore.
pub async fn reconcile_leases(
    nl: &Netlink,
    nets: &[Network],
    leases: &mut Leases,
) -> Vec<(NetId, Mac, IpAddr, Lease)> {
    let mut keep = Vec::new();
    for (network, ip, lease) in leases.all() {
        let net = nets.iter().position(|n| n.name == network).map(NetId);
        let alive = matches!(nl.link_index(&lease.host_ifname).await, Ok(Some(_)));
        match (net, alive) {
            (Some(net), true) => keep.push((net, lease.mac, ip, lease.clone())),
            _ => {
                info!(container = %lease.name, %ip, "dropping lease of a container that is gone");
                leases.remove(&network, &ip);
            }
        }
    }
    if let Err(e) = leases.save() {
        warn!(%e, "cannot save leases");
    }
    keep
}

/// What `weft teardown` removed.
#[derive(Debug, Default, serde::Serialize)]
pub struct TornDown {
    /// Containers detached (name, network, address).
    pub containers: Vec<(String, String, IpAddr)>,
    /// Bridges deleted.
    pub bridges: Vec<String>,
}

/// Removes everything a node leaves in place across restarts: container links, their
/// resolv.conf files and leases, and the bridges. Only for `weft teardown`, under the locks.
pub async fn tear_down(nl: &Netlink, cfg: &Config, leases: &mut Leases) -> TornDown {
    let mut done = TornDown::default();
    for (network, ip, lease) in leases.all() {
        if let Err(e) = crate::netlink::detach(nl, &lease.host_ifname).await {
            warn!(%e, container = %lease.name, "cannot remove container link");
        }
        crate::control::resolv_conf::remove(&lease.netns);
        leases.remove(&network, &ip);
        done.containers.push((lease.name.clone(), network, ip));
    }
    if let Err(e) = leases.save() {
        warn!(%e, "cannot save leases");
    }
    for n in &cfg.networks {
        match nl.delete_link(&n.bridge()).await {
            Ok(true) => done.bridges.push(n.bridge()),
            Ok(false) => {}
            Err(e) => warn!(%e, bridge = %n.bridge(), "cannot remove bridge"),
        }
    }
    done
}

/// The data-plane sockets.
pub struct Sockets {
    /// One per worker, SO_REUSEPORT on the listen address.
    pub udp: Vec<UdpSocket>,
    /// One per worker on the VXLAN port, when a plain network exists.
    pub vxlan: Vec<UdpSocket>,
}

/// Opens the sockets.
pub fn udp_sockets(cfg: &Config) -> Result<Sockets> {
    let mut s = Sockets { udp: Vec::new(), vxlan: Vec::new() };
    let plain = cfg.networks.iter().find(|n| n.encryption == Encryption::None);
    for _ in 0..cfg.underlay.workers {
        s.udp.push(reuseport(cfg.underlay.listen)?);
        if let Some(p) = plain {
            s.vxlan.push(reuseport(SocketAddr::new(cfg.underlay.listen.ip(), p.vxlan_port))?);
        }
    }
    Ok(s)
}

fn reuseport(addr: SocketAddr) -> Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    let _ = sock.set_recv_buffer_size(4 << 20);
    let _ = sock.set_send_buffer_size(4 << 20);
    sock.bind(&addr.into()).with_context(|| format!("binding UDP {addr}"))?;
    Ok(sock.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(subnet: &str) -> Network {
        let text = format!(
            "[node]\nname = \"h1\"\nkey = \"k\"\ncert = \"c\"\nca = \"ca\"\n[underlay]\nlisten = \"10.200.0.1:51820\"\n\
             [[network]]\nname = \"n\"\nvni = 42\nsubnet = {subnet}\n"
        );
        let cfg = Config::parse(std::path::Path::new("/etc/weft/node.toml"), &text).unwrap();
        cfg.networks[0].clone()
    }

    fn cert(subnets: &[&str]) -> NodeCert {
        NodeCert {
            name: "h1".into(),
            public_key: [1; 32],
            signing_key: [2; 32],
            subnets: subnets.iter().map(|s| s.parse().unwrap()).collect(),
            groups: Vec::new(),
            not_before: 0,
            not_after: u64::MAX,
            issuer: [3; 32],
            signature: [0; 64],
        }
    }

    #[test]
    fn the_ipv6_gateway_is_a_host_address_never_the_all_zero_one() {
        let n = network(r#"["10.42.0.0/16", "fd42::/48"]"#);
        let (pools, gateways) = node_pool(&n, &cert(&["10.42.1.0/24", "fd42:0:0:1::/64"])).unwrap();
        assert_eq!(pools, "10.42.1.0/24, fd42:0:0:1::/64".parse().unwrap());
        assert_eq!(gateways.v4(), Some("10.42.1.1".parse().unwrap()), "IPv4 as before");
        assert_eq!(
            gateways.v6(),
            Some("fd42:0:0:1::1".parse().unwrap()),
            "not fd42:0:0:1:: (subnet-router anycast)"
        );
        // An IPv6-only network too.
        let (_, gateways) = node_pool(&network("\"fd42::/48\""), &cert(&["fd42:0:0:2::/64"])).unwrap();
        assert_eq!(gateways.first(), Some("fd42:0:0:2::1".parse().unwrap()));
        assert_eq!(gateway_of("fd42::/127".parse().unwrap()), None, "no room for a gateway and a host");
    }

    #[test]
    fn a_family_the_certificate_lacks_gives_no_pool() {
        let n = network(r#"["10.42.0.0/16", "fd42::/48"]"#);
        assert!(node_pool(&n, &cert(&["10.42.1.0/24"])).is_none());
        assert!(node_pool(&n, &cert(&["fd42:0:0:1::/64"])).is_none());
    }
}
