//! The invalidation bus: patterns, flushes and (with tracking off) written keys travel from
//! one sidecar to every other over a pub/sub channel; a foreign publisher can use it too; a
//! gap in a peer's sequence flushes L1. Every sidecar here runs `--tracking off`, so values
//! changed straight on Redis are seen through a sidecar only when the bus evicts them.

use std::time::Duration;

use proto_tests::*;

/// How long a message may take to reach every sidecar (generous for a loaded machine).
const BOUND: Duration = Duration::from_secs(2);

const CHANNEL: &str = "nearcache:invalidate";

fn ok(reply: &[u8], what: &str) {
    assert_reply(reply, b"+OK\r\n", what);
}

fn three_untracked(redis: &Redis) -> [Sidecar; 3] {
    [(); 3].map(|_| untracked(redis, &[]))
}

/// A sidecar with `--tracking off`, once it is subscribed to the bus.
fn untracked(redis: &Redis, extra: &[&str]) -> Sidecar {
    let args = [&["--tracking", "off"][..], extra].concat();
    let sidecar = Sidecar::start(redis.port(), &args);
    poll_until(Duration::from_secs(5), "subscribed to the bus", || {
        info_field(&bus_info(&sidecar), "bus").as_deref() == Some("subscribed")
    });
    sidecar
}

fn bus_info(sidecar: &Sidecar) -> String {
    sidecar.conn().info(Some("nearcache_invalidation"))
}

fn hits(sidecar: &Sidecar) -> u64 {
    info_u64(&sidecar.conn().info(Some("nearcache")), "l1_hits")
}

/// Reads `key` through `sidecar` until it is in L1 (a read counted as a hit returns
/// `want`).
/// (A bus message about an earlier write of `key` may still arrive and evict the first
/// fill: the reads are repeated until one is a hit.)
fn warm(sidecar: &Sidecar, key: &str, want: &[u8]) {
    let mut c = sidecar.conn();
    poll_until(
        Duration::from_secs(5),
        &format!("{key} to be a hit"),
        || {
            assert_reply(&c.cmd_str(&["GET", key]), want, "first read");
            let before = hits(sidecar);
            assert_reply(&c.cmd_str(&["GET", key]), want, "second read");
            hits(sidecar) == before + 1
        },
    );
}

/// `key` read through `sidecar` is `want` within [`BOUND`].
fn expect_soon(sidecar: &Sidecar, key: &str, want: &[u8], what: &str) {
    let mut c = sidecar.conn();
    poll_until(BOUND, what, || c.cmd_str(&["GET", key]) == want);
}

/// Warms `user:1` (value `old`) on B and C, then changes it straight on Redis to `new`:
/// B and C still serve `old` (nothing but the bus can evict it).
fn stale_on_b_and_c(redis: &Redis, b: &Sidecar, c: &Sidecar) {
    let mut direct = redis.conn();
    ok(&direct.cmd_str(&["SET", "user:1", "old"]), "SET");
    warm(b, "user:1", &bulk(b"old"));
    warm(c, "user:1", &bulk(b"old"));
    ok(
        &direct.cmd_str(&["SET", "user:1", "new"]),
        "SET around the sidecars",
    );
    for s in [b, c] {
        assert_reply(
            &s.conn().cmd_str(&["GET", "user:1"]),
            &bulk(b"old"),
            "served from L1",
        );
    }
}

