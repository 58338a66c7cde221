//! Known answers for every refused range, its IPv6 disguises, and the allow list.

use super::*;

fn reason(text: &str) -> Option<Reason> {
    classify(text.parse().unwrap()).map(|r| r.reason)
}

#[test]
fn non_public_ipv4_ranges_are_refused() {
    let cases = [
        ("0.0.0.0", Reason::Unspecified),
        ("0.1.2.3", Reason::ThisNetwork),
        ("10.0.0.1", Reason::Private),
        ("10.255.255.255", Reason::Private),
        ("100.64.0.1", Reason::SharedAddressSpace),
        ("100.127.255.254", Reason::SharedAddressSpace),
        ("127.0.0.1", Reason::Loopback),
        ("127.255.0.9", Reason::Loopback),
        ("169.254.169.254", Reason::LinkLocal),
        ("169.254.0.1", Reason::LinkLocal),
        ("172.16.0.1", Reason::Private),
        ("172.31.255.255", Reason::Private),
        ("192.0.0.8", Reason::IetfProtocol),
        ("192.0.2.10", Reason::Documentation),
        ("192.88.99.1", Reason::Reserved),
        ("192.168.1.1", Reason::Private),
        ("198.18.0.1", Reason::Benchmarking),
        ("198.19.255.255", Reason::Benchmarking),
        ("198.51.100.7", Reason::Documentation),
        ("203.0.113.200", Reason::Documentation),
        ("224.0.0.251", Reason::Multicast),
        ("239.255.255.250", Reason::Multicast),
        ("240.0.0.1", Reason::Reserved),
        ("254.1.2.3", Reason::Reserved),
        ("255.255.255.255", Reason::Broadcast),
    ];
    for (ip, expected) in cases {
        assert_eq!(reason(ip), Some(expected), "{ip}");
    }
}

#[test]
fn public_ipv4_addresses_pass_including_the_edges_of_refused_ranges() {
    for ip in [
        "1.1.1.1",
        "8.8.8.8",
        "9.255.255.255",
        "11.0.0.0",
        "100.63.255.255",
        "100.128.0.0",
        "126.255.255.255",
        "128.0.0.0",
        "169.253.255.255",
        "169.255.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.1.1",
        "192.0.3.0",
        "192.167.255.255",
        "192.169.0.0",
        "198.17.255.255",
        "198.20.0.0",
        "203.0.114.1",
        "223.255.255.255",
    ] {
        assert_eq!(reason(ip), None, "{ip}");
    }
}

#[test]
fn non_public_ipv6_ranges_are_refused() {
    let cases = [
        ("::", Reason::Unspecified),
        ("::1", Reason::Loopback),
        ("fc00::1", Reason::UniqueLocal),
        ("fd12:3456:789a::1", Reason::UniqueLocal),
        ("fe80::1", Reason::LinkLocal),
        ("febf::1", Reason::LinkLocal),
        ("fec0::1", Reason::SiteLocal),
        ("ff02::1", Reason::Multicast),
        ("ff0e::101", Reason::Multicast),
        ("2001:db8::1", Reason::Documentation),
        ("2001:db8:ffff::1", Reason::Documentation),
        ("3fff::1", Reason::Documentation),
        ("2001:2::1", Reason::Benchmarking),
        ("2001::1", Reason::IetfProtocol),
        ("64:ff9b:1::a", Reason::LocalNat64),
        ("100::1", Reason::Discard),
        // Outside global unicast 2000::/3.
        ("4000::1", Reason::Reserved),
        ("1::1", Reason::Reserved),
        ("e000::1", Reason::Reserved),
    ];
    for (ip, expected) in cases {
        assert_eq!(reason(ip), Some(expected), "{ip}");
    }
    for ip in [
        "2606:4700:4700::1111",
        "2a00:1450:4001::200e",
        "2001:4860::8888",
    ] {
        assert_eq!(reason(ip), None, "{ip}");
    }
}

