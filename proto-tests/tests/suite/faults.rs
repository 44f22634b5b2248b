//! The upstream goes away, comes back, or is slow: fail fast with a clear error, recover
//! without a restart, never serve what the upstream no longer has.

use std::time::{Duration, Instant};

use proto_tests::*;

const UNAVAILABLE: &str = "-ERR nearcache: upstream unavailable";

fn is_unavailable(reply: &[u8]) -> bool {
    reply.starts_with(UNAVAILABLE.as_bytes()) && reply.ends_with(b"\r\n")
}

fn wait_link(c: &mut Conn, status: &str) {
    poll_until(
        Duration::from_secs(10),
        &format!("INFO nearcache upstream_link_status:{status}"),
        || {
            info_field(&c.info(Some("nearcache")), "upstream_link_status").as_deref()
                == Some(status)
        },
    );
}

#[test]
fn upstream_down_fails_fast_then_recovers() {
    let mut redis = Redis::start();
    let sidecar = Sidecar::start(redis.port(), &[]);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    for _ in 0..2 {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET while up");
    }
    assert_eq!(
        info_field(&c.info(Some("nearcache")), "upstream_link_status").as_deref(),
        Some("up"),
        "link status while up"
    );

    redis.kill();
    let started = Instant::now();
    let reply = c.cmd_str(&["GET", "uncached"]);
    assert!(
        is_unavailable(&reply),
        "GET of an uncached key while down: {}",
        show(&reply)
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the error must come fast, took {:?}",
        started.elapsed()
    );
    // INFO nearcache is answered by the sidecar itself while the upstream is down.
    wait_link(&mut c, "down");
    let text = c.info(Some("nearcache"));
    assert!(
        info_u64(&text, "upstream_errors") >= 1,
        "the failed GET counts as an upstream error\n{text}"
    );
    for request in [
        &["GET", "k"][..],
        &["SET", "k", "x"][..],
        &["MGET", "k", "uncached"][..],
    ] {
        let reply = c.cmd_str(request);
        assert!(
            is_unavailable(&reply),
            "{request:?} while down (no --serve-stale-when-down): {}",
            show(&reply)
        );
    }

    // Back, empty (no persistence): the sidecar reconnects by itself.
    redis.restart();
    poll_until(
        Duration::from_secs(10),
        "GET via the sidecar to work again",
        || !is_unavailable(&c.cmd_str(&["GET", "probe"])),
    );
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n", "PING after recovery");
    assert_reply(
        &c.cmd_str(&["GET", "k"]),
        b"$-1\r\n",
        "the value cached before the outage is not served after the upstream restarted empty",
    );
    wait_link(&mut c, "up");
    assert_reply(
        &c.cmd_str(&["SET", "k", "v2"]),
        b"+OK\r\n",
        "SET after recovery",
    );
    assert_reply(
        &c.cmd_str(&["GET", "k"]),
        &bulk(b"v2"),
        "GET after recovery",
    );
    assert_reply(
        &sidecar.conn().cmd_str(&["GET", "k"]),
        &bulk(b"v2"),
        "GET on a new connection",
    );
}

