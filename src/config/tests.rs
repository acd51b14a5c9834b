use super::*;

pub(super) const GOOD: &str = r#"
[node]
name = "h1"
key = "h1.key"
cert = "/etc/weft/h1.crt"
ca = "ca.crt"

[underlay]
listen = "10.200.0.1:51820"

[[network]]
name = "default"
vni = 42
subnet = "10.42.0.0/16"

[[peer]]
endpoint = "10.200.0.2:51820"
"#;

pub(super) fn parse(t: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/weft/node.toml"), t)
}

#[test]
fn good_config_with_defaults() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.node.key, PathBuf::from("/etc/weft/h1.key"));
    assert_eq!(c.node.cert, PathBuf::from("/etc/weft/h1.crt"));
    assert_eq!(c.networks[0].mtu, 1422);
    assert_eq!(c.networks[0].encryption, Encryption::ChaCha20Poly1305);
    assert_eq!(c.networks[0].bridge(), "weft-default");
    assert_eq!(c.peers, vec!["10.200.0.2:51820".parse().unwrap()]);
    assert_eq!(c.node.control_socket, PathBuf::from("/run/weft/weft.sock"));
    assert!(c.underlay.offload);
    assert!(c.underlay.busy_poll.is_zero());
    assert_eq!(c.underlay.worker_nice, -10);
}

#[test]
fn worker_nice_is_a_nice_value() {
    let c = parse(&GOOD.replace("[underlay]", "[underlay]\nworker_nice = 0")).unwrap();
    assert_eq!(c.underlay.worker_nice, 0);
    let c = parse(&GOOD.replace("[underlay]", "[underlay]\nworker_nice = -20")).unwrap();
    assert_eq!(c.underlay.worker_nice, -20);
    for bad in ["-21", "20", "100"] {
        let e = parse(&GOOD.replace("[underlay]", &format!("[underlay]\nworker_nice = {bad}"))).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("underlay.worker_nice", Some(9)), "{e}");
        assert!(e.message.contains("-20..=19"), "{e}");
    }
}

#[test]
fn offload_and_busy_poll() {
    let c = parse(&GOOD.replace("[underlay]", "[underlay]\noffload = false\nbusy_poll_us = 100")).unwrap();
    assert!(!c.underlay.offload);
    assert_eq!(c.underlay.busy_poll, std::time::Duration::from_micros(100));
    let e = parse(&GOOD.replace("[underlay]", "[underlay]\nbusy_poll_us = 20000")).unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("underlay.busy_poll_us", Some(9)));
    assert!(e.message.contains("0..=10000"), "{e}");
}

#[test]
fn errors_name_key_and_line() {
    let e = parse(&GOOD.replace("vni = 42", "vni = 0")).unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("network[0].vni", Some(13)));
    let e = parse(&GOOD.replace("10.42.0.0/16", "10.42.0.1/16")).unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("network[0].subnet", Some(14)));
    let e = parse(&GOOD.replace("name = \"default\"", "name = \"much-too-long\"")).unwrap_err();
    assert_eq!(e.key, "network[0].name");
    let e = parse(&GOOD.replace("10.200.0.2:51820", "somewhere")).unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("peer[0].endpoint", Some(17)));
    let e = parse(&GOOD.replace("subnet = \"10.42.0.0/16\"", "subnet = \"10.42.0.0/16\"\nmtu = 1480"))
        .unwrap_err();
    assert!(e.message.contains("576..=1422"), "{e}");
    let e =
        parse(&GOOD.replace("subnet = \"10.42.0.0/16\"", "subnet = \"10.42.0.0/16\"\nencryption = \"aes\""))
            .unwrap_err();
    assert_eq!(e.key, "network[0].encryption");
}

