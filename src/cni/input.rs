//! What a CNI runtime hands the plugin: the `CNI_*` environment and the network configuration
//! on stdin, parsed into typed values. Pure: the environment comes in as a lookup function, so
//! every rule here is unit-tested without touching the process. Inputs are bounded (stdin
//! 1 MiB, `CNI_ARGS` 4 KiB and 64 pairs); anything malformed becomes a [`CniError`] with the
//! spec's code.

use super::error::{self, CniError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

/// Largest network configuration accepted on stdin.
pub const MAX_STDIN: usize = 1 << 20;
/// CNI versions whose configurations and results this plugin speaks.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];
/// The control socket when the configuration names none.
pub const DEFAULT_SOCKET: &str = "/run/weft/weft.sock";
/// The weft network when the configuration names none.
pub const DEFAULT_NETWORK: &str = "default";
/// Label carrying `K8S_POD_NAMESPACE`.
pub const NAMESPACE_LABEL: &str = "k8s.namespace";
/// Longest `CNI_ARGS` accepted.
const MAX_CNI_ARGS: usize = 4096;
/// Most `CNI_ARGS` pairs accepted.
const MAX_CNI_ARGS_PAIRS: usize = 64;
/// Longest container name the daemon accepts.
const MAX_NAME: usize = 63;

/// The operation asked for in `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// Attach the container.
    Add,
    /// Release the container.
    Del,
    /// Verify the container is attached as the previous result says.
    Check,
    /// Report the supported versions.
    Version,
    /// CNI 1.1 readiness check.
    Status,
    /// CNI 1.1 garbage collection.
    Gc,
}

impl Cmd {
    /// Parses `CNI_COMMAND`.
    pub fn parse(s: &str) -> Result<Cmd, CniError> {
        Ok(match s {
            "ADD" => Cmd::Add,
            "DEL" => Cmd::Del,
            "CHECK" => Cmd::Check,
            "VERSION" => Cmd::Version,
            "STATUS" => Cmd::Status,
            "GC" => Cmd::Gc,
            _ => return Err(CniError::new(error::INVALID_ENV, format!("unknown CNI_COMMAND {s:?}"))),
        })
    }
}

/// The `CNI_*` environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `CNI_COMMAND`.
    pub cmd: Cmd,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`: an absolute path (may be absent for DEL).
    pub netns: Option<String>,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`, parsed.
    pub args: CniArgs,
}

impl Invocation {
    /// Reads the environment through `var` and checks what `cmd` needs.
    pub fn from_env(cmd: Cmd, var: impl Fn(&str) -> Option<String>) -> Result<Invocation, CniError> {
        let need = |key: &str| {
            var(key)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| CniError::new(error::INVALID_ENV, format!("{key} is not set")))
        };
        let container_id = need("CNI_CONTAINERID")?;
        let ok_id = container_id.len() <= 1024
            && container_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok_id {
            return Err(CniError::new(error::INVALID_ENV, "CNI_CONTAINERID must be of A-Z a-z 0-9 - _ ."));
        }
        let ifname = need("CNI_IFNAME")?;
        let netns = match cmd {
            Cmd::Del => var("CNI_NETNS").filter(|v| !v.is_empty()),
            _ => Some(need("CNI_NETNS")?),
        };
        if let Some(ns) = &netns {
            if !ns.starts_with('/') || ns.len() > 4096 {
                return Err(CniError::new(
                    error::INVALID_ENV,
                    format!("CNI_NETNS {ns:?} is not an absolute path"),
                ));
            }
        }
        let args = CniArgs::parse(&var("CNI_ARGS").unwrap_or_default())?;
        Ok(Invocation { cmd, container_id, netns, ifname, args })
    }

    /// The container's name at the daemon: the pod name if given, else the first 12
    /// characters of the container id; either fitted to the daemon's name rules.
    pub fn container_name(&self) -> String {
        let from_pod = self.args.pod_name.as_deref().map(sanitize_name).filter(|n| !n.is_empty());
        from_pod.unwrap_or_else(|| sanitize_name(&self.container_id.chars().take(12).collect::<String>()))
    }
}

/// The known keys of `CNI_ARGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// `K8S_POD_NAME`.
    pub pod_name: Option<String>,
    /// `K8S_POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
    /// `IP`: the address wanted for the container.
    pub ip: Option<IpAddr>,
}

