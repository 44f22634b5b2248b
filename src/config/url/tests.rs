//! Unit tests of `url`.

use super::*;

fn addr(host: &str, port: u16, user: Option<&str>, pass: Option<&str>, db: u32) -> UpstreamAddr {
    UpstreamAddr {
        host: host.to_owned(),
        port,
        username: user.map(str::to_owned),
        password: pass.map(str::to_owned),
        db,
        tls: false,
        sentinel: None,
        cluster: None,
    }
}

#[test]
fn sentinel_urls_name_the_sentinels_the_master_and_the_db() {
    let a = upstream("redis+sentinel://app:pw@s1:26380,s2,[::1]:5000/mymaster/2").unwrap();
    let s = a.sentinel.clone().unwrap();
    assert_eq!(s.addresses, ["s1:26380", "s2:26379", "[::1]:5000"]);
    assert_eq!(s.master, "mymaster");
    assert_eq!((a.db, a.tls), (2, false));
    assert_eq!(
        (a.username.as_deref(), a.password.as_deref()),
        (Some("app"), Some("pw"))
    );
    assert_eq!(a.scheme(), "redis+sentinel");
    assert_eq!(
        a.to_string(),
        "redis+sentinel://s1:26380,s2:26379,[::1]:5000/mymaster/2"
    );
    let t = upstream("rediss+sentinel://s1/m?db=1").unwrap();
    assert_eq!(
        (t.tls, t.db, t.sentinel.unwrap().master),
        (true, 1, "m".to_owned())
    );
    // Printed without the password, and read back the same.
    let printed = printable("redis+sentinel://app:pw@s1:26380,s2/mymaster/2");
    assert_eq!(
        printed,
        "redis+sentinel://app:***@s1:26380,s2:26379/mymaster/2"
    );
    for (bad, says) in [
        ("redis+sentinel://s1,s2", "no master name"),
        ("redis+sentinel://s1,s2/", "no master name"),
        ("redis+sentinel://s1,,s2/m", "empty sentinel address"),
        ("redis+sentinel:///m", "no sentinel address"),
        ("redis+sentinel://s1/m/1/2", "too many path segments"),
        ("redis+sentinel://s1:0/m", "invalid port"),
        ("redis+sentinel://s1/m/x", "invalid db"),
        ("redis+sentinel://s1/m%20x", "invalid master name"),
        ("redis://a,b:6379", "invalid host"),
        ("sentinel://s1/m", "unsupported scheme"),
    ] {
        let e = upstream(bad).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn upstream_url_forms() {
    for (url, want) in [
        ("redis://127.0.0.1", addr("127.0.0.1", 6379, None, None, 0)),
        ("redis://cache:7000/3", addr("cache", 7000, None, None, 3)),
        ("REDIS://cache/", addr("cache", 6379, None, None, 0)),
        ("redis://:s3cret@h:1", addr("h", 1, None, Some("s3cret"), 0)),
        (
            "redis://bob:pw@h/2",
            addr("h", 6379, Some("bob"), Some("pw"), 2),
        ),
        ("redis://bob@h", addr("h", 6379, Some("bob"), None, 0)),
        (
            "redis://bob:p%40ss%3Aw@h",
            addr("h", 6379, Some("bob"), Some("p@ss:w"), 0),
        ),
        (
            "redis://u:a@b/c:d@h",
            addr("h", 6379, Some("u"), Some("a@b/c:d"), 0),
        ),
        (
            "redis://u:100%@h",
            addr("h", 6379, Some("u"), Some("100%"), 0),
        ),
        ("redis://[::1]", addr("::1", 6379, None, None, 0)),
        (
            "redis://:pw@[::1]:6390/1",
            addr("::1", 6390, None, Some("pw"), 1),
        ),
    ] {
        assert_eq!(upstream(url), Ok(want), "{url}");
    }
    assert_eq!(addr("::1", 7, None, None, 0).host_port(), "[::1]:7");
    assert_eq!(addr("h", 7, None, None, 0).host_port(), "h:7");
}

#[test]
fn upstream_url_problems() {
    for (url, want) in [
        ("http://h", "unsupported scheme \"http\""),
        ("h:6379", "not a redis:// URL"),
        ("redis://", "empty host"),
        ("redis://:pw@:6379", "empty host"),
        ("redis://h:abc", "invalid port (must be a number"),
        ("redis://h:0", "invalid port \"0\""),
        ("redis://h:65536", "invalid port \"65536\""),
        ("redis://h:", "invalid port \"\""),
        ("redis://h/x", "invalid db \"x\""),
        ("redis://h/-1", "invalid db \"-1\""),
        ("redis://::1", "IPv6 hosts must be in brackets"),
        ("redis://[::1", "unclosed '['"),
        ("redis://[nope]:1", "invalid IPv6 address"),
        ("redis://[::1]x", "unexpected \"x\""),
        ("redis://:%FF@h", "password is not valid UTF-8"),
    ] {
        let err = upstream(url).unwrap_err();
        assert!(err.contains(want), "{url}: {err}");
    }
}

#[test]
fn upstream_problems_never_quote_the_password() {
    for url in [
        "redis://u:hunter2@h:x",
        "redis://u:hunter2@h/x",
        "redis://u:hunter2@",
        "redis://u:hunter2",
        "redis://u:hunter2/0",
        "redis://:hunter2",
    ] {
        assert!(!upstream(url).unwrap_err().contains("hunter2"), "{url}");
    }
}

#[test]
fn redact_url_hides_only_the_password() {
    assert_eq!(redact("redis://u:hunter2@h:1/2"), "redis://u:***@h:1/2");
    assert_eq!(redact("redis://:a@b@h"), "redis://:***@h");
    assert_eq!(redact("redis://u@h"), "redis://u@h");
    assert_eq!(redact("redis://h:1"), "redis://h:1");
}

#[test]
fn query_parameters_clients_write_are_applied_or_ignored() {
    for (url, want) in [
        ("redis://h?protocol=3", addr("h", 6379, None, None, 0)),
        ("redis://h:7/1?protocol=2", addr("h", 7, None, None, 1)),
        ("redis://h?timeout=5s", addr("h", 6379, None, None, 0)),
        (
            "redis://h?dial_timeout=3&read_timeout=6s&pool_size=10",
            addr("h", 6379, None, None, 0),
        ),
        ("redis://h?db=4", addr("h", 6379, None, None, 4)),
        ("redis://h/4?db=4", addr("h", 6379, None, None, 4)),
        (
            "redis://h?password=p%40w+x&username=bob",
            addr("h", 6379, Some("bob"), Some("p@w x"), 0),
        ),
        ("redis://h?", addr("h", 6379, None, None, 0)),
        ("redis://h#frag", addr("h", 6379, None, None, 0)),
        ("redis://h/2#frag?db=3", addr("h", 6379, None, None, 2)),
        ("redis://h?db=3#frag", addr("h", 6379, None, None, 3)),
        ("redis://:a#b@h", addr("h", 6379, None, Some("a#b"), 0)),
        (
            "redis://:p%3Fw@h?db=1",
            addr("h", 6379, None, Some("p?w"), 1),
        ),
        (
            "redis://redis_host-1.ns.svc",
            addr("redis_host-1.ns.svc", 6379, None, None, 0),
        ),
    ] {
        assert_eq!(upstream(url), Ok(want), "{url}");
    }
}

#[test]
fn query_and_host_problems_are_named() {
    for (url, want) in [
        ("redis://h?protocol=4", "invalid protocol"),
        ("redis://h?foo=1", "unknown query parameter \"foo\""),
        ("redis://h?=1", "without a name"),
        ("redis://h?db=x", "invalid db \"x\" in the query"),
        ("redis://h/1?db=2", "two dbs"),
        ("redis://h?db=1&db=1", "given twice"),
        ("redis://:a@h?password=b", "two different passwords"),
        ("redis://h?password=%FF", "query value is not valid UTF-8"),
        ("redis://h]:6379", "unbalanced"),
        ("redis://h[:6379", "unbalanced"),
        ("redis://ho$t", "invalid host \"ho$t\""),
        ("redis://h o", "spaces"),
        ("redis://h/99999999999", "invalid db"),
        ("redis://h:99999", "invalid port"),
    ] {
        let err = upstream(url).unwrap_err();
        assert!(err.contains(want), "{url}: {err}");
    }
    assert!(!upstream("redis://h?password=hunter2&x=1")
        .unwrap_err()
        .contains("hunter2"));
    assert_eq!(redact("redis://h?password=hunter2"), "redis://h?***");
}

#[test]
fn rediss_is_the_same_url_with_tls() {
    let a = upstream("rediss://u:p@cache.example:6380/2").unwrap();
    assert!(a.tls);
    assert_eq!((a.host.as_str(), a.port, a.db), ("cache.example", 6380, 2));
    assert_eq!(a.to_string(), "rediss://cache.example:6380/2");
    assert!(!upstream("redis://cache.example").unwrap().tls);
    assert!(upstream("REDISS://h").unwrap().tls);
    assert_eq!(printable("rediss://u:secret@h:1/3"), "rediss://u:***@h:1/3");
}

#[test]
fn cluster_urls_name_the_seeds_in_order() {
    let a = upstream("redis+cluster://app:pw@n1:7000,n2,[::1]:7002,n1:7000").unwrap();
    let c = a.cluster.clone().unwrap();
    assert_eq!(c.addresses, ["n1:7000", "n2:6379", "[::1]:7002"]);
    assert_eq!((a.host.as_str(), a.port), ("n1", 7000));
    assert_eq!((a.db, a.tls, a.sentinel.is_none()), (0, false, true));
    assert_eq!(
        (a.username.as_deref(), a.password.as_deref()),
        (Some("app"), Some("pw"))
    );
    assert_eq!(a.scheme(), "redis+cluster");
    assert_eq!(
        a.to_string(),
        "redis+cluster://n1:7000,n2:6379,[::1]:7002/0"
    );
    for ok in [
        "redis+cluster://n1:7000/0",
        "redis+cluster://n1:7000/",
        "redis+cluster://n1?db=0",
    ] {
        assert_eq!(upstream(ok).unwrap().db, 0, "{ok}");
    }
    let t = upstream("rediss+cluster://n1:7000,n2:7001").unwrap();
    assert_eq!((t.tls, t.scheme()), (true, "rediss+cluster"));
    assert_eq!(t.cluster.unwrap().addresses, ["n1:7000", "n2:7001"]);
    // Printed without the password, and read back the same.
    let printed = printable("redis+cluster://app:pw@n1:7000,n2:7001");
    assert_eq!(printed, "redis+cluster://app:***@n1:7000,n2:7001/0");
    assert_eq!(
        upstream(&printed.replace("***", "pw")).unwrap(),
        upstream("redis+cluster://app:pw@n1:7000,n2:7001").unwrap()
    );
    for (bad, says) in [
        ("redis+cluster://n1:7000/1", "only db 0"),
        ("redis+cluster://n1:7000?db=3", "only db 0"),
        ("redis+cluster://n1,,n2", "empty seed address"),
        ("redis+cluster:///0", "no seed address"),
        ("redis+cluster://n1/0/1", "too many path segments"),
        ("redis+cluster://n1:0", "invalid port"),
        ("redis+cluster://n1/x", "invalid db"),
        ("redis+cluster://n1,a b", "spaces"),
        ("cluster://n1", "unsupported scheme"),
    ] {
        let e = upstream(bad).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
}