#[test]
fn unknown_missing_and_mistyped_keys_are_named_with_their_line() {
    // GOOD's last line is the peer's endpoint (17); `bogus` lands on 19, in that [[peer]].
    let e = parse(&format!("{GOOD}\nbogus = 1\n")).unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("peer[0].bogus", Some(19)), "{e}");
    let e = parse(&format!("bogus = 1\n{GOOD}")).unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("bogus", Some(1)), "{e}");
    assert!(e.message.contains("unknown field `bogus`"), "{e}");
    let e = parse(&GOOD.replace("[underlay]", "[underlay]\ncolour = \"red\"")).unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("underlay.colour", Some(9)), "{e}");
    assert!(
        e.to_string().starts_with("/etc/weft/node.toml:9: underlay.colour: unknown field `colour`"),
        "{e}"
    );
    let e = parse(&GOOD.replace("subnet = \"10.42.0.0/16\"", "subnet = \"10.42.0.0/16\"\nmtu = \"big\""))
        .unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("network[0].mtu", Some(15)), "{e}");
    let e = parse(&GOOD.replace("key = \"h1.key\"\n", "")).unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("node.key", Some(2)), "{e}");
    let e = parse(
        &GOOD.replace("subnet = \"10.42.0.0/16\"", "subnet = \"10.42.0.0/16\"\n[network.policy]\nfrom = 1"),
    )
    .unwrap_err();
    assert_eq!(e.key, "network[0].policy.from", "{e}");
    // Text that is not TOML at all keeps the parser's own message.
    let e = parse("[node\n").unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("(syntax)", Some(1)), "{e}");
}

#[test]
fn log_level_is_a_level_or_directives() {
    let with = |l: &str| GOOD.replace("ca = \"ca.crt\"", &format!("ca = \"ca.crt\"\nlog_level = \"{l}\""));
    for ok in ["debug", "info,weft::membership=trace", "off"] {
        assert_eq!(parse(&with(ok)).unwrap().node.log_level, ok);
    }
    assert_eq!(parse(GOOD).unwrap().node.log_level, "info");
    for bad in ["warning", "verbose", "info,weft=loud"] {
        let e = parse(&with(bad)).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("node.log_level", Some(7)), "{bad}: {e}");
        assert!(e.message.contains("is not a log level"), "{e}");
    }
}

#[test]
fn listen_port_zero_is_refused() {
    let e = parse(&GOOD.replace("10.200.0.1:51820", "0.0.0.0:0")).unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("underlay.listen", Some(9)), "{e}");
    assert!(e.message.contains("port 0"), "{e}");
}

#[test]
fn seeds_and_peers_must_be_dialable() {
    let e = parse(&format!("{GOOD}\n[membership]\nseeds = [\"0.0.0.0:51820\"]\n")).unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("membership.seeds[0]", Some(20)), "{e}");
    let e = parse(&GOOD.replace("10.200.0.2:51820", "10.200.0.2:0")).unwrap_err();
    assert_eq!(e.key, "peer[0].endpoint", "{e}");
}

#[test]
fn advertise_default_is_listen_ip_when_specified() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.underlay.advertise, "10.200.0.1:51820".parse().unwrap());
    assert_eq!(c.underlay.advertise_from, AdvertiseFrom::Listen);
    // Nothing to resolve: the host is not asked.
    let mut c = c;
    c.resolve_advertise(&NoHost).unwrap();
    assert_eq!(c.underlay.advertise_from, AdvertiseFrom::Listen);
}

#[test]
fn advertise_set_explicitly_must_be_dialable() {
    let with = |a: &str| {
        GOOD.replace(
            "listen = \"10.200.0.1:51820\"",
            &format!("listen = \"0.0.0.0:51820\"\nadvertise = \"{a}\""),
        )
    };
    let c = parse(&with("192.0.2.1:4000")).unwrap();
    assert_eq!(c.underlay.advertise, "192.0.2.1:4000".parse().unwrap());
    assert_eq!(c.underlay.advertise_from, AdvertiseFrom::Configured);
    for (bad, says) in [
        ("0.0.0.0:51820", "0.0.0.0 is not an address"),
        ("[::]:51820", ":: is not an address"),
        ("192.0.2.1:0", "port 0"),
    ] {
        let e = parse(&with(bad)).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("underlay.advertise", Some(10)), "{bad}: {e}");
        assert!(e.message.contains(says), "{bad}: {e}");
    }
}

/// A host with no routes and no addresses.
struct NoHost;

impl HostAddrs for NoHost {
    fn route_source(&self, _to: SocketAddr) -> Option<std::net::IpAddr> {
        None
    }
    fn addresses(&self) -> Vec<(String, std::net::IpAddr)> {
        Vec::new()
    }
}

