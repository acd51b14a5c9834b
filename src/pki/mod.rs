//! Key and certificate files: what `weft keygen`, `weft ca …` and `weft cert show` read and
//! write, and what the daemon loads at start.
//!
//! Formats: X25519 private and public keys are one line of base64 (as WireGuard's); the CA key
//! and all certificates are PEM-style armoured base64 of the binary encoding in
//! `overlay_proto::cert`. Private keys are created with mode 0600 and never overwritten, and
//! a private key that its group or other users may access is refused when loaded. Every copy
//! of secret bytes made here (file text, base64, decoded bytes, seeds) is wiped when dropped
//! (`zeroize`); the keys themselves are [`SecretKey`] and [`CaKey`], which wipe themselves.

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use overlay_proto::cert::{CaBundle, CaCert, CaKey, NodeCert, NodeCertRequest, Revocation};
use overlay_proto::keys::SecretKey;
use rand_core::{OsRng, RngCore};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub mod expiry;
mod identity;
pub mod renewal;
pub use identity::{check_identity, load_revocations_of, Identity};
use std::time::{SystemTime, UNIX_EPOCH};

const NODE_LABEL: &str = "WEFT NODE CERTIFICATE";
const CA_LABEL: &str = "WEFT CA CERTIFICATE";
const CA_KEY_LABEL: &str = "WEFT CA PRIVATE KEY";
const REVOCATION_LABEL: &str = "WEFT REVOCATION";
/// Longest key or certificate file we read.
const MAX_FILE_LEN: u64 = 16 * 1024;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// 32 bytes from the OS CSPRNG.
pub fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    b
}

/// Base64 of a 32-byte key.
pub fn encode_key(k: &[u8; 32]) -> String {
    B64.encode(k)
}

/// A 32-byte key from base64, with an error that says what was wrong.
pub fn decode_key(s: &str, what: &str) -> Result<[u8; 32]> {
    let bytes = B64.decode(s.trim()).with_context(|| format!("{what} is not valid base64"))?;
    bytes.try_into().map_err(|b: Vec<u8>| anyhow::anyhow!("{what} must be 32 bytes, got {}", b.len()))
}

/// A node's public key as `weft keygen` prints it and `weft ca sign` takes it: base64 of its
/// X25519 key followed by its Ed25519 record-signing key (64 bytes, 88 characters).
pub fn encode_public_identity(secret: &SecretKey) -> String {
    let mut b = [0u8; 64];
    b[..32].copy_from_slice(&secret.public_key());
    b[32..].copy_from_slice(&secret.record_signing_key().public_key());
    B64.encode(b)
}

/// The X25519 and record-signing public keys from [`encode_public_identity`]'s text.
pub fn decode_public_identity(s: &str, what: &str) -> Result<([u8; 32], [u8; 32])> {
    let bytes = B64.decode(s.trim()).with_context(|| format!("{what} is not valid base64"))?;
    match bytes.len() {
        64 => {
            let (x, e) = bytes.split_at(32);
            Ok((x.try_into().expect("32 bytes"), e.try_into().expect("32 bytes")))
        }
        32 => bail!(
            "{what} is an X25519 key alone (as an earlier weft wrote it) and lacks the node's \
             record-signing key; print the full public key with `weft pubkey --key <private key file>`"
        ),
        n => bail!("{what} must be 64 bytes (X25519 key and record-signing key), got {n}"),
    }
}

/// Writes a new secret file with mode 0600; refuses to replace an existing file.
pub fn write_secret(path: &Path, contents: &str) -> Result<()> {
    write_new(path, contents, 0o600)
}

/// Writes a public file (certificate, public key), mode 0644; refuses to replace one.
pub fn write_public(path: &Path, contents: &str) -> Result<()> {
    write_new(path, contents, 0o644)
}

