//! Health checks for the service instances this node owns: a check probes a TCP port, an HTTP
//! endpoint or a command every `interval`, and a [`Tracker`] turns the stream of results into
//! `Passing`/`Critical` transitions with hysteresis (`rise` successes / `fall` failures in a
//! row), so a single lost probe never flaps an instance in or out of DNS.
//!
//! Invariants: every probe is bounded by its timeout (a timed-out command is killed and reaped
//! before the probe returns); a check starts `Critical`, so an instance is advertised only
//! after it passed `rise` times; `on_change` is called once per transition, never for a result
//! that keeps the state; dropping the [`CheckHandle`] stops the check and kills its command.

use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::ExitStatusExt as _;
use std::process::Stdio;
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::debug;

/// Bytes of a command's output kept for its failure reason.
pub const OUTPUT_LIMIT: usize = 512;
/// Bytes of an HTTP response read while looking for the status line.
pub const HTTP_READ_LIMIT: usize = 4096;

const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
const MIN_TIMEOUT: Duration = Duration::from_millis(50);
const MAX_THRESHOLD: u32 = 100;

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CheckKind {
    /// A TCP connect succeeds.
    Tcp {
        /// Where to connect.
        addr: SocketAddr,
    },
    /// An HTTP/1.1 GET answers 2xx.
    Http {
        /// `http://IP[:PORT][/path]`: http only, the host an IP literal (names are not
        /// resolved), the port 80 when left out.
        url: String,
    },
    /// A command exits 0. It runs without a shell, with stdin null; the first
    /// [`OUTPUT_LIMIT`] bytes of its output explain a failure; it is killed on timeout.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
    },
}

/// A check: what to probe, how often, and how many results in a row change its state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckSpec {
    /// What to probe.
    pub kind: CheckKind,
    /// Time between probe starts (plus up to 10 % jitter); 100ms..=1h.
    pub interval: Duration,
    /// Bound on one probe; 50ms..=`interval`.
    pub timeout: Duration,
    /// Consecutive successes to become passing; 1..=100.
    pub rise: u32,
    /// Consecutive failures to become critical; 1..=100.
    pub fall: u32,
}

/// The state of a check, as gossiped and as DNS filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Healthy: the instance is advertised.
    Passing,
    /// Unhealthy (or not yet proven healthy): the instance is not advertised.
    Critical,
}

/// Threshold logic: turns probe results into state changes, with no I/O and no clock.
///
/// The state changes only after `rise` successes (or `fall` failures) in a row; a result
/// agreeing with the current state resets the opposing streak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    state: Health,
    rise: u32,
    fall: u32,
    /// Consecutive results that disagree with `state`.
    streak: u32,
}

impl Tracker {
    /// A tracker in state `initial`; a threshold of 0 is taken as 1.
    pub fn new(initial: Health, rise: u32, fall: u32) -> Self {
        Tracker { state: initial, rise: rise.max(1), fall: fall.max(1), streak: 0 }
    }

    /// Feeds one probe result; returns the new state only when it changes.
    pub fn observe(&mut self, ok: bool) -> Option<Health> {
        let (agrees, threshold, next) = match self.state {
            Health::Passing => (ok, self.fall, Health::Critical),
            Health::Critical => (!ok, self.rise, Health::Passing),
        };
        if agrees {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.streak < threshold {
            return None;
        }
        self.state = next;
        self.streak = 0;
        Some(next)
    }

    /// The current state.
    pub fn state(&self) -> Health {
        self.state
    }
}

/// Runs one probe, bounded by `timeout`: `Ok(())`, or `Err` with a short human reason such as
/// `connect 10.0.0.1:80: connection refused`, `HTTP 503`, `exit status 1: <first output line>`
/// or `timed out after 1s`.
pub async fn probe(kind: &CheckKind, timeout: Duration) -> Result<(), String> {
    match kind {
        CheckKind::Tcp { addr } => {
            bounded(timeout, async {
                TcpStream::connect(addr)
                    .await
                    .map(drop)
                    .map_err(|e| format!("connect {addr}: {}", io_reason(&e)))
            })
            .await
        }
        CheckKind::Http { url } => {
            let target = HttpTarget::parse(url)?;
            bounded(timeout, http_get(&target)).await
        }
        CheckKind::Command { argv } => run_command(argv, timeout).await,
    }
}

/// A running check; dropping it (or [`CheckHandle::abort`]) stops the check and kills a
/// command it is running.
#[derive(Debug)]
pub struct CheckHandle {
    task: JoinHandle<()>,
}

impl CheckHandle {
    /// Stops the check.
    pub fn abort(&self) {
        self.task.abort();
    }

