//! Lab tests of the data plane (issue: TAP daemon, attach, demo): real `weft` daemons in
//! network namespaces built by `netns-lab/lab.sh`, real containers, real packets.

mod common;

use common::Lab;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn counter(lab: &Lab, host: &str, name: &str) -> u64 {
    lab.counter(host, name)
}

fn links(lab: &Lab, node: &str) -> String {
    String::from_utf8_lossy(&lab.exec(node, &["ip", "-o", "link", "show"]).stdout).into_owned()
}

#[test]
fn three_hosts_two_containers_each_ping_every_pair() {
    let lab = Lab::up(3, 2);
    let names = lab.container_names();
    let mut failed = Vec::new();
    for from in &names {
        for to in &names {
            if from != to && !lab.ping(from, &lab.ip(to)) {
                failed.push(format!("{from} -> {to} ({})", lab.ip(to)));
            }
        }
    }
    assert!(failed.is_empty(), "pings failed: {failed:?}");
    // ARP for remote containers is answered by the local daemon once the address is known.
    assert!(counter(&lab, "h1", "arp_suppressed") > 0, "no ARP request was suppressed");
    // The data-plane threads run at `underlay.worker_nice` (default -10), the rest as started.
    for h in ["h1", "h2", "h3"] {
        let pid = std::fs::read_to_string(lab.dir.join(h).join("weft.pid")).unwrap();
        let nice = thread_nices(pid.trim());
        let workers: Vec<_> = nice.iter().filter(|(name, _)| name.starts_with("weft-dp")).collect();
        assert!(!workers.is_empty(), "{h}: no weft-dp thread in {nice:?}");
        assert!(workers.iter().all(|(_, n)| *n == -10), "{h}: {nice:?}");
        assert!(nice.iter().any(|(name, n)| name == "weft-engine" && *n == 0), "{h}: {nice:?}");
    }
}

/// `(thread name, nice value)` of every thread of process `pid` (field 19 of its stat).
fn thread_nices(pid: &str) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
        // "tid (comm) state ppid ...": the name may hold spaces; fields follow the last ')'.
        let (head, rest) = stat.rsplit_once(')').unwrap();
        let name = head.split_once('(').unwrap().1.to_owned();
        let nice = rest.split_whitespace().nth(16).unwrap().parse().unwrap();
        out.push((name, nice));
    }
    out
}

#[test]
fn tcp_transfer_of_200_mb_arrives_intact() {
    let lab = Lab::up(2, 1);
    assert!(lab.ping("h1c1", &lab.ip("h2c1")));
    lab.transfer_intact("h1c1", "h2c1", 200);
    // In order: segments h2c1's TCP had to queue out of order. Before b5763fe weft's GRO
    // reordered a connection whose TCP timestamp moved on mid-batch: 1,162-1,796 here per
    // 200 MB, each a spurious retransmission and a cut of the sender's window. Since then
    // 0-3, with one worker per daemon as with two and no drop anywhere: not yet explained
    // (the kernel's per-CPU backlogs behind veth, in this unpinned lab, are one suspect) and
    // far too few to cost throughput, hence the bound rather than zero.
    let ofo = lab.snmp("h2c1", "TcpExt", "TCPOFOQueue");
    assert!(ofo < 50, "h2c1's TCP queued {ofo} segments out of order");
    // The fast path was the one tested: superframes were split on h1 and merged on h2.
    assert!(counter(&lab, "h1", "tso_superframes") > 0, "h1 read no TSO superframe from its TAP");
    assert!(counter(&lab, "h1", "tso_segments") > counter(&lab, "h1", "tso_superframes"));
    assert!(counter(&lab, "h2", "gro_superframes") > 0, "h2 coalesced no segments");
    // Read pre-segmented into the send arena, and sent with partial checksums (h2 accepts
    // them): the transfer above is what checks that h2's kernel took them.
    assert!(counter(&lab, "h1", "tso_in_place") > 0, "h1 read no superframe in place");
    assert!(counter(&lab, "h1", "tso_partial_csum") > 0, "h1 sent no segment with a partial checksum");
}

