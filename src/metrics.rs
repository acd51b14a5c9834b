//! Prometheus metrics: a small HTTP listener (`[metrics] listen`, loopback by default) whose
//! `/metrics` renders the engine's status (the same numbers `weft status --json` shows) in the
//! text exposition format through `prometheus-client`. A scrape costs one engine round trip;
//! nothing is counted twice and the data path is untouched.

use anyhow::{Context, Result};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::info;

use crate::control::ControlCtx;

type Labels = Vec<(String, String)>;

/// Counters of the engine's status that are drops, by the reason label they get.
const DROPS: &[(&str, &str)] = &[
    ("malformed", "malformed"),
    ("unknown_index", "unknown_session"),
    ("replay", "replay"),
    ("auth", "auth"),
    ("expired", "expired_session"),
    ("bad_mac1", "bad_mac1"),
    ("drop_spoof", "spoof"),
    ("drop_link_local", "link_local"),
    ("drop_no_network", "no_network"),
    ("drop_ethertype", "ethertype"),
    ("drop_mtu", "mtu"),
    ("drop_queue_full", "queue_full"),
    ("drop_no_route", "no_route"),
    ("queue_dropped", "handshake_queue"),
    ("records_refused", "record_refused"),
    ("drop_policy", "policy"),
    ("drop_policy_malformed", "policy_malformed"),
    ("drop_conntrack_full", "conntrack_full"),
    ("drop_offload", "offload_malformed"),
];

/// Handshake failures by reason.
const HANDSHAKE_FAILURES: &[(&str, &str)] = &[
    ("noise", "noise"),
    ("cert_foreign_ca", "foreign_ca"),
    ("cert_expired", "cert_expired"),
    ("cert_invalid", "cert_invalid"),
    ("revoked", "revoked"),
    ("replayed_init", "replayed_init"),
    ("pending_full", "pending_full"),
    ("handshake_timeouts", "timeout"),
];

/// Serves `/metrics` on `addr` until the task is dropped.
pub async fn serve(listener: std::net::TcpListener, ctx: Arc<ControlCtx>) -> Result<()> {
    let addr = listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    info!(%addr, "metrics at http://{addr}/metrics");
    axum::serve(listener, app(ctx)).await.context("metrics server")
}

