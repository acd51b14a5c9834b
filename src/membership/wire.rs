//! The membership wire format: one version byte, then a postcard-encoded [`Msg`].
//!
//! Invariants: every encoded message is at most [`MAX_MESSAGE`] bytes (the packers below
//! split lists, [`chunk_record`] splits records); decoding rejects anything longer, an unknown
//! version, trailing bytes and out-of-range fields, and never panics on arbitrary input.

use serde::{Deserialize, Serialize};

use super::error::MembershipError;
use super::record::{NodeKey, Record};
use super::suspicion::SuspectNote;
use super::swim::SwimId;

/// Largest membership message: it rides in one datagram under the overlay MTU.
pub const MAX_MESSAGE: usize = 1200;
/// The version byte every message starts with.
pub const WIRE_VERSION: u8 = 1;
/// foca's packet budget: [`MAX_MESSAGE`] less the version byte, the variant and a length.
pub(crate) const MAX_SWIM_PACKET: usize = MAX_MESSAGE - 8;
/// Record bytes per chunk; the chunk header (key, version, lengths) fits in the rest.
pub(crate) const CHUNK_DATA: usize = MAX_MESSAGE - 80;
/// Deepest digest range: 16 nibbles, the 64-bit key prefix.
pub(crate) const MAX_DEPTH: u8 = 16;

/// One membership message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Msg {
    /// A foca (SWIM) packet.
    Swim(Vec<u8>),
    /// Rumors: the sender holds these records and asks nothing; pull what is new.
    Notices(Vec<Notice>),
    /// Send me these records (or these chunks of them).
    Pull(Vec<PullReq>),
    /// One piece of an encoded [`WireRecord`].
    Chunk(Chunk),
    /// Anti-entropy: summaries of key ranges of the sender's record set.
    Digest(Vec<Range>),
    /// CA-signed revocations, opaque here (the engine verifies them); any member relays them.
    Revocations(Vec<Vec<u8>>),
    /// The sender failed to reach this member first-hand (see [`super::suspicion`]).
    Suspect(SuspectNote),
    /// Answer with [`Msg::ProbeAck`] and this nonce: a suspect's liveness, checked directly.
    Probe(u64),
    /// The answer to a [`Msg::Probe`].
    ProbeAck(u64),
}

/// "I hold `key`'s record at `version`."
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Notice {
    pub key: NodeKey,
    pub version: u64,
}

/// A request for a record, or for the listed chunks of one version of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PullReq {
    pub key: NodeKey,
    /// The version wanted (the holder sends its own if newer).
    pub version: u64,
    /// Only these chunk indexes (of exactly `version`); `None`: all of them.
    pub chunks: Option<Vec<u16>>,
}

/// Bytes `index * CHUNK_DATA ..` of the encoded record `(key, version)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Chunk {
    pub key: NodeKey,
    pub version: u64,
    pub total_len: u32,
    pub index: u16,
    pub data: Vec<u8>,
}

/// A key range of the digest tree: keys whose first `depth` nibbles equal `prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RangeId {
    pub depth: u8,
    pub prefix: u64,
}

/// What the sender holds in one range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Summary {
    /// Sum of item hashes and item count.
    Fingerprint { fp: u64, count: u32 },
    /// Every `(key, version)` in the range.
    Items(Vec<(NodeKey, u64)>),
}

/// One range and its summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Range {
    pub id: RangeId,
    pub summary: Summary,
}

/// What a record's owner signs: the record with the foca identity its owner uses, so a
/// receiver can tell foca about a member it learned of through records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireRecord {
    pub id: SwimId,
    pub record: Record,
}

/// A record as gossiped and relayed byte for byte: the owner's encoding of a [`WireRecord`]
/// and the owner's signature over exactly those bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SignedRecord {
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
}

impl SignedRecord {
    /// Signs `wr` with `auth`; returns the encoded signed record.
    pub(crate) fn encode(wr: &WireRecord, auth: &dyn super::RecordAuth) -> Vec<u8> {
        let body = postcard::to_allocvec(wr).expect("in-memory encoding cannot fail");
        let signature = auth.sign(&body);
        postcard::to_allocvec(&SignedRecord { body, signature }).expect("in-memory encoding cannot fail")
    }

    /// The signed record in `bytes` and the record in its body; rejects trailing bytes at
    /// either level (one record, one encoding).
    pub(crate) fn decode(bytes: &[u8]) -> Result<(SignedRecord, WireRecord), MembershipError> {
        let (signed, rest) = postcard::take_from_bytes::<SignedRecord>(bytes)?;
        if !rest.is_empty() {
            return Err(MembershipError::TrailingBytes);
        }
        let (wr, rest) = postcard::take_from_bytes::<WireRecord>(&signed.body)?;
        if !rest.is_empty() {
            return Err(MembershipError::TrailingBytes);
        }
        Ok((signed, wr))
    }
}