#[test]
fn tcp_transfer_under_loss_and_reordering_arrives_intact() {
    let lab = Lab::up(2, 1);
    assert!(lab.ping("h1c1", &lab.ip("h2c1")));
    // This kernel has no netem, so: nftables drops 1 % of the tunnel's datagrams at random,
    // and sends another 10 % through a slow HTB class (100 Mbit/s) whose queue delays them
    // behind later ones (reordering); on both hosts' underlay links, so both directions.
    // Both act on whole GSO batches (up to 64 KiB of datagrams): losses come in bursts.
    for h in ["h1", "h2"] {
        let script = "set -e
            tc qdisc add dev eth0 root handle 1: htb default 10
            tc class add dev eth0 parent 1: classid 1:10 htb rate 10gbit
            tc class add dev eth0 parent 1: classid 1:20 htb rate 100mbit
            nft add table inet lossy
            nft add chain inet lossy out '{ type filter hook output priority 0; }'
            nft add rule inet lossy out udp dport 51820 numgen random mod 100 '<' 1 counter drop
            nft add rule inet lossy out udp dport 51820 numgen random mod 100 '<' 10 counter meta priority set 1:20";
        let out = lab.sh(h, script);
        assert!(out.status.success(), "loss/reorder set-up on {h}: {}", String::from_utf8_lossy(&out.stderr));
    }
    lab.transfer_intact("h1c1", "h2c1", 30);
    lab.transfer_intact("h2c1", "h1c1", 10);
    assert!(counter(&lab, "h1", "tso_superframes") > 0, "h1 read no TSO superframe from its TAP");
    assert!(counter(&lab, "h2", "gro_superframes") > 0, "h2 coalesced no segments");
    for h in ["h1", "h2"] {
        let rules = String::from_utf8_lossy(&lab.exec(h, &["nft", "list", "table", "inet", "lossy"]).stdout)
            .into_owned();
        let packets: Vec<u64> =
            rules.split("packets ").skip(1).filter_map(|s| s.split(' ').next()?.parse().ok()).collect();
        assert!(
            packets.len() == 2 && packets.iter().all(|&n| n > 0),
            "{h}: nothing dropped or delayed: {rules}"
        );
        let class =
            String::from_utf8_lossy(&lab.exec(h, &["tc", "-s", "class", "show", "dev", "eth0"]).stdout)
                .into_owned();
        eprintln!("{h}: {packets:?} datagram batches dropped/delayed\n{class}");
    }
}

#[test]
fn sigkill_and_restart_resumes_traffic() {
    let lab = Lab::up(2, 1);
    let dst = lab.ip("h2c1");
    assert!(lab.ping("h1c1", &dst));
    lab.stop_daemon("h2", "KILL");
    assert!(!lab.exec("h1c1", &["ping", "-n", "-q", "-c", "1", "-W", "1", &dst]).status.success());
    lab.start_daemon("h2");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lab.ping("h1c1", &dst) {
        assert!(Instant::now() < deadline, "traffic did not resume after h2 restarted");
    }
    assert!(lab.ping("h2c1", &lab.ip("h1c1")));
}

