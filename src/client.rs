//! CLI commands that talk to the running daemon, and their human-readable output.

use anyhow::Result;
use serde::Serialize;

use crate::cli::{AttachArgs, ClientArgs, DetachArgs, PolicyCommand, ServiceAddArgs, ServiceCommand};
use crate::control::{call, Request};
use crate::discovery::catalog::{parse_duration, Check, CheckTemplate, ServiceSpec, Target, DEFAULT_TIMEOUT};
use crate::discovery::directory::Protocol;
use crate::discovery::registry::SERVICE_LABEL;
use crate::report::status::{NetworkRow, PeerStatus, SeedState};
use crate::report::{
    Attached, Catalog, Detached, Explain, LocalService, NetworkPolicy, PingFailed, Pong, Reloaded,
    ServiceAdded, ServicesRemoved, Status,
};
use std::collections::BTreeMap;
use std::fmt::Display;

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
        container_id: None,
    };
    let v: Attached = call(&a.client.socket, &req)?;
    if a.client.json {
        return print_json(&v);
    }
    let addrs = v.all_addresses();
    let shown: Vec<String> =
        addrs.iter().map(|a| format!("{}/{} via {}", a.ip, a.prefix, a.gateway)).collect();
    eprintln!(
        "attached {} to {}: {} (mac {}, mtu {}, host link {})",
        v.name,
        v.network,
        shown.join(", "),
        v.mac,
        v.mtu,
        v.host_ifname
    );
    // One address per line, IPv4 first: a dual-stack network's container has two.
    for a in &addrs {
        println!("{}", a.ip);
    }
    Ok(())
}

/// `weft detach`.
pub fn detach(d: DetachArgs) -> Result<()> {
    if d.name.is_none() && d.netns.is_none() {
        anyhow::bail!("give --name or --netns");
    }
    let req = Request::Detach { network: d.network, name: d.name, netns: d.netns, container_id: None };
    let v: Detached = call(&d.client.socket, &req)?;
    if d.client.json {
        return print_json(&v);
    }
    let ips: Vec<String> =
        if v.ips.is_empty() { vec![v.ip.to_string()] } else { v.ips.iter().map(|i| i.to_string()).collect() };
    println!("detached {} ({})", v.name, ips.join(", "));
    Ok(())
}

fn base_name(netns: &str) -> String {
    netns.rsplit('/').next().unwrap_or(netns).to_owned()
}

/// Prints `v` as pretty JSON (what every `--json` prints).
fn print_json<T: Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `weft status`.
pub fn status(c: ClientArgs) -> Result<()> {
    let v: Status = call(&c.socket, &Request::Status)?;
    if c.json {
        return print_json(&v);
    }
    let e = &v.engine;
    println!("node {}   up {} s   members {} ({} alive)", v.node, e.uptime_secs, e.members, e.members_alive);
    for n in &v.networks {
        println!(
            "network {}  vni {}  subnet {}  node subnet {}  gateway {}  mtu {}  encryption {}",
            n.name,
            n.vni,
            subnets(n),
            node_subnets(n),
            gateways(n),
            n.mtu,
            word(&n.encryption)
        );
        let rows: Vec<Vec<String>> = n
            .containers
            .iter()
            .map(|c| vec![c.name.clone(), c.ip.to_string(), c.mac.clone(), c.host_ifname.clone()])
            .collect();
        table("  ", &["CONTAINER", "IP", "MAC", "LINK"], &rows);
    }
    for seed in e.seeds.iter().filter(|s| s.state != SeedState::Connected) {
        println!(
            "seed {}: {} (no answer for {} s)",
            seed.address,
            seed.state.as_str(),
            opt(seed.unanswered_secs)
        );
    }
    for c in &e.conflicts {
        println!(
            "conflict in {}: {} is {}'s ({}); {}'s claim ({}) refused",
            c.network, c.mac, c.owner, c.owner_ip, c.claimant, c.claimant_ip
        );
    }
    for s in &e.seen_as {
        println!("seen by {} at {}", s.by, s.address);
    }
    if let Some(id) = &e.identity {
        let now = crate::pki::unix_now();
        println!(
            "certificate {} (issued by {})",
            crate::pki::expiry::describe(now, id.cert_not_after),
            id.issuer
        );
        println!("ciphers offered: {}", id.ciphers);
        for ca in &id.cas {
            println!(
                "trusted CA {} ({}) {}",
                ca.name,
                ca.fingerprint,
                crate::pki::expiry::describe(now, ca.not_after)
            );
        }
    }
    print_peers(&e.peers);
    // Sorted by name, as they always were.
    let counters: BTreeMap<&str, u64> =
        e.counters.readings().filter(|r| r.value > 0).map(|r| (r.counter.field, r.value)).collect();
    let shown: Vec<String> = counters
        .iter()
        .map(
            |(k, n)| {
                if k.ends_with("_bytes") {
                    format!("{k}={}", human_bytes(*n))
                } else {
                    format!("{k}={n}")
                }
            },
        )
        .collect();
    println!("counters: {}", if shown.is_empty() { "-".into() } else { shown.join(" ") });
    Ok(())
}

