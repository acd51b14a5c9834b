//! The real container engines on weft, each started by the test inside a lab host's network
//! namespace with private roots, sockets and configs under its own directory (shared LAB.md):
//!
//! - Docker: a dockerd per host, weft's network and IPAM driver (`[docker] enable`) found in
//!   that dockerd's private plugin directory. Containers on a `-d weft` network on two hosts
//!   ping each other and resolve each other by their Docker names through weft DNS; their
//!   `--label`s reach policy and `weft.service` declares a service; a restart of weft leaves a
//!   running container's link and address alone; `docker rm` leaves no veth and no lease.
//! - containerd: a containerd per host and `ctr run --cni` with weft's CNI plugin; a container
//!   on h2 reaches one on h1, and both give their leases back when they exit.
//!
//! dockerd and ctr run in a mount namespace of their own where a tmpfs covers /run and private
//! directories cover /etc/docker, /etc/cni/net.d and /opt/cni: the plugin paths these engines
//! hard-code are the lab's, never the machine's. Needs docker.io, containerd, runc and
//! busybox-static (scripts/install-deps.sh).

mod common;

use common::{remove_empty_cgroups, text, Lab};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const WEFT_BIN: &str = env!("CARGO_BIN_EXE_weft");

/// Debian's docker client (the machine may have another one earlier on PATH).
const DOCKER: &str = "/usr/bin/docker";

/// The per-host directory of an engine, known before the lab exists (weft's config names
/// the driver's socket in it). Each test has its own `kind`: tests of this binary run side
/// by side, and each removes its directories' leftovers before its lab starts.
fn engine_dir(kind: &str, host: &str) -> PathBuf {
    PathBuf::from(format!("/tmp/weft-{kind}-{}-{host}", std::process::id()))
}

/// A busybox root filesystem with the tools the tests use.
fn make_rootfs(dir: &Path) {
    for sub in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox-static is installed");
    for tool in ["sh", "ip", "ping", "cat", "sleep", "nslookup", "hostname"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(tool)).unwrap();
    }
}

/// cgroup directories named `name` in every hierarchy (engines with cgroupfs create them).
fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(name))
        .filter(|p| p.exists())
        .collect()
}

/// `sh -c script` in a mount namespace of its own inside `netns`, where tmpfs covers /run
/// (plugin sockets the engines look for live there) and /opt (containerd creates
/// /opt/containerd), and `binds` (source, target) cover machine directories the engines
/// would otherwise read or write.
fn private_sh(netns: &str, binds: &[(PathBuf, &str)], script: &str) -> Command {
    let mut setup = String::from(
        "set -e; mount --make-rprivate /; mount -t tmpfs weftlab /run; mount -t tmpfs weftlab /opt; ",
    );
    for (src, target) in binds {
        setup.push_str(&format!("mkdir -p {target}; mount --bind {} {target}; ", src.display()));
    }
    let mut c = Command::new("nsenter");
    // nsenter --net, not `ip netns exec`: the latter remounts /sys, which hides the cgroup
    // mounts runc needs.
    c.arg(format!("--net=/run/netns/{netns}")).args(["unshare", "-m", "sh", "-c"]).arg(setup + script);
    c
}

/// A dockerd of the lab, stopped (containers removed first) and its directory removed on
/// drop.
struct Dockerd {
    dir: PathBuf,
    child: Child,
    cgroup: String,
}

