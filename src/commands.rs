//! CLI handlers that need no daemon: key generation, the CA, certificate inspection and
//! configuration checks. Each returns `anyhow::Result` with an error that says what to fix.

use anyhow::{bail, Context, Result};
use overlay_proto::cert::{NodeCert, NodeCertRequest};
use overlay_proto::handshake::public_key;
use std::path::Path;

use crate::cli::{CaCommand, CertCommand};
use crate::config::Config;
use crate::pki::{self, AnyCert};

/// `weft keygen`.
pub fn keygen(out: &Path) -> Result<()> {
    let (secret, public) = pki::generate_x25519();
    let pub_path = out.with_extension(match out.extension() {
        Some(e) => format!("{}.pub", e.to_string_lossy()),
        None => "pub".into(),
    });
    if pub_path.exists() {
        bail!("{} already exists; refusing to overwrite", pub_path.display());
    }
    pki::write_secret(out, &format!("{}\n", pki::encode_key(&secret)))?;
    pki::write_public(&pub_path, &format!("{}\n", pki::encode_key(&public)))?;
    println!("{}", pki::encode_key(&public));
    Ok(())
}

/// `weft ca …`.
pub fn ca(cmd: CaCommand) -> Result<()> {
    match cmd {
        CaCommand::Init { name, out_key, out_cert, days } => {
            if days == 0 {
                bail!("--days must be at least 1");
            }
            let cert = pki::ca_init(&name, &out_key, &out_cert, days)?;
            println!(
                "created CA {:?} (key {}, fingerprint {}), valid until {}",
                cert.name,
                out_key.display(),
                pki::fingerprint(&cert.public_key),
                fmt_time(cert.not_after)
            );
            Ok(())
        }
        CaCommand::Sign {
            ca_key,
            ca_cert,
            name,
            public_key,
            public_key_file,
            subnets,
            groups,
            days,
            out,
        } => {
            let key_text = match (public_key, public_key_file) {
                (Some(k), _) => k,
                (None, Some(f)) => pki::read_text(&f)?,
                (None, None) => bail!("give --public-key or --public-key-file"),
            };
            let public_key = pki::decode_key(&key_text, "public key")?;
            let subnets = subnets
                .iter()
                .map(|s| s.parse().with_context(|| format!("--subnet {s:?} is not a CIDR like 10.42.1.0/24")))
                .collect::<Result<Vec<_>>>()?;
            let ca = pki::load_ca_cert(&ca_cert)?;
            let now = pki::unix_now();
            let not_after = (now + days.max(1) * 86_400).min(ca.not_after);
            let req = NodeCertRequest {
                name,
                public_key,
                subnets,
                groups,
                not_before: now.saturating_sub(60).max(ca.not_before),
                not_after,
            };
            let cert = pki::ca_sign(&ca_key, &ca_cert, req, &out)?;
            println!(
                "signed {} for {:?}, valid until {}",
                out.display(),
                cert.name,
                fmt_time(cert.not_after)
            );
            Ok(())
        }
    }
}

/// `weft cert show`.
pub fn cert(cmd: CertCommand) -> Result<()> {
    let CertCommand::Show { path, json, ca } = cmd;
    let cert = pki::load_any_cert(&path)?;
    let verdict = match (&cert, ca) {
        (AnyCert::Node(n), Some(ca_path)) => {
            let ca = pki::load_ca_cert(&ca_path)?;
            Some(match n.verify(&ca, pki::unix_now()) {
                Ok(()) => "valid".to_owned(),
                Err(e) => format!("INVALID: {e}"),
            })
        }
        (AnyCert::Ca(c), _) => Some(match c.verify(pki::unix_now()) {
            Ok(()) => "valid".to_owned(),
            Err(e) => format!("INVALID: {e}"),
        }),
        _ => None,
    };
    let value = match &cert {
        AnyCert::Ca(c) => serde_json::json!({
            "kind": "ca",
            "name": c.name,
            "public_key": pki::encode_key(&c.public_key),
            "not_before": c.not_before,
            "not_after": c.not_after,
            "status": verdict,
        }),
        AnyCert::Node(n) => node_json(n, verdict.as_deref()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    match &cert {
        AnyCert::Ca(c) => {
            println!("CA certificate");
            println!("  name:        {}", c.name);
            println!("  public key:  {}", pki::encode_key(&c.public_key));
            println!("  valid:       {} .. {}", fmt_time(c.not_before), fmt_time(c.not_after));
        }
        AnyCert::Node(n) => {
            println!("node certificate");
            println!("  name:        {}", n.name);
            println!("  public key:  {}", pki::encode_key(&n.public_key));
            let subnets: Vec<String> = n.subnets.iter().map(|s| s.to_string()).collect();
            println!("  subnets:     {}", subnets.join(", "));
            println!("  groups:      {}", if n.groups.is_empty() { "-".into() } else { n.groups.join(", ") });
            println!("  valid:       {} .. {}", fmt_time(n.not_before), fmt_time(n.not_after));
            println!("  issuer:      {}", pki::encode_key(&n.issuer));
        }
    }
    if let Some(v) = verdict {
        println!("  status:      {v}");
    }
    Ok(())
}

fn node_json(n: &NodeCert, status: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "kind": "node",
        "name": n.name,
        "public_key": pki::encode_key(&n.public_key),
        "subnets": n.subnets.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "groups": n.groups,
        "not_before": n.not_before,
        "not_after": n.not_after,
        "issuer": pki::encode_key(&n.issuer),
        "status": status,
    })
}

