//! Membership at scale, on the simulated network (`weft::membership::sim`): N nodes join
//! (each knowing one random earlier node), converge, then we measure in simulated time how
//! long until everyone sees a new node, until a crashed node is declared down everywhere,
//! and until a record update reaches everyone; plus false downs and bytes per node.
//!
//! `cargo bench --bench membership` runs the default sizes at 0 % and 1 % loss; pass sizes to
//! choose (`-- 1000 3000`), or `size:loss` for one case (`-- 10000:0.01`).
//!
//! Crash detection is measured [`CRASHES`] times, one crash after another, and reported as
//! the median and the slowest; then one crashed node restarts and we measure when each node
//! sees it up again (p99 over nodes, from its first announce).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use weft::membership::sim::{Sim, SimConfig};
use weft::membership::{MemberEvent, MembershipConfig, NodeKey};

/// Sizes run by default: 1,000 nodes take under a minute per loss setting. Larger sizes are
/// opt-in (`cargo bench --bench membership -- 3000`).
const DEFAULT_SIZES: &[usize] = &[1000];
/// Largest cluster formed by joins. Formation by joins costs about n² messages, each node
/// receiving every join many times over (2,000 nodes: 110 s of the run's 130 s), so larger
/// clusters start pre-formed ([`Sim::add_formed`]): every node is handed every other's record
/// and identity, and everything measured after runs the protocol.
const FORM_BY_JOINS_UP_TO: usize = 3000;
const LOSSES: &[f64] = &[0.0, 0.01];
/// Crashes measured per case.
const CRASHES: usize = 5;

struct Row {
    nodes: usize,
    loss: f64,
    preformed: bool,
    formed: Option<Duration>,
    new_node_seen: Option<Duration>,
    crash_detected: Option<Duration>,
    crash_slowest: Option<Duration>,
    restart_p99: Option<Duration>,
    update_spread: Option<Duration>,
    false_downs: usize,
    bytes_per_node_s: f64,
    wall: Duration,
    peak_rss_mib: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let mut cases: Vec<(usize, f64)> = Vec::new();
    for a in &args {
        match a.split_once(':') {
            Some((n, loss)) => cases.extend(n.parse().ok().zip(loss.parse().ok())),
            None => {
                cases.extend(a.parse().ok().into_iter().flat_map(|n| LOSSES.iter().map(move |l| (n, *l))))
            }
        }
    }
    if cases.is_empty() {
        cases = DEFAULT_SIZES.iter().flat_map(|n| LOSSES.iter().map(move |l| (*n, *l))).collect();
    }
    let shown: Vec<String> = cases.iter().map(|(n, l)| format!("{n}:{l}")).collect();
    println!("cargo bench --bench membership -- {}", shown.join(" "));
    let mut rows = Vec::new();
    for (n, loss) in cases {
        let row = run(n, loss);
        eprintln!("done: {} nodes, {}% loss in {:.1?}", n, loss * 100.0, row.wall);
        rows.push(row);
    }
    println!("\n| nodes | loss | formed (after last join) | new node seen by all | crash declared down everywhere (median of {CRASHES}) | slowest crash | restarted node up everywhere (p99) | record update reaches all | false downs | bytes/s per node (steady) | wall time | peak RSS |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {}% | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.1?} | {} MiB |",
            r.nodes,
            r.loss * 100.0,
            if r.preformed { format!("pre-formed, converged {}", fmt(r.formed)) } else { fmt(r.formed) },
            fmt(r.new_node_seen),
            fmt(r.crash_detected),
            fmt(r.crash_slowest),
            fmt(r.restart_p99),
            fmt(r.update_spread),
            r.false_downs,
            r.bytes_per_node_s,
            r.wall,
            r.peak_rss_mib,
        );
    }
}

fn fmt(d: Option<Duration>) -> String {
    d.map_or("not reached".into(), |d| format!("{:.1} s", d.as_secs_f64()))
}

