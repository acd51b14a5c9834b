//! Who may say what: every record is signed by its owner, and checked against the owner's
//! certificate before anything in it is believed, wherever it came from (a rumor, a pull,
//! anti-entropy). Forwarders relay the owner's signed bytes unchanged, so a member can repeat
//! another node's record but never alter or invent one.
//!
//! The membership layer knows nothing of certificates: the engine supplies a [`RecordAuth`]
//! that signs our own record and judges everyone else's.

use std::time::Instant;

use super::record::Record;

/// Signs our record and verifies others'.
pub trait RecordAuth: Send {
    /// The signature over `body`, our own encoded record.
    fn sign(&self, body: &[u8]) -> Vec<u8>;

    /// Whether `signature` over `body` (which decodes to `record`) is by the node `record`
    /// describes, as its certificate says; the reason if not.
    fn verify(&self, now: Instant, record: &Record, body: &[u8], signature: &[u8]) -> Result<(), String>;
}

/// Accepts every record and signs nothing: for simulations of the membership protocol alone
/// (thousands of nodes in one process, where signatures would only cost time). Never used by
/// the daemon, whose engine supplies certificate-backed signatures.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustAll;

impl RecordAuth for TrustAll {
    fn sign(&self, _body: &[u8]) -> Vec<u8> {
        Vec::new()
    }

    fn verify(&self, _now: Instant, _record: &Record, _body: &[u8], _signature: &[u8]) -> Result<(), String> {
        Ok(())
    }
}
