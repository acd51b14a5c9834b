//! Live reload (SIGHUP, `weft reload`): re-reads the node TOML and applies what can change
//! without taking containers off the network: seeds and static peers, policy, services, DNS
//! settings, log level, new revocations, and the node's key, certificate and trusted CAs
//! (paths or file contents; sessions are re-handshaken while the old ones carry traffic). A
//! file that does not validate, or a change only a restart can apply (node name, underlay,
//! a network's shape, the control socket or group, the metrics listener and its token file or
//! allowed hosts, `max_members`), is refused as a whole with the reason, and the running
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
    /// The identity the engine runs with, to tell whether a reload changed it.
    pub identity: IdentityPrint,
}

/// What tells one identity from another: our public key, our certificate's bytes, and the
/// trusted CAs' bytes in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IdentityPrint([u8; 32], Vec<u8>, Vec<Vec<u8>>);

impl IdentityPrint {
    pub fn of(id: &crate::pki::Identity) -> Self {
        Self(id.secret.public_key(), id.cert.encode(), id.cas.iter().map(|c| c.encode()).collect())
    }
}

/// The parts of a network only a restart can change.
fn shape(n: &Network) -> String {
    format!(
        "{} {} {} {} {:?} {} {:?} rco {} conntrack {} {}",
        n.name,
        n.vni.get(),
        n.subnet,
        n.mtu,
        n.encryption,
        n.vxlan_port,
        n.remotes,
        n.remote_checksum,
        n.policy.conntrack_max(),
        n.policy.conntrack_per_peer()
    )
}

/// What differs between `old` and `new` that only a restart applies.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut v = Vec::new();
    let (o, n) = (&old.node, &new.node);
    if o.name != n.name {
        v.push("node.name".to_owned());
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
    if (o.listen, o.advertise, o.mtu, o.workers, o.offload, o.busy_poll, o.worker_nice, o.cipher)
        != (n.listen, n.advertise, n.mtu, n.workers, n.offload, n.busy_poll, n.worker_nice, n.cipher)
    {
        v.push(
            "underlay (listen, advertise, mtu, workers, offload, busy_poll_us, worker_nice, cipher)"
                .to_owned(),
        );
    }
    let shapes = |c: &Config| c.networks.iter().map(shape).collect::<Vec<_>>();
    if shapes(old) != shapes(new) {
        v.push(
            "networks (name, vni, subnet, mtu, encryption, remotes, remote_checksum, conntrack sizes)"
                .to_owned(),
        );
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
        // Key, certificate, CAs and the revocation file are read again at every reload,
        // changed paths or not: renewals replace files in place, and `weft ca revoke` appends
        // to the revocation file. The identity is checked whole here and applied last.
        let id = crate::pki::Identity::load(&new)?;
        let print = IdentityPrint::of(&id);
        let fresh: Vec<_> =
            id.revocations.iter().filter(|r| !self.revoked.contains(&r.public_key)).cloned().collect();
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
        if print != self.identity {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let new_id = crate::plane::NewIdentity {
                secret: id.secret.clone(),
                cert: id.cert.clone(),
                cas: id.cas.clone(),
                reply: tx,
            };
            self.to_engine(ControlMsg::SetIdentity(Box::new(new_id))).await;
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => bail!("the new key, certificate or CAs were refused: {e}"),
                Err(_) => bail!("the engine has stopped"),
            }
            info!(
                key = %crate::pki::fingerprint(&print.0),
                cert_expires = %crate::pki::fmt_time(id.cert.not_after),
                cas = id.cas.iter().len(),
                "identity reloaded"
            );
            self.identity = print;
            changed.push(Change::Identity);
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
