//! Lab test of the live status page: two hosts with a container each and a service on h1; a
//! headless Chromium inside h1's namespace loads `http://127.0.0.1:9571/` from h1's daemon,
//! runs the page's script against the real API, and the rendered DOM must show h2 as a member,
//! the service, and both hosts in the picture. Then a screenshot of the same page.
//!
//! Needs `chromium` (scripts/install-deps.sh); without it the test fails with that reason.
//! `WEFT_STATUS_PAGE_PNG=path` copies the screenshot there (how docs/status-page.png is made).

mod common;

use common::Lab;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The page, on h1's own loopback (`[metrics] listen` default).
const URL: &str = "http://127.0.0.1:9571/";

/// Flags for a headless Chromium on a machine with no network beyond the lab: no background
/// connections, no sandbox (it runs as root), a profile of its own.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--hide-scrollbars",
    // Several 2 s polls of virtual time; the page is rendered after the first.
    "--virtual-time-budget=8000",
];

/// Panics with the reason unless a Chromium is on PATH.
fn require_chromium() {
    let ok = Command::new("chromium").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the status page test needs headless Chromium: `chromium` is not on PATH \
         (run scripts/install-deps.sh, or apt-get install chromium)"
    );
}

/// Runs Chromium in `host`'s namespace with a fresh profile under the lab directory.
fn chromium(lab: &Lab, host: &str, run: &str, args: &[&str]) -> Output {
    let home = lab.dir().join(format!("chromium-{run}"));
    std::fs::create_dir_all(&home).expect("chromium profile directory");
    let profile = format!("--user-data-dir={}", home.join("profile").display());
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.netns(host), "timeout", "120", "chromium"])
        .args(CHROMIUM_FLAGS)
        .arg(profile)
        .args(args)
        .arg(URL)
        // Crash reports and caches go to the throwaway home, not root's.
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run chromium in {host}: {e}"));
    assert!(
        out.status.success(),
        "chromium {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Waits until `ok` holds for `observe()`; panics with `what` and the last value after `limit`.
fn wait_for<T: std::fmt::Debug>(
    limit: Duration,
    what: &str,
    mut observe: impl FnMut() -> T,
    ok: impl Fn(&T) -> bool,
) {
    let start = Instant::now();
    loop {
        let v = observe();
        if ok(&v) {
            return;
        }
        assert!(start.elapsed() < limit, "{what} not reached within {limit:?}; last seen: {v:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[test]
fn status_page_renders_the_network_in_chromium() {
    require_chromium();
    let lab = Lab::up(2, 1);
    let out = lab.weft("h1", &["service", "add", "web", "--container", "h1c1", "--port", "8080"]);
    assert!(out.status.success(), "service add: {}", String::from_utf8_lossy(&out.stderr));
    wait_for(
        Duration::from_secs(30),
        "web in h1's catalog and h2 among its nodes",
        || json(&lab.weft("h1", &["services", "--json"])),
        |v| {
            v["services"]["web"].as_array().is_some_and(|l| !l.is_empty())
                && v["nodes"].as_array().is_some_and(|n| n.iter().any(|n| n["name"] == "h2"))
        },
    );

    let dom = String::from_utf8_lossy(&chromium(&lab, "h1", "dom", &["--dump-dom"]).stdout).into_owned();
    let has = |needle: &str| dom.contains(needle);
    let context = || format!("dumped DOM:\n{dom}");
    assert!(has(r#"<tr data-name="h2""#), "no members row for h2; {}", context());
    assert!(has(r#"<tr data-name="h1""#), "no members row for this node; {}", context());
    assert!(has(r#"<tr data-service="web""#), "no services row for web; {}", context());
    for host in ["h1", "h2"] {
        // Host groups are the only elements with both attributes.
        let group = format!(r#"data-name="{host}" transform="#);
        assert!(has(&group), "no host group for {host} in svg#topology; {}", context());
    }
    assert!(has(r#"<svg id="topology""#), "{}", context());
    assert!(has(r#"<td class="state st-passing">passing</td>"#), "web is not passing; {}", context());
    // The page got its data: the stale banner stayed hidden.
    assert!(has(r#"<div id="stale" role="alert" hidden="">"#), "page reports stale data; {}", context());
    // h1's container is drawn inside h1's box.
    let ip1 = lab.ip("h1c1");
    assert!(has(&ip1), "h1c1's address {ip1} is not on the page; {}", context());

    let png = lab.dir().join("status-page.png");
    let shot = format!("--screenshot={}", png.display());
    chromium(&lab, "h1", "shot", &[&shot, "--window-size=1280,900"]);
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 20_000, "screenshot {} is {size} bytes: too small to show the page", png.display());
    let head = std::fs::read(&png).expect("read screenshot");
    assert!(head.starts_with(b"\x89PNG\r\n\x1a\n"), "screenshot is not a PNG");
    if let Some(dest) = std::env::var_os("WEFT_STATUS_PAGE_PNG") {
        std::fs::copy(&png, Path::new(&dest)).expect("copy screenshot to WEFT_STATUS_PAGE_PNG");
    }
}
