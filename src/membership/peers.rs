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
use super::swim::{IdCache, SwimId};

/// A member as we know it: 16 bytes beside its key, in an entry every node keeps for every
/// member.
#[derive(Debug)]
pub(super) struct Peer {
    pub(super) held: Option<Arc<Held>>,
    /// Its [`Live`], encoded ([`LIVE_UNKNOWN`], [`LIVE_UP`], else seconds of `Live::Down`).
    live: u32,
    /// Vouched for (see `Membership::admitted`).
    pub(super) admitted: bool,
}

const LIVE_UNKNOWN: u32 = u32::MAX;
const LIVE_UP: u32 = u32::MAX - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Live {
    /// Only its record is known (foca does not count it as a member).
    Unknown,
    /// Alive or suspect.
    Up,
    /// Declared down this many whole seconds (rounded down) after the instance started
    /// (at most `u32::MAX - 2`).
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
    /// A member whose liveness is not known yet.
    pub(super) fn new(admitted: bool) -> Self {
        Self { held: None, live: LIVE_UNKNOWN, admitted }
    }

    /// What we know of its liveness.
    pub(super) fn live(&self) -> Live {
        match self.live {
            LIVE_UNKNOWN => Live::Unknown,
            LIVE_UP => Live::Up,
            secs => Live::Down(secs),
        }
    }

    /// Sets its liveness; returns the one before.
    pub(super) fn set_live(&mut self, live: Live) -> Live {
        let before = self.live();
        self.live = match live {
            Live::Unknown => LIVE_UNKNOWN,
            Live::Up => LIVE_UP,
            Live::Down(secs) => secs.min(LIVE_UP - 1),
        };
        before
    }

    /// Its version in the anti-entropy set: records of members not known to be down.
    pub(super) fn set_version(&self) -> Option<u64> {
        match self.live() {
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
    records: WeakMap<(NodeKey, u64), Held>,
    /// SWIM identities, shared the same way.
    pub(super) ids: IdCache,
}

impl RecordCache {
    /// The held record of `key` at `version` if some instance holds exactly these bytes.
    pub(super) fn get(&self, key: NodeKey, version: u64, signed: &[u8]) -> Option<Arc<Held>> {
        self.records.get(&(key, version)).filter(|held| held.signed == signed)
    }

    /// Shares `held` with the other instances.
    pub(super) fn put(&self, held: &Arc<Held>) {
        self.records.put((held.record.key, held.record.version), held);
    }
}

/// Values shared between the instances of one process while any holds them: a map of weak
/// references, swept of dropped ones as it doubles.
#[derive(Debug)]
pub(super) struct WeakMap<K, V> {
    inner: Arc<Mutex<WeakMapInner<K, V>>>,
}

#[derive(Debug)]
struct WeakMapInner<K, V> {
    map: HashMap<K, Weak<V>>,
    /// Entries after the last sweep.
    swept_len: usize,
}

impl<K, V> Clone for WeakMap<K, V> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<K, V> Default for WeakMap<K, V> {
    fn default() -> Self {
        Self { inner: Arc::new(Mutex::new(WeakMapInner { map: HashMap::new(), swept_len: 0 })) }
    }
}

impl<K: std::hash::Hash + Eq, V> WeakMap<K, V> {
    /// The value under `key`, if some instance still holds it.
    pub(super) fn get(&self, key: &K) -> Option<Arc<V>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.map.get(key)?.upgrade()
    }

    /// Shares `value` under `key` (replacing what was there).
    pub(super) fn put(&self, key: K, value: &Arc<V>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.map.insert(key, Arc::downgrade(value));
        if inner.map.len() > inner.swept_len.max(1024) * 2 {
            inner.map.retain(|_, w| w.strong_count() > 0);
            inner.swept_len = inner.map.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every node keeps a `Peer` and a foca member for every member: 10⁸ of each in a
    /// 10,000-node simulation, so their size is what makes it fit.
    #[test]
    fn per_member_entries_stay_small() {
        assert_eq!(std::mem::size_of::<Peer>(), 16);
        assert_eq!(std::mem::size_of::<foca::Member<SwimId>>(), 16);
    }

    #[test]
    fn liveness_round_trips_through_its_encoding() {
        let mut p = Peer::new(false);
        assert_eq!(p.live(), Live::Unknown);
        for l in [Live::Up, Live::Down(0), Live::Down(7), Live::Unknown, Live::Down(u32::MAX - 2)] {
            p.set_live(l);
            assert_eq!(p.live(), l);
        }
        p.set_live(Live::Down(u32::MAX));
        assert_eq!(p.live(), Live::Down(u32::MAX - 2), "a huge time stays a down");
    }
}