/// Loads the configuration and every file it names, checking they agree with each other and
/// with the host (`weft check-config` and `weft run` both start here). Every error names the
/// config file, the line and the key to fix.
pub fn load_checked(path: &Path) -> Result<(Config, crate::daemon::Identity)> {
    let cfg = Config::load(path)?;
    check_state_dir(&cfg)?;
    let identity = crate::daemon::Identity::load(&cfg)?;
    Ok((cfg, identity))
}

/// `node.state_dir` must be a directory, or not exist yet (the daemon creates it).
fn check_state_dir(cfg: &Config) -> Result<(), crate::config::ConfigError> {
    let dir = &cfg.node.state_dir;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(cfg.error(
            "node.state_dir",
            &format!(
                "{} exists and is not a directory; name a directory (it is created if missing)",
                dir.display()
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(cfg.error("node.state_dir", &format!("cannot use {}: {e}", dir.display()))),
    }
}

/// `weft check-config`.
pub fn check_config(path: &Path) -> Result<()> {
    let (cfg, id) = load_checked(path)?;
    println!("{}: OK", path.display());
    println!(
        "  node {} ({}), listening on {}",
        cfg.node.name,
        pki::fingerprint(&id.cert.public_key),
        cfg.underlay.listen
    );
    println!("  advertising {} (from {})", cfg.underlay.advertise, cfg.underlay.advertise_from);
    for n in &cfg.networks {
        println!(
            "  network {} vni {} subnet {} mtu {} encryption {:?}",
            n.name, n.vni, n.subnet, n.mtu, n.encryption
        );
    }
    println!("  certificate valid until {}", fmt_time(id.cert.not_after));
    Ok(())
}

/// Verifies the identity files against each other and the config: the CA and node
/// certificates are inside their validity windows (the error gives the dates), the certificate
/// is the CA's and is for `node.key` and `node.name`, and every network's subnet contains one
/// of the certificate's subnets. Each error names the config key to look at.
pub fn check_identity(
    cfg: &Config,
    secret: &[u8; 32],
    cert: &NodeCert,
    ca: &overlay_proto::cert::CaCert,
) -> Result<()> {
    let now = pki::unix_now();
    let (cert_path, ca_path) = (cfg.node.cert.display(), cfg.node.ca.display());
    if let Some(why) = outside_window(ca.not_before, ca.not_after, now) {
        return Err(cfg.error("node.ca", &format!("CA certificate {ca_path} ({:?}) {why}", ca.name)).into());
    }
    if cert.issuer != ca.public_key {
        return Err(cfg
            .error("node.cert", &format!("{cert_path} was issued by another CA than {ca_path} (node.ca)"))
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
    if cert.public_key != public_key(secret) {
        return Err(cfg
            .error(
                "node.key",
                &format!(
                    "{} is not the key {cert_path} was issued for (the certificate's public key \
                     starts {}, this key's {})",
                    cfg.node.key.display(),
                    pki::fingerprint(&cert.public_key),
                    pki::fingerprint(&public_key(secret))
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
        if !cert.subnets.iter().any(|s| n.subnet.contains(s)) {
            return Err(cfg
                .error(
                    &format!("network[{i}].subnet"),
                    &format!(
                        "{} (network {:?}) contains none of the certificate's subnets ({subnets}): \
                         the node would have no addresses to give its containers",
                        n.subnet, n.name
                    ),
                )
                .into());
        }
    }
    Ok(())
}

/// Why `now` is outside `not_before..not_after`, with the dates; `None` inside it.
fn outside_window(not_before: u64, not_after: u64, now: u64) -> Option<String> {
    let window = format!("valid from {} until {}", fmt_time(not_before), fmt_time(not_after));
    if now < not_before {
        Some(format!("is not valid yet: {window}; now is {}", fmt_time(now)))
    } else if now >= not_after {
        Some(format!("expired at {} ({window}); now is {}", fmt_time(not_after), fmt_time(now)))
    } else {
        None
    }
}

/// UTC time for humans.
pub fn fmt_time(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_dates() {
        assert_eq!(super::fmt_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::fmt_time(1_800_000_000), "2027-01-15 08:00:00 UTC");
    }
}