#[test]
fn invalidate_on_one_sidecar_evicts_on_the_others() {
    let redis = Redis::start();
    let [a, b, c] = three_untracked(&redis);
    stale_on_b_and_c(&redis, &b, &c);
    let reply = a.conn().cmd_str(&["NEARCACHE", "INVALIDATE", "user:*"]);
    assert_reply(&reply, b":0\r\n", "nothing to evict on A");
    expect_soon(&b, "user:1", &bulk(b"new"), "B evicted user:1");
    expect_soon(&c, "user:1", &bulk(b"new"), "C evicted user:1");
    let info = bus_info(&a);
    assert_eq!(info_u64(&info, "bus_sent_patterns"), 1, "{info}");
    // Its own pattern message, and its own start-up ask for peers' hot keys (warming).
    let own = 1 + info_u64(&info, "bus_hot_asks_sent");
    assert_eq!(info_u64(&info, "bus_own_messages_skipped"), own, "{info}");
    let info = bus_info(&b);
    assert_eq!(info_u64(&info, "bus_received_patterns"), 1, "{info}");
    assert_eq!(info_u64(&info, "bus_sequence_gaps"), 0, "{info}");
}

#[test]
fn delpattern_on_one_sidecar_evicts_on_the_others() {
    let redis = Redis::start();
    let [a, b, c] = three_untracked(&redis);
    stale_on_b_and_c(&redis, &b, &c);
    let reply = a.conn().cmd_str(&["NEARCACHE", "DELPATTERN", "user:*"]);
    assert_reply(&reply, b":1\r\n", "one key deleted");
    expect_soon(&b, "user:1", b"$-1\r\n", "B evicted user:1");
    expect_soon(&c, "user:1", b"$-1\r\n", "C evicted user:1");
}

#[test]
fn flush_all_on_one_sidecar_flushes_the_others() {
    let redis = Redis::start();
    let [a, b, c] = three_untracked(&redis);
    stale_on_b_and_c(&redis, &b, &c);
    ok(
        &a.conn().cmd_str(&["NEARCACHE", "FLUSH", "ALL"]),
        "FLUSH ALL",
    );
    expect_soon(&b, "user:1", &bulk(b"new"), "B flushed");
    expect_soon(&c, "user:1", &bulk(b"new"), "C flushed");
    assert_eq!(info_u64(&bus_info(&b), "l1_flushes_bus"), 1);
}

#[test]
fn untracked_writes_through_one_sidecar_reach_the_others() {
    let redis = Redis::start();
    let [a, b, c] = three_untracked(&redis);
    let mut ca = a.conn();
    ok(&ca.cmd_str(&["SET", "k", "v0"]), "SET");
    warm(&b, "k", &bulk(b"v0"));
    warm(&c, "k", &bulk(b"v0"));
    for i in 1..=20 {
        let value = format!("v{i}");
        ok(&ca.cmd_str(&["SET", "k", &value]), "SET through A");
        expect_soon(&b, "k", &bulk(value.as_bytes()), "B sees the write");
        expect_soon(&c, "k", &bulk(value.as_bytes()), "C sees the write");
    }
    // Another database and a multi-key write.
    ok(&ca.cmd_str(&["SELECT", "2"]), "SELECT");
    ok(&ca.cmd_str(&["MSET", "x", "1", "y", "1"]), "MSET");
    let mut cb = b.conn();
    ok(&cb.cmd_str(&["SELECT", "2"]), "SELECT");
    for _ in 0..2 {
        assert_reply(&cb.cmd_str(&["GET", "x"]), &bulk(b"1"), "warm x");
    }
    ok(&ca.cmd_str(&["MSET", "x", "2", "y", "2"]), "MSET");
    poll_until(BOUND, "B sees x in db 2", || {
        cb.cmd_str(&["GET", "x"]) == bulk(b"2")
    });
    let info = bus_info(&a);
    assert_eq!(
        info_field(&info, "bus_publishes_keys").as_deref(),
        Some("1")
    );
    assert!(info_u64(&info, "bus_sent_keys") >= 22, "{info}");
    let info = bus_info(&b);
    assert!(info_u64(&info, "bus_received_keys") >= 22, "{info}");
    assert!(hits(&b) > 0);
}

