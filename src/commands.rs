//! CLI handlers that need no daemon: key generation, the CA, certificate inspection and
//! configuration checks. Each returns `anyhow::Result` with an error that says what to fix.

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use overlay_proto::cert::{CaCert, CertError, NodeCert, NodeCertRequest};
use std::path::Path;

use crate::cli::{CaCommand, CertCommand};
use crate::config::Config;
use crate::pki::renewal::{self, RenewFiles, RenewKeys};
use crate::pki::{self, expiry, fmt_time, AnyCert};

/// `weft keygen`.
pub fn keygen(out: &Path) -> Result<()> {
    let secret = pki::generate_secret();
    let public = pki::encode_public_identity(&secret);
    let pub_path = out.with_extension(match out.extension() {
        Some(e) => format!("{}.pub", e.to_string_lossy()),
        None => "pub".into(),
    });
    if pub_path.exists() {
        bail!("{} already exists; refusing to overwrite", pub_path.display());
    }
    pki::write_secret(out, &pki::secret_key_text(&secret))?;
    pki::write_public(&pub_path, &format!("{public}\n"))?;
    println!("{public}");
    Ok(())
}

/// `weft pubkey`: the public key of a private key file, as `weft keygen` prints it.
pub fn pubkey(key: &Path) -> Result<()> {
    let secret = pki::load_private_key(key)?;
    println!("{}", pki::encode_public_identity(&secret));
    Ok(())
}

/// Longest validity `--days` accepts: 100 years (more is a typo, and would overflow).
const MAX_DAYS: u64 = 36_500;

