//! Node configuration: the TOML file types (`file.rs`) parsed into a validated [`Config`].
//! Parse, don't validate: after [`Config::load`] every value is typed and checked, and every
//! error names the file, the line and the key — also errors found later, against the files
//! and the host the config names ([`Config::error`] remembers where each such key was).
//!
//! [`Config::parse`] reads nothing but the text; [`Config::load`] also resolves the default
//! of `underlay.advertise`, which depends on the host's routes and addresses (`advertise.rs`).

mod advertise;
mod discovery;
mod docker;
mod file;
mod local_access;
mod locate;
pub mod log_level;
mod relay;
mod underlay;

use ipnet::IpNet;
use overlay_proto::consts::{overlay_mtu, vxlan_overlay_mtu, VXLAN_PORT};
use overlay_proto::wire::Vni;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::discovery::catalog::{self, ServiceSpec};
use std::path::{Path, PathBuf};
use toml::Spanned;

pub use advertise::{AdvertiseFrom, HostAddrs, System};
pub use docker::Docker;
pub use local_access::{ControlGroup, HttpAccessConfig};
pub use relay::Relay;

/// A configuration error, located in its file.
#[derive(Debug, thiserror::Error)]
#[error("{path}{}: {key}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key at fault (`network[1].vni`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// How a network's frames travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// Noise sessions, ChaCha20-Poly1305 (the default).
    #[serde(rename = "chacha20poly1305")]
    ChaCha20Poly1305,
    /// Plain RFC 7348 VXLAN, for interop with kernel VXLAN. No authentication at all.
    None,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// `[node]`.
    pub node: Node,
    /// `[underlay]`.
    pub underlay: Underlay,
    /// `[[network]]`.
    pub networks: Vec<Network>,
    /// `[[peer]]` endpoints to dial.
    pub peers: Vec<SocketAddr>,
    /// `[membership] seeds`: endpoints of members to join through.
    pub seeds: Vec<SocketAddr>,
    /// `[membership] max_members`: the most members (this node included) this node keeps
    /// records of and tunnels to (default 10,000); beyond it new identities are refused.
    pub max_members: usize,
    /// `[metrics] listen`: the Prometheus endpoint (default `127.0.0.1:9571`; `"off"` disables).
    pub metrics: Option<SocketAddr>,
    /// `[metrics] api_token_file` and `allowed_hosts`: who may use that listener.
    pub http: HttpAccessConfig,
    /// `[[service]]`: service instances this node owns.
    pub services: Vec<ServiceSpec>,
    /// `[dns]`.
    pub dns: Dns,
    /// `[relay]`.
    pub relay: Relay,
    /// `[docker]`.
    pub docker: Docker,
    /// Line of each key that checks after parsing may complain about (`node.key`,
    /// `network[0].subnet`, …).
    lines: BTreeMap<String, usize>,
    /// `node.control_group` as written, until [`Config::resolve_control_group`] resolves it.
    control_group_name: Option<String>,
}

/// `[dns]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// Serve DNS at all (default true).
    pub enable: bool,
    /// Our domain, lower case without the trailing dot (default `weft`).
    pub domain: String,
    /// Extra listen addresses; every network's gateway address (port 53) is always served.
    pub listen: Vec<SocketAddr>,
    /// TTL of our answers in seconds (default 5).
    pub ttl: u32,
    /// Resolvers for names outside the domain (default: the host's `/etc/resolv.conf`).
    pub upstreams: Option<Vec<SocketAddr>>,
}

impl Config {
    /// Every endpoint to dial at start: seeds, then static peers (any member can be a seed).
    pub fn dial_targets(&self) -> Vec<SocketAddr> {
        let mut v = self.seeds.clone();
        v.extend(self.peers.iter().filter(|p| !self.seeds.contains(p)));
        v.retain(|a| *a != self.underlay.advertise);
        v
    }
}

