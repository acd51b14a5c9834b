//! The lab harness for integration tests: real `weft` daemons in network namespaces.
//!
//! [`Lab::up`] runs `netns-lab/lab.sh up` with the `weft` binary of this build, a lab directory
//! of its own under /tmp and a tag unique to this process and lab (`wt` + 4 base-36 digits), so
//! parallel tests and earlier crashed runs never collide (shared LAB.md). Dropping the [`Lab`]
//! runs `lab.sh down`, also while the test panics: that ends the lab's daemons by PID and
//! deletes exactly the lab's namespaces. A test that cannot run its lab (not root, no `ip`, no
//! /dev/net/tun) panics with the reason: it never passes silently.
//!
//! Node names are lab.sh's: `ul` (the underlay switch), `h<i>` (hosts, underlay address
//! 10.200.0.<i>), `h<i>c<j>` (containers, overlay addresses from host i's 10.42.<i>.0/24).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Whether `cond` holds within `limit`, polling every 250 ms: for state that settles after the
/// step a test waited for (membership confirming a session's member, gossip reaching a third
/// host, the engine applying a reload). Assert on the result with what was last seen.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The lab script, from the source tree of this build.
const LAB_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/netns-lab/lab.sh");
/// The daemon and CLI binary that cargo built for these tests.
const WEFT_BIN: &str = env!("CARGO_BIN_EXE_weft");

/// Labs started by this process so far; part of every tag and lab directory name.
static LABS_STARTED: AtomicU32 = AtomicU32::new(0);