impl Dockerd {
    /// Starts the dockerd of `host` in `engine_dir(kind, host)` (`kind` is the test's own,
    /// so tests running side by side never share, or remove, each other's directories).
    fn start(lab: &Lab, kind: &str, host: &str) -> Dockerd {
        let dir = engine_dir(kind, host);
        for sub in ["data", "exec", "etc", "client"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        make_rootfs(&dir.join("rootfs"));
        let cgroup = format!("weftlab{}{host}", std::process::id());
        let d = dir.display();
        let script = format!(
            "mkdir -p /run/docker/plugins; mount --bind {d}/plugins /run/docker/plugins; \
             exec dockerd --config-file {d}/daemon.json --data-root {d}/data --exec-root {d}/exec \
             --pidfile {d}/dockerd.pid -H unix://{d}/docker.sock --iptables=false --ip6tables=false \
             --ip-forward=false --ip-masq=false --bridge=none --storage-driver=vfs \
             --cgroup-parent={cgroup} --containerd-namespace=weftlab --containerd-plugins-namespace=weftlabp \
             --userland-proxy=false"
        );
        let binds = [(dir.join("etc"), "/etc/docker")];
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = private_sh(&lab.netns(host), &binds, &script)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start dockerd (apt-get install docker.io)");
        let mut d = Dockerd { dir, child, cgroup };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if d.docker(&["version"]).status.success() {
                break;
            }
            if Instant::now() > deadline || d.child.try_wait().ok().flatten().is_some() {
                panic!("dockerd on {host} did not come up:\n{}", d.log());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let import = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar -C {}/rootfs -c . | {DOCKER} -H unix://{}/docker.sock import - weftbusy:lab",
                d.dir.display(),
                d.dir.display()
            ))
            .env("DOCKER_CONFIG", d.dir.join("client"))
            .output()
            .unwrap();
        assert!(import.status.success(), "docker import: {}", text(&import));
        d
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new(DOCKER)
            .arg("-H")
            .arg(format!("unix://{}/docker.sock", self.dir.display()))
            .args(args)
            .env("DOCKER_CONFIG", self.dir.join("client"))
            .output()
            .expect("cannot run docker (apt-get install docker.io)")
    }

