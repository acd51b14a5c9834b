//! Network identity: a CA (Ed25519) and the node certificates it signs.
//!
//! A node certificate binds a node name to its X25519 static key, the overlay subnets it may
//! source, its groups and a validity window, signed by the network CA. The encoding is a stable,
//! versioned binary layout (all integers little-endian):
//!
//! ```text
//! node: "WFTN" version(2) name_len(1) name public_key(32) signing_key(32)
//!       n_subnets(1) {family(1) addr(4|16) prefix(1)}* n_groups(1) {len(1) group}*
//!       not_before(8) not_after(8) issuer(32) signature(64)
//! ca:   "WFTA" version(1) name_len(1) name public_key(32) not_before(8) not_after(8) signature(64)
//! ```
//! The signature covers every byte before it. Decoding rejects trailing bytes, so one
//! certificate has exactly one encoding.
//!
//! A node certificate names two keys of the node: its X25519 key (the Noise handshake's static
//! key, the node's identity) and an Ed25519 key that signs what the node says about itself in
//! membership, so a record relayed by anyone can be checked against its author (see
//! [`crate::keys::SecretKey::record_signing_key`]). Version 1 certificates had no signing key;
//! they are refused with a message that says to re-sign them.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::consts::MAX_CERT_LEN;

const NODE_MAGIC: &[u8; 4] = b"WFTN";
const CA_MAGIC: &[u8; 4] = b"WFTA";
const REVOCATION_MAGIC: &[u8; 4] = b"WFTR";
/// The revocation encoding version this crate writes and reads.
pub const REVOCATION_VERSION: u8 = 1;
/// The node certificate encoding version this crate writes and reads.
pub const CERT_VERSION: u8 = 2;
/// The CA certificate encoding version this crate writes and reads.
pub const CA_CERT_VERSION: u8 = 1;
/// Most subnets one certificate may carry.
pub const MAX_SUBNETS: usize = 16;
/// Most groups one certificate may carry.
pub const MAX_GROUPS: usize = 32;
/// Longest node, CA or group name.
pub const MAX_NAME_LEN: usize = 63;

/// Why a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The bytes are not a certificate of this format.
    #[error("malformed certificate: {0}")]
    Malformed(&'static str),
    /// An encoding version we do not read.
    #[error("unsupported certificate version {0}")]
    Version(u8),
    /// A version 1 node certificate: it names no record-signing key.
    #[error(
        "version 1 node certificate: it names no record-signing key (weft now signs membership \
         records); re-sign it with `weft ca sign --public-key-file <key>.pub` after printing the \
         current public key with `weft pubkey --key <key>`"
    )]
    NoSigningKey,
    /// Signed by a different CA than the network's.
    #[error("certificate was issued by a different CA")]
    ForeignCa,
    /// The signature does not verify.
    #[error("bad certificate signature")]
    BadSignature,
    /// Past `not_after`.
    #[error("certificate expired at {not_after} (now {now})")]
    Expired {
        /// End of validity, seconds since the Unix epoch.
        not_after: u64,
        /// The time of the check.
        now: u64,
    },
    /// Before `not_before`.
    #[error("certificate is not valid before {not_before} (now {now})")]
    NotYetValid {
        /// Start of validity, seconds since the Unix epoch.
        not_before: u64,
        /// The time of the check.
        now: u64,
    },
    /// A field value breaks a rule (name characters, counts, window order...).
    #[error("invalid certificate field: {0}")]
    Invalid(String),
}

/// The CA's private signing key.
pub struct CaKey {
    signing: SigningKey,
}