impl CniArgs {
    /// Parses `K=V;K=V`; unknown keys are an error unless `IgnoreUnknown` is true.
    pub fn parse(s: &str) -> Result<CniArgs, CniError> {
        let bad = |m: String| CniError::new(error::INVALID_ENV, m);
        if s.len() > MAX_CNI_ARGS {
            return Err(bad(format!("CNI_ARGS is longer than {MAX_CNI_ARGS} bytes")));
        }
        let mut pairs = Vec::new();
        for part in s.split(';').filter(|p| !p.is_empty()) {
            if pairs.len() == MAX_CNI_ARGS_PAIRS {
                return Err(bad(format!("CNI_ARGS has more than {MAX_CNI_ARGS_PAIRS} pairs")));
            }
            let (k, v) =
                part.split_once('=').ok_or_else(|| bad(format!("CNI_ARGS: {part:?} is not KEY=VALUE")))?;
            pairs.push((k, v));
        }
        let ignore_unknown =
            pairs.iter().any(|(k, v)| *k == "IgnoreUnknown" && (*v == "1" || v.eq_ignore_ascii_case("true")));
        let mut out = CniArgs::default();
        for (k, v) in pairs {
            match k {
                "IgnoreUnknown" | "K8S_POD_INFRA_CONTAINER_ID" | "K8S_POD_UID" => {}
                "K8S_POD_NAME" => out.pod_name = Some(v.to_owned()),
                "K8S_POD_NAMESPACE" => out.pod_namespace = Some(v.to_owned()),
                "IP" => {
                    out.ip =
                        Some(v.parse().map_err(|_| bad(format!("CNI_ARGS: IP={v:?} is not an address")))?)
                }
                _ if ignore_unknown => {}
                _ => {
                    return Err(bad(format!(
                        "CNI_ARGS: unknown key {k:?} (set IgnoreUnknown=1 to ignore it)"
                    )))
                }
            }
        }
        Ok(out)
    }
}

/// The plugin's network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`, one of [`SUPPORTED_VERSIONS`].
    pub cni_version: String,
    /// `name` of the CNI network.
    pub name: String,
    /// `socket`: the daemon's control socket.
    pub socket: PathBuf,
    /// `network`: the weft network to attach to.
    pub network: String,
    /// `labels` for the container.
    pub labels: BTreeMap<String, String>,
    /// `prevResult`, when chained or for CHECK and DEL.
    pub prev_result: Option<Value>,
}

/// The `cniVersion` of raw stdin, if there is one to read: errors are answered in it.
pub fn requested_version(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    let s = v.get("cniVersion")?.as_str()?;
    SUPPORTED_VERSIONS.contains(&s).then(|| s.to_owned())
}

impl NetConf {
    /// Parses and checks the configuration from stdin.
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        if stdin.len() > MAX_STDIN {
            return Err(CniError::new(error::INVALID_CONFIG, "network configuration is larger than 1 MiB"));
        }
        let v: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(error::DECODE, "network configuration is not JSON").details(e.to_string())
        })?;
        let invalid = |m: String| CniError::new(error::INVALID_CONFIG, m);
        if !v.is_object() {
            return Err(invalid("network configuration is not a JSON object".into()));
        }
        let string = |key: &str| -> Result<Option<String>, CniError> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(invalid(format!("{key:?} must be a string"))),
            }
        };
        let cni_version = string("cniVersion")?.ok_or_else(|| invalid("\"cniVersion\" is missing".into()))?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(CniError::new(
                error::INCOMPATIBLE_VERSION,
                format!(
                    "cniVersion {cni_version:?} is not supported (supported: {})",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        let name =
            string("name")?.filter(|n| !n.is_empty()).ok_or_else(|| invalid("\"name\" is missing".into()))?;
        match string("type")?.as_deref() {
            Some("weft") => {}
            other => return Err(invalid(format!("\"type\" is {other:?}, expected \"weft\""))),
        }
        if v.get("ipam").is_some_and(|i| !i.is_null()) {
            return Err(CniError::new(
                error::UNSUPPORTED_FIELD,
                "\"ipam\" is not supported: the weft daemon assigns addresses (ask for one with CNI_ARGS IP=)",
            ));
        }
        let socket = PathBuf::from(string("socket")?.unwrap_or_else(|| DEFAULT_SOCKET.to_owned()));
        let network = string("network")?.unwrap_or_else(|| DEFAULT_NETWORK.to_owned());
        let labels = match v.get("labels") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(invalid(format!("label {k:?} must have a string value"))),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid("\"labels\" must be an object of strings".into())),
        };
        let prev_result = match v.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(p @ Value::Object(_)) => Some(p.clone()),
            Some(_) => return Err(CniError::new(error::DECODE, "\"prevResult\" must be an object")),
        };
        Ok(NetConf { cni_version, name, socket, network, labels, prev_result })
    }

    /// The container's labels: the configured ones plus the pod namespace, if any.
    pub fn labels_for(&self, args: &CniArgs) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        if let Some(ns) = &args.pod_namespace {
            labels.insert(NAMESPACE_LABEL.to_owned(), ns.clone());
        }
        labels
    }
}

