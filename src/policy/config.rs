//! `[network.policy]`: the TOML types as people write them ([`PolicyFile`], from `file.rs`) and
//! the validated [`Policy`] that [`validate`] turns them into. Every value that needs checking keeps its
//! `toml::Spanned` so a [`PolicyError`] can point at the offending bytes; keys in errors are
//! relative to the policy table (`rule[2].port`), the daemon prefixes `network[i].policy.`.
//!
//! Invariants of a [`Policy`]: at most [`MAX_RULES`] rules, at most [`MAX_SELECTORS`] distinct
//! non-`any` selectors, ports only on TCP/UDP rules, CIDRs without host bits, unique rule names,
//! `64 <= conntrack_max <= 4194304` and `1 <= conntrack_per_peer <= conntrack_max`.

pub use super::file::{CidrFile, PolicyFile, PortFile, RuleFile, SelectorFile, SelectorTable};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use toml::Spanned;

/// Most rules one network's policy may hold.
pub const MAX_RULES: usize = 1024;
/// Most distinct (non-`any`) selectors one policy may use; each becomes one bit of a mask.
pub const MAX_SELECTORS: usize = 256;
/// Longest label key or value, in bytes (as for Kubernetes label names).
pub const MAX_LABEL_LEN: usize = 63;
/// Smallest allowed `conntrack_max`.
pub const CONNTRACK_MAX_MIN: usize = 64;
/// Largest allowed `conntrack_max`.
pub const CONNTRACK_MAX_MAX: usize = 4_194_304;
/// `conntrack_max` when not given.
pub const DEFAULT_CONNTRACK_MAX: usize = 65_536;

/// A policy error, located in the file by `span`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct PolicyError {
    /// Byte range of the offending value in the TOML text, when known.
    pub span: Option<Range<usize>>,
    /// The key at fault, relative to the policy table (`rule[2].port`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Which way a frame travels relative to this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From a remote node to a local container.
    In = 0,
    /// From a local container to a remote node.
    Out = 1,
}

/// What happens to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Pass it.
    Allow,
    /// Drop it.
    Deny,
}

/// The protocol a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// Every IP protocol.
    Any,
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP (1) for IPv4, ICMPv6 (58) for IPv6.
    Icmp,
}

/// An inclusive destination port range, `lo <= hi`, both non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port.
    pub hi: u16,
}

/// Who a rule's `from`/`to` applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selector {
    /// Everyone.
    Any,
    /// Those satisfying every given condition.
    Match(Match),
}

/// The conditions of a selector, normalised (sorted, deduplicated) so equal selectors compare
/// equal. At least one condition is present.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Match {
    /// Certificate groups that must all be present.
    pub groups: Vec<String>,
    /// Labels that must all be equal.
    pub labels: BTreeMap<String, String>,
    /// Networks the address must be inside one of (empty: no address condition).
    pub cidrs: Vec<IpNet>,
    /// Node name that must be equal.
    pub node: Option<String>,
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Name for counters and `explain`.
    pub name: String,
    /// Which frames it looks at.
    pub direction: Direction,
    /// What it does to frames it matches.
    pub action: Verdict,
    /// Protocol.
    pub proto: Proto,
    /// Destination ports; `None` means any (and any protocol).
    pub ports: Option<PortRange>,
    /// The remote side for `in`, the local container for `out`.
    pub from: Selector,
    /// The local container for `in`, the remote side for `out`.
    pub to: Selector,
}

/// A validated `[network.policy]` (see the module invariants). Serialises for status output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub(super) inbound: Verdict,
    pub(super) outbound: Verdict,
    pub(super) conntrack_max: usize,
    pub(super) conntrack_per_peer: usize,
    pub(super) rules: Vec<Rule>,
}

impl Default for Policy {
    /// Allow everything, no rules, default conntrack sizes.
    fn default() -> Self {
        Self {
            inbound: Verdict::Allow,
            outbound: Verdict::Allow,
            conntrack_max: DEFAULT_CONNTRACK_MAX,
            conntrack_per_peer: DEFAULT_CONNTRACK_MAX / 4,
            rules: Vec::new(),
        }
    }
}

impl Policy {
    /// The default verdict for a direction.
    pub fn default_verdict(&self, dir: Direction) -> Verdict {
        match dir {
            Direction::In => self.inbound,
            Direction::Out => self.outbound,
        }
    }

    /// Tracked flows at most.
    pub fn conntrack_max(&self) -> usize {
        self.conntrack_max
    }

