//! MULTI/EXEC/DISCARD and WATCH through the sidecar: Redis's replies, on a connection of
//! the client's own; writes evicted at EXEC and only when it ran; reads inside a
//! transaction never served from L1; the connection never shared or given back dirty.
//! `--tracking off` where a test shows the sidecar's own eviction (tracking would evict
//! the same keys a moment later and hide a missing eviction).

use std::thread;

use proto_tests::*;

fn ok(reply: &[u8], what: &str) {
    assert_reply(reply, b"+OK\r\n", what);
}

/// `GET key` through the sidecar twice; the second must be an L1 hit (no upstream GET).
fn cached(c: &mut Conn, redis: &Redis, key: &str, want: &[u8]) {
    assert_reply(&c.cmd_str(&["GET", key]), want, "GET (fill)");
    let before = commandstat_calls(redis, "get");
    assert_reply(&c.cmd_str(&["GET", key]), want, "GET (hit)");
    assert_eq!(
        commandstat_calls(redis, "get"),
        before,
        "{key} is served from L1"
    );
}

#[test]
fn replies_are_redis_replies() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    // The same script on both: queued replies, errors inside EXEC's array, EXECABORT,
    // DISCARD, nested MULTI, EXEC/DISCARD without MULTI, WATCH inside MULTI.
    let script: &[&[&str]] = &[
        &["EXEC"],
        &["DISCARD"],
        &["MULTI"],
        &["SET", "t:a", "1"],
        &["INCR", "t:a"],
        &["GET", "t:a"],
        &["LPUSH", "t:a", "x"],
        &["MULTI"],
        &["WATCH", "t:a"],
        &["EXEC"],
        &["MULTI"],
        &["SET", "t:b", "1"],
        &["NOSUCHCOMMAND"],
        &["SET", "t:b"],
        &["EXEC"],
        &["GET", "t:b"],
        &["MULTI"],
        &["SET", "t:c", "1"],
        &["DISCARD"],
        &["GET", "t:c"],
        &["UNWATCH"],
    ];
    for protocol in [2, 3] {
        if protocol == 3 {
            direct.hello3();
            c.hello3();
        }
        for step in script {
            assert_same_reply(&mut direct, &mut c, &encode_command_str(step));
        }
        // And pipelined, all at once.
        let all: Vec<u8> = script.iter().flat_map(|s| encode_command_str(s)).collect();
        assert_same_replies(&mut direct, &mut c, &all, script.len());
    }
}

