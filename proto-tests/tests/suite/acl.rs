//! Command-level ACL rules and L1: a value cached for a user is served only by a command
//! that user may run, and a revoked command gets Redis's own `-NOPERM` — at once when the
//! rule changes through the sidecar, within `--acl-recheck` when it changes on Redis.

use std::time::Duration;

use proto_tests::*;

/// Long enough for a loaded machine; the check polls and returns as soon as it holds.
const RECHECK_WAIT: Duration = Duration::from_secs(10);

fn ok(reply: &[u8], what: &str) {
    assert_reply(reply, b"+OK\r\n", what);
}

/// `ACL SETUSER name rules...` on a direct connection (`+ping`: the sidecar's upstream
/// connections check themselves with PING; `+client|tracking`: they fill L1 only once
/// Redis tracks what they read).
fn set_user(redis: &Redis, name: &str, rules: &[&str]) {
    let mut args = vec!["ACL", "SETUSER", name, "+ping", "+client|tracking"];
    args.extend_from_slice(rules);
    ok(&redis.conn().cmd_str(&args), &format!("{args:?}"));
}

/// `c` authenticated as `user` (password `pw`).
fn auth(mut c: Conn, user: &str) -> Conn {
    ok(&c.cmd_str(&["AUTH", user, "pw"]), &format!("AUTH {user}"));
    c
}

/// A direct connection to Redis authenticated as `user`: what the sidecar must answer.
fn direct_as(redis: &Redis, user: &str) -> Conn {
    auth(Conn::connect(redis.addr()), user)
}

fn l1_hits(sidecar: &Sidecar) -> u64 {
    info_u64(&sidecar.conn().info(Some("nearcache")), "l1_hits")
}

fn assert_noperm(direct: &mut Conn, proxied: &mut Conn, args: &[&str]) {
    let reply = assert_same_reply(direct, proxied, &encode_command_str(args));
    assert!(reply.starts_with(b"-NOPERM"), "{args:?}: {}", show(&reply));
}

/// The three users of the command-level tests, and `k` = `v`.
fn users(redis: &Redis) {
    set_user(
        redis,
        "getonly",
        &["on", ">pw", "~*", "+get", "+pttl", "+set", "-mget"],
    );
    set_user(
        redis,
        "mgetonly",
        &["on", ">pw", "~*", "+mget", "+pttl", "-get"],
    );
    set_user(
        redis,
        "both",
        &["on", ">pw", "~*", "+get", "+mget", "+pttl"],
    );
    ok(&redis.conn().cmd_str(&["SET", "k", "v"]), "SET k v");
}

#[test]
fn a_value_cached_by_get_is_not_served_to_mget_without_mget() {
    let (redis, sidecar) = start_pair(&["--acl-recheck", "0"]);
    users(&redis);
    let mut c = auth(sidecar.conn(), "getonly");
    let mut direct = direct_as(&redis, "getonly");
    for i in 0..3 {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), &format!("GET {i}"));
    }
    // Hits through the hot path, the parsed path and pipelined behind each other.
    assert!(l1_hits(&sidecar) >= 2, "GET is served from L1");
    for _ in 0..2 {
        assert_noperm(&mut direct, &mut c, &["MGET", "k"]);
        assert_noperm(&mut direct, &mut c, &["MGET", "k", "other"]);
    }
    // Another connection of the same user, pipelined.
    let mut c2 = auth(sidecar.conn(), "getonly");
    let request = [
        encode_command_str(&["GET", "k"]),
        encode_command_str(&["MGET", "k"]),
        encode_command_str(&["GET", "k"]),
    ]
    .concat();
    assert_same_replies(&mut direct, &mut c2, &request, 3);
}

#[test]
fn a_value_cached_by_mget_is_not_served_to_get_without_get() {
    let (redis, sidecar) = start_pair(&["--acl-recheck", "0"]);
    users(&redis);
    let mut c = auth(sidecar.conn(), "mgetonly");
    let mut direct = direct_as(&redis, "mgetonly");
    let want = b"*1\r\n$1\r\nv\r\n";
    for i in 0..3 {
        assert_reply(&c.cmd_str(&["MGET", "k"]), want, &format!("MGET {i}"));
    }
    assert!(l1_hits(&sidecar) >= 2, "MGET is served from L1");
    for _ in 0..2 {
        assert_noperm(&mut direct, &mut c, &["GET", "k"]);
    }
    assert_reply(&c.cmd_str(&["MGET", "k"]), want, "MGET still served");
}

