//! Link, address and route configuration over rtnetlink; never by running `ip`.
//!
//! A [`Netlink`] is one rtnetlink socket and the tokio task driving it. The socket is bound
//! to the network namespace it was created in, for its whole life: [`Netlink::new`] uses
//! the caller's namespace, [`Netlink::in_netns`] another one, without ever moving the
//! calling thread. Operations that callers repeat after a crash (bridge creation, address
//! assignment, link deletion) are idempotent; every error names the operation and the link.

pub mod container;

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, RouteMessageBuilder};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::device::{self, IfNameError};

pub use container::{attach, detach, ContainerLink};

/// Errors from netlink configuration.
///
/// The `Display` text carries the OS error (e.g. `create bridge weft-default: File exists
/// (os error 17)`), so these variants expose no `source()`; use [`NetlinkError::os_error`]
/// to inspect the errno.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The rtnetlink socket could not be created.
    #[error("open rtnetlink socket: {error}")]
    Connect {
        /// The OS error.
        error: io::Error,
    },
    /// The network namespace file could not be opened or entered.
    #[error("enter netns {}: {error}", path.display())]
    Netns {
        /// The namespace path, e.g. `/var/run/netns/NAME`.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The kernel refused a request.
    #[error("{what}: {error}")]
    Request {
        /// The operation and its link, e.g. `create bridge weft-default`.
        what: String,
        /// The OS error (errno from the kernel, or a decoding failure).
        error: io::Error,
    },
    /// An interface name the kernel would reject.
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: IfNameError,
    },
    /// A link that must exist does not.
    #[error("{what} {name} not found")]
    NotFound {
        /// What was looked for, e.g. `bridge`.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// The container's namespace already has a link with the name its veth end would take.
    #[error("netns {} already has an interface {name}", netns.display())]
    InterfaceExists {
        /// The namespace path.
        netns: PathBuf,
        /// The interface name.
        name: String,
    },
    /// A link with the bridge's name exists but is another kind of device.
    #[error("link {name} exists but is not a bridge (kind: {kind})")]
    NotABridge {
        /// The link name.
        name: String,
        /// Its kind as the kernel reports it, or `none`.
        kind: String,
    },
    /// The link has no 6-byte hardware address.
    #[error("link {index} has no Ethernet address")]
    NoMac {
        /// The link index.
        index: u32,
    },
    /// A step of [`container::attach`] failed; everything it had created was removed.
    #[error("attach {host_ifname}: {error}")]
    Attach {
        /// The host end of the veth pair.
        host_ifname: String,
        /// The failed step.
        error: Box<NetlinkError>,
    },
}

impl NetlinkError {
    /// The errno behind this error, if the kernel returned one.
    pub fn os_error(&self) -> Option<i32> {
        match self {
            Self::Connect { error } | Self::Netns { error, .. } | Self::Request { error, .. } => {
                error.raw_os_error()
            }
            Self::Attach { error, .. } => error.os_error(),
            Self::InvalidName { .. }
            | Self::InterfaceExists { .. }
            | Self::NotFound { .. }
            | Self::NotABridge { .. }
            | Self::NoMac { .. } => None,
        }
    }
}

/// An rtnetlink connection bound to one network namespace.
#[derive(Debug)]
pub struct Netlink {
    handle: Handle,
    connection: JoinHandle<()>,
}

