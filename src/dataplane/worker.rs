//! One data-plane worker: a poll loop over its UDP socket(s) and its queue of each network's
//! TAP. Frames are read straight into the send arena at the offset where they are sealed in
//! place, and runs of datagrams to one peer leave in one GSO send ([`super::batch`]); received
//! datagrams arrive in batches (recvmmsg, GRO) and are opened in place. A frame is copied only
//! when it is replicated to several peers or handed to the engine.
//!
//! Pre-auth work is bounded here, before the engine: datagrams of unknown type, oversized
//! handshakes and transport data on unknown sessions from non-members are dropped and counted;
//! handshakes (and, from members, unknown-session notices without the datagram) go to the
//! engine's pre-auth lane, rate-limited per source address ([`super::preauth`]).
//!
//! Slot layout (encrypted): `[transport header 16][inner header 4][frame][tag 16]`; plain
//! VXLAN: `[VXLAN header 8][frame]`. A frame is read from the TAP straight into its slot, and
//! a TSO superframe pre-segmented into one slot per segment, so only the segments' headers
//! are written in userspace ([`super::scatter`]); one forwarding decision serves all the
//! segments of a superframe.

use overlay_proto::consts::{INNER_HEADER_LEN, MAX_DATAGRAM_LEN, TAG_LEN, TRANSPORT_HEADER_LEN};
use overlay_proto::wire::{
    Inner, MessageType, Rco, TransportHeader, VxlanHeader, COOKIE_REPLY_LEN, MAX_HANDSHAKE_LEN,
    VXLAN_HEADER_LEN,
};
use overlay_proto::{Features, PeerId, SealError};
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use super::batch::{Added, Batch, Run, Sock, ARENA_LEN};
use super::offload::{self, Gro, Tso, VnetHdr};
use super::preauth::PreauthLimiter;
use super::scatter::{self, Layout, MAX_IOV};
use super::spin::Spin;
use super::tables::{Loc, Tables};
use super::{filter, frame, source_guard};
use super::{inc, EngineMsg, Shared};
use crate::config::Encryption;
use crate::device::{self, VNET_HDR_LEN};
use crate::packet::ethernet;
use crate::plane::{NetId, PerNet};
use crate::policy::Direction;

