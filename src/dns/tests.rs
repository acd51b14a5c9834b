//! Scenarios against a real server on 127.0.0.1 port 0, queried with hand-built hickory
//! messages over UDP and TCP; upstreams are tiny hand-written UDP responders.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_server::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

use super::listener::Limits;
use super::{DnsServer, DnsSettings, DnsStats};
use crate::discovery::directory::{Directory, Instance, Protocol};

const WAIT: Duration = Duration::from_secs(5);

fn instance(ip: &str, port: u16, protocol: Protocol, target: &str, healthy: bool) -> Instance {
    Instance { ip: ip.parse().unwrap(), port, protocol, target: target.into(), healthy }
}

fn directory() -> Directory {
    let mut services = BTreeMap::new();
    services.insert(
        "web".to_string(),
        vec![
            instance("10.42.1.5", 8080, Protocol::Tcp, "web1.container", true),
            instance("10.42.2.6", 8080, Protocol::Tcp, "web2.container", false),
            instance("fd00::5", 8443, Protocol::Tcp, "web3.container", true),
        ],
    );
    services.insert("syslog".to_string(), vec![instance("192.0.2.1", 514, Protocol::Udp, "h1.node", true)]);
    services
        .insert("down".to_string(), vec![instance("10.42.1.7", 80, Protocol::Tcp, "10-42-1-7.addr", false)]);
    let mut hosts = BTreeMap::new();
    let mut host = |name: &str, ips: &[&str]| {
        hosts.insert(name.to_string(), ips.iter().map(|ip| ip.parse().unwrap()).collect::<Vec<IpAddr>>());
    };
    host("h1.node", &["192.0.2.1", "2001:db8::1"]);
    host("web1.container", &["10.42.1.5"]);
    host("web2.container", &["10.42.2.6"]);
    host("web3.container", &["fd00::5"]);
    host("10-42-1-7.addr", &["10.42.1.7"]);
    Directory { services, hosts }
}

struct Fixture {
    server: DnsServer,
    addr: SocketAddr,
    directory: Arc<ArcSwap<Directory>>,
    stats: Arc<DnsStats>,
}

async fn start(upstreams: Vec<SocketAddr>, limits: Limits) -> Fixture {
    let directory = Arc::new(ArcSwap::from_pointee(directory()));
    let stats = Arc::new(DnsStats::default());
    let settings = DnsSettings {
        domain: "Weft.".into(),
        ttl: 30,
        upstreams,
        listen: vec!["127.0.0.1:0".parse().unwrap()],
    };
    let server = DnsServer::start_with(settings, directory.clone(), stats.clone(), limits).await.unwrap();
    let addr = server.local_addrs()[0];
    assert_ne!(addr.port(), 0);
    Fixture { server, addr, directory, stats }
}

fn stat(stats: &DnsStats, name: &str) -> u64 {
    use overlay_proto::counters::Snapshot;
    stats.snapshot().readings().find(|r| r.counter.field == name).map(|r| r.value).unwrap()
}

fn query(name: &str, rtype: RecordType) -> Message {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    msg
}

async fn udp_ask(server: SocketAddr, msg: &Message) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&msg.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = timeout(WAIT, sock.recv_from(&mut buf)).await.expect("udp reply in time").unwrap();
    let reply = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(reply.metadata.id, msg.metadata.id);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    reply
}

async fn tcp_ask(server: SocketAddr, msg: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    tcp_ask_on(&mut stream, msg).await
}

async fn tcp_ask_on(stream: &mut TcpStream, msg: &Message) -> Message {
    let bytes = msg.to_vec().unwrap();
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = timeout(WAIT, stream.read_u16()).await.unwrap().unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    let reply = Message::from_vec(&buf).unwrap();
    assert_eq!(reply.metadata.id, msg.metadata.id);
    reply
}

