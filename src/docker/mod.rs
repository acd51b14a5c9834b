//! weft as a Docker network driver and IPAM driver: libnetwork's remote driver protocol
//! (JSON posted over a Unix socket that dockerd finds in its plugin directory), served by the
//! daemon itself when `[docker] enable = true`.
//!
//! How Docker's calls map onto weft (the same leases, links and engine entries as
//! `weft attach`, so status, DNS, policy, detach and live restore treat both alike):
//! - `IpamDriver.RequestPool` answers with the weft network's flat subnet, and
//!   `RequestAddress` with this node's gateway (for dockerd's gateway request) or a free
//!   address of this node's certified pool, held by a lease from then on.
//! - `NetworkDriver.CreateNetwork` binds a Docker network to a weft network
//!   (`--opt weft.network=NAME`, else the one whose subnet the pool is, else the only one),
//!   remembered in `state_dir/docker.json` across restarts.
//! - `CreateEndpoint` ties the address's lease to the endpoint and picks the MAC;
//!   `Join` creates the veth pair (host end on the network's bridge; dockerd moves the other
//!   into the container and configures it) and announces the container; a task then asks
//!   dockerd for the container's name and labels and renames the entry after it, so it
//!   resolves by its Docker name and policy sees its labels.
//! - `Leave` removes the pair and the announcement, `ReleaseAddress` the lease.
//!
//! Scope: networks are `local` in Docker's store (each host's dockerd has its own network
//! object, created with the same command) and `global` in connectivity: weft's gossip, not a
//! Docker cluster store, joins the hosts. dockerd 20.10 refuses a `global` data scope outside
//! swarm mode ("This node is not a swarm manager"). A local network's pool must be given
//! (`--subnet`): without it dockerd checks the pool against the host's routes, finds the
//! weft bridge's route to it, and asks the IPAM driver again and again.

pub mod engine_api;
pub mod wire;

use anyhow::{anyhow, bail, Context, Result};
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use crate::control::server::{check_labels, check_name, host_ifname, net_index, send_to_engine};
use crate::control::ControlCtx;
use crate::ipam::{mac_string, parse_mac, Lease, Leases};
use crate::netlink;
use crate::plane::{ControlMsg, NetId};

/// Largest request body accepted from dockerd.
const MAX_BODY: usize = 64 * 1024;

/// The content type of the plugin protocol.
const PLUGIN_JSON: &str = "application/vnd.docker.plugins.v1+json";

/// How long after a join weft keeps asking dockerd for the container's name.
const NAME_LOOKUP: Duration = Duration::from_secs(30);

/// The driver's state beside the daemon's.
pub struct Driver {
    ctx: Arc<ControlCtx>,
    /// dockerd's API socket.
    engine: PathBuf,
    nets: std::sync::Mutex<Networks>,
}

/// Docker network id → weft network name, persisted.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Networks {
    networks: BTreeMap<String, String>,
    #[serde(skip)]
    path: PathBuf,
}

impl Networks {
    fn load(state_dir: &Path) -> Result<Self> {
        let path = state_dir.join("docker.json");
        let mut n: Networks = crate::ipam::load_json(&path)?;
        n.path = path;
        Ok(n)
    }

    fn save(&self) -> Result<()> {
        crate::ipam::save_json(&self.path, self)
    }
}

impl Driver {
    /// The driver over the daemon's control context; `state_dir` holds `docker.json`.
    pub fn new(ctx: Arc<ControlCtx>, state_dir: &Path, engine: PathBuf) -> Result<Arc<Self>> {
        let nets = std::sync::Mutex::new(Networks::load(state_dir)?);
        Ok(Arc::new(Driver { ctx, engine, nets }))
    }

    fn lock_nets(&self) -> std::sync::MutexGuard<'_, Networks> {
        self.nets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Serves the driver on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::UnixListener, driver: Arc<Driver>) -> Result<()> {
    let app = Router::new()
        .route("/{op}", post(handle))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(driver);
    axum::serve(listener, app).await.context("docker driver server")
}

