//! `weft run`: brings the node up (identity, bridges, TAPs, sockets, engine, workers, control
//! socket), waits for SIGTERM/SIGINT, and takes down everything it created, in reverse order.
//! After a crash nothing blocks a restart: bridges are reused, TAPs vanish with the process,
//! leases and container links are reconciled at start.

mod guards;
mod lock;
mod network;
mod reload;

pub use network::TornDown;

pub use reload::{needs_restart, LogLevelSetter};

use anyhow::Result;
use overlay_proto::{Endpoint, EndpointConfig};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

use crate::config::Config;
use crate::control::{self, ControlCtx};
use crate::dataplane;
use crate::discovery::directory::Directory;
use crate::discovery::registry::{Registry, Source};
use crate::dns::{DnsServer, DnsSettings};
use crate::engine::driver::Driver;
use crate::engine::{CertAuth, Engine, Members};
use crate::ipam::Leases;
use crate::membership::{Membership, MembershipConfig, NodeKey, Record};
use crate::netlink::Netlink;
use crate::pki::{self, Identity};
use crate::plane::{ControlMsg, EngineMsg, Shared};

/// Handshakes per second above which initiators must present a cookie.
const HANDSHAKE_RATE_LIMIT: u32 = 500;
/// Capacity of the engine's control channel (control requests and the workers' wake-ups;
/// the workers' own work has its lanes, see [`crate::plane::Lanes`]).
const ENGINE_QUEUE: usize = 256;

/// The tracing filter for a configured level: hickory's own per-query chatter is capped at warn.
pub fn log_filter(level: &str) -> String {
    if level.contains("hickory") {
        level.to_owned()
    } else {
        format!("{level},hickory_server=warn,hickory_proto=warn,hickory_resolver=warn,hickory_net=warn")
    }
}

/// Runs the daemon until a termination signal. Stopping leaves bridges, container links and
/// leases in place (live restore: the next start adopts them); `weft teardown` removes them.
pub async fn run(cfg: Config, id: Identity, set_log_level: Option<LogLevelSetter>) -> Result<()> {
    let mut node = start(&cfg, id, set_log_level).await?;
    wait_for_signal(&mut node.reloader, &mut node.reload_rx).await;
    node.stop().await;
    Ok(())
}

/// `weft teardown`: removes what a stopped daemon left for the next start (container links,
/// their resolv.conf files and leases, the bridges). Refuses while a daemon holds the node.
pub async fn teardown(cfg: &Config) -> Result<network::TornDown> {
    let _locks = lock::HostLocks::acquire(cfg, "teardown", &[])?;
    let nl = Netlink::new().await?;
    let mut leases = Leases::load(&cfg.node.state_dir)?;
    Ok(network::tear_down(&nl, cfg, &mut leases).await)
}

/// A running node: what [`start`] made, each part in a guard that undoes it when dropped.
/// Fields drop in declaration order, which is the stop order: no new requests (tasks), then
/// DNS (stopped explicitly, it needs an await), the control socket file, the workers and the
/// engine, and last the host locks.
struct Node {
    tasks: guards::Tasks,
    reloader: reload::Reloader,
    reload_rx: control::server::ReloadRequests,
    _socket: guards::SocketFile,
    _docker_socket: Option<guards::SocketFile>,
    _threads: guards::Threads,
    _locks: lock::HostLocks,
}

impl Node {
    /// Stops everything but what containers need on this host (see [`run`]).
    async fn stop(mut self) {
        info!("shutting down");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        drop(std::mem::take(&mut self.tasks));
        if let Some(d) = self.reloader.dns.take() {
            d.stop().await;
        }
        drop(self);
        // Bridges, container links, addresses and leases stay: containers keep their
        // interfaces (and reach each other on this host) while the daemon is away, and the next
        // start adopts them. Only the TAPs go, with the process.
        info!("stopped; containers stay attached (weft teardown removes them)");
    }
}

