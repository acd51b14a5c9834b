//! The daemon's service registry: our instances (from the node TOML, the control API and the
//! HTTP API, or a container's `weft.service` label at attach), their health checks, and the
//! push of what our record announces to the engine. Instances of a container are announced
//! only while it is attached; their checks start when its address is known.
//!
//! Every instance is checked as it is added, whatever its source, against what other nodes
//! will accept: an `address` instance must be at an address inside our certificate subnets or
//! at our underlay address (what `engine::discovery` believes of a member), and a TCP check
//! cannot probe a UDP service. Otherwise it would pass here and be missing everywhere else.

use crate::report::catalog::Health as InstanceHealth;
use crate::report::services::LocalService;
use crate::report::status::HealthCounts;
use anyhow::{bail, Result};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::catalog::{self, Announced, Catalog, CheckTemplate, InstanceState, ServiceSpec, Target};
use super::directory::Protocol;
use super::health::{self, CheckHandle, CheckKind, CheckSpec, Health};

/// Where a definition came from; config ones are replaced as a set on reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The node TOML.
    Config,
    /// `weft service add` or the HTTP API.
    Api,
    /// A container's `weft.service` label.
    Attach,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Api => "api",
            Source::Attach => "attach",
        }
    }
}

/// The label whose value declares services at attach: `NAME:PORT[/PROTO][,…]`.
pub const SERVICE_LABEL: &str = "weft.service";

#[derive(Default)]
struct Inner {
    catalog: Catalog,
    checks: BTreeMap<String, (u64, CheckHandle)>,
    generation: u64,
    /// Attached containers: (network, name) → address.
    containers: BTreeMap<(String, String), IpAddr>,
}

/// The addresses other nodes believe our instances at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnAddresses {
    /// Our certificate's subnets.
    pub subnets: Vec<IpNet>,
    /// Our advertised underlay address (`underlay.advertise`'s IP).
    pub underlay: IpAddr,
}

impl OwnAddresses {
    /// Refuses an `address` instance that other nodes would drop, saying which addresses work.
    pub fn check(&self, spec: &ServiceSpec) -> Result<()> {
        let Target::Address(ip) = spec.target else { return Ok(()) };
        if super::catalog::believable(&self.subnets, Some(self.underlay), ip) {
            return Ok(());
        }
        let subnets: Vec<String> = self.subnets.iter().map(IpNet::to_string).collect();
        bail!(
            "address {ip}: other nodes accept this node's instances only inside its certificate \
             subnets ({}) or at its underlay address {}; at {ip} the instance would be listed on \
             this node only",
            subnets.join(", "),
            self.underlay
        )
    }
}

/// A TCP connect says nothing about a UDP listener (the node TOML refuses it the same way).
fn check_protocol(spec: &ServiceSpec) -> Result<()> {
    if spec.protocol == Protocol::Udp
        && matches!(spec.check.as_ref().map(|c| &c.template), Some(CheckTemplate::Tcp))
    {
        bail!("check: a TCP check on a UDP service cannot pass or fail meaningfully; use an http or command check");
    }
    Ok(())
}

/// Our service instances and their checks.
pub struct Registry {
    inner: Mutex<Inner>,
    vnis: BTreeMap<String, u32>,
    own: OwnAddresses,
    changed: Notify,
    me: Weak<Registry>,
}

impl Registry {
    /// An empty registry for networks `(name, vni)` of a node whose instances others believe
    /// at `own`.
    pub fn new(networks: impl IntoIterator<Item = (String, u32)>, own: OwnAddresses) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            inner: Mutex::default(),
            vnis: networks.into_iter().collect(),
            own,
            changed: Notify::new(),
            me: me.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until what we announce may have changed.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// What our record should announce now.
    pub fn announced(&self) -> Vec<Announced> {
        self.lock().catalog.announced(|n| self.vnis.get(n).copied())
    }

