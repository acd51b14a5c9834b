//! The CNI 1.0 plugin: `weft` run by a container runtime with `CNI_COMMAND` set (installed as
//! `/opt/cni/bin/weft`, a symlink to the binary) or as `weft cni`. It keeps no state of its
//! own: ADD, DEL and CHECK become `attach`, `detach` and `status` requests to the node's
//! daemon over the control socket, whose lease file is the only record of what is held.
//!
//! Contract: exactly one JSON document on stdout (a result, or the spec's error object with a
//! non-zero exit), nothing else there. ADD records `CNI_CONTAINERID` in the lease, and DEL and
//! CHECK find the container by it, never by its name alone: pod names repeat across Kubernetes
//! namespaces, so a DEL by name could detach another namespace's pod. (Leases an older weft
//! wrote have no id; those are still found by name and netns.) DEL is idempotent: a container
//! the daemon does not know, or a network it does not have, is success with no output, and a
//! vanished netns does not matter since the daemon detaches by id. A daemon that cannot be
//! reached is error 11 ("try again later") for every command, DEL included: its leases live on
//! disk across restarts, so an unreachable daemon may still hold the address and the runtime
//! must retry rather than forget it.

pub mod daemon_link;
pub mod error;
pub mod input;
pub mod result;

use crate::control::Request;
use crate::report::status::{LocalContainer, NetworkStatus};
use crate::report::{Attached, Detached, Status};
use error::CniError;
use input::{Cmd, Invocation, NetConf};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::process::ExitCode;

/// Runs one plugin invocation from the process environment and stdin; prints the result or
/// error to stdout.
pub fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let read = std::io::stdin().lock().take(input::MAX_STDIN as u64 + 1).read_to_end(&mut stdin);
    let version = input::requested_version(&stdin).unwrap_or_else(|| "1.0.0".to_owned());
    let outcome = match read {
        Ok(_) => run(&stdin, |k| std::env::var(k).ok()),
        Err(e) => Err(CniError::new(error::IO_FAILURE, format!("reading stdin: {e}"))),
    };
    let (doc, code) = match outcome {
        Ok(Some(v)) => (Some(v), ExitCode::SUCCESS),
        Ok(None) => (None, ExitCode::SUCCESS),
        Err(e) => (Some(e.to_json(&version)), ExitCode::FAILURE),
    };
    if let Some(doc) = doc {
        let mut out = std::io::stdout().lock();
        let written =
            serde_json::to_writer(&mut out, &doc).is_ok() && writeln!(out).is_ok() && out.flush().is_ok();
        if !written {
            return ExitCode::FAILURE;
        }
    }
    code
}

/// One invocation: `stdin` is the network configuration, `var` reads the environment.
/// `Ok(None)` is success with nothing to print.
pub fn run(stdin: &[u8], var: impl Fn(&str) -> Option<String>) -> Result<Option<Value>, CniError> {
    let cmd = Cmd::parse(&var("CNI_COMMAND").unwrap_or_default())?;
    if cmd == Cmd::Version {
        return Ok(Some(json!({"cniVersion": "1.0.0", "supportedVersions": input::SUPPORTED_VERSIONS})));
    }
    let conf = NetConf::parse(stdin)?;
    if matches!(cmd, Cmd::Status | Cmd::Gc) {
        return Err(CniError::new(
            error::INCOMPATIBLE_VERSION,
            "STATUS and GC are CNI 1.1; weft speaks up to 1.0.0",
        ));
    }
    if cmd == Cmd::Check && conf.cni_version.starts_with("0.3.") {
        return Err(CniError::new(error::INCOMPATIBLE_VERSION, "CHECK needs cniVersion 0.4.0 or later"));
    }
    let inv = Invocation::from_env(cmd, var)?;
    match cmd {
        Cmd::Add => add(&conf, &inv).map(Some),
        Cmd::Del => del(&conf, &inv).map(|()| None),
        Cmd::Check => check(&conf, &inv).map(|()| None),
        Cmd::Version | Cmd::Status | Cmd::Gc => unreachable!("answered above"),
    }
}

fn add(conf: &NetConf, inv: &Invocation) -> Result<Value, CniError> {
    let netns = inv.netns.clone().unwrap_or_default();
    network_status(conf)?.map_err(|have| unknown_network(conf, have))?;
    // The runtime's netns file may be a bind mount only its mount namespace sees (podman under
    // `ip netns exec`, or a daemon in another mount namespace): hand the daemon our open file.
    let file = std::fs::File::open(&netns).map_err(|e| {
        CniError::new(error::INVALID_ENV, format!("cannot open CNI_NETNS {netns}")).details(e.to_string())
    })?;
    let enter = format!("/proc/{}/fd/{}", std::process::id(), std::os::fd::AsRawFd::as_raw_fd(&file));
    let req = Request::Attach {
        enter: Some(enter),
        netns: netns.clone(),
        network: conf.network.clone(),
        name: inv.container_name(),
        ip: inv.args.ip,
        ifname: inv.ifname.clone(),
        labels: conf.labels_for(&inv.args),
        container_id: Some(inv.container_id.clone()),
    };
    let attached: Attached = daemon_link::call(&conf.socket, &req)?;
    drop(file);
    Ok(result::build(&conf.cni_version, conf.prev_result.as_ref(), &attached, &netns))
}

