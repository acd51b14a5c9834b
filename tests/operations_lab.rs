//! Lab tests of day-2 operations: restarts and upgrades disturb no container (live restore),
//! a second daemon never touches the first one's network, a restarted member is reachable
//! again quickly whether or not it was a seed, and `weft teardown` removes what stays.
//! Real daemons in network namespaces built by `netns-lab/lab.sh` (shared LAB.md).

mod common;

use common::Lab;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const WEFT_BIN: &str = env!("CARGO_BIN_EXE_weft");

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn links(lab: &Lab, node: &str) -> String {
    String::from_utf8_lossy(&lab.exec(node, &["ip", "-o", "link", "show"]).stdout).into_owned()
}

/// IPv4 addresses with their interfaces (IPv6 link-local addresses appear late, after DAD).
fn addrs(lab: &Lab, node: &str) -> String {
    String::from_utf8_lossy(&lab.exec(node, &["ip", "-o", "-4", "addr", "show"]).stdout).into_owned()
}

/// `weft ARGS` run inside `host`'s namespace (commands that need no control socket).
fn weft_in(lab: &Lab, host: &str, args: &[&str]) -> Output {
    let mut full = vec![WEFT_BIN];
    full.extend_from_slice(args);
    lab.exec(host, &full)
}

/// One ping with a 1 s wait.
fn ping_once(lab: &Lab, from: &str, to_ip: &str) -> bool {
    lab.exec(from, &["ping", "-n", "-q", "-c", "1", "-W", "1", to_ip]).status.success()
}

/// Pings from every `(from, to_ip)` until each has answered once; returns how long that took,
/// or panics after `limit`.
fn until_all_answer(lab: &Lab, pairs: &[(&str, String)], limit: Duration, what: &str) -> Duration {
    let t0 = Instant::now();
    let mut pending: Vec<&(&str, String)> = pairs.iter().collect();
    while !pending.is_empty() {
        pending.retain(|(from, to)| !ping_once(lab, from, to));
        assert!(
            pending.is_empty() || t0.elapsed() < limit,
            "{what}: no answer within {limit:?} for {:?}",
            pending.iter().map(|(f, t)| format!("{f}->{t}")).collect::<Vec<_>>()
        );
    }
    t0.elapsed()
}

fn peers_json(lab: &Lab, host: &str) -> serde_json::Value {
    let out = lab.weft(host, &["peers", "--json"]);
    assert!(out.status.success(), "weft peers on {host}: {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("peers JSON")
}

fn peer<'a>(peers: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let list = peers.as_array().or_else(|| peers["peers"].as_array()).expect("a list of peers");
    list.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no peer {name} in {peers}"))
}

