//! The daemon's DNS server: answers `<domain>.` (services, containers, nodes) from the live
//! [`Directory`] and forwards every other name to upstream resolvers.
//!
//! Built on hickory-server's zone-handler route: a [`Catalog`] holding our [`zone::WeftZone`]
//! (which loads the current `Directory` on every query, so answers change as health changes)
//! and, when upstreams are configured, hickory's `ForwardZoneHandler` at the root. The sockets
//! in front of the catalog are ours (see [`listener`]) so malformed input is counted and TCP
//! clients are bounded. With no upstreams, names outside the domain are REFUSED.
//!
//! [`DnsServer::start`] returns once every listen address is bound for UDP and TCP;
//! [`DnsServer::stop`] returns once they are all closed again.

mod listener;
mod resolv_conf;
pub(crate) mod zone;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _};
use arc_swap::ArcSwap;
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::{LowerName, Name};
use hickory_server::resolver::config::{ConnectionConfig, NameServerConfig, ResolverOpts};
use hickory_server::server::ResponseInfo;
use hickory_server::store::forwarder::{ForwardConfig, ForwardZoneHandler};
use hickory_server::zone_handler::Catalog;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info};

use crate::discovery::directory::Directory;
use listener::{Context, Limits};
use zone::{WeftZone, ZoneNames};

pub use resolv_conf::upstreams_from_resolv_conf;

/// What the DNS server serves and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Our zone, e.g. `weft` (a trailing dot and upper case are fine; it is normalised).
    pub domain: String,
    /// TTL of every record we answer, and the SOA minimum (negative-caching TTL).
    pub ttl: u32,
    /// Resolvers for names outside `domain`; empty means such queries are REFUSED.
    pub upstreams: Vec<SocketAddr>,
    /// Addresses to serve on, UDP and TCP each (port 0 picks one port for both).
    pub listen: Vec<SocketAddr>,
}

/// Counters of the replies the server sent (and of the messages it could not read), declared
/// with their metrics in [`crate::report::counters`].
pub use crate::report::counters::DnsStats;

impl DnsStats {
    fn bump_malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }

    fn bump_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one reply sent for a query about a name in our zone (`local`) or outside it.
    fn count_reply(&self, local: bool, info: &ResponseInfo) {
        let counter = match (local, info.response_code) {
            (_, ResponseCode::FormErr) => &self.malformed,
            (_, ResponseCode::Refused | ResponseCode::NotImp | ResponseCode::NotAuth) => &self.refused,
            (false, ResponseCode::ServFail) => &self.forward_failed,
            (false, _) => &self.forwarded,
            (true, ResponseCode::NXDomain) => &self.nxdomain,
            (true, ResponseCode::NoError) if info.counts().answers > 0 => &self.answered,
            (true, ResponseCode::NoError) => &self.nodata,
            (true, _) => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A running DNS server; [`DnsServer::stop`] it (dropping it aborts its tasks too, but
/// without waiting for the sockets to close).
pub struct DnsServer {
    addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl DnsServer {
    /// Binds UDP and TCP on every `settings.listen` address and starts serving `directory`.
    pub async fn start(
        settings: DnsSettings,
        directory: Arc<ArcSwap<Directory>>,
        stats: Arc<DnsStats>,
    ) -> anyhow::Result<DnsServer> {
        Self::start_with(settings, directory, stats, Limits::default()).await
    }

    /// Closes every socket and waits until they are closed.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        debug!(addrs = ?self.addrs, "dns server stopped");
    }

    /// The bound addresses, one per listen address, each serving both UDP and TCP.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    pub(crate) async fn start_with(
        settings: DnsSettings,
        directory: Arc<ArcSwap<Directory>>,
        stats: Arc<DnsStats>,
        limits: Limits,
    ) -> anyhow::Result<DnsServer> {
        let names = ZoneNames::new(&settings.domain, settings.ttl)
            .map_err(|e| anyhow!("dns domain {:?}: {e}", settings.domain))?;
        if names.origin.is_root() {
            bail!("dns domain must not be empty or the root");
        }
        let origin = Origin(names.origin.clone());
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&names.origin), vec![Arc::new(WeftZone::new(names, directory))]);
        if !settings.upstreams.is_empty() {
            let forwarder = forwarder(&settings.upstreams, &limits)?;
            catalog.upsert(LowerName::new(&Name::root()), vec![Arc::new(forwarder)]);
        }
        let cx = Arc::new(Context {
            catalog,
            stats,
            origin,
            recursion_available: !settings.upstreams.is_empty(),
            limits,
        });

        let mut bound = Vec::with_capacity(settings.listen.len());
        for addr in &settings.listen {
            bound.push(bind_pair(*addr).await?);
        }
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut addrs = Vec::with_capacity(bound.len());
        for (udp, tcp, addr) in bound {
            tasks.spawn(listener::serve_udp(udp, cx.clone(), rx.clone()));
            tasks.spawn(listener::serve_tcp(tcp, cx.clone(), rx.clone()));
            addrs.push(addr);
        }
        info!(domain = %cx.origin.0, ?addrs, upstreams = settings.upstreams.len(), "dns server started");
        Ok(DnsServer { addrs, shutdown, tasks })
    }
}

/// Our zone's apex, for telling local queries from forwarded ones.
#[derive(Debug, Clone)]
struct Origin(Name);

impl Origin {
    fn contains(&self, name: &Name) -> bool {
        self.0.zone_of(name)
    }
}

/// hickory's forwarder over `upstreams` (UDP, TCP on truncation), with bounded retries.
fn forwarder(upstreams: &[SocketAddr], limits: &Limits) -> anyhow::Result<ForwardZoneHandler> {
    let name_servers = upstreams
        .iter()
        .map(|addr| {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
        })
        .collect();
    let mut options = ResolverOpts::default();
    options.timeout = limits.forward_timeout;
    options.attempts = limits.forward_retries;
    // Names reach us fully qualified; never append search domains to them.
    options.ndots = 0;
    let config = ForwardConfig { name_servers, options: Some(options) };
    ForwardZoneHandler::builder_tokio(config).build().map_err(|e| anyhow!("dns forwarder: {e}"))
}

/// Binds UDP on `addr` and TCP on the same address and port (with port 0: the port the
/// kernel gave UDP, retried a few times if TCP finds it taken).
async fn bind_pair(addr: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener, SocketAddr)> {
    let mut tries = 0;
    loop {
        let udp = bind_udp(addr).with_context(|| format!("dns: binding UDP {addr}"))?;
        let local = udp.local_addr()?;
        match bind_tcp(local) {
            Ok(tcp) => return Ok((udp, tcp, local)),
            Err(e) if addr.port() == 0 && tries < 8 => {
                debug!(%local, error = %e, "dns: TCP port taken, picking another");
                tries += 1;
            }
            Err(e) => return Err(e).with_context(|| format!("dns: binding TCP {local}")),
        }
    }
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        // So that `[::]:53` and `0.0.0.0:53` can both be listen addresses.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // A reload binds the same address again while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests;
