//! Our zone (`<domain>.`) as a hickory [`ZoneHandler`]: every lookup loads the current
//! [`Directory`] from its `ArcSwap`, so answers follow membership and health at once and
//! nothing is cached here beyond the TTL we hand out.
//!
//! Invariants: a name is NXDOMAIN only if neither it nor anything below it exists (so
//! resolvers doing NXDOMAIN cuts, RFC 8020, never hide live names); a known service whose
//! instances are all unhealthy is NOERROR with no answers; every record carries `ttl`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, AAAA, NS, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, TSigResponseContext};
use hickory_server::proto::ProtoError;
use hickory_server::server::{Request, RequestInfo};
use hickory_server::zone_handler::{
    AuthLookup, AxfrPolicy, LookupControlFlow, LookupError, LookupOptions, LookupRecords, ZoneHandler,
    ZoneTransfer, ZoneType,
};

use crate::discovery::directory::{Directory, Instance, Protocol};

/// What our zone says about one (name, type): the pure core of [`WeftZone`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The name exists and has records of the type (additionals: SRV targets' addresses).
    Records {
        /// Answer section.
        answers: Vec<Record>,
        /// Additional section.
        additionals: Vec<Record>,
    },
    /// The name exists but has no record of this type (NOERROR, empty answer).
    NoData,
    /// Neither the name nor anything below it exists.
    NxDomain,
}

/// The names and records of our zone that do not depend on the directory.
#[derive(Debug, Clone)]
pub(crate) struct ZoneNames {
    /// `<domain>.`, lower case, fully qualified.
    pub(crate) origin: Name,
    /// TTL of every record we hand out (and the SOA minimum).
    pub(crate) ttl: u32,
}

impl ZoneNames {
    /// Builds the zone for `domain` (`weft`, `weft.`, `Weft.Example` are all fine).
    pub(crate) fn new(domain: &str, ttl: u32) -> Result<Self, ProtoError> {
        let mut origin = Name::from_ascii(domain.trim_end_matches('.'))?.to_lowercase();
        origin.set_fqdn(true);
        Ok(Self { origin, ttl })
    }

    /// The synthetic SOA of the zone.
    pub(crate) fn soa(&self) -> Record {
        let soa = SOA::new(self.child("ns"), self.child("hostmaster"), 1, 3600, 600, 86400, self.ttl);
        Record::from_rdata(self.origin.clone(), self.ttl, RData::SOA(soa))
    }

    /// The NS record of the apex (`ns.<domain>.`).
    pub(crate) fn ns(&self) -> Record {
        Record::from_rdata(self.origin.clone(), self.ttl, RData::NS(NS(self.child("ns"))))
    }

    /// The name relative to the origin (`web.service`), or `None` when it is outside the zone
    /// or has a label we could never have published (non-UTF-8, or containing a dot).
    pub(crate) fn relative(&self, name: &Name) -> Option<String> {
        if !self.origin.zone_of(name) {
            return None;
        }
        // Count labels ourselves: `num_labels` leaves out a leading `*`.
        let own = name.iter().len().saturating_sub(self.origin.iter().len());
        let mut labels = Vec::with_capacity(own);
        for label in name.iter().take(own) {
            let label = std::str::from_utf8(label).ok()?;
            if label.contains('.') {
                return None;
            }
            labels.push(label.to_ascii_lowercase());
        }
        Some(labels.join("."))
    }

    /// Answers `rel` (relative, lower case; empty for the apex) from `dir`.
    pub(crate) fn answer(&self, dir: &Directory, rel: &str, rtype: RecordType) -> Answer {
        if rel.is_empty() {
            return self.apex(rtype);
        }
        if let Some(rest) = rel.strip_suffix(".service") {
            if let Some(answer) = self.service(dir, rest, rel, rtype) {
                return answer;
            }
        }
        if let Some(ips) = dir.hosts.get(rel) {
            return self.addresses(rel, ips.iter().copied(), rtype);
        }
        if is_empty_non_terminal(dir, rel) {
            return Answer::NoData;
        }
        Answer::NxDomain
    }

    fn apex(&self, rtype: RecordType) -> Answer {
        let record = match rtype {
            RecordType::SOA => self.soa(),
            RecordType::NS => self.ns(),
            _ => return Answer::NoData,
        };
        Answer::Records { answers: vec![record], additionals: Vec::new() }
    }

    /// `NAME.service` (A/AAAA) or `_NAME._tcp.service` / `_NAME._udp.service` (SRV); `None`
    /// when `rest` names no known service, so the caller falls through to hosts.
    fn service(&self, dir: &Directory, rest: &str, rel: &str, rtype: RecordType) -> Option<Answer> {
        if let Some((service, protocol)) = srv_parts(rest) {
            let instances = dir.services.get(service)?;
            if rtype != RecordType::SRV {
                return Some(Answer::NoData);
            }
            return Some(self.srv(dir, rel, instances, protocol));
        }
        let instances = dir.services.get(rest)?;
        let healthy = instances.iter().filter(|i| i.healthy).map(|i| i.ip);
        Some(self.addresses(rel, healthy, rtype))
    }

