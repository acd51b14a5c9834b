//! Lab tests of issue 15, "a compromised member speaks only for itself", with real daemons in
//! network namespaces (shared LAB.md): a member whose key the CA revokes on one node leaves
//! every member's peer list and reaches no container, and a member that declares a victim
//! container's address as its underlay endpoint cannot put a service at that address in
//! other nodes' DNS. Evidence is what users see: `weft peers --json`, `weft status --json`
//! counters, `weft cert show`, ping between container namespaces, the echo requests a
//! container's kernel counts, and `dig` answers inside container namespaces.
//!
//! Not covered here: a container taking over another container's MAC at attach, because
//! `weft attach` has no MAC option (the MAC follows from the address, README "Attach
//! containers").

mod common;

use common::{weft_offline, Lab};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The issue's requirement: every member has dropped a revoked node within this time.
const REVOCATION_DEADLINE: Duration = Duration::from_secs(15);
/// Between two observations while polling.
const POLL: Duration = Duration::from_millis(200);

/// Whether `host`'s `weft peers --json` lists the node named `name` with public key `key`
/// (by either, so an entry whose name is not known yet counts too).
fn lists(lab: &Lab, host: &str, name: &str, key: &str) -> bool {
    lab.peers(host).iter().any(|p| p["name"] == name || p["public_key"] == key)
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The addresses `dig +short NAME` answers inside `node` (whose resolv.conf names its host's
/// weft DNS at the gateway address).
fn dig(lab: &Lab, node: &str, name: &str) -> BTreeSet<String> {
    let out = lab.exec(node, &["dig", "+short", "+time=2", "+tries=2", name]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn rogue_revoked_node_leaves_every_peer_list_within_15_s_and_reaches_nothing() {
    let lab = Lab::up(3, 1);
    lab.ping_all_pairs("before the attack");
    let pki = lab.dir().join("pki");
    let (ca_key, ca_crt, h3_crt) = (pki.join("ca.key"), pki.join("ca.crt"), pki.join("h3.crt"));
    let h3_key = std::fs::read_to_string(pki.join("h3.key.pub")).expect("h3.key.pub").trim().to_owned();
    for host in ["h1", "h2"] {
        assert!(lists(&lab, host, "h3", &h3_key), "{host} does not list h3 before the revocation");
    }
    let revoked = lab.dir().join("revoked.pem");
    let path = |p: &std::path::Path| p.to_str().expect("UTF-8 path").to_owned();
    let show = ["cert", "show", &path(&h3_crt), "--ca", &path(&ca_crt)];
    let out = weft_offline(&show);
    assert!(out.status.success(), "h3's certificate is not valid before the revocation: {}", text(&out));

    // The CA revokes h3's key; only h1 is given the file.
    let out = weft_offline(&[
        "ca",
        "revoke",
        "--ca-key",
        &path(&ca_key),
        "--ca-cert",
        &path(&ca_crt),
        "--cert",
        &path(&h3_crt),
        "--out",
        &path(&revoked),
    ]);
    assert!(out.status.success(), "weft ca revoke: {}", text(&out));
    lab.add_config_line("h1", "node", &format!("revocations = {:?}", path(&revoked)));
    let reloaded_at = Instant::now();
    let out = lab.weft("h1", &["reload", "--json"]);
    assert!(out.status.success(), "weft reload on h1: {}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("reload JSON");
    assert!(
        v["changed"].as_array().is_some_and(|c| c.iter().any(|c| c == "revocations")),
        "h1's reload does not name revocations: {v}"
    );

    // h1 drops h3 itself; h2, which never saw the file, learns it through membership.
    loop {
        let still: Vec<&str> = ["h1", "h2"].into_iter().filter(|h| lists(&lab, h, "h3", &h3_key)).collect();
        if still.is_empty() {
            break;
        }
        let waited = reloaded_at.elapsed();
        assert!(
            waited <= REVOCATION_DEADLINE,
            "{still:?} still list h3 {waited:?} after h1's reload (the issue requires {REVOCATION_DEADLINE:?}); \
             h1: {:?}; h2: {:?}",
            lab.peers("h1"),
            lab.peers("h2")
        );
        std::thread::sleep(POLL);
    }
    eprintln!("h3 left h1's and h2's peer lists {:?} after h1's reload", reloaded_at.elapsed());
    for host in ["h1", "h2"] {
        assert_eq!(lab.counter(host, "members_revoked"), 1, "{host}'s members_revoked");
    }

    // h3's container reaches neither other container: their kernels see no echo request.
    let (ip1, ip2) = (lab.ip("h1c1"), lab.ip("h2c1"));
    let echoes = (lab.echo_requests_received("h1c1"), lab.echo_requests_received("h2c1"));
    assert!(!lab.ping("h3c1", &ip1), "h3c1 still reaches h1c1 after h3's revocation");
    assert!(!lab.ping("h3c1", &ip2), "h3c1 still reaches h2c1 after h3's revocation");
    assert_eq!(
        (lab.echo_requests_received("h1c1"), lab.echo_requests_received("h2c1")),
        echoes,
        "echo requests from h3c1 arrived at h1c1 or h2c1 after h3's revocation"
    );
    // The members that remain still reach each other.
    assert!(lab.ping("h1c1", &ip2), "h1c1 no longer reaches h2c1");
    assert!(lab.ping("h2c1", &ip1), "h2c1 no longer reaches h1c1");
    // h3 kept trying meanwhile (its daemon runs): it is still in nobody's list.
    for host in ["h1", "h2"] {
        assert!(!lists(&lab, host, "h3", &h3_key), "h3 is back in {host}'s peer list: {:?}", lab.peers(host));
    }

    // The revocation file itself says REVOKED for h3's certificate, and fails the command.
    let revoked_path = path(&revoked);
    let mut show_revoked = show.to_vec();
    show_revoked.extend(["--revocations", &revoked_path]);
    let out = weft_offline(&show_revoked);
    assert!(!out.status.success(), "weft cert show --revocations succeeds for h3: {}", text(&out));
    assert!(
        text(&out).contains("REVOKED"),
        "weft cert show --revocations does not say REVOKED: {}",
        text(&out)
    );
}

/// h3's honest host-mode service: at its own underlay address.
const HOST_SERVICE: &str = r#"
[[service]]
name = "hostsvc"
address = "10.200.0.3"
port = 9000
"#;

/// Added when h3 turns rogue: a service on its own container, which others must believe.
const HONEST_SERVICE: &str = r#"
[[service]]
name = "honest"
container = "h3c1"
port = 8080
"#;

#[test]
fn rogue_node_advertising_a_victims_address_cannot_put_a_service_there() {
    let lab = Lab::up_with(3, 1, &[("h3", HOST_SERVICE)]);
    let (victim, h3c1) = (lab.ip("h1c1"), lab.ip("h3c1"));
    let observers = ["h1c1", "h2c1"];

    // Honest first: other nodes believe h3's host-mode service at h3's underlay address.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !observers
        .iter()
        .all(|c| dig(&lab, c, "hostsvc.service.weft") == BTreeSet::from(["10.200.0.3".to_owned()]))
    {
        assert!(Instant::now() < deadline, "h3's honest host-mode service never resolved on h1 and h2");
        std::thread::sleep(POLL);
    }

    // h3 turns rogue: it declares the victim container's address as its underlay endpoint and
    // moves its host-mode service "home" there, and gets a new, honest container service.
    lab.stop_daemon("h3", "TERM");
    let config = lab.dir().join("h3").join("node.toml");
    let toml = std::fs::read_to_string(&config).expect("h3's node.toml");
    assert!(toml.contains("address = \"10.200.0.3\""), "h3's node.toml lacks its host-mode service");
    let toml = toml.replace("address = \"10.200.0.3\"", &format!("address = {victim:?}"));
    std::fs::write(&config, format!("{toml}{HONEST_SERVICE}")).expect("writing h3's node.toml");
    lab.add_config_line("h3", "underlay", &format!("advertise = \"{victim}:51820\""));
    let refused_at_victim = lab.snmp("h1c1", "Udp", "NoPorts");
    lab.start_daemon("h3");

    // The attack is staged: h3 itself accepted and announces the instance at the victim's address.
    let out = lab.weft("h3", &["service", "list", "--json"]);
    assert!(out.status.success(), "weft service list on h3: {}", text(&out));
    let own: Value = serde_json::from_slice(&out.stdout).expect("service list JSON");
    assert!(
        own.as_array()
            .is_some_and(|l| l.iter().any(|s| s["name"] == "hostsvc" && s["ip"] == victim.as_str())),
        "h3 does not announce hostsvc at {victim}, so this test would prove nothing: {own}"
    );

    // Until h1 and h2 answer for h3's honest service (it is only in h3's new record, which
    // carries the rogue instance too), and on for a while after: never the victim's address.
    let never_victim = |round: &str| {
        for c in observers {
            let got = dig(&lab, c, "hostsvc.service.weft");
            assert!(
                !got.contains(&victim),
                "{c}'s DNS answers hostsvc.service.weft with the victim h1c1's address {victim} ({round}): {got:?}"
            );
        }
    };
    let started = Instant::now();
    let honest = BTreeSet::from([h3c1.clone()]);
    while !observers.iter().all(|c| dig(&lab, c, "honest.service.weft") == honest) {
        never_victim("while h3's new record spreads");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "h3's honest service never resolved to {h3c1} on h1 and h2 after h3's restart: {:?}",
            observers.map(|c| dig(&lab, c, "honest.service.weft"))
        );
        std::thread::sleep(POLL);
    }
    eprintln!("h3's honest service resolved on h1 and h2 {:?} after h3's restart", started.elapsed());
    for _ in 0..20 {
        never_victim("after h3's new record arrived");
        std::thread::sleep(POLL);
    }
    for c in observers {
        let got = dig(&lab, c, "hostsvc.service.weft");
        assert!(got.is_empty(), "{c}'s DNS still answers hostsvc.service.weft: {got:?}");
    }

    // h3 still joined: its authenticated traffic comes from its underlay address.
    // (Polled: DNS answers for a suspect member too, so the wait above does not prove "alive".)
    for host in ["h1", "h2"] {
        let sees_h3 = || {
            lab.peers(host)
                .iter()
                .any(|p| p["name"] == "h3" && p["state"] == "alive" && p["endpoint"] == "10.200.0.3:51820")
        };
        assert!(
            common::eventually(Duration::from_secs(15), sees_h3),
            "{host} does not see h3 alive at 10.200.0.3:51820: {:?}",
            lab.peers(host)
        );
    }
    assert!(lab.ping("h3c1", &victim), "h3c1 cannot reach h1c1 after h3's restart");

    // Observations for the report, not requirements of this test.
    eprintln!("h3.node.weft on h1c1: {:?}", dig(&lab, "h1c1", "h3.node.weft"));
    let refused = lab.snmp("h1c1", "Udp", "NoPorts") - refused_at_victim;
    eprintln!("UDP datagrams to closed ports h1c1's kernel received since h3 turned rogue: {refused}");
}