fn write_new(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    f.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Reads a small text file.
pub fn read_text(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > MAX_FILE_LEN {
        bail!("{} is {} bytes; key and certificate files are far smaller", path.display(), meta.len());
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Generates a node's private key.
pub fn generate_secret() -> SecretKey {
    SecretKey::from_bytes(random32())
}

/// The key file text of a private key (base64 and a newline), wiped when dropped.
pub fn secret_key_text(secret: &SecretKey) -> Zeroizing<String> {
    let mut text = Zeroizing::new(B64.encode(secret.as_bytes()));
    text.push('\n');
    text
}

/// Reads a private key file, refusing one whose mode lets its group or other users access it
/// (a key others could read is no longer this node's alone). The text is wiped when dropped.
pub fn read_secret(path: &Path) -> Result<Zeroizing<String>> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let who = match (mode & 0o070 != 0, mode & 0o007 != 0) {
            (true, true) => "its group and every user",
            (true, false) => "its group",
            _ => "every user",
        };
        bail!(
            "private key {} has mode {mode:04o}, which lets {who} access it; make it private with: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    read_text(path).map(Zeroizing::new)
}

/// Loads an X25519 private key file (mode 0600 or stricter), strict about its shape.
pub fn load_private_key(path: &Path) -> Result<SecretKey> {
    let text = read_secret(path)?;
    let what = format!("private key {}", path.display());
    let bytes =
        Zeroizing::new(B64.decode(text.trim()).with_context(|| format!("{what} is not valid base64"))?);
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != key.len() {
        bail!("{what} must be 32 bytes, got {}", bytes.len());
    }
    key.copy_from_slice(&bytes);
    Ok(SecretKey::from_bytes(*key))
}

/// PEM-style armour. Its base64 is wiped, and the result is allocated once (no copy left
/// behind by growing it), so that armouring a secret leaves only the result to wipe.
pub fn armor(label: &str, bytes: &[u8]) -> String {
    let b = Zeroizing::new(B64.encode(bytes));
    let mut out = String::with_capacity(b.len() + b.len() / 64 + 2 * label.len() + 40);
    out.push_str(&format!("-----BEGIN {label}-----\n"));
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Removes PEM-style armour, returning the label and the bytes. The base64 it gathers is wiped
/// (it may be a private key's); wipe the returned bytes too when they are secret.
pub fn dearmor(text: &str, path: &Path) -> Result<(String, Vec<u8>)> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    let label = first
        .strip_prefix("-----BEGIN ")
        .and_then(|l| l.strip_suffix("-----"))
        .with_context(|| format!("{}: not a weft PEM file (no BEGIN line)", path.display()))?
        .to_owned();
    let mut body = Zeroizing::new(String::with_capacity(text.len()));
    for l in lines {
        if l == format!("-----END {label}-----") {
            let bytes =
                B64.decode(body.as_bytes()).with_context(|| format!("{}: bad base64", path.display()))?;
            return Ok((label, bytes));
        }
        body.push_str(l);
    }
    bail!("{}: missing END line", path.display())
}

/// Loads a CA certificate (self-signature checked).
pub fn load_ca_cert(path: &Path) -> Result<CaCert> {
    let (label, bytes) = dearmor(&read_text(path)?, path)?;
    if label != CA_LABEL {
        bail!("{}: expected a {CA_LABEL}, found {label}", path.display());
    }
    CaCert::decode(&bytes).with_context(|| format!("{}: invalid CA certificate", path.display()))
}

/// Loads the CAs a node trusts: every CA certificate block of every file, in order (a bundle
/// file is CA certificate files concatenated). Each self-signature is checked; the validity
/// windows are judged later, against the clock.
pub fn load_ca_bundle(paths: &[PathBuf]) -> Result<CaBundle> {
    let mut cas = Vec::new();
    for path in paths {
        let text = read_text(path)?;
        let blocks = armored_blocks(&text, path, CA_LABEL)?;
        if blocks.is_empty() {
            bail!("{}: no {CA_LABEL} in it", path.display());
        }
        for (i, bytes) in blocks.into_iter().enumerate() {
            let ca = CaCert::decode(&bytes)
                .with_context(|| format!("{}: CA certificate {} is invalid", path.display(), i + 1))?;
            cas.push(ca);
        }
    }
    CaBundle::new(cas).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The bytes of every PEM-style block of `text`, each of which must be labelled `label`.
fn armored_blocks(text: &str, path: &Path, label: &str) -> Result<Vec<Vec<u8>>> {
    let end_marker = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let end =
            rest[start..].find(&end_marker).map(|e| start + e + end_marker.len()).with_context(|| {
                format!("{}: block {} has no END {label} line", path.display(), out.len() + 1)
            })?;
        let (found, bytes) = dearmor(&rest[start..end], path)?;
        if found != label {
            bail!("{}: expected {label} blocks, found {found}", path.display());
        }
        out.push(bytes);
        rest = &rest[end..];
    }
    Ok(out)
}

/// Loads a node certificate (structure checked; verify it against the CA separately).
pub fn load_node_cert(path: &Path) -> Result<NodeCert> {
    let (label, bytes) = dearmor(&read_text(path)?, path)?;
    if label != NODE_LABEL {
        bail!("{}: expected a {NODE_LABEL}, found {label}", path.display());
    }
    NodeCert::decode(&bytes).with_context(|| format!("{}: invalid node certificate", path.display()))
}

/// Loads a CA private key (mode 0600 or stricter).
pub fn load_ca_key(path: &Path) -> Result<CaKey> {
    let (label, bytes) = dearmor(&read_secret(path)?, path)?;
    let bytes = Zeroizing::new(bytes);
    if label != CA_KEY_LABEL {
        bail!("{}: expected a {CA_KEY_LABEL}, found {label}", path.display());
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    if bytes.len() != seed.len() {
        bail!("{}: CA key must be 32 bytes", path.display());
    }
    seed.copy_from_slice(&bytes);
    Ok(CaKey::from_seed(&seed))
}

/// Creates a CA: key file (0600) and self-signed certificate valid for `days`.
pub fn ca_init(name: &str, key_out: &Path, cert_out: &Path, days: u64) -> Result<CaCert> {
    let key = CaKey::from_seed(&Zeroizing::new(random32()));
    let now = unix_now();
    let cert = key.self_sign(name, now.saturating_sub(60), now + days * 86_400)?;
    let seed = Zeroizing::new(key.seed());
    write_secret(key_out, &Zeroizing::new(armor(CA_KEY_LABEL, seed.as_slice())))?;
    write_ca_cert(cert_out, &cert)?;
    Ok(cert)
}

/// Writes a CA certificate file (0644); refuses to replace one.
pub fn write_ca_cert(path: &Path, cert: &CaCert) -> Result<()> {
    write_public(path, &armor(CA_LABEL, &cert.encode()))
}

/// Writes a node certificate file (0644); refuses to replace one.
pub fn write_node_cert(path: &Path, cert: &NodeCert) -> Result<()> {
    write_public(path, &armor(NODE_LABEL, &cert.encode()))
}

/// Signs a node certificate and writes it.
pub fn ca_sign(ca_key: &Path, ca_cert: &Path, req: NodeCertRequest, out: &Path) -> Result<NodeCert> {
    let key = load_ca_key(ca_key)?;
    let ca = load_ca_cert(ca_cert)?;
    let cert = key.sign(&ca, req)?;
    write_node_cert(out, &cert)?;
    Ok(cert)
}

/// Longest revocation file we read (thousands of entries).
const MAX_REVOCATIONS_LEN: u64 = 4 * 1024 * 1024;

/// Loads a revocation file: PEM-style blocks, each one CA-signed revocation. Every entry must
/// verify against a CA of `cas` (a file with a foreign or altered entry is refused whole: it
/// was not written by `weft ca revoke` for this network).
pub fn load_revocations(path: &Path, cas: &CaBundle) -> Result<Vec<Revocation>> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > MAX_REVOCATIONS_LEN {
        bail!(
            "{} is {} bytes; a revocation file is at most {MAX_REVOCATIONS_LEN}",
            path.display(),
            meta.len()
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let blocks = armored_blocks(&text, path, REVOCATION_LABEL)?;
    let mut out = Vec::new();
    for (i, bytes) in blocks.iter().enumerate() {
        let r = Revocation::decode(bytes)
            .with_context(|| format!("{}: entry {} is not a revocation", path.display(), i + 1))?;
        if cas.get(&r.issuer).is_none() {
            // By a CA this node no longer trusts (rotated out): its certificates are refused
            // anyway.
            continue;
        }
        cas.verify_revocation(&r).with_context(|| {
            format!("{}: entry {} does not verify against the CA it names", path.display(), i + 1)
        })?;
        out.push(r);
    }
    if out.is_empty() && !blocks.is_empty() {
        bail!("{}: none of its {} entries is by a CA in node.ca", path.display(), blocks.len());
    }
    Ok(out)
}

/// `weft ca revoke`: signs a revocation of `cert`'s key and appends it to `out` (created 0644
/// if missing). Returns the entry.
pub fn ca_revoke(ca_key: &Path, ca_cert: &Path, cert: &Path, out: &Path) -> Result<Revocation> {
    let key = load_ca_key(ca_key)?;
    let ca = load_ca_cert(ca_cert)?;
    let node = load_node_cert(cert)?;
    let existing =
        if out.exists() { load_revocations(out, &CaBundle::single(ca.clone()))? } else { Vec::new() };
    if let Some(r) = existing.iter().find(|r| r.public_key == node.public_key) {
        bail!(
            "{}'s key is already revoked in {} (since {})",
            node.name,
            out.display(),
            fmt_time(r.revoked_at)
        );
    }
    let r = key
        .revoke(&ca, &node, unix_now())
        .with_context(|| format!("{} was not issued by {}", cert.display(), ca_cert.display()))?;
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(out)
        .with_context(|| format!("cannot open {}", out.display()))?;
    f.write_all(armor(REVOCATION_LABEL, &r.encode()).as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(r)
}

/// Hex fingerprint prefix of a key, for humans.
pub fn fingerprint(k: &[u8; 32]) -> String {
    k[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Any certificate file, for `weft cert show`.
pub enum AnyCert {
    /// A CA certificate.
    Ca(CaCert),
    /// A node certificate.
    Node(NodeCert),
}

/// Loads either kind of certificate.
pub fn load_any_cert(path: &Path) -> Result<AnyCert> {
    let (label, _) = dearmor(&read_text(path)?, path)?;
    match label.as_str() {
        CA_LABEL => Ok(AnyCert::Ca(load_ca_cert(path)?)),
        NODE_LABEL => Ok(AnyCert::Node(load_node_cert(path)?)),
        other => bail!("{}: {other} is not a certificate", path.display()),
    }
}

/// Seconds since the Unix epoch as RFC 3339 UTC (`2027-01-15T08:00:00Z`).
pub fn fmt_time(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
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
    use super::*;

    #[test]
    fn armor_roundtrip_and_errors() {
        let t = armor("X", &[1, 2, 3, 250]);
        assert_eq!(dearmor(&t, Path::new("f")).unwrap(), ("X".to_owned(), vec![1, 2, 3, 250]));
        assert!(dearmor("hello", Path::new("f")).is_err());
        assert!(dearmor("-----BEGIN X-----\nAAAA\n", Path::new("f")).is_err());
        assert!(decode_key("AAAA", "k").is_err());
        assert!(decode_key("not base64!", "k").is_err());
    }

    #[test]
    fn a_public_key_carries_both_keys_and_an_old_one_says_how_to_fix_it() {
        let secret = generate_secret();
        let text = encode_public_identity(&secret);
        let (x, e) = decode_public_identity(&text, "public key").unwrap();
        assert_eq!(x, secret.public_key());
        assert_eq!(e, secret.record_signing_key().public_key());
        let old = decode_public_identity(&encode_key(&x), "public key").unwrap_err().to_string();
        assert!(old.contains("weft pubkey --key"), "{old}");
    }

    #[test]
    fn private_keys_are_written_0600_and_refused_when_others_can_read_them() {
        let dir = std::env::temp_dir().join(format!("weft-pki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("h1.key");
        let secret = generate_secret();
        write_secret(&key, &secret_key_text(&secret)).unwrap();
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_private_key(&key).unwrap(), secret);
        for (mode, who) in [(0o644, "its group and every user"), (0o640, "its group"), (0o604, "every user")]
        {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = format!("{:#}", load_private_key(&key).unwrap_err());
            assert!(e.contains(&format!("has mode {mode:04o}, which lets {who} access it")), "{e}");
            assert!(e.contains(&format!("chmod 600 {}", key.display())), "{e}");
        }
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(load_private_key(&key).is_ok(), "stricter than 0600 is fine");
        // The CA key follows the same rule.
        ca_init("t", &dir.join("ca.key"), &dir.join("ca.crt"), 1).unwrap();
        assert!(load_ca_key(&dir.join("ca.key")).is_ok());
        std::fs::set_permissions(dir.join("ca.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(format!("{:#}", load_ca_key(&dir.join("ca.key")).err().unwrap()).contains("chmod 600"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
