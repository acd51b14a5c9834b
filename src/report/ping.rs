//! The answer of `weft ping`: one overlay probe's round trip.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// A probe answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    /// The member as it was asked for.
    pub peer: String,
    /// Its underlay endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Round trip through its session, in milliseconds.
    pub rtt_ms: f64,
}

/// A probe that failed, as `weft ping --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingFailed {
    /// The member as it was asked for.
    pub peer: String,
    /// Why.
    pub error: String,
}