/// Brings the node up. On an error everything made so far is undone by the guards' drops
/// (bridges this start created, the socket file, threads, tasks), in reverse order, and what
/// it adopted from an earlier run is left alone.
async fn start(cfg: &Config, id: Identity, set_log_level: Option<LogLevelSetter>) -> Result<Node> {
    // Locks first: a second daemon for the same state_dir, bridge, gateway or port stops here,
    // before it touches anything of the first one's.
    let gateways: Vec<_> = cfg
        .networks
        .iter()
        .filter_map(|n| network::node_pool(n, &id.cert))
        .flat_map(|(_, gw)| gw.iter().map(lock::gateway).collect::<Vec<_>>())
        .collect();
    let locks = lock::HostLocks::acquire(cfg, "daemon", &gateways)?;
    let http_access = Arc::new(crate::http_access::HttpAccess::load(cfg)?);
    let metrics = cfg.metrics.map(crate::metrics::bind).transpose()?;
    let control_access = control::access::ControlAccess::new(cfg.node.control_group.clone());
    let listener = control::access::bind(&cfg.node.control_socket, &control_access)?;
    let socket = guards::SocketFile(cfg.node.control_socket.clone());
    let docker = match cfg.docker.enable {
        true => {
            Some((crate::docker::bind(&cfg.docker.socket)?, guards::SocketFile(cfg.docker.socket.clone())))
        }
        false => None,
    };
    let nl = Netlink::new().await?;
    let mut leases = Leases::load(&cfg.node.state_dir)?;
    let sockets = network::udp_sockets(cfg)?;
    let up = network::bring_up(&nl, cfg, &id.cert).await?;
    let bridges = guards::NewBridges::new(up.created.clone());
    let recovered = network::reconcile_leases(&nl, &cfg.networks, &mut leases).await;

    let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let endpoint = Endpoint::new(
        EndpointConfig {
            static_secret: id.secret.clone(),
            cert: id.cert.clone(),
            cas: id.cas.clone(),
            wall_clock: (Instant::now(), wall),
            handshake_rate_limit: HANDSHAKE_RATE_LIMIT,
            revoked: Default::default(),
            max_peers: cfg.max_members,
            ciphers: cfg.underlay.cipher.offer(crate::config::hardware_aes()),
            features: overlay_proto::Features::ALL,
        },
        Box::new(rand_core::OsRng),
    )?;
    let (tx, rx) = sync_channel::<EngineMsg>(ENGINE_QUEUE);
    let (lanes, lane_rx) = crate::plane::Lanes::new();
    let shared = Arc::new(Shared {
        tables: Default::default(),
        proto_stats: Arc::clone(endpoint.stats()),
        stats: Default::default(),
        nets: up.nets.clone(),
        taps: up.taps,
        engine: tx.clone(),
        lanes,
        stop: Default::default(),
        conntrack: cfg
            .networks
            .iter()
            .map(|n| crate::policy::Conntrack::new(n.policy.conntrack_max(), n.policy.conntrack_per_peer()))
            .collect(),
        epoch: Instant::now(),
        busy_poll: cfg.underlay.busy_poll,
        worker_nice: cfg.underlay.worker_nice,
    });
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let directory = Arc::new(arc_swap::ArcSwap::from_pointee(Directory::default()));
    let dns_stats = Arc::new(crate::dns::DnsStats::default());
    // DNS answers on every gateway address, both families' of a dual-stack network.
    let gateways: Vec<_> = up.nets.iter().flat_map(|n| n.gateway.iter()).collect();
    let dns = start_dns(cfg, &gateways, &directory, &dns_stats)
        .await
        .map_err(|e| e.context("starting DNS (set [dns] enable = false to run without it)"))?;
    let members = Members::new(membership(cfg, &id, wall), id.cas.clone(), Arc::clone(&directory));
    let engine =
        Engine::new(Instant::now(), wall, endpoint, Arc::clone(&shared), &cfg.dial_targets(), members);
    let mut driver = Driver::new(engine, Arc::clone(&shared), sockets.udp[0].try_clone()?);
    driver.engine().set_policies(
        cfg.networks.iter().map(|n| Arc::new(crate::policy::Compiled::new(n.policy.clone()))).collect(),
        &id.cert.name,
        &id.cert.groups,
    );
    driver.engine().revoke(Instant::now(), id.revocations.clone());
    driver.engine().set_relay(cfg.relay.clone());
    let own = crate::discovery::registry::OwnAddresses {
        subnets: id.cert.subnets.clone(),
        underlay: cfg.underlay.advertise.ip(),
    };
    let registry = Registry::new(cfg.networks.iter().map(|n| (n.name.clone(), n.vni.get())), own);
    for (net, mac, ip, lease) in &recovered {
        driver.engine().add_local(Instant::now(), *net, *mac, *ip, &lease.name, lease.labels.clone());
    }
    let mut threads = guards::Threads {
        shared: Arc::clone(&shared),
        engine_tx: tx.clone(),
        engine: None,
        workers: Vec::new(),
    };
    threads.engine =
        Some(std::thread::Builder::new().name("weft-engine".into()).spawn(move || driver.run(rx, lane_rx))?);
    for (i, udp) in sockets.udp.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        let vxlan = sockets.vxlan.get(i).map(|s| s.try_clone()).transpose()?;
        threads.workers.push(
            std::thread::Builder::new()
                .name(format!("weft-dp{i}"))
                .spawn(move || dataplane::run_worker(shared, i, udp, vxlan))?,
        );
    }
    let ctx = Arc::new(ControlCtx {
        node: cfg.node.name.clone(),
        nets: up.nets,
        pools: up.pools,
        leases: tokio::sync::Mutex::new(leases),
        netlink: nl,
        engine: tx.clone(),
        registry: Arc::clone(&registry),
        dns_domain: cfg.dns.enable.then(|| cfg.dns.domain.clone()),
        dns_stats,
        reload: reload_tx,
        local_stats: Arc::default(),
    });
    let mut tasks = guards::Tasks::default();
    tasks.add(tokio::spawn(announce_services(Arc::clone(&registry), tx.clone())));
    for (net, _, ip, lease) in &recovered {
        if let Err(e) = registry.container_attached(&cfg.networks[*net].name, &lease.name, *ip, &lease.labels)
        {
            warn!(container = %lease.name, "services of the container not registered: {e:#}");
        }
    }
    for spec in &cfg.services {
        if let Err(e) = registry.add(spec.clone(), Source::Config) {
            warn!("service {}: {e:#}", spec.id());
        }
    }
    tasks.add(tokio::spawn(control::server::serve_on(listener, Arc::clone(&ctx), control_access)));
    let docker_socket = match docker {
        Some((listener, file)) => {
            let driver =
                crate::docker::Driver::new(Arc::clone(&ctx), &cfg.node.state_dir, cfg.docker.engine.clone())?;
            tasks.add(tokio::spawn(async move {
                if let Err(e) = crate::docker::serve(listener, driver).await {
                    warn!("{e:#}");
                }
            }));
            info!(socket = %cfg.docker.socket.display(), "serving the Docker network and IPAM driver");
            Some(file)
        }
        None => None,
    };
    if let Some(listener) = metrics {
        let ctx = Arc::clone(&ctx);
        tasks.add(tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(listener, ctx, http_access).await {
                warn!("{e:#}");
            }
        }));
    }
    // Devices, sockets, engine, workers and the control socket are up: tell systemd.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    // The watchdog is fed only while the engine answers, so a wedged engine gets restarted.
    if let Some(period) = sd_notify::watchdog_enabled() {
        let ctx = Arc::clone(&ctx);
        tasks.add(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period / 3);
            loop {
                tick.tick().await;
                let alive = tokio::time::timeout(period / 3, control::server::status(&ctx)).await;
                if matches!(alive, Ok(Ok(_))) {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
            }
        }));
    }
    info!(
        node = %cfg.node.name, listen = %cfg.underlay.listen, workers = threads.workers.len(),
        networks = cfg.networks.len(), "weft is up"
    );
    let reloader = reload::Reloader {
        cfg: cfg.clone(),
        ctx,
        dns,
        directory,
        gateways,
        set_log_level,
        applied_new: false,
        revoked: id.revocations.iter().map(|r| r.public_key).collect(),
        identity: reload::IdentityPrint::of(&id),
    };
    bridges.keep();
    Ok(Node {
        tasks,
        reloader,
        reload_rx,
        _socket: socket,
        _docker_socket: docker_socket,
        _threads: threads,
        _locks: locks,
    })
}

