//! Server-assisted tracking (the default): writes made around the sidecar reach its L1
//! within a bound, and losing the control connection (killed, or silent past its heartbeat)
//! flushes and bypasses L1 until tracking is back, with every read still correct; a pooled
//! connection killed takes what it filled with it (Redis no longer tracks those keys), and
//! only that.

use std::time::{Duration, Instant};

use proto_tests::*;

/// How long a sidecar may serve a value overwritten elsewhere (generous for a loaded
/// machine; the lag measured is printed).
const BOUND: Duration = Duration::from_secs(1);

/// Polls GET `key` via `c` until it returns `want`; panics after [`BOUND`].
fn expect_within_bound(c: &mut Conn, key: &str, want: &[u8], what: &str) -> Duration {
    expect_within(c, key, want, BOUND, what)
}

fn ok(reply: &[u8], what: &str) {
    assert_reply(reply, b"+OK\r\n", what);
}

/// Reads `key` twice through `c` (the second is a hit) and checks both.
fn warm(c: &mut Conn, key: &str, want: &[u8]) {
    for _ in 0..2 {
        assert_reply(&c.cmd_str(&["GET", key]), want, &format!("warm {key}"));
    }
}

/// Prints p50/p99/max of the time from a write acknowledged to the new value served
/// (includes one GET round trip; printed, not asserted).
fn print_lags(what: &str, mut lags: Vec<Duration>) {
    lags.sort();
    let p = |q: f64| lags[((lags.len() - 1) as f64 * q) as usize];
    let max = lags[lags.len() - 1];
    println!(
        "invalidation lag, {what}: p50 {:?} p99 {:?} max {max:?}",
        p(0.5),
        p(0.99)
    );
}

fn nearcache_info(sidecar: &Sidecar) -> String {
    sidecar.conn().info(Some("nearcache"))
}

fn link(sidecar: &Sidecar) -> String {
    info_field(&nearcache_info(sidecar), "invalidation_link").unwrap_or_default()
}

#[test]
fn direct_writes_evict_within_the_bound() {
    let (redis, sidecar) = start_pair(&[]);
    assert_eq!(link(&sidecar), "up");
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    ok(
        &direct.cmd_str(&["MSET", "s", "old", "d", "old", "e", "old", "l", "old"]),
        "MSET",
    );
    for key in ["s", "d", "e", "l"] {
        warm(&mut c, key, &bulk(b"old"));
    }
    ok(&direct.cmd_str(&["SET", "s", "new"]), "SET");
    expect_within_bound(&mut c, "s", &bulk(b"new"), "direct SET");
    assert_eq!(direct.cmd_str(&["DEL", "d"]), b":1\r\n");
    expect_within_bound(&mut c, "d", b"$-1\r\n", "direct DEL");
    assert_eq!(direct.cmd_str(&["PEXPIRE", "e", "30"]), b":1\r\n");
    expect_within_bound(&mut c, "e", b"$-1\r\n", "expiry");
    let script = "redis.call('SET', KEYS[1], ARGV[1]) return 1";
    assert_eq!(
        direct.cmd_str(&["EVAL", script, "1", "l", "lua"]),
        b":1\r\n"
    );
    expect_within_bound(&mut c, "l", &bulk(b"lua"), "a Lua script");
    warm(&mut c, "s", &bulk(b"new"));
    warm(&mut c, "nil", b"$-1\r\n");
    ok(&direct.cmd_str(&["FLUSHALL"]), "FLUSHALL");
    expect_within_bound(&mut c, "s", b"$-1\r\n", "FLUSHALL");
    ok(&direct.cmd_str(&["SET", "nil", "now"]), "SET");
    expect_within_bound(&mut c, "nil", &bulk(b"now"), "a cached nil");
    let mut lags = Vec::new();
    for i in 0..200 {
        let value = format!("v{i}");
        ok(&direct.cmd_str(&["SET", "s", &value]), "SET");
        lags.push(expect_within_bound(
            &mut c,
            "s",
            &bulk(value.as_bytes()),
            "direct",
        ));
    }
    print_lags("direct write to the sidecar serving it", lags);
    let info = nearcache_info(&sidecar);
    assert!(info_u64(&info, "invalidation_messages") >= 5, "{info}");
    assert!(
        info_u64(&info, "invalidation_upstream_flushes") >= 1,
        "{info}"
    );
}

