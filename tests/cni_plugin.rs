//! The CNI plugin against a real daemon: one lab host, container namespaces made here, the
//! built `weft` binary exec'd as a runtime would (`CNI_*` environment, configuration on stdin)
//! inside the host's namespace. Every success result is checked against the CNI 1.0 result
//! schema; every failure against the error object and its spec code.

mod common;

use common::Lab;
use ipnet::IpNet;
use serde_json::{json, Value};
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

const WEFT_BIN: &str = env!("CARGO_BIN_EXE_weft");

/// A network namespace made by this test, deleted on drop (if it still exists).
struct Netns(String);

impl Netns {
    fn add(name: String) -> Netns {
        let ok = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add").success();
        assert!(ok, "cannot create netns {name}");
        Netns(name)
    }
    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }
    fn delete(&self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if std::path::Path::new(&self.path()).exists() {
            self.delete();
        }
    }
}

/// What one plugin run printed and how it ended.
struct Run {
    ok: bool,
    out: Option<Value>,
    raw: String,
    stderr: String,
}

/// Runs the plugin in `lab`'s h1 with `env` only (plus PATH) and `stdin`.
fn plugin(lab: &Lab, env: &[(&str, &str)], stdin: &str) -> Run {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.netns("h1"), WEFT_BIN])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the plugin");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let o = child.wait_with_output().expect("plugin output");
    let raw = String::from_utf8_lossy(&o.stdout).into_owned();
    let out = (!raw.trim().is_empty()).then(|| {
        serde_json::from_str(&raw)
            .unwrap_or_else(|e| panic!("plugin stdout is not one JSON document ({e}): {raw}"))
    });
    Run { ok: o.status.success(), out, raw, stderr: String::from_utf8_lossy(&o.stderr).into_owned() }
}

fn conf(lab: &Lab, version: &str, network: &str, prev: Option<&Value>) -> String {
    let mut c = json!({
        "cniVersion": version, "name": "weftnet", "type": "weft",
        "socket": lab.socket("h1"), "network": network, "labels": {"app": "cni-test"},
    });
    if let Some(p) = prev {
        c["prevResult"] = p.clone();
    }
    c.to_string()
}

fn env<'a>(cmd: &'a str, id: &'a str, netns: &'a str, args: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut e = vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", id),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];
    if !netns.is_empty() {
        e.push(("CNI_NETNS", netns));
    }
    if !args.is_empty() {
        e.push(("CNI_ARGS", args));
    }
    e
}

fn expect_ok(r: &Run, what: &str) -> Option<Value> {
    assert!(r.ok, "{what} failed: {}\nstderr: {}", r.raw, r.stderr);
    r.out.clone()
}

/// Checks the error object and returns its code.
fn expect_err(r: &Run, what: &str) -> u64 {
    assert!(!r.ok, "{what} should fail, printed {}", r.raw);
    let e = r.out.as_ref().unwrap_or_else(|| panic!("{what}: no error object on stdout"));
    assert!(e["cniVersion"].is_string(), "{what}: error without cniVersion: {e}");
    assert!(e["msg"].as_str().is_some_and(|m| !m.is_empty()), "{what}: error without msg: {e}");
    e["code"].as_u64().unwrap_or_else(|| panic!("{what}: error without numeric code: {e}"))
}

