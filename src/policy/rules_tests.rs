use super::*;
use crate::policy::config::{validate, PolicyFile, PortRange};
use ipnet::IpNet;
use proptest::prelude::*;

fn compile(text: &str) -> Compiled {
    let file: PolicyFile = toml::from_str(text).expect("TOML");
    Compiled::new(validate(&file).expect("valid"))
}

fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const RULES: &str = r#"
inbound = "deny"

[[rule]]
direction = "in"
action = "allow"
name = "anything-from-web"
from = { labels = { app = "web" } }

[[rule]]
direction = "in"
action = "deny"
proto = "tcp"
port = 5432
name = "no-db-from-web"
from = { labels = { app = "web" } }
to = { labels = { app = "db" } }

[[rule]]
direction = "in"
action = "allow"
proto = "udp"
port = "8000-8100"
name = "media"
from = { cidr = ["10.99.0.0/16", "fd99::/16"] }

[[rule]]
direction = "in"
action = "allow"
proto = "icmp"
name = "ping-from-ops"
from = { groups = ["ops", "admin"], node = "bastion" }

[[rule]]
direction = "out"
action = "deny"
proto = "tcp"
port = 25
name = "no-smtp-out"
from = { labels = { app = "web" } }
"#;

struct World {
    c: Compiled,
    web: Mask,
    db: Mask,
    nothing: Mask,
}

fn world() -> World {
    let c = compile(RULES);
    let (web_l, db_l) = (labels(&[("app", "web")]), labels(&[("app", "db")]));
    let web =
        c.mask(&Identity { ip: Some(ip("10.42.0.2")), node: Some("h2"), groups: &[], labels: Some(&web_l) });
    let db =
        c.mask(&Identity { ip: Some(ip("10.42.0.3")), node: Some("h1"), groups: &[], labels: Some(&db_l) });
    World { c, web, db, nothing: Mask::EMPTY }
}

const TCP: u8 = IPPROTO_TCP;
const UDP: u8 = IPPROTO_UDP;

#[test]
fn deny_wins_over_a_broader_earlier_allow() {
    let w = world();
    let d = w.c.decide(Direction::In, TCP, Some(5432), w.web, w.db);
    assert_eq!(d, Decision { verdict: Verdict::Deny, by: Decider::Rule(1) });
    // Another port, or another local container: the broad allow applies.
    let d = w.c.decide(Direction::In, TCP, Some(5433), w.web, w.db);
    assert_eq!(d, Decision { verdict: Verdict::Allow, by: Decider::Rule(0) });
    let d = w.c.decide(Direction::In, TCP, Some(5432), w.web, w.web);
    assert_eq!(d.by, Decider::Rule(0));
}

#[test]
fn defaults_per_direction() {
    let w = world();
    let d = w.c.decide(Direction::In, TCP, Some(80), w.nothing, w.db);
    assert_eq!(d, Decision { verdict: Verdict::Deny, by: Decider::Default(Direction::In) });
    let d = w.c.decide(Direction::Out, TCP, Some(80), w.nothing, w.db);
    assert_eq!(d, Decision { verdict: Verdict::Allow, by: Decider::Default(Direction::Out) });
}

#[test]
fn port_ranges_and_protocols() {
    let w = world();
    let media = w.c.mask_ip_only(ip("10.99.1.1"));
    for (proto, port, allowed) in [
        (UDP, Some(8000), true),
        (UDP, Some(8100), true),
        (UDP, Some(8050), true),
        (UDP, Some(7999), false),
        (UDP, Some(8101), false),
        (TCP, Some(8050), false),
        (UDP, None, false),
    ] {
        let d = w.c.decide(Direction::In, proto, port, media, w.db);
        assert_eq!(d.verdict == Verdict::Allow, allowed, "{proto} {port:?}: {d:?}");
    }
    // "any" without a port matches every protocol, ports or not.
    for proto in [TCP, UDP, IPPROTO_ICMP, 47] {
        let d = w.c.decide(Direction::In, proto, None, w.web, w.nothing);
        assert_eq!(d.by, Decider::Rule(0), "proto {proto}");
    }
}

