//! The local control API: newline-delimited JSON over a Unix socket that only root (and the
//! members of `node.control_group`) can open and use (`access`).
//! One request per line, one response per line: `{"ok":true,"data":…}` or
//! `{"ok":false,"error":"…"}`. Requests are bounded in size.

pub mod access;
pub(crate) mod resolv_conf;
pub mod server;

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub use server::ControlCtx;

/// Largest request line accepted.
pub const MAX_REQUEST: usize = 64 * 1024;

/// A control request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Node, networks, containers, peers, counters.
    Status,
    /// Attach a container netns.
    Attach {
        /// Netns name or path.
        netns: String,
        /// Network name.
        network: String,
        /// Container name.
        name: String,
        /// Wanted address.
        ip: Option<std::net::IpAddr>,
        /// Interface name in the container.
        ifname: String,
        /// Labels (policy selectors; `weft.service` declares services).
        #[serde(default)]
        labels: std::collections::BTreeMap<String, String>,
        /// A path to enter the namespace by when `netns` is not visible in the daemon's
        /// mount namespace: the CNI plugin opens `CNI_NETNS` and passes
        /// `/proc/<its pid>/fd/<fd>`, valid while it waits for the answer. `netns` is what is
        /// recorded.
        #[serde(default)]
        enter: Option<String>,
        /// The runtime's container id (`CNI_CONTAINERID`), recorded in the lease so that the
        /// CNI plugin's DEL finds this container by it.
        #[serde(default)]
        container_id: Option<String>,
    },
    /// Register a service instance on this node.
    ServiceAdd {
        /// The instance.
        spec: crate::discovery::catalog::ServiceSpec,
    },
    /// Remove this node's instances by id, or all of a service name.
    ServiceRemove {
        /// Instance id or service name.
        id: String,
    },
    /// This node's instances with their health.
    ServiceList,
    /// The cluster-wide catalog: nodes and services with health.
    Catalog,
    /// Re-read the node TOML and apply what can change live.
    Reload,
    /// Which rule decides a flow on this node.
    PolicyExplain {
        /// Network name.
        network: String,
        /// Source container name or address.
        from: String,
        /// Destination container name or address.
        to: String,
        /// tcp, udp, icmp or a protocol number.
        proto: String,
        /// Destination port.
        #[serde(default)]
        port: Option<u16>,
    },
    /// Every network's policy with rule counters and conntrack sizes.
    PolicyShow,
    /// One overlay probe to a member; answers with its round-trip time.
    Ping {
        /// Member name, public key or endpoint.
        peer: String,
    },
    /// Detach a container.
    Detach {
        /// Network name.
        network: String,
        /// Container name (or give `netns`).
        #[serde(default)]
        name: Option<String>,
        /// The container's network namespace as given at attach time.
        #[serde(default)]
        netns: Option<String>,
        /// The runtime's container id it was attached with (the CNI plugin's DEL): only that
        /// container, whatever its name.
        #[serde(default)]
        container_id: Option<String>,
    },
}

/// One response line: `{"ok":true,"data":…}` or `{"ok":false,"error":"…"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response<T> {
    /// Whether the request was carried out.
    pub ok: bool,
    /// The answer, when `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    /// Why not, when not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl<T> Response<T> {
    /// A successful response carrying `data`.
    pub fn ok(data: T) -> Self {
        Response { ok: true, data: Some(data), error: None }
    }

    /// A refusal with its reason.
    pub fn error(error: impl Into<String>) -> Self {
        Response { ok: false, data: None, error: Some(error.into()) }
    }

    /// The data of a successful response, or the daemon's reason as an error.
    pub fn into_result(self) -> Result<T> {
        match (self.ok, self.data) {
            (true, Some(data)) => Ok(data),
            (true, None) => bail!("the daemon's answer has no data"),
            (false, _) => bail!("{}", self.error.as_deref().unwrap_or("the daemon refused the request")),
        }
    }
}

/// A successful answer's `data`: one variant per kind of request, each a type of
/// [`crate::report`], serialized as that type alone.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// [`Request::Status`].
    Status(Box<crate::report::Status>),
    /// [`Request::Attach`].
    Attached(crate::report::Attached),
    /// [`Request::Detach`].
    Detached(crate::report::Detached),
    /// [`Request::ServiceAdd`].
    ServiceAdded(crate::report::ServiceAdded),
    /// [`Request::ServiceRemove`].
    ServicesRemoved(crate::report::ServicesRemoved),
    /// [`Request::ServiceList`].
    Services(Vec<crate::report::LocalService>),
    /// [`Request::Catalog`].
    Catalog(crate::report::Catalog),
    /// [`Request::Reload`].
    Reloaded(crate::report::Reloaded),
    /// [`Request::PolicyExplain`].
    Explain(Box<crate::report::Explain>),
    /// [`Request::PolicyShow`].
    Policies(Vec<crate::report::NetworkPolicy>),
    /// [`Request::Ping`].
    Pong(crate::report::Pong),
}

/// Sends one request and returns the `data` of a successful response as `T` (the
/// [`crate::report`] type of that request's answer).
pub fn call<T: DeserializeOwned>(socket: &Path, req: &Request) -> Result<T> {
    let mut s = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the weft daemon at {} (is it running? are you root or in node.control_group?)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut resp = String::new();
    BufReader::new(s).read_line(&mut resp).context("reading the daemon's answer")?;
    let r: Response<T> =
        serde_json::from_str(&resp).context("the daemon's answer is not the JSON this weft expects")?;
    r.into_result()
}
