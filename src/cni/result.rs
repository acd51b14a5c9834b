//! The CNI success result: built from the daemon's attach answer, merged behind a chained
//! `prevResult` (earlier interfaces keep their indices, ours follow), shaped for the requested
//! version (`ips[].version` exists before 1.0.0 only). Pure functions over JSON values (the
//! runtime's); the daemon's answer is the typed [`Attached`].

use super::error::{self, CniError};
use ipnet::IpNet;
use serde_json::{json, Value};

pub use crate::report::Attached;

/// The ADD result for `version`: `prev`'s interfaces, addresses and routes, then ours.
pub fn build(version: &str, prev: Option<&Value>, a: &Attached, sandbox: &str) -> Value {
    let list = |k: &str| prev.and_then(|p| p.get(k)).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut interfaces = list("interfaces");
    let mut ips = list("ips");
    let mut routes = list("routes");
    let host_index = interfaces.len();
    interfaces.push(json!({"name": a.host_ifname}));
    interfaces.push(json!({"name": a.ifname, "mac": a.mac, "sandbox": sandbox}));
    // One address per family of the network, both on this one interface, each with its
    // family's default route (unless an earlier plugin's result already has one).
    for addr in a.all_addresses() {
        ips.push(json!({
            "address": format!("{}/{}", addr.ip, addr.prefix), "gateway": addr.gateway.to_string(),
            "interface": host_index + 1,
        }));
        let default_dst = if addr.ip.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
        if !routes.iter().any(|r| r.get("dst").and_then(Value::as_str) == Some(default_dst)) {
            routes.push(json!({"dst": default_dst, "gw": addr.gateway.to_string()}));
        }
    }
    for ip in &mut ips {
        shape_ip(version, ip);
    }
    let mut out = json!({"cniVersion": version, "interfaces": interfaces, "ips": ips, "routes": routes});
    let prev_dns = prev
        .and_then(|p| p.get("dns"))
        .filter(|d| d.get("nameservers").is_some_and(|n| n.as_array().is_some_and(|n| !n.is_empty())));
    match (prev_dns, &a.dns) {
        (Some(d), _) => out["dns"] = d.clone(),
        (None, Some(dns)) => out["dns"] = json!({"nameservers": dns.nameservers, "search": dns.search}),
        (None, None) => {}
    }
    out
}

/// The addresses `prev` gives the interface `ifname` in `sandbox` (two on a dual-stack
/// network), for CHECK.
pub fn addresses_of(prev: &Value, ifname: &str, sandbox: &str) -> Result<Vec<IpNet>, CniError> {
    let decode = |m: &str| CniError::new(error::DECODE, format!("prevResult: {m}"));
    let interfaces =
        prev.get("interfaces").and_then(Value::as_array).ok_or_else(|| decode("no \"interfaces\""))?;
    let ips = prev.get("ips").and_then(Value::as_array).ok_or_else(|| decode("no \"ips\""))?;
    let index = interfaces
        .iter()
        .position(|i| {
            i.get("name").and_then(Value::as_str) == Some(ifname)
                && i.get("sandbox").and_then(Value::as_str) == Some(sandbox)
        })
        .ok_or_else(|| decode(&format!("no interface {ifname:?} in {sandbox}")))?;
    let found: Vec<IpNet> = ips
        .iter()
        .filter(|ip| ip.get("interface").and_then(Value::as_u64) == Some(index as u64))
        .map(|ip| {
            ip.get("address")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| decode("an address is not in CIDR form"))
        })
        .collect::<Result<_, _>>()?;
    if found.is_empty() {
        return Err(decode(&format!("no address for interface {ifname:?}")));
    }
    Ok(found)
}

/// `ips[].version` ("4" or "6") before 1.0.0; absent from 1.0.0 on.
fn shape_ip(version: &str, ip: &mut Value) {
    let Some(obj) = ip.as_object_mut() else { return };
    if version == "1.0.0" {
        obj.remove("version");
        return;
    }
    let family =
        obj.get("address").and_then(Value::as_str).and_then(|a| a.parse::<IpNet>().ok()).map(|n| match n {
            IpNet::V4(_) => "4",
            IpNet::V6(_) => "6",
        });
    if let Some(f) = family {
        obj.insert("version".to_owned(), json!(f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon's attach answer, as it arrives.
    fn attached() -> Attached {
        serde_json::from_value(json!({
            "name": "c", "network": "default", "ip": "10.42.1.5", "prefix": 16, "gateway": "10.42.1.1",
            "mac": "02:00:00:00:00:05", "host_ifname": "wv1234abcd", "ifname": "eth0", "mtu": 1400,
            "labels": {}, "dns": {"nameservers": ["10.42.1.1"], "search": ["default.weft"]},
            "resolv_conf": null,
        }))
        .unwrap()
    }

    #[test]
    fn alone() {
        let r = build("1.0.0", None, &attached(), "/run/netns/c");
        assert_eq!(r["interfaces"][1]["sandbox"], "/run/netns/c");
        assert_eq!(r["ips"][0], json!({"address": "10.42.1.5/16", "gateway": "10.42.1.1", "interface": 1}));
        assert_eq!(r["routes"][0], json!({"dst": "0.0.0.0/0", "gw": "10.42.1.1"}));
        assert_eq!(r["dns"]["search"][0], "default.weft");
        assert_eq!(addresses_of(&r, "eth0", "/run/netns/c").unwrap()[0].to_string(), "10.42.1.5/16");
        assert!(addresses_of(&r, "eth1", "/run/netns/c").is_err());
    }

    #[test]
    fn dual_stack_lists_both_addresses_on_one_interface_with_both_default_routes() {
        let mut a = attached();
        a.addresses = serde_json::from_value(json!([
            {"ip": "10.42.1.5", "prefix": 16, "gateway": "10.42.1.1"},
            {"ip": "fd42:0:1::2", "prefix": 48, "gateway": "fd42:0:1::1"},
        ]))
        .unwrap();
        let r = build("1.0.0", None, &a, "/run/netns/c");
        assert_eq!(r["ips"][0], json!({"address": "10.42.1.5/16", "gateway": "10.42.1.1", "interface": 1}));
        assert_eq!(
            r["ips"][1],
            json!({"address": "fd42:0:1::2/48", "gateway": "fd42:0:1::1", "interface": 1})
        );
        assert_eq!(r["routes"][0], json!({"dst": "0.0.0.0/0", "gw": "10.42.1.1"}));
        assert_eq!(r["routes"][1], json!({"dst": "::/0", "gw": "fd42:0:1::1"}));
        assert_eq!(r["interfaces"].as_array().unwrap().len(), 2, "one interface");
        let found = addresses_of(&r, "eth0", "/run/netns/c").unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(build("0.4.0", None, &a, "/run/netns/c")["ips"][1]["version"], "6");
    }

    #[test]
    fn chained_and_old_versions() {
        let prev = json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "lo0", "sandbox": "/run/netns/c"}],
            "ips": [{"version": "4", "address": "192.0.2.2/24", "interface": 0}],
        });
        let r = build("0.4.0", Some(&prev), &attached(), "/run/netns/c");
        assert_eq!(r["interfaces"][0]["name"], "lo0");
        assert_eq!(r["interfaces"][2]["name"], "eth0");
        assert_eq!(r["ips"][1]["interface"], 2);
        assert_eq!(r["ips"][1]["version"], "4");
        let r = build("1.0.0", Some(&prev), &attached(), "/run/netns/c");
        assert!(r["ips"][0].get("version").is_none());
    }
}