#[test]
fn cidr_lists_match_any_of_them() {
    let w = world();
    for (addr, inside) in [("10.99.0.1", true), ("fd99::1", true), ("10.98.0.1", false), ("fd98::1", false)] {
        let d = w.c.decide(Direction::In, UDP, Some(8000), w.c.mask_ip_only(ip(addr)), w.db);
        assert_eq!(d.by == Decider::Rule(2), inside, "{addr}");
    }
}

#[test]
fn selector_parts_are_anded_groups_all_present() {
    let w = world();
    let ping = |node: Option<&str>, groups: &[String]| {
        let m = w.c.mask(&Identity { ip: None, node, groups, labels: None });
        w.c.decide(Direction::In, IPPROTO_ICMPV6, None, m, w.db).verdict
    };
    let both = ["admin".to_string(), "ops".to_string(), "extra".to_string()];
    let one = ["ops".to_string()];
    assert_eq!(ping(Some("bastion"), &both), Verdict::Allow);
    assert_eq!(ping(Some("bastion"), &one), Verdict::Deny, "all groups must be present");
    assert_eq!(ping(Some("h1"), &both), Verdict::Deny, "node must match too");
    assert_eq!(ping(None, &both), Verdict::Deny);
}

#[test]
fn labels_must_all_be_equal() {
    let c = compile(
        r#"
inbound = "deny"
[[rule]]
direction = "in"
action = "allow"
to = { labels = { app = "db", tier = "prod" } }
"#,
    );
    let m = |l: &BTreeMap<String, String>| c.mask(&Identity { labels: Some(l), ..Identity::default() });
    let allow = |local: Mask| c.decide(Direction::In, TCP, Some(1), Mask::EMPTY, local).verdict;
    assert_eq!(allow(m(&labels(&[("app", "db"), ("tier", "prod"), ("x", "y")]))), Verdict::Allow);
    assert_eq!(allow(m(&labels(&[("app", "db"), ("tier", "dev")]))), Verdict::Deny);
    assert_eq!(allow(m(&labels(&[("app", "db")]))), Verdict::Deny);
    assert_eq!(allow(c.mask(&Identity::default())), Verdict::Deny);
}

#[test]
fn out_rules_select_the_local_container_with_from() {
    let w = world();
    let d = w.c.decide(Direction::Out, TCP, Some(25), w.nothing, w.web);
    assert_eq!(d, Decision { verdict: Verdict::Deny, by: Decider::Rule(4) });
    let d = w.c.decide(Direction::Out, TCP, Some(25), w.web, w.db);
    assert_eq!(d.by, Decider::Default(Direction::Out), "from is the local side for out rules");
}

#[test]
fn masks_share_bits_between_equal_selectors() {
    let w = world();
    // web selector (used twice), db, cidr list, groups+node: four bits.
    assert_eq!(w.c.selector_count(), 4);
    assert_eq!(w.web.0.iter().map(|x| x.count_ones()).sum::<u32>(), 1);
    assert_eq!(w.c.mask_ip_only(ip("10.99.0.1")), w.c.mask(&Identity::ip_only(ip("10.99.0.1"))));
    assert_eq!(w.c.mask_ip_only(ip("10.42.0.2")), Mask::EMPTY, "labels need a known container");
}

#[test]
fn triviality() {
    assert!(compile("").is_trivial());
    assert!(!compile("inbound = \"deny\"").is_trivial());
    assert!(!compile("[[rule]]\ndirection = \"in\"\naction = \"allow\"").is_trivial());
    assert!(!world().c.is_trivial());
}