async fn handle(State(d): State<Arc<Driver>>, UrlPath(op): UrlPath<String>, body: Bytes) -> Response {
    match call(&d, &op, &body).await {
        Ok(v) => reply(StatusCode::OK, v),
        Err(e) => {
            warn!(op, "docker driver: {e:#}");
            reply(StatusCode::INTERNAL_SERVER_ERROR, json!({ "Err": format!("{e:#}") }))
        }
    }
}

fn reply(status: StatusCode, v: Value) -> Response {
    (status, [(header::CONTENT_TYPE, PLUGIN_JSON)], v.to_string()).into_response()
}

/// Decodes `body` as `T`: dockerd may post an empty body for calls without arguments.
fn decode<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| anyhow!("bad request body: {e}"))
}

/// One protocol call.
async fn call(d: &Arc<Driver>, op: &str, body: &[u8]) -> Result<Value> {
    Ok(match op {
        "Plugin.Activate" => json!({ "Implements": ["NetworkDriver", "IpamDriver"] }),
        "NetworkDriver.GetCapabilities" => json!({ "Scope": "local", "ConnectivityScope": "global" }),
        "NetworkDriver.CreateNetwork" => create_network(d, decode(body)?)?,
        "NetworkDriver.DeleteNetwork" => {
            let r: wire::EndpointRef = decode(body)?;
            let mut nets = d.lock_nets();
            if nets.networks.remove(&r.network_id).is_some() {
                nets.save()?;
            }
            json!({})
        }
        "NetworkDriver.CreateEndpoint" => create_endpoint(d, decode(body)?).await?,
        "NetworkDriver.EndpointOperInfo" => json!({ "Value": {} }),
        "NetworkDriver.DeleteEndpoint" => {
            let r: wire::EndpointRef = decode(body)?;
            leave(d, &r, false).await?;
            json!({})
        }
        "NetworkDriver.Join" => join(d, decode(body)?).await?,
        "NetworkDriver.Leave" => {
            let r: wire::EndpointRef = decode(body)?;
            leave(d, &r, true).await?;
            json!({})
        }
        "NetworkDriver.DiscoverNew"
        | "NetworkDriver.DiscoverDelete"
        | "NetworkDriver.ProgramExternalConnectivity"
        | "NetworkDriver.RevokeExternalConnectivity"
        | "NetworkDriver.AllocateNetwork"
        | "NetworkDriver.FreeNetwork" => json!({}),
        "IpamDriver.GetCapabilities" => {
            json!({ "RequiresMACAddress": false, "RequiresRequestReplay": false })
        }
        "IpamDriver.GetDefaultAddressSpaces" => {
            json!({
                "LocalDefaultAddressSpace": wire::ADDRESS_SPACE,
                "GlobalDefaultAddressSpace": wire::ADDRESS_SPACE,
            })
        }
        "IpamDriver.RequestPool" => request_pool(d, decode(body)?)?,
        "IpamDriver.ReleasePool" => {
            let _: wire::ReleasePool = decode(body)?;
            json!({})
        }
        "IpamDriver.RequestAddress" => request_address(d, decode(body)?).await?,
        "IpamDriver.ReleaseAddress" => {
            release_address(d, decode(body)?).await?;
            json!({})
        }
        other => bail!("unknown call {other:?}"),
    })
}

/// Docker's ids are hex; anything else is refused before it reaches a file or a log.
fn check_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        bail!("{what} {id:?} is not a Docker id");
    }
    Ok(())
}