fn ips(records: &[Record]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(v4)) => Some(IpAddr::V4(*v4)),
            RData::AAAA(AAAA(v6)) => Some(IpAddr::V6(*v6)),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn services_answer_only_healthy_instances_over_udp_and_tcp() {
    let f = start(Vec::new(), Limits::default()).await;
    for tcp in [false, true] {
        let ask = |m: Message| async move {
            if tcp {
                tcp_ask(f.addr, &m).await
            } else {
                udp_ask(f.addr, &m).await
            }
        };
        let a = ask(query("web.service.weft.", RecordType::A)).await;
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert!(a.metadata.authoritative);
        assert_eq!(ips(&a.answers), vec![ip("10.42.1.5")], "tcp={tcp}");
        assert!(a.answers.iter().all(|r| r.ttl == 30));

        let aaaa = ask(query("web.service.weft.", RecordType::AAAA)).await;
        assert_eq!(ips(&aaaa.answers), vec![ip("fd00::5")], "tcp={tcp}");

        // Known service, nothing healthy: NOERROR and empty, SOA for negative caching.
        let down = ask(query("down.service.weft.", RecordType::A)).await;
        assert_eq!(down.metadata.response_code, ResponseCode::NoError);
        assert!(down.answers.is_empty());
        assert!(down.authorities.iter().any(|r| r.record_type() == RecordType::SOA));
    }
    assert_eq!(stat(&f.stats, "answered"), 4);
    assert_eq!(stat(&f.stats, "nodata"), 2);
    f.server.stop().await;
}

#[tokio::test]
async fn srv_gives_ports_targets_and_their_addresses() {
    let f = start(Vec::new(), Limits::default()).await;
    let srv = udp_ask(f.addr, &query("_web._tcp.service.weft.", RecordType::SRV)).await;
    assert_eq!(srv.metadata.response_code, ResponseCode::NoError);
    let mut got: Vec<(u16, u16, u16, String)> = srv
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.priority, s.weight, s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (1, 1, 8080, "web1.container.weft.".to_string()),
            (1, 1, 8443, "web3.container.weft.".to_string()),
        ]
    );
    assert_eq!(ips(&srv.additionals), vec![ip("10.42.1.5"), ip("fd00::5")]);

    let udp = udp_ask(f.addr, &query("_syslog._udp.service.weft.", RecordType::SRV)).await;
    assert_eq!(udp.answers.len(), 1);
    assert_eq!(ips(&udp.additionals), vec![ip("192.0.2.1"), ip("2001:db8::1")]);

    // The service exists but has no UDP instances, and A on an SRV name: both NODATA.
    let none = udp_ask(f.addr, &query("_web._udp.service.weft.", RecordType::SRV)).await;
    assert_eq!(none.metadata.response_code, ResponseCode::NoError);
    assert!(none.answers.is_empty());
    let a = udp_ask(f.addr, &query("_web._tcp.service.weft.", RecordType::A)).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.answers.is_empty());
    f.server.stop().await;
}

#[tokio::test]
async fn hosts_apex_nxdomain_and_case() {
    let f = start(Vec::new(), Limits::default()).await;
    let node = udp_ask(f.addr, &query("H1.Node.WEFT.", RecordType::A)).await;
    assert_eq!(ips(&node.answers), vec![ip("192.0.2.1")]);
    let node6 = tcp_ask(f.addr, &query("h1.node.weft.", RecordType::AAAA)).await;
    assert_eq!(ips(&node6.answers), vec![ip("2001:db8::1")]);
    let addr = udp_ask(f.addr, &query("10-42-1-7.addr.weft.", RecordType::A)).await;
    assert_eq!(ips(&addr.answers), vec![ip("10.42.1.7")]);
    let any = udp_ask(f.addr, &query("web1.container.weft.", RecordType::ANY)).await;
    assert_eq!(any.metadata.response_code, ResponseCode::NoError);
    assert!(any.answers.is_empty());

    for name in ["nope.node.weft.", "nope.service.weft.", "_nope._tcp.service.weft."] {
        let nx = udp_ask(f.addr, &query(name, RecordType::A)).await;
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain, "{name}");
        let soa = nx
            .authorities
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(soa) => Some((r.name.to_ascii(), soa.minimum)),
                _ => None,
            })
            .expect("SOA in authority");
        assert_eq!(soa, ("weft.".to_string(), 30));
    }
    // Names with something below them exist (RFC 8020): NOERROR, not NXDOMAIN.
    for name in ["node.weft.", "service.weft.", "_tcp.service.weft."] {
        let ent = udp_ask(f.addr, &query(name, RecordType::A)).await;
        assert_eq!(ent.metadata.response_code, ResponseCode::NoError, "{name}");
    }

    let soa = udp_ask(f.addr, &query("weft.", RecordType::SOA)).await;
    assert_eq!(soa.answers.len(), 1);
    assert!(matches!(soa.answers[0].data, RData::SOA(_)));
    let ns = udp_ask(f.addr, &query("weft.", RecordType::NS)).await;
    match &ns.answers[..] {
        [r] => match &r.data {
            RData::NS(ns) => assert_eq!(ns.0.to_ascii(), "ns.weft."),
            other => panic!("not NS: {other:?}"),
        },
        other => panic!("answers: {other:?}"),
    }
    assert_eq!(stat(&f.stats, "nxdomain"), 3);
    f.server.stop().await;
}

