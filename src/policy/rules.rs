//! A [`Policy`] compiled for the data path: [`Compiled`].
//!
//! Every distinct selector gets one bit. The daemon computes a [`Mask`] per known container and
//! peer when its tables change ([`Compiled::mask`]), so [`Compiled::decide`] is a scan over a
//! short list of `Copy` rules doing bit tests and integer compares: no allocation, no lock, no
//! string comparison. Per direction the list holds the deny rules first, then the allow rules,
//! each in file order, so the first match is the answer ("deny wins, then first allow, then the
//! default"). Reload builds a whole new `Compiled` (hit counters start at zero).

use super::config::{Direction, Match, Policy, Proto, Rule, Selector, Verdict, MAX_SELECTORS};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = crate::packet::ip_proto::TCP;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = crate::packet::ip_proto::UDP;
/// IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = crate::packet::ip_proto::ICMP;
/// IP protocol number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = crate::packet::ip_proto::ICMPV6;

const MASK_WORDS: usize = MAX_SELECTORS / 64;

/// The set of selectors an identity satisfies: one bit per distinct selector. `any` has no bit;
/// it always matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Mask([u64; MASK_WORDS]);

impl Mask {
    /// No selector satisfied (an identity nothing is known about).
    pub const EMPTY: Mask = Mask([0; MASK_WORDS]);

    /// Whether selector `bit` is satisfied.
    pub fn contains(&self, bit: u8) -> bool {
        let b = usize::from(bit);
        self.0[b / 64] & (1 << (b % 64)) != 0
    }

    fn insert(&mut self, bit: u8) {
        let b = usize::from(bit);
        self.0[b / 64] |= 1 << (b % 64);
    }
}

/// What is known about one side of a frame, to compute its [`Mask`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity<'a> {
    /// Overlay address.
    pub ip: Option<IpAddr>,
    /// Node name (for a container: the node it runs on).
    pub node: Option<&'a str>,
    /// Groups of that node's certificate.
    pub groups: &'a [String],
    /// Container labels; `None` for something that is not a known container.
    pub labels: Option<&'a BTreeMap<String, String>>,
}

impl Identity<'_> {
    /// Only an address is known.
    pub fn ip_only(ip: IpAddr) -> Self {
        Identity { ip: Some(ip), node: None, groups: &[], labels: None }
    }
}

/// The outcome of [`Compiled::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Decision {
    /// Pass or drop.
    pub verdict: Verdict,
    /// Who decided.
    pub by: Decider,
}

/// Who made a [`Decision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decider {
    /// The rule at this index of [`Policy::rules`].
    Rule(usize),
    /// No rule matched: the default for this direction.
    Default(Direction),
}

/// One counter of [`Compiled::hits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Hits<'a> {
    /// Rule name, or `default-in` / `default-out`.
    pub name: &'a str,
    /// The direction the rule applies to.
    pub direction: Direction,
    /// What it does.
    pub verdict: Verdict,
    /// Decisions counted with [`Compiled::count`].
    pub hits: u64,
}

/// Why a rule did not match, in [`Explanation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mismatch {
    /// The rule is for the other direction.
    Direction,
    /// Another protocol.
    Proto,
    /// The rule names ports and the packet's destination port is not one (or has none).
    Port,
    /// `from` does not hold.
    From,
    /// `to` does not hold.
    To,
}

/// One rule's part of an [`Explanation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleExplanation {
    /// Index in [`Policy::rules`].
    pub index: usize,
    /// Rule name.
    pub name: String,
    /// The rule as one line.
    pub text: String,
    /// Whether every part matched.
    pub matched: bool,
    /// The parts that did not (empty when `matched`).
    pub mismatches: Vec<Mismatch>,
}

/// The result of [`Compiled::explain`], for `weft policy explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The decision, equal to what [`Compiled::decide`] returns for the same frame.
    pub decision: Decision,
    /// The deciding rule's name (`default-in`/`default-out` for a default).
    pub name: String,
    /// The deciding rule as one line, or the default as `default in deny`.
    pub text: String,
    /// Every rule, in file order.
    pub rules: Vec<RuleExplanation>,
}

/// A policy ready for the data path. Shared read-only (in an `Arc`) by the worker threads.
#[derive(Debug)]
pub struct Compiled {
    policy: Policy,
    selectors: Vec<Match>,
    /// Per [`Direction`]: deny rules then allow rules, each in file order.
    lists: [Vec<Compact>; 2],
    hits: Vec<AtomicU64>,
    default_hits: [AtomicU64; 2],
    default_names: [String; 2],
}