/// The weft network an IPAM or network request means: named by `weft.network`, else the one
/// whose flat subnet `pool` is, else the only one with a subnet of the family.
fn pick_network(ctx: &ControlCtx, named: Option<&str>, pool: Option<&str>, v6: bool) -> Result<NetId> {
    if let Some(name) = named {
        return net_index(ctx, name);
    }
    if let Some(pool) = pool.filter(|p| !p.is_empty()) {
        let pool: ipnet::IpNet = pool.parse().map_err(|_| anyhow!("pool {pool:?} is not a CIDR"))?;
        return ctx
            .nets
            .iter()
            .position(|n| n.subnet.iter().any(|s| s == pool))
            .map(NetId)
            .ok_or_else(|| anyhow!("no weft network has subnet {pool}; name one with weft.network=NAME"));
    }
    let of_family: Vec<usize> =
        (0..ctx.nets.len()).filter(|&i| ctx.nets[i].subnet.of(v6).is_some()).collect();
    match of_family.as_slice() {
        [one] => Ok(NetId(*one)),
        [] => bail!("no weft network on this node has an IPv{} subnet", if v6 { 6 } else { 4 }),
        _ => bail!("this node has several weft networks: name one with weft.network=NAME"),
    }
}

fn request_pool(d: &Driver, r: wire::RequestPool) -> Result<Value> {
    if !r.sub_pool.is_empty() {
        bail!("weft hands out this node's own pool of the network; --ip-range is not supported");
    }
    let named = r.options.as_ref().and_then(|o| o.get(wire::NETWORK_OPTION)).map(String::as_str);
    let net = pick_network(&d.ctx, named, Some(&r.pool), r.v6)?;
    let info = &d.ctx.nets[net.0];
    let subnet = info
        .subnet
        .of(r.v6)
        .ok_or_else(|| anyhow!("weft network {} has no IPv{} subnet", info.name, if r.v6 { 6 } else { 4 }))?;
    // Without --subnet, dockerd checks a local network's pool against the host's routes, finds
    // the weft bridge's own route, and asks again for ever: the subnet must be given.
    if r.pool.is_empty() {
        bail!(
            "give the weft network's subnet: docker network create -d weft --ipam-driver weft --subnet {subnet} ..."
        );
    }
    if r.pool.parse::<ipnet::IpNet>().ok() != Some(subnet) {
        bail!("weft network {} has subnet {subnet}, not {}: leave --subnet out", info.name, r.pool);
    }
    let family = if r.v6 { "v6" } else { "v4" };
    Ok(json!({ "PoolID": format!("{}/{family}", info.name), "Pool": subnet.to_string(), "Data": {} }))
}

/// The network and family of a pool id `NAME/v4` or `NAME/v6`.
fn parse_pool_id(ctx: &ControlCtx, id: &str) -> Result<(NetId, bool)> {
    let (name, family) = id.rsplit_once('/').ok_or_else(|| anyhow!("pool {id:?} is not weft's"))?;
    let v6 = match family {
        "v4" => false,
        "v6" => true,
        _ => bail!("pool {id:?} is not weft's"),
    };
    Ok((net_index(ctx, name)?, v6))
}

/// The name a lease has until its container is known: its address.
fn placeholder_name(ip: IpAddr) -> String {
    format!("docker-{}", ip.to_string().replace(':', "-"))
}

/// A lease holding `ip` for dockerd, with no link yet.
fn placeholder(ip: IpAddr) -> Lease {
    Lease {
        name: placeholder_name(ip),
        netns: String::new(),
        host_ifname: String::new(),
        ifname: DOCKER_IFNAME.to_owned(),
        mac: [0; 6],
        labels: BTreeMap::new(),
        container_id: None,
    }
}

