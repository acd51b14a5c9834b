//! Who may use the local HTTP listener (`/metrics`, the registry API, the status page).
//!
//! Any local user, and any web page a local browser opens, can reach a loopback port, so:
//! - every request must name this node in its `Host`: an IP literal (with or without a port),
//!   `localhost`, or a name in `[metrics] allowed_hosts`. A DNS-rebinding page (a name of the
//!   attacker's, re-pointed at 127.0.0.1) sends its own name and is refused;
//! - every write (any method but GET, HEAD and OPTIONS) must carry `Authorization: Bearer` with
//!   the token of `[metrics] api_token_file`, compared in constant time. Without a configured
//!   token there are no writes over HTTP at all: `weft service add` on the control socket is the
//!   way. Reads (metrics, status, catalog) need no token.
//!
//! The token file is the secret's only home: it may be readable by its group (the control
//! group, say) but never by every user, and the token is wiped from memory when dropped.

use axum::http::Method;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::config::{Config, ConfigError};

/// Shortest token accepted: guessing it must be hopeless.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest token file read.
const MAX_TOKEN_FILE: u64 = 4096;

/// The bearer token registry writes over HTTP must present.
pub struct ApiToken(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(…)")
    }
}

impl ApiToken {
    /// Reads the token from `path`: refused if every user may read the file, if it is larger
    /// than 4 KiB, or if the token (the file's text without surrounding whitespace) is shorter
    /// than [`MIN_TOKEN_LEN`] or has whitespace inside. Errors say how to fix it.
    pub fn load(path: &Path) -> Result<Self, String> {
        let p = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {p}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("{p} is not a file"));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            return Err(format!(
                "{p} has mode {mode:04o}, which lets every user access the API token; make it \
                 readable by root (and its group) only: chmod 640 {p}"
            ));
        }
        if meta.len() > MAX_TOKEN_FILE {
            return Err(format!("{p} is {} bytes; a token file holds one token", meta.len()));
        }
        let text = Zeroizing::new(std::fs::read(path).map_err(|e| format!("cannot read {p}: {e}"))?);
        let token = text.trim_ascii();
        if token.len() < MIN_TOKEN_LEN
            || token.iter().any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!(
                "{p} must hold one token of at least {MIN_TOKEN_LEN} printable characters without \
                 spaces, e.g. from: head -c 32 /dev/urandom | base64 > {p}"
            ));
        }
        Ok(Self(Zeroizing::new(token.to_vec())))
    }

    /// Whether `presented` is the token, in time that does not depend on where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_slice().ct_eq(presented).into()
    }
}

/// Why a request is refused before it reaches a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its `Host` is missing or names something other than this node.
    Host(String),
    /// A write, and no token is configured.
    NoToken,
    /// A write without the right token.
    BadToken,
}

/// The listener's rules: the token (if any) and the extra host names.
#[derive(Debug, Default)]
pub struct HttpAccess {
    token: Option<ApiToken>,
    allowed_hosts: Vec<String>,
}

impl HttpAccess {
    /// The rules of `cfg`, reading `metrics.api_token_file`; errors name that key.
    pub fn load(cfg: &Config) -> Result<Self, ConfigError> {
        let token = match &cfg.http.token_file {
            Some(path) => Some(ApiToken::load(path).map_err(|m| cfg.error("metrics.api_token_file", &m))?),
            None => None,
        };
        Ok(Self { token, allowed_hosts: cfg.http.allowed_hosts.clone() })
    }

    /// Rules from their parts (tests, embedders).
    pub fn new(token: Option<ApiToken>, allowed_hosts: Vec<String>) -> Self {
        Self { token, allowed_hosts }
    }

    /// Whether writes over HTTP are possible at all.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Checks one request: its `Host` header, and for a write its `Authorization` header.
    pub fn check(
        &self,
        method: &Method,
        host: Option<&[u8]>,
        authorization: Option<&[u8]>,
    ) -> Result<(), Refusal> {
        let host = host.ok_or_else(|| Refusal::Host("no Host header".to_owned()))?;
        if !host_allowed(host, &self.allowed_hosts) {
            return Err(Refusal::Host(format!("Host {:?} is not this node", String::from_utf8_lossy(host))));
        }
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        let token = self.token.as_ref().ok_or(Refusal::NoToken)?;
        match authorization.and_then(bearer) {
            Some(presented) if token.matches(presented) => Ok(()),
            _ => Err(Refusal::BadToken),
        }
    }
}

/// The credentials of `Bearer <token>` (the scheme in any case).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| rest.trim_ascii())
}

