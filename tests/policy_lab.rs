//! Lab test of network policy: default-deny inbound with `app=web → app=db tcp/5432`, replies
//! through connection tracking, unlabeled containers refused, a deny rule beating a broader
//! allow, live reload (SIGHUP) that keeps an established connection and every tunnel, a broken
//! file that changes nothing, and `weft policy explain` agreeing with what packets do.

mod common;

use common::{Bg, Lab};
use serde_json::Value;
use std::time::{Duration, Instant};

fn spawn_in(lab: &Lab, node: &str, script: &str) -> Bg {
    lab.spawn(node, &["bash", "-c", script])
}

const P1: &str = r#"
[network.policy]
inbound = "deny"

[[network.policy.rule]]
name = "web-to-db"
direction = "in"
action = "allow"
proto = "tcp"
port = 5432
from = { labels = { app = "web" } }
to = { labels = { app = "db" } }
"#;

/// After the reload: anything may reach db over TCP, but nobody its port 5432.
const P2: &str = r#"
[network.policy]
inbound = "deny"

[[network.policy.rule]]
name = "any-to-db"
direction = "in"
action = "allow"
proto = "tcp"
to = { labels = { app = "db" } }

[[network.policy.rule]]
name = "no-pg"
direction = "in"
action = "deny"
proto = "tcp"
port = 5432
to = { labels = { app = "db" } }
"#;