    /// Whether the check has stopped (only after [`CheckHandle::abort`] or a panicking
    /// `on_change`).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for CheckHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `spec` until the handle is dropped: the first probe at once, then one every
/// `interval` plus up to 10 % random jitter (so checks started together drift apart).
///
/// The check starts [`Health::Critical`]: an instance is not advertised until it passed
/// `rise` probes in a row. `on_change(health, reason)` is called on each transition, with the
/// failing probe's reason when becoming critical and `None` when becoming passing, and again
/// (still critical) whenever a failing probe's reason differs from the last one reported.
///
/// # Panics
/// Outside a Tokio runtime.
pub fn spawn(
    spec: CheckSpec,
    on_change: impl Fn(Health, Option<String>) + Send + Sync + 'static,
) -> CheckHandle {
    CheckHandle { task: tokio::spawn(run(spec, on_change)) }
}

/// Parses a duration written as an integer and a unit: `500ms`, `2s`, `1m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(format!("duration {s:?}: expected a whole number then ms, s, m or h, like \"2s\""));
    }
    let n: u64 = digits.parse().map_err(|_| format!("duration {s:?}: number too large"))?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return Err(format!("duration {s:?}: missing unit (ms, s, m or h)")),
        other => return Err(format!("duration {s:?}: unknown unit {other:?} (ms, s, m or h)")),
    };
    n.checked_mul(unit_ms).map(Duration::from_millis).ok_or_else(|| format!("duration {s:?}: too large"))
}

/// Checks a spec: interval 100ms..=1h, timeout 50ms..=interval, rise and fall 1..=100, a
/// well-formed target (TCP port not 0, `http://IP[:PORT]/path`, a non-empty argv).
pub fn validate(spec: &CheckSpec) -> Result<(), String> {
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&spec.interval) {
        return Err(format!("interval {} is outside 100ms..=1h", fmt_duration(spec.interval)));
    }
    if spec.timeout < MIN_TIMEOUT || spec.timeout > spec.interval {
        return Err(format!(
            "timeout {} is outside 50ms..=interval ({})",
            fmt_duration(spec.timeout),
            fmt_duration(spec.interval)
        ));
    }
    for (name, n) in [("rise", spec.rise), ("fall", spec.fall)] {
        if !(1..=MAX_THRESHOLD).contains(&n) {
            return Err(format!("{name} {n} is outside 1..=100"));
        }
    }
    match &spec.kind {
        CheckKind::Tcp { addr } if addr.port() == 0 => Err(format!("tcp check {addr}: port 0")),
        CheckKind::Tcp { .. } => Ok(()),
        CheckKind::Http { url } => HttpTarget::parse(url).map(drop),
        CheckKind::Command { argv } => match argv.first() {
            None => Err("command check: empty argv".to_owned()),
            Some(p) if p.is_empty() => Err("command check: empty program name".to_owned()),
            Some(_) if argv.iter().any(|a| a.contains('\0')) => {
                Err("command check: an argument contains a NUL byte".to_owned())
            }
            Some(_) => Ok(()),
        },
    }
}

// ---------------------------------------------------------------------------------------------