    /// Adds an instance; refuses what [`Registry::check`] refuses, duplicates and more than
    /// [`catalog::MAX_SERVICES`].
    pub fn add(&self, spec: ServiceSpec, source: Source) -> Result<String> {
        self.check(&spec)?;
        let id = spec.id();
        let mut g = self.lock();
        if g.catalog.instances.contains_key(&id) {
            bail!("service instance {id} already exists");
        }
        if g.catalog.instances.len() >= catalog::MAX_SERVICES {
            bail!("at most {} service instances per node", catalog::MAX_SERVICES);
        }
        let ip = match &spec.target {
            Target::Address(ip) => Some(*ip),
            Target::Container(c) => g.containers.get(&(spec.network.clone(), c.clone())).copied(),
        };
        let healthy = spec.check.is_none();
        let state = InstanceState { spec, source, ip, healthy, output: None };
        g.catalog.instances.insert(id.clone(), state);
        self.restart_check(&mut g, &id);
        drop(g);
        info!(service = %id, source = source.name(), "service registered");
        self.changed.notify_one();
        Ok(id)
    }

    /// Refuses a definition that is out of bounds, on an unknown network, at an address other
    /// nodes would not believe, or with a TCP check on a UDP service.
    pub fn check(&self, spec: &ServiceSpec) -> Result<()> {
        spec.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        if !self.vnis.contains_key(&spec.network) {
            let names: Vec<&str> = self.vnis.keys().map(String::as_str).collect();
            bail!("network: no network named {:?} on this node (have: {})", spec.network, names.join(", "));
        }
        check_protocol(spec)?;
        self.own.check(spec)
    }