#[test]
fn exec_evicts_what_the_transaction_wrote() {
    let (redis, sidecar) = start_pair(&["--tracking", "off"]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    let mut other = sidecar.conn();
    ok(&direct.cmd_str(&["SET", "a", "old"]), "SET");
    ok(&direct.cmd_str(&["SET", "b", "old"]), "SET");
    cached(&mut other, &redis, "a", &bulk(b"old"));
    cached(&mut other, &redis, "b", &bulk(b"old"));
    ok(&c.cmd_str(&["MULTI"]), "MULTI");
    assert_reply(&c.cmd_str(&["SET", "a", "new"]), b"+QUEUED\r\n", "SET");
    assert_reply(&c.cmd_str(&["APPEND", "b", "er"]), b"+QUEUED\r\n", "APPEND");
    // A read inside MULTI is queued, not answered from L1.
    assert_reply(&c.cmd_str(&["GET", "a"]), b"+QUEUED\r\n", "GET in MULTI");
    // Not run yet: the other client still has the old value, from L1.
    cached(&mut other, &redis, "a", &bulk(b"old"));
    let exec = c.cmd_str(&["EXEC"]);
    assert_reply(&exec, b"*3\r\n+OK\r\n:5\r\n$3\r\nnew\r\n", "EXEC");
    // Once EXEC's reply is read, every sidecar client reads the new values.
    assert_reply(&other.cmd_str(&["GET", "a"]), &bulk(b"new"), "a after EXEC");
    assert_reply(
        &other.cmd_str(&["GET", "b"]),
        &bulk(b"older"),
        "b after EXEC",
    );
    // And the client is back on L1.
    cached(&mut c, &redis, "a", &bulk(b"new"));
}

#[test]
fn a_transaction_that_did_not_run_evicts_nothing() {
    let (redis, sidecar) = start_pair(&["--tracking", "off"]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    ok(&direct.cmd_str(&["SET", "k", "v"]), "SET");
    cached(&mut c, &redis, "k", &bulk(b"v"));
    // Aborted by a watched key.
    ok(&c.cmd_str(&["WATCH", "w"]), "WATCH");
    ok(&c.cmd_str(&["MULTI"]), "MULTI");
    assert_reply(&c.cmd_str(&["SET", "k", "x"]), b"+QUEUED\r\n", "SET");
    ok(&direct.cmd_str(&["SET", "w", "changed"]), "SET w");
    assert_reply(
        &c.cmd_str(&["EXEC"]),
        b"*-1\r\n",
        "EXEC after the watched key changed",
    );
    cached(&mut c, &redis, "k", &bulk(b"v"));
    // EXECABORT.
    ok(&c.cmd_str(&["MULTI"]), "MULTI");
    assert_reply(&c.cmd_str(&["SET", "k", "x"]), b"+QUEUED\r\n", "SET");
    let bad = c.cmd_str(&["SET", "k"]);
    assert!(bad.starts_with(b"-ERR wrong number"), "{}", show(&bad));
    let abort = c.cmd_str(&["EXEC"]);
    assert!(abort.starts_with(b"-EXECABORT"), "{}", show(&abort));
    cached(&mut c, &redis, "k", &bulk(b"v"));
    // DISCARD.
    ok(&c.cmd_str(&["MULTI"]), "MULTI");
    assert_reply(&c.cmd_str(&["DEL", "k"]), b"+QUEUED\r\n", "DEL");
    ok(&c.cmd_str(&["DISCARD"]), "DISCARD");
    cached(&mut c, &redis, "k", &bulk(b"v"));
}

#[test]
fn watched_reads_go_to_the_upstream() {
    // A watched key read from L1 could be older than the WATCH: the EXEC would then
    // succeed on a value the client never saw.
    let (redis, sidecar) = start_pair(&["--tracking", "off"]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    ok(&direct.cmd_str(&["SET", "n", "1"]), "SET");
    cached(&mut c, &redis, "n", &bulk(b"1"));
    ok(
        &direct.cmd_str(&["SET", "n", "2"]),
        "direct SET (L1 not told)",
    );
    ok(&c.cmd_str(&["WATCH", "n"]), "WATCH");
    assert_reply(&c.cmd_str(&["GET", "n"]), &bulk(b"2"), "GET while watching");
    ok(&c.cmd_str(&["UNWATCH"]), "UNWATCH");
}

#[test]
fn watch_races_through_two_sidecars_have_one_winner() {
    let redis = Redis::start();
    let a = Sidecar::start(redis.port(), &[]);
    let b = Sidecar::start(redis.port(), &[]);
    const ROUNDS: usize = 100;
    const WORKERS: usize = 4;
    ok(&redis.conn().cmd_str(&["SET", "counter", "0"]), "SET");
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let addr = if w % 2 == 0 { a.addr() } else { b.addr() };
        workers.push(thread::spawn(move || {
            let mut c = Conn::connect(addr);
            let (mut won, mut lost) = (0, 0);
            while won < ROUNDS {
                ok(&c.cmd_str(&["WATCH", "counter"]), "WATCH");
                let n: i64 =
                    String::from_utf8(bulk_reply(&c.cmd_str(&["GET", "counter"])).unwrap())
                        .unwrap()
                        .parse()
                        .unwrap();
                ok(&c.cmd_str(&["MULTI"]), "MULTI");
                let set = c.cmd_str(&["SET", "counter", &(n + 1).to_string()]);
                assert_reply(&set, b"+QUEUED\r\n", "SET");
                match &c.cmd_str(&["EXEC"])[..] {
                    b"*1\r\n+OK\r\n" => won += 1,
                    b"*-1\r\n" => lost += 1,
                    other => panic!("EXEC: {}", show(other)),
                }
            }
            lost
        }));
    }
    let lost: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let total = (ROUNDS * WORKERS).to_string();
    assert_reply(
        &redis.conn().cmd_str(&["GET", "counter"]),
        &bulk(total.as_bytes()),
        "every increment counted once",
    );
    eprintln!("watch race: {} commits, {lost} retries", ROUNDS * WORKERS);
    // Both sidecars serve the final value (from L1 or not, never an old one).
    for s in [&a, &b] {
        assert_reply(
            &s.conn().cmd_str(&["GET", "counter"]),
            &bulk(total.as_bytes()),
            "GET after the race",
        );
    }
}

#[test]
fn a_client_that_leaves_mid_transaction_leaves_nothing_behind() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    // Upstream connections inside a transaction (CLIENT LIST shows `multi=<queued>`, and
    // -1 outside one), and the sidecar's count of pinned connections.
    let in_multi = |d: &mut Conn| {
        let list = String::from_utf8(bulk_reply(&d.cmd_str(&["CLIENT", "LIST"])).unwrap()).unwrap();
        list.lines().filter(|l| !l.contains(" multi=-1 ")).count()
    };
    let pinned = |s: &Sidecar| {
        info_u64(
            &s.conn().info(Some("nearcache")),
            "upstream_pinned_connections",
        )
    };
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n", "PING");
    ok(&c.cmd_str(&["WATCH", "k"]), "WATCH");
    ok(&c.cmd_str(&["MULTI"]), "MULTI");
    assert_reply(&c.cmd_str(&["SET", "k", "x"]), b"+QUEUED\r\n", "SET");
    assert_eq!(in_multi(&mut direct), 1, "one pinned connection, in MULTI");
    assert_eq!(pinned(&sidecar), 1);
    drop(c);
    poll_until(
        std::time::Duration::from_secs(5),
        "the pinned connection closes",
        || in_multi(&mut direct) == 0 && pinned(&sidecar) == 0,
    );
    assert_reply(
        &direct.cmd_str(&["GET", "k"]),
        b"$-1\r\n",
        "the transaction never ran",
    );
    // Another client's transaction starts clean.
    let mut d = sidecar.conn();
    ok(&d.cmd_str(&["MULTI"]), "MULTI");
    assert_reply(&d.cmd_str(&["EXEC"]), b"*0\r\n", "an empty transaction");
}

#[test]
fn one_client_keeps_one_pinned_connection() {
    let (redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n", "PING");
    for i in 0..20 {
        ok(&c.cmd_str(&["MULTI"]), "MULTI");
        assert_reply(&c.cmd_str(&["INCR", "n"]), b"+QUEUED\r\n", "INCR");
        let want = format!("*1\r\n:{}\r\n", i + 1);
        assert_reply(&c.cmd_str(&["EXEC"]), want.as_bytes(), "EXEC");
    }
    // Every EXEC ran on one upstream connection.
    let list = redis.conn().cmd_str(&["CLIENT", "LIST"]);
    let list = String::from_utf8(bulk_reply(&list).unwrap()).unwrap();
    let ran_exec = list.lines().filter(|l| l.contains(" cmd=exec ")).count();
    assert_eq!(
        ran_exec, 1,
        "one upstream connection for 20 transactions: {list}"
    );
    let info = c.info(Some("nearcache"));
    assert_eq!(info_u64(&info, "upstream_pinned_connections"), 1, "{info}");
    drop(c);
    let mut d = sidecar.conn();
    poll_until(
        std::time::Duration::from_secs(5),
        "closed with its client",
        || info_u64(&d.info(Some("nearcache")), "upstream_pinned_connections") == 0,
    );
}

#[test]
fn select_and_name_follow_the_client_into_and_out_of_a_transaction() {
    let (redis, sidecar) = start_pair(&["--tracking", "off"]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    ok(&c.cmd_str(&["CLIENT", "SETNAME", "worker"]), "SETNAME");
    ok(&c.cmd_str(&["SELECT", "2"]), "SELECT");
    ok(&c.cmd_str(&["MULTI"]), "MULTI");
    assert_reply(
        &c.cmd_str(&["SELECT", "5"]),
        b"+QUEUED\r\n",
        "SELECT in MULTI",
    );
    assert_reply(&c.cmd_str(&["SET", "k", "in5"]), b"+QUEUED\r\n", "SET");
    assert_reply(
        &c.cmd_str(&["CLIENT", "GETNAME"]),
        b"+QUEUED\r\n",
        "GETNAME",
    );
    assert_reply(
        &c.cmd_str(&["EXEC"]),
        b"*3\r\n+OK\r\n+OK\r\n$6\r\nworker\r\n",
        "EXEC",
    );
    // The session is in db 5 now, on the shared pool again.
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"in5"), "GET in db 5");
    ok(&direct.cmd_str(&["SELECT", "5"]), "SELECT");
    assert_reply(&direct.cmd_str(&["GET", "k"]), &bulk(b"in5"), "direct");
    assert_reply(
        &c.cmd_str(&["CLIENT", "GETNAME"]),
        &bulk(b"worker"),
        "GETNAME",
    );
}

#[test]
fn a_kept_connection_is_closed_after_the_idle_timeout() {
    let (_redis, sidecar) = start_pair(&["--upstream-idle-timeout", "300ms"]);
    let mut c = sidecar.conn();
    ok(&c.cmd_str(&["MULTI"]), "MULTI");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*0\r\n", "EXEC");
    let pinned = |c: &mut Conn| info_u64(&c.info(Some("nearcache")), "upstream_pinned_connections");
    let mut other = sidecar.conn();
    assert_eq!(pinned(&mut other), 1, "kept for the client");
    poll_until(
        std::time::Duration::from_secs(5),
        "closed once idle",
        || pinned(&mut other) == 0,
    );
    // The client that kept it still opens a transaction later.
    ok(&c.cmd_str(&["MULTI"]), "MULTI again");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*0\r\n", "EXEC again");
}