fn run(n: usize, loss: f64) -> Row {
    let wall = Instant::now();
    // Room for every node and the one that joins later.
    let membership = MembershipConfig { max_members: (2 * n).max(10_000), ..MembershipConfig::default() };
    let mut sim = Sim::new(SimConfig { seed: n as u64 ^ 0xbe7c, loss, membership, ..SimConfig::default() });
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ n as u64;
    let mut pick = move |below: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % below as u64) as usize
    };
    let preformed = n > FORM_BY_JOINS_UP_TO;
    if preformed {
        // Every node handed every other's record, one node after another over 2 s.
        sim.add_formed(n, Duration::from_secs(2));
        eprintln!("pre-formed ({:.1?} wall)", wall.elapsed());
    } else {
        // Joins spread over 30 s, each through one random earlier node.
        let gap = Duration::from_secs(30) / n as u32;
        for i in 0..n {
            let seed = if i == 0 { None } else { Some(pick(i)) };
            sim.add_node(seed);
            sim.run_for(gap);
        }
    }
    let mut lagging = 0;
    let formed = sim.run_until_pred(Duration::from_secs(300), Duration::from_secs(1), |s| {
        converged_from(s, &mut lagging)
    });
    eprintln!("formed {formed:.1?} after the last join ({:.1?} wall)", wall.elapsed());

    // Steady state, once the formation burst's rumors are spread: bytes per node per second.
    sim.record_events = true;
    let settled = sim.run_until_pred(Duration::from_secs(120), Duration::from_secs(1), |s| s.quiet());
    eprintln!("rumors settled {:.0?} after formation ({:.1?} wall)", settled, wall.elapsed());
    let before = sim.total_stats().bytes_out;
    let kinds_before = sim.bytes_by_kind;
    let steady = Duration::from_secs(30);
    sim.run_for(steady);
    let bytes_per_node_s = (sim.total_stats().bytes_out - before) as f64 / n as f64 / steady.as_secs_f64();
    let mut false_downs = count_false_downs(&mut sim, &[]);
    let kinds: Vec<f64> = (0..kinds_before.len())
        .map(|k| (sim.bytes_by_kind[k] - kinds_before[k]) as f64 / n as f64 / steady.as_secs_f64())
        .collect();
    eprintln!("steady bytes/s per node by kind [swim, notices, pulls, chunks, digests, revocations, suspect, probe, probe ack]: {kinds:.0?}");

    // A new node joins through a random member.
    let new = sim.add_node(Some(pick(n)));
    let new_key = sim.node(new).key;
    let new_node_seen = wait_for_all(&mut sim, new, |e| *e == MemberEvent::Up(new_key), &mut false_downs);

    // A record update.
    let u = pick(n);
    let u_key = sim.node(u).key;
    let v = sim.with_node(u, |m, now| {
        m.update_own(now, |r| r.networks.push(2));
        m.own().version
    });
    let update_spread = wait_until(&mut sim, &mut false_downs, |s| {
        s.nodes().iter().all(|x| x.m.record(&u_key).is_some_and(|r| r.version >= v))
    });

    // Crashes, one after another.
    let mut crashed = Vec::new();
    let mut times = Vec::new();
    while crashed.len() < CRASHES {
        let c = pick(n);
        if crashed.contains(&c) || c == u {
            continue;
        }
        crashed.push(c);
        let c_key = sim.node(c).key;
        sim.crash(c);
        let t = wait_for_all(&mut sim, c, |e| *e == MemberEvent::Down(c_key), &mut false_downs);
        eprintln!(
            "crash {} declared down everywhere in {t:.1?} ({:.1?} wall)",
            crashed.len(),
            wall.elapsed()
        );
        times.push(t.unwrap_or(Duration::MAX));
    }
    times.sort();
    let known = |d: Duration| (d != Duration::MAX).then_some(d);
    let crash_detected = known(times[times.len() / 2]);
    let crash_slowest = known(times[times.len() - 1]);

    // The last crashed node restarts through a random member; when does each node see it up?
    let r = crashed[crashed.len() - 1];
    let r_key = sim.node(r).key;
    false_downs += count_false_downs(&mut sim, &[]);
    let seed = loop {
        let s = pick(n);
        if sim.node(s).up {
            break s;
        }
    };
    sim.restart(r, seed);
    let mut ups: Vec<Duration> = Vec::new();
    let mut seen: HashSet<usize> = HashSet::new();
    let begin = sim.elapsed();
    let all_up = sim.run_until_pred(Duration::from_secs(60), Duration::from_millis(50), |s| {
        let events = s.take_events();
        false_downs += false_downs_in(s, &events, &[]);
        for (at, i, e) in events {
            if e == MemberEvent::Up(r_key) && seen.insert(i) {
                ups.push(at.saturating_sub(begin));
            }
        }
        s.nodes().iter().enumerate().filter(|(i, x)| *i != r && x.up).all(|(i, _)| seen.contains(&i))
    });
    ups.sort();
    let restart_p99 = all_up.and(ups.get(ups.len().saturating_sub(1) * 99 / 100).copied());

    Row {
        nodes: n,
        loss,
        preformed,
        formed,
        new_node_seen,
        crash_detected,
        crash_slowest,
        restart_p99,
        update_spread,
        false_downs,
        bytes_per_node_s,
        wall: wall.elapsed(),
        peak_rss_mib: peak_rss_mib(),
    }
}

