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

    /// The node's Ed25519 record-signing key, derived from this secret with HKDF-SHA256 under
    /// a label of its own: one key file holds the node's whole identity, and the two uses of
    /// the secret never meet (the X25519 scalar itself never signs anything).
    pub fn record_signing_key(&self) -> RecordSigningKey {
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"weft record signing key v1");
        let mut seed = Zeroizing::new([0u8; 32]);
        salt.extract(self.0.as_slice())
            .expand(&[b"ed25519 seed"], SeedLen)
            .and_then(|okm| okm.fill(seed.as_mut_slice()))
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        RecordSigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }
}

/// HKDF output length for an Ed25519 seed.
struct SeedLen;

impl ring::hkdf::KeyType for SeedLen {
    fn len(&self) -> usize {
        32
    }
}

/// A node's Ed25519 key for signing its membership records (its certificate names the public
/// half). Wiped from memory when dropped (ed25519-dalek zeroizes its signing keys).
pub struct RecordSigningKey(ed25519_dalek::SigningKey);

impl RecordSigningKey {
    /// The public key a certificate names.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// An Ed25519 signature over `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.0.sign(msg).to_bytes()
    }
}

impl std::fmt::Debug for RecordSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordSigningKey(…)")
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
        assert_eq!(format!("{:?}", k.record_signing_key()), "RecordSigningKey(…)");
    }

    #[test]
    fn the_signing_key_is_a_function_of_the_secret_alone() {
        let a = SecretKey::from_bytes([7; 32]).record_signing_key();
        let b = SecretKey::from_bytes([7; 32]).record_signing_key();
        let c = SecretKey::from_bytes([8; 32]).record_signing_key();
        assert_eq!(a.public_key(), b.public_key());
        assert_ne!(a.public_key(), c.public_key());
        // Not the X25519 key under another name.
        assert_ne!(a.public_key(), SecretKey::from_bytes([7; 32]).public_key());
        let sig = a.sign(b"record");
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&b.public_key()).unwrap();
        assert!(vk.verify_strict(b"record", &ed25519_dalek::Signature::from_bytes(&sig)).is_ok());
    }
}
