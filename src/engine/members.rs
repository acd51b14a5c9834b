//! The engine's side of membership: our own record, carrying the membership layer's bytes in
//! encrypted sessions (inner kind Gossip), and turning its events into peers and forwarding
//! entries. A record is trusted only as far as its certificate: it must verify against the
//! network CA and name the record's key, and only containers inside the certified subnets
//! are believed, so a member cannot claim another node's addresses.

use overlay_proto::cert::{CaBundle, NodeCert, Revocation};
use overlay_proto::keys::{RecordSigningKey, SecretKey};
use overlay_proto::wire::{Inner, Vni};
use overlay_proto::PeerId;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, trace, warn};

use super::Engine;
use crate::discovery::directory::Directory;
use crate::membership::{ContainerEntry, MemberEvent, Membership, NodeKey, Record, RecordAuth};
use crate::packet::Mac;
use crate::plane::NetId;
use arc_swap::ArcSwap;

/// Membership state the engine keeps next to the membership layer.
pub(crate) struct Members {
    /// The membership layer.
    pub layer: Membership,
    /// Verified certificates from members' records, by peer.
    pub certs: BTreeMap<PeerId, Arc<NodeCert>>,
    /// The networks each member's verified record says it serves, kept with `certs` (one is
    /// never present without the other): the workers refuse its frames for any other network.
    pub networks: BTreeMap<PeerId, Arc<Vec<Vni>>>,
    /// Members declared down: not flooded to, their entries gone.
    pub down: BTreeSet<PeerId>,
    /// The CAs we trust, to verify records' certificates and revocations.
    pub cas: CaBundle,
    /// Records refused (bad certificate, wrong key or name).
    pub refused: u64,
    /// Revocations refused (not signed by the network CA, or malformed).
    pub revocations_refused: u64,
    /// The name table DNS answers from, rebuilt when `directory_dirty`.
    pub directory: Arc<ArcSwap<Directory>>,
    /// A record, liveness or our services changed since the directory was built.
    pub directory_dirty: bool,
    /// Keys the CA revoked, with the revocation (relayed to every member that comes up).
    pub revoked: BTreeMap<[u8; 32], Revocation>,
}

impl Members {
    pub(crate) fn new(layer: Membership, cas: CaBundle, directory: Arc<ArcSwap<Directory>>) -> Self {
        Self {
            layer,
            certs: BTreeMap::new(),
            networks: BTreeMap::new(),
            down: BTreeSet::new(),
            cas,
            refused: 0,
            revocations_refused: 0,
            directory,
            directory_dirty: true,
            revoked: BTreeMap::new(),
        }
    }
}

/// Record signatures backed by certificates: our record is signed with our record-signing key,
/// and another's is believed only if signed by the key its certificate names, the certificate
/// verifying against a CA we trust and naming the record's key and name.
pub(crate) struct CertAuth {
    cas: CaBundle,
    key: RecordSigningKey,
    wall: (Instant, Duration),
}

impl CertAuth {
    /// `wall` is the wall-clock time at `now` (certificates are checked in wall time).
    pub(crate) fn new(cas: CaBundle, secret: &SecretKey, now: Instant, wall: Duration) -> Self {
        Self { cas, key: secret.record_signing_key(), wall: (now, wall) }
    }
}

impl RecordAuth for CertAuth {
    fn sign(&self, body: &[u8]) -> Vec<u8> {
        self.key.sign(body).to_vec()
    }

    fn verify(&self, now: Instant, record: &Record, body: &[u8], signature: &[u8]) -> Result<(), String> {
        let cert = NodeCert::decode(&record.cert).map_err(|e| format!("its certificate: {e}"))?;
        self.cas
            .verify_node(&cert, super::unix_secs(self.wall, now))
            .map_err(|e| format!("its certificate: {e}"))?;
        if cert.public_key != record.key.0 || cert.name != record.name {
            return Err(format!("it carries the certificate of {:?}, another node", cert.name));
        }
        cert.verify_signed(body, signature).map_err(|_| "not signed by the node it describes".to_owned())
    }
}

/// A container as our record announces it.
pub(super) fn entry(
    vni: u32,
    mac: Mac,
    ip: IpAddr,
    name: &str,
    labels: BTreeMap<String, String>,
) -> ContainerEntry {
    ContainerEntry { vni, mac, ip, name: name.to_owned(), labels }
}