impl CaKey {
    /// A CA key from its 32-byte seed (generate the seed from a CSPRNG).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self { signing: SigningKey::from_bytes(seed) }
    }

    /// The seed, for storing the key.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public key that verifies this CA's signatures.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// A self-signed CA certificate.
    pub fn self_sign(&self, name: &str, not_before: u64, not_after: u64) -> Result<CaCert, CertError> {
        check_name(name, "name")?;
        check_window(not_before, not_after)?;
        let mut ca = CaCert {
            name: name.to_owned(),
            public_key: self.public_key(),
            not_before,
            not_after,
            signature: [0; 64],
        };
        ca.signature = self.signing.sign(&ca.body()).to_bytes();
        Ok(ca)
    }

    /// Revokes `cert`'s key: every certificate for that key is refused from then on.
    pub fn revoke(&self, ca: &CaCert, cert: &NodeCert, revoked_at: u64) -> Result<Revocation, CertError> {
        if ca.public_key != self.public_key() {
            return Err(CertError::Invalid("CA key does not match the CA certificate".into()));
        }
        if cert.issuer != ca.public_key {
            return Err(CertError::ForeignCa);
        }
        let mut r = Revocation {
            name: cert.name.clone(),
            public_key: cert.public_key,
            revoked_at,
            issuer: ca.public_key,
            signature: [0; 64],
        };
        r.signature = self.signing.sign(&r.body()).to_bytes();
        Ok(r)
    }

    /// Signs a node certificate. The window must lie inside the CA's.
    pub fn sign(&self, ca: &CaCert, req: NodeCertRequest) -> Result<NodeCert, CertError> {
        if ca.public_key != self.public_key() {
            return Err(CertError::Invalid("CA key does not match the CA certificate".into()));
        }
        if req.not_before < ca.not_before || req.not_after > ca.not_after {
            return Err(CertError::Invalid(format!(
                "validity {}..{} exceeds the CA's {}..{}",
                req.not_before, req.not_after, ca.not_before, ca.not_after
            )));
        }
        let mut cert = NodeCert {
            name: req.name,
            public_key: req.public_key,
            signing_key: req.signing_key,
            subnets: req.subnets,
            groups: req.groups,
            not_before: req.not_before,
            not_after: req.not_after,
            issuer: ca.public_key,
            signature: [0; 64],
        };
        cert.check_fields()?;
        cert.signature = self.signing.sign(&cert.body()).to_bytes();
        Ok(cert)
    }
}

/// What a node certificate will say, before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCertRequest {
    /// Node name (lowercase letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// The node's X25519 static public key.
    pub public_key: [u8; 32],
    /// The node's Ed25519 record-signing public key.
    pub signing_key: [u8; 32],
    /// Overlay subnets the node may source (1..=16, no host bits set).
    pub subnets: Vec<IpNet>,
    /// Groups for policy.
    pub groups: Vec<String>,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: u64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: u64,
}

/// A network CA certificate (self-signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCert {
    /// CA name.
    pub name: String,
    /// Ed25519 public key.
    pub public_key: [u8; 32],
    /// Start of validity.
    pub not_before: u64,
    /// End of validity.
    pub not_after: u64,
    /// Self-signature.
    pub signature: [u8; 64],
}

impl CaCert {
    fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(CA_MAGIC);
        b.push(CA_CERT_VERSION);
        b.push(self.name.len() as u8);
        b.extend_from_slice(self.name.as_bytes());
        b.extend_from_slice(&self.public_key);
        b.extend_from_slice(&self.not_before.to_le_bytes());
        b.extend_from_slice(&self.not_after.to_le_bytes());
        b
    }

    /// The binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.body();
        b.extend_from_slice(&self.signature);
        b
    }

    /// Decodes and checks the self-signature (not the validity window: see [`CaCert::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, CertError> {
        let mut r = Reader::new(bytes)?;
        r.magic(CA_MAGIC, CA_CERT_VERSION)?;
        let name = r.name()?;
        let public_key = r.array::<32>()?;
        let not_before = r.u64()?;
        let not_after = r.u64()?;
        let signature = r.array::<64>()?;
        r.finish()?;
        let ca = Self { name, public_key, not_before, not_after, signature };
        check_window(ca.not_before, ca.not_after)?;
        verify_sig(&ca.public_key, &ca.body(), &ca.signature)?;
        Ok(ca)
    }

    /// Checks the validity window at `now` (seconds since the Unix epoch).
    pub fn verify(&self, now: u64) -> Result<(), CertError> {
        check_time(self.not_before, self.not_after, now)
    }
}

