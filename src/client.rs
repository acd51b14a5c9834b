//! CLI commands that talk to the running daemon, and their human-readable output.

use anyhow::Result;
use serde_json::Value;

use crate::cli::{AttachArgs, ClientArgs, DetachArgs, PolicyCommand, ServiceAddArgs, ServiceCommand};
use crate::control::{call, Request};
use crate::discovery::catalog::{parse_duration, Check, CheckTemplate, ServiceSpec, Target, DEFAULT_TIMEOUT};
use crate::discovery::directory::Protocol;
use crate::discovery::registry::SERVICE_LABEL;
use std::collections::BTreeMap;

/// `weft attach`: prints a summary, and the address alone on the last line.
pub fn attach(a: AttachArgs) -> Result<()> {
    let name = a.name.clone().unwrap_or_else(|| base_name(&a.netns));
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').ok_or_else(|| anyhow::anyhow!("--label {l:?}: expected KEY=VALUE"))?;
        labels.insert(k.to_owned(), v.to_owned());
    }
    if !a.services.is_empty() {
        let mut all: Vec<String> = labels.get(SERVICE_LABEL).into_iter().cloned().collect();
        all.extend(a.services.iter().cloned());
        labels.insert(SERVICE_LABEL.to_owned(), all.join(","));
    }
    let req = Request::Attach {
        netns: a.netns,
        network: a.network,
        name,
        ip: a.ip,
        ifname: a.ifname,
        labels,
        enter: None,
    };
    let v = call(&a.client.socket, &req)?;
    if a.client.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        eprintln!(
            "attached {} to {}: {}/{} via {} (mac {}, mtu {}, host link {})",
            v["name"].as_str().unwrap_or("?"),
            v["network"].as_str().unwrap_or("?"),
            v["ip"].as_str().unwrap_or("?"),
            v["prefix"],
            v["gateway"].as_str().unwrap_or("?"),
            v["mac"].as_str().unwrap_or("?"),
            v["mtu"],
            v["host_ifname"].as_str().unwrap_or("?"),
        );
        println!("{}", v["ip"].as_str().unwrap_or("?"));
    }
    Ok(())
}

/// `weft detach`.
pub fn detach(d: DetachArgs) -> Result<()> {
    if d.name.is_none() && d.netns.is_none() {
        anyhow::bail!("give --name or --netns");
    }
    let v = call(&d.client.socket, &Request::Detach { network: d.network, name: d.name, netns: d.netns })?;
    if d.client.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("detached {} ({})", v["name"].as_str().unwrap_or("?"), v["ip"].as_str().unwrap_or("?"));
    }
    Ok(())
}

fn base_name(netns: &str) -> String {
    netns.rsplit('/').next().unwrap_or(netns).to_owned()
}

/// `weft status`.
pub fn status(c: ClientArgs) -> Result<()> {
    let v = call(&c.socket, &Request::Status)?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "node {}   up {} s   members {} ({} alive)",
        v["node"].as_str().unwrap_or("?"),
        v["engine"]["uptime_secs"],
        v["engine"]["members"],
        v["engine"]["members_alive"]
    );
    for n in v["networks"].as_array().into_iter().flatten() {
        println!(
            "network {}  vni {}  subnet {}  node subnet {}  gateway {}  mtu {}  encryption {}",
            text(&n["name"]),
            n["vni"],
            text(&n["subnet"]),
            text(&n["node_subnet"]),
            text(&n["gateway"]),
            n["mtu"],
            text(&n["encryption"])
        );
        let rows: Vec<Vec<String>> = n["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| vec![text(&c["name"]), text(&c["ip"]), text(&c["mac"]), text(&c["host_ifname"])])
            .collect();
        table("  ", &["CONTAINER", "IP", "MAC", "LINK"], &rows);
    }
    for seed in v["engine"]["seeds"].as_array().into_iter().flatten() {
        if seed["state"] != "connected" {
            println!(
                "seed {}: {} (no answer for {} s)",
                text(&seed["address"]),
                text(&seed["state"]),
                seed["unanswered_secs"]
            );
        }
    }
    print_peers(&v["engine"]["peers"]);
    let drops: Vec<String> = v["engine"]["counters"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
        .map(|(k, n)| if k.ends_with("_bytes") { format!("{k}={}", bytes(n)) } else { format!("{k}={n}") })
        .collect();
    println!("counters: {}", if drops.is_empty() { "-".into() } else { drops.join(" ") });
    Ok(())
}

/// `weft peers`.
pub fn peers(c: ClientArgs) -> Result<()> {
    let v = call(&c.socket, &Request::Status)?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&v["engine"]["peers"])?);
    } else {
        print_peers(&v["engine"]["peers"]);
    }
    Ok(())
}

