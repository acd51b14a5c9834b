//! Reassembly of records that arrive in chunks.
//!
//! Bounded: a record is at most `max_record_len` bytes, at most [`MAX_PARTIALS`] records are in
//! flight, a partial that makes no progress is re-requested chunk by chunk a few times and
//! then dropped. Chunks are checked against the geometry the first one announced.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::record::NodeKey;
use super::wire::{chunk_count, Chunk, PullReq, CHUNK_DATA};

/// Most records reassembled at once.
pub(crate) const MAX_PARTIALS: usize = 32;
/// Most of them one member may have started: a member flooding first chunks of records it
/// will never finish leaves the other half of the slots to everyone else.
pub(crate) const MAX_PARTIALS_PER_PEER: usize = MAX_PARTIALS / 2;
/// Re-requests of missing chunks before a partial is dropped.
const MAX_RETRIES: u8 = 5;

#[derive(Debug)]
struct Partial {
    buf: Vec<u8>,
    have: Vec<bool>,
    missing: usize,
    from: NodeKey,
    last_progress: Instant,
    retries: u8,
}

/// The records being reassembled, by `(key, version)`.
#[derive(Debug, Default)]
pub(crate) struct Reassembly {
    partials: BTreeMap<(NodeKey, u64), Partial>,
}

impl Reassembly {
    /// Adds a chunk; returns the whole encoded record once its last chunk arrived.
    pub(crate) fn insert(
        &mut self,
        now: Instant,
        from: NodeKey,
        chunk: Chunk,
        max_record_len: usize,
    ) -> Result<Option<Vec<u8>>, &'static str> {
        let total = chunk.total_len as usize;
        if total == 0 || total > max_record_len {
            return Err("chunked record length");
        }
        let count = chunk_count(total);
        let index = usize::from(chunk.index);
        let start = index * CHUNK_DATA;
        if index >= count || chunk.data.len() != (total - start).min(CHUNK_DATA) {
            return Err("chunk geometry");
        }
        if count == 1 {
            return Ok(Some(chunk.data));
        }
        let id = (chunk.key, chunk.version);
        // An older version of the same record will never be wanted again.
        self.partials.retain(|(k, v), _| *k != chunk.key || *v >= chunk.version);
        if !self.partials.contains_key(&id) && self.partials.len() >= MAX_PARTIALS {
            return Err("reassembly table full");
        }
        if !self.partials.contains_key(&id)
            && self.partials.values().filter(|p| p.from == from).count() >= MAX_PARTIALS_PER_PEER
        {
            return Err("reassembly slots of this member full");
        }
        let p = self.partials.entry(id).or_insert_with(|| Partial {
            buf: vec![0; total],
            have: vec![false; count],
            missing: count,
            from,
            last_progress: now,
            retries: 0,
        });
        if p.buf.len() != total {
            return Err("chunk length differs from its siblings");
        }
        if !p.have[index] {
            p.have[index] = true;
            p.missing -= 1;
            p.buf[start..start + chunk.data.len()].copy_from_slice(&chunk.data);
            p.last_progress = now;
            p.from = from;
        }
        if p.missing > 0 {
            return Ok(None);
        }
        Ok(self.partials.remove(&id).map(|p| p.buf))
    }

    /// Whether `key` at `version` or newer is being reassembled.
    pub(crate) fn in_progress(&self, key: &NodeKey, version: u64) -> bool {
        self.partials.range((*key, version)..=(*key, u64::MAX)).next().is_some()
    }

    /// Forgets partials of `key` up to `version` (a complete copy arrived).
    pub(crate) fn forget_upto(&mut self, key: &NodeKey, version: u64) {
        self.partials.retain(|(k, v), _| k != key || *v > version);
    }

    /// Re-requests missing chunks of partials idle for `idle`; drops those out of retries.
    /// Returns the requests (with whom to send them to) and how many partials were dropped.
    pub(crate) fn sweep(&mut self, now: Instant, idle: Duration) -> (Vec<(NodeKey, PullReq)>, u64) {
        let mut asks = Vec::new();
        let before = self.partials.len();
        self.partials.retain(|(key, version), p| {
            if now.saturating_duration_since(p.last_progress) < idle {
                return true;
            }
            if p.retries >= MAX_RETRIES {
                return false;
            }
            p.retries += 1;
            p.last_progress = now;
            let missing = (0..p.have.len()).filter(|i| !p.have[*i]).filter_map(|i| u16::try_from(i).ok());
            let req = PullReq { key: *key, version: *version, chunks: Some(missing.collect()) };
            asks.push((p.from, req));
            true
        });
        (asks, (before - self.partials.len()) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_chunk(key: u8, version: u64) -> Chunk {
        let total = CHUNK_DATA * 2;
        Chunk {
            key: NodeKey([key; 32]),
            version,
            total_len: total as u32,
            index: 0,
            data: vec![0; CHUNK_DATA],
        }
    }

    #[test]
    fn rogue_chunk_flood_from_one_member_leaves_slots_for_the_others() {
        let now = crate::testing::clock_origin();
        let mut r = Reassembly::default();
        let (rogue, honest) = (NodeKey([1; 32]), NodeKey([2; 32]));
        let refused = (0..MAX_PARTIALS as u8)
            .filter(|k| r.insert(now, rogue, first_chunk(100 + k, 1), 1 << 20).is_err())
            .count();
        assert_eq!(refused, MAX_PARTIALS - MAX_PARTIALS_PER_PEER, "the rogue holds half the slots at most");
        assert_eq!(
            r.insert(now, honest, first_chunk(7, 1), 1 << 20),
            Ok(None),
            "an honest member still gets one"
        );
    }
}