async fn request_address(d: &Driver, r: wire::AddressRequest) -> Result<Value> {
    let (net, v6) = parse_pool_id(&d.ctx, &r.pool_id)?;
    let info = &d.ctx.nets[net.0];
    let subnet = info.subnet.of(v6).context("no subnet of the pool's family")?;
    let gateway = info.gateway.of(v6).context("no gateway of the pool's family")?;
    let wanted = match r.address.as_str() {
        "" => None,
        a => Some(a.parse::<IpAddr>().map_err(|_| anyhow!("address {a:?} is not an IP address"))?),
    };
    let for_gateway = r.options.as_ref().and_then(|o| o.get(wire::REQUEST_ADDRESS_TYPE)).map(String::as_str)
        == Some(wire::GATEWAY_REQUEST);
    if for_gateway {
        if wanted.is_some_and(|w| w != gateway) {
            bail!("the gateway of weft network {} on this node is {gateway}: leave --gateway out", info.name);
        }
        return Ok(json!({ "Address": format!("{gateway}/{}", subnet.prefix_len()), "Data": {} }));
    }
    let pool = d.ctx.pools[net.0].of(v6).context("no pool of the family on this node")?;
    let mut leases = d.ctx.leases.lock().await;
    let ip = leases.pick(&info.name, pool, gateway, wanted)?;
    leases.insert(&info.name, ip, placeholder(ip));
    save_or_undo(&mut leases, &info.name, &[ip])?;
    Ok(json!({ "Address": format!("{ip}/{}", subnet.prefix_len()), "Data": {} }))
}

/// Saves the leases; on failure takes the addresses in `added` out again.
fn save_or_undo(leases: &mut Leases, network: &str, added: &[IpAddr]) -> Result<()> {
    leases.save().inspect_err(|_| {
        for ip in added {
            leases.remove(network, ip);
        }
    })
}

async fn release_address(d: &Driver, r: wire::AddressRequest) -> Result<()> {
    let (net, _) = parse_pool_id(&d.ctx, &r.pool_id)?;
    let info = &d.ctx.nets[net.0];
    let ip: IpAddr =
        r.address.parse().map_err(|_| anyhow!("address {:?} is not an IP address", r.address))?;
    if info.gateway.iter().any(|g| g == ip) {
        return Ok(());
    }
    let mut leases = d.ctx.leases.lock().await;
    let Some((_, lease)) = leases.of(&info.name).find(|(a, _)| **a == ip).map(|(a, l)| (*a, l.clone()))
    else {
        return Ok(());
    };
    // Only what dockerd holds: a `weft attach` container's lease is not Docker's to free.
    if !is_docker_lease(&lease) {
        bail!("{ip} is held by weft container {:?}, not by Docker", lease.name);
    }
    if !lease.host_ifname.is_empty() {
        unlink(d, net, &lease).await;
    }
    leases.remove(&info.name, &ip);
    leases.save()
}

/// Whether a lease is one this driver made (a reservation, or an endpoint's).
fn is_docker_lease(lease: &Lease) -> bool {
    lease.ifname == DOCKER_IFNAME
}

/// What a Docker endpoint's lease records as the container's interface: dockerd names it
/// `eth` and a number of its choosing.
const DOCKER_IFNAME: &str = "docker:eth";

fn create_network(d: &Driver, r: wire::CreateNetwork) -> Result<Value> {
    check_id("network id", &r.network_id)?;
    let generic = r.options.get(wire::GENERIC_OPTIONS).and_then(Value::as_object);
    let named = match generic.and_then(|g| g.get(wire::NETWORK_OPTION)) {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => bail!("{} must be a network name", wire::NETWORK_OPTION),
    };
    if let Some(g) = generic {
        if let Some(k) = g.keys().find(|k| k.starts_with("weft.") && *k != wire::NETWORK_OPTION) {
            bail!("unknown option {k:?} (weft knows {})", wire::NETWORK_OPTION);
        }
    }
    let v4 = r.ipv4_data.unwrap_or_default();
    let v6 = r.ipv6_data.unwrap_or_default();
    let first_pool = v4.first().or(v6.first()).map(|p| p.pool.as_str());
    let net = pick_network(&d.ctx, named, first_pool, v4.is_empty())?;
    let info = &d.ctx.nets[net.0];
    for (data, is_v6) in v4.iter().map(|p| (p, false)).chain(v6.iter().map(|p| (p, true))) {
        // Another IPAM driver's pool could equal the subnet and still hand out addresses
        // of other nodes' pools.
        if data.address_space != wire::ADDRESS_SPACE {
            bail!(
                "the network's addresses come from another IPAM driver (address space {:?}): create it with --ipam-driver weft",
                data.address_space
            );
        }
        let subnet = info.subnet.of(is_v6);
        if data.pool.parse::<ipnet::IpNet>().ok() != subnet {
            bail!(
                "the network's pool {} is not weft network {}'s subnet {}: create it with --ipam-driver weft",
                data.pool,
                info.name,
                subnet.map(|s| s.to_string()).unwrap_or_else(|| "(none of this family)".into())
            );
        }
    }
    let mut nets = d.lock_nets();
    nets.networks.insert(r.network_id.clone(), info.name.clone());
    nets.save()?;
    info!(docker_network = %r.network_id, network = %info.name, "docker network created");
    Ok(json!({}))
}

