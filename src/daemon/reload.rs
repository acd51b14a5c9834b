//! Live reload (SIGHUP, `weft reload`): re-reads the node TOML and applies what can change
//! without touching tunnels: seeds and static peers, policy, services, DNS settings, log
//! level, new revocations. A file that does not validate, or a change only a restart can apply (identity,
//! underlay, a network's shape, the control socket or group, the metrics listener and its
//! token file or allowed hosts), is refused as a whole with the reason, and the running
//! configuration stays.

use anyhow::{bail, Context, Result};
use std::sync::Arc;
use tracing::{error, info};

use crate::config::{Config, Network};
use crate::control::ControlCtx;
use crate::discovery::directory::Directory;
use crate::dns::DnsServer;
use crate::plane::ControlMsg;
use crate::policy::Compiled;
use crate::report::{Change, Reloaded};

/// Sets the log filter (from the `[node] log_level` of a reloaded file); errors if invalid.
pub type LogLevelSetter = Box<dyn Fn(&str) -> Result<()> + Send + Sync>;

/// What a reload works on: the running configuration and what must be restarted to change it.
pub(super) struct Reloader {
    pub cfg: Config,
    pub ctx: Arc<ControlCtx>,
    pub dns: Option<DnsServer>,
    pub directory: Arc<arc_swap::ArcSwap<Directory>>,
    pub gateways: Vec<std::net::IpAddr>,
    pub set_log_level: Option<LogLevelSetter>,
    /// The last reload got as far as making its file the running configuration.
    pub applied_new: bool,
    /// Keys revoked through `node.revocations` so far (the engine also learns revocations
    /// from members; a revocation is never undone without a restart).
    pub revoked: std::collections::BTreeSet<[u8; 32]>,
}

/// The parts of a network only a restart can change.
fn shape(n: &Network) -> String {
    format!(
        "{} {} {} {} {:?} {} {:?} conntrack {} {}",
        n.name,
        n.vni.get(),
        n.subnet,
        n.mtu,
        n.encryption,
        n.vxlan_port,
        n.remotes,
        n.policy.conntrack_max(),
        n.policy.conntrack_per_peer()
    )
}

/// What differs between `old` and `new` that only a restart applies.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut v = Vec::new();
    let (o, n) = (&old.node, &new.node);
    if (&o.name, &o.key, &o.cert, &o.ca) != (&n.name, &n.key, &n.cert, &n.ca) {
        v.push("node identity (name, key, cert, ca)".to_owned());
    }
    if (&o.state_dir, &o.control_socket, &o.control_group)
        != (&n.state_dir, &n.control_socket, &n.control_group)
    {
        v.push("node.state_dir / node.control_socket / node.control_group".to_owned());
    }
    if old.max_members != new.max_members {
        v.push("membership.max_members".to_owned());
    }
    let (o, n) = (&old.underlay, &new.underlay);
    if (o.listen, o.advertise, o.mtu, o.workers, o.offload, o.busy_poll)
        != (n.listen, n.advertise, n.mtu, n.workers, n.offload, n.busy_poll)
    {
        v.push("underlay (listen, advertise, mtu, workers, offload, busy_poll_us)".to_owned());
    }
    let shapes = |c: &Config| c.networks.iter().map(shape).collect::<Vec<_>>();
    if shapes(old) != shapes(new) {
        v.push("networks (name, vni, subnet, mtu, encryption, remotes, conntrack sizes)".to_owned());
    }
    if old.metrics != new.metrics {
        v.push("metrics.listen".to_owned());
    }
    if old.http != new.http {
        v.push("metrics.api_token_file / metrics.allowed_hosts".to_owned());
    }
    v
}

impl Reloader {
    /// Reloads; on error nothing changed, except when only DNS failed to restart (the error
    /// says so; the next reload tries DNS again).
    pub async fn reload(&mut self) -> Result<Reloaded> {
        match self.try_reload().await {
            Ok(r) => {
                info!(changes = %r, "configuration reloaded");
                Ok(r)
            }
            // The file itself was applied; only DNS did not start.
            Err(e) if self.dns.is_none() && self.cfg.dns.enable && self.applied_new => {
                error!("reload applied, but DNS is off: {e:#}");
                Err(e)
            }
            Err(e) => {
                error!("reload refused, the running configuration stays: {e:#}");
                Err(e)
            }
        }
    }

    async fn try_reload(&mut self) -> Result<Reloaded> {
        self.applied_new = false;
        let new = Config::load(&self.cfg.path)?;
        let restart = needs_restart(&self.cfg, &new);
        if !restart.is_empty() {
            bail!("these changes need a restart: {}", restart.join("; "));
        }
        let old = &self.cfg;
        let mut changed = Vec::new();
        if new.node.log_level != old.node.log_level {
            if let Some(set) = &self.set_log_level {
                set(&new.node.log_level)
                    .with_context(|| format!("node.log_level {:?}", new.node.log_level))?;
            }
            changed.push(Change::LogLevel);
        }
        // The revocation file is read again at every reload, changed path or not: `weft ca
        // revoke` appends to it in place.
        let ca =
            crate::pki::load_ca_cert(&new.node.ca).map_err(|e| new.error("node.ca", &format!("{e:#}")))?;
        let revocations = crate::pki::load_revocations_of(&new, &ca)?;
        let fresh: Vec<_> =
            revocations.into_iter().filter(|r| !self.revoked.contains(&r.public_key)).collect();
        if !fresh.is_empty() {
            self.revoked.extend(fresh.iter().map(|r| r.public_key));
            self.to_engine(ControlMsg::Revoke(fresh)).await;
            changed.push(Change::Revocations);
        }
        if new.dial_targets() != old.dial_targets() {
            self.to_engine(ControlMsg::SetDialTargets(new.dial_targets())).await;
            changed.push(Change::DialTargets);
        }
        let policies =
            |c: &Config| c.networks.iter().map(|n| serde_json::to_value(&n.policy).ok()).collect::<Vec<_>>();
        if policies(&new) != policies(old) {
            let compiled = new.networks.iter().map(|n| Arc::new(Compiled::new(n.policy.clone()))).collect();
            self.to_engine(ControlMsg::SetPolicies(compiled)).await;
            changed.push(Change::Policy);
        }
        if new.services != old.services {
            self.ctx.registry.replace_config(&new.services)?;
            changed.push(Change::Services);
        }
        // Also restarts DNS that a failed earlier reload left off.
        let dns_changed = new.dns != old.dns || (new.dns.enable && self.dns.is_none());
        // From here on the new file is the running configuration, DNS included or not.
        self.cfg = new;
        self.applied_new = true;
        if dns_changed {
            if let Some(d) = self.dns.take() {
                d.stop().await;
            }
            let stats = Arc::clone(&self.ctx.dns_stats);
            self.dns = super::start_dns(&self.cfg, &self.gateways, &self.directory, &stats).await.context(
                "the rest of the file is applied, but DNS did not start with these [dns] settings; \
                 it stays off until a reload starts it",
            )?;
            changed.push(Change::Dns);
        }
        Ok(Reloaded { changed })
    }

    async fn to_engine(&self, msg: ControlMsg) {
        crate::control::server::send_to_engine(&self.ctx, msg).await;
    }
}
