//! `CLIENT REPLY ON|OFF|SKIP` through the sidecar, compared byte for byte with a direct
//! redis-server: the replies a client asked not to get are dropped whether L1, the shared
//! upstream connections or its own pinned connection answered them; errors as Redis words
//! them; RESP2 and RESP3; pipelines, transactions, blocking pops and pub/sub. One
//! deliberate difference: CLIENT REPLY inside MULTI is refused (Redis queues it and then
//! sends an EXEC array with an element missing).

use proto_tests::*;

/// The reply every script ends with: everything before it is what the client received.
const END: &str = "end";

/// Sends `steps` pipelined (one write), then `ECHO end`, and returns every reply received
/// up to and including the echo.
fn run(conn: &mut Conn, steps: &[&[&str]]) -> Vec<String> {
    let mut bytes = Vec::new();
    for step in steps {
        bytes.extend_from_slice(&encode_command_str(step));
    }
    bytes.extend_from_slice(&encode_command_str(&["ECHO", END]));
    conn.send(&bytes);
    collect(conn)
}

/// Sends `steps` one write each (the sidecar serves each alone, from an idle connection:
/// an L1 hit takes the hot path), then `ECHO end`; returns the replies up to the echo.
fn run_one_by_one(conn: &mut Conn, steps: &[&[&str]]) -> Vec<String> {
    for step in steps {
        conn.send(&encode_command_str(step));
    }
    conn.send(&encode_command_str(&["ECHO", END]));
    collect(conn)
}

fn collect(conn: &mut Conn) -> Vec<String> {
    let mut replies = Vec::new();
    loop {
        let reply = conn.read_reply();
        let last = reply == bulk(END.as_bytes());
        replies.push(show(&reply));
        if last {
            return replies;
        }
    }
}

/// Runs `steps` on a direct connection and through the sidecar (`hello3` first when
/// asked) and asserts the replies received are the same bytes.
fn same_as_redis(steps: &[&[&str]], resp3: bool, one_by_one: bool, what: &str) -> Vec<String> {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut proxied = sidecar.conn();
    if resp3 {
        direct.hello3();
        proxied.hello3();
    }
    let go = if one_by_one { run_one_by_one } else { run };
    let want = go(&mut direct, steps);
    // The sidecar's turn: L1 is warm from a first pass for the keys the script reads.
    let warm: &[&[&str]] = &[&["GET", "k"], &["GET", "missing"]];
    run(&mut proxied, warm);
    let got = go(&mut proxied, steps);
    assert_eq!(
        got, want,
        "{what} (resp3: {resp3}, one by one: {one_by_one})"
    );
    got
}

/// Hits, misses, forwards, MGET, unknown commands and bad CLIENT REPLY forms under each
/// mode, and the mode changes themselves.
const SCRIPT: &[&[&str]] = &[
    &["SET", "k", "v"],
    &["SET", "a", "1"],
    &["GET", "k"],
    &["CLIENT", "REPLY", "SKIP"],
    &["GET", "k"],
    &["GET", "k"],
    &["CLIENT", "REPLY", "SKIP"],
    &["INCR", "a"],
    &["GET", "missing"],
    &["CLIENT", "REPLY", "OFF"],
    &["GET", "k"],
    &["GET", "missing"],
    &["GET", "k"],
    &["SET", "b", "2"],
    &["INCR", "a"],
    &["MGET", "k", "a", "missing"],
    &["CLIENT", "REPLY", "SKIP"],
    &["CLIENT", "REPLY", "FOO"],
    &["CLIENT", "REPLY"],
    &["NOSUCHCOMMAND"],
    &["GET", "k"],
    &["CLIENT", "REPLY", "ON"],
    &["GET", "a"],
    &["GET", "b"],
    &["CLIENT", "REPLY", "FOO"],
    &["CLIENT", "REPLY"],
    &["CLIENT", "REPLY", "ON", "x"],
    &["client", "reply", "skip"],
    &["CLIENT", "REPLY", "ON"],
    &["CLIENT", "REPLY", "SKIP"],
    &["CLIENT", "REPLY", "SKIP"],
    &["GET", "k"],
    &["INCR", "a"],
    &["CLIENT", "REPLY", "OFF"],
    &["PING"],
    &["RESET"],
    &["GET", "k"],
];

#[test]
fn reply_modes_drop_the_replies_redis_drops() {
    for resp3 in [false, true] {
        for one_by_one in [false, true] {
            let got = same_as_redis(SCRIPT, resp3, one_by_one, "script");
            // Not vacuous: replies were dropped, and some were not.
            assert!(got.len() > 8 && got.len() < SCRIPT.len(), "{got:?}");
        }
    }
}

