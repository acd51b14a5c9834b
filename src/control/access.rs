//! Who may use the control socket, and the socket file itself.
//!
//! Invariants:
//! - the socket file never exists at its path with a mode wider than 0600 (0660 owned by
//!   `node.control_group` when that is set): it is bound inside a fresh 0700 directory, given
//!   its mode and group there, and renamed into place — no chmod after the fact, no window, no
//!   process-wide umask to race with other threads;
//! - every connection is checked again against the kernel's word on its peer (SO_PEERCRED and
//!   SO_PEERGROUPS, fixed at connect time): root, or a member of the control group. File
//!   permissions alone would do as long as nobody loosens them; this check keeps a chmod
//!   mistake, or the socket bind-mounted into a container, from handing the daemon (attach,
//!   command checks, reload) to every local user. A refused peer gets one line saying why.

use anyhow::{bail, Context, Result};
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::ControlGroup;

/// The kernel's word on the process at the other end of a unix stream socket, as of connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCred {
    /// Its pid.
    pub pid: i32,
    /// Its effective uid.
    pub uid: u32,
    /// Its effective gid.
    pub gid: u32,
    /// Its supplementary groups (empty where the kernel cannot tell, before Linux 4.13).
    pub groups: Vec<u32>,
}

/// Who may use the control socket: root, and the members of `node.control_group` if set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlAccess {
    group: Option<ControlGroup>,
}

impl ControlAccess {
    /// Root alone, or root and the members of `group`.
    pub fn new(group: Option<ControlGroup>) -> Self {
        Self { group }
    }

    /// The socket file's mode: 0600, or 0660 with a control group.
    pub fn mode(&self) -> u32 {
        if self.group.is_some() {
            0o660
        } else {
            0o600
        }
    }

    /// Admits `peer` if it is root or a member (primary or supplementary) of the control
    /// group; otherwise the one-line reason it is told.
    pub fn admits(&self, peer: &PeerCred) -> Result<(), String> {
        if peer.uid == 0 {
            return Ok(());
        }
        let who = match &self.group {
            Some(g) if peer.gid == g.gid || peer.groups.contains(&g.gid) => return Ok(()),
            Some(g) => format!("root and members of group {:?} (node.control_group)", g.name),
            None => "root (node.control_group is not set)".to_owned(),
        };
        Err(format!("uid {} may not use the weft control socket: only {who} may", peer.uid))
    }
}

/// Reads the credentials of the peer of the unix stream socket `fd`.
pub fn peer_cred(fd: BorrowedFd<'_>) -> std::io::Result<PeerCred> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a ucred we own.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(PeerCred { pid: cred.pid, uid: cred.uid, gid: cred.gid, groups: peer_groups(fd) })
}

/// SO_PEERGROUPS (Linux 4.13): not in the `libc` crate; its value is per architecture.
#[cfg(target_arch = "sparc64")]
const SO_PEERGROUPS: libc::c_int = 0x3d;
#[cfg(not(target_arch = "sparc64"))]
const SO_PEERGROUPS: libc::c_int = 59;

/// The peer's supplementary groups; empty if the kernel does not say.
fn peer_groups(fd: BorrowedFd<'_>) -> Vec<u32> {
    // NGROUPS_MAX is 65536; start small and grow to what the kernel asks for.
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    for _ in 0..2 {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `groups`' buffer, which holds
        // exactly that many; on ERANGE it writes only the size it needs into `len`.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n);
            return groups;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) || n <= groups.len() {
            break;
        }
        groups.resize(n.min(65_536), 0);
    }
    Vec::new()
}

/// The gid of group `name` in the host's group database (`getgrnam_r`, so NSS groups too);
/// `None` if there is no such group.
pub fn group_id(name: &str) -> std::io::Result<Option<u32>> {
    let Ok(cname) = CString::new(name) else { return Ok(None) };
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: an all-zero `group` is a valid value of a C struct of integers and pointers.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: `cname` is NUL-terminated, `grp` and
        // `found` are ours, `buf` holds `buf.len()` bytes for the strings getgrnam_r stores.
        let r = unsafe {
            libc::getgrnam_r(cname.as_ptr(), &mut grp, buf.as_mut_ptr().cast(), buf.len(), &mut found)
        };
        match r {
            0 if found.is_null() => return Ok(None),
            0 => return Ok(Some(grp.gr_gid)),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            // Some NSS modules answer "not found" with these instead of 0 and no entry.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => return Err(std::io::Error::from_raw_os_error(e)),
        }
    }
}