#[tokio::test]
async fn swapping_the_directory_changes_the_next_answer() {
    let f = start(Vec::new(), Limits::default()).await;
    let q = query("web.service.weft.", RecordType::A);
    assert_eq!(ips(&udp_ask(f.addr, &q).await.answers), vec![ip("10.42.1.5")]);

    let mut next = directory();
    for i in next.services.get_mut("web").unwrap() {
        i.healthy = !i.healthy;
    }
    f.directory.store(Arc::new(next));
    assert_eq!(ips(&udp_ask(f.addr, &q).await.answers), vec![ip("10.42.2.6")]);

    f.directory.store(Arc::new(Directory::default()));
    let gone = udp_ask(f.addr, &q).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
    f.server.stop().await;
}

/// A UDP upstream that answers `example.test. A 192.0.2.7` and NXDOMAIN for anything else.
async fn fake_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, src)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            r.add_queries(q.queries.clone());
            if let Some(edns) = q.edns.clone() {
                r.set_edns(edns);
            }
            match q.queries.first() {
                Some(query)
                    if query.name().to_lowercase().to_ascii() == "example.test."
                        && query.query_type() == RecordType::A =>
                {
                    r.add_answer(Record::from_rdata(
                        query.name().clone(),
                        60,
                        RData::A(A("192.0.2.7".parse().unwrap())),
                    ));
                }
                _ => r.metadata.response_code = ResponseCode::NXDomain,
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), src).await;
        }
    });
    (addr, task)
}

#[tokio::test]
async fn forwards_outside_names_to_the_upstream() {
    let (upstream, task) = fake_upstream().await;
    let f = start(vec![upstream], Limits::default()).await;
    for tcp in [false, true] {
        let q = query("example.test.", RecordType::A);
        let r = if tcp { tcp_ask(f.addr, &q).await } else { udp_ask(f.addr, &q).await };
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "tcp={tcp}");
        assert!(r.metadata.recursion_available);
        assert!(!r.metadata.authoritative);
        assert_eq!(ips(&r.answers), vec![ip("192.0.2.7")]);
    }
    let nx = udp_ask(f.addr, &query("missing.test.", RecordType::A)).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    // Our own zone never goes upstream, and says recursion is available.
    let local = udp_ask(f.addr, &query("h1.node.weft.", RecordType::A)).await;
    assert!(local.metadata.recursion_available);
    assert_eq!(ips(&local.answers), vec![ip("192.0.2.1")]);
    assert_eq!(stat(&f.stats, "forwarded"), 3);
    f.server.stop().await;
    task.abort();
}