    /// Removes instances by id, or every instance of a service name; returns the ids removed.
    pub fn remove(&self, id_or_name: &str) -> Vec<String> {
        let mut g = self.lock();
        let ids: Vec<String> = g
            .catalog
            .instances
            .iter()
            .filter(|(id, s)| *id == id_or_name || s.spec.name == id_or_name)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            g.catalog.instances.remove(id);
            g.checks.remove(id);
        }
        drop(g);
        if !ids.is_empty() {
            self.changed.notify_one();
        }
        ids
    }

    /// Replaces every config-sourced instance with `specs`; unchanged ones keep their state.
    /// A definition [`Registry::check`] refuses fails the whole call before anything changes.
    pub fn replace_config(&self, specs: &[ServiceSpec]) -> Result<()> {
        for spec in specs {
            self.check(spec).map_err(|e| anyhow::anyhow!("service {}: {e:#}", spec.id()))?;
        }
        let keep: BTreeMap<String, &ServiceSpec> = specs.iter().map(|s| (s.id(), s)).collect();
        let stale: Vec<String> = {
            let g = self.lock();
            g.catalog
                .instances
                .iter()
                .filter(|(id, s)| s.source == Source::Config && keep.get(*id).is_none_or(|k| **k != s.spec))
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in stale {
            self.remove(&id);
        }
        for (id, spec) in keep {
            if !self.lock().catalog.instances.contains_key(&id) {
                self.add(spec.clone(), Source::Config)?;
            }
        }
        Ok(())
    }

    /// A container was attached: resolves its instances (and registers those its labels
    /// declare).
    pub fn container_attached(
        &self,
        network: &str,
        name: &str,
        ip: IpAddr,
        labels: &BTreeMap<String, String>,
    ) -> Result<()> {
        {
            let mut g = self.lock();
            g.containers.insert((network.to_owned(), name.to_owned()), ip);
            let ids: Vec<String> = g
                .catalog
                .instances
                .iter()
                .filter(|(_, s)| {
                    s.spec.network == network && s.spec.target == Target::Container(name.to_owned())
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in ids {
                if let Some(s) = g.catalog.instances.get_mut(&id) {
                    s.ip = Some(ip);
                }
                self.restart_check(&mut g, &id);
            }
        }
        if let Some(v) = labels.get(SERVICE_LABEL) {
            for spec in parse_service_label(v, network, name)? {
                if let Err(e) = self.add(spec, Source::Attach) {
                    warn!(container = name, "{e:#}");
                }
            }
        }
        self.changed.notify_one();
        Ok(())
    }

    /// A container was detached: its label-declared instances go, the others wait unresolved.
    pub fn container_detached(&self, network: &str, name: &str) {
        let mut g = self.lock();
        g.containers.remove(&(network.to_owned(), name.to_owned()));
        let target = Target::Container(name.to_owned());
        let ids: Vec<(String, bool)> = g
            .catalog
            .instances
            .iter()
            .filter(|(_, s)| s.spec.network == network && s.spec.target == target)
            .map(|(id, s)| (id.clone(), s.source == Source::Attach))
            .collect();
        for (id, drop_it) in ids {
            g.checks.remove(&id);
            if drop_it {
                g.catalog.instances.remove(&id);
            } else if let Some(s) = g.catalog.instances.get_mut(&id) {
                s.ip = None;
                s.healthy = s.spec.check.is_none();
            }
        }
        drop(g);
        self.changed.notify_one();
    }

    /// Our instances with their state, for `weft service list` and the HTTP API.
    pub fn list(&self) -> Vec<LocalService> {
        let g = self.lock();
        g.catalog
            .instances
            .iter()
            .map(|(id, s)| LocalService {
                id: id.clone(),
                name: s.spec.name.clone(),
                network: s.spec.network.clone(),
                target: s.spec.target.clone(),
                ip: s.ip,
                port: s.spec.port,
                protocol: s.spec.protocol,
                tags: s.spec.tags.clone(),
                check: s.spec.check.clone(),
                source: s.source,
                health: instance_health(s),
                output: s.output.clone(),
            })
            .collect()
    }

    /// Counts of our instances by health, for status and metrics.
    pub fn health_counts(&self) -> HealthCounts {
        let g = self.lock();
        let mut c = HealthCounts::default();
        for s in g.catalog.instances.values() {
            match instance_health(s) {
                InstanceHealth::Passing => c.passing += 1,
                InstanceHealth::Critical => c.critical += 1,
                InstanceHealth::Pending => c.pending += 1,
            }
        }
        c
    }

    /// (Re)starts the check of `id` for its current address; stops it when unresolved.
    fn restart_check(&self, g: &mut Inner, id: &str) {
        g.checks.remove(id);
        let Some(s) = g.catalog.instances.get_mut(id) else { return };
        let (Some(ip), Some(check)) = (s.ip, s.spec.check.clone()) else { return };
        s.healthy = false;
        s.output = Some("not checked yet".into());
        let addr = SocketAddr::new(ip, s.spec.port);
        let kind = match check.template {
            CheckTemplate::Tcp => CheckKind::Tcp { addr },
            CheckTemplate::Http { path } => CheckKind::Http { url: format!("http://{addr}{path}") },
            CheckTemplate::Command { argv } => CheckKind::Command { argv },
        };
        let spec = CheckSpec {
            kind,
            interval: check.interval,
            timeout: check.timeout,
            rise: check.rise,
            fall: check.fall,
        };
        g.generation += 1;
        let generation = g.generation;
        let me = self.me.clone();
        let key = id.to_owned();
        let handle = health::spawn(spec, move |h, reason| {
            if let Some(r) = me.upgrade() {
                r.health_changed(&key, generation, h, reason);
            }
        });
        g.checks.insert(id.to_owned(), (generation, handle));
    }

    fn health_changed(&self, id: &str, generation: u64, h: Health, reason: Option<String>) {
        let mut g = self.lock();
        if g.checks.get(id).map(|(gen, _)| *gen) != Some(generation) {
            return;
        }
        let Some(s) = g.catalog.instances.get_mut(id) else { return };
        s.healthy = h == Health::Passing;
        s.output = reason.clone();
        drop(g);
        info!(service = id, health = ?h, reason = reason.as_deref().unwrap_or(""), "health changed");
        self.changed.notify_one();
    }
}

/// `web:80,metrics:9100/tcp,dns:53/udp` → instance specs on container `name`.
pub fn parse_service_label(v: &str, network: &str, name: &str) -> Result<Vec<ServiceSpec>> {
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (svc, rest) = item
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("{SERVICE_LABEL}: {item:?} is not NAME:PORT[/tcp|/udp]"))?;
        let (port, proto) = rest.split_once('/').unwrap_or((rest, "tcp"));
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => bail!("{SERVICE_LABEL}: protocol of {item:?} must be tcp or udp"),
        };
        let port: u16 = port
            .parse()
            .map_err(|_| anyhow::anyhow!("{SERVICE_LABEL}: port of {item:?} must be 1..=65535"))?;
        let spec = ServiceSpec {
            name: svc.to_owned(),
            network: network.to_owned(),
            target: Target::Container(name.to_owned()),
            port,
            protocol,
            tags: Vec::new(),
            check: None,
        };
        spec.validate().map_err(|e| anyhow::anyhow!("{SERVICE_LABEL}: {e}"))?;
        out.push(spec);
    }
    if out.len() > 16 {
        bail!("{SERVICE_LABEL}: at most 16 services per container");
    }
    Ok(out)
}

