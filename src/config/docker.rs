//! The `[docker]` section: weft as a Docker network and IPAM driver (libnetwork's remote
//! driver protocol on a Unix socket that dockerd finds in its plugin directory).

use super::{file, ConfigError, Ctx};
use std::path::PathBuf;

/// `[docker]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Docker {
    /// Serve the driver (default false).
    pub enable: bool,
    /// The driver's socket; its file name without `.sock` is the driver's name in
    /// `docker network create -d NAME` (default `/run/docker/plugins/weft.sock`).
    pub socket: PathBuf,
    /// dockerd's API socket, asked for a joining container's name and labels (default
    /// `/run/docker.sock`).
    pub engine: PathBuf,
}

impl Default for Docker {
    fn default() -> Self {
        Self {
            enable: false,
            socket: PathBuf::from("/run/docker/plugins/weft.sock"),
            engine: PathBuf::from("/run/docker.sock"),
        }
    }
}

impl Ctx<'_> {
    pub(super) fn docker(&self, d: &file::DockerFile) -> Result<Docker, ConfigError> {
        let mut out = Docker { enable: d.enable.unwrap_or(false), ..Docker::default() };
        if let Some(s) = &d.socket {
            let p = PathBuf::from(s.get_ref());
            let name_ok = p.extension().is_some_and(|e| e == "sock")
                && p.file_stem().and_then(|n| n.to_str()).is_some_and(|n| {
                    !n.is_empty()
                        && n.len() <= 63
                        && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
                });
            if !p.is_absolute() || !name_ok {
                return Err(self.err(
                    s,
                    "docker.socket",
                    "expected an absolute path ending in NAME.sock (NAME: the driver's name, A-Z a-z 0-9 - _)",
                ));
            }
            out.socket = p;
        }
        if let Some(s) = &d.engine {
            let p = PathBuf::from(s.get_ref().trim_start_matches("unix://"));
            if !p.is_absolute() {
                return Err(self.err(
                    s,
                    "docker.engine",
                    "expected the absolute path of dockerd's API socket",
                ));
            }
            out.engine = p;
        }
        Ok(out)
    }
}
