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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsFile {
    pub listen: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MembershipFile {
    #[serde(default)]
    pub seeds: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeFile {
    pub name: Spanned<String>,
    pub key: Spanned<PathBuf>,
    pub cert: Spanned<PathBuf>,
    pub ca: Spanned<PathBuf>,
    pub state_dir: Option<Spanned<PathBuf>>,
    pub control_socket: Option<Spanned<PathBuf>>,
    pub log_level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UnderlayFile {
    pub listen: Option<Spanned<String>>,
    pub advertise: Option<Spanned<String>>,
    pub mtu: Option<Spanned<u32>>,
    pub workers: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkFile {
    pub name: Spanned<String>,
    pub vni: Spanned<u32>,
    pub subnet: Spanned<String>,
    pub mtu: Option<Spanned<u32>>,
    pub encryption: Option<Spanned<String>>,
    pub vxlan_port: Option<Spanned<u16>>,
    #[serde(default)]
    pub remotes: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PeerFile {
    pub endpoint: Spanned<String>,
}