fn print_peers(peers: &Value) {
    table(
        "",
        &["PEER", "STATE", "ENDPOINT", "SESSION", "HANDSHAKE", "RTT", "CONTAINERS", "RX", "TX"],
        &peer_rows(peers),
    );
}

/// The `weft peers` table's rows: byte counts for humans (the JSON keeps the numbers).
fn peer_rows(peers: &Value) -> Vec<Vec<String>> {
    peers
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                text(&p["name"]),
                text(&p["state"]),
                text(&p["endpoint"]),
                if p["connected"] == Value::Bool(true) { "yes".into() } else { "no".into() },
                p["last_handshake_secs_ago"].as_f64().map(|t| format!("{t:.0}s ago")).unwrap_or("-".into()),
                p["rtt_ms"].as_f64().map(|r| format!("{r:.2} ms")).unwrap_or("-".into()),
                text(&p["containers"]),
                bytes(&p["rx_bytes"]),
                bytes(&p["tx_bytes"]),
            ]
        })
        .collect()
}

/// A byte count in IEC units with one decimal (`1023 B`, `1.2 MiB`), for tables.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    // Round first, so that 1023.96 KiB is shown as 1.0 MiB rather than 1024.0 KiB.
    while (v * 10.0).round() / 10.0 >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A JSON byte count for a table; `-` when absent.
fn bytes(v: &Value) -> String {
    v.as_u64().map(human_bytes).unwrap_or_else(|| text(v))
}

fn table(indent: &str, head: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> =
            cells.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
        println!("{indent}{}", s.join("  ").trim_end());
    };
    line(head.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// `weft service …`.
pub fn service(c: ServiceCommand) -> Result<()> {
    match c {
        ServiceCommand::Add(a) => {
            let (socket, json) = (a.client.socket.clone(), a.client.json);
            let spec = service_spec(*a)?;
            let v = call(&socket, &Request::ServiceAdd { spec })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("registered {}", v["id"].as_str().unwrap_or("?"));
            }
        }
        ServiceCommand::Rm { id, client } => {
            let v = call(&client.socket, &Request::ServiceRemove { id })?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            for id in v["removed"].as_array().into_iter().flatten() {
                println!("removed {}", id.as_str().unwrap_or("?"));
            }
        }
        ServiceCommand::List(c) => {
            let v = call(&c.socket, &Request::ServiceList)?;
            if c.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    vec![
                        text(&s["id"]),
                        text(&s["network"]),
                        text(&s["ip"]),
                        text(&s["health"]),
                        text(&s["source"]),
                        text(&s["output"]),
                    ]
                })
                .collect();
            table("", &["ID", "NETWORK", "ADDRESS", "HEALTH", "SOURCE", "LAST CHECK"], &rows);
        }
    }
    Ok(())
}

fn service_spec(a: ServiceAddArgs) -> Result<ServiceSpec> {
    let protocol = match a.protocol.as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        p => anyhow::bail!("--protocol {p:?}: must be tcp or udp"),
    };
    let template = match (a.check_tcp, a.check_http, a.check_command) {
        // Caught here, before the daemon is asked, as the node TOML's check is.
        (true, _, _) if protocol == Protocol::Udp => anyhow::bail!(
            "--check-tcp on a --protocol udp service: a TCP connect says nothing about a UDP \
             listener; use --check-command (e.g. a DNS query for a DNS server)"
        ),
        (true, _, _) => Some(CheckTemplate::Tcp),
        (_, Some(path), _) => Some(CheckTemplate::Http { path }),
        (_, _, Some(cmd)) => {
            Some(CheckTemplate::Command { argv: cmd.split_whitespace().map(str::to_owned).collect() })
        }
        _ => None,
    };
    let check = match template {
        None => None,
        Some(template) => {
            let interval = parse_duration(&a.interval).map_err(|e| anyhow::anyhow!("--interval: {e}"))?;
            let timeout = match &a.timeout {
                Some(t) => parse_duration(t).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?,
                None => DEFAULT_TIMEOUT.min(interval),
            };
            Some(Check { template, interval, timeout, rise: a.rise, fall: a.fall })
        }
    };
    let target = match (a.container, a.address) {
        (Some(c), _) => Target::Container(c),
        (None, Some(ip)) => Target::Address(ip),
        (None, None) => anyhow::bail!("give --container or --address"),
    };
    let spec = ServiceSpec {
        name: a.name,
        network: a.network.unwrap_or_default(),
        target,
        port: a.port,
        protocol,
        tags: a.tags,
        check,
    };
    Ok(spec)
}

