//! `NEARCACHE` under Redis ACLs: a client is served only what its own Redis user may do or
//! see. A password-protected Redis with four users, and two sidecars on it: A without
//! credentials of its own (its clients authenticate themselves), B with the admin's.
//!
//! - `full`: everything but `SLOWLOG`;
//! - `weak`: `+@read ~app:*`, `MULTI`/`DISCARD`, every channel but no `PUBLISH`;
//! - `noscan`: everything but `SCAN`;
//! - `admin`: everything.

use std::time::Duration;

use proto_tests::*;

/// Long enough for a loaded machine; checks poll and return as soon as they hold.
const WAIT: Duration = Duration::from_secs(10);
const PASSWORD: &str = "secret";
const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";

fn ok(reply: &[u8], what: &str) {
    assert_reply(reply, b"+OK\r\n", what);
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Redis with `requirepass` and the four users (`+ping` and `+client|tracking`: the
/// sidecar's upstream connections check themselves with PING and fill L1 once tracked).
fn redis_with_users() -> Redis {
    let redis = Redis::start_with(&["--requirepass", PASSWORD]);
    let mut c = redis.conn();
    let base = ["on", ">pw", "+ping", "+client|tracking"];
    for (name, rules) in [
        ("full", &["~*", "&*", "+@all", "-slowlog"][..]),
        (
            "weak",
            &["~app:*", "&*", "+@read", "+multi", "+discard", "-publish"],
        ),
        ("noscan", &["~*", "&*", "+@all", "-scan"]),
        ("admin", &["~*", "&*", "+@all"]),
    ] {
        let mut args = vec!["ACL", "SETUSER", name];
        args.extend(base);
        args.extend(rules);
        ok(&c.cmd_str(&args), name);
    }
    redis
}

/// Sidecar A (no credentials of its own) and B (the admin's), both subscribed to the bus:
/// A's invalidation link comes up with the first client that authenticates (the admin).
fn two_sidecars(redis: &Redis, extra: &[&str]) -> (Sidecar, Sidecar) {
    let a = Sidecar::start(redis.port(), extra);
    auth(a.conn(), "admin");
    let url = format!("redis://admin:pw@127.0.0.1:{}", redis.port());
    let b = Sidecar::start_url(&url, extra);
    for s in [&a, &b] {
        poll_until(WAIT, "subscribed to the bus", || {
            info_field(&info(s, "nearcache_invalidation"), "bus").as_deref() == Some("subscribed")
        });
    }
    (a, b)
}

/// `c` authenticated as `user`.
fn auth(mut c: Conn, user: &str) -> Conn {
    ok(&c.cmd_str(&["AUTH", user, "pw"]), &format!("AUTH {user}"));
    c
}

fn info(sidecar: &Sidecar, section: &str) -> String {
    auth(sidecar.conn(), "admin").info(Some(section))
}

fn l1_hits(sidecar: &Sidecar) -> u64 {
    info_u64(&info(sidecar, "nearcache"), "l1_hits")
}

/// Reads `key` as `user` through `sidecar` until a read is an L1 hit.
fn cached(sidecar: &Sidecar, user: &str, key: &str) {
    let mut c = auth(sidecar.conn(), user);
    poll_until(WAIT, &format!("{key} to be a hit"), || {
        c.cmd_str(&["GET", key]);
        let before = l1_hits(sidecar);
        c.cmd_str(&["GET", key]);
        l1_hits(sidecar) == before + 1
    });
}

/// A read of `key` as `user` through `sidecar` is an L1 hit.
fn is_hit(sidecar: &Sidecar, user: &str, key: &str) -> bool {
    let mut c = auth(sidecar.conn(), user);
    let before = l1_hits(sidecar);
    c.cmd_str(&["GET", key]);
    l1_hits(sidecar) == before + 1
}

#[test]
fn an_unauthenticated_client_gets_noauth_for_every_subcommand() {
    let redis = redis_with_users();
    let (a, _b) = two_sidecars(&redis, &[]);
    let mut c = a.conn();
    for args in [
        &["NEARCACHE", "HELP"][..],
        &["NEARCACHE", "STATS"],
        &["NEARCACHE", "NAMESPACES"],
        &["NEARCACHE", "HOTKEYS"],
        &["NEARCACHE", "SLOWLOG", "GET"],
        &["NEARCACHE", "SLOWLOG", "LEN"],
        &["NEARCACHE", "SLOWLOG", "RESET"],
        &["NEARCACHE", "FLUSH"],
        &["NEARCACHE", "FLUSH", "ALL"],
        &["NEARCACHE", "INVALIDATE", "*"],
        &["NEARCACHE", "DELPATTERN", "*"],
        &["NEARCACHE", "WARM", "*"],
    ] {
        assert_reply(&c.cmd_str(args), NOAUTH, &format!("{args:?}"));
    }
    // INFO of the sidecar's own sections holds what STATS does.
    for section in ["nearcache", "nearcache_l1"] {
        assert_reply(&c.cmd_str(&["INFO", section]), NOAUTH, section);
    }
    // As Redis: an unknown subcommand or a wrong arity is refused before authentication.
    let reply = c.cmd_str(&["NEARCACHE", "NOPE"]);
    assert!(
        reply.starts_with(b"-ERR unknown subcommand"),
        "{}",
        show(&reply)
    );
    // Once authenticated, even the weakest user reads the figures.
    let mut c = auth(c, "weak");
    let stats = c.cmd_str(&["NEARCACHE", "STATS"]);
    assert!(contains(&stats, "l1_hits"), "{}", show(&stats));
    assert!(c.cmd_str(&["NEARCACHE", "HELP"]).starts_with(b"*"));
    assert!(c.cmd_str(&["NEARCACHE", "NAMESPACES"]).starts_with(b"*"));
}

#[test]
fn fleet_commands_need_the_clients_own_publish_right() {
    let redis = redis_with_users();
    let (a, b) = two_sidecars(&redis, &[]);
    ok(&redis.conn().cmd_str(&["SET", "app:1", "v"]), "SET");
    // The bus works: the full user's INVALIDATE on A evicts B's entry.
    cached(&b, "weak", "app:1");
    let mut full = auth(a.conn(), "full");
    int_reply(&full.cmd_str(&["NEARCACHE", "INVALIDATE", "app:*"]));
    poll_until(WAIT, "B evicted app:1", || !is_hit(&b, "weak", "app:1"));

    cached(&b, "weak", "app:1");
    let received =
        |s: &Sidecar| info_u64(&info(s, "nearcache_invalidation"), "bus_received_patterns");
    let before = received(&b);
    let mut weak = auth(a.conn(), "weak");
    let mut direct = auth(Conn::connect(redis.addr()), "weak");
    let refused = direct.cmd_str(&["PUBLISH", "nearcache:invalidate", "x"]);
    assert!(refused.starts_with(b"-NOPERM"), "{}", show(&refused));
    for args in [
        &["NEARCACHE", "INVALIDATE", "*"][..],
        &["NEARCACHE", "FLUSH", "ALL"],
        &["NEARCACHE", "DELPATTERN", "app:*"],
    ] {
        assert_reply(
            &weak.cmd_str(args),
            &refused,
            &format!("{args:?} as Redis refuses PUBLISH"),
        );
    }
    assert_eq!(
        int_reply(&redis.conn().cmd_str(&["EXISTS", "app:1"])),
        1,
        "DELPATTERN deleted nothing"
    );
    // A later message of the full user arrives after anything the weak one sent.
    int_reply(&full.cmd_str(&["NEARCACHE", "INVALIDATE", "marker:*"]));
    poll_until(WAIT, "B received the marker", || received(&b) == before + 1);
    assert!(is_hit(&b, "weak", "app:1"), "B's L1 still serves app:1");
    // A's own L1 kept it too (nothing is evicted when refused).
    cached(&a, "weak", "app:1");
    assert_reply(
        &weak.cmd_str(&["NEARCACHE", "INVALIDATE", "app:*"]),
        &refused,
        "again",
    );
    assert!(is_hit(&a, "weak", "app:1"), "A's L1 still serves app:1");
}

#[test]
fn hotkeys_lists_only_keys_the_clients_user_may_read() {
    let redis = redis_with_users();
    let (a, _b) = two_sidecars(&redis, &[]);
    let mut direct = redis.conn();
    ok(
        &direct.cmd_str(&["MSET", "app:hot", "1", "secret:hot", "2"]),
        "MSET",
    );
    let mut admin = auth(a.conn(), "admin");
    for _ in 0..400 {
        admin.cmd_str(&["GET", "secret:hot"]);
        admin.cmd_str(&["GET", "app:hot"]);
    }
    let all = admin.cmd_str(&["NEARCACHE", "HOTKEYS", "50"]);
    assert!(
        contains(&all, "secret:hot") && contains(&all, "app:hot"),
        "{}",
        show(&all)
    );
    let mut weak = auth(a.conn(), "weak");
    let shown = weak.cmd_str(&["NEARCACHE", "HOTKEYS", "50"]);
    assert!(contains(&shown, "app:hot"), "{}", show(&shown));
    assert!(!contains(&shown, "secret"), "{}", show(&shown));
    assert!(
        shown.starts_with(b"*2\r\n"),
        "one key and its count: {}",
        show(&shown)
    );
}

#[test]
fn slowlog_shows_a_user_its_own_calls_unless_it_may_run_slowlog() {
    let redis = redis_with_users();
    let (a, _b) = two_sidecars(&redis, &["--slow-threshold", "0"]);
    let mut weak = auth(a.conn(), "weak");
    let mut full = auth(a.conn(), "full");
    let mut admin = auth(a.conn(), "admin");
    weak.cmd_str(&["EXISTS", "app:weak-call"]);
    ok(
        &full.cmd_str(&["SET", "secret:full-call", "hidden-value"]),
        "SET",
    );
    admin.cmd_str(&["EXISTS", "admin-call"]);

    let own = weak.cmd_str(&["NEARCACHE", "SLOWLOG", "GET", "-1"]);
    assert!(contains(&own, "app:weak-call"), "{}", show(&own));
    for other in ["secret:full-call", "hidden-value", "admin-call"] {
        assert!(!contains(&own, other), "{other}: {}", show(&own));
    }
    let len = int_reply(&weak.cmd_str(&["NEARCACHE", "SLOWLOG", "LEN"]));
    assert_eq!(
        len,
        own.windows(5).filter(|w| w == b"*6\r\n:").count() as i64
    );
    let theirs = full.cmd_str(&["NEARCACHE", "SLOWLOG", "GET", "-1"]);
    assert!(contains(&theirs, "hidden-value") && !contains(&theirs, "app:weak-call"));

    let every = admin.cmd_str(&["NEARCACHE", "SLOWLOG", "GET", "-1"]);
    for call in ["app:weak-call", "secret:full-call", "admin-call"] {
        assert!(contains(&every, call), "{call}: {}", show(&every));
    }
    assert!(int_reply(&admin.cmd_str(&["NEARCACHE", "SLOWLOG", "LEN"])) > len);

    // RESET needs Redis's SLOWLOG RESET, refused as Redis refuses it.
    let mut direct = auth(Conn::connect(redis.addr()), "full");
    let refused = direct.cmd_str(&["SLOWLOG", "RESET"]);
    assert!(refused.starts_with(b"-NOPERM"), "{}", show(&refused));
    assert_reply(
        &full.cmd_str(&["NEARCACHE", "SLOWLOG", "RESET"]),
        &refused,
        "RESET as full",
    );
    assert!(contains(
        &admin.cmd_str(&["NEARCACHE", "SLOWLOG", "GET", "-1"]),
        "app:weak-call"
    ));
    ok(
        &admin.cmd_str(&["NEARCACHE", "SLOWLOG", "RESET"]),
        "RESET as admin",
    );
    let after = weak.cmd_str(&["NEARCACHE", "SLOWLOG", "GET", "-1"]);
    assert!(!contains(&after, "app:weak-call"), "{}", show(&after));
}

#[test]
fn slowlog_redacts_what_redis_redacts() {
    let redis = redis_with_users();
    let (a, _b) = two_sidecars(&redis, &["--slow-threshold", "0"]);
    let mut admin = auth(a.conn(), "admin");
    admin.cmd_str(&["CONFIG", "SET", "masterauth", "master-secret"]);
    admin.cmd_str(&[
        "MIGRATE",
        "127.0.0.1",
        "1",
        "k",
        "0",
        "10",
        "AUTH",
        "migrate-secret",
    ]);
    admin.cmd_str(&[
        "MIGRATE",
        "127.0.0.1",
        "1",
        "",
        "0",
        "10",
        "AUTH2",
        "u",
        "auth2-secret",
        "KEYS",
        "k",
    ]);
    let log = admin.cmd_str(&["NEARCACHE", "SLOWLOG", "GET", "-1"]);
    for secret in ["master-secret", "migrate-secret", "auth2-secret"] {
        assert!(!contains(&log, secret), "{secret}: {}", show(&log));
    }
    assert!(
        contains(&log, "masterauth") && contains(&log, "MIGRATE"),
        "{}",
        show(&log)
    );
    assert_eq!(
        log.windows(10).filter(|w| w == b"(redacted)").count(),
        4,
        "{}",
        show(&log)
    );
    // Redis's own slow log shows them the same way.
    let mut direct = redis.conn();
    ok(
        &direct.cmd_str(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]),
        "CONFIG",
    );
    direct.cmd_str(&[
        "MIGRATE",
        "127.0.0.1",
        "1",
        "k",
        "0",
        "10",
        "AUTH",
        "migrate-secret",
    ]);
    let theirs = direct.cmd_str(&["SLOWLOG", "GET", "2"]);
    assert!(contains(&theirs, "(redacted)") && !contains(&theirs, "migrate-secret"));
}

#[test]
fn warm_runs_as_the_client_so_a_user_without_scan_gets_noperm() {
    let redis = redis_with_users();
    let (_a, b) = two_sidecars(&redis, &[]);
    // The start-up warming (asking peers for their hot keys) ends first.
    poll_until(WAIT, "the start-up warming ends", || {
        info_field(&info(&b, "nearcache_l1"), "warm_state").as_deref() != Some("running")
    });
    let mut direct = redis.conn();
    ok(
        &direct.cmd_str(&["MSET", "app:1", "a", "app:2", "b", "hidden:x", "c"]),
        "MSET",
    );
    let mut noscan = auth(b.conn(), "noscan");
    let mut as_redis = auth(Conn::connect(redis.addr()), "noscan");
    let refused = as_redis.cmd_str(&["SCAN", "0", "MATCH", "hidden:*", "COUNT", "1000"]);
    assert!(refused.starts_with(b"-NOPERM"), "{}", show(&refused));
    for pattern in ["hidden:*", "hidden:y*", "app:*"] {
        assert_reply(
            &noscan.cmd_str(&["NEARCACHE", "WARM", pattern]),
            &refused,
            pattern,
        );
    }
    // A user with SCAN warms what it may read, for itself: its next reads are hits.
    let mut weak = auth(b.conn(), "weak");
    assert_eq!(int_reply(&weak.cmd_str(&["NEARCACHE", "WARM", "app:*"])), 2);
    assert!(is_hit(&b, "weak", "app:1"), "warmed for the weak user");
    assert_eq!(
        int_reply(&weak.cmd_str(&["NEARCACHE", "WARM", "hidden:*"])),
        0
    );
}
