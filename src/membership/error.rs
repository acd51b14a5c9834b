//! Why a membership message was refused. Every refusal is also counted in the stats.

/// A membership message that was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// Longer than [`super::MAX_MESSAGE`].
    #[error("message of {len} bytes exceeds the membership limit")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// No bytes at all.
    #[error("empty message")]
    Empty,
    /// A wire version we do not speak.
    #[error("unknown membership wire version {0}")]
    UnknownVersion(u8),
    /// Not a valid encoding.
    #[error("undecodable membership message: {0}")]
    Decode(#[from] postcard::Error),
    /// Bytes after the message.
    #[error("trailing bytes after membership message")]
    TrailingBytes,
    /// A message claiming to come from ourselves.
    #[error("message from our own key")]
    FromOurselves,
    /// A SWIM packet whose source is not the authenticated sender.
    #[error("SWIM packet source does not match the authenticated sender")]
    Spoofed,
    /// A digest range, chunk or record field out of bounds.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// A record not signed by the node it describes (or whose certificate does not vouch for
    /// it).
    #[error("record refused: {0}")]
    Forged(String),
    /// From a member whose key the CA revoked.
    #[error("message from a revoked member")]
    Banned,
    /// foca refused the SWIM packet.
    #[error("SWIM: {0}")]
    Swim(#[from] foca::Error),
}