/// The CNI 1.0 result schema: required fields and types, interface indices in range, CIDRs,
/// gateways inside their address's subnet, MACs, route destinations.
fn validate_result(r: &Value, version: &str) {
    assert_eq!(r["cniVersion"], version, "{r}");
    let interfaces = r["interfaces"].as_array().expect("interfaces is an array");
    for i in interfaces {
        assert!(i["name"].as_str().is_some_and(|n| !n.is_empty() && n.len() <= 15), "interface name: {i}");
        if let Some(mac) = i.get("mac") {
            let mac = mac.as_str().expect("mac is a string");
            let parts: Vec<&str> = mac.split(':').collect();
            assert!(parts.len() == 6 && parts.iter().all(|p| u8::from_str_radix(p, 16).is_ok()), "mac {mac}");
        }
        if let Some(s) = i.get("sandbox") {
            assert!(s.as_str().is_some_and(|s| s.starts_with('/')), "sandbox: {i}");
        }
    }
    let ips = r["ips"].as_array().expect("ips is an array");
    assert!(!ips.is_empty(), "no ips: {r}");
    for ip in ips {
        let net: IpNet = ip["address"].as_str().expect("address").parse().expect("address is a CIDR");
        if let Some(gw) = ip.get("gateway") {
            let gw: IpAddr = gw.as_str().expect("gateway string").parse().expect("gateway is an address");
            assert!(net.contains(&gw), "gateway {gw} outside {net}");
        }
        if let Some(idx) = ip.get("interface") {
            let idx = idx.as_u64().expect("interface is an index") as usize;
            assert!(idx < interfaces.len(), "interface index {idx} out of range: {r}");
        }
        match version {
            "1.0.0" => assert!(ip.get("version").is_none(), "1.0.0 has no ips[].version: {ip}"),
            _ => assert_eq!(ip["version"], if net.addr().is_ipv4() { "4" } else { "6" }, "{ip}"),
        }
    }
    for route in r["routes"].as_array().map(Vec::as_slice).unwrap_or_default() {
        route["dst"].as_str().expect("dst").parse::<IpNet>().expect("dst is a CIDR");
        if let Some(gw) = route.get("gw") {
            gw.as_str().expect("gw").parse::<IpAddr>().expect("gw is an address");
        }
    }
    if let Some(dns) = r.get("dns") {
        for k in ["nameservers", "search"] {
            if let Some(list) = dns.get(k) {
                assert!(list.as_array().expect("dns list").iter().all(Value::is_string), "dns: {dns}");
            }
        }
    }
}

/// Our address and gateway from a result: the last ips entry.
fn ours(r: &Value) -> (IpNet, String) {
    let ip = r["ips"].as_array().and_then(|a| a.last()).expect("an ips entry").clone();
    (ip["address"].as_str().unwrap().parse().unwrap(), ip["gateway"].as_str().unwrap().to_owned())
}