impl Engine {
    /// Sends what the membership layer wants sent and applies what it reports.
    pub(super) fn flush_members(&mut self, now: Instant) {
        while let Some((to, hint, bytes)) = self.members.layer.poll_transmit() {
            self.send_gossip(now, to, hint, &bytes);
        }
        while let Some(ev) = self.members.layer.poll_event() {
            self.members.directory_dirty = true;
            match ev {
                MemberEvent::Up(key) => {
                    // A member that joins (or comes back from a partition) learns every
                    // revocation we know.
                    if !self.members.revoked.is_empty() {
                        let list = self.members.revoked.values().map(Revocation::encode).collect();
                        self.members.layer.send_revocations(Some(key), list);
                    }
                    self.apply_record(now, key);
                }
                MemberEvent::RecordChanged(key) => self.apply_record(now, key),
                MemberEvent::Down(key) => {
                    if let Some(p) = self.endpoint.peer_by_key(&key.0) {
                        info!(peer = %self.member_name(&key), "member down");
                        self.members.down.insert(p);
                        for f in &mut self.fdbs {
                            f.forget_peer(p, now);
                        }
                        self.dirty = true;
                    }
                }
                MemberEvent::Removed(key) => self.forget_member(now, key),
            }
        }
    }

    /// A member's record is gone: its peer, sessions, entries and flows go too.
    fn forget_member(&mut self, now: Instant, key: NodeKey) {
        let Some(p) = self.endpoint.peer_by_key(&key.0) else { return };
        debug!(%p, "member removed");
        for f in &mut self.fdbs {
            f.forget_peer(p, now);
        }
        self.forget_conntrack(p);
        self.members.certs.remove(&p);
        self.members.networks.remove(&p);
        self.rtt.remove(&p);
        self.members.down.remove(&p);
        self.paths.forget(p);
        self.endpoint.remove_peer(p);
        self.dirty = true;
    }

    fn member_name(&self, key: &NodeKey) -> String {
        self.members.layer.record(key).map(|r| r.name.clone()).unwrap_or_else(|| format!("{key:?}"))
    }

    /// Bytes from an authenticated peer for the membership layer.
    pub(super) fn gossip_in(&mut self, now: Instant, peer: PeerId, bytes: &[u8]) {
        let Some(info) = self.endpoint.peer_info(peer) else { return };
        if let Err(e) = self.members.layer.handle_message(now, NodeKey(info.key), bytes) {
            trace!(%peer, %e, "gossip dropped");
        }
        let mut heard = Vec::new();
        while let Some(bytes) = self.members.layer.poll_revocation() {
            match Revocation::decode(&bytes).and_then(|r| self.members.cas.verify_revocation(&r).map(|()| r))
            {
                Ok(r) => heard.push(r),
                Err(e) => {
                    self.members.revocations_refused += 1;
                    debug!(%peer, %e, "revocation refused");
                }
            }
        }
        self.revoke(now, heard);
    }

    /// A live reload of our PKI (`weft reload`): our key, certificate and the CAs we trust
    /// change at once. New handshakes use them now; every session is re-handshaken while the
    /// old one carries traffic (no reset of flows inside); our record carries the new
    /// certificate (and moves to the new key, if it changed); members whose certificate the
    /// new CAs no longer accept are dropped. Refused, changing nothing, when the certificate
    /// is not for the key or not vouched for by the CAs now.
    pub(crate) fn set_identity(
        &mut self,
        now: Instant,
        secret: SecretKey,
        cert: NodeCert,
        cas: CaBundle,
    ) -> Result<(), String> {
        let key = NodeKey(cert.public_key);
        let cert_bytes = cert.encode();
        let auth = CertAuth::new(cas.clone(), &secret, self.wall.0, self.wall.1);
        let (name, groups) = (cert.name.clone(), cert.groups.clone());
        self.endpoint.set_identity(now, secret, cert, cas.clone()).map_err(|e| e.to_string())?;
        self.members.cas = cas;
        self.members.layer.change_key(now, key, cert_bytes, Box::new(auth));
        self.me = Arc::new((name, groups));
        // Every peer whose certificate (from its record, or its last handshake) the new CAs
        // refuse goes: members through the membership layer (their record, entries and
        // flows with them), others at the endpoint.
        let unix = self.unix_secs(now);
        let ids: Vec<PeerId> = self.endpoint.peer_ids().collect();
        for p in ids {
            let Some(info) = self.endpoint.peer_info(p) else { continue };
            let Some(cert) = self.members.certs.get(&p).cloned().or(info.cert) else { continue };
            if self.members.cas.verify_node(&cert, unix).is_ok() {
                continue;
            }
            info!(peer = %cert.name, "peer dropped: the CAs now trusted do not accept its certificate");
            if self.members.layer.record(&NodeKey(info.key)).is_some() {
                self.members.layer.expel(now, NodeKey(info.key));
            } else {
                self.endpoint.remove_peer(p);
            }
        }
        self.flush_members(now);
        self.endpoint.rehandshake_all(now);
        self.members.directory_dirty = true;
        self.dirty = true;
        Ok(())
    }