    /// Tracked flows per remote node at most.
    pub fn conntrack_per_peer(&self) -> usize {
        self.conntrack_per_peer
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

/// Checks a `[network.policy]` table and returns the typed [`Policy`].
pub fn validate(file: &PolicyFile) -> Result<Policy, PolicyError> {
    let inbound = verdict(file.inbound.as_ref(), "inbound")?.unwrap_or(Verdict::Allow);
    let outbound = verdict(file.outbound.as_ref(), "outbound")?.unwrap_or(Verdict::Allow);
    let conntrack_max = match &file.conntrack_max {
        Some(m) => bounded(m, "conntrack_max", CONNTRACK_MAX_MIN, CONNTRACK_MAX_MAX)?,
        None => DEFAULT_CONNTRACK_MAX,
    };
    let conntrack_per_peer = match &file.conntrack_per_peer {
        Some(p) => bounded(p, "conntrack_per_peer", 1, conntrack_max)?,
        None => conntrack_max / 4,
    };
    if let Some(extra) = file.rules.get(MAX_RULES) {
        return Err(err(extra, &format!("rule[{MAX_RULES}]"), &format!("at most {MAX_RULES} rules")));
    }
    let mut rules = Vec::with_capacity(file.rules.len());
    let mut selectors = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (i, r) in file.rules.iter().enumerate() {
        let rule = rule(i, r.get_ref())?;
        for (part, sel) in [("from", &rule.from), ("to", &rule.to)] {
            if let Selector::Match(m) = sel {
                if selectors.insert(m.clone()) && selectors.len() > MAX_SELECTORS {
                    let at = if part == "from" { &r.get_ref().from } else { &r.get_ref().to };
                    return Err(PolicyError {
                        span: at.as_ref().map(Spanned::span),
                        key: format!("rule[{i}].{part}"),
                        message: format!("more than {MAX_SELECTORS} distinct selectors in this policy"),
                    });
                }
            }
        }
        if !names.insert(rule.name.clone()) {
            let key = format!("rule[{i}].name");
            let message = format!("duplicate rule name {:?}", rule.name);
            return Err(match &r.get_ref().name {
                Some(n) => err(n, &key, &message),
                None => err(r, &key, &message),
            });
        }
        rules.push(rule);
    }
    Ok(Policy { inbound, outbound, conntrack_max, conntrack_per_peer, rules })
}

impl Proto {
    /// Whether a rule of this protocol may name ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp)
    }
}

impl Direction {
    /// The word rules, JSON and metrics labels use: `in` or `out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

impl Verdict {
    /// The word rules, JSON and metrics labels use: `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

impl fmt::Display for Rule {
    /// One line, e.g. `in allow tcp port 5432 from {labels={app=web}} to any`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (dir, action) = (self.direction.as_str(), self.action.as_str());
        let proto = match self.proto {
            Proto::Any => "any",
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        };
        write!(f, "{dir} {action} {proto}")?;
        match self.ports {
            Some(PortRange { lo, hi }) if lo == hi => write!(f, " port {lo}")?,
            Some(PortRange { lo, hi }) => write!(f, " port {lo}-{hi}")?,
            None => {}
        }
        write!(f, " from {} to {}", self.from, self.to)
    }
}

impl fmt::Display for Selector {
    /// `any` or `{groups=[a,b] labels={k=v} cidr=[10.0.0.0/8] node=h1}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = match self {
            Selector::Any => return f.write_str("any"),
            Selector::Match(m) => m,
        };
        let mut parts = Vec::new();
        if !m.groups.is_empty() {
            parts.push(format!("groups=[{}]", m.groups.join(",")));
        }
        if !m.labels.is_empty() {
            let kv: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            parts.push(format!("labels={{{}}}", kv.join(",")));
        }
        if !m.cidrs.is_empty() {
            let c: Vec<String> = m.cidrs.iter().map(IpNet::to_string).collect();
            parts.push(format!("cidr=[{}]", c.join(",")));
        }
        if let Some(n) = &m.node {
            parts.push(format!("node={n}"));
        }
        write!(f, "{{{}}}", parts.join(" "))
    }
}

fn err<T>(at: &Spanned<T>, key: &str, message: &str) -> PolicyError {
    PolicyError { span: Some(at.span()), key: key.into(), message: message.into() }
}

fn verdict(v: Option<&Spanned<String>>, key: &str) -> Result<Option<Verdict>, PolicyError> {
    let Some(v) = v else { return Ok(None) };
    match v.get_ref().as_str() {
        "allow" => Ok(Some(Verdict::Allow)),
        "deny" => Ok(Some(Verdict::Deny)),
        other => Err(err(v, key, &format!("unknown action {other:?}; expected \"allow\" or \"deny\""))),
    }
}

fn bounded(v: &Spanned<i64>, key: &str, lo: usize, hi: usize) -> Result<usize, PolicyError> {
    usize::try_from(*v.get_ref())
        .ok()
        .filter(|n| (lo..=hi).contains(n))
        .ok_or_else(|| err(v, key, &format!("must be {lo}..={hi}")))
}