#[test]
fn a_user_allowed_both_gets_hits_from_both() {
    let (redis, sidecar) = start_pair(&["--acl-recheck", "0"]);
    users(&redis);
    let mut c = auth(sidecar.conn(), "both");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "first GET (miss)");
    // The first MGET asks the upstream once (it has not run MGET for this user yet).
    let want = b"*1\r\n$1\r\nv\r\n";
    assert_reply(&c.cmd_str(&["MGET", "k"]), want, "first MGET");
    reset_stats(&redis);
    let hits = l1_hits(&sidecar);
    for i in 0..5 {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), &format!("GET {i}"));
        assert_reply(&c.cmd_str(&["MGET", "k"]), want, &format!("MGET {i}"));
    }
    assert_eq!(l1_hits(&sidecar) - hits, 10, "every GET and MGET is a hit");
    assert_eq!(commandstat_calls(&redis, "get"), 0, "no upstream GET");
    assert_eq!(commandstat_calls(&redis, "mget"), 0, "no upstream MGET");
}

#[test]
fn mget_without_permission_answers_nothing_from_l1_even_when_all_keys_hit() {
    let (redis, sidecar) = start_pair(&["--acl-recheck", "0"]);
    users(&redis);
    let mut c = auth(sidecar.conn(), "getonly");
    let mut direct = direct_as(&redis, "getonly");
    ok(&redis.conn().cmd_str(&["SET", "j", "w"]), "SET j w");
    for key in ["k", "j", "missing"] {
        for _ in 0..2 {
            assert_same_reply(&mut direct, &mut c, &encode_command_str(&["GET", key]));
        }
    }
    assert_noperm(&mut direct, &mut c, &["MGET", "k", "j", "missing"]);
    assert_noperm(&mut direct, &mut c, &["MGET", "missing"]);
}

#[test]
fn acl_change_through_the_sidecar_is_honoured_at_once() {
    let (redis, sidecar) = start_pair(&["--acl-recheck", "0"]);
    set_user(&redis, "u", &["on", ">pw", "~*", "+get", "+pttl"]);
    ok(&redis.conn().cmd_str(&["SET", "k", "v"]), "SET k v");
    let mut c = auth(sidecar.conn(), "u");
    let mut direct = direct_as(&redis, "u");
    let mut admin = sidecar.conn();
    for _ in 0..2 {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET (cached)");
    }

    ok(
        &admin.cmd_str(&["ACL", "SETUSER", "u", "-get"]),
        "revoke GET",
    );
    assert_noperm(&mut direct, &mut c, &["GET", "k"]);

    ok(
        &admin.cmd_str(&["ACL", "SETUSER", "u", "+get"]),
        "grant GET",
    );
    for _ in 0..2 {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET (cached again)");
    }
    // Narrower key patterns take effect too: what was cached is dropped.
    ok(
        &admin.cmd_str(&["ACL", "SETUSER", "u", "resetkeys", "~other:*"]),
        "narrow keys",
    );
    assert_noperm(&mut direct, &mut c, &["GET", "k"]);

    ok(&admin.cmd_str(&["ACL", "SETUSER", "u", "~*"]), "widen keys");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET again");
    assert_reply(
        &admin.cmd_str(&["ACL", "DELUSER", "u"]),
        b":1\r\n",
        "delete the user",
    );
    let reply = c.cmd_str(&["GET", "k"]);
    assert!(
        reply.starts_with(b"-"),
        "a deleted user's GET is not served from L1: {}",
        show(&reply)
    );
}