/// The weft network a Docker network was created on.
fn network_of(d: &Driver, network_id: &str) -> Result<NetId> {
    check_id("network id", network_id)?;
    let name = d
        .lock_nets()
        .networks
        .get(network_id)
        .cloned()
        .ok_or_else(|| anyhow!("Docker network {network_id} was not created by this weft driver"))?;
    net_index(&d.ctx, &name)
}

fn parse_cidr_ip(s: &str) -> Result<Option<IpAddr>> {
    if s.is_empty() {
        return Ok(None);
    }
    let net: ipnet::IpNet = s.parse().map_err(|_| anyhow!("address {s:?} is not IP/PREFIX"))?;
    Ok(Some(net.addr()))
}

async fn create_endpoint(d: &Driver, r: wire::CreateEndpoint) -> Result<Value> {
    let net = network_of(d, &r.network_id)?;
    check_id("endpoint id", &r.endpoint_id)?;
    let info = &d.ctx.nets[net.0];
    let iface = r.interface.unwrap_or_default();
    let ips: Vec<IpAddr> =
        [parse_cidr_ip(&iface.address)?, parse_cidr_ip(&iface.address_ipv6)?].into_iter().flatten().collect();
    if ips.is_empty() {
        bail!("the endpoint has no address: create the network with --ipam-driver weft");
    }
    let given_mac = match iface.mac_address.as_str() {
        "" => None,
        m => Some(parse_mac(m).ok_or_else(|| anyhow!("MAC address {m:?} is not aa:bb:cc:dd:ee:ff"))?),
    };
    let mac = given_mac
        .or_else(|| ips.iter().find_map(|ip| netlink::container::stable_mac(*ip)))
        .unwrap_or_else(random_mac);
    let name = format!("docker-{}", &r.endpoint_id[..r.endpoint_id.len().min(12)]);
    let mut leases = d.ctx.leases.lock().await;
    let mut added = Vec::new();
    for ip in &ips {
        match leases.of(&info.name).find(|(a, _)| *a == ip).map(|(_, l)| l.clone()) {
            Some(l) if is_docker_lease(&l) && l.container_id.is_none() => {}
            Some(l) => bail!("{ip} is already held by {:?}", l.name),
            // Reserved before a restart of weft dropped the reservation: hold it again.
            None => {
                let pool = d.ctx.pools[net.0].for_ip(ip).context("address of no pool of this node")?;
                let gateway = info.gateway.for_ip(ip).context("address of no gateway")?;
                leases.pick(&info.name, pool, gateway, Some(*ip))?;
                added.push(*ip);
            }
        }
        let lease = Lease {
            name: name.clone(),
            netns: String::new(),
            host_ifname: String::new(),
            ifname: DOCKER_IFNAME.to_owned(),
            mac,
            labels: BTreeMap::new(),
            container_id: Some(r.endpoint_id.clone()),
        };
        leases.insert(&info.name, *ip, lease);
    }
    save_or_undo(&mut leases, &info.name, &added)?;
    let answer = wire::Interface {
        mac_address: if given_mac.is_some() { String::new() } else { mac_string(&mac) },
        ..Default::default()
    };
    Ok(json!({ "Interface": answer }))
}

