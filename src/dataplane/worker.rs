//! One data-plane worker: a poll loop over its UDP socket(s) and its queue of each network's
//! TAP. Frames are read into a buffer at the offset where they will be sealed in place, so a
//! frame is copied only when it is replicated to several peers.
//!
//! Buffer layout (encrypted): `[transport header 16][inner header 4][frame]`, read from the
//! TAP at offset 10 so its 10-byte virtio-net header lands on bytes 10..20 and is overwritten.
//! Plain VXLAN uses bytes 12..20 for the VXLAN header.

use overlay_proto::consts::{INNER_HEADER_LEN, MAX_DATAGRAM_LEN, TAG_LEN, TRANSPORT_HEADER_LEN};
use overlay_proto::wire::{Inner, MessageType, TransportHeader, VxlanHeader, VXLAN_HEADER_LEN};
use overlay_proto::{PeerId, SealError};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use super::frame;
use super::tables::{Loc, Tables};
use super::{inc, EngineMsg, Shared};
use crate::config::Encryption;
use crate::device::VNET_HDR_LEN;

const FRAME_AT: usize = TRANSPORT_HEADER_LEN + INNER_HEADER_LEN;
const BUF_LEN: usize = MAX_DATAGRAM_LEN + 64;
const BATCH: usize = 64;
/// Most peers one broadcast is replicated to (head-end replication is O(peers)).
pub const MAX_FLOOD: usize = 1024;

struct Worker {
    shared: Arc<Shared>,
    index: usize,
    udp: UdpSocket,
    vxlan: Option<UdpSocket>,
    buf: Vec<u8>,
    scratch: Vec<u8>,
}

/// Runs worker `index` until `shared.stop` is set.
pub fn run_worker(shared: Arc<Shared>, index: usize, udp: UdpSocket, vxlan: Option<UdpSocket>) {
    let mut w = Worker { shared, index, udp, vxlan, buf: vec![0; BUF_LEN], scratch: vec![0; BUF_LEN] };
    w.run();
}

impl Worker {
    fn run(&mut self) {
        let nets = self.shared.nets.len();
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(nets + 2);
        fds.push(pollfd(self.udp.as_raw_fd()));
        for n in 0..nets {
            fds.push(pollfd(self.shared.taps[n][self.index].as_raw_fd()));
        }
        if let Some(v) = &self.vxlan {
            fds.push(pollfd(v.as_raw_fd()));
        }
        while !self.shared.stop.load(Relaxed) {
            for f in fds.iter_mut() {
                f.revents = 0;
            }
            // SAFETY: `fds` is a valid, initialised array of `fds.len()` pollfd structs that
            // outlives the call; poll only writes their `revents` fields.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 200) };
            if r <= 0 {
                continue;
            }
            if fds[0].revents != 0 {
                self.drain_udp();
            }
            for n in 0..nets {
                if fds[1 + n].revents != 0 {
                    self.drain_tap(n);
                }
            }
            if fds.len() > nets + 1 && fds[nets + 1].revents != 0 {
                self.drain_vxlan();
            }
        }
    }