#[test]
fn a_key_cached_in_another_db_is_evicted_too() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    ok(&direct.cmd_str(&["SELECT", "3"]), "SELECT");
    ok(&direct.cmd_str(&["SET", "k", "old"]), "SET");
    ok(&c.cmd_str(&["SELECT", "3"]), "SELECT");
    warm(&mut c, "k", &bulk(b"old"));
    ok(&direct.cmd_str(&["SET", "k", "new"]), "SET");
    expect_within_bound(&mut c, "k", &bulk(b"new"), "direct SET in db 3");
}

#[test]
fn a_write_through_one_sidecar_reaches_another() {
    let redis = Redis::start();
    let a = Sidecar::start(redis.port(), &[]);
    let b = Sidecar::start(redis.port(), &[]);
    let (mut ca, mut cb) = (a.conn(), b.conn());
    ok(&ca.cmd_str(&["SET", "k", "v0"]), "SET");
    warm(&mut cb, "k", &bulk(b"v0"));
    let mut lags = Vec::new();
    for i in 1..=200 {
        let value = format!("v{i}");
        ok(&ca.cmd_str(&["SET", "k", &value]), "SET through A");
        lags.push(expect_within_bound(
            &mut cb,
            "k",
            &bulk(value.as_bytes()),
            "B",
        ));
    }
    print_lags("write through A to B serving it", lags);
    let hits = info_u64(&nearcache_info(&b), "l1_hits");
    assert!(hits > 0, "B serves from L1 between writes");
}

/// Every GET through `c` equals the same GET on Redis, for `keys`.
fn reads_match(c: &mut Conn, direct: &mut Conn, keys: &[&str]) {
    for key in keys {
        let want = direct.cmd_str(&["GET", key]);
        assert_reply(&c.cmd_str(&["GET", key]), &want, &format!("GET {key}"));
    }
}

#[test]
fn killing_the_control_connection_flushes_and_bypasses_until_it_is_back() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    let keys = ["a", "b", "c"];
    for key in keys {
        ok(&direct.cmd_str(&["SET", key, "old"]), "SET");
        warm(&mut c, key, &bulk(b"old"));
    }
    // The sidecar's control connection, by its name.
    let list = String::from_utf8(direct.cmd_str(&["CLIENT", "LIST"])).unwrap();
    let id = list
        .lines()
        .find(|l| l.contains(" name=nearcache-control "))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .unwrap_or_else(|| panic!("no control connection in CLIENT LIST:\n{list}"))
        .to_owned();
    assert_eq!(direct.cmd_str(&["CLIENT", "KILL", "ID", &id]), b":1\r\n");
    // Changed while the link may be down: no invalidation can reach the sidecar for it.
    ok(&direct.cmd_str(&["SET", "a", "changed"]), "SET");
    poll_until(Duration::from_secs(5), "the loss is counted", || {
        info_u64(&nearcache_info(&sidecar), "l1_flushes_link_lost") >= 1
    });
    reads_match(&mut c, &mut direct, &keys);
    poll_until(Duration::from_secs(5), "the link is back", || {
        link(&sidecar) == "up"
    });
    reads_match(&mut c, &mut direct, &keys);
    // Caching resumes: hits grow again, and invalidations work with the new redirect.
    let before = info_u64(&nearcache_info(&sidecar), "l1_hits");
    poll_until(Duration::from_secs(5), "hits again", || {
        reads_match(&mut c, &mut direct, &keys);
        info_u64(&nearcache_info(&sidecar), "l1_hits") > before
    });
    ok(&direct.cmd_str(&["SET", "b", "after"]), "SET");
    expect_within_bound(&mut c, "b", &bulk(b"after"), "direct SET after reconnect");
}