/// A node certificate signed by the network CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCert {
    /// Node name.
    pub name: String,
    /// X25519 static public key.
    pub public_key: [u8; 32],
    /// Ed25519 key that signs the node's membership records.
    pub signing_key: [u8; 32],
    /// Overlay subnets the node may source.
    pub subnets: Vec<IpNet>,
    /// Groups for policy.
    pub groups: Vec<String>,
    /// Start of validity.
    pub not_before: u64,
    /// End of validity.
    pub not_after: u64,
    /// The signing CA's public key.
    pub issuer: [u8; 32],
    /// Ed25519 signature by the issuer.
    pub signature: [u8; 64],
}

impl NodeCert {
    fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(256);
        b.extend_from_slice(NODE_MAGIC);
        b.push(CERT_VERSION);
        b.push(self.name.len() as u8);
        b.extend_from_slice(self.name.as_bytes());
        b.extend_from_slice(&self.public_key);
        b.extend_from_slice(&self.signing_key);
        b.push(self.subnets.len() as u8);
        for net in &self.subnets {
            match net {
                IpNet::V4(n) => {
                    b.push(4);
                    b.extend_from_slice(&n.addr().octets());
                }
                IpNet::V6(n) => {
                    b.push(6);
                    b.extend_from_slice(&n.addr().octets());
                }
            }
            b.push(net.prefix_len());
        }
        b.push(self.groups.len() as u8);
        for g in &self.groups {
            b.push(g.len() as u8);
            b.extend_from_slice(g.as_bytes());
        }
        b.extend_from_slice(&self.not_before.to_le_bytes());
        b.extend_from_slice(&self.not_after.to_le_bytes());
        b.extend_from_slice(&self.issuer);
        b
    }

    fn check_fields(&self) -> Result<(), CertError> {
        check_name(&self.name, "name")?;
        if self.subnets.is_empty() || self.subnets.len() > MAX_SUBNETS {
            return Err(CertError::Invalid(format!("need 1..={MAX_SUBNETS} subnets")));
        }
        for net in &self.subnets {
            if net.trunc() != *net {
                return Err(CertError::Invalid(format!("subnet {net} has host bits set")));
            }
        }
        if self.groups.len() > MAX_GROUPS {
            return Err(CertError::Invalid(format!("at most {MAX_GROUPS} groups")));
        }
        for g in &self.groups {
            check_name(g, "group")?;
        }
        check_window(self.not_before, self.not_after)
    }

    /// The binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.body();
        b.extend_from_slice(&self.signature);
        b
    }

    /// Decodes the structure and field rules; the signature is checked by [`NodeCert::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Self, CertError> {
        let mut r = Reader::new(bytes)?;
        match r.magic(NODE_MAGIC, CERT_VERSION) {
            Err(CertError::Version(1)) => return Err(CertError::NoSigningKey),
            other => other?,
        }
        let name = r.name()?;
        let public_key = r.array::<32>()?;
        let signing_key = r.array::<32>()?;
        let n = r.u8()? as usize;
        if n > MAX_SUBNETS {
            return Err(CertError::Malformed("too many subnets"));
        }
        let mut subnets = Vec::with_capacity(n);
        for _ in 0..n {
            let net = match r.u8()? {
                4 => {
                    let a = Ipv4Addr::from(r.array::<4>()?);
                    IpNet::V4(Ipv4Net::new(a, r.u8()?).map_err(|_| CertError::Malformed("prefix"))?)
                }
                6 => {
                    let a = Ipv6Addr::from(r.array::<16>()?);
                    IpNet::V6(Ipv6Net::new(a, r.u8()?).map_err(|_| CertError::Malformed("prefix"))?)
                }
                _ => return Err(CertError::Malformed("address family")),
            };
            subnets.push(net);
        }
        let n = r.u8()? as usize;
        if n > MAX_GROUPS {
            return Err(CertError::Malformed("too many groups"));
        }
        let mut groups = Vec::with_capacity(n);
        for _ in 0..n {
            groups.push(r.name()?);
        }
        let cert = Self {
            name,
            public_key,
            signing_key,
            subnets,
            groups,
            not_before: r.u64()?,
            not_after: r.u64()?,
            issuer: r.array::<32>()?,
            signature: r.array::<64>()?,
        };
        r.finish()?;
        cert.check_fields()?;
        Ok(cert)
    }

    /// Full verification: issued by `ca`, signature valid, inside its window at `now`.
    pub fn verify(&self, ca: &CaCert, now: u64) -> Result<(), CertError> {
        if self.issuer != ca.public_key {
            return Err(CertError::ForeignCa);
        }
        verify_sig(&ca.public_key, &self.body(), &self.signature)?;
        ca.verify(now)?;
        check_time(self.not_before, self.not_after, now)
    }

    /// Whether `signature` over `msg` was made with the certified record-signing key.
    pub fn verify_signed(&self, msg: &[u8], signature: &[u8]) -> Result<(), CertError> {
        let sig: &[u8; 64] = signature.try_into().map_err(|_| CertError::Malformed("signature length"))?;
        verify_sig(&self.signing_key, msg, sig)
    }

    /// Whether `ip` lies in one of the certified subnets.
    pub fn may_source(&self, ip: IpAddr) -> bool {
        self.subnets.iter().any(|n| n.contains(&ip))
    }
}

