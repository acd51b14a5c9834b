//! Prometheus metrics: a small HTTP listener (`[metrics] listen`, loopback by default) whose
//! `/metrics` renders the engine's status (the same numbers `weft status --json` shows) in the
//! text exposition format through `prometheus-client`. A scrape costs one engine round trip;
//! nothing is counted twice and the data path is untouched.

use anyhow::{Context, Result};
use overlay_proto::counters::{Metric, Reading, Snapshot};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::info;

use crate::control::ControlCtx;
use crate::http_access::HttpAccess;
use crate::report::status::PeerState;
use crate::report::Status;

type Labels = Vec<(String, String)>;

/// Serves `/metrics` on `addr` until the task is dropped.
pub async fn serve(
    listener: std::net::TcpListener,
    ctx: Arc<ControlCtx>,
    access: Arc<HttpAccess>,
) -> Result<()> {
    let addr = listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    info!(%addr, writes = access.has_token(), "metrics at http://{addr}/metrics");
    axum::serve(listener, app(ctx, access)).await.context("metrics server")
}

/// Everything the listener serves: `/metrics`, the registry API and the status page, with
/// errors in JSON on every route, each request first checked against `access`.
pub fn app(ctx: Arc<ControlCtx>, access: Arc<HttpAccess>) -> axum::Router {
    let stats = Arc::clone(&ctx.local_stats);
    let api = crate::api::router(Arc::clone(&ctx));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let ctx = Arc::clone(&ctx);
            async move {
                let body = match crate::control::server::status(&ctx).await {
                    Ok(v) => render(&v),
                    Err(e) => format!("# status unavailable: {e}\n"),
                };
                ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], body)
            }
        }),
    );
    crate::api::guarded(crate::api::with_json_errors(app.merge(api)), access, stats)
}

/// Binds the metrics/API listener; done before the daemon changes anything, so a port in use
/// stops the start (set `[metrics] listen = "off"` to run without it).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr).with_context(|| {
        format!("binding the metrics/API listener {addr} (metrics.listen; \"off\" disables it)")
    })?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Renders a status (what `weft status --json` shows) as Prometheus text.