#[test]
fn a_silent_control_connection_is_detected_within_two_heartbeats() {
    let (redis, sidecar) = start_pair(&["--invalidation-heartbeat", "200ms"]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    ok(&direct.cmd_str(&["SET", "k", "old"]), "SET");
    warm(&mut c, "k", &bulk(b"old"));
    let paused = Instant::now();
    ok(
        &direct.cmd_str(&["CLIENT", "PAUSE", "1500", "ALL"]),
        "PAUSE",
    );
    let mut info = sidecar.conn();
    poll_until(Duration::from_secs(1), "the silence is detected", || {
        info_field(&info.info(Some("nearcache")), "invalidation_link").as_deref() == Some("down")
    });
    println!("silence detected after {:?}", paused.elapsed());
    // Reads wait for the pause to end and are then correct.
    ok(&direct.cmd_str(&["SET", "k", "new"]), "SET after the pause");
    reads_match(&mut c, &mut direct, &["k"]);
    poll_until(Duration::from_secs(5), "the link is back", || {
        link(&sidecar) == "up"
    });
    reads_match(&mut c, &mut direct, &["k"]);
}

#[test]
fn tracking_off_turns_no_tracking_on() {
    let (redis, sidecar) = start_pair(&["--tracking", "off"]);
    let mut c = sidecar.conn();
    ok(&c.cmd_str(&["SET", "k", "v"]), "SET");
    warm(&mut c, "k", &bulk(b"v"));
    let info = nearcache_info(&sidecar);
    assert_eq!(info_field(&info, "tracking").as_deref(), Some("off"));
    // The control connection still carries the invalidation bus.
    assert_eq!(
        info_field(&info, "invalidation_link").as_deref(),
        Some("up")
    );
    assert_eq!(
        info_field(&info, "bus_publishes_keys").as_deref(),
        Some("1")
    );
    assert!(info_u64(&info, "l1_hits") >= 1, "{info}");
    let tracking = redis.conn().cmd_str(&["INFO", "stats"]);
    let tracking = String::from_utf8_lossy(&tracking).into_owned();
    assert_eq!(info_u64(&tracking, "tracking_total_keys"), 0, "{tracking}");
}

#[test]
fn resp3_clients_are_tracked_too() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    c.hello3();
    ok(&direct.cmd_str(&["SET", "k", "old"]), "SET");
    warm(&mut c, "k", &bulk(b"old"));
    assert!(info_u64(&nearcache_info(&sidecar), "l1_hits") >= 1);
    ok(&direct.cmd_str(&["SET", "k", "new"]), "SET");
    expect_within_bound(&mut c, "k", &bulk(b"new"), "direct SET, RESP3 client");
}

#[test]
fn a_user_that_may_not_track_is_never_answered_from_l1() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let rules = [
        "ACL", "SETUSER", "plain", "on", ">pw", "~*", "+get", "+pttl", "+ping",
    ];
    ok(&direct.cmd_str(&rules), "ACL SETUSER");
    ok(&direct.cmd_str(&["SET", "k", "old"]), "SET");
    let mut c = sidecar.conn();
    ok(&c.cmd_str(&["AUTH", "plain", "pw"]), "AUTH");
    for _ in 0..3 {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"old"), "GET");
    }
    ok(&direct.cmd_str(&["SET", "k", "new"]), "SET");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"new"), "GET at once");
    assert_eq!(info_u64(&nearcache_info(&sidecar), "l1_hits"), 0);
    poll_until(Duration::from_secs(5), "the refusal is logged", || {
        sidecar.stderr().contains("refused CLIENT TRACKING")
    });
}

#[test]
fn answered_heartbeats_keep_the_link_up() {
    let (_redis, sidecar) = start_pair(&["--invalidation-heartbeat", "50ms"]);
    let started = Instant::now();
    let mut c = sidecar.conn();
    while started.elapsed() < Duration::from_millis(600) {
        assert_eq!(c.cmd_str(&["PING"]), b"+PONG\r\n");
    }
    let info = nearcache_info(&sidecar);
    assert_eq!(
        info_field(&info, "invalidation_link").as_deref(),
        Some("up")
    );
    assert_eq!(info_u64(&info, "l1_flushes_link_lost"), 0, "{info}");
}

