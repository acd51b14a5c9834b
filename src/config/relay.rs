//! The `[relay]` section: whether this node passes on traffic between members that cannot
//! reach each other directly, and which relays it uses itself.

use super::{file, ConfigError, Ctx};

/// `[relay]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// Relay for other members (default false). A relay passes on end-to-end ciphertext only.
    pub enable: bool,
    /// Fall back to a relay for a member that cannot be reached directly (default true).
    pub use_relays: bool,
    /// Use only relays whose certificate carries one of these groups (default: any relay).
    pub groups: Vec<String>,
    /// Most relayed traffic this node passes on, in Mbit/s (default 0: no cap).
    pub max_mbit: u32,
}

impl Default for Relay {
    fn default() -> Self {
        Self { enable: false, use_relays: true, groups: Vec::new(), max_mbit: 0 }
    }
}

/// Most entries of `relay.groups`.
const MAX_GROUPS: usize = 16;

impl Ctx<'_> {
    pub(super) fn relay(&self, r: &file::RelayFile) -> Result<Relay, ConfigError> {
        let mut groups = Vec::new();
        for (i, g) in r.groups.iter().enumerate() {
            let v = g.get_ref();
            if v.is_empty() || v.len() > 63 {
                return Err(self.err(g, &format!("relay.groups[{i}]"), "must be 1..=63 characters"));
            }
            if i >= MAX_GROUPS {
                return Err(self.err(g, "relay.groups", &format!("at most {MAX_GROUPS} groups")));
            }
            groups.push(v.clone());
        }
        let max_mbit = self.bounded(&r.max_mbit, "relay.max_mbit", 0..=1_000_000, " (0: no cap)", 0)?;
        Ok(Relay {
            enable: r.enable.unwrap_or(false),
            use_relays: r.use_relays.unwrap_or(true),
            groups,
            max_mbit,
        })
    }
}