    fn drain_tap(&mut self, net: usize) {
        let tap = Arc::clone(&self.shared.taps[net][self.index]);
        for _ in 0..BATCH {
            let n = match tap.recv(&mut self.buf[FRAME_AT - VNET_HDR_LEN..BUF_LEN - TAG_LEN]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    inc(&self.shared.stats.io_errors);
                    return;
                }
            };
            if n < VNET_HDR_LEN + 14 {
                continue;
            }
            inc(&self.shared.stats.tap_rx);
            self.egress(net, n - VNET_HDR_LEN);
        }
    }

    /// A frame from our bridge at `buf[FRAME_AT..FRAME_AT + len]`.
    fn egress(&mut self, net: usize, len: usize) {
        let shared = Arc::clone(&self.shared);
        let info = &shared.nets[net];
        let tables = shared.tables.load();
        let f = &self.buf[FRAME_AT..FRAME_AT + len];
        if len > info.mtu as usize + 14 {
            inc(&shared.stats.drop_mtu);
            let mut out = [0u8; 1600];
            let mtu = u16::try_from(info.mtu).unwrap_or(u16::MAX);
            if let Some(n) =
                frame::too_big_reply(f, mtu, info.gateway_mac, info.gateway, &mut out[VNET_HDR_LEN..])
            {
                self.write_tap(net, &mut out[..VNET_HDR_LEN + n]);
            }
            return;
        }
        let (Some(dst), Some(nt)) = (frame::dst_mac(f), tables.nets.get(net)) else { return };
        // Link-local and unspecified sources (IPv6 ND, ARP probes) stay on this host: no peer
        // would accept them, as they lie outside every certified subnet.
        if info.encryption == Encryption::ChaCha20Poly1305
            && frame::source_ip(f).is_some_and(|ip| frame::is_link_local(&ip))
        {
            inc(&shared.stats.drop_link_local);
            return;
        }
        if let Some((_, _, target)) = frame::arp_request(f) {
            let remote =
                nt.ips.get(&target.into()).filter(|m| !matches!(nt.macs.get(*m), Some(Loc::Local) | None));
            if let Some(mac) = remote {
                let mut out = [0u8; VNET_HDR_LEN + 42];
                let reply: &mut [u8; 42] = (&mut out[VNET_HDR_LEN..]).try_into().expect("42 bytes");
                if frame::arp_reply(f, *mac, reply).is_some() {
                    inc(&shared.stats.arp_suppressed);
                    self.write_tap(net, &mut out);
                    return;
                }
            }
        }
        let target = if frame::is_multicast(&dst) { None } else { nt.macs.get(&dst).copied() };
        match (target, info.encryption) {
            (Some(Loc::Local), _) => {}
            (Some(Loc::Peer(p)), Encryption::ChaCha20Poly1305) => {
                let buf = std::mem::take(&mut self.buf);
                self.buf = self.send_sealed(&tables, net, p, buf, len);
            }
            (Some(Loc::Vtep(addr)), Encryption::None) => self.send_vxlan(net, addr, len),
            (_, Encryption::ChaCha20Poly1305) => self.flood_sealed(&tables, net, len),
            (_, Encryption::None) => self.flood_vxlan(net, len),
        }
    }

    fn flood_sealed(&mut self, tables: &Tables, net: usize, len: usize) {
        if tables.flood.is_empty() {
            inc(&self.shared.stats.drop_no_route);
        }
        for &p in tables.flood.iter().take(MAX_FLOOD) {
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch[FRAME_AT..FRAME_AT + len].copy_from_slice(&self.buf[FRAME_AT..FRAME_AT + len]);
            inc(&self.shared.stats.flooded);
            self.scratch = self.send_sealed(tables, net, p, scratch, len);
        }
    }

    /// Seals the frame at `buf[FRAME_AT..]` for `peer` and sends it; hands it to the engine
    /// when the peer has no usable session. Returns the buffer for reuse.
    fn send_sealed(
        &self,
        tables: &Tables,
        net: usize,
        peer: PeerId,
        mut buf: Vec<u8>,
        len: usize,
    ) -> Vec<u8> {
        let head: &mut [u8; INNER_HEADER_LEN] =
            (&mut buf[TRANSPORT_HEADER_LEN..FRAME_AT]).try_into().expect("4 bytes");
        Inner::emit_frame_header(self.shared.nets[net].vni, head);
        let payload_len = INNER_HEADER_LEN + len;
        let entry = tables.peers.get(&peer);
        let ready = entry.and_then(|e| Some((e.session.as_ref()?, e.endpoint?)));
        match ready.map(|(s, dst)| (s.seal(Instant::now(), &mut buf, payload_len), dst)) {
            Some((Ok(n), dst)) => {
                if self.udp.send_to(&buf[..n], dst).is_err() {
                    inc(&self.shared.stats.io_errors);
                }
            }
            Some((Err(SealError::BufferTooSmall), _)) => inc(&self.shared.stats.drop_mtu),
            Some((Err(SealError::Expired), _)) | None => {
                let payload = buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + payload_len].to_vec();
                self.shared.to_engine(EngineMsg::Unroutable { peer, payload });
            }
        }
        buf
    }

    fn flood_vxlan(&mut self, net: usize, len: usize) {
        let remotes = self.shared.nets[net].remotes.clone();
        if remotes.is_empty() {
            inc(&self.shared.stats.drop_no_route);
        }
        for addr in remotes {
            inc(&self.shared.stats.flooded);
            self.send_vxlan(net, addr, len);
        }
    }

    fn send_vxlan(&mut self, net: usize, dst: SocketAddr, len: usize) {
        let Some(sock) = &self.vxlan else { return };
        let at = FRAME_AT - VXLAN_HEADER_LEN;
        let head: &mut [u8; VXLAN_HEADER_LEN] = (&mut self.buf[at..FRAME_AT]).try_into().expect("8 bytes");
        VxlanHeader { vni: self.shared.nets[net].vni }.emit(head);
        if sock.send_to(&self.buf[at..FRAME_AT + len], dst).is_err() {
            inc(&self.shared.stats.io_errors);
        }
    }

    fn write_tap(&self, net: usize, with_vnet_hdr: &mut [u8]) {
        with_vnet_hdr[..VNET_HDR_LEN].fill(0);
        match self.shared.taps[net][self.index].send(with_vnet_hdr) {
            Ok(_) => inc(&self.shared.stats.tap_tx),
            Err(_) => inc(&self.shared.stats.io_errors),
        }
    }

    fn drain_udp(&mut self) {
        for _ in 0..BATCH {
            let (n, from) = match self.udp.recv_from(&mut self.buf) {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    inc(&self.shared.stats.io_errors);
                    return;
                }
            };
            self.ingress(from, n);
        }
    }

    fn ingress(&mut self, from: SocketAddr, n: usize) {
        let shared = Arc::clone(&self.shared);
        let d = &mut self.buf[..n];
        if MessageType::of(d) != Ok(MessageType::Transport) {
            shared.to_engine(EngineMsg::Datagram { from, bytes: d.to_vec() });
            return;
        }
        let tables = shared.tables.load();
        let Ok(h) = TransportHeader::parse(d) else {
            inc(&shared.proto_stats.malformed);
            return;
        };
        let Some((peer, session)) = tables.sessions.get(&h.receiver_index) else {
            // Perhaps a session the engine has just made and not yet published.
            shared.to_engine(EngineMsg::Datagram { from, bytes: d.to_vec() });
            return;
        };
        let range = match session.open(Instant::now(), d) {
            Ok(r) => r,
            Err(e) => return shared.proto_stats.count_open(&e),
        };
        if tables.peers.get(peer).and_then(|e| e.endpoint) != Some(from) {
            shared.to_engine(EngineMsg::Roamed { peer: *peer, addr: from });
        }
        match Inner::parse(&d[range.clone()]) {
            Ok(Inner::Frame { vni, .. }) => match tables.net_of(vni) {
                Some(net) => {
                    deliver(&shared, &tables, *peer, net, self.index, &mut d[..range.end], range.start + 4)
                }
                None => inc(&shared.stats.drop_no_network),
            },
            Ok(Inner::Keepalive) => {}
            Ok(_) => shared.to_engine(EngineMsg::Inner { peer: *peer, bytes: d[range].to_vec() }),
            Err(_) => inc(&shared.proto_stats.malformed),
        }
    }

    fn drain_vxlan(&mut self) {
        let Some(sock) = self.vxlan.as_ref().map(|s| s.try_clone()) else { return };
        let Ok(sock) = sock else { return };
        for _ in 0..BATCH {
            let at = FRAME_AT - VXLAN_HEADER_LEN;
            let (n, from) = match sock.recv_from(&mut self.buf[at..]) {
                Ok(x) => x,
                Err(_) => return,
            };
            self.vxlan_ingress(from, at, at + n);
        }
    }

    fn vxlan_ingress(&mut self, from: SocketAddr, start: usize, end: usize) {
        let shared = Arc::clone(&self.shared);
        let Ok(h) = VxlanHeader::parse(&self.buf[start..end]) else {
            inc(&shared.proto_stats.malformed);
            return;
        };
        let tables = shared.tables.load();
        let Some(net) = tables.net_of(h.vni).filter(|n| shared.nets[*n].encryption == Encryption::None)
        else {
            inc(&shared.stats.drop_no_network);
            return;
        };
        // Plain VXLAN has no identity: accept only configured remotes' addresses.
        if !shared.nets[net].remotes.iter().any(|r| r.ip() == from.ip()) {
            inc(&shared.stats.drop_spoof);
            return;
        }
        let f = &self.buf[start + VXLAN_HEADER_LEN..end];
        if f.len() < 14 {
            inc(&shared.proto_stats.malformed);
            return;
        }
        let remote = shared.nets[net].remotes.iter().find(|r| r.ip() == from.ip()).copied().unwrap_or(from);
        if let Some(src) = frame::src_mac(f) {
            if tables.nets.get(net).and_then(|nt| nt.macs.get(&src)) != Some(&Loc::Vtep(remote)) {
                shared.to_engine(EngineMsg::Learn {
                    net,
                    mac: src,
                    ip: frame::source_ip(f),
                    loc: Loc::Vtep(remote),
                });
            }
        }
        let buf = &mut self.buf[start + VXLAN_HEADER_LEN - VNET_HDR_LEN..end];
        buf[..VNET_HDR_LEN].fill(0);
        match shared.taps[net][self.index].send(buf) {
            Ok(_) => inc(&shared.stats.tap_tx),
            Err(_) => inc(&shared.stats.io_errors),
        }
    }
}