impl Compiled {
    /// Compiles a validated policy.
    pub fn new(policy: Policy) -> Self {
        let mut bits: HashMap<Match, u8> = HashMap::new();
        let mut selectors = Vec::new();
        let mut bit = |s: &Selector| -> Sel {
            let Selector::Match(m) = s else { return Sel::Any };
            if let Some(&b) = bits.get(m) {
                return Sel::Bit(b);
            }
            // A validated Policy has at most MAX_SELECTORS (256) selectors, so this fits a u8;
            // a policy built otherwise degrades to "matches nothing" rather than panicking.
            match u8::try_from(selectors.len()) {
                Ok(b) => {
                    bits.insert(m.clone(), b);
                    selectors.push(m.clone());
                    Sel::Bit(b)
                }
                Err(_) => Sel::Never,
            }
        };
        let mut compact = Vec::with_capacity(policy.rules.len());
        for (index, r) in policy.rules.iter().enumerate() {
            let (from, to) = (bit(&r.from), bit(&r.to));
            let (remote, local) = match r.direction {
                Direction::In => (from, to),
                Direction::Out => (to, from),
            };
            compact.push(Compact {
                index,
                direction: r.direction,
                action: r.action,
                proto: r.proto,
                ports: r.ports.map(|p| (p.lo, p.hi)),
                remote,
                local,
            });
        }
        let list = |dir: Direction| -> Vec<Compact> {
            let of = |v: Verdict| compact.iter().filter(move |c| c.direction == dir && c.action == v);
            of(Verdict::Deny).chain(of(Verdict::Allow)).copied().collect()
        };
        let lists = [list(Direction::In), list(Direction::Out)];
        let hits = policy.rules.iter().map(|_| AtomicU64::new(0)).collect();
        Compiled {
            policy,
            selectors,
            lists,
            hits,
            default_hits: [AtomicU64::new(0), AtomicU64::new(0)],
            default_names: ["default-in".into(), "default-out".into()],
        }
    }

    /// The policy this was compiled from.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// True when both defaults allow and there are no rules: the daemon may skip policy.
    pub fn is_trivial(&self) -> bool {
        self.policy.inbound == Verdict::Allow
            && self.policy.outbound == Verdict::Allow
            && self.policy.rules.is_empty()
    }

    /// Number of distinct selectors (bits in use).
    pub fn selector_count(&self) -> usize {
        self.selectors.len()
    }

    /// The selectors `id` satisfies. Cheap but not per packet: call it when tables change.
    pub fn mask(&self, id: &Identity<'_>) -> Mask {
        let mut mask = Mask::EMPTY;
        for (b, m) in self.selectors.iter().enumerate() {
            if let Ok(b) = u8::try_from(b) {
                if matches(m, id) {
                    mask.insert(b);
                }
            }
        }
        mask
    }

    /// The selectors an address alone satisfies (those made only of CIDRs). Allocation-free,
    /// for addresses that are not known containers.
    pub fn mask_ip_only(&self, ip: IpAddr) -> Mask {
        self.mask(&Identity::ip_only(ip))
    }

    /// Decides a frame. `proto` is the IP protocol number, `port` the destination port of a
    /// TCP/UDP packet (`None` otherwise, e.g. for a non-first fragment); `remote` and `local`
    /// are the masks of the remote and the local side. Never allocates.
    pub fn decide(
        &self,
        dir: Direction,
        proto: u8,
        port: Option<u16>,
        remote: Mask,
        local: Mask,
    ) -> Decision {
        for c in &self.lists[dir as usize] {
            if c.proto_ok(proto) && c.port_ok(port) && bit_ok(c.remote, remote) && bit_ok(c.local, local) {
                return Decision { verdict: c.action, by: Decider::Rule(c.index) };
            }
        }
        Decision { verdict: self.policy.default_verdict(dir), by: Decider::Default(dir) }
    }

