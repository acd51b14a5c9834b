//! Key material with types of its own: a node's X25519 static secret is a [`SecretKey`] (never
//! printed, wiped from memory when dropped), so it cannot be passed where a public key is meant.

use zeroize::Zeroizing;

/// An X25519 static secret key.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; 32]>);

impl SecretKey {
    /// Takes the 32 raw bytes of a secret key.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw bytes (for the Noise handshake and for writing the key file).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The matching X25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        crate::handshake::public_key(&self.0)
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        // Only tests compare secrets; constant time is not needed for that.
        *self.0 == *other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_never_printed() {
        let k = SecretKey::from_bytes([7; 32]);
        assert_eq!(format!("{k:?}"), "SecretKey(…)");
        assert_eq!(k.public_key(), crate::handshake::public_key(&[7; 32]));
    }
}