/// `[node]`.
#[derive(Debug, Clone)]
pub struct Node {
    /// Node name; must equal the certificate's.
    pub name: String,
    /// X25519 private key file.
    pub key: PathBuf,
    /// Node certificate file.
    pub cert: PathBuf,
    /// The CA certificate files (each may hold several CAs): the CAs this node trusts.
    pub ca: Vec<PathBuf>,
    /// Leases and other state (default `/var/lib/weft`).
    pub state_dir: PathBuf,
    /// Control socket (default `/run/weft/weft.sock`).
    pub control_socket: PathBuf,
    /// Besides root, the group whose members may use the control socket (default none); its
    /// gid is resolved by [`Config::load`].
    pub control_group: Option<ControlGroup>,
    /// Log filter (default `info`; `RUST_LOG` wins): levels or `target=level` directives,
    /// checked by [`log_level::check`].
    pub log_level: String,
    /// Revocation file (`weft ca revoke`), if any; its entries also spread through membership.
    pub revocations: Option<PathBuf>,
}

/// `[underlay]`.
#[derive(Debug, Clone)]
pub struct Underlay {
    /// UDP listen address (default `0.0.0.0:51820`).
    pub listen: SocketAddr,
    /// Address other nodes reach us at, told to members in our record: never an unspecified
    /// IP or port 0 once [`Config::load`] returned (see [`AdvertiseFrom`] for the default).
    pub advertise: SocketAddr,
    /// Where `advertise` came from.
    pub advertise_from: AdvertiseFrom,
    /// Underlay MTU the overlay MTU is derived from (default 1500).
    pub mtu: u32,
    /// Data-plane worker threads (default: one per CPU, at most 8).
    pub workers: usize,
    /// TAP checksum and TCP segmentation offload (default on): TCP superframes are read from
    /// and written to the TAPs, and segmented/coalesced in userspace.
    pub offload: bool,
    /// After handling packets, a worker keeps polling its descriptors this long before it
    /// sleeps (default 0: sleep at once). Trades CPU for latency: a reply that comes back
    /// within the window finds the worker awake instead of waking an idle CPU.
    pub busy_poll: std::time::Duration,
    /// Nice value of the data-plane worker threads (default [`DEFAULT_WORKER_NICE`]): a worker
    /// with packets to move runs ahead of the bulk senders whose packets it moves, as the
    /// kernel's own network processing (softirq) runs ahead of every task.
    pub worker_nice: i32,
    /// `cipher`: which session ciphers this node offers (default `auto`).
    pub cipher: CipherChoice,
}

/// `[underlay] cipher`: the session ciphers a node offers in its handshakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherChoice {
    /// AES-256-GCM and ChaCha20-Poly1305 where the CPU has hardware AES (a pair then uses
    /// AES-256-GCM when both have it), ChaCha20-Poly1305 alone otherwise.
    Auto,
    /// AES-256-GCM only: peers without it cannot connect.
    Aes256Gcm,
    /// ChaCha20-Poly1305 only.
    ChaCha20Poly1305,
}

impl CipherChoice {
    /// What the handshake offers, given whether this CPU has hardware AES.
    pub fn offer(self, hardware_aes: bool) -> overlay_proto::Ciphers {
        use overlay_proto::Ciphers;
        match self {
            CipherChoice::Auto if hardware_aes => Ciphers::BOTH,
            CipherChoice::Auto | CipherChoice::ChaCha20Poly1305 => Ciphers::CHACHA_ONLY,
            CipherChoice::Aes256Gcm => Ciphers::AES_ONLY,
        }
    }

    /// Its word in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            CipherChoice::Auto => "auto",
            CipherChoice::Aes256Gcm => "aes-256-gcm",
            CipherChoice::ChaCha20Poly1305 => "chacha20poly1305",
        }
    }
}

/// Whether this CPU runs AES-256-GCM in hardware (AES and carry-less multiply instructions),
/// as ring's fast paths need.
pub fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes") && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// `[[network]]`.
#[derive(Debug, Clone)]
pub struct Network {
    /// Name; the bridge is `weft-<name>`.
    pub name: String,
    /// VXLAN network identifier.
    pub vni: Vni,
    /// The flat L2 range shared by every host of the network: one CIDR, or one per IP family
    /// (dual stack: containers get an address of each on one interface).
    pub subnet: crate::family::Subnets,
    /// Overlay MTU set on the bridge, TAP and container interfaces.
    pub mtu: u32,
    /// Encrypted or plain VXLAN.
    pub encryption: Encryption,
    /// Plain VXLAN: UDP port (default 4789).
    pub vxlan_port: u16,
    /// Plain VXLAN: remote VTEPs (`ip` or `ip:port`).
    pub remotes: Vec<SocketAddr>,
    /// Plain VXLAN: send TCP segments with remote checksum offload (RCO): the inner checksum
    /// is left partial, the outer UDP checksum covers the datagram. Every remote must accept
    /// it (weft always does; Linux with `remcsumrx`).
    pub remote_checksum: bool,
    /// `[network.policy]`: the firewall (default: allow everything).
    pub policy: crate::policy::Policy,
}