#[test]
fn serve_stale_when_down() {
    let mut redis = Redis::start();
    let sidecar = Sidecar::start(redis.port(), &["--serve-stale-when-down", "true"]);
    assert_reply(&redis.conn().cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    let mut c = sidecar.conn();
    for _ in 0..2 {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET while up");
    }
    redis.kill();
    wait_link(&mut c, "down");
    for _ in 0..2 {
        assert_reply(
            &c.cmd_str(&["GET", "k"]),
            &bulk(b"v"),
            "cached key while down",
        );
    }
    assert_reply(
        &sidecar.conn().cmd_str(&["GET", "k"]),
        &bulk(b"v"),
        "cached key on a new connection",
    );
    let reply = c.cmd_str(&["GET", "uncached"]);
    assert!(
        is_unavailable(&reply),
        "a miss while down: {}",
        show(&reply)
    );
}

#[test]
fn sidecar_starts_while_upstream_is_down() {
    let port = free_port();
    let sidecar = Sidecar::start(port, &[]);
    let mut c = sidecar.conn();
    let reply = c.cmd_str(&["GET", "k"]);
    assert!(
        is_unavailable(&reply),
        "GET before the upstream exists: {}",
        show(&reply)
    );
    let redis = Redis::start_on(port, &[]);
    assert_reply(&redis.conn().cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    poll_until(
        Duration::from_secs(10),
        "the sidecar to reach the new upstream",
        || !is_unavailable(&c.cmd_str(&["GET", "k"])),
    );
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET once connected");
}

#[test]
fn upstream_timeout_is_reported_and_late_replies_are_not_misdelivered() {
    let (redis, sidecar) = start_pair(&["--upstream-timeout", "300ms"]);
    let mut direct = redis.conn();
    assert_reply(
        &direct.cmd_str(&["MSET", "t1", "one", "t2", "two"]),
        b"+OK\r\n",
        "MSET",
    );
    let mut c = sidecar.conn();
    // The pause must find the sidecar started: its control connection up, its client's
    // upstream connection established (else the pause holds up their handshakes instead).
    poll_until(
        Duration::from_secs(10),
        "the invalidation link to be up",
        || info_field(&c.info(Some("nearcache")), "invalidation_link").as_deref() == Some("up"),
    );
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n", "PING before the pause");
    assert_reply(
        &direct.cmd_str(&["CLIENT", "PAUSE", "1500", "ALL"]),
        b"+OK\r\n",
        "PAUSE",
    );
    let started = Instant::now();
    let reply = c.cmd_str(&["GET", "t1"]);
    // Either this request's own deadline passes, or the connection's health check has
    // already declared the paused upstream down: both are a bounded, clear failure.
    assert!(
        reply.starts_with(b"-ERR nearcache: upstream timeout") || is_unavailable(&reply),
        "GET while the upstream is paused: {}",
        show(&reply)
    );
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "the timeout must fire before the pause ends ({:?})",
        started.elapsed()
    );
    // After the pause the late reply to t1 must not be taken for another request's.
    poll_until(
        Duration::from_secs(10),
        "GET t2 to succeed after the pause",
        || {
            let reply = c.cmd_str(&["GET", "t2"]);
            if reply.starts_with(b"-ERR nearcache:") {
                return false;
            }
            assert_reply(&reply, &bulk(b"two"), "GET t2 after the pause");
            true
        },
    );
    assert_reply(
        &c.cmd_str(&["GET", "t1"]),
        &bulk(b"one"),
        "GET t1 after the pause",
    );
    assert_reply(&c.cmd_str(&["GET", "t2"]), &bulk(b"two"), "GET t2 again");
}

/// A server that accepts connections but answers nothing (here: busy in DEBUG SLEEP) is
/// down, not "connected": the idle health check notices, cached values are no longer
/// served, and the sidecar comes back by itself once the server answers again.
#[test]
fn hung_upstream_is_down_until_it_answers_again() {
    let (redis, sidecar) = start_pair(&["--upstream-timeout", "500ms"]);
    let mut direct = redis.conn();
    assert_reply(&direct.cmd_str(&["SET", "hung", "v"]), b"+OK\r\n", "SET");
    let mut c = sidecar.conn();
    for _ in 0..2 {
        assert_reply(
            &c.cmd_str(&["GET", "hung"]),
            &bulk(b"v"),
            "GET before the hang",
        );
    }
    let sleeper = std::thread::spawn(move || direct.cmd_str(&["DEBUG", "SLEEP", "4"]));
    wait_link(&mut c, "down");
    let reply = c.cmd_str(&["GET", "hung"]);
    assert!(
        is_unavailable(&reply),
        "a cached key while the upstream hangs: {}",
        show(&reply)
    );
    assert_reply(&sleeper.join().expect("sleeper"), b"+OK\r\n", "DEBUG SLEEP");
    wait_link(&mut c, "up");
    poll_until(Duration::from_secs(10), "GET to work again", || {
        c.cmd_str(&["GET", "hung"]) == bulk(b"v")
    });
}
