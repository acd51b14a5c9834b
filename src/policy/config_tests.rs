use super::*;

const GOOD: &str = r#"
inbound = "deny"
outbound = "allow"
conntrack_max = 1024

[[rule]]
direction = "in"
action = "allow"
proto = "tcp"
port = 5432
from = { labels = { app = "web" } }
to = { labels = { app = "db" } }
name = "web-to-db"

[[rule]]
direction = "in"
action = "allow"
proto = "udp"
port = "8000-8100"
from = { cidr = ["10.42.0.0/16", "fd00::/8"], groups = ["b", "a", "a"] }

[[rule]]
direction = "out"
action = "deny"
to = "any"
from = { node = "h1" }
"#;

fn parse(text: &str) -> Result<Policy, PolicyError> {
    let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError {
        span: e.span(),
        key: "(syntax)".into(),
        message: e.message().to_owned(),
    })?;
    validate(&file)
}

/// The error for `GOOD` with `from` replaced by `to`, and the text at its span.
fn error(from: &str, to: &str) -> (PolicyError, String) {
    let text = GOOD.replacen(from, to, 1);
    assert_ne!(text, GOOD, "{from:?} not in GOOD");
    let e = parse(&text).expect_err("should be rejected");
    let at = e.span.clone().map(|s| text[s].to_owned()).unwrap_or_default();
    (e, at)
}

#[test]
fn good_policy_is_typed_and_normalised() {
    let p = parse(GOOD).unwrap();
    assert_eq!(p.default_verdict(Direction::In), Verdict::Deny);
    assert_eq!(p.default_verdict(Direction::Out), Verdict::Allow);
    assert_eq!((p.conntrack_max(), p.conntrack_per_peer()), (1024, 256));
    let r = p.rules();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].name, "web-to-db");
    assert_eq!(r[0].ports, Some(PortRange { lo: 5432, hi: 5432 }));
    assert_eq!(r[1].name, "rule[1]");
    assert_eq!(r[1].ports, Some(PortRange { lo: 8000, hi: 8100 }));
    let Selector::Match(m) = &r[1].from else { panic!("from is a match") };
    assert_eq!(m.groups, ["a", "b"]);
    assert_eq!(m.cidrs.len(), 2);
    assert_eq!(r[1].to, Selector::Any);
    assert_eq!((r[2].direction, r[2].action, r[2].proto), (Direction::Out, Verdict::Deny, Proto::Any));
    assert_eq!(r[0].to_string(), "in allow tcp port 5432 from {labels={app=web}} to {labels={app=db}}");
    assert_eq!(r[2].to_string(), "out deny any from {node=h1} to any");
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains("\"web-to-db\""), "{json}");
}

#[test]
fn empty_policy_allows_everything() {
    let p = parse("").unwrap();
    assert_eq!(p, Policy::default());
    assert_eq!(p.conntrack_per_peer(), DEFAULT_CONNTRACK_MAX / 4);
}

#[test]
fn each_rejection_names_its_key() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("port = 5432", "port = 0", "rule[0].port", "0"),
        ("port = 5432", "port = 70000", "rule[0].port", "70000"),
        ("port = 5432", "port = -1", "rule[0].port", "-1"),
        ("\"8000-8100\"", "\"8100-8000\"", "rule[1].port", "\"8100-8000\""),
        ("\"8000-8100\"", "\"80-x\"", "rule[1].port", "\"80-x\""),
        ("proto = \"tcp\"", "proto = \"icmp\"", "rule[0].port", "5432"),
        ("proto = \"tcp\"\n", "", "rule[0].port", "5432"),
        ("proto = \"udp\"", "proto = \"sctp\"", "rule[1].proto", "\"sctp\""),
        ("direction = \"in\"", "direction = \"inbound\"", "rule[0].direction", "\"inbound\""),
        ("action = \"allow\"", "action = \"accept\"", "rule[0].action", "\"accept\""),
        ("inbound = \"deny\"", "inbound = \"drop\"", "inbound", "\"drop\""),
        ("outbound = \"allow\"", "outbound = \"yes\"", "outbound", "\"yes\""),
        ("\"10.42.0.0/16\"", "\"10.42.0.1/16\"", "rule[1].from.cidr[0]", ""),
        ("\"fd00::/8\"", "\"fd00::/129\"", "rule[1].from.cidr[1]", ""),
        ("from = { node = \"h1\" }", "from = {}", "rule[2].from", "{}"),
        ("to = \"any\"", "to = \"all\"", "rule[2].to", "\"all\""),
        ("{ node = \"h1\" }", "{ node = \"\" }", "rule[2].from.node", "\"\""),
        ("groups = [\"b\", \"a\", \"a\"]", "groups = []", "rule[1].from.groups", "[]"),
        ("cidr = [\"10.42.0.0/16\", \"fd00::/8\"]", "cidr = []", "rule[1].from.cidr", "[]"),
        ("{ app = \"db\" }", "{}", "rule[0].to.labels", "{}"),
        ("conntrack_max = 1024", "conntrack_max = 63", "conntrack_max", "63"),
        ("conntrack_max = 1024", "conntrack_max = 4194305", "conntrack_max", "4194305"),
        (
            "conntrack_max = 1024",
            "conntrack_max = 1024\nconntrack_per_peer = 1025",
            "conntrack_per_peer",
            "1025",
        ),
        ("conntrack_max = 1024", "conntrack_max = 1024\nconntrack_per_peer = 0", "conntrack_per_peer", "0"),
        ("name = \"web-to-db\"", "name = \"rule[1]\"", "rule[1].name", ""),
        ("name = \"web-to-db\"", "name = \"\"", "rule[0].name", "\"\""),
    ];
    for (from, to, key, at) in cases {
        let (e, span_text) = error(from, to);
        assert_eq!(e.key, *key, "{from:?} -> {to:?}: {e}");
        if !at.is_empty() {
            assert_eq!(span_text, *at, "{from:?} -> {to:?}: {e}");
        }
        assert!(e.span.is_some(), "{e}");
    }
}