/// One lab at a time per test binary: a 2-core CI machine running several labs' daemons at
/// once starves their timers (membership would see false suspicions), and a test's verdict
/// must not depend on which other tests happen to run beside it.
static ONE_LAB_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A running lab of `hosts` hosts with `containers` containers each; removed on drop.
pub struct Lab {
    /// Lab directory: PKI, node configs, daemon logs and PID files, container addresses.
    pub dir: PathBuf,
    /// Prefix of every namespace of this lab.
    pub tag: String,
    /// Number of hosts, `h1..=h<hosts>`.
    pub hosts: usize,
    /// Containers per host, `h<i>c1..=h<i>c<containers>`.
    pub containers: usize,
    /// Held for the lab's lifetime (released after `Drop` has taken the lab down).
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Lab {
    /// Builds a lab with one running daemon per host and every container attached; panics
    /// with lab.sh's output if that fails, or with the reason if labs cannot run here.
    pub fn up(hosts: usize, containers: usize) -> Lab {
        Self::up_with(hosts, containers, &[])
    }

    /// As [`Lab::up`], with extra configuration appended to node configs: `("all", toml)` to
    /// every host's, `("h2", toml)` to h2's (lab.sh `WEFT_LAB_EXTRA`).
    pub fn up_with(hosts: usize, containers: usize, extra: &[(&str, &str)]) -> Lab {
        Self::up_inner(hosts, containers, extra, false)
    }

    /// As [`Lab::up_with`], on a dual-stack network (10.42.0.0/16 and fd42::/48; host i owns
    /// 10.42.<i>.0/24 and fd42:0:0:<i>::/64): every container has both, see [`Lab::ip6`].
    pub fn up_dual(hosts: usize, containers: usize, extra: &[(&str, &str)]) -> Lab {
        Self::up_inner(hosts, containers, extra, true)
    }

    fn up_inner(hosts: usize, containers: usize, extra: &[(&str, &str)], dual: bool) -> Lab {
        require_lab_support();
        // A test that panicked while holding the lock poisoned it; the lab it held is gone.
        let serial = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let pid = std::process::id();
        let mut last_output = String::new();
        // A tag can only clash with leftovers of a crashed run whose PID matched ours modulo
        // 36^3; lab.sh then refuses without touching them and the next counter value is tried.
        for _ in 0..3 {
            let n = LABS_STARTED.fetch_add(1, Ordering::Relaxed);
            let tag = format!("wt{}{}", base36(pid, 3), base36(n, 1));
            let dir = PathBuf::from(format!("/tmp/weft-lab-{pid}-{n}"));
            let extra_dir = PathBuf::from(format!("/tmp/weft-lab-{pid}-{n}-extra"));
            let _ = std::fs::remove_dir_all(&extra_dir);
            if !extra.is_empty() {
                std::fs::create_dir_all(&extra_dir).expect("creating the extra config directory");
                for (host, text) in extra {
                    std::fs::write(extra_dir.join(format!("{host}.toml")), text)
                        .expect("writing extra config");
                }
            }
            let mut cmd =
                lab_sh_command(&dir, Some(&tag), &["up", &hosts.to_string(), &containers.to_string()]);
            if !extra.is_empty() {
                cmd.env("WEFT_LAB_EXTRA", &extra_dir);
            }
            if dual {
                cmd.env("WEFT_LAB_DUAL", "1");
            }
            let out = cmd.output().unwrap_or_else(|e| panic!("cannot run bash {LAB_SH}: {e}"));
            let _ = std::fs::remove_dir_all(&extra_dir);
            if out.status.success() {
                return Lab { dir, tag, hosts, containers, _serial: serial };
            }
            last_output = describe(&out);
            // lab.sh removes a failed lab itself; this is a second, idempotent attempt.
            let _ = lab_sh(&dir, None, &["down"]);
            if !last_output.contains("already exist") {
                break;
            }
        }
        panic!("lab.sh up {hosts} {containers} failed:\n{last_output}");
    }

    /// The lab directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The namespace of `node` (`ul`, `h<i>`, `h<i>c<j>`).
    pub fn netns(&self, node: &str) -> String {
        format!("{}{node}", self.tag)
    }

    /// The control socket of `host`'s daemon.
    pub fn socket(&self, host: &str) -> PathBuf {
        self.dir.join(host).join("weft.sock")
    }

    /// All container names, host by host.
    pub fn container_names(&self) -> Vec<String> {
        (1..=self.hosts).flat_map(|i| (1..=self.containers).map(move |j| format!("h{i}c{j}"))).collect()
    }

    /// Runs `args` inside `node`'s namespace and returns its output, whatever its status.
    pub fn exec(&self, node: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns(node)])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `ip netns exec` in {node}: {e}"))
    }

    /// Runs `sh -c script` inside `node`'s namespace.
    pub fn sh(&self, node: &str, script: &str) -> Output {
        self.exec(node, &["sh", "-c", script])
    }

    /// The overlay address that `weft attach` gave `container`.
    pub fn ip(&self, container: &str) -> String {
        let path = self.dir.join(format!("{container}.ip"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no address for {container} ({}): {e}", path.display()))
            .trim()
            .to_string()
    }

    /// The IPv6 address that `weft attach` gave `container` in a dual-stack lab.
    pub fn ip6(&self, container: &str) -> String {
        let path = self.dir.join(format!("{container}.ip6"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no IPv6 address for {container} ({}): {e}", path.display()))
            .trim()
            .to_string()
    }

    /// Whether `from` gets a ping reply from `to_ip` (`ping -c 2 -W 2`, up to 3 attempts, so
    /// that a first ARP or handshake round trip does not count as a failure).
    pub fn ping(&self, from: &str, to_ip: &str) -> bool {
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(300));
            }
            if self.exec(from, &["ping", "-n", "-q", "-c", "2", "-W", "2", to_ip]).status.success() {
                return true;
            }
        }
        false
    }

    /// Pings every ordered pair of containers; panics with the pairs that failed, saying
    /// `when` ("before the attack").
    pub fn ping_all_pairs(&self, when: &str) {
        let names = self.container_names();
        let mut failed = Vec::new();
        for from in &names {
            for to in names.iter().filter(|to| *to != from) {
                if !self.ping(from, &self.ip(to)) {
                    failed.push(format!("{from} -> {to}"));
                }
            }
        }
        assert!(failed.is_empty(), "pings failed {when}: {failed:?}");
    }

    /// Sends `signal` (e.g. "TERM", "KILL", "HUP") to `host`'s daemon; for signals that end
    /// it, waits until it has exited. Panics if the daemon is not running or does not exit.
    pub fn stop_daemon(&self, host: &str, signal: &str) {
        self.lab_sh_ok(&["stop-daemon", host, signal]);
    }

    /// Starts `host`'s daemon again with the same config and waits until it answers.
    pub fn start_daemon(&self, host: &str) {
        self.lab_sh_ok(&["start-daemon", host]);
    }

    /// Runs the weft CLI with `args` followed by `--socket` of `host`'s daemon.
    pub fn weft(&self, host: &str, args: &[&str]) -> Output {
        Command::new(WEFT_BIN)
            .args(args)
            .arg("--socket")
            .arg(self.socket(host))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {WEFT_BIN}: {e}"))
    }

    /// Everything `host`'s daemon has logged so far (across restarts).
    pub fn log(&self, host: &str) -> String {
        let path = self.dir.join(host).join("weft.log");
        std::fs::read_to_string(&path).unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
    }

    /// Sends `mib` MiB of random bytes over TCP (socat) from container `from` to container
    /// `to` and panics unless they arrive complete and unchanged (sha256).
    pub fn transfer_intact(&self, from: &str, to: &str, mib: usize) {
        transfer_intact_between(&self.dir, &self.netns(from), &self.netns(to), &self.ip(to), mib);
    }

    fn lab_sh_ok(&self, args: &[&str]) {
        let out = lab_sh(&self.dir, None, args);
        assert!(out.status.success(), "lab.sh {} failed:\n{}", args.join(" "), describe(&out));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // WEFT_TEST_KEEP_LOGS=<dir>: a failed test's whole daemon logs are copied there
            // (the lab directory goes with the lab).
            if let Some(keep) = std::env::var_os("WEFT_TEST_KEEP_LOGS") {
                let to = Path::new(&keep).join(&self.tag);
                if std::fs::create_dir_all(&to).is_ok() {
                    for i in 1..=self.hosts {
                        let _ = std::fs::write(to.join(format!("h{i}.log")), self.log(&format!("h{i}")));
                    }
                    eprintln!("daemon logs kept in {}", to.display());
                }
            }
            for i in 1..=self.hosts {
                let log = self.log(&format!("h{i}"));
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- last lines of h{i}'s daemon log ---");
                tail.iter().rev().for_each(|line| eprintln!("{line}"));
            }
        }
        // Never panic here: a second panic while unwinding would abort the test binary.
        match lab_sh_command(&self.dir, None, &["down"]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("lab.sh down for {} failed:\n{}", self.tag, describe(&out)),
            Err(e) => eprintln!("cannot run lab.sh down for {}: {e}", self.tag),
        }
    }
}