#[test]
fn ipv6_forms_of_refused_ipv4_addresses_are_refused_with_the_embedded_address_named() {
    let cases = [
        (
            "::ffff:127.0.0.1",
            Embedding::Mapped,
            "127.0.0.1",
            Reason::Loopback,
        ),
        (
            "::ffff:7f00:1",
            Embedding::Mapped,
            "127.0.0.1",
            Reason::Loopback,
        ),
        (
            "::ffff:169.254.169.254",
            Embedding::Mapped,
            "169.254.169.254",
            Reason::LinkLocal,
        ),
        (
            "::ffff:10.1.2.3",
            Embedding::Mapped,
            "10.1.2.3",
            Reason::Private,
        ),
        (
            "::10.0.0.1",
            Embedding::Compatible,
            "10.0.0.1",
            Reason::Private,
        ),
        (
            "::127.0.0.2",
            Embedding::Compatible,
            "127.0.0.2",
            Reason::Loopback,
        ),
        (
            "::ffff:0:192.168.0.1",
            Embedding::Translated,
            "192.168.0.1",
            Reason::Private,
        ),
        (
            "64:ff9b::127.0.0.1",
            Embedding::Nat64,
            "127.0.0.1",
            Reason::Loopback,
        ),
        (
            "64:ff9b::a9fe:a9fe",
            Embedding::Nat64,
            "169.254.169.254",
            Reason::LinkLocal,
        ),
        // 2002:WWXX:YYZZ::/48 carries WW.XX.YY.ZZ.
        (
            "2002:c0a8:0101::1",
            Embedding::SixToFour,
            "192.168.1.1",
            Reason::Private,
        ),
        (
            "2002:7f00:1::",
            Embedding::SixToFour,
            "127.0.0.1",
            Reason::Loopback,
        ),
        (
            "2002:6440:1::1",
            Embedding::SixToFour,
            "100.64.0.1",
            Reason::SharedAddressSpace,
        ),
    ];
    for (ip, how, inner, expected) in cases {
        let refusal = classify(ip.parse().unwrap()).unwrap_or_else(|| panic!("{ip} passed"));
        assert_eq!(refusal.reason, expected, "{ip}");
        assert_eq!(
            refusal.embedded,
            Some((how, inner.parse().unwrap())),
            "{ip}"
        );
    }
    let shown = classify("::ffff:10.1.2.3".parse().unwrap())
        .unwrap()
        .to_string();
    assert!(
        shown.contains("IPv4-mapped") && shown.contains("10.1.2.3") && shown.contains("private"),
        "{shown}"
    );
}

#[test]
fn ipv6_forms_of_public_addresses_follow_their_routing() {
    // Mapped, NAT64 and 6to4 reach the public address they carry.
    assert_eq!(reason("::ffff:8.8.8.8"), None);
    assert_eq!(reason("64:ff9b::808:808"), None);
    assert_eq!(reason("2002:808:808::1"), None);
    // The deprecated compatible and translated forms are not routed.
    assert_eq!(reason("::8.8.8.8"), Some(Reason::Reserved));
    assert_eq!(reason("::ffff:0:8.8.8.8"), Some(Reason::Reserved));
}

#[test]
fn networks_parse_as_cidrs_or_single_addresses() {
    assert_eq!(
        parse_network("10.0.0.0/8").unwrap().to_string(),
        "10.0.0.0/8"
    );
    assert_eq!(
        parse_network(" 10.1.2.3/8 ").unwrap().to_string(),
        "10.0.0.0/8"
    );
    assert_eq!(
        parse_network("192.168.1.5").unwrap().to_string(),
        "192.168.1.5/32"
    );
    assert_eq!(parse_network("fd00::/8").unwrap().to_string(), "fd00::/8");
    assert_eq!(parse_network("::1").unwrap().to_string(), "::1/128");
    for bad in ["10.0.0/8", "10.0.0.0/33", "localhost", "", "fd00::/129"] {
        let err = parse_network(bad).unwrap_err();
        assert_eq!(err, GuardError::BadNetwork(bad.trim().to_string()));
        assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
    }
}

