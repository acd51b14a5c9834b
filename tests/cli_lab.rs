//! Lab test of CLI mistakes only a running daemon can catch, each refused where it is made
//! with the reason and nothing left half-done: a service at an address other nodes would
//! never believe (from the node TOML and from `weft service add`), an attach into a namespace
//! whose interface name is taken, a detach whose `--name` and `--netns` disagree. Also checks
//! that `weft status --json` is structured all the way down. One host, one container.

mod common;

use common::Lab;
use serde_json::Value;
use std::process::Output;

/// One instance other nodes would drop (8.8.8.8 is neither in h1's certificate subnet
/// 10.42.1.0/24 nor its underlay address 10.200.0.1) and one at the underlay address.
const SERVICES: &str = r#"
[[service]]
name = "outside"
address = "8.8.8.8"
port = 80

[[service]]
name = "gw"
address = "10.200.0.1"
port = 80
"#;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn ok(o: Output, what: &str) -> Output {
    assert!(o.status.success(), "{what} failed: {}", text(&o));
    o
}

fn json(o: Output, what: &str) -> Value {
    let o = ok(o, what);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", text(&o)))
}

fn service_ids(lab: &Lab) -> Vec<String> {
    let v = json(lab.weft("h1", &["service", "list", "--json"]), "service list");
    v.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
}

fn container_names(lab: &Lab) -> Vec<String> {
    let v = json(lab.weft("h1", &["status", "--json"]), "status");
    let net = &v["networks"][0]["containers"];
    net.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect()
}

fn links(lab: &Lab, node: &str) -> Vec<String> {
    let out = lab.exec(node, &["ip", "-o", "link", "show"]);
    assert!(out.status.success(), "ip link in {node}: {}", text(&out));
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip").args(args).output().expect("ip");
    assert!(out.status.success(), "ip {args:?}: {}", text(&out));
}

#[test]
fn daemon_refuses_cli_mistakes_with_the_reason_and_leaves_nothing_behind() {
    let lab = Lab::up_with(1, 1, &[("h1", SERVICES)]);

    // [[service]] at start: the unbelievable one is refused with a warning, the other runs.
    let log = lab.log("h1");
    assert!(
        log.contains("outside/8.8.8.8:80/tcp") && log.contains("certificate subnets (10.42.1.0/24)"),
        "no warning about the service at 8.8.8.8:\n{log}"
    );
    assert_eq!(service_ids(&lab), vec!["gw/10.200.0.1:80/tcp".to_owned()]);

    // weft service add at an address other nodes drop: refused at once, with what works.
    let out = lab.weft("h1", &["service", "add", "web", "--address", "8.8.8.8", "--port", "80"]);
    assert!(!out.status.success(), "service at 8.8.8.8 accepted: {}", text(&out));
    let e = text(&out);
    assert!(e.contains("8.8.8.8") && e.contains("10.42.1.0/24") && e.contains("10.200.0.1"), "{e}");
    ok(lab.weft("h1", &["service", "add", "web", "--address", "10.42.1.1", "--port", "80"]), "service add");
    assert!(service_ids(&lab).contains(&"web/10.42.1.1:80/tcp".to_owned()));

    // Attach into a namespace that has an eth0 already.
    let ns = lab.netns("h1c2");
    ip(&["netns", "add", &ns]);
    ip(&["-n", &ns, "link", "add", "eth0", "type", "bridge"]);
    let (host_before, ns_before) = (links(&lab, "h1"), links(&lab, "h1c2"));
    let out = lab.weft("h1", &["attach", "--netns", &ns, "--name", "web2"]);
    assert!(!out.status.success(), "attach over an existing eth0 succeeded: {}", text(&out));
    let want = format!("namespace {ns} already has an interface eth0: detach it first or pass --ifname");
    assert!(text(&out).contains(&want), "{}", text(&out));
    assert_eq!(links(&lab, "h1"), host_before, "no host veth left behind");
    assert_eq!(links(&lab, "h1c2"), ns_before, "nothing added in the namespace");
    assert_eq!(container_names(&lab), vec!["h1c1".to_owned()], "no lease left behind");
    // The same namespace attached by weft: the message says which container holds it.
    let out = lab.weft("h1", &["attach", "--netns", &lab.netns("h1c1"), "--name", "again"]);
    assert!(text(&out).contains("(weft's container \"h1c1\" on network default)"), "{}", text(&out));
    // The way out the message names works.
    ok(
        lab.weft("h1", &["attach", "--netns", &ns, "--name", "web2", "--ifname", "eth1"]),
        "attach --ifname eth1",
    );

    // Detach by name with a namespace the container was not attached with.
    let out = lab.weft("h1", &["detach", "--name", "web2", "--netns", &lab.netns("h1c1")]);
    assert!(!out.status.success(), "detach with the wrong --netns succeeded: {}", text(&out));
    assert!(
        text(&out).contains(&format!("attached with netns {ns}, not {}", lab.netns("h1c1"))),
        "{}",
        text(&out)
    );
    assert_eq!(container_names(&lab), vec!["h1c1".to_owned(), "web2".to_owned()], "nothing was detached");
    let v = json(lab.weft("h1", &["detach", "--name", "web2", "--netns", &ns, "--json"]), "detach");
    assert_eq!(v["name"], "web2");
    assert_eq!(container_names(&lab), vec!["h1c1".to_owned()]);

    // weft status --json: the membership counters are numbers, not a Debug string.
    let v = json(lab.weft("h1", &["status", "--json"]), "status");
    let m = &v["engine"]["membership"];
    assert!(m["messages_in"].is_u64() && m["records_accepted"].is_u64(), "{m}");
}
