//! Lab test of issue 17's cipher negotiation with real daemons: four hosts, one container each;
//! h1 and h2 keep `[underlay] cipher = "auto"`, h3 is restarted with `"chacha20poly1305"` and
//! h4 with `"aes-256-gcm"`. On a CPU with hardware AES (detected as the daemon does), auto
//! offers both: h1⇄h2 and h1/h2⇄h4 then use AES-256-GCM, h1/h2⇄h3 ChaCha20-Poly1305 (the mixed
//! pair: auto ⇄ chacha-only). Containers ping across every pair that has a cipher in common,
//! a TCP transfer arrives intact over an AES pair and over the mixed pair, and h3⇄h4 — forced to
//! different ciphers — never completes a handshake, which one of them counts as
//! `no_common_cipher`, while both keep working with the auto nodes. Without hardware AES, auto
//! offers ChaCha only: every auto pair uses ChaCha and the AES-only h4 connects to no one.

mod common;

use common::Lab;
use std::time::{Duration, Instant};

const AES: &str = "aes-256-gcm";
const CHACHA: &str = "chacha20poly1305";

/// The cipher of `host`'s live session with member `peer`, as `weft peers --json` shows it.
fn session_cipher(lab: &Lab, host: &str, peer: &str) -> Option<String> {
    lab.peers(host)
        .iter()
        .find(|p| p["name"] == peer && p["connected"] == true)
        .and_then(|p| p["cipher"].as_str().map(str::to_owned))
}

/// Waits up to `within` until both ends of `a`⇄`b` report a live session, and returns what each
/// end says its cipher is (`None` for an end without a session).
fn pair_ciphers(lab: &Lab, a: &str, b: &str, within: Duration) -> (Option<String>, Option<String>) {
    let deadline = Instant::now() + within;
    loop {
        let seen = (session_cipher(lab, a, b), session_cipher(lab, b, a));
        if (seen.0.is_some() && seen.1.is_some()) || Instant::now() >= deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The sum of `no_common_cipher` over `hosts`.
fn refusals(lab: &Lab, hosts: &[&str]) -> u64 {
    hosts.iter().map(|h| lab.counter(h, "no_common_cipher")).sum()
}

#[test]
fn ciphers_are_negotiated_per_pair_and_a_pair_without_one_in_common_is_refused_and_counted() {
    // What the daemon's `cipher = "auto"` checks.
    let aes = weft::config::hardware_aes();
    let lab = Lab::up(4, 1);
    for (host, cipher) in [("h3", CHACHA), ("h4", AES)] {
        lab.stop_daemon(host, "TERM");
        lab.add_config_line(host, "underlay", &format!("cipher = {cipher:?}"));
        lab.start_daemon(host);
    }
    let offered = |host: &str| {
        let out = lab.weft(host, &["status"]);
        assert!(out.status.success(), "weft status on {host}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().find(|l| l.contains("ciphers offered")).unwrap_or_default().to_owned()
    };
    let auto_offer = if aes {
        "ciphers offered: aes-256-gcm, chacha20poly1305"
    } else {
        "ciphers offered: chacha20poly1305"
    };
    assert!(offered("h1").contains(auto_offer), "h1 (auto, hardware AES: {aes}): {:?}", offered("h1"));
    assert!(offered("h3").ends_with("ciphers offered: chacha20poly1305"), "h3: {:?}", offered("h3"));
    assert!(offered("h4").ends_with("ciphers offered: aes-256-gcm"), "h4: {:?}", offered("h4"));

    // Which pairs must work and with which cipher; the rest must never connect.
    let auto_pair = if aes { AES } else { CHACHA };
    let mut working = vec![("h1", "h2", auto_pair), ("h1", "h3", CHACHA), ("h2", "h3", CHACHA)];
    let mut refused = vec![("h3", "h4")];
    if aes {
        working.extend([("h1", "h4", AES), ("h2", "h4", AES)]);
    } else {
        refused.extend([("h1", "h4"), ("h2", "h4")]);
    }

    // Container traffic in both directions of every working pair (the pings also start the
    // sessions that membership has not started yet).
    let mut failed = Vec::new();
    for &(a, b, _) in &working {
        for (from, to) in [(a, b), (b, a)] {
            if !lab.ping(&format!("{from}c1"), &lab.ip(&format!("{to}c1"))) {
                failed.push(format!("{from}c1 -> {to}c1"));
            }
        }
    }
    assert!(failed.is_empty(), "pings failed between hosts with a cipher in common: {failed:?}");
    for &(a, b, want) in &working {
        let got = pair_ciphers(&lab, a, b, Duration::from_secs(10));
        assert_eq!(
            got,
            (Some(want.to_owned()), Some(want.to_owned())),
            "{a}⇄{b} should use {want} on both ends (hardware AES: {aes}); {a} sees {:?}",
            lab.peers(a)
        );
    }
    let (aes_pair, mixed_pair) = (("h1c1", "h2c1"), ("h3c1", "h1c1"));
    lab.transfer_intact(aes_pair.0, aes_pair.1, 16);
    lab.transfer_intact(mixed_pair.0, mixed_pair.1, 16);

    // The pairs without a cipher in common: traffic between their containers makes them try
    // (and retry) handshakes, and every attempt must be refused and counted.
    let hosts_of = |pairs: &[(&'static str, &'static str)]| {
        let mut hosts: Vec<&str> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
        hosts.sort_unstable();
        hosts.dedup();
        hosts
    };
    let involved = hosts_of(&refused);
    let before = refusals(&lab, &involved);
    for &(a, b) in &refused {
        for (from, to) in [(a, b), (b, a)] {
            assert!(
                !lab.ping(&format!("{from}c1"), &lab.ip(&format!("{to}c1"))),
                "{from}c1 reached {to}c1 although {a} and {b} have no cipher in common"
            );
        }
    }
    let counted = refusals(&lab, &involved) - before;
    assert!(
        counted > 0,
        "no_common_cipher did not grow on {involved:?} while {refused:?} tried to connect; counters: {:?}",
        involved.iter().map(|h| (*h, lab.counter(h, "no_common_cipher"))).collect::<Vec<_>>()
    );
    for &(a, b) in &refused {
        assert_eq!(
            (session_cipher(&lab, a, b), session_cipher(&lab, b, a)),
            (None, None),
            "{a}⇄{b} have a session although they share no cipher: {a} sees {:?}",
            lab.peers(a)
        );
    }
    eprintln!("hardware AES: {aes}; no_common_cipher +{counted} on {involved:?} during the refused pings");

    // The refusals broke nothing else: the forced nodes still reach the auto nodes, with the
    // same ciphers as before.
    for &(a, b, want) in &working {
        assert!(
            lab.ping(&format!("{a}c1"), &lab.ip(&format!("{b}c1"))),
            "{a}c1 no longer reaches {b}c1 after the refused handshakes"
        );
        assert_eq!(session_cipher(&lab, a, b).as_deref(), Some(want), "{a}⇄{b} after the refusals");
    }
}