/// `weft peers`.
pub fn peers(c: ClientArgs) -> Result<()> {
    let v: Status = call(&c.socket, &Request::Status)?;
    if c.json {
        return print_json(&v.engine.peers);
    }
    print_peers(&v.engine.peers);
    Ok(())
}

fn print_peers(peers: &[PeerStatus]) {
    table(
        "",
        &[
            "PEER",
            "STATE",
            "ENDPOINT",
            "PATH",
            "SESSION",
            "CIPHER",
            "HANDSHAKE",
            "RTT",
            "CONTAINERS",
            "RX",
            "TX",
            "CERT ENDS",
        ],
        &peer_rows(peers, crate::pki::unix_now()),
    );
}

/// The `weft peers` table's rows: byte counts for humans (the JSON keeps the numbers).
fn peer_rows(peers: &[PeerStatus], now: u64) -> Vec<Vec<String>> {
    peers
        .iter()
        .map(|p| {
            let s = p.session.as_ref();
            vec![
                opt(p.name.as_ref()),
                p.state.as_str().to_owned(),
                opt(p.endpoint),
                opt(p.path.as_ref()),
                if p.connected { "yes".into() } else { "no".into() },
                opt(s.and_then(|s| s.cipher.as_ref()).filter(|_| p.connected)),
                s.and_then(|s| s.last_handshake_secs_ago)
                    .map(|t| format!("{t:.0}s ago"))
                    .unwrap_or("-".into()),
                s.and_then(|s| s.rtt_ms).map(|r| format!("{r:.2} ms")).unwrap_or("-".into()),
                p.containers.to_string(),
                s.map(|s| human_bytes(s.rx_bytes)).unwrap_or("-".into()),
                s.map(|s| human_bytes(s.tx_bytes)).unwrap_or("-".into()),
                p.cert_not_after.map(|t| days_left(now, t)).unwrap_or("-".into()),
            ]
        })
        .collect()
}

/// When a certificate ends, in whole days from `now`, for tables: `in 364 d`, `ended 2 d ago`.
fn days_left(now: u64, not_after: u64) -> String {
    match not_after.checked_sub(now) {
        Some(left) => format!("in {} d", left / 86_400),
        None => format!("ended {} d ago", (now - not_after) / 86_400),
    }
}