#[test]
fn l1_hits_are_silent_while_replies_are_off() {
    let (_redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET (fills L1)");
    let hits = |c: &mut Conn| info_u64(&c.info(Some("nearcache")), "l1_hits");
    let before = hits(&mut c);
    c.send(&encode_command_str(&["CLIENT", "REPLY", "OFF"]));
    for _ in 0..3 {
        c.send(&encode_command_str(&["GET", "k"]));
    }
    assert_reply(
        &c.cmd_str(&["CLIENT", "REPLY", "ON"]),
        b"+OK\r\n",
        "the first reply after OFF is ON's",
    );
    assert!(hits(&mut c) >= before + 3, "the GETs were L1 hits");
}

#[test]
fn a_fire_and_forget_pipeline_writes_everything_and_answers_nothing() {
    let (redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    let mut bytes = encode_command_str(&["CLIENT", "REPLY", "OFF"]);
    for i in 0..2000 {
        let key = format!("ff:{i}");
        bytes.extend_from_slice(&encode_command_str(&["SET", &key, &i.to_string()]));
        bytes.extend_from_slice(&encode_command_str(&["GET", &key]));
    }
    bytes.extend_from_slice(&encode_command_str(&["CLIENT", "REPLY", "ON"]));
    c.send(&bytes);
    assert_reply(&c.read_reply(), b"+OK\r\n", "only ON's reply");
    assert_reply(&c.cmd_str(&["GET", "ff:1999"]), &bulk(b"1999"), "GET");
    assert_reply(&redis.conn().cmd_str(&["DBSIZE"]), b":2000\r\n", "DBSIZE");
}

#[test]
fn transactions_and_blocking_pops_follow_the_mode() {
    let steps: &[&[&str]] = &[
        &["FLUSHALL"],
        &["CLIENT", "REPLY", "OFF"],
        &["MULTI"],
        &["SET", "t", "1"],
        &["INCR", "t"],
        &["EXEC"],
        &["RPUSH", "l", "x", "y"],
        &["BLPOP", "l", "1"],
        &["CLIENT", "REPLY", "ON"],
        &["GET", "t"],
        &["CLIENT", "REPLY", "SKIP"],
        &["MULTI"],
        &["INCR", "t"],
        &["EXEC"],
        &["CLIENT", "REPLY", "SKIP"],
        &["BLPOP", "l", "1"],
        &["LLEN", "l"],
        &["WATCH", "t"],
        &["CLIENT", "REPLY", "SKIP"],
        &["UNWATCH"],
        &["GET", "t"],
    ];
    for resp3 in [false, true] {
        same_as_redis(steps, resp3, false, "transactions and pops");
    }
}

#[test]
fn client_reply_inside_multi_is_refused_and_the_transaction_goes_on() {
    let (_redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n", "MULTI");
    assert_reply(
        &c.cmd_str(&["CLIENT", "REPLY", "OFF"]),
        b"-ERR nearcache: CLIENT REPLY inside MULTI is not supported\r\n",
        "CLIENT REPLY in MULTI",
    );
    assert_reply(&c.cmd_str(&["SET", "m", "1"]), b"+QUEUED\r\n", "SET");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*1\r\n+OK\r\n", "EXEC");
    assert_reply(&c.cmd_str(&["GET", "m"]), &bulk(b"1"), "GET");
}

#[test]
fn pubsub_messages_arrive_while_replies_are_off_as_from_redis() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut proxied = sidecar.conn();
    for resp3 in [false, true] {
        if resp3 {
            for conn in [&mut direct, &mut proxied] {
                assert_reply(&conn.cmd_str(&["RESET"]), b"+RESET\r\n", "RESET");
            }
            direct.hello3();
            proxied.hello3();
        }
        let mut transcript = Vec::new();
        for conn in [&mut direct, &mut proxied] {
            let mut seen = Vec::new();
            // RESP2 subscribe mode refuses CLIENT REPLY (an error); RESP3 takes it.
            conn.send(&encode_command_str(&["SUBSCRIBE", "ch"]));
            seen.push(show(&conn.read_reply()));
            let off = encode_command_str(&["CLIENT", "REPLY", "OFF"]);
            if resp3 {
                conn.send(&off);
            } else {
                seen.push(show(&conn.cmd(&[b"CLIENT", b"REPLY", b"OFF"])));
            }
            let published = redis.conn().cmd_str(&["PUBLISH", "ch", "hello"]);
            assert_reply(&published, b":1\r\n", "PUBLISH");
            seen.push(show(&conn.read_reply()));
            conn.send(&encode_command_str(&["UNSUBSCRIBE", "ch"]));
            seen.push(show(&conn.read_reply()));
            conn.send(&encode_command_str(&["CLIENT", "REPLY", "ON"]));
            seen.push(show(&conn.read_reply()));
            seen.push(show(&conn.cmd_str(&["PING"])));
            transcript.push(seen);
        }
        assert_eq!(transcript[1], transcript[0], "resp3: {resp3}");
    }
}