/// The process's peak resident set so far (Linux `VmHWM`), in MiB; 0 where unknown.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("");
    line.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).unwrap_or(0) / 1024
}

/// [`Sim::converged`], checked from the node that lagged last time (`lagging`, updated): at
/// 10,000 nodes one node's view costs 10,000 look-ups, so a check should not re-verify the
/// nodes that were already fine before finding the one that still lags.
fn converged_from(sim: &Sim, lagging: &mut usize) -> bool {
    let n = sim.nodes().len();
    for step in 0..n {
        let i = (*lagging + step) % n;
        if sim.node(i).up && !sim.sees_all(i) {
            *lagging = i;
            return false;
        }
    }
    true
}

/// Runs until every running node but `subject` has emitted an event matching `is`.
fn wait_for_all(
    sim: &mut Sim,
    subject: usize,
    is: impl Fn(&MemberEvent) -> bool,
    false_downs: &mut usize,
) -> Option<Duration> {
    let mut seen: HashSet<usize> = HashSet::new();
    let crashed: Vec<NodeKey> = sim.nodes().iter().filter(|x| !x.up).map(|x| x.key).collect();
    sim.run_until_pred(Duration::from_secs(60), Duration::from_millis(100), |s| {
        let events = s.take_events();
        *false_downs += false_downs_in(s, &events, &crashed);
        seen.extend(events.iter().filter(|(_, _, e)| is(e)).map(|(_, i, _)| *i));
        s.nodes().iter().enumerate().filter(|(i, x)| *i != subject && x.up).all(|(i, _)| seen.contains(&i))
    })
}

/// Runs until `done` holds, counting false downs on the way.
fn wait_until(sim: &mut Sim, false_downs: &mut usize, done: impl Fn(&Sim) -> bool) -> Option<Duration> {
    sim.run_until_pred(Duration::from_secs(120), Duration::from_millis(100), |s| {
        let events = s.take_events();
        *false_downs += false_downs_in(s, &events, &[]);
        done(s)
    })
}

fn count_false_downs(sim: &mut Sim, crashed: &[NodeKey]) -> usize {
    let events = sim.take_events();
    false_downs_in(sim, &events, crashed)
}

/// Down events about nodes that are running.
fn false_downs_in(sim: &Sim, events: &[(Duration, usize, MemberEvent)], crashed: &[NodeKey]) -> usize {
    events
        .iter()
        .filter(|(_, _, e)| match e {
            MemberEvent::Down(k) => !crashed.contains(k) && sim.nodes().iter().any(|x| x.key == *k && x.up),
            _ => false,
        })
        .count()
}