#[test]
fn messages_name_the_valid_values() {
    let (e, _) = error("proto = \"udp\"", "proto = \"sctp\"");
    assert!(e.message.contains("\"tcp\", \"udp\", \"icmp\" or \"any\""), "{e}");
    let (e, _) = error("direction = \"in\"", "direction = \"up\"");
    assert!(e.message.contains("\"in\" or \"out\""), "{e}");
    let (e, _) = error("action = \"allow\"", "action = \"ok\"");
    assert!(e.message.contains("\"allow\" or \"deny\""), "{e}");
    let (e, _) = error("from = { node = \"h1\" }", "from = {}");
    assert!(e.message.contains("use \"any\""), "{e}");
    let (e, _) = error("\"10.42.0.0/16\"", "\"10.42.0.1/16\"");
    assert!(e.message.contains("10.42.0.0/16"), "suggests the network: {e}");
}

#[test]
fn long_labels_are_rejected() {
    let long = "x".repeat(MAX_LABEL_LEN + 1);
    let (e, _) = error("app = \"web\"", &format!("app = \"{long}\""));
    assert_eq!(e.key, "rule[0].from.labels.app");
    let (e, _) = error("app = \"web\"", &format!("{long} = \"web\""));
    assert_eq!(e.key, format!("rule[0].from.labels.{long}"));
    let ok = "y".repeat(MAX_LABEL_LEN);
    parse(&GOOD.replacen("app = \"web\"", &format!("app = \"{ok}\""), 1)).unwrap();
}

#[test]
fn single_cidr_string_and_bare_address_are_accepted() {
    let p =
        parse(&GOOD.replacen("cidr = [\"10.42.0.0/16\", \"fd00::/8\"]", "cidr = \"10.42.0.7\"", 1)).unwrap();
    let Selector::Match(m) = &p.rules()[1].from else { panic!("from is a match") };
    assert_eq!(m.cidrs, ["10.42.0.7/32".parse::<IpNet>().unwrap()]);
    let (e, _) = error("cidr = [\"10.42.0.0/16\", \"fd00::/8\"]", "cidr = \"10.42.0.1/16\"");
    assert_eq!(e.key, "rule[1].from.cidr");
}

#[test]
fn unknown_keys_are_syntax_errors_with_a_span() {
    let text = GOOD.replacen("name = \"web-to-db\"", "name = \"web-to-db\"\ncolour = 1", 1);
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains("colour"), "{e}");
    assert!(e.span.is_some());
    let e = parse(&GOOD.replacen("{ node = \"h1\" }", "{ nodes = \"h1\" }", 1)).unwrap_err();
    assert!(e.message.contains("nodes"), "{e}");
    let e = parse(&GOOD.replacen("port = 5432", "port = true", 1)).unwrap_err();
    assert!(e.message.contains("lo-hi"), "{e}");
}

#[test]
fn too_many_rules() {
    let rule = "[[rule]]\ndirection = \"in\"\naction = \"allow\"\n";
    let ok = rule.repeat(MAX_RULES);
    assert_eq!(parse(&ok).unwrap().rules().len(), MAX_RULES);
    let e = parse(&rule.repeat(MAX_RULES + 1)).unwrap_err();
    assert_eq!(e.key, format!("rule[{MAX_RULES}]"));
}

#[test]
fn too_many_distinct_selectors() {
    let rule = |i: usize| {
        format!("[[rule]]\ndirection = \"in\"\naction = \"allow\"\nfrom = {{ node = \"n{i}\" }}\n")
    };
    // Shared selectors count once.
    let dup: String = (0..MAX_SELECTORS).chain(0..MAX_SELECTORS).map(rule).collect();
    parse(&dup).unwrap();
    let text: String = (0..=MAX_SELECTORS).map(rule).collect();
    let e = parse(&text).unwrap_err();
    assert_eq!(e.key, format!("rule[{MAX_SELECTORS}].from"));
}

#[test]
fn direction_and_verdict_words_are_their_json() {
    for d in [Direction::In, Direction::Out] {
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{}\"", d.as_str()));
    }
    for v in [Verdict::Allow, Verdict::Deny] {
        assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{}\"", v.as_str()));
    }
}
