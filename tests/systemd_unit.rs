//! Checks `configs/weft.service`, the unit the package installs, in two ways:
//!
//! * `systemd-analyze verify` must accept it without a word. The unit runs `/usr/bin/weft`,
//!   which verify insists exists, so the test verifies a copy in a temp dir whose only change
//!   is that path, pointed at the cargo-built binary; `Documentation=man:weft(8)
//!   man:weft.toml(5)` resolves against the pages `weft man --dir` writes there (through
//!   `MANPATH`).
//! * verify ignores what it cannot parse with at most a warning and says nothing about an
//!   unknown capability name, so the settings the daemon relies on are also asserted here by
//!   value: `Type=notify` with a watchdog, SIGHUP on reload, the exact capability set, and
//!   the sandbox.
//!
//! Needs `systemd-analyze` (Debian: `systemd`; `scripts/install-deps.sh` installs it) and fails
//! without it. Without `man` the man-page reference is not checked (noted on stderr).

mod common;

use common::TempDir;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const UNIT: &str = include_str!("../configs/weft.service");
const INSTALLED_BIN: &str = "/usr/bin/weft";

/// `(section, key)` → every value given, in order; comments and blank lines dropped.
fn parse_unit(text: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut section = String::new();
    let mut map: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
        map.entry((section.clone(), key.trim().to_owned())).or_default().push(value.trim().to_owned());
    }
    map
}

fn one<'a>(unit: &'a BTreeMap<(String, String), Vec<String>>, section: &str, key: &str) -> &'a str {
    match unit.get(&(section.to_owned(), key.to_owned())).map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("[{section}] {key}: want exactly one value, have {other:?}"),
    }
}

/// The unit with `/usr/bin/weft` replaced by `bin`, after checking that only `Exec*=` lines
/// name it, so the copy differs from what ships in that path alone.
fn unit_running(bin: &Path) -> String {
    let bin = bin.to_str().expect("utf-8 binary path");
    assert!(!UNIT.contains(bin), "the unit must not already name the build path {bin}");
    for line in UNIT.lines().filter(|l| l.contains(INSTALLED_BIN)) {
        assert!(line.starts_with("Exec"), "only Exec*= lines may name {INSTALLED_BIN}: {line}");
    }
    let copy = UNIT.replace(INSTALLED_BIN, bin);
    assert_eq!(copy.replace(bin, INSTALLED_BIN), UNIT, "the copy differs in the binary path only");
    copy
}

#[test]
fn systemd_analyze_verify_is_silent() {
    let dir = TempDir::new("systemd", "verify");
    let unit_path = dir.0.join("weft.service");
    std::fs::write(&unit_path, unit_running(Path::new(env!("CARGO_BIN_EXE_weft")))).expect("write unit");

    let man_dir = dir.0.join("man");
    let (man5, man8) = (man_dir.join("man5"), man_dir.join("man8"));
    std::fs::create_dir_all(&man5).expect("create man5");
    std::fs::create_dir_all(&man8).expect("create man8");
    let status = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("man")
        .arg("--dir")
        .arg(&man8)
        .status()
        .expect("spawn weft man");
    assert!(status.success(), "weft man --dir: {status}");
    std::fs::rename(man8.join("weft.toml.5"), man5.join("weft.toml.5")).expect("move weft.toml.5 to man5");

    let have_man = Command::new("man").arg("--version").output().is_ok();
    let mut verify = Command::new("systemd-analyze");
    verify.arg("verify").env("MANPATH", &man_dir).env("SYSTEMD_LOG_COLOR", "0");
    if !have_man {
        eprintln!("not checking Documentation=man:…: `man` is not installed (apt-get install man-db)");
        verify.arg("--man=no");
    }
    let out = verify.arg(&unit_path).output().unwrap_or_else(|e| {
        panic!("systemd-analyze: {e} (Debian package `systemd`; run scripts/install-deps.sh as root)")
    });
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "systemd-analyze verify failed ({}):\n{said}", out.status);
    assert!(said.trim().is_empty(), "systemd-analyze verify should say nothing:\n{said}");
}

#[test]
fn unit_keeps_what_the_daemon_relies_on() {
    let unit = parse_unit(UNIT);
    // Readiness and liveness: the daemon calls sd_notify(READY=1) and feeds the watchdog.
    assert_eq!(one(&unit, "Service", "Type"), "notify");
    let watchdog: u64 = one(&unit, "Service", "WatchdogSec").parse().expect("WatchdogSec in seconds");
    assert!((10..=120).contains(&watchdog), "WatchdogSec={watchdog}");
    assert_eq!(one(&unit, "Service", "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one(&unit, "Service", "ExecStart"), "/usr/bin/weft run --config /etc/weft/node.toml");
    assert_eq!(
        unit[&("Service".to_owned(), "ExecStartPre".to_owned())],
        ["/usr/bin/weft check-config --config /etc/weft/node.toml", "+/bin/mkdir -p /etc/netns"]
    );
    // Containers' resolv.conf files live under /etc/netns.
    let rw: Vec<&str> = one(&unit, "Service", "ReadWritePaths").split_whitespace().collect();
    assert!(rw.contains(&"/etc/netns"), "ReadWritePaths={rw:?}");
    assert_eq!(one(&unit, "Service", "Restart"), "on-failure");

    // Exactly these capabilities (verify says nothing about a misspelt one).
    let caps = |key| {
        let mut caps: Vec<&str> = one(&unit, "Service", key).split_whitespace().collect();
        caps.sort_unstable();
        caps
    };
    let wanted = ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN", "CAP_SYS_NICE"];
    assert_eq!(caps("CapabilityBoundingSet"), wanted);
    assert_eq!(caps("AmbientCapabilities"), wanted);

    // The sandbox, with the state and runtime directories systemd creates writable.
    for (key, value) in [
        ("ProtectSystem", "strict"),
        ("StateDirectory", "weft"),
        ("RuntimeDirectory", "weft"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectHome", "yes"),
        ("ProtectKernelModules", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("DeviceAllow", "/dev/net/tun rw"),
    ] {
        assert_eq!(one(&unit, "Service", key), value, "[Service] {key}");
    }
    let families = one(&unit, "Service", "RestrictAddressFamilies");
    for family in ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"] {
        assert!(families.split_whitespace().any(|f| f == family), "RestrictAddressFamilies lacks {family}");
    }
    let docs: Vec<&str> = one(&unit, "Unit", "Documentation").split_whitespace().collect();
    for page in ["man:weft(8)", "man:weft.toml(5)"] {
        assert!(docs.contains(&page), "Documentation= lacks {page}: {docs:?}");
    }
    assert_eq!(one(&unit, "Install", "WantedBy"), "multi-user.target");
}

#[test]
fn parser_reads_repeated_keys_and_sections() {
    let unit = parse_unit("# c\n[A]\nK=1\nK = 2\n\n[B]\nK=x=y\n");
    assert_eq!(unit[&("A".to_owned(), "K".to_owned())], ["1", "2"]);
    assert_eq!(one(&unit, "B", "K"), "x=y");
}
