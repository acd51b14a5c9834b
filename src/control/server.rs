//! The daemon side of the control API: accepts connections from the peers [`ControlAccess`]
//! admits (telling the others why not, and counting them), decodes requests, and carries out
//! attach/detach (netlink + leases + engine) and status queries.

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use super::access::{self, ControlAccess, PeerCred};
use super::{resolv_conf, Answer, Request, Response, MAX_REQUEST};
use crate::discovery::catalog::CheckTemplate;
use crate::discovery::registry::{Registry, Source};
use crate::ipam::{mac_string, Lease, Leases};
use crate::netlink::{self, Netlink};
use crate::plane::{ControlMsg, NetId};
use crate::plane::{EngineMsg, NetInfo};
use crate::report::containers::AttachedDns;
use crate::report::counters::LocalStats;
use crate::report::status::{LocalContainer, NetworkStatus};
use crate::report::{Attached, Catalog, Detached, Reloaded, ServiceAdded, ServicesRemoved, Status};
use std::collections::BTreeMap;

/// What the control server works with.
pub struct ControlCtx {
    /// Node name.
    pub node: String,
    /// Networks with their static facts.
    pub nets: Vec<NetInfo>,
    /// This node's container subnets per network (one per family of the network).
    pub pools: Vec<crate::family::Subnets>,
    /// Leases.
    pub leases: Mutex<Leases>,
    /// Netlink in the daemon's namespace.
    pub netlink: Netlink,
    /// To the engine.
    pub engine: SyncSender<EngineMsg>,
    /// Our service instances.
    pub registry: Arc<Registry>,
    /// The DNS domain when DNS is served (attached containers get a resolv.conf for it).
    pub dns_domain: Option<String>,
    /// DNS counters.
    pub dns_stats: Arc<crate::dns::DnsStats>,
    /// To the daemon's main loop, which owns reloads.
    pub reload: tokio::sync::mpsc::Sender<ReloadReply>,
    /// What the control socket and the HTTP listener refused.
    pub local_stats: Arc<LocalStats>,
}

/// Where the daemon's main loop answers one reload: what changed, or why nothing did.
pub type ReloadReply = tokio::sync::oneshot::Sender<Result<Reloaded, String>>;

/// Reload requests as the daemon's main loop receives them.
pub type ReloadRequests = tokio::sync::mpsc::Receiver<ReloadReply>;

/// Serves connections on a bound listener (see [`access::bind`]) until the task is dropped;
/// a peer `access` does not admit gets one line saying why, and is counted.
pub async fn serve_on(listener: UnixListener, ctx: Arc<ControlCtx>, access: ControlAccess) -> Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let admitted = match access::peer_cred(stream.as_fd()) {
            Ok(peer) => access.admits(&peer).map(|()| peer).inspect_err(|_| {
                debug!("control connection refused");
            }),
            Err(e) => Err(format!("cannot tell who is connecting: {e}")),
        };
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            let r = match admitted {
                Ok(peer) => connection(stream, &ctx, &peer).await,
                Err(why) => {
                    ctx.local_stats.control_refused.fetch_add(1, Relaxed);
                    refuse(stream, &why).await
                }
            };
            if let Err(e) = r {
                debug!(%e, "control connection ended with an error");
            }
        });
    }
}

/// Tells a refused peer why in one response line, and hangs up. Its request is read (at most
/// a bounded amount, for at most a second) and dropped unseen, so that closing does not reset
/// the connection before the client reads the answer.
async fn refuse(stream: UnixStream, why: &str) -> Result<()> {
    let (r, mut w) = stream.into_split();
    let mut out = serde_json::to_vec(&Response::<()>::error(why))?;
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await?;
    let mut sink = tokio::io::sink();
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::io::copy(&mut r.take(MAX_REQUEST as u64 + 1), &mut sink),
    )
    .await;
    Ok(())
}

async fn connection(stream: UnixStream, ctx: &ControlCtx, peer: &PeerCred) -> Result<()> {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r.take(MAX_REQUEST as u64 + 1));
    let mut line = String::new();
    while lines.read_line(&mut line).await? > 0 {
        let resp = if line.len() > MAX_REQUEST {
            Response::error("request too large")
        } else {
            match serde_json::from_str::<Request>(&line) {
                Ok(req) => match handle(ctx, peer, req).await {
                    Ok(data) => Response::ok(data),
                    Err(e) => Response::error(format!("{e:#}")),
                },
                Err(e) => Response::error(format!("bad request: {e}")),
            }
        };
        let mut out = serde_json::to_vec(&resp)?;
        out.push(b'\n');
        w.write_all(&out).await?;
        line.clear();
    }
    Ok(())
}