/// `weft ca …`.
pub fn ca(cmd: CaCommand) -> Result<()> {
    match cmd {
        CaCommand::Init { name, out_key, out_cert, days } => {
            check_days(days)?;
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
        CaCommand::Revoke { ca_key, ca_cert, cert, out } => {
            let r = pki::ca_revoke(&ca_key, &ca_cert, &cert, &out)?;
            println!(
                "revoked {:?} (key {}) in {}; give the file to the nodes as [node] revocations and \
                 `weft reload` one of them: the revocation spreads to every member",
                r.name,
                pki::fingerprint(&r.public_key),
                out.display()
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
            renew,
            old_ca,
        } => {
            check_days(days)?;
            let subnets = subnets.iter().map(|s| parse_cert_subnet(s)).collect::<Result<Vec<_>>>()?;
            let key_text = match (public_key, public_key_file) {
                (Some(k), _) => Some(k),
                (None, Some(f)) => Some(pki::read_text(&f)?),
                (None, None) => None,
            };
            let keys = key_text.map(|k| pki::decode_public_identity(&k, "public key")).transpose()?;
            let ca = pki::load_ca_cert(&ca_cert)?;
            let now = pki::unix_now();
            let (not_before, not_after) = node_window(&ca, now, days);
            if let Some(old) = renew {
                let keys = match keys {
                    Some((public_key, signing_key)) => RenewKeys::New { public_key, signing_key },
                    None => RenewKeys::Keep,
                };
                let files = RenewFiles {
                    ca_key: &ca_key,
                    ca_cert: &ca_cert,
                    old: &old,
                    old_ca: old_ca.as_deref(),
                    out: &out,
                };
                let (old, new) = renewal::renew(&files, keys, not_before, not_after)?;
                print_renewal(&files, &old, &new, &ca, now);
                return Ok(());
            }
            if old_ca.is_some() {
                // clap's `requires` is skipped when --renew would conflict with --name.
                bail!("--old-ca names the CA that issued the --renew certificate; it needs --renew");
            }
            let (Some(name), Some((public_key, signing_key))) = (name, keys) else {
                bail!("give --name and --public-key or --public-key-file, or --renew OLD.crt");
            };
            let req =
                NodeCertRequest { name, public_key, signing_key, subnets, groups, not_before, not_after };
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

/// A new node certificate's window: from a minute ago (clocks differ) for `days`, inside the
/// CA's own window.
fn node_window(ca: &CaCert, now: u64, days: u64) -> (u64, u64) {
    (now.saturating_sub(60).max(ca.not_before), (now + days * 86_400).min(ca.not_after))
}

/// Prints what `weft ca sign --renew` carried over from `old` into `new`, so the operator can
/// check it before installing the file.
fn print_renewal(files: &RenewFiles<'_>, old: &NodeCert, new: &NodeCert, ca: &CaCert, now: u64) {
    let key = if new.public_key == old.public_key && new.signing_key == old.signing_key {
        format!("kept ({})", pki::fingerprint(&new.public_key))
    } else {
        format!("NEW {} (was {})", pki::fingerprint(&new.public_key), pki::fingerprint(&old.public_key))
    };
    let capped = if new.not_after == ca.not_after { ", the CA's own end" } else { "" };
    let (from, to) = (files.old.display(), files.out.display());
    println!("renewed {from} as {to} (carried over; check before installing it):");
    println!("  name:        {}", new.name);
    println!("  subnets:     {}", join_or_dash(new.subnets.iter().map(|s| s.to_string())));
    println!("  groups:      {}", join_or_dash(new.groups.iter().cloned()));
    println!("  public key:  {key}");
    let window = |c: &NodeCert| format!("{} .. {}", fmt_time(c.not_before), fmt_time(c.not_after));
    println!("  old:         {} ({})", window(old), expiry::relative(now, old.not_after));
    println!("  new:         {} ({}{capped})", window(new), expiry::relative(now, new.not_after));
}

/// Items joined with ", ", or "-" for none.
fn join_or_dash(items: impl Iterator<Item = String>) -> String {
    let all: Vec<String> = items.collect();
    if all.is_empty() {
        "-".to_owned()
    } else {
        all.join(", ")
    }
}

/// A certificate valid for zero days is expired when written.
fn check_days(days: u64) -> Result<()> {
    if !(1..=MAX_DAYS).contains(&days) {
        bail!("--days {days}: a certificate must be valid for 1..={MAX_DAYS} days");
    }
    Ok(())
}

/// A `--subnet` as a certificate may carry it: a network address with its prefix, and not
/// everything (the node could then source any address, other nodes' containers' included).
fn parse_cert_subnet(s: &str) -> Result<IpNet> {
    let net: IpNet = s.parse().with_context(|| format!("--subnet {s:?} is not a CIDR like 10.42.1.0/24"))?;
    if net.prefix_len() == 0 {
        bail!(
            "--subnet {s}: a certificate for every address would let the node impersonate every \
             other node's containers; give the node's own container subnet, e.g. 10.42.1.0/24"
        );
    }
    if net.trunc() != net {
        bail!("--subnet {s} has host bits set; the subnet is {}", net.trunc());
    }
    Ok(net)
}

/// The command has printed its verdict already (as JSON): exit non-zero, print nothing more.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);

/// Whether a certificate can be used now, as `weft cert show` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Verifies (node: against `--ca`; CA: its own window, and the same key as `--ca`).
    Valid,
    /// Its window is right but nothing vouches for it: a node certificate without `--ca`.
    Unchecked,
    /// Past `not_after`.
    Expired(u64),
    /// Before `not_before`.
    NotYetValid(u64),
    /// The CA given with `--ca` is itself past its `not_after`.
    CaExpired(u64),
    /// The CA given with `--ca` is itself before its `not_before`.
    CaNotYetValid(u64),
    /// Issued by another CA than the one given with `--ca` (its issuer's fingerprint).
    ForeignCa(String),
    /// Anything else `verify` refuses (a bad signature).
    Invalid(String),
    /// Its key is revoked (since then).
    Revoked(u64),
}

impl Verdict {
    /// Whether the certificate may be used.
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Valid | Verdict::Unchecked)
    }

    /// A stable word for `--json`.
    pub fn code(&self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Unchecked => "unchecked",
            Verdict::Expired(_) => "expired",
            Verdict::NotYetValid(_) => "not_yet_valid",
            Verdict::CaExpired(_) => "ca_expired",
            Verdict::CaNotYetValid(_) => "ca_not_yet_valid",
            Verdict::ForeignCa(_) => "foreign_ca",
            Verdict::Invalid(_) => "invalid",
            Verdict::Revoked(_) => "revoked",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Valid => write!(f, "valid"),
            Verdict::Unchecked => write!(f, "within its validity; signature not checked (give --ca)"),
            Verdict::Expired(t) => write!(f, "EXPIRED on {}", fmt_time(*t)),
            Verdict::NotYetValid(t) => write!(f, "NOT YET VALID: valid from {}", fmt_time(*t)),
            Verdict::CaExpired(t) => write!(f, "CA EXPIRED on {}", fmt_time(*t)),
            Verdict::CaNotYetValid(t) => write!(f, "CA NOT YET VALID: valid from {}", fmt_time(*t)),
            Verdict::ForeignCa(issuer) => {
                write!(f, "WRONG CA: issued by CA {issuer}, not by the one given with --ca")
            }
            Verdict::Invalid(why) => write!(f, "INVALID: {why}"),
            Verdict::Revoked(t) => write!(f, "REVOKED on {}", fmt_time(*t)),
        }
    }
}

/// Judges a node certificate at `now`, against `ca` when given; the CA's own window is
/// reported as the CA's, so an expired CA is not mistaken for an expired node certificate.
pub fn node_verdict(n: &NodeCert, ca: Option<&CaCert>, now: u64) -> Verdict {
    let Some(ca) = ca else {
        return window_verdict(n.not_before, n.not_after, now).unwrap_or(Verdict::Unchecked);
    };
    if n.issuer != ca.public_key {
        return Verdict::ForeignCa(pki::fingerprint(&n.issuer));
    }
    if let Some(v) = window_verdict(ca.not_before, ca.not_after, now) {
        return match v {
            Verdict::Expired(t) => Verdict::CaExpired(t),
            Verdict::NotYetValid(t) => Verdict::CaNotYetValid(t),
            other => other,
        };
    }
    match n.verify(ca, now) {
        Ok(()) => Verdict::Valid,
        Err(CertError::Expired { not_after, .. }) => Verdict::Expired(not_after),
        Err(CertError::NotYetValid { not_before, .. }) => Verdict::NotYetValid(not_before),
        Err(CertError::ForeignCa) => Verdict::ForeignCa(pki::fingerprint(&n.issuer)),
        Err(e) => Verdict::Invalid(e.to_string()),
    }
}

/// Judges a CA certificate at `now`; with `expected` (`--ca`), it must be that CA.
pub fn ca_verdict(c: &CaCert, expected: Option<&CaCert>, now: u64) -> Verdict {
    if let Some(e) = expected.filter(|e| e.public_key != c.public_key) {
        return Verdict::Invalid(format!(
            "this is CA {} ({}), not the CA given with --ca ({} {})",
            c.name,
            pki::fingerprint(&c.public_key),
            e.name,
            pki::fingerprint(&e.public_key)
        ));
    }
    match c.verify(now) {
        Ok(()) => Verdict::Valid,
        Err(_) => window_verdict(c.not_before, c.not_after, now)
            .unwrap_or_else(|| Verdict::Invalid("outside its validity".into())),
    }
}

fn window_verdict(not_before: u64, not_after: u64, now: u64) -> Option<Verdict> {
    if now < not_before {
        Some(Verdict::NotYetValid(not_before))
    } else if now >= not_after {
        Some(Verdict::Expired(not_after))
    } else {
        None
    }
}

/// `weft cert show`: prints the certificate and its verdict; fails unless it is usable now.
pub fn cert(cmd: CertCommand) -> Result<()> {
    let CertCommand::Show { path, json, ca, revocations } = cmd;
    let cert = pki::load_any_cert(&path)?;
    let ca = ca.map(|p| pki::load_ca_cert(&p)).transpose()?;
    let revoked = match (&revocations, &ca) {
        (Some(f), Some(ca)) => pki::load_revocations(f, &overlay_proto::cert::CaBundle::single(ca.clone()))?,
        _ => Vec::new(),
    };
    let now = pki::unix_now();
    let verdict = match &cert {
        AnyCert::Node(n) => match revoked.iter().find(|r| r.public_key == n.public_key) {
            Some(r) if n.issuer == r.issuer => Verdict::Revoked(r.revoked_at),
            _ => node_verdict(n, ca.as_ref(), now),
        },
        AnyCert::Ca(c) => ca_verdict(c, ca.as_ref(), now),
    };
    let failed = || format!("{}: {verdict}", path.display());
    if json {
        let mut value = match &cert {
            AnyCert::Ca(c) => serde_json::json!({
                "kind": "ca",
                "name": c.name,
                "public_key": pki::encode_key(&c.public_key),
                "not_before": c.not_before,
                "not_after": c.not_after,
            }),
            AnyCert::Node(n) => node_json(n),
        };
        let not_after = match &cert {
            AnyCert::Ca(c) => c.not_after,
            AnyCert::Node(n) => n.not_after,
        };
        value["expires_in_secs"] = secs_until(now, not_after).into();
        value["expiry"] = expiry::relative(now, not_after).into();
        value["status"] = verdict.code().into();
        value["valid"] = verdict.is_ok().into();
        value["reason"] = verdict.to_string().into();
        println!("{}", serde_json::to_string_pretty(&value)?);
        if !verdict.is_ok() {
            return Err(Reported(failed()).into());
        }
        return Ok(());
    }
    match &cert {
        AnyCert::Ca(c) => {
            println!("CA certificate");
            println!("  name:        {}", c.name);
            println!("  public key:  {}", pki::encode_key(&c.public_key));
            println!("  valid:       {} .. {}", fmt_time(c.not_before), fmt_time(c.not_after));
            println!("  expiry:      {}", expiry::relative(now, c.not_after));
        }
        AnyCert::Node(n) => {
            println!("node certificate");
            println!("  name:        {}", n.name);
            println!("  public key:  {}", pki::encode_key(&n.public_key));
            let subnets: Vec<String> = n.subnets.iter().map(|s| s.to_string()).collect();
            println!("  subnets:     {}", subnets.join(", "));
            println!("  groups:      {}", if n.groups.is_empty() { "-".into() } else { n.groups.join(", ") });
            println!("  valid:       {} .. {}", fmt_time(n.not_before), fmt_time(n.not_after));
            println!("  expiry:      {}", expiry::relative(now, n.not_after));
            println!("  issuer:      {}", pki::encode_key(&n.issuer));
        }
    }
    println!("  status:      {verdict}");
    if !verdict.is_ok() {
        bail!("{}", failed());
    }
    Ok(())
}

/// Signed seconds from `now` to `t` (negative once `t` has passed), for `--json`.
fn secs_until(now: u64, t: u64) -> i64 {
    let signed = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
    signed(t).saturating_sub(signed(now))
}

fn node_json(n: &NodeCert) -> serde_json::Value {
    serde_json::json!({
        "kind": "node",
        "name": n.name,
        "public_key": pki::encode_key(&n.public_key),
        "subnets": n.subnets.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "groups": n.groups,
        "not_before": n.not_before,
        "not_after": n.not_after,
        "issuer": pki::encode_key(&n.issuer),
    })
}

/// Loads the configuration and every file it names, checking they agree with each other and
/// with the host (`weft check-config` and `weft run` both start here). Every error names the
/// config file, the line and the key to fix.
pub fn load_checked(path: &Path) -> Result<(Config, crate::pki::Identity)> {
    let cfg = Config::load(path)?;
    check_state_dir(&cfg)?;
    let identity = crate::pki::Identity::load(&cfg)?;
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
    let http = crate::http_access::HttpAccess::load(&cfg)?;
    let now = pki::unix_now();
    let cas: Vec<CaCert> = id.cas.iter().cloned().collect();
    let ca_paths = cfg.node.ca.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    let windows = window_findings(&id.cert, &cfg.node.cert, &cas, &ca_paths, now);
    if let Some(f) = windows.iter().find(|f| f.fatal) {
        return Err(cfg.error(f.key, &f.message).into());
    }
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
    println!("  certificate {}", expiry::describe(now, id.cert.not_after));
    for ca in &cas {
        println!("  CA {:?} {}", ca.name, expiry::describe(now, ca.not_after));
    }
    let who = match &cfg.node.control_group {
        Some(g) => format!("mode 0660: root and group {} (gid {})", g.name, g.gid),
        None => "mode 0600: root only".to_owned(),
    };
    println!("  control socket {} ({who})", cfg.node.control_socket.display());
    if let Some(listen) = cfg.metrics {
        let writes = match &cfg.http.token_file {
            Some(f) if http.has_token() => format!("with the token in {}", f.display()),
            _ => "off (no metrics.api_token_file)".to_owned(),
        };
        println!("  HTTP listener {listen}, registry writes {writes}");
    }
    for f in &windows {
        // Shaped as a config error (`FILE:LINE: KEY: …`) so it points at the file to replace.
        eprintln!("weft: warning: {}", cfg.error(f.key, &f.message));
    }
    Ok(())
}

/// What `check-config` says about one certificate's validity window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowFinding {
    /// The config key that names the certificate's file (`node.cert`, `node.ca`).
    pub key: &'static str,
    /// What is wrong, naming the file and the date.
    pub message: String,
    /// The node cannot start with it (an error); otherwise a warning.
    pub fatal: bool,
}