#[test]
fn the_allow_list_opens_only_its_networks_and_their_ipv6_forms() {
    let allow = AllowList::new(vec![
        parse_network("10.20.0.0/16").unwrap(),
        parse_network("fd00::/8").unwrap(),
    ]);
    let ok = |ip: &str| allow.check(ip, ip.parse().unwrap()).is_ok();
    assert!(ok("10.20.3.4"));
    assert!(ok("::ffff:10.20.3.4"));
    assert!(ok("64:ff9b::a14:304"));
    assert!(ok("fd00::5"));
    assert!(ok("8.8.8.8"), "public addresses never need opening");
    assert!(!ok("10.21.0.1"));
    assert!(!ok("127.0.0.1"));
    assert!(!ok("169.254.169.254"));
    assert!(!ok("fe80::1"));

    let loopback = AllowList::loopback();
    for ip in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
        assert!(loopback.check(ip, ip.parse().unwrap()).is_ok(), "{ip}");
    }
    for ip in ["10.0.0.1", "169.254.169.254", "::2", "fc00::1"] {
        assert!(loopback.check(ip, ip.parse().unwrap()).is_err(), "{ip}");
    }
    assert!(AllowList::default().networks().is_empty());
}

#[test]
fn refusals_name_the_address_the_reason_and_the_flag() {
    let allow = AllowList::default();
    let literal = allow
        .check("169.254.169.254", "169.254.169.254".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        literal.starts_with("refused 169.254.169.254: it is a link-local address"),
        "{literal}"
    );
    assert!(
        literal.contains("--allow-network 169.254.169.254/32")
            && literal.contains("HOOKRELAY_ALLOW_NETWORKS"),
        "{literal}"
    );
    let named = allow
        .check("localhost", "::1".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        named.starts_with("refused localhost: it resolves to ::1, a loopback address"),
        "{named}"
    );
    assert!(named.contains("--allow-network ::1/128"), "{named}");
    let bracketed = allow
        .check("[::1]", "::1".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(bracketed.starts_with("refused ::1: it is"), "{bracketed}");
}

#[test]
fn urls_with_address_literals_are_checked_in_every_spelling() {
    let allow = AllowList::default();
    let refused = |url: &str| allow.check_url(&reqwest::Url::parse(url).unwrap()).is_err();
    for url in [
        "http://127.0.0.1:8080/hooks",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "https://169.254.169.254/latest/meta-data/",
        // The URL parser turns these spellings into 127.0.0.1 and 10.0.0.1.
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://0177.0.0.1/",
        "http://10.1/",
        "http://0/",
    ] {
        assert!(refused(url), "{url}");
    }
    for url in [
        "https://example.com/hooks",
        "http://8.8.8.8/",
        "http://[2606:4700::1]/",
    ] {
        assert!(!refused(url), "{url}");
    }
    assert!(AllowList::loopback()
        .check_url(&reqwest::Url::parse("http://127.0.0.1:9/").unwrap())
        .is_ok());
}

#[tokio::test]
async fn the_resolver_refuses_names_that_resolve_to_refused_addresses() {
    let resolver = GuardedResolver::new(AllowList::default());
    let err = resolver
        .resolve("localhost".parse().unwrap())
        .await
        .err()
        .expect("localhost is refused");
    let blocked = err.downcast_ref::<Blocked>().expect("a Blocked error");
    assert_eq!(blocked.host, "localhost");
    assert_eq!(blocked.refusal.reason, Reason::Loopback);

    let open = GuardedResolver::new(AllowList::loopback());
    let addrs: Vec<_> = open
        .resolve("localhost".parse().unwrap())
        .await
        .expect("allowed")
        .collect();
    assert!(!addrs.is_empty());
    assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
}

#[test]
fn opening_every_address_needs_its_own_flag() {
    let nets =
        |list: &[&str]| -> Vec<IpNet> { list.iter().map(|n| parse_network(n).unwrap()).collect() };
    for wide in ["0.0.0.0/0", "::/0", "0.0.0.0/1", "::/6"] {
        let err = check_breadth(&nets(&["10.0.0.0/8", wide]), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("--allow-network {wide} opens "))
                && err.contains("turns the address guard off")
                && err.contains("--allow-any-network (HOOKRELAY_ALLOW_ANY_NETWORK=true)"),
            "{err}"
        );
        assert!(check_breadth(&nets(&[wide]), true).is_ok());
    }
    assert!(check_breadth(&nets(&["0.0.0.0/0"]), false)
        .unwrap_err()
        .to_string()
        .contains("opens every address"));
    assert!(check_breadth(&nets(&["10.0.0.0/8", "fc00::/7", "127.0.0.1"]), false).is_ok());
}