    /// Applies CA-signed revocations (verified by the caller): every revoked member's
    /// sessions, record, forwarding entries, flows and services go at once, its handshakes are
    /// refused from now on, and each new revocation is passed on to every member.
    pub(crate) fn revoke(&mut self, now: Instant, list: Vec<Revocation>) {
        let own = self.endpoint.public_key();
        let mut fresh = Vec::new();
        for r in list {
            if r.public_key == own {
                warn!("the CA revoked this node's key: members will refuse it");
                continue;
            }
            if self.members.revoked.contains_key(&r.public_key) {
                continue;
            }
            info!(peer = %r.name, "member revoked");
            self.members.layer.ban(now, NodeKey(r.public_key));
            fresh.push(r.encode());
            self.members.revoked.insert(r.public_key, r);
        }
        if fresh.is_empty() {
            return;
        }
        // The layer reported each banned member `Removed`: forget it everywhere first, then
        // make the endpoint refuse its key.
        self.flush_members(now);
        self.endpoint.set_revoked(self.members.revoked.keys().copied().collect());
        self.members.layer.send_revocations(None, fresh);
        self.members.directory_dirty = true;
        self.dirty = true;
    }

    fn send_gossip(&mut self, now: Instant, to: NodeKey, hint: Option<SocketAddr>, bytes: &[u8]) {
        let hint = hint.filter(|a| !a.ip().is_unspecified() && a.port() != 0);
        let peer = self.endpoint.add_peer(to.0, hint);
        if let Err(e) = self.send_inner(now, peer, &Inner::Gossip(bytes)) {
            trace!(%peer, %e, "gossip not sent");
        }
        // Held for a handshake: membership must not take a probe's wait for it as the
        // member's silence.
        if self.endpoint.sending_session(now, peer).is_none() {
            if let Some(since) = self.endpoint.peer_info(peer).and_then(|i| i.initiating_since) {
                self.members.layer.link_waiting(to, since);
            }
        }
    }

    /// Verifies a member's record and installs its peer and containers.
    fn apply_record(&mut self, now: Instant, key: NodeKey) {
        let Some(record) = self.members.layer.record(&key) else { return };
        let cert = match NodeCert::decode(&record.cert) {
            Ok(c) => c,
            Err(e) => {
                self.members.refused += 1;
                debug!(%e, "record with an undecodable certificate");
                return;
            }
        };
        let unix = self.unix_secs(now);
        if self.members.cas.verify_node(&cert, unix).is_err()
            || cert.public_key != key.0
            || cert.name != record.name
        {
            self.members.refused += 1;
            debug!(name = %record.name, "record refused: its certificate does not vouch for it");
            return;
        }
        // The same node under a new key (it reloaded a new key file): the newer record wins
        // and the older identity goes at once, its MACs with it, so the node is one member.
        let version = record.version;
        let namesakes: Vec<[u8; 32]> = self
            .members
            .certs
            .values()
            .filter(|c| c.name == cert.name && c.public_key != key.0)
            .map(|c| c.public_key)
            .collect();
        for old in namesakes {
            if self.members.layer.record(&NodeKey(old)).is_some_and(|r| r.version >= version) {
                debug!(name = %cert.name, "record refused: a newer one of that name is held");
                return;
            }
            info!(peer = %cert.name, "member moved to a new key");
            self.members.layer.expel(now, NodeKey(old));
            self.forget_member(now, NodeKey(old));
        }
        let Some(record) = self.members.layer.record(&key) else { return };
        let hint = Some(record.endpoint).filter(|a| !a.ip().is_unspecified() && a.port() != 0);
        let mut per_net: Vec<Vec<(Mac, IpAddr)>> = vec![Vec::new(); self.fdbs.len()];
        for c in &record.containers {
            let Some(net) = self.shared.nets.iter().position(|n| n.vni.get() == c.vni) else { continue };
            let net = NetId(net);
            if cert.may_source(c.ip) {
                per_net[net].push((c.mac, c.ip));
            } else {
                self.members.refused += 1;
            }
        }
        let name = record.name.clone();
        let networks: Vec<Vni> = record.networks.iter().filter_map(|&v| Vni::new(v)).collect();
        let peer = self.endpoint.add_peer(key.0, hint);
        // A node that moved (restarted on a new address or port) says so in its record; an
        // address learned from live authenticated traffic is better evidence, so the record
        // only wins while we have no session with the node.
        if let (Some(addr), Some(info)) = (hint, self.endpoint.peer_info(peer)) {
            if !info.connected && info.endpoint != Some(addr) {
                self.endpoint.note_roamed(peer, addr);
            }
        }
        if self.members.down.remove(&peer) || !self.members.certs.contains_key(&peer) {
            info!(peer = %name, "member up");
        }
        self.members.certs.insert(peer, Arc::new(cert));
        self.members.networks.insert(peer, Arc::new(networks));
        for (f, entries) in self.fdbs.iter_mut().zip(per_net) {
            f.set_announced(peer, &entries, now);
        }
        self.dirty = true;
    }

    /// Rewrites our own record's container list from the local FDB view.
    pub(super) fn announce_containers(&mut self, now: Instant) {
        let containers = self.local_containers.values().cloned().collect::<Vec<_>>();
        self.members.layer.update_own(now, |r| r.containers = containers);
        self.members.directory_dirty = true;
    }
}