/// A random locally administered unicast MAC.
fn random_mac() -> [u8; 6] {
    let r = crate::pki::random32();
    [(r[0] & 0xfe) | 0x02, r[1], r[2], r[3], r[4], r[5]]
}

/// The leases (one per address) of a Docker endpoint.
fn endpoint_leases(leases: &Leases, network: &str, endpoint_id: &str) -> Vec<(IpAddr, Lease)> {
    leases
        .of(network)
        .filter(|(_, l)| l.container_id.as_deref() == Some(endpoint_id) && l.ifname == DOCKER_IFNAME)
        .map(|(ip, l)| (*ip, l.clone()))
        .collect()
}

async fn join(d: &Arc<Driver>, r: wire::Join) -> Result<Value> {
    let net = network_of(d, &r.network_id)?;
    check_id("endpoint id", &r.endpoint_id)?;
    if r.sandbox_key.len() > 4096 || r.sandbox_key.chars().any(char::is_control) {
        bail!("bad sandbox key");
    }
    let info = &d.ctx.nets[net.0];
    let mut leases = d.ctx.leases.lock().await;
    let held = endpoint_leases(&leases, &info.name, &r.endpoint_id);
    let Some((_, first)) = held.first().cloned() else {
        bail!("endpoint {} has no address at weft (was it created through this driver?)", r.endpoint_id);
    };
    if !first.host_ifname.is_empty() {
        bail!("endpoint {} has already joined", r.endpoint_id);
    }
    let host_ifname = host_ifname();
    let peer_ifname = host_ifname.replacen("wv", "wd", 1);
    netlink::container::create_pair(
        &d.ctx.netlink,
        &format!("weft-{}", info.name),
        &host_ifname,
        &peer_ifname,
        first.mac,
        info.mtu,
    )
    .await?;
    if let Ok(Some(idx)) = d.ctx.netlink.link_index(&host_ifname).await {
        let _ = d.ctx.netlink.set_mtu(idx, crate::device::PORT_MTU).await;
    }
    for (ip, lease) in &held {
        let mut l = lease.clone();
        l.host_ifname = host_ifname.clone();
        l.netns = r.sandbox_key.clone();
        leases.insert(&info.name, *ip, l);
    }
    if let Err(e) = leases.save() {
        let _ = netlink::container::detach(&d.ctx.netlink, &host_ifname).await;
        for (ip, lease) in &held {
            leases.insert(&info.name, *ip, lease.clone());
        }
        return Err(e);
    }
    announce(d, net, &held.iter().map(|(ip, _)| *ip).collect::<Vec<_>>(), &first).await;
    drop(leases);
    info!(endpoint = %r.endpoint_id, network = %info.name, host_ifname, "docker endpoint joined");
    tokio::spawn(name_after_container(Arc::clone(d), net, r.network_id.clone(), r.endpoint_id.clone()));
    let gateway = |v6: bool| {
        held.iter()
            .any(|(ip, _)| ip.is_ipv6() == v6)
            .then(|| info.gateway.of(v6))
            .flatten()
            .map(|g| g.to_string())
            .unwrap_or_default()
    };
    Ok(json!({
        "InterfaceName": { "SrcName": peer_ifname, "DstPrefix": "eth" },
        "Gateway": gateway(false),
        "GatewayIPv6": gateway(true),
        "DisableGatewayService": false,
    }))
}

/// Tells the engine and the service registry about a joined endpoint's addresses.
async fn announce(d: &Driver, net: NetId, ips: &[IpAddr], lease: &Lease) {
    crate::control::server::announce(&d.ctx, net, lease.mac, ips, &lease.name, &lease.labels).await;
}