#[test]
fn sigterm_and_start_keep_every_container_attached() {
    let lab = Lab::up(2, 2);
    let (c1, c2, remote) = (lab.ip("h1c1"), lab.ip("h1c2"), lab.ip("h2c1"));
    assert!(lab.ping("h1c1", &remote));
    let before: Vec<String> = ["h1c1", "h1c2"].iter().map(|c| addrs(&lab, c)).collect();
    let leases = std::fs::read_to_string(lab.dir().join("h1/state/leases.json")).expect("leases");

    lab.stop_daemon("h1", "TERM");
    // Nothing of the containers' moved: interfaces, addresses, leases, the bridge.
    for (c, b) in ["h1c1", "h1c2"].iter().zip(&before) {
        assert_eq!(&addrs(&lab, c), b, "{c}'s addresses changed at SIGTERM");
    }
    assert!(links(&lab, "h1").contains("weft-default:"), "bridge removed at SIGTERM");
    assert_eq!(links(&lab, "h1").matches(" wv").count(), 2, "container links removed at SIGTERM");
    let after = std::fs::read_to_string(lab.dir().join("h1/state/leases.json")).expect("leases kept");
    assert_eq!(after, leases, "leases changed at SIGTERM");
    // Containers on one host still reach each other through the bridge meanwhile.
    assert!(ping_once(&lab, "h1c1", &c2), "h1c1 cannot reach h1c2 while the daemon is stopped");

    lab.start_daemon("h1");
    let took = until_all_answer(
        &lab,
        &[("h1c1", remote.clone()), ("h2c1", c1.clone()), ("h2c1", c2.clone())],
        Duration::from_secs(10),
        "after the restart",
    );
    eprintln!("traffic resumed {took:?} after the daemon answered");
    for (c, b) in ["h1c1", "h1c2"].iter().zip(&before) {
        assert_eq!(&addrs(&lab, c), b, "{c}'s addresses changed across the restart");
    }
    let status = lab.weft("h1", &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert!(v.to_string().contains("h1c2"), "the restarted daemon does not list h1c2: {v}");

    // Removing everything is explicit, and refused while the daemon runs.
    let cfg = lab.dir().join("h1/node.toml");
    let cfg = cfg.to_str().unwrap();
    let busy = weft_in(&lab, "h1", &["teardown", "--config", cfg]);
    assert!(!busy.status.success(), "teardown ran beside a live daemon: {}", text(&busy));
    assert!(text(&busy).contains("in use"), "{}", text(&busy));
    assert!(lab.ping("h1c1", &remote), "a refused teardown disturbed traffic");
    lab.stop_daemon("h1", "TERM");
    let done = weft_in(&lab, "h1", &["teardown", "--config", cfg]);
    assert!(done.status.success(), "teardown: {}", text(&done));
    for l in links(&lab, "h1").lines() {
        assert!(l.contains(": lo:") || l.contains(": eth0@"), "left behind on h1 after teardown: {l}");
    }
    for c in ["h1c1", "h1c2"] {
        assert!(!links(&lab, c).contains("eth0"), "{c} kept its eth0 after teardown");
    }
    assert!(!addrs(&lab, "h1").contains("10.42."), "overlay address left behind");
    // h2 is unaffected.
    assert!(lab.weft("h2", &["status"]).status.success());
}

#[test]
fn a_second_daemon_refuses_before_touching_the_first() {
    let lab = Lab::up(2, 1);
    let remote = lab.ip("h2c1");
    assert!(lab.ping("h1c1", &remote));
    let first_pid = std::fs::read_to_string(lab.dir().join("h1/weft.pid")).expect("pid").trim().to_owned();
    let original = std::fs::read_to_string(lab.dir().join("h1/node.toml")).expect("h1 config");
    let h1 = lab.dir().join("h1");
    let h1 = h1.to_str().unwrap();
    let second = lab.dir().join("second");
    std::fs::create_dir_all(&second).unwrap();
    let sd = second.to_str().unwrap();
    let own_state = original
        .replace(&format!("{h1}/state"), &format!("{sd}/state"))
        .replace(&format!("{h1}/weft.sock"), &format!("{sd}/weft.sock"));
    let cases = [
        // The same network (bridge, gateway) on another port, state dir and socket.
        ("same network", own_state.replace(":51820", ":51830"), "bridge weft-default"),
        // The same state dir under another network name.
        (
            "same state_dir",
            original
                .replace(&format!("{h1}/weft.sock"), &format!("{sd}/weft.sock"))
                .replace("name = \"default\"", "name = \"other\""),
            "state_dir",
        ),
        // Another network name but the same UDP port.
        ("same port", own_state.replace("name = \"default\"", "name = \"other\""), "UDP port"),
    ];
    for (what, cfg, names) in cases {
        let path = second.join("node.toml");
        std::fs::write(&path, &cfg).unwrap();
        let out = weft_in(&lab, "h1", &["run", "--config", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{what}: the second daemon started:\n{}", text(&out));
        let msg = text(&out);
        assert!(msg.contains(names), "{what}: the refusal does not name {names:?}:\n{msg}");
        assert!(
            msg.contains(&format!("pid {first_pid}")),
            "{what}: the refusal does not name pid {first_pid}:\n{msg}"
        );
        // The first daemon's network is whole and working.
        assert!(links(&lab, "h1").contains("weft-default:"), "{what}: bridge gone");
        assert!(!links(&lab, "h1").contains("weft-other"), "{what}: the second daemon made a bridge");
        assert!(lab.ping("h1c1", &remote), "{what}: traffic broken");
        let re = lab.weft("h1", &["detach", "--name", "h1c1"]);
        assert!(re.status.success(), "{what}: detach after the refusal: {}", text(&re));
        let ns = lab.netns("h1c1");
        let re = lab.weft("h1", &["attach", "--netns", &ns, "--name", "h1c1", "--ip", &lab.ip("h1c1")]);
        assert!(re.status.success(), "{what}: attach after the refusal: {}", text(&re));
        assert!(lab.ping("h1c1", &remote), "{what}: traffic broken after re-attach");
    }
}

/// h3 joins through h1 only; h2 talks to h3 directly. h3 is killed while h2 sends to it and
/// restarted: every host must reach it again within 10 s of its start (h2 still holds a
/// session h3 forgot), and meanwhile h2 must not show h3's session as live.
#[test]
fn a_restarted_member_that_is_no_seed_is_reachable_from_everyone_within_10s() {
    let lab = Lab::up(3, 1);
    let target = lab.ip("h3c1");
    let pairs = [("h1c1", target.clone()), ("h2c1", target.clone())];
    until_all_answer(&lab, &pairs, Duration::from_secs(20), "before the kill");
    // Keep h2 sending to h3 across the kill (a stale session sees traffic, as in production).
    let mut pinger = Command::new("ip")
        .args(["netns", "exec", &lab.netns("h2c1"), "ping", "-n", "-q", "-i", "0.2", "-w", "40", &target])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("background ping");
    lab.stop_daemon("h3", "KILL");
    std::thread::sleep(Duration::from_secs(14));
    let h3 = peer(&peers_json(&lab, "h2"), "h3").clone();
    assert_eq!(h3["connected"], false, "h2 shows a live session to a dead h3: {h3}");
    lab.start_daemon("h3");
    let took = until_all_answer(&lab, &pairs, Duration::from_secs(10), "after h3's restart");
    eprintln!("h3 reachable from h1 and h2 {took:?} after it answered");
    let _ = pinger.kill();
    let _ = pinger.wait();
    let h3 = peer(&peers_json(&lab, "h2"), "h3").clone();
    assert_eq!(h3["connected"], true, "h2 does not show the new session: {h3}");
}

/// A seed that never answers is reported where an operator looks: a warning in the log and
/// `unreachable` in `weft status`, while the seed that works shows `connected`.
#[test]
fn an_unreachable_seed_is_reported_in_status_and_log() {
    let lab = Lab::up(2, 0);
    let cfg = lab.dir().join("h1/node.toml");
    let text_cfg = std::fs::read_to_string(&cfg).expect("h1 config");
    let good = "\"10.200.0.2:51820\"";
    assert!(text_cfg.contains(good), "h1 seeds on h2: {text_cfg}");
    // Nobody listens at .99 on the lab's underlay: handshakes go unanswered.
    std::fs::write(&cfg, text_cfg.replace(good, &format!("{good}, \"10.200.0.99:51820\""))).unwrap();
    let out = lab.weft("h1", &["reload"]);
    assert!(out.status.success(), "reload: {}", text(&out));
    let t0 = Instant::now();
    loop {
        let out = lab.weft("h1", &["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        let seeds = v["engine"]["seeds"].as_array().cloned().unwrap_or_default();
        let state = |a: &str| seeds.iter().find(|s| s["address"] == a).map(|s| s["state"].clone());
        if state("10.200.0.99:51820") == Some("unreachable".into()) {
            assert_eq!(state("10.200.0.2:51820"), Some("connected".into()), "{seeds:?}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the dead seed is not reported: {seeds:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let shown = text(&lab.weft("h1", &["status"]));
    assert!(shown.contains("seed 10.200.0.99:51820: unreachable"), "{shown}");
    assert!(lab.log("h1").contains("seed does not answer"), "no warning in the log");
}