/// Judges the node certificate and the CA certificate(s) at `now`: a warning for each that
/// ends within the first expiry threshold (30 days); fatal for the node certificate or the CA
/// that issued it outside its window. Another CA of the bundle outside its window is only a
/// warning: it vouches for no one then, but stops nothing.
pub fn window_findings(
    cert: &NodeCert,
    cert_path: &Path,
    cas: &[CaCert],
    ca_path: &str,
    now: u64,
) -> Vec<WindowFinding> {
    let renew = format!("renew it with `weft ca sign --renew {}`", cert_path.display());
    let hints = (format!("{renew}, install it and `weft reload`"), renew.clone());
    let what = format!("certificate {} ({:?})", cert_path.display(), cert.name);
    let mut out = Vec::new();
    out.extend(judge_window("node.cert", &what, (cert.not_before, cert.not_after), now, true, &hints));
    for ca in cas {
        let fp = pki::fingerprint(&ca.public_key);
        let what = format!("CA certificate {:?} ({fp}, in {ca_path})", ca.name);
        let issuer = ca.public_key == cert.issuer;
        let soon = "the node certificates it issued end with it: issue new ones under a new CA before then";
        let ended = if issuer {
            "the node certificates it issued have ended with it: issue new ones under a new CA"
        } else {
            "it vouches for no one now: remove it from node.ca"
        };
        let hints = (soon.to_owned(), ended.to_owned());
        out.extend(judge_window("node.ca", &what, (ca.not_before, ca.not_after), now, issuer, &hints));
    }
    out
}

