//! Writes that bypass a sidecar (direct to Redis, or through another sidecar) reach its L1
//! within a small bound, through Redis server-assisted tracking (the default).

use std::time::Duration;

use proto_tests::*;

/// How long a sidecar may serve a value that was overwritten elsewhere.
const BOUND: Duration = Duration::from_secs(2);

/// Polls GET `key` via `c` until it returns `want`; panics after [`BOUND`].
fn expect_within_bound(c: &mut Conn, key: &str, want: &[u8], what: &str) -> Duration {
    expect_within(c, key, want, BOUND, what)
}

fn warm(c: &mut Conn, key: &str, want: &[u8]) {
    for _ in 0..2 {
        assert_reply(&c.cmd_str(&["GET", key]), want, &format!("warm {key}"));
    }
}

#[test]
fn direct_writes_reach_the_sidecar_within_a_bound() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    assert_reply(
        &direct.cmd_str(&["MSET", "k", "old", "e", "old"]),
        b"+OK\r\n",
        "MSET",
    );
    warm(&mut c, "k", &bulk(b"old"));
    warm(&mut c, "nil", b"$-1\r\n");
    warm(&mut c, "e", &bulk(b"old"));

    assert_reply(
        &direct.cmd_str(&["SET", "k", "new"]),
        b"+OK\r\n",
        "direct SET",
    );
    expect_within_bound(&mut c, "k", &bulk(b"new"), "direct SET of a cached key");
    assert_reply(
        &direct.cmd_str(&["SET", "nil", "now"]),
        b"+OK\r\n",
        "direct SET",
    );
    expect_within_bound(&mut c, "nil", &bulk(b"now"), "direct SET of a cached nil");
    assert_reply(
        &direct.cmd_str(&["PEXPIRE", "e", "50"]),
        b":1\r\n",
        "direct PEXPIRE",
    );
    expect_within_bound(
        &mut c,
        "e",
        b"$-1\r\n",
        "direct PEXPIRE (key expires upstream)",
    );

    warm(&mut c, "k", &bulk(b"new"));
    assert_reply(
        &direct.cmd_str(&["FLUSHALL"]),
        b"+OK\r\n",
        "direct FLUSHALL",
    );
    expect_within_bound(&mut c, "k", b"$-1\r\n", "direct FLUSHALL");
}

#[test]
fn writes_through_another_sidecar_reach_this_one_within_a_bound() {
    let redis = Redis::start();
    let a = Sidecar::start(redis.port(), &[]);
    let b = Sidecar::start(redis.port(), &[]);
    let mut ca = a.conn();
    let mut cb = b.conn();
    assert_reply(&ca.cmd_str(&["SET", "k", "old"]), b"+OK\r\n", "SET via A");
    warm(&mut cb, "k", &bulk(b"old"));
    warm(&mut cb, "m", b"$-1\r\n");
    assert_reply(&ca.cmd_str(&["SET", "k", "new"]), b"+OK\r\n", "SET via A");
    expect_within_bound(&mut cb, "k", &bulk(b"new"), "B after SET via A");
    assert_reply(&ca.cmd_str(&["MSET", "m", "1"]), b"+OK\r\n", "MSET via A");
    expect_within_bound(
        &mut cb,
        "m",
        &bulk(b"1"),
        "B after MSET via A of a key B cached as nil",
    );
    assert_reply(&ca.cmd_str(&["DEL", "k"]), b":1\r\n", "DEL via A");
    expect_within_bound(&mut cb, "k", b"$-1\r\n", "B after DEL via A");
}