#[test]
fn advertise_default_on_unspecified_listen_follows_the_route_to_the_first_seed() {
    let t = GOOD.replace("10.200.0.1:51820", "0.0.0.0:51820").replace("10.200.0.2:51820", "127.0.0.1:51820");
    let mut c = parse(&format!("{t}\n[membership]\nseeds = [\"127.0.0.1:4000\"]\n")).unwrap();
    assert_eq!(c.underlay.advertise_from, AdvertiseFrom::Unresolved, "parsing reads no host state");
    c.resolve_advertise(&System).unwrap();
    assert_eq!(c.underlay.advertise, "127.0.0.1:51820".parse().unwrap());
    assert_eq!(c.underlay.advertise_from, AdvertiseFrom::RouteTo("127.0.0.1:4000".parse().unwrap()));
    // Without seeds, a [[peer]] is the first endpoint to route to.
    let mut c = parse(&t).unwrap();
    c.resolve_advertise(&System).unwrap();
    assert_eq!(c.underlay.advertise_from, AdvertiseFrom::RouteTo("127.0.0.1:51820".parse().unwrap()));
}

#[test]
fn advertise_default_without_route_or_single_address_says_to_set_it() {
    let t = GOOD.replace("10.200.0.1:51820", "0.0.0.0:51820");
    let mut c = parse(&t).unwrap();
    let e = c.resolve_advertise(&NoHost).unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("underlay.advertise", Some(9)), "{e}");
    assert!(e.message.contains("set advertise = "), "{e}");
    assert!(e.message.contains("no route to seed 10.200.0.2:51820"), "{e}");
    // Without a listen line the error has no line to point at, but still names the key.
    let t = GOOD
        .replace("listen = \"10.200.0.1:51820\"", "")
        .replace("[[peer]]\nendpoint = \"10.200.0.2:51820\"", "");
    let mut c = parse(&t).unwrap();
    let e = c.resolve_advertise(&NoHost).unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("underlay.advertise", None), "{e}");
    assert!(e.message.contains("no seed to route to"), "{e}");
}

#[test]
fn later_errors_point_at_the_key_that_set_the_value() {
    let c = parse(&GOOD.replace("ca = \"ca.crt\"", "ca = \"ca.crt\"\nstate_dir = \"/tmp/x\"")).unwrap();
    let e = c.error("node.key", "cannot read");
    assert_eq!(e.to_string(), "/etc/weft/node.toml:4: node.key: cannot read");
    assert_eq!(c.error("node.name", "x").line, Some(3));
    assert_eq!(c.error("node.state_dir", "x").line, Some(7));
    assert_eq!(c.error("network[0].subnet", "x").line, Some(15));
    assert_eq!(c.error("node.control_socket", "x").line, None, "defaulted keys have no line");
}

#[test]
fn seeds_and_advertise() {
    let t = format!("{GOOD}\n[membership]\nseeds = [\"10.200.0.1:51820\", \"10.200.0.2:51820\"]\n");
    let c = parse(&t).unwrap();
    assert_eq!(c.seeds.len(), 2);
    assert_eq!(c.underlay.advertise, "10.200.0.1:51820".parse().unwrap());
    // Our own address is never dialled; a seed that is also a [[peer]] is dialled once.
    assert_eq!(c.dial_targets(), vec!["10.200.0.2:51820".parse().unwrap()]);
    let bad = format!("{GOOD}\n[membership]\nseeds = [\"nowhere\"]\n");
    assert_eq!(parse(&bad).unwrap_err().key, "membership.seeds[0]");
}

#[test]
fn max_members_defaults_to_ten_thousand_and_is_bounded() {
    assert_eq!(parse(GOOD).unwrap().max_members, 10_000);
    let c = parse(&format!("{GOOD}\n[membership]\nmax_members = 500\n")).unwrap();
    assert_eq!(c.max_members, 500);
    for bad in ["1", "0", "-3", "1000001"] {
        let e = parse(&format!("{GOOD}\n[membership]\nmax_members = {bad}\n")).unwrap_err();
        assert_eq!(e.key, "membership.max_members", "{bad}: {e}");
        assert!(e.message.contains("from 2 to 1000000"), "{bad}: {e}");
    }
}

