//! Lab test of local anti-spoofing (issue 15, item 5): a container that takes its neighbour
//! container's address reaches no other host as that neighbour. Two hosts: containers a1 and
//! a2 on h1, b1 on h2 (lab.sh names them h1c1, h1c2, h2c1). Evidence without packet capture:
//! b1's kernel counts the echo requests it receives (its namespace's /proc/net/snmp), h1's
//! daemon counts the frames it refused (`drop_local_spoof`, `weft_drops_total{reason=
//! "local_spoof"}`).

mod common;

use common::Lab;

/// `ping` from `from` with source address `src`: 3 echo requests, whatever the answers.
fn ping_from(lab: &Lab, from: &str, src: &str, to: &str) -> bool {
    lab.exec(from, &["ping", "-n", "-q", "-c", "3", "-i", "0.3", "-W", "1", "-I", src, to]).status.success()
}

#[test]
fn rogue_container_taking_its_neighbours_ip_reaches_no_other_host() {
    let lab = Lab::up(2, 2);
    let (a1, a2, b1) = ("h1c1", "h1c2", "h2c1");
    let (a1_ip, a2_ip, b1_ip) = (lab.ip(a1), lab.ip(a2), lab.ip(b1));
    // As itself a1 reaches b1; that also leaves b1's MAC in a1's neighbour cache, so the
    // spoofed echo requests below leave a1 without a new ARP round.
    assert!(lab.ping(a1, &b1_ip), "a1 cannot reach b1 as itself");
    let echoes = lab.echo_requests_received(b1);
    let refused = lab.counter("h1", "drop_local_spoof");

    // a1 puts a2's address on its eth0 and pings b1 from it.
    let add = lab.exec(a1, &["ip", "addr", "add", &format!("{a2_ip}/16"), "dev", "eth0"]);
    assert!(add.status.success(), "ip addr add: {}", String::from_utf8_lossy(&add.stderr));
    // (Its replies would go to a2, so the ping fails either way: b1's count is the evidence.)
    assert!(!ping_from(&lab, a1, &a2_ip, &b1_ip), "a1 got answers as a2");
    assert_eq!(
        lab.echo_requests_received(b1),
        echoes,
        "b1 received echo requests that a1 sent as a2 ({a2_ip}): h1 let a1 speak as its neighbour"
    );
    let refused_now = lab.counter("h1", "drop_local_spoof");
    assert!(refused_now > refused, "h1 did not count the frames it refused ({refused} -> {refused_now})");
    let out = lab.exec("h1", &["curl", "-sf", "http://127.0.0.1:9571/metrics"]);
    let metrics = String::from_utf8_lossy(&out.stdout);
    let sample = metrics.lines().find(|l| l.starts_with(r#"weft_drops_total{reason="local_spoof"}"#));
    assert!(sample.is_some_and(|l| !l.ends_with(" 0")), "no local_spoof drops in h1's metrics:\n{metrics}");

    // a1 from its own address, and a2 as itself, still reach b1.
    assert!(ping_from(&lab, a1, &a1_ip, &b1_ip), "a1 cannot reach b1 as itself after the attempt");
    assert!(lab.echo_requests_received(b1) > echoes, "b1 counted no echo request from a1 as itself");
    assert!(lab.ping(a2, &b1_ip), "a2 cannot reach b1");
}
