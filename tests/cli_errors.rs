//! Binary tests for CLI mistakes that need no daemon: certificates that must not pass
//! `weft cert show`, `weft ca` arguments that would make a useless or dangerous certificate,
//! `WEFT_SOCKET`, errors under `--json`, and a service definition the CLI refuses itself.
//! Each runs the built `weft` and checks the exit status and what an operator reads.

mod common;

use common::TempDir;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use overlay_proto::cert::{CaCert, CaKey, NodeCertRequest};
use serde_json::Value;
use weft::pki::fmt_time;

const DAY: u64 = 86_400;

/// `weft ARGS` with no WEFT_SOCKET from the caller's environment.
fn weft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env_remove("WEFT_SOCKET")
        .output()
        .expect("spawn weft")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn path(dir: &TempDir, name: &str) -> String {
    dir.0.join(name).display().to_string()
}

/// A CA valid from 100 days ago to 100 days ahead, written as `NAME.crt`.
fn write_ca(dir: &TempDir, name: &str, seed: u8) -> (CaKey, CaCert) {
    let key = CaKey::from_seed(&[seed; 32]);
    let ca = key.self_sign(name, now() - 100 * DAY, now() + 100 * DAY).unwrap();
    std::fs::write(dir.0.join(format!("{name}.crt")), weft::pki::armor("WEFT CA CERTIFICATE", &ca.encode()))
        .unwrap();
    (key, ca)
}

/// A node certificate for the window `from..to`, signed by `key`, written as `NAME.crt`.
fn write_node(dir: &TempDir, name: &str, key: &CaKey, ca: &CaCert, from: u64, to: u64) {
    let req = NodeCertRequest {
        name: name.into(),
        public_key: [9; 32],
        signing_key: [10; 32],
        subnets: vec!["10.42.1.0/24".parse().unwrap()],
        groups: vec![],
        not_before: from,
        not_after: to,
    };
    let cert = key.sign(ca, req).unwrap();
    std::fs::write(
        dir.0.join(format!("{name}.crt")),
        weft::pki::armor("WEFT NODE CERTIFICATE", &cert.encode()),
    )
    .unwrap();
}

fn show(dir: &TempDir, cert: &str, extra: &[&str]) -> Output {
    let cert = path(dir, cert);
    let ca = path(dir, "ca.crt");
    let mut args = vec!["cert", "show", cert.as_str(), "--ca", ca.as_str()];
    args.extend_from_slice(extra);
    weft(&args)
}