impl Netlink {
    /// Connection in the caller's current network namespace. Must be called within a
    /// tokio runtime, on which the connection task is spawned.
    pub async fn new() -> Result<Self, NetlinkError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|error| NetlinkError::Connect { error })?;
        Ok(Self::spawn(connection, handle))
    }

    /// Connection whose socket lives in the network namespace at `path` (e.g.
    /// `/var/run/netns/NAME`). The socket is created on a short-lived thread that enters
    /// the namespace first; the calling thread's namespace is never changed. Must be called
    /// within a tokio runtime, on which the connection task is spawned.
    pub async fn in_netns(path: &Path) -> Result<Self, NetlinkError> {
        let netns_err = |error| NetlinkError::Netns { path: path.to_owned(), error };
        let netns = File::open(path).map_err(netns_err)?;
        let runtime = tokio::runtime::Handle::current();
        let (tx, rx) = futures::channel::oneshot::channel();
        std::thread::Builder::new()
            .name("weft-netns".into())
            .spawn(move || {
                let result = device::enter_netns(&netns).map(|()| {
                    // The socket registers with the caller's runtime reactor.
                    let _runtime = runtime.enter();
                    rtnetlink::new_connection()
                });
                // The receiver only goes away if the caller was cancelled.
                let _ = tx.send(result);
            })
            .map_err(|error| NetlinkError::Connect { error })?;
        let (connection, handle, _) = rx
            .await
            .map_err(|_| netns_err(io::Error::other("netns thread exited without a result")))?
            .map_err(netns_err)?
            .map_err(|error| NetlinkError::Connect { error })?;
        debug!(netns = %path.display(), "rtnetlink connection opened");
        Ok(Self::spawn(connection, handle))
    }

    /// The index of link `name`, or `None` if there is no such link.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        check_name(name)?;
        let mut links = self.handle.link().get().match_name(name).execute();
        match links.try_next().await {
            Ok(link) => Ok(link.map(|l| l.header.index)),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(request(format!("look up link {name}"), e)),
        }
    }

    /// Creates bridge `name` or reuses an existing one (a crashed earlier run may have left
    /// it), and brings it up; returns its index. An existing non-bridge link of that name is
    /// an error, never reused.
    pub async fn ensure_bridge(&self, name: &str) -> Result<u32, NetlinkError> {
        check_name(name)?;
        let message = LinkBridge::new(name).build();
        match self.handle.link().add(message).execute().await {
            Ok(()) => debug!(bridge = name, "bridge created"),
            Err(e) if errno(&e) == Some(libc::EEXIST) => {
                debug!(bridge = name, "reusing existing bridge");
            }
            Err(e) => return Err(request(format!("create bridge {name}"), e)),
        }
        let index = self
            .link_index(name)
            .await?
            .ok_or_else(|| NetlinkError::NotFound { what: "bridge", name: name.to_owned() })?;
        let link = self.get_link(index).await?;
        match link_kind(&link) {
            Some(InfoKind::Bridge) => {}
            kind => {
                return Err(NetlinkError::NotABridge {
                    name: name.to_owned(),
                    kind: kind.map_or_else(|| "none".to_owned(), |k| k.to_string()),
                })
            }
        }
        self.set_up(index).await?;
        Ok(index)
    }

    /// Deletes a link by name; `Ok(false)` when it does not exist.
    pub async fn delete_link(&self, name: &str) -> Result<bool, NetlinkError> {
        let Some(index) = self.link_index(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(index).execute().await {
            Ok(()) => {
                debug!(link = name, "link deleted");
                Ok(true)
            }
            // Deleted concurrently, e.g. by its peer or its namespace going away.
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(request(format!("delete link {name}"), e)),
        }
    }

    /// Enslaves link `index` to the bridge (or other master) `master`.
    pub async fn set_master(&self, index: u32, master: u32) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index).controller(master).build();
        self.set_link(message, || format!("set master of link {index} to {master}")).await
    }

    /// Brings link `index` up.
    pub async fn set_up(&self, index: u32) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index).up().build();
        self.set_link(message, || format!("set link {index} up")).await
    }

    /// Sets the MTU of link `index`.
    pub async fn set_mtu(&self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.set_link(message, || format!("set mtu {mtu} on link {index}")).await
    }

    /// The hardware (MAC) address of link `index`.
    pub async fn mac(&self, index: u32) -> Result<[u8; 6], NetlinkError> {
        let link = self.get_link(index).await?;
        link.attributes
            .iter()
            .find_map(|attr| match attr {
                LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
                _ => None,
            })
            .ok_or(NetlinkError::NoMac { index })
    }

    /// Adds an address (ip + prefix) to link `index`; already present is not an error.
    pub async fn add_address(&self, index: u32, addr: ipnet::IpNet) -> Result<(), NetlinkError> {
        let mut req = self.handle.address().add(index, addr.addr(), addr.prefix_len());
        if addr.addr().is_ipv6() {
            // Duplicate address detection would leave the address tentative (unusable as a
            // source, and a default route via it refused) for a second or more; weft's IPAM
            // already guarantees it is unique in the network.
            req.message_mut().header.flags |= netlink_packet_route::address::AddressHeaderFlags::Nodad;
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(request(format!("add address {addr} to link {index}"), e)),
        }
    }

    /// Adds a default route via `gateway` in the main table. An existing default route is
    /// an error (`EEXIST`), never replaced.
    pub async fn add_default_route(&self, gateway: IpAddr) -> Result<(), NetlinkError> {
        let message = match gateway {
            IpAddr::V4(gw) => RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build(),
            IpAddr::V6(gw) => RouteMessageBuilder::<Ipv6Addr>::new().gateway(gw).build(),
        };
        self.handle
            .route()
            .add(message)
            .execute()
            .await
            .map_err(|e| request(format!("add default route via {gateway}"), e))
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        // Every request is awaited through `&self`, so none is in flight here; aborting
        // releases the socket (and its namespace reference) right away.
        self.connection.abort();
    }
}

