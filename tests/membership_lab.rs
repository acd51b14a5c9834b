//! Lab tests of gossip membership: hosts that know one seed each find every other host, learn
//! their containers, forget a dead host, take it back when it returns, heal partitions, and
//! stay correct on a lossy underlay.

mod common;

use common::Lab;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// `host`'s view: member name → state ("alive", "suspect", "down", …).
fn view(lab: &Lab, host: &str) -> BTreeMap<String, String> {
    let out = lab.weft(host, &["status", "--json"]);
    if !out.status.success() {
        return BTreeMap::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["engine"]["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p["state"].as_str()?.to_owned())))
        .collect()
}

fn alive(lab: &Lab, host: &str) -> Vec<String> {
    view(lab, host).into_iter().filter(|(_, s)| s == "alive").map(|(n, _)| n).collect()
}

fn hosts(lab: &Lab) -> Vec<String> {
    (1..=lab.hosts).map(|i| format!("h{i}")).collect()
}

/// Waits until `cond` holds, polling; panics with `what` and the views after `limit`.
fn wait_for(lab: &Lab, limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            let views: Vec<String> = hosts(lab).iter().map(|h| format!("{h}: {:?}", view(lab, h))).collect();
            panic!("{what} not reached within {limit:?}; views:\n{}", views.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn all_see_all(lab: &Lab, of: &[&str]) -> bool {
    of.iter().all(|h| {
        let a = alive(lab, h);
        of.iter().filter(|o| *o != h).all(|o| a.iter().any(|n| n == o))
    })
}

fn counter(lab: &Lab, host: &str, name: &str) -> u64 {
    let out = lab.weft(host, &["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["engine"]["counters"][name].as_u64().unwrap_or(0)
}

#[test]
fn five_hosts_with_one_seed_each_join_ping_and_learn_new_containers() {
    let lab = Lab::up(5, 1);
    let all = ["h1", "h2", "h3", "h4", "h5"];
    wait_for(&lab, Duration::from_secs(30), "every host sees every other alive", || all_see_all(&lab, &all));
    lab.ping_all_pairs("after joining");
    // A container attached later is known everywhere through gossip: h1 answers the ARP for
    // it locally instead of flooding the request.
    let c = lab.netns("h3c2");
    assert!(std::process::Command::new("ip").args(["netns", "add", &c]).status().unwrap().success());
    assert!(lab.exec("h3c2", &["ip", "link", "set", "lo", "up"]).status.success());
    let out = lab.weft("h3", &["attach", "--netns", &c, "--name", "late"]);
    assert!(out.status.success(), "attach: {}", String::from_utf8_lossy(&out.stderr));
    let ip = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    std::thread::sleep(Duration::from_secs(3));
    let suppressed = counter(&lab, "h1", "arp_suppressed");
    for from in ["h1c1", "h2c1", "h4c1", "h5c1"] {
        assert!(lab.ping(from, &ip), "{from} cannot reach the late container {ip}");
    }
    assert!(counter(&lab, "h1", "arp_suppressed") > suppressed, "h1 did not answer the ARP itself");
}

#[test]
fn a_killed_host_leaves_every_view_and_comes_back_after_restart() {
    let lab = Lab::up(4, 1);
    let all = ["h1", "h2", "h3", "h4"];
    wait_for(&lab, Duration::from_secs(30), "full view", || all_see_all(&lab, &all));
    let h4c1 = lab.ip("h4c1");
    assert!(lab.ping("h1c1", &h4c1));
    lab.stop_daemon("h4", "KILL");
    wait_for(&lab, Duration::from_secs(30), "h4 declared dead everywhere", || {
        ["h1", "h2", "h3"].iter().all(|h| view(&lab, h).get("h4").is_none_or(|s| s == "down"))
    });
    // Its containers left every forwarding table.
    for h in ["h1", "h2", "h3"] {
        assert!(!fdb_has(&lab, h, &h4c1), "{h} still forwards to {h4c1} of the dead h4");
    }
    assert!(!lab.exec("h1c1", &["ping", "-n", "-q", "-c", "1", "-W", "1", &h4c1]).status.success());
    // After the grace period (30 s) the dead member leaves the views altogether.
    wait_for(&lab, Duration::from_secs(60), "h4 removed from every view", || {
        ["h1", "h2", "h3"].iter().all(|h| !view(&lab, h).contains_key("h4"))
    });
    lab.start_daemon("h4");
    wait_for(&lab, Duration::from_secs(30), "h4 back in every view", || all_see_all(&lab, &all));
    wait_for(&lab, Duration::from_secs(10), "h4c1 announced again", || {
        ["h1", "h2", "h3"].iter().all(|h| fdb_has(&lab, h, &h4c1))
    });
    assert!(lab.ping("h1c1", &h4c1), "h4c1 unreachable after h4 came back");
}

/// Whether `host`'s forwarding table holds an entry for `ip`.
fn fdb_has(lab: &Lab, host: &str, ip: &str) -> bool {
    let out = lab.weft(host, &["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["engine"]["fdb"][0]["entries"].as_array().into_iter().flatten().any(|e| e["ip"] == ip)
}

/// Cuts the underlay between `a` and `b` (both ways) with blackhole routes in the hosts.
fn cut(lab: &Lab, a: &[usize], b: &[usize], add: bool) {
    for (from, to) in [(a, b), (b, a)] {
        for i in from {
            for j in to {
                let verb = if add { "add" } else { "del" };
                let ok = lab
                    .exec(&format!("h{i}"), &["ip", "route", verb, "blackhole", &format!("10.200.0.{j}/32")])
                    .status
                    .success();
                assert!(ok, "ip route {verb} blackhole in h{i}");
            }
        }
    }
}

#[test]
fn a_two_three_partition_heals_into_one_view() {
    let lab = Lab::up(5, 1);
    let all = ["h1", "h2", "h3", "h4", "h5"];
    wait_for(&lab, Duration::from_secs(30), "full view", || all_see_all(&lab, &all));
    cut(&lab, &[1, 2], &[3, 4, 5], true);
    wait_for(&lab, Duration::from_secs(40), "each side sees only itself", || {
        alive(&lab, "h1") == vec!["h2".to_owned()] && !alive(&lab, "h3").contains(&"h1".to_owned())
    });
    assert!(all_see_all(&lab, &["h3", "h4", "h5"]), "the larger side lost members");
    cut(&lab, &[1, 2], &[3, 4, 5], false);
    wait_for(&lab, Duration::from_secs(60), "one view again", || all_see_all(&lab, &all));
    lab.ping_all_pairs("after joining");
}

#[test]
fn ten_percent_loss_keeps_membership_and_a_transfer_intact() {
    let lab = Lab::up(3, 1);
    let all = ["h1", "h2", "h3"];
    wait_for(&lab, Duration::from_secs(30), "full view", || all_see_all(&lab, &all));
    // 10 % of every host's outgoing underlay datagrams are dropped (nftables: this kernel has
    // no netem).
    for h in all {
        let rules = "add table inet weftloss\n\
                     add chain inet weftloss out { type filter hook output priority 0; }\n\
                     add rule inet weftloss out udp dport 51820 numgen random mod 100 < 10 drop\n";
        let ok = lab.sh(h, &format!("printf '{rules}' | nft -f -")).status.success();
        assert!(ok, "nft loss rule on {h}");
    }
    // Membership stays correct for a while under loss: nobody is declared down.
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        for h in all {
            let v = view(&lab, h);
            assert!(!v.values().any(|s| s == "down"), "{h} declared a member down under 10% loss: {v:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(all_see_all(&lab, &all));
    lab.transfer_intact("h1c1", "h2c1", 20);
}

#[test]
fn a_host_restarted_on_a_new_port_is_found_there() {
    let lab = Lab::up(3, 1);
    let all = ["h1", "h2", "h3"];
    wait_for(&lab, Duration::from_secs(30), "full view", || all_see_all(&lab, &all));
    lab.stop_daemon("h3", "TERM");
    let cfg = lab.dir().join("h3").join("node.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("10.200.0.3:51820", "10.200.0.3:51999");
    std::fs::write(&cfg, text).unwrap();
    lab.start_daemon("h3");
    // The container stayed attached across the clean stop (live restore).
    let ip = lab.ip("h3c1");
    wait_for(&lab, Duration::from_secs(30), "h3 back at its new port", || {
        all_see_all(&lab, &all)
            && ["h1", "h2"].iter().all(|h| {
                let out = lab.weft(h, &["status", "--json"]);
                let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                v["engine"]["peers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"] == "h3" && p["endpoint"] == "10.200.0.3:51999")
            })
    });
    assert!(lab.ping("h1c1", &ip));
    assert!(lab.ping("h2c1", &ip));
}