/// Most CAs one node trusts at once: every handshake datagram's mac1 is checked against each
/// (cheap, but paid before any rate limit can tell floods apart).
pub const MAX_TRUSTED_CAS: usize = 16;

/// The CAs a node trusts (at least one, at most [`MAX_TRUSTED_CAS`], distinct keys): a peer's
/// certificate is accepted if any of them issued it. Two during a CA rotation, one otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBundle {
    cas: Vec<CaCert>,
}

impl CaBundle {
    /// A bundle of `cas` in the given order; the same key twice is kept once.
    pub fn new(cas: Vec<CaCert>) -> Result<Self, CertError> {
        let mut out: Vec<CaCert> = Vec::with_capacity(cas.len());
        for ca in cas {
            if !out.iter().any(|c| c.public_key == ca.public_key) {
                out.push(ca);
            }
        }
        if out.is_empty() {
            return Err(CertError::Invalid("a CA bundle needs at least one CA".into()));
        }
        if out.len() > MAX_TRUSTED_CAS {
            return Err(CertError::Invalid(format!(
                "a CA bundle holds at most {MAX_TRUSTED_CAS} CAs, this one {}",
                out.len()
            )));
        }
        Ok(Self { cas: out })
    }

    /// A bundle of one CA.
    pub fn single(ca: CaCert) -> Self {
        Self { cas: vec![ca] }
    }

    /// The trusted CA with this public key.
    pub fn get(&self, key: &[u8; 32]) -> Option<&CaCert> {
        self.cas.iter().find(|c| c.public_key == *key)
    }

    /// The CAs, in the bundle's order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &CaCert> {
        self.cas.iter()
    }

    /// Full verification of a node certificate against the CA that issued it, if trusted
    /// (`ForeignCa` otherwise): signature, the CA's window and the certificate's at `now`.
    pub fn verify_node(&self, cert: &NodeCert, now: u64) -> Result<(), CertError> {
        cert.verify(self.get(&cert.issuer).ok_or(CertError::ForeignCa)?, now)
    }

    /// Verifies a revocation against the CA that issued it, if trusted.
    pub fn verify_revocation(&self, r: &Revocation) -> Result<(), CertError> {
        r.verify(self.get(&r.issuer).ok_or(CertError::ForeignCa)?)
    }
}