/// Starts DNS on every network's gateway address (port 53) and the configured addresses.
async fn start_dns(
    cfg: &Config,
    gateways: &[std::net::IpAddr],
    directory: &Arc<arc_swap::ArcSwap<Directory>>,
    stats: &Arc<crate::dns::DnsStats>,
) -> Result<Option<DnsServer>> {
    if !cfg.dns.enable {
        return Ok(None);
    }
    let mut listen: Vec<std::net::SocketAddr> =
        gateways.iter().map(|g| std::net::SocketAddr::new(*g, 53)).collect();
    listen.extend(cfg.dns.listen.iter().filter(|a| !listen.contains(a)).collect::<Vec<_>>());
    let upstreams = match &cfg.dns.upstreams {
        Some(u) => u.clone(),
        None => std::fs::read_to_string("/etc/resolv.conf")
            .map(|t| crate::dns::upstreams_from_resolv_conf(&t))
            .unwrap_or_default(),
    };
    // Never forward to ourselves (a host whose resolv.conf already points at weft).
    let upstreams: Vec<_> = upstreams.into_iter().filter(|u| !listen.contains(u)).collect();
    let settings = DnsSettings { domain: cfg.dns.domain.clone(), ttl: cfg.dns.ttl, upstreams, listen };
    info!(domain = %settings.domain, listen = ?settings.listen, upstreams = ?settings.upstreams, "serving DNS");
    DnsServer::start(settings, Arc::clone(directory), Arc::clone(stats)).await.map(Some)
}

