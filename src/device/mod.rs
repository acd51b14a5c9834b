//! Kernel network devices the daemon owns: multi-queue TAP devices opened through raw
//! `ioctl`s, plus the other syscalls that need `unsafe` (`setns`, `signal` to give the CLI
//! the default `SIGPIPE`, and `getifaddrs` for the host's addresses).
//!
//! This module is the only place in the crate with `unsafe`; every block carries a
//! `// SAFETY:` comment. Interface names are checked with [`validate_ifname`] before they
//! reach the kernel, so a bad name is a typed error rather than an `EINVAL`.

mod addresses;
mod tap;

use std::io;
use std::os::fd::{AsFd, AsRawFd};

pub use addresses::{interface_addresses, InterfaceAddress};
pub use tap::{Tap, VNET_HDR_LEN};

/// MTU of the bridge ports the daemon owns (TAP, host ends of container veths): the largest a
/// TAP takes. The bridge itself and the containers' interfaces carry the overlay MTU.
pub const PORT_MTU: u32 = 65_521;

/// Longest interface name the kernel accepts, in bytes (`IFNAMSIZ - 1`).
pub const IFNAME_MAX_LEN: usize = libc::IFNAMSIZ - 1;

/// Errors from opening or configuring a device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The interface name would be rejected by the kernel.
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: IfNameError,
    },
    /// `open_queues` was asked for zero queues.
    #[error("TAP {name}: at least one queue is needed")]
    NoQueues {
        /// The device name.
        name: String,
    },
    /// Opening the TUN/TAP clone device failed (module not loaded, no permission...).
    #[error("open /dev/net/tun for {name}: {error}")]
    OpenClone {
        /// The device name.
        name: String,
        /// The OS error.
        error: io::Error,
    },
    /// An `ioctl` on a TAP queue failed.
    #[error("{op} on TAP {name}: {error}")]
    Ioctl {
        /// The ioctl, e.g. `TUNSETIFF`.
        op: &'static str,
        /// The device name.
        name: String,
        /// The OS error.
        error: io::Error,
    },
    /// Registering a queue with the tokio reactor failed.
    #[error("register TAP {name} with the tokio reactor: {error}")]
    Register {
        /// The device name.
        name: String,
        /// The OS error.
        error: io::Error,
    },
}

impl DeviceError {
    /// The errno behind this error, if it came from the kernel.
    pub fn os_error(&self) -> Option<i32> {
        match self {
            Self::OpenClone { error, .. } | Self::Ioctl { error, .. } | Self::Register { error, .. } => {
                error.raw_os_error()
            }
            Self::InvalidName { .. } | Self::NoQueues { .. } => None,
        }
    }
}

/// Why an interface name is invalid; mirrors the kernel's `dev_valid_name()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IfNameError {
    /// The name is empty.
    #[error("empty")]
    Empty,
    /// The name is longer than [`IFNAME_MAX_LEN`] bytes.
    #[error("{len} bytes, at most {IFNAME_MAX_LEN} allowed")]
    TooLong {
        /// Length in bytes.
        len: usize,
    },
    /// `.` and `..` are reserved.
    #[error("reserved name")]
    Reserved,
    /// The name contains `/`, `:`, NUL or whitespace.
    #[error("contains forbidden character {0:?}")]
    ForbiddenChar(char),
}

/// Checks `name` against the kernel's rules for interface names.
pub fn validate_ifname(name: &str) -> Result<(), IfNameError> {
    if name.is_empty() {
        return Err(IfNameError::Empty);
    }
    if name.len() > IFNAME_MAX_LEN {
        return Err(IfNameError::TooLong { len: name.len() });
    }
    if name == "." || name == ".." {
        return Err(IfNameError::Reserved);
    }
    match name.chars().find(|&c| c == '/' || c == ':' || c == '\0' || c.is_whitespace()) {
        Some(c) => Err(IfNameError::ForbiddenChar(c)),
        None => Ok(()),
    }
}

/// Sets the nice value of the calling thread only (Linux keeps one per thread); lowering it
/// below the current value needs `CAP_SYS_NICE`.
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    let who = own_tid()?;
    // SAFETY: a syscall without pointers; PRIO_PROCESS with a thread id names that thread.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, who, nice) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn own_tid() -> io::Result<libc::id_t> {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    libc::id_t::try_from(tid).map_err(|_| io::Error::other("negative thread id"))
}

/// Waits up to `timeout_ms` for any of `fds` to become ready for `events` (POLLIN/POLLOUT);
/// returns their `revents`, in order, in `ready`. Zero ready descriptors is a timeout.
pub fn poll(
    fds: &[std::os::fd::RawFd],
    events: i16,
    timeout_ms: i32,
    ready: &mut [i16],
) -> io::Result<usize> {
    const MAX: usize = 16;
    if fds.len() > MAX || ready.len() < fds.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "at most 16 descriptors, and room for each"));
    }
    let mut p = [libc::pollfd { fd: -1, events: 0, revents: 0 }; MAX];
    for (slot, fd) in p.iter_mut().zip(fds) {
        *slot = libc::pollfd { fd: *fd, events, revents: 0 };
    }
    // SAFETY: `p` is an initialised array of at least `fds.len()` pollfd structs that outlives
    // the call; poll only writes their `revents` fields.
    let rc = unsafe { libc::poll(p.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(e) };
    }
    for (r, pfd) in ready.iter_mut().zip(&p[..fds.len()]) {
        *r = pfd.revents;
    }
    Ok(rc as usize)
}

