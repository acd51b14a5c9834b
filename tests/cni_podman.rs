//! podman (CNI backend) runs containers on a weft network through the plugin, inside two lab
//! hosts' network namespaces: a private podman configuration per host (containers.conf,
//! storage.conf, net.d, plugin dir), a busybox-static rootfs. A container gets an address of its
//! host's subnet; a container on h2 pings one on h1 across the overlay and resolves its name
//! (`NAME.container.weft`) through h2's weft DNS; an exited container gives its lease back (CNI
//! DEL), `podman rm` releases a running one's, the next container reuses the address, and no
//! veth is left. Needs podman, runc, containernetworking-plugins and busybox-static.

mod common;

use common::{remove_empty_cgroups, text, Lab};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const WEFT_BIN: &str = env!("CARGO_BIN_EXE_weft");

/// The private podman setup, removed on drop (after its storage is unmounted).
struct Podman {
    dir: PathBuf,
    /// The lab host's network namespace podman runs in.
    netns: String,
    /// Whether libcni's cache (/var/lib/cni) existed before; if not, it is removed when empty.
    cni_cache_existed: bool,
    /// podman's `libpod_parent` cgroup directories that did not exist before (removed when
    /// empty at the end).
    new_cgroups: Vec<PathBuf>,
}

/// Every cgroup hierarchy's `libpod_parent` directory (podman with cgroupfs creates them).
fn libpod_cgroups() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("libpod_parent"))
        .collect()
}

/// Where libcni caches results (podman's CNI backend does not let it be moved).
const CNI_CACHE: &str = "/var/lib/cni";

impl Podman {
    fn new(lab: &Lab, host: &str) -> Podman {
        let cni_cache_existed = Path::new(CNI_CACHE).exists();
        let new_cgroups = libpod_cgroups().into_iter().filter(|p| !p.exists()).collect();
        let dir = PathBuf::from(format!("/tmp/weft-podman-{}-{host}", lab.tag));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in [
            "bin",
            "net.d",
            "rootfs/bin",
            "rootfs/etc",
            "rootfs/proc",
            "rootfs/sys",
            "rootfs/dev",
            "graph",
            "run",
            "tmp",
        ] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::os::unix::fs::symlink(WEFT_BIN, dir.join("bin/weft")).unwrap();
        std::fs::copy("/bin/busybox", dir.join("rootfs/bin/busybox")).expect("busybox-static is installed");
        for tool in ["sh", "ip", "ping", "cat", "sleep", "nslookup"] {
            std::os::unix::fs::symlink("busybox", dir.join("rootfs/bin").join(tool)).unwrap();
        }
        let conflist = json!({
            "cniVersion": "1.0.0", "name": "weftnet",
            "plugins": [{"type": "weft", "socket": lab.socket(host), "network": "default"}],
        });
        std::fs::write(dir.join("net.d/weftnet.conflist"), conflist.to_string()).unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\nnetns = \"private\"\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nevents_logfile_path = \"{d}/events.log\"\n\
                 runtime = \"runc\"\ntmp_dir = \"{d}/tmp\"\n\
                 [network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{d}/bin\", \"/usr/lib/cni\"]\n\
                 network_config_dir = \"{d}/net.d\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("storage.conf"),
            format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/graph\"\nrunroot = \"{d}/run\"\n"),
        )
        .unwrap();
        Podman { dir, netns: lab.netns(host), cni_cache_existed, new_cgroups }
    }

    fn run(&self, args: &[&str]) -> Output {
        // nsenter --net, not `ip netns exec`: the latter remounts /sys, which hides the cgroup
        // mounts runc needs; only the network namespace has to be the lab host's.
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg("podman")
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run podman (apt-get install podman runc containernetworking-plugins busybox-static): {e}"))
    }

    fn rootfs(&self) -> String {
        self.dir.join("rootfs").display().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force"]);
        let _ = self.run(&["system", "reset", "--force"]);
        let _ = std::fs::remove_dir_all(&self.dir);
        for cg in &self.new_cgroups {
            remove_empty_cgroups(cg);
        }
        if !self.cni_cache_existed {
            // Only empty directories go: a cached result of any other network stays.
            let _ = std::fs::remove_dir(Path::new(CNI_CACHE).join("results"));
            let _ = std::fs::remove_dir(CNI_CACHE);
        }
    }
}