/// Whether a `Host` value names this node: an IPv4 literal, a bracketed IPv6 literal,
/// `localhost` or a name in `allowed` (lower case, no trailing dot), each with or without a
/// port.
pub fn host_allowed(host: &[u8], allowed: &[String]) -> bool {
    let Ok(host) = std::str::from_utf8(host) else { return false };
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) => return v6.parse::<Ipv6Addr>().is_ok() && port_ok(port),
            None => return false,
        },
        None => match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    if !port.is_none_or(|p| port_ok(&format!(":{p}"))) {
        return false;
    }
    if name.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || allowed.contains(&name)
}

/// Nothing, or `:` and a port number.
fn port_ok(s: &str) -> bool {
    s.is_empty() || s.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> ApiToken {
        ApiToken(Zeroizing::new(text.as_bytes().to_vec()))
    }

    #[test]
    fn hosts_that_name_this_node() {
        let allowed = vec!["weft-h1.example".to_owned()];
        for ok in [
            "127.0.0.1",
            "127.0.0.1:9571",
            "10.200.0.1:9571",
            "[::1]",
            "[::1]:9571",
            "localhost",
            "LocalHost:9571",
            "localhost.",
            "weft-h1.example",
            "WEFT-H1.example:80",
        ] {
            assert!(host_allowed(ok.as_bytes(), &allowed), "{ok}");
        }
        for rogue in [
            "evil.example",
            "evil.example:9571",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "weft-h1.example.evil.example",
            "127.0.0.1:99999",
            "127.0.0.1:x",
            "127.0.0.1:",
            "::1",
            "[::1",
            "[::1]x",
            "[evil]:80",
            "",
            "127.1",
        ] {
            assert!(!host_allowed(rogue.as_bytes(), &allowed), "{rogue}");
        }
        assert!(!host_allowed(b"\xff", &allowed));
    }

    #[test]
    fn rogue_writes_need_the_token_and_reads_do_not() {
        let host = Some(&b"127.0.0.1:9571"[..]);
        let none = HttpAccess::new(None, vec![]);
        assert_eq!(none.check(&Method::GET, host, None), Ok(()));
        assert_eq!(none.check(&Method::PUT, host, Some(b"Bearer 0123456789abcdef")), Err(Refusal::NoToken));
        let with = HttpAccess::new(Some(token("0123456789abcdef")), vec![]);
        assert_eq!(with.check(&Method::HEAD, host, None), Ok(()));
        assert_eq!(with.check(&Method::PUT, host, None), Err(Refusal::BadToken));
        assert_eq!(
            with.check(&Method::DELETE, host, Some(b"Bearer 0123456789abcdeF")),
            Err(Refusal::BadToken)
        );
        assert_eq!(with.check(&Method::POST, host, Some(b"Bearer 0123456789abcde")), Err(Refusal::BadToken));
        assert_eq!(with.check(&Method::PUT, host, Some(b"Basic 0123456789abcdef")), Err(Refusal::BadToken));
        assert_eq!(with.check(&Method::PUT, host, Some(b"bearer  0123456789abcdef ")), Ok(()));
        assert_eq!(with.check(&Method::DELETE, host, Some(b"Bearer 0123456789abcdef")), Ok(()));
        let rogue = with.check(&Method::GET, Some(b"evil.example"), None);
        assert_eq!(rogue, Err(Refusal::Host("Host \"evil.example\" is not this node".into())));
        assert!(matches!(with.check(&Method::GET, None, None), Err(Refusal::Host(_))));
        assert_eq!(format!("{:?}", token("secret-secret-secret")), "ApiToken(…)");
    }

    #[test]
    fn token_files_others_can_read_are_refused_with_the_fix() {
        let dir = std::env::temp_dir().join(format!("weft-http-access-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api.token");
        std::fs::write(&path, "  0123456789abcdef0123\n").unwrap();
        for (mode, ok) in [(0o600, true), (0o640, true), (0o400, true), (0o644, false), (0o606, false)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match ApiToken::load(&path) {
                Ok(t) => assert!(ok && t.matches(b"0123456789abcdef0123"), "{mode:o}"),
                Err(e) => {
                    assert!(!ok, "{mode:o}: {e}");
                    assert!(e.contains(&format!("mode {mode:04o}")) && e.contains("chmod 640"), "{e}");
                }
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        for bad in ["short", "two words here, long enough", ""] {
            std::fs::write(&path, bad).unwrap();
            let e = ApiToken::load(&path).unwrap_err();
            assert!(e.contains("at least 16 printable characters"), "{bad:?}: {e}");
        }
        assert!(ApiToken::load(&dir.join("missing")).unwrap_err().contains("cannot read"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