/// Carries out one request of `peer` (root, or a member of the control group: see
/// [`beyond_the_group`] for what only root may ask).
async fn handle(ctx: &ControlCtx, peer: &PeerCred, req: Request) -> Result<Answer> {
    if peer.uid != 0 {
        beyond_the_group(&req, peer)?;
    }
    Ok(match req {
        Request::Status => Answer::Status(Box::new(status(ctx).await?)),
        Request::Attach { netns, network, name, ip, ifname, labels, enter, container_id } => {
            let who = Who { name: &name, container_id: container_id.as_deref() };
            Answer::Attached(attach(ctx, &netns, enter.as_deref(), &network, who, ip, &ifname, labels).await?)
        }
        Request::ServiceAdd { mut spec } => {
            if spec.network.is_empty() {
                spec.network = ctx.nets.first().map(|n| n.name.clone()).unwrap_or_default();
            }
            Answer::ServiceAdded(ServiceAdded { id: ctx.registry.add(spec, Source::Api)? })
        }
        Request::ServiceRemove { id } => {
            let removed = ctx.registry.remove(&id);
            if removed.is_empty() {
                bail!("no service instance or service named {id:?} on this node");
            }
            Answer::ServicesRemoved(ServicesRemoved { removed })
        }
        Request::ServiceList => Answer::Services(ctx.registry.list()),
        Request::Reload => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            ctx.reload.send(tx).await.map_err(|_| anyhow!("the daemon is shutting down"))?;
            Answer::Reloaded(rx.await.context("the daemon is shutting down")?.map_err(|e| anyhow!("{e}"))?)
        }
        Request::PolicyExplain { network, from, to, proto, port } => {
            let net = net_index(ctx, &network)?;
            let proto = match proto.as_str() {
                "tcp" => 6,
                "udp" => 17,
                // A dual-stack network's "icmp" follows the family of the addresses asked about.
                "icmp" if icmp_is_v6(&ctx.nets[net], &from, &to) => 58,
                "icmp" => 1,
                p => p
                    .parse::<u8>()
                    .map_err(|_| anyhow!("proto {p:?}: tcp, udp, icmp or a protocol number"))?,
            };
            if port.is_some() && proto != 6 && proto != 17 {
                bail!("a port only goes with tcp or udp");
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            to_engine(ctx, ControlMsg::PolicyExplain { net, from, to, proto, port, reply: tx }).await;
            let explain = rx.await.context("engine did not answer")?.map_err(|e| anyhow!("{e}"))?;
            Answer::Explain(Box::new(explain))
        }
        Request::Ping { peer } => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            to_engine(ctx, ControlMsg::Ping { peer, reply: tx }).await;
            Answer::Pong(rx.await.context("engine did not answer")?.map_err(|e| anyhow!("{e}"))?)
        }
        Request::PolicyShow => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            to_engine(ctx, ControlMsg::PolicyStatus(tx)).await;
            Answer::Policies(rx.await.context("engine did not answer")?)
        }
        Request::Catalog => Answer::Catalog(catalog(ctx).await?),
        Request::Detach { network, name, netns, container_id } => {
            let by = Wanted {
                name: name.as_deref(),
                netns: netns.as_deref(),
                container_id: container_id.as_deref(),
            };
            Answer::Detached(detach(ctx, &network, by).await?)
        }
    })
}

/// What a control group member may not ask, though root may: a command check (it would run
/// as the daemon's user, root: a member could run anything as root), and an attach through
/// another process's open file (only its own `/proc/<its pid>/fd/N`, as the CNI plugin
/// passes: another's could be a namespace the member cannot open).
fn beyond_the_group(req: &Request, peer: &PeerCred) -> Result<()> {
    match req {
        Request::ServiceAdd { spec }
            if matches!(spec.check.as_ref().map(|c| &c.template), Some(CheckTemplate::Command { .. })) =>
        {
            bail!("command checks run as the daemon's user: only root may add them (uid {})", peer.uid)
        }
        Request::Attach { enter: Some(e), .. } if !e.starts_with(&format!("/proc/{}/fd/", peer.pid)) => {
            bail!(
                "enter {e:?}: a client other than root may pass only its own open files (/proc/{}/fd/N)",
                peer.pid
            )
        }
        _ => Ok(()),
    }
}