async fn run(spec: CheckSpec, on_change: impl Fn(Health, Option<String>)) {
    let mut tracker = Tracker::new(Health::Critical, spec.rise, spec.fall);
    // The reason last reported while critical: a new one is reported too (the state is the
    // same, but the operator sees why), so a check that never passed still says why.
    let mut told: Option<String> = None;
    loop {
        let started = Instant::now();
        let result = probe(&spec.kind, spec.timeout).await;
        if let Err(reason) = &result {
            debug!(kind = ?spec.kind, reason, "health probe failed");
        }
        if let Some(health) = tracker.observe(result.is_ok()) {
            debug!(kind = ?spec.kind, ?health, "health changed");
            told = result.as_ref().err().cloned();
            on_change(health, result.err());
        } else if let (Health::Critical, Err(reason)) = (tracker.state(), &result) {
            if told.as_ref() != Some(reason) {
                told = Some(reason.clone());
                on_change(Health::Critical, Some(reason.clone()));
            }
        }
        tokio::time::sleep_until(started + spec.interval + jitter(spec.interval, random_u64())).await;
    }
}

/// Up to a tenth of `interval`, picked by `r`.
fn jitter(interval: Duration, r: u64) -> Duration {
    let max_us = u64::try_from(interval.as_micros() / 10).unwrap_or(u64::MAX);
    Duration::from_micros(r.checked_rem(max_us + 1).unwrap_or(0))
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // No randomness only means no jitter.
    OsRng.try_fill_bytes(&mut b).map(|()| u64::from_le_bytes(b)).unwrap_or(0)
}

async fn bounded(timeout: Duration, fut: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::time::timeout(timeout, fut).await.unwrap_or_else(|_| Err(timed_out(timeout)))
}

fn timed_out(timeout: Duration) -> String {
    format!("timed out after {}", fmt_duration(timeout))
}

/// `1h`, `2m`, `3s`, `450ms`: the largest whole unit.
fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{d:?}")
    } else if ms != 0 && ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms != 0 && ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms != 0 && ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

/// The OS message, lower case, without the `(os error N)` suffix: `connection refused`.
fn io_reason(e: &io::Error) -> String {
    let mut s = e.to_string();
    if let Some(code) = e.raw_os_error() {
        let suffix = format!(" (os error {code})");
        if let Some(stripped) = s.strip_suffix(&suffix) {
            s = stripped.to_owned();
        }
    }
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => s,
    }
}

/// Where an HTTP check connects and what it asks for.
///
/// A hand-written GET rather than a client library: the check needs one status code over
/// plain HTTP to an IP literal, and hyper is in the tree only without its client features;
/// a bounded request/status-line exchange keeps dependencies and attack surface small.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HttpTarget {
    addr: SocketAddr,
    /// Path and query, starting with `/`, printable ASCII only (no header injection).
    path: String,
}

impl HttpTarget {
    fn parse(url: &str) -> Result<Self, String> {
        let err = |why: &str| Err(format!("url {url:?}: {why}"));
        let Some(scheme_end) = url.find("://") else {
            return err("expected http://IP:PORT/path");
        };
        if !url[..scheme_end].eq_ignore_ascii_case("http") {
            return err("only http:// is supported");
        }
        let rest = &url[scheme_end + 3..];
        let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        if authority.contains('@') {
            return err("user info is not supported");
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                return err("unclosed [ in host");
            };
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return err("unexpected text after ]"),
                },
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return err("missing host");
        }
        let ip: IpAddr = match host.parse() {
            Ok(ip) if authority.starts_with('[') == matches!(ip, IpAddr::V6(_)) => ip,
            _ => return err("host must be an IP literal (IPv6 in brackets); names are not resolved"),
        };
        let port = match port {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return err("port must be 1..=65535"),
            },
        };
        let path = path.split_once('#').map_or(path, |(p, _)| p);
        if !path.bytes().all(|b| b.is_ascii_graphic()) {
            return err("path must be printable ASCII without spaces (percent-encode the rest)");
        }
        let path = match path.as_bytes().first() {
            None => "/".to_owned(),
            Some(b'/') => path.to_owned(),
            Some(_) => format!("/{path}"),
        };
        Ok(HttpTarget { addr: SocketAddr::new(ip, port), path })
    }
}