/// Removes a joined endpoint's link and announcement (its lease stays for dockerd to free).
async fn unlink(d: &Driver, net: NetId, lease: &Lease) {
    if let Err(e) = netlink::container::detach(&d.ctx.netlink, &lease.host_ifname).await {
        warn!(host_ifname = %lease.host_ifname, "cannot remove the container's link: {e}");
    }
    send_to_engine(&d.ctx, ControlMsg::RemoveLocal { net, mac: lease.mac }).await;
    d.ctx.registry.container_detached(&d.ctx.nets[net.0].name, &lease.name);
}

/// `Leave` (and `DeleteEndpoint`, for an endpoint that never left): the link and the
/// announcement go; the address stays held until `ReleaseAddress`.
async fn leave(d: &Driver, r: &wire::EndpointRef, must_exist: bool) -> Result<()> {
    let net = match network_of(d, &r.network_id) {
        Ok(n) => n,
        Err(_) if !must_exist => return Ok(()),
        Err(e) => return Err(e),
    };
    check_id("endpoint id", &r.endpoint_id)?;
    let network = d.ctx.nets[net.0].name.clone();
    let mut leases = d.ctx.leases.lock().await;
    let held = endpoint_leases(&leases, &network, &r.endpoint_id);
    let Some((_, first)) = held.first().cloned() else {
        return Ok(());
    };
    if !first.host_ifname.is_empty() {
        unlink(d, net, &first).await;
    }
    for (ip, lease) in held {
        let mut l = lease;
        l.host_ifname.clear();
        l.netns.clear();
        if !must_exist {
            // DeleteEndpoint: back to a bare reservation.
            l = placeholder(ip);
        }
        leases.insert(&network, ip, l);
    }
    leases.save()?;
    info!(endpoint = %r.endpoint_id, network, "docker endpoint left");
    Ok(())
}