#[test]
fn garbage_and_truncated_datagrams_leave_the_daemon_serving() {
    let lab = Lab::up(2, 1);
    assert!(lab.ping("h1c1", &lab.ip("h2c1")));
    // An attacker on the underlay (the switch namespace gets an address of its own).
    let ul = lab.netns("ul");
    let ok = std::process::Command::new("ip")
        .args(["-n", &ul, "addr", "add", "10.200.0.250/24", "dev", "br0"])
        .status();
    assert!(ok.unwrap().success());
    let sent = std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/var/run/netns/{ul}")).unwrap();
        weft::device::enter_netns(&ns).unwrap();
        let sock = UdpSocket::bind("10.200.0.250:0").unwrap();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut buf = [0u8; 1500];
        let (mut n, end) = (0u64, Instant::now() + Duration::from_secs(10));
        while Instant::now() < end {
            for b in buf.iter_mut() {
                *b = next() as u8;
            }
            let len = (next() % 1500) as usize;
            // Make most datagrams look like ours: every message type, truncated at random.
            if n % 4 != 0 {
                buf[0] = (next() % 6) as u8;
                buf[1..4].fill(0);
            }
            let _ = sock.send_to(&buf[..len], "10.200.0.1:51820");
            n += 1;
            if n % 64 == 0 {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        n
    })
    .join()
    .unwrap();
    assert!(sent > 10_000, "only {sent} datagrams sent");
    assert!(lab.weft("h1", &["status"]).status.success(), "h1 stopped answering");
    assert!(lab.ping("h1c1", &lab.ip("h2c1")), "h1 stopped forwarding after the garbage");
    let dropped =
        ["malformed", "unknown_index", "bad_mac1"].iter().map(|c| counter(&lab, "h1", c)).sum::<u64>();
    assert!(dropped > 1000, "garbage was not counted: {dropped}");
}

#[test]
fn spoofed_inner_source_from_a_member_is_not_delivered() {
    let lab = Lab::up(2, 1);
    let victim = lab.ip("h1c1");
    assert!(lab.ping("h2c1", &victim));
    let before = counter(&lab, "h2", "drop_local_spoof");
    // h2's container claims an address of h1's subnet (10.42.1.0/24), which h2's certificate
    // does not cover. h2 stops its own container at the source (local anti-spoofing); h1's
    // admission check, for a member that sends anyway, is played by the simulation's
    // engine::tests::rogue_frames_* tests with the workers' real admit().
    let add = lab.exec("h2c1", &["ip", "addr", "add", "10.42.1.200/16", "dev", "eth0"]);
    assert!(add.status.success());
    let spoofed = lab.exec("h2c1", &["ping", "-n", "-q", "-c", "3", "-W", "1", "-I", "10.42.1.200", &victim]);
    assert!(!spoofed.status.success(), "a spoofed ping got an answer");
    assert!(counter(&lab, "h2", "drop_local_spoof") > before, "spoofed frames were not counted");
    // The genuine address still works.
    assert!(lab.ping("h2c1", &victim));
}

