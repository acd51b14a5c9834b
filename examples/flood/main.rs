//! One of issue 15 item 7's floods against a weft tunnel port, paced and bounded in time: the
//! flooders of `benches/throughput.sh`'s weft-flood case. An example, not a `weft` command, so
//! the shipped binary carries no flooder; build it with `cargo build --release --example flood`.
//!
//! ```text
//! flood --to 10.201.0.2:51820 --bind 10.201.0.201 --kind init --ca ca.crt --rate 5000 --seconds 60
//! flood --to 10.201.0.2:51820 --bind 10.201.0.202 --kind garbage --rate 20000 --seconds 60
//! ```
//!
//! Point it only at a lab's own addresses (LAB.md, rule 1). It sends until `--seconds` have
//! passed or it gets SIGTERM or SIGINT, then prints one line with what it sent.

#[path = "flooder.rs"]
mod flooder;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use flooder::{send_paced, Flood};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGTERM and SIGINT: the flood ends at its next burst.
static STOP: AtomicBool = AtomicBool::new(false);

/// A paced flood of handshake initiations or garbage at a weft tunnel port (lab use only).
#[derive(Parser)]
struct Args {
    /// The tunnel endpoint to flood (IP:PORT).
    #[arg(long)]
    to: SocketAddr,
    /// The source address to send from (it must be one of this namespace's; any port).
    #[arg(long)]
    bind: IpAddr,
    /// What to send.
    #[arg(long, value_enum)]
    kind: Kind,
    /// The network's CA certificate: initiations carry a mac1 keyed by its public key.
    #[arg(long, required_if_eq("kind", "init"))]
    ca: Option<PathBuf>,
    /// Datagrams per second.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    rate: u64,
    /// Upper bound of the flood's duration, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
}

/// The flood's kind.
#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    /// XX initiations with a correct mac1, a new sender index each.
    Init,
    /// Random bytes, 1 to 1400 of them.
    Garbage,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut flood = match args.kind {
        Kind::Init => {
            let path = args.ca.as_deref().context("--kind init needs --ca")?;
            Flood::initiations(weft::pki::load_ca_cert(path)?.public_key)
        }
        Kind::Garbage => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            Flood::garbage(now.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32))
        }
    };
    let sock =
        UdpSocket::bind(SocketAddr::new(args.bind, 0)).with_context(|| format!("bind {}", args.bind))?;
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        if unsafe { libc::signal(sig, handler) } == libc::SIG_ERR {
            anyhow::bail!("cannot handle signal {sig}: {}", std::io::Error::last_os_error());
        }
    }
    let started = Instant::now();
    let tally = send_paced(&sock, args.to, args.rate, &mut flood, &STOP, Duration::from_secs(args.seconds));
    let secs = started.elapsed().as_secs_f64();
    let kind = match args.kind {
        Kind::Init => "init",
        Kind::Garbage => "garbage",
    };
    println!(
        "flood {kind}: {} -> {}: {} datagrams sent ({} attempted) in {secs:.1} s, {:.0}/s",
        args.bind,
        args.to,
        tally.accepted,
        tally.attempted,
        tally.accepted as f64 / secs.max(1e-3),
    );
    Ok(())
}

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}