/// Pushes what our record announces to the engine whenever the registry changes.
async fn announce_services(registry: Arc<Registry>, tx: std::sync::mpsc::SyncSender<EngineMsg>) {
    loop {
        let list = registry.announced();
        let tx = tx.clone();
        let sent =
            tokio::task::spawn_blocking(move || tx.send(EngineMsg::Control(ControlMsg::SetServices(list))))
                .await;
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
        registry.changed().await;
    }
}

/// Our membership layer, starting from a record whose version beats any earlier run's.
fn membership(cfg: &Config, id: &Identity, wall: std::time::Duration) -> Membership {
    let cert = &id.cert;
    let own = Record {
        key: NodeKey(cert.public_key),
        name: cfg.node.name.clone(),
        version: (wall.as_millis() as u64) << 16,
        endpoint: cfg.underlay.advertise,
        cert: cert.encode(),
        networks: cfg.networks.iter().map(|n| n.vni.get()).collect(),
        containers: Vec::new(),
        services: Vec::new(),
    };
    let seed = u64::from_le_bytes(pki::random32()[..8].try_into().expect("8 bytes"));
    let now = Instant::now();
    let auth = CertAuth::new(id.cas.clone(), &id.secret, now, wall);
    let mcfg = MembershipConfig { max_members: cfg.max_members, ..MembershipConfig::default() };
    Membership::new(own, mcfg, Box::new(auth), seed, now)
}

/// Waits for SIGTERM/SIGINT; meanwhile reloads on SIGHUP and on `weft reload`.
async fn wait_for_signal(reloader: &mut reload::Reloader, requests: &mut control::server::ReloadRequests) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        warn!("cannot install signal handlers; waiting forever");
        return std::future::pending().await;
    };
    let mut hup = signal(SignalKind::hangup()).ok();
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                info!("SIGHUP: reloading {}", reloader.cfg.path.display());
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                let _ = reloader.reload().await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
            Some(reply) = requests.recv() => {
                let r = reloader.reload().await.map_err(|e| format!("{e:#}"));
                let _ = reply.send(r);
            }
        }
    }
}