#[test]
fn cipher_defaults_to_auto_and_names_the_choices() {
    use super::CipherChoice;
    use overlay_proto::Ciphers;
    assert_eq!(parse(GOOD).unwrap().underlay.cipher, CipherChoice::Auto);
    for (word, want) in
        [("aes-256-gcm", CipherChoice::Aes256Gcm), ("chacha20poly1305", CipherChoice::ChaCha20Poly1305)]
    {
        let t = GOOD.replace("[underlay]", &format!("[underlay]\ncipher = \"{word}\""));
        assert_eq!(parse(&t).unwrap().underlay.cipher, want, "{word}");
    }
    let e = parse(&GOOD.replace("[underlay]", "[underlay]\ncipher = \"aes\"")).unwrap_err();
    assert_eq!(e.key, "underlay.cipher");
    assert!(e.message.contains("\"auto\", \"aes-256-gcm\" or \"chacha20poly1305\""), "{e}");
    assert_eq!(CipherChoice::Auto.offer(true), Ciphers::BOTH);
    assert_eq!(CipherChoice::Auto.offer(false), Ciphers::CHACHA_ONLY);
    assert_eq!(CipherChoice::Aes256Gcm.offer(false), Ciphers::AES_ONLY);
    assert_eq!(CipherChoice::ChaCha20Poly1305.offer(true), Ciphers::CHACHA_ONLY);
}

#[test]
fn duplicates_and_overlaps() {
    let two = format!("{GOOD}\n[[network]]\nname = \"b\"\nvni = 42\nsubnet = \"10.43.0.0/16\"\n");
    assert_eq!(parse(&two).unwrap_err().message, "duplicate VNI");
    let two = format!("{GOOD}\n[[network]]\nname = \"b\"\nvni = 43\nsubnet = \"10.42.5.0/24\"\n");
    assert!(parse(&two).unwrap_err().message.contains("overlaps"));
}

#[test]
fn plain_vxlan() {
    let t = GOOD.replace(
        "subnet = \"10.42.0.0/16\"",
        "subnet = \"10.42.0.0/16\"\nencryption = \"none\"\nremotes = [\"10.200.0.9\", \"10.200.0.8:9999\"]",
    );
    let c = parse(&t).unwrap();
    let n = &c.networks[0];
    assert_eq!(n.encryption, Encryption::None);
    assert_eq!(n.mtu, 1450);
    assert_eq!(n.remotes, vec!["10.200.0.9:4789".parse().unwrap(), "10.200.0.8:9999".parse().unwrap()]);
    let bad =
        GOOD.replace("subnet = \"10.42.0.0/16\"", "subnet = \"10.42.0.0/16\"\nremotes = [\"10.0.0.1\"]");
    assert_eq!(parse(&bad).unwrap_err().key, "network[0].remotes");
}

#[test]
fn plain_vxlan_without_remotes_is_refused() {
    // Remotes are static: membership never fills them, so such a network would drop every frame.
    let t = GOOD.replace("subnet = \"10.42.0.0/16\"", "subnet = \"10.42.0.0/16\"\nencryption = \"none\"");
    let e = parse(&t).unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("network[0].remotes", Some(15)), "{e}");
    assert!(e.message.contains("needs remotes"), "{e}");
}

#[test]
fn remote_checksum_is_plain_vxlan_only_and_off_by_default() {
    let plain = "subnet = \"10.42.0.0/16\"\nencryption = \"none\"\nremotes = [\"10.200.0.9\"]";
    assert!(!parse(&GOOD.replace("subnet = \"10.42.0.0/16\"", plain)).unwrap().networks[0].remote_checksum);
    let on = GOOD.replace("subnet = \"10.42.0.0/16\"", &format!("{plain}\nremote_checksum = true"));
    assert!(parse(&on).unwrap().networks[0].remote_checksum);
    // An encrypted network has no VXLAN header to carry it.
    let t = GOOD.replace("subnet = \"10.42.0.0/16\"", "subnet = \"10.42.0.0/16\"\nremote_checksum = true");
    let e = parse(&t).unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("network[0].remote_checksum", Some(15)), "{e}");
    assert!(e.message.contains("only plain VXLAN"), "{e}");
    // `false` is accepted anywhere.
    let off = GOOD.replace("subnet = \"10.42.0.0/16\"", "subnet = \"10.42.0.0/16\"\nremote_checksum = false");
    assert!(parse(&off).is_ok());
}

#[test]
fn vxlan_port_zero_is_refused() {
    let t = GOOD.replace(
        "subnet = \"10.42.0.0/16\"",
        "subnet = \"10.42.0.0/16\"\nencryption = \"none\"\nremotes = [\"10.200.0.9\"]\nvxlan_port = 0",
    );
    let e = parse(&t).unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("network[0].vxlan_port", Some(17)), "{e}");
}