#[tokio::test]
async fn no_upstreams_means_refused() {
    let f = start(Vec::new(), Limits::default()).await;
    let r = udp_ask(f.addr, &query("example.test.", RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert_eq!(stat(&f.stats, "refused"), 1);
    f.server.stop().await;
}

#[tokio::test]
async fn dead_or_silent_upstream_means_servfail_in_bounded_time() {
    // A closed port (ICMP unreachable) and a socket that never answers.
    let closed = {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.local_addr().unwrap()
    };
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for upstream in [closed, silent.local_addr().unwrap()] {
        let f = start(vec![upstream], Limits::default()).await;
        let began = Instant::now();
        let r = udp_ask(f.addr, &query("example.test.", RecordType::A)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail, "{upstream}");
        assert!(began.elapsed() < Duration::from_millis(3500), "{:?}", began.elapsed());
        assert_eq!(stat(&f.stats, "forward_failed"), 1);
        f.server.stop().await;
    }
}

/// Deterministic junk (xorshift) so failures reproduce.
struct Junk(u64);

impl Junk {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn malformed_datagrams() -> Vec<Vec<u8>> {
    let mut junk = Junk(0x5eed_f00d_dead_beef);
    let mut out = vec![Vec::new()];
    // Header claiming 65535 questions (and all other counts) with nothing behind it.
    out.push(vec![0x12, 0x34, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    // One question whose name is a compression pointer to itself.
    out.push(vec![0x12, 0x35, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1]);
    // Two pointers pointing at each other.
    out.push(vec![0x12, 0x36, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0e, 0xc0, 0x0c, 0, 1, 0, 1]);
    for i in 0..3000 {
        let len = match i % 3 {
            0 => (junk.next() % 12) as usize,
            _ => (junk.next() % 600) as usize,
        };
        let mut d = junk.bytes(len);
        if d.len() > 2 {
            d[2] &= 0x7f; // mostly "queries", so they get past the QR check
        }
        out.push(d);
    }
    out
}

#[tokio::test]
async fn malformed_input_is_counted_and_service_goes_on() {
    let limits = Limits { tcp_idle: Duration::from_millis(300), ..Limits::default() };
    let f = start(Vec::new(), limits).await;
    let junk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (i, d) in malformed_datagrams().iter().enumerate() {
        junk.send_to(d, f.addr).await.unwrap();
        if i % 50 == 0 {
            // Stay under the loopback receive buffer so the server sees them all.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // A TCP client that announces 64 bytes and sends 3, and one that sends nothing.
    let mut stalled = TcpStream::connect(f.addr).await.unwrap();
    stalled.write_all(&[0, 64, 1, 2, 3]).await.unwrap();
    let mut silent = TcpStream::connect(f.addr).await.unwrap();

    let began = Instant::now();
    let q = query("web.service.weft.", RecordType::A);
    assert_eq!(ips(&udp_ask(f.addr, &q).await.answers), vec![ip("10.42.1.5")]);
    assert_eq!(ips(&tcp_ask(f.addr, &q).await.answers), vec![ip("10.42.1.5")]);
    assert!(began.elapsed() < Duration::from_secs(1), "{:?}", began.elapsed());

    // Both stalled connections are closed by the server once idle.
    let mut buf = [0u8; 16];
    for stream in [&mut stalled, &mut silent] {
        let read = timeout(WAIT, stream.read(&mut buf)).await.expect("closed in time");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    let malformed = stat(&f.stats, "malformed");
    assert!(malformed > 2500, "malformed = {malformed}");
    assert_eq!(stat(&f.stats, "answered"), 2);
    f.server.stop().await;
}

#[tokio::test]
async fn tcp_connections_are_capped_and_pipelined_queries_answered() {
    let limits = Limits { tcp_connections: 2, ..Limits::default() };
    let f = start(Vec::new(), limits).await;
    let mut first = TcpStream::connect(f.addr).await.unwrap();
    let mut second = TcpStream::connect(f.addr).await.unwrap();
    for _ in 0..3 {
        let q = query("h1.node.weft.", RecordType::A);
        assert_eq!(ips(&tcp_ask_on(&mut first, &q).await.answers), vec![ip("192.0.2.1")]);
    }
    let q = query("h1.node.weft.", RecordType::AAAA);
    assert_eq!(ips(&tcp_ask_on(&mut second, &q).await.answers), vec![ip("2001:db8::1")]);
    // A third connection is closed at once.
    let mut third = TcpStream::connect(f.addr).await.unwrap();
    let mut buf = [0u8; 4];
    let read = timeout(WAIT, third.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    f.server.stop().await;
}

#[tokio::test]
async fn stop_unbinds_so_the_same_address_can_be_served_again() {
    let f = start(Vec::new(), Limits::default()).await;
    let addr = f.addr;
    // An open client connection must not keep the port.
    let _client = TcpStream::connect(addr).await.unwrap();
    f.server.stop().await;
    let settings = DnsSettings { domain: "weft".into(), ttl: 5, upstreams: Vec::new(), listen: vec![addr] };
    let directory = Arc::new(ArcSwap::from_pointee(directory()));
    let again = DnsServer::start(settings.clone(), directory.clone(), Arc::default()).await.unwrap();
    assert_eq!(again.local_addrs(), vec![addr]);
    let r = udp_ask(addr, &query("h1.node.weft.", RecordType::A)).await;
    assert_eq!(r.answers[0].ttl, 5);

    // While it runs, a second server on the same address fails and names it.
    let err = DnsServer::start(settings, directory, Arc::default()).await.err().expect("address in use");
    assert!(format!("{err:#}").contains(&addr.to_string()), "{err:#}");
    again.stop().await;
}

#[tokio::test]
async fn bad_domains_are_rejected() {
    for domain in ["", ".", "a..b"] {
        let settings = DnsSettings {
            domain: domain.into(),
            ttl: 5,
            upstreams: Vec::new(),
            listen: vec!["127.0.0.1:0".parse().unwrap()],
        };
        let directory = Arc::new(ArcSwap::from_pointee(Directory::default()));
        assert!(DnsServer::start(settings, directory, Arc::default()).await.is_err(), "{domain:?}");
    }
}

#[tokio::test]
async fn odd_requests_get_error_codes_not_silence() {
    let (upstream, task) = fake_upstream().await;
    let f = start(vec![upstream], Limits::default()).await;

    let mut notify = query("weft.", RecordType::SOA);
    notify.metadata.op_code = OpCode::Notify;
    let r = udp_ask(f.addr, &notify).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);

    let mut future_edns = query("h1.node.weft.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    future_edns.set_edns(edns);
    let r = udp_ask(f.addr, &future_edns).await;
    // 16 is both BADVERS and BADSIG; hickory decodes it as the latter.
    assert_eq!(u16::from(r.metadata.response_code), u16::from(ResponseCode::BADVERS));

    let mut no_recursion = query("example.test.", RecordType::A);
    no_recursion.metadata.recursion_desired = false;
    let r = udp_ask(f.addr, &no_recursion).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert_eq!(stat(&f.stats, "refused"), 3);
    assert_eq!(stat(&f.stats, "forwarded"), 0);

    let mut two = query("h1.node.weft.", RecordType::A);
    two.add_query(Query::query(Name::from_ascii("weft.").unwrap(), RecordType::SOA));
    let r = udp_ask(f.addr, &two).await;
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(stat(&f.stats, "malformed"), 1);
    f.server.stop().await;
    task.abort();
}

#[tokio::test]
async fn big_udp_answers_are_truncated_and_complete_over_tcp() {
    let f = start(Vec::new(), Limits::default()).await;
    let many: Vec<Instance> =
        (1..=100).map(|i| instance(&format!("10.42.0.{i}"), 80, Protocol::Tcp, "h1.node", true)).collect();
    let mut dir = directory();
    dir.services.insert("big".into(), many);
    f.directory.store(Arc::new(dir));

    let q = query("big.service.weft.", RecordType::A);
    let udp = udp_ask(f.addr, &q).await;
    assert!(udp.metadata.truncation);
    assert!(udp.answers.len() < 100);
    let tcp = tcp_ask(f.addr, &q).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 100);

    let mut with_edns = query("big.service.weft.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    with_edns.set_edns(edns);
    let big = udp_ask(f.addr, &with_edns).await;
    assert!(!big.metadata.truncation);
    assert_eq!(big.answers.len(), 100);
    f.server.stop().await;
}