    fn srv(&self, dir: &Directory, rel: &str, instances: &[Instance], protocol: Protocol) -> Answer {
        let owner = self.absolute(rel);
        let mut answers = Vec::new();
        let mut targets = BTreeSet::new();
        for instance in instances.iter().filter(|i| i.healthy && i.protocol == protocol) {
            let Some(target) = self.absolute_checked(&instance.target) else {
                continue;
            };
            let srv = SRV::new(1, 1, instance.port, target.clone());
            answers.push(Record::from_rdata(owner.clone(), self.ttl, RData::SRV(srv)));
            targets.insert(instance.target.as_str());
        }
        let mut additionals = Vec::new();
        for target in &targets {
            let Some(name) = self.absolute_checked(target) else {
                continue;
            };
            // The directory promises every target is a host; fall back to the instance
            // addresses rather than leave the additional section empty if it is not.
            let ips: Vec<IpAddr> = match dir.hosts.get(*target) {
                Some(ips) => ips.clone(),
                None => instances.iter().filter(|i| i.target == *target).map(|i| i.ip).collect(),
            };
            let mut seen = BTreeSet::new();
            for ip in ips.into_iter().filter(|ip| seen.insert(*ip)) {
                additionals.push(self.address_record(&name, ip));
            }
        }
        if answers.is_empty() {
            return Answer::NoData;
        }
        Answer::Records { answers, additionals }
    }

    fn addresses(&self, rel: &str, ips: impl Iterator<Item = IpAddr>, rtype: RecordType) -> Answer {
        let want_v4 = match rtype {
            RecordType::A => true,
            RecordType::AAAA => false,
            _ => return Answer::NoData,
        };
        let owner = self.absolute(rel);
        let mut seen = BTreeSet::new();
        let answers: Vec<Record> = ips
            .filter(|ip| ip.is_ipv4() == want_v4 && seen.insert(*ip))
            .map(|ip| self.address_record(&owner, ip))
            .collect();
        if answers.is_empty() {
            return Answer::NoData;
        }
        Answer::Records { answers, additionals: Vec::new() }
    }

    fn address_record(&self, owner: &Name, ip: IpAddr) -> Record {
        let rdata = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        Record::from_rdata(owner.clone(), self.ttl, rdata)
    }

    fn child(&self, label: &str) -> Name {
        self.absolute_checked(label).unwrap_or_else(|| self.origin.clone())
    }

    /// `rel.<domain>.`; `rel` came from a query name under the origin, so it always fits.
    fn absolute(&self, rel: &str) -> Name {
        self.absolute_checked(rel).unwrap_or_else(|| self.origin.clone())
    }

    /// `rel.<domain>.`, or `None` when `rel` is not a valid relative name (directory data).
    fn absolute_checked(&self, rel: &str) -> Option<Name> {
        Name::from_ascii(rel).ok()?.append_domain(&self.origin).ok()
    }
}

/// Splits `_web._tcp` into (`web`, TCP).
fn srv_parts(rest: &str) -> Option<(&str, Protocol)> {
    let (service, protocol) = if let Some(s) = rest.strip_suffix("._tcp") {
        (s, Protocol::Tcp)
    } else if let Some(s) = rest.strip_suffix("._udp") {
        (s, Protocol::Udp)
    } else {
        return None;
    };
    let service = service.strip_prefix('_')?;
    (!service.is_empty() && !service.contains('.')).then_some((service, protocol))
}

/// Whether `rel` has no records itself but some published name lies below it (`node`,
/// `service`, `_tcp.service`): such names must answer NOERROR, not NXDOMAIN.
fn is_empty_non_terminal(dir: &Directory, rel: &str) -> bool {
    let below = |name: &str| {
        name.len() > rel.len() + 1
            && name.ends_with(rel)
            && name.as_bytes()[name.len() - rel.len() - 1] == b'.'
    };
    if dir.hosts.keys().any(|k| below(k)) {
        return true;
    }
    dir.services.iter().any(|(service, instances)| {
        below(&format!("{service}.service"))
            || instances.iter().any(|i| {
                let proto = match i.protocol {
                    Protocol::Tcp => "_tcp",
                    Protocol::Udp => "_udp",
                };
                below(&format!("_{service}.{proto}.service"))
            })
    })
}

/// The hickory zone handler serving [`ZoneNames`] from the live directory.
pub(crate) struct WeftZone {
    names: ZoneNames,
    origin: LowerName,
    directory: Arc<ArcSwap<Directory>>,
}

impl WeftZone {
    /// A zone answering from whatever `directory` holds at query time.
    pub(crate) fn new(names: ZoneNames, directory: Arc<ArcSwap<Directory>>) -> Self {
        let origin = LowerName::new(&names.origin);
        Self { names, origin, directory }
    }
}