/// Names of the containers h1's daemon has attached.
fn attached(lab: &Lab) -> Vec<String> {
    let o = lab.weft("h1", &["status", "--json"]);
    assert!(o.status.success(), "weft status: {}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("status JSON");
    v["networks"][0]["containers"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn cni_plugin_conformance() {
    let lab = Lab::up(1, 0);
    let ns = Netns::add(format!("{}cni1", lab.tag));
    let path = ns.path();
    let args = "IgnoreUnknown=1;K8S_POD_NAME=pod-a;K8S_POD_NAMESPACE=team1;K8S_POD_UID=abc";
    let id = "c0ffee00000000000000000000000001";

    // VERSION, both as a runtime runs it and as `weft cni`.
    let v = expect_ok(&plugin(&lab, &[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#), "VERSION")
        .unwrap();
    assert_eq!(v, json!({"cniVersion": "1.0.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}));
    let o = Command::new(WEFT_BIN)
        .arg("cni")
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("supportedVersions"));

    // ADD: a valid result, a working interface, the pod's name at the daemon.
    let add = plugin(&lab, &env("ADD", id, &path, args), &conf(&lab, "1.0.0", "default", None));
    let result = expect_ok(&add, "ADD").expect("ADD prints a result");
    validate_result(&result, "1.0.0");
    let ifs = result["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 2, "{result}");
    assert_eq!((ifs[1]["name"].as_str(), ifs[1]["sandbox"].as_str()), (Some("eth0"), Some(path.as_str())));
    assert_eq!(result["ips"][0]["interface"], 1);
    let (addr, gw) = ours(&result);
    assert_eq!(result["routes"][0], json!({"dst": "0.0.0.0/0", "gw": gw}));
    assert_eq!(attached(&lab), vec!["pod-a".to_owned()]);
    let shown = Command::new("ip")
        .args(["netns", "exec", &ns.0, "ip", "-o", "addr", "show", "eth0"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout).contains(&addr.to_string()), "eth0 lacks {addr}");
    let ping = Command::new("ip")
        .args(["netns", "exec", &ns.0, "ping", "-n", "-q", "-c", "2", "-W", "2", &gw])
        .output()
        .unwrap();
    assert!(ping.status.success(), "the container cannot ping its gateway {gw}");

    // CHECK: passes with the ADD result, fails with another address.
    let check_conf = conf(&lab, "1.0.0", "default", Some(&result));
    let check = plugin(&lab, &env("CHECK", id, &path, args), &check_conf);
    assert_eq!(expect_ok(&check, "CHECK"), None);
    let mut wrong = result.clone();
    wrong["ips"][0]["address"] = json!("10.42.1.250/16");
    let bad_check =
        plugin(&lab, &env("CHECK", id, &path, args), &conf(&lab, "1.0.0", "default", Some(&wrong)));
    assert_eq!(expect_err(&bad_check, "CHECK with a wrong address"), 101);
    let nobody = "c0ffee000000000000000000000000ff";
    let other = plugin(&lab, &env("CHECK", nobody, &path, "K8S_POD_NAME=nobody"), &check_conf);
    assert_eq!(expect_err(&other, "CHECK of an unknown container"), 3);

    // An ADD of a name already attached is refused by the daemon, with its reason.
    let twice = plugin(&lab, &env("ADD", id, &path, args), &conf(&lab, "1.0.0", "default", None));
    assert_eq!(expect_err(&twice, "second ADD"), 100);

    // DEL, and DEL again: both succeed silently.
    let del_conf = conf(&lab, "1.0.0", "default", Some(&result));
    assert_eq!(expect_ok(&plugin(&lab, &env("DEL", id, &path, args), &del_conf), "DEL"), None);
    assert!(attached(&lab).is_empty());
    assert_eq!(expect_ok(&plugin(&lab, &env("DEL", id, &path, args), &del_conf), "second DEL"), None);
    assert_eq!(expect_ok(&plugin(&lab, &env("DEL", id, "", args), &del_conf), "DEL without CNI_NETNS"), None);

    // DEL after the netns is gone releases the lease: the next ADD gets the address back.
    let add = plugin(&lab, &env("ADD", id, &path, args), &conf(&lab, "1.0.0", "default", None));
    let again = expect_ok(&add, "ADD after DEL").unwrap();
    assert_eq!(ours(&again).0, addr, "a released address is handed out again");
    ns.delete();
    assert_eq!(expect_ok(&plugin(&lab, &env("DEL", id, &path, args), &del_conf), "DEL without netns"), None);
    assert!(attached(&lab).is_empty(), "DEL left a lease behind");
    let ns = Netns::add(format!("{}cni1", lab.tag));
    // No pod name: the container id names the container.
    let add = plugin(&lab, &env("ADD", id, &path, ""), &conf(&lab, "1.0.0", "default", None));
    let third = expect_ok(&add, "ADD in a new netns").unwrap();
    assert_eq!(ours(&third).0, addr, "the lease of the deleted netns was released");
    assert_eq!(attached(&lab), vec![id[..12].to_owned()]);
    assert_eq!(expect_ok(&plugin(&lab, &env("DEL", id, &path, ""), &del_conf), "DEL by container id"), None);
    assert!(attached(&lab).is_empty());

    // Chained after another plugin, in 0.4.0: its interface and address stay first.
    let prev = json!({
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "dummy0", "sandbox": path}],
        "ips": [{"version": "4", "address": "192.0.2.9/24", "interface": 0}],
    });
    let add = plugin(&lab, &env("ADD", id, &path, args), &conf(&lab, "0.4.0", "default", Some(&prev)));
    let chained = expect_ok(&add, "chained ADD").unwrap();
    validate_result(&chained, "0.4.0");
    assert_eq!(chained["interfaces"][0]["name"], "dummy0");
    assert_eq!(chained["interfaces"].as_array().unwrap().len(), 3);
    assert_eq!(chained["ips"][0]["address"], "192.0.2.9/24");
    assert_eq!(chained["ips"][1]["interface"], 2);
    assert_eq!(chained["interfaces"][2]["name"], "eth0");
    let chk = plugin(&lab, &env("CHECK", id, &path, args), &conf(&lab, "0.4.0", "default", Some(&chained)));
    assert_eq!(expect_ok(&chk, "CHECK of the chained result"), None);
    let del = plugin(&lab, &env("DEL", id, &path, args), &conf(&lab, "0.4.0", "default", Some(&chained)));
    assert_eq!(expect_ok(&del, "DEL of the chained result"), None);
    assert!(attached(&lab).is_empty());

    // Errors, with the spec's codes.
    let good = conf(&lab, "1.0.0", "default", None);
    assert_eq!(expect_err(&plugin(&lab, &env("ADD", id, &path, args), "{not json"), "invalid JSON"), 6);
    assert_eq!(expect_err(&plugin(&lab, &env("ADD", id, "", args), &good), "ADD without CNI_NETNS"), 4);
    let unknown = plugin(&lab, &env("ADD", id, &path, args), &conf(&lab, "1.0.0", "nosuchnet", None));
    assert_eq!(expect_err(&unknown, "unknown network"), 7);
    let msg = unknown.out.as_ref().unwrap()["msg"].as_str().unwrap().to_owned();
    assert!(msg.contains("nosuchnet") && msg.contains("default"), "unclear message: {msg}");
    let old = plugin(&lab, &env("ADD", id, &path, args), &conf(&lab, "0.2.0", "default", None));
    assert_eq!(expect_err(&old, "cniVersion 0.2.0"), 1);
    let strict = plugin(&lab, &env("ADD", id, &path, "K8S_POD_NAME=a;FOO=bar"), &good);
    assert_eq!(expect_err(&strict, "unknown CNI_ARGS key"), 4);
    let no_daemon = good.replace(&lab.socket("h1").display().to_string(), "/nonexistent/weft.sock");
    assert_eq!(expect_err(&plugin(&lab, &env("ADD", id, &path, args), &no_daemon), "no daemon"), 11);
    assert_eq!(expect_err(&plugin(&lab, &env("DEL", id, &path, args), &no_daemon), "DEL without daemon"), 11);
    let unknown_del = plugin(&lab, &env("DEL", id, &path, args), &conf(&lab, "1.0.0", "nosuchnet", None));
    assert_eq!(expect_ok(&unknown_del, "DEL on an unknown network"), None);
    assert!(attached(&lab).is_empty(), "a failed ADD left a lease behind");
    drop(ns);
}

/// Pods named `web` in Kubernetes namespaces `prod` and `dev` on one node: dev's ADD is refused
/// (the name is taken here), and the runtime cleans up after it with a DEL of dev's container
/// id, without a netns. That DEL must leave prod's `web` attached; prod's own DEL removes it.
#[test]
fn rogue_del_of_a_namesake_pod_in_another_namespace_leaves_it_attached() {
    let lab = Lab::up(1, 0);
    let prod_ns = Netns::add(format!("{}cnip", lab.tag));
    let dev_ns = Netns::add(format!("{}cnid", lab.tag));
    let (prod, dev) = ("c0ffee0000000000000000000000aaaa", "c0ffee0000000000000000000000bbbb");
    let (prod_args, dev_args) =
        ("K8S_POD_NAME=web;K8S_POD_NAMESPACE=prod", "K8S_POD_NAME=web;K8S_POD_NAMESPACE=dev");
    let good = conf(&lab, "1.0.0", "default", None);
    expect_ok(&plugin(&lab, &env("ADD", prod, &prod_ns.path(), prod_args), &good), "ADD of prod's web");
    let refused = plugin(&lab, &env("ADD", dev, &dev_ns.path(), dev_args), &good);
    assert_eq!(expect_err(&refused, "ADD of dev's web"), 100);
    let del = plugin(&lab, &env("DEL", dev, "", dev_args), &good);
    assert_eq!(expect_ok(&del, "DEL of dev's web"), None);
    assert_eq!(attached(&lab), vec!["web".to_owned()], "dev's DEL detached prod's pod");
    let del = plugin(&lab, &env("DEL", prod, "", prod_args), &good);
    assert_eq!(expect_ok(&del, "DEL of prod's web"), None);
    assert!(attached(&lab).is_empty(), "prod's DEL did not detach it");
}