#[test]
fn services_and_dns() {
    let t = format!(
        "{GOOD}\n[dns]\ndomain = \"Mesh.Internal.\"\nupstreams = [\"192.0.2.53\", \"[2001:db8::1]:5353\"]\n\n\
         [[service]]\nname = \"web\"\ncontainer = \"web1\"\nport = 80\ntags = [\"v1\"]\n\
         check = {{ type = \"http\", path = \"/health\", interval = \"1s\" }}\n\n\
         [[service]]\nname = \"dns\"\naddress = \"10.42.1.1\"\nport = 53\nprotocol = \"udp\"\n"
    );
    let c = parse(&t).unwrap();
    assert_eq!(c.dns.domain, "mesh.internal");
    assert_eq!(c.dns.upstreams.as_ref().unwrap()[0], "192.0.2.53:53".parse().unwrap());
    assert_eq!(c.services.len(), 2);
    assert_eq!(c.services[0].network, "default");
    let check = c.services[0].check.as_ref().unwrap();
    assert_eq!(check.timeout, std::time::Duration::from_secs(1));
    assert_eq!(c.services[1].id(), "dns/10.42.1.1:53/udp");
    let defaults = parse(GOOD).unwrap();
    assert!(defaults.dns.enable && defaults.dns.domain == "weft" && defaults.dns.ttl == 5);
    assert!(defaults.dns.upstreams.is_none());
}

#[test]
fn service_errors_name_the_key() {
    let svc = |body: &str| format!("{GOOD}\n[[service]]\n{body}\n");
    let cases = [
        ("name = \"Web\"\ncontainer = \"a\"\nport = 80", "service[0].name"),
        ("name = \"web\"\nport = 80", "service[0]"),
        ("name = \"web\"\ncontainer = \"a\"\naddress = \"10.42.1.1\"\nport = 80", "service[0]"),
        ("name = \"web\"\naddress = \"nope\"\nport = 80", "service[0].address"),
        ("name = \"web\"\ncontainer = \"a\"\nport = 0", "service[0].port"),
        ("name = \"web\"\ncontainer = \"a\"\nport = 80\nnetwork = \"blue\"", "service[0].network"),
        ("name = \"web\"\ncontainer = \"a\"\nport = 80\nprotocol = \"sctp\"", "service[0].protocol"),
        ("name = \"web\"\ncontainer = \"a\"\nport = 80\ncheck = { type = \"ping\" }", "service[0].check.type"),
        ("name = \"web\"\ncontainer = \"a\"\nport = 80\ncheck = { type = \"tcp\", interval = \"5x\" }", "service[0].check.interval"),
        ("name = \"web\"\ncontainer = \"a\"\nport = 80\ncheck = { type = \"tcp\", interval = \"1s\", timeout = \"2s\" }", "service[0].check"),
        ("name = \"web\"\ncontainer = \"a\"\nport = 80\ncheck = { type = \"command\" }", "service[0].check.command"),
    ];
    for (body, key) in cases {
        let e = parse(&svc(body)).unwrap_err();
        assert_eq!(e.key, key, "{body}: {e}");
        assert!(e.line.is_some(), "{body}: {e}");
    }
    let e = parse(&format!("{GOOD}\n[dns]\ndomain = \"bad_domain\"\n")).unwrap_err();
    assert_eq!(e.key, "dns.domain");
    let e = parse(&format!("{GOOD}\n[dns]\nttl = 100000\n")).unwrap_err();
    assert_eq!(e.key, "dns.ttl");
}

#[test]
fn network_policy() {
    let t = format!(
        "{GOOD}\n[network.policy]\ninbound = \"deny\"\n\n[[network.policy.rule]]\ndirection = \"in\"\naction = \"allow\"\n\
         proto = \"tcp\"\nport = 5432\nfrom = {{ labels = {{ app = \"web\" }} }}\nto = {{ labels = {{ app = \"db\" }} }}\n"
    );
    let c = parse(&t).unwrap();
    assert_eq!(c.networks[0].policy.rules().len(), 1);
    assert_eq!(
        c.networks[0].policy.default_verdict(crate::policy::Direction::In),
        crate::policy::Verdict::Deny
    );
    let e = parse(&t.replace("port = 5432", "port = 0")).unwrap_err();
    assert_eq!(e.key, "network[0].policy.rule[0].port");
    assert!(e.line.is_some(), "{e}");
    assert!(parse(GOOD).unwrap().networks[0].policy.rules().is_empty());
}