/// Redis tracking reports nothing for `SWAPDB`: the sidecar that forwards one tells every
/// other sidecar to flush over the bus, so none serves a swapped database's old values.
#[test]
fn swapdb_through_one_sidecar_reaches_another() {
    let redis = Redis::start();
    let a = Sidecar::start(redis.port(), &[]);
    let b = Sidecar::start(redis.port(), &[]);
    let mut direct = redis.conn();
    ok(&direct.cmd_str(&["SET", "k", "zero"]), "SET in db 0");
    ok(&direct.cmd_str(&["SELECT", "1"]), "SELECT");
    ok(&direct.cmd_str(&["SET", "k", "one"]), "SET in db 1");
    let conns = |s: &Sidecar| {
        let (db0, mut db1) = (s.conn(), s.conn());
        ok(&db1.cmd_str(&["SELECT", "1"]), "SELECT");
        (db0, db1)
    };
    let (mut a0, mut a1) = conns(&a);
    let (mut b0, mut b1) = conns(&b);
    for (c0, c1) in [(&mut a0, &mut a1), (&mut b0, &mut b1)] {
        warm(c0, "k", &bulk(b"zero"));
        warm(c1, "k", &bulk(b"one"));
    }
    let hits = info_u64(&nearcache_info(&b), "l1_hits");
    assert!(hits >= 2, "B serves both databases from L1 ({hits} hits)");
    ok(&a0.cmd_str(&["SWAPDB", "0", "1"]), "SWAPDB through A");
    assert_reply(&a0.cmd_str(&["GET", "k"]), &bulk(b"one"), "A, db 0");
    assert_reply(&a1.cmd_str(&["GET", "k"]), &bulk(b"zero"), "A, db 1");
    expect_within_bound(&mut b0, "k", &bulk(b"one"), "B, db 0 after SWAPDB");
    expect_within_bound(&mut b1, "k", &bulk(b"zero"), "B, db 1 after SWAPDB");
    // In a transaction (A's own connection), swapped back.
    warm(&mut b0, "k", &bulk(b"one"));
    warm(&mut b1, "k", &bulk(b"zero"));
    ok(&a0.cmd_str(&["MULTI"]), "MULTI");
    assert_reply(&a0.cmd_str(&["SWAPDB", "0", "1"]), b"+QUEUED\r\n", "queued");
    assert_reply(&a0.cmd_str(&["EXEC"]), b"*1\r\n+OK\r\n", "EXEC");
    expect_within_bound(&mut b0, "k", &bulk(b"zero"), "B, db 0 after MULTI SWAPDB");
    expect_within_bound(&mut b1, "k", &bulk(b"one"), "B, db 1 after MULTI SWAPDB");
}

#[test]
fn a_killed_pooled_connection_ends_only_what_it_filled() {
    // Databases 0 and 1 are routes of their own: each has its own pooled connection.
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    ok(&direct.cmd_str(&["SET", "zero", "v0"]), "SET in db 0");
    ok(&direct.cmd_str(&["SELECT", "1"]), "SELECT 1");
    ok(&direct.cmd_str(&["SET", "one", "v1"]), "SET in db 1");
    let mut zero = sidecar.conn();
    let mut one = sidecar.conn();
    ok(
        &one.cmd_str(&["SELECT", "1"]),
        "SELECT 1 through the sidecar",
    );
    let hits = || info_u64(&nearcache_info(&sidecar), "l1_hits");
    let hit = |c: &mut Conn, key: &str, want: &[u8]| {
        let before = hits();
        assert_reply(&c.cmd_str(&["GET", key]), want, key);
        hits() == before + 1
    };
    poll_until(Duration::from_secs(5), "both keys are hits", || {
        hit(&mut zero, "zero", &bulk(b"v0")) & hit(&mut one, "one", &bulk(b"v1"))
    });
    // The db 1 connection is killed: Redis forgets what was read through it (redis#11767).
    let own = int_reply(&direct.cmd_str(&["CLIENT", "ID"])).to_string();
    let list = bulk_reply(&direct.cmd_str(&["CLIENT", "LIST"])).expect("CLIENT LIST");
    let ids: Vec<String> = String::from_utf8_lossy(&list)
        .lines()
        .filter(|l| l.contains(" db=1 ") && !l.contains(" name=nearcache-control "))
        .filter_map(|l| l.strip_prefix("id=")?.split(' ').next().map(String::from))
        .filter(|id| *id != own)
        .collect();
    assert!(
        !ids.is_empty(),
        "no pooled connection in db 1:\n{}",
        show(&list)
    );
    let closed = info_u64(&nearcache_info(&sidecar), "l1_connections_closed");
    for id in &ids {
        assert_reply(
            &direct.cmd_str(&["CLIENT", "KILL", "ID", id]),
            b":1\r\n",
            "KILL",
        );
    }
    // The sidecar reads the close (a write made before it does is the window of a
    // server-side close, as for any loss of tracking).
    poll_until(Duration::from_secs(5), "the close is seen", || {
        info_u64(&nearcache_info(&sidecar), "l1_connections_closed") > closed
    });
    // What it filled is fetched again, not served (a direct write is seen at once)...
    ok(&direct.cmd_str(&["SET", "one", "changed"]), "SET in db 1");
    let gets = commandstat_calls(&redis, "get");
    assert_reply(&one.cmd_str(&["GET", "one"]), &bulk(b"changed"), "GET one");
    assert!(commandstat_calls(&redis, "get") > gets, "fetched again");
    // ... while what the other connection filled is still a hit.
    assert!(hit(&mut zero, "zero", &bulk(b"v0")), "db 0's entry stays");
    poll_until(
        Duration::from_secs(5),
        "a hit again after the refill",
        || hit(&mut one, "one", &bulk(b"changed")),
    );
}