#[test]
fn tracked_sidecars_publish_no_keys() {
    let redis = Redis::start();
    let a = Sidecar::start(redis.port(), &[]);
    ok(&a.conn().cmd_str(&["SET", "k", "v"]), "SET");
    let info = bus_info(&a);
    assert_eq!(info_field(&info, "bus").as_deref(), Some("subscribed"));
    assert_eq!(
        info_field(&info, "bus_publishes_keys").as_deref(),
        Some("0")
    );
    assert_eq!(info_u64(&info, "bus_sent_keys"), 0, "{info}");
}

#[test]
fn a_foreign_publisher_evicts_patterns_keys_and_everything() {
    let redis = Redis::start();
    let [_a, b, c] = three_untracked(&redis);
    let mut direct = redis.conn();
    stale_on_b_and_c(&redis, &b, &c);
    let n = direct.cmd_str(&["PUBLISH", CHANNEL, "v1 - - - P 6:user:*"]);
    assert_reply(&n, b":3\r\n", "three subscribers");
    expect_soon(&b, "user:1", &bulk(b"new"), "B evicted the pattern");
    expect_soon(&c, "user:1", &bulk(b"new"), "C evicted the pattern");

    // A binary key, in db 0 then in every db.
    let key = "a b\r\n";
    ok(&direct.cmd_str(&["SET", key, "old"]), "SET");
    warm(&b, key, &bulk(b"old"));
    ok(&direct.cmd_str(&["SET", key, "new"]), "SET");
    direct.cmd_str(&["PUBLISH", CHANNEL, "v1 - - - K 0 5:a b\r\n"]);
    expect_soon(&b, key, &bulk(b"new"), "B evicted the key");
    warm(&c, key, &bulk(b"new"));
    ok(&direct.cmd_str(&["SET", key, "newer"]), "SET");
    direct.cmd_str(&["PUBLISH", CHANNEL, "v1 - - 1700000000000 K * 5:a b\r\n"]);
    expect_soon(&c, key, &bulk(b"newer"), "C evicted the key everywhere");
    assert!(info_u64(&bus_info(&c), "bus_lag_max_ms") > 0);

    ok(&direct.cmd_str(&["SET", "f", "old"]), "SET");
    warm(&b, "f", &bulk(b"old"));
    ok(&direct.cmd_str(&["SET", "f", "new"]), "SET");
    direct.cmd_str(&["PUBLISH", CHANNEL, "v1 - - - F"]);
    expect_soon(&b, "f", &bulk(b"new"), "B flushed");

    // Malformed messages are counted and change nothing.
    direct.cmd_str(&["PUBLISH", CHANNEL, "hello"]);
    poll_until(BOUND, "the malformed message is counted", || {
        info_u64(&bus_info(&c), "bus_malformed_messages") == 1
    });
    assert_eq!(info_u64(&bus_info(&c), "bus_sequence_gaps"), 0);
}

#[test]
fn a_gap_in_a_peers_sequence_flushes_l1() {
    let redis = Redis::start();
    let b = untracked(&redis, &[]);
    let mut direct = redis.conn();
    direct.cmd_str(&["PUBLISH", CHANNEL, "v1 peer 1 - K 0 1:z"]);
    direct.cmd_str(&["PUBLISH", CHANNEL, "v1 peer 2 - K 0 1:z"]);
    poll_until(BOUND, "B heard the peer", || {
        info_u64(&bus_info(&b), "bus_received_key_messages") == 2
    });
    ok(&direct.cmd_str(&["SET", "k", "old"]), "SET");
    warm(&b, "k", &bulk(b"old"));
    ok(&direct.cmd_str(&["SET", "k", "new"]), "SET");
    // Message 3 was lost: B cannot know what it named.
    direct.cmd_str(&["PUBLISH", CHANNEL, "v1 peer 4 - K 0 1:z"]);
    poll_until(BOUND, "the gap is counted", || {
        let info = bus_info(&b);
        info_u64(&info, "bus_sequence_gaps") == 1 && info_u64(&info, "l1_flushes_link_lost") == 1
    });
    expect_soon(&b, "k", &bulk(b"new"), "B flushed");
    poll_until(Duration::from_secs(5), "the link is back", || {
        info_field(&bus_info(&b), "bus").as_deref() == Some("subscribed")
    });
    // A new subscription starts the peer's sequence afresh; caching resumes.
    direct.cmd_str(&["PUBLISH", CHANNEL, "v1 peer 9 - K 0 1:z"]);
    poll_until(BOUND, "caching resumes", || {
        let before = hits(&b);
        b.conn().cmd_str(&["GET", "k"]);
        hits(&b) > before
    });
    assert_eq!(info_u64(&bus_info(&b), "bus_sequence_gaps"), 1);
}