/// Creates the control socket at `path` with [`ControlAccess::mode`] (and the control group),
/// replacing a stale socket; refuses while another daemon answers there. The socket is bound
/// in a fresh 0700 directory beside `path` and renamed into place, so at `path` it is never
/// wider than its final mode.
pub fn bind(path: &Path, access: &ControlAccess) -> Result<tokio::net::UnixListener> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if path.symlink_metadata().is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another daemon is already listening on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let private = PrivateDir::create(dir)?;
    let staged = private.0.join("s");
    let listener = std::os::unix::net::UnixListener::bind(&staged)
        .with_context(|| format!("binding the control socket in {}", private.0.display()))?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(access.mode()))
        .with_context(|| format!("setting the mode of {}", staged.display()))?;
    if let Some(g) = &access.group {
        std::os::unix::fs::chown(&staged, None, Some(g.gid)).with_context(|| {
            format!("giving {} to group {:?} (node.control_group)", path.display(), g.name)
        })?;
    }
    std::fs::rename(&staged, path)
        .with_context(|| format!("moving the control socket to {}", path.display()))?;
    if let Some(g) = &access.group {
        warn_if_unreachable(dir, g);
    }
    listener.set_nonblocking(true)?;
    Ok(tokio::net::UnixListener::from_std(listener)?)
}

/// Warns when the control group's members cannot even reach the socket: its directory (e.g.
/// a 0700 `/run/weft`) lets neither that group nor everyone search it.
fn warn_if_unreachable(dir: &Path, g: &ControlGroup) {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(dir) else { return };
    let searchable = m.mode() & 0o001 != 0 || (m.mode() & 0o010 != 0 && m.gid() == g.gid);
    if !searchable {
        tracing::warn!(
            "members of group {:?} (node.control_group) cannot reach the control socket: its directory {} \
             has mode {:04o}; let them search it (chmod 0755, or chgrp {} and chmod 0750)",
            g.name,
            dir.display(),
            m.mode() & 0o7777,
            g.name
        );
    }
}

/// A fresh directory only its owner may enter, removed (with what is left in it) on drop.
struct PrivateDir(PathBuf);

