//! Policy answers: every network's policy with its rule counters and connection table
//! (`weft policy show`, `engine.policy` of a status), and which rule decides a flow
//! (`weft policy explain`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

use super::counters::ConntrackStats;
use crate::policy::config::Rule;
use crate::policy::{Direction, Explanation, Verdict};

/// One network's policy as it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPolicy {
    /// Network name.
    pub network: String,
    /// False when the policy lets everything through (the data path skips it).
    pub enforced: bool,
    /// The policy itself.
    pub policy: PolicyView,
    /// Decisions per rule, then per default.
    pub hits: Vec<RuleHits>,
    /// The connection table.
    pub conntrack: ConntrackReport,
}

/// A validated policy as status shows it (the fields of `[network.policy]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyView {
    /// Default for inbound frames.
    pub inbound: Verdict,
    /// Default for outbound frames.
    pub outbound: Verdict,
    /// Tracked flows at most.
    pub conntrack_max: usize,
    /// Tracked flows per remote node at most.
    pub conntrack_per_peer: usize,
    /// The rules, in file order.
    pub rules: Vec<Rule>,
}

/// How many new flows one rule (or default) decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleHits {
    /// Rule name, or `default-in` / `default-out`.
    pub name: String,
    /// The direction it applies to.
    pub direction: Direction,
    /// What it does.
    pub verdict: Verdict,
    /// Decisions since the policy was loaded.
    pub hits: u64,
}

/// A network's connection table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackReport {
    /// Tracked flows now.
    pub entries: usize,
    /// Its counters since start.
    pub stats: ConntrackStats,
}

/// The answer of `weft policy explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explain {
    /// Network name.
    pub network: String,
    /// The flow's source.
    pub from: Party,
    /// The flow's destination.
    pub to: Party,
    /// IP protocol number.
    pub proto: u8,
    /// Destination port.
    pub port: Option<u16>,
    /// Deny when any check on this node denies.
    pub verdict: Verdict,
    /// This node's checks: outbound when the source is local, inbound when the destination is.
    pub checks: Vec<ExplainCheck>,
    /// What the checks do not show.
    pub note: Option<String>,
}

/// One side of an explained flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    /// Its address.
    pub ip: IpAddr,
    /// Its node's name (empty when unknown).
    pub node: String,
    /// Its node's certificate groups.
    pub groups: Vec<String>,
    /// Its labels, when it is a known container.
    pub labels: Option<BTreeMap<String, String>>,
    /// Whether it is on this node.
    pub local: bool,
    /// What it is, in words.
    pub what: String,
}

/// One direction's decision in an [`Explain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainCheck {
    /// `out` on the source's node, `in` on the destination's.
    pub direction: Direction,
    /// Rule by rule.
    pub explanation: Explanation,
}