async fn http_get(target: &HttpTarget) -> Result<(), String> {
    let addr = target.addr;
    let mut stream =
        TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {}", io_reason(&e)))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: weft-health\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("send to {addr}: {}", io_reason(&e)))?;
    let mut buf = [0u8; HTTP_READ_LIMIT];
    let mut len = 0;
    let line_end = loop {
        if let Some(i) = buf[..len].iter().position(|&b| b == b'\n') {
            break i;
        }
        if len == buf.len() {
            return Err(format!("no status line in the first {HTTP_READ_LIMIT} bytes"));
        }
        match stream.read(&mut buf[len..]).await {
            Ok(0) => return Err("connection closed before the status line".to_owned()),
            Ok(n) => len += n,
            Err(e) => return Err(format!("receive from {addr}: {}", io_reason(&e))),
        }
    };
    let line = &buf[..line_end];
    match status_code(line.strip_suffix(b"\r").unwrap_or(line)) {
        Some(code) if (200..300).contains(&code) => Ok(()),
        Some(code) => Err(format!("HTTP {code}")),
        None => Err(format!("malformed status line {:?}", printable(line, 64))),
    }
}

/// The code of a status line `HTTP/1.x NNN[ reason]`.
fn status_code(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    let rest = rest.strip_prefix(b" ")?;
    let (code, reason) = rest.split_at_checked(3)?;
    if !minor.is_ascii_digit() || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !(reason.is_empty() || reason.starts_with(b" ")) {
        return None;
    }
    code.iter().try_fold(0u16, |n, &d| Some(n * 10 + u16::from(d - b'0'))).filter(|c| *c >= 100)
}

async fn run_command(argv: &[String], timeout: Duration) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".to_owned());
    };
    let deadline = Instant::now() + timeout;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("run {program}: {}", io_reason(&e)))?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    // Pipes are drained to EOF so a chatty command never blocks on a full pipe; a descendant
    // that keeps them open keeps the probe running until the timeout.
    let finished = tokio::time::timeout_at(deadline, async {
        let (status, (), ()) = tokio::join!(child.wait(), drain(stdout, &mut out), drain(stderr, &mut err));
        status
    })
    .await;
    let status = match finished {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(format!("wait for {program}: {}", io_reason(&e))),
        Err(_) => {
            // Kill and reap now, so no timed-out check outlives its probe, not even as a zombie.
            let _ = child.kill().await;
            return Err(timed_out(timeout));
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut reason = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    };
    out.extend_from_slice(&err);
    out.truncate(OUTPUT_LIMIT);
    let text = String::from_utf8_lossy(&out);
    if let Some(line) = text.lines().map(str::trim).find(|l| !l.is_empty()) {
        let _ = write!(reason, ": {line}");
    }
    Err(reason)
}