/// Panics with the reason unless this process can build labs.
fn require_lab_support() {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(euid, "0", "lab tests need root to create network namespaces (effective uid is {euid})");
    let ip_works = Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
    assert!(ip_works, "lab tests need iproute2's `ip` in PATH (run scripts/install-deps.sh)");
    assert!(Path::new("/dev/net/tun").exists(), "lab tests need /dev/net/tun (modprobe tun)");
}

/// Runs `bash lab.sh ARGS` for the lab in `dir`; panics only if bash cannot be started.
fn lab_sh(dir: &Path, tag: Option<&str>, args: &[&str]) -> Output {
    lab_sh_command(dir, tag, args).output().unwrap_or_else(|e| panic!("cannot run bash {LAB_SH}: {e}"))
}

/// `bash lab.sh ARGS` for the lab in `dir`, with this build's binary (and `tag`, for `up`).
fn lab_sh_command(dir: &Path, tag: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(LAB_SH).args(args).env("WEFT_BIN", WEFT_BIN).env("WEFT_LAB_DIR", dir);
    if let Some(tag) = tag {
        cmd.env("WEFT_LAB_TAG", tag);
    }
    cmd
}

fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The low `digits` base-36 digits of `n`, zero-padded.
fn base36(mut n: u32, digits: usize) -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; digits];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).expect("ASCII digits")
}

