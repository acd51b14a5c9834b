//! Lab tests of issue 21, "identity lifecycle", with real daemons in network namespaces (shared
//! LAB.md): the network CA is rotated, and one node's certificate and then its key are renewed,
//! all by `weft reload` while containers keep talking. Evidence is what users see: continuous
//! `ping -D` between containers (the longest time without a reply, per step, against the
//! issue's 2 s rule), one TCP stream that stays open across every step and arrives intact
//! (sha256), `weft peers --json`, `weft status --json` counters, `weft cert show --json`, and
//! the echo requests a container's kernel counts.
//!
//! Each step runs its action (edit a node.toml, replace a file, `weft reload`) and then watches
//! for [`DWELL`]; the longest reply gap of each pinger over that window (action included) and
//! over the whole run (between steps too) must stay within [`MAX_GAP`]. The figures are
//! printed (`cargo test … -- --nocapture`) for the report.

mod common;

use common::{weft_offline, Bg, Lab};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The rule: no ping gap over 2 s at any step.
const MAX_GAP: f64 = 2.0;
/// Interval of the continuous pings (`ping -i`), seconds.
const PING_INTERVAL: &str = "0.2";
/// How long each step watches after its action: longer than [`MAX_GAP`], so a connection that
/// broke for good shows as a gap over the limit within the step that broke it.
const DWELL: Duration = Duration::from_secs(4);
/// How long to wait for an eventual state (peer lists converging, a refused node dropped,
/// refusals counted) before giving up. Not a requirement of the issue: only a bound so that a
/// missing behaviour fails instead of hanging; the time actually taken is printed.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// Between two observations while polling.
const POLL: Duration = Duration::from_millis(200);
/// Port of the long-running TCP stream (`Lab::transfer_intact` uses 5001).
const STREAM_PORT: u16 = 5002;

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn path(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_owned()
}

/// Seconds since the epoch, on the clock `ping -D` stamps replies with.
fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs_f64()
}

/// Runs an offline weft command (`ca init`, `ca sign`, `keygen`, …) and panics unless it succeeds.
fn offline_ok(args: &[&str]) -> Output {
    let out = weft_offline(args);
    assert!(out.status.success(), "weft {} failed: {}", args.join(" "), text(&out));
    out
}

/// `weft cert show --json FILE [--ca CA]`: the JSON and whether the command succeeded.
fn cert_show(file: &Path, ca: Option<&Path>) -> (Value, bool) {
    let file = path(file);
    let mut args = vec!["cert", "show", "--json", file.as_str()];
    let ca = ca.map(path);
    if let Some(ca) = &ca {
        args.extend(["--ca", ca.as_str()]);
    }
    let out = weft_offline(&args);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("weft {} printed no JSON ({e}): {}", args.join(" "), text(&out)));
    (v, out.status.success())
}

