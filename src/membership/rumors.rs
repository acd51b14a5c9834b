//! Rumors: `(key, version)` notices of records we hold that others may lack, each pushed for
//! a bounded number of gossip rounds (SWIM-style infection dissemination). Receivers pull
//! the record from whoever told them and only then spread the rumor themselves, so whoever
//! sends a notice can serve the record.
//!
//! Bounded: at most [`MAX_RUMORS`] at once. A round carries a few dozen notices, so a burst
//! of thousands (a large cluster forming) would take minutes of rounds to spread; beyond the
//! bound the most-spread rumors are dropped and anti-entropy delivers those records instead.

use std::collections::BTreeMap;

use super::record::NodeKey;
use super::wire::Notice;

/// Most rumors spread at once.
pub(crate) const MAX_RUMORS: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Rumor {
    version: u64,
    rounds_left: u8,
}

/// The rumors still being spread.
#[derive(Debug, Default)]
pub(crate) struct Rumors {
    map: BTreeMap<NodeKey, Rumor>,
}

impl Rumors {
    /// Stops spreading `key`'s record.
    pub(crate) fn forget(&mut self, key: &NodeKey) {
        self.map.remove(key);
    }

    /// Spreads `key`'s record at `version` for `rounds` rounds (replacing older rumors of it).
    pub(crate) fn add(&mut self, key: NodeKey, version: u64, rounds: u8) {
        let r = self.map.entry(key).or_insert(Rumor { version, rounds_left: 0 });
        if version >= r.version {
            *r = Rumor { version, rounds_left: rounds };
        }
        if self.map.len() > MAX_RUMORS * 2 {
            let mut by_rounds: Vec<(u8, NodeKey)> =
                self.map.iter().map(|(k, r)| (r.rounds_left, *k)).collect();
            by_rounds.sort_unstable_by(|a, b| b.cmp(a));
            for (_, k) in &by_rounds[MAX_RUMORS..] {
                if *k != key {
                    self.map.remove(k);
                }
            }
        }
    }

    /// Whether there is nothing to spread.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The notices for one round: the `max` least-spread rumors; each loses a round.
    pub(crate) fn take_round(&mut self, max: usize) -> Vec<Notice> {
        let mut picked: Vec<(u8, NodeKey)> = self.map.iter().map(|(k, r)| (r.rounds_left, *k)).collect();
        let most_left_first = |a: &(u8, NodeKey), b: &(u8, NodeKey)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
        if picked.len() > max {
            picked.select_nth_unstable_by(max, most_left_first);
            picked.truncate(max);
        }
        picked.sort_by(most_left_first);
        let mut out = Vec::with_capacity(picked.len());
        for (_, key) in picked {
            if let Some(r) = self.map.get_mut(&key) {
                out.push(Notice { key, version: r.version });
                r.rounds_left = r.rounds_left.saturating_sub(1);
                if r.rounds_left == 0 {
                    self.map.remove(&key);
                }
            }
        }
        out
    }
}