/// One window at `now`: outside it (fatal if `needed`), ending within the first expiry
/// threshold (a warning), or nothing to say. `hints` are what to do: (soon, ended).
fn judge_window(
    key: &'static str,
    what: &str,
    (not_before, not_after): (u64, u64),
    now: u64,
    needed: bool,
    (soon, ended): &(String, String),
) -> Option<WindowFinding> {
    let (message, fatal) = if now < not_before {
        (format!("{what} is not valid until {}", fmt_time(not_before)), needed)
    } else if now >= not_after {
        (format!("{what} {}; {ended}", expiry::describe(now, not_after)), needed)
    } else if expiry::warning_at(now, not_after).is_some() {
        (format!("{what} {}; {soon}", expiry::describe(now, not_after)), false)
    } else {
        return None;
    };
    Some(WindowFinding { key, message, fatal })
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_proto::cert::CaKey;

    #[test]
    fn formats_dates_as_rfc3339_utc() {
        assert_eq!(fmt_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_time(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(fmt_time(1_767_323_045), "2026-01-02T03:04:05Z");
    }

    const DAY: u64 = 86_400;
    const T0: u64 = 1_800_000_000;

    fn ca(seed: u8, from: u64, to: u64) -> (CaKey, CaCert) {
        let key = CaKey::from_seed(&[seed; 32]);
        let cert = key.self_sign("test", from, to).unwrap();
        (key, cert)
    }

    fn node(key: &CaKey, ca: &CaCert, from: u64, to: u64) -> NodeCert {
        let req = NodeCertRequest {
            name: "h1".into(),
            public_key: [7; 32],
            signing_key: [8; 32],
            subnets: vec!["10.42.1.0/24".parse().unwrap()],
            groups: vec![],
            not_before: from,
            not_after: to,
        };
        key.sign(ca, req).unwrap()
    }

    #[test]
    fn node_verdicts_name_what_is_wrong_and_when() {
        let (key, c) = ca(1, T0, T0 + 100 * DAY);
        let n = node(&key, &c, T0, T0 + 10 * DAY);
        assert_eq!(node_verdict(&n, Some(&c), T0 + DAY), Verdict::Valid);
        let expired = node_verdict(&n, Some(&c), T0 + 20 * DAY);
        assert_eq!(expired, Verdict::Expired(T0 + 10 * DAY));
        assert_eq!(expired.to_string(), "EXPIRED on 2027-01-25T08:00:00Z");
        assert!(!expired.is_ok());
        let early = node_verdict(&n, Some(&c), T0 - DAY);
        assert_eq!(early, Verdict::CaNotYetValid(T0), "the CA's window is checked first");
        assert_eq!(early.to_string(), "CA NOT YET VALID: valid from 2027-01-15T08:00:00Z");
        let late = node(&key, &c, T0 + 5 * DAY, T0 + 10 * DAY);
        assert_eq!(node_verdict(&late, Some(&c), T0 + DAY), Verdict::NotYetValid(T0 + 5 * DAY));
        assert_eq!(node_verdict(&n, Some(&c), T0 + 200 * DAY), Verdict::CaExpired(T0 + 100 * DAY));
    }

    #[test]
    fn rogue_node_cert_of_another_ca_is_refused() {
        let (key, c) = ca(1, T0, T0 + 100 * DAY);
        let (_, other) = ca(2, T0, T0 + 100 * DAY);
        let n = node(&key, &c, T0, T0 + 10 * DAY);
        let v = node_verdict(&n, Some(&other), T0 + DAY);
        assert_eq!(v, Verdict::ForeignCa(pki::fingerprint(&c.public_key)));
        assert!(v.to_string().starts_with("WRONG CA"), "{v}");
        assert_eq!(v.code(), "foreign_ca");
        let mut forged = n.clone();
        forged.not_after += DAY;
        assert!(matches!(node_verdict(&forged, Some(&c), T0 + DAY), Verdict::Invalid(_)));
    }

    #[test]
    fn without_a_ca_only_the_window_is_judged() {
        let (key, c) = ca(1, T0, T0 + 100 * DAY);
        let n = node(&key, &c, T0, T0 + 10 * DAY);
        assert_eq!(node_verdict(&n, None, T0 + DAY), Verdict::Unchecked);
        assert!(Verdict::Unchecked.is_ok());
        assert_eq!(node_verdict(&n, None, T0 + 11 * DAY), Verdict::Expired(T0 + 10 * DAY));
        assert_eq!(ca_verdict(&c, None, T0 + 101 * DAY), Verdict::Expired(T0 + 100 * DAY));
        let (_, other) = ca(2, T0, T0 + 100 * DAY);
        assert!(matches!(ca_verdict(&c, Some(&other), T0 + DAY), Verdict::Invalid(_)));
        assert_eq!(ca_verdict(&c, Some(&c), T0 + DAY), Verdict::Valid);
    }

    #[test]
    fn cert_subnets_and_days_are_checked_with_a_reason() {
        assert_eq!(parse_cert_subnet("10.42.1.0/24").unwrap().to_string(), "10.42.1.0/24");
        let e = parse_cert_subnet("10.42.1.7/24").unwrap_err().to_string();
        assert!(e.contains("host bits") && e.contains("10.42.1.0/24"), "{e}");
        for everything in ["0.0.0.0/0", "::/0"] {
            let e = parse_cert_subnet(everything).unwrap_err().to_string();
            assert!(e.contains("every address"), "{e}");
        }
        assert!(parse_cert_subnet("10.42.1.0").is_err());
        assert!(check_days(0).unwrap_err().to_string().contains("1..="));
        assert!(check_days(MAX_DAYS + 1).is_err());
        check_days(1).unwrap();
    }

    fn findings(n: &NodeCert, cas: &[CaCert], now: u64) -> Vec<WindowFinding> {
        window_findings(n, Path::new("/etc/weft/h1.crt"), cas, "/etc/weft/ca.crt", now)
    }

    #[test]
    fn check_config_warns_from_30_days_before_the_node_certificate_ends() {
        let (key, c) = ca(1, T0, T0 + 1000 * DAY);
        let end = T0 + 100 * DAY;
        let n = node(&key, &c, T0, end);
        assert_eq!(findings(&n, std::slice::from_ref(&c), end - 30 * DAY - 1), vec![]);
        for left in [30 * DAY, 7 * DAY, DAY, 1] {
            let f = findings(&n, std::slice::from_ref(&c), end - left);
            assert_eq!(f.len(), 1, "{f:?}");
            assert_eq!((f[0].key, f[0].fatal), ("node.cert", false), "a warning: exit 0");
            let m = &f[0].message;
            assert!(m.starts_with("certificate /etc/weft/h1.crt (\"h1\") expires in "), "{m}");
            assert!(m.contains("(2027-04-25T08:00:00Z)"), "names the date: {m}");
            assert!(m.contains("weft ca sign --renew /etc/weft/h1.crt"), "{m}");
        }
        let f = findings(&n, std::slice::from_ref(&c), end - 12 * DAY - 5);
        assert!(f[0].message.contains("expires in 12 days (2027-04-25T08:00:00Z)"), "{f:?}");
    }

    #[test]
    fn check_config_fails_for_an_expired_or_not_yet_valid_node_certificate() {
        let (key, c) = ca(1, T0, T0 + 1000 * DAY);
        let n = node(&key, &c, T0 + 10 * DAY, T0 + 100 * DAY);
        let f = findings(&n, std::slice::from_ref(&c), T0 + 103 * DAY);
        assert_eq!((f.len(), f[0].key, f[0].fatal), (1, "node.cert", true), "{f:?}");
        assert!(f[0].message.contains("expired 3 days ago (2027-04-25T08:00:00Z)"), "{f:?}");
        assert!(f[0].message.contains("weft ca sign --renew /etc/weft/h1.crt"), "{f:?}");
        let f = findings(&n, std::slice::from_ref(&c), T0 + 100 * DAY);
        assert!(f[0].fatal, "expired from not_after on: {f:?}");
        let f = findings(&n, std::slice::from_ref(&c), T0 + DAY);
        assert_eq!((f.len(), f[0].fatal), (1, true), "{f:?}");
        assert!(f[0].message.contains("is not valid until 2027-01-25T08:00:00Z"), "{f:?}");
    }

    #[test]
    fn check_config_warns_for_a_ca_that_ends_soon_and_fails_for_an_expired_one() {
        let (key, c) = ca(1, T0, T0 + 100 * DAY);
        let n = node(&key, &c, T0, T0 + 100 * DAY);
        // The node certificate ends with its CA: both are named.
        let f = findings(&n, std::slice::from_ref(&c), T0 + 80 * DAY);
        let keys: Vec<_> = f.iter().map(|f| (f.key, f.fatal)).collect();
        assert_eq!(keys, [("node.cert", false), ("node.ca", false)]);
        let m = &f[1].message;
        assert!(m.starts_with("CA certificate \"test\" ("), "{m}");
        assert!(m.contains(", in /etc/weft/ca.crt)"), "{m}");
        assert!(m.contains("expires in 20 days (2027-04-25T08:00:00Z)"), "{m}");
        let f = findings(&n, std::slice::from_ref(&c), T0 + 101 * DAY);
        assert!(f.iter().all(|f| f.fatal), "{f:?}");
        assert!(f[1].message.contains("expired 1 day ago"), "{f:?}");
    }

    #[test]
    fn another_ca_of_the_bundle_outside_its_window_is_only_a_warning() {
        let (key, c) = ca(1, T0, T0 + 1000 * DAY);
        let (_, old) = ca(2, T0 - 1000 * DAY, T0 + 10 * DAY);
        let n = node(&key, &c, T0, T0 + 365 * DAY);
        let cas = [old, c];
        assert_eq!(findings(&n, &cas, T0 + DAY).len(), 1, "the old CA ends in 9 days");
        let f = findings(&n, &cas, T0 + 20 * DAY);
        assert_eq!((f.len(), f[0].key, f[0].fatal), (1, "node.ca", false), "{f:?}");
        assert!(f[0].message.contains("vouches for no one now"), "{f:?}");
        assert_eq!(findings(&n, &cas[1..], T0 + 20 * DAY), vec![]);
    }
}
