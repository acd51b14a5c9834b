//! Lab tests for `weft::device` (TAP queues) and `weft::netlink` (bridge, addresses,
//! container veth pairs), against the real kernel.
//!
//! They need root and iproute2's `ip` and fail loudly without them, unless
//! `WEFT_SKIP_LAB_TESTS` is set (an explicit skip, reported on stderr). Each test creates
//! its own namespaces named `wd<pid><suffix>`, runs the code under test on a thread that has
//! entered one of them, and deletes them in a `Drop` guard, also when the test panics.
//! Packets stay inside those namespaces. `ip` is used only for setup and for checking.

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use tokio::io::unix::AsyncFd;
use weft::device::{self, DeviceError, Tap, VNET_HDR_LEN};
use weft::netlink::{self, Netlink, NetlinkError};

/// A network namespace by name: checks through `ip -n`. Owns nothing; see [`NetnsGuard`].
#[derive(Clone)]
struct Netns {
    name: String,
}

impl Netns {
    fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// `ip -n NS -j ARGS...`, parsed; panics if `ip` fails.
    fn json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-n", &self.name, "-j"];
        full.extend_from_slice(args);
        let out = ip(&full);
        assert!(out.status.success(), "ip {}: {}", full.join(" "), String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("ip -j prints JSON")
    }

    /// Whether link `name` exists in this namespace.
    fn has_link(&self, name: &str) -> bool {
        ip(&["-n", &self.name, "link", "show", "dev", name]).status.success()
    }
}

/// A network namespace this test created (`wd<pid><suffix>`); deleted on drop, also when
/// the test panics.
struct NetnsGuard(Netns);

impl NetnsGuard {
    fn create(suffix: &str) -> NetnsGuard {
        let name = format!("wd{}{suffix}", std::process::id());
        let out = ip(&["netns", "add", &name]);
        assert!(out.status.success(), "ip netns add {name}: {}", String::from_utf8_lossy(&out.stderr));
        NetnsGuard(Netns { name })
    }

    /// Runs `body` on a fresh thread inside this namespace, on its own current-thread
    /// runtime; a panic in `body` is re-raised here, after the thread has ended.
    fn run<F, Fut>(&self, body: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let path = self.0.path();
        let thread = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns file");
            device::enter_netns(&file).expect("setns into test netns");
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            runtime.block_on(body());
        });
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