/// Re-attaches `container` to its host with `label`; returns its address.
fn relabel(lab: &Lab, host: &str, container: &str, label: &str) -> String {
    let out = lab.weft(host, &["detach", "--name", container]);
    assert!(out.status.success(), "detach: {}", String::from_utf8_lossy(&out.stderr));
    let netns = lab.netns(container);
    let out = lab.weft(host, &["attach", "--netns", &netns, "--name", container, "--label", label]);
    assert!(out.status.success(), "attach: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_owned()
}

/// Whether a TCP connection from `from` to `ip:port` carries a line there and back.
fn tcp_ok(lab: &Lab, from: &str, ip: &str, port: u16) -> bool {
    let script = format!("echo hello | timeout 6 socat -T3 - TCP:{ip}:{port},connect-timeout=3");
    let out = lab.exec(from, &["bash", "-c", &script]);
    String::from_utf8_lossy(&out.stdout).trim() == "hello"
}

fn status(lab: &Lab, host: &str) -> Value {
    let out = lab.weft(host, &["status", "--json"]);
    assert!(out.status.success(), "status on {host}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

fn explain(lab: &Lab, host: &str, from: &str, to: &str, port: u16) -> Value {
    let p = port.to_string();
    let out = lab.weft(host, &["policy", "explain", "--from", from, "--to", to, "--port", &p, "--json"]);
    assert!(out.status.success(), "explain: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("explain JSON")
}

/// Replaces the policy in every host's node.toml and sends SIGHUP.
fn reload_all(lab: &Lab, from: &str, to: &str) {
    for i in 1..=lab.hosts {
        let path = lab.dir().join(format!("h{i}/node.toml"));
        let text = std::fs::read_to_string(&path).expect("node.toml");
        assert!(text.contains(from), "h{i}'s node.toml lacks the policy to replace");
        std::fs::write(&path, text.replace(from, to)).expect("writing node.toml");
        lab.stop_daemon(&format!("h{i}"), "HUP");
    }
}

fn wait_log(lab: &Lab, host: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.log(host).contains(needle) {
        assert!(Instant::now() < deadline, "{host}'s log never said {needle:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn policy_with_conntrack_reload_and_explain() {
    let lab = Lab::up_with(3, 1, &[("all", P1)]);
    let web = relabel(&lab, "h1", "h1c1", "app=web");
    let db = relabel(&lab, "h2", "h2c1", "app=db");
    let _pg = spawn_in(&lab, "h2c1", "socat TCP-LISTEN:5432,fork,reuseaddr EXEC:cat");
    let _ssh = spawn_in(&lab, "h2c1", "socat TCP-LISTEN:22,fork,reuseaddr EXEC:cat");
    let _web = spawn_in(&lab, "h1c1", "socat TCP-LISTEN:8080,fork,reuseaddr EXEC:cat");
    std::thread::sleep(Duration::from_millis(500));

    // web reaches db on 5432 (and the replies flow back through web's default-deny inbound).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !tcp_ok(&lab, "h1c1", &db, 5432) {
        assert!(Instant::now() < deadline, "web never reached db:5432");
    }
    assert!(!tcp_ok(&lab, "h1c1", &db, 22), "web reached db:22");
    assert!(!tcp_ok(&lab, "h2c1", &web, 8080), "db opened a connection to web");
    assert!(!tcp_ok(&lab, "h3c1", &db, 5432), "a container without the label reached db:5432");
    let drops = status(&lab, "h2")["engine"]["counters"]["drop_policy"].as_u64().unwrap_or(0);
    assert!(drops > 0, "no policy drops counted on db's host");

    // The decisions are in the metrics, per rule.
    let out = lab.exec("h2", &["curl", "-sf", "http://127.0.0.1:9571/metrics"]);
    let m = String::from_utf8_lossy(&out.stdout);
    let hit = m.lines().find(|l| {
        l.starts_with(r#"weft_policy_decisions_total{network="default",rule="web-to-db",direction="in",action="allow"}"#)
    });
    assert!(hit.is_some_and(|l| !l.ends_with(" 0")), "no web-to-db decisions in the metrics:\n{m}");
    assert!(m.contains(r#"weft_drops_total{reason="policy"}"#), "{m}");

    // explain agrees with what happened.
    let e = explain(&lab, "h2", "h1c1", "h2c1", 5432);
    assert_eq!(e["verdict"], "allow", "{e}");
    assert_eq!(e["checks"][0]["explanation"]["name"], "web-to-db", "{e}");
    let e = explain(&lab, "h2", "h1c1", "h2c1", 22);
    assert_eq!(
        (e["verdict"].as_str(), e["checks"][0]["explanation"]["name"].as_str()),
        (Some("deny"), Some("default-in")),
        "{e}"
    );
    let e = explain(&lab, "h1", "h2c1", "h1c1", 8080);
    assert_eq!(e["verdict"], "deny", "{e}");
    let e = explain(&lab, "h2", &lab.ip("h3c1"), &db, 5432);
    assert_eq!(e["verdict"], "deny", "{e}");

    // An established connection (10 s of lines) across a reload that forbids new ones.
    let handshakes =
        |h: &str| status(&lab, h)["engine"]["counters"]["handshakes_completed"].as_u64().unwrap_or(0);
    let before: Vec<u64> = (1..=3).map(|i| handshakes(&format!("h{i}"))).collect();
    let out_file = lab.dir().join("long.out");
    let script = format!(
        "for i in $(seq 1 40); do echo $i; sleep 0.25; done | socat -T5 - TCP:{db}:5432 > {}",
        out_file.display()
    );
    let long = spawn_in(&lab, "h1c1", &script);
    std::thread::sleep(Duration::from_secs(2));
    let replaced = |h: &str| lab.log(h).matches("policy replaced").count();
    let replaced_before: Vec<usize> = (1..=3).map(|i| replaced(&format!("h{i}"))).collect();
    reload_all(&lab, P1, P2);
    for i in 1..=3 {
        let h = format!("h{i}");
        wait_log(&lab, &h, "configuration reloaded");
        // The reload hands the rules to the engine, which applies them a moment later; a
        // status call through the engine then returns only after that batch was published.
        assert!(
            common::eventually(Duration::from_secs(10), || replaced(&h) > replaced_before[i - 1]),
            "{h}'s engine never replaced the policy after the reload"
        );
        status(&lab, &h);
    }
    // The new rules hold at once: the deny beats the broader allow, the broader allow works.
    assert!(!tcp_ok(&lab, "h1c1", &db, 5432), "new connection to db:5432 after the reload");
    assert!(tcp_ok(&lab, "h3c1", &db, 22), "any-to-db did not let h3c1 reach db:22");
    let e = explain(&lab, "h2", "h1c1", "h2c1", 5432);
    assert_eq!(
        (e["verdict"].as_str(), e["checks"][0]["explanation"]["name"].as_str()),
        (Some("deny"), Some("no-pg")),
        "{e}"
    );
    // The established connection carried on to the end.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut long = Some(long);
    loop {
        let lines = std::fs::read_to_string(&out_file).unwrap_or_default().lines().count();
        if lines >= 40 {
            break;
        }
        assert!(Instant::now() < deadline, "established connection cut: {lines} of 40 lines echoed");
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(long.take());
    // A changed seed list applies live too (h3 also seeds from h2 now), through `weft reload`.
    let path3 = lab.dir().join("h3/node.toml");
    let text = std::fs::read_to_string(&path3).unwrap();
    let seeds = r#"seeds = ["10.200.0.1:51820"]"#;
    assert!(text.contains(seeds), "h3's seeds are not as expected:\n{text}");
    std::fs::write(&path3, text.replace(seeds, r#"seeds = ["10.200.0.1:51820", "10.200.0.2:51820"]"#))
        .unwrap();
    let out = lab.weft("h3", &["reload", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("reload JSON");
    assert_eq!(v["changed"], serde_json::json!(["seeds/peers"]), "{v}");
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<u64> = (1..=3).map(|i| handshakes(&format!("h{i}"))).collect();
    assert_eq!(before, after, "the reloads re-handshaked tunnels");

    // A broken file: refused with the error, the running policy stays.
    let path = lab.dir().join("h2/node.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, good.replace("action = \"deny\"", "action = \"maybe\"")).unwrap();
    lab.stop_daemon("h2", "HUP");
    wait_log(&lab, "h2", "reload refused");
    assert!(lab.log("h2").contains("action"), "the refusal does not name the key");
    assert!(tcp_ok(&lab, "h3c1", &db, 22), "the running policy changed after a refused reload");
    assert!(!tcp_ok(&lab, "h1c1", &db, 5432));
    // A change only a restart can apply is refused by `weft reload` with the reason.
    std::fs::write(&path, good.replace("vni = 42", "vni = 43")).unwrap();
    let out = lab.weft("h2", &["reload"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("restart"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&path, &good).unwrap();
    let out = lab.weft("h2", &["reload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // DNS that cannot start with new settings (an address h2 does not have) is reported; the
    // reload after reverting the file brings it back.
    let dig = || lab.exec("h2c1", &["dig", "+short", "+time=1", "+tries=1", "h2c1.container.weft"]);
    assert_eq!(String::from_utf8_lossy(&dig().stdout).trim(), db);
    assert!(good.contains("upstreams = []"), "lab.sh no longer writes [dns] upstreams = []");
    std::fs::write(&path, good.replace("upstreams = []", "upstreams = []\nlisten = [\"10.200.0.99:53\"]"))
        .unwrap();
    let out = lab.weft("h2", &["reload"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DNS did not start"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = String::from_utf8_lossy(&dig().stdout).into_owned();
    assert!(!answer.lines().any(|l| l.trim() == db), "DNS still answers: {answer}");
    std::fs::write(&path, &good).unwrap();
    let out = lab.weft("h2", &["reload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&dig().stdout).trim(), db, "DNS did not come back");
}