fn rule(i: usize, r: &RuleFile) -> Result<Rule, PolicyError> {
    let key = |k: &str| format!("rule[{i}].{k}");
    let direction = match r.direction.get_ref().as_str() {
        "in" => Direction::In,
        "out" => Direction::Out,
        other => {
            let msg = format!("unknown direction {other:?}; expected \"in\" or \"out\"");
            return Err(err(&r.direction, &key("direction"), &msg));
        }
    };
    let action = verdict(Some(&r.action), &key("action"))?.unwrap_or(Verdict::Allow);
    let proto = match r.proto.as_ref().map(|p| (p, p.get_ref().as_str())) {
        None | Some((_, "any")) => Proto::Any,
        Some((_, "tcp")) => Proto::Tcp,
        Some((_, "udp")) => Proto::Udp,
        Some((_, "icmp")) => Proto::Icmp,
        Some((p, other)) => {
            let msg = format!("unknown proto {other:?}; expected \"tcp\", \"udp\", \"icmp\" or \"any\"");
            return Err(err(p, &key("proto"), &msg));
        }
    };
    let ports = match &r.port {
        None => None,
        Some(p) if !proto.has_ports() => {
            return Err(err(p, &key("port"), "a port needs proto = \"tcp\" or \"udp\""));
        }
        Some(p) => Some(port_range(p.get_ref()).map_err(|m| err(p, &key("port"), &m))?),
    };
    let from = selector(r.from.as_ref(), &key("from"))?;
    let to = selector(r.to.as_ref(), &key("to"))?;
    let name = match &r.name {
        Some(n) if n.get_ref().is_empty() => return Err(err(n, &key("name"), "must not be empty")),
        Some(n) => n.get_ref().clone(),
        None => format!("rule[{i}]"),
    };
    Ok(Rule { name, direction, action, proto, ports, from, to })
}

fn port_range(p: &PortFile) -> Result<PortRange, String> {
    const BAD: &str = "expected a port 1..=65535 or a range \"lo-hi\"";
    let one = |n: i64| u16::try_from(n).ok().filter(|&n| n != 0).ok_or_else(|| BAD.to_string());
    let num = |s: &str| s.trim().parse::<i64>().map_err(|_| BAD.to_string()).and_then(one);
    let (lo, hi) = match p {
        PortFile::Number(n) => (one(*n)?, one(*n)?),
        PortFile::Text(s) => match s.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(s)?, num(s)?),
        },
    };
    if lo > hi {
        return Err(format!("empty range: {lo} > {hi}"));
    }
    Ok(PortRange { lo, hi })
}

fn selector(s: Option<&Spanned<SelectorFile>>, key: &str) -> Result<Selector, PolicyError> {
    let Some(s) = s else { return Ok(Selector::Any) };
    let t = match s.get_ref() {
        SelectorFile::Keyword(k) if k == "any" => return Ok(Selector::Any),
        SelectorFile::Keyword(k) => {
            let msg =
                format!("unknown selector {k:?}; expected \"any\" or a table of groups, labels, cidr, node");
            return Err(err(s, key, &msg));
        }
        SelectorFile::Table(t) => t,
    };
    if t.groups.is_none() && t.labels.is_none() && t.cidr.is_none() && t.node.is_none() {
        return Err(err(s, key, "empty selector; use \"any\" to match everyone"));
    }
    let mut m = Match { groups: Vec::new(), labels: BTreeMap::new(), cidrs: Vec::new(), node: None };
    if let Some(g) = &t.groups {
        if g.get_ref().is_empty() || g.get_ref().iter().any(String::is_empty) {
            return Err(err(g, &format!("{key}.groups"), "list non-empty group names, or use \"any\""));
        }
        m.groups = g.get_ref().clone();
        m.groups.sort();
        m.groups.dedup();
    }
    if let Some(l) = &t.labels {
        if l.get_ref().is_empty() {
            return Err(err(l, &format!("{key}.labels"), "empty labels; use \"any\" to match everyone"));
        }
        for (k, v) in l.get_ref() {
            if k.is_empty() || k.len() > MAX_LABEL_LEN || v.len() > MAX_LABEL_LEN {
                let msg =
                    format!("label keys must be 1..={MAX_LABEL_LEN} bytes, values at most {MAX_LABEL_LEN}");
                return Err(err(l, &format!("{key}.labels.{k}"), &msg));
            }
        }
        m.labels = l.get_ref().clone();
    }
    if let Some(c) = &t.cidr {
        if c.get_ref().0.is_empty() {
            return Err(err(
                c,
                &format!("{key}.cidr"),
                "empty list matches nothing; list networks or use \"any\"",
            ));
        }
        for (j, text) in c.get_ref().0.iter().enumerate() {
            let k = if c.get_ref().0.len() == 1 { format!("{key}.cidr") } else { format!("{key}.cidr[{j}]") };
            m.cidrs.push(cidr(text).map_err(|msg| err(c, &k, &msg))?);
        }
        m.cidrs.sort();
        m.cidrs.dedup();
    }
    if let Some(n) = &t.node {
        if n.get_ref().is_empty() {
            return Err(err(n, &format!("{key}.node"), "must not be empty"));
        }
        m.node = Some(n.get_ref().clone());
    }
    Ok(Selector::Match(m))
}

fn cidr(text: &str) -> Result<IpNet, String> {
    let net = match text.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => return Err(format!("{text:?} is not a CIDR, e.g. 10.42.0.0/16")),
        },
    };
    if net.trunc() != net {
        return Err(format!("{text:?} has host bits set; use {}", net.trunc()));
    }
    Ok(net)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
