//! Attaching a container's network namespace to a host bridge with a veth pair.
//!
//! Invariant: [`attach`] either returns a fully configured link or leaves nothing behind.
//! The container end is created directly inside the container's namespace under its final
//! name, so it never appears (or collides) in the host namespace, and deleting the host end
//! removes both ends; that is how a failed attach is rolled back and how [`detach`] works.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth};
use tracing::{debug, warn};

use super::{check_name, request, Netlink, NetlinkError};

/// A container attached by [`attach`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerLink {
    /// Host end of the veth pair, enslaved to the bridge.
    pub host_ifname: String,
    /// MAC address of the container end.
    pub mac: [u8; 6],
    /// Name of the container end inside its namespace (e.g. `eth0`).
    pub ifname: String,
}

/// Creates a veth pair: host end `host_ifname` (at most 15 bytes) enslaved to `bridge` and
/// up with `mtu`; the peer is created in the netns at `netns_path` as `ifname`, given `addrs`
/// (one per IP family: a dual-stack container has both on this one interface; IPv6 without
/// duplicate address detection, so it is usable at once) and `mtu`, brought up together with
/// `lo`, and a default route per family via that family's gateway in `gateways` is added
/// there. Returns the container-side MAC.
///
/// A namespace that already has a link named `ifname` is refused with
/// [`NetlinkError::InterfaceExists`] before anything is created.
///
/// On any failure everything created so far is removed before the error is returned. Not
/// cancel-safe: if the future is dropped midway, `detach(nl, host_ifname)` cleans up.
#[allow(clippy::too_many_arguments)] // mirrors the documented daemon API
pub async fn attach(
    nl: &Netlink,
    netns_path: &Path,
    bridge: &str,
    host_ifname: &str,
    ifname: &str,
    addrs: &[ipnet::IpNet],
    gateways: &[IpAddr],
    mtu: u32,
) -> Result<ContainerLink, NetlinkError> {
    let wrap = |error| NetlinkError::Attach { host_ifname: host_ifname.to_owned(), error: Box::new(error) };
    check_name(host_ifname).map_err(wrap)?;
    check_name(ifname).map_err(wrap)?;

    // Everything that can fail without side effects happens before the veth exists.
    let netns = File::open(netns_path)
        .map_err(|error| wrap(NetlinkError::Netns { path: netns_path.to_owned(), error }))?;
    let bridge_index = nl
        .link_index(bridge)
        .await
        .map_err(wrap)?
        .ok_or_else(|| wrap(NetlinkError::NotFound { what: "bridge", name: bridge.to_owned() }))?;
    let container_nl = Netlink::in_netns(netns_path).await.map_err(wrap)?;
    // The kernel would refuse the veth with a bare EEXIST that names neither the namespace nor
    // the interface; a race past this check still ends there, with nothing created.
    if container_nl.link_index(ifname).await.map_err(wrap)?.is_some() {
        let taken = NetlinkError::InterfaceExists { netns: netns_path.to_owned(), name: ifname.to_owned() };
        return Err(wrap(taken));
    }

    // The IPv4 address names the MAC when there is one (see `stable_mac`).
    let mac = addrs.iter().find_map(|a| stable_mac(a.addr()));
    create_veth(nl, host_ifname, ifname, &netns, netns_path, mtu, mac).await.map_err(wrap)?;
    debug!(host_ifname, ifname, netns = %netns_path.display(), "veth pair created");

    let configured = configure(nl, &container_nl, bridge_index, host_ifname, ifname, addrs, gateways).await;
    match configured {
        Ok(mac) => Ok(ContainerLink { host_ifname: host_ifname.to_owned(), mac, ifname: ifname.to_owned() }),
        Err(error) => {
            if let Err(cleanup) = nl.delete_link(host_ifname).await {
                warn!(host_ifname, error = %cleanup, "could not remove veth of failed attach");
            }
            Err(wrap(error))
        }
    }
}

/// The MAC an IPv4 container gets: `02:77` (locally administered, "w") and its address, as
/// Docker does. A container detached and attached again with the same address keeps its MAC,
/// so the ARP caches of its peers stay right: weft answers ARP itself (suppression), so
/// nothing else would tell them that a random new MAC replaced the old one. IPv4 addresses are
/// unique in a network, so these are too. IPv6 containers keep a kernel-chosen random MAC
/// (32 bits cannot carry an IPv6 address without collisions between node subnets).
pub fn stable_mac(ip: IpAddr) -> Option<[u8; 6]> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Some([0x02, 0x77, o[0], o[1], o[2], o[3]])
        }
        IpAddr::V6(_) => None,
    }
}

/// Deletes the host end of a container's veth pair, which removes the pair. `Ok(false)` if
/// it was already gone (e.g. the container's namespace was destroyed).
pub async fn detach(nl: &Netlink, host_ifname: &str) -> Result<bool, NetlinkError> {
    let deleted = nl.delete_link(host_ifname).await?;
    debug!(host_ifname, deleted, "container detached");
    Ok(deleted)
}