fn del(conf: &NetConf, inv: &Invocation) -> Result<(), CniError> {
    let Ok(net) = network_status(conf)? else { return Ok(()) };
    let Some(found) = find_container(&net, inv, true) else {
        return Ok(());
    };
    // By id, so that the daemon too detaches only this container; a lease of an older weft
    // has none and goes by name.
    let (name, container_id) = match found.container_id {
        Some(id) => (None, Some(id)),
        None => (Some(found.name), None),
    };
    let req = Request::Detach { network: conf.network.clone(), name, netns: None, container_id };
    match daemon_link::call::<Detached>(&conf.socket, &req) {
        Ok(_) => Ok(()),
        // Released meanwhile by someone else: what DEL wanted.
        Err(daemon_link::LinkError::Refused(m)) if m.starts_with("no container ") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn check(conf: &NetConf, inv: &Invocation) -> Result<(), CniError> {
    let netns = inv.netns.as_deref().unwrap_or_default();
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::new(error::INVALID_CONFIG, "CHECK needs \"prevResult\""))?;
    let mut want = result::addresses_of(prev, &inv.ifname, netns)?;
    let net = network_status(conf)?.map_err(|have| unknown_network(conf, have))?;
    let name = inv.container_name();
    let found = find_container(&net, inv, false).ok_or_else(|| {
        CniError::new(
            error::UNKNOWN_CONTAINER,
            format!("container {name:?} is not attached to weft network {:?}", conf.network),
        )
    })?;
    if found.netns != netns {
        return Err(CniError::new(
            error::CHECK_MISMATCH,
            format!("container {name:?} was attached from netns {}, not {netns}", found.netns),
        ));
    }
    // A dual-stack container is listed once per address, all with one host interface.
    let mut have: Vec<std::net::IpAddr> =
        net.containers.iter().filter(|c| c.host_ifname == found.host_ifname).map(|c| c.ip).collect();
    have.sort();
    want.sort_by_key(|w| w.addr());
    let wanted: Vec<std::net::IpAddr> = want.iter().map(|w| w.addr()).collect();
    if have != wanted {
        let list = |v: &[std::net::IpAddr]| v.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        return Err(CniError::new(
            error::CHECK_MISMATCH,
            format!(
                "container {name:?} has address {}, the previous result says {}",
                list(&have),
                list(&wanted)
            ),
        ));
    }
    for w in &want {
        let subnet = net.subnets.for_ip(&w.addr()).unwrap_or(net.subnet);
        if subnet.prefix_len() != w.prefix_len() {
            return Err(CniError::new(
                error::CHECK_MISMATCH,
                format!("the previous result's prefix /{} is not the network's", w.prefix_len()),
            ));
        }
    }
    Ok(())
}

/// The daemon's status entry for the configured network, or the names of those it has.
fn network_status(conf: &NetConf) -> Result<Result<NetworkStatus, Vec<String>>, CniError> {
    let status: Status = daemon_link::call(&conf.socket, &Request::Status)?;
    let names = status.networks.iter().map(|n| n.name.clone()).collect();
    Ok(status.networks.into_iter().find(|n| n.name == conf.network).ok_or(names))
}

/// The attached container of this invocation: the one attached with its `CNI_CONTAINERID`.
/// A container an older weft attached has no id; it is the one named as this invocation
/// names it whose netns is `CNI_NETNS` (any, if not given), or else, with `or_by_netns`, the
/// one attached from `CNI_NETNS` (a DEL whose `CNI_ARGS` changed). A container with an id is
/// never found by its name or netns: another pod may share its name.
fn find_container(net: &NetworkStatus, inv: &Invocation, or_by_netns: bool) -> Option<LocalContainer> {
    let containers = &net.containers;
    if let Some(c) = containers.iter().find(|c| c.container_id.as_deref() == Some(inv.container_id.as_str()))
    {
        return Some(c.clone());
    }
    let (name, netns) = (inv.container_name(), inv.netns.as_deref());
    let legacy = || containers.iter().filter(|c| c.container_id.is_none());
    legacy()
        .find(|c| c.name == name && netns.is_none_or(|ns| c.netns == ns))
        .or_else(|| netns.filter(|_| or_by_netns).and_then(|ns| legacy().find(|c| c.netns == ns)))
        .cloned()
}

fn unknown_network(conf: &NetConf, have: Vec<String>) -> CniError {
    CniError::new(
        error::INVALID_CONFIG,
        format!("the weft daemon has no network {:?} (it has: {})", conf.network, have.join(", ")),
    )
    .details(format!(
        "set \"network\" in the CNI configuration {:?} to one of the node's networks",
        conf.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(version: &str) -> Vec<u8> {
        format!(r#"{{"cniVersion":"{version}","name":"n","type":"weft","socket":"/nonexistent/weft.sock"}}"#)
            .into_bytes()
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| v.to_string())
    }

    fn container(name: &str, netns: &str, id: Option<&str>) -> LocalContainer {
        LocalContainer {
            name: name.into(),
            ip: "10.42.1.2".parse().unwrap(),
            mac: "02:00:00:00:00:02".into(),
            netns: netns.into(),
            host_ifname: "wv00000001".into(),
            container_id: id.map(str::to_owned),
        }
    }

    fn network(containers: Vec<LocalContainer>) -> NetworkStatus {
        NetworkStatus {
            name: "default".into(),
            vni: 42,
            subnet: "10.42.0.0/16".parse().unwrap(),
            node_subnet: "10.42.1.0/24".parse().unwrap(),
            gateway: "10.42.1.1".parse().unwrap(),
            subnets: Default::default(),
            node_subnets: Default::default(),
            gateways: Default::default(),
            mtu: 1420,
            encryption: crate::config::Encryption::ChaCha20Poly1305,
            containers,
        }
    }

    fn del(id: &str, netns: Option<&str>, args: &str) -> Invocation {
        let mut e = vec![("CNI_CONTAINERID", id), ("CNI_IFNAME", "eth0"), ("CNI_ARGS", args)];
        e.extend(netns.map(|ns| ("CNI_NETNS", ns)));
        Invocation::from_env(Cmd::Del, env(&e)).unwrap()
    }

    /// Pod `web` of namespace `prod` is attached; the runtime deletes pod `web` of namespace
    /// `dev` (another container id), without a netns as runtimes do once it is gone.
    #[test]
    fn rogue_del_with_another_namespaces_pod_name_leaves_it_attached() {
        let net = network(vec![container("web", "/var/run/netns/cni-prod", Some("prod0001"))]);
        let dev = del("dev00002", None, "K8S_POD_NAME=web;K8S_POD_NAMESPACE=dev");
        assert_eq!(find_container(&net, &dev, true), None);
        let dev_in_prods_netns = del("dev00002", Some("/var/run/netns/cni-prod"), "K8S_POD_NAME=web");
        assert_eq!(find_container(&net, &dev_in_prods_netns, true), None);
        let prod = del("prod0001", None, "K8S_POD_NAME=renamed");
        assert_eq!(find_container(&net, &prod, true).unwrap().name, "web", "found by its id alone");
    }

    #[test]
    fn containers_an_older_weft_attached_are_found_by_name_and_netns() {
        let net = network(vec![container("web", "/var/run/netns/a", None)]);
        assert!(find_container(&net, &del("x1", None, "K8S_POD_NAME=web"), true).is_some());
        assert!(
            find_container(&net, &del("x1", Some("/var/run/netns/b"), "K8S_POD_NAME=web"), true).is_none()
        );
        assert!(
            find_container(&net, &del("x1", Some("/var/run/netns/a"), "K8S_POD_NAME=other"), true).is_some()
        );
        assert!(
            find_container(&net, &del("x1", Some("/var/run/netns/a"), "K8S_POD_NAME=other"), false).is_none()
        );
    }

    #[test]
    fn commands_before_the_daemon() {
        let full = [("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0"), ("CNI_NETNS", "/run/netns/x")];
        let version = run(b"", env(&[("CNI_COMMAND", "VERSION")])).unwrap().unwrap();
        assert_eq!(version["supportedVersions"][3], "1.0.0");
        let with = |cmd: &'static str| {
            let mut e = full.to_vec();
            e.push(("CNI_COMMAND", cmd));
            e
        };
        assert_eq!(run(&conf("0.3.1"), env(&with("CHECK"))).unwrap_err().code, error::INCOMPATIBLE_VERSION);
        assert_eq!(run(&conf("1.0.0"), env(&with("GC"))).unwrap_err().code, error::INCOMPATIBLE_VERSION);
        assert_eq!(run(&conf("1.0.0"), env(&with("NOPE"))).unwrap_err().code, error::INVALID_ENV);
        assert_eq!(run(&conf("1.0.0"), env(&with("ADD"))).unwrap_err().code, error::TRY_AGAIN_LATER);
        assert_eq!(run(&conf("1.0.0"), env(&with("DEL"))).unwrap_err().code, error::TRY_AGAIN_LATER);
    }
}
