//! The little weft asks dockerd's own API: which container an endpoint belongs to, its name
//! and its labels. libnetwork's driver protocol carries neither (a driver sees endpoint ids
//! only), so after `Join` weft looks them up, as Calico's libnetwork plugin does. Answers are
//! bounded in size and time, and anything unexpected is an error, never a panic.

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Largest answer read from dockerd (a network's inspect lists every container on it).
const MAX_ANSWER: usize = 4 << 20;

/// How long one API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A container as weft names and labels it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Its name without Docker's leading `/`.
    pub name: String,
    /// `docker run --label`s.
    pub labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct NetworkInspect {
    #[serde(rename = "Containers", default)]
    containers: Option<BTreeMap<String, NetworkContainer>>,
}

#[derive(Deserialize)]
struct NetworkContainer {
    #[serde(rename = "EndpointID", default)]
    endpoint_id: String,
}

#[derive(Deserialize)]
struct ContainerInspect {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Config", default)]
    config: Option<ContainerConfig>,
}

#[derive(Deserialize)]
struct ContainerConfig {
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

/// The container whose endpoint on Docker network `network_id` is `endpoint_id`, or `None`
/// while dockerd does not list it yet (it does once the join has completed).
pub async fn endpoint_container(
    engine: &Path,
    network_id: &str,
    endpoint_id: &str,
) -> Result<Option<ContainerInfo>> {
    let net: NetworkInspect = get(engine, &format!("/networks/{network_id}")).await?;
    let Some(id) = net
        .containers
        .unwrap_or_default()
        .into_iter()
        .find(|(key, c)| c.endpoint_id == endpoint_id && !key.starts_with("ep-"))
        .map(|(key, _)| key)
    else {
        return Ok(None);
    };
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        bail!("dockerd names the container {id:?}");
    }
    let c: ContainerInspect = get(engine, &format!("/containers/{id}/json")).await?;
    let name = c.name.trim_start_matches('/').to_owned();
    let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
    Ok(Some(ContainerInfo { name, labels }))
}

/// One GET to dockerd's API socket, its JSON answer decoded as `T`.
async fn get<T: serde::de::DeserializeOwned>(engine: &Path, path: &str) -> Result<T> {
    let call = async {
        let stream = tokio::net::UnixStream::connect(engine)
            .await
            .with_context(|| format!("connecting to dockerd at {}", engine.display()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let conn = tokio::spawn(conn);
        let req = hyper::Request::get(path).header("host", "docker").body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| anyhow!("reading dockerd's answer to {path}: {e}"))?
            .to_bytes();
        drop(sender);
        conn.abort();
        if !status.is_success() {
            bail!(
                "dockerd answered {path} with {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            );
        }
        serde_json::from_slice(&body).with_context(|| format!("dockerd's answer to {path}"))
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| anyhow!("dockerd did not answer {path} in time"))?
}
