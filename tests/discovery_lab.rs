//! Lab tests of service discovery with real clients: services declared in node configs and
//! registered at run time, health checks that take instances out of DNS answers, a host whose
//! death takes its instances with it, SRV records, NXDOMAIN, forwarding to an upstream inside
//! the lab, the containers' search domain, the registry HTTP API, and a DNS server that keeps
//! answering after a burst of malformed packets.

mod common;

use common::{Bg, Lab};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn spawn_in(lab: &Lab, node: &str, args: &[&str]) -> Bg {
    lab.spawn(node, args)
}

/// A minimal HTTP server answering 200 to anything on :8080.
fn http_server(lab: &Lab, container: &str) -> Bg {
    spawn_in(
        lab,
        container,
        &["socat", "TCP-LISTEN:8080,fork,reuseaddr", "SYSTEM:echo HTTP/1.0 200 OK; echo"],
    )
}

/// `dig +short` from `node` (its resolv.conf names the host's weft DNS).
fn dig(lab: &Lab, node: &str, args: &[&str]) -> Vec<String> {
    let mut a = vec!["dig", "+short", "+time=2", "+tries=2"];
    a.extend_from_slice(args);
    let out = lab.exec(node, &a);
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).filter(|l| !l.starts_with(';')).collect()
}

fn dig_status(lab: &Lab, node: &str, name: &str) -> String {
    let out = lab.exec(node, &["dig", "+time=2", "+tries=2", name]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("no answer").to_owned()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn addrs(lab: &Lab, node: &str, name: &str) -> BTreeSet<String> {
    dig(lab, node, &[name]).into_iter().collect()
}

/// Waits until `cond` holds; panics with `what` and the last observation after `limit`.
/// Returns how long it took.
fn wait_for<T: std::fmt::Debug>(
    limit: Duration,
    what: &str,
    mut observe: impl FnMut() -> T,
    ok: impl Fn(&T) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let v = observe();
        if ok(&v) {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            panic!("{what} not reached within {limit:?}; last seen: {v:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An API token file of this test (mode 0600), removed on drop.
struct ApiTokenFile {
    path: std::path::PathBuf,
}

impl ApiTokenFile {
    const TOKEN: &str = "discovery-lab-token-0123456789";

    fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let path = std::path::PathBuf::from(format!("/tmp/weft-discovery-lab-{}.token", std::process::id()));
        std::fs::write(&path, Self::TOKEN).expect("write the API token file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Self { path }
    }
}

impl Drop for ApiTokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

const WEB_SERVICE: &str = r#"
[[service]]
name = "web"
container = "CONTAINER"
port = 8080
tags = ["v1"]
check = { type = "http", path = "/health", interval = "1s", timeout = "500ms", fall = 2 }
"#;

/// The upstream resolver every host forwards to: dnsmasq on h3's underlay address.
const UPSTREAM: &str = r#"
[dns]
upstreams = ["10.200.0.3:5353"]
ttl = 1
"#;

#[test]
fn service_discovery_end_to_end() {
    let h1 = WEB_SERVICE.replace("CONTAINER", "h1c1");
    let h2 = WEB_SERVICE.replace("CONTAINER", "h2c1");
    // h3 takes registry writes over HTTP, with a token (without one, PUT is refused).
    let token = ApiTokenFile::new();
    let h3 = format!("[metrics]\napi_token_file = \"{}\"\n", token.path.display());
    let lab = Lab::up_with(3, 1, &[("all", UPSTREAM), ("h1", &h1), ("h2", &h2), ("h3", &h3)]);
    let (ip1, ip2) = (lab.ip("h1c1"), lab.ip("h2c1"));
    let _upstream = spawn_in(
        &lab,
        "h3",
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=5353",
            "--listen-address=10.200.0.3",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--user=root",
            "--pid-file=",
            "--address=/example.test/192.0.2.7",
        ],
    );
    let mut web1 = Some(http_server(&lab, "h1c1"));
    let _web2 = http_server(&lab, "h2c1");

    // Declared on h1 and h2, resolved from a container on h3: both addresses, once healthy.
    let both = set(&[&ip1, &ip2]);
    let took = wait_for(
        Duration::from_secs(30),
        "web resolving to both instances",
        || addrs(&lab, "h3c1", "web.service.weft"),
        |a| *a == both,
    );
    eprintln!("web.service.weft → both instances after {took:?}");

    // SRV: port and targets, which resolve to the instances.
    let srv: BTreeSet<String> = dig(&lab, "h3c1", &["SRV", "_web._tcp.service.weft"]).into_iter().collect();
    assert_eq!(srv, set(&["1 1 8080 h1c1.container.weft.", "1 1 8080 h2c1.container.weft."]));
    assert_eq!(addrs(&lab, "h3c1", "h2c1.container.weft"), set(&[&ip2]));
    assert_eq!(addrs(&lab, "h3c1", "h2.node.weft"), set(&["10.200.0.2"]));
    // Unknown names in our domain: NXDOMAIN; case does not matter.
    assert_eq!(dig_status(&lab, "h3c1", "nothere.service.weft"), "NXDOMAIN");
    assert_eq!(dig_status(&lab, "h3c1", "nothere.weft"), "NXDOMAIN");
    assert_eq!(addrs(&lab, "h3c1", "WEB.Service.Weft"), both);
    // Outside our domain: forwarded to the lab's upstream and answered.
    assert_eq!(dig(&lab, "h3c1", &["example.test"]), vec!["192.0.2.7".to_owned()]);
    // The container's search domain: a bare service name resolves (libc resolver, as apps do).
    let out = lab.exec("h3c1", &["getent", "hosts", "web"]);
    let got: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert!(!got.is_empty() && got.is_subset(&both), "getent hosts web: {got:?}");
    assert_eq!(dig(&lab, "h3c1", &["+search", "web"]).into_iter().collect::<BTreeSet<_>>(), both);

    // The registry API (on h1's loopback listener) lists both instances with their health.
    // h2's instance turned passing on h3 (the wait above); it reaches h1 by its own gossip.
    wait_for(
        Duration::from_secs(15),
        "h1's catalog listing both web instances passing on port 8080, tag v1",
        || {
            let out = lab.exec("h1", &["curl", "-sf", "http://127.0.0.1:9571/v1/catalog/service/web"]);
            serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)
        },
        |v| {
            v.as_array().is_some_and(|l| {
                l.len() == 2
                    && l.iter().all(|i| i["health"] == "passing" && i["port"] == 8080 && i["tags"][0] == "v1")
            })
        },
    );

    // Operations CLI on the same lab: an overlay probe with its RTT, and the networks table.
    let out = lab.weft("h1", &["ping", "h3", "--count", "2", "--interval", "0.2", "--json"]);
    assert!(out.status.success(), "weft ping: {}", String::from_utf8_lossy(&out.stderr));
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Value = serde_json::from_str(line).expect("ping JSON line");
        assert!(v["rtt_ms"].as_f64().is_some_and(|r| r > 0.0), "{v}");
    }
    let out = lab.weft("h1", &["ping", "nobody", "--count", "1"]);
    assert!(!out.status.success());
    let out = lab.weft("h1", &["networks", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("networks JSON");
    assert_eq!((v[0]["name"].as_str(), v[0]["vni"].as_u64()), (Some("default"), Some(42)), "{v}");

    // Stop the service process on h1: its check fails twice (interval 1 s) and the change
    // gossips; the address leaves the answers.
    drop(web1.take());
    let took = wait_for(
        Duration::from_secs(30),
        "h1's instance leaving the answers",
        || addrs(&lab, "h3c1", "web.service.weft"),
        |a| *a == set(&[&ip2]),
    );
    eprintln!("stopped instance left the answers after {took:?} (interval 1 s × fall 2 + gossip)");
    let out = lab.exec("h1", &["curl", "-sf", "http://127.0.0.1:9571/v1/catalog/service/web?passing"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("catalog JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");

    // It comes back when the process does.
    web1 = Some(http_server(&lab, "h1c1"));
    wait_for(
        Duration::from_secs(30),
        "h1's instance back",
        || addrs(&lab, "h3c1", "web.service.weft"),
        |a| *a == both,
    );

    // Kill h2's daemon: failure detection removes its instances (and its node name).
    lab.stop_daemon("h2", "KILL");
    let took = wait_for(
        Duration::from_secs(60),
        "dead host's instance leaving the answers",
        || addrs(&lab, "h3c1", "web.service.weft"),
        |a| *a == set(&[&ip1]),
    );
    eprintln!("dead host's instance left the answers after {took:?}");
    assert_eq!(dig_status(&lab, "h3c1", "h2.node.weft"), "NXDOMAIN");

    // Run-time registration through the CLI and through the HTTP API, and removal.
    let out = lab.weft("h3", &["service", "add", "db", "--container", "h3c1", "--port", "5432"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let body = r#"{"name":"cache","network":"default","target":{"address":"10.42.3.1"},"port":6379,"protocol":"tcp"}"#;
    let url = "http://127.0.0.1:9571/v1/agent/services";
    let out = lab
        .exec("h3", &["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "-d", body, url]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401", "PUT without the token");
    let auth = format!("Authorization: Bearer {}", ApiTokenFile::TOKEN);
    let out = lab.exec("h3", &["curl", "-sf", "-X", "PUT", "-H", &auth, "-d", body, url]);
    assert!(out.status.success(), "PUT /v1/agent/services: {}", String::from_utf8_lossy(&out.stdout));
    let ip3 = lab.ip("h3c1");
    wait_for(
        Duration::from_secs(20),
        "db and cache visible from h1c1",
        || (addrs(&lab, "h1c1", "db.service.weft"), addrs(&lab, "h1c1", "cache.service.weft")),
        |(d, c)| *d == set(&[&ip3]) && *c == set(&["10.42.3.1"]),
    );
    assert_eq!(
        dig(&lab, "h1c1", &["SRV", "_cache._tcp.service.weft"]),
        vec!["1 1 6379 10-42-3-1.addr.weft.".to_owned()]
    );
    let out = lab.weft("h3", &["service", "rm", "db"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for(
        Duration::from_secs(20),
        "db gone",
        || dig_status(&lab, "h1c1", "db.service.weft"),
        |s| s == "NXDOMAIN",
    );
    drop(web1);
}

#[test]
fn malformed_dns_packets_do_not_stall_the_server() {
    let lab = Lab::up(1, 1);
    let gw = "10.42.1.1";
    // Thousands of datagrams of garbage, truncated headers and absurd counts, then TCP junk.
    let script = format!(
        "for i in $(seq 1 2000); do head -c $((i % 700)) /dev/urandom > /dev/udp/{gw}/53; done; \
         for i in $(seq 1 200); do printf '\\x12\\x34\\x01\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff' > /dev/udp/{gw}/53; done; \
         for i in $(seq 1 50); do printf '\\x00\\x40\\x12' | timeout 1 socat - TCP:{gw}:53 >/dev/null 2>&1; done; \
         head -c 100000 /dev/urandom | timeout 2 socat - TCP:{gw}:53 >/dev/null 2>&1; true"
    );
    let out = lab.exec("h1c1", &["bash", "-c", &script]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Still answering, over UDP and TCP.
    assert_eq!(dig(&lab, "h1c1", &["h1c1.container.weft"]), vec![lab.ip("h1c1")]);
    assert_eq!(dig(&lab, "h1c1", &["+tcp", "h1.node.weft"]), vec!["10.200.0.1".to_owned()]);
    let out = lab.weft("h1", &["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let malformed = v["dns"]["malformed"].as_u64().unwrap_or(0);
    assert!(malformed > 1000, "malformed counter: {}", v["dns"]);
}
