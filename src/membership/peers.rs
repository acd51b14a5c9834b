//! What we know of each member: its SWIM identity, liveness and latest record, and the set of
//! members that are up (for O(1) random choice of gossip targets).
//!
//! A member's record is in the anti-entropy set unless the member is known to be down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::record::{NodeKey, Record};
use super::swim::SwimId;

/// A member as we know it.
#[derive(Debug)]
pub(super) struct Peer {
    /// The SWIM identity foca last told us about.
    pub(super) id: Option<SwimId>,
    pub(super) live: Live,
    pub(super) held: Option<Held>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Live {
    /// Only its record is known (foca does not count it as a member).
    Unknown,
    /// Alive or suspect.
    Up,
    /// Declared down at this instant.
    Down(Instant),
}

#[derive(Debug)]
pub(super) struct Held {
    pub(super) record: Record,
    /// The owner's signed bytes, relayed unchanged.
    pub(super) signed: Arc<Vec<u8>>,
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

/// The alive-or-suspect members, for O(1) random choice.
#[derive(Debug, Default)]
pub(super) struct UpSet {
    pub(super) keys: Vec<NodeKey>,
    pos: BTreeMap<NodeKey, usize>,
}

impl UpSet {
    pub(super) fn insert(&mut self, key: NodeKey) {
        if let std::collections::btree_map::Entry::Vacant(e) = self.pos.entry(key) {
            e.insert(self.keys.len());
            self.keys.push(key);
        }
    }

    pub(super) fn remove(&mut self, key: &NodeKey) {
        if let Some(i) = self.pos.remove(key) {
            self.keys.swap_remove(i);
            if let Some(moved) = self.keys.get(i) {
                self.pos.insert(*moved, i);
            }
        }
    }
}
