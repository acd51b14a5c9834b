//! The services this node owns: definitions (from the node TOML, the control API, or labels at
//! attach time), their health, and what our membership record announces of them. Other nodes'
//! instances arrive in their records; [`Announced`] is the wire form both sides agree on.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use super::directory::Protocol;

/// Most service instances one node may own (and announce).
pub const MAX_SERVICES: usize = 256;
/// Most tags per instance.
pub const MAX_TAGS: usize = 16;
/// Longest tag.
pub const MAX_TAG_LEN: usize = 63;

/// Where an instance lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A fixed address (the host itself, or something behind it).
    Address(IpAddr),
    /// A container attached to this node, by name; announced while it is attached.
    Container(String),
}

/// What a health check probes; the address comes from the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CheckTemplate {
    /// TCP connect to the instance's address and port.
    Tcp,
    /// HTTP GET `http://ADDRESS:PORT{path}` answers 2xx.
    Http {
        /// Request path, starting with `/`.
        path: String,
    },
    /// The command (argv, no shell) exits 0.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
    },
}

/// A health check of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What to probe.
    #[serde(flatten)]
    pub template: CheckTemplate,
    /// Time between probes.
    #[serde(with = "millis")]
    pub interval: Duration,
    /// Longest a probe may take.
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// Consecutive passes to become passing.
    pub rise: u32,
    /// Consecutive failures to become critical.
    pub fall: u32,
}

/// Default probe interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Default probe timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// A service instance as defined on its owning node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Service name (a DNS label).
    pub name: String,
    /// Network name.
    pub network: String,
    /// Where it runs.
    pub target: Target,
    /// Port.
    pub port: u16,
    /// Transport.
    pub protocol: Protocol,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Health check; none means always passing.
    #[serde(default)]
    pub check: Option<Check>,
}

impl ServiceSpec {
    /// The instance's id on its node: `name/target:port/protocol`.
    pub fn id(&self) -> String {
        let target = match &self.target {
            Target::Address(ip) => ip.to_string(),
            Target::Container(c) => c.clone(),
        };
        let proto = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        format!("{}/{}:{}/{}", self.name, target, self.port, proto)
    }

    /// Checks every field's bounds; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        check_dns_label(&self.name).map_err(|e| format!("name: {e}"))?;
        if self.port == 0 {
            return Err("port: must be 1..=65535".into());
        }
        if let Target::Container(c) = &self.target {
            if c.is_empty() || c.len() > 63 {
                return Err("container: must be 1..=63 characters".into());
            }
        }
        if self.tags.len() > MAX_TAGS {
            return Err(format!("tags: at most {MAX_TAGS}"));
        }
        if let Some(t) = self.tags.iter().find(|t| t.is_empty() || t.len() > MAX_TAG_LEN) {
            return Err(format!("tags: {t:?} must be 1..={MAX_TAG_LEN} bytes"));
        }
        if let Some(c) = &self.check {
            c.validate().map_err(|e| format!("check: {e}"))?;
        }
        Ok(())
    }
}

impl Check {
    /// Bounds: interval 100 ms..=1 h, timeout 50 ms..=interval, rise/fall 1..=100, a path
    /// starting with `/`, a non-empty argv.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval < Duration::from_millis(100) || self.interval > Duration::from_secs(3600) {
            return Err("interval must be 100ms..=1h".into());
        }
        if self.timeout < Duration::from_millis(50) || self.timeout > self.interval {
            return Err("timeout must be 50ms..=interval".into());
        }
        if !(1..=100).contains(&self.rise) || !(1..=100).contains(&self.fall) {
            return Err("rise and fall must be 1..=100".into());
        }
        match &self.template {
            CheckTemplate::Tcp => Ok(()),
            CheckTemplate::Http { path }
                if path.starts_with('/') && path.len() <= 1024 && !path.contains(char::is_whitespace) =>
            {
                Ok(())
            }
            CheckTemplate::Http { .. } => Err("path must start with / and hold no spaces".into()),
            CheckTemplate::Command { argv } if !argv.is_empty() && argv.len() <= 64 => Ok(()),
            CheckTemplate::Command { .. } => Err("command must be a non-empty list (program, args…)".into()),
        }
    }
}

/// A DNS label: 1..=63 of `a-z 0-9 -`, not starting or ending with `-`.
pub fn check_dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} must be 1..=63 characters of a-z 0-9 - (a DNS label)"))
    }
}

pub use super::health::parse_duration;

