//! The answer of `weft reload`: what the reload changed.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A reload that was applied.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Reloaded {
    /// What changed, in the order applied (empty: nothing).
    pub changed: Vec<Change>,
}

/// One part of the configuration a reload applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// `node.log_level`.
    #[serde(rename = "log_level")]
    LogLevel,
    /// `membership.seeds` or `[[peer]]`.
    #[serde(rename = "seeds/peers")]
    DialTargets,
    /// A network's policy.
    #[serde(rename = "policy")]
    Policy,
    /// `[[service]]`.
    #[serde(rename = "services")]
    Services,
    /// `[dns]`.
    #[serde(rename = "dns")]
    Dns,
    /// New entries in `node.revocations`.
    #[serde(rename = "revocations")]
    Revocations,
    /// `node.key`, `node.cert` or `node.ca` (paths or file contents).
    #[serde(rename = "identity")]
    Identity,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::LogLevel => "log_level",
            Change::DialTargets => "seeds/peers",
            Change::Policy => "policy",
            Change::Services => "services",
            Change::Dns => "dns",
            Change::Revocations => "revocations",
            Change::Identity => "identity",
        })
    }
}

impl fmt::Display for Reloaded {
    /// `policy, services`, or `nothing changed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changed.is_empty() {
            return f.write_str("nothing changed");
        }
        for (i, c) in self.changed.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_keep_their_published_names() {
        let r = Reloaded { changed: vec![Change::DialTargets, Change::Policy, Change::LogLevel] };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"changed":["seeds/peers","policy","log_level"]}"#);
        assert_eq!(r.to_string(), "seeds/peers, policy, log_level");
        assert_eq!(Reloaded::default().to_string(), "nothing changed");
        for c in [Change::LogLevel, Change::DialTargets, Change::Policy, Change::Services, Change::Dns] {
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{c}\""));
        }
    }
}