#[test]
fn detach_leaves_no_link_or_address() {
    let lab = Lab::up(2, 2);
    assert!(lab.ping("h1c1", &lab.ip("h2c1")));
    let out = lab.weft("h1", &["detach", "--name", "h1c1"]);
    assert!(out.status.success(), "detach: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!links(&lab, "h1c1").contains("eth0"), "container kept its eth0: {}", links(&lab, "h1c1"));
    let host_links = links(&lab, "h1");
    assert_eq!(host_links.matches(" wv").count(), 1, "one container link should remain: {host_links}");
    let again = lab.weft("h1", &["detach", "--name", "h1c1"]);
    assert!(!again.status.success(), "detaching twice should be an error");
    // Detaching by namespace works too (h1c2 was attached with --name h1c2 --netns <tag>h1c2).
    let ns = lab.netns("h1c2");
    let by_ns = lab.weft("h1", &["detach", "--netns", &ns, "--network", "default"]);
    assert!(by_ns.status.success(), "detach --netns: {}", String::from_utf8_lossy(&by_ns.stderr));
    assert!(!links(&lab, "h1c2").contains("eth0"), "h1c2 kept its eth0 after detach --netns");
    let host_links = links(&lab, "h1");
    assert_eq!(host_links.matches(" wv").count(), 0, "no container link should remain: {host_links}");
    // h2 is unaffected.
    assert!(lab.weft("h2", &["status"]).status.success());
}

#[test]
fn oversized_frames_get_icmp_fragmentation_needed() {
    let lab = Lab::up(2, 1);
    let dst = lab.ip("h2c1");
    assert!(lab.ping("h1c1", &dst));
    // Pretend the container's link allows more than the tunnel can carry.
    assert!(lab.exec("h1c1", &["ip", "link", "set", "eth0", "mtu", "1500"]).status.success());
    let big = lab.exec("h1c1", &["ping", "-n", "-c", "2", "-W", "1", "-M", "do", "-s", "1460", &dst]);
    let text = format!("{}{}", String::from_utf8_lossy(&big.stdout), String::from_utf8_lossy(&big.stderr));
    assert!(!big.status.success(), "a 1488-byte packet crossed a 1422-byte tunnel: {text}");
    assert!(counter(&lab, "h1", "drop_mtu") > 0, "oversized frame not counted");
    // The ICMP error taught the sender's kernel the path MTU.
    let route = lab.exec("h1c1", &["ip", "route", "get", &dst]);
    let route = String::from_utf8_lossy(&route.stdout);
    assert!(route.contains("mtu 1422") || text.contains("mtu = 1422"), "no PMTU learned: {route} / {text}");
    // Packets that fit still pass.
    assert!(lab
        .exec("h1c1", &["ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1394", &dst])
        .status
        .success());
}

/// The value of the first sample of `metric` whose labels contain `labels`.
fn sample(text: &str, metric: &str, labels: &str) -> f64 {
    find_sample(text, metric, labels).unwrap_or_else(|| panic!("no sample {metric}{{{labels}}} in:\n{text}"))
}

fn find_sample(text: &str, metric: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(metric) && l.contains(labels))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn metrics_move_with_traffic() {
    let lab = Lab::up(2, 1);
    let scrape = || {
        let out = lab.exec("h1", &["curl", "-fsS", "--max-time", "5", "http://127.0.0.1:9571/metrics"]);
        assert!(out.status.success(), "scrape failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("metrics are UTF-8")
    };
    assert!(lab.ping("h1c1", &lab.ip("h2c1")));
    let before = scrape();
    lab.transfer_intact("h1c1", "h2c1", 5);
    let after = scrape();
    // The exposition passes promtool's linter (scripts/install-deps.sh installs it).
    let (ok, text) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(&after);
    assert!(ok, "promtool check metrics failed:\n{text}");
    for (metric, labels) in [
        ("weft_peer_bytes_total", "peer=\"h2\",direction=\"tx\""),
        ("weft_peer_packets_total", "peer=\"h2\",direction=\"rx\""),
        ("weft_tap_frames_total", "direction=\"from_tap\""),
    ] {
        let (b, a) = (sample(&before, metric, labels), sample(&after, metric, labels));
        assert!(a > b, "{metric}{{{labels}}} did not move: {b} -> {a}");
    }
    assert!(sample(&after, "weft_peer_bytes_total", "peer=\"h2\",direction=\"tx\"") > 5.0 * 1024.0 * 1024.0);
    // The ping proves the session; membership confirms the member alive a moment later (and
    // a passing suspicion is refuted within seconds), so poll for it rather than sample once.
    let alive = || find_sample(&scrape(), "weft_members", "state=\"alive\"") == Some(1.0);
    assert!(common::eventually(Duration::from_secs(15), alive), "weft_members alive is not 1:\n{}", scrape());
    assert!(after.contains("# TYPE weft_drops_total counter"));
    assert!(after.contains("weft_build_info{version="));
}

/// Runs a command with `input` on stdin: (success, stdout + stderr).
trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &str) -> (bool, String);
}

impl OutputWithStdin for std::process::Command {
    fn output_with_stdin(&mut self, input: &str) -> (bool, String) {
        use std::io::Write;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {self:?} (run scripts/install-deps.sh): {e}"));
        child.stdin.take().expect("piped stdin").write_all(input.as_bytes()).expect("write stdin");
        let out = child.wait_with_output().expect("wait");
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }
}
