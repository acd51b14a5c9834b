//! The shipped example, `configs/node.toml`, works as written: three lab hosts run it with only
//! the per-host values changed (node name, key/cert/CA paths, state and socket paths, seeds),
//! h2 and h3 both seed on h1 only, and h2 and h3 still connect to each other directly. That
//! takes each node advertising an address the others can dial, although the example listens
//! on 0.0.0.0: h2 and h3 take it from the route to their seed, h1 (no seed) from its only
//! global address (README "Using it", weft.toml(5) `advertise`).
//!
//! The lab (tests/common, netns-lab/lab.sh) builds the namespaces, the PKI and a first set of
//! daemons with its own configs; the test stops those daemons, writes the example-derived
//! configs in their place and starts `weft run` on them. The host namespaces have no route out
//! of the lab (only 10.200.0.0/24 on their uplink), so nothing the example's defaults would
//! send elsewhere (e.g. DNS forwarding to the machine's resolvers) can leave it (LAB.md rule 1).

mod common;

use common::Lab;
use serde_json::Value;
use std::time::{Duration, Instant};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/node.toml");
const WEFT_BIN: &str = env!("CARGO_BIN_EXE_weft");

/// Replaces the one occurrence of `from` in `text`; panics if the example no longer has it
/// exactly once (then the README and this test need to follow the example).
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "configs/node.toml should contain `{from}` exactly once");
    text.replacen(from, to, 1)
}

/// configs/node.toml for lab host `i`, with only names, paths and seeds changed.
fn example_for(lab: &Lab, example: &str, i: usize) -> String {
    let pki = lab.dir().join("pki");
    let host = lab.dir().join(format!("h{i}"));
    let seeds = if i == 1 { "seeds = []".to_owned() } else { "seeds = [\"10.200.0.1:51820\"]".to_owned() };
    let mut t = example.to_owned();
    for (from, to) in [
        ("name = \"h1\"".to_owned(), format!("name = \"h{i}\"")),
        ("key = \"h1.key\"".to_owned(), format!("key = \"{}/h{i}.key\"", pki.display())),
        ("cert = \"h1.crt\"".to_owned(), format!("cert = \"{}/h{i}.crt\"", pki.display())),
        ("ca = \"ca.crt\"".to_owned(), format!("ca = \"{}/ca.crt\"", pki.display())),
        ("state_dir = \"/var/lib/weft\"".to_owned(), format!("state_dir = \"{}/state\"", host.display())),
        (
            "control_socket = \"/run/weft/weft.sock\"".to_owned(),
            format!("control_socket = \"{}\"", lab.socket(&format!("h{i}")).display()),
        ),
        ("seeds = [\"192.0.2.2:51820\"]".to_owned(), seeds),
    ] {
        t = replace_once(&t, &from, &to);
    }
    t
}

/// `from`'s view of `peer` in `weft peers --json`, if listed.
fn peer(lab: &Lab, from: &str, peer: &str) -> Option<Value> {
    let out = lab.weft(from, &["peers", "--json"]);
    let peers: Value = serde_json::from_slice(&out.stdout).ok()?;
    peers.as_array()?.iter().find(|p| p["name"] == peer).cloned()
}

/// Waits until `cond` holds (polling every 250 ms), or panics with `what` after `limit`.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what} not reached within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn three_hosts_running_the_shipped_example_connect_through_one_seed() {
    let example = std::fs::read_to_string(EXAMPLE).expect("read configs/node.toml");
    let lab = Lab::up(3, 0);
    let hosts = ["h1", "h2", "h3"];
    for h in hosts {
        lab.stop_daemon(h, "TERM");
    }
    for (i, h) in hosts.iter().enumerate() {
        let config = lab.dir().join(h).join("node.toml");
        std::fs::write(&config, example_for(&lab, &example, i + 1)).expect("write node.toml");
        // check-config inside the host says which address the node will advertise, and why.
        let out = lab.exec(h, &[WEFT_BIN, "check-config", "--config", config.to_str().expect("utf-8 path")]);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "check-config on {h}: {}", String::from_utf8_lossy(&out.stderr));
        let want = match i + 1 {
            1 => "advertising 10.200.0.1:51820 (from the host's only global address, on eth0)".to_owned(),
            n => format!(
                "advertising 10.200.0.{n}:51820 (from the source address of the route to seed 10.200.0.1:51820)"
            ),
        };
        assert!(said.contains(&want), "check-config on {h} should say `{want}`:\n{said}");
    }
    for h in hosts {
        lab.start_daemon(h);
    }

    // h2 and h3 know only h1; they learn each other by gossip and dial the advertised address.
    // A session comes up a moment before the member it belongs to is confirmed alive (state
    // "connected" until then), so wait for both.
    wait_for(Duration::from_secs(30), "h2 and h3 connected to each other and alive", || {
        let up =
            |from, to| peer(&lab, from, to).is_some_and(|p| p["connected"] == true && p["state"] == "alive");
        up("h2", "h3") && up("h3", "h2")
    });
    for (from, to, endpoint) in [("h2", "h3", "10.200.0.3:51820"), ("h3", "h2", "10.200.0.2:51820")] {
        let p = peer(&lab, from, to).expect("listed");
        assert_eq!(p["endpoint"], endpoint, "{from} reaches {to} at its advertised address: {p}");
        assert_eq!(p["state"], "alive", "{from}'s view of {to}: {p}");
        let out = lab.weft(from, &["ping", to, "--count", "2", "--interval", "0.2"]);
        assert!(
            out.status.success(),
            "weft ping {to} from {from}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