/// An instance's health as reported: pending while it has no address.
fn instance_health(s: &InstanceState) -> InstanceHealth {
    match (s.ip, s.healthy) {
        (None, _) => InstanceHealth::Pending,
        (_, true) => InstanceHealth::Passing,
        _ => InstanceHealth::Critical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::catalog::Check;
    use std::time::Duration;

    fn registry() -> Arc<Registry> {
        let own = OwnAddresses {
            subnets: vec!["10.42.1.0/24".parse().unwrap(), "fd42:1::/64".parse().unwrap()],
            underlay: "192.0.2.1".parse().unwrap(),
        };
        Registry::new([("default".to_owned(), 42)], own)
    }

    fn at(address: &str) -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            network: "default".into(),
            target: Target::Address(address.parse().unwrap()),
            port: 80,
            protocol: Protocol::Tcp,
            tags: vec![],
            check: None,
        }
    }

    #[test]
    fn instances_at_addresses_other_nodes_drop_are_refused_at_once() {
        let r = registry();
        let e = r.add(at("8.8.8.8"), Source::Api).unwrap_err().to_string();
        assert!(e.contains("8.8.8.8") && e.contains("10.42.1.0/24") && e.contains("192.0.2.1"), "{e}");
        assert_eq!(r.list(), [], "nothing was registered");
        for ok in ["10.42.1.1", "fd42:1::5", "192.0.2.1"] {
            r.add(at(ok), Source::Api).unwrap_or_else(|e| panic!("{ok}: {e:#}"));
        }
        let mut c = at("10.42.1.1");
        c.target = Target::Container("web1".into());
        r.add(c, Source::Api).expect("a container's address comes from our own subnet");
    }

    #[test]
    fn tcp_check_on_udp_service_is_refused() {
        let mut spec = at("10.42.1.1");
        spec.protocol = Protocol::Udp;
        spec.check = Some(Check {
            template: CheckTemplate::Tcp,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            rise: 1,
            fall: 2,
        });
        let e = registry().add(spec, Source::Api).unwrap_err().to_string();
        assert!(e.contains("TCP check on a UDP service"), "{e}");
    }

    #[test]
    fn a_refused_definition_leaves_the_config_set_as_it_was() {
        let r = registry();
        r.replace_config(&[at("10.42.1.1")]).unwrap();
        let mut other = at("10.42.1.2");
        other.name = "api".into();
        let e = r.replace_config(&[other, at("8.8.8.8")]).unwrap_err().to_string();
        assert!(e.contains("web/8.8.8.8:80/tcp"), "{e}");
        let ids: Vec<String> = r.list().into_iter().map(|i| i.id).collect();
        assert_eq!(ids, ["web/10.42.1.1:80/tcp"]);
    }

    #[test]
    fn unknown_network_names_the_ones_there_are() {
        let mut spec = at("10.42.1.1");
        spec.network = "prod".into();
        let e = registry().add(spec, Source::Api).unwrap_err().to_string();
        assert!(e.contains("\"prod\"") && e.contains("have: default"), "{e}");
    }
}