pub fn render(status: &Status) -> String {
    let mut r = Registry::default();
    let e = &status.engine;
    r.register(
        "weft_build",
        "weft build information",
        Info::new(vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]),
    );
    let peer_bytes = Family::<Labels, Counter>::default();
    let peer_packets = Family::<Labels, Counter>::default();
    let rtt = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for p in &e.peers {
        let name = p.name.clone().unwrap_or_else(|| "unknown".to_owned());
        let s = p.session.as_ref();
        for (dir, bytes, packets) in [
            ("rx", s.map(|s| s.rx_bytes), s.map(|s| s.rx_packets)),
            ("tx", s.map(|s| s.tx_bytes), s.map(|s| s.tx_packets)),
        ] {
            let labels = vec![("peer".to_owned(), name.clone()), ("direction".to_owned(), dir.to_owned())];
            peer_bytes.get_or_create(&labels).inc_by(bytes.unwrap_or(0));
            peer_packets.get_or_create(&labels).inc_by(packets.unwrap_or(0));
        }
        if let (Some(name), Some(ms)) = (&p.name, s.and_then(|s| s.rtt_ms)) {
            rtt.get_or_create(&vec![("peer".to_owned(), name.clone())]).set(ms / 1000.0);
        }
    }
    r.register("weft_peer_bytes", "Inner payload bytes exchanged with each peer", peer_bytes);
    let sessions = Family::<Labels, Gauge>::default();
    for c in ["aes-256-gcm", "chacha20poly1305"] {
        sessions.get_or_create(&vec![("cipher".to_owned(), c.to_owned())]).set(0);
    }
    for c in e.peers.iter().filter(|p| p.connected).filter_map(|p| p.session.as_ref()?.cipher.clone()) {
        sessions.get_or_create(&vec![("cipher".to_owned(), c)]).inc();
    }
    r.register("weft_sessions", "Peers with a live session, by the session's cipher", sessions);
    r.register("weft_peer_rtt_seconds", "Round-trip time of each peer's tunnel, measured every 5 s", rtt);
    r.register("weft_peer_packets", "Datagrams exchanged with each peer", peer_packets);
    let members = Family::<Labels, Gauge>::default();
    let member_states = [PeerState::Alive, PeerState::Suspect, PeerState::Down];
    for state in member_states {
        members.get_or_create(&vec![("state".to_owned(), state.as_str().to_owned())]).set(0);
    }
    for p in e.peers.iter().filter(|p| member_states.contains(&p.state)) {
        members.get_or_create(&vec![("state".to_owned(), p.state.as_str().to_owned())]).inc();
    }
    r.register("weft_members", "Members of the network by state, as this node sees them", members);
    let expiry = Family::<Labels, Gauge>::default();
    let expires = |kind: &str, subject: &str, at: u64| {
        let labels = vec![("kind".to_owned(), kind.to_owned()), ("subject".to_owned(), subject.to_owned())];
        expiry.get_or_create(&labels).set(i64::try_from(at).unwrap_or(i64::MAX));
    };
    if let Some(id) = &e.identity {
        expires("node", &status.node, id.cert_not_after);
        for ca in &id.cas {
            expires("ca", &ca.name, ca.not_after);
        }
    }
    for p in &e.peers {
        if let (Some(name), Some(at)) = (&p.name, p.cert_not_after) {
            expires("peer", name, at);
        }
    }
    r.register(
        "weft_cert_expiry_timestamp_seconds",
        "When certificates end (Unix time): this node's (kind=node), its trusted CAs' (kind=ca) and its peers' (kind=peer)",
        expiry,
    );
    let mut counters = CounterFamilies::default();
    counters.add(e.counters.readings(), &[]);
    counters.add(status.dns.readings(), &[]);
    counters.add(status.local.readings(), &[]);
    counters.add(e.membership.readings(), &[]);
    for p in &e.policy {
        counters.add(p.conntrack.stats.readings(), &[("network", &p.network)]);
    }
    counters.register(&mut r);
    let fdb = Family::<Labels, Gauge>::default();
    for (i, n) in e.fdb_entries.iter().enumerate() {
        let name = status.networks.get(i).map_or("?", |n| n.name.as_str()).to_owned();
        fdb.get_or_create(&vec![("network".to_owned(), name)]).set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    r.register("weft_fdb_entries", "Forwarding database entries per network", fdb);
    let containers = Family::<Labels, Gauge>::default();
    for n in &status.networks {
        let count = i64::try_from(n.containers.len()).unwrap_or(i64::MAX);
        containers.get_or_create(&vec![("network".to_owned(), n.name.clone())]).set(count);
    }
    r.register("weft_containers", "Containers attached on this node per network", containers);
    let decisions = Family::<Labels, Counter>::default();
    let conntrack = Family::<Labels, Gauge>::default();
    for p in &e.policy {
        let entries = i64::try_from(p.conntrack.entries).unwrap_or(i64::MAX);
        conntrack.get_or_create(&vec![("network".to_owned(), p.network.clone())]).set(entries);
        if !p.enforced {
            continue;
        }
        for h in &p.hits {
            let labels = vec![
                ("network".to_owned(), p.network.clone()),
                ("rule".to_owned(), h.name.clone()),
                ("direction".to_owned(), h.direction.as_str().to_owned()),
                ("action".to_owned(), h.verdict.as_str().to_owned()),
            ];
            decisions.get_or_create(&labels).inc_by(h.hits);
        }
    }
    r.register(
        "weft_policy_decisions",
        "New flows decided by each policy rule or default (counters restart at a policy reload)",
        decisions,
    );
    r.register("weft_conntrack_entries", "Tracked connections per network", conntrack);
    let health = Family::<Labels, Gauge>::default();
    let sv = &status.services;
    for (state, n) in [("passing", sv.passing), ("critical", sv.critical), ("pending", sv.pending)] {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        health.get_or_create(&vec![("health".to_owned(), state.to_owned())]).set(n);
    }
    r.register(
        "weft_service_instances",
        "This node's service instances by health check state (pending: container not attached)",
        health,
    );
    let uptime = Gauge::<i64>::default();
    uptime.set(i64::try_from(e.uptime_secs).unwrap_or(i64::MAX));
    r.register("weft_uptime_seconds", "Seconds since the daemon started", uptime);
    let mut out = String::new();
    if encode(&mut out, &r).is_err() {
        return "# encoding failed\n".to_owned();
    }
    prometheus_text(&out)
}

/// Every declared counter's reading gathered by metric family, so a family that several
/// counter groups share (`weft_drops`) is registered once with all its samples.
#[derive(Default)]
struct CounterFamilies {
    families: BTreeMap<&'static str, Samples>,
}

/// One family's metric and its samples (labels, value).
struct Samples {
    metric: Metric,
    values: Vec<(Labels, u64)>,
}

