//! One request to the weft daemon's control socket, with failures told apart the way CNI
//! needs them: an unreachable daemon is "try again later", a refusal carries the daemon's
//! reason, anything else is an I/O failure.

use super::error::{self, CniError};
use crate::control::{Request, MAX_REQUEST};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long the daemon may take to answer (an attach creates links and writes its state).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read: a status of a busy node stays far below this.
const MAX_ANSWER: u64 = 16 << 20;

/// Why a request got no successful answer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Nobody listens on the socket.
    #[error("cannot reach the weft daemon at {socket}: {source}")]
    Unreachable {
        /// The socket path.
        socket: String,
        /// The connect error.
        source: std::io::Error,
    },
    /// The daemon answered with an error.
    #[error("{0}")]
    Refused(String),
    /// The exchange broke off or the answer was not understood.
    #[error("talking to the weft daemon: {0}")]
    Broken(String),
}

impl From<LinkError> for CniError {
    fn from(e: LinkError) -> CniError {
        let code = match &e {
            LinkError::Unreachable { .. } => error::TRY_AGAIN_LATER,
            LinkError::Refused(_) => error::DAEMON_REFUSED,
            LinkError::Broken(_) => error::IO_FAILURE,
        };
        CniError::new(code, e.to_string())
    }
}

/// Sends `req` and returns the `data` of a successful answer.
pub fn call(socket: &Path, req: &Request) -> Result<Value, LinkError> {
    let mut s = UnixStream::connect(socket)
        .map_err(|source| LinkError::Unreachable { socket: socket.display().to_string(), source })?;
    let broken = |e: std::io::Error| LinkError::Broken(e.to_string());
    s.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(broken)?;
    s.set_write_timeout(Some(ANSWER_TIMEOUT)).map_err(broken)?;
    let mut line = serde_json::to_vec(req).map_err(|e| LinkError::Broken(e.to_string()))?;
    if line.len() >= MAX_REQUEST {
        return Err(LinkError::Broken("request too large".into()));
    }
    line.push(b'\n');
    s.write_all(&line).map_err(broken)?;
    let mut answer = String::new();
    BufReader::new(s.take(MAX_ANSWER)).read_line(&mut answer).map_err(broken)?;
    let v: Value =
        serde_json::from_str(&answer).map_err(|e| LinkError::Broken(format!("answer is not JSON: {e}")))?;
    if v["ok"] == Value::Bool(true) {
        Ok(v["data"].clone())
    } else {
        Err(LinkError::Refused(v["error"].as_str().unwrap_or("the daemon refused the request").to_owned()))
    }
}