pub(crate) fn net_index(ctx: &ControlCtx, network: &str) -> Result<NetId> {
    ctx.nets.iter().position(|n| n.name == network).map(NetId).ok_or_else(|| {
        let names: Vec<&str> = ctx.nets.iter().map(|n| n.name.as_str()).collect();
        anyhow!("no network {network:?} on this node (have: {})", names.join(", "))
    })
}

/// Resolves a netns name (as `ip netns` names them) or an absolute path.
fn netns_path(netns: &str) -> Result<PathBuf> {
    let p = if netns.starts_with('/') {
        PathBuf::from(netns)
    } else {
        let ok =
            !netns.is_empty() && netns.len() <= 255 && !netns.contains('/') && netns != "." && netns != "..";
        if !ok {
            bail!("bad netns name {netns:?}");
        }
        Path::new("/var/run/netns").join(netns)
    };
    if !p.exists() {
        bail!("network namespace {} does not exist", p.display());
    }
    Ok(p)
}

fn enter_path_ok(p: &str) -> bool {
    let parts: Vec<&str> = p.split('/').collect();
    matches!(parts.as_slice(), ["", "proc", pid, "fd", fd]
        if !pid.is_empty() && !fd.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && fd.bytes().all(|b| b.is_ascii_digit()))
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        bail!("container name {name:?} must be 1..=63 characters of A-Z a-z 0-9 - _ .");
    }
    Ok(())
}

pub(crate) fn check_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    if labels.len() > 32 {
        bail!("at most 32 labels");
    }
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.len() <= 63
            && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        if !key_ok {
            bail!("label key {k:?} must be 1..=63 characters of A-Z a-z 0-9 - _ . /");
        }
        if v.len() > 255 || v.chars().any(|c| c.is_control()) {
            bail!("label {k:?}: value must be at most 255 printable characters");
        }
    }
    Ok(())
}

/// Who is being attached: its name at weft, and the runtime's id for it when the CNI plugin
/// asks.
struct Who<'a> {
    name: &'a str,
    container_id: Option<&'a str>,
}

