//! The keys that say who may use this node's local surfaces: `node.control_group` (besides
//! root, the group whose members may use the control socket) and `[metrics]` `api_token_file`
//! and `allowed_hosts` (the HTTP listener's write token, and the Host names it answers besides
//! IP addresses and `localhost`).
//!
//! The group name is checked by [`Config::parse`] and resolved to its gid by
//! [`Config::load`] ([`Config::resolve_control_group`]): a group that does not exist is an
//! error naming the key, never a socket quietly left to root alone. The token file is read
//! later, by the daemon and `weft check-config` (`crate::http_access`).

use std::path::PathBuf;
use toml::Spanned;

use super::{file, Config, ConfigError, Ctx};

/// Longest group name accepted (what `groupadd` accepts).
const MAX_GROUP_NAME: usize = 32;
/// Most `metrics.allowed_hosts` entries.
const MAX_ALLOWED_HOSTS: usize = 64;

/// `[node] control_group`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlGroup {
    /// The group's name, as configured.
    pub name: String,
    /// Its gid on this host.
    pub gid: u32,
}

/// `[metrics] api_token_file` and `allowed_hosts`: who may use the HTTP listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpAccessConfig {
    /// The file holding the bearer token registry writes must present (none: no writes over
    /// HTTP at all).
    pub token_file: Option<PathBuf>,
    /// Host names (lower case, no trailing dot) the listener answers besides IP literals and
    /// `localhost`.
    pub allowed_hosts: Vec<String>,
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

    /// `[metrics] api_token_file` (resolved against the file's directory) and `allowed_hosts`.
    pub(super) fn http_access(
        &self,
        m: &file::MetricsFile,
        resolve: impl Fn(&Spanned<PathBuf>) -> PathBuf,
    ) -> Result<HttpAccessConfig, ConfigError> {
        if let Some(extra) = m.allowed_hosts.get(MAX_ALLOWED_HOSTS) {
            return Err(self.err(
                extra,
                "metrics.allowed_hosts",
                &format!("at most {MAX_ALLOWED_HOSTS} names"),
            ));
        }
        let mut allowed_hosts = Vec::new();
        for (i, h) in m.allowed_hosts.iter().enumerate() {
            let name = h.get_ref().trim_end_matches('.').to_ascii_lowercase();
            if !is_host_name(&name) {
                return Err(self.err(
                    h,
                    &format!("metrics.allowed_hosts[{i}]"),
                    "must be a host name (dot-separated labels of a-z 0-9 -, at most 253 characters, \
                     no port); IP addresses and localhost are always allowed",
                ));
            }
            if !allowed_hosts.contains(&name) {
                allowed_hosts.push(name);
            }
        }
        Ok(HttpAccessConfig { token_file: m.api_token_file.as_ref().map(resolve), allowed_hosts })
    }
}

/// A DNS host name: labels of 1..=63 of `a-z 0-9 -`, not starting or ending with `-`.
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
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
    use std::path::PathBuf;

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

    #[test]
    fn api_token_file_and_allowed_hosts() {
        let c = parse(GOOD).unwrap();
        assert_eq!((c.http.token_file.as_ref(), c.http.allowed_hosts.len()), (None, 0));
        let text = format!(
            "{GOOD}\n[metrics]\napi_token_file = \"api.token\"\nallowed_hosts = [\"Weft-H1.example.\", \"weft-h1.example\"]\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.http.token_file, Some(PathBuf::from("/etc/weft/api.token")));
        assert_eq!(c.http.allowed_hosts, ["weft-h1.example"]);
        for bad in ["*", "evil.example:80", "a..b", "-x.example", ""] {
            let text = format!("{GOOD}\n[metrics]\nallowed_hosts = [\"ok.example\", \"{bad}\"]\n");
            let e = parse(&text).unwrap_err();
            assert_eq!(e.key, "metrics.allowed_hosts[1]", "{bad:?}: {e}");
        }
    }
}