impl PrivateDir {
    /// A new 0700 directory in `parent` under a random name (never one that exists already:
    /// whoever made that could have made it reachable).
    fn create(parent: &Path) -> Result<Self> {
        let mut last = None;
        for _ in 0..4 {
            let r = crate::pki::random32();
            let name = format!(".weft-{:02x}{:02x}{:02x}{:02x}", r[0], r[1], r[2], r[3]);
            let dir = parent.join(name);
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(Self(dir)),
                Err(e) => last = Some(e),
            }
        }
        let e = last.expect("tried at least once");
        Err(e).with_context(|| format!("creating a private directory in {}", parent.display()))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0.join("s"));
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use std::sync::Arc;

    fn cred(uid: u32, gid: u32, groups: &[u32]) -> PeerCred {
        PeerCred { pid: 4242, uid, gid, groups: groups.to_vec() }
    }

    fn group(gid: u32) -> Option<ControlGroup> {
        Some(ControlGroup { name: "weft".into(), gid })
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(what: &str) -> Self {
            let d = std::env::temp_dir().join(format!("weft-access-{what}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Self(d)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn rogue_uid_outside_root_and_the_control_group_is_refused() {
        let root_only = ControlAccess::new(None);
        assert_eq!(root_only.admits(&cred(0, 0, &[])), Ok(()));
        let e = root_only.admits(&cred(65534, 65534, &[990])).unwrap_err();
        assert_eq!(
            e,
            "uid 65534 may not use the weft control socket: only root (node.control_group is not set) may"
        );
        let with_group = ControlAccess::new(group(990));
        assert_eq!(with_group.admits(&cred(1000, 990, &[])), Ok(()), "primary group");
        assert_eq!(with_group.admits(&cred(1000, 1000, &[4, 990])), Ok(()), "supplementary group");
        let e = with_group.admits(&cred(1000, 1000, &[4, 24])).unwrap_err();
        assert!(e.contains("only root and members of group \"weft\" (node.control_group)"), "{e}");
        assert!(!e.contains('\n'));
        assert!(with_group.admits(&cred(990, 1000, &[])).is_err(), "a uid equal to the gid is not a member");
    }

    #[test]
    fn peer_credentials_are_the_kernels_word() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let c = peer_cred(a.as_fd()).unwrap();
        // SAFETY: these read our own ids and cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        assert_eq!((c.pid, c.uid, c.gid), (std::process::id() as i32, uid, gid));
        // SAFETY: getgroups with size 0 only returns the count.
        let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
        assert_eq!(c.groups.len(), n as usize, "{c:?}");
    }

    #[test]
    fn group_lookup() {
        assert_eq!(group_id("root").unwrap(), Some(0));
        assert_eq!(group_id("weft-no-such-group-x").unwrap(), None);
        assert_eq!(group_id("a\0b").unwrap(), None);
    }

    /// Binds many times while another thread stats the path as fast as it can: not once may it
    /// see the socket with more than its final mode (the old bind-then-chmod had a window).
    fn never_wider(access: ControlAccess, want_gid: Option<u32>, what: &str) {
        let dir = TempDir::new(what);
        let path = dir.0.join("weft.sock");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (path, stop) = (path.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut seen = std::collections::BTreeSet::new();
                while !stop.load(Relaxed) {
                    if let Ok(m) = std::fs::symlink_metadata(&path) {
                        seen.insert((m.mode() & 0o7777, m.gid()));
                    }
                }
                seen
            })
        };
        for _ in 0..1000 {
            let l = rt.block_on(async { bind(&path, &access) }).unwrap();
            drop(l);
            std::fs::remove_file(&path).unwrap();
        }
        stop.store(true, Relaxed);
        let seen = watcher.join().unwrap();
        assert!(!seen.is_empty(), "the watcher never saw the socket");
        // SAFETY: reads our own gid.
        let gid = want_gid.unwrap_or_else(|| unsafe { libc::getegid() });
        let shown: Vec<String> = seen.iter().map(|(m, g)| format!("{m:04o} gid {g}")).collect();
        assert_eq!(
            shown,
            [format!("{:04o} gid {gid}", access.mode())],
            "modes and groups the socket was seen with"
        );
        assert!(std::fs::read_dir(&dir.0).unwrap().next().is_none(), "no private directory is left behind");
    }

    #[test]
    fn rogue_watcher_never_sees_the_control_socket_wider_than_0600() {
        never_wider(ControlAccess::new(None), None, "0600");
    }

    #[test]
    fn rogue_watcher_never_sees_a_group_socket_wider_than_0660() {
        // As root the socket goes to another group (nogroup's gid); otherwise to our own.
        // SAFETY: reads our own ids.
        let gid = if unsafe { libc::geteuid() } == 0 { 65534 } else { unsafe { libc::getegid() } };
        never_wider(ControlAccess::new(group(gid)), Some(gid), "0660");
    }

    #[test]
    fn a_live_socket_is_not_taken_over_and_a_stale_one_is_replaced() {
        let dir = TempDir::new("live");
        let path = dir.0.join("weft.sock");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let first = rt.block_on(async { bind(&path, &ControlAccess::default()) }).unwrap();
        let e = rt.block_on(async { bind(&path, &ControlAccess::default()) }).unwrap_err().to_string();
        assert!(e.contains("another daemon is already listening"), "{e}");
        drop(first);
        let _second = rt.block_on(async { bind(&path, &ControlAccess::default()) }).unwrap();
        std::os::unix::net::UnixStream::connect(&path).expect("the renamed socket answers at its path");
    }
}