#[test]
fn dual_stack_subnets_one_per_family() {
    let dual = |s: &str| GOOD.replace("subnet = \"10.42.0.0/16\"", &format!("subnet = {s}"));
    let c = parse(&dual(r#"["10.42.0.0/16", "fd42::/48"]"#)).unwrap();
    let n = &c.networks[0].subnet;
    assert_eq!(n.v4(), Some("10.42.0.0/16".parse().unwrap()));
    assert_eq!(n.v6(), Some("fd42::/48".parse().unwrap()));
    let c = parse(&dual(r#"["fd42::/48"]"#)).unwrap();
    assert_eq!(
        (c.networks[0].subnet.v4(), c.networks[0].subnet.v6()),
        (None, Some("fd42::/48".parse().unwrap()))
    );
    for (bad, says) in [
        (r#"["10.42.0.0/16", "10.43.0.0/16"]"#, "two IPv4 subnets"),
        (r#"["fd42::/48", "fd43::/48"]"#, "two IPv6 subnets"),
        (r#"["10.42.0.0/16", "fd42::1/48"]"#, "fd42::1/48: host bits set"),
        (r#"["10.42.0.0/16", "nope"]"#, "\"nope\": expected a CIDR"),
        ("[]", "give a CIDR"),
        ("42", "network[0].subnet"),
    ] {
        let e = parse(&dual(bad)).unwrap_err();
        assert_eq!(e.line, Some(14), "{bad}: {e}");
        assert!(e.to_string().contains(says), "{bad}: {e}");
    }
    // Overlaps are per family: a second network may share neither family's range.
    let second = |s: &str| {
        format!(
            "{}\n[[network]]\nname = \"b\"\nvni = 43\nsubnet = {s}\n",
            dual(r#"["10.42.0.0/16", "fd42::/48"]"#)
        )
    };
    assert!(parse(&second(r#"["10.43.0.0/16", "fd43::/48"]"#)).is_ok());
    let e = parse(&second(r#"["10.43.0.0/16", "fd42:0:0:5::/64"]"#)).unwrap_err();
    assert!(e.message.contains("fd42:0:0:5::/64 overlaps network \"default\""), "{e}");
    assert_eq!((e.key.as_str(), e.line), ("network[1].subnet", Some(22)));
    let e = parse(&second(r#""10.42.7.0/24""#)).unwrap_err();
    assert!(e.message.contains("overlaps"), "{e}");
}

#[test]
fn docker_driver_defaults_and_socket_names() {
    let c = parse(GOOD).unwrap();
    assert!(!c.docker.enable);
    assert_eq!(c.docker.socket, PathBuf::from("/run/docker/plugins/weft.sock"));
    assert_eq!(c.docker.engine, PathBuf::from("/run/docker.sock"));
    let c = parse(&format!(
        "{GOOD}\n[docker]\nenable = true\nsocket = \"/run/docker/plugins/overlay-1.sock\"\nengine = \"unix:///var/run/docker.sock\"\n"
    ))
    .unwrap();
    assert!(c.docker.enable);
    assert_eq!(c.docker.socket, PathBuf::from("/run/docker/plugins/overlay-1.sock"));
    assert_eq!(c.docker.engine, PathBuf::from("/var/run/docker.sock"));
    for bad in [
        "weft.sock",
        "/run/docker/plugins/weft",
        "/run/docker/plugins/we ft.sock",
        "/run/docker/plugins/.sock",
    ] {
        let e = parse(&format!("{GOOD}\n[docker]\nsocket = \"{bad}\"\n")).unwrap_err();
        assert_eq!(e.key, "docker.socket", "{bad}: {e}");
        assert!(e.message.contains("NAME.sock"), "{e}");
    }
    let e = parse(&format!("{GOOD}\n[docker]\nengine = \"docker.sock\"\n")).unwrap_err();
    assert_eq!(e.key, "docker.engine", "{e}");
    let e = parse(&format!("{GOOD}\n[docker]\nenabled = true\n")).unwrap_err();
    assert!(e.to_string().contains("enabled"), "{e}");
}
