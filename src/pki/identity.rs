//! The node's identity: its private key, certificate and the network CA, loaded from the
//! files the config names and checked against each other, the config and the clock before
//! anything starts. Every error names the config key (and its line) to fix.

use anyhow::Result;
use overlay_proto::cert::{CaBundle, NodeCert, Revocation};
use overlay_proto::keys::SecretKey;

use crate::config::Config;
use crate::pki;

/// The node's identity files, loaded and cross-checked.
pub struct Identity {
    /// X25519 private key.
    pub secret: SecretKey,
    /// Our certificate.
    pub cert: NodeCert,
    /// The CAs this node trusts (`node.ca`); one of them issued `cert`.
    pub cas: CaBundle,
    /// Revocations from `node.revocations` (each verified against the CA).
    pub revocations: Vec<Revocation>,
}

impl Identity {
    /// Loads key, certificate and CA named by the config and checks they agree
    /// ([`check_identity`]); errors name the config key and its line.
    pub fn load(cfg: &Config) -> Result<Self> {
        let secret =
            pki::load_private_key(&cfg.node.key).map_err(|e| cfg.error("node.key", &format!("{e:#}")))?;
        let cert =
            pki::load_node_cert(&cfg.node.cert).map_err(|e| cfg.error("node.cert", &format!("{e:#}")))?;
        let cas = pki::load_ca_bundle(&cfg.node.ca).map_err(|e| cfg.error("node.ca", &format!("{e:#}")))?;
        check_identity(cfg, &secret, &cert, &cas)?;
        let revocations = load_revocations_of(cfg, &cas)?;
        if revocations.iter().any(|r| r.public_key == cert.public_key) {
            return Err(cfg
                .error("node.revocations", "this node's own key is revoked: it may not join the network")
                .into());
        }
        Ok(Self { secret, cert, cas, revocations })
    }
}

/// The entries of `node.revocations` (none when it is not set) by CAs of `cas`, verified.
pub fn load_revocations_of(cfg: &Config, cas: &CaBundle) -> Result<Vec<Revocation>> {
    match &cfg.node.revocations {
        Some(path) => pki::load_revocations(path, cas)
            .map_err(|e| cfg.error("node.revocations", &format!("{e:#}")).into()),
        None => Ok(Vec::new()),
    }
}

/// Verifies the identity files against each other and the config: the certificate was issued
/// by a CA of the bundle, that CA and the certificate are inside their validity windows (the
/// error gives the dates), and the certificate is for `node.key` and `node.name`, and every
/// network's subnet contains one of the certificate's subnets. Each error names the config key
/// to look at. (Other CAs of the bundle may be outside their windows: `check-config` warns.)
pub fn check_identity(cfg: &Config, secret: &SecretKey, cert: &NodeCert, cas: &CaBundle) -> Result<()> {
    let now = pki::unix_now();
    let cert_path = cfg.node.cert.display();
    let ca_path = cfg.node.ca.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    let Some(ca) = cas.get(&cert.issuer) else {
        return Err(cfg
            .error("node.cert", &format!("{cert_path} was issued by a CA that is not in node.ca ({ca_path})"))
            .into());
    };
    if let Some(why) = outside_window(ca.not_before, ca.not_after, now) {
        return Err(cfg
            .error(
                "node.ca",
                &format!("CA certificate {:?} (in {ca_path}) that issued {cert_path} {why}", ca.name),
            )
            .into());
    }
    if let Some(why) = outside_window(cert.not_before, cert.not_after, now) {
        return Err(cfg
            .error("node.cert", &format!("certificate {cert_path} ({:?}) {why}", cert.name))
            .into());
    }
    if let Err(e) = cert.verify(ca, now) {
        return Err(cfg
            .error("node.cert", &format!("{cert_path} does not verify against {ca_path}: {e}"))
            .into());
    }
    if cert.public_key != secret.public_key() {
        return Err(cfg
            .error(
                "node.key",
                &format!(
                    "{} is not the key {cert_path} was issued for (the certificate's public key \
                     starts {}, this key's {})",
                    cfg.node.key.display(),
                    pki::fingerprint(&cert.public_key),
                    pki::fingerprint(&secret.public_key())
                ),
            )
            .into());
    }
    if cert.signing_key != secret.record_signing_key().public_key() {
        return Err(cfg
            .error(
                "node.cert",
                &format!(
                    "{cert_path} names another record-signing key than {} derives; re-sign the \
                     certificate with the public key `weft pubkey --key {}` prints",
                    cfg.node.key.display(),
                    cfg.node.key.display()
                ),
            )
            .into());
    }
    if cert.name != cfg.node.name {
        return Err(cfg
            .error(
                "node.name",
                &format!(
                    "is {:?} but the certificate {cert_path} is for {:?}; the name must match",
                    cfg.node.name, cert.name
                ),
            )
            .into());
    }
    let subnets = cert.subnets.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ");
    for (i, n) in cfg.networks.iter().enumerate() {
        // Every family of a dual-stack network needs the node's own pool: a container that
        // silently got only one of its two addresses would be a fault found much later.
        for family in n.subnet.iter() {
            if !cert.subnets.iter().any(|s| family.contains(s)) {
                return Err(cfg
                    .error(
                        &format!("network[{i}].subnet"),
                        &format!(
                            "{family} (network {:?}) contains none of the certificate's subnets \
                             ({subnets}): the node would have no addresses of that family to give \
                             its containers; sign a certificate with a subnet inside it (weft ca \
                             sign --subnet, once per family)",
                            n.name
                        ),
                    )
                    .into());
            }
        }
    }
    Ok(())
}

/// Why `now` is outside `not_before..not_after`, with the dates; `None` inside it.
fn outside_window(not_before: u64, not_after: u64, now: u64) -> Option<String> {
    let window = format!("valid from {} until {}", pki::fmt_time(not_before), pki::fmt_time(not_after));
    if now < not_before {
        Some(format!("is not valid yet: {window}; now is {}", pki::fmt_time(now)))
    } else if now >= not_after {
        Some(format!("expired at {} ({window}); now is {}", pki::fmt_time(not_after), pki::fmt_time(now)))
    } else {
        None
    }
}