#[test]
fn counters_by_rule_and_default() {
    let w = world();
    for _ in 0..3 {
        let d = w.c.decide(Direction::In, TCP, Some(5432), w.web, w.db);
        w.c.count(&d);
    }
    w.c.count(&w.c.decide(Direction::Out, TCP, Some(80), w.nothing, w.nothing));
    let hits = w.c.hits();
    assert_eq!(hits.len(), 7);
    assert_eq!(
        hits[1],
        Hits { name: "no-db-from-web", direction: Direction::In, verdict: Verdict::Deny, hits: 3 }
    );
    assert_eq!(hits[0].hits, 0);
    assert_eq!(
        hits[6],
        Hits { name: "default-out", direction: Direction::Out, verdict: Verdict::Allow, hits: 1 }
    );
    assert_eq!((hits[5].name, hits[5].verdict, hits[5].hits), ("default-in", Verdict::Deny, 0));
}

#[test]
fn explain_says_why_each_rule_did_not_match() {
    let w = world();
    let (web_l, db_l) = (labels(&[("app", "web")]), labels(&[("app", "db")]));
    let web = Identity { ip: Some(ip("10.42.0.2")), node: Some("h2"), groups: &[], labels: Some(&web_l) };
    let db = Identity { ip: Some(ip("10.42.0.3")), node: Some("h1"), groups: &[], labels: Some(&db_l) };
    let e = w.c.explain(Direction::In, TCP, Some(5432), &web, &db);
    assert_eq!(e.decision, Decision { verdict: Verdict::Deny, by: Decider::Rule(1) });
    assert_eq!(e.name, "no-db-from-web");
    assert_eq!(e.text, "in deny tcp port 5432 from {labels={app=web}} to {labels={app=db}}");
    let why: Vec<_> = e.rules.iter().map(|r| (r.matched, r.mismatches.clone())).collect();
    assert_eq!(
        why,
        [
            (true, vec![]),
            (true, vec![]),
            (false, vec![Mismatch::Proto, Mismatch::Port, Mismatch::From]),
            (false, vec![Mismatch::Proto, Mismatch::From]),
            (false, vec![Mismatch::Direction, Mismatch::Port]),
        ]
    );
    let e = w.c.explain(Direction::In, TCP, Some(80), &db, &web);
    assert_eq!((e.name.as_str(), e.text.as_str()), ("default-in", "default in deny"));
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["decision"]["by"]["default"], "in");
    assert_eq!(json["rules"][2]["mismatches"][0], "proto");
}

// --- property: explain (direct evaluation) agrees with decide (masks and compact lists) ---

fn arb_match() -> impl Strategy<Value = Match> {
    let groups = proptest::sample::subsequence(vec!["a", "b", "c"], 0..=2);
    let labels = proptest::option::of((prop::sample::select(vec!["web", "db"]), any::<bool>()));
    let cidrs = proptest::sample::subsequence(vec!["10.42.0.0/16", "10.42.1.0/24", "fd00::/8"], 0..=2);
    let node = proptest::option::of(prop::sample::select(vec!["h1", "h2"]));
    (groups, labels, cidrs, node).prop_filter_map("empty selector", |(g, l, c, n)| {
        let mut m = Match {
            groups: g.iter().map(|s| s.to_string()).collect(),
            labels: BTreeMap::new(),
            cidrs: c.iter().map(|s| s.parse::<IpNet>().unwrap()).collect(),
            node: n.map(str::to_string),
        };
        if let Some((app, tier)) = l {
            m.labels.insert("app".into(), app.into());
            if tier {
                m.labels.insert("tier".into(), "prod".into());
            }
        }
        let empty = m.groups.is_empty() && m.labels.is_empty() && m.cidrs.is_empty() && m.node.is_none();
        (!empty).then_some(m)
    })
}

fn arb_selector() -> impl Strategy<Value = Selector> {
    prop_oneof![Just(Selector::Any), arb_match().prop_map(Selector::Match)]
}