/// Restores the default action of `SIGPIPE` (the Rust runtime ignores it), so that a CLI
/// command writing into a closed pipe (`weft peers | head`) ends quietly, as Unix tools do,
/// instead of panicking on `EPIPE`. Not for the daemon, which must survive a closed socket.
pub fn default_sigpipe() {
    // SAFETY: `signal` with `SIG_DFL` installs no handler code; it is called before any
    // thread is spawned by the CLI.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Moves the *calling thread* into the network namespace referred to by `netns` (an open
/// `/var/run/netns/NAME` or `/proc/PID/ns/net`). Only call this on a thread you own and
/// throw away (or that stays in that namespace): every socket it creates afterwards, and
/// every thread it spawns, lives in the new namespace.
pub fn enter_netns(netns: impl AsFd) -> io::Result<()> {
    let fd = netns.as_fd();
    // SAFETY: setns() takes a plain fd and a flag; `fd` is borrowed and open for the call.
    // It changes only the calling thread's namespace, which touches no Rust-visible memory.
    let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Lets the kernel fragment tunnel datagrams larger than the path MTU instead of refusing
/// them (quinn-udp sets `IP_PMTUDISC_PROBE`, which refuses): datagrams sized for the overlay
/// MTU never need it, but one wrapped for a relay is a little larger, and so is any datagram
/// on an underlay path narrower than the configured MTU. Kernel WireGuard sends its outer
/// packets without DF for the same reasons.
pub fn allow_fragments(udp: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    let fd = udp.as_raw_fd();
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: a valid descriptor and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if udp.local_addr().is_ok_and(|a| a.is_ipv6()) {
        set(libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, libc::IPV6_PMTUDISC_DONT);
        set(libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 0);
    }
    set(libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_DONT);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of the calling thread.
    fn thread_nice() -> io::Result<i32> {
        let who = own_tid()?;
        // SAFETY: errno is this thread's; it is cleared first because -1 is also a nice
        // value, and getpriority takes no pointers.
        unsafe {
            *libc::__errno_location() = 0;
            let n = libc::getpriority(libc::PRIO_PROCESS, who);
            if n == -1 && *libc::__errno_location() != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(n)
        }
    }

    #[test]
    fn a_threads_nice_value_is_its_own() {
        // Raising the value needs no privilege, so this runs as any user.
        let before = thread_nice().unwrap();
        let target = (before + 3).min(19);
        let seen = std::thread::spawn(move || {
            set_thread_nice(target).unwrap();
            thread_nice().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, target);
        assert_eq!(thread_nice().unwrap(), before, "the calling thread keeps its own value");
    }

    #[test]
    fn accepts_ordinary_names() {
        for name in ["eth0", "weft-default", "a", "wd1234567a-tap0", "weft%d", "x.y"] {
            assert_eq!(validate_ifname(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn rejects_empty_and_long() {
        assert_eq!(validate_ifname(""), Err(IfNameError::Empty));
        assert_eq!(validate_ifname(&"a".repeat(15)), Ok(()));
        assert_eq!(validate_ifname(&"a".repeat(16)), Err(IfNameError::TooLong { len: 16 }));
        // Length is in bytes, not chars: 8 two-byte chars is 16 bytes.
        assert_eq!(validate_ifname(&"é".repeat(8)), Err(IfNameError::TooLong { len: 16 }));
    }

    #[test]
    fn rejects_forbidden_chars_and_reserved() {
        assert_eq!(validate_ifname("a/b"), Err(IfNameError::ForbiddenChar('/')));
        assert_eq!(validate_ifname("a:1"), Err(IfNameError::ForbiddenChar(':')));
        assert_eq!(validate_ifname("a\0"), Err(IfNameError::ForbiddenChar('\0')));
        assert_eq!(validate_ifname("a b"), Err(IfNameError::ForbiddenChar(' ')));
        assert_eq!(validate_ifname("a\tb"), Err(IfNameError::ForbiddenChar('\t')));
        assert_eq!(validate_ifname("."), Err(IfNameError::Reserved));
        assert_eq!(validate_ifname(".."), Err(IfNameError::Reserved));
    }

    #[test]
    fn open_rejects_bad_name_before_touching_the_kernel() {
        let err = Tap::open_queues("no/slash", 1).unwrap_err();
        assert!(matches!(err, DeviceError::InvalidName { reason: IfNameError::ForbiddenChar('/'), .. }));
        assert_eq!(err.to_string(), "invalid interface name \"no/slash\": contains forbidden character '/'");
        let err = Tap::open_queues("ok", 0).unwrap_err();
        assert!(matches!(err, DeviceError::NoQueues { .. }));
    }
}
