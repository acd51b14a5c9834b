//! The engine's driver: the thread that feeds the [`Engine`] state machine from its channel
//! and the clock, sends the datagrams it emits on a UDP socket, writes the frames it delivers
//! to the TAPs through the data plane, and answers control requests. Everything here is I/O;
//! every decision is the engine's.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

use super::{Engine, Event, Pinged};
use crate::plane::{ControlMsg, EngineMsg, LaneReceivers, Shared};
use crate::report::Pong;

/// How many queued messages are handled before the timer pass runs.
const BATCH: usize = 256;

/// A ping's pending answer.
type PingReply = tokio::sync::oneshot::Sender<Result<Pong, String>>;

/// Owns the engine and its I/O.
pub struct Driver {
    engine: Engine,
    shared: Arc<Shared>,
    udp: UdpSocket,
    pings: BTreeMap<u64, PingReply>,
}

impl Driver {
    /// A driver that sends through `udp` (a clone of a worker socket).
    pub fn new(engine: Engine, shared: Arc<Shared>, udp: UdpSocket) -> Self {
        Self { engine, shared, udp, pings: BTreeMap::new() }
    }

    /// The engine, for set-up before [`Driver::run`].
    pub fn engine(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// Runs until a `Stop` arrives or every sender is gone. Each round takes at most one
    /// message from each of the control channel, the session lane and the pre-auth lane in
    /// turn, so a flood in one of them costs the others at most a share of the engine.
    pub fn run(mut self, rx: Receiver<EngineMsg>, lanes: LaneReceivers) {
        let mut more = false;
        loop {
            let now = Instant::now();
            let wait = if more {
                std::time::Duration::ZERO
            } else {
                self.engine.poll_timeout(now).saturating_duration_since(now)
            };
            match rx.recv_timeout(wait) {
                Ok(EngineMsg::Control(ControlMsg::Stop)) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Work queued after this point sends a new wake-up.
            self.shared.lanes.woken();
            // Drain what queued up meanwhile before the (comparatively) slow timer pass.
            more = true;
            for _ in 0..BATCH {
                let mut got = false;
                match rx.try_recv() {
                    Ok(EngineMsg::Control(ControlMsg::Stop)) => return,
                    Ok(msg) => {
                        self.handle(msg);
                        got = true;
                    }
                    Err(_) => {}
                }
                for lane in [&lanes.session, &lanes.preauth] {
                    if let Ok(m) = lane.try_recv() {
                        self.engine.handle(Instant::now(), m);
                        self.flush();
                        got = true;
                    }
                }
                if !got {
                    more = false;
                    break;
                }
            }
            self.engine.handle_timeout(Instant::now());
            self.flush();
        }
    }

    fn handle(&mut self, msg: EngineMsg) {
        let now = Instant::now();
        match msg {
            EngineMsg::Wake => {}
            EngineMsg::Control(c) => self.control(now, c),
        }
        self.flush();
    }

    fn control(&mut self, now: Instant, c: ControlMsg) {
        let e = &mut self.engine;
        match c {
            ControlMsg::AddLocal { net, mac, ip, name, labels } => {
                e.add_local(now, net, mac, ip, &name, labels)
            }
            ControlMsg::RemoveLocal { net, mac } => e.remove_local(now, net, &mac),
            ControlMsg::Status(reply) => {
                let _ = reply.send(e.status(now));
            }
            ControlMsg::SetServices(list) => e.set_services(now, list),
            ControlMsg::Catalog(reply) => {
                e.publish_directory();
                let _ = reply.send(e.catalog());
            }
            ControlMsg::PolicyExplain { net, from, to, proto, port, reply } => {
                let _ = reply.send(e.explain(net, &from, &to, proto, port).map_err(|e| e.to_string()));
            }
            ControlMsg::PolicyStatus(reply) => {
                let _ = reply.send(e.policy_status());
            }
            ControlMsg::SetPolicies(p) => e.replace_policies(p),
            ControlMsg::SetDialTargets(targets) => e.set_dial_targets(now, &targets),
            ControlMsg::Revoke(list) => e.revoke(now, list),
            ControlMsg::SetIdentity(id) => {
                let crate::plane::NewIdentity { secret, cert, cas, reply } = *id;
                let _ = reply.send(e.set_identity(now, secret, cert, cas));
            }
            ControlMsg::Ping { peer, reply } => match e.ping(now, &peer) {
                Ok(id) => {
                    self.pings.insert(id, reply);
                }
                Err(err) => {
                    let _ = reply.send(Err(err.to_string()));
                }
            },
            ControlMsg::Stop => {}
        }
    }

    /// Carries out what the engine emitted.
    fn flush(&mut self) {
        while let Some(t) = self.engine.poll_transmit() {
            // The engine wraps every datagram for a relayed path; a virtual address is never
            // an underlay one.
            if crate::plane::path::relayed(t.dst).is_some() {
                debug_assert!(false, "a datagram for a virtual address reached the socket");
                continue;
            }
            if self.udp.send_to(&t.payload, t.dst).is_err() {
                crate::plane::inc(&self.shared.stats.io_errors);
            }
        }
        while let Some(ev) = self.engine.poll_event() {
            match ev {
                Event::Deliver { peer, net, mut buf, at, partial_csum } => {
                    let tables = self.shared.tables.load();
                    let frame = crate::dataplane::Received { peer, net, at, partial_csum };
                    crate::dataplane::deliver(&self.shared, &tables, frame, 0, &mut buf);
                }
                Event::Pinged { id, result } => {
                    if let Some(reply) = self.pings.remove(&id) {
                        let _ = reply.send(result.map_err(|e| e.to_string()).map(|p: Pinged| Pong {
                            peer: p.peer,
                            endpoint: p.endpoint,
                            rtt_ms: p.rtt.as_secs_f64() * 1000.0,
                        }));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sim::{Sim, SimConfig};
    use std::sync::mpsc::sync_channel;

    /// The driver answers control requests from its channel and stops on `Stop`; its socket
    /// is on loopback and nothing is sent (a one-node network has nobody to talk to).
    #[test]
    fn engine_driver_answers_requests_and_stops() {
        let mut sim = Sim::new(1, SimConfig::default());
        let node = sim.nodes.remove(0);
        let udp = UdpSocket::bind("127.0.0.1:0").expect("loopback socket");
        let driver = Driver::new(node.engine, node.shared, udp);
        let (tx, rx) = sync_channel(8);
        let lanes = node.lanes;
        let thread = std::thread::spawn(move || driver.run(rx, lanes));
        let (status_tx, status_rx) = tokio::sync::oneshot::channel();
        tx.send(EngineMsg::Control(ControlMsg::Status(status_tx))).unwrap();
        let (ping_tx, ping_rx) = tokio::sync::oneshot::channel();
        tx.send(EngineMsg::Control(ControlMsg::Ping { peer: "nobody".into(), reply: ping_tx })).unwrap();
        let status = status_rx.blocking_recv().expect("status answered");
        assert_eq!(status.members, 0);
        assert!(ping_rx.blocking_recv().expect("ping answered").is_err());
        tx.send(EngineMsg::Control(ControlMsg::Stop)).unwrap();
        thread.join().expect("the engine thread ends on Stop");
    }
}