#[test]
fn cert_show_fails_for_an_expired_certificate_and_says_when() {
    let dir = TempDir::new("cli-cert", "expired");
    let (key, ca) = write_ca(&dir, "ca", 1);
    let ended = now() - 10 * DAY;
    write_node(&dir, "old", &key, &ca, now() - 50 * DAY, ended);
    let out = show(&dir, "old.crt", &[]);
    assert!(!out.status.success(), "an expired certificate must fail:\n{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("node certificate") && text.contains("name:        old"), "still printed:\n{text}");
    assert!(text.contains(&format!("status:      EXPIRED on {}", fmt_time(ended))), "{text}");
    let valid = text.lines().find(|l| l.contains("valid:")).unwrap();
    assert!(valid.contains('T') && valid.ends_with('Z'), "times in RFC 3339 UTC: {valid}");
    assert!(stderr(&out).contains("EXPIRED"), "the error names the reason too: {}", stderr(&out));
    assert!(text.contains("expiry:      expired 10 days ago\n"), "{text}");
}

#[test]
fn cert_show_fails_for_a_not_yet_valid_certificate() {
    let dir = TempDir::new("cli-cert", "early");
    let (key, ca) = write_ca(&dir, "ca", 1);
    let starts = now() + 10 * DAY;
    write_node(&dir, "early", &key, &ca, starts, now() + 20 * DAY);
    let out = show(&dir, "early.crt", &[]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains(&format!("NOT YET VALID: valid from {}", fmt_time(starts))),
        "{}",
        stdout(&out)
    );
}

#[test]
fn rogue_cert_of_a_foreign_ca_fails_cert_show() {
    let dir = TempDir::new("cli-cert", "foreign");
    write_ca(&dir, "ca", 1);
    let (other_key, other) = write_ca(&dir, "other", 2);
    write_node(&dir, "h1", &other_key, &other, now() - DAY, now() + DAY);
    let out = show(&dir, "h1.crt", &[]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("status:      WRONG CA"), "{}", stdout(&out));
    // The same certificate against its own CA is fine.
    let out = weft(&["cert", "show", &path(&dir, "h1.crt"), "--ca", &path(&dir, "other.crt")]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("status:      valid"));
}

#[test]
fn cert_show_json_carries_the_verdict_and_fails() {
    let dir = TempDir::new("cli-cert", "json");
    let (key, ca) = write_ca(&dir, "ca", 1);
    let ended = now() - 10 * DAY;
    write_node(&dir, "old", &key, &ca, now() - 50 * DAY, ended);
    let out = show(&dir, "old.crt", &["--json"]);
    assert!(!out.status.success());
    let v: Value = serde_json::from_str(&stdout(&out)).expect("exactly one JSON document on stdout");
    assert_eq!(v["not_after"], ended, "numbers stay numbers in JSON");
    assert_eq!((v["status"].as_str(), v["valid"].as_bool()), (Some("expired"), Some(false)));
    let secs = v["expires_in_secs"].as_i64().unwrap();
    assert!((-10 * DAY as i64 - 60..=-10 * DAY as i64).contains(&secs), "negative once ended: {v}");
    assert_eq!(v["expiry"], "expired 10 days ago", "{v}");
    assert!(v["reason"].as_str().unwrap().contains(&fmt_time(ended)), "{v}");
    write_node(&dir, "ok", &key, &ca, now() - DAY, now() + DAY);
    let out = show(&dir, "ok.crt", &["--json"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((v["status"].as_str(), v["valid"].as_bool()), (Some("valid"), Some(true)));
}

/// `weft ca sign` for a fresh key against a CA from `weft ca init`, with `extra` arguments.
fn sign(dir: &TempDir, out: &str, extra: &[&str]) -> Output {
    let (key, cert) = (path(dir, "ca.key"), path(dir, "ca.crt"));
    if !Path::new(&cert).exists() {
        let init = weft(&["ca", "init", "--name", "test", "--out-key", &key, "--out-cert", &cert]);
        assert!(init.status.success(), "{}", stderr(&init));
    }
    let out = path(dir, out);
    let pubkey = weft::pki::encode_public_identity(&overlay_proto::keys::SecretKey::from_bytes([7; 32]));
    let mut args =
        vec!["ca", "sign", "--ca-key", &key, "--ca-cert", &cert, "--name", "h1", "--public-key", &pubkey];
    args.extend_from_slice(&["--out", &out]);
    args.extend_from_slice(extra);
    weft(&args)
}

#[test]
fn ca_sign_refuses_a_public_key_without_its_signing_key_and_says_how_to_get_one() {
    let dir = TempDir::new("cli-ca", "oldpub");
    let (key, cert) = (path(&dir, "ca.key"), path(&dir, "ca.crt"));
    let init = weft(&["ca", "init", "--name", "test", "--out-key", &key, "--out-cert", &cert]);
    assert!(init.status.success(), "{}", stderr(&init));
    let old = weft::pki::encode_key(&[7; 32]);
    let out = path(&dir, "h1.crt");
    let args = ["ca", "sign", "--ca-key", &key, "--ca-cert", &cert, "--name", "h1", "--public-key", &old];
    let out = weft(&[&args[..], &["--subnet", "10.42.1.0/24", "--out", &out]].concat());
    assert!(!out.status.success(), "a bare X25519 key must be refused");
    assert!(stderr(&out).contains("weft pubkey --key"), "{}", stderr(&out));
}

#[test]
fn ca_sign_refuses_a_subnet_of_every_address() {
    let dir = TempDir::new("cli-ca", "everything");
    for everything in ["0.0.0.0/0", "::/0"] {
        let out = sign(&dir, "h1.crt", &["--subnet", "10.42.1.0/24", "--subnet", everything]);
        assert!(!out.status.success(), "{everything} must be refused");
        assert!(stderr(&out).contains(&format!("--subnet {everything}")), "{}", stderr(&out));
        assert!(stderr(&out).contains("every address"), "{}", stderr(&out));
        assert!(!dir.0.join("h1.crt").exists(), "nothing written");
    }
}

#[test]
fn ca_sign_refuses_host_bits_and_names_the_subnet_meant() {
    let dir = TempDir::new("cli-ca", "hostbits");
    let out = sign(&dir, "h1.crt", &["--subnet", "10.42.1.7/24"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("host bits set; the subnet is 10.42.1.0/24"), "{}", stderr(&out));
}

#[test]
fn zero_days_are_refused_by_ca_sign_and_ca_init() {
    let dir = TempDir::new("cli-ca", "days");
    let out = sign(&dir, "h1.crt", &["--subnet", "10.42.1.0/24", "--days", "0"]);
    assert!(!out.status.success(), "ca sign --days 0 must fail");
    assert!(stderr(&out).contains("--days 0"), "{}", stderr(&out));
    assert!(!dir.0.join("h1.crt").exists());
    let out = weft(&[
        "ca",
        "init",
        "--name",
        "x",
        "--out-key",
        &path(&dir, "x.key"),
        "--out-cert",
        &path(&dir, "x.crt"),
        "--days",
        "0",
    ]);
    assert!(!out.status.success(), "ca init --days 0 must fail");
    assert!(stderr(&out).contains("--days 0"), "{}", stderr(&out));
    let out = sign(&dir, "h1.crt", &["--subnet", "10.42.1.0/24", "--days", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// ca.key (0600) and ca.crt of `write_ca`'s CA with `seed`, usable by `weft ca sign`.
fn write_ca_files(dir: &TempDir, seed: u8) -> (CaKey, CaCert) {
    let (key, ca) = write_ca(dir, "ca", seed);
    let text = weft::pki::armor("WEFT CA PRIVATE KEY", &key.seed());
    weft::pki::write_secret(&dir.0.join("ca.key"), &text).unwrap();
    (key, ca)
}

/// `weft ca sign --renew OLD --out NEW` with `extra` arguments, against ca.key/ca.crt in `dir`.
fn renew(dir: &TempDir, old: &str, new: &str, extra: &[&str]) -> Output {
    let (key, cert, old, new) = (path(dir, "ca.key"), path(dir, "ca.crt"), path(dir, old), path(dir, new));
    let mut args = vec!["ca", "sign", "--ca-key", &key, "--ca-cert", &cert, "--renew", &old, "--out", &new];
    args.extend_from_slice(extra);
    weft(&args)
}

/// `weft cert show F --ca ca.crt --json`, which must succeed.
fn show_json(dir: &TempDir, cert: &str) -> Value {
    let out = show(dir, cert, &["--json"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn ca_sign_renew_keeps_name_subnets_groups_and_keys_and_prints_them() {
    let dir = TempDir::new("cli-renew", "keep");
    let out =
        sign(&dir, "h1.crt", &["--subnet", "10.42.1.0/24", "--subnet", "fd42:1::/64", "--group", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = renew(&dir, "h1.crt", "h1-new.crt", &["--days", "30"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "name:        h1\n",
        "subnets:     10.42.1.0/24, fd42:1::/64\n",
        "groups:      web\n",
        "public key:  kept (",
    ] {
        assert!(text.contains(line), "want `{line}` in:\n{text}");
    }
    let line = |start: &str| text.lines().find(|l| l.trim_start().starts_with(start)).unwrap().to_owned();
    assert!(line("old:").contains("(expires in 36"), "365 days, or 364 a second later: {text}");
    assert!(line("new:").ends_with("(expires in 30 days)"), "{text}");
    let (old, new) = (show_json(&dir, "h1.crt"), show_json(&dir, "h1-new.crt"));
    for field in ["name", "subnets", "groups", "public_key", "issuer"] {
        assert_eq!(old[field], new[field], "{field} is carried over");
    }
    assert!(new["not_after"].as_u64() < old["not_after"].as_u64(), "--days 30 is the new window");
}

#[test]
fn ca_sign_renew_of_an_expired_certificate_with_a_new_key() {
    let dir = TempDir::new("cli-renew", "expired");
    let (key, ca) = write_ca_files(&dir, 1);
    write_node(&dir, "old", &key, &ca, now() - 50 * DAY, now() - 10 * DAY);
    let new_key = weft::pki::encode_public_identity(&overlay_proto::keys::SecretKey::from_bytes([5; 32]));
    let out = renew(&dir, "old.crt", "new.crt", &["--public-key", &new_key]);
    assert!(out.status.success(), "renewing an expired certificate is the point: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("(expired 10 days ago)"), "{text}");
    assert!(text.contains("public key:  NEW "), "{text}");
    assert!(text.contains(", the CA's own end)"), "365 days is capped by the CA's 100: {text}");
    let new = show_json(&dir, "new.crt");
    assert_eq!(new["name"], "old");
    let secret = overlay_proto::keys::SecretKey::from_bytes([5; 32]);
    assert_eq!(new["public_key"], weft::pki::encode_key(&secret.public_key()));
}

#[test]
fn ca_sign_renew_refuses_explicit_fields_and_says_which() {
    let dir = TempDir::new("cli-renew", "fields");
    let (key, ca) = write_ca_files(&dir, 1);
    write_node(&dir, "h1", &key, &ca, now() - DAY, now() + DAY);
    for extra in [["--name", "h2"], ["--subnet", "10.42.9.0/24"], ["--group", "admin"]] {
        let out = renew(&dir, "h1.crt", "h1-new.crt", &extra);
        assert_eq!(out.status.code(), Some(2), "{extra:?} with --renew is a usage error");
        let e = stderr(&out);
        assert!(e.contains("'--renew <OLD.crt>' cannot be used with") && e.contains(extra[0]), "{e}");
        assert!(!dir.0.join("h1-new.crt").exists(), "nothing written");
    }
    let out = sign(&dir, "x.crt", &["--subnet", "10.42.1.0/24", "--old-ca", &path(&dir, "ca.crt")]);
    assert!(!out.status.success() && stderr(&out).contains("it needs --renew"), "{}", stderr(&out));
}

#[test]
fn rogue_certificate_of_another_ca_or_edited_is_not_renewed() {
    let dir = TempDir::new("cli-renew", "rogue");
    write_ca_files(&dir, 1);
    let (other_key, other) = write_ca(&dir, "other", 2);
    write_node(&dir, "h1", &other_key, &other, now() - DAY, now() + DAY);
    let out = renew(&dir, "h1.crt", "h1-new.crt", &[]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("was issued by CA") && e.contains("--old-ca"), "{e}");
    assert!(!dir.0.join("h1-new.crt").exists(), "nothing written");
    // Moving h1 to this CA: --old-ca names the CA that vouches for what is carried over.
    let out = renew(&dir, "h1.crt", "h1-new.crt", &["--old-ca", &path(&dir, "other.crt")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(show_json(&dir, "h1-new.crt")["name"], "h1");
    // A certificate edited after signing (one more group) is refused, expired or not.
    let text = std::fs::read_to_string(dir.0.join("h1.crt")).unwrap();
    let (_, bytes) = weft::pki::dearmor(&text, Path::new("h1.crt")).unwrap();
    let mut edited = overlay_proto::cert::NodeCert::decode(&bytes).unwrap();
    edited.groups.push("admin".into());
    let armored = weft::pki::armor("WEFT NODE CERTIFICATE", &edited.encode());
    std::fs::write(dir.0.join("edited.crt"), armored).unwrap();
    let out = renew(&dir, "edited.crt", "e-new.crt", &["--old-ca", &path(&dir, "other.crt")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bad certificate signature; it is not renewed"), "{}", stderr(&out));
}

#[test]
fn weft_socket_names_the_daemon_and_socket_flag_wins() {
    let via_env = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["peers"])
        .env("WEFT_SOCKET", "/nonexistent/env.sock")
        .output()
        .unwrap();
    assert!(!via_env.status.success());
    assert!(stderr(&via_env).contains("/nonexistent/env.sock"), "{}", stderr(&via_env));
    let both = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["policy", "show", "--socket", "/nonexistent/flag.sock"])
        .env("WEFT_SOCKET", "/nonexistent/env.sock")
        .output()
        .unwrap();
    assert!(stderr(&both).contains("/nonexistent/flag.sock"), "{}", stderr(&both));
    let help = stdout(&weft(&["status", "--help"]));
    assert!(help.contains("WEFT_SOCKET"), "{help}");
}

#[test]
fn errors_under_json_are_json_on_stdout() {
    let out = weft(&["status", "--json", "--socket", "/nonexistent/weft.sock"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {:?}", stdout(&out)));
    assert!(v["error"].as_str().unwrap().contains("/nonexistent/weft.sock"), "{v}");
    assert!(stderr(&out).is_empty(), "nothing else: {}", stderr(&out));
    let out = weft(&["cert", "show", "/nonexistent/h1.crt", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(v["error"].as_str().unwrap().contains("/nonexistent/h1.crt"), "{v}");
    // A command line clap refuses is JSON too when --json was given (exit 2, as usage errors).
    let out = weft(&["services", "--json", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(v["error"].as_str().unwrap().contains("--bogus"), "{v}");
    // Without --json, errors stay text on stderr.
    let out = weft(&["status", "--socket", "/nonexistent/weft.sock"]);
    assert!(stdout(&out).is_empty() && stderr(&out).starts_with("weft: error: "), "{}", stderr(&out));
}

#[test]
fn tcp_check_on_a_udp_service_is_refused_without_asking_the_daemon() {
    let out = weft(&[
        "service",
        "add",
        "dns",
        "--address",
        "10.42.1.1",
        "--port",
        "53",
        "--protocol",
        "udp",
        "--check-tcp",
        "--socket",
        "/nonexistent/weft.sock",
    ]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("--check-tcp on a --protocol udp service"), "{e}");
    assert!(!e.contains("cannot reach"), "refused before the daemon is asked: {e}");
}