impl Netlink {
    fn spawn(
        connection: rtnetlink::proto::Connection<rtnetlink::packet_route::RouteNetlinkMessage>,
        handle: Handle,
    ) -> Self {
        Self { handle, connection: tokio::spawn(connection) }
    }

    async fn get_link(&self, index: u32) -> Result<LinkMessage, NetlinkError> {
        let mut links = self.handle.link().get().match_index(index).execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(link),
            Ok(None) => Err(no_link_index(index)),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Err(no_link_index(index)),
            Err(e) => Err(request(format!("get link {index}"), e)),
        }
    }

    async fn set_link(
        &self,
        message: LinkMessage,
        what: impl FnOnce() -> String,
    ) -> Result<(), NetlinkError> {
        self.handle.link().set(message).execute().await.map_err(|e| request(what(), e))
    }
}

fn no_link_index(index: u32) -> NetlinkError {
    NetlinkError::NotFound { what: "link index", name: index.to_string() }
}

fn check_name(name: &str) -> Result<(), NetlinkError> {
    device::validate_ifname(name)
        .map_err(|reason| NetlinkError::InvalidName { name: name.to_owned(), reason })
}

fn link_kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|info| match info {
            LinkInfo::Kind(kind) => Some(kind),
            _ => None,
        }),
        _ => None,
    })
}

/// The positive errno of a kernel NACK.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io().raw_os_error(),
        _ => None,
    }
}

fn request(what: String, e: rtnetlink::Error) -> NetlinkError {
    let error = match e {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other),
    };
    NetlinkError::Request { what, error }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reqerror_names_operation_and_errno() {
        let nack = netlink_packet_core_error(-libc::EEXIST);
        let err = request("create bridge weft-default".into(), nack);
        assert_eq!(err.to_string(), "create bridge weft-default: File exists (os error 17)");
        assert_eq!(err.os_error(), Some(libc::EEXIST));
        let wrapped = NetlinkError::Attach { host_ifname: "wv1".into(), error: Box::new(err) };
        assert_eq!(wrapped.os_error(), Some(libc::EEXIST));
    }

    #[test]
    fn invalid_names_are_rejected_before_any_request() {
        let err = check_name("sixteen-bytes-xx").unwrap_err();
        assert!(matches!(err, NetlinkError::InvalidName { reason: IfNameError::TooLong { len: 16 }, .. }));
    }

    fn netlink_packet_core_error(code: i32) -> rtnetlink::Error {
        let mut msg = rtnetlink::packet_core::ErrorMessage::default();
        msg.code = std::num::NonZeroI32::new(code);
        rtnetlink::Error::NetlinkError(msg)
    }
}