const FRAME_AT: usize = TRANSPORT_HEADER_LEN + INNER_HEADER_LEN;
/// Room one datagram needs in the arena.
const SLOT_LEN: usize = MAX_DATAGRAM_LEN + 64;
/// Frames read from one TAP queue before yielding to the other descriptors.
const TAP_BATCH: usize = 64;
/// Receive buffers per recvmmsg call (each may hold several GRO-merged datagrams).
const RX_BATCH: usize = 16;
/// Rounds of recvmmsg before yielding.
const RX_ROUNDS: usize = 8;
/// Most peers one broadcast is replicated to (head-end replication is O(peers)).
pub const MAX_FLOOD: usize = 1024;
/// How long a send waits for socket buffer space before dropping (milliseconds).
const SEND_WAIT_MS: i32 = 20;
/// How often GSO may be probed again after quinn-udp switched it off (see `restore_gso`).
/// (quinn-udp logs each switch-off, so this also bounds that log to one line per 5 s.)
const GSO_REPROBE: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a frame from our bridge goes ([`Worker::route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Nowhere: handled here (ARP suppressed, local destination) or dropped (counted).
    Drop,
    /// To a peer, sealed.
    Peer(PeerId),
    /// To a plain VXLAN endpoint.
    Vtep(SocketAddr),
    /// To every peer (broadcast, multicast, unknown unicast), sealed.
    Flood,
    /// To every configured VXLAN remote.
    FloodVxlan,
}

struct Worker {
    shared: Arc<Shared>,
    index: usize,
    udp: UdpSocket,
    state: UdpSocketState,
    vxlan: Option<(UdpSocket, UdpSocketState)>,
    arena: Vec<u8>,
    batch: Batch,
    rx: Vec<Vec<u8>>,
    meta: [RecvMeta; RX_BATCH],
    scratch: Vec<u8>,
    /// Where a read from a TAP spills when it does not fit its arena layout, and where a
    /// frame is gathered when it must be copied (a superframe is up to 64 KiB).
    sframe: Vec<u8>,
    /// Header length and MSS of the last TSO superframe: the next read is laid out for it.
    tso_guess: Option<(usize, usize)>,
    gro: Gro,
    /// The time, read once per batch (session timers count in seconds).
    now: Instant,
    /// Per socket (`Sock as usize`): quinn-udp turned GSO off after an error that was not
    /// GSO's; see [`Worker::restore_gso`].
    gso_lost: [bool; 2],
    /// When GSO was last probed again.
    gso_probed: Option<Instant>,
    /// Per-source budget for the engine's pre-auth lane.
    preauth: PreauthLimiter,
}

/// Runs worker `index` until `shared.stop` is set.
pub fn run_worker(shared: Arc<Shared>, index: usize, udp: UdpSocket, vxlan: Option<UdpSocket>) {
    // A worker with packets to move should run ahead of the bulk senders whose packets it
    // moves (README "Worker priority"); without the privilege it runs at the inherited value.
    if let Err(e) = device::set_thread_nice(shared.worker_nice) {
        tracing::warn!(
            worker = index,
            nice = shared.worker_nice,
            %e,
            "cannot set the data-plane thread's nice value (needs CAP_SYS_NICE); set [underlay] worker_nice = 0 to run at the default priority"
        );
    }
    let state = match UdpSocketState::new(UdpSockRef::from(&udp)) {
        Ok(s) => {
            device::allow_fragments(&udp);
            s
        }
        Err(e) => {
            tracing::error!(%e, "cannot set up the UDP socket for batching");
            return;
        }
    };
    let vxlan = match vxlan.map(|v| UdpSocketState::new(UdpSockRef::from(&v)).map(|s| (v, s))).transpose() {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(%e, "cannot set up the VXLAN socket for batching");
            return;
        }
    };
    let mut w = Worker {
        shared,
        index,
        udp,
        state,
        vxlan,
        arena: vec![0; ARENA_LEN],
        batch: Batch::default(),
        rx: (0..RX_BATCH).map(|_| vec![0; 65_536]).collect(),
        meta: [RecvMeta::default(); RX_BATCH],
        scratch: vec![0; SLOT_LEN],
        sframe: vec![0; scatter::MAX_READ],
        tso_guess: None,
        gro: Gro::default(),
        now: Instant::now(),
        gso_lost: [false; 2],
        gso_probed: None,
        preauth: PreauthLimiter::new(Instant::now()),
    };
    w.run();
}

impl Worker {
    fn run(&mut self) {
        let nets = self.shared.nets.len();
        let mut fds = vec![self.udp.as_raw_fd()];
        fds.extend((0..nets).map(|n| self.shared.taps[n][self.index].as_raw_fd()));
        if let Some((v, _)) = &self.vxlan {
            fds.push(v.as_raw_fd());
        }
        let mut ready = vec![0i16; fds.len()];
        // Busy polling (`underlay.busy_poll_us`, see `super::spin`): after handling packets,
        // poll without sleeping while the window is open and the work has paid for it,
        // yielding the CPU to anything runnable in between.
        let mut spin = Spin::new(self.shared.busy_poll, Instant::now());
        while !self.shared.stop.load(Relaxed) {
            let timeout = if spin.spinning() { 0 } else { 200 };
            match device::poll(&fds, libc::POLLIN, timeout, &mut ready) {
                Ok(0) => {
                    if spin.spinning() && spin.idle(Instant::now()) {
                        std::thread::yield_now();
                    }
                    continue;
                }
                Ok(_) => {}
                Err(_) => {
                    inc(&self.shared.stats.io_errors);
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
            }
            let start = Instant::now();
            if ready[0] != 0 {
                self.drain_udp();
            }
            for n in 0..nets {
                if ready[1 + n] != 0 {
                    self.drain_tap(NetId(n));
                }
            }
            if fds.len() > nets + 1 && ready[nets + 1] != 0 {
                self.drain_vxlan();
            }
            spin.worked(start, Instant::now());
        }
    }

    // ---- TAP → peers ----

    /// Where the next datagram is built in the arena (flushing the batch when it is full).
    fn slot(&mut self) -> usize {
        match self.batch.tail(SLOT_LEN) {
            Some(at) => at,
            None => {
                self.flush();
                0
            }
        }
    }

    /// Where a read of `layout.arena_len(SLOT_LEN)` bytes can start in the arena (flushing
    /// the batch when the rest of the arena is too short).
    fn reserve(&mut self, need: usize) -> usize {
        match self.batch.tail(need) {
            Some(at) => at,
            None => {
                self.flush();
                0
            }
        }
    }

    fn drain_tap(&mut self, net: NetId) {
        let shared = Arc::clone(&self.shared);
        let tap = Arc::clone(&shared.taps[net][self.index]);
        // One snapshot per batch: table changes are picked up at the next batch.
        let tables = shared.tables.load();
        self.now = Instant::now();
        let info = &shared.nets[net];
        let (fo, max_frame) = (frame_offset(info), max_frame_len(info));
        let tail = if info.encryption == Encryption::None { 0 } else { TAG_LEN };
        let mut sframe = std::mem::take(&mut self.sframe);
        for _ in 0..TAP_BATCH {
            // Read where the frame is sent from: pre-segmented when the last superframe's
            // headers and MSS are a guess for this one (see `super::scatter`).
            let guess = self.tso_guess.and_then(|(hlen, mss)| Layout::segmented(0, fo, hlen, mss, tail));
            let need = guess.map_or(SLOT_LEN, |l| l.arena_len(SLOT_LEN));
            let at = self.reserve(need);
            let layout = match guess {
                Some(l) => Layout { at, ..l },
                None => Layout::single(at, fo, max_frame),
            };
            let mut hdr = [0u8; VNET_HDR_LEN];
            let read = {
                let mut iov: [IoSliceMut<'_>; MAX_IOV] = std::array::from_fn(|_| IoSliceMut::new(&mut []));
                let k = layout.iovecs(&mut hdr, &mut self.arena, &mut sframe, &mut iov);
                tap.recv_vectored(&mut iov[..k])
            };
            let n = match read {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    inc(&shared.stats.io_errors);
                    break;
                }
            };
            if n < VNET_HDR_LEN + ethernet::HEADER_LEN {
                continue;
            }
            inc(&shared.stats.tap_rx);
            let h = VnetHdr::parse(&hdr);
            let len = n - VNET_HDR_LEN;
            if h.gso_type == offload::GSO_NONE && len <= layout.first {
                // The common small frame: in its slot already.
                if complete_csum(&shared, &h, &mut self.arena[at + fo..at + fo + len]) {
                    self.egress(&shared, &tables, net, at, len);
                }
                continue;
            }
            if h.gso_type != offload::GSO_NONE && layout.is_segmented() && len > layout.first {
                let headers = &self.arena[at + fo..at + fo + layout.first];
                if let Ok(plan) = Tso::plan_prefix(headers, len, &h) {
                    if layout.hole == fo + plan.header_len() && layout.seg == plan.mss() {
                        self.segments_in_place(&shared, &tables, net, &layout, &plan);
                        continue;
                    }
                }
            }
            // Anything else (a superframe of another shape, a first one, a frame longer than
            // the first piece) is gathered and handled from the spill buffer.
            layout.gather(&hdr, &self.arena, n, &mut sframe);
            self.egress_spilled(&shared, &tables, net, &mut sframe[..n]);
        }
        self.sframe = sframe;
        self.flush();
    }

    /// A superframe read pre-segmented by `layout`: writes each segment's headers into its
    /// gap, decides once where the superframe goes and sends every segment from its slot.
    fn segments_in_place(
        &mut self,
        shared: &Shared,
        tables: &Tables,
        net: NetId,
        layout: &Layout,
        plan: &Tso,
    ) {
        let (hlen, count) = (plan.header_len(), plan.count());
        if plan.max_segment_len() > max_frame_len(&shared.nets[net]) {
            let at = layout.frame_at(0);
            return self.too_big(net, &self.arena[at..at + hlen]);
        }
        inc(&shared.stats.tso_superframes);
        inc(&shared.stats.tso_in_place);
        shared.stats.tso_segments.fetch_add(count as u64, Relaxed);
        let mut headers = [0u8; scatter::MAX_SCATTER_HEADERS];
        let first = layout.frame_at(0);
        headers[..hlen].copy_from_slice(&self.arena[first..first + hlen]);
        // The last segment first: it carries the superframe's FIN/PSH, which the decision
        // (and conntrack) must see, as they saw it when segments were judged one by one.
        let fix = |arena: &mut [u8], i: usize, partial_csum: bool| {
            let at = layout.frame_at(i);
            let len = plan.segment_len(i);
            arena[at..at + hlen].copy_from_slice(&headers[..hlen]);
            plan.fix(i, &mut arena[at..at + len], partial_csum);
        };
        fix(&mut self.arena, count - 1, false);
        let last = layout.frame_at(count - 1);
        let route = self.route(shared, tables, net, &self.arena[last..last + plan.segment_len(count - 1)]);
        // A peer that accepts partial checksums gets the other segments without their payload
        // summed (the AEAD protects them; its kernel takes them as a local stack's would).
        let partial = match route {
            Route::Drop => return,
            Route::Peer(p) => plan.partial_csum_ok() && accepts_partial_csum(tables, p),
            // Plain VXLAN with remote checksum offload: the outer UDP checksum covers them.
            Route::Vtep(_) => plan.partial_csum_ok() && shared.nets[net].remote_checksum,
            _ => false,
        };
        if partial {
            shared.stats.tso_partial_csum.fetch_add(count as u64 - 1, Relaxed);
        }
        for i in 0..count {
            if i + 1 < count {
                fix(&mut self.arena, i, partial);
            }
            let (at, len) = (layout.frame_at(i) - layout.fo, plan.segment_len(i));
            self.send_frame(shared, tables, net, route, at, len, partial && i + 1 < count);
        }
    }

    /// A whole frame read into (or gathered in) the spill buffer `sf`, virtio-net header first:
    /// copied into arena slots, segmented if it is a superframe.
    fn egress_spilled(&mut self, shared: &Shared, tables: &Tables, net: NetId, sf: &mut [u8]) {
        let fo = frame_offset(&shared.nets[net]);
        let (head, frame) = sf.split_at_mut(VNET_HDR_LEN);
        let h = VnetHdr::parse((&*head).try_into().expect("10 bytes"));
        if h.gso_type == offload::GSO_NONE {
            if !complete_csum(shared, &h, frame) {
                return;
            }
            if frame.len() > max_frame_len(&shared.nets[net]) {
                return self.too_big(net, frame);
            }
            let at = self.slot();
            self.arena[at + fo..at + fo + frame.len()].copy_from_slice(frame);
            return self.egress(shared, tables, net, at, frame.len());
        }
        let Ok(plan) = Tso::plan(frame, &h) else {
            inc(&shared.stats.drop_offload);
            return;
        };
        if plan.max_segment_len() > max_frame_len(&shared.nets[net]) {
            // The sender's MTU is larger than the network's: one answer per superframe.
            return self.too_big(net, frame);
        }
        // The next read guesses this shape (only one that fits the network: segments of it
        // also fit their slots).
        self.tso_guess = Some((plan.header_len(), plan.mss()));
        inc(&shared.stats.tso_superframes);
        for i in 0..plan.count() {
            let at = self.slot();
            let len = plan.segment(frame, i, &mut self.arena[at + fo..at + SLOT_LEN - TAG_LEN]);
            inc(&shared.stats.tso_segments);
            self.egress(shared, tables, net, at, len);
        }
    }

    /// Drops a frame larger than the network's MTU, answering with ICMP "too big" when it can.
    fn too_big(&self, net: NetId, f: &[u8]) {
        let info = &self.shared.nets[net];
        inc(&self.shared.stats.drop_mtu);
        let mut out = [0u8; VNET_HDR_LEN + frame::TOO_BIG_REPLY_MAX];
        let mtu = u16::try_from(info.mtu).unwrap_or(u16::MAX);
        if let Some(n) =
            frame::too_big_reply(f, mtu, info.gateway_mac, info.gateway, &mut out[VNET_HDR_LEN..])
        {
            self.write_tap(net, &mut out[..VNET_HDR_LEN + n]);
        }
    }

    /// A frame from our bridge at `arena[at + frame_offset(net)..][..len]`.
    fn egress(&mut self, shared: &Shared, tables: &Tables, net: NetId, at: usize, len: usize) {
        let fo = frame_offset(&shared.nets[net]);
        let f = &self.arena[at + fo..at + fo + len];
        if len > max_frame_len(&shared.nets[net]) {
            return self.too_big(net, f);
        }
        let route = self.route(shared, tables, net, f);
        self.send_frame(shared, tables, net, route, at, len, false);
    }

    /// Where a frame from our bridge goes: the checks every frame passes (source guard,
    /// link-local sources, ARP suppression, policy) and the forwarding lookup. Segments of one
    /// superframe share it.
    fn route(&self, shared: &Shared, tables: &Tables, net: NetId, f: &[u8]) -> Route {
        let info = &shared.nets[net];
        let (Some(dst), Some(nt)) = (frame::dst_mac(f), tables.nets.net(net)) else { return Route::Drop };
        // A local container sends only as its lease, the host only as its gateway.
        if !source_guard::allows(nt, info, f) {
            inc(&shared.stats.drop_local_spoof);
            return Route::Drop;
        }
        // Link-local and unspecified sources (IPv6 ND, ARP probes) stay on this host: no peer
        // would accept them, as they lie outside every certified subnet.
        let encrypted = info.encryption == Encryption::ChaCha20Poly1305;
        if encrypted && frame::source_ip(f).is_some_and(|ip| frame::is_link_local(&ip)) {
            inc(&shared.stats.drop_link_local);
            return Route::Drop;
        }
        if let Some((_, _, target)) = frame::arp_request(f) {
            let remote =
                nt.ips.get(&target.into()).filter(|m| !matches!(nt.macs.get(*m), Some(Loc::Local) | None));
            if let Some(mac) = remote {
                let mut out = [0u8; VNET_HDR_LEN + frame::ARP_REPLY_LEN];
                let reply: &mut [u8; frame::ARP_REPLY_LEN] =
                    (&mut out[VNET_HDR_LEN..]).try_into().expect("the rest is ARP_REPLY_LEN bytes");
                if frame::arp_reply(f, *mac, reply).is_some() {
                    inc(&shared.stats.arp_suppressed);
                    self.write_tap(net, &mut out);
                    return Route::Drop;
                }
            }
        }
        let target = if frame::is_multicast(&dst) { None } else { nt.macs.get(&dst).copied() };
        if nt.policy.is_some() {
            let to = match target {
                Some(Loc::Local) => return Route::Drop,
                Some(Loc::Peer(p)) => Some(p),
                _ => None,
            };
            if !filter::allows(shared, tables, net, Direction::Out, f, to, filter::now_secs(shared)) {
                return Route::Drop;
            }
        }
        match (target, encrypted) {
            (Some(Loc::Local), _) => Route::Drop,
            (Some(Loc::Peer(p)), true) => Route::Peer(p),
            (Some(Loc::Vtep(addr)), false) => Route::Vtep(addr),
            (_, true) => Route::Flood,
            (_, false) => Route::FloodVxlan,
        }
    }

    /// Sends the frame at `arena[at + frame_offset(net)..][..len]` where `route` says;
    /// `partial_csum`: a TCP segment whose checksum is left partial, for a peer that accepts it.
    #[allow(clippy::too_many_arguments)]
    fn send_frame(
        &mut self,
        shared: &Shared,
        tables: &Tables,
        net: NetId,
        route: Route,
        at: usize,
        len: usize,
        partial_csum: bool,
    ) {
        match route {
            Route::Drop => {}
            Route::Peer(p) => self.unicast(tables, net, p, at, len, partial_csum),
            Route::Vtep(addr) => self.vxlan_unicast(net, addr, at, len, partial_csum),
            Route::Flood => {
                self.flush();
                self.flood_sealed(tables, net, at, len);
            }
            Route::FloodVxlan => {
                self.flush();
                let info = &shared.nets[net];
                for addr in info.remotes.iter().copied() {
                    inc(&shared.stats.flooded);
                    self.send_vxlan_now(net, addr, at, len);
                }
                if info.remotes.is_empty() {
                    inc(&shared.stats.drop_no_route);
                }
            }
        }
    }

    /// Seals the frame in its arena slot and adds it to the send batch.
    fn unicast(
        &mut self,
        tables: &Tables,
        net: NetId,
        peer: PeerId,
        at: usize,
        len: usize,
        partial_csum: bool,
    ) {
        let slot = &mut self.arena[at..at + SLOT_LEN];
        let frame = Framed { net, len, partial_csum };
        if let Some((n, dst)) = seal_for(&self.shared, tables, peer, slot, frame, self.now) {
            let max = self.state.max_gso_segments();
            if let Added::Flush(run) = self.batch.add(at, n, Sock::Tunnel, dst, max) {
                self.send_run(run);
            }
        }
    }

    fn flood_sealed(&mut self, tables: &Tables, net: NetId, at: usize, len: usize) {
        if tables.flood.is_empty() {
            inc(&self.shared.stats.drop_no_route);
        }
        for &p in tables.flood.iter().take(MAX_FLOOD) {
            self.scratch[FRAME_AT..FRAME_AT + len]
                .copy_from_slice(&self.arena[at + FRAME_AT..at + FRAME_AT + len]);
            inc(&self.shared.stats.flooded);
            let frame = Framed { net, len, partial_csum: false };
            if let Some((n, dst)) = seal_for(&self.shared, tables, p, &mut self.scratch, frame, self.now) {
                let run = Run { sock: Sock::Tunnel, dst, start: 0, end: n, seg: n, count: 1 };
                self.transmit(run, true);
            }
        }
    }

    fn flush(&mut self) {
        if let Some(run) = self.batch.take() {
            self.send_run(run);
        }
    }

    fn send_run(&mut self, run: Run) {
        self.transmit(run, false);
    }

    /// Sends a run from the arena (or, for a flood copy, from the scratch slot).
    fn transmit(&mut self, run: Run, scratch: bool) {
        let buf = if scratch { &self.scratch } else { &self.arena };
        let (state, sock) = match (run.sock, &self.vxlan) {
            (Sock::Tunnel, _) => (&self.state, &self.udp),
            (Sock::Vxlan, Some((sock, state))) => (state, sock),
            (Sock::Vxlan, None) => return,
        };
        let gso_before = state.max_gso_segments();
        let sent = send(&self.shared, state, sock, buf, run);
        let lost = &mut self.gso_lost[run.sock as usize];
        if !sent && gso_before > 1 && state.max_gso_segments() == 1 {
            *lost = true;
        }
        if *lost && self.gso_probed.is_none_or(|t| t.elapsed() >= GSO_REPROBE) {
            self.restore_gso(run.sock);
        }
    }

    /// quinn-udp switches GSO off for a socket for good at the first EINVAL or EIO from
    /// `sendmsg`, whatever the cause. When even single datagrams failed too (a blackhole
    /// route answers EINVAL; a partition ends), GSO was not at fault: probe it afresh by
    /// building the socket's state again (at most once per `GSO_REPROBE`).
    fn restore_gso(&mut self, sock: Sock) {
        self.gso_probed = Some(Instant::now());
        let (udp, state) = match (sock, &mut self.vxlan) {
            (Sock::Tunnel, _) => (&self.udp, &mut self.state),
            (Sock::Vxlan, Some((udp, state))) => (&*udp, state),
            (Sock::Vxlan, None) => return,
        };
        if let Ok(fresh) = UdpSocketState::new(UdpSockRef::from(udp)) {
            if sock == Sock::Tunnel {
                device::allow_fragments(udp);
            }
            *state = fresh;
            self.gso_lost[sock as usize] = false;
            tracing::debug!(
                ?sock,
                segments = state.max_gso_segments(),
                "UDP GSO probed again after a send error"
            );
        }
    }

    /// Puts the VXLAN header in front of the frame in its arena slot (plain networks keep
    /// frames at `VXLAN_HEADER_LEN`, so the datagram starts at the slot); returns the
    /// datagram's length. `partial_csum`: a TCP segment of an untagged IPv4 (without options)
    /// or IPv6 frame whose checksum is partial, sent with remote checksum offload.
    fn vxlan_encap(&mut self, net: NetId, at: usize, len: usize, partial_csum: bool) -> usize {
        let (head, frame) = self.arena[at..at + VXLAN_HEADER_LEN + len].split_at_mut(VXLAN_HEADER_LEN);
        let rco =
            partial_csum.then(|| Rco::new(offload::untagged_l4(frame), offload::TCP_CSUM_OFFSET)).flatten();
        let head: &mut [u8; VXLAN_HEADER_LEN] = head.try_into().expect("8 bytes");
        VxlanHeader { vni: self.shared.nets[net].vni, rco }.emit(head);
        VXLAN_HEADER_LEN + len
    }

    /// Adds a plain VXLAN datagram to the send batch (GSO runs, as for sealed ones).
    fn vxlan_unicast(&mut self, net: NetId, dst: SocketAddr, at: usize, len: usize, partial_csum: bool) {
        let Some((_, state)) = &self.vxlan else { return };
        let max = state.max_gso_segments();
        let n = self.vxlan_encap(net, at, len, partial_csum);
        if let Added::Flush(run) = self.batch.add(at, n, Sock::Vxlan, dst, max) {
            self.send_run(run);
        }
    }

    /// Sends one plain VXLAN copy at once (flooding: the slot is reused for every remote).
    fn send_vxlan_now(&mut self, net: NetId, dst: SocketAddr, at: usize, len: usize) {
        let n = self.vxlan_encap(net, at, len, false);
        let run = Run { sock: Sock::Vxlan, dst, start: at, end: at + n, seg: n, count: 1 };
        self.send_run(run);
    }

    fn write_tap(&self, net: NetId, with_vnet_hdr: &mut [u8]) {
        with_vnet_hdr[..VNET_HDR_LEN].fill(0);
        match self.shared.taps[net][self.index].send(with_vnet_hdr) {
            Ok(_) => inc(&self.shared.stats.tap_tx),
            Err(_) => inc(&self.shared.stats.io_errors),
        }
    }

    // ---- peers → TAP ----

    fn drain_udp(&mut self) {
        let mut rx = std::mem::take(&mut self.rx);
        let shared = Arc::clone(&self.shared);
        let mut sink = TapSink { shared: &shared, queue: self.index };
        for _ in 0..RX_ROUNDS {
            // One snapshot (and one clock reading) per received batch.
            let tables = shared.tables.load();
            self.now = Instant::now();
            let Some(n) = recv_batch(&shared, &self.state, &self.udp, &mut rx, &mut self.meta) else { break };
            let metas = self.meta;
            for (i, meta) in metas.iter().enumerate().take(n) {
                for (at, end) in datagrams(meta) {
                    if let Some((net, start, len, partial_csum)) =
                        self.ingress(&tables, meta.addr, &mut rx[i][at..end])
                    {
                        let loc = offload::Loc { buf: i, start: at + start, len, partial_csum };
                        self.gro.push(&mut rx, net, loc, &mut sink);
                    }
                }
            }
            // The buffers are reused by the next recvmmsg: write out what is pending.
            self.gro.flush(&mut rx, &mut sink);
        }
        self.rx = rx;
    }

    /// Opens one datagram in place; returns the network, the position of a frame to deliver
    /// (`d[start..][..len]`, with room for the virtio-net header before it) and whether its
    /// TCP checksum is partial.
    fn ingress(
        &mut self,
        tables: &Tables,
        from: SocketAddr,
        d: &mut [u8],
    ) -> Option<(NetId, usize, usize, bool)> {
        let shared = &self.shared;
        if !real_source(shared, from) {
            return None;
        }
        let max = match MessageType::of(d) {
            Ok(MessageType::Transport) => 0,
            Ok(MessageType::CookieReply) => COOKIE_REPLY_LEN,
            Ok(_) => MAX_HANDSHAKE_LEN,
            Err(_) => {
                inc(&shared.stats.drop_unknown_type);
                return None;
            }
        };
        if max > 0 {
            if d.len() > max {
                inc(&shared.stats.drop_handshake_size);
            } else if !self.preauth.allow(self.now, from.ip()) {
                inc(&shared.stats.drop_handshake_rate);
            } else {
                shared.preauth_to_engine(EngineMsg::Datagram { from, bytes: d.to_vec() });
            }
            return None;
        }
        let Ok(h) = TransportHeader::parse(d) else {
            inc(&shared.proto_stats.malformed);
            return None;
        };
        let Some((peer, session)) = tables.sessions.get(&h.receiver_index) else {
            // The engine publishes every session before its peer can use it: this one is stale
            // (the sender lost our session, e.g. we restarted) or forged. Only a member's
            // endpoint gets a notice through, so that the engine handshakes with it again.
            if !tables.endpoints.contains_key(&from) {
                inc(&shared.proto_stats.unknown_index);
            } else if !self.preauth.allow(self.now, from.ip()) {
                inc(&shared.stats.drop_handshake_rate);
            } else {
                shared.preauth_to_engine(EngineMsg::UnknownSession { from });
            }
            return None;
        };
        let range = match session.open(self.now, d) {
            Ok(r) => r,
            Err(e) => {
                shared.proto_stats.count_open(&e);
                return None;
            }
        };
        if tables.peers.get(peer).and_then(|e| e.endpoint) != Some(from) {
            shared.to_engine(EngineMsg::Roamed { peer: *peer, addr: from });
        }
        match Inner::parse(&d[range.clone()]) {
            Ok(Inner::Frame { vni, partial_csum, .. }) => match tables.net_of(vni) {
                Some(net) => {
                    let start = range.start + INNER_HEADER_LEN;
                    admit(shared, tables, *peer, net, &d[start..range.end]).then_some((
                        net,
                        start,
                        range.end - start,
                        partial_csum,
                    ))
                }
                None => {
                    inc(&shared.stats.drop_no_network);
                    None
                }
            },
            Ok(Inner::Keepalive) => None,
            Ok(_) => {
                shared.to_engine(EngineMsg::Inner { peer: *peer, bytes: d[range].to_vec() });
                None
            }
            Err(_) => {
                inc(&shared.proto_stats.malformed);
                None
            }
        }
    }

    fn drain_vxlan(&mut self) {
        let Some((sock, state)) = self.vxlan.take() else { return };
        let mut rx = std::mem::take(&mut self.rx);
        let shared = Arc::clone(&self.shared);
        let mut sink = TapSink { shared: &shared, queue: self.index };
        for _ in 0..RX_ROUNDS {
            let tables = shared.tables.load();
            let Some(n) = recv_batch(&shared, &state, &sock, &mut rx, &mut self.meta) else { break };
            let metas = self.meta;
            for (i, meta) in metas.iter().enumerate().take(n) {
                for (at, end) in datagrams(meta) {
                    if let Some((net, partial_csum)) =
                        vxlan_ingress(&shared, &tables, meta.addr, &mut rx[i][at..end])
                    {
                        let start = at + VXLAN_HEADER_LEN;
                        let loc = offload::Loc { buf: i, start, len: end - start, partial_csum };
                        self.gro.push(&mut rx, net, loc, &mut sink);
                    }
                }
            }
            self.gro.flush(&mut rx, &mut sink);
        }
        self.rx = rx;
        self.vxlan = Some((sock, state));
    }
}

/// One recvmmsg (with UDP GRO) into the receive buffers; `None` when nothing is waiting, or
/// on an error (counted).
fn recv_batch(
    shared: &Shared,
    state: &UdpSocketState,
    sock: &UdpSocket,
    rx: &mut [Vec<u8>],
    meta: &mut [RecvMeta; RX_BATCH],
) -> Option<usize> {
    let mut bufs = rx.iter_mut();
    let mut iovs: [IoSliceMut<'_>; RX_BATCH] =
        std::array::from_fn(|_| IoSliceMut::new(bufs.next().expect("RX_BATCH buffers")));
    match state.recv(UdpSockRef::from(sock), &mut iovs, meta) {
        Ok(n) => Some(n),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(_) => {
            inc(&shared.stats.io_errors);
            None
        }
    }
}

/// The datagrams one receive buffer holds: GRO puts several of `stride` bytes back to back
/// (the last may be shorter). Yields `(start, end)` offsets.
fn datagrams(meta: &RecvMeta) -> impl Iterator<Item = (usize, usize)> {
    let (len, stride) = (meta.len, meta.stride.max(1));
    (0..len).step_by(stride).map(move |at| (at, (at + stride).min(len)))
}

/// Completes the checksum of a frame the kernel left partial (`F_NEEDS_CSUM`); false (counted)
/// when its header names offsets outside the frame.
fn complete_csum(shared: &Shared, h: &VnetHdr, frame: &mut [u8]) -> bool {
    let ok = h.flags & offload::F_NEEDS_CSUM == 0
        || offload::complete_csum(frame, h.csum_start, h.csum_offset).is_ok();
    if !ok {
        inc(&shared.stats.drop_offload);
    }
    ok
}

/// The largest frame a network carries: its MTU plus the Ethernet header.
fn max_frame_len(info: &super::NetInfo) -> usize {
    info.mtu as usize + ethernet::HEADER_LEN
}

/// Where a network's frames sit in an arena slot: after the tunnel and inner headers when
/// encrypted, after the VXLAN header when plain.
fn frame_offset(info: &super::NetInfo) -> usize {
    match info.encryption {
        Encryption::ChaCha20Poly1305 => FRAME_AT,
        Encryption::None => VXLAN_HEADER_LEN,
    }
}

/// A plain VXLAN datagram from `from`: the network its frame is for (after the source,
/// learning and policy checks) and whether the frame's TCP checksum is partial (remote
/// checksum offload; any other partial checksum is completed here).
fn vxlan_ingress(shared: &Shared, tables: &Tables, from: SocketAddr, d: &mut [u8]) -> Option<(NetId, bool)> {
    let Ok(h) = VxlanHeader::parse(d) else {
        inc(&shared.proto_stats.malformed);
        return None;
    };
    let Some(net) = tables.net_of(h.vni).filter(|&n| shared.nets[n].encryption == Encryption::None) else {
        inc(&shared.stats.drop_no_network);
        return None;
    };
    // Plain VXLAN has no identity: accept only configured remotes' addresses.
    let Some(remote) = shared.nets[net].remotes.iter().find(|r| r.ip() == from.ip()).copied() else {
        inc(&shared.stats.drop_spoof);
        return None;
    };
    let f = &mut d[VXLAN_HEADER_LEN..];
    if f.len() < ethernet::HEADER_LEN {
        inc(&shared.proto_stats.malformed);
        return None;
    }
    // The checksum first, before anything learns from or judges the frame. A partial one,
    // named by remote checksum offload (Linux `remcsumtx`, or a weft with `remote_checksum`;
    // believed only where it is the frame's own TCP/UDP checksum) or found so (a kernel
    // sender's that a veth underlay left unfinished): the outer UDP checksum, which the kernel
    // verified, covered the frame. A TCP checksum where GRO finds it goes to the kernel
    // partial; any other is completed here. Every other checksum is verified, so GRO never
    // merges a damaged segment into a superframe whose checksum the kernel then computes.
    if h.rco.is_some() {
        inc(&shared.stats.rco_rx);
    }
    let partial_csum = match offload::check_transport(f, h.rco.map(|r| (r.start(), r.offset()))) {
        offload::Received::Complete => false,
        offload::Received::Partial { start, offset } if offload::is_partial_tcp_at(f, start, offset) => true,
        offload::Received::Partial { start, offset } => {
            if offload::complete_csum(f, start as u16, offset).is_err() {
                inc(&shared.stats.drop_offload);
                return None;
            }
            false
        }
        offload::Received::Corrupt => {
            inc(&shared.stats.drop_checksum);
            return None;
        }
    };
    if let Some(src) = frame::src_mac(f) {
        if tables.nets.net(net).and_then(|nt| nt.macs.get(&src)) != Some(&Loc::Vtep(remote)) {
            shared.to_engine(EngineMsg::Learn {
                net,
                mac: src,
                ip: frame::source_ip(f),
                loc: Loc::Vtep(remote),
            });
        }
    }
    if tables.nets.net(net).is_some_and(|nt| nt.policy.is_some())
        && !filter::allows(shared, tables, net, Direction::In, f, None, filter::now_secs(shared))
    {
        return None;
    }
    Some((net, partial_csum))
}

/// Whether a datagram's source can be real: relayed paths are named by addresses in
/// `100::/64` inside the daemon (`plane::path`), so a datagram from there is forged and could
/// make the endpoint move a session onto a relay; dropped and counted.
fn real_source(shared: &Shared, from: SocketAddr) -> bool {
    if crate::plane::path::is_virtual_ip(from.ip()) {
        inc(&shared.stats.drop_reserved_source);
        return false;
    }
    true
}

/// A frame in a slot, as [`seal_for`] takes it.
#[derive(Debug, Clone, Copy)]
struct Framed {
    net: NetId,
    len: usize,
    /// A TCP segment whose checksum is left partial (the peer accepts it).
    partial_csum: bool,
}

/// Whether `peer`'s current session accepts frames with partial checksums.
fn accepts_partial_csum(tables: &Tables, peer: PeerId) -> bool {
    let session = tables.peers.get(&peer).and_then(|e| e.session.as_ref());
    session.is_some_and(|s| s.features().contains(Features::PARTIAL_CSUM))
}

/// Seals the frame at `slot[FRAME_AT..][..len]` for `peer`; returns the datagram length and
/// destination, or hands the frame to the engine when the peer has no usable session.
fn seal_for(
    shared: &Shared,
    tables: &Tables,
    peer: PeerId,
    slot: &mut [u8],
    Framed { net, len, partial_csum }: Framed,
    now: Instant,
) -> Option<(usize, SocketAddr)> {
    let head: &mut [u8; INNER_HEADER_LEN] =
        (&mut slot[TRANSPORT_HEADER_LEN..FRAME_AT]).try_into().expect("4 bytes");
    Inner::emit_frame_header(shared.nets[net].vni, partial_csum, head);
    let payload_len = INNER_HEADER_LEN + len;
    let entry = tables.peers.get(&peer);
    let ready = entry.and_then(|e| Some((e.session.as_ref()?, e.endpoint?)));
    match ready.map(|(s, dst)| (s.seal(now, slot, payload_len), dst)) {
        Some((Ok(n), dst)) => Some((n, dst)),
        Some((Err(SealError::BufferTooSmall), _)) => {
            inc(&shared.stats.drop_mtu);
            None
        }
        Some((Err(SealError::Expired), _)) | None => {
            let payload = slot[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + payload_len].to_vec();
            shared.to_engine(EngineMsg::Unroutable { peer, payload });
            None
        }
    }
}

/// Sends a run (GSO when it holds several datagrams), waiting briefly for buffer space rather
/// than dropping, and falling back to single datagrams where the kernel refuses GSO. Returns
/// whether every datagram left.
fn send(shared: &Shared, state: &UdpSocketState, udp: &UdpSocket, arena: &[u8], run: Run) -> bool {
    let t = Transmit {
        destination: run.dst,
        ecn: None,
        contents: &arena[run.start..run.end],
        segment_size: (run.count > 1).then_some(run.seg),
        src_ip: None,
    };
    for _ in 0..50 {
        match state.try_send(UdpSockRef::from(udp), &t) {
            Ok(()) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut ready = [0i16];
                let _ = device::poll(&[udp.as_raw_fd()], libc::POLLOUT, SEND_WAIT_MS, &mut ready);
            }
            Err(e) if run.count > 1 && matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::EINVAL)) => {
                // quinn-udp has switched GSO off for this socket; send the run one by one.
                let mut all = true;
                for chunk in arena[run.start..run.end].chunks(run.seg) {
                    let one = Run {
                        sock: run.sock,
                        dst: run.dst,
                        start: 0,
                        end: chunk.len(),
                        seg: chunk.len(),
                        count: 1,
                    };
                    all &= send(shared, state, udp, chunk, one);
                }
                return all;
            }
            Err(_) => break,
        }
    }
    inc(&shared.stats.io_errors);
    false
}

/// A decrypted frame the engine hands over: from `peer`, for network `net`, at `buf[at..]`.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// The authenticated sender.
    pub peer: PeerId,
    /// The network.
    pub net: NetId,
    /// Where the frame starts.
    pub at: usize,
    /// A TCP segment whose checksum is partial.
    pub partial_csum: bool,
}

/// Delivers a decrypted frame (at `buf[frame.at..]`) to its network's TAP if [`admit`] lets
/// it in.
pub fn deliver(shared: &Shared, tables: &Tables, frame: Received, queue: usize, buf: &mut [u8]) {
    let Received { peer, net, at, partial_csum } = frame;
    if admit(shared, tables, peer, net, &buf[at..]) {
        let mut sink = TapSink { shared, queue };
        let mut bufs = [&mut buf[..]];
        let loc = offload::Loc { buf: 0, start: at, len: bufs[0].len() - at, partial_csum };
        offload::write_frame(&mut bufs, net, loc, &mut sink);
    }
}

/// Whether a decrypted frame from `peer` may reach network `net`'s bridge: the inner source
/// IP (and a neighbour advertisement's target) must lie in the peer's certified subnets and
/// the network's, the source MAC must not belong to anyone else, and the network's policy must
/// allow it. Learns the MAC/IP as a side effect.
pub fn admit(shared: &Shared, tables: &Tables, peer: PeerId, net: NetId, f: &[u8]) -> bool {
    let (Some(src), Some(ip)) = (frame::src_mac(f), frame::source_ip(f)) else {
        inc(&shared.stats.drop_ethertype);
        return false;
    };
    let Some(entry) = tables.peers.get(&peer) else { return false };
    if frame::is_link_local(&ip) {
        inc(&shared.stats.drop_link_local);
        return false;
    }
    let Some(info) = shared.nets.net(net) else { return false };
    // The source must be the peer's to use (certified) and belong to this network, and the
    // peer must serve the network: no frames injected across networks.
    if !entry.subnets.iter().any(|s| s.contains(&ip)) || !info.subnet.contains(&ip) {
        inc(&shared.stats.drop_spoof);
        return false;
    }
    // A neighbour advertisement binds its target, whatever its source: held to the same rule.
    if let Some(target) = frame::advertised_target(f).map(IpAddr::V6) {
        if !entry.subnets.iter().any(|s| s.contains(&target)) || !info.subnet.contains(&target) {
            inc(&shared.stats.drop_spoof);
            return false;
        }
    }
    if entry.networks.as_ref().is_some_and(|n| !n.contains(&info.vni)) {
        inc(&shared.stats.drop_no_network);
        return false;
    }
    let Some(nt) = tables.nets.net(net) else { return false };
    match nt.macs.get(&src) {
        Some(Loc::Peer(p)) if *p == peer => {
            if nt.ips.get(&ip) != Some(&src) {
                shared.to_engine(EngineMsg::Learn { net, mac: src, ip: Some(ip), loc: Loc::Peer(peer) });
            }
        }
        Some(_) => {
            inc(&shared.stats.drop_spoof);
            return false;
        }
        None => shared.to_engine(EngineMsg::Learn { net, mac: src, ip: Some(ip), loc: Loc::Peer(peer) }),
    }
    nt.policy.is_none()
        || filter::allows(shared, tables, net, Direction::In, f, Some(peer), filter::now_secs(shared))
}

/// Writes (coalesced) frames to this worker's queue of a network's TAP.
struct TapSink<'a> {
    shared: &'a Shared,
    queue: usize,
}

impl offload::Sink for TapSink<'_> {
    fn write(&mut self, net: NetId, iov: &[std::io::IoSlice<'_>], frames: usize) {
        let stats = &self.shared.stats;
        let taps = &self.shared.taps[net];
        match taps[self.queue % taps.len()].send_vectored(iov) {
            Ok(_) => {
                stats.tap_tx.fetch_add(frames as u64, Relaxed);
                if frames > 1 {
                    inc(&stats.gro_superframes);
                    stats.gro_segments.fetch_add(frames as u64, Relaxed);
                }
            }
            Err(_) => inc(&stats.io_errors),
        }
    }

    fn acks_coalesced(&mut self, n: u64) {
        self.shared.stats.gro_acks_coalesced.fetch_add(n, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::ndisc::{self, NdiscPacket, NdiscRepr};
    use crate::packet::{ip_proto, EtherType, EthernetFrame, EthernetRepr, Ipv6Packet, Ipv6Repr};
    use crate::plane::tables::{NetTables, PeerEntry};
    use crate::plane::NetInfo;
    use overlay_proto::wire::Vni;
    use std::net::Ipv6Addr;
    use std::sync::atomic::AtomicBool;

    const PEER: PeerId = PeerId(3);
    /// The peer's container, known to be behind it.
    const B1: [u8; 6] = [2, 0, 0, 0, 2, 2];

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// This node (fd42:0:1::/64) on network fd42::/32, with peer B (certified for
    /// fd42:0:2::/64) and its container b1 at fd42:0:2::2.
    fn node() -> (Shared, Tables) {
        let net = NetInfo {
            name: "default".into(),
            vni: Vni::new(42).unwrap(),
            mtu: 1400,
            subnet: "fd42::/32".parse().unwrap(),
            gateway: "fd42:0:1::1".parse().unwrap(),
            gateway_mac: [2, 0, 0, 0, 1, 1],
            encryption: Encryption::ChaCha20Poly1305,
            remotes: Vec::new(),
            remote_checksum: false,
        };
        let (engine, _) = std::sync::mpsc::sync_channel(16);
        let shared = Shared {
            tables: Default::default(),
            proto_stats: Default::default(),
            stats: Default::default(),
            nets: vec![net],
            taps: vec![Vec::new()],
            engine,
            lanes: crate::plane::Lanes::new().0,
            stop: AtomicBool::new(false),
            conntrack: vec![crate::policy::Conntrack::new(1024, 256)],
            epoch: Instant::now(),
            busy_poll: std::time::Duration::ZERO,
            worker_nice: 0,
        };
        let mut tables = Tables::default();
        tables.peers.insert(
            PEER,
            PeerEntry {
                session: None,
                endpoint: None,
                subnets: Arc::new(vec!["fd42:0:2::/64".parse().unwrap()]),
                name: Arc::from("b"),
                groups: Arc::new(Vec::new()),
                networks: Some(Arc::new(vec![Vni::new(42).unwrap()])),
            },
        );
        let mut nt = NetTables::default();
        nt.macs.insert(B1, Loc::Peer(PEER));
        nt.ips.insert(IpAddr::V6(addr("fd42:0:2::2")), B1);
        tables.nets.push(nt);
        (shared, tables)
    }

    /// A neighbour advertisement from b1 (source `src`) for `target`.
    fn advert(src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
        let nd = NdiscRepr::NeighborAdvert {
            flags: ndisc::flags::OVERRIDE,
            target_addr: target,
            lladdr: Some(B1),
        };
        let mut f = vec![0u8; ethernet::HEADER_LEN + 40 + nd.buffer_len()];
        EthernetRepr { src_addr: B1, dst_addr: [0x33, 0x33, 0, 0, 0, 1], ethertype: EtherType::IPV6 }
            .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
        let mut ip = Ipv6Packet::new_unchecked(&mut f[ethernet::HEADER_LEN..]);
        Ipv6Repr {
            src_addr: src,
            dst_addr: addr("ff02::1"),
            next_header: ip_proto::ICMPV6,
            payload_len: nd.buffer_len() as u16,
            hop_limit: 255,
        }
        .emit(&mut ip);
        let pseudo = ip.pseudo_header(ip_proto::ICMPV6, nd.buffer_len() as u32);
        nd.emit(&mut NdiscPacket::new_unchecked(ip.payload_mut()), pseudo);
        f
    }

    #[test]
    fn a_peers_own_advertisement_is_admitted() {
        let (shared, tables) = node();
        let b1 = addr("fd42:0:2::2");
        assert!(admit(&shared, &tables, PEER, NetId(0), &advert(b1, b1)));
        assert_eq!(shared.stats.drop_spoof.load(Relaxed), 0);
    }

    #[test]
    fn rogue_peer_advertising_an_address_it_does_not_own_is_refused() {
        let (shared, tables) = node();
        let b1 = addr("fd42:0:2::2");
        for (what, target) in [
            ("our container's address", "fd42:0:1::2"),
            ("our gateway's", "fd42:0:1::1"),
            ("outside the network", "fd43:0:2::2"),
        ] {
            let before = shared.stats.drop_spoof.load(Relaxed);
            assert!(!admit(&shared, &tables, PEER, NetId(0), &advert(b1, addr(target))), "{what}");
            assert_eq!(shared.stats.drop_spoof.load(Relaxed), before + 1, "{what} counted");
        }
    }

    /// A plain VXLAN network (VNI 42) with one remote, 10.200.0.2.
    fn plain_node() -> (Shared, Tables) {
        let (mut shared, mut tables) = node();
        shared.nets[0].encryption = Encryption::None;
        shared.nets[0].remotes = vec!["10.200.0.2:4789".parse().unwrap()];
        tables.vnis.insert(Vni::new(42).unwrap(), NetId(0));
        tables.nets[0] = NetTables::default();
        (shared, tables)
    }

    /// A VXLAN datagram (VNI 42, RCO `rco`) carrying a UDP/IPv4 frame whose checksum field
    /// holds only the pseudo-header sum.
    fn plain_udp(rco: Option<Rco>) -> Vec<u8> {
        use crate::packet::{checksum, ipv4, Ipv4Packet, Ipv4Repr};
        let payload = [1u8, 2, 3, 4];
        let mut d = vec![0u8; VXLAN_HEADER_LEN + ethernet::HEADER_LEN + ipv4::HEADER_LEN + 8 + payload.len()];
        let head: &mut [u8; VXLAN_HEADER_LEN] = (&mut d[..VXLAN_HEADER_LEN]).try_into().unwrap();
        VxlanHeader { vni: Vni::new(42).unwrap(), rco }.emit(head);
        let f = &mut d[VXLAN_HEADER_LEN..];
        EthernetRepr { src_addr: B1, dst_addr: [2, 0, 0, 0, 1, 2], ethertype: EtherType::IPV4 }
            .emit(&mut EthernetFrame::new_unchecked(&mut *f));
        let udp_len = 8 + payload.len();
        let mut ip = Ipv4Packet::new_unchecked(&mut f[ethernet::HEADER_LEN..]);
        Ipv4Repr {
            src_addr: [10, 42, 2, 2].into(),
            dst_addr: [10, 42, 1, 2].into(),
            protocol: ip_proto::UDP,
            payload_len: udp_len as u16,
            hop_limit: 64,
            ident: 1,
            dont_frag: true,
        }
        .emit(&mut ip);
        let pseudo = ip.pseudo_header(ip_proto::UDP, udp_len as u32);
        let u = &mut f[ethernet::HEADER_LEN + ipv4::HEADER_LEN..];
        u[0..2].copy_from_slice(&5000u16.to_be_bytes());
        u[2..4].copy_from_slice(&53u16.to_be_bytes());
        u[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        u[6..8].copy_from_slice(&pseudo.to_be_bytes());
        u[8..].copy_from_slice(&payload);
        assert!(!checksum::verify(checksum::add(pseudo, checksum::sum(u))), "partial, not complete");
        d
    }

    #[test]
    fn remote_checksum_offload_of_a_frames_own_checksum_is_completed() {
        let (shared, tables) = plain_node();
        let from = "10.200.0.2:4789".parse().unwrap();
        let mut d = plain_udp(Rco::new(ethernet::HEADER_LEN + 20, 6));
        assert_eq!(vxlan_ingress(&shared, &tables, from, &mut d), Some((NetId(0), false)));
        let f = &d[VXLAN_HEADER_LEN..];
        assert_eq!(offload::check_transport(f, None), offload::Received::Complete, "completed");
        assert_eq!(shared.stats.rco_rx.load(Relaxed), 1);
    }

    /// A plain remote whose RCO header names other bytes than the frame's own checksum (here
    /// the IPv4 destination address) would have weft write a sum of its choosing over them,
    /// after nothing or before the policy judged the frame: it is dropped untouched.
    #[test]
    fn rogue_remote_checksum_offload_pointing_at_the_ip_header_is_dropped() {
        let (shared, tables) = plain_node();
        let from = "10.200.0.2:4789".parse().unwrap();
        // start 14 (the IPv4 header), TCP's offset 16: the field would be bytes 30-31, the
        // destination address.
        let mut d = plain_udp(Rco::new(ethernet::HEADER_LEN, 16));
        let sent = d.clone();
        assert_eq!(vxlan_ingress(&shared, &tables, from, &mut d), None);
        assert_eq!(d, sent, "the frame was rewritten");
        assert_eq!(shared.stats.drop_checksum.load(Relaxed), 1);
    }

    #[test]
    fn rogue_datagram_from_a_relayed_paths_address_is_dropped() {
        let (shared, _) = node();
        let virtual_source = crate::plane::path::via(PeerId(1), PEER);
        assert!(!real_source(&shared, virtual_source));
        assert_eq!(shared.stats.drop_reserved_source.load(Relaxed), 1);
        for real in ["10.200.0.2:51820", "[2001:db8::2]:51820", "[100:0:0:1::2]:51820"] {
            assert!(real_source(&shared, real.parse().unwrap()), "{real}");
        }
        assert_eq!(shared.stats.drop_reserved_source.load(Relaxed), 1);
    }
}