    fn docker_ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(o.status.success(), "docker {args:?}: {}\ndockerd log:\n{}", text(&o), self.log());
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }

    /// `docker network create -d weft --ipam-driver weft EXTRA weftnet`.
    fn create_weftnet(&self, extra: &[&str]) {
        let mut args = vec!["network", "create", "-d", "weft", "--ipam-driver", "weft"];
        args.extend(extra);
        args.push("weftnet");
        self.docker_ok(&args);
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        let _ = self.docker(&["network", "rm", "weftnet"]);
        // dockerd is the shell's exec'd process: this is its PID.
        stop(&mut self.child, Duration::from_secs(20));
        for cg in cgroup_dirs(&self.cgroup) {
            remove_empty_cgroups(&cg);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stops an engine we started: SIGTERM by its PID (kill(1): the tests keep `unsafe` out),
/// then SIGKILL if it has not exited within `grace`.
fn stop(child: &mut Child, grace: Duration) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + grace;
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until `host` lists a container named `name` and returns it.
fn wait_container(lab: &Lab, host: &str, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(c) = lab.attached(host).into_iter().find(|c| c["name"] == name) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{host} never listed {name}: {:?}\n{}",
            lab.attached(host),
            lab.log(host)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn docker_config(kind: &str, host: &str) -> String {
    let d = engine_dir(kind, host);
    format!(
        "[docker]\nenable = true\nsocket = \"{}/plugins/weft.sock\"\nengine = \"{}/docker.sock\"\n",
        d.display(),
        d.display()
    )
}

#[test]
fn docker_containers_on_a_weft_network_reach_and_resolve_each_other_across_hosts() {
    let _ = std::fs::remove_dir_all(engine_dir("docker", "h1"));
    let _ = std::fs::remove_dir_all(engine_dir("docker", "h2"));
    // On h1 only containers labelled role=client may ping role=web ones: the Docker --labels
    // must reach policy.
    let policy =
        "[network.policy]\ninbound = \"deny\"\n\n[[network.policy.rule]]\nname = \"clients-ping-web\"\n\
                  direction = \"in\"\naction = \"allow\"\nproto = \"icmp\"\n\
                  from = { labels = { role = \"client\" } }\nto = { labels = { role = \"web\" } }\n";
    let (c1, c2) = (docker_config("docker", "h1") + policy, docker_config("docker", "h2"));
    let lab = Lab::up_with(2, 0, &[("h1", &c1), ("h2", &c2)]);
    let (d1, d2) = (Dockerd::start(&lab, "docker", "h1"), Dockerd::start(&lab, "docker", "h2"));
    let (gw1, gw2) = (lab.gateway("h1"), lab.gateway("h2"));

    // A network on the wrong IPAM is refused with the way out.
    let wrong = d1.docker(&["network", "create", "-d", "weft", "--subnet", "10.42.0.0/16", "wrongipam"]);
    assert!(!wrong.status.success(), "a -d weft network on Docker's own IPAM was accepted");
    assert!(text(&wrong).contains("--ipam-driver weft"), "{}", text(&wrong));

    // Without --subnet, the error says what to give.
    let bare = d1.docker(&["network", "create", "-d", "weft", "--ipam-driver", "weft", "bare"]);
    assert!(!bare.status.success(), "a -d weft network without --subnet was accepted");
    assert!(text(&bare).contains("--subnet 10.42.0.0/16"), "{}", text(&bare));
    for d in [&d1, &d2] {
        d.create_weftnet(&["--subnet", "10.42.0.0/16", "--opt", "weft.network=default"]);
    }
    let subnet =
        d1.docker_ok(&["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "weftnet"]);
    assert_eq!(subnet, "10.42.0.0/16", "the Docker network's subnet is weft's");

    let run = |d: &Dockerd, name: &str, gw: &str, labels: &[&str]| {
        let mut args = vec!["run", "-d", "--name", name, "--network", "weftnet", "--dns", gw];
        for l in labels {
            args.extend(["--label", l]);
        }
        args.extend(["weftbusy:lab", "sleep", "600"]);
        d.docker_ok(&args)
    };
    run(&d1, "web1", &gw1, &["role=web", "weft.service=http:80"]);
    run(&d2, "web2", &gw2, &["role=client"]);

    // weft names the containers after Docker's names and carries their labels.
    let w1 = wait_container(&lab, "h1", "web1");
    let w2 = wait_container(&lab, "h2", "web2");
    let ip1 = w1["ip"].as_str().expect("address").to_owned();
    let ip2 = w2["ip"].as_str().expect("address").to_owned();
    assert!(ip1.starts_with("10.42.1."), "h1's container outside h1's pool: {ip1}");
    assert!(ip2.starts_with("10.42.2."), "h2's container outside h2's pool: {ip2}");
    let leases: Value =
        serde_json::from_str(&std::fs::read_to_string(lab.dir().join("h1/state/leases.json")).unwrap())
            .unwrap();
    let lease = &leases["networks"]["default"][&ip1];
    assert_eq!(lease["labels"]["role"], "web", "the --label did not reach weft: {lease}");
    let inside = d1.docker_ok(&["exec", "web1", "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(inside.contains(&format!("inet {ip1}/16")), "Docker configured another address: {inside}");

    // Across hosts, by address and by name through weft DNS (Docker's embedded resolver
    // forwards to the --dns server).
    let reach = |d: &Dockerd, from: &str, to: &str, ip: &str| {
        let script = format!(
            "for i in 1 2 3 4 5 6 7 8 9 10; do ping -c 1 -W 2 {to}.container.weft && exit 0; sleep 1; done; exit 1"
        );
        let o = d.docker(&["exec", from, "sh", "-c", &script]);
        assert!(o.status.success(), "{from} cannot reach {to} by name: {}\n{}", text(&o), lab.log("h1"));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(ip),
            "{to} did not resolve to {ip}: {}",
            text(&o)
        );
    };
    reach(&d2, "web2", "web1", &ip1);
    reach(&d1, "web1", "web2", &ip2);
    // A container without role=client is refused by h1's policy on the same warm path.
    let refused_before = lab.counter("h1", "drop_policy");
    let stranger = d2.docker(&[
        "run",
        "--rm",
        "--network",
        "weftnet",
        "weftbusy:lab",
        "ping",
        "-c",
        "3",
        "-W",
        "1",
        &ip1,
    ]);
    assert!(!stranger.status.success(), "an unlabelled container pinged role=web: {}", text(&stranger));
    assert!(lab.counter("h1", "drop_policy") > refused_before, "h1's policy did not count the refusal");

    // The label's service is in the catalog h2 sees.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = lab.weft("h2", &["services", "--json"]);
        let cat = String::from_utf8_lossy(&o.stdout).into_owned();
        if cat.contains("\"http\"") && cat.contains(&ip1) {
            break;
        }
        assert!(Instant::now() < deadline, "the weft.service label's service never reached h2: {}", text(&o));
        std::thread::sleep(Duration::from_millis(300));
    }

    // A restart of weft on h1 leaves web1's link and address alone, and it is reachable after.
    let mac_before = d1.docker_ok(&["exec", "web1", "cat", "/sys/class/net/eth0/address"]);
    lab.stop_daemon("h1", "TERM");
    let during = d1.docker_ok(&["exec", "web1", "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(during.contains(&ip1), "web1 lost its address while weft was stopped: {during}");
    lab.start_daemon("h1");
    assert_eq!(d1.docker_ok(&["exec", "web1", "cat", "/sys/class/net/eth0/address"]), mac_before);
    assert_eq!(
        wait_container(&lab, "h1", "web1")["ip"],
        ip1.as_str(),
        "web1's lease changed across the restart"
    );
    reach(&d2, "web2", "web1", &ip1);

    // docker rm leaves no veth and no lease, and frees the address for the next container.
    d1.docker_ok(&["rm", "-f", "web1"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(lab.attached("h1").is_empty() && lab.veths("h1") == 0) {
        assert!(
            Instant::now() < deadline,
            "docker rm left {:?} and {} veths on h1",
            lab.attached("h1"),
            lab.veths("h1")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let leases = std::fs::read_to_string(lab.dir().join("h1/state/leases.json")).unwrap_or_default();
    assert!(!leases.contains(&ip1), "docker rm left the lease of {ip1}: {leases}");
    run(&d1, "web3", &gw1, &[]);
    assert_eq!(wait_container(&lab, "h1", "web3")["ip"], ip1.as_str(), "the freed address was not reused");
    d1.docker_ok(&["rm", "-f", "web3"]);
    d2.docker_ok(&["rm", "-f", "web2"]);
    for d in [&d1, &d2] {
        d.docker_ok(&["network", "rm", "weftnet"]);
    }
    assert_eq!((lab.veths("h1"), lab.veths("h2")), (0, 0), "container veths left behind");
}

/// A containerd of the lab with its own root, state and socket; `ctr` runs in a mount
/// namespace where /etc/cni/net.d and /opt/cni/bin are the lab's.
struct Containerd {
    dir: PathBuf,
    child: Child,
    netns: String,
}

/// ctr's namespace (and the prefix of the id CNI sees).
const CTR_NS: &str = "wl";

impl Containerd {
    fn start(lab: &Lab, host: &str) -> Containerd {
        let dir = engine_dir("containerd", host);
        for sub in ["root", "state", "net.d", "bin", "fifo"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        make_rootfs(&dir.join("rootfs"));
        std::os::unix::fs::symlink(WEFT_BIN, dir.join("bin/weft")).unwrap();
        std::os::unix::fs::symlink("/usr/lib/cni/loopback", dir.join("bin/loopback")).unwrap();
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0", "name": "weftnet",
            "plugins": [{"type": "weft", "socket": lab.socket(host), "network": "default"}],
        });
        std::fs::write(dir.join("net.d/weftnet.conflist"), conflist.to_string()).unwrap();
        // Only what containerd needs; the machine's /etc/containerd/config.toml is not read.
        std::fs::write(dir.join("config.toml"), "version = 2\n").unwrap();
        let d = dir.display();
        let script = format!(
            "exec containerd --config {d}/config.toml --root {d}/root --state {d}/state --address {d}/containerd.sock"
        );
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = private_sh(&lab.netns(host), &[], &script)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start containerd (apt-get install containerd)");
        let c = Containerd { dir, child, netns: lab.netns(host) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.ctr(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "containerd on {host} did not come up:\n{}", c.log());
            std::thread::sleep(Duration::from_millis(300));
        }
        c
    }

    fn ctr_command(&self, args: &[&str]) -> Command {
        let d = &self.dir;
        let binds = [(d.join("net.d"), "/etc/cni/net.d"), (d.join("bin"), "/opt/cni/bin")];
        let quoted: Vec<String> = args.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect();
        let script =
            format!("exec ctr --address {}/containerd.sock -n {CTR_NS} {}", d.display(), quoted.join(" "));
        // ctr talks to containerd by its socket path; `run` gets --fifo-dir in the lab's
        // directory, which containerd's shims (outside this tmpfs /run) see too.
        private_sh(&self.netns, &binds, &script)
    }

    fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_command(args).output().expect("cannot run ctr")
    }

    fn rootfs(&self) -> String {
        self.dir.join("rootfs").display().to_string()
    }

    fn fifo(&self) -> String {
        self.dir.join("fifo").display().to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let tasks = self.ctr(&["task", "ls", "-q"]);
        for id in String::from_utf8_lossy(&tasks.stdout).split_whitespace() {
            let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
        }
        std::thread::sleep(Duration::from_millis(300));
        let list = self.ctr(&["container", "ls", "-q"]);
        for id in String::from_utf8_lossy(&list.stdout).split_whitespace() {
            let _ = self.ctr(&["task", "rm", "-f", id]);
            let _ = self.ctr(&["container", "rm", id]);
        }
        stop(&mut self.child, Duration::from_secs(10));
        for cg in cgroup_dirs(CTR_NS) {
            remove_empty_cgroups(&cg);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn containerd_ctr_run_cni_containers_reach_each_other_across_hosts() {
    let lab = Lab::up(2, 0);
    let _ = std::fs::remove_dir_all(engine_dir("containerd", "h1"));
    let _ = std::fs::remove_dir_all(engine_dir("containerd", "h2"));
    let (k1, k2) = (Containerd::start(&lab, "h1"), Containerd::start(&lab, "h2"));

    // h1's container runs (in the foreground of its ctr, which tears its network down when it
    // exits) while h2's pings it.
    let rootfs1 = k1.rootfs();
    let server = k1
        .ctr_command(&[
            "run",
            "--rm",
            "--cni",
            "--fifo-dir",
            &k1.fifo(),
            "--rootfs",
            &rootfs1,
            "srv",
            "/bin/sh",
            "-c",
            "sleep 25",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctr run");
    let deadline = Instant::now() + Duration::from_secs(30);
    let srv = loop {
        if let Some(c) = lab.attached("h1").into_iter().next() {
            break c;
        }
        assert!(Instant::now() < deadline, "ctr run --cni never attached on h1:\n{}", k1.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    let ip1 = srv["ip"].as_str().expect("address").to_owned();
    assert!(ip1.starts_with("10.42.1."), "h1's container outside h1's pool: {ip1}");
    assert_eq!(srv["container_id"], format!("{CTR_NS}-srv"), "CNI's container id is ctr's namespace-id");

    let rootfs2 = k2.rootfs();
    let script = format!("ip -o -4 addr show; ping -c 2 -W 2 {ip1} || ping -c 3 -W 2 {ip1}");
    let fifo2 = k2.fifo();
    let client = k2.ctr(&[
        "run",
        "--rm",
        "--cni",
        "--fifo-dir",
        &fifo2,
        "--rootfs",
        &rootfs2,
        "cli",
        "/bin/sh",
        "-c",
        &script,
    ]);
    let out = String::from_utf8_lossy(&client.stdout).into_owned();
    assert!(client.status.success(), "h2's ctr container cannot reach h1's: {}", text(&client));
    assert!(out.contains("inet 10.42.2."), "h2's container outside h2's pool: {out}");
    assert!(lab.attached("h2").is_empty(), "ctr run --rm left a lease on h2 (CNI DEL)");

    let done = server.wait_with_output().expect("ctr run on h1");
    assert!(done.status.success(), "h1's ctr run: {}", text(&done));
    assert!(lab.attached("h1").is_empty(), "ctr run --rm left a lease on h1 (CNI DEL)");
    assert_eq!((lab.veths("h1"), lab.veths("h2")), (0, 0), "container veths left behind");
}

/// One request to the driver's socket as dockerd would post it; the status code and body.
fn post(socket: &Path, op: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("the driver's socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!("POST /{op} HTTP/1.0\r\nHost: \r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (code, body)
}

/// What reaches the driver's socket is hostile too: a Docker address release cannot free (or
/// an endpoint take) a `weft attach` container's address, and malformed, oversized or
/// unknown calls are refused with an error while the daemon goes on serving.
#[test]
fn rogue_docker_driver_calls_cannot_take_a_weft_attach_containers_address() {
    let _ = std::fs::remove_dir_all(engine_dir("dockerrogue", "h1"));
    std::fs::create_dir_all(engine_dir("dockerrogue", "h1").join("plugins")).unwrap();
    let lab = Lab::up_with(1, 1, &[("h1", &docker_config("dockerrogue", "h1"))]);
    let socket = engine_dir("dockerrogue", "h1").join("plugins/weft.sock");
    let victim = lab.ip("h1c1");
    let gw = lab.gateway("h1");
    assert!(lab.ping("h1c1", &gw), "h1c1 is not on the network before the attack");

    let release = format!(r#"{{"PoolID":"default/v4","Address":"{victim}"}}"#);
    let (code, body) = post(&socket, "IpamDriver.ReleaseAddress", release.as_bytes());
    assert!(code != 200 && body.contains("held by weft container"), "release of {victim}: {code} {body}");
    let create = format!(
        r#"{{"NetworkID":"ab12","Options":{{"com.docker.network.generic":{{"weft.network":"default"}}}},"IPv4Data":[{{"AddressSpace":"weft","Pool":"10.42.0.0/16","Gateway":"{gw}/16"}}]}}"#
    );
    let (code, body) = post(&socket, "NetworkDriver.CreateNetwork", create.as_bytes());
    assert_eq!(code, 200, "{body}");
    let endpoint =
        format!(r#"{{"NetworkID":"ab12","EndpointID":"cd34","Interface":{{"Address":"{victim}/16"}}}}"#);
    let (code, body) = post(&socket, "NetworkDriver.CreateEndpoint", endpoint.as_bytes());
    assert!(code != 200 && body.contains("already held"), "endpoint on {victim}: {code} {body}");

    for (op, bad) in [
        ("NetworkDriver.Join", br#"{"NetworkID":"ab12","EndpointID":"nope"}"#.to_vec()),
        ("NetworkDriver.Join", br#"{"NetworkID":"../../etc","EndpointID":"x"}"#.to_vec()),
        ("IpamDriver.RequestAddress", br#"{"PoolID":"default/v9","Address":""}"#.to_vec()),
        ("IpamDriver.RequestPool", br#"{"Pool":"10.42.0.0/16","SubPool":"10.42.1.0/24"}"#.to_vec()),
        ("NetworkDriver.CreateEndpoint", b"{not json".to_vec()),
        ("NoSuch.Call", b"{}".to_vec()),
        ("NetworkDriver.CreateNetwork", vec![b'x'; 200 * 1024]),
    ] {
        let (code, body) = post(&socket, op, &bad);
        assert!(
            code != 200 && code != 0,
            "{op} with {} bytes of garbage was answered {code} {body}",
            bad.len()
        );
    }

    let held = lab.attached("h1");
    assert!(
        held.iter().any(|c| c["ip"] == victim.as_str() && c["name"] == "h1c1"),
        "h1c1 lost its lease: {held:?}"
    );
    assert!(lab.ping("h1c1", &gw), "h1c1 lost its network after the calls");
    let (code, body) = post(&socket, "Plugin.Activate", b"");
    assert_eq!((code, body.contains("NetworkDriver")), (200, true), "the driver stopped answering: {body}");
    drop(lab);
    let _ = std::fs::remove_dir_all(engine_dir("dockerrogue", "h1"));
}

#[test]
fn docker_dual_stack_network_gives_both_families_from_the_nodes_pools() {
    let _ = std::fs::remove_dir_all(engine_dir("dockerdual", "h1"));
    let lab = Lab::up_dual(1, 0, &[("h1", &docker_config("dockerdual", "h1"))]);
    let d = Dockerd::start(&lab, "dockerdual", "h1");
    d.create_weftnet(&["--ipv6", "--subnet", "10.42.0.0/16", "--subnet", "fd42::/48"]);
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "weftnet",
        "weftbusy:lab",
        "sh",
        "-c",
        "ip addr show eth0 && ip -6 route && ping -c 1 -W 2 10.42.1.1 && ping -c 1 -W 2 fd42:0:0:1::1",
    ]);
    assert!(
        out.contains("inet 10.42.1.") && out.contains("inet6 fd42:0:0:1::"),
        "not both of h1's pools: {out}"
    );
    assert!(out.contains("default via fd42:0:0:1::1"), "no IPv6 default route via h1's gateway: {out}");
    assert!(lab.attached("h1").is_empty(), "the exited container left leases");
    assert_eq!(lab.veths("h1"), 0, "the exited container left its veth");
}