#[test]
fn acl_change_made_on_redis_is_honoured_after_the_recheck_interval() {
    let (redis, sidecar) = start_pair(&["--acl-recheck", "200ms"]);
    set_user(&redis, "u", &["on", ">pw", "~*", "+get", "+mget", "+pttl"]);
    ok(&redis.conn().cmd_str(&["SET", "k", "v"]), "SET k v");
    let mut c = auth(sidecar.conn(), "u");
    let mut direct = direct_as(&redis, "u");
    for _ in 0..2 {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET (cached)");
        assert_reply(&c.cmd_str(&["MGET", "k"]), b"*1\r\n$1\r\nv\r\n", "MGET");
    }

    set_user(&redis, "u", &["-get"]);
    let want = direct.cmd_str(&["GET", "k"]);
    assert!(want.starts_with(b"-NOPERM"), "direct: {}", show(&want));
    poll_until(RECHECK_WAIT, "GET gets NOPERM through the sidecar", || {
        let got = c.cmd_str(&["GET", "k"]);
        assert!(
            got == want || got == bulk(b"v"),
            "the value or Redis's error: {}",
            show(&got)
        );
        got == want
    });
    assert_noperm(&mut direct, &mut c, &["GET", "k"]);
    assert_reply(
        &c.cmd_str(&["MGET", "k"]),
        b"*1\r\n$1\r\nv\r\n",
        "MGET still allowed",
    );
}

#[test]
fn the_sidecars_own_user_is_rechecked_too() {
    let redis = Redis::start();
    set_user(&redis, "app", &["on", ">pw", "~*", "+@all"]);
    ok(&redis.conn().cmd_str(&["SET", "k", "v"]), "SET k v");
    let url = format!("redis://app:pw@127.0.0.1:{}", redis.port());
    let sidecar = Sidecar::start_url(&url, &["--acl-recheck", "200ms"]);
    let mut c = sidecar.conn();
    let mut direct = direct_as(&redis, "app");
    for _ in 0..2 {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET (cached)");
        assert_reply(&c.cmd_str(&["MGET", "k"]), b"*1\r\n$1\r\nv\r\n", "MGET");
    }

    // Through the sidecar: at once.
    ok(
        &c.cmd_str(&["ACL", "SETUSER", "app", "-mget"]),
        "revoke MGET",
    );
    assert_noperm(&mut direct, &mut c, &["MGET", "k"]);
    for _ in 0..2 {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET (cached again)");
    }

    // On Redis: after the recheck.
    set_user(&redis, "app", &["-get"]);
    let want = direct.cmd_str(&["GET", "k"]);
    assert!(want.starts_with(b"-NOPERM"), "direct: {}", show(&want));
    poll_until(RECHECK_WAIT, "GET gets NOPERM through the sidecar", || {
        c.cmd_str(&["GET", "k"]) == want
    });
}

#[test]
fn a_user_who_may_not_pttl_is_answered_but_never_cached() {
    let (redis, sidecar) = start_pair(&["--acl-recheck", "0"]);
    set_user(
        &redis,
        "nopttl",
        &["on", ">pw", "~*", "+get", "+mget", "-pttl"],
    );
    ok(&redis.conn().cmd_str(&["SET", "k", "v"]), "SET k v");
    let mut c = auth(sidecar.conn(), "nopttl");
    reset_stats(&redis);
    for i in 0..3 {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), &format!("GET {i}"));
        assert_reply(&c.cmd_str(&["MGET", "k"]), b"*1\r\n$1\r\nv\r\n", "MGET");
    }
    assert_eq!(
        commandstat_calls(&redis, "get"),
        3,
        "every GET went upstream"
    );
    assert_eq!(
        commandstat_calls(&redis, "mget"),
        3,
        "every MGET went upstream"
    );
    assert_eq!(l1_hits(&sidecar), 0);
}

/// A user with only the commands it uses (no PING, no CLIENT TRACKING) is served as Redis
/// serves it: the sidecar's connections for it come up, its reads are answered from the
/// upstream (never cached: nothing tracks what they read), and its refusals are Redis's.
#[test]
fn a_user_without_ping_or_tracking_is_served_uncached() {
    let (redis, sidecar) = start_pair(&[]);
    let rules = ["ACL", "SETUSER", "bare", "on", ">pw", "~*", "+get", "+set"];
    ok(&redis.conn().cmd_str(&rules), "ACL SETUSER bare");
    let mut direct = direct_as(&redis, "bare");
    let mut c = auth(sidecar.conn(), "bare");
    for round in 0..3 {
        let value = format!("v{round}");
        let set = encode_command_str(&["SET", "bare:k", &value]);
        assert_same_reply(&mut direct, &mut c, &set);
        for _ in 0..2 {
            assert_reply(
                &c.cmd_str(&["GET", "bare:k"]),
                &bulk(value.as_bytes()),
                "GET as bare",
            );
        }
        redis.conn().cmd_str(&["SET", "bare:k", "elsewhere"]);
        assert_reply(
            &c.cmd_str(&["GET", "bare:k"]),
            &bulk(b"elsewhere"),
            "a write made elsewhere is seen at once",
        );
    }
    assert_noperm(&mut direct, &mut c, &["MGET", "bare:k"]);
    assert_noperm(&mut direct, &mut c, &["PING"]);
}

