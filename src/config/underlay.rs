//! The `[underlay]` table and the endpoints of other nodes (seeds, `[[peer]]`). No port may be
//! 0, and an address that is dialled (`advertise`, seeds, peers) may not be unspecified; only
//! `listen` may be `0.0.0.0`. `advertise` is parsed here; its host-dependent default is
//! resolved in `advertise.rs`.

use std::net::SocketAddr;
use toml::Spanned;

use super::{file, AdvertiseFrom, ConfigError, Ctx, Underlay, DEFAULT_WORKER_NICE};

impl Ctx<'_> {
    /// `IP:PORT` of another node: a seed or a `[[peer]]`.
    pub(super) fn endpoint(
        &self,
        e: &Spanned<String>,
        key: &str,
        example: &str,
    ) -> Result<SocketAddr, ConfigError> {
        let addr: SocketAddr = e
            .get_ref()
            .parse()
            .map_err(|_| self.err(e, key, &format!("expected IP:PORT, e.g. {example}")))?;
        if addr.ip().is_unspecified() || addr.port() == 0 {
            return Err(self.err(
                e,
                key,
                &format!("{addr} is not an address to dial; give another node's, e.g. {example}"),
            ));
        }
        Ok(addr)
    }

    pub(super) fn underlay(
        &self,
        u: &file::UnderlayFile,
        at: &mut dyn FnMut(&str, std::ops::Range<usize>),
    ) -> Result<Underlay, ConfigError> {
        let listen: SocketAddr = match &u.listen {
            Some(l) => {
                let addr: SocketAddr = l
                    .get_ref()
                    .parse()
                    .map_err(|_| self.err(l, "underlay.listen", "expected IP:PORT, e.g. 0.0.0.0:51820"))?;
                if addr.port() == 0 {
                    return Err(self.err(
                        l,
                        "underlay.listen",
                        "port 0 is not allowed: other members need a fixed port to dial, e.g. 0.0.0.0:51820",
                    ));
                }
                at("underlay.listen", l.span());
                addr
            }
            None => "0.0.0.0:51820".parse().expect("literal"),
        };
        let mtu = self.bounded(&u.mtu, "underlay.mtu", 1280..=65_535, "", 1500)?;
        let cores = std::thread::available_parallelism().map(|n| n.get().min(8)).unwrap_or(1);
        let workers = self.bounded(&u.workers, "underlay.workers", 1..=64, "", cores)?;
        let (advertise, advertise_from) = match &u.advertise {
            Some(a) => {
                let addr: SocketAddr = a.get_ref().parse().map_err(|_| {
                    self.err(a, "underlay.advertise", "expected IP:PORT, e.g. 192.0.2.1:51820")
                })?;
                if addr.ip().is_unspecified() {
                    return Err(self.err(
                        a,
                        "underlay.advertise",
                        &format!(
                            "{} is not an address other members can dial; give this host's underlay \
                             IP, e.g. 192.0.2.1:{}",
                            addr.ip(),
                            addr.port()
                        ),
                    ));
                }
                if addr.port() == 0 {
                    return Err(self.err(
                        a,
                        "underlay.advertise",
                        &format!(
                            "port 0 is not a port other members can dial; give listen's, e.g. {}:{}",
                            addr.ip(),
                            listen.port()
                        ),
                    ));
                }
                at("underlay.advertise", a.span());
                (addr, AdvertiseFrom::Configured)
            }
            None if !listen.ip().is_unspecified() => (listen, AdvertiseFrom::Listen),
            // A placeholder until `Config::resolve_advertise` reads the host.
            None => (listen, AdvertiseFrom::Unresolved),
        };
        let busy_poll_us =
            self.bounded(&u.busy_poll_us, "underlay.busy_poll_us", 0..=10_000, " (microseconds)", 0)?;
        let worker_nice = self.bounded(
            &u.worker_nice,
            "underlay.worker_nice",
            -20..=19,
            " (a nice value)",
            DEFAULT_WORKER_NICE,
        )?;
        let cipher = match &u.cipher {
            None => super::CipherChoice::Auto,
            Some(c) => match c.get_ref().as_str() {
                "auto" => super::CipherChoice::Auto,
                "aes-256-gcm" => super::CipherChoice::Aes256Gcm,
                "chacha20poly1305" => super::CipherChoice::ChaCha20Poly1305,
                other => {
                    return Err(self.err(
                        c,
                        "underlay.cipher",
                        &format!("unknown cipher {other:?}; expected \"auto\", \"aes-256-gcm\" or \"chacha20poly1305\""),
                    ))
                }
            },
        };
        Ok(Underlay {
            cipher,
            listen,
            advertise,
            advertise_from,
            mtu,
            workers,
            offload: u.offload.unwrap_or(true),
            busy_poll: std::time::Duration::from_micros(busy_poll_us.into()),
            worker_nice,
        })
    }
}
