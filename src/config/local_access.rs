//! The keys that say who may use this node's local surfaces: `node.control_group` (besides
//! root, the group whose members may use the control socket).
//!
//! The group name is checked by [`Config::parse`] and resolved to its gid by
//! [`Config::load`] ([`Config::resolve_control_group`]): a group that does not exist is an
//! error naming the key, never a socket quietly left to root alone.

use toml::Spanned;

use super::{Config, ConfigError, Ctx};

/// Longest group name accepted (what `groupadd` accepts).
const MAX_GROUP_NAME: usize = 32;

/// `[node] control_group`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlGroup {
    /// The group's name, as configured.
    pub name: String,
    /// Its gid on this host.
    pub gid: u32,
}

impl Ctx<'_> {
    /// `node.control_group`'s name, checked but not resolved.
    pub(super) fn control_group_name(
        &self,
        g: &Option<Spanned<String>>,
    ) -> Result<Option<String>, ConfigError> {
        let Some(g) = g else { return Ok(None) };
        let name = g.get_ref();
        let ok = !name.is_empty()
            && name.len() <= MAX_GROUP_NAME
            && !name.starts_with('-')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Err(self.err(
                g,
                "node.control_group",
                &format!(
                    "must be a group name: 1..={MAX_GROUP_NAME} of A-Z a-z 0-9 _ . - (not starting with -)"
                ),
            ));
        }
        Ok(Some(name.clone()))
    }
}

impl Config {
    /// Resolves `node.control_group` to its gid through `lookup` (the host's group database in
    /// [`Config::load`]); a group that does not exist, or a failed lookup, is an error naming
    /// the key. Without the key there is nothing to do.
    pub fn resolve_control_group(
        &mut self,
        lookup: &dyn Fn(&str) -> std::io::Result<Option<u32>>,
    ) -> Result<(), ConfigError> {
        let Some(name) = self.control_group_name.clone() else { return Ok(()) };
        match lookup(&name) {
            Ok(Some(gid)) => {
                self.node.control_group = Some(ControlGroup { name, gid });
                Ok(())
            }
            Ok(None) => Err(self.error(
                "node.control_group",
                &format!(
                    "group {name:?} does not exist on this host; create it (groupadd --system {name}) \
                     or remove the key to leave the control socket to root"
                ),
            )),
            Err(e) => Err(self.error("node.control_group", &format!("looking up group {name:?}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{parse, GOOD};

    #[test]
    fn control_group_is_resolved_at_load_or_named_as_the_error() {
        let text = GOOD.replace("ca = \"ca.crt\"", "ca = \"ca.crt\"\ncontrol_group = \"weft\"");
        let mut c = parse(&text).unwrap();
        assert_eq!(c.node.control_group, None, "parse alone resolves nothing");
        c.resolve_control_group(&|n| Ok((n == "weft").then_some(990))).unwrap();
        let g = c.node.control_group.as_ref().unwrap();
        assert_eq!((g.name.as_str(), g.gid), ("weft", 990));
        let mut c = parse(&text).unwrap();
        let e = c.resolve_control_group(&|_| Ok(None)).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("node.control_group", Some(7)));
        assert!(e.message.contains("group \"weft\" does not exist") && e.message.contains("groupadd"), "{e}");
        let e = parse(&GOOD.replace("ca = \"ca.crt\"", "ca = \"ca.crt\"\ncontrol_group = \"we ft\""))
            .unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("node.control_group", Some(7)));
        let mut plain = parse(GOOD).unwrap();
        plain.resolve_control_group(&|_| panic!("no lookup without the key")).unwrap();
        assert_eq!(plain.node.control_group, None);
    }
}