/// An instance as it travels in its owner's membership record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announced {
    /// Service name.
    pub name: String,
    /// Network.
    pub vni: u32,
    /// Address.
    pub ip: IpAddr,
    /// Port.
    pub port: u16,
    /// Transport.
    pub protocol: Protocol,
    /// Tags.
    pub tags: Vec<String>,
    /// Passing its check (or has none).
    pub healthy: bool,
    /// The container it runs in, if any.
    pub container: Option<String>,
}

/// Whether other nodes believe a member's instance at `ip`: inside the subnets its
/// certificate lets it source, or at its underlay address — for a member, the address its
/// authenticated traffic comes from (`None` before any session), never the one its record
/// declares. The one rule for the engine (what it accepts from members) and the registry
/// (what it refuses to register).
pub fn believable(subnets: &[ipnet::IpNet], underlay: Option<IpAddr>, ip: IpAddr) -> bool {
    underlay == Some(ip) || subnets.iter().any(|n| n.contains(&ip))
}

/// Encodes our announced instances for the record's `services` bytes.
pub fn encode(list: &[Announced]) -> Vec<u8> {
    postcard::to_allocvec(list).unwrap_or_default()
}

/// Decodes a member's `services` bytes; anything undecodable or beyond the bounds is refused.
pub fn decode(bytes: &[u8]) -> Result<Vec<Announced>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<Announced> = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
    if list.len() > MAX_SERVICES {
        return Err(format!("{} services (most {MAX_SERVICES})", list.len()));
    }
    for a in &list {
        check_dns_label(&a.name)?;
        if a.tags.len() > MAX_TAGS || a.tags.iter().any(|t| t.len() > MAX_TAG_LEN) {
            return Err("tags out of bounds".into());
        }
        if a.container.as_ref().is_some_and(|c| c.len() > 63) {
            return Err("container name too long".into());
        }
    }
    Ok(list)
}

/// Health of a local instance, as the catalog keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceState {
    /// Definition.
    pub spec: ServiceSpec,
    /// Where the definition came from.
    pub source: super::registry::Source,
    /// The resolved address (none while its container is not attached).
    pub ip: Option<IpAddr>,
    /// Passing.
    pub healthy: bool,
    /// The last check's failure reason.
    pub output: Option<String>,
}

/// Our instances by id.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Instances.
    pub instances: BTreeMap<String, InstanceState>,
}

impl Catalog {
    /// The announced form of every resolved instance, given each network's VNI.
    pub fn announced(&self, vni_of: impl Fn(&str) -> Option<u32>) -> Vec<Announced> {
        self.instances
            .values()
            .filter_map(|s| {
                Some(Announced {
                    name: s.spec.name.clone(),
                    vni: vni_of(&s.spec.network)?,
                    ip: s.ip?,
                    port: s.spec.port,
                    protocol: s.spec.protocol,
                    tags: s.spec.tags.clone(),
                    healthy: s.healthy,
                    container: match &s.spec.target {
                        Target::Container(c) => Some(c.clone()),
                        Target::Address(_) => None,
                    },
                })
            })
            .collect()
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            network: "default".into(),
            target: Target::Container("web1".into()),
            port: 80,
            protocol: Protocol::Tcp,
            tags: vec!["v1".into()],
            check: Some(Check {
                template: CheckTemplate::Http { path: "/health".into() },
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
                rise: 1,
                fall: 2,
            }),
        }
    }

    #[test]
    fn spec_bounds() {
        assert!(spec().validate().is_ok());
        assert_eq!(spec().id(), "web/web1:80/tcp");
        let mut s = spec();
        s.name = "Web_1".into();
        assert!(s.validate().unwrap_err().starts_with("name:"));
        let mut s = spec();
        s.port = 0;
        assert!(s.validate().is_err());
        let mut s = spec();
        s.check.as_mut().unwrap().timeout = Duration::from_secs(3);
        assert!(s.validate().unwrap_err().contains("timeout"));
        let mut s = spec();
        s.check.as_mut().unwrap().template = CheckTemplate::Command { argv: vec![] };
        assert!(s.validate().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn announced_round_trip_and_hostile_bytes() {
        let mut c = Catalog::default();
        c.instances.insert(
            "x".into(),
            InstanceState {
                spec: spec(),
                source: super::super::registry::Source::Config,
                ip: Some("10.42.1.5".parse().unwrap()),
                healthy: true,
                output: None,
            },
        );
        let a = c.announced(|_| Some(42));
        assert_eq!(decode(&encode(&a)).unwrap(), a);
        assert!(decode(&[0xff; 40]).is_err());
        let mut bad = a[0].clone();
        bad.name = "NOT A LABEL".into();
        assert!(decode(&encode(&[bad])).is_err());
        // An unresolved container instance is not announced.
        c.instances.get_mut("x").unwrap().ip = None;
        assert!(c.announced(|_| Some(42)).is_empty());
    }
}
