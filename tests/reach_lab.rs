//! Reach, with real daemons in a lab: hosts whose direct UDP is blocked talk through a relay
//! and move back when the block is lifted; hosts behind masquerading NAT routers meet directly
//! after punching where the NAT keeps one mapping per socket, and through the relay where it
//! makes one per destination (symmetric); a relay never sees plaintext.
//!
//! Firewalls and NAT routers are nftables inside the lab's own namespaces (LAB.md). A NAT
//! router is a namespace `<tag>r<k>` with a WAN veth on the lab's underlay switch
//! (10.200.0.10<k>) and a LAN veth to the host behind it (192.168.<k>.0/24), forwarding, an
//! input firewall that drops what it did not ask for, and masquerade on the WAN side; the
//! [`Routers`] guard removes them.

mod common;

use common::Lab;
use std::time::{Duration, Instant};

/// `[relay] enable` on h1 and the path `host` uses to `peer`, from `weft peers --json`.
fn path(lab: &Lab, host: &str, peer: &str) -> Option<String> {
    lab.peers(host).iter().find(|p| p["name"] == peer).and_then(|p| p["path"].as_str().map(str::to_owned))
}

/// Polls `f` every 500 ms for at most `limit`; the time it took, or `None`.
fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    None
}

fn counter(lab: &Lab, host: &str, name: &str) -> u64 {
    let out = lab.weft(host, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status is JSON");
    v["engine"]["counters"][name].as_u64().unwrap_or_else(|| panic!("no counter {name}: {v}"))
}

/// Drops UDP between `host` and `other` (10.200.0.<other>) in `host`'s namespace, both ways.
fn block(lab: &Lab, host: &str, other: usize) {
    let script = format!(
        "nft add table inet weftblock && \
         nft add chain inet weftblock in '{{ type filter hook input priority 0; }}' && \
         nft add chain inet weftblock out '{{ type filter hook output priority 0; }}' && \
         nft add rule inet weftblock in ip saddr 10.200.0.{other} udp dport 51820 counter drop && \
         nft add rule inet weftblock out ip daddr 10.200.0.{other} udp dport 51820 counter drop"
    );
    let out = lab.sh(host, &script);
    assert!(out.status.success(), "nft block on {host}: {}", String::from_utf8_lossy(&out.stderr));
}

fn unblock(lab: &Lab, host: &str) {
    let out = lab.exec(host, &["nft", "delete", "table", "inet", "weftblock"]);
    assert!(out.status.success(), "nft unblock on {host}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Datagrams the block dropped on `host` (both chains).
fn blocked(lab: &Lab, host: &str) -> u64 {
    let out = lab.exec(host, &["nft", "list", "table", "inet", "weftblock"]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "packets")
        .filter_map(|w| w[1].parse::<u64>().ok())
        .sum()
}

#[test]
fn blocked_hosts_talk_through_a_relay_that_sees_no_plaintext_and_go_direct_when_unblocked() {
    let lab = Lab::up_with(3, 1, &[("h2", "[relay]\nenable = true\n")]);
    let (c1, c3) = ("h1c1", "h3c1");
    let ip3 = lab.ip(c3);
    assert!(lab.ping(c1, &ip3), "h1c1 -> h3c1 before the block");
    assert_eq!(path(&lab, "h1", "h3").as_deref(), Some("direct"));

    block(&lab, "h1", 3);
    block(&lab, "h3", 1);
    // Traffic keeps trying; the session's silence moves it onto h2.
    let took = within(Duration::from_secs(30), || {
        lab.exec(c1, &["ping", "-n", "-q", "-c", "1", "-W", "1", &ip3]).status.success()
            && path(&lab, "h1", "h3").as_deref() == Some("via h2")
    });
    let took = took.unwrap_or_else(|| {
        panic!(
            "no relayed path within 30 s: h1 sees {:?}, h3 sees {:?}",
            path(&lab, "h1", "h3"),
            path(&lab, "h3", "h1")
        )
    });
    eprintln!("h1c1 reached h3c1 through h2 {:.1} s after the block", took.as_secs_f64());
    assert!(blocked(&lab, "h1") > 0, "the block dropped nothing: the test proves nothing");
    assert!(within(Duration::from_secs(10), || path(&lab, "h3", "h1").as_deref() == Some("via h2")).is_some());
    lab.transfer_intact(c1, c3, 20);
    lab.transfer_intact(c3, c1, 20);
    assert!(counter(&lab, "h2", "relay_forwarded") > 10_000, "h2 passed the transfers on");
    assert!(counter(&lab, "h1", "peers_relayed") >= 1);

    // The relay never sees plaintext: a marker pinged through it is in neither direction's
    // capture on h2 (every interface), while the receiving container's capture has it.
    let marker_hex = "77656674726c796d61726b6572"; // "weftrlymarker"
    let cap_h2 = lab.dir().join("h2.pcap");
    let cap_c3 = lab.dir().join("h3c1.pcap");
    let tcpdump = |node: &str, file: &std::path::Path| {
        let f = file.display().to_string();
        lab.spawn_logged(
            node,
            &["timeout", "20", "tcpdump", "-i", "any", "-U", "-s", "0", "-w", &f],
            &lab.dir().join(format!("{node}-tcpdump.log")),
        )
    };
    let mut d2 = tcpdump("h2", &cap_h2);
    let mut d3 = tcpdump(c3, &cap_c3);
    // Both captures must run before the marker pings leave: tcpdump says so once it listens.
    for node in ["h2", c3] {
        let log = lab.dir().join(format!("{node}-tcpdump.log"));
        let listening = || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("listening on"));
        assert!(
            within(Duration::from_secs(15), listening).is_some(),
            "tcpdump in {node} never started listening"
        );
    }
    let pinged = lab.exec(c1, &["ping", "-n", "-q", "-c", "5", "-i", "0.2", "-p", marker_hex, &ip3]);
    assert!(pinged.status.success(), "marker pings: {}", String::from_utf8_lossy(&pinged.stdout));
    std::thread::sleep(Duration::from_secs(1));
    for d in [&mut d2, &mut d3] {
        let _ = std::process::Command::new("kill").args(["-INT", &d.0.id().to_string()]).status();
        let _ = d.0.wait();
    }
    let marker = b"weftrlymarker";
    let has = |f: &std::path::Path| {
        let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        (bytes.len(), bytes.windows(marker.len()).any(|w| w == marker))
    };
    let (len3, seen3) = has(&cap_c3);
    assert!(seen3, "the receiver's own capture ({len3} bytes) lacks the marker: the check proves nothing");
    let (len2, seen2) = has(&cap_h2);
    assert!(len2 > 1000, "h2's capture is empty ({len2} bytes)");
    assert!(!seen2, "the relay's capture holds the plaintext marker");

    // The block is lifted during a transfer: the path goes direct, the transfer arrives intact.
    std::thread::scope(|s| {
        let t = s.spawn(|| lab.transfer_intact(c1, c3, 60));
        std::thread::sleep(Duration::from_millis(500));
        unblock(&lab, "h1");
        unblock(&lab, "h3");
        t.join().expect("the transfer across the switch");
    });
    let direct = within(Duration::from_secs(30), || {
        path(&lab, "h1", "h3").as_deref() == Some("direct")
            && path(&lab, "h3", "h1").as_deref() == Some("direct")
    });
    assert!(direct.is_some(), "still relayed: {:?} / {:?}", path(&lab, "h1", "h3"), path(&lab, "h3", "h1"));
    let forwarded = counter(&lab, "h2", "relay_forwarded");
    lab.transfer_intact(c1, c3, 20);
    assert!(counter(&lab, "h2", "relay_forwarded") < forwarded + 100, "direct again, h2 passes nothing on");
}

/// NAT routers made by a test, removed on drop (LAB.md rule 3).
struct Routers {
    names: Vec<String>,
}

impl Drop for Routers {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = std::process::Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Moves `host` (h<k>) behind a new NAT router `<tag>r<k>`: masquerading with one mapping per
/// socket (Linux's default: port kept, endpoint-independent) or one per destination
/// (`fully-random`: symmetric). The host's daemon restarts listening on the wildcard address,
/// so it advertises its private address, as a host behind NAT does.
fn behind_nat(lab: &Lab, routers: &mut Routers, k: usize, symmetric: bool) {
    let host = format!("h{k}");
    let r = format!("{}r{k}", lab.tag);
    let ul = lab.netns("ul");
    let h = lab.netns(&host);
    lab.stop_daemon(&host, "TERM");
    routers.names.push(r.clone());
    let masq = if symmetric { "masquerade fully-random" } else { "masquerade" };
    let script = format!(
        "set -e
        ip netns add {r}
        ip -n {r} link set lo up
        ip -n {ul} link set {h} netns {r}
        ip -n {r} link set {h} name lan
        ip -n {r} addr add 192.168.{k}.1/24 dev lan
        ip -n {r} link set lan up
        ip -n {ul} link add {tag}w{k} mtu 1500 type veth peer name wan mtu 1500 netns {r}
        ip -n {ul} link set {tag}w{k} master br0 up
        ip -n {r} addr add 10.200.0.10{k}/24 dev wan
        ip -n {r} link set wan up
        ip netns exec {r} sysctl -qw net.ipv4.ip_forward=1
        ip -n {h} addr flush dev eth0
        ip -n {h} neigh flush dev eth0
        ip -n {h} addr add 192.168.{k}.2/24 dev eth0
        ip -n {h} route add default via 192.168.{k}.1
        ip netns exec {r} nft -f - <<'RULES'
table ip nat {{
  chain post {{
    type nat hook postrouting priority 100;
    oifname \"wan\" {masq}
  }}
}}
table inet fw {{
  chain input {{
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    iifname {{ \"lo\", \"lan\" }} accept
  }}
  chain forward {{
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname \"lan\" accept
  }}
}}
RULES
",
        tag = lab.tag,
    );
    let out = std::process::Command::new("sh").arg("-c").arg(&script).output().expect("sh");
    assert!(out.status.success(), "NAT router for {host}: {}", String::from_utf8_lossy(&out.stderr));
    lab.set_config_line(&host, "underlay", "listen", "\"0.0.0.0:51820\"");
    lab.start_daemon(&host);
}

/// Two hosts behind their own NAT, h1 public and relaying; returns how h2 reaches h3 once
/// their containers ping each other, after checking a transfer.
fn nat_lab(symmetric: bool) -> (Lab, Routers, Option<String>) {
    let lab = Lab::up_with(3, 1, &[("h1", "[relay]\nenable = true\n")]);
    let mut routers = Routers { names: Vec::new() };
    behind_nat(&lab, &mut routers, 2, symmetric);
    behind_nat(&lab, &mut routers, 3, symmetric);
    let ip3 = lab.ip("h3c1");
    let took = within(Duration::from_secs(60), || {
        lab.exec("h2c1", &["ping", "-n", "-q", "-c", "1", "-W", "1", &ip3]).status.success()
    });
    let took = took.unwrap_or_else(|| panic!("h2c1 never reached h3c1: h2 sees {:?}", lab.peers("h2")));
    eprintln!(
        "behind NATs (symmetric: {symmetric}): h2c1 reached h3c1 {:.1} s after the restart",
        took.as_secs_f64()
    );
    // Punching, where it works, has some rounds to get through.
    let settled = within(Duration::from_secs(30), || path(&lab, "h2", "h3").as_deref() == Some("direct"));
    eprintln!("path h2 -> h3: {:?} (direct after {settled:?})", path(&lab, "h2", "h3"));
    lab.transfer_intact("h2c1", "h3c1", 20);
    let p = path(&lab, "h2", "h3");
    (lab, routers, p)
}

#[test]
fn hosts_behind_port_preserving_nats_meet_directly_after_punching() {
    let (lab, _routers, p) = nat_lab(false);
    assert_eq!(p.as_deref(), Some("direct"), "punching failed: {:?}", lab.peers("h2"));
    // Each side switches to the punched path on its own; h3's may follow h2's a moment later.
    within(Duration::from_secs(15), || path(&lab, "h3", "h2").as_deref() == Some("direct"));
    assert_eq!(path(&lab, "h3", "h2").as_deref(), Some("direct"));
    // The direct path is the NAT's mapping, not the private address h3 advertises.
    let h3 = lab.peers("h2").into_iter().find(|p| p["name"] == "h3").expect("h3");
    assert_eq!(h3["endpoint"], "10.200.0.103:51820", "{h3}");
    assert!(counter(&lab, "h2", "relay_punches") > 0);
}

#[test]
fn hosts_behind_symmetric_nats_stay_on_the_relay() {
    let (lab, _routers, p) = nat_lab(true);
    assert_eq!(p.as_deref(), Some("via h1"), "{:?}", lab.peers("h2"));
    assert!(counter(&lab, "h1", "relay_forwarded") > 10_000, "h1 passed the transfer on");
}