/// `weft services`: the cluster-wide catalog.
pub fn services(c: ClientArgs) -> Result<()> {
    let v = call(&c.socket, &Request::Catalog)?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let mut rows = Vec::new();
    for (name, list) in v["services"].as_object().into_iter().flatten() {
        for i in list.as_array().into_iter().flatten() {
            rows.push(vec![
                name.clone(),
                text(&i["node"]),
                format!("{}:{}/{}", text(&i["ip"]), i["port"], text(&i["protocol"])),
                text(&i["health"]),
                i["tags"]
                    .as_array()
                    .map(|t| t.iter().map(text).collect::<Vec<_>>().join(","))
                    .unwrap_or_default(),
            ]);
        }
    }
    table("", &["SERVICE", "NODE", "ADDRESS", "HEALTH", "TAGS"], &rows);
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `weft reload`.
pub fn reload(c: ClientArgs) -> Result<()> {
    let v = call(&c.socket, &Request::Reload)?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let changed: Vec<String> = v["changed"].as_array().into_iter().flatten().map(text).collect();
        if changed.is_empty() {
            println!("reloaded: nothing changed");
        } else {
            println!("reloaded: {}", changed.join(", "));
        }
    }
    Ok(())
}

/// `weft policy …`.
pub fn policy(c: PolicyCommand) -> Result<()> {
    match c {
        PolicyCommand::Explain { from, to, proto, port, network, client } => {
            let v = call(&client.socket, &Request::PolicyExplain { network, from, to, proto, port })?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!(
                "{} ({}) -> {} ({}): {}",
                text(&v["from"]["ip"]),
                text(&v["from"]["what"]),
                text(&v["to"]["ip"]),
                text(&v["to"]["what"]),
                text(&v["verdict"]).to_uppercase()
            );
            for check in v["checks"].as_array().into_iter().flatten() {
                let e = &check["explanation"];
                println!(
                    "  {:<3} {:<5} by {}: {}",
                    text(&check["direction"]),
                    text(&e["decision"]["verdict"]),
                    text(&e["name"]),
                    text(&e["text"])
                );
                for r in e["rules"].as_array().into_iter().flatten() {
                    let why = if r["matched"] == Value::Bool(true) {
                        "matches".to_owned()
                    } else {
                        r["mismatches"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|m| m.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    println!("        {:<16} {}", text(&r["name"]), why);
                }
            }
            if let Some(note) = v["note"].as_str() {
                println!("  note: {note}");
            }
        }
        PolicyCommand::Show(c) => {
            let v = call(&c.socket, &Request::PolicyShow)?;
            if c.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            for n in v.as_array().into_iter().flatten() {
                println!(
                    "network {}: {}   conntrack {} entries",
                    text(&n["network"]),
                    if n["enforced"] == Value::Bool(true) {
                        "enforced"
                    } else {
                        "no policy (everything passes)"
                    },
                    n["conntrack"]["entries"]
                );
                let rows: Vec<Vec<String>> = n["hits"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| {
                        vec![text(&h["name"]), text(&h["direction"]), text(&h["verdict"]), text(&h["hits"])]
                    })
                    .collect();
                table("  ", &["RULE", "DIRECTION", "ACTION", "HITS"], &rows);
            }
        }
    }
    Ok(())
}

/// `weft networks`.
pub fn networks(c: ClientArgs) -> Result<()> {
    let v = call(&c.socket, &Request::Status)?;
    let fdb = v["engine"]["fdb_entries"].as_array().cloned().unwrap_or_default();
    let nets: Vec<Value> = v["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, n)| {
            let mut n = n.clone();
            n["fdb_entries"] = fdb.get(i).cloned().unwrap_or(Value::Null);
            n
        })
        .collect();
    if c.json {
        println!("{}", serde_json::to_string_pretty(&nets)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = nets
        .iter()
        .map(|n| {
            vec![
                text(&n["name"]),
                text(&n["vni"]),
                text(&n["subnet"]),
                text(&n["node_subnet"]),
                text(&n["gateway"]),
                text(&n["mtu"]),
                text(&n["encryption"]),
                n["containers"].as_array().map(Vec::len).unwrap_or(0).to_string(),
                text(&n["fdb_entries"]),
            ]
        })
        .collect();
    table(
        "",
        &["NETWORK", "VNI", "SUBNET", "NODE SUBNET", "GATEWAY", "MTU", "ENCRYPTION", "CONTAINERS", "FDB"],
        &rows,
    );
    Ok(())
}

/// `weft ping PEER`: like ping(8), through the overlay's encrypted session.
pub fn ping(peer: &str, count: u32, interval: f64, c: ClientArgs) -> Result<()> {
    if !(0.1..=60.0).contains(&interval) {
        anyhow::bail!("--interval must be 0.1..=60 seconds");
    }
    let (mut ok, mut rtts) = (0u32, Vec::new());
    for i in 0..count.max(1) {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_secs_f64(interval));
        }
        match call(&c.socket, &Request::Ping { peer: peer.to_owned() }) {
            Ok(v) => {
                ok += 1;
                let rtt = v["rtt_ms"].as_f64().unwrap_or(0.0);
                rtts.push(rtt);
                if c.json {
                    println!("{v}");
                } else {
                    println!(
                        "probe {} to {} ({}): rtt {rtt:.3} ms",
                        i + 1,
                        text(&v["peer"]),
                        text(&v["endpoint"])
                    );
                }
            }
            Err(e) if c.json => println!("{}", serde_json::json!({"peer": peer, "error": format!("{e:#}")})),
            Err(e) => println!("probe {} to {peer}: {e:#}", i + 1),
        }
    }
    if !c.json && ok > 0 {
        let n = count.max(1);
        let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
        let max = rtts.iter().copied().fold(0.0, f64::max);
        let avg = rtts.iter().sum::<f64>() / rtts.len().max(1) as f64;
        println!("--- {peer}: {n} probes, {ok} answered; rtt min/avg/max {min:.3}/{avg:.3}/{max:.3} ms");
    }
    if ok == 0 {
        anyhow::bail!("no answer from {peer}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn human_bytes_uses_iec_units_with_one_decimal() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1_258_291), "1.2 MiB");
        assert_eq!(human_bytes(1024 * 1024 - 1), "1.0 MiB", "rounds up into the next unit");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn peer_table_shows_bytes_for_humans() {
        let peers = serde_json::json!([
            {"name": "h2", "state": "alive", "connected": true, "rx_bytes": 1_258_291, "tx_bytes": 512},
            {"name": "h3", "state": "suspect", "connected": false},
        ]);
        let rows = peer_rows(&peers);
        assert_eq!(rows[0][7..], ["1.2 MiB".to_owned(), "512 B".to_owned()]);
        assert_eq!(rows[1][7..], ["-".to_owned(), "-".to_owned()], "a member never met has no counters");
    }

    fn add_args(args: &[&str]) -> ServiceAddArgs {
        let mut argv = vec!["weft", "service", "add"];
        argv.extend_from_slice(args);
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Service(ServiceCommand::Add(a)) => *a,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn tcp_check_on_udp_service_is_refused_before_the_daemon_is_asked() {
        let a =
            add_args(&["dns", "--address", "10.42.1.1", "--port", "53", "--protocol", "udp", "--check-tcp"]);
        let e = service_spec(a).unwrap_err().to_string();
        assert!(e.contains("--check-tcp") && e.contains("udp"), "{e}");
        let a = add_args(&["db", "--address", "10.42.1.1", "--port", "5432", "--check-tcp"]);
        assert_eq!(service_spec(a).unwrap().check.unwrap().template, CheckTemplate::Tcp);
    }
}
