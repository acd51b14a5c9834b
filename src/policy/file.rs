//! `[network.policy]` as people write it: every table rejects unknown keys, and values that
//! need checking keep their `toml::Spanned` so errors can point at them. `from`/`to`, `port` and
//! `cidr` take more than one shape, so they have hand-written (small) deserialisers that keep
//! serde's error messages instead of "did not match any variant".

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

/// `[network.policy]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Default action for inbound frames: `"allow"` (the default) or `"deny"`.
    pub inbound: Option<Spanned<String>>,
    /// Default action for outbound frames: `"allow"` (the default) or `"deny"`.
    pub outbound: Option<Spanned<String>>,
    /// Tracked flows at most (default 65536; 64..=4194304).
    pub conntrack_max: Option<Spanned<i64>>,
    /// Tracked flows per remote node at most (default `conntrack_max / 4`).
    pub conntrack_per_peer: Option<Spanned<i64>>,
    /// `[[network.policy.rule]]`, in order.
    #[serde(default, rename = "rule")]
    pub rules: Vec<Spanned<RuleFile>>,
}

/// One `[[network.policy.rule]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// `"in"` or `"out"`.
    pub direction: Spanned<String>,
    /// `"allow"` or `"deny"`.
    pub action: Spanned<String>,
    /// `"tcp"`, `"udp"`, `"icmp"` or `"any"` (the default).
    pub proto: Option<Spanned<String>>,
    /// A destination port or a `"lo-hi"` range; TCP/UDP only.
    pub port: Option<Spanned<PortFile>>,
    /// The remote side for `in` rules, the local container for `out` rules.
    pub from: Option<Spanned<SelectorFile>>,
    /// The local container for `in` rules, the remote side for `out` rules.
    pub to: Option<Spanned<SelectorFile>>,
    /// Name for counters and `explain` (default `rule[<index>]`).
    pub name: Option<Spanned<String>>,
}

/// `port = 5432` or `port = "8000-8100"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortFile {
    /// An integer, not yet range-checked.
    Number(i64),
    /// A string, `"lo-hi"` or a single number.
    Text(String),
}

/// `from`/`to`: the string `"any"` or a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectorFile {
    /// A bare string; only `"any"` is valid.
    Keyword(String),
    /// A table of conditions, all of which must hold.
    Table(SelectorTable),
}

/// A selector table as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectorTable {
    /// Node certificate groups, all of which must be present.
    pub groups: Option<Spanned<Vec<String>>>,
    /// Container labels, all of which must be equal.
    pub labels: Option<Spanned<BTreeMap<String, String>>>,
    /// One CIDR or a list of them; the address must be inside any of them.
    pub cidr: Option<Spanned<CidrFile>>,
    /// Node name.
    pub node: Option<Spanned<String>>,
}

/// `cidr = "10.0.0.0/8"` or `cidr = ["10.0.0.0/8", "fd00::/8"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrFile(pub Vec<String>);

impl<'de> Deserialize<'de> for PortFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or a \"lo-hi\" range string")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<PortFile, E> {
                Ok(PortFile::Number(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<PortFile, E> {
                Ok(PortFile::Number(i64::try_from(n).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<PortFile, E> {
                Ok(PortFile::Text(s.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for SelectorFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SelectorFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"any\" or a table of groups, labels, cidr, node")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SelectorFile, E> {
                Ok(SelectorFile::Keyword(s.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<SelectorFile, A::Error> {
                SelectorTable::deserialize(de::value::MapAccessDeserializer::new(m)).map(SelectorFile::Table)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for CidrFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CidrFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CIDR string or a list of them")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<CidrFile, E> {
                Ok(CidrFile(vec![s.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<CidrFile, A::Error> {
                let mut v = Vec::new();
                while let Some(c) = s.next_element::<String>()? {
                    v.push(c);
                }
                Ok(CidrFile(v))
            }
        }
        d.deserialize_any(V)
    }
}