#[test]
fn podman_runs_containers_on_weft_across_hosts() {
    let lab = Lab::up(2, 0);
    let (p1, p2) = (Podman::new(&lab, "h1"), Podman::new(&lab, "h2"));
    let (gw1, gw2) = (lab.gateway("h1"), lab.gateway("h2"));
    let script = format!("ip -o -4 addr show eth0 && ping -c 2 -W 2 {gw1}");
    let rootfs1 = p1.rootfs();
    let run = p1.run(&[
        "run",
        "--rm",
        "--network",
        "weftnet",
        "--cap-add",
        "NET_RAW",
        "--rootfs",
        &rootfs1,
        "/bin/sh",
        "-c",
        &script,
    ]);
    assert!(run.status.success(), "podman run on weftnet failed: {}", text(&run));
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(out.contains("inet 10.42.1."), "no overlay address in the container: {out}");
    assert!(lab.attached("h1").is_empty(), "the exited container's lease was not given back (CNI DEL)");

    // A running container on h1 holds its lease; a container on h2 pings it across the
    // overlay and resolves its name through h2's weft DNS.
    let run = p1.run(&[
        "run",
        "-d",
        "--name",
        "weftpod",
        "--network",
        "weftnet",
        "--rootfs",
        &rootfs1,
        "/bin/sh",
        "-c",
        "sleep 120",
    ]);
    assert!(run.status.success(), "podman run -d: {}", text(&run));
    let held = lab.attached("h1");
    assert_eq!(held.len(), 1, "podman's container is not attached: {held:?}");
    assert_eq!(held[0]["name"], "weftpod", "the container's name comes from K8S_POD_NAME");
    assert!(Path::new(held[0]["netns"].as_str().unwrap_or("")).is_absolute());
    let ip1 = held[0]["ip"].as_str().expect("address").to_owned();
    assert!(ip1.starts_with("10.42.1."), "h1's container outside h1's subnet: {ip1}");
    let rootfs2 = p2.rootfs();
    let script = format!(
        "ip -o -4 addr show eth0; ping -c 2 -W 2 {ip1} || ping -c 3 -W 2 {ip1}; \
         for i in 1 2 3 4 5 6 7 8 9 10; do nslookup weftpod.container.weft {gw2} && exit 0; sleep 1; done; exit 1"
    );
    let run = p2.run(&[
        "run",
        "--rm",
        "--name",
        "weftpod2",
        "--network",
        "weftnet",
        "--cap-add",
        "NET_RAW",
        "--rootfs",
        &rootfs2,
        "/bin/sh",
        "-c",
        &script,
    ]);
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(run.status.success(), "h2's container could not reach or resolve h1's: {}", text(&run));
    assert!(out.contains("inet 10.42.2."), "h2's container outside h2's subnet: {out}");
    assert!(out.contains(&ip1), "weftpod.container.weft did not resolve to {ip1}: {out}");

    // podman rm releases the address (the next container gets it again) and leaves no veth.
    let rm = p1.run(&["rm", "--force", "--time", "0", "weftpod"]);
    assert!(rm.status.success(), "podman rm: {}", text(&rm));
    assert!(lab.attached("h1").is_empty(), "podman rm (CNI DEL) left a lease behind");
    assert_eq!(lab.veths("h1"), 0, "a container veth is left on h1");
    let run = p1.run(&[
        "run",
        "--rm",
        "--network",
        "weftnet",
        "--rootfs",
        &rootfs1,
        "/bin/sh",
        "-c",
        "ip -o -4 addr show eth0",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(
        String::from_utf8_lossy(&run.stdout).contains(&format!("inet {ip1}/")),
        "the released address was not reused: {}",
        text(&run)
    );
    assert_eq!((lab.veths("h1"), lab.veths("h2")), (0, 0), "container veths left behind");
}
