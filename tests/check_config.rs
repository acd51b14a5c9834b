//! Binary tests of `weft check-config`: what only the files a config names (key, certificate,
//! CA, state_dir) reveal is reported like a syntax error, as `FILE:LINE: KEY: what is wrong`,
//! so the operator knows which line to edit. Each test builds a CA and a node identity in a
//! temp dir with the real `weft` binary, then breaks one thing.

mod common;

use common::TempDir;
use overlay_proto::cert::{CaKey, NodeCertRequest};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// A node config whose lines the tests refer to by number.
const CONFIG: &str = r#"[node]
name = "h1"
key = "h1.key"
cert = "h1.crt"
ca = "ca.crt"
state_dir = "state"
control_socket = "weft.sock"

[underlay]
listen = "0.0.0.0:51820"

[[network]]
name = "default"
vni = 42
subnet = "10.42.0.0/16"

[membership]
seeds = ["127.0.0.1:51821"]
"#;

fn weft(dir: &Path, args: &[&str]) -> Output {
    Command::new(WEFT).args(args).current_dir(dir).output().expect("spawn weft")
}

fn ok(dir: &Path, args: &[&str]) {
    let out = weft(dir, args);
    assert!(out.status.success(), "weft {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A temp dir with ca.key/ca.crt, h1.key (0600) and h1.crt for 10.42.1.0/24, and node.toml.
fn identity(tag: &str) -> TempDir {
    let dir = TempDir::new("check-config", tag);
    ok(&dir.0, &["ca", "init", "--name", "test"]);
    ok(&dir.0, &["keygen", "--out", "h1.key"]);
    let sign = ["ca", "sign", "--name", "h1", "--public-key-file", "h1.key.pub"];
    ok(&dir.0, &[&sign[..], &["--subnet", "10.42.1.0/24", "--out", "h1.crt"]].concat());
    std::fs::write(dir.0.join("node.toml"), CONFIG).expect("write node.toml");
    dir
}

/// `weft check-config` of `config` in `dir`: Ok(stdout) or Err(stderr).
fn check(dir: &Path, config: &str) -> Result<String, String> {
    std::fs::write(dir.join("node.toml"), config).expect("write node.toml");
    let out = weft(dir, &["check-config", "--config", dir.join("node.toml").to_str().expect("utf-8")]);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        Err(text(&out.stderr))
    }
}

/// Asserts that `stderr` reports `key` at `line` of dir/node.toml, saying each of `says`.
fn assert_names(dir: &Path, stderr: &str, line: usize, key: &str, says: &[&str]) {
    let at = format!("{}:{line}: {key}: ", dir.join("node.toml").display());
    assert!(stderr.starts_with(&format!("weft: error: {at}")), "want `{at}` in:\n{stderr}");
    for s in says {
        assert!(stderr.contains(s), "want `{s}` in:\n{stderr}");
    }
}

#[test]
fn a_good_config_prints_the_advertised_address_and_where_it_came_from() {
    let dir = identity("good");
    let out = check(&dir.0, CONFIG).unwrap();
    assert!(out.contains("node h1"), "{out}");
    // listen is 0.0.0.0: the default is the source address of the route to the seed.
    assert!(
        out.contains(
            "advertising 127.0.0.1:51820 (from the source address of the route to seed 127.0.0.1:51821)"
        ),
        "{out}"
    );
    let explicit = CONFIG
        .replace("listen = \"0.0.0.0:51820\"", "listen = \"0.0.0.0:51820\"\nadvertise = \"192.0.2.1:51820\"");
    assert!(check(&dir.0, &explicit)
        .unwrap()
        .contains("advertising 192.0.2.1:51820 (from underlay.advertise)"));
}

#[test]
fn missing_key_cert_and_ca_files_name_their_key_and_line() {
    let dir = identity("missing");
    for (line, key, file) in [(3, "node.key", "h1.key"), (4, "node.cert", "h1.crt"), (5, "node.ca", "ca.crt")]
    {
        let e = check(&dir.0, &CONFIG.replace(&format!("\"{file}\""), "\"nope\"")).unwrap_err();
        let missing = dir.0.join("nope");
        assert_names(&dir.0, &e, line, key, &[&format!("cannot read {}", missing.display()), "No such file"]);
    }
}

#[test]
fn a_node_name_other_than_the_certificates_names_node_name() {
    let dir = identity("name");
    let e = check(&dir.0, &CONFIG.replace("name = \"h1\"", "name = \"h2\"")).unwrap_err();
    assert_names(&dir.0, &e, 2, "node.name", &["is \"h2\" but the certificate", "is for \"h1\""]);
}

#[test]
fn a_network_without_the_certificates_subnet_names_the_subnet() {
    let dir = identity("subnet");
    let e = check(&dir.0, &CONFIG.replace("10.42.0.0/16", "10.43.0.0/16")).unwrap_err();
    assert_names(
        &dir.0,
        &e,
        15,
        "network[0].subnet",
        &["10.43.0.0/16 (network \"default\") contains none of the certificate's subnets (10.42.1.0/24)"],
    );
}

#[test]
fn a_key_of_another_node_names_node_key() {
    let dir = identity("otherkey");
    ok(&dir.0, &["keygen", "--out", "h2.key"]);
    let e = check(&dir.0, &CONFIG.replace("\"h1.key\"", "\"h2.key\"")).unwrap_err();
    assert_names(&dir.0, &e, 3, "node.key", &["is not the key", "was issued for"]);
}

/// Replaces the CA and h1.crt with ones valid only in `not_before..not_after` (CA: `ca_window`).
fn reissue(dir: &Path, ca_window: (u64, u64), cert_window: (u64, u64)) {
    let key = CaKey::from_seed(&[7; 32]);
    let ca = key.self_sign("test", ca_window.0, ca_window.1).expect("self-sign");
    let (public, signing) =
        weft::pki::decode_public_identity(&std::fs::read_to_string(dir.join("h1.key.pub")).unwrap(), "pub")
            .unwrap();
    let req = NodeCertRequest {
        name: "h1".into(),
        public_key: public,
        signing_key: signing,
        subnets: vec!["10.42.1.0/24".parse().unwrap()],
        groups: vec![],
        not_before: cert_window.0,
        not_after: cert_window.1,
    };
    let cert = key.sign(&ca, req).expect("sign");
    for f in ["ca.crt", "h1.crt"] {
        std::fs::remove_file(dir.join(f)).expect("remove old file");
    }
    weft::pki::write_ca_cert(&dir.join("ca.crt"), &ca).unwrap();
    weft::pki::write_node_cert(&dir.join("h1.crt"), &cert).unwrap();
}

#[test]
fn expired_and_not_yet_valid_certificates_give_the_dates() {
    let dir = identity("dates");
    let now = weft::pki::unix_now();
    let day = 86_400;
    // 2001-09-09 01:46:40 .. 2001-09-10 01:46:40 UTC
    reissue(&dir.0, (1_000_000_000, now + 365 * day), (1_000_000_000, 1_000_000_000 + day));
    let e = check(&dir.0, CONFIG).unwrap_err();
    assert_names(
        &dir.0,
        &e,
        4,
        "node.cert",
        &[
            "expired at 2001-09-10T01:46:40Z",
            "valid from 2001-09-09T01:46:40Z until 2001-09-10T01:46:40Z",
            "now is 20",
        ],
    );
    let future = 4_000_000_000; // 2096-10-02 07:06:40 UTC
    reissue(&dir.0, (now - day, future + day), (future, future + day));
    let e = check(&dir.0, CONFIG).unwrap_err();
    assert_names(&dir.0, &e, 4, "node.cert", &["is not valid yet: valid from 2096-10-02T07:06:40Z"]);
    // An expired CA is named as node.ca.
    reissue(&dir.0, (1_000_000_000, 1_000_000_000 + day), (1_000_000_000, 1_000_000_000 + day));
    let e = check(&dir.0, CONFIG).unwrap_err();
    assert_names(&dir.0, &e, 5, "node.ca", &["CA certificate", "expired at 2001-09-10T01:46:40Z"]);
}

#[test]
fn a_key_that_others_can_read_is_refused_with_a_chmod_hint() {
    let dir = identity("mode");
    let key = dir.0.join("h1.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600, "keygen writes 0600");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = check(&dir.0, CONFIG).unwrap_err();
    assert_names(
        &dir.0,
        &e,
        3,
        "node.key",
        &[
            "has mode 0644, which lets its group and every user access it",
            &format!("chmod 600 {}", key.display()),
        ],
    );
}

#[test]
fn a_state_dir_that_is_a_file_names_node_state_dir() {
    let dir = identity("statedir");
    std::fs::write(dir.0.join("state"), "not a directory").unwrap();
    let e = check(&dir.0, CONFIG).unwrap_err();
    assert_names(&dir.0, &e, 6, "node.state_dir", &["exists and is not a directory"]);
}

#[test]
fn file_errors_and_syntax_errors_look_alike() {
    let dir = identity("syntax");
    let e = check(&dir.0, &CONFIG.replace("[underlay]", "[underlay]\nlisten_port = 51820")).unwrap_err();
    assert_names(&dir.0, &e, 10, "underlay.listen_port", &["unknown field `listen_port`"]);
    let e = check(&dir.0, &CONFIG.replace("[node]", "[node]\nlog_level = \"warning\"")).unwrap_err();
    assert_names(&dir.0, &e, 2, "node.log_level", &["did you mean \"warn\""]);
}

#[test]
fn an_unknown_control_group_names_the_key_and_how_to_fix_it() {
    let dir = identity("group");
    let with = |g: &str| {
        CONFIG.replace(
            "control_socket = \"weft.sock\"",
            &format!("control_socket = \"weft.sock\"\ncontrol_group = \"{g}\""),
        )
    };
    let e = check(&dir.0, &with("weft-no-such-group")).unwrap_err();
    assert_names(
        &dir.0,
        &e,
        8,
        "node.control_group",
        &["group \"weft-no-such-group\" does not exist", "groupadd"],
    );
    let out = check(&dir.0, &with("root")).unwrap();
    assert!(out.contains("(mode 0660: root and group root (gid 0))"), "{out}");
    assert!(check(&dir.0, CONFIG).unwrap().contains("(mode 0600: root only)"));
}

#[test]
fn an_api_token_file_every_user_can_read_is_refused_with_a_chmod_hint() {
    let dir = identity("token");
    let token = dir.0.join("api.token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    let config = format!("{CONFIG}\n[metrics]\napi_token_file = \"api.token\"\n");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = check(&dir.0, &config).unwrap_err();
    assert_names(&dir.0, &e, 21, "metrics.api_token_file", &["mode 0644", "every user", "chmod 640"]);
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = check(&dir.0, &config).unwrap();
    assert!(out.contains(&format!("registry writes with the token in {}", token.display())), "{out}");
    assert!(check(&dir.0, CONFIG).unwrap().contains("registry writes off (no metrics.api_token_file)"));
}

#[test]
fn a_certificate_ending_within_30_days_is_a_warning_that_names_file_and_date() {
    let dir = identity("soon");
    let now = weft::pki::unix_now();
    let day = 86_400;
    let end = now + 12 * day + 3600;
    reissue(&dir.0, (now - day, now + 365 * day), (now - day, end));
    let out = weft(&dir.0, &["check-config", "--config", dir.0.join("node.toml").to_str().expect("utf-8")]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "a warning keeps exit 0: {stderr}");
    assert!(stdout.contains("OK"), "{stdout}");
    let at = format!("weft: warning: {}:4: node.cert: ", dir.0.join("node.toml").display());
    let cert = dir.0.join("h1.crt");
    let says =
        format!("certificate {} (\"h1\") expires in 12 days ({})", cert.display(), weft::pki::fmt_time(end));
    assert!(stderr.starts_with(&at) && stderr.contains(&says), "want `{at}…{says}` in:\n{stderr}");
    assert!(stderr.contains(&format!("weft ca sign --renew {}", cert.display())), "{stderr}");
    assert!(stdout.contains("certificate expires in 12 days"), "{stdout}");
    // A CA that ends soon is named as node.ca (the certificate ends with it, so both warn).
    reissue(&dir.0, (now - day, end), (now - day, end));
    let out = weft(&dir.0, &["check-config", "--config", dir.0.join("node.toml").to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(":5: node.ca: CA certificate"), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("weft: warning: ")).count(), 2, "{stderr}");
}

#[test]
fn a_certificate_valid_for_a_year_gives_no_warning() {
    let dir = identity("fresh");
    let out = weft(&dir.0, &["check-config", "--config", dir.0.join("node.toml").to_str().expect("utf-8")]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "nothing on stderr");
    assert!(String::from_utf8_lossy(&out.stdout).contains("certificate expires in 36"), "365 (or 364) days");
}

/// `node.ca` is a CA bundle (issue 21): a list of files, or one file holding several CA
/// certificates. A certificate from any of them is accepted; one from a CA outside the bundle
/// is an error that names node.cert and says the issuer is not in node.ca.
#[test]
fn node_ca_takes_a_list_or_a_concatenated_bundle_and_names_a_foreign_issuer() {
    let dir = identity("bundle");
    ok(&dir.0, &["ca", "init", "--name", "second", "--out-key", "ca2.key", "--out-cert", "ca2.crt"]);
    let listed = CONFIG.replace("ca = \"ca.crt\"", "ca = [\"ca2.crt\", \"ca.crt\"]");
    let out = check(&dir.0, &listed).expect("a list with the issuer");
    assert!(out.contains("CA \"second\"") && out.contains("CA \"test\""), "{out}");
    let both = [
        std::fs::read_to_string(dir.0.join("ca2.crt")).unwrap(),
        std::fs::read_to_string(dir.0.join("ca.crt")).unwrap(),
    ];
    std::fs::write(dir.0.join("bundle.crt"), both.concat()).unwrap();
    let out = check(&dir.0, &CONFIG.replace("\"ca.crt\"", "\"bundle.crt\"")).expect("a bundle file");
    assert!(out.contains("CA \"second\"") && out.contains("CA \"test\""), "{out}");
    let e = check(&dir.0, &CONFIG.replace("\"ca.crt\"", "\"ca2.crt\"")).unwrap_err();
    assert_names(&dir.0, &e, 4, "node.cert", &["issued by a CA that is not in node.ca"]);
    let e = check(&dir.0, &CONFIG.replace("ca = \"ca.crt\"", "ca = []")).unwrap_err();
    assert_names(&dir.0, &e, 5, "node.ca", &["a list of 1 to 16 files"]);
}