/// Reads `pipe` to EOF, keeping the first [`OUTPUT_LIMIT`] bytes in `kept`.
async fn drain(pipe: Option<impl AsyncRead + Unpin>, kept: &mut Vec<u8>) {
    let Some(mut pipe) = pipe else { return };
    let mut buf = [0u8; 1024];
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        let room = OUTPUT_LIMIT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// At most `max` bytes of `b` as text, for a reason string.
fn printable(b: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&b[..b.len().min(max)]).into_owned()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;

    const SLACK: Duration = Duration::from_secs(3);

    /// Polls `cond` every 10ms for up to 10s.
    async fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cond()
    }

    /// A port on 127.0.0.1 that nothing listens on (it was bound a moment ago).
    async fn closed_port() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    /// Accepts connections and drops them; the listener closes when the task is aborted.
    async fn tcp_server() -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let _ = listener.accept().await;
            }
        });
        (addr, task)
    }

    /// Answers every connection with `response` after reading its request head (sent on the
    /// channel); `None` never answers and holds the connection open.
    async fn http_server(response: Option<&'static [u8]>) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                    match response {
                        Some(r) => {
                            let _ = stream.write_all(r).await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                });
            }
        });
        (addr, rx)
    }

    fn http(addr: SocketAddr, path: &str) -> CheckKind {
        CheckKind::Http { url: format!("http://{addr}{path}") }
    }

    fn command(argv: &[&str]) -> CheckKind {
        CheckKind::Command { argv: argv.iter().map(|s| s.to_string()).collect() }
    }

    fn pid_file(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("weft-health-{}-{name}.pid", std::process::id()))
    }

    /// Gone, or at least dead (a zombie waiting for Tokio's background reaper).
    fn process_dead(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
        }
    }

    fn spec(kind: CheckKind) -> CheckSpec {
        CheckSpec {
            kind,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            rise: 2,
            fall: 3,
        }
    }

    #[test]
    fn tracker_needs_rise_successes_in_a_row() {
        let mut t = Tracker::new(Health::Critical, 3, 2);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None, "a failure resets the streak");
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.state(), Health::Critical);
        assert_eq!(t.observe(true), Some(Health::Passing));
        assert_eq!(t.state(), Health::Passing);
    }

    #[test]
    fn tracker_needs_fall_failures_in_a_row() {
        let mut t = Tracker::new(Health::Passing, 1, 3);
        for _ in 0..5 {
            assert_eq!(t.observe(false), None);
            assert_eq!(t.observe(true), None, "single failures never flap");
        }
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(Health::Critical));
        assert_eq!(t.state(), Health::Critical);
        assert_eq!(t.observe(true), Some(Health::Passing), "rise 1");
    }

    #[test]
    fn tracker_reports_each_transition_once() {
        let mut t = Tracker::new(Health::Critical, 2, 2);
        let results = [true, true, true, true, false, false, false, false, true, true, true];
        let changes: Vec<_> = results.iter().filter_map(|&ok| t.observe(ok)).collect();
        assert_eq!(changes, [Health::Passing, Health::Critical, Health::Passing]);
    }

    #[test]
    fn tracker_takes_zero_thresholds_as_one() {
        let mut t = Tracker::new(Health::Critical, 0, 0);
        assert_eq!(t.observe(true), Some(Health::Passing));
        assert_eq!(t.observe(false), Some(Health::Critical));
    }

    #[tokio::test]
    async fn tcp_probe_passes_on_a_listener_and_fails_on_a_closed_port() {
        let (addr, _server) = tcp_server().await;
        assert_eq!(probe(&CheckKind::Tcp { addr }, Duration::from_secs(2)).await, Ok(()));

        let addr = closed_port().await;
        let err = probe(&CheckKind::Tcp { addr }, Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(err, format!("connect {addr}: connection refused"));
    }

    #[tokio::test]
    async fn http_probe_passes_on_2xx_and_sends_a_minimal_request() {
        let (addr, mut requests) = http_server(Some(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")).await;
        assert_eq!(probe(&http(addr, "/health?full=1"), Duration::from_secs(2)).await, Ok(()));
        let head = requests.recv().await.unwrap();
        assert!(head.starts_with("GET /health?full=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("\r\nHost: {addr}\r\n")), "{head}");
        assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
        assert!(head.contains("\r\nUser-Agent: weft-health\r\n"), "{head}");

        let (addr, _) = http_server(Some(b"HTTP/1.0 204\r\n\r\n")).await;
        assert_eq!(probe(&http(addr, ""), Duration::from_secs(2)).await, Ok(()));
    }

    #[tokio::test]
    async fn http_probe_fails_on_errors_garbage_and_early_close() {
        let (addr, _) = http_server(Some(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")).await;
        assert_eq!(probe(&http(addr, "/"), Duration::from_secs(2)).await, Err("HTTP 503".to_owned()));

        let (addr, _) = http_server(Some(b"HTTP/1.1 301 Moved\r\nLocation: /x\r\n\r\n")).await;
        assert_eq!(probe(&http(addr, "/"), Duration::from_secs(2)).await, Err("HTTP 301".to_owned()));

        let (addr, _) = http_server(Some(b"SSH-2.0-OpenSSH_9.6\r\n")).await;
        let err = probe(&http(addr, "/"), Duration::from_secs(2)).await.unwrap_err();
        assert!(err.starts_with("malformed status line"), "{err}");

        let (addr, _) = http_server(Some(b"HTTP/1.1 200")).await;
        let err = probe(&http(addr, "/"), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(err, "connection closed before the status line");

        static LONG: [u8; 5000] = [b'a'; 5000];
        let (addr, _) = http_server(Some(&LONG)).await;
        let err = probe(&http(addr, "/"), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(err, "no status line in the first 4096 bytes");

        let addr = closed_port().await;
        let err = probe(&http(addr, "/"), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(err, format!("connect {addr}: connection refused"));

        let err = probe(&CheckKind::Http { url: "http://localhost/".into() }, Duration::from_secs(2)).await;
        assert!(err.unwrap_err().contains("IP literal"));
    }

    #[tokio::test]
    async fn http_probe_times_out_on_a_silent_server() {
        let (addr, _) = http_server(None).await;
        let timeout = Duration::from_millis(200);
        let started = Instant::now();
        let err = probe(&http(addr, "/"), timeout).await.unwrap_err();
        assert_eq!(err, "timed out after 200ms");
        assert!(started.elapsed() >= timeout && started.elapsed() < timeout + SLACK);
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 204"), Some(204));
        assert_eq!(status_code(b"HTTP/1.1 599 Whatever it likes"), Some(599));
        for bad in [
            &b""[..],
            b"HTTP/1.1",
            b"HTTP/1.1 ",
            b"HTTP/1.1 20",
            b"HTTP/1.1 2000",
            b"HTTP/1.1 20x OK",
            b"HTTP/1.1 099 Low",
            b"HTTP/2 200",
            b"HTTP/1.x 200",
            b"http/1.1 200 OK",
            b"HTTP/1.1  200",
        ] {
            assert_eq!(status_code(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn http_urls() {
        let ok = |url: &str, addr: &str, path: &str| {
            let t = HttpTarget::parse(url).unwrap();
            assert_eq!((t.addr, t.path.as_str()), (addr.parse().unwrap(), path), "{url}");
        };
        ok("http://10.42.1.5:8080/health", "10.42.1.5:8080", "/health");
        ok("HTTP://10.42.1.5", "10.42.1.5:80", "/");
        ok("http://10.42.1.5:81?x=1", "10.42.1.5:81", "/?x=1");
        ok("http://10.42.1.5/a/b#frag", "10.42.1.5:80", "/a/b");
        ok("http://[fd00::1]:8080/h", "[fd00::1]:8080", "/h");
        ok("http://[::1]/", "[::1]:80", "/");
        for bad in [
            "10.42.1.5:8080/health",
            "https://10.42.1.5/",
            "ftp://10.42.1.5/",
            "http://",
            "http://:80/",
            "http://web.service:80/",
            "http://10.42.1.5:0/",
            "http://10.42.1.5:65536/",
            "http://10.42.1.5:+80/",
            "http://10.42.1.5:/",
            "http://user@10.42.1.5/",
            "http://fd00::1/",
            "http://[10.42.1.5]/",
            "http://[fd00::1/",
            "http://[fd00::1]x/",
            "http://10.42.1.5/a b",
            "http://10.42.1.5/a\r\nX-Injected: 1",
            "http://10.42.1.5/caf\u{e9}",
        ] {
            assert!(HttpTarget::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[tokio::test]
    async fn command_probe_reports_exit_status_and_first_output_line() {
        let t = Duration::from_secs(5);
        assert_eq!(probe(&command(&["true"]), t).await, Ok(()));
        assert_eq!(probe(&command(&["false"]), t).await, Err("exit status 1".to_owned()));
        let err = probe(&command(&["sh", "-c", "echo; echo '  not ready  '; echo more; exit 3"]), t).await;
        assert_eq!(err, Err("exit status 3: not ready".to_owned()));
        let err = probe(&command(&["sh", "-c", "echo oops >&2; exit 2"]), t).await;
        assert_eq!(err, Err("exit status 2: oops".to_owned()));
        let err = probe(&command(&["sh", "-c", "kill -9 $$"]), t).await;
        assert_eq!(err, Err("killed by signal 9".to_owned()));
        let err = probe(&command(&["/nonexistent/weft-check"]), t).await.unwrap_err();
        assert_eq!(err, "run /nonexistent/weft-check: no such file or directory");
        assert_eq!(probe(&CheckKind::Command { argv: vec![] }, t).await, Err("empty command".to_owned()));
    }

    #[tokio::test]
    async fn command_probe_bounds_output_and_drains_big_output() {
        // 1 MiB on stdout would fill the pipe and block the command if it were not drained.
        let script = "head -c 1048576 /dev/zero | tr '\\0' x; exit 1";
        let err = probe(&command(&["sh", "-c", script]), Duration::from_secs(10)).await.unwrap_err();
        assert_eq!(err, format!("exit status 1: {}", "x".repeat(OUTPUT_LIMIT)));
    }

    #[tokio::test]
    async fn command_probe_kills_and_reaps_on_timeout() {
        let pid_file = pid_file("timeout");
        let pid_path = pid_file.to_str().unwrap();
        let timeout = Duration::from_millis(200);
        let started = Instant::now();
        let err = probe(&command(&["sh", "-c", "echo $$ > \"$0\"; exec sleep 10", pid_path]), timeout).await;
        assert_eq!(err, Err("timed out after 200ms".to_owned()));
        assert!(started.elapsed() < timeout + SLACK);
        let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        let _ = std::fs::remove_file(&pid_file);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "sleep {pid} still exists");

        // Plain `sleep`, as the brief has it: killed too.
        let started = Instant::now();
        let err = probe(&command(&["sleep", "10"]), timeout).await;
        assert_eq!(err, Err("timed out after 200ms".to_owned()));
        assert!(started.elapsed() < timeout + SLACK);
    }

    #[tokio::test]
    async fn spawn_goes_passing_then_critical_when_the_listener_closes() {
        let (addr, server) = tcp_server().await;
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let spec = CheckSpec {
            kind: CheckKind::Tcp { addr },
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(50),
            rise: 2,
            fall: 3,
        };
        let handle = spawn(spec, move |health, reason| seen.lock().unwrap().push((health, reason)));

        assert!(wait_for(|| !events.lock().unwrap().is_empty()).await, "never passed");
        assert_eq!(events.lock().unwrap()[0], (Health::Passing, None));

        server.abort();
        let _ = server.await;
        assert!(wait_for(|| events.lock().unwrap().len() >= 2).await, "never went critical");
        let (health, reason) = events.lock().unwrap()[1].clone();
        assert_eq!(health, Health::Critical);
        assert_eq!(reason, Some(format!("connect {addr}: connection refused")));

        // More failures change nothing.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(events.lock().unwrap().len(), 2);
        assert!(!handle.is_finished());
        handle.abort();
        assert!(wait_for(|| handle.is_finished()).await);
    }

    #[tokio::test]
    async fn spawn_starts_critical_and_tells_a_failing_reason_once() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let kind = CheckKind::Tcp { addr: closed_port().await };
        let spec = CheckSpec {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(50),
            ..spec(kind)
        };
        let _handle = spawn(spec, move |h, reason| seen.lock().unwrap().push((h, reason)));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let calls = calls.lock().unwrap();
        // Several probes failed the same way: one report, critical, with the reason.
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].0, Health::Critical);
        assert!(calls[0].1.as_deref().unwrap_or("").contains("refused"), "{calls:?}");
    }

    #[tokio::test]
    async fn dropping_the_handle_kills_a_running_command() {
        let pid_file = pid_file("drop");
        let script = "echo $$ > \"$0.tmp\" && mv \"$0.tmp\" \"$0\"; exec sleep 30";
        let kind = command(&["sh", "-c", script, pid_file.to_str().unwrap()]);
        let handle = spawn(spec(kind), |_, _| {});
        assert!(wait_for(|| pid_file.exists()).await, "command never started");
        let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        let _ = std::fs::remove_file(&pid_file);
        drop(handle);
        assert!(wait_for(|| process_dead(pid)).await, "sleep {pid} survived its check");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration(" 1m "), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "s",
            "10",
            "1.5s",
            "-1s",
            "+1s",
            "2 s",
            "2S",
            "2sec",
            "1d",
            "99999999999999999999s",
            "18446744073709551615h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_duration("10").unwrap_err().contains("missing unit"));
    }

    #[test]
    fn durations_print_in_their_largest_whole_unit() {
        assert_eq!(fmt_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(fmt_duration(Duration::from_secs(1)), "1s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(fmt_duration(Duration::from_secs(120)), "2m");
        assert_eq!(fmt_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(fmt_duration(Duration::ZERO), "0ms");
        assert_eq!(fmt_duration(Duration::from_micros(1500)), "1.5ms");
    }

    #[test]
    fn validate_accepts_good_specs_and_names_the_problem() {
        let tcp = CheckKind::Tcp { addr: "10.42.1.5:80".parse().unwrap() };
        let good = spec(tcp.clone());
        assert_eq!(validate(&good), Ok(()));
        assert_eq!(validate(&spec(CheckKind::Http { url: "http://10.42.1.5:8080/health".into() })), Ok(()));
        assert_eq!(validate(&spec(command(&["pg_isready", "-q"]))), Ok(()));
        let edge = CheckSpec {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(100),
            rise: 100,
            fall: 1,
            ..good.clone()
        };
        assert_eq!(validate(&edge), Ok(()));

        let cases = [
            (CheckSpec { interval: Duration::from_millis(99), ..good.clone() }, "interval 99ms"),
            (CheckSpec { interval: Duration::from_secs(3601), ..good.clone() }, "interval 3601s"),
            (CheckSpec { timeout: Duration::from_millis(49), ..good.clone() }, "timeout 49ms"),
            (CheckSpec { timeout: Duration::from_secs(11), ..good.clone() }, "timeout 11s"),
            (CheckSpec { rise: 0, ..good.clone() }, "rise 0"),
            (CheckSpec { fall: 101, ..good.clone() }, "fall 101"),
            (spec(CheckKind::Tcp { addr: "10.42.1.5:0".parse().unwrap() }), "port 0"),
            (spec(CheckKind::Http { url: "http://web:80/".into() }), "IP literal"),
            (spec(CheckKind::Http { url: "https://10.42.1.5/".into() }), "only http"),
            (spec(CheckKind::Command { argv: vec![] }), "empty argv"),
            (spec(command(&[""])), "empty program"),
            (spec(command(&["echo", "a\0b"])), "NUL"),
        ];
        for (spec, want) in cases {
            let err = validate(&spec).unwrap_err();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    #[test]
    fn jitter_stays_within_a_tenth() {
        let interval = Duration::from_secs(1);
        for r in [0, 1, 99_999, 100_000, 100_001, u64::MAX] {
            assert!(jitter(interval, r) <= interval / 10);
        }
        assert_eq!(jitter(interval, 100_000), Duration::from_millis(100));
        assert_eq!(jitter(Duration::ZERO, 12345), Duration::ZERO);
    }

    #[test]
    fn specs_round_trip_through_serde() {
        let s = spec(command(&["true"]));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<CheckSpec>(&json).unwrap(), s);
        assert_eq!(serde_json::to_string(&Health::Passing).unwrap(), "\"passing\"");
    }
}