/// Everything the listener serves: `/metrics`, the registry API and the status page, with
/// errors in JSON on every route.
pub fn app(ctx: Arc<ControlCtx>) -> axum::Router {
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
    crate::api::with_json_errors(app.merge(api))
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

/// Renders a `weft status --json` value as Prometheus text.
pub fn render(status: &Value) -> String {
    let mut r = Registry::default();
    let e = &status["engine"];
    r.register(
        "weft_build",
        "weft build information",
        Info::new(vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]),
    );
    let peer_bytes = Family::<Labels, Counter>::default();
    let peer_packets = Family::<Labels, Counter>::default();
    for p in e["peers"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("unknown").to_owned();
        for (dir, key) in [("rx", "rx"), ("tx", "tx")] {
            let labels = vec![("peer".to_owned(), name.clone()), ("direction".to_owned(), dir.to_owned())];
            peer_bytes.get_or_create(&labels).inc_by(p[format!("{key}_bytes")].as_u64().unwrap_or(0));
            peer_packets.get_or_create(&labels).inc_by(p[format!("{key}_packets")].as_u64().unwrap_or(0));
        }
    }
    r.register("weft_peer_bytes", "Inner payload bytes exchanged with each peer", peer_bytes);
    let rtt = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for p in e["peers"].as_array().into_iter().flatten() {
        if let (Some(name), Some(ms)) = (p["name"].as_str(), p["rtt_ms"].as_f64()) {
            rtt.get_or_create(&vec![("peer".to_owned(), name.to_owned())]).set(ms / 1000.0);
        }
    }
    r.register("weft_peer_rtt_seconds", "Round-trip time of each peer's tunnel, measured every 5 s", rtt);
    r.register("weft_peer_packets", "Datagrams exchanged with each peer", peer_packets);
    let members = Family::<Labels, Gauge>::default();
    for state in ["alive", "suspect", "down"] {
        members.get_or_create(&vec![("state".to_owned(), state.to_owned())]).set(0);
    }
    for p in e["peers"].as_array().into_iter().flatten() {
        if let Some(s) = p["state"].as_str().filter(|s| ["alive", "suspect", "down"].contains(s)) {
            members.get_or_create(&vec![("state".to_owned(), s.to_owned())]).inc();
        }
    }
    r.register("weft_members", "Members of the network by state, as this node sees them", members);
    let c = &e["counters"];
    let get = |k: &str| c[k].as_u64().unwrap_or(0);
    let drops = Family::<Labels, Counter>::default();
    for (key, reason) in DROPS {
        drops.get_or_create(&vec![("reason".to_owned(), (*reason).to_owned())]).inc_by(get(key));
    }
    r.register("weft_drops", "Datagrams and frames dropped, by reason", drops);
    let hs = Family::<Labels, Counter>::default();
    hs.get_or_create(&vec![("result".to_owned(), "ok".to_owned())]).inc_by(get("handshakes_completed"));
    for (key, reason) in HANDSHAKE_FAILURES {
        hs.get_or_create(&vec![("result".to_owned(), (*reason).to_owned())]).inc_by(get(key));
    }
    r.register("weft_handshakes", "Handshakes completed (result=ok) or failed, by reason", hs);
    let initiated = Counter::<u64>::default();
    initiated.inc_by(get("handshakes_initiated"));
    r.register("weft_handshakes_initiated", "Handshake initiations sent, retries included", initiated);
    let cookies = Counter::<u64>::default();
    cookies.inc_by(get("cookies_sent"));
    r.register("weft_cookie_replies", "Cookie replies sent while under handshake load", cookies);
    let frames = Family::<Labels, Counter>::default();
    frames.get_or_create(&vec![("direction".to_owned(), "from_tap".to_owned())]).inc_by(get("tap_rx"));
    frames.get_or_create(&vec![("direction".to_owned(), "to_tap".to_owned())]).inc_by(get("tap_tx"));
    r.register("weft_tap_frames", "Frames read from and written to the TAP devices", frames);
    let offload = Family::<Labels, Counter>::default();
    for (key, kind) in [
        ("tso_superframes", "tso_superframes"),
        ("tso_segments", "tso_segments"),
        ("gro_superframes", "gro_superframes"),
        ("gro_segments", "gro_segments"),
    ] {
        offload.get_or_create(&vec![("kind".to_owned(), kind.to_owned())]).inc_by(get(key));
    }
    r.register(
        "weft_offload",
        "TCP superframes read from the TAPs and split into segments (tso_*), and received segments coalesced into superframes written to them (gro_*)",
        offload,
    );
    let arp = Counter::<u64>::default();
    arp.inc_by(get("arp_suppressed"));
    r.register("weft_arp_suppressed", "ARP requests answered by the daemon itself", arp);
    let flooded = Counter::<u64>::default();
    flooded.inc_by(get("flooded"));
    r.register(
        "weft_flooded_frames",
        "Frame copies replicated to peers (broadcast, unknown unicast)",
        flooded,
    );
    let io = Counter::<u64>::default();
    io.inc_by(get("io_errors"));
    r.register("weft_io_errors", "Socket and TAP errors", io);
    let fdb = Family::<Labels, Gauge>::default();
    let nets = status["networks"].as_array().cloned().unwrap_or_default();
    for (i, n) in e["fdb_entries"].as_array().into_iter().flatten().enumerate() {
        let name = nets.get(i).and_then(|n| n["name"].as_str()).unwrap_or("?").to_owned();
        fdb.get_or_create(&vec![("network".to_owned(), name)]).set(n.as_i64().unwrap_or(0));
    }
    r.register("weft_fdb_entries", "Forwarding database entries per network", fdb);
    let containers = Family::<Labels, Gauge>::default();
    for n in &nets {
        let name = n["name"].as_str().unwrap_or("?").to_owned();
        let count = n["containers"].as_array().map(Vec::len).unwrap_or(0);
        containers.get_or_create(&vec![("network".to_owned(), name)]).set(count as i64);
    }
    r.register("weft_containers", "Containers attached on this node per network", containers);
    let decisions = Family::<Labels, Counter>::default();
    let conntrack = Family::<Labels, Gauge>::default();
    for p in e["policy"].as_array().into_iter().flatten() {
        let net = p["network"].as_str().unwrap_or("?").to_owned();
        conntrack
            .get_or_create(&vec![("network".to_owned(), net.clone())])
            .set(p["conntrack"]["entries"].as_i64().unwrap_or(0));
        if p["enforced"] != Value::Bool(true) {
            continue;
        }
        for h in p["hits"].as_array().into_iter().flatten() {
            let labels = vec![
                ("network".to_owned(), net.clone()),
                ("rule".to_owned(), h["name"].as_str().unwrap_or("?").to_owned()),
                ("direction".to_owned(), h["direction"].as_str().unwrap_or("?").to_owned()),
                ("action".to_owned(), h["verdict"].as_str().unwrap_or("?").to_owned()),
            ];
            decisions.get_or_create(&labels).inc_by(h["hits"].as_u64().unwrap_or(0));
        }
    }
    r.register(
        "weft_policy_decisions",
        "New flows decided by each policy rule or default (counters restart at a policy reload)",
        decisions,
    );
    r.register("weft_conntrack_entries", "Tracked connections per network", conntrack);
    let dns = Family::<Labels, Counter>::default();
    for (result, n) in status["dns"].as_object().into_iter().flatten() {
        dns.get_or_create(&vec![("result".to_owned(), result.clone())]).inc_by(n.as_u64().unwrap_or(0));
    }
    r.register("weft_dns_queries", "DNS queries answered by this node, by result", dns);
    let health = Family::<Labels, Gauge>::default();
    for state in ["passing", "critical", "pending"] {
        let n = status["services"][state].as_i64().unwrap_or(0);
        health.get_or_create(&vec![("health".to_owned(), state.to_owned())]).set(n);
    }
    r.register(
        "weft_service_instances",
        "This node's service instances by health check state (pending: container not attached)",
        health,
    );
    let uptime = Gauge::<i64>::default();
    uptime.set(e["uptime_secs"].as_i64().unwrap_or(0));
    r.register("weft_uptime_seconds", "Seconds since the daemon started", uptime);
    let mut out = String::new();
    if encode(&mut out, &r).is_err() {
        return "# encoding failed\n".to_owned();
    }
    prometheus_text(&out)
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

    #[test]
    fn a_listener_port_in_use_is_an_error_naming_the_key() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = format!("{:#}", bind(taken.local_addr().unwrap()).unwrap_err());
        assert!(err.contains("metrics.listen") && err.contains("\"off\""), "{err}");
    }
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_counters_with_conventional_names() {
        let v = json!({
            "networks": [{"name": "default", "containers": [{}, {}]}],
            "dns": {"answered": 7, "nxdomain": 1},
            "services": {"passing": 2, "critical": 1, "pending": 0},
            "engine": {
                "uptime_secs": 5,
                "fdb_entries": [3],
                "counters": {"replay": 2, "drop_spoof": 1, "handshakes_completed": 4, "tap_rx": 10, "drop_policy": 3},
                "policy": [{"network": "default", "enforced": true, "conntrack": {"entries": 5},
                            "hits": [{"name": "web-to-db", "direction": "in", "verdict": "allow", "hits": 9}]}],
                "peers": [{"name": "h2", "state": "alive", "rtt_ms": 0.25, "rx_bytes": 100, "tx_bytes": 50, "rx_packets": 1, "tx_packets": 1}],
            }
        });
        let t = render(&v);
        assert!(t.contains("weft_drops_total{reason=\"replay\"} 2"), "{t}");
        assert!(t.contains("weft_drops_total{reason=\"spoof\"} 1"), "{t}");
        assert!(t.contains("weft_peer_bytes_total{peer=\"h2\",direction=\"rx\"} 100"), "{t}");
        assert!(t.contains("weft_handshakes_total{result=\"ok\"} 4"), "{t}");
        assert!(t.contains("weft_members{state=\"alive\"} 1"), "{t}");
        assert!(t.contains("weft_fdb_entries{network=\"default\"} 3"), "{t}");
        assert!(t.contains("weft_containers{network=\"default\"} 2"), "{t}");
        assert!(t.contains("weft_build_info{version="), "{t}");
        assert!(t.contains("weft_dns_queries_total{result=\"answered\"} 7"), "{t}");
        assert!(t.contains("weft_drops_total{reason=\"policy\"} 3"), "{t}");
        assert!(t.contains("weft_peer_rtt_seconds{peer=\"h2\"} 0.00025"), "{t}");
        assert!(t.contains("weft_conntrack_entries{network=\"default\"} 5"), "{t}");
        assert!(
            t.contains("weft_policy_decisions_total{network=\"default\",rule=\"web-to-db\",direction=\"in\",action=\"allow\"} 9"),
            "{t}"
        );
        assert!(t.contains("weft_service_instances{health=\"critical\"} 1"), "{t}");
        assert!(t.contains("# TYPE weft_drops_total counter"), "{t}");
        assert!(t.contains("# TYPE weft_build_info gauge"), "{t}");
        assert!(!t.contains("# EOF"), "{t}");
    }
}
