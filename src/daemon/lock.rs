//! One daemon per host network: the locks a daemon (or `weft teardown`) takes before it
//! changes anything, so a second one refuses to start instead of taking over the first one's
//! bridge, TAP, gateway address or UDP port.
//!
//! Two kinds of lock, both released by the kernel when the process dies (so a crash never
//! leaves a stale lock behind):
//! - `state_dir/weft.lock`, an exclusive `flock`: leases and the state directory;
//! - per host-network resource (bridge name, gateway address, UDP port), a listening unix
//!   socket in the *abstract* namespace. Abstract names belong to the network namespace, which
//!   is exactly the scope of a bridge name or a port: daemons in different namespaces (lab
//!   hosts, containers) never collide, two in one namespace always do. The holder answers every
//!   connection with one line saying who it is, so the refusal can name the running daemon.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, Encryption};

/// Name of the lock file inside `state_dir`.
pub const LOCK_FILE: &str = "weft.lock";

/// The locks one daemon holds; dropping it releases them.
pub struct HostLocks {
    _state: File,
    _resources: Vec<ResourceLock>,
}

/// One held abstract-socket lock and the thread that answers "who holds this".
#[derive(Debug)]
struct ResourceLock {
    listener: UnixListener,
    answerer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ResourceLock {
    fn drop(&mut self) {
        // Wakes the answerer's accept with an error; once it has exited and dropped its
        // handle, closing ours frees the name.
        // SAFETY: shutdown(2) on a socket we own; no memory is passed.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.answerer.take() {
            let _ = t.join();
        }
    }
}

/// What a lock is for, as the error message names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Abstract socket name (without the leading NUL).
    pub key: String,
    /// For people: "bridge weft-default", "UDP port 51820".
    pub what: String,
}

/// Every host-network resource `cfg` would use.
pub fn resources(cfg: &Config) -> Vec<Resource> {
    let mut v = Vec::new();
    for n in &cfg.networks {
        v.push(Resource { key: format!("weft/link/{}", n.bridge()), what: format!("bridge {}", n.bridge()) });
        v.push(Resource { key: format!("weft/link/{}", n.tap()), what: format!("TAP {}", n.tap()) });
    }
    let mut ports = vec![cfg.underlay.listen.port()];
    for n in cfg.networks.iter().filter(|n| n.encryption == Encryption::None) {
        ports.push(n.vxlan_port);
    }
    ports.sort_unstable();
    ports.dedup();
    for p in ports {
        v.push(Resource { key: format!("weft/udp/{p}"), what: format!("UDP port {p}") });
    }
    v
}

impl HostLocks {
    /// Takes the state-directory lock and every resource lock of `cfg`, or fails naming the
    /// daemon that holds one. `role` ("daemon", "teardown") is what a refused peer is told.
    /// `extra` are further resources (the gateway addresses, known from the certificate).
    pub fn acquire(cfg: &Config, role: &str, extra: &[Resource]) -> Result<Self> {
        let who = format!("{role} pid {} (config {})", std::process::id(), cfg.path.display());
        let state = lock_state_dir(&cfg.node.state_dir, &who)?;
        let mut held = Vec::new();
        for r in resources(cfg).iter().chain(extra) {
            held.push(lock_resource(r, &who)?);
        }
        Ok(Self { _state: state, _resources: held })
    }
}

/// The lock for a gateway address on this host.
pub fn gateway(ip: std::net::IpAddr) -> Resource {
    Resource { key: format!("weft/gateway/{ip}"), what: format!("gateway address {ip}") }
}

fn lock_state_dir(dir: &Path, who: &str) -> Result<File> {
    if dir.exists() && !dir.is_dir() {
        bail!("node.state_dir {} exists and is not a directory", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating node.state_dir {}", dir.display()))?;
    let path: PathBuf = dir.join(LOCK_FILE);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            bail!(
                "state_dir {} is in use by another weft ({}); stop it first, or give this node its own node.state_dir",
                dir.display(),
                if holder.is_empty() { "unknown process" } else { holder }
            );
        }
        return Err(e).with_context(|| format!("locking {}", path.display()));
    }
    f.set_len(0)?;
    f.rewind()?;
    writeln!(f, "{who}")?;
    Ok(f)
}

fn lock_resource(r: &Resource, who: &str) -> Result<ResourceLock> {
    let addr = UnixAddr::from_abstract_name(r.key.as_bytes())?;
    match UnixListener::bind_addr(&addr) {
        Ok(listener) => {
            let answer = listener.try_clone()?;
            let line = format!("{who}\n");
            // Answers "who holds this" until the lock is dropped.
            let answerer = std::thread::Builder::new().name("weft-lock".into()).spawn(move || {
                for s in answer.incoming() {
                    match s {
                        Ok(mut s) => {
                            let _ = s.write_all(line.as_bytes());
                        }
                        Err(_) => return,
                    }
                }
            })?;
            Ok(ResourceLock { listener, answerer: Some(answerer) })
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            bail!(
                "{} is in use in this network namespace by another weft ({}); stop it first, or give this node another network name or port",
                r.what,
                holder(&addr)
            )
        }
        Err(e) => Err(e).with_context(|| format!("locking {}", r.what)),
    }
}

/// Who holds an abstract lock, as its holder describes itself. Abstract names carry no
/// permissions, so any local process could squat one (as it could squat the UDP port): the
/// kernel's word on the holder's pid and uid is added when it is not root.
fn holder(addr: &UnixAddr) -> String {
    let Ok(mut s) = UnixStream::connect_addr(addr) else {
        return "a process that did not say who it is".to_owned();
    };
    let cred = crate::control::access::peer_cred(std::os::fd::AsFd::as_fd(&s)).ok().map(|c| (c.pid, c.uid));
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 512];
    let said =
        s.read(&mut buf).map(|n| String::from_utf8_lossy(&buf[..n]).trim().to_owned()).unwrap_or_default();
    match cred {
        Some((pid, 0)) if said.is_empty() => format!("pid {pid}, which did not say who it is"),
        Some((_, 0)) => said,
        Some((pid, uid)) => format!("pid {pid} of uid {uid}, not root: not a weft daemon"),
        None if said.is_empty() => "a process that did not say who it is".to_owned(),
        None => said,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_name() {
        let key = format!("weft-test/{}/{:?}", std::process::id(), std::thread::current().id());
        let r = Resource { key, what: "bridge weft-x".into() };
        let first = lock_resource(&r, "daemon pid 1 (config /a.toml)").unwrap();
        let err = lock_resource(&r, "daemon pid 2 (config /b.toml)").unwrap_err().to_string();
        assert!(err.contains("bridge weft-x is in use"), "{err}");
        assert!(err.contains("daemon pid 1 (config /a.toml)"), "{err}");
        drop(first);
        lock_resource(&r, "daemon pid 2 (config /b.toml)").expect("released with its holder");
    }

    #[test]
    fn state_dir_lock_is_exclusive_and_names_the_holder() {
        let dir = std::env::temp_dir().join(format!("weft-lock-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = lock_state_dir(&dir, "daemon pid 7 (config /x.toml)").unwrap();
        let err = lock_state_dir(&dir, "daemon pid 8").unwrap_err().to_string();
        assert!(err.contains("daemon pid 7 (config /x.toml)"), "{err}");
        drop(first);
        lock_state_dir(&dir, "daemon pid 8").expect("released on close");
        let file = dir.join("file");
        std::fs::write(&file, b"").unwrap();
        let err = lock_state_dir(&file, "x").unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
