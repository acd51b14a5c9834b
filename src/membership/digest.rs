//! Fingerprints of the anti-entropy set — `key → version` of every record we hold for a live
//! member, and our own — by key range. The set itself is not kept here: it is read from the
//! member table (`Membership::set_items`), so a key is stored once per node.
//!
//! A range's fingerprint is the wrapping sum of its items' hashes, so adding or removing an
//! item updates it in O(1). The top two nibble levels (16 and 256 ranges) are kept
//! precomputed; deeper ranges are small (a few items each even at 10,000 members) and summed
//! from their items on demand ([`fold`]). A third level would cost every node 64 KiB. The hash is our own (not std's
//! `DefaultHasher`, whose algorithm may change between builds) because nodes must agree on it.

use super::record::NodeKey;
use super::wire::RangeId;

/// Levels of precomputed fingerprints below the root.
const LEVELS: usize = 2;

/// The set's fingerprints.
#[derive(Debug)]
pub(crate) struct DigestIndex {
    root: (u64, u32),
    levels: [Vec<(u64, u32)>; LEVELS],
}

impl DigestIndex {
    /// An empty set.
    pub(crate) fn new() -> Self {
        Self { root: (0, 0), levels: [1, 2].map(|l| vec![(0, 0); 1 << (4 * l)]) }
    }

    /// Moves `key` from version `old` to `new` (`None`: not in the set).
    pub(crate) fn update(&mut self, key: NodeKey, old: Option<u64>, new: Option<u64>) {
        if old == new {
            return;
        }
        if let Some(v) = old {
            self.apply(key, item_hash(&key, v), false);
        }
        if let Some(v) = new {
            self.apply(key, item_hash(&key, v), true);
        }
    }

    /// Fingerprint and item count of a range, if precomputed (its depth is at most 2).
    pub(crate) fn summary(&self, range: RangeId) -> Option<(u64, u32)> {
        match usize::from(range.depth) {
            0 => Some(self.root),
            d if d <= LEVELS => Some(self.levels[d - 1][range.prefix as usize]),
            _ => None,
        }
    }

    fn apply(&mut self, key: NodeKey, h: u64, add: bool) {
        let p = key.prefix64();
        let step = |(fp, n): &mut (u64, u32)| {
            if add {
                *fp = fp.wrapping_add(h);
                *n += 1;
            } else {
                *fp = fp.wrapping_sub(h);
                *n -= 1;
            }
        };
        step(&mut self.root);
        for (l, level) in self.levels.iter_mut().enumerate() {
            step(&mut level[(p >> (64 - 4 * (l + 1))) as usize]);
        }
    }
}

/// Fingerprint and count of a list of items.
pub(crate) fn fold(items: impl Iterator<Item = (NodeKey, u64)>) -> (u64, u32) {
    items.fold((0, 0), |(fp, n), (k, v)| (fp.wrapping_add(item_hash(&k, v)), n.saturating_add(1)))
}

/// The smallest key with this 64-bit prefix.
pub(crate) fn key_at(prefix: u64) -> NodeKey {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&prefix.to_be_bytes());
    NodeKey(k)
}

/// A well-mixed 64-bit hash of one item (splitmix64's finalizer over the key's words).
pub(crate) fn item_hash(key: &NodeKey, version: u64) -> u64 {
    let mut h = mix(version ^ 0x9e37_79b9_7f4a_7c15);
    for word in key.0.chunks_exact(8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        h = mix(h ^ u64::from_le_bytes(w));
    }
    h
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