/// A CA-signed statement that a node key is revoked: every member refuses handshakes, records
/// and frames of that key. Any member may relay it (the CA's signature is what counts).
///
/// ```text
/// "WFTR" version(1) name_len(1) name public_key(32) revoked_at(8) issuer(32) signature(64)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The revoked node's name (informational: the key is what is revoked).
    pub name: String,
    /// The revoked X25519 key.
    pub public_key: [u8; 32],
    /// When it was revoked, seconds since the Unix epoch.
    pub revoked_at: u64,
    /// The CA's public key.
    pub issuer: [u8; 32],
    /// Ed25519 signature by the CA.
    pub signature: [u8; 64],
}

impl Revocation {
    fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(160);
        b.extend_from_slice(REVOCATION_MAGIC);
        b.push(REVOCATION_VERSION);
        b.push(self.name.len() as u8);
        b.extend_from_slice(self.name.as_bytes());
        b.extend_from_slice(&self.public_key);
        b.extend_from_slice(&self.revoked_at.to_le_bytes());
        b.extend_from_slice(&self.issuer);
        b
    }

    /// The binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.body();
        b.extend_from_slice(&self.signature);
        b
    }

    /// Decodes the structure; the signature is checked by [`Revocation::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Self, CertError> {
        let mut r = Reader::new(bytes)?;
        r.magic(REVOCATION_MAGIC, REVOCATION_VERSION)?;
        let name = r.name()?;
        check_name(&name, "name")?;
        let rev = Self {
            name,
            public_key: r.array::<32>()?,
            revoked_at: r.u64()?,
            issuer: r.array::<32>()?,
            signature: r.array::<64>()?,
        };
        r.finish()?;
        Ok(rev)
    }

    /// Issued by `ca`, signature valid. (A revocation does not expire.)
    pub fn verify(&self, ca: &CaCert) -> Result<(), CertError> {
        if self.issuer != ca.public_key {
            return Err(CertError::ForeignCa);
        }
        verify_sig(&ca.public_key, &self.body(), &self.signature)
    }
}

fn verify_sig(key: &[u8; 32], body: &[u8], sig: &[u8; 64]) -> Result<(), CertError> {
    let key = VerifyingKey::from_bytes(key).map_err(|_| CertError::Malformed("public key"))?;
    key.verify(body, &Signature::from_bytes(sig)).map_err(|_| CertError::BadSignature)
}

fn check_name(name: &str, what: &str) -> Result<(), CertError> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.=:".contains(c);
    let ok_group_char = |c: char| ok_char(c) || c.is_ascii_uppercase();
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && if what == "group" { name.chars().all(ok_group_char) } else { name.chars().all(ok_char) };
    if valid {
        Ok(())
    } else {
        Err(CertError::Invalid(format!(
            "{what} {name:?} must be 1..={MAX_NAME_LEN} characters of a-z 0-9 - _ . = :"
        )))
    }
}

fn check_window(not_before: u64, not_after: u64) -> Result<(), CertError> {
    if not_before >= not_after {
        return Err(CertError::Invalid(format!(
            "not_before {not_before} is not before not_after {not_after}"
        )));
    }
    Ok(())
}