/// The runtime's container id, as the CNI plugin checks it too.
fn check_container_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        bail!("container id must be 1..=1024 characters of A-Z a-z 0-9 - _ .");
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn attach(
    ctx: &ControlCtx,
    netns: &str,
    enter: Option<&str>,
    network: &str,
    who: Who<'_>,
    ip: Option<IpAddr>,
    ifname: &str,
    labels: BTreeMap<String, String>,
) -> Result<Attached> {
    let net = net_index(ctx, network)?;
    let name = who.name;
    check_name(name)?;
    if let Some(id) = who.container_id {
        check_container_id(id)?;
    }
    check_labels(&labels)?;
    if let Some(v) = labels.get(crate::discovery::registry::SERVICE_LABEL) {
        crate::discovery::registry::parse_service_label(v, network, name)?;
    }
    crate::device::validate_ifname(ifname).map_err(|e| anyhow!("interface name {ifname:?}: {e}"))?;
    let path = match enter {
        // Only a process's open file: /proc/PID/fd/N.
        Some(e) if enter_path_ok(e) => netns_path(e)?,
        Some(e) => bail!("enter {e:?}: expected /proc/PID/fd/N"),
        None => netns_path(netns)?,
    };
    let info = &ctx.nets[net];
    let mut leases = ctx.leases.lock().await;
    if leases.find(network, name).is_some() {
        bail!("a container named {name:?} is already attached to {network}");
    }
    if let Some((_, l)) = who.container_id.and_then(|id| leases.find_container_id(network, id)) {
        bail!(
            "container id {:?} is already attached to {network} (as {:?})",
            l.container_id.as_deref().unwrap_or_default(),
            l.name
        );
    }
    let addrs = leases.pick_per_family(network, ctx.pools[net], info.gateway, ip)?;
    let host_ifname = host_ifname();
    let mut addresses = Vec::new();
    for a in addrs.iter() {
        let prefix = info.subnet.for_ip(&a).context("address of no subnet")?.prefix_len();
        let gateway = info.gateway.for_ip(&a).context("address of no gateway")?;
        addresses.push(crate::report::AttachedAddr { ip: a, prefix, gateway });
    }
    let first = *addresses.first().context("the network has no subnet")?;
    let cidrs: Vec<IpNet> = addresses.iter().map(|a| IpNet::new(a.ip, a.prefix)).collect::<Result<_, _>>()?;
    let gateways: Vec<IpAddr> = addresses.iter().map(|a| a.gateway).collect();
    let link = netlink::container::attach(
        &ctx.netlink,
        &path,
        &format!("weft-{}", info.name),
        &host_ifname,
        ifname,
        &cidrs,
        &gateways,
        info.mtu,
    )
    .await
    .map_err(|e| attach_error(e, &leases, netns, ifname))?;
    // The host end takes any size, so a container with too big an MTU is answered with ICMP
    // by the daemon rather than dropped silently by the veth.
    if let Ok(Some(idx)) = ctx.netlink.link_index(&host_ifname).await {
        let _ = ctx.netlink.set_mtu(idx, crate::device::PORT_MTU).await;
    }
    let lease = Lease {
        name: name.to_owned(),
        netns: netns.to_owned(),
        host_ifname: host_ifname.clone(),
        ifname: ifname.to_owned(),
        mac: link.mac,
        labels: labels.clone(),
        container_id: who.container_id.map(str::to_owned),
    };
    // One lease per address, each the whole container's: the leases file keeps its shape, and
    // detach finds and frees them together.
    for a in addrs.iter() {
        leases.insert(network, a, lease.clone());
    }
    if let Err(e) = leases.save() {
        for a in addrs.iter() {
            leases.remove(network, &a);
        }
        let _ = netlink::container::detach(&ctx.netlink, &host_ifname).await;
        return Err(e);
    }
    announce(ctx, net, link.mac, &addrs.iter().collect::<Vec<_>>(), name, &labels).await;
    let resolv = match &ctx.dns_domain {
        Some(domain) => resolv_conf::write(netns, first.gateway, domain),
        None => None,
    };
    info!(container = name, network, addrs = %addrs, "attached");
    Ok(Attached {
        name: name.to_owned(),
        network: network.to_owned(),
        ip: first.ip,
        prefix: first.prefix,
        gateway: first.gateway,
        addresses,
        mac: mac_string(&link.mac),
        mtu: info.mtu,
        host_ifname,
        ifname: ifname.to_owned(),
        labels,
        dns: ctx
            .dns_domain
            .as_ref()
            .map(|d| AttachedDns { nameservers: vec![first.gateway], search: resolv_conf::search(d) }),
        resolv_conf: resolv.map(|p| p.display().to_string()),
    })
}

/// Tells the engine (one entry per address) and the service registry (at the first address,
/// IPv4 when there is one) about an attached container; announcing again renames or relabels.
pub(crate) async fn announce(
    ctx: &ControlCtx,
    net: NetId,
    mac: crate::packet::Mac,
    ips: &[IpAddr],
    name: &str,
    labels: &BTreeMap<String, String>,
) {
    for ip in ips {
        let msg = ControlMsg::AddLocal { net, mac, ip: *ip, name: name.to_owned(), labels: labels.clone() };
        to_engine(ctx, msg).await;
    }
    let Some(first) = ips.iter().min_by_key(|ip| ip.is_ipv6()) else { return };
    if let Err(e) = ctx.registry.container_attached(&ctx.nets[net.0].name, name, *first, labels) {
        warn!(container = name, "services of the container not registered: {e:#}");
    }
}

/// A fresh name for a container veth's host end.
pub(crate) fn host_ifname() -> String {
    let r = crate::pki::random32();
    format!("wv{:08x}", u32::from_le_bytes([r[0], r[1], r[2], r[3]]))
}

/// An attach that netlink refused, in the words of the one who asked: a taken interface name
/// says which namespace and what to do (nothing was created; the check precedes the veth).
fn attach_error(e: netlink::NetlinkError, leases: &Leases, netns: &str, ifname: &str) -> anyhow::Error {
    let taken = match &e {
        netlink::NetlinkError::Attach { error, .. } => {
            matches!(**error, netlink::NetlinkError::InterfaceExists { .. })
        }
        other => matches!(other, netlink::NetlinkError::InterfaceExists { .. }),
    };
    if !taken {
        return e.into();
    }
    let holder = leases
        .all()
        .into_iter()
        .find(|(_, _, l)| same_netns(&l.netns, netns) && l.ifname == ifname)
        .map(|(network, _, l)| format!(" (weft's container {:?} on network {network})", l.name))
        .unwrap_or_default();
    anyhow!("namespace {netns} already has an interface {ifname}{holder}: detach it first or pass --ifname")
}

