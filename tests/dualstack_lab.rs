//! Lab test of a dual-stack network (10.42.0.0/16 and fd42::/48): two hosts, containers
//! attached with `weft attach` get an IPv4 and an IPv6 address on one interface with both
//! default routes, ping each other over both families across the tunnel, resolve a container
//! name to one A and one AAAA record, and a policy rule by selector (a label) allows one pair
//! and denies another on both families alike.

mod common;

use common::Lab;
use std::process::Output;

/// Inbound only from containers labelled `role=client` (a selector, no CIDR: it must hold for
/// both families).
const POLICY: &str = r#"
[network.policy]
inbound = "deny"

[[network.policy.rule]]
name = "clients-in"
direction = "in"
action = "allow"
from = { labels = { role = "client" } }
"#;

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Re-attaches `container` on `host` with `label`; returns the addresses `weft attach`
/// printed, one per line (IPv4 first).
fn relabel(lab: &Lab, host: &str, container: &str, label: &str) -> Vec<String> {
    let out = lab.weft(host, &["detach", "--name", container]);
    assert!(out.status.success(), "detach: {}", String::from_utf8_lossy(&out.stderr));
    let netns = lab.netns(container);
    let out = lab.weft(host, &["attach", "--netns", &netns, "--name", container, "--label", label]);
    assert!(out.status.success(), "attach: {}", String::from_utf8_lossy(&out.stderr));
    text(&out).lines().map(|l| l.trim().to_owned()).collect()
}

#[test]
fn dual_stack_containers_ping_resolve_and_obey_policy_on_both_families() {
    let lab = Lab::up_dual(2, 2, &[("all", POLICY)]);

    // One interface with both addresses (IPv6 usable at once: no DAD) and both default routes.
    let addrs = text(&lab.exec("h2c1", &["ip", "-o", "addr", "show", "dev", "eth0"]));
    let (v4, v6) = (lab.ip("h2c1"), lab.ip6("h2c1"));
    assert!(addrs.contains(&format!("inet {v4}/16")), "{addrs}");
    assert!(addrs.contains(&format!("inet6 {v6}/48")), "{addrs}");
    let global6 = addrs.lines().find(|l| l.contains(&format!("inet6 {v6}/"))).unwrap_or_default();
    assert!(!global6.contains("tentative"), "the IPv6 address waits for DAD: {addrs}");
    let links = text(&lab.exec("h2c1", &["ip", "-o", "link", "show"]));
    assert_eq!(links.lines().filter(|l| !l.contains(": lo:")).count(), 1, "one interface: {links}");
    let route4 = text(&lab.exec("h2c1", &["ip", "-4", "route", "show", "default"]));
    let route6 = text(&lab.exec("h2c1", &["ip", "-6", "route", "show", "default"]));
    assert!(route4.contains("via 10.42.2.1 dev eth0"), "{route4}");
    assert!(route6.contains("via fd42:0:0:2::1 dev eth0"), "the IPv6 gateway is ::1, not ::: {route6}");

    // The host's bridge holds the IPv6 gateway, a host address.
    let bridge = text(&lab.exec("h2", &["ip", "-o", "-6", "addr", "show", "dev", "weft-default"]));
    assert!(bridge.contains("inet6 fd42:0:0:2::1/48"), "{bridge}");

    // Policy by selector: h1c1 (role=client) reaches h2c1 on both families, h1c2 on neither.
    let client = relabel(&lab, "h1", "h1c1", "role=client");
    assert_eq!(client.len(), 2, "weft attach printed one address per family: {client:?}");
    assert!(client[0].starts_with("10.42.1.") && client[1].starts_with("fd42:0:0:1::"), "{client:?}");
    assert!(lab.ping("h1c1", &v4), "the labelled container does not reach h2c1 over IPv4");
    assert!(lab.ping("h1c1", &v6), "the labelled container does not reach h2c1 over IPv6");
    assert!(!lab.ping("h1c2", &v4), "an unlabelled container reached h2c1 over IPv4");
    assert!(!lab.ping("h1c2", &v6), "an unlabelled container reached h2c1 over IPv6");
    let drops = lab.counter("h2", "drop_policy");
    assert!(drops > 0, "no policy drops counted on h2");
    // The other way round: h1's inbound policy lets no unlabelled container in, on either
    // family (h1c1's replies above came back through connection tracking).
    assert!(!lab.ping("h2c2", &client[0]), "h2c2 reached h1c1 over IPv4");
    assert!(!lab.ping("h2c2", &client[1]), "h2c2 reached h1c1 over IPv6");

    // DNS (h1 knows h2's record: the pings above went through): one A and one AAAA for one
    // container name, asked over the IPv4 and the IPv6 gateway.
    for server in ["10.42.1.1", "fd42:0:0:1::1"] {
        let dig = |rtype: &str| {
            let at = format!("@{server}");
            let out = lab
                .exec("h1c1", &["dig", "+short", "+time=2", "+tries=2", &at, "h2c1.container.weft", rtype]);
            text(&out).lines().map(str::to_owned).collect::<Vec<_>>()
        };
        assert_eq!(dig("A"), vec![v4.clone()], "A of h2c1 from {server}");
        assert_eq!(dig("AAAA"), vec![v6.clone()], "AAAA of h2c1 from {server}");
    }

    // One detach releases both addresses (both leases go).
    let out = lab.weft("h1", &["detach", "--name", "h1c1", "--json"]);
    assert!(out.status.success(), "detach: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("detach JSON");
    assert_eq!(v["ips"], serde_json::json!(client), "{v}");
    let status = lab.weft("h1", &["status", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let held: Vec<&str> =
        s["networks"][0]["containers"].as_array().unwrap().iter().filter_map(|c| c["ip"].as_str()).collect();
    assert!(!held.iter().any(|ip| client.iter().any(|c| c == ip)), "a lease of h1c1 is left: {held:?}");
    assert_eq!(s["networks"][0]["gateways"], serde_json::json!(["10.42.1.1", "fd42:0:0:1::1"]), "{s}");
}