impl CounterFamilies {
    /// Adds `readings`, each with `extra` labels before its own (a conntrack table's network).
    fn add(&mut self, readings: impl Iterator<Item = Reading>, extra: &[(&str, &str)]) {
        for Reading { counter, value } in readings {
            let m = counter.metric;
            let mut labels: Labels = extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            labels.extend(m.label.map(|(k, v)| (k.to_owned(), v.to_owned())));
            self.families
                .entry(m.name)
                .or_insert_with(|| Samples { metric: m, values: Vec::new() })
                .values
                .push((labels, value));
        }
    }

    /// Registers every family: labelled ones as families, the others as one counter.
    fn register(self, r: &mut Registry) {
        for (name, Samples { metric, values: samples }) in self.families {
            if samples.iter().all(|(labels, _)| labels.is_empty()) {
                let c = Counter::<u64>::default();
                c.inc_by(samples.iter().map(|(_, v)| v).sum());
                r.register(name, metric.help, c);
            } else {
                let family = Family::<Labels, Counter>::default();
                for (labels, v) in &samples {
                    family.get_or_create(labels).inc_by(*v);
                }
                r.register(name, metric.help, family);
            }
        }
    }
}

/// Rewrites prometheus-client's OpenMetrics output as the classic text format (0.0.4) that
/// every scraper and `promtool check metrics` read: counter families are named by their
/// `_total` samples, info families become `_info` gauges, and the `# EOF` marker goes.
fn prometheus_text(openmetrics: &str) -> String {
    let mut renamed = std::collections::BTreeMap::new();
    for l in openmetrics.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            match rest.rsplit_once(' ') {
                Some((name, "counter")) => {
                    renamed.insert(name.to_owned(), (format!("{name}_total"), "counter"))
                }
                Some((name, "info")) => renamed.insert(name.to_owned(), (format!("{name}_info"), "gauge")),
                _ => None,
            };
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for l in openmetrics.lines() {
        if l == "# EOF" {
            continue;
        }
        let line = if let Some(rest) = l.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            match renamed.get(name) {
                Some((new, _)) => format!("# HELP {new} {help}"),
                None => l.to_owned(),
            }
        } else if let Some(rest) = l.strip_prefix("# TYPE ") {
            let name = rest.rsplit_once(' ').map_or(rest, |(n, _)| n);
            match renamed.get(name) {
                Some((new, kind)) => format!("# TYPE {new} {kind}"),
                None => l.to_owned(),
            }
        } else {
            l.to_owned()
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Direction, Verdict};
    use crate::report::counters::{
        ConntrackStats, Counters, DataplaneSnapshot, DnsSnapshot, EndpointSnapshot, EngineCounters,
        LocalSnapshot, MembershipStats,
    };
    use crate::report::policy::{ConntrackReport, NetworkPolicy, PolicyView, RuleHits};
    use crate::report::status::{
        EngineStatus, HealthCounts, LocalContainer, NetworkStatus, PeerSession, PeerStatus,
    };

    #[test]
    fn a_listener_port_in_use_is_an_error_naming_the_key() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = format!("{:#}", bind(taken.local_addr().unwrap()).unwrap_err());
        assert!(err.contains("metrics.listen") && err.contains("\"off\""), "{err}");
    }

    fn container(name: &str) -> LocalContainer {
        LocalContainer {
            name: name.into(),
            ip: "10.42.1.2".parse().unwrap(),
            mac: "02:00:00:00:00:02".into(),
            netns: name.into(),
            host_ifname: "wv00000001".into(),
            container_id: None,
        }
    }

    fn policy(network: &str, stats: ConntrackStats) -> NetworkPolicy {
        NetworkPolicy {
            network: network.into(),
            enforced: true,
            policy: PolicyView {
                inbound: Verdict::Deny,
                outbound: Verdict::Allow,
                conntrack_max: 65536,
                conntrack_per_peer: 16384,
                rules: vec![],
            },
            hits: vec![RuleHits {
                name: "web-to-db".into(),
                direction: Direction::In,
                verdict: Verdict::Allow,
                hits: 9,
            }],
            conntrack: ConntrackReport { entries: 5, stats },
        }
    }

    /// A status with one network, one peer and the given counters.
    fn status(
        counters: Counters,
        dns: DnsSnapshot,
        membership: MembershipStats,
        ct: ConntrackStats,
    ) -> Status {
        Status {
            node: "h1".into(),
            networks: vec![NetworkStatus {
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
                containers: vec![container("c1"), container("c2")],
            }],
            engine: EngineStatus {
                uptime_secs: 5,
                members_alive: 1,
                members: 1,
                peers: vec![PeerStatus {
                    name: Some("h2".into()),
                    public_key: "k".into(),
                    state: PeerState::Alive,
                    endpoint: None,
                    path: None,
                    connected: true,
                    containers: 1,
                    cert_not_after: Some(1_900_000_000),
                    session: Some(PeerSession {
                        id: 1,
                        no_reply_secs: None,
                        last_handshake_secs_ago: Some(1.0),
                        cipher: Some("aes-256-gcm".into()),
                        subnets: None,
                        groups: None,
                        rtt_ms: Some(0.25),
                        rx_bytes: 100,
                        tx_bytes: 50,
                        rx_packets: 1,
                        tx_packets: 1,
                    }),
                }],
                counters,
                policy: vec![policy("default", ct)],
                fdb_entries: vec![3],
                fdb: vec![],
                membership,
                seeds: vec![],
                conflicts: vec![],
                seen_as: vec![],
                identity: Some(crate::report::status::IdentityStatus {
                    public_key: "k1".into(),
                    cert_not_after: 1_850_000_000,
                    issuer: "ca-2027".into(),
                    ciphers: "aes-256-gcm, chacha20poly1305".into(),
                    cas: vec![crate::report::status::CaStatus {
                        name: "ca-2027".into(),
                        fingerprint: "00ff".into(),
                        not_after: 2_000_000_000,
                    }],
                }),
            },
            dns,
            services: HealthCounts { passing: 2, critical: 1, pending: 0 },
            local: LocalSnapshot::default(),
        }
    }

    #[test]
    fn renders_counters_with_conventional_names() {
        let counters = Counters {
            proto: EndpointSnapshot { replay: 2, handshakes_completed: 4, ..Default::default() },
            dataplane: DataplaneSnapshot { drop_spoof: 1, tap_rx: 10, drop_policy: 3, ..Default::default() },
            engine: EngineCounters::default(),
            relay: Default::default(),
        };
        let dns = DnsSnapshot { answered: 7, nxdomain: 1, ..Default::default() };
        let t = render(&status(counters, dns, MembershipStats::default(), ConntrackStats::default()));
        assert!(t.contains("weft_drops_total{reason=\"replay\"} 2"), "{t}");
        assert!(t.contains("weft_drops_total{reason=\"spoof\"} 1"), "{t}");
        assert!(t.contains("weft_peer_bytes_total{peer=\"h2\",direction=\"rx\"} 100"), "{t}");
        assert!(t.contains("weft_handshakes_total{result=\"ok\"} 4"), "{t}");
        assert!(t.contains("weft_members{state=\"alive\"} 1"), "{t}");
        assert!(t.contains("weft_members{state=\"down\"} 0"), "{t}");
        assert!(t.contains("weft_fdb_entries{network=\"default\"} 3"), "{t}");
        assert!(t.contains("weft_containers{network=\"default\"} 2"), "{t}");
        assert!(t.contains("weft_build_info{version="), "{t}");
        assert!(t.contains("weft_dns_queries_total{result=\"answered\"} 7"), "{t}");
        assert!(t.contains("weft_drops_total{reason=\"policy\"} 3"), "{t}");
        assert!(t.contains("weft_tap_frames_total{direction=\"from_tap\"} 10"), "{t}");
        assert!(t.contains("weft_peer_rtt_seconds{peer=\"h2\"} 0.00025"), "{t}");
        assert!(t.contains("weft_conntrack_entries{network=\"default\"} 5"), "{t}");
        assert!(
            t.contains("weft_policy_decisions_total{network=\"default\",rule=\"web-to-db\",direction=\"in\",action=\"allow\"} 9"),
            "{t}"
        );
        assert!(t.contains("weft_service_instances{health=\"critical\"} 1"), "{t}");
        assert!(t.contains("weft_uptime_seconds 5"), "{t}");
        assert!(t.contains("weft_sessions{cipher=\"aes-256-gcm\"} 1"), "{t}");
        assert!(t.contains("weft_sessions{cipher=\"chacha20poly1305\"} 0"), "{t}");
        assert!(
            t.contains("weft_cert_expiry_timestamp_seconds{kind=\"node\",subject=\"h1\"} 1850000000"),
            "{t}"
        );
        assert!(
            t.contains("weft_cert_expiry_timestamp_seconds{kind=\"ca\",subject=\"ca-2027\"} 2000000000"),
            "{t}"
        );
        assert!(
            t.contains("weft_cert_expiry_timestamp_seconds{kind=\"peer\",subject=\"h2\"} 1900000000"),
            "{t}"
        );
        assert!(t.contains("# TYPE weft_drops_total counter"), "{t}");
        assert!(t.contains("# HELP weft_drops_total Datagrams and frames dropped, by reason"), "{t}");
        assert!(t.contains("# TYPE weft_build_info gauge"), "{t}");
        assert!(!t.contains("# EOF"), "{t}");
    }

    /// The metric families (with their label keys) this exporter has always had; README lists
    /// them and dashboards use them, so none may go or change its labels.
    #[test]
    fn published_families_keep_their_names_and_labels() {
        let t = render(&status(
            Counters::default(),
            DnsSnapshot::default(),
            MembershipStats::default(),
            ConntrackStats::default(),
        ));
        for (family, labels) in [
            ("weft_build_info", "version"),
            ("weft_peer_bytes_total", "peer,direction"),
            ("weft_peer_packets_total", "peer,direction"),
            ("weft_peer_rtt_seconds", "peer"),
            ("weft_members", "state"),
            ("weft_drops_total", "reason"),
            ("weft_handshakes_total", "result"),
            ("weft_handshakes_initiated_total", ""),
            ("weft_cookie_replies_total", ""),
            ("weft_tap_frames_total", "direction"),
            ("weft_offload_total", "kind"),
            ("weft_arp_suppressed_total", ""),
            ("weft_flooded_frames_total", ""),
            ("weft_io_errors_total", ""),
            ("weft_fdb_entries", "network"),
            ("weft_containers", "network"),
            ("weft_policy_decisions_total", "network,rule,direction,action"),
            ("weft_conntrack_entries", "network"),
            ("weft_dns_queries_total", "result"),
            ("weft_local_refused_total", "reason"),
            ("weft_service_instances", "health"),
            ("weft_uptime_seconds", ""),
        ] {
            let sample = t
                .lines()
                .find(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
                .unwrap_or_else(|| panic!("no {family} sample in\n{t}"));
            let keys: Vec<&str> = match sample[family.len()..].strip_prefix('{') {
                Some(rest) => rest[..rest.find('}').unwrap()]
                    .split(',')
                    .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
                    .collect(),
                None => vec![],
            };
            assert_eq!(keys.join(","), labels, "{sample}");
        }
    }

    /// The promise of declaring a counter once: every field of every counter group reaches
    /// `/metrics` with its help text, whatever its value, without an edit here.
    #[test]
    fn every_counter_of_every_group_is_exported() {
        // Distinct values, so a sample found proves it is this counter's.
        let mut next = 1000;
        let mut value = |_: &str| {
            next += 1;
            next
        };
        let counters = Counters {
            proto: EndpointSnapshot::from_fn(&mut value),
            dataplane: DataplaneSnapshot::from_fn(&mut value),
            engine: EngineCounters::from_fn(&mut value),
            relay: crate::report::counters::RelayCounters::from_fn(&mut value),
        };
        let dns = DnsSnapshot::from_fn(&mut value);
        let membership = MembershipStats::from_fn(&mut value);
        let ct = ConntrackStats::from_fn(&mut value);
        let local = LocalSnapshot::from_fn(&mut value);
        let t = render(&Status { local, ..status(counters, dns, membership, ct) });
        type Group<'a> = (Vec<Reading>, &'a [(&'a str, &'a str)]);
        let groups: [Group; 8] = [
            (counters.proto.readings().collect(), &[]),
            (counters.dataplane.readings().collect(), &[]),
            (counters.engine.readings().collect(), &[]),
            (counters.relay.readings().collect(), &[]),
            (dns.readings().collect(), &[]),
            (local.readings().collect(), &[]),
            (membership.readings().collect(), &[]),
            (ct.readings().collect(), &[("network", "default")]),
        ];
        for (readings, extra) in groups {
            assert!(!readings.is_empty());
            for Reading { counter, value } in readings {
                let m = counter.metric;
                let labels: Vec<String> =
                    extra.iter().copied().chain(m.label).map(|(k, v)| format!("{k}=\"{v}\"")).collect();
                let sample = match labels.is_empty() {
                    true => format!("{}_total {value}", m.name),
                    false => format!("{}_total{{{}}} {value}", m.name, labels.join(",")),
                };
                assert!(t.lines().any(|l| l == sample), "{} ({sample}) not exported:\n{t}", counter.field);
                // prometheus-client ends every help text with a full stop.
                let help = format!("# HELP {}_total {}.", m.name, m.help);
                assert!(t.lines().any(|l| l == help), "{}: no help line {help:?} in\n{t}", counter.field);
            }
        }
    }
}