impl Network {
    /// The bridge's name.
    pub fn bridge(&self) -> String {
        format!("weft-{}", self.name)
    }

    /// The TAP's name.
    pub fn tap(&self) -> String {
        format!("weft-{}-t", self.name)
    }
}

/// Longest network name (the TAP name `weft-<name>-t` must fit 15 bytes).
pub const MAX_NETWORK_NAME: usize = 8;
/// Most CA files `node.ca` may list (each CA counts against the bundle's limit too).
pub const MAX_TRUSTED_CAS: usize = overlay_proto::cert::MAX_TRUSTED_CAS;
/// `[membership] max_members` when not set.
pub const DEFAULT_MAX_MEMBERS: usize = 10_000;
/// Default `[underlay] worker_nice`: see the README's "Worker priority".
pub const DEFAULT_WORKER_NICE: i32 = -10;
/// The largest `[membership] max_members` accepted.
pub const MAX_MAX_MEMBERS: usize = 1_000_000;

impl Config {
    /// Reads and validates a configuration file, and resolves the default of
    /// `underlay.advertise` on this host ([`Config::resolve_advertise`] with [`System`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.display().to_string(),
            line: None,
            key: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        let mut cfg = Self::parse(path, &text)?;
        cfg.resolve_advertise(&System)?;
        cfg.resolve_control_group(&crate::control::access::group_id)?;
        Ok(cfg)
    }

    /// An error about `key`, at the line the file set it on (none for a defaulted key): for
    /// what only the named files or the host reveal, e.g. `node.key` that cannot be read.
    pub fn error(&self, key: &str, message: &str) -> ConfigError {
        ConfigError {
            path: self.path.display().to_string(),
            line: self.lines.get(key).copied(),
            key: key.to_owned(),
            message: message.to_owned(),
        }
    }

    /// Gives `underlay.advertise` its concrete default if parsing left it
    /// [`AdvertiseFrom::Unresolved`] (listen's IP unspecified): the source address of the
    /// route to the first seed (or `[[peer]]`), else the host's only global address; else an
    /// error naming `underlay.advertise` that says to set it.
    pub fn resolve_advertise(&mut self, host: &dyn HostAddrs) -> Result<(), ConfigError> {
        if self.underlay.advertise_from != AdvertiseFrom::Unresolved {
            return Ok(());
        }
        let seeds: Vec<SocketAddr> = self.seeds.iter().chain(&self.peers).copied().collect();
        let overlay: Vec<IpNet> = self.networks.iter().flat_map(|n| n.subnet.iter()).collect();
        let (addr, from) = advertise::resolve(self.underlay.listen, &seeds, &overlay, host).map_err(|m| {
            let mut e = self.error("underlay.advertise", &m);
            e.line = self.lines.get("underlay.listen").copied();
            e
        })?;
        self.underlay.advertise = addr;
        self.underlay.advertise_from = from;
        Ok(())
    }

    /// Validates configuration text as if read from `path` (relative file names resolve
    /// against the file's directory). Reads nothing else: an unspecified listen address leaves
    /// `underlay.advertise` to [`Config::resolve_advertise`].
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let ctx = Ctx { path, text };
        let f: file::File = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| ctx.line_of(s.start));
            let key = e.span().and_then(|s| locate::key_of_error(text, s, e.message()));
            ConfigError {
                path: path.display().to_string(),
                line,
                key: key.unwrap_or_else(|| "(syntax)".into()),
                message: e.message().to_owned(),
            }
        })?;
        let mut lines = BTreeMap::new();
        let mut at = |key: &str, span: std::ops::Range<usize>| {
            lines.insert(key.to_owned(), ctx.line_of(span.start));
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Spanned<PathBuf>| dir.join(p.get_ref());
        let n = &f.node;
        let name = n.name.get_ref().clone();
        if name.is_empty() || name.len() > 63 {
            return Err(ctx.err(&n.name, "node.name", "must be 1..=63 characters"));
        }
        at("node.name", n.name.span());
        at("node.key", n.key.span());
        at("node.cert", n.cert.span());
        at("node.ca", n.ca.span());
        for (key, value) in [
            ("node.state_dir", &n.state_dir),
            ("node.control_socket", &n.control_socket),
            ("node.revocations", &n.revocations),
        ] {
            if let Some(v) = value {
                at(key, v.span());
            }
        }
        let control_group_name = ctx.control_group_name(&n.control_group)?;
        if let Some(g) = &n.control_group {
            at("node.control_group", g.span());
        }
        if let Some(t) = &f.metrics.api_token_file {
            at("metrics.api_token_file", t.span());
        }
        let http = ctx.http_access(&f.metrics, resolve)?;
        let log_level = match &n.log_level {
            Some(l) => {
                log_level::check(l.get_ref()).map_err(|m| ctx.err(l, "node.log_level", &m))?;
                l.get_ref().trim().to_owned()
            }
            None => "info".into(),
        };
        let node = Node {
            name,
            key: resolve(&n.key),
            cert: resolve(&n.cert),
            ca: match n.ca.get_ref() {
                file::OneOrMany::One(p) => vec![dir.join(p)],
                file::OneOrMany::Many(v) if v.is_empty() || v.len() > MAX_TRUSTED_CAS => {
                    return Err(ctx.err(
                        &n.ca,
                        "node.ca",
                        &format!("expected a CA file or a list of 1 to {MAX_TRUSTED_CAS} files"),
                    ))
                }
                file::OneOrMany::Many(v) => v.iter().map(|p| dir.join(p)).collect(),
            },
            state_dir: n.state_dir.as_ref().map(resolve).unwrap_or_else(|| "/var/lib/weft".into()),
            control_socket: n
                .control_socket
                .as_ref()
                .map(resolve)
                .unwrap_or_else(|| "/run/weft/weft.sock".into()),
            control_group: None,
            log_level,
            revocations: n.revocations.as_ref().map(resolve),
        };
        let underlay = ctx.underlay(&f.underlay, &mut at)?;
        let mut networks = Vec::new();
        let (mut names, mut vnis) = (BTreeSet::new(), BTreeSet::new());
        for (i, net) in f.networks.iter().enumerate() {
            let network = ctx.network(i, net, &underlay)?;
            if !names.insert(network.name.clone()) {
                return Err(ctx.err(&net.name, &format!("network[{i}].name"), "duplicate network name"));
            }
            if !vnis.insert(network.vni) {
                return Err(ctx.err(&net.vni, &format!("network[{i}].vni"), "duplicate VNI"));
            }
            let overlap = |o: &Network| {
                network.subnet.iter().find(|mine| {
                    o.subnet
                        .iter()
                        .any(|theirs| theirs.contains(&mine.network()) || mine.contains(&theirs.network()))
                })
            };
            if let Some((o, mine)) = networks.iter().find_map(|o: &Network| Some((o, overlap(o)?))) {
                return Err(ctx.err(
                    &net.subnet,
                    &format!("network[{i}].subnet"),
                    &format!("{mine} overlaps network {:?}", o.name),
                ));
            }
            at(&format!("network[{i}].subnet"), net.subnet.span());
            networks.push(network);
        }
        if networks.is_empty() {
            return Err(ConfigError {
                path: path.display().to_string(),
                line: None,
                key: "network".into(),
                message: "at least one [[network]] is required".into(),
            });
        }
        let mut peers = Vec::new();
        for (i, p) in f.peers.iter().enumerate() {
            let e = &p.get_ref().endpoint;
            let key = format!("peer[{i}].endpoint");
            peers.push(ctx.endpoint(e, &key, "10.200.0.2:51820")?);
        }
        let mut seeds = Vec::new();
        for (i, e) in f.membership.seeds.iter().enumerate() {
            seeds.push(ctx.endpoint(e, &format!("membership.seeds[{i}]"), "10.200.0.1:51820")?);
        }
        let max_members = match &f.membership.max_members {
            None => DEFAULT_MAX_MEMBERS,
            Some(m) => usize::try_from(*m.get_ref())
                .ok()
                .filter(|n| (2..=MAX_MAX_MEMBERS).contains(n))
                .ok_or_else(|| {
                    ctx.err(
                        m,
                        "membership.max_members",
                        &format!("expected a number of members from 2 to {MAX_MAX_MEMBERS}"),
                    )
                })?,
        };
        let metrics = match &f.metrics.listen {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9571))),
            Some(l) if l.get_ref() == "off" => None,
            Some(l) => Some(l.get_ref().parse().map_err(|_| {
                ctx.err(l, "metrics.listen", "expected IP:PORT (e.g. 127.0.0.1:9571) or \"off\"")
            })?),
        };
        let mut services = Vec::new();
        let mut ids = BTreeSet::new();
        for (i, sf) in f.services.iter().enumerate() {
            let s = ctx.service(i, sf, &networks)?;
            if !ids.insert(s.id()) {
                return Err(ctx.err(
                    &sf.name,
                    &format!("service[{i}]"),
                    &format!("duplicate instance {}", s.id()),
                ));
            }
            services.push(s);
        }
        if services.len() > catalog::MAX_SERVICES {
            return Err(ctx.err(
                &f.services[catalog::MAX_SERVICES].name,
                "service",
                &format!("at most {} services per node", catalog::MAX_SERVICES),
            ));
        }
        let dns = ctx.dns(&f.dns)?;
        let relay = ctx.relay(&f.relay)?;
        let docker = ctx.docker(&f.docker)?;
        Ok(Self {
            path: path.to_owned(),
            node,
            underlay,
            networks,
            peers,
            seeds,
            max_members,
            metrics,
            http,
            services,
            dns,
            relay,
            docker,
            lines,
            control_group_name,
        })
    }
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text.as_bytes()[..offset.min(self.text.len())].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn err<T>(&self, at: &Spanned<T>, key: &str, message: &str) -> ConfigError {
        ConfigError {
            path: self.path.display().to_string(),
            line: Some(self.line_of(at.span().start)),
            key: key.into(),
            message: message.into(),
        }
    }

    /// An optional number that must lie in `range`: its value, `default` when it is absent,
    /// and out of range an error at its line saying "must be LO..=HI" followed by `note`.
    fn bounded<T>(
        &self,
        value: &Option<Spanned<T>>,
        key: &str,
        range: std::ops::RangeInclusive<T>,
        note: &str,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T: Copy + PartialOrd + std::fmt::Display,
    {
        match value {
            None => Ok(default),
            Some(v) if range.contains(v.get_ref()) => Ok(*v.get_ref()),
            Some(v) => Err(self.err(v, key, &format!("must be {}..={}{note}", range.start(), range.end()))),
        }
    }

    /// `network.subnet`: one CIDR, or a list of at most one IPv4 and one IPv6 CIDR.
    fn subnets(&self, n: &file::NetworkFile, key: &str) -> Result<crate::family::Subnets, ConfigError> {
        let texts: Vec<&String> = match n.subnet.get_ref() {
            file::SubnetFile::One(s) => vec![s],
            file::SubnetFile::List(l) => l.iter().collect(),
        };
        let err = |m: &str| self.err(&n.subnet, key, m);
        if texts.is_empty() {
            return Err(err("give a CIDR, or a list of one IPv4 and one IPv6 CIDR"));
        }
        let mut nets = Vec::new();
        for t in texts {
            let net: IpNet = t.parse().map_err(|_| {
                err(&format!(
                    "{t:?}: expected a CIDR, e.g. 10.42.0.0/16 or [\"10.42.0.0/16\", \"fd42::/48\"]"
                ))
            })?;
            if net.trunc() != net {
                return Err(err(&format!("{t}: host bits set; use the network address {}", net.trunc())));
            }
            nets.push(net);
        }
        crate::family::Subnets::collect(nets).map_err(|dup| {
            let family = if matches!(dup, IpNet::V6(_)) { "IPv6" } else { "IPv4" };
            err(&format!("two {family} subnets; a network has at most one IPv4 and one IPv6 subnet"))
        })
    }

    fn network(&self, i: usize, n: &file::NetworkFile, u: &Underlay) -> Result<Network, ConfigError> {
        let key = |k: &str| format!("network[{i}].{k}");
        let name = n.name.get_ref().clone();
        let name_ok = !name.is_empty()
            && name.len() <= MAX_NETWORK_NAME
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            return Err(self.err(
                &n.name,
                &key("name"),
                &format!("must be 1..={MAX_NETWORK_NAME} characters of a-z 0-9 -"),
            ));
        }
        let vni = Vni::new(*n.vni.get_ref())
            .filter(|v| v.get() > 0)
            .ok_or_else(|| self.err(&n.vni, &key("vni"), "must be 1..=16777215"))?;
        let subnet = self.subnets(n, &key("subnet"))?;
        let encryption = match n.encryption.as_ref().map(|e| e.get_ref().as_str()) {
            None | Some("chacha20poly1305") => Encryption::ChaCha20Poly1305,
            Some("none") => Encryption::None,
            Some(_) => {
                let e = n.encryption.as_ref().expect("matched Some");
                return Err(self.err(e, &key("encryption"), "must be \"chacha20poly1305\" or \"none\""));
            }
        };
        let ipv6 = u.listen.is_ipv6();
        let derived = match encryption {
            Encryption::ChaCha20Poly1305 => overlay_mtu(u.mtu as usize, ipv6),
            Encryption::None => vxlan_overlay_mtu(u.mtu as usize, ipv6),
        } as u32;
        let mtu = match &n.mtu {
            Some(m) if *m.get_ref() < 576 || *m.get_ref() > derived => {
                return Err(self.err(
                    m,
                    &key("mtu"),
                    &format!("must be 576..={derived} (underlay MTU {} minus encapsulation)", u.mtu),
                ))
            }
            Some(m) => *m.get_ref(),
            None => derived,
        };
        let vxlan_port = match &n.vxlan_port {
            Some(p) if *p.get_ref() == 0 => return Err(self.err(p, &key("vxlan_port"), "must be 1..=65535")),
            Some(p) => *p.get_ref(),
            None => VXLAN_PORT,
        };
        let mut remotes = Vec::new();
        for (j, r) in n.remotes.iter().enumerate() {
            if encryption != Encryption::None {
                return Err(self.err(
                    r,
                    &key("remotes"),
                    "only plain VXLAN networks (encryption = \"none\") take remotes; encrypted \
                     networks find their peers through [membership] seeds",
                ));
            }
            let s = r.get_ref();
            let addr = s
                .parse::<SocketAddr>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, vxlan_port)))
                .map_err(|_| self.err(r, &format!("{}[{j}]", key("remotes")), "expected IP or IP:PORT"))?;
            remotes.push(addr);
        }
        // Plain VXLAN has no membership: its remotes are the only VTEPs it sends to and accepts
        // frames from, so without them every frame would be dropped.
        if encryption == Encryption::None && remotes.is_empty() {
            let e = n.encryption.as_ref().expect("encryption none was written");
            return Err(self.err(
                e,
                &key("remotes"),
                "encryption = \"none\" needs remotes: plain VXLAN learns no peers from membership; \
                 list the other VTEPs, e.g. remotes = [\"192.0.2.2\", \"192.0.2.3:4789\"]",
            ));
        }
        let remote_checksum = match &n.remote_checksum {
            Some(r) if *r.get_ref() && encryption != Encryption::None => {
                return Err(self.err(
                    r,
                    &key("remote_checksum"),
                    "only plain VXLAN networks (encryption = \"none\") use remote checksum offload; \
                     encrypted sessions leave checksums partial on their own when both ends can",
                ))
            }
            Some(r) => *r.get_ref(),
            None => false,
        };
        let policy = match &n.policy {
            None => crate::policy::Policy::default(),
            Some(p) => crate::policy::validate(p).map_err(|e| ConfigError {
                path: self.path.display().to_string(),
                line: e.span.map(|s| self.line_of(s.start)),
                key: format!("network[{i}].policy.{}", e.key).trim_end_matches('.').to_owned(),
                message: e.message,
            })?,
        };
        Ok(Network { name, vni, subnet, mtu, encryption, vxlan_port, remotes, remote_checksum, policy })
    }
}

#[cfg(test)]
mod tests;