/// `AUTH other pw`, `ACL WHOAMI`, `RESET`, `ACL WHOAMI` on `c`: the four replies.
fn auth_then_reset(c: &mut Conn) -> Vec<Vec<u8>> {
    ["AUTH other pw", "ACL WHOAMI", "RESET", "ACL WHOAMI"]
        .iter()
        .map(|line| c.cmd_str(&line.split(' ').collect::<Vec<_>>()))
        .collect()
}

/// `RESET` makes the client Redis's `default` user, as Redis does, not the `--upstream`
/// user: authenticated when `default` is `nopass`, otherwise unauthenticated (`-NOAUTH`).
#[test]
fn reset_makes_the_client_the_default_user() {
    let redis = Redis::start();
    set_user(&redis, "app", &["on", ">pw", "~*", "&*", "+@all"]);
    set_user(&redis, "other", &["on", ">pw", "~*", "&*", "+@all"]);
    let url = format!("redis://app:pw@127.0.0.1:{}", redis.port());
    let sidecar = Sidecar::start_url(&url, &[]);
    let who = |name: &str| bulk(name.as_bytes());
    let want: [&[u8]; 4] = [b"+OK\r\n", &who("other"), b"+RESET\r\n", &who("default")];
    let (mut direct, mut proxied) = (Conn::connect(redis.addr()), sidecar.conn());
    for (got, want) in auth_then_reset(&mut proxied).iter().zip(want) {
        assert_reply(got, want, "default is nopass: through the sidecar");
    }
    assert_eq!(
        auth_then_reset(&mut direct)[3],
        who("default"),
        "Redis itself"
    );
    // `default` now needs a password: after RESET the client is not authenticated.
    let mut admin = auth(Conn::connect(redis.addr()), "app");
    ok(
        &admin.cmd_str(&["ACL", "SETUSER", "default", "resetpass", ">secret"]),
        "default needs a password",
    );
    let (mut direct, mut proxied) = (Conn::connect(redis.addr()), sidecar.conn());
    let want = auth_then_reset(&mut direct);
    assert!(want[3].starts_with(b"-NOAUTH"), "Redis: {}", show(&want[3]));
    for (got, want) in auth_then_reset(&mut proxied).iter().zip(&want) {
        assert_reply(got, want, "default needs a password: through the sidecar");
    }
    assert_reply(
        &proxied.cmd_str(&["AUTH", "other", "pw"]),
        b"+OK\r\n",
        "AUTH again after RESET",
    );
    assert_reply(
        &proxied.cmd_str(&["ACL", "WHOAMI"]),
        &who("other"),
        "WHOAMI",
    );
}

#[test]
fn a_user_refused_client_caching_is_answered_and_logged_by_redis_once() {
    let (redis, sidecar) = start_pair(&["--acl-recheck", "0"]);
    set_user(
        &redis,
        "nocaching",
        &[
            "on",
            ">pw",
            "~*",
            "+get",
            "+pttl",
            "+hget",
            "-client|caching",
        ],
    );
    assert_eq!(
        int_reply(&redis.conn().cmd_str(&["HSET", "h", "f", "x"])),
        1
    );
    let mut c = auth(sidecar.conn(), "nocaching");
    for i in 0..5 {
        let what = format!("HGET {i}");
        assert_reply(&c.cmd_str(&["HGET", "h", "f"]), b"$1\r\nx\r\n", &what);
    }
    // The first read's `CLIENT CACHING no` was refused; the next ones went without it.
    let log = redis.conn().cmd_str(&["ACL", "LOG"]);
    let text = show(&log);
    assert!(text.contains("client|caching"), "{text}");
    let once = b"$5\r\ncount\r\n:1\r\n";
    assert!(log.windows(once.len()).any(|w| w == once), "{text}");
}