/// Creates the pair in one request, the peer directly inside `netns` (never visible in the
/// host namespace), both ends with `mtu`.
async fn create_veth(
    nl: &Netlink,
    host_ifname: &str,
    ifname: &str,
    netns: &File,
    netns_path: &Path,
    mtu: u32,
    mac: Option<[u8; 6]>,
) -> Result<(), NetlinkError> {
    // The kernel resolves the fd in our fd table while handling the request; `netns` is
    // borrowed until the request completes.
    let mut peer = LinkUnspec::new_with_name(ifname).mtu(mtu).setns_by_fd(netns.as_raw_fd());
    if let Some(mac) = mac {
        peer = peer.address(mac.to_vec());
    }
    let peer = peer.build();
    let message = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(host_ifname)
        .mtu(mtu)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    nl.handle.link().add(message).execute().await.map_err(|e| {
        request(format!("create veth {host_ifname} (peer {ifname} in {})", netns_path.display()), e)
    })
}

/// Creates a veth pair entirely in the daemon's namespace, for a runtime that moves the
/// container end itself (Docker's remote drivers return its name from `Join`): host end
/// `host_ifname` enslaved to `bridge` and up with `mtu`, peer `peer_ifname` with `mac` and
/// `mtu`, left down for the runtime to move, rename and configure. On failure nothing is left.
pub async fn create_pair(
    nl: &Netlink,
    bridge: &str,
    host_ifname: &str,
    peer_ifname: &str,
    mac: [u8; 6],
    mtu: u32,
) -> Result<(), NetlinkError> {
    let wrap = |error| NetlinkError::Attach { host_ifname: host_ifname.to_owned(), error: Box::new(error) };
    check_name(host_ifname).map_err(wrap)?;
    check_name(peer_ifname).map_err(wrap)?;
    let bridge_index = nl
        .link_index(bridge)
        .await
        .map_err(wrap)?
        .ok_or_else(|| wrap(NetlinkError::NotFound { what: "bridge", name: bridge.to_owned() }))?;
    let peer = LinkUnspec::new_with_name(peer_ifname).mtu(mtu).address(mac.to_vec()).build();
    let message = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(host_ifname)
        .mtu(mtu)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    nl.handle
        .link()
        .add(message)
        .execute()
        .await
        .map_err(|e| wrap(request(format!("create veth {host_ifname} (peer {peer_ifname})"), e)))?;
    let up = async {
        let host = nl
            .link_index(host_ifname)
            .await?
            .ok_or_else(|| NetlinkError::NotFound { what: "veth", name: host_ifname.to_owned() })?;
        nl.set_master(host, bridge_index).await?;
        nl.set_up(host).await
    };
    if let Err(error) = up.await {
        if let Err(cleanup) = nl.delete_link(host_ifname).await {
            warn!(host_ifname, error = %cleanup, "could not remove veth of failed attach");
        }
        return Err(wrap(error));
    }
    debug!(host_ifname, peer_ifname, "veth pair created for the runtime to move");
    Ok(())
}

/// Everything after the pair exists; any error here is rolled back by the caller.
async fn configure(
    nl: &Netlink,
    container_nl: &Netlink,
    bridge_index: u32,
    host_ifname: &str,
    ifname: &str,
    addrs: &[ipnet::IpNet],
    gateways: &[IpAddr],
) -> Result<[u8; 6], NetlinkError> {
    let host = nl
        .link_index(host_ifname)
        .await?
        .ok_or_else(|| NetlinkError::NotFound { what: "veth", name: host_ifname.to_owned() })?;
    nl.set_master(host, bridge_index).await?;
    nl.set_up(host).await?;

    let peer = container_nl
        .link_index(ifname)
        .await?
        .ok_or_else(|| NetlinkError::NotFound { what: "container link", name: ifname.to_owned() })?;
    for addr in addrs {
        container_nl.add_address(peer, *addr).await?;
    }
    container_nl.set_up(peer).await?;
    let lo = container_nl
        .link_index("lo")
        .await?
        .ok_or_else(|| NetlinkError::NotFound { what: "container link", name: "lo".to_owned() })?;
    container_nl.set_up(lo).await?;
    for gateway in gateways {
        container_nl.add_default_route(*gateway).await?;
    }
    container_nl.mac(peer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_containers_get_a_locally_administered_mac_from_their_address() {
        let mac = stable_mac("10.42.1.7".parse().unwrap()).unwrap();
        assert_eq!(mac, [0x02, 0x77, 10, 42, 1, 7]);
        assert_eq!(mac[0] & 0x01, 0, "unicast");
        assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
        assert_eq!(stable_mac("fd00::7".parse().unwrap()), None);
    }
}