fn arb_rule() -> impl Strategy<Value = Rule> {
    let dir = prop_oneof![Just(Direction::In), Just(Direction::Out)];
    let action = prop_oneof![Just(Verdict::Allow), Just(Verdict::Deny)];
    let proto = prop_oneof![Just(Proto::Any), Just(Proto::Tcp), Just(Proto::Udp), Just(Proto::Icmp)];
    let ports = proptest::option::of((1u16..100, 0u16..20));
    (dir, action, proto, ports, arb_selector(), arb_selector()).prop_map(
        |(direction, action, proto, p, from, to)| {
            let ports =
                p.filter(|_| proto.has_ports()).map(|(lo, w)| PortRange { lo, hi: lo.saturating_add(w) });
            Rule { name: String::new(), direction, action, proto, ports, from, to }
        },
    )
}

#[derive(Debug, Clone)]
struct Who {
    ip: Option<IpAddr>,
    node: Option<&'static str>,
    groups: Vec<String>,
    labels: Option<BTreeMap<String, String>>,
}

impl Who {
    fn identity(&self) -> Identity<'_> {
        Identity { ip: self.ip, node: self.node, groups: &self.groups, labels: self.labels.as_ref() }
    }
}

fn arb_who() -> impl Strategy<Value = Who> {
    let ip =
        proptest::option::of(prop::sample::select(vec!["10.42.0.5", "10.42.1.5", "10.43.0.1", "fd00::5"]));
    let node = proptest::option::of(prop::sample::select(vec!["h1", "h2", "h3"]));
    let groups = proptest::sample::subsequence(vec!["a", "b", "c"], 0..=3);
    let labels = proptest::option::of((prop::sample::select(vec!["web", "db", "cache"]), any::<bool>()));
    (ip, node, groups, labels).prop_map(|(ip, node, groups, labels)| Who {
        ip: ip.map(|s| s.parse().unwrap()),
        node,
        groups: groups.iter().map(|s| s.to_string()).collect(),
        labels: labels.map(|(app, tier)| {
            let mut l = BTreeMap::from([("app".to_string(), app.to_string())]);
            if tier {
                l.insert("tier".into(), "prod".into());
            }
            l
        }),
    })
}

proptest! {
    #[test]
    fn explain_agrees_with_decide(
        rules in proptest::collection::vec(arb_rule(), 0..12),
        defaults in (any::<bool>(), any::<bool>()),
        dir in prop_oneof![Just(Direction::In), Just(Direction::Out)],
        proto in prop::sample::select(vec![IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6, 47]),
        port in proptest::option::of(1u16..130),
        remote in arb_who(),
        local in arb_who(),
    ) {
        let verdict = |deny: bool| if deny { Verdict::Deny } else { Verdict::Allow };
        let mut policy = Policy { inbound: verdict(defaults.0), outbound: verdict(defaults.1), ..Policy::default() };
        policy.rules = rules.into_iter().enumerate().map(|(i, mut r)| { r.name = format!("r{i}"); r }).collect();
        let c = Compiled::new(policy);
        let (r, l) = (remote.identity(), local.identity());
        let e = c.explain(dir, proto, port, &r, &l);
        let d = c.decide(dir, proto, port, c.mask(&r), c.mask(&l));
        prop_assert_eq!(e.decision, d);
        if let Decider::Rule(i) = d.by {
            prop_assert!(e.rules[i].matched);
            prop_assert_eq!(c.policy().rules()[i].action, d.verdict);
        }
        if let Some(ip) = r.ip {
            let ip_only = c.mask_ip_only(ip);
            let full = c.mask(&r);
            for b in 0..=u8::MAX {
                prop_assert!(!ip_only.contains(b) || full.contains(b), "ip-only bits are a subset");
            }
        }
    }
}

#[test]
fn compiled_is_shared_across_workers() {
    fn shared<T: Send + Sync>() {}
    shared::<Compiled>();
    let c = std::sync::Arc::new(world().c);
    let t = {
        let c = std::sync::Arc::clone(&c);
        std::thread::spawn(move || c.count(&c.decide(Direction::In, TCP, Some(1), Mask::EMPTY, Mask::EMPTY)))
    };
    t.join().unwrap();
    assert_eq!(c.hits()[5].hits, 1);
}
