//! CNI errors: a spec error code with a message, printed as the error result on stdout.
//! Codes below 100 are the spec's well-known ones; 100 and up are weft's own.

use serde_json::{json, Value};
use std::fmt;

/// Incompatible CNI version.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// Unsupported field in the network configuration.
pub const UNSUPPORTED_FIELD: u32 = 2;
/// Container unknown or does not exist.
pub const UNKNOWN_CONTAINER: u32 = 3;
/// Invalid necessary environment variable.
pub const INVALID_ENV: u32 = 4;
/// I/O failure.
pub const IO_FAILURE: u32 = 5;
/// Failed to decode content.
pub const DECODE: u32 = 6;
/// Invalid network config.
pub const INVALID_CONFIG: u32 = 7;
/// Try again later: the daemon is not reachable.
pub const TRY_AGAIN_LATER: u32 = 11;
/// weft: the daemon refused the request (its message says why).
pub const DAEMON_REFUSED: u32 = 100;
/// weft: CHECK found the container attached, but not as the previous result says.
pub const CHECK_MISMATCH: u32 = 101;

/// A failed CNI operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// Spec error code.
    pub code: u32,
    /// Short message.
    pub msg: String,
    /// Longer explanation, possibly empty.
    pub details: String,
}

impl CniError {
    /// An error with `code` and `msg` and no details.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError { code, msg: msg.into(), details: String::new() }
    }

    /// Adds details.
    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The error result the spec prescribes, for `version` as requested.
    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({"cniVersion": version, "code": self.code, "msg": self.msg});
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}