/// Fits `s` to the daemon's container names: `A-Za-z0-9-_.`, at most 63 characters.
pub fn sanitize_name(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' })
        .take(MAX_NAME)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn args_known_unknown_and_ignore() {
        let a = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=prod;FOO=bar").unwrap();
        assert_eq!(a.pod_name.as_deref(), Some("web-0"));
        assert_eq!(a.pod_namespace.as_deref(), Some("prod"));
        assert_eq!(CniArgs::parse("FOO=bar").unwrap_err().code, error::INVALID_ENV);
        assert_eq!(CniArgs::parse("K8S_POD_NAME").unwrap_err().code, error::INVALID_ENV);
        assert_eq!(CniArgs::parse(&"A=b;".repeat(2000)).unwrap_err().code, error::INVALID_ENV);
        assert_eq!(CniArgs::parse("IP=10.42.1.9").unwrap().ip, Some("10.42.1.9".parse().unwrap()));
        assert!(CniArgs::parse("").unwrap() == CniArgs::default());
    }

    #[test]
    fn names_from_pod_or_container_id() {
        let inv = Invocation::from_env(
            Cmd::Add,
            env(&[
                ("CNI_CONTAINERID", "0123456789abcdef"),
                ("CNI_NETNS", "/run/netns/x"),
                ("CNI_IFNAME", "eth0"),
            ]),
        )
        .unwrap();
        assert_eq!(inv.container_name(), "0123456789ab");
        let inv =
            Invocation { args: CniArgs { pod_name: Some("a b/c".into()), ..Default::default() }, ..inv };
        assert_eq!(inv.container_name(), "a-b-c");
        assert_eq!(sanitize_name(&"x".repeat(100)).len(), 63);
    }

    #[test]
    fn env_requirements() {
        let e = Invocation::from_env(Cmd::Add, env(&[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0")]));
        assert_eq!(e.unwrap_err().code, error::INVALID_ENV);
        let d = Invocation::from_env(Cmd::Del, env(&[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0")]))
            .unwrap();
        assert_eq!(d.netns, None);
        let rel = env(&[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0"), ("CNI_NETNS", "x")]);
        assert_eq!(Invocation::from_env(Cmd::Check, rel).unwrap_err().code, error::INVALID_ENV);
    }

    #[test]
    fn config_codes() {
        let ok = br#"{"cniVersion":"1.0.0","name":"n","type":"weft","labels":{"a":"b"}}"#;
        let c = NetConf::parse(ok).unwrap();
        assert_eq!((c.network.as_str(), c.socket.to_str().unwrap()), ("default", DEFAULT_SOCKET));
        assert_eq!(NetConf::parse(b"{nope").unwrap_err().code, error::DECODE);
        let old = br#"{"cniVersion":"0.2.0","name":"n","type":"weft"}"#;
        assert_eq!(NetConf::parse(old).unwrap_err().code, error::INCOMPATIBLE_VERSION);
        let other = br#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#;
        assert_eq!(NetConf::parse(other).unwrap_err().code, error::INVALID_CONFIG);
        let ipam = br#"{"cniVersion":"1.0.0","name":"n","type":"weft","ipam":{"type":"host-local"}}"#;
        assert_eq!(NetConf::parse(ipam).unwrap_err().code, error::UNSUPPORTED_FIELD);
        assert_eq!(NetConf::parse(&vec![b' '; MAX_STDIN + 1]).unwrap_err().code, error::INVALID_CONFIG);
        assert_eq!(requested_version(ok).as_deref(), Some("1.0.0"));
    }
}