/// After a join: asks dockerd which container the endpoint is, then gives the entry the
/// container's name and labels (what DNS, policy and `weft.service` go by).
async fn name_after_container(d: Arc<Driver>, net: NetId, network_id: String, endpoint_id: String) {
    let deadline = tokio::time::Instant::now() + NAME_LOOKUP;
    let mut wait = Duration::from_millis(50);
    let found = loop {
        match engine_api::endpoint_container(&d.engine, &network_id, &endpoint_id).await {
            Ok(Some(c)) => break Some(c),
            Ok(None) => {}
            Err(e) if tokio::time::Instant::now() + wait >= deadline => {
                warn!(endpoint = %endpoint_id, "cannot learn the container's name from dockerd: {e:#}");
                break None;
            }
            Err(_) => {}
        }
        if tokio::time::Instant::now() + wait >= deadline {
            break None;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    };
    let Some(c) = found else { return };
    if let Err(e) = rename(&d, net, &endpoint_id, c).await {
        warn!(endpoint = %endpoint_id, "the container keeps its provisional name: {e:#}");
    }
}

async fn rename(d: &Driver, net: NetId, endpoint_id: &str, c: engine_api::ContainerInfo) -> Result<()> {
    check_name(&c.name)?;
    // Labels weft cannot carry are left out, not the container: Docker's label syntax is wider.
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in c.labels {
        let one = BTreeMap::from([(k.clone(), v.clone())]);
        if labels.len() < 32 && check_labels(&one).is_ok() {
            labels.insert(k, v);
        }
    }
    if let Some(v) = labels.get(crate::discovery::registry::SERVICE_LABEL) {
        crate::discovery::registry::parse_service_label(v, &d.ctx.nets[net.0].name, &c.name)?;
    }
    let network = d.ctx.nets[net.0].name.clone();
    let mut leases = d.ctx.leases.lock().await;
    let held = endpoint_leases(&leases, &network, endpoint_id);
    let Some((_, first)) = held.first().cloned() else {
        bail!("the endpoint left before its name was known");
    };
    if first.host_ifname.is_empty() {
        bail!("the endpoint left before its name was known");
    }
    if let Some((_, other)) = leases.find(&network, &c.name) {
        if other.container_id.as_deref() != Some(endpoint_id) {
            bail!("another container on {network} is already named {:?}", c.name);
        }
    }
    let before = held.clone();
    for (ip, lease) in &held {
        let mut l = lease.clone();
        l.name = c.name.clone();
        l.labels = labels.clone();
        leases.insert(&network, *ip, l);
    }
    if let Err(e) = leases.save() {
        for (ip, lease) in before {
            leases.insert(&network, ip, lease);
        }
        return Err(e);
    }
    d.ctx.registry.container_detached(&network, &first.name);
    let mut renamed = first.clone();
    renamed.name = c.name.clone();
    renamed.labels = labels;
    // The engine's entry is keyed by MAC and address: announcing again replaces it.
    announce(d, net, &held.iter().map(|(ip, _)| *ip).collect::<Vec<_>>(), &renamed).await;
    info!(endpoint = %endpoint_id, container = %c.name, network, "docker container named");
    Ok(())
}

/// Binds the driver's socket (root only), replacing a stale one.
pub fn bind(path: &Path) -> Result<tokio::net::UnixListener> {
    crate::control::access::bind(path, &crate::control::access::ControlAccess::new(None))
        .with_context(|| format!("the Docker driver socket {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerds_bodies_decode_and_empty_ones_are_defaults() {
        // As dockerd 20.10 posts them (strace of a lab run).
        let r: wire::RequestPool =
            decode(br#"{"AddressSpace":"weft","Pool":"10.42.0.0/16","SubPool":"","Options":{},"V6":false}"#)
                .unwrap();
        assert_eq!((r.pool.as_str(), r.v6), ("10.42.0.0/16", false));
        let c: wire::CreateNetwork = decode(
            br#"{"NetworkID":"5e57","Options":{"com.docker.network.enable_ipv6":false,"com.docker.network.generic":{"weft.network":"default"}},"IPv4Data":[{"AddressSpace":"weft","Gateway":"10.42.1.1/16","Pool":"10.42.0.0/16"}],"IPv6Data":[]}"#,
        )
        .unwrap();
        assert_eq!(c.ipv4_data.unwrap()[0].address_space, wire::ADDRESS_SPACE);
        let e: wire::CreateEndpoint =
            decode(br#"{"NetworkID":"5e57","EndpointID":"65d0","Interface":{"Address":"10.42.1.2/16","AddressIPv6":"","MacAddress":""},"Options":{}}"#)
                .unwrap();
        assert_eq!(e.interface.unwrap().address, "10.42.1.2/16");
        let empty: wire::EndpointRef = decode(b"  \n").unwrap();
        assert!(empty.network_id.is_empty());
        assert!(decode::<wire::Join>(b"{\"NetworkID\": 7}").is_err());
    }

    #[test]
    fn only_hex_like_ids_pass() {
        assert!(check_id("id", "5e57ce7a64aa9700b9f6ddf0d44bff82d86a8ff5ab2204a0c7c42255928df073").is_ok());
        for bad in ["", "../x", "a b", "a/b", &"a".repeat(129), "x\n"] {
            assert!(check_id("id", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn placeholders_are_valid_container_names_and_docker_leases() {
        for ip in ["10.42.1.2", "fd42:0:0:1::2"] {
            let ip: IpAddr = ip.parse().unwrap();
            check_name(&placeholder_name(ip)).unwrap();
            assert!(is_docker_lease(&placeholder(ip)));
        }
        let attached = Lease { ifname: "eth0".into(), ..placeholder("10.42.1.3".parse().unwrap()) };
        assert!(!is_docker_lease(&attached), "a weft attach lease is not Docker's to free");
        let mac = random_mac();
        assert_eq!(mac[0] & 0x03, 0x02, "locally administered unicast");
    }
}