/// What a detach names: a container name and/or netns (`weft detach`), or the runtime's
/// container id (the CNI plugin's DEL).
#[derive(Debug, Clone, Copy, Default)]
struct Wanted<'a> {
    name: Option<&'a str>,
    netns: Option<&'a str>,
    container_id: Option<&'a str>,
}

/// Finds the lease a detach means: by container id (and then a name, if also given, must be
/// its name: pod names repeat across Kubernetes namespaces, ids do not), by name (and then
/// `netns`, if also given, must be the namespace it was attached with), or by namespace.
fn find_lease(leases: &Leases, network: &str, want: Wanted<'_>) -> Result<(IpAddr, Lease)> {
    if let Some(id) = want.container_id {
        let (ip, lease) = leases
            .find_container_id(network, id)
            .ok_or_else(|| anyhow!("no container with container id {id:?} on network {network}"))?;
        if let Some(n) = want.name.filter(|n| *n != lease.name) {
            bail!("container id {id:?} on network {network} is {:?}, not {n:?}", lease.name);
        }
        return Ok((ip, lease.clone()));
    }
    match (want.name, want.netns) {
        (Some(n), ns) => {
            let (ip, lease) = leases
                .find(network, n)
                .ok_or_else(|| anyhow!("no container named {n:?} on network {network}"))?;
            if let Some(ns) = ns.filter(|ns| !same_netns(&lease.netns, ns)) {
                bail!(
                    "container {n:?} on network {network} was attached with netns {}, not {ns}; \
                     give only --name, or the --netns it was attached with",
                    lease.netns
                );
            }
            Ok((ip, lease.clone()))
        }
        (None, Some(ns)) => leases
            .of(network)
            .find(|(_, l)| same_netns(&l.netns, ns))
            .map(|(ip, l)| (*ip, l.clone()))
            .ok_or_else(|| anyhow!("no container in netns {ns:?} on network {network}")),
        (None, None) => bail!("give the container's name or its netns"),
    }
}

/// Whether two netns as given at attach/detach are one: `web1` is `/var/run/netns/web1`
/// (and `/run/netns/web1`, where /var/run points).
fn same_netns(a: &str, b: &str) -> bool {
    let norm = |s: &str| -> PathBuf {
        if !s.starts_with('/') {
            return Path::new("/var/run/netns").join(s);
        }
        match s.strip_prefix("/run/netns/") {
            Some(rest) => Path::new("/var/run/netns").join(rest),
            None => PathBuf::from(s),
        }
    };
    a == b || norm(a) == norm(b)
}

async fn detach(ctx: &ControlCtx, network: &str, want: Wanted<'_>) -> Result<Detached> {
    let net = net_index(ctx, network)?;
    let mut leases = ctx.leases.lock().await;
    let (_, lease) = find_lease(&leases, network, want)?;
    let name = lease.name.as_str();
    netlink::container::detach(&ctx.netlink, &lease.host_ifname).await?;
    // A dual-stack container holds one lease per address: all go.
    let ips: Vec<IpAddr> =
        leases.of(network).filter(|(_, l)| l.host_ifname == lease.host_ifname).map(|(ip, _)| *ip).collect();
    for ip in &ips {
        leases.remove(network, ip);
    }
    leases.save()?;
    to_engine(ctx, ControlMsg::RemoveLocal { net, mac: lease.mac }).await;
    ctx.registry.container_detached(network, name);
    resolv_conf::remove(&lease.netns);
    let ip = *ips.iter().min_by_key(|ip| ip.is_ipv6()).context("no address")?;
    info!(container = name, network, %ip, "detached");
    Ok(Detached { name: name.to_owned(), network: network.to_owned(), ip, ips })
}

/// Whether `weft policy explain`'s "icmp" means ICMPv6 on `info`: on a single-family network
/// its family; on a dual-stack one the family of whichever side is an address (IPv4 when
/// neither is).
fn icmp_is_v6(info: &NetInfo, from: &str, to: &str) -> bool {
    if !info.subnet.is_dual() {
        return info.subnet.first().is_some_and(|s| s.addr().is_ipv6());
    }
    [from, to].iter().filter_map(|s| s.parse::<IpAddr>().ok()).any(|ip| ip.is_ipv6())
}

