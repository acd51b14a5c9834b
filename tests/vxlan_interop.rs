//! Plain VXLAN interop: a weft host with `encryption = "none"` and a Linux kernel `vxlan`
//! device in another namespace exchange frames both ways. Builds its own two-host lab (names
//! `wx<pid>…`, removed on drop, also on panic).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

struct Lab {
    tag: String,
    dir: PathBuf,
    daemon: Option<Child>,
}

impl Lab {
    fn ns(&self, n: &str) -> String {
        format!("{}{n}", self.tag)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = Command::new("kill").arg(d.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(d.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        for n in ["c1", "h1", "h2", "ul"] {
            let _ = Command::new("ip").args(["netns", "del", &self.ns(n)]).status();
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

#[test]
fn weft_plain_vxlan_talks_to_kernel_vxlan() {
    assert!(std::fs::read_to_string("/proc/self/status").unwrap().contains("Uid:\t0"), "lab test needs root");
    let pid = std::process::id();
    let tag = format!("wx{}", pid % 100_000);
    let dir = PathBuf::from(format!("/tmp/weft-vx-{pid}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut lab = Lab { tag, dir: dir.clone(), daemon: None };
    let (ul, h1, h2, c1) = (lab.ns("ul"), lab.ns("h1"), lab.ns("h2"), lab.ns("c1"));
    for n in [&ul, &h1, &h2, &c1] {
        run(&["ip", "netns", "add", n]);
    }
    run(&["ip", "-n", &ul, "link", "add", "br0", "type", "bridge"]);
    run(&["ip", "-n", &ul, "link", "set", "br0", "up"]);
    for (i, h) in [(1, &h1), (2, &h2)] {
        let port = format!("p{i}");
        run(&["ip", "-n", &ul, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", h]);
        run(&["ip", "-n", &ul, "link", "set", &port, "master", "br0", "up"]);
        run(&["ip", "-n", h, "addr", "add", &format!("10.200.0.{i}/24"), "dev", "eth0"]);
        run(&["ip", "-n", h, "link", "set", "eth0", "up"]);
        run(&["ip", "-n", h, "link", "set", "lo", "up"]);
    }
    // The kernel side: a vxlan device with VNI 42 towards h1, holding an overlay address.
    run(&[
        "ip",
        "-n",
        &h2,
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "42",
        "remote",
        "10.200.0.1",
        "local",
        "10.200.0.2",
        "dstport",
        "4789",
        "dev",
        "eth0",
    ]);
    run(&["ip", "-n", &h2, "addr", "add", "10.42.2.9/16", "dev", "vx0"]);
    run(&["ip", "-n", &h2, "link", "set", "vx0", "up"]);
    // The weft side.
    weft(&dir, &["ca", "init", "--name", "vx"]);
    weft(&dir, &["keygen", "--out", "h1.key"]);
    weft(
        &dir,
        &[
            "ca",
            "sign",
            "--name",
            "h1",
            "--public-key-file",
            "h1.key.pub",
            "--subnet",
            "10.42.1.0/24",
            "--out",
            "h1.crt",
        ],
    );
    let config = format!(
        r#"[node]
name = "h1"
key = "h1.key"
cert = "h1.crt"
ca = "ca.crt"
state_dir = "{d}/state"
control_socket = "{d}/weft.sock"
[underlay]
listen = "10.200.0.1:51820"
workers = 1
[[network]]
name = "plain"
vni = 42
subnet = "10.42.0.0/16"
encryption = "none"
remotes = ["10.200.0.2"]
"#,
        d = dir.display()
    );
    std::fs::write(dir.join("node.toml"), config).unwrap();
    let log = std::fs::File::create(dir.join("weft.log")).unwrap();
    lab.daemon = Some(
        Command::new("ip")
            .args(["netns", "exec", &h1, WEFT, "run", "--config"])
            .arg(dir.join("node.toml"))
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let sock = dir.join("weft.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !Command::new(WEFT)
        .args(["status", "--socket"])
        .arg(&sock)
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            Instant::now() < deadline,
            "daemon did not start: {}",
            std::fs::read_to_string(dir.join("weft.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let sock_s = sock.to_string_lossy().into_owned();
    let ip =
        weft(&dir, &["attach", "--socket", &sock_s, "--netns", &c1, "--network", "plain", "--name", "c1"]);
    assert_eq!(ip, "10.42.1.2");
    assert!(ping(&c1, "10.42.2.9"), "weft container -> kernel vxlan failed");
    assert!(ping(&h2, "10.42.1.2"), "kernel vxlan -> weft container failed");
}
