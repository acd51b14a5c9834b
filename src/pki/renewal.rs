//! `weft ca sign --renew OLD.crt`: a new node certificate that says what OLD said — name,
//! subnets, groups — for a new validity window, and for OLD's keys unless new ones are given.
//! [`request`] decides what the new certificate says (pure); [`renew`] reads and writes the
//! files.
//!
//! Invariant: a renewal grants nothing OLD did not: OLD must carry a valid signature of the CA
//! it names (checked whatever the time: an expired OLD is the usual case), so a certificate
//! from another network, or one edited after signing, cannot be laundered into a fresh one.

use anyhow::{anyhow, Result};
use overlay_proto::cert::{CaCert, CertError, NodeCert, NodeCertRequest};
use std::path::Path;

use crate::pki;

/// Whether `cert` carries a valid signature of `ca`, whenever that was: its validity window
/// and the CA's are not checked.
pub fn issued_by(cert: &NodeCert, ca: &CaCert) -> Result<(), CertError> {
    // `NodeCert::verify` checks the issuer and the signature before any window, so a window
    // error at a time inside the certificate's own window means both passed (the test
    // `an_edited_expired_certificate_is_refused` keeps this true).
    match cert.verify(ca, cert.not_before) {
        Ok(()) | Err(CertError::Expired { .. } | CertError::NotYetValid { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The keys a renewed certificate is for: OLD's, or new ones (a key change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewKeys {
    /// Keep OLD's X25519 and record-signing keys.
    Keep,
    /// The node's new X25519 and record-signing public keys.
    New {
        /// X25519 static public key.
        public_key: [u8; 32],
        /// Ed25519 record-signing public key.
        signing_key: [u8; 32],
    },
}

/// The request for OLD's renewal for `not_before..not_after`; `issuer` must be the CA that
/// signed OLD (see [`issued_by`]).
pub fn request(
    old: &NodeCert,
    issuer: &CaCert,
    keys: RenewKeys,
    not_before: u64,
    not_after: u64,
) -> Result<NodeCertRequest, CertError> {
    issued_by(old, issuer)?;
    let (public_key, signing_key) = match keys {
        RenewKeys::Keep => (old.public_key, old.signing_key),
        RenewKeys::New { public_key, signing_key } => (public_key, signing_key),
    };
    Ok(NodeCertRequest {
        name: old.name.clone(),
        public_key,
        signing_key,
        subnets: old.subnets.clone(),
        groups: old.groups.clone(),
        not_before,
        not_after,
    })
}

/// The files of a renewal.
pub struct RenewFiles<'a> {
    /// CA private key that signs the new certificate.
    pub ca_key: &'a Path,
    /// Its CA certificate.
    pub ca_cert: &'a Path,
    /// The certificate to renew.
    pub old: &'a Path,
    /// The CA certificate that issued OLD, when not `ca_cert` (re-issuing under a new CA).
    pub old_ca: Option<&'a Path>,
    /// The certificate file to create.
    pub out: &'a Path,
}

/// Loads OLD and the CA that issued it, signs OLD's renewal for `not_before..not_after` and
/// writes it; returns OLD and the new certificate.
pub fn renew(
    files: &RenewFiles<'_>,
    keys: RenewKeys,
    not_before: u64,
    not_after: u64,
) -> Result<(NodeCert, NodeCert)> {
    let old = pki::load_node_cert(files.old)?;
    let issuer_path = files.old_ca.unwrap_or(files.ca_cert);
    let issuer = pki::load_ca_cert(issuer_path)?;
    let req = request(&old, &issuer, keys, not_before, not_after).map_err(|e| match e {
        CertError::ForeignCa => anyhow!(
            "{} was issued by CA {}, not by {} ({:?}, {}); renew it with the CA that issued it, \
             or name that CA with --old-ca to re-issue it under --ca-cert",
            files.old.display(),
            pki::fingerprint(&old.issuer),
            issuer_path.display(),
            issuer.name,
            pki::fingerprint(&issuer.public_key)
        ),
        e => anyhow!("{}: {e}; it is not renewed", files.old.display()),
    })?;
    let new = pki::ca_sign(files.ca_key, files.ca_cert, req, files.out)?;
    Ok((old, new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_proto::cert::CaKey;

    const DAY: u64 = 86_400;
    const T0: u64 = 1_800_000_000;

    fn ca(seed: u8) -> (CaKey, CaCert) {
        let key = CaKey::from_seed(&[seed; 32]);
        let cert = key.self_sign("test", T0, T0 + 1000 * DAY).unwrap();
        (key, cert)
    }

    /// h1 with two subnets and two groups, valid for 10 days from T0.
    fn old(key: &CaKey, ca: &CaCert) -> NodeCert {
        let req = NodeCertRequest {
            name: "h1".into(),
            public_key: [7; 32],
            signing_key: [8; 32],
            subnets: vec!["10.42.1.0/24".parse().unwrap(), "fd42:1::/64".parse().unwrap()],
            groups: vec!["web".into(), "db".into()],
            not_before: T0,
            not_after: T0 + 10 * DAY,
        };
        key.sign(ca, req).unwrap()
    }

    #[test]
    fn renew_carries_name_subnets_groups_and_keys() {
        let (key, c) = ca(1);
        let old = old(&key, &c);
        let (from, to) = (T0 + 400 * DAY, T0 + 765 * DAY);
        let req = request(&old, &c, RenewKeys::Keep, from, to).unwrap();
        assert_eq!((req.name.as_str(), &req.subnets, &req.groups), ("h1", &old.subnets, &old.groups));
        assert_eq!((req.public_key, req.signing_key), (old.public_key, old.signing_key));
        assert_eq!((req.not_before, req.not_after), (from, to));
        let new = key.sign(&c, req).unwrap();
        assert_eq!(new.verify(&c, T0 + 500 * DAY), Ok(()), "usable long after OLD expired");
    }

    #[test]
    fn renew_with_a_new_key_changes_only_the_keys() {
        let (key, c) = ca(1);
        let old = old(&key, &c);
        let keys = RenewKeys::New { public_key: [9; 32], signing_key: [10; 32] };
        let req = request(&old, &c, keys, T0 + DAY, T0 + 20 * DAY).unwrap();
        assert_eq!((req.public_key, req.signing_key), ([9; 32], [10; 32]));
        assert_eq!((req.name.as_str(), &req.subnets, &req.groups), ("h1", &old.subnets, &old.groups));
    }

    #[test]
    fn rogue_certificate_of_another_ca_is_not_renewed() {
        let (key, c) = ca(1);
        let (_, other) = ca(2);
        let old = old(&key, &c);
        assert_eq!(issued_by(&old, &other), Err(CertError::ForeignCa));
        assert_eq!(request(&old, &other, RenewKeys::Keep, T0, T0 + DAY), Err(CertError::ForeignCa));
    }

    #[test]
    fn an_edited_expired_certificate_is_refused() {
        let (key, c) = ca(1);
        let mut old = old(&key, &c);
        assert_eq!(issued_by(&old, &c), Ok(()), "expired long ago, still the CA's");
        old.subnets = vec!["10.42.0.0/16".parse().unwrap()];
        assert_eq!(issued_by(&old, &c), Err(CertError::BadSignature));
        let mut wider = self::old(&key, &c);
        wider.groups.push("admin".into());
        assert_eq!(
            request(&wider, &c, RenewKeys::Keep, T0 + 400 * DAY, T0 + 500 * DAY),
            Err(CertError::BadSignature)
        );
    }
}