/// Delivers a decrypted frame from `peer` (at `buf[frame_at..]`) to network `net`'s TAP, after
/// the anti-spoofing checks: the inner source IP must lie in the peer's certified subnets and
/// the source MAC must not belong to anyone else. Needs `frame_at >= VNET_HDR_LEN`.
pub fn deliver(
    shared: &Shared,
    tables: &Tables,
    peer: PeerId,
    net: usize,
    queue: usize,
    buf: &mut [u8],
    frame_at: usize,
) {
    let f = &buf[frame_at..];
    let (Some(src), Some(ip)) = (frame::src_mac(f), frame::source_ip(f)) else {
        inc(&shared.stats.drop_ethertype);
        return;
    };
    let Some(entry) = tables.peers.get(&peer) else { return };
    if frame::is_link_local(&ip) {
        inc(&shared.stats.drop_link_local);
        return;
    }
    if !entry.subnets.iter().any(|s| s.contains(&ip)) {
        inc(&shared.stats.drop_spoof);
        return;
    }
    let Some(nt) = tables.nets.get(net) else { return };
    match nt.macs.get(&src) {
        Some(Loc::Peer(p)) if *p == peer => {
            if nt.ips.get(&ip) != Some(&src) && !ip.is_unspecified() {
                shared.to_engine(EngineMsg::Learn { net, mac: src, ip: Some(ip), loc: Loc::Peer(peer) });
            }
        }
        Some(_) => {
            inc(&shared.stats.drop_spoof);
            return;
        }
        None => shared.to_engine(EngineMsg::Learn { net, mac: src, ip: Some(ip), loc: Loc::Peer(peer) }),
    }
    let out = &mut buf[frame_at - VNET_HDR_LEN..];
    out[..VNET_HDR_LEN].fill(0);
    let taps = &shared.taps[net];
    match taps[queue % taps.len()].send(out) {
        Ok(_) => inc(&shared.stats.tap_tx),
        Err(_) => inc(&shared.stats.io_errors),
    }
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd { fd, events: libc::POLLIN, revents: 0 }
}
