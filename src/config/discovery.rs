//! The `[dns]` and `[[service]]` sections: the discovery side of the node file, checked with
//! the same rules as `weft service add` (`ServiceSpec::validate`, `Check::validate`).

use std::net::{IpAddr, SocketAddr};
use toml::Spanned;

use super::{file, ConfigError, Ctx, Dns, Network};
use crate::discovery::catalog::{self, Check, CheckTemplate, ServiceSpec, Target};
use crate::discovery::directory::Protocol;

impl Ctx<'_> {
    pub(super) fn dns(&self, d: &file::DnsFile) -> Result<Dns, ConfigError> {
        let domain = match &d.domain {
            None => "weft".to_owned(),
            Some(s) => {
                let v = s.get_ref().trim_end_matches('.').to_ascii_lowercase();
                let ok = !v.is_empty()
                    && v.len() <= 200
                    && v.split('.').all(|l| catalog::check_dns_label(l).is_ok());
                if !ok {
                    return Err(self.err(
                        s,
                        "dns.domain",
                        "must be dot-separated labels of a-z 0-9 -, e.g. \"weft\" or \"mesh.internal\"",
                    ));
                }
                v
            }
        };
        let mut listen = Vec::new();
        for (i, l) in d.listen.iter().enumerate() {
            listen.push(l.get_ref().parse().map_err(|_| {
                self.err(l, &format!("dns.listen[{i}]"), "expected IP:PORT, e.g. 127.0.0.1:53")
            })?);
        }
        let ttl = self.bounded(&d.ttl, "dns.ttl", 0..=86_400, " seconds", 5)?;
        let upstreams = match &d.upstreams {
            None => None,
            Some(list) => {
                let mut v = Vec::new();
                for (i, u) in list.iter().enumerate() {
                    let s = u.get_ref();
                    let a = s
                        .parse::<SocketAddr>()
                        .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                        .map_err(|_| {
                            self.err(
                                u,
                                &format!("dns.upstreams[{i}]"),
                                "expected IP or IP:PORT, e.g. 192.0.2.53",
                            )
                        })?;
                    v.push(a);
                }
                Some(v)
            }
        };
        Ok(Dns { enable: d.enable.unwrap_or(true), domain, listen, ttl, upstreams })
    }

    pub(super) fn service(
        &self,
        i: usize,
        s: &file::ServiceFile,
        nets: &[Network],
    ) -> Result<ServiceSpec, ConfigError> {
        let key = |k: &str| format!("service[{i}].{k}");
        let name = s.name.get_ref().clone();
        catalog::check_dns_label(&name).map_err(|m| self.err(&s.name, &key("name"), &m))?;
        let network = match &s.network {
            Some(n) if !nets.iter().any(|x| &x.name == n.get_ref()) => {
                return Err(self.err(n, &key("network"), "no [[network]] of that name"))
            }
            Some(n) => n.get_ref().clone(),
            None => nets.first().map(|n| n.name.clone()).unwrap_or_default(),
        };
        let target = match (&s.container, &s.address) {
            (Some(c), None) => Target::Container(c.get_ref().clone()),
            (None, Some(a)) => Target::Address(
                a.get_ref().parse().map_err(|_| self.err(a, &key("address"), "expected an IP address"))?,
            ),
            _ => {
                return Err(self.err(
                    &s.name,
                    &format!("service[{i}]"),
                    "give exactly one of `container` or `address`",
                ))
            }
        };
        let protocol = match s.protocol.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("tcp") => Protocol::Tcp,
            Some("udp") => Protocol::Udp,
            Some(_) => {
                let p = s.protocol.as_ref().expect("matched Some");
                return Err(self.err(p, &key("protocol"), "must be \"tcp\" or \"udp\""));
            }
        };
        let check = match &s.check {
            None => None,
            Some(c) => Some(self.check(&key("check"), c, protocol)?),
        };
        let spec = ServiceSpec {
            name,
            network,
            target,
            port: *s.port.get_ref(),
            protocol,
            tags: s.tags.iter().map(|t| t.get_ref().clone()).collect(),
            check,
        };
        spec.validate().map_err(|m| {
            let (field, msg) = m.split_once(": ").unwrap_or(("", &m));
            let at = match field {
                "port" => s.port.span(),
                "check" => s.check.as_ref().map(|c| c.span()).unwrap_or(s.name.span()),
                "tags" => s.tags.first().map(|t| t.span()).unwrap_or(s.name.span()),
                _ => s.name.span(),
            };
            ConfigError {
                path: self.path.display().to_string(),
                line: Some(self.line_of(at.start)),
                key: key(field),
                message: msg.to_owned(),
            }
        })?;
        Ok(spec)
    }

    fn check(
        &self,
        key: &str,
        c: &Spanned<file::CheckFile>,
        protocol: Protocol,
    ) -> Result<Check, ConfigError> {
        let f = c.get_ref();
        let k = |s: &str| format!("{key}.{s}");
        let template = match f.kind.get_ref().as_str() {
            "tcp" if protocol == Protocol::Udp => {
                return Err(self.err(&f.kind, &k("type"), "a TCP check on a UDP service; use \"command\""))
            }
            "tcp" => CheckTemplate::Tcp,
            "http" => CheckTemplate::Http {
                path: f.path.as_ref().map(|p| p.get_ref().clone()).unwrap_or_else(|| "/".into()),
            },
            "command" => CheckTemplate::Command {
                argv: f.command.as_ref().map(|a| a.get_ref().clone()).ok_or_else(|| {
                    self.err(
                        &f.kind,
                        &k("command"),
                        "a command check needs `command = [\"prog\", \"arg\", …]`",
                    )
                })?,
            },
            _ => return Err(self.err(&f.kind, &k("type"), "must be \"tcp\", \"http\" or \"command\"")),
        };
        let dur = |v: &Option<Spanned<String>>, name: &str, default| match v {
            None => Ok(default),
            Some(s) => catalog::parse_duration(s.get_ref()).map_err(|m| self.err(s, &k(name), &m)),
        };
        let interval = dur(&f.interval, "interval", catalog::DEFAULT_INTERVAL)?;
        let check = Check {
            template,
            interval,
            timeout: dur(&f.timeout, "timeout", catalog::DEFAULT_TIMEOUT.min(interval))?,
            rise: f.rise.as_ref().map(|r| *r.get_ref()).unwrap_or(1),
            fall: f.fall.as_ref().map(|r| *r.get_ref()).unwrap_or(2),
        };
        check.validate().map_err(|m| self.err(c, key, &m))?;
        Ok(check)
    }
}