#[test]
fn reads_that_fill_nothing_leave_no_tracking_state_upstream() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    ok(&direct.cmd_str(&["SET", "cached", "v"]), "SET");
    assert_eq!(int_reply(&direct.cmd_str(&["HSET", "h", "f", "x"])), 1);
    let mut c = sidecar.conn();
    warm(&mut c, "cached", &bulk(b"v"));
    assert_eq!(tracked_keys(&redis), 1, "the key L1 holds is tracked");
    // Reads that fill nothing, pipelined around a hit and each other: every client gets
    // its own reply, none the `+OK` of the `CLIENT CACHING no` before it.
    let reads: [&[&str]; 6] = [
        &["HGET", "h", "f"],
        &["GET", "cached"],
        &["EXISTS", "e1", "e2"],
        &["HGET", "h", "f"],
        &["TYPE", "h"],
        &["STRLEN", "s1"],
    ];
    for round in 0..2 {
        let replies = send_pipeline(&mut c, &reads);
        let want: [&[u8]; 6] = [
            b"$1\r\nx\r\n",
            b"$1\r\nv\r\n",
            b":0\r\n",
            b"$1\r\nx\r\n",
            b"+hash\r\n",
            b":0\r\n",
        ];
        for ((reply, want), args) in replies.iter().zip(want).zip(reads) {
            assert_reply(reply, want, &format!("round {round}: {args:?}"));
        }
    }
    assert_eq!(
        tracked_keys(&redis),
        1,
        "HGET, EXISTS, TYPE and STRLEN left no tracked key"
    );
    // A write to a key only forwarded reads touched costs Redis no invalidation message;
    // one to the cached key still does, and arrives after (in order on the link).
    let messages = |s: &Sidecar| info_u64(&nearcache_info(s), "invalidation_messages");
    let before = messages(&sidecar);
    assert_eq!(int_reply(&direct.cmd_str(&["HSET", "h", "f", "y"])), 0);
    ok(&direct.cmd_str(&["SET", "cached", "v2"]), "SET cached v2");
    expect_within_bound(&mut c, "cached", &bulk(b"v2"), "the cached key's write");
    assert_eq!(
        messages(&sidecar),
        before + 1,
        "one message: the cached key's"
    );
    assert_reply(
        &c.cmd_str(&["HGET", "h", "f"]),
        b"$1\r\ny\r\n",
        "HGET after HSET",
    );
}

#[test]
fn with_tracking_off_reads_go_without_the_caching_prefix() {
    let (redis, sidecar) = start_pair(&["--tracking", "off"]);
    let mut monitor = Monitor::start(&redis);
    let mut c = sidecar.conn();
    assert_eq!(int_reply(&c.cmd_str(&["EXISTS", "e1"])), 0);
    let executed = monitor.take();
    assert!(executed.iter().any(|e| e.is("exists")), "{executed:?}");
    let caching = |e: &Executed| e.is("client") && e.args[1..].iter().any(|a| a == "CACHING");
    assert!(!executed.iter().any(caching), "{executed:?}");
}
