//! A resolv.conf for containers attached by netns name: `ip netns exec NAME` (and everything
//! built on it) bind-mounts `/etc/netns/NAME/resolv.conf` over `/etc/resolv.conf`, so writing it
//! points the container at weft's DNS with our search domains (kube-dns style). A file we did
//! not write is never touched.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use tracing::{debug, warn};

const MARKER: &str = "# written by weft";
const ETC_NETNS: &str = "/etc/netns";

/// Search domains for a container: service names first, then containers, then the domain.
pub fn search(domain: &str) -> Vec<String> {
    vec![format!("service.{domain}"), format!("container.{domain}"), domain.to_owned()]
}

fn path_for(netns: &str) -> Option<PathBuf> {
    // Only plain names (as `ip netns` knows them); a path-named netns has no /etc/netns entry.
    let plain = !netns.is_empty() && !netns.contains('/') && netns != "." && netns != "..";
    plain.then(|| Path::new(ETC_NETNS).join(netns).join("resolv.conf"))
}

fn ours(p: &Path) -> bool {
    std::fs::read_to_string(p).map(|t| t.starts_with(MARKER)).unwrap_or(false)
}

/// Writes the file unless one we did not write is there; returns its path when written.
pub fn write(netns: &str, nameserver: IpAddr, domain: &str) -> Option<PathBuf> {
    let p = path_for(netns)?;
    if p.exists() && !ours(&p) {
        debug!(path = %p.display(), "keeping a resolv.conf weft did not write");
        return None;
    }
    let text = format!(
        "{MARKER}; removed at detach\nnameserver {nameserver}\nsearch {}\noptions ndots:1\n",
        search(domain).join(" ")
    );
    let result = p.parent().map(std::fs::create_dir_all).transpose().and_then(|_| std::fs::write(&p, text));
    match result {
        Ok(()) => Some(p),
        Err(e) => {
            warn!(path = %p.display(), %e, "cannot write the container's resolv.conf");
            None
        }
    }
}

/// Removes the file (and its then empty directory) if we wrote it.
pub fn remove(netns: &str) {
    let Some(p) = path_for(netns) else { return };
    if ours(&p) {
        let _ = std::fs::remove_file(&p);
        if let Some(dir) = p.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
