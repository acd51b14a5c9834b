//! Lab test of issue 15, item 7: "a new member still joins within 10 s while one address floods
//! valid-looking initiations and another floods garbage". Three hosts; h1 is the seed. h3's
//! daemon is stopped right after the lab is up. Two flooder threads of this test process enter
//! h2's namespace (`setns`, that thread only) and send from two extra underlay addresses that
//! the test puts on h2's eth0 (10.200.0.201 and .202, removed with the lab's namespace) to h1's
//! tunnel port: one XX initiations with a correct mac1 and a new sender index each, the other
//! random bytes of random lengths up to 1400. While both run, h3's daemon starts again and must
//! be a connected, alive member in h1's and its own view within 10 s, with a handshake newer than
//! its restart on both sides. h1's counters show that
//! both floods arrived (`drop_unknown_type` for the garbage, `drop_handshake_rate` for the
//! initiations beyond their source's rate, `pending_source_full` for those beyond its half-open
//! cap).
//!
//! The floods are paced (garbage 20 000/s, initiations 5 000/s) and stop after at most 60 s:
//! the lab shares 2 cores with everything else, and the question is whether the protocol's
//! protections keep the join going, not whether an unpaced sender can starve the machine.

mod common;
// The floods themselves, shared with the throughput benchmark's flooder (`examples/flood`).
#[path = "../examples/flood/flooder.rs"]
mod flooder;

use common::Lab;
use flooder::{send_paced, Flood, Tally};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// h1's tunnel endpoint (lab.sh: 10.200.0.<i>:51820).
const H1: &str = "10.200.0.1:51820";
/// Source address of the flood of initiations and of the garbage flood.
const INIT_SRC: &str = "10.200.0.201";
const GARBAGE_SRC: &str = "10.200.0.202";
/// Upper bound of any flood's duration, whatever happens to the test.
const FLOOD_MAX: Duration = Duration::from_secs(60);

/// The flooder threads; stopped and joined on drop (also while the test panics), which
/// happens before the lab is taken down because it is declared after the lab.
struct Flooders {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Tally>>,
}

impl Flooders {
    /// Stops the floods and returns what each thread sent.
    fn stop(&mut self) -> Vec<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.drain(..).map(|t| t.join().unwrap_or_default()).collect()
    }
}

impl Drop for Flooders {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a thread that enters namespace `netns`, binds `src`:0 and sends `kind`'s datagrams
/// to h1, `per_sec` a second, until `stop` or [`FLOOD_MAX`]; the thread returns what it sent
/// ([`Tally`]).
fn flood(
    netns: String,
    src: &str,
    per_sec: u64,
    stop: Arc<AtomicBool>,
    mut kind: Flood,
) -> JoinHandle<Tally> {
    let src: SocketAddr = format!("{src}:0").parse().expect("source address");
    let h1: SocketAddr = H1.parse().expect("h1's address");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let handle = std::thread::spawn(move || {
        let sock = (|| {
            let ns =
                std::fs::File::open(format!("/run/netns/{netns}")).map_err(|e| format!("{netns}: {e}"))?;
            // SAFETY: setns on a valid namespace fd; it changes this thread's namespace only.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns {netns}: {}", std::io::Error::last_os_error()));
            }
            UdpSocket::bind(src).map_err(|e| format!("bind {src} in {netns}: {e}"))
        })();
        let sock = match sock {
            Ok(s) => {
                let _ = ready_tx.send(Ok(()));
                s
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return Tally::default();
            }
        };
        send_paced(&sock, h1, per_sec, &mut kind, &stop, FLOOD_MAX)
    });
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("flooder cannot start: {e}"),
        Err(_) => panic!("flooder thread ended before it was ready"),
    }
    handle
}

/// `host`'s view of member `name`: whether it lists it alive and connected, with a handshake
/// completed within the last `within` (so a session from before h3's restart does not count).
fn sees_connected(lab: &Lab, host: &str, name: &str, within: Duration) -> bool {
    lab.peers(host).iter().any(|p| {
        p["name"] == name
            && p["state"] == "alive"
            && p["connected"] == true
            && p["last_handshake_secs_ago"].as_f64().is_some_and(|s| s <= within.as_secs_f64())
    })
}

#[test]
fn rogue_floods_of_initiations_and_garbage_do_not_stop_a_new_member_joining() {
    let lab = Lab::up(3, 0);
    // h3 leaves; it comes back as a new daemon (fresh sessions) while the floods run.
    lab.stop_daemon("h3", "TERM");
    let ca = weft::pki::load_ca_cert(&lab.dir().join("pki/ca.crt")).expect("the lab's CA certificate");
    let ca_public = ca.public_key;

    for src in [INIT_SRC, GARBAGE_SRC] {
        let add = lab.exec("h2", &["ip", "addr", "add", &format!("{src}/24"), "dev", "eth0"]);
        assert!(add.status.success(), "ip addr add {src}: {}", String::from_utf8_lossy(&add.stderr));
    }
    let unknown_before = lab.counter("h1", "drop_unknown_type");
    let rate_before = lab.counter("h1", "drop_handshake_rate");
    let half_open_before = lab.counter("h1", "pending_source_full");

    let stop = Arc::new(AtomicBool::new(false));
    let mut flooders = Flooders { stop: stop.clone(), threads: Vec::new() };
    flooders.threads.push(flood(
        lab.netns("h2"),
        INIT_SRC,
        5_000,
        stop.clone(),
        Flood::initiations(ca_public),
    ));
    let seed = 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id());
    flooders.threads.push(flood(lab.netns("h2"), GARBAGE_SRC, 20_000, stop.clone(), Flood::garbage(seed)));
    // Let the floods fill whatever they can fill before the new member arrives.
    std::thread::sleep(Duration::from_secs(2));

    let started = Instant::now();
    lab.start_daemon("h3");
    let deadline = started + Duration::from_secs(10);
    let joined = loop {
        let since = started.elapsed();
        if sees_connected(&lab, "h3", "h1", since) && sees_connected(&lab, "h1", "h3", since) {
            break Some(started.elapsed());
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let counters = {
        let out = lab.weft("h1", &["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["engine"]["counters"].clone()
    };
    let unknown = lab.counter("h1", "drop_unknown_type") - unknown_before;
    let rate = lab.counter("h1", "drop_handshake_rate") - rate_before;
    let half_open = lab.counter("h1", "pending_source_full") - half_open_before;
    let sent: Vec<_> = flooders.stop().iter().map(|t| (t.accepted, t.attempted)).collect();
    eprintln!(
        "join took {joined:?}; flooders sent {sent:?} ((sent, attempted) of initiations, garbage); h1 dropped \
         {unknown} of unknown type, {rate} over the handshake rate and {half_open} over the \
         source's half-open cap; h1's counters: {counters}"
    );
    assert!(
        joined.is_some(),
        "h3 did not join within 10 s during the floods: h1 sees {:?}, h3 sees {:?}",
        lab.peers("h1"),
        lab.peers("h3")
    );
    assert!(unknown > 0, "h1 counted no garbage (drop_unknown_type): the garbage flood did not arrive");
    assert!(rate > 0, "h1 dropped no initiation over its source's rate: the initiation flood did not arrive");
    assert!(half_open > 0, "h1 refused no initiation over the flooder's half-open cap (pending_source_full)");
}