impl RangeId {
    /// The whole key space.
    pub(crate) const ROOT: RangeId = RangeId { depth: 0, prefix: 0 };

    /// Whether `depth` and `prefix` describe a range.
    pub(crate) fn is_valid(&self) -> bool {
        self.depth == MAX_DEPTH || (self.depth < MAX_DEPTH && self.prefix >> (4 * u32::from(self.depth)) == 0)
    }

    /// Whether a key with this 64-bit prefix is in the range.
    pub(crate) fn contains(&self, key_prefix: u64) -> bool {
        self.depth == 0 || key_prefix >> (64 - 4 * u32::from(self.depth)) == self.prefix
    }

    /// The 16 sub-ranges one nibble deeper (none at the maximum depth).
    pub(crate) fn children(self) -> impl Iterator<Item = RangeId> {
        let n = if self.depth < MAX_DEPTH { 16 } else { 0 };
        (0..n).map(move |i| RangeId { depth: self.depth + 1, prefix: (self.prefix << 4) | i })
    }

    /// Smallest key prefix in the range, and the first one past it (`None`: the range runs to
    /// the end of the key space).
    pub(crate) fn prefix_bounds(&self) -> (u64, Option<u64>) {
        if self.depth == 0 {
            return (0, None);
        }
        let shift = 64 - 4 * u32::from(self.depth);
        let next = self
            .prefix
            .checked_add(1)
            .filter(|n| self.depth == MAX_DEPTH || n >> (4 * u32::from(self.depth)) == 0);
        (self.prefix << shift, next.map(|n| n << shift))
    }
}

impl Msg {
    /// The version byte followed by the postcard encoding.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![WIRE_VERSION];
        out.extend(postcard::to_allocvec(self).expect("in-memory encoding cannot fail"));
        debug_assert!(out.len() <= MAX_MESSAGE, "membership message of {} bytes", out.len());
        out
    }

    /// Decodes one message; rejects oversize input, unknown versions and trailing bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Msg, MembershipError> {
        if bytes.len() > MAX_MESSAGE {
            return Err(MembershipError::TooLarge { len: bytes.len() });
        }
        let (&version, body) = bytes.split_first().ok_or(MembershipError::Empty)?;
        if version != WIRE_VERSION {
            return Err(MembershipError::UnknownVersion(version));
        }
        let (msg, rest) = postcard::take_from_bytes::<Msg>(body)?;
        if !rest.is_empty() {
            return Err(MembershipError::TrailingBytes);
        }
        Ok(msg)
    }
}

/// Encoded size of one list item inside a postcard `Vec`.
fn item_len<T: Serialize>(item: &T) -> usize {
    postcard::experimental::serialized_size(item).expect("in-memory encoding cannot fail")
}

/// Splits `items` into as few messages as fit in [`MAX_MESSAGE`], each `wrap(part)`.
pub(crate) fn pack<T: Serialize>(items: Vec<T>, wrap: impl Fn(Vec<T>) -> Msg) -> Vec<Vec<u8>> {
    // version byte, variant, list length varint, and slack for the enclosing struct
    const OVERHEAD: usize = 8;
    let mut out = Vec::new();
    let mut part = Vec::new();
    let mut len = OVERHEAD;
    for item in items {
        let l = item_len(&item);
        if !part.is_empty() && len + l > MAX_MESSAGE {
            out.push(wrap(std::mem::take(&mut part)).encode());
            len = OVERHEAD;
        }
        len += l;
        part.push(item);
    }
    if !part.is_empty() {
        out.push(wrap(part).encode());
    }
    out
}

/// How many chunks a record of `total_len` encoded bytes takes.
pub(crate) fn chunk_count(total_len: usize) -> usize {
    total_len.div_ceil(CHUNK_DATA).max(1)
}

/// The chunk messages of an encoded record (all, or only the indexes in `only`).
pub(crate) fn chunk_record(key: NodeKey, version: u64, encoded: &[u8], only: Option<&[u16]>) -> Vec<Vec<u8>> {
    let total_len = u32::try_from(encoded.len()).unwrap_or(u32::MAX);
    let pieces = encoded.chunks(CHUNK_DATA).enumerate();
    pieces
        .filter(|(i, _)| only.is_none_or(|o| o.iter().any(|x| usize::from(*x) == *i)))
        .filter_map(|(i, data)| {
            let index = u16::try_from(i).ok()?;
            Some(Msg::Chunk(Chunk { key, version, total_len, index, data: data.to_vec() }).encode())
        })
        .collect()
}