fn check_time(not_before: u64, not_after: u64, now: u64) -> Result<(), CertError> {
    if now < not_before {
        Err(CertError::NotYetValid { not_before, now })
    } else if now >= not_after {
        Err(CertError::Expired { not_after, now })
    } else {
        Ok(())
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Result<Self, CertError> {
        if b.len() > MAX_CERT_LEN {
            return Err(CertError::Malformed("longer than any certificate"));
        }
        Ok(Self { b })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CertError> {
        if self.b.len() < n {
            return Err(CertError::Malformed("truncated"));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn magic(&mut self, m: &[u8; 4], version: u8) -> Result<(), CertError> {
        if self.take(4)? != m {
            return Err(CertError::Malformed("not a weft certificate of this kind"));
        }
        match self.u8()? {
            v if v == version => Ok(()),
            v => Err(CertError::Version(v)),
        }
    }

    fn u8(&mut self) -> Result<u8, CertError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, CertError> {
        Ok(u64::from_le_bytes(self.array::<8>()?))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CertError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn name(&mut self) -> Result<String, CertError> {
        let n = self.u8()? as usize;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| CertError::Malformed("name is not UTF-8"))
    }

    fn finish(&self) -> Result<(), CertError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(CertError::Malformed("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_800_000_000;

    fn ca(seed: u8) -> (CaKey, CaCert) {
        let key = CaKey::from_seed(&[seed; 32]);
        let cert = key.self_sign("lab", NOW - 100, NOW + 10_000).unwrap();
        (key, cert)
    }

    /// A certificate from either CA of a bundle verifies, one from neither is foreign, and a
    /// CA past its window vouches for no one.
    #[test]
    fn a_bundle_accepts_either_ca_and_neither_else() {
        let (k1, c1) = ca(1);
        let (k2, c2) = ca(2);
        let (k3, c3) = ca(3);
        let bundle = CaBundle::new(vec![c1.clone(), c2.clone(), c1.clone()]).unwrap();
        assert_eq!(bundle.iter().len(), 2, "the same CA twice is kept once");
        let n1 = k1.sign(&c1, request()).unwrap();
        let n2 = k2.sign(&c2, request()).unwrap();
        let n3 = k3.sign(&c3, request()).unwrap();
        assert_eq!(bundle.verify_node(&n1, NOW), Ok(()));
        assert_eq!(bundle.verify_node(&n2, NOW), Ok(()));
        assert_eq!(bundle.verify_node(&n3, NOW), Err(CertError::ForeignCa));
        let mut forged = n3.clone();
        forged.issuer = c1.public_key;
        assert_eq!(bundle.verify_node(&forged, NOW), Err(CertError::BadSignature));
        let r = k2.revoke(&c2, &n2, NOW).unwrap();
        assert_eq!(bundle.verify_revocation(&r), Ok(()));
        assert_eq!(bundle.verify_revocation(&k3.revoke(&c3, &n3, NOW).unwrap()), Err(CertError::ForeignCa));

        // CA 2 ends before CA 1: its certificates stop verifying, CA 1's go on.
        let short = k2.self_sign("lab", NOW - 100, NOW + 10).unwrap();
        let n2 = k2.sign(&short, NodeCertRequest { not_after: NOW + 10, ..request() }).unwrap();
        let bundle = CaBundle::new(vec![c1.clone(), short]).unwrap();
        assert!(matches!(bundle.verify_node(&n2, NOW + 20), Err(CertError::Expired { .. })));
        assert_eq!(bundle.verify_node(&n1, NOW + 20), Ok(()));
    }

    #[test]
    fn a_bundle_holds_one_to_sixteen_cas() {
        assert!(CaBundle::new(Vec::new()).is_err());
        let many: Vec<CaCert> = (0..=MAX_TRUSTED_CAS as u8).map(|i| ca(i + 1).1).collect();
        assert!(CaBundle::new(many[..MAX_TRUSTED_CAS].to_vec()).is_ok());
        assert!(matches!(CaBundle::new(many), Err(CertError::Invalid(m)) if m.contains("at most 16")));
    }

    fn request() -> NodeCertRequest {
        NodeCertRequest {
            name: "h1".into(),
            public_key: [9; 32],
            signing_key: [10; 32],
            subnets: vec!["10.42.1.0/24".parse().unwrap(), "fd00::/64".parse().unwrap()],
            groups: vec!["web".into(), "Prod".into()],
            not_before: NOW - 10,
            not_after: NOW + 1000,
        }
    }

    #[test]
    fn accepts_a_good_certificate() {
        let (key, ca) = ca(1);
        let cert = key.sign(&ca, request()).unwrap();
        let decoded = NodeCert::decode(&cert.encode()).unwrap();
        assert_eq!(decoded, cert);
        decoded.verify(&ca, NOW).unwrap();
        assert_eq!(CaCert::decode(&ca.encode()).unwrap(), ca);
        assert!(cert.may_source("10.42.1.7".parse().unwrap()));
        assert!(!cert.may_source("10.42.2.7".parse().unwrap()));
    }

    #[test]
    fn rejects_foreign_ca_bad_signature_and_time() {
        let (key, ca1) = ca(1);
        let (_, ca2) = ca(2);
        let cert = key.sign(&ca1, request()).unwrap();
        assert_eq!(cert.verify(&ca2, NOW), Err(CertError::ForeignCa));
        // A forger who claims ca1 as issuer but signs with another key.
        let (key2, _) = ca(2);
        let mut forged = cert.clone();
        forged.signature = key2.signing.sign(&forged.body()).to_bytes();
        assert_eq!(forged.verify(&ca1, NOW), Err(CertError::BadSignature));
        let mut altered = cert.clone();
        altered.groups.push("admin".into());
        assert_eq!(altered.verify(&ca1, NOW), Err(CertError::BadSignature));
        assert!(matches!(cert.verify(&ca1, NOW + 1000), Err(CertError::Expired { .. })));
        assert!(matches!(cert.verify(&ca1, NOW - 11), Err(CertError::NotYetValid { .. })));
    }

    #[test]
    fn revocations_verify_only_against_their_ca_and_never_when_altered() {
        let (key, network) = ca(1);
        let ca = network;
        let cert = key.sign(&ca, request()).unwrap();
        let r = key.revoke(&ca, &cert, NOW).unwrap();
        let back = Revocation::decode(&r.encode()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.verify(&ca), Ok(()));
        assert_eq!(back.public_key, cert.public_key);
        let (other_key, other) = super::tests::ca(2);
        assert_eq!(r.verify(&other), Err(CertError::ForeignCa));
        assert!(other_key.revoke(&ca, &cert, NOW).is_err(), "a key that is not the CA's");
        let mut bytes = r.encode();
        bytes[10] ^= 1;
        assert!(Revocation::decode(&bytes).and_then(|r| r.verify(&ca)).is_err());
        for n in 0..r.encode().len() {
            assert!(Revocation::decode(&r.encode()[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn rejects_malformed() {
        let (key, ca) = ca(1);
        let bytes = key.sign(&ca, request()).unwrap().encode();
        for n in 0..bytes.len() {
            assert!(NodeCert::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(NodeCert::decode(&longer), Err(CertError::Malformed("trailing bytes")));
        let mut v3 = bytes.clone();
        v3[4] = 3;
        assert_eq!(NodeCert::decode(&v3), Err(CertError::Version(3)));
        // A version 1 certificate (no record-signing key) says what to do about it.
        let mut v1 = bytes.clone();
        v1[4] = 1;
        assert_eq!(NodeCert::decode(&v1), Err(CertError::NoSigningKey));
        assert!(CertError::NoSigningKey.to_string().contains("weft ca sign"));
        assert!(NodeCert::decode(&ca.encode()).is_err());
        let mut ca_bytes = ca.encode();
        let last = ca_bytes.len() - 1;
        ca_bytes[last] ^= 1;
        assert_eq!(CaCert::decode(&ca_bytes), Err(CertError::BadSignature));
    }

    #[test]
    fn refuses_bad_requests() {
        let (key, ca) = ca(1);
        let mut r = request();
        r.name = "Bad Name".into();
        assert!(key.sign(&ca, r).is_err());
        let mut r = request();
        r.subnets = vec!["10.42.1.1/24".parse().unwrap()];
        assert!(key.sign(&ca, r).is_err());
        let mut r = request();
        r.subnets.clear();
        assert!(key.sign(&ca, r).is_err());
        let mut r = request();
        r.not_after = NOW + 100_000;
        assert!(key.sign(&ca, r).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = NodeCert::decode(&bytes);
            let _ = CaCert::decode(&bytes);
        }

        #[test]
        fn mutated_certificates_never_verify(pos in 0usize..200, bit in 0u8..8) {
            let (key, ca) = ca(1);
            let mut bytes = key.sign(&ca, request()).unwrap().encode();
            let pos = pos % bytes.len();
            bytes[pos] ^= 1 << bit;
            if let Ok(c) = NodeCert::decode(&bytes) {
                prop_assert!(c.verify(&ca, NOW).is_err());
            }
        }
    }
}
