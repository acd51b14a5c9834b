//! Send batching: sealed datagrams are built back to back in one arena, and a run of
//! datagrams to the same destination with the same size (the last may be shorter) leaves in
//! one `sendmsg` with UDP GSO (`quinn-udp`). The kernel segments it; the far end's GRO merges
//! it again, so a bulk flow costs a few syscalls per 64 KiB instead of one per packet.

use std::net::SocketAddr;

/// Arena size: room for a full batch and a maximum-size slot after it.
pub const ARENA_LEN: usize = 4 * 65_536;
/// Bytes one batch may hold (a GSO send is one UDP "datagram" of at most 64 KiB).
const MAX_BATCH_BYTES: usize = 65_000;

/// Which of a worker's sockets a run leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sock {
    /// The tunnel socket (encrypted sessions).
    Tunnel = 0,
    /// The plain VXLAN socket.
    Vxlan = 1,
}

/// A run of datagrams waiting to be sent together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Socket.
    pub sock: Sock,
    /// Destination.
    pub dst: SocketAddr,
    /// Arena range of the datagrams.
    pub start: usize,
    /// End of the range.
    pub end: usize,
    /// Segment size (every datagram but the last has exactly this length).
    pub seg: usize,
    /// Number of datagrams.
    pub count: usize,
}

/// The arena bookkeeping (the bytes live in the worker, so sealing can borrow them).
#[derive(Debug, Default)]
pub struct Batch {
    run: Option<Run>,
    closed: bool,
}

/// What [`Batch::add`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// Joined the pending run.
    Joined,
    /// Could not join: send this (older) run first; the new datagram starts a new run.
    Flush(Run),
    /// Started a new run (nothing was pending).
    Started,
}

impl Batch {
    /// Where the next datagram should be built in the arena (`slot_len` bytes must fit).
    pub fn tail(&self, slot_len: usize) -> Option<usize> {
        let tail = self.run.map_or(0, |r| r.end);
        (tail + slot_len <= ARENA_LEN).then_some(tail)
    }

    /// Records a datagram of `len` bytes built at `at` (the value `tail` returned) for `dst`,
    /// to leave from `sock`.
    pub fn add(&mut self, at: usize, len: usize, sock: Sock, dst: SocketAddr, max_segments: usize) -> Added {
        if let Some(r) = self.run.as_mut() {
            let fits = r.dst == dst
                && r.sock == sock
                && !self.closed
                && at == r.end
                && len <= r.seg
                && r.count < max_segments
                && r.end - r.start + len <= MAX_BATCH_BYTES;
            if fits {
                r.end += len;
                r.count += 1;
                // A shorter datagram must be the last of its run.
                self.closed = len < r.seg;
                return Added::Joined;
            }
        }
        let old = self.run.replace(Run { sock, dst, start: at, end: at + len, seg: len, count: 1 });
        self.closed = false;
        match old {
            Some(o) => Added::Flush(o),
            None => Added::Started,
        }
    }

    /// Takes the pending run, leaving the batch empty (the arena is reused from its start).
    pub fn take(&mut self) -> Option<Run> {
        self.closed = false;
        self.run.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const T: Sock = Sock::Tunnel;

    #[test]
    fn runs_join_by_destination_and_size() {
        let (a, b): (SocketAddr, SocketAddr) = ("10.0.0.1:1".parse().unwrap(), "10.0.0.2:1".parse().unwrap());
        let mut batch = Batch::default();
        assert_eq!(batch.tail(100), Some(0));
        assert_eq!(batch.add(0, 100, T, a, 64), Added::Started);
        assert_eq!(batch.tail(100), Some(100));
        assert_eq!(batch.add(100, 100, T, a, 64), Added::Joined);
        assert_eq!(batch.add(200, 60, T, a, 64), Added::Joined, "a shorter last datagram joins");
        let flushed = batch.add(260, 100, T, a, 64);
        assert_eq!(flushed, Added::Flush(Run { sock: T, dst: a, start: 0, end: 260, seg: 100, count: 3 }));
        assert_eq!(
            batch.add(360, 100, T, b, 64),
            Added::Flush(Run { sock: T, dst: a, start: 260, end: 360, seg: 100, count: 1 })
        );
        assert_eq!(batch.take(), Some(Run { sock: T, dst: b, start: 360, end: 460, seg: 100, count: 1 }));
        assert_eq!(batch.tail(100), Some(0));
        // Same destination, other socket: a new run.
        batch.add(0, 100, T, a, 64);
        assert!(matches!(batch.add(100, 100, Sock::Vxlan, a, 64), Added::Flush(r) if r.sock == T));
    }

    #[test]
    fn respects_segment_and_byte_limits() {
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut batch = Batch::default();
        batch.add(0, 1000, T, a, 2);
        assert_eq!(batch.add(1000, 1000, T, a, 2), Added::Joined);
        assert!(matches!(batch.add(2000, 1000, T, a, 2), Added::Flush(r) if r.count == 2));
        let mut batch = Batch::default();
        let mut at = 0;
        let mut flushes = 0;
        for _ in 0..100 {
            if let Added::Flush(r) = batch.add(at, 1500, T, a, 64) {
                assert!(r.end - r.start <= MAX_BATCH_BYTES);
                flushes += 1;
            }
            at += 1500;
        }
        assert!(flushes >= 2);
    }
}