#[async_trait::async_trait]
impl ZoneHandler for WeftZone {
    fn zone_type(&self) -> ZoneType {
        ZoneType::Primary
    }

    fn axfr_policy(&self) -> AxfrPolicy {
        AxfrPolicy::Deny
    }

    fn origin(&self) -> &LowerName {
        &self.origin
    }

    async fn lookup(
        &self,
        name: &LowerName,
        rtype: RecordType,
        _request_info: Option<&RequestInfo<'_>>,
        _lookup_options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        let name = Name::from(name);
        let answer = match self.names.relative(&name) {
            Some(rel) => self.names.answer(&self.directory.load(), &rel, rtype),
            None => Answer::NxDomain,
        };
        LookupControlFlow::Break(match answer {
            Answer::Records { answers, additionals } => Ok(AuthLookup::answers(
                LookupRecords::Section(answers),
                (!additionals.is_empty()).then_some(LookupRecords::Section(additionals)),
            )),
            Answer::NoData => Err(LookupError::NameExists),
            Answer::NxDomain => Err(LookupError::from(ResponseCode::NXDomain)),
        })
    }

    async fn search(
        &self,
        request: &Request,
        lookup_options: LookupOptions,
    ) -> (LookupControlFlow<AuthLookup>, Option<TSigResponseContext>) {
        let info = match request.request_info() {
            Ok(info) => info,
            Err(e) => return (LookupControlFlow::Break(Err(e)), None),
        };
        let flow = self.lookup(info.query.name(), info.query.query_type(), Some(&info), lookup_options).await;
        (flow, None)
    }

    async fn nsec_records(
        &self,
        _name: &LowerName,
        _lookup_options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        LookupControlFlow::Break(Ok(AuthLookup::default()))
    }

    async fn zone_transfer(
        &self,
        _request: &Request,
        _lookup_options: LookupOptions,
        _now: u64,
    ) -> Option<(Result<ZoneTransfer, LookupError>, Option<TSigResponseContext>)> {
        Some((Err(LookupError::from(ResponseCode::Refused)), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> ZoneNames {
        ZoneNames::new("Weft.Example.", 7).unwrap()
    }

    fn rel(name: &str) -> Option<String> {
        zone().relative(&Name::from_ascii(name).unwrap())
    }

    #[test]
    fn relative_names() {
        assert_eq!(zone().origin.to_ascii(), "weft.example.");
        assert_eq!(rel("weft.example.").as_deref(), Some(""));
        assert_eq!(rel("H1.Node.weft.EXAMPLE.").as_deref(), Some("h1.node"));
        assert_eq!(rel("*.weft.example.").as_deref(), Some("*"));
        assert_eq!(rel("example."), None);
        assert_eq!(rel("weft.example.org."), None);
        // A single label `h1.node` must not pass for the two labels `h1` `node`.
        assert_eq!(rel("h1\\.node.weft.example."), None);
    }

    #[test]
    fn srv_names() {
        assert_eq!(srv_parts("_web._tcp"), Some(("web", Protocol::Tcp)));
        assert_eq!(srv_parts("_dns._udp"), Some(("dns", Protocol::Udp)));
        assert_eq!(srv_parts("web._tcp"), None);
        assert_eq!(srv_parts("_._tcp"), None);
        assert_eq!(srv_parts("_a.b._tcp"), None);
        assert_eq!(srv_parts("_web._sctp"), None);
    }

    #[test]
    fn empty_non_terminals() {
        let mut dir = Directory::default();
        dir.hosts.insert("web1.container".into(), vec![IpAddr::from([10, 0, 0, 1])]);
        dir.services.insert(
            "web".into(),
            vec![Instance {
                ip: IpAddr::from([10, 0, 0, 1]),
                port: 80,
                protocol: Protocol::Udp,
                target: "web1.container".into(),
                healthy: false,
            }],
        );
        let z = zone();
        for name in ["container", "service", "_udp.service"] {
            assert_eq!(z.answer(&dir, name, RecordType::A), Answer::NoData, "{name}");
        }
        for name in ["node", "_tcp.service", "ontainer", "eb1.container", "*"] {
            assert_eq!(z.answer(&dir, name, RecordType::A), Answer::NxDomain, "{name}");
        }
        // Unhealthy only: the SRV name exists but has nothing to say.
        assert_eq!(z.answer(&dir, "_web._udp.service", RecordType::SRV), Answer::NoData);
    }

    #[test]
    fn soa_minimum_is_the_ttl() {
        let soa = zone().soa();
        assert_eq!(soa.ttl, 7);
        match soa.data {
            RData::SOA(soa) => {
                assert_eq!(soa.minimum, 7);
                assert_eq!(soa.mname.to_ascii(), "ns.weft.example.");
            }
            other => panic!("{other:?}"),
        }
    }
}
