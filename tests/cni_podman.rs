//! podman (CNI backend) runs a container on a weft network through the plugin: a private
//! podman configuration (containers.conf, storage.conf, net.d, plugin dir) made here, a
//! busybox-static rootfs, one lab host whose daemon serves the network. A container gets its
//! address and pings its gateway, and its exit gives the lease back (podman runs CNI DEL when
//! the container stops); a running one holds its lease until `podman rm`. Needs podman,
//! runc, containernetworking-plugins and busybox-static; fails loudly without them.

mod common;

use common::Lab;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const WEFT_BIN: &str = env!("CARGO_BIN_EXE_weft");

/// The private podman setup, removed on drop (after its storage is unmounted).
struct Podman {
    dir: PathBuf,
    /// Whether libcni's cache (/var/lib/cni) existed before; if not, it is removed when empty.
    cni_cache_existed: bool,
}

/// Where libcni caches results (podman's CNI backend does not let it be moved).
const CNI_CACHE: &str = "/var/lib/cni";

impl Podman {
    fn new(lab: &Lab) -> Podman {
        let cni_cache_existed = Path::new(CNI_CACHE).exists();
        let dir = PathBuf::from(format!("/tmp/weft-podman-{}", lab.tag));
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
        for tool in ["sh", "ip", "ping", "cat", "sleep"] {
            std::os::unix::fs::symlink("busybox", dir.join("rootfs/bin").join(tool)).unwrap();
        }
        let conflist = json!({
            "cniVersion": "1.0.0", "name": "weftnet",
            "plugins": [{"type": "weft", "socket": lab.socket("h1"), "network": "default"}],
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
        Podman { dir, cni_cache_existed }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("podman")
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
        if !self.cni_cache_existed {
            // Only empty directories go: a cached result of any other network stays.
            let _ = std::fs::remove_dir(Path::new(CNI_CACHE).join("results"));
            let _ = std::fs::remove_dir(CNI_CACHE);
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn attached(lab: &Lab) -> Vec<Value> {
    let o = lab.weft("h1", &["status", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("status JSON");
    v["networks"][0]["containers"].as_array().cloned().unwrap_or_default()
}

#[test]
fn podman_runs_a_container_on_weft() {
    let lab = Lab::up(1, 0);
    let podman = Podman::new(&lab);
    let status = lab.weft("h1", &["status", "--json"]);
    let v: Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let gw = v["networks"][0]["gateway"].as_str().expect("gateway").to_owned();
    let script = format!("ip -o -4 addr show eth0 && ping -c 2 -W 2 {gw}");
    let rootfs = podman.rootfs();
    let run = podman.run(&[
        "run",
        "--rm",
        "--network",
        "weftnet",
        "--cap-add",
        "NET_RAW",
        "--rootfs",
        &rootfs,
        "/bin/sh",
        "-c",
        &script,
    ]);
    assert!(run.status.success(), "podman run on weftnet failed: {}", text(&run));
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(out.contains("inet 10.42.1."), "no overlay address in the container: {out}");
    assert!(attached(&lab).is_empty(), "the exited container's lease was not given back (CNI DEL)");

    // A running container holds its lease until podman removes it.
    let run = podman.run(&[
        "run",
        "-d",
        "--name",
        "weftpod",
        "--network",
        "weftnet",
        "--rootfs",
        &rootfs,
        "/bin/sh",
        "-c",
        "sleep 60",
    ]);
    assert!(run.status.success(), "podman run -d: {}", text(&run));
    let held = attached(&lab);
    assert_eq!(held.len(), 1, "podman's container is not attached: {held:?}");
    assert_eq!(held[0]["name"], "weftpod", "the container's name comes from K8S_POD_NAME");
    assert!(Path::new(held[0]["netns"].as_str().unwrap_or("")).is_absolute());
    let rm = podman.run(&["rm", "--force", "--time", "0", "weftpod"]);
    assert!(rm.status.success(), "podman rm: {}", text(&rm));
    assert!(attached(&lab).is_empty(), "podman rm (CNI DEL) left a lease behind");
}