/// A fresh empty directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `<tmp>/weft-<prefix>-<pid>-<tag>`, emptied.
    pub fn new(prefix: &str, tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("weft-{prefix}-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A process started inside a lab namespace, killed on drop (the lab's teardown kills
/// whatever is left in its namespaces, too).
pub struct Bg(pub std::process::Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Lab {
    /// Starts `args` inside `node`'s namespace in the background, output discarded.
    pub fn spawn(&self, node: &str, args: &[&str]) -> Bg {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns(node)])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {args:?} in {node}: {e}"));
        Bg(child)
    }
}

impl Lab {
    /// `host`'s counter `name` from `weft status --json` (`engine.counters`).
    pub fn counter(&self, host: &str, name: &str) -> u64 {
        let out = self.weft(host, &["status", "--json"]);
        assert!(out.status.success(), "weft status on {host}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status is JSON");
        v["engine"]["counters"][name].as_u64().unwrap_or_else(|| panic!("no counter {name} in {v}"))
    }

    /// ICMP echo requests `node`'s kernel has received (`Icmp: InEchos` of the /proc/net/snmp
    /// it sees, which is its own namespace's): evidence that needs no packet capture.
    pub fn echo_requests_received(&self, node: &str) -> u64 {
        let out = self.exec(node, &["cat", "/proc/net/snmp"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut icmp = text.lines().filter(|l| l.starts_with("Icmp: "));
        let (Some(names), Some(values)) = (icmp.next(), icmp.next()) else {
            panic!("no Icmp lines in {node}'s /proc/net/snmp:\n{text}")
        };
        let at = names.split_whitespace().position(|n| n == "InEchos").expect("an InEchos column");
        values.split_whitespace().nth(at).and_then(|v| v.parse().ok()).expect("an InEchos value")
    }
}

/// Runs the weft CLI with `args` only (no `--socket`): offline commands such as `weft ca
/// revoke` and `weft cert show`, which take no daemon connection.
/// Sends `mib` MiB of random bytes over TCP (socat) from namespace `from` to `to_ip` in
/// namespace `to` and panics unless they arrive complete and unchanged (sha256); the files
/// live in `dir`.
pub fn transfer_intact_between(dir: &Path, from: &str, to: &str, to_ip: &str, mib: usize) {
    let blob = dir.join(format!("blob-{from}-{to}"));
    let recv = dir.join(format!("recv-{from}-{to}"));
    let made = Command::new("sh")
        .arg("-c")
        .arg(format!("head -c {mib}M /dev/urandom > {}", blob.display()))
        .status()
        .expect("sh");
    assert!(made.success(), "cannot write {}", blob.display());
    let mut server = Command::new("ip")
        .args(["netns", "exec", to, "timeout", "120", "socat", "-u", "TCP-LISTEN:5001,reuseaddr"])
        .arg(format!("CREATE:{}", recv.display()))
        .spawn()
        .expect("socat server");
    std::thread::sleep(Duration::from_millis(300));
    let client = Command::new("ip")
        .args(["netns", "exec", from, "timeout", "120", "socat", "-u"])
        .arg(format!("OPEN:{}", blob.display()))
        .arg(format!("TCP:{to_ip}:5001"))
        .output()
        .expect("socat client");
    let served = server.wait().expect("socat server exit");
    assert!(client.status.success(), "socat client: {}", String::from_utf8_lossy(&client.stderr));
    assert!(served.success(), "socat server failed");
    let sha = |p: &Path| {
        let o = Command::new("sha256sum").arg(p).output().expect("sha256sum");
        String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap_or_default().to_owned()
    };
    let len = std::fs::metadata(&recv).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, (mib as u64) << 20, "{from} -> {to}: received {len} bytes of {mib} MiB");
    assert_eq!(sha(&blob), sha(&recv), "{from} -> {to}: the received file differs from the sent one");
    let _ = std::fs::remove_file(&blob);
    let _ = std::fs::remove_file(&recv);
}

pub fn weft_offline(args: &[&str]) -> Output {
    Command::new(WEFT_BIN).args(args).output().unwrap_or_else(|e| panic!("cannot run {WEFT_BIN}: {e}"))
}

impl Lab {
    /// The members `host` lists in `weft peers --json` (one JSON object each: name,
    /// public_key, state, endpoint, connected, …); panics if the daemon does not answer.
    pub fn peers(&self, host: &str) -> Vec<serde_json::Value> {
        let out = self.weft(host, &["peers", "--json"]);
        assert!(out.status.success(), "weft peers on {host}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("peers is JSON");
        v.as_array().unwrap_or_else(|| panic!("weft peers --json on {host} is not a list: {v}")).clone()
    }

    /// Inserts `line` into `host`'s node.toml right below the `[table]` header (which must be
    /// there), so the key lands in that table whatever follows it.
    pub fn add_config_line(&self, host: &str, table: &str, line: &str) {
        let path = self.dir.join(host).join("node.toml");
        let text = std::fs::read_to_string(&path).expect("reading node.toml");
        let header = format!("[{table}]\n");
        assert!(text.contains(&header), "{host}'s node.toml has no {header:?}:\n{text}");
        std::fs::write(&path, text.replacen(&header, &format!("{header}{line}\n"), 1))
            .expect("writing node.toml");
    }

    /// `name` of the `section` lines of the /proc/net/snmp and /proc/net/netstat that `node`
    /// sees (its own namespace's), e.g. `("Udp", "NoPorts")` or `("TcpExt", "TCPOFOQueue")`:
    /// kernel evidence that needs no packet capture.
    pub fn snmp(&self, node: &str, section: &str, name: &str) -> u64 {
        let out = self.exec(node, &["cat", "/proc/net/snmp", "/proc/net/netstat"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let prefix = format!("{section}: ");
        let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            panic!("no {section} lines in {node}'s /proc/net/snmp or netstat:\n{text}")
        };
        let at =
            names.split_whitespace().position(|n| n == name).unwrap_or_else(|| panic!("no {section} {name}"));
        values.split_whitespace().nth(at).and_then(|v| v.parse().ok()).expect("a number")
    }
}

impl Lab {
    /// Starts `args` inside `node`'s namespace in the background, its stdout and stderr
    /// appended to `log` (e.g. a `ping -D` whose replies a test reads while it runs).
    pub fn spawn_logged(&self, node: &str, args: &[&str], log: &Path) -> Bg {
        let file = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()))
        };
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns(node)])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(file())
            .stderr(file())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {args:?} in {node}: {e}"));
        Bg(child)
    }

    /// Replaces the `key = …` line of `[table]` in `host`'s node.toml with `key = value`
    /// (`value` is TOML as written, e.g. `"\"/x/ca.crt\""` or `["a", "b"]`); panics unless
    /// the table has exactly such a line.
    pub fn set_config_line(&self, host: &str, table: &str, key: &str, value: &str) {
        let path = self.dir.join(host).join("node.toml");
        let text = std::fs::read_to_string(&path).expect("reading node.toml");
        let header = format!("[{table}]");
        let mut in_table = false;
        let mut replaced = 0;
        let lines: Vec<String> = text
            .lines()
            .map(|line| {
                let trimmed = line.trim_start();
                if trimmed.starts_with('[') {
                    in_table = trimmed.trim_end() == header;
                } else if in_table
                    && trimmed.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='))
                {
                    replaced += 1;
                    return format!("{key} = {value}");
                }
                line.to_owned()
            })
            .collect();
        assert_eq!(replaced, 1, "{host}'s node.toml has {replaced} `{key} =` lines in {header}:\n{text}");
        std::fs::write(&path, lines.join("\n") + "\n").expect("writing node.toml");
    }
}

/// An output's status, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    describe(o)
}

/// Removes the empty cgroup directories under and including `dir` (cgroupfs only removes
/// empty ones, so a busy cgroup stays): what container engines in a lab leave behind.
pub fn remove_empty_cgroups(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_cgroups(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Lab {
    /// The containers `host` has attached to its first network (`weft status --json`).
    pub fn attached(&self, host: &str) -> Vec<serde_json::Value> {
        let o = self.weft(host, &["status", "--json"]);
        assert!(o.status.success(), "weft status on {host}: {}", describe(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status JSON");
        v["networks"][0]["containers"].as_array().cloned().unwrap_or_default()
    }

    /// `host`'s gateway address on its first network.
    pub fn gateway(&self, host: &str) -> String {
        let o = self.weft(host, &["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status JSON");
        v["networks"][0]["gateway"].as_str().expect("gateway").to_owned()
    }

    /// The container veths (`wv…`) in `host`'s namespace.
    pub fn veths(&self, host: &str) -> usize {
        let out = self.exec(host, &["ip", "-o", "link", "show"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.split(": ").nth(1).is_some_and(|n| n.starts_with("wv")))
            .count()
    }
}