/// `weft reload --json` on `host` after its key, certificate or CA changed; panics with the
/// daemon's answer unless it succeeds and names a change (a reload that took a new identity
/// and reports "nothing changed" would leave the operator guessing).
fn reload(lab: &Lab, host: &str) {
    let out = lab.weft(host, &["reload", "--json"]);
    assert!(out.status.success(), "weft reload on {host} failed: {}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("weft reload --json on {host} printed no JSON ({e}): {}", text(&out)));
    eprintln!("{host}: weft reload: {v}");
    assert!(
        v["changed"].as_array().is_some_and(|c| !c.is_empty()),
        "{host}'s reload reports no change although its key, certificate or CA did: {v}"
    );
}

/// The member key (base64) a node certificate binds, as `weft peers --json` shows it.
fn member_key(cert: &Path) -> String {
    let (v, _) = cert_show(cert, None);
    v["public_key"].as_str().unwrap_or_else(|| panic!("no public_key in {}: {v}", cert.display())).to_owned()
}

/// Ok if `host`'s `weft peers --json` lists `name` exactly once, alive, with key `key`, and
/// no entry holds `key` under another name; else what it lists instead.
fn listed_once(lab: &Lab, host: &str, name: &str, key: &str) -> Result<(), String> {
    let peers = lab.peers(host);
    let by_name: Vec<&Value> = peers.iter().filter(|p| p["name"] == name).collect();
    let by_key: Vec<&Value> = peers.iter().filter(|p| p["public_key"] == key).collect();
    let ok = by_name.len() == 1
        && by_key.len() == 1
        && by_name[0]["public_key"] == key
        && by_name[0]["state"] == "alive";
    if ok {
        Ok(())
    } else {
        Err(format!("{host} should list {name} once, alive, with key {key}; it lists {peers:?}"))
    }
}

/// Whether `host`'s `weft peers --json` lists `name` or `key` at all.
fn lists(lab: &Lab, host: &str, name: &str, key: &str) -> bool {
    lab.peers(host).iter().any(|p| p["name"] == name || p["public_key"] == key)
}

/// Polls `check` until it is Ok, for up to [`SETTLE_LIMIT`]; returns the time it took or
/// panics with `what` and the last error.
fn settle(what: &str, mut check: impl FnMut() -> Result<(), String>) -> Duration {
    let started = Instant::now();
    loop {
        match check() {
            Ok(()) => return started.elapsed(),
            Err(e) if started.elapsed() > SETTLE_LIMIT => {
                panic!("{what}: not so after {SETTLE_LIMIT:?} (a give-up bound, not the issue's): {e}")
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Handshakes `host` refused for the peer's certificate or CA: another CA (`cert_foreign_ca`),
/// a mac1 keyed by a CA this node does not trust (`bad_mac1`), or an invalid certificate.
fn refused_handshakes(lab: &Lab, host: &str) -> u64 {
    ["cert_foreign_ca", "bad_mac1", "cert_invalid"].iter().map(|c| lab.counter(host, c)).sum()
}

/// The longest time in `[t0, t1]` without a reply, given reply times sorted ascending: the
/// window's edges count, so a window without replies is one gap of its whole length.
fn longest_gap(replies: &[f64], t0: f64, t1: f64) -> f64 {
    let mut prev = t0;
    let mut longest: f64 = 0.0;
    for &t in replies.iter().filter(|&&t| t >= t0 && t <= t1) {
        longest = longest.max(t - prev);
        prev = t;
    }
    longest.max(t1 - prev)
}

/// The reply times in `ping -D` output (`[1700000000.123456] 64 bytes from …`).
fn reply_times(ping_output: &str) -> Vec<f64> {
    let mut times: Vec<f64> = ping_output
        .lines()
        .filter(|l| l.contains(" bytes from "))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

/// A `ping -D -i 0.2` from one container to another, running until dropped.
struct Pinger {
    label: String,
    log: PathBuf,
    _ping: Bg,
}

impl Pinger {
    fn start(lab: &Lab, from: &str, to: &str) -> Pinger {
        let log = lab.dir().join(format!("ping-{from}-{to}.log"));
        let ip = lab.ip(to);
        // Bounded in time (LAB.md rule 1) by its own deadline, far beyond any test here, and
        // killed on drop: `ip netns exec` execs ping itself, so the kill reaches it (a wrapper
        // such as `timeout` would leave ping running, sending echoes the test then counts).
        let ping = lab.spawn_logged(from, &["ping", "-D", "-n", "-w", "900", "-i", PING_INTERVAL, &ip], &log);
        Pinger { label: format!("{from}->{to}"), log, _ping: ping }
    }

    fn replies(&self) -> Vec<f64> {
        reply_times(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// The longest gap between replies in `[t0, t1]` and the number of replies in it.
    fn gap(&self, t0: f64, t1: f64) -> (f64, usize) {
        let replies = self.replies();
        let n = replies.iter().filter(|&&t| t >= t0 && t <= t1).count();
        (longest_gap(&replies, t0, t1), n)
    }
}

/// One TCP connection from `from` to `to` that stays open until [`Stream::finish`]: the
/// client sends 32 KiB of random bytes every 50 ms (about 600 KiB/s) and keeps a copy of
/// everything it sent, so the receiver's file can be compared by sha256. Dropping it (a test
/// that panicked) writes the stop file too, so the client's pipeline ends by itself.
struct Stream {
    label: String,
    sent: PathBuf,
    recv: PathBuf,
    stop: PathBuf,
    server: Bg,
    client: Bg,
}

impl Stream {
    fn start(lab: &Lab, from: &str, to: &str) -> Stream {
        let base = lab.dir().join(format!("stream-{from}-{to}"));
        let (sent, recv, stop) =
            (base.with_extension("sent"), base.with_extension("recv"), base.with_extension("stop"));
        let listen = format!("TCP-LISTEN:{STREAM_PORT},reuseaddr");
        let server = lab.spawn_logged(
            to,
            &["socat", "-u", &listen, &format!("CREATE:{}", path(&recv))],
            &base.with_extension("server.log"),
        );
        let listening = format!("sport = :{STREAM_PORT}");
        settle(&format!("the stream's socat listens in {to}"), || {
            let out = lab.exec(to, &["ss", "-Hltn", &listening]);
            if out.stdout.is_empty() {
                Err("no listener yet".into())
            } else {
                Ok(())
            }
        });
        // The loop ends when the stop file appears (or, bounded, after 18,000 rounds: 15 min);
        // then the pipe closes, socat ends the connection with a FIN and the server writes out
        // the file.
        let script = format!(
            "i=0; while [ ! -e {stop} ] && [ $i -lt 18000 ]; do \
             head -c 32768 /dev/urandom || exit 1; sleep 0.05; i=$((i + 1)); done \
             | tee {sent} | socat -u STDIN TCP:{ip}:{STREAM_PORT}",
            stop = path(&stop),
            sent = path(&sent),
            ip = lab.ip(to),
        );
        let client = lab.spawn_logged(from, &["sh", "-c", &script], &base.with_extension("client.log"));
        Stream { label: format!("{from}->{to}"), sent, recv, stop, server, client }
    }

    fn received(&self) -> u64 {
        std::fs::metadata(&self.recv).map(|m| m.len()).unwrap_or(0)
    }

    /// Panics unless both ends still run: a reset connection ends them.
    fn assert_open(&mut self, when: &str) {
        let client = self.client.0.try_wait().expect("client status");
        let server = self.server.0.try_wait().expect("server status");
        assert!(
            client.is_none() && server.is_none(),
            "the TCP stream {} ended {when}: client {client:?}, server {server:?} (logs beside {})",
            self.label,
            self.recv.display()
        );
    }

    /// Ends the stream and panics unless what arrived is exactly what was sent; returns its size.
    fn finish(&mut self) -> u64 {
        self.assert_open("before it was asked to finish");
        std::fs::write(&self.stop, b"").expect("writing the stop file");
        let wait = |bg: &mut Bg, who: &str| {
            settle(&format!("the stream's {who} exits after the stop file"), || {
                bg.0.try_wait().expect("status").map(|_| ()).ok_or_else(|| "still running".into())
            });
            bg.0.wait().expect("exit status")
        };
        let client = wait(&mut self.client, "client");
        let server = wait(&mut self.server, "server");
        assert!(
            client.success() && server.success(),
            "stream {}: client {client}, server {server}",
            self.label
        );
        let sha = |p: &Path| {
            let o = Command::new("sha256sum").arg(p).output().expect("sha256sum");
            String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap_or_default().to_owned()
        };
        let sent = std::fs::metadata(&self.sent).map(|m| m.len()).unwrap_or(0);
        let got = self.received();
        assert_eq!(got, sent, "stream {}: received {got} bytes of {sent}", self.label);
        assert_eq!(
            sha(&self.sent),
            sha(&self.recv),
            "stream {}: the received bytes differ from the sent",
            self.label
        );
        eprintln!("stream {}: {sent} bytes arrived intact (sha256 {})", self.label, sha(&self.recv));
        got
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.stop, b"");
    }
}

/// Continuous pings and one TCP stream, observed step by step.
struct Watch {
    pingers: Vec<Pinger>,
    stream: Stream,
    started: f64,
    report: Vec<String>,
}

impl Watch {
    /// Starts a pinger per `(from, to)` and the stream, and waits until each has delivered.
    fn start(lab: &Lab, pings: &[(&str, &str)], stream: (&str, &str)) -> Watch {
        let pingers: Vec<Pinger> = pings.iter().map(|(from, to)| Pinger::start(lab, from, to)).collect();
        let stream = Stream::start(lab, stream.0, stream.1);
        settle("every pinger has a reply and the stream has delivered", || {
            let silent: Vec<&str> =
                pingers.iter().filter(|p| p.replies().is_empty()).map(|p| p.label.as_str()).collect();
            if silent.is_empty() && stream.received() > 0 {
                Ok(())
            } else {
                Err(format!("silent pingers {silent:?}, stream bytes {}", stream.received()))
            }
        });
        Watch { pingers, stream, started: unix_now(), report: Vec::new() }
    }

    /// Runs `action`, watches for [`DWELL`], and panics if any pinger went more than
    /// [`MAX_GAP`] without a reply in that window or the stream stalled or ended.
    fn step(&mut self, name: &str, action: impl FnOnce()) {
        let (t0, bytes0) = (unix_now(), self.stream.received());
        action();
        std::thread::sleep(DWELL);
        let (t1, bytes1) = (unix_now(), self.stream.received());
        let gaps: Vec<(String, f64, usize)> = self
            .pingers
            .iter()
            .map(|p| {
                let (gap, n) = p.gap(t0, t1);
                (p.label.clone(), gap, n)
            })
            .collect();
        let figures: Vec<String> =
            gaps.iter().map(|(label, gap, n)| format!("{label} {gap:.2} s ({n} replies)")).collect();
        let line = format!(
            "{name}: longest ping gap {}; stream +{} KiB in {:.1} s",
            figures.join(", "),
            (bytes1 - bytes0) >> 10,
            t1 - t0
        );
        eprintln!("step {line}");
        self.report.push(line);
        let over: Vec<&String> =
            figures.iter().zip(&gaps).filter(|(_, (_, gap, _))| *gap > MAX_GAP).map(|(f, _)| f).collect();
        assert!(over.is_empty(), "step \"{name}\": ping gaps over {MAX_GAP} s: {over:?}");
        self.stream.assert_open(&format!("during step \"{name}\""));
        assert!(bytes1 > bytes0, "step \"{name}\": the TCP stream {} delivered nothing", self.stream.label);
    }

    /// Ends the stream (intact, or panic), prints every step's figures, and checks the
    /// longest gap over the whole run, between steps too.
    fn finish(mut self) {
        let end = unix_now();
        let overall: Vec<(String, f64)> =
            self.pingers.iter().map(|p| (p.label.clone(), p.gap(self.started, end).0)).collect();
        let bytes = self.stream.finish();
        eprintln!("--- longest ping gap per step (limit {MAX_GAP} s) ---");
        self.report.iter().for_each(|l| eprintln!("{l}"));
        eprintln!(
            "whole run ({:.1} s): longest gap {}; stream {} KiB intact",
            end - self.started,
            overall.iter().map(|(l, g)| format!("{l} {g:.2} s")).collect::<Vec<_>>().join(", "),
            bytes >> 10
        );
        let over: Vec<&(String, f64)> = overall.iter().filter(|(_, g)| *g > MAX_GAP).collect();
        assert!(over.is_empty(), "ping gaps over {MAX_GAP} s during the run (between steps): {over:?}");
    }
}

#[test]
fn longest_gap_counts_the_edges_of_the_window_and_ignores_replies_outside_it() {
    assert_eq!(longest_gap(&[], 10.0, 13.0), 3.0);
    let replies = [9.0, 10.1, 10.3, 10.5, 12.9, 13.0, 20.0];
    assert!((longest_gap(&replies, 10.0, 13.2) - 2.4).abs() < 1e-9);
    assert!((longest_gap(&replies, 10.0, 10.6) - 0.2).abs() < 1e-9);
    let out = "PING 10.42.3.2 (10.42.3.2) 56(84) bytes of data.\n\
               [1700000000.500000] 64 bytes from 10.42.3.2: icmp_seq=2 ttl=64 time=0.4 ms\n\
               [1700000000.300000] 64 bytes from 10.42.3.2: icmp_seq=1 ttl=64 time=0.4 ms\n\
               From 10.42.1.1 icmp_seq=3 Destination Host Unreachable\n";
    assert_eq!(reply_times(out), vec![1_700_000_000.3, 1_700_000_000.5]);
}

/// Issue 21's rotation: CA1 everywhere → {CA1, CA2} on every node → each node re-signed by
/// CA2 → CA1 removed, every change by `weft reload`, one node at a time, with h1c1→h3c1 and
/// h2c1→h3c1 pinging and a TCP stream h1c1→h3c1 open throughout. h4 is the node nobody
/// re-signed: it follows the bundle change but keeps its CA1 certificate, is accepted while
/// bundles hold CA1 and refused once they do not.
#[test]
fn ca_rotation_by_reload_keeps_pings_within_2_s_and_a_stream_intact_then_refuses_a_ca1_only_node() {
    let lab = Lab::up(4, 1);
    lab.ping_all_pairs("before the first step");
    let pki = lab.dir().join("pki");
    let (ca1, ca2, ca2_key, bundle) =
        (pki.join("ca.crt"), pki.join("ca2.crt"), pki.join("ca2.key"), pki.join("bundle.crt"));
    let keys: Vec<String> = (1..=4).map(|i| member_key(&pki.join(format!("h{i}.crt")))).collect();

    // CA2, and a bundle file holding both CAs' certificate blocks.
    offline_ok(&["ca", "init", "--name", "lab2", "--out-key", &path(&ca2_key), "--out-cert", &path(&ca2)]);
    let mut both = std::fs::read(&ca1).expect("ca.crt");
    both.extend(std::fs::read(&ca2).expect("ca2.crt"));
    std::fs::write(&bundle, both).expect("writing bundle.crt");
    let ca2_public = cert_show(&ca2, None).0["public_key"].as_str().expect("CA2's public key").to_owned();

    let mut watch = Watch::start(&lab, &[("h1c1", "h3c1"), ("h2c1", "h3c1")], ("h1c1", "h3c1"));
    watch.step("0 steady, CA1 everywhere", || {});

    // Step 1: every node trusts {CA1, CA2}; h1 and h2 by a list of files, h3 and h4 by one
    // file holding both blocks.
    for host in ["h1", "h2", "h3", "h4"] {
        let value = if host == "h1" || host == "h2" {
            format!("[{:?}, {:?}]", path(&ca1), path(&ca2))
        } else {
            format!("{:?}", path(&bundle))
        };
        watch.step(&format!("1 {host} trusts {{CA1, CA2}}"), || {
            lab.set_config_line(host, "node", "ca", &value);
            reload(&lab, host);
        });
    }

    // Step 2: h1..h3 re-signed by CA2 (same key, name, subnets, groups), one at a time.
    for (i, host) in ["h1", "h2", "h3"].into_iter().enumerate() {
        let old = pki.join(format!("{host}.crt"));
        let new = pki.join(format!("{host}.ca2.crt"));
        offline_ok(&[
            "ca",
            "sign",
            "--renew",
            &path(&old),
            "--ca-key",
            &path(&ca2_key),
            "--ca-cert",
            &path(&ca2),
            "--old-ca",
            &path(&ca1),
            "--out",
            &path(&new),
        ]);
        let (was, _) = cert_show(&old, Some(&ca1));
        let (now, valid) = cert_show(&new, Some(&ca2));
        assert!(valid, "{host}'s CA2 certificate does not verify under CA2: {now}");
        assert_eq!(now["issuer"], ca2_public.as_str(), "{host}'s new certificate is not CA2's: {now}");
        for field in ["name", "public_key", "subnets", "groups"] {
            assert_eq!(now[field], was[field], "{host}'s re-signed certificate changed {field}");
        }
        assert_eq!(now["public_key"], keys[i].as_str(), "{host}'s re-signed certificate has another key");
        let (_, under_ca1) = cert_show(&new, Some(&ca1));
        assert!(!under_ca1, "{host}'s CA2 certificate verifies under CA1");
        watch.step(&format!("2 {host} re-signed by CA2"), || {
            lab.set_config_line(host, "node", "cert", &format!("{:?}", path(&new)));
            reload(&lab, host);
        });
    }
    // Every bundle still holds CA1: h4, CA1 certificate and all, still reaches every member.
    for to in ["h1c1", "h2c1", "h3c1"] {
        assert!(
            lab.ping("h4c1", &lab.ip(to)),
            "h4c1 (CA1 certificate) cannot reach {to} while bundles hold CA1"
        );
    }

    // Step 3: CA1 leaves h1..h3's bundles. h4 keeps {CA1, CA2} and its CA1 certificate.
    let mut last_reload = Instant::now();
    for host in ["h1", "h2", "h3"] {
        watch.step(&format!("3 {host} drops CA1"), || {
            lab.set_config_line(host, "node", "ca", &format!("{:?}", path(&ca2)));
            reload(&lab, host);
            last_reload = Instant::now();
        });
    }
    watch.finish();

    // The members keep each other, once each, with their own keys, under their names.
    for host in ["h1", "h2", "h3"] {
        for (i, other) in ["h1", "h2", "h3"].into_iter().enumerate().filter(|(_, o)| *o != host) {
            listed_once(&lab, host, other, &keys[i]).unwrap_or_else(|e| panic!("after the rotation: {e}"));
        }
    }
    lab.transfer_intact("h3c1", "h1c1", 4);
    lab.transfer_intact("h2c1", "h1c1", 4);

    // h4 holds only a CA1 certificate: every member drops it...
    let h4_key = keys[3].clone();
    let waited = last_reload.elapsed();
    let took = settle("h1, h2 and h3 drop h4 (CA1 certificate) once CA1 is gone", || {
        let still: Vec<&str> =
            ["h1", "h2", "h3"].into_iter().filter(|h| lists(&lab, h, "h4", &h4_key)).collect();
        if still.is_empty() {
            Ok(())
        } else {
            Err(format!("{still:?} still list h4"))
        }
    });
    eprintln!("h4 left every member's peer list within {:?} of the last CA1 removal", waited + took);
    eprintln!("h4's peers: {:?}", lab.peers("h4"));

    // ...its container reaches nothing, and its handshakes are refused and counted.
    let members = ["h1", "h2", "h3"];
    let refused_before: u64 = members.iter().map(|h| refused_handshakes(&lab, h)).sum();
    assert_h4_reaches_nothing(&lab, "after CA1 left every member's bundle");
    let took = settle("the members count h4's refused handshakes", || {
        let now: u64 = members.iter().map(|h| refused_handshakes(&lab, h)).sum();
        if now > refused_before {
            Ok(())
        } else {
            Err(format!("refused handshakes still {now}"))
        }
    });
    eprintln!("refused handshakes counted {took:?} after h4c1's pings: {}", refusal_figures(&lab, &members));

    // A fresh start changes nothing: h4 is refused from its first handshake on.
    lab.stop_daemon("h4", "TERM");
    lab.start_daemon("h4");
    let refused_before: u64 = members.iter().map(|h| refused_handshakes(&lab, h)).sum();
    assert_h4_reaches_nothing(&lab, "after h4 restarted");
    settle("the members refuse the restarted h4's handshakes", || {
        let now: u64 = members.iter().map(|h| refused_handshakes(&lab, h)).sum();
        if now > refused_before {
            Ok(())
        } else {
            Err(format!("refused handshakes still {now}"))
        }
    });
    let h4_peers = lab.peers("h4");
    assert!(
        h4_peers.iter().all(|p| p["connected"] != true),
        "the restarted h4 (CA1 certificate only) has a session: {h4_peers:?}"
    );
    for host in members {
        assert!(!lists(&lab, host, "h4", &h4_key), "{host} lists the restarted h4: {:?}", lab.peers(host));
    }
    eprintln!("after h4's restart: {}; h4's peers {h4_peers:?}", refusal_figures(&lab, &members));
    // The members still reach each other.
    assert!(lab.ping("h1c1", &lab.ip("h3c1")), "h1c1 no longer reaches h3c1");
    assert!(lab.ping("h3c1", &lab.ip("h2c1")), "h3c1 no longer reaches h2c1");
}

/// h4c1 reaches no member's container and none reaches it: every ping fails and no
/// container's kernel counts an echo request from the other side.
fn assert_h4_reaches_nothing(lab: &Lab, when: &str) {
    let others = ["h1c1", "h2c1", "h3c1"];
    let echoes = |c: &str| lab.echo_requests_received(c);
    let before: Vec<u64> = others.iter().map(|c| echoes(c)).collect();
    let h4_before = echoes("h4c1");
    for to in others {
        assert!(!lab.ping("h4c1", &lab.ip(to)), "h4c1 (CA1 certificate only) reaches {to} {when}");
    }
    assert!(!lab.ping("h1c1", &lab.ip("h4c1")), "h1c1 reaches h4c1 (CA1 certificate only) {when}");
    let after: Vec<u64> = others.iter().map(|c| echoes(c)).collect();
    assert_eq!(after, before, "echo requests from h4c1 arrived at {others:?} {when}");
    assert_eq!(echoes("h4c1"), h4_before, "echo requests from h1c1 arrived at h4c1 {when}");
}

fn refusal_figures(lab: &Lab, hosts: &[&str]) -> String {
    hosts
        .iter()
        .map(|h| {
            let c = |n: &str| lab.counter(h, n);
            format!(
                "{h} cert_foreign_ca {} bad_mac1 {} cert_invalid {}",
                c("cert_foreign_ca"),
                c("bad_mac1"),
                c("cert_invalid")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Issue 21's renewal: h3's certificate is renewed (same key) by replacing the file in place,
/// and then its key is changed (new key and certificate files, the config pointed at them),
/// each applied by `weft reload`, while h1c1→h3c1, h2c1→h3c1 and h3c1→h1c1 ping and a TCP
/// stream h1c1→h3c1 stays open. The others list h3 once, under its name, with its current key.
#[test]
fn renewing_a_nodes_certificate_then_its_key_by_reload_keeps_its_containers_connections() {
    let lab = Lab::up(3, 1);
    lab.ping_all_pairs("before the first step");
    let pki = lab.dir().join("pki");
    let (ca_key, ca_crt) = (pki.join("ca.key"), pki.join("ca.crt"));
    let h3_crt = pki.join("h3.crt");
    let old_key = member_key(&h3_crt);
    let sign_renewal = |old: &Path, new_public: Option<&Path>, out: &Path| {
        let (old, out, ca_key, ca_crt) = (path(old), path(out), path(&ca_key), path(&ca_crt));
        let mut args = vec!["ca", "sign", "--renew", &old, "--ca-key", &ca_key, "--ca-cert", &ca_crt];
        // A validity unlike the lab's 365 days, so the renewed certificate is told apart.
        args.extend(["--days", "30", "--out", &out]);
        let new_public = new_public.map(path);
        if let Some(p) = &new_public {
            args.extend(["--public-key-file", p.as_str()]);
        }
        offline_ok(&args);
    };

    let mut watch =
        Watch::start(&lab, &[("h1c1", "h3c1"), ("h2c1", "h3c1"), ("h3c1", "h1c1")], ("h1c1", "h3c1"));
    watch.step("0 steady", || {});

    // 1: a renewed certificate, same key, replaces h3.crt in place (rename, as `mv` does).
    let renewed = pki.join("h3.renewed.crt");
    sign_renewal(&h3_crt, None, &renewed);
    let (was, _) = cert_show(&h3_crt, Some(&ca_crt));
    let (now, valid) = cert_show(&renewed, Some(&ca_crt));
    assert!(valid, "h3's renewed certificate is not valid: {now}");
    for field in ["name", "public_key", "subnets", "groups", "issuer"] {
        assert_eq!(now[field], was[field], "the renewal changed {field}");
    }
    assert_ne!(now["not_after"], was["not_after"], "the renewed certificate has the old expiry");
    watch.step("1 h3's certificate renewed in place (same key)", || {
        std::fs::rename(&renewed, &h3_crt).expect("replacing h3.crt");
        reload(&lab, "h3");
    });
    let (installed, _) = cert_show(&h3_crt, Some(&ca_crt));
    assert_eq!(installed["not_after"], now["not_after"], "h3.crt is not the renewed certificate");
    for host in ["h1", "h2"] {
        listed_once(&lab, host, "h3", &old_key)
            .unwrap_or_else(|e| panic!("after the certificate renewal: {e}"));
    }

    // 2: a new key and a certificate for it; h3's config points at both new files.
    let (key2, key2_pub, crt2) = (pki.join("h3.key2"), pki.join("h3.key2.pub"), pki.join("h3.key2.crt"));
    offline_ok(&["keygen", "--out", &path(&key2)]);
    let printed = offline_ok(&["pubkey", "--key", &path(&key2)]);
    let pub_file = std::fs::read_to_string(&key2_pub).expect("h3.key2.pub");
    assert_eq!(
        String::from_utf8_lossy(&printed.stdout).trim(),
        pub_file.trim(),
        "weft pubkey disagrees with h3.key2.pub"
    );
    sign_renewal(&h3_crt, Some(&key2_pub), &crt2);
    let (now, valid) = cert_show(&crt2, Some(&ca_crt));
    assert!(valid, "h3's certificate for its new key is not valid: {now}");
    let new_key = member_key(&crt2);
    assert_ne!(new_key, old_key, "the renewal with h3.key2.pub kept h3's old key");
    for field in ["name", "subnets", "groups"] {
        assert_eq!(now[field], was[field], "the renewal with a new key changed {field}");
    }
    let mut reloaded_at = Instant::now();
    watch.step("2 h3's key changed (new key and certificate files)", || {
        lab.set_config_line("h3", "node", "key", &format!("{:?}", path(&key2)));
        lab.set_config_line("h3", "node", "cert", &format!("{:?}", path(&crt2)));
        reload(&lab, "h3");
        reloaded_at = Instant::now();
    });
    let waited = reloaded_at.elapsed();
    let took = settle("h1 and h2 list h3 once, under its name, with its new key", || {
        for host in ["h1", "h2"] {
            listed_once(&lab, host, "h3", &new_key)?;
        }
        Ok(())
    });
    eprintln!("h1 and h2 listed h3 once with its new key within {:?} of its reload", waited + took);
    watch.step("3 after the key change", || {});
    watch.finish();

    // New connections work with the new identity, both ways.
    lab.transfer_intact("h2c1", "h3c1", 4);
    lab.transfer_intact("h3c1", "h1c1", 4);
    for host in ["h1", "h2"] {
        assert!(
            lab.peers(host).iter().all(|p| p["public_key"] != old_key.as_str()),
            "{host} still lists h3's old key: {:?}",
            lab.peers(host)
        );
    }
}
