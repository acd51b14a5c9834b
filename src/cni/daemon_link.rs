//! One request to the weft daemon's control socket, with failures told apart the way CNI
//! needs them: an unreachable daemon is "try again later", a refusal carries the daemon's
//! reason, an answer that is not the expected [`crate::report`] type cannot be decoded,
//! anything else is an I/O failure.

use super::error::{self, CniError};
use crate::control::{Request, Response, MAX_REQUEST};
use serde::de::DeserializeOwned;
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
    /// The exchange broke off.
    #[error("talking to the weft daemon: {0}")]
    Broken(String),
    /// The answer is not the JSON this plugin expects.
    #[error("the weft daemon's answer is not understood: {0}")]
    Undecodable(String),
}

impl From<LinkError> for CniError {
    fn from(e: LinkError) -> CniError {
        let code = match &e {
            LinkError::Unreachable { .. } => error::TRY_AGAIN_LATER,
            LinkError::Refused(_) => error::DAEMON_REFUSED,
            LinkError::Broken(_) => error::IO_FAILURE,
            LinkError::Undecodable(_) => error::DECODE,
        };
        CniError::new(code, e.to_string())
    }
}

/// Sends `req` and returns the `data` of a successful answer as `T`.
pub fn call<T: DeserializeOwned>(socket: &Path, req: &Request) -> Result<T, LinkError> {
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
    if answer.is_empty() {
        return Err(LinkError::Broken("the daemon closed the connection without an answer".into()));
    }
    let r: Response<T> = serde_json::from_str(&answer).map_err(|e| LinkError::Undecodable(e.to_string()))?;
    match (r.ok, r.data) {
        (true, Some(data)) => Ok(data),
        (true, None) => Err(LinkError::Undecodable("no data".into())),
        (false, _) => {
            Err(LinkError::Refused(r.error.unwrap_or_else(|| "the daemon refused the request".to_owned())))
        }
    }
}
