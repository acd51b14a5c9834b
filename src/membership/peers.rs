//! What we know of each member: its liveness, latest record and whether it is vouched for.
//! Its SWIM identity is foca's to hold (and foca's list is where random members are drawn
//! from), so nothing is kept twice: a 10,000-node simulation holds 10⁸ of these.
//!
//! A member's record is in the anti-entropy set unless the member is known to be down.
//! Records are immutable once held ([`Held`] behind an `Arc`), so one copy can be shared by
//! every node of a simulation through a [`RecordCache`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::record::{NodeKey, Record};
use super::swim::SwimId;

/// A member as we know it.
#[derive(Debug)]
pub(super) struct Peer {
    pub(super) live: Live,
    pub(super) held: Option<Arc<Held>>,
    /// Vouched for (see `Membership::admitted`).
    pub(super) admitted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Live {
    /// Only its record is known (foca does not count it as a member).
    Unknown,
    /// Alive or suspect.
    Up,
    /// Declared down this many whole seconds (rounded down) after the instance started:
    /// 4 bytes rather than an `Instant`'s 16, in an entry every node keeps for every member.
    Down(u32),
}

/// A verified record as its owner signed it.
#[derive(Debug)]
pub struct Held {
    pub(super) record: Record,
    /// The SWIM identity its owner used when it signed it.
    pub(super) id: SwimId,
    /// The owner's signed bytes, relayed unchanged.
    pub(super) signed: Vec<u8>,
}

impl Peer {
    /// Its version in the anti-entropy set: records of members not known to be down.
    pub(super) fn set_version(&self) -> Option<u64> {
        match self.live {
            Live::Down(_) => None,
            _ => self.held.as_ref().map(|h| h.record.version),
        }
    }
}

/// Verified records shared by the [`super::Membership`] instances of one process that judge
/// records alike (the simulator's thousands of nodes, all trusting one CA): a record that
/// reaches every node is decoded, checked and held once, not once per node. A hit skips
/// decoding and the signature check, so never share one between instances with different
/// trust. The daemon has one instance and no cache.
#[derive(Debug, Clone, Default)]
pub struct RecordCache {
    inner: Arc<Mutex<CacheInner>>,
}

#[derive(Debug, Default)]
struct CacheInner {
    map: HashMap<(NodeKey, u64), Weak<Held>>,
    /// Entries after the last sweep of dropped records.
    swept_len: usize,
}

impl RecordCache {
    /// The held record of `key` at `version` if some instance holds exactly these bytes.
    pub(super) fn get(&self, key: NodeKey, version: u64, signed: &[u8]) -> Option<Arc<Held>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let held = inner.map.get(&(key, version))?.upgrade()?;
        (held.signed == signed).then_some(held)
    }

    /// Shares `held` with the other instances.
    pub(super) fn put(&self, held: &Arc<Held>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.map.insert((held.record.key, held.record.version), Arc::downgrade(held));
        if inner.map.len() > inner.swept_len.max(1024) * 2 {
            inner.map.retain(|_, w| w.strong_count() > 0);
            inner.swept_len = inner.map.len();
        }
    }
}