/// A value for a table; `-` when absent.
fn opt<T: Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// A plain enum's JSON word (`chacha20poly1305`, `tcp`, `api`), as the JSON shows it.
fn word<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".into(),
    }
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
            let v: ServiceAdded = call(&socket, &Request::ServiceAdd { spec })?;
            if json {
                return print_json(&v);
            }
            println!("registered {}", v.id);
        }
        ServiceCommand::Rm { id, client } => {
            let v: ServicesRemoved = call(&client.socket, &Request::ServiceRemove { id })?;
            if client.json {
                return print_json(&v);
            }
            for id in v.removed {
                println!("removed {id}");
            }
        }
        ServiceCommand::List(c) => {
            let v: Vec<LocalService> = call(&c.socket, &Request::ServiceList)?;
            if c.json {
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = v
                .into_iter()
                .map(|s| {
                    vec![
                        s.id,
                        s.network,
                        opt(s.ip),
                        s.health.as_str().to_owned(),
                        word(&s.source),
                        opt(s.output),
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
    let v: Catalog = call(&c.socket, &Request::Catalog)?;
    if c.json {
        return print_json(&v);
    }
    let mut rows = Vec::new();
    for (name, list) in &v.services {
        for i in list {
            rows.push(vec![
                name.clone(),
                i.node.clone(),
                format!("{}:{}/{}", i.ip, i.port, word(&i.protocol)),
                i.health.as_str().to_owned(),
                i.tags.join(","),
            ]);
        }
    }
    table("", &["SERVICE", "NODE", "ADDRESS", "HEALTH", "TAGS"], &rows);
    Ok(())
}

/// `weft reload`.
pub fn reload(c: ClientArgs) -> Result<()> {
    let v: Reloaded = call(&c.socket, &Request::Reload)?;
    if c.json {
        return print_json(&v);
    }
    println!("reloaded: {v}");
    Ok(())
}

/// `weft policy …`.
pub fn policy(c: PolicyCommand) -> Result<()> {
    match c {
        PolicyCommand::Explain { from, to, proto, port, network, client } => {
            let v: Explain =
                call(&client.socket, &Request::PolicyExplain { network, from, to, proto, port })?;
            if client.json {
                return print_json(&v);
            }
            print_explain(&v);
        }
        PolicyCommand::Show(c) => {
            let v: Vec<NetworkPolicy> = call(&c.socket, &Request::PolicyShow)?;
            if c.json {
                return print_json(&v);
            }
            for n in &v {
                println!(
                    "network {}: {}   conntrack {} entries",
                    n.network,
                    if n.enforced { "enforced" } else { "no policy (everything passes)" },
                    n.conntrack.entries
                );
                let rows: Vec<Vec<String>> = n
                    .hits
                    .iter()
                    .map(|h| {
                        vec![
                            h.name.clone(),
                            h.direction.as_str().to_owned(),
                            h.verdict.as_str().to_owned(),
                            h.hits.to_string(),
                        ]
                    })
                    .collect();
                table("  ", &["RULE", "DIRECTION", "ACTION", "HITS"], &rows);
            }
        }
    }
    Ok(())
}

fn print_explain(v: &Explain) {
    println!(
        "{} ({}) -> {} ({}): {}",
        v.from.ip,
        v.from.what,
        v.to.ip,
        v.to.what,
        v.verdict.as_str().to_uppercase()
    );
    for check in &v.checks {
        let e = &check.explanation;
        println!(
            "  {:<3} {:<5} by {}: {}",
            check.direction.as_str(),
            e.decision.verdict.as_str(),
            e.name,
            e.text
        );
        for r in &e.rules {
            let why = if r.matched {
                "matches".to_owned()
            } else {
                r.mismatches.iter().map(|m| format!("\"{}\"", word(m))).collect::<Vec<_>>().join(", ")
            };
            println!("        {:<16} {}", r.name, why);
        }
    }
    if let Some(note) = &v.note {
        println!("  note: {note}");
    }
}

/// `weft networks`.
pub fn networks(c: ClientArgs) -> Result<()> {
    let v: Status = call(&c.socket, &Request::Status)?;
    let nets: Vec<NetworkRow> = v
        .networks
        .into_iter()
        .enumerate()
        .map(|(i, network)| NetworkRow { network, fdb_entries: v.engine.fdb_entries.get(i).copied() })
        .collect();
    if c.json {
        return print_json(&nets);
    }
    let rows: Vec<Vec<String>> = nets
        .iter()
        .map(|r| {
            let n = &r.network;
            vec![
                n.name.clone(),
                n.vni.to_string(),
                subnets(n),
                node_subnets(n),
                gateways(n),
                n.mtu.to_string(),
                word(&n.encryption),
                n.containers.len().to_string(),
                opt(r.fdb_entries),
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
        match call::<Pong>(&c.socket, &Request::Ping { peer: peer.to_owned() }) {
            Ok(v) => {
                ok += 1;
                rtts.push(v.rtt_ms);
                if c.json {
                    println!("{}", serde_json::to_string(&v)?);
                } else {
                    println!("probe {} to {} ({}): rtt {:.3} ms", i + 1, v.peer, opt(v.endpoint), v.rtt_ms);
                }
            }
            Err(e) if c.json => {
                let failed = PingFailed { peer: peer.to_owned(), error: format!("{e:#}") };
                println!("{}", serde_json::to_string(&failed)?);
            }
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

/// A network's subnets (both of a dual-stack one), also from a daemon that sends only one.
fn subnets(n: &crate::report::status::NetworkStatus) -> String {
    if n.subnets.is_empty() {
        n.subnet.to_string()
    } else {
        n.subnets.to_string()
    }
}

/// This node's share of each subnet of a network.
fn node_subnets(n: &crate::report::status::NetworkStatus) -> String {
    if n.node_subnets.is_empty() {
        n.node_subnet.to_string()
    } else {
        n.node_subnets.to_string()
    }
}

/// This node's gateway per family of a network.
fn gateways(n: &crate::report::status::NetworkStatus) -> String {
    if n.gateways.is_empty() {
        n.gateway.to_string()
    } else {
        n.gateways.to_string()
    }
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
        let peers: Vec<PeerStatus> = serde_json::from_str(
            r#"[
                {"name": "h2", "public_key": "k2", "state": "alive", "endpoint": null, "connected": true,
                 "containers": 0, "id": 1, "no_reply_secs": null, "last_handshake_secs_ago": null,
                 "subnets": null, "groups": null, "rtt_ms": null,
                 "rx_bytes": 1258291, "tx_bytes": 512, "rx_packets": 1, "tx_packets": 1,
                 "cert_not_after": 1900000000, "cipher": "aes-256-gcm"},
                {"name": "h3", "public_key": "k3", "state": "suspect", "endpoint": null, "connected": false,
                 "containers": 0}
            ]"#,
        )
        .unwrap();
        let rows = peer_rows(&peers, 1_900_000_000 - 10 * 86_400 - 5);
        assert_eq!(rows[0][9..], ["1.2 MiB".to_owned(), "512 B".to_owned(), "in 10 d".to_owned()]);
        assert_eq!((rows[0][5].as_str(), rows[1][5].as_str()), ("aes-256-gcm", "-"));
        assert_eq!(
            rows[1][9..],
            ["-".to_owned(), "-".to_owned(), "-".to_owned()],
            "a member never met has no counters"
        );
        assert_eq!(days_left(1_900_000_000 + 2 * 86_400 + 1, 1_900_000_000), "ended 2 d ago");
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
