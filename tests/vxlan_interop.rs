//! Plain VXLAN interop: a weft host with `encryption = "none"` and a Linux kernel `vxlan`
//! device in another namespace exchange frames both ways, with and without remote checksum
//! offload (RCO); and two weft hosts with RCO carry TCP intact. Each test builds its own
//! two-host lab (names `wx<pid><n>…`, removed on drop, also on panic).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
static LABS: AtomicUsize = AtomicUsize::new(0);

/// Two hosts `h1` (10.200.0.1) and `h2` (10.200.0.2) on an underlay bridge, and the
/// containers the tests add.
struct Lab {
    tag: String,
    dir: PathBuf,
    daemons: Vec<Child>,
    namespaces: Vec<String>,
}

impl Lab {
    fn up() -> Lab {
        assert!(
            std::fs::read_to_string("/proc/self/status").unwrap().contains("Uid:\t0"),
            "lab test needs root"
        );
        let pid = std::process::id();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let tag = format!("wx{}{n}", pid % 100_000);
        let dir = PathBuf::from(format!("/tmp/weft-vx-{pid}-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab { tag, dir, daemons: Vec::new(), namespaces: Vec::new() };
        let ul = lab.add_ns("ul");
        run(&["ip", "-n", &ul, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", &ul, "link", "set", "br0", "up"]);
        for i in 1..=2 {
            let h = lab.add_ns(&format!("h{i}"));
            let port = format!("p{i}");
            run(&[
                "ip", "-n", &ul, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &h,
            ]);
            run(&["ip", "-n", &ul, "link", "set", &port, "master", "br0", "up"]);
            run(&["ip", "-n", &h, "addr", "add", &format!("10.200.0.{i}/24"), "dev", "eth0"]);
            run(&["ip", "-n", &h, "link", "set", "eth0", "up"]);
            run(&["ip", "-n", &h, "link", "set", "lo", "up"]);
        }
        weft(&lab.dir, &["ca", "init", "--name", "vx"]);
        lab
    }

    fn ns(&self, n: &str) -> String {
        format!("{}{n}", self.tag)
    }

    fn add_ns(&mut self, n: &str) -> String {
        let name = self.ns(n);
        run(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        name
    }

    /// Host `h<i>`'s kernel VXLAN device (VNI 42, towards the other host) holding `ip`/16;
    /// `extra`: more `ip link add … type vxlan` options.
    fn kernel_vxlan(&self, i: usize, ip: &str, extra: &[&str]) {
        let h = self.ns(&format!("h{i}"));
        let (local, remote) = (format!("10.200.0.{i}"), format!("10.200.0.{}", 3 - i));
        let mut args = vec!["ip", "-n", &h, "link", "add", "vx0", "type", "vxlan", "id", "42"];
        args.extend(["remote", &remote, "local", &local, "dstport", "4789", "dev", "eth0"]);
        args.extend(extra);
        run(&args);
        run(&["ip", "-n", &h, "addr", "add", &format!("{ip}/16"), "dev", "vx0"]);
        run(&["ip", "-n", &h, "link", "set", "vx0", "up"]);
    }

    /// Starts weft on host `h<i>` with one plain VXLAN network (VNI 42) towards the other
    /// host, and attaches container `h<i>c1`; returns the control socket and its address.
    fn weft_host(&mut self, i: usize, remote_checksum: bool) -> (String, String) {
        let name = format!("h{i}");
        let d = self.dir.join(&name);
        std::fs::create_dir_all(&d).unwrap();
        let key = d.join("node.key").display().to_string();
        let crt = d.join("node.crt").display().to_string();
        weft(&self.dir, &["keygen", "--out", &key]);
        let subnet = format!("10.42.{i}.0/24");
        let public = format!("{key}.pub");
        weft(
            &self.dir,
            &[
                "ca",
                "sign",
                "--name",
                &name,
                "--public-key-file",
                &public,
                "--subnet",
                &subnet,
                "--out",
                &crt,
            ],
        );
        let config = format!(
            r#"[node]
name = "{name}"
key = "{key}"
cert = "{crt}"
ca = "{ca}"
state_dir = "{d}/state"
control_socket = "{d}/weft.sock"
[underlay]
listen = "10.200.0.{i}:51820"
workers = 1
[[network]]
name = "plain"
vni = 42
subnet = "10.42.0.0/16"
encryption = "none"
remotes = ["10.200.0.{other}"]
remote_checksum = {remote_checksum}
"#,
            ca = self.dir.join("ca.crt").display(),
            d = d.display(),
            other = 3 - i,
        );
        std::fs::write(d.join("node.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("weft.log")).unwrap();
        self.daemons.push(
            Command::new("ip")
                .args(["netns", "exec", &self.ns(&name), WEFT, "run", "--config"])
                .arg(d.join("node.toml"))
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let sock = d.join("weft.sock").display().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Command::new(WEFT)
            .args(["status", "--socket", &sock])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(
                Instant::now() < deadline,
                "daemon {name} did not start: {}",
                std::fs::read_to_string(d.join("weft.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let c = self.add_ns(&format!("{name}c1"));
        let ip = weft(
            &self.dir,
            &["attach", "--socket", &sock, "--netns", &c, "--network", "plain", "--name", "c1"],
        );
        (sock, ip)
    }

    /// TCP from namespace `from` to `to_ip` in `to`, checked byte for byte.
    fn transfer_intact(&self, from: &str, to: &str, to_ip: &str, mib: usize) {
        common::transfer_intact_between(&self.dir, from, to, to_ip, mib);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = Command::new("kill").arg(d.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(d.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        for n in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn weft(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(WEFT).current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "weft {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn ping(ns: &str, ip: &str) -> bool {
    (0..5).any(|_| {
        Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-n", "-q", "-c", "1", "-W", "1", ip])
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A counter from `weft status --json` (`engine.counters`).
fn counter(sock: &str, name: &str) -> u64 {
    let out = Command::new(WEFT).args(["status", "--json", "--socket", sock]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status is JSON");
    v["engine"]["counters"][name].as_u64().unwrap_or_else(|| panic!("no counter {name} in {v}"))
}

#[test]
fn weft_plain_vxlan_talks_to_kernel_vxlan() {
    let mut lab = Lab::up();
    lab.kernel_vxlan(2, "10.42.2.9", &[]);
    let (sock, ip) = lab.weft_host(1, false);
    assert_eq!(ip, "10.42.1.2");
    let (c1, h2) = (lab.ns("h1c1"), lab.ns("h2"));
    assert!(ping(&c1, "10.42.2.9"), "weft container -> kernel vxlan failed");
    assert!(ping(&h2, "10.42.1.2"), "kernel vxlan -> weft container failed");
    // TCP both ways. The kernel leaves its TCP checksums partial for the device, and veth
    // carries them to weft unfinished: weft finds them so and lets its kernel finish them
    // (before, every segment from the kernel side was dropped by the container's TCP for its
    // checksum, so no connection got past the SYN-ACK). And veth would hand a kernel VXLAN
    // superframe (UDP tunnel GSO) to weft's socket whole, as one 64 KiB datagram that no
    // VTEP can read (Linux 6.18 queues tunnel GSO packets to a plain UDP socket unsegmented):
    // a real NIC segments them, so here veth must (see README, plain VXLAN interop).
    run(&["ip", "netns", "exec", &h2, "ethtool", "-K", "eth0", "tx-udp_tnl-segmentation", "off"]);
    run(&["ip", "netns", "exec", &h2, "ethtool", "-K", "eth0", "tx-udp_tnl-csum-segmentation", "off"]);
    lab.transfer_intact(&c1, &h2, "10.42.2.9", 8);
    lab.transfer_intact(&h2, &c1, &ip, 8);
    // A kernel without remcsumrx drops RCO frames, so none leave without remote_checksum.
    assert_eq!(counter(&sock, "tso_partial_csum"), 0);
    assert_eq!(counter(&sock, "rco_rx"), 0);
    assert_eq!(counter(&sock, "drop_checksum"), 0);
}

/// Remote checksum offload as Linux speaks it (`remcsumtx remcsumrx`): weft's TCP segments
/// leave with the inner checksum partial and the kernel takes them; the kernel's RCO frames
/// (checksum partial) reach weft's container, which would drop them for their checksum if
/// weft passed them on as if they were complete.
#[test]
fn remote_checksum_offload_with_kernel_vxlan_carries_tcp_both_ways() {
    let mut lab = Lab::up();
    lab.kernel_vxlan(2, "10.42.2.9", &["remcsumtx", "remcsumrx"]);
    let (sock, ip) = lab.weft_host(1, true);
    let (c1, h2) = (lab.ns("h1c1"), lab.ns("h2"));
    assert!(ping(&c1, "10.42.2.9"), "weft container -> kernel vxlan failed");
    lab.transfer_intact(&c1, &h2, "10.42.2.9", 32);
    assert!(counter(&sock, "tso_partial_csum") > 0, "weft sent no segment with remote checksum offload");
    lab.transfer_intact(&h2, &c1, &ip, 32);
    assert!(counter(&sock, "rco_rx") > 0, "the kernel sent no RCO frame");
}

/// Two weft hosts with `remote_checksum`: segments leave partial both ways and arrive intact.
#[test]
fn remote_checksum_offload_between_weft_hosts_carries_tcp_intact() {
    let mut lab = Lab::up();
    let (s1, ip1) = lab.weft_host(1, true);
    let (s2, ip2) = lab.weft_host(2, true);
    let (c1, c2) = (lab.ns("h1c1"), lab.ns("h2c1"));
    assert!(ping(&c1, &ip2), "h1c1 -> h2c1 failed");
    lab.transfer_intact(&c1, &c2, &ip2, 64);
    lab.transfer_intact(&c2, &c1, &ip1, 16);
    for (s, h) in [(&s1, "h1"), (&s2, "h2")] {
        assert!(counter(s, "tso_partial_csum") > 0, "{h} sent no segment with remote checksum offload");
        assert!(counter(s, "rco_rx") > 0, "{h} received no RCO frame");
        assert_eq!(counter(s, "drop_offload"), 0, "{h} dropped offloaded frames");
    }
}
