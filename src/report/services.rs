//! This node's own service instances (`weft service list`, `GET /v1/agent/services`) and the
//! answers of registering and removing them.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

use super::catalog::Health;
use crate::discovery::catalog::{Check, Target};
use crate::discovery::directory::Protocol;
use crate::discovery::registry::Source;

/// One instance defined on this node, with its check's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalService {
    /// Instance id (`name/address:port/protocol`).
    pub id: String,
    /// Service name.
    pub name: String,
    /// Network name.
    pub network: String,
    /// Where it lives, as defined.
    pub target: Target,
    /// The resolved address (none while its container is not attached).
    pub ip: Option<IpAddr>,
    /// Port.
    pub port: u16,
    /// Transport.
    pub protocol: Protocol,
    /// Tags.
    pub tags: Vec<String>,
    /// Its health check, if any.
    pub check: Option<Check>,
    /// Where the definition came from.
    pub source: Source,
    /// Its state.
    pub health: Health,
    /// The last check's failure reason.
    pub output: Option<String>,
}

/// An instance registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAdded {
    /// Its id.
    pub id: String,
}

/// Instances removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicesRemoved {
    /// Their ids.
    pub removed: Vec<String>,
}
