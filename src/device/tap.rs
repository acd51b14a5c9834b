//! A multi-queue TAP device, one [`Tap`] per queue, opened with raw `ioctl`s on
//! `/dev/net/tun`.
//!
//! Invariants: every queue is opened `O_NONBLOCK | O_CLOEXEC` with
//! `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE` and a virtio-net header of exactly
//! [`VNET_HDR_LEN`] bytes, so every frame read or written starts with that header. The
//! device is never made persistent: it disappears when its last queue is closed, so a
//! crashed daemon leaves no TAP behind.

use std::ffi::CStr;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use tokio::io::unix::AsyncFd;

use super::{validate_ifname, DeviceError};

/// Size of `struct virtio_net_hdr`, which prefixes every frame read from or written to a
/// queue because it is opened with `IFF_VNET_HDR`.
pub const VNET_HDR_LEN: usize = 10;

/// One queue of a TAP device.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

impl Tap {
    /// Opens `n` queues of the TAP device `name` (created if missing) with
    /// `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE`, each fd `O_NONBLOCK |
    /// O_CLOEXEC`. Not persistent: the device disappears when the last queue closes.
    /// Offloads are left as the device has them (none for a new device); see
    /// [`Tap::set_offload`].
    pub fn open_queues(name: &str, n: usize) -> Result<Vec<Tap>, DeviceError> {
        validate_ifname(name).map_err(|reason| DeviceError::InvalidName { name: name.to_owned(), reason })?;
        if n == 0 {
            return Err(DeviceError::NoQueues { name: name.to_owned() });
        }
        let mut queues = Vec::with_capacity(n);
        // The kernel may rewrite the name (e.g. a `%d` template); later queues must attach
        // to the device the first one created, so they use the name it reported.
        let mut actual = name.to_owned();
        for _ in 0..n {
            let tap = Self::open_queue(&actual)?;
            actual.clone_from(&tap.name);
            queues.push(tap);
        }
        Ok(queues)
    }

    /// The interface name, as the kernel reported it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `TUNSETOFFLOAD` with the given `TUN_F_*` flags (0 = no offloads). Applies to the
    /// whole device, whichever queue it is called on.
    pub fn set_offload(&self, flags: u32) -> Result<(), DeviceError> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long), not a
        // pointer; the fd is open for the lifetime of `self`.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TUNSETOFFLOAD, libc::c_ulong::from(flags)) };
        self.check(rc, "TUNSETOFFLOAD")
    }

    /// Reads one frame, [`VNET_HDR_LEN`]-byte header included, into `buf`; returns its
    /// length. `io::ErrorKind::WouldBlock` when the queue is empty. Size `buf` for
    /// `VNET_HDR_LEN` + 14 (Ethernet) + 4 (VLAN tag) + MTU, or frames are truncated.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a valid, writable region of `buf.len()` bytes for the duration
        // of the call, and the fd is open for the lifetime of `self`.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Reads one frame scattered over `iov` (in order; the first slice starts with the
    /// [`VNET_HDR_LEN`]-byte header); returns its length. `io::ErrorKind::WouldBlock` when
    /// the queue is empty.
    pub fn recv_vectored(&self, iov: &mut [std::io::IoSliceMut<'_>]) -> io::Result<usize> {
        let count =
            libc::c_int::try_from(iov.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `IoSliceMut` is guaranteed ABI-compatible with `struct iovec` on Unix; every
        // slice it points to is valid and writable for the duration of the call, and the fd
        // is open for the lifetime of `self`.
        let n = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr().cast(), count) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Writes one frame; `buf` starts with a [`VNET_HDR_LEN`]-byte header (all zeroes = no
    /// offload). Returns the bytes written, header included.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a valid, readable region of `buf.len()` bytes for the duration
        // of the call, and the fd is open for the lifetime of `self`.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Writes one frame gathered from `iov` (the first slice starts with the
    /// [`VNET_HDR_LEN`]-byte header). Returns the bytes written.
    pub fn send_vectored(&self, iov: &[std::io::IoSlice<'_>]) -> io::Result<usize> {
        let count =
            libc::c_int::try_from(iov.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `IoSlice` is guaranteed ABI-compatible with `struct iovec` on Unix; every
        // slice it points to is valid and readable for the duration of the call, and the fd
        // is open for the lifetime of `self`.
        let n = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr().cast(), count) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Registers this queue with the current tokio runtime's reactor (read and write
    /// readiness). Must be called within a tokio runtime.
    pub fn into_async(self) -> Result<AsyncFd<Tap>, DeviceError> {
        // SAFETY: `Tap` owns its fd through an `OwnedFd` that it never replaces or closes
        // while alive, so the fd stays valid for as long as the `AsyncFd` owns the `Tap`.
        let registered = unsafe { AsyncFd::register(self) };
        registered.map_err(|e| {
            let (tap, error) = e.into_parts();
            DeviceError::Register { name: tap.name.clone(), error }
        })
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Tap {
    fn open_queue(name: &str) -> Result<Tap, DeviceError> {
        // std opens with O_CLOEXEC already.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")
            .map_err(|error| DeviceError::OpenClone { name: name.to_owned(), error })?;
        let fd = OwnedFd::from(file);

        let mut ifr = ifreq_for(name);
        ifr.ifr_ifru.ifru_flags =
            (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`; `ifr` is a valid,
        // exclusively borrowed ifreq with a NUL-terminated name, alive across the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &raw mut ifr) };
        let mut tap = Tap { fd, name: name.to_owned() };
        tap.check(rc, "TUNSETIFF")?;
        // SAFETY: `ifr_name` is a zero-initialised IFNAMSIZ array of which at most
        // IFNAMSIZ-1 bytes were written (by us or by the kernel), so it holds a NUL.
        let kernel_name = unsafe { CStr::from_ptr(ifr.ifr_name.as_ptr()) };
        tap.name = kernel_name.to_string_lossy().into_owned();

        let hdr_len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer; `hdr_len` lives
        // across the call.
        let rc = unsafe { libc::ioctl(tap.fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &raw const hdr_len) };
        tap.check(rc, "TUNSETVNETHDRSZ")?;
        Ok(tap)
    }

    fn check(&self, rc: libc::c_int, op: &'static str) -> Result<(), DeviceError> {
        if rc < 0 {
            Err(DeviceError::Ioctl { op, name: self.name.clone(), error: io::Error::last_os_error() })
        } else {
            Ok(())
        }
    }
}

/// A zeroed `ifreq` carrying `name`, which must already have passed `validate_ifname`.
fn ifreq_for(name: &str) -> libc::ifreq {
    // SAFETY: `ifreq` is plain old data (char arrays and a union of integers, sockaddrs
    // and a raw pointer), for which all-zero bytes are a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    ifr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_name_is_nul_terminated() {
        let ifr = ifreq_for("abcdefghijklmno");
        assert_eq!(ifr.ifr_name[14], b'o' as libc::c_char);
        assert_eq!(ifr.ifr_name[15], 0);
    }
}