/// Sends a control message to the engine, waiting for room in its queue.
pub async fn send_to_engine(ctx: &ControlCtx, msg: ControlMsg) {
    to_engine(ctx, msg).await
}

async fn to_engine(ctx: &ControlCtx, msg: ControlMsg) {
    let tx = ctx.engine.clone();
    // The engine channel is bounded; control messages wait for room rather than being dropped.
    let r = tokio::task::spawn_blocking(move || tx.send(EngineMsg::Control(msg))).await;
    if !matches!(r, Ok(Ok(()))) {
        warn!("engine is gone; control message lost");
    }
}

/// The cluster-wide catalog from the engine.
pub async fn catalog(ctx: &ControlCtx) -> Result<Catalog> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    to_engine(ctx, ControlMsg::Catalog(tx)).await;
    rx.await.context("engine did not answer")
}

/// What a network without subnets would show (configuration parsing never makes one).
fn unspecified_net() -> IpNet {
    IpNet::V4(ipnet::Ipv4Net::default())
}

/// The status every client (CLI, metrics, registry API, status page) sees.
pub async fn status(ctx: &ControlCtx) -> Result<Status> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    to_engine(ctx, ControlMsg::Status(tx)).await;
    let engine = rx.await.context("engine did not answer")?;
    let leases = ctx.leases.lock().await;
    let networks = ctx
        .nets
        .iter()
        .zip(&ctx.pools)
        .map(|(n, pool)| NetworkStatus {
            name: n.name.clone(),
            vni: n.vni.get(),
            subnet: n.subnet.first().unwrap_or(unspecified_net()),
            node_subnet: pool.first().unwrap_or(unspecified_net()),
            gateway: n.gateway.first().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            subnets: n.subnet,
            node_subnets: *pool,
            gateways: n.gateway,
            mtu: n.mtu,
            encryption: n.encryption,
            containers: leases
                .of(&n.name)
                .map(|(ip, l)| LocalContainer {
                    name: l.name.clone(),
                    ip: *ip,
                    mac: mac_string(&l.mac),
                    netns: l.netns.clone(),
                    host_ifname: l.host_ifname.clone(),
                    container_id: l.container_id.clone(),
                })
                .collect(),
        })
        .collect();
    Ok(Status {
        node: ctx.node.clone(),
        networks,
        engine,
        dns: ctx.dns_stats.snapshot(),
        services: ctx.registry.health_counts(),
        local: ctx.local_stats.snapshot(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(name: &str, netns: &str) -> Lease {
        Lease {
            name: name.into(),
            netns: netns.into(),
            host_ifname: format!("wv-{name}"),
            ifname: "eth0".into(),
            mac: [2, 0, 0, 0, 0, 1],
            labels: BTreeMap::new(),
            container_id: None,
        }
    }

    fn by(name: Option<&'static str>, netns: Option<&'static str>) -> Wanted<'static> {
        Wanted { name, netns, container_id: None }
    }

    fn leases() -> Leases {
        let mut l = Leases::load(Path::new("/nonexistent-weft-test-dir")).unwrap();
        l.insert("default", "10.42.1.2".parse().unwrap(), lease("web1", "web1"));
        l.insert("default", "10.42.1.3".parse().unwrap(), lease("web2", "/var/run/netns/web2"));
        l
    }

    #[test]
    fn detach_by_name_and_another_netns_is_refused() {
        let l = leases();
        let e = find_lease(&l, "default", by(Some("web1"), Some("web2"))).unwrap_err().to_string();
        assert!(e.contains("attached with netns web1, not web2"), "{e}");
        let (ip, found) = find_lease(&l, "default", by(Some("web1"), Some("web1"))).unwrap();
        assert_eq!((ip.to_string().as_str(), found.name.as_str()), ("10.42.1.2", "web1"));
        let (_, found) = find_lease(&l, "default", by(Some("web1"), Some("/run/netns/web1"))).unwrap();
        assert_eq!(found.name, "web1", "a name and its path are one namespace");
    }

    #[test]
    fn detach_by_name_or_by_netns_alone_still_works() {
        let l = leases();
        assert_eq!(find_lease(&l, "default", by(Some("web2"), None)).unwrap().1.name, "web2");
        assert_eq!(find_lease(&l, "default", by(None, Some("web2"))).unwrap().1.name, "web2");
        let e = find_lease(&l, "default", by(None, Some("web3"))).unwrap_err().to_string();
        assert!(e.contains("no container in netns"), "{e}");
        assert!(find_lease(&l, "other", by(Some("web1"), None)).is_err());
    }

    /// Two pods named `web` in two Kubernetes namespaces: the CNI plugin's DEL of one (by its
    /// container id, with no netns) must never detach the other.
    #[test]
    fn rogue_detach_by_another_pods_container_id_leaves_the_namesake_attached() {
        let mut l = leases();
        let prod =
            Lease { container_id: Some("c0ffee-prod".into()), ..lease("web", "/var/run/netns/cni-prod") };
        l.insert("default", "10.42.1.4".parse().unwrap(), prod);
        let dev = Wanted { name: None, netns: None, container_id: Some("c0ffee-dev") };
        let e = find_lease(&l, "default", dev).unwrap_err().to_string();
        assert!(e.starts_with("no container with container id \"c0ffee-dev\""), "{e}");
        let dev_named = Wanted { name: Some("web"), ..dev };
        assert!(find_lease(&l, "default", dev_named).is_err(), "the name does not stand in for the id");
        let prod_id = Wanted { container_id: Some("c0ffee-prod"), ..Wanted::default() };
        assert_eq!(find_lease(&l, "default", prod_id).unwrap().1.name, "web");
        let e = find_lease(&l, "default", Wanted { name: Some("web1"), ..prod_id }).unwrap_err().to_string();
        assert!(e.contains("is \"web\", not \"web1\""), "{e}");
    }

    #[test]
    fn rogue_group_member_may_not_add_command_checks_or_enter_others_files() {
        use crate::discovery::catalog::{Check, ServiceSpec, Target};
        let member = PeerCred { pid: 4242, uid: 1000, gid: 990, groups: vec![] };
        let check = |template| Check {
            template,
            interval: std::time::Duration::from_secs(5),
            timeout: std::time::Duration::from_secs(2),
            rise: 1,
            fall: 2,
        };
        let spec = |template| ServiceSpec {
            name: "web".into(),
            network: "default".into(),
            target: Target::Address("10.42.1.1".parse().unwrap()),
            port: 80,
            protocol: crate::discovery::directory::Protocol::Tcp,
            tags: vec![],
            check: Some(check(template)),
        };
        let command =
            Request::ServiceAdd { spec: spec(CheckTemplate::Command { argv: vec!["/bin/sh".into()] }) };
        let e = beyond_the_group(&command, &member).unwrap_err().to_string();
        assert!(e.contains("only root may add them"), "{e}");
        assert!(beyond_the_group(&Request::ServiceAdd { spec: spec(CheckTemplate::Tcp) }, &member).is_ok());
        let attach = |enter: &str| Request::Attach {
            netns: "/var/run/netns/x".into(),
            network: "default".into(),
            name: "c".into(),
            ip: None,
            ifname: "eth0".into(),
            labels: BTreeMap::new(),
            enter: Some(enter.into()),
            container_id: None,
        };
        assert!(beyond_the_group(&attach("/proc/4242/fd/7"), &member).is_ok());
        let e = beyond_the_group(&attach("/proc/1/fd/7"), &member).unwrap_err().to_string();
        assert!(e.contains("only its own open files (/proc/4242/fd/N)"), "{e}");
        assert!(beyond_the_group(&attach("/proc/42420/fd/7"), &member).is_err(), "a prefix is not the pid");
    }

    #[test]
    fn a_taken_interface_name_is_reported_with_the_namespace_and_the_way_out() {
        let l = leases();
        let taken = netlink::NetlinkError::Attach {
            host_ifname: "wv00000001".into(),
            error: Box::new(netlink::NetlinkError::InterfaceExists {
                netns: "/var/run/netns/web1".into(),
                name: "eth0".into(),
            }),
        };
        let e = attach_error(taken, &l, "web1", "eth0").to_string();
        assert_eq!(
            e,
            "namespace web1 already has an interface eth0 (weft's container \"web1\" on network default): \
             detach it first or pass --ifname"
        );
        let other = netlink::NetlinkError::NotFound { what: "bridge", name: "weft-default".into() };
        assert_eq!(attach_error(other, &l, "web1", "eth0").to_string(), "bridge weft-default not found");
    }
}
