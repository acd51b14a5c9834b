//! The control API's answers as types: what `weft status`, `weft services`, `weft policy …`,
//! `weft ping`, `weft reload`, attach/detach and the service commands get back. The engine and
//! the control server build these, the CLI deserializes them, `/metrics` renders from
//! [`Status`], the registry API serves them, and the status page reads their JSON. Their JSON
//! field names and value types are the published ones (README, weft(8)); tests pin them.
//!
//! This module depends on no part of the running daemon (engine, data plane, control server,
//! daemon wiring): only on plain data types (policy rules and verdicts, service definitions,
//! the encryption setting) and on `overlay-proto`'s counters.

pub mod catalog;
pub mod containers;
pub mod counters;
pub mod ping;
pub mod policy;
pub mod reload;
pub mod services;
pub mod status;

pub use catalog::{Catalog, CatalogInstance, CatalogNode, Health, ServiceSummary};
pub use containers::{Attached, AttachedAddr, Detached};
pub use counters::{Counters, DataplaneSnapshot, DnsSnapshot, MembershipStats};
pub use ping::{PingFailed, Pong};
pub use policy::{Explain, NetworkPolicy};
pub use reload::{Change, Reloaded};
pub use services::{LocalService, ServiceAdded, ServicesRemoved};
pub use status::{EngineStatus, NetworkRow, PeerStatus, Status};

use serde::{Deserialize, Serialize};

/// An error as `--json` commands print it and the HTTP API answers it: `{"error": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong.
    pub error: String,
}