#[test]
fn the_channel_is_configurable() {
    let redis = Redis::start();
    let b = untracked(&redis, &["--invalidation-channel", "app:inv"]);
    let mut direct = redis.conn();
    ok(&direct.cmd_str(&["SET", "k", "old"]), "SET");
    warm(&b, "k", &bulk(b"old"));
    ok(&direct.cmd_str(&["SET", "k", "new"]), "SET");
    let n = direct.cmd_str(&["PUBLISH", CHANNEL, "v1 - - - F"]);
    assert_reply(&n, b":0\r\n", "nobody on the default channel");
    direct.cmd_str(&["PUBLISH", "app:inv", "v1 - - - F"]);
    expect_soon(&b, "k", &bulk(b"new"), "flushed over app:inv");
}

#[test]
fn a_user_without_channel_permission_runs_without_the_bus() {
    let redis = Redis::start();
    let mut direct = redis.conn();
    let rules = [
        "ACL",
        "SETUSER",
        "side",
        "on",
        ">pw",
        "~*",
        "resetchannels",
        "+@all",
    ];
    ok(&direct.cmd_str(&rules), "ACL SETUSER");
    let upstream = format!("redis://side:pw@127.0.0.1:{}", redis.port());
    let b = Sidecar::start_url(&upstream, &[]);
    poll_until(Duration::from_secs(5), "the refusal is logged", || {
        b.stderr().contains("running without the invalidation bus")
    });
    let info = bus_info(&b);
    assert_eq!(info_field(&info, "bus").as_deref(), Some("refused"));
    assert_eq!(
        info_field(&info, "invalidation_link").as_deref(),
        Some("up")
    );
    // Tracking still works.
    let mut c = b.conn();
    ok(&c.cmd_str(&["SET", "k", "old"]), "SET");
    warm(&b, "k", &bulk(b"old"));
    ok(&direct.cmd_str(&["SET", "k", "new"]), "SET");
    poll_until(BOUND, "tracking evicts", || {
        c.cmd_str(&["GET", "k"]) == bulk(b"new")
    });
}

#[test]
fn losing_the_subscription_flushes_untracked_l1_until_it_is_back() {
    let redis = Redis::start();
    let b = untracked(&redis, &[]);
    let mut direct = redis.conn();
    ok(&direct.cmd_str(&["SET", "k", "old"]), "SET");
    warm(&b, "k", &bulk(b"old"));
    let killed = direct.cmd_str(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_reply(&killed, b":1\r\n", "the control connection killed");
    poll_until(BOUND, "the loss is counted", || {
        info_u64(&bus_info(&b), "l1_flushes_link_lost") >= 1
    });
    // Whatever was published meanwhile is lost to B: nothing old may be served.
    ok(
        &direct.cmd_str(&["SET", "k", "new"]),
        "SET around the sidecar",
    );
    assert_reply(
        &b.conn().cmd_str(&["GET", "k"]),
        &bulk(b"new"),
        "no stale read",
    );
    poll_until(Duration::from_secs(5), "the subscription is back", || {
        info_field(&bus_info(&b), "bus").as_deref() == Some("subscribed")
    });
    poll_until(BOUND, "caching resumes", || {
        let before = hits(&b);
        b.conn().cmd_str(&["GET", "k"]);
        hits(&b) > before
    });
}