impl std::ops::Deref for NetnsGuard {
    type Target = Netns;
    fn deref(&self) -> &Netns {
        &self.0
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let out = ip(&["netns", "del", &self.0.name]);
        if !out.status.success() {
            eprintln!("cleanup: ip netns del {}: {}", self.0.name, String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// Adds a permanent neighbour entry. The kernel's ARP table is shared by all namespaces, and
/// other labs on the machine can fill it (`gc_thresh3`), after which dynamic entries, and
/// with them ARP replies, fail; permanent entries are exempt from that limit.
fn static_neigh(ns: &Netns, ip_addr: &str, mac: [u8; 6], dev: &str) {
    let mac = mac_string(mac);
    let args = ["-n", &ns.name, "neigh", "replace", ip_addr, "lladdr", &mac, "dev", dev, "nud", "permanent"];
    let out = ip(&args);
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("run ip (checked by lab_ready)")
}

/// Fails the test with the reason when it cannot run; `false` only on an explicit skip.
fn lab_ready() -> bool {
    if std::env::var_os("WEFT_SKIP_LAB_TESTS").is_some() {
        eprintln!("SKIPPED lab test: WEFT_SKIP_LAB_TESTS is set");
        return false;
    }
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        euid, "0",
        "lab test needs root (effective uid is {euid}); run as root, or set \
         WEFT_SKIP_LAB_TESTS=1 to skip explicitly"
    );
    let ip_works = Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
    assert!(ip_works, "lab test needs iproute2's `ip` in PATH (apt-get install iproute2)");
    assert!(std::path::Path::new("/dev/net/tun").exists(), "lab test needs /dev/net/tun (modprobe tun)");
    true
}

/// A short per-test link name carrying the run's tag.
fn tagged(suffix: &str) -> String {
    let name = format!("wd{}{suffix}", std::process::id());
    assert!(name.len() <= 15, "{name} is too long for an interface name");
    name
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

const TAP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// A virtio-net header (no offload) followed by a broadcast ARP request from
/// 10.42.0.2/`TAP_MAC` asking for 10.42.0.1.
fn arp_request() -> Vec<u8> {
    let mut frame = vec![0u8; VNET_HDR_LEN];
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&TAP_MAC);
    frame.extend_from_slice(&[0x08, 0x06]); // ARP
    frame.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet/IPv4, request
    frame.extend_from_slice(&TAP_MAC);
    frame.extend_from_slice(&[10, 42, 0, 2]);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&[10, 42, 0, 1]);
    frame.resize(VNET_HDR_LEN + 60, 0); // minimum Ethernet frame, without FCS
    frame
}

/// The sender MAC if `frame` (virtio-net header included) is an ARP reply for 10.42.0.1
/// addressed to `TAP_MAC`.
fn arp_reply_sender(frame: &[u8]) -> Option<[u8; 6]> {
    let eth = frame.get(VNET_HDR_LEN..)?;
    let arp = eth.get(14..42)?;
    let is_reply = eth[..6] == TAP_MAC
        && eth[12..14] == [0x08, 0x06]
        && arp[6..8] == [0, 2]
        && arp[14..18] == [10, 42, 0, 1];
    is_reply.then(|| arp[8..14].try_into().unwrap())
}

/// Waits (bounded) for a frame on any queue; `None` on timeout.
async fn recv_any(queues: &[AsyncFd<Tap>], buf: &mut [u8]) -> Option<usize> {
    let wait = async {
        loop {
            let readable = queues.iter().map(|q| Box::pin(q.readable()));
            let (ready, _, rest) = futures::future::select_all(readable).await;
            drop(rest);
            let mut guard = ready.expect("poll TAP queue");
            match guard.try_io(|q| q.get_ref().recv(buf)) {
                Ok(result) => return result.expect("read TAP queue"),
                Err(_would_block) => continue,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(3), wait).await.ok()
}

#[test]
fn tap_queues_on_a_bridge_carry_frames_both_ways() {
    if !lab_ready() {
        return;
    }
    let ns = NetnsGuard::create("a");
    let check = ns.clone();
    let (bridge, tap_name) = (tagged("br"), tagged("t"));
    ns.run(move || async move {
        let nl = Netlink::new().await.expect("netlink");
        let br = nl.ensure_bridge(&bridge).await.expect("create bridge");
        assert_eq!(nl.ensure_bridge(&bridge).await.expect("reuse bridge"), br);
        nl.add_address(br, net("10.42.0.1/16")).await.expect("addr");
        nl.add_address(br, net("10.42.0.1/16")).await.expect("adding the same address again is fine");

        let queues = Tap::open_queues(&tap_name, 2).expect("open 2 TAP queues");
        assert_eq!(queues.len(), 2);
        assert!(queues.iter().all(|q| q.name() == tap_name));
        queues[0].set_offload(0).expect("TUNSETOFFLOAD 0");
        let tap = nl.link_index(&tap_name).await.unwrap().expect("TAP exists");
        nl.set_master(tap, br).await.expect("enslave TAP");
        nl.set_mtu(tap, 1400).await.expect("mtu");
        nl.set_up(tap).await.expect("up");

        let links = check.json(&["link", "show", "dev", &tap_name]);
        let link = &links[0];
        assert_eq!(link["master"], bridge.as_str(), "{link}");
        assert_eq!(link["mtu"], 1400, "{link}");
        assert!(link["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "{link}");
        let addrs = check.json(&["addr", "show", "dev", &bridge]);
        let has_addr = addrs[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["family"] == "inet" && a["local"] == "10.42.0.1" && a["prefixlen"] == 16);
        assert!(has_addr, "{addrs}");

        // A broadcast ARP written on queue 1 reaches the bridge's stack, whose reply is
        // forwarded back into the TAP and read on whichever queue the kernel picks.
        static_neigh(&check, "10.42.0.2", TAP_MAC, &bridge);
        let sent = queues[1].send(&arp_request()).expect("write frame");
        assert_eq!(sent, VNET_HDR_LEN + 60);
        let bridge_mac = nl.mac(br).await.expect("bridge mac");
        let queues: Vec<AsyncFd<Tap>> =
            queues.into_iter().map(|q| q.into_async().expect("register TAP fd")).collect();
        let mut buf = vec![0u8; VNET_HDR_LEN + 14 + 4 + 1500];
        let mut reply = None;
        // Bounded: the bridge may also emit IPv6 DAD/MLD frames, which are skipped.
        for _ in 0..20 {
            let Some(n) = recv_any(&queues, &mut buf).await else {
                break;
            };
            reply = arp_reply_sender(&buf[..n]);
            if reply.is_some() {
                break;
            }
        }
        assert_eq!(reply, Some(bridge_mac), "ARP reply from the bridge");
        let stats = check.json(&["-s", "link", "show", "dev", &tap_name]);
        let rx = stats[0]["stats64"]["rx"]["packets"].as_u64().unwrap();
        assert!(rx >= 1, "TAP rx counter after a write: {stats}");

        // Wrong kinds of device are refused with errors that say what and where.
        let err = nl.ensure_bridge(&tap_name).await.unwrap_err();
        assert!(matches!(err, NetlinkError::NotABridge { .. }), "{err}");
        assert!(err.to_string().contains("tun"), "{err}");
        let err = Tap::open_queues(&bridge, 1).unwrap_err();
        assert!(matches!(err, DeviceError::Ioctl { op: "TUNSETIFF", .. }), "{err}");
        assert!(err.to_string().contains(&bridge), "{err}");

        // Not persistent: closing the last queue removes the device. The kernel unregisters
        // it asynchronously after the last close, so wait (bounded) for it to go.
        drop(queues);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while nl.link_index(&tap_name).await.unwrap().is_some() {
            assert!(std::time::Instant::now() < deadline, "TAP still there 5 s after its last queue closed");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(!check.has_link(&tap_name));

        assert!(nl.delete_link(&bridge).await.unwrap());
        assert!(!nl.delete_link(&bridge).await.unwrap());
    });
    assert!(!ns.has_link(&tagged("br")));
}

#[test]
fn container_attach_configures_eth0_and_detach_removes_it() {
    if !lab_ready() {
        return;
    }
    let host = NetnsGuard::create("h");
    let container = NetnsGuard::create("c");
    let (h, c, c_path) = (host.clone(), container.clone(), container.path());
    let (bridge, veth) = (tagged("br"), tagged("v"));
    host.run(move || async move {
        let nl = Netlink::new().await.expect("netlink");
        let br = nl.ensure_bridge(&bridge).await.expect("bridge");
        nl.add_address(br, net("10.42.0.1/16")).await.expect("addr");

        let link = netlink::attach(
            &nl,
            &c_path,
            &bridge,
            &veth,
            "eth0",
            &[net("10.42.1.5/16")],
            &[addr("10.42.0.1")],
            1400,
        )
        .await
        .expect("attach");
        assert_eq!(link.host_ifname, veth);
        assert_eq!(link.ifname, "eth0");

        let host_link = &h.json(&["link", "show", "dev", &veth])[0];
        assert_eq!(host_link["master"], bridge.as_str(), "{host_link}");
        assert_eq!(host_link["mtu"], 1400, "{host_link}");
        assert_eq!(host_link["operstate"], "UP", "{host_link}");

        let eth0 = &c.json(&["addr", "show", "dev", "eth0"])[0];
        assert_eq!(eth0["address"], mac_string(link.mac), "{eth0}");
        assert_eq!(eth0["mtu"], 1400, "{eth0}");
        assert_eq!(eth0["operstate"], "UP", "{eth0}");
        let has_addr = eth0["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == "10.42.1.5" && a["prefixlen"] == 16);
        assert!(has_addr, "{eth0}");
        let lo = &c.json(&["link", "show", "dev", "lo"])[0];
        assert!(lo["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "{lo}");
        let routes = c.json(&["route", "show", "default"]);
        assert_eq!(routes[0]["gateway"], "10.42.0.1", "{routes}");
        assert_eq!(routes[0]["dev"], "eth0", "{routes}");

        static_neigh(&c, "10.42.0.1", nl.mac(br).await.expect("bridge mac"), "eth0");
        static_neigh(&h, "10.42.1.5", link.mac, &bridge);
        // Bounded retries: the first echo may race the bridge port's carrier.
        let pinged = (0..3).any(|_| {
            Command::new("ip")
                .args(["netns", "exec", &c.name, "ping", "-c1", "-W1", "10.42.0.1"])
                .output()
                .expect("run ping")
                .status
                .success()
        });
        assert!(pinged, "ping from the container to the bridge address");

        assert!(netlink::detach(&nl, &veth).await.expect("detach"));
        assert!(!h.has_link(&veth));
        assert!(!c.has_link("eth0"), "the peer goes with the host end");
        assert!(!netlink::detach(&nl, &veth).await.expect("detach again"));
    });
}

#[test]
fn failed_attach_leaves_nothing_behind() {
    if !lab_ready() {
        return;
    }
    let host = NetnsGuard::create("f");
    let container = NetnsGuard::create("g");
    let (h, c, c_path) = (host.clone(), container.clone(), container.path());
    let (bridge, veth) = (tagged("br"), tagged("v"));
    host.run(move || async move {
        let nl = Netlink::new().await.expect("netlink");
        let br = nl.ensure_bridge(&bridge).await.expect("bridge");
        nl.add_address(br, net("10.42.0.1/16")).await.expect("addr");
        let attach = |netns: PathBuf, bridge: String, gateway: &'static str| {
            let nl = &nl;
            let veth = veth.clone();
            async move {
                netlink::attach(
                    nl,
                    &netns,
                    &bridge,
                    &veth,
                    "eth0",
                    &[net("10.42.1.5/16")],
                    &[addr(gateway)],
                    1400,
                )
                .await
                .unwrap_err()
            }
        };
        let assert_clean = |case: &str, err: &NetlinkError| {
            assert!(!h.has_link(&veth), "{case}: host veth left behind ({err})");
            assert!(!c.has_link("eth0"), "{case}: eth0 left behind ({err})");
            assert!(err.to_string().starts_with(&format!("attach {veth}: ")), "{err}");
        };

        let missing = PathBuf::from(format!("/var/run/netns/{}missing", c.name));
        let err = attach(missing, bridge.clone(), "10.42.0.1").await;
        assert!(err.to_string().contains("missing"), "{err}");
        assert_clean("nonexistent netns", &err);

        let err = attach(c_path.clone(), tagged("nobr"), "10.42.0.1").await;
        assert!(err.to_string().contains("not found"), "{err}");
        assert_clean("nonexistent bridge", &err);

        // `lo` exists but cannot be a master: fails after the pair was created.
        let err = attach(c_path.clone(), "lo".into(), "10.42.0.1").await;
        assert!(err.to_string().contains("set master"), "{err}");
        assert_clean("non-bridge master", &err);

        // The last step fails: no route to a gateway outside the container's subnet.
        let err = attach(c_path.clone(), bridge.clone(), "10.99.0.1").await;
        assert_eq!(err.os_error(), Some(libc::ENETUNREACH), "{err}");
        assert!(err.to_string().contains("default route"), "{err}");
        assert_clean("unreachable gateway", &err);

        // The container already has an eth0: the pair is never created.
        let out = ip(&["-n", &c.name, "link", "add", "eth0", "type", "bridge"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let err = attach(c_path.clone(), bridge.clone(), "10.42.0.1").await;
        assert!(
            err.to_string().contains("already has an interface eth0"),
            "the refusal names the namespace's interface: {err}"
        );
        assert!(!h.has_link(&veth), "host veth left behind ({err})");
        assert!(c.has_link("eth0"), "the pre-existing eth0 is untouched");
    });
}

#[test]
fn netlink_in_netns_leaves_the_calling_thread_where_it_was() {
    if !lab_ready() {
        return;
    }
    let outer = NetnsGuard::create("o");
    let inner = NetnsGuard::create("i");
    let (inner_path, inner_name) = (inner.path(), inner.name.clone());
    let (in_inner, in_outer) = (tagged("ii"), tagged("oo"));
    outer.run(move || async move {
        let here = Netlink::new().await.expect("netlink here");
        let there = Netlink::in_netns(&inner_path).await.expect("netlink there");
        there.ensure_bridge(&in_inner).await.expect("bridge in inner");
        here.ensure_bridge(&in_outer).await.expect("bridge in outer");
        assert!(here.link_index(&in_inner).await.unwrap().is_none());
        assert!(there.link_index(&in_outer).await.unwrap().is_none());
        assert!(there.link_index(&in_inner).await.unwrap().is_some());

        let err = Netlink::in_netns(&inner_path.with_file_name(format!("{inner_name}x"))).await.unwrap_err();
        assert!(matches!(err, NetlinkError::Netns { .. }), "{err}");
    });
    assert!(inner.has_link(&tagged("ii")));
    assert!(outer.has_link(&tagged("oo")));
    assert!(!outer.has_link(&tagged("ii")));
}
