//! The TOML file as written by people: every table rejects unknown keys, and values that need
//! checking keep their span so errors can name the line.

use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub node: NodeFile,
    #[serde(default)]
    pub underlay: UnderlayFile,
    #[serde(default, rename = "network")]
    pub networks: Vec<NetworkFile>,
    #[serde(default, rename = "peer")]
    pub peers: Vec<Spanned<PeerFile>>,
    #[serde(default)]
    pub membership: MembershipFile,
    #[serde(default)]
    pub metrics: MetricsFile,
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceFile>,
    #[serde(default)]
    pub dns: DnsFile,
    #[serde(default)]
    pub relay: RelayFile,
    #[serde(default)]
    pub docker: DockerFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DockerFile {
    pub enable: Option<bool>,
    pub socket: Option<Spanned<String>>,
    pub engine: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RelayFile {
    pub enable: Option<bool>,
    pub use_relays: Option<bool>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    pub max_mbit: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DnsFile {
    pub enable: Option<bool>,
    pub domain: Option<Spanned<String>>,
    #[serde(default)]
    pub listen: Vec<Spanned<String>>,
    pub ttl: Option<Spanned<u32>>,
    pub upstreams: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServiceFile {
    pub name: Spanned<String>,
    pub network: Option<Spanned<String>>,
    pub container: Option<Spanned<String>>,
    pub address: Option<Spanned<String>>,
    pub port: Spanned<u16>,
    pub protocol: Option<Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<Spanned<String>>,
    pub check: Option<Spanned<CheckFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckFile {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub path: Option<Spanned<String>>,
    pub command: Option<Spanned<Vec<String>>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<u32>>,
    pub fall: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsFile {
    pub listen: Option<Spanned<String>>,
    pub api_token_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub allowed_hosts: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MembershipFile {
    #[serde(default)]
    pub seeds: Vec<Spanned<String>>,
    pub max_members: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeFile {
    pub name: Spanned<String>,
    pub key: Spanned<PathBuf>,
    pub cert: Spanned<PathBuf>,
    pub ca: Spanned<OneOrMany>,
    pub state_dir: Option<Spanned<PathBuf>>,
    pub control_socket: Option<Spanned<PathBuf>>,
    pub control_group: Option<Spanned<String>>,
    pub log_level: Option<Spanned<String>>,
    pub revocations: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UnderlayFile {
    pub listen: Option<Spanned<String>>,
    pub advertise: Option<Spanned<String>>,
    pub mtu: Option<Spanned<u32>>,
    pub workers: Option<Spanned<usize>>,
    pub offload: Option<bool>,
    pub busy_poll_us: Option<Spanned<u32>>,
    pub worker_nice: Option<Spanned<i32>>,
    pub cipher: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkFile {
    pub name: Spanned<String>,
    pub vni: Spanned<u32>,
    pub subnet: Spanned<SubnetFile>,
    pub mtu: Option<Spanned<u32>>,
    pub encryption: Option<Spanned<String>>,
    pub vxlan_port: Option<Spanned<u16>>,
    #[serde(default)]
    pub remotes: Vec<Spanned<String>>,
    pub remote_checksum: Option<Spanned<bool>>,
    pub policy: Option<crate::policy::PolicyFile>,
}

/// `network.subnet`: one CIDR, or a list of them (one per IP family: dual stack).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum SubnetFile {
    One(String),
    List(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PeerFile {
    pub endpoint: Spanned<String>,
}

/// A path, or a list of paths (`node.ca`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(PathBuf),
    Many(Vec<PathBuf>),
}