    /// Counts a decision for [`Compiled::hits`] (relaxed atomics; no lock).
    pub fn count(&self, d: &Decision) {
        let counter = match d.by {
            Decider::Rule(i) => self.hits.get(i),
            Decider::Default(dir) => Some(&self.default_hits[dir as usize]),
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counters of every rule in file order, then of the inbound and outbound defaults.
    pub fn hits(&self) -> Vec<Hits<'_>> {
        let rules = self.policy.rules.iter().zip(&self.hits).map(|(r, h)| Hits {
            name: &r.name,
            direction: r.direction,
            verdict: r.action,
            hits: h.load(Ordering::Relaxed),
        });
        let defaults = [Direction::In, Direction::Out].into_iter().map(|dir| Hits {
            name: &self.default_names[dir as usize],
            direction: dir,
            verdict: self.policy.default_verdict(dir),
            hits: self.default_hits[dir as usize].load(Ordering::Relaxed),
        });
        rules.chain(defaults).collect()
    }

    /// Explains a decision rule by rule. Evaluates the identities directly (not through masks),
    /// so it doubles as a reference for [`Compiled::decide`].
    pub fn explain(
        &self,
        dir: Direction,
        proto: u8,
        port: Option<u16>,
        remote: &Identity<'_>,
        local: &Identity<'_>,
    ) -> Explanation {
        let rules: Vec<RuleExplanation> = self
            .policy
            .rules
            .iter()
            .enumerate()
            .map(|(index, r)| {
                let mismatches = mismatches(r, dir, proto, port, remote, local);
                RuleExplanation {
                    index,
                    name: r.name.clone(),
                    text: r.to_string(),
                    matched: mismatches.is_empty(),
                    mismatches,
                }
            })
            .collect();
        let first = |v: Verdict| rules.iter().find(|e| e.matched && self.policy.rules[e.index].action == v);
        let (decision, name, text) = match first(Verdict::Deny).or_else(|| first(Verdict::Allow)) {
            Some(e) => {
                let verdict = self.policy.rules[e.index].action;
                (Decision { verdict, by: Decider::Rule(e.index) }, e.name.clone(), e.text.clone())
            }
            None => {
                let verdict = self.policy.default_verdict(dir);
                let name = self.default_names[dir as usize].clone();
                let text = format!("default {} {}", word(dir), verdict_word(verdict));
                (Decision { verdict, by: Decider::Default(dir) }, name, text)
            }
        };
        Explanation { decision, name, text, rules }
    }
}

/// A rule as the data path sees it.
#[derive(Debug, Clone, Copy)]
struct Compact {
    index: usize,
    direction: Direction,
    action: Verdict,
    proto: Proto,
    ports: Option<(u16, u16)>,
    remote: Sel,
    local: Sel,
}

/// A rule's selector for one side, as a bit.
#[derive(Debug, Clone, Copy)]
enum Sel {
    /// `any`.
    Any,
    /// Selector bit.
    Bit(u8),
    /// A selector beyond [`MAX_SELECTORS`] (only in a policy that bypassed validation).
    Never,
}

impl Compact {
    fn proto_ok(&self, proto: u8) -> bool {
        proto_matches(self.proto, proto)
    }

    fn port_ok(&self, port: Option<u16>) -> bool {
        match (self.ports, port) {
            (None, _) => true,
            (Some((lo, hi)), Some(p)) => lo <= p && p <= hi,
            (Some(_), None) => false,
        }
    }
}

fn bit_ok(sel: Sel, mask: Mask) -> bool {
    match sel {
        Sel::Any => true,
        Sel::Bit(b) => mask.contains(b),
        Sel::Never => false,
    }
}

fn proto_matches(rule: Proto, proto: u8) -> bool {
    match rule {
        Proto::Any => true,
        Proto::Tcp => proto == IPPROTO_TCP,
        Proto::Udp => proto == IPPROTO_UDP,
        Proto::Icmp => proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6,
    }
}

/// Whether `id` satisfies every condition of `m`.
fn matches(m: &Match, id: &Identity<'_>) -> bool {
    let groups = m.groups.iter().all(|g| id.groups.contains(g));
    let labels =
        m.labels.is_empty() || id.labels.is_some_and(|l| m.labels.iter().all(|(k, v)| l.get(k) == Some(v)));
    let cidr = m.cidrs.is_empty() || id.ip.is_some_and(|ip| m.cidrs.iter().any(|n| n.contains(&ip)));
    let node = m.node.as_deref().is_none_or(|n| id.node == Some(n));
    groups && labels && cidr && node
}

fn selector_matches(s: &Selector, id: &Identity<'_>) -> bool {
    match s {
        Selector::Any => true,
        Selector::Match(m) => matches(m, id),
    }
}

fn mismatches(
    r: &Rule,
    dir: Direction,
    proto: u8,
    port: Option<u16>,
    remote: &Identity<'_>,
    local: &Identity<'_>,
) -> Vec<Mismatch> {
    let mut v = Vec::new();
    if r.direction != dir {
        v.push(Mismatch::Direction);
    }
    if !proto_matches(r.proto, proto) {
        v.push(Mismatch::Proto);
    }
    if let Some(p) = r.ports {
        if !port.is_some_and(|port| p.lo <= port && port <= p.hi) {
            v.push(Mismatch::Port);
        }
    }
    let (from, to) = match dir {
        Direction::In => (remote, local),
        Direction::Out => (local, remote),
    };
    if !selector_matches(&r.from, from) {
        v.push(Mismatch::From);
    }
    if !selector_matches(&r.to, to) {
        v.push(Mismatch::To);
    }
    v
}

fn word(d: Direction) -> &'static str {
    match d {
        Direction::In => "in",
        Direction::Out => "out",
    }
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
